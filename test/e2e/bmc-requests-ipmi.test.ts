// BMC requests end to end: the API and the real BullMQ worker driving a real ipmi_sim through ipmitool,
// and the Redfish test service over HTTP.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BmcRequest } from '../../src/bmc/requests.js';
import { startBmcWorker } from '../../src/jobs/bmc-worker.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { startIpmiSim, type IpmiSim } from '../helpers/ipmi-sim.js';
import { requirePrograms } from '../helpers/peers.js';
import { startRedfishServer, type RedfishServer } from '../helpers/redfish-server.js';

const CORE = join(import.meta.dirname, '..', '..', 'content', 'core');
const PASSWORD = 'Sekr1t-pw-e2e';
const ipmiEnabled = requirePrograms('ipmitool', 'ipmi_sim');

let t: TestApp;
let stopWorker: (() => Promise<void>) | undefined;
let n = 0;

beforeAll(async () => {
  t = await createTestApp({ content: [CORE] });
  stopWorker = await startBmcWorker(t.services);
});
afterAll(async () => {
  await stopWorker?.();
  await t?.close();
});

async function machine(params: Record<string, unknown>): Promise<string> {
  const res = await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: `e2e-bmc-${++n}`, params } });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().uuid as string;
}

async function run(uuid: string, payload: Record<string, unknown>, timeoutMs = 60_000): Promise<BmcRequest> {
  const res = await t.call({ method: 'POST', url: `/api/v1/machines/${uuid}/bmc`, payload });
  expect(res.statusCode, res.body).toBe(202);
  const id = res.json().id as string;
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = (await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/bmc/${id}` })).json() as BmcRequest;
    if (r.state === 'succeeded' || r.state === 'failed') return r;
    if (Date.now() > end) throw new Error(`request still ${r.state}: ${r.status.msg}`);
    await new Promise((res2) => setTimeout(res2, 100));
  }
}

const power = async (uuid: string) => ((await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}` })).json().power as { state: string }).state;

describe.skipIf(!ipmiEnabled)('ipmi: requests against ipmi_sim', () => {
  let sim: IpmiSim;
  let uuid: string;
  beforeAll(async () => {
    sim = await startIpmiSim({ user: 'admin', password: PASSWORD });
    uuid = await machine({ 'bmc/driver': 'ipmi', 'bmc/address': '127.0.0.1', 'bmc/port': sim.port, 'bmc/username': 'admin', 'bmc/password': PASSWORD, 'bmc/timeout-seconds': 10 });
  });
  afterAll(async () => sim?.close());

  it('off, then cycle: the power state changes and shows on machine.power', async () => {
    const off = await run(uuid, { action: 'set_power_state', parameter: 'off' });
    expect(off).toMatchObject({ state: 'succeeded', status: { msg: 'server power state set successful: off', power: 'off' } });
    expect(sim.readState().power).toBe('off');
    expect(await power(uuid)).toBe('off');

    const cycle = await run(uuid, { action: 'set_power_state', parameter: 'cycle' });
    expect(cycle).toMatchObject({ state: 'succeeded', status: { msg: 'server power state set successful: cycle', power: 'on' } });
    expect(sim.readState().power).toBe('on');
    expect(await power(uuid)).toBe('on');

    const before = sim.events().length;
    const again = await run(uuid, { action: 'set_power_state', parameter: 'cycle' });
    expect(again.state).toBe('succeeded');
    expect(sim.events().slice(before)).toEqual(['power 0', 'power 1']);

    const status = await run(uuid, { action: 'get_power_state' });
    expect(status.status.msg).toBe('server power state: on');
  });

  it('a power command whose answer times out is verified by reading the state back, not repeated', async () => {
    const slow = await machine({ 'bmc/driver': 'ipmi', 'bmc/address': '127.0.0.1', 'bmc/port': sim.port, 'bmc/username': 'admin', 'bmc/password': PASSWORD, 'bmc/timeout-seconds': 3 });
    expect((await run(slow, { action: 'set_power_state', parameter: 'on' })).state).toBe('succeeded');
    const before = sim.events().length;
    sim.setHangSeconds(4);
    let done: BmcRequest;
    try {
      done = await run(slow, { action: 'set_power_state', parameter: 'off' });
    } finally {
      sim.setHangSeconds(0);
    }
    expect(done).toMatchObject({ state: 'succeeded', status: { msg: 'server power state set successful: off (verified after a timeout)', power: 'off' } });
    expect(sim.events().slice(before)).toEqual(['power 0']);
    expect(await power(slow)).toBe('off');
  });

  it('next boot device pxe, persistent, efi', async () => {
    const done = await run(uuid, { action: 'set_next_boot_device', parameter: 'pxe', persistent: true, efi: true });
    expect(done).toMatchObject({ state: 'succeeded', status: { msg: 'next boot device set successful: pxe (persistent, efi)' } });
    expect(sim.readState().boot).toBe('pxe');
    const usb = await run(uuid, { action: 'set_next_boot_device', parameter: 'usb' });
    expect(usb.state).toBe('failed');
    expect(usb.status.msg).toMatch(/^failed: BMC does not support this: .*usb/);
  });

  it('a wrong password fails at once (no retries) and the password is never recorded', async () => {
    const bad = await machine({ 'bmc/driver': 'ipmi', 'bmc/address': '127.0.0.1', 'bmc/port': sim.port, 'bmc/username': 'admin', 'bmc/password': 'wrong-password', 'bmc/timeout-seconds': 10 });
    const done = await run(bad, { action: 'get_power_state' });
    expect(done.state).toBe('failed');
    expect(done.status.msg).toMatch(/^failed: BMC refused the credentials: /);
    expect(done.status.msg).not.toMatch(/attempts/);
    const stored = [...(await t.redis.xrange(t.services.keys.events(), '-', '+')), ...(await t.redis.xrange(t.services.keys.timeline(uuid), '-', '+'))];
    expect(JSON.stringify(stored)).not.toContain(PASSWORD);
    expect(JSON.stringify(stored)).not.toContain('wrong-password');
  });
});

