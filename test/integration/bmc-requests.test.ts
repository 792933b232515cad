// BMC requests (SPEC 6) over HTTP with the sim driver and the real BullMQ worker: lifecycle, events,
// timeline, one unfinished request per machine, retries, deadlines, bad input and the CLI.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BmcRequests, type BmcRequest } from '../../src/bmc/requests.js';
import { simStateKey } from '../../src/bmc/sim.js';
import { parseArgs } from '../../src/cli/args.js';
import { CliError } from '../../src/cli/client.js';
import { runCli } from '../../src/cli/commands.js';
import { parseStreamEntry } from '../../src/events/bus.js';
import { bmcRequestEnqueuer, startBmcWorker } from '../../src/jobs/bmc-worker.js';
import { SystemPrincipal } from '../../src/models/principal.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

const CORE = join(import.meta.dirname, '..', '..', 'content', 'core');

let t: TestApp;
let stopWorker: () => Promise<void>;
let n = 0;

beforeAll(async () => {
  t = await createTestApp({ content: [CORE] });
  stopWorker = await startBmcWorker(t.services, { backoffBaseMs: 50, pollMs: 50, sweepIntervalMs: 200 });
});
afterAll(async () => {
  await stopWorker?.();
  await t?.close();
});

async function machine(params: Record<string, unknown> = { 'bmc/driver': 'sim' }, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: `bmc-${++n}`, params, ...extra } });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().uuid as string;
}

const post = (uuid: string, payload: unknown, auth?: string) => t.call({ method: 'POST', url: `/api/v1/machines/${uuid}/bmc`, payload: payload as object, ...(auth ? { auth } : {}) });

async function waitDone(uuid: string, id: string, timeoutMs = 20_000): Promise<BmcRequest> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const res = await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/bmc/${id}` });
    expect(res.statusCode, res.body).toBe(200);
    const r = res.json() as BmcRequest;
    if (r.state === 'succeeded' || r.state === 'failed') return r;
    if (Date.now() > end) throw new Error(`request ${id} still ${r.state}: ${r.status.msg}`);
    await new Promise((res2) => setTimeout(res2, 50));
  }
}

async function run(uuid: string, payload: unknown): Promise<BmcRequest> {
  const res = await post(uuid, payload);
  expect(res.statusCode, res.body).toBe(202);
  return waitDone(uuid, res.json().id);
}

async function machinePower(uuid: string): Promise<{ state: string; checkedAt?: string }> {
  return (await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}` })).json().power;
}

const simState = (uuid: string) => t.redis.hgetall(simStateKey(`${t.services.keys.extra('bmcsim')}:`, uuid));

/** A request service with its own clock and no queue: its requests stay pending until something fails them. */
function stuckService(clockOffsetMs: number): BmcRequests {
  const s = t.services;
  return new BmcRequests({ store: s.store, params: s.params, redis: s.redis, keys: s.keys, log: s.log, bus: s.bus, timeline: s.timeline, enqueue: async () => {} }, { now: () => Date.now() + clockOffsetMs });
}

