// The sim driver and createBmcDriver against the shared test redis-server.
import type { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBmcDriver } from '../../src/bmc/create-driver.js';
import { BmcError, isTransient, type BmcConfig } from '../../src/bmc/driver.js';
import { SimDriver, simStateKey } from '../../src/bmc/sim.js';
import { connectTestRedis, uniquePrefix } from '../helpers/redis.js';

let redis: Redis;
const prefix = `${uniquePrefix('bmcsim')}:`;
const log = pino({ level: 'silent' });
let n = 0;

beforeAll(() => {
  redis = connectTestRedis();
});
afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

function cfg(sim: BmcConfig['sim'] = {}): BmcConfig {
  return { driver: 'sim', address: '', insecure: false, timeoutSeconds: 5, sim };
}
const machine = () => `m-${++n}`;
const make = (uuid: string, sim: BmcConfig['sim'] = {}) => createBmcDriver(cfg(sim), { redis, keyPrefix: prefix, machineUuid: uuid, log });

async function failure(p: Promise<unknown>): Promise<{ code: string; kind: string; message: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: string; kind: string; message: string };
  }
  throw new Error('expected a failure');
}

describe('sim driver', () => {
  it('keeps its state in redis, so a new driver instance sees it', async () => {
    const uuid = machine();
    const a = make(uuid);
    expect(a.name).toBe('sim');
    expect(await a.powerState()).toBe('off');
    await a.power('on');
    await a.setBootDevice('pxe', { persistent: true, efi: true });
    await a.resetBmc('cold');
    await a.close();

    const b = make(uuid);
    expect(await b.powerState()).toBe('on');
    expect(await redis.hgetall(simStateKey(prefix, uuid))).toMatchObject({
      power: 'on', bootDevice: 'pxe', persistent: 'true', efi: 'true', bmcResets: '1', lastAction: 'bmc reset cold',
    });
    expect(await make(machine()).powerState()).toBe('off'); // another machine is separate
  });

  it('every power action', async () => {
    const d = make(machine());
    const seen: string[] = [];
    for (const action of ['on', 'reset', 'soft', 'on', 'off', 'reset', 'cycle'] as const) {
      await d.power(action);
      seen.push(`${action}:${await d.powerState()}`);
    }
    expect(seen).toEqual(['on:on', 'reset:on', 'soft:off', 'on:on', 'off:off', 'reset:off', 'cycle:on']);
  });

  it('latencyMs delays every call', async () => {
    const d = make(machine(), { latencyMs: 150 });
    const started = Date.now();
    await d.powerState();
    await d.power('on');
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });

  it('failNext: the next N calls fail with failMode, counted in redis across instances', async () => {
    const uuid = machine();
    const sim = { failNext: 2, failMode: 'transient' as const };
    const first = await failure(make(uuid, sim).power('on'));
    expect(first).toMatchObject({ code: 'BMC_UNREACHABLE', kind: 'transient' });
    expect(isTransient(JSON.parse(JSON.stringify(first)))).toBe(true);
    // A driver re-created with the same params (as a retrying job would) does not re-arm the counter.
    expect(isTransient(await failure(make(uuid, sim).power('on')))).toBe(true);
    await make(uuid, sim).power('on');
    expect(await make(uuid, sim).powerState()).toBe('on');

    const perm = await failure(make(uuid, { failNext: 1, failMode: 'permanent' }).powerState());
    expect(perm).toMatchObject({ kind: 'permanent' });
    expect(perm).toBeInstanceOf(BmcError);
    expect(await make(uuid, { failNext: 1, failMode: 'permanent' }).powerState()).toBe('on');
  });

  it('powerOnDelayMs: on and cycle read off until the delay has passed', async () => {
    const uuid = machine();
    const d = make(uuid, { powerOnDelayMs: 1000 });
    const poweredOnAt = () => redis.hget(simStateKey(prefix, uuid), 'powerOnAt');
    const waitOn = async () => {
      const deadline = Date.now() + 10_000;
      while ((await d.powerState()) !== 'on') {
        if (Date.now() > deadline) throw new Error('never came on');
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await d.power('on');
    expect(await d.powerState()).toBe('off');
    const at = await poweredOnAt();
    await d.power('on'); // a second "on" does not push the completion time back
    expect(await poweredOnAt()).toBe(at);
    await waitOn();

    await d.power('cycle');
    expect(await d.powerState()).toBe('off');
    await waitOn();
  });

  it('state() exposes the parsed hash', async () => {
    const uuid = machine();
    const d = new SimDriver(cfg(), redis, prefix, uuid);
    await d.setBootDevice('bios', { persistent: false, efi: false });
    expect(await d.state()).toMatchObject({ power: 'off', bootDevice: 'bios', persistent: false, efi: false, bmcResets: 0 });
  });
});

describe('createBmcDriver', () => {
  const deps = () => ({ redis, keyPrefix: prefix, machineUuid: 'x', log });
  const base: BmcConfig = { driver: 'ipmi', address: '10.0.0.1', insecure: false, timeoutSeconds: 10 };
  const invalid: Array<[string, Partial<BmcConfig> | Record<string, unknown>, string]> = [
    ['unknown driver', { driver: 'telnet' }, 'bmc/driver'],
    ['ipmi without address', { address: '' }, 'bmc/address'],
    ['redfish without address', { driver: 'redfish', address: ' ' }, 'bmc/address'],
    ['zero timeout', { timeoutSeconds: 0 }, 'bmc/timeout-seconds'],
    ['bad port', { port: 70000 }, 'bmc/port'],
  ];
  for (const [name, over, param] of invalid) {
    it(`${name} → permanent BMC_CONFIG naming ${param}`, () => {
      let err: unknown;
      try {
        createBmcDriver({ ...base, ...over } as BmcConfig, deps());
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BmcError);
      expect(err).toMatchObject({ code: 'BMC_CONFIG', kind: 'permanent' });
      expect((err as Error).message).toContain(param);
    });
  }

  it('picks the driver by name', async () => {
    expect(createBmcDriver(base, deps()).name).toBe('ipmi');
    const rf = createBmcDriver({ ...base, driver: 'redfish' }, deps());
    expect(rf.name).toBe('redfish');
    await rf.close();
    expect(createBmcDriver({ ...base, driver: 'sim', address: '' }, deps()).name).toBe('sim');
  });
});
