// The agent protocol over HTTP (SPEC 5.4, 5.5) with Fastify inject and a real runner: claims,
// state moves and their guards, rendered actions, logs (bounds, truncation, offsets), retention,
// machine-token scoping, and bad input leaving state unchanged.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueMachineToken } from '../../src/auth/machine-tokens.js';
import { JobService, MAX_LOG_CHUNK_BYTES } from '../../src/jobs/job-service.js';
import { AdvanceRequests } from '../../src/jobs/advance.js';
import { SystemPrincipal } from '../../src/models/principal.js';
import { jobsOf, machine, newMachine, put, startEngine, until, workflow, type Engine } from './engine-fixture.js';

let e: Engine;
let uuid: string;
let token: string;
let other: string;
let otherToken: string;

const tokenFor = async (id: string) => issueMachineToken(e.s.signer, await machine(e.s, id), 600).token;

beforeAll(async () => {
  e = await startEngine();
  await put(e.s, 'params', { name: 'j-greeting', schema: { type: 'string' } });
  await put(e.s, 'templates', { id: 'j/hello.sh', contents: '#!/bin/sh\necho "{{param "j-greeting"}} from {{machine.name}} in {{task.name}} ({{job.uuid}})"\n' });
  await put(e.s, 'tasks', { name: 'j-hello', templates: [{ name: 'hello', id: 'j/hello.sh' }, { name: 'conf', path: 'etc/{{machine.name}}.conf', contents: 'stage={{stage.name}}\n' }], requiredParams: ['j-greeting'] });
  await put(e.s, 'tasks', { name: 'j-two', templates: [{ name: 'two', contents: 'echo two' }] });
  await workflow(e.s, 'j-flow', [{ name: 'j-flow', tasks: ['j-hello', 'j-two'] }]);
  uuid = await newMachine(e.s, { workflow: 'j-flow', params: { 'j-greeting': 'hello' } });
  other = await newMachine(e.s, {});
  token = await tokenFor(uuid);
  otherToken = await tokenFor(other);
});
afterAll(async () => e.close());

const call = (method: string, url: string, opts: { payload?: unknown; auth?: string; type?: string } = {}) =>
  e.t.call({
    method: method as 'GET',
    url: `/api/v1${url}`,
    ...(opts.payload !== undefined ? { payload: opts.payload as string } : {}),
    headers: { ...(opts.type ? { 'content-type': opts.type } : {}), ...(opts.auth ? { authorization: `Bearer ${opts.auth}` } : {}) },
  });
const patch = (job: string, ops: unknown, auth = token) => call('PATCH', `/jobs/${job}`, { payload: ops, auth, type: 'application/json-patch+json' });
const moveOps = (from: string, to: string, extra: Record<string, unknown> = {}) => [
  { op: 'test', path: '/state', value: from },
  { op: 'replace', path: '/state', value: to },
  ...Object.entries(extra).map(([k, v]) => ({ op: 'replace', path: `/${k}`, value: v })),
];