describe('lifecycle', () => {
  it('set_power_state on: 202 pending → active → succeeded, machine.power, events and timeline', async () => {
    const uuid = await machine();
    const before = Date.now();
    const res = await post(uuid, { action: 'set_power_state', parameter: 'on' });
    expect(res.statusCode, res.body).toBe(202);
    const created = res.json() as BmcRequest;
    expect(created).toMatchObject({ kind: 'serverControl', state: 'pending', machine: uuid, parameters: { action: 'set_power_state', parameter: 'on' }, status: { msg: 'queued' }, requestedBy: 'user:admin' });
    expect(created.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(Date.parse(created.createdAt)).toBeGreaterThanOrEqual(before - 1000);
    expect(created.updatedAt).toBe(created.createdAt);
    expect(res.headers.location).toBe(`/api/v1/machines/${uuid}/bmc/${created.id}`);

    const done = await waitDone(uuid, created.id);
    expect(done).toMatchObject({ state: 'succeeded', status: { msg: 'server power state set successful: on', power: 'on' } });
    expect(await simState(uuid)).toMatchObject({ power: 'on', lastAction: 'power on' });
    const power = await machinePower(uuid);
    expect(power.state).toBe('on');
    expect(Date.parse(power.checkedAt!)).toBeGreaterThanOrEqual(before - 1000);

    const events = (await t.redis.xrange(t.services.keys.events(), '-', '+')).map(([id, f]) => parseStreamEntry(id, f)).filter((e) => e.type === 'bmc' && e.key === uuid);
    expect(events.map((e) => e.action)).toEqual(['pending', 'active', 'succeeded']);
    expect(events.map((e) => (JSON.parse(e.object) as BmcRequest).id)).toEqual([created.id, created.id, created.id]);
    expect(events[0]!.principal).toBe('user:admin');
    const saves = (await t.redis.xrange(t.services.keys.events(), '-', '+')).map(([id, f]) => parseStreamEntry(id, f)).filter((e) => e.type === 'machines' && e.action === 'save' && e.key === uuid);
    expect(saves.length).toBeGreaterThanOrEqual(1);

    const entries = (await t.redis.xrange(t.services.keys.timeline(uuid), '-', '+')).map(([, f]) => {
      const rec: Record<string, string> = {};
      for (let i = 0; i + 1 < f.length; i += 2) rec[f[i]!] = f[i + 1]!;
      return rec;
    }).filter((e) => e.type === 'bmc.request');
    expect(entries.map((e) => e.state)).toEqual(['pending', 'active', 'succeeded']);
    expect(JSON.parse(entries[2]!.body!)).toMatchObject({ id: created.id, state: 'succeeded' });
  });

  it.each([
    ['get_power_state', { action: 'get_power_state' }, 'server power state: off', 'off'],
    ['set_power_state off', { action: 'set_power_state', parameter: 'off' }, 'server power state set successful: off', 'off'],
    ['set_power_state soft', { action: 'set_power_state', parameter: 'soft' }, 'server power state set successful: soft', 'off'],
    ['set_power_state cycle', { action: 'set_power_state', parameter: 'cycle' }, 'server power state set successful: cycle', 'on'],
    ['set_power_state reset', { action: 'set_power_state', parameter: 'reset' }, 'server power state set successful: reset', 'on'],
  ])('%s', async (_name, payload, msg, power) => {
    const uuid = await machine();
    if ((payload as { parameter?: string }).parameter === 'reset') await run(uuid, { action: 'set_power_state', parameter: 'on' });
    const done = await run(uuid, payload);
    expect(done.status.msg).toBe(msg);
    expect(done.state).toBe('succeeded');
    expect((await machinePower(uuid)).state).toBe(power);
  });

  it('set_next_boot_device, pxe_boot_persistent and power_cycle_bmc', async () => {
    const uuid = await machine();
    const boot = await run(uuid, { action: 'set_next_boot_device', parameter: 'pxe', persistent: true, efi: true });
    expect(boot.status.msg).toBe('next boot device set successful: pxe (persistent, efi)');
    expect(await simState(uuid)).toMatchObject({ bootDevice: 'pxe', persistent: 'true', efi: 'true' });
    expect((await machinePower(uuid)).state).toBe('off'); // read back after setting the boot device

    expect((await run(uuid, { action: 'set_next_boot_device', parameter: 'disk' })).status.msg).toBe('next boot device set successful: disk');
    expect(await simState(uuid)).toMatchObject({ bootDevice: 'disk', persistent: 'false', efi: 'false' });

    const pxe = await run(uuid, { action: 'pxe_boot_persistent' });
    expect(pxe.parameters).toEqual({ action: 'pxe_boot_persistent', parameter: 'pxe', persistent: true, efi: false });
    expect(pxe.status.msg).toBe('next boot device set successful: pxe (persistent)');

    expect((await run(uuid, { action: 'power_cycle_bmc' })).status.msg).toBe('bmc reset successful: cold');
    expect((await run(uuid, { action: 'power_cycle_bmc', parameter: 'warm' })).status.msg).toBe('bmc reset successful: warm');
    expect(await simState(uuid)).toMatchObject({ bmcResets: '2', lastAction: 'bmc reset warm' });
  });

  it('lists newest first and reads one; machines may be named by {index}:{value}', async () => {
    const uuid = await machine();
    const a = await run(uuid, { action: 'get_power_state' });
    const b = await run(uuid, { action: 'set_power_state', parameter: 'on' });
    const name = (await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}` })).json().name as string;
    const list = await t.call({ method: 'GET', url: `/api/v1/machines/name:${name}/bmc` });
    expect(list.statusCode).toBe(200);
    expect(list.json().map((r: BmcRequest) => r.id)).toEqual([b.id, a.id]);
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/name:${name}/bmc/${a.id}` })).json()).toMatchObject({ id: a.id, state: 'succeeded' });
  });

  it('keeps only the newest 100 requests per machine', async () => {
    const uuid = await machine();
    const svc = stuckService(0);
    let first = '';
    for (let i = 0; i < 102; i++) {
      const r = await svc.create(uuid, { action: 'get_power_state' }, SystemPrincipal);
      if (i === 0) first = r.id;
      await svc.failIfUnfinished(uuid, r.id, 'failed: test');
    }
    const list = (await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/bmc` })).json() as BmcRequest[];
    expect(list).toHaveLength(100);
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/bmc/${first}` })).statusCode).toBe(404);
  });
});

