// The WebSocket hub (SPEC 7.2) over real sockets with the `ws` client: auth, register/deregister acks,
// wildcards, keys with dots, replay since an id across a disconnect (no gap, no duplicate), events
// from a second api instance, and a slow client cut off with 1013 while a normal one keeps up.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { buildApp } from '../../src/app.js';
import { issueMachineToken } from '../../src/auth/machine-tokens.js';
import { issueUserToken } from '../../src/auth/users.js';
import { loadConfig } from '../../src/config.js';
import { parseStreamEntry } from '../../src/events/bus.js';
import { startMachineEvents } from '../../src/events/machine-events.js';
import { SystemPrincipal } from '../../src/models/principal.js';
import { buildServices, initialiseStore, type Services } from '../../src/services.js';
import { ADMIN_PASSWORD, FIXTURE_CONTENT } from '../helpers/app.js';
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js';

interface Msg { id: string; type: string; action: string; key: string; principal: string; time: string; object: Record<string, unknown> }

interface Instance { app: FastifyInstance; s: Services; url: string; close(): Promise<void> }

const prefix = uniquePrefix('ws');

async function instance(env: Record<string, string> = {}): Promise<Instance> {
  const config = loadConfig({
    IRONFLOW_DATA_DIR: mkdtempSync(join(tmpdir(), 'ironflow-ws-')), IRONFLOW_ADMIN_PASSWORD: ADMIN_PASSWORD, IRONFLOW_REDIS_PREFIX: prefix,
    IRONFLOW_LOG_LEVEL: 'silent', IRONFLOW_SECRET_KEY: 'ef'.repeat(32), ...env,
  });
  const conns: Redis[] = [];
  const connect = (o: { blocking?: boolean }) => {
    const c = new Redis(testRedisUrl(), { maxRetriesPerRequest: o.blocking ? null : 1 });
    conns.push(c);
    return c;
  };
  const s = buildServices(config, connect({}), connect, pino({ level: 'silent' }));
  await initialiseStore(s, [FIXTURE_CONTENT]);
  const app = await buildApp(s);
  const url = (await app.listen({ port: 0, host: '127.0.0.1' })).replace(/^http/, 'ws');
  return {
    app, s, url, async close() {
      await app.close();
      s.bus.close();
      await s.queues.close();
      conns.forEach((c) => c.disconnect());
    },
  };
}

class Client {
  readonly messages: Msg[] = [];
  private waiters: (() => void)[] = [];
  closed: { code: number; reason: string } | undefined;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (d) => {
      this.messages.push(JSON.parse(d.toString()) as Msg);
      this.waiters.forEach((w) => w());
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.waiters.forEach((w) => w());
    });
  }

  events(): Msg[] {
    return this.messages.filter((m) => m.type !== 'websocket');
  }

  async waitFor<T>(find: (c: Client) => T | undefined | false, timeoutMs = 10_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = find(this);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`timed out; got ${JSON.stringify(this.messages.slice(-5)).slice(0, 800)}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 200);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
      this.waiters = [];
    }
  }

  /** sends a command and waits for its acknowledgement */
  async command(text: string): Promise<Msg> {
    const [verb, pattern] = text.split(/\s+/);
    const seen = this.messages.length;
    this.ws.send(text);
    return this.waitFor((c) => c.messages.slice(seen).find((m) => m.type === 'websocket' && m.action === verb && m.key === pattern));
  }

  close(): void {
    this.ws.close();
  }
}

function open(url: string, opts: { token?: string; query?: string } = {}): Promise<Client> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url}/api/v1/ws${opts.query ? `?token=${encodeURIComponent(opts.query)}` : ''}`, { headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {} });
    const c = new Client(ws);
    ws.once('open', () => resolve(c));
    ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
    ws.once('error', reject);
  });
}

let a: Instance;
let b: Instance;
let admin: string;
let stopDerivation: () => Promise<void>;
const clients: Client[] = [];
const client = async (url: string, opts: { token?: string; query?: string } = { token: admin }) => {
  const c = await open(url, opts);
  clients.push(c);
  return c;
};
const system = { principal: SystemPrincipal };

beforeAll(async () => {
  a = await instance({ IRONFLOW_WS_MAX_BUFFER: '65536' });
  b = await instance();
  admin = (await issueUserToken(a.s.store, a.s.signer, 'admin', ADMIN_PASSWORD, 3600)).token;
  stopDerivation = await startMachineEvents(a.s);
});
afterAll(async () => {
  clients.forEach((c) => c.ws.terminate());
  await stopDerivation?.();
  await a?.close();
  await b?.close();
});

