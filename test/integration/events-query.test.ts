// Event queries (SPEC 7.3): a machine's timeline and the global stream, newest first, filtered by time,
// id and type, paged by cursor with no duplicate and no gap; bad parameters are 400s; retention trims
// by age. Also the CLI over a listening server.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueMachineToken } from '../../src/auth/machine-tokens.js';
import { parseArgs } from '../../src/cli/args.js';
import { runCli } from '../../src/cli/commands.js';
import { runRetention } from '../../src/events/retention.js';
import { MAX_SCANNED_PER_PAGE } from '../../src/events/stream-query.js';
import { SystemPrincipal } from '../../src/models/principal.js';
import { buildServices } from '../../src/services.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { loadConfig } from '../../src/config.js';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js';

interface Entry { id: string; type: string; state: string; body: unknown; createdAt: string; machine: string }

const T0 = Date.parse('2024-05-01T12:00:00Z');
const N = 300;
const typeOf = (i: number) => (i % 3 === 0 ? 'user.1000' : i % 3 === 1 ? 'job.running' : 'machine.bootenv_changed');
const idOf = (i: number) => `${T0 + i * 1000}-0`;
const iso = (ms: number) => new Date(ms).toISOString();

let t: TestApp;
let uuid: string;
let other: string;

async function all(url: string, auth?: string): Promise<{ entries: Entry[]; pages: number; links: string[] }> {
  const entries: Entry[] = [];
  const links: string[] = [];
  let next: string | undefined = url;
  let pages = 0;
  while (next) {
    const res = await t.call({ method: 'GET', url: next, ...(auth ? { auth } : {}) });
    expect(res.statusCode, res.body).toBe(200);
    entries.push(...(res.json() as Entry[]));
    pages++;
    const cursor = res.headers['x-next-cursor'] as string | undefined;
    const link = res.headers.link as string | undefined;
    if (cursor) {
      expect(link).toMatch(/^<[^>]+>; rel="next"$/);
      links.push(link!);
      next = /^<([^>]+)>/.exec(link!)![1];
      expect(new URL(next!, 'http://x').searchParams.get('cursor')).toBe(cursor);
    } else {
      expect(link).toBeUndefined();
      next = undefined;
    }
    if (pages > 500) throw new Error('paging does not end');
  }
  return { entries, pages, links };
}

const expected = (pred: (i: number) => boolean) => Array.from({ length: N }, (_, i) => i).filter(pred).reverse().map(idOf);

beforeAll(async () => {
  t = await createTestApp();
  uuid = String((await t.services.store.create('machines', { name: 'eq-1' }, { principal: SystemPrincipal })).uuid);
  other = String((await t.services.store.create('machines', { name: 'eq-2' }, { principal: SystemPrincipal })).uuid);
  const pipe = t.redis.pipeline();
  for (let i = 0; i < N; i++) {
    pipe.xadd(t.services.keys.timeline(uuid), idOf(i), 'type', typeOf(i), 'state', 'running', 'body', JSON.stringify({ i }), 'createdAt', iso(T0 + i * 1000));
  }
  await pipe.exec();
});
afterAll(async () => t.close());