describe('one unfinished request per machine', () => {
  it('two concurrent POSTs: one 202, one 409 naming the first', async () => {
    const uuid = await machine({ 'bmc/driver': 'sim', 'bmc/sim': { latencyMs: 300 } });
    const [a, b] = await Promise.all([post(uuid, { action: 'set_power_state', parameter: 'on' }), post(uuid, { action: 'get_power_state' })]);
    const codes = [a.statusCode, b.statusCode].sort();
    expect(codes).toEqual([202, 409]);
    const [won, lost] = a.statusCode === 202 ? [a, b] : [b, a];
    const id = won.json().id as string;
    expect(lost.json()).toMatchObject({ code: 'CONFLICT', kind: 'bmc', key: id });
    expect(lost.json().message).toContain(id);
    await waitDone(uuid, id);
    const again = await post(uuid, { action: 'get_power_state' });
    expect(again.statusCode, again.body).toBe(202);
    await waitDone(uuid, again.json().id);
  });
});

describe('failures and retries', () => {
  it('transient errors are retried with backoff, then the request succeeds', async () => {
    const uuid = await machine({ 'bmc/driver': 'sim', 'bmc/sim': { failNext: 2, failMode: 'transient' } });
    const done = await run(uuid, { action: 'set_power_state', parameter: 'on' });
    expect(done).toMatchObject({ state: 'succeeded', status: { msg: 'server power state set successful: on' } });
    expect(await simState(uuid)).toMatchObject({ failRemaining: '0', power: 'on' });
  });

  it('transient errors give up after 5 attempts with a clear message', async () => {
    const uuid = await machine({ 'bmc/driver': 'sim', 'bmc/sim': { failNext: 9, failMode: 'transient' } });
    const done = await run(uuid, { action: 'set_power_state', parameter: 'on' });
    expect(done.state).toBe('failed');
    expect(done.status.msg).toMatch(/^failed: BMC unreachable after 5 attempts: sim: injected transient failure/);
    expect((await simState(uuid)).failRemaining).toBe('4');
  });

  it('a permanent error fails at once, without retries', async () => {
    const uuid = await machine({ 'bmc/driver': 'sim', 'bmc/sim': { failNext: 3, failMode: 'permanent' } });
    const done = await run(uuid, { action: 'set_next_boot_device', parameter: 'pxe' });
    expect(done.state).toBe('failed');
    expect(done.status.msg).toMatch(/^failed: BMC error: sim: injected permanent failure/);
    expect((await simState(uuid)).failRemaining).toBe('2'); // one attempt only
  });

  it('a power action whose state never arrives fails (verified by polling)', async () => {
    const uuid = await machine({ 'bmc/driver': 'sim', 'bmc/timeout-seconds': 1, 'bmc/sim': { powerOnDelayMs: 60_000 } });
    const done = await run(uuid, { action: 'set_power_state', parameter: 'on' });
    expect(done.state).toBe('failed');
    expect(done.status.msg).toContain('power on was accepted but the power state stayed off for 1s (expected on)');
  });

  it('a power-on that completes within the timeout is waited for', async () => {
    const uuid = await machine({ 'bmc/driver': 'sim', 'bmc/timeout-seconds': 10, 'bmc/sim': { powerOnDelayMs: 400 } });
    const done = await run(uuid, { action: 'set_power_state', parameter: 'cycle' });
    expect(done).toMatchObject({ state: 'succeeded', status: { power: 'on' } });
  });
});

