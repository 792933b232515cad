// `ironflow jobs log JOB [--follow]` against a listening server: the bytes as they are, and --follow
// printing new output (woken by the WebSocket, or polling) until the job ends.
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { jobsLog } from '../../src/cli/jobs.js';
import { engineParts } from '../../src/jobs/job-service.js';
import { SystemPrincipal } from '../../src/models/principal.js';
import { machine, newMachine, startEngine, type Engine } from './engine-fixture.js';

let e: Engine;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  e = await startEngine({ workers: 0 });
  await e.t.app.listen({ port: 0, host: '127.0.0.1' });
  env = { IRONFLOW_ENDPOINT: `http://127.0.0.1:${(e.t.app.server.address() as AddressInfo).port}`, IRONFLOW_TOKEN: await e.t.token('readonly'), IRONFLOW_CREDENTIALS: '/nonexistent' };
});
afterAll(async () => e.close());

async function runningJob() {
  const { jobs } = engineParts(e.s);
  const m = await machine(e.s, await newMachine(e.s, {}));
  const job = await jobs.create({ machine: m, index: 0, previous: '', task: 'cli-task', context: '', state: 'running' });
  return { jobs, job };
}

describe('ironflow jobs log', () => {
  it('prints the log as bytes (JSON-looking text stays text)', async () => {
    const { jobs, job } = await runningJob();
    await jobs.appendLog(job, Buffer.from('1\n{"a": 1}\n'));
    const out: Buffer[] = [];
    await jobsLog(env, undefined, [String(job.uuid)], {}, (b) => out.push(b));
    expect(Buffer.concat(out).toString()).toBe('1\n{"a": 1}\n');
  });

  it.each([['WebSocket', {}], ['polling', { interval: '0.1', websocket: 'false' }]] as const)('--follow prints new output until the job ends (%s)', async (_how, flags) => {
    const { jobs, job } = await runningJob();
    await jobs.appendLog(job, Buffer.from('one\n'));
    const out: Buffer[] = [];
    const following = jobsLog(env, undefined, [String(job.uuid)], { follow: 'true', ...flags }, (b) => out.push(b));
    for (const line of ['two\n', 'three\n']) {
      await new Promise((r) => setTimeout(r, 200));
      await jobs.appendLog(job, Buffer.from(line));
    }
    // the follower has printed everything and waits: only the job's end can wake it now (with no worker
    // process here, nothing republishes that end as machine_jobs.update)
    await vi.waitFor(() => expect(Buffer.concat(out).toString()).toBe('one\ntwo\nthree\n'), { timeout: 10_000 });
    await e.s.store.update('jobs', String(job.uuid), (j) => ({ ...j, state: 'finished', exitState: 'complete' }), { principal: SystemPrincipal });
    await following;
    expect(Buffer.concat(out).toString()).toBe('one\ntwo\nthree\n');
  });

  it('says what is wrong with an unknown job', async () => {
    await expect(jobsLog(env, undefined, ['00000000-0000-4000-8000-000000000000'], {}, () => undefined)).rejects.toThrow(/404/);
    await expect(jobsLog(env, undefined, [], {}, () => undefined)).rejects.toThrow(/usage/);
  });
});
