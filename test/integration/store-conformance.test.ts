// One conformance suite for every backend: the object store must behave the same on Redis and in memory.
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { SystemPrincipal } from '../../src/models/principal.js';
import type { Backend } from '../../src/store/backend.js';
import { storeKeys } from '../../src/store/keys.js';
import { MemoryBackend } from '../../src/store/memory-backend.js';
import { ObjectStore } from '../../src/store/objects.js';
import { RedisBackend } from '../../src/store/redis-backend.js';
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js';

const connections: Redis[] = [];
afterAll(() => connections.forEach((c) => c.disconnect()));

const backends: [string, () => Backend][] = [
  ['memory', () => new MemoryBackend()],
  ['redis', () => {
    const redis = new Redis(testRedisUrl());
    connections.push(redis);
    return new RedisBackend({ redis, keys: storeKeys(uniquePrefix('conf')), eventsMaxLen: 1000 });
  }],
];

const opts = { principal: SystemPrincipal };
const q = (over: Partial<Parameters<ObjectStore['list']>[1]> = {}) => ({ filters: [], reverse: false, offset: 0, limit: 100, slim: [], ...over });

describe.each(backends)('store conformance: %s', (_name, make) => {
  const fresh = async () => {
    const store = new ObjectStore(make());
    await store.ensureBuiltins();
    await store.create('bootenvs', { name: 'local' }, opts);
    await store.create('bootenvs', { name: 'install' }, opts);
    return store;
  };

  it('creates with revision 1 and bumps it on every write', async () => {
    const s = await fresh();
    const a = await s.create('profiles', { name: 'p1', params: { x: 1 } }, opts);
    expect(a.revision).toBe(1);
    const b = await s.update('profiles', 'p1', (o) => ({ ...o, params: { x: 2 } }), opts);
    expect(b.revision).toBe(2);
    expect((await s.get('profiles', 'p1'))?.params).toEqual({ x: 2 });
  });

  it('refuses duplicate keys and unique index clashes, and frees unique values on change and delete', async () => {
    const s = await fresh();
    const m1 = await s.create('machines', { name: 'n1', hardwareAddrs: ['aa:bb:cc:dd:ee:01'], address: '10.0.0.1' }, opts);
    await expect(s.create('machines', { name: 'n1' }, opts)).rejects.toMatchObject({ code: 'CONFLICT' });
    await expect(s.create('machines', { name: 'n2', hardwareAddrs: ['AA-BB-CC-DD-EE-01'] }, opts)).rejects.toMatchObject({ code: 'CONFLICT' });
    await expect(s.create('machines', { name: 'n3', address: '10.0.0.1' }, opts)).rejects.toMatchObject({ code: 'CONFLICT' });
    await expect(s.create('machines', { uuid: m1.uuid, name: 'n4' }, opts)).rejects.toMatchObject({ code: 'CONFLICT' });
    await s.update('machines', m1.uuid as string, (o) => ({ ...o, name: 'renamed', hardwareAddrs: ['aa:bb:cc:dd:ee:02'] }), opts);
    expect(await s.get('machines', 'name:n1')).toBeUndefined();
    expect((await s.get('machines', 'name:renamed'))?.uuid).toBe(m1.uuid);
    await s.create('machines', { name: 'n1', hardwareAddrs: ['aa:bb:cc:dd:ee:01'] }, opts);
    await s.remove('machines', m1.uuid as string, opts);
    await s.create('machines', { name: 'again', address: '10.0.0.1', hardwareAddrs: ['aa:bb:cc:dd:ee:02'] }, opts);
  });

  it('a failed write leaves object and indexes untouched', async () => {
    const s = await fresh();
    await s.create('machines', { name: 'a', hardwareAddrs: ['00:00:00:00:00:0a'] }, opts);
    const b = await s.create('machines', { name: 'b', hardwareAddrs: ['00:00:00:00:00:0b'] }, opts);
    await expect(s.update('machines', b.uuid as string, (o) => ({ ...o, name: 'c', hardwareAddrs: ['00:00:00:00:00:0a'] }), opts)).rejects.toMatchObject({ code: 'CONFLICT' });
    expect((await s.get('machines', 'name:b'))?.revision).toBe(1);
    expect(await s.get('machines', 'name:c')).toBeUndefined();
    expect((await s.get('machines', 'hardwareAddrs:00:00:00:00:00:0b'))?.name).toBe('b');
  });

  it('honours expected revisions (If-Match)', async () => {
    const s = await fresh();
    await s.create('profiles', { name: 'p' }, opts);
    await s.replace('profiles', 'p', { name: 'p', description: 'one' }, { ...opts, ifMatch: 1 });
    await expect(s.replace('profiles', 'p', { name: 'p', description: 'two' }, { ...opts, ifMatch: 1 })).rejects.toMatchObject({ code: 'STALE' });
    expect((await s.get('profiles', 'p'))?.description).toBe('one');
  });

  it('serialises concurrent read-modify-writes without losing one', async () => {
    const s = await fresh();
    await s.create('profiles', { name: 'counter', params: { n: 0 } }, opts);
    await Promise.all(Array.from({ length: 20 }, () =>
      s.update('profiles', 'counter', (o) => ({ ...o, params: { n: ((o.params as { n: number }).n) + 1 } }), opts)));
    const final = await s.get('profiles', 'counter');
    expect((final?.params as { n: number }).n).toBe(20);
    expect(final?.revision).toBe(21);
  });

  it('lists with every operator, sort, reverse and paging', async () => {
    const s = await fresh();
    for (let i = 0; i < 12; i++) {
      await s.create('machines', { name: `m${String(i).padStart(2, '0')}`, bootEnv: i % 3 === 0 ? 'install' : 'local', currentTask: i - 1, address: `10.1.0.${i}` }, opts);
    }
    const names = async (query: Record<string, string>) => (await s.list('machines', s.parseQuery('machines', query))).items.map((m) => m.name);
    expect(await names({ bootEnv: 'install', sort: 'name' })).toEqual(['m00', 'm03', 'm06', 'm09']);
    expect(await names({ bootEnv: 'Ne(install)', sort: 'name', limit: '3' })).toEqual(['m01', 'm02', 'm04']);
    expect(await names({ currentTask: 'Lt(0)', sort: 'name' })).toEqual(['m00']);
    expect(await names({ currentTask: 'Lte(0)', sort: 'currentTask' })).toEqual(['m00', 'm01']);
    expect(await names({ currentTask: 'Gt(8)', sort: 'name' })).toEqual(['m10', 'm11']);
    expect(await names({ currentTask: 'Gte(9)', sort: 'currentTask', reverse: 'true' })).toEqual(['m11', 'm10']);
    expect(await names({ currentTask: 'Between(-1,1)', sort: 'name' })).toEqual(['m00', 'm01', 'm02']);
    expect(await names({ currentTask: 'Gt(9)' })).toEqual(['m11']);
    expect(await names({ name: 'In(m01,m05,zz)', sort: 'name' })).toEqual(['m01', 'm05']);
    expect(await names({ name: 'Nin(m01,m05)', bootEnv: 'install', sort: 'name' })).toEqual(['m00', 'm03', 'm06', 'm09']);
    expect(await names({ name: 'Re(^m1)', sort: 'name' })).toEqual(['m10', 'm11']);
    expect(await names({ sort: 'name', offset: '10', limit: '5' })).toEqual(['m10', 'm11']);
    expect(await names({ sort: 'name', reverse: 'true', limit: '2' })).toEqual(['m11', 'm10']);
    expect(await s.count('machines', s.parseQuery('machines', { bootEnv: 'local' }))).toBe(8);
    const page = await s.list('machines', s.parseQuery('machines', { bootEnv: 'local', limit: '3', offset: '3' }));
    expect(page.total).toBe(8);
    expect(page.items).toHaveLength(3);
  });

  it('filters machines by param values', async () => {
    const s = await fresh();
    await s.create('machines', { name: 'r1', params: { 'bmc/driver': 'redfish' } }, opts);
    await s.create('machines', { name: 'i1', params: { 'bmc/driver': 'ipmi' } }, opts);
    const res = await s.list('machines', s.parseQuery('machines', { 'bmc/driver': 'redfish' }));
    expect(res.items.map((m) => m.name)).toEqual(['r1']);
  });

  it('keeps `{index}:{value}` lookups in step with the object', async () => {
    const s = await fresh();
    const m = await s.create('machines', { name: 'look', hardwareAddrs: ['52:54:00:00:00:01', '52:54:00:00:00:02'] }, opts);
    expect((await s.get('machines', 'hardwareAddrs:52-54-00-00-00-02'))?.uuid).toBe(m.uuid);
    expect((await s.get('machines', `uuid:${String(m.uuid)}`))?.name).toBe('look');
    await expect(s.get('machines', 'bootEnv:local')).rejects.toMatchObject({ code: 'INVALID' });
  });

  it('follows a unique value to its new owner when another store (process) moves it', async () => {
    const backend = make();
    const a = new ObjectStore(backend);
    const b = new ObjectStore(backend);
    await a.ensureBuiltins();
    await a.create('bootenvs', { name: 'local' }, opts);
    const first = await b.create('machines', { name: 'moving', hardwareAddrs: ['52:54:00:00:0a:01'] }, opts);
    expect((await a.get('machines', 'name:moving'))?.uuid).toBe(first.uuid); // a now remembers the owner
    expect((await a.get('machines', 'hardwareAddrs:52:54:00:00:0a:01'))?.uuid).toBe(first.uuid);
    await b.update('machines', String(first.uuid), (o) => ({ ...o, name: 'moved', hardwareAddrs: [] }), opts);
    const second = await b.create('machines', { name: 'moving', hardwareAddrs: ['52:54:00:00:0A:01'] }, opts);
    expect((await a.get('machines', 'name:moving'))?.uuid).toBe(second.uuid);
    expect((await a.get('machines', 'hardwareAddrs:52:54:00:00:0a:01'))?.uuid).toBe(second.uuid);
    expect((await a.get('machines', 'name:moved'))?.uuid).toBe(first.uuid);
    await b.remove('machines', String(second.uuid), opts);
    expect(await a.get('machines', 'name:moving')).toBeUndefined();
    expect(await a.get('machines', 'hardwareAddrs:52:54:00:00:0a:01')).toBeUndefined();
  });

  it('publishes one event per successful write, after it, with the public object', async () => {
    const s = await fresh();
    const before = await s.backend.readEvents('0', 10_000);
    const m = await s.create('machines', { name: 'ev' }, opts);
    await expect(s.create('machines', { name: 'ev' }, opts)).rejects.toThrow();
    await s.remove('machines', m.uuid as string, opts);
    const after = (await s.backend.readEvents(before.at(-1)?.id ?? '0', 100)).filter((e) => e.type === 'machines');
    expect(after.map((e) => `${e.type}.${e.action}.${e.key}`)).toEqual([`machines.create.${m.uuid}`, `machines.delete.${m.uuid}`]);
    expect(JSON.parse(after[0]!.object).secret).toBeUndefined();
    expect(after[0]!.principal).toBe('system:ironflow');
  });
});

describe('filters on fields without an index', () => {
  it('are scanned, not mistaken for params', async () => {
    const s = new ObjectStore(new MemoryBackend());
    await s.ensureBuiltins();
    await s.create('bootenvs', { name: 'local' }, opts);
    await s.create('machines', { name: 'arm1', arch: 'arm64', locked: true }, opts);
    await s.create('machines', { name: 'x1' }, opts);
    const names = async (query: Record<string, string>) => (await s.list('machines', s.parseQuery('machines', query))).items.map((m) => m.name);
    expect(await names({ arch: 'arm64' })).toEqual(['arm1']);
    expect(await names({ locked: 'true' })).toEqual(['arm1']);
    expect(await names({ arch: 'Ne(arm64)' })).toEqual(['x1']);
    expect(await names({ description: 'Re(^$)', sort: 'name' })).toEqual(['arm1', 'x1']);
  });
});