describe('worker hand-over', () => {
  it('a request left active by a dead worker runs again when its job is handed over; a finished one is left alone', async () => {
    const uuid = await machine();
    const svc = stuckService(0);
    const req = await svc.create(uuid, { action: 'set_power_state', parameter: 'on' }, SystemPrincipal);
    // what a worker that died mid-request leaves behind: the request active, its job re-delivered by BullMQ
    const key = t.services.keys.extra('bmc', 'requests', uuid);
    await t.redis.hset(key, req.id, JSON.stringify({ ...req, state: 'active', status: { msg: 'running' } }));
    await bmcRequestEnqueuer(t.services.queues)(req);
    const done = await waitDone(uuid, req.id);
    expect(done).toMatchObject({ state: 'succeeded', status: { msg: 'server power state set successful: on' } });
    const states = (await t.redis.xrange(t.services.keys.timeline(uuid), '-', '+'))
      .map(([, f]) => f).filter((f) => f.includes('bmc.request')).map((f) => JSON.parse(f[f.indexOf('body') + 1]!) as BmcRequest);
    expect(states.map((r) => `${r.state}: ${r.status.msg}`)).toEqual(['pending: queued', 'active: running (resumed after a worker stopped)', 'succeeded: server power state set successful: on']);

    // a duplicate delivery of a finished request changes nothing
    expect((await svc.execute(uuid, req.id))!.updatedAt).toBe(done.updatedAt);
  });
});