describe('redfish: requests against the Redfish test service', () => {
  let server: RedfishServer;
  let uuid: string;
  beforeAll(async () => {
    server = await startRedfishServer({ powerDelayMs: 300 });
    uuid = await machine({ 'bmc/driver': 'redfish', 'bmc/address': server.url, 'bmc/username': 'admin', 'bmc/password': 'password', 'bmc/timeout-seconds': 5 });
  });
  afterAll(async () => server?.close());

  it('power on waits for the delayed state; off; boot device; BMC reset', async () => {
    const on = await run(uuid, { action: 'set_power_state', parameter: 'on' });
    expect(on).toMatchObject({ state: 'succeeded', status: { msg: 'server power state set successful: on', power: 'on' } });
    expect(server.system().power).toBe('On');
    expect(await power(uuid)).toBe('on');

    const boot = await run(uuid, { action: 'pxe_boot_persistent', efi: true });
    expect(boot.status.msg).toBe('next boot device set successful: pxe (persistent, efi)');
    expect(server.system().boot).toEqual({ target: 'Pxe', enabled: 'Continuous', mode: 'UEFI' });

    const off = await run(uuid, { action: 'set_power_state', parameter: 'off' });
    expect(off.status.msg).toBe('server power state set successful: off');
    expect(server.system().power).toBe('Off');
    expect(await power(uuid)).toBe('off');

    const reset = await run(uuid, { action: 'power_cycle_bmc', parameter: 'warm' });
    expect(reset).toMatchObject({ state: 'succeeded', status: { msg: 'bmc reset successful: warm' } });
    expect(server.managerResets.length).toBe(1);
  });

  it('503s are retried and the request still succeeds', async () => {
    server.failNext(2, 503);
    const done = await run(uuid, { action: 'get_power_state' });
    expect(done).toMatchObject({ state: 'succeeded', status: { msg: 'server power state: off' } });
    expect(server.requests.filter((r) => r.status === 503).length).toBeGreaterThanOrEqual(2);
  });

  it('a wrong password fails at once', async () => {
    const bad = await machine({ 'bmc/driver': 'redfish', 'bmc/address': server.url, 'bmc/username': 'admin', 'bmc/password': 'nope', 'bmc/timeout-seconds': 5 });
    const done = await run(bad, { action: 'set_power_state', parameter: 'on' });
    expect(done.state).toBe('failed');
    expect(done.status.msg).toMatch(/^failed: BMC refused the credentials: .*401/);
  });
});