describe('GET /api/v1/machines/{key}/events', () => {
  it('pages the whole timeline newest first with cursors: no duplicate, no gap', async () => {
    const { entries, pages } = await all(`/api/v1/machines/${uuid}/events?limit=47`);
    expect(pages).toBe(Math.ceil(N / 47));
    expect(entries.map((e) => e.id)).toEqual(expected(() => true));
    expect(entries[0]).toEqual({ id: idOf(N - 1), type: typeOf(N - 1), state: 'running', body: { i: N - 1 }, createdAt: iso(T0 + (N - 1) * 1000), machine: uuid });
  });

  it('defaults to 100 entries and addresses the machine by name too', async () => {
    const res = await t.call({ method: 'GET', url: '/api/v1/machines/name:eq-1/events' });
    expect(res.json()).toHaveLength(100);
    expect(res.headers['x-next-cursor']).toBeTruthy();
  });

  it('filters by type glob across pages (every match, once, in order)', async () => {
    const { entries } = await all(`/api/v1/machines/${uuid}/events?type=user.*&limit=30`);
    expect(entries.map((e) => e.id)).toEqual(expected((i) => i % 3 === 0));
    const two = await all(`/api/v1/machines/${uuid}/events?type=${encodeURIComponent('user.*,job.?unning')}&limit=33`);
    expect(two.entries.map((e) => e.id)).toEqual(expected((i) => i % 3 !== 2));
    expect((await all(`/api/v1/machines/${uuid}/events?type=nothing.*`)).entries).toEqual([]);
  });

  it('bounds by time: since inclusive, until exclusive, combined with type and paging', async () => {
    const since = iso(T0 + 50_000);
    const until = iso(T0 + 150_000);
    const { entries } = await all(`/api/v1/machines/${uuid}/events?since=${since}&until=${until}&limit=9`);
    expect(entries.map((e) => e.id)).toEqual(expected((i) => i >= 50 && i < 150));
    const typed = await all(`/api/v1/machines/${uuid}/events?since=${since}&until=${until}&type=job.*&limit=7`);
    expect(typed.entries.map((e) => e.id)).toEqual(expected((i) => i >= 50 && i < 150 && i % 3 === 1));
    const offset = await all(`/api/v1/machines/${uuid}/events?since=${encodeURIComponent('2024-05-01T14:00:50+02:00')}&until=${encodeURIComponent('2024-05-01T12:01:00.000Z')}`);
    expect(offset.entries.map((e) => e.id)).toEqual(expected((i) => i >= 50 && i < 60));
  });

  it('bounds by event id, both ends exclusive', async () => {
    const { entries } = await all(`/api/v1/machines/${uuid}/events?since=${idOf(10)}&until=${idOf(20)}`);
    expect(entries.map((e) => e.id)).toEqual(expected((i) => i > 10 && i < 20));
    expect((await all(`/api/v1/machines/${uuid}/events?since=${idOf(20)}&until=${idOf(10)}`)).entries).toEqual([]);
  });

  it('reads a sparse type filter in bounded chunks, handing back a cursor instead of scanning the stream', async () => {
    const sparse = String((await t.services.store.create('machines', { name: 'eq-sparse' }, { principal: SystemPrincipal })).uuid);
    const key = t.services.keys.timeline(sparse);
    await t.redis.xadd(key, '1000-0', 'type', 'user.1001', 'state', 'failed', 'body', 'null', 'createdAt', iso(1000));
    const total = MAX_SCANNED_PER_PAGE + 5000;
    for (let start = 0; start < total; start += 5000) {
      const pipe = t.redis.pipeline();
      for (let i = start; i < start + 5000; i++) pipe.xadd(key, `${2000 + i}-0`, 'type', 'noise', 'state', '', 'body', 'null', 'createdAt', iso(2000 + i));
      await pipe.exec();
    }
    const first = await t.call({ method: 'GET', url: `/api/v1/machines/${sparse}/events?type=user.*` });
    expect(first.json()).toEqual([]);
    const cursor = first.headers['x-next-cursor'] as string;
    expect(cursor).toBeTruthy();
    const second = await t.call({ method: 'GET', url: `/api/v1/machines/${sparse}/events?type=user.*&cursor=${cursor}` });
    expect(second.json().map((e: Entry) => e.type)).toEqual(['user.1001']);
    expect(second.headers['x-next-cursor']).toBeUndefined();
  });

  it.each([
    ['since', 'yesterday'], ['since', '2024-13-45T00:00:00Z'], ['until', '2024-05-01'], ['until', '12-x'],
    ['cursor', 'not-a-cursor'], ['cursor', Buffer.from('abc').toString('base64url')], ['limit', '0'], ['limit', '1001'], ['limit', 'ten'], ['limit', '-5'],
  ])('refuses %s=%s (400)', async (name, value) => {
    const res = await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/events?${name}=${encodeURIComponent(value)}` });
    expect(res.statusCode).toBe(400);
    expect(res.json().message).toMatch(new RegExp(`^${name}: `));
  });

  it('404 for an unknown machine; a machine token reads only its own timeline', async () => {
    expect((await t.call({ method: 'GET', url: '/api/v1/machines/name:nope/events' })).statusCode).toBe(404);
    const m = (await t.services.store.get('machines', uuid))!;
    const token = issueMachineToken(t.services.signer, m, 600).token;
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/events?limit=1`, auth: token })).statusCode).toBe(200);
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/${other}/events`, auth: token })).statusCode).toBe(403);
    expect((await t.call({ method: 'GET', url: '/api/v1/events', auth: token })).statusCode).toBe(403);
  });
});

describe('GET /api/v1/events', () => {
  it('maps store events and timeline publications to the entry shape, newest first', async () => {
    const created = await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'eq-global' } });
    const key = created.json().uuid as string;
    await t.services.timeline.record(key, { type: 'user.1042', state: 'succeeded', body: { code: 1042, message: 'ok' } }, SystemPrincipal);
    const res = await t.call({ method: 'GET', url: '/api/v1/events?limit=2' });
    const [tl, mc] = res.json() as Entry[];
    expect(tl).toMatchObject({ type: 'user.1042', state: 'succeeded', body: { code: 1042, message: 'ok' }, machine: key });
    expect(mc).toMatchObject({ type: 'machines.create', state: '', machine: key, body: { uuid: key, name: 'eq-global' } });
    expect(BigInt(tl!.id.split('-')[0]!)).toBeGreaterThanOrEqual(BigInt(mc!.id.split('-')[0]!));
    const typed = await all('/api/v1/events?type=machines.*&limit=2');
    expect(typed.entries.length).toBeGreaterThanOrEqual(4);
    expect(typed.entries.every((e) => e.type.startsWith('machines.'))).toBe(true);
    expect(new Set(typed.entries.map((e) => e.id)).size).toBe(typed.entries.length);
  });

  it('shows user records to admins only', async () => {
    await t.call({ method: 'POST', url: '/api/v1/users', payload: { name: 'eq-user', role: 'readonly', password: 'eq-user-password' } });
    const adminView = (await t.call({ method: 'GET', url: '/api/v1/events?type=users.*' })).json() as Entry[];
    expect(adminView.some((e) => e.type === 'users.create')).toBe(true);
    const ro = await t.token('readonly');
    const roView = await t.call({ method: 'GET', url: '/api/v1/events?type=users.*', auth: ro });
    expect(roView.statusCode).toBe(200);
    expect(roView.json()).toEqual([]);
    expect((await t.call({ method: 'GET', url: '/api/v1/events?limit=1000', auth: ro })).json().some((e: Entry) => e.type.startsWith('users.'))).toBe(false);
  });
});

describe('OpenAPI', () => {
  it('documents the event routes and the machine-facing ones', async () => {
    const doc = (await t.call({ method: 'GET', url: '/api/v1/openapi.json' })).json() as { paths: Record<string, Record<string, { parameters?: { name: string }[] }>> };
    expect(doc.paths['/api/v1/events']?.get?.parameters?.map((p) => p.name).sort()).toEqual(['cursor', 'limit', 'since', 'type', 'until']);
    for (const path of ['/api/v1/machines/{key}/events', '/api/v1/subscriptions/{key}/deliveries', '/metadata', '/events', '/phone-home']) expect(doc.paths[path], path).toBeDefined();
  });
});

describe('retention', () => {
  it('trims the global stream and timelines by eventRetentionDays (0 keeps everything)', async () => {
    const prefix = uniquePrefix('ret');
    const conns: Redis[] = [];
    const connect = () => {
      const c = new Redis(testRedisUrl(), { maxRetriesPerRequest: 1 });
      conns.push(c);
      return c;
    };
    const config = loadConfig({ IRONFLOW_REDIS_PREFIX: prefix, IRONFLOW_DATA_DIR: t.services.config.dataDir, IRONFLOW_LOG_LEVEL: 'silent' });
    const s = buildServices(config, connect(), connect, pino({ level: 'silent' }));
    try {
      const old = Date.now() - 10 * 86_400_000;
      for (let i = 0; i < 5; i++) await s.redis.xadd(s.keys.events(), `${old + i}-0`, 'type', 'machines', 'action', 'save', 'key', 'k', 'principal', 'system:x', 'time', iso(old), 'object', '{}');
      const m = await s.store.create('machines', { name: 'ret-1' }, { principal: SystemPrincipal, tolerateMissingRefs: true });
      const tl = s.keys.timeline(String(m.uuid));
      for (let i = 0; i < 5; i++) await s.redis.xadd(tl, `${old + i}-0`, 'type', 'user.1000', 'state', '', 'body', 'null', 'createdAt', iso(old));
      await s.timeline.record(String(m.uuid), { type: 'user.1001' }, SystemPrincipal);
      await s.prefs.set({ eventRetentionDays: '0' });
      expect(await runRetention(s)).toEqual({ removed: 0, timelines: 0 });
      expect(await s.redis.xlen(tl)).toBe(6);
      await s.prefs.set({ eventRetentionDays: '11' });
      expect((await runRetention(s)).removed).toBe(0);
      await s.prefs.set({ eventRetentionDays: '9' });
      const r = await runRetention(s);
      expect(r).toEqual({ removed: 10, timelines: 1 });
      expect((await s.redis.xrange(tl, '-', '+')).map(([, f]) => f[1])).toEqual(['user.1001']);
      expect((await s.redis.xrange(s.keys.events(), '-', '+')).every(([id]) => Number(id.split('-')[0]) > old + 10)).toBe(true);
    } finally {
      s.bus.close();
      await s.queues.close();
      conns.forEach((c) => c.disconnect());
    }
  });
});

describe('CLI', () => {
  it('events list and timeline use the query API; events tail follows the WebSocket', async () => {
    const url = await t.app.listen({ port: 0, host: '127.0.0.1' });
    const env = { IRONFLOW_ENDPOINT: url, IRONFLOW_TOKEN: await t.token('admin'), IRONFLOW_CREDENTIALS: '/nonexistent/creds.json' };
    const cli = async (...argv: string[]) => {
      const out: string[] = [];
      await runCli(parseArgs(argv), env, (s) => out.push(s));
      return out;
    };
    const listed = JSON.parse((await cli('timeline', uuid, '--type', 'user.*', '--limit', '5'))[0]!) as Entry[];
    expect(listed.map((e) => e.id)).toEqual(expected((i) => i % 3 === 0).slice(0, 5));
    const windowed = JSON.parse((await cli('events', 'list', '--machine', uuid, '--since', idOf(5), '--until', idOf(9)))[0]!) as Entry[];
    expect(windowed.map((e) => e.id)).toEqual([idOf(8), idOf(7), idOf(6)]);
    await expect(cli('events', 'list', '--since', 'soon')).rejects.toThrow(/400 INVALID: since/);

    const tail = cli('events', 'tail', '--machine', uuid, '--type', 'user.*', '--max', '3');
    await new Promise((r) => setTimeout(r, 400));
    for (const code of [1001, 1002, 1003]) {
      await t.services.timeline.record(uuid, { type: 'job.noise' }, SystemPrincipal);
      await t.services.timeline.record(uuid, { type: `user.${code}` }, SystemPrincipal);
    }
    const lines = (await tail).map((l) => JSON.parse(l) as { type: string; action: string; key: string });
    expect(lines.map((e) => `${e.type}/${e.action}/${e.key}`)).toEqual(['user.1001', 'user.1002', 'user.1003'].map((a) => `timeline/${a}/${uuid}`));
  });
});