describe('deadlines', () => {
  it('a request past its deadline is failed on GET and does not block a new POST', async () => {
    const uuid = await machine();
    const stuck = await stuckService(-3600_000).create(uuid, { action: 'get_power_state' }, SystemPrincipal);
    expect(stuck.state).toBe('pending');
    const got = (await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/bmc/${stuck.id}` })).json() as BmcRequest;
    expect(got.state).toBe('failed');
    expect(got.status.msg).toMatch(/^failed: not finished by its deadline .* no worker took it/);

    const stuck2 = await stuckService(-3600_000).create(uuid, { action: 'get_power_state' }, SystemPrincipal);
    const res = await post(uuid, { action: 'get_power_state' });
    expect(res.statusCode, res.body).toBe(202);
    expect((await t.services.redis.hget(t.services.keys.extra('bmc', 'requests', uuid), stuck2.id))).toContain('"state":"failed"');
    await waitDone(uuid, res.json().id);
  });

  it('an unfinished request within its deadline blocks; the worker sweep fails it once overdue', async () => {
    const uuid = await machine();
    const svc = stuckService(0);
    const fresh = await svc.create(uuid, { action: 'get_power_state' }, SystemPrincipal);
    expect((await post(uuid, { action: 'get_power_state' })).statusCode).toBe(409);
    expect(await stuckService(3600_000).expireOverdue()).toBeGreaterThanOrEqual(1);
    expect((await svc.read(uuid, fresh.id))!.state).toBe('failed');

    // overdue by the real clock: the running worker's sweep fails it without any GET
    const old = await stuckService(-3600_000).create(uuid, { action: 'get_power_state' }, SystemPrincipal);
    const end = Date.now() + 10_000;
    while ((await svc.read(uuid, old.id))!.state === 'pending') {
      if (Date.now() > end) throw new Error('the sweep did not fail the overdue request');
      await new Promise((r) => setTimeout(r, 50));
    }
    expect((await svc.read(uuid, old.id))!.status.msg).toContain('deadline');
    const events = (await t.redis.xrange(t.services.keys.events(), '-', '+')).map(([id, f]) => parseStreamEntry(id, f)).filter((e) => e.type === 'bmc' && e.key === uuid && (JSON.parse(e.object) as BmcRequest).id === old.id);
    expect(events.map((e) => e.action)).toEqual(['pending', 'failed']);
  });
});

describe('bad input', () => {
  it.each([
    ['unknown action', { action: 'explode' }, 400, 'body.action: must be one of set_power_state, get_power_state, set_next_boot_device, pxe_boot_persistent, power_cycle_bmc'],
    ['no action', {}, 400, 'required properties action'],
    ['unknown field', { action: 'get_power_state', force: true }, 400, 'force'],
    ['bad power parameter', { action: 'set_power_state', parameter: 'sideways' }, 400, 'parameter: must be one of on, off, soft, reset, cycle'],
    ['missing power parameter', { action: 'set_power_state' }, 400, 'parameter: required'],
    ['bad boot device', { action: 'set_next_boot_device', parameter: 'floppy' }, 400, 'parameter: must be one of pxe, disk, cdrom, bios, usb'],
    ['bad reset type', { action: 'power_cycle_bmc', parameter: 'lukewarm' }, 400, 'parameter: must be one of warm, cold'],
    ['parameter on get_power_state', { action: 'get_power_state', parameter: 'on' }, 400, 'parameter'],
    ['persistent on a power action', { action: 'set_power_state', parameter: 'on', persistent: true }, 400, 'persistent'],
    ['wrong type', { action: 'set_next_boot_device', parameter: 'pxe', efi: 'yes' }, 400, 'body.efi: must be boolean'],
  ])('%s', async (_name, payload, status, naming) => {
    const uuid = await machine();
    const res = await post(uuid, payload);
    expect(res.statusCode, res.body).toBe(status);
    const body = res.json();
    expect(body.code).toBe('INVALID');
    expect(body.messages.join(' ')).toContain(naming);
    expect(body.message).toBe(body.messages[0]);
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/bmc` })).json()).toEqual([]);
  });

  it.each([
    ['a machine without BMC params', {}, 'bmc/driver'],
    ['ipmi without bmc/address', { 'bmc/driver': 'ipmi' }, 'param bmc/address is required for the ipmi driver'],
    ['redfish with a blank bmc/address', { 'bmc/driver': 'redfish', 'bmc/address': '   ' }, 'param bmc/address is required for the redfish driver'],
    ['a malformed bmc/sim', { 'bmc/driver': 'sim', 'bmc/sim': { failNext: 'many' } }, 'bmc/sim'],
  ])('%s → 422 naming the param', async (_name, params, naming) => {
    const uuid = await machine(params);
    const res = await post(uuid, { action: 'get_power_state' });
    expect(res.statusCode, res.body).toBe(422);
    expect(res.json()).toMatchObject({ code: 'UNPROCESSABLE', kind: 'machines', key: uuid });
    expect(res.json().message).toContain(naming);
  });

  it('the routes are in the OpenAPI document with their schemas', async () => {
    const doc = (await t.call({ method: 'GET', url: '/api/v1/openapi.json' })).json();
    const post = doc.paths['/api/v1/machines/{key}/bmc'].post;
    expect(JSON.stringify(post.requestBody)).toContain('set_next_boot_device');
    expect(Object.keys(post.responses)).toContain('202');
    expect(doc.paths['/api/v1/machines/{key}/bmc/{id}'].get).toBeDefined();
  });

  it('bmc params from a profile count (one resolver)', async () => {
    await t.call({ method: 'POST', url: '/api/v1/profiles', payload: { name: 'sim-bmc', params: { 'bmc/driver': 'sim' } } });
    const uuid = await machine({}, { profiles: ['sim-bmc'] });
    const done = await run(uuid, { action: 'get_power_state' });
    expect(done.state).toBe('succeeded');
  });

  it('unknown machine and unknown request → 404', async () => {
    const missing = await post('00000000-0000-4000-8000-000000000000', { action: 'get_power_state' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ code: 'NOT_FOUND', kind: 'machines' });
    const uuid = await machine();
    const res = await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/bmc/not-a-request` });
    expect(res.statusCode).toBe(404);
    expect(res.json()).toMatchObject({ code: 'NOT_FOUND', kind: 'bmc', key: 'not-a-request' });
  });

  it('a locked machine refuses BMC requests with 423', async () => {
    const uuid = await machine({ 'bmc/driver': 'sim' }, { locked: true });
    const res = await post(uuid, { action: 'set_power_state', parameter: 'off' });
    expect(res.statusCode, res.body).toBe(423);
    expect(res.json()).toMatchObject({ code: 'LOCKED', key: uuid });
  });

  it('machine tokens may not use the BMC routes; readonly users may only read', async () => {
    const uuid = await machine();
    const token = (await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/token` })).json().token as string;
    expect((await post(uuid, { action: 'get_power_state' }, token)).statusCode).toBe(403);
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/bmc`, headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(403);
    const ro = await t.token('readonly');
    expect((await post(uuid, { action: 'get_power_state' }, ro)).statusCode).toBe(403);
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/bmc`, headers: { authorization: `Bearer ${ro}` } })).statusCode).toBe(200);
    expect((await t.call({ method: 'POST', url: `/api/v1/machines/${uuid}/bmc`, payload: { action: 'get_power_state' }, auth: false })).statusCode).toBe(401);
  });

  it('the BMC password never reaches requests, events or the timeline', async () => {
    const secret = 'never-show-this-pw';
    const uuid = await machine({ 'bmc/driver': 'sim', 'bmc/username': 'root', 'bmc/password': secret });
    const done = await run(uuid, { action: 'get_power_state' });
    expect(JSON.stringify(done)).not.toContain(secret);
    const all = [...(await t.redis.xrange(t.services.keys.events(), '-', '+')), ...(await t.redis.xrange(t.services.keys.timeline(uuid), '-', '+'))]
      .filter(([, f]) => f.includes('bmc') || f.includes('bmc.request'));
    expect(all.length).toBeGreaterThan(0);
    expect(JSON.stringify(all)).not.toContain(secret);
  });
});