describe('claim, run, end', () => {
  let job: string;

  it('201 hands the created job to its machine; the same claim again is the same job', async () => {
    const res = await until('a job to claim', async () => {
      const r = await call('POST', '/jobs', { payload: { machine: uuid }, auth: token });
      return r.statusCode === 201 ? r : undefined;
    });
    expect(res.json()).toMatchObject({ machine: uuid, task: 'j-hello', state: 'created', context: '', currentIndex: 1 });
    job = res.json().uuid;
    expect((await call('POST', '/jobs', { payload: { machine: uuid }, auth: token })).json().uuid).toBe(job);
  });

  it('refuses a machine token claiming for another machine (403), unknown machines (422), other contexts get 204', async () => {
    expect((await call('POST', '/jobs', { payload: { machine: uuid }, auth: otherToken })).statusCode).toBe(403);
    const unknown = await call('POST', '/jobs', { payload: { machine: '00000000-0000-4000-8000-000000000000' } });
    expect(unknown.statusCode).toBe(422);
    expect(unknown.json().message).toContain('does not exist');
    expect((await call('POST', '/jobs', { payload: { machine: uuid, context: 'other-runner' }, auth: token })).statusCode).toBe(204);
    expect((await call('POST', '/jobs', { payload: { machine: other }, auth: otherToken })).statusCode).toBe(204);
    expect((await call('POST', '/jobs', { payload: { machine: uuid, extra: 1 }, auth: token })).statusCode).toBe(400);
  });

  it('renders the task\'s templates for the machine', async () => {
    const res = await call('GET', `/jobs/${job}/actions`, { auth: token });
    expect(res.statusCode).toBe(200);
    const m = await machine(e.s, uuid);
    expect(res.json()).toEqual([
      { name: 'hello', path: '', content: `#!/bin/sh\necho "hello from ${String(m.name)} in j-hello (${job})"\n`, meta: {} },
      { name: 'conf', path: `etc/${String(m.name)}.conf`, content: 'stage=j-flow\n', meta: {} },
    ]);
    expect((await call('GET', `/jobs/${job}/actions`, { auth: otherToken })).statusCode).toBe(403);
  });

  it('guards the state machine: out-of-order moves, other fields and failed tests are refused and change nothing', async () => {
    const cases: [string, unknown, number][] = [
      ['created → finished', moveOps('created', 'finished'), 409],
      ['created → incomplete', moveOps('created', 'incomplete'), 409],
      ['an unknown state', moveOps('created', 'exploded'), 400],
      ['changing the task', [{ op: 'replace', path: '/task', value: 'j-two' }], 422],
      ['changing the machine', [{ op: 'replace', path: '/machine', value: other }], 422],
      ['a test that fails', moveOps('running', 'finished'), 409],
      ['a patch of a missing path', [{ op: 'remove', path: '/nope' }], 422],
      ['not a patch', 'nonsense', 400],
    ];
    for (const [name, ops, status] of cases) {
      const res = await patch(job, ops);
      expect(res.statusCode, `${name}: ${res.body}`).toBe(status);
    }
    expect((await e.s.store.mustGet('jobs', job)).state).toBe('created');
    expect((await patch(job, moveOps('created', 'running'), otherToken)).statusCode).toBe(403);
  });

  it('created → running; a second claim is 409 with the running job named', async () => {
    const res = await patch(job, moveOps('created', 'running'));
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ state: 'running' });
    const again = await patch(job, moveOps('created', 'running'));
    expect(again.statusCode).toBe(409);
    const claim = await call('POST', '/jobs', { payload: { machine: uuid }, auth: token });
    expect(claim.statusCode).toBe(409);
    expect(claim.json()).toMatchObject({ kind: 'jobs', key: job });
  });

  it('appends log chunks, reads them whole or from an offset, and publishes them', async () => {
    const seen: string[] = [];
    const stop = e.s.bus.subscribe((ev) => {
      if (ev.type === 'machine_jobs' && ev.action === 'log' && ev.key === uuid) seen.push((JSON.parse(ev.object) as { text: string }).text);
    });
    for (const chunk of ['line one\n', 'line two\n']) {
      const res = await call('PUT', `/jobs/${job}/log`, { payload: Buffer.from(chunk) as unknown as string, auth: token, type: 'application/octet-stream' });
      expect(res.statusCode).toBe(200);
    }
    const all = await call('GET', `/jobs/${job}/log`, { auth: token });
    expect(all.headers['content-type']).toContain('application/octet-stream');
    expect(all.body).toBe('line one\nline two\n');
    expect(all.headers['x-log-size']).toBe('18');
    expect((await call('GET', `/jobs/${job}/log?offset=9`)).body).toBe('line two\n');
    expect((await call('GET', `/jobs/${job}/log?offset=999`)).body).toBe('');
    expect((await call('GET', `/jobs/${job}/log?offset=-1`)).statusCode).toBe(400);
    expect((await call('PUT', `/jobs/${job}/log`, { payload: 'text', auth: token, type: 'text/plain' })).statusCode).toBe(415);
    expect((await call('PUT', `/jobs/${job}/log`, { payload: Buffer.from('x') as unknown as string, auth: otherToken, type: 'application/octet-stream' })).statusCode).toBe(403);
    await until('live log events', async () => seen.length === 2);
    stop();
    expect(seen).toEqual(['line one\n', 'line two\n']);
  });

  it('refuses a chunk over 4 MiB with 413 and keeps the log as it was', async () => {
    const big = Buffer.alloc(MAX_LOG_CHUNK_BYTES + 1, 0x61);
    const res = await call('PUT', `/jobs/${job}/log`, { payload: big as unknown as string, auth: token, type: 'application/octet-stream' });
    expect(res.statusCode).toBe(413);
    expect(res.json().message).toContain('4 MiB');
    expect((await call('GET', `/jobs/${job}/log`)).body).toBe('line one\nline two\n');
  });

  it('running → finished ends the job and the runner hands out the next one', async () => {
    const res = await patch(job, moveOps('running', 'finished', { exitState: 'complete' }));
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ state: 'finished', exitState: 'complete' });
    expect(res.json().endTime).toBeDefined();
    expect((await patch(job, moveOps('finished', 'running'))).statusCode).toBe(409);
    const next = await until<{ uuid: string }>('the second job', async () => {
      const r = await call('POST', '/jobs', { payload: { machine: uuid }, auth: token });
      return r.statusCode === 201 ? r.json() : undefined;
    });
    expect(next).toMatchObject({ task: 'j-two', previous: job });
    expect((await patch(next.uuid, moveOps('created', 'running'))).statusCode).toBe(200);
    expect((await patch(next.uuid, moveOps('running', 'incomplete', { exitState: 'reboot' }))).statusCode).toBe(200);
    const again = await call('POST', '/jobs', { payload: { machine: uuid }, auth: token });
    expect(again.statusCode).toBe(202);
    expect(again.json().uuid).toBe(next.uuid);
    expect((await patch(next.uuid, moveOps('incomplete', 'running'))).json()).toMatchObject({ state: 'running', exitState: '' });
    expect((await patch(next.uuid, moveOps('running', 'finished'))).statusCode).toBe(200);
    await until('workflow complete', async () => (await machine(e.s, uuid)).workflowComplete === true);
    expect((await call('POST', '/jobs', { payload: { machine: uuid }, auth: token })).statusCode).toBe(204);
  });

  it('a not-runnable machine is 409', async () => {
    await e.s.store.update('machines', other, (m) => ({ ...m, runnable: false }), { principal: SystemPrincipal });
    const res = await call('POST', '/jobs', { payload: { machine: other }, auth: otherToken });
    expect(res.statusCode).toBe(409);
    expect(res.json().message).toContain('not runnable');
  });

  it('jobs are not created or replaced through the generic routes', async () => {
    expect((await call('PUT', `/jobs/${job}`, { payload: { machine: uuid } })).statusCode).toBe(404);
  });
});