describe('WebSocket /api/v1/ws', () => {
  it('needs a token (header or ?token=); readonly may subscribe', async () => {
    await expect(open(a.url)).rejects.toMatchObject({ status: 401 });
    await expect(open(a.url, { query: 'garbage' })).rejects.toMatchObject({ status: 401 });
    const byQuery = await client(a.url, { query: admin });
    expect((await byQuery.command('register machines.*.*')).object).toMatchObject({ ok: true });
    await a.s.store.create('users', { name: 'ws-ro', role: 'readonly', password: 'ws-ro-password' }, system);
    const ro = (await issueUserToken(a.s.store, a.s.signer, 'ws-ro', 'ws-ro-password', 600)).token;
    const roClient = await client(a.url, { token: ro });
    expect((await roClient.command('register *.*.*')).object).toMatchObject({ ok: true });
    await a.s.store.create('users', { name: 'ws-hidden', role: 'readonly', password: 'ws-hidden-password' }, system);
    await a.s.store.create('profiles', { name: 'ws-after-user' }, system);
    await roClient.waitFor((c) => c.events().find((m) => m.key === 'ws-after-user'));
    expect(roClient.events().some((m) => m.type === 'users')).toBe(false);
  });

  it('acknowledges register and deregister with websocket events and honours wildcards', async () => {
    const c = await client(a.url);
    const ack = await c.command('register *.create.*');
    expect(ack).toMatchObject({ type: 'websocket', action: 'register', key: '*.create.*', object: { ok: true } });
    const exact = await client(a.url);
    const m = await a.s.store.create('machines', { name: 'ws-wild' }, system);
    await exact.command(`register machines.update.${String(m.uuid)}`);
    await a.s.store.create('profiles', { name: 'ws-wild-p' }, system);
    await a.s.store.update('machines', String(m.uuid), (o) => ({ ...o, description: 'x' }), { ...system, action: 'update' });
    await c.waitFor((x) => x.events().find((e) => e.type === 'profiles' && e.key === 'ws-wild-p'));
    expect(c.events().find((e) => e.type === 'machines' && e.key === m.uuid)).toMatchObject({ action: 'create', object: { name: 'ws-wild' } });
    expect(c.events().every((e) => e.action === 'create')).toBe(true);
    const upd = await exact.waitFor((x) => x.events().find((e) => e.action === 'update'));
    expect(upd).toMatchObject({ type: 'machines', key: m.uuid, object: { description: 'x' }, id: expect.stringMatching(/^\d+-\d+$/) });
    expect(exact.events().every((e) => e.type === 'machines' && e.action === 'update' && e.key === m.uuid)).toBe(true);
    expect((await c.command('deregister *.create.*')).object).toMatchObject({ ok: true, registered: true });
    const before = c.events().length;
    await a.s.store.create('profiles', { name: 'ws-after-deregister' }, system);
    await exact.command('register profiles.create.ws-after-deregister2');
    await a.s.store.create('profiles', { name: 'ws-after-deregister2' }, system);
    await exact.waitFor((x) => x.events().find((e) => e.key === 'ws-after-deregister2'));
    expect(c.events().length).toBe(before);
  });

  it('splits patterns on the first two dots only: keys may contain dots', async () => {
    const c = await client(a.url);
    await c.command('register params.create.site.rack.a');
    await c.command('register params.*.v1.2.3');
    await a.s.store.create('params', { name: 'site.rack.b' }, system);
    await a.s.store.create('params', { name: 'site.rack.a' }, system);
    await a.s.store.create('params', { name: 'v1.2.3' }, system);
    await c.waitFor((x) => x.events().length >= 2 && x.events());
    await new Promise((r) => setTimeout(r, 300));
    expect(c.events().map((e) => e.key)).toEqual(['site.rack.a', 'v1.2.3']);
  });

  it('refuses bad commands with a websocket event, and keeps the connection', async () => {
    const c = await client(a.url);
    expect((await c.command('register machines.create')).object).toMatchObject({ ok: false, error: expect.stringMatching(/\{type\}\.\{action\}\.\{key\}/) });
    expect((await c.command('register machines.*.* since=yesterday')).object).toMatchObject({ ok: false });
    c.ws.send('subscribe everything');
    await c.waitFor((x) => x.messages.find((m) => m.action === 'error'));
    for (let i = 0; i < 100; i++) c.ws.send(`register machines.*.k${i}`);
    expect((await c.command('register machines.*.one-too-many')).object).toMatchObject({ ok: false, error: expect.stringMatching(/at most 100/) });
    expect(c.closed).toBeUndefined();
  });

  it('pings clients and drops one that stops answering', async () => {
    const silent = await client(a.url);
    const lively = await client(a.url);
    // a client whose pongs never come (the ws client answers pings itself unless told not to)
    (silent.ws as unknown as { pong: () => void }).pong = () => {};
    let pinged = 0;
    lively.ws.on('ping', () => pinged++);
    a.app.eventHub.keepalive();
    await lively.waitFor(() => pinged === 1);
    await new Promise((r) => setTimeout(r, 100));
    a.app.eventHub.keepalive();
    await silent.waitFor((x) => x.closed);
    expect(silent.closed!.code).toBe(1006);
    expect(lively.closed).toBeUndefined();
    expect((await lively.command('register machines.*.*')).object).toMatchObject({ ok: true });
  });

  it('closes a connection that sends a message over 64 KiB (1009)', async () => {
    const c = await client(a.url);
    c.ws.send(`register ${'x'.repeat(70 * 1024)}`);
    await c.waitFor((x) => x.closed);
    expect(c.closed!.code).toBe(1009);
  });

  it('limits a machine token to its own machine\'s topics', async () => {
    const m = await a.s.store.create('machines', { name: 'ws-mt' }, system);
    const token = issueMachineToken(a.s.signer, m, 600).token;
    const c = await client(a.url, { token });
    expect((await c.command(`register machine_jobs.*.${String(m.uuid)}`)).object).toMatchObject({ ok: true });
    expect((await c.command('register machines.*.*')).object).toMatchObject({ ok: false });
    expect((await c.command('register machine_jobs.*.00000000-0000-4000-8000-000000000000')).object).toMatchObject({ ok: false });
  });

  it('delivers events produced by another api instance on the same Redis', async () => {
    const c = await client(a.url);
    await c.command('register profiles.*.*');
    const res = await b.app.inject({ method: 'POST', url: '/api/v1/profiles', payload: { name: 'ws-from-b' }, headers: { authorization: `Bearer ${admin}` } });
    expect(res.statusCode).toBe(201);
    const e = await c.waitFor((x) => x.events().find((m) => m.key === 'ws-from-b'));
    expect(e).toMatchObject({ type: 'profiles', action: 'create', object: { name: 'ws-from-b' } });
  });

  it('replays machine_jobs since an id across a disconnect, then goes live: no gap, no duplicate', async () => {
    const m = await a.s.store.create('machines', { name: 'ws-replay' }, system);
    const uuid = String(m.uuid);
    const job = await a.s.store.create('jobs', { machine: uuid, task: 'replay' }, system);
    // job events derived into machine_jobs by the worker, and a fast stream of machine_jobs.log chunks
    let producing = true;
    let n = 0;
    const updates = (async () => {
      while (producing) {
        await b.s.store.update('jobs', String(job.uuid), (j) => ({ ...j, currentIndex: n++ }), system);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const logChunk = () => b.s.bus.publish({ type: 'machine_jobs', action: 'log', key: uuid, object: { chunk: n++ }, principal: SystemPrincipal });
    const first = await client(b.url);
    await first.command(`register machine_jobs.*.${uuid}`);
    await first.waitFor((x) => x.events().length >= 5);
    first.close();
    await first.waitFor((x) => x.closed);
    const seen = first.events();
    const last = seen[seen.length - 1]!.id;
    // a backlog of thousands while nobody listens (several replay chunks)...
    await Promise.all(Array.from({ length: 3000 }, logChunk));
    // ...and events arriving all through the replay
    const logs = (async () => {
      while (producing) await Promise.all(Array.from({ length: 20 }, logChunk));
    })();
    const second = await client(a.url);
    const ack = await second.command(`register machine_jobs.*.${uuid} since=${last}`);
    expect(ack.object).toMatchObject({ ok: true, since: last });
    const replayed = await second.waitFor((x) => x.messages.find((msg) => msg.type === 'websocket' && msg.action === 'replayed'));
    expect(replayed.object.count).toBeGreaterThan(3000);
    await new Promise((r) => setTimeout(r, 300)); // and live ones after the replay
    producing = false;
    await Promise.all([updates, logs]);
    const truth = (await a.s.redis.xrange(a.s.keys.events(), '-', '+')).map(([id, f]) => parseStreamEntry(id, f)).filter((e) => e.type === 'machine_jobs' && e.key === uuid).map((e) => e.id);
    // generous: thousands of replayed events on two shared cores (a liveness bound, not a speed check)
    await second.waitFor((x) => x.events().length > 0 && x.events()[x.events().length - 1]!.id === truth[truth.length - 1], 60_000);
    const got = [...seen, ...second.events()].map((e) => e.id);
    expect(new Set(got).size).toBe(got.length);
    expect(got).toEqual(truth.slice(truth.indexOf(got[0]!)));
    expect(second.events().length).toBeGreaterThan(replayed.object.count as number); // live events followed the replay
  }, 120_000);

  it('cuts off a client that stops reading (1013) while a normal client receives everything', async () => {
    const slow = await client(a.url);
    const normal = await client(a.url);
    await slow.command('register bulk.*.*');
    await normal.command('register bulk.*.*');
    slow.ws.pause();
    const payload = 'x'.repeat(64 * 1024);
    const total = 256; // 16 MiB: more than the kernel buffers hold, far more than the 64 KiB bound
    for (let i = 0; i < total; i++) await b.s.bus.publish({ type: 'bulk', action: 'save', key: `k${i}`, object: { i, payload }, principal: SystemPrincipal });
    await normal.waitFor((x) => x.events().length === total, 30_000);
    expect(normal.events().map((e) => e.object.i)).toEqual(Array.from({ length: total }, (_, i) => i));
    expect(a.app.eventHub.stats().slowClosed).toBeGreaterThanOrEqual(1);
    slow.ws.resume();
    await slow.waitFor((x) => x.closed, 20_000);
    expect(slow.closed!.code).toBe(1013);
    expect(slow.events().length).toBeLessThan(total);
    expect(normal.closed).toBeUndefined();
  });
});