describe('CLI', () => {
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const addr = t.app.server.address() as { port: number };
    env = { IRONFLOW_ENDPOINT: `http://127.0.0.1:${addr.port}`, IRONFLOW_TOKEN: await t.token('operator'), IRONFLOW_CREDENTIALS: '/nonexistent/ironflow-credentials.json' };
  });
  const cli = async (...argv: string[]) => {
    const lines: string[] = [];
    await runCli(parseArgs(argv), env, (s) => lines.push(s));
    return lines.join('\n');
  };

  it('power, bootdev and bmc list/show wait for and print the outcome', async () => {
    const uuid = await machine();
    const on = JSON.parse(await cli('power', uuid, 'on')) as BmcRequest;
    expect(on).toMatchObject({ state: 'succeeded', status: { msg: 'server power state set successful: on' } });
    expect((await machinePower(uuid)).state).toBe('on');
    expect(JSON.parse(await cli('power', uuid, 'status')).status.msg).toBe('server power state: on');
    const boot = JSON.parse(await cli('bootdev', uuid, 'pxe', '--persistent', '--efi')) as BmcRequest;
    expect(boot.status.msg).toBe('next boot device set successful: pxe (persistent, efi)');
    expect(boot.parameters).toEqual({ action: 'set_next_boot_device', parameter: 'pxe', persistent: true, efi: true });
    const list = JSON.parse(await cli('bmc', uuid, 'list')) as BmcRequest[];
    expect(list.map((r) => r.id)).toEqual([boot.id, expect.any(String), on.id]);
    expect(JSON.parse(await cli('bmc', uuid, 'show', on.id)).id).toBe(on.id);
    const table = await cli('bmc', uuid, 'list', '-o', 'table');
    expect(table.split('\n')[0]).toMatch(/^ID\s+STATE\s+MACHINE$/);
    expect(table.split('\n')[1]).toMatch(new RegExp(`^${boot.id}\\s+succeeded\\s+${uuid}$`));
    const queued = JSON.parse(await cli('power', uuid, 'off', '--wait', '0')) as BmcRequest;
    expect(queued.state).toBe('pending');
    await waitDone(uuid, queued.id);
  });

  it('a failed request and bad usage are errors with a message', async () => {
    const uuid = await machine({ 'bmc/driver': 'sim', 'bmc/sim': { failNext: 1, failMode: 'permanent' } });
    const err = await cli('power', uuid, 'cycle').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).message).toMatch(/failed: BMC error: sim: injected permanent failure/);
    expect((err as CliError).exitCode).toBe(1);
    const usage = await cli('power', uuid, 'sideways').catch((e: unknown) => e);
    expect((usage as CliError).exitCode).toBe(2);
    const bad = await cli('bootdev', uuid, 'floppy').catch((e: unknown) => e);
    expect((bad as CliError).exitCode).toBe(2);
    const noBmc = await machine({});
    const api = await cli('power', noBmc, 'on').catch((e: unknown) => e);
    expect((api as CliError).message).toMatch(/^422 UNPROCESSABLE: .*bmc\/driver/);
  });
});