describe('log bounds', () => {
  it('cuts a log at its bound and marks it', async () => {
    const jobs = new JobService({ store: e.s.store, redis: e.s.redis, keys: e.s.keys, bus: e.s.bus, prefs: e.s.prefs, log: e.s.log, advance: new AdvanceRequests(e.s.redis, e.s.keys, e.s.queues), logMaxBytes: 10 });
    const m = await machine(e.s, other);
    const job = await jobs.create({ machine: m, index: 0, previous: '', task: 't', context: '', state: 'running' });
    expect(await jobs.appendLog(job, Buffer.from('12345'))).toMatchObject({ offset: 0, size: 5, truncated: false });
    const cut = await jobs.appendLog(job, Buffer.from('6789abcdef'));
    expect(cut.truncated).toBe(true);
    const after = await jobs.appendLog(job, Buffer.from('more'));
    expect(after).toMatchObject({ truncated: true });
    const log = await jobs.readLog(String(job.uuid), 0);
    expect(log.data.toString()).toMatch(/^123456789a\n\[ironflow: log truncated at 10 bytes/);
    expect(log.truncated).toBe(true);
    await jobs.remove(String(job.uuid), SystemPrincipal);
    expect((await jobs.readLog(String(job.uuid), 0)).size).toBe(0);
  });
});

describe('retention', () => {
  it('keeps jobsToKeep ended jobs per machine (never the current one) and deletes older ones with their logs', async () => {
    await e.s.prefs.set({ jobsToKeep: '2' });
    await new Promise((r) => setTimeout(r, 2100)); // the runner re-reads the preference every 2 s
    try {
      await put(e.s, 'tasks', { name: 'j-s', actions: [{ action: 'machine.setParam', args: { name: 'x', value: 1 } }] });
      await workflow(e.s, 'j-five', [{ name: 'j-five', tasks: ['j-s', 'j-s', 'j-s', 'j-s', 'j-s'] }]);
      const id = await newMachine(e.s, { workflow: 'j-five' });
      await until('complete', async () => (await machine(e.s, id)).workflowComplete === true);
      const jobs = await jobsOf(e.s, id);
      expect(jobs).toHaveLength(2);
      expect(jobs.map((j) => j.currentIndex)).toEqual([4, 5]);
      expect((await machine(e.s, id)).currentJob).toBe(jobs[1]!.uuid);
    } finally {
      await e.s.prefs.set({ jobsToKeep: '20' });
    }
  });
});
