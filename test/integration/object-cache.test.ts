// The per-process cache of profiles, stages, Params and tasks (store/object-cache.ts) is never stale:
// a write made through another process is seen by the very next read here, even before this
// process's event tail has delivered it; and once the tail has caught up, reads are served from memory.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { SystemPrincipal } from '../../src/models/principal.js';
import { buildServices, type Services } from '../../src/services.js';
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js';

const connections: Redis[] = [];
let a: Services;
let b: Services;

function processServices(prefix: string, dataDir: string): Services {
  const config = loadConfig({ IRONFLOW_DATA_DIR: dataDir, IRONFLOW_REDIS_PREFIX: prefix, IRONFLOW_LOG_LEVEL: 'silent' });
  const connect = () => {
    const c = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
    connections.push(c);
    return c;
  };
  return buildServices(config, connect(), connect, pino({ level: 'silent' }));
}

beforeAll(async () => {
  const prefix = uniquePrefix('cache');
  const dataDir = mkdtempSync(join(tmpdir(), 'ironflow-cache-'));
  a = processServices(prefix, dataDir);
  b = processServices(prefix, dataDir);
  await a.store.ensureBuiltins();
});
afterAll(async () => {
  for (const s of [a, b]) {
    s.bus.close();
    await s.queues.close();
  }
  connections.forEach((c) => c.disconnect());
});

const machine = { uuid: '00000000-0000-4000-8000-00000000cafe', profiles: ['rack'] };
const lookup = async (s: Services) => {
  const hit = await s.params.lookup({ prefix: 'machines', obj: machine }, 'rack/slot');
  return hit.found ? hit.value : undefined;
};
const opts = { principal: SystemPrincipal };

it('reads what another process has just written, every time, however late its event tail is', async () => {
  // this process's tail delivers every event 30 ms late
  const apply = a.objectCache.apply.bind(a.objectCache);
  const late = vi.spyOn(a.objectCache, 'apply').mockImplementation((e) => void setTimeout(() => apply(e), 30));
  try {
    await b.store.create('profiles', { name: 'rack', params: { 'rack/slot': 0 } }, opts);
    expect(await lookup(a)).toBe(0);
    for (let i = 1; i <= 20; i++) {
      await new Promise((r) => setTimeout(r, i % 2 === 0 ? 50 : 0)); // sometimes the tail has caught up
      await b.store.update('profiles', 'rack', (p) => ({ ...p, params: { 'rack/slot': i } }), opts);
      expect(await lookup(a)).toBe(i);
    }
    await b.store.remove('profiles', 'rack', opts);
    expect(await lookup(a)).toBeUndefined();
    await b.store.create('profiles', { name: 'rack', params: { 'rack/slot': 'back' } }, opts);
    expect(await lookup(a)).toBe('back');
    expect(late).toHaveBeenCalled();
  } finally {
    late.mockRestore();
  }
});

it('serves from memory once this process has applied every write', async () => {
  const reads = vi.spyOn(a.store.backend, 'getMany');
  try {
    // until the tail has delivered the last write, the view reads the store
    await vi.waitFor(async () => {
      reads.mockClear();
      expect(await lookup(a)).toBe('back');
      expect(reads.mock.calls.filter(([prefix]) => prefix === 'profiles')).toEqual([]);
    }, { timeout: 5000, interval: 20 });
    // a write of a kind that is not cached does not invalidate anything
    await b.store.create('bootenvs', { name: 'cache-test-env' }, opts);
    reads.mockClear();
    expect(await lookup(a)).toBe('back');
  } finally {
    reads.mockRestore();
  }
});

it('hands out objects nobody can change', async () => {
  const p = (await a.params.source().getMany('profiles', ['rack']))[0]!;
  expect(() => {
    (p.params as Record<string, unknown>)['rack/slot'] = 'front';
  }).toThrow(TypeError);
  expect(await lookup(a)).toBe('back');
});
