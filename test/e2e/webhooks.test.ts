// Webhooks (SPEC 7.4) against a real node:http receiver: CloudEvents 1.0 structured, binary and batch
// shapes, order per subscription, retries after 500s and timeouts, maxAttempts, the delivery log, and
// no loss when the worker is closed mid-run and a new one takes over.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { issueUserToken } from '../../src/auth/users.js';
import { loadConfig } from '../../src/config.js';
import { startWebhookMatcher } from '../../src/events/webhooks.js';
import { startWebhookWorker } from '../../src/jobs/webhook-worker.js';
import { SystemPrincipal } from '../../src/models/principal.js';
import { buildServices, initialiseStore, type Services } from '../../src/services.js';
import { ADMIN_PASSWORD, FIXTURE_CONTENT } from '../helpers/app.js';
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js';

interface Received { path: string; headers: IncomingHttpHeaders; body: string; at: number }
type Behaviour = (r: Received, nth: number) => { status: number; delayMs?: number };

/** A webhook receiver: records every request per path; each path answers by its behaviour. */
class Receiver {
  readonly got = new Map<string, Received[]>();
  readonly behave = new Map<string, Behaviour>();
  private server!: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const r: Received = { path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() };
        const list = this.got.get(r.path) ?? [];
        list.push(r);
        this.got.set(r.path, list);
        const { status, delayMs = 0 } = (this.behave.get(r.path) ?? ((): ReturnType<Behaviour> => ({ status: 200 })))(r, list.length);
        const t = setTimeout(() => res.writeHead(status, { 'content-type': 'text/plain' }).end('ok'), delayMs);
        res.on('close', () => clearTimeout(t));
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  of(path: string): Received[] {
    return this.got.get(path) ?? [];
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

const prefix = uniquePrefix('wh');
const conns: Redis[] = [];
let s: Services;
let app: FastifyInstance;
let admin: string;
const rx = new Receiver();
const delivery = { timeoutMs: 300, backoffBaseMs: 50, backoffMaxMs: 400 };
let stop: (() => Promise<void>)[] = [];

async function startWorkerRole(): Promise<void> {
  stop = [await startWebhookMatcher(s, { sweepMs: 300 }), await startWebhookWorker(s, delivery)];
}
async function stopWorkerRole(): Promise<void> {
  for (const close of stop) await close();
  stop = [];
}

const api = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown) =>
  app.inject({ method, url, payload: payload as never, headers: { authorization: `Bearer ${admin}` } });
const subscribe = async (body: Record<string, unknown>) => {
  const res = await api('POST', '/api/v1/subscriptions', body);
  expect(res.statusCode, res.body).toBe(201);
};
const publish = (type: string, key: string, object: unknown) => s.bus.publish({ type, action: 'save', key, object, principal: SystemPrincipal });
const until = async <T>(f: () => T | undefined | false, timeoutMs = 15_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 25));
  }
};
const ceOf = (r: Received) => JSON.parse(r.body) as Record<string, unknown>;
const deliveries = async (name: string) => (await api('GET', `/api/v1/subscriptions/${encodeURIComponent(name)}/deliveries`)).json() as { eventId: string; attempt: number; status: number; error: string | null; outcome: string; at: string; events: number }[];

/** CloudEvents 1.0: required attributes, their types, and attribute naming (lower-case a-z0-9). */
function expectCloudEvent(ce: Record<string, unknown>): void {
  expect(ce.specversion).toBe('1.0');
  for (const a of ['id', 'source', 'type']) expect(typeof ce[a] === 'string' && (ce[a] as string).length > 0, a).toBe(true);
  for (const name of Object.keys(ce)) expect(name).toMatch(/^[a-z0-9]{1,20}$/);
  expect(Date.parse(ce.time as string)).not.toBeNaN();
  expect(ce.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
  expect(ce.datacontenttype).toBe('application/json');
}

beforeAll(async () => {
  await rx.start();
  const config = loadConfig({ IRONFLOW_DATA_DIR: mkdtempSync(join(tmpdir(), 'ironflow-wh-')), IRONFLOW_ADMIN_PASSWORD: ADMIN_PASSWORD, IRONFLOW_REDIS_PREFIX: prefix, IRONFLOW_LOG_LEVEL: 'silent' });
  const connect = (o: { blocking?: boolean }) => {
    const c = new Redis(testRedisUrl(), { maxRetriesPerRequest: o.blocking ? null : 1 });
    conns.push(c);
    return c;
  };
  s = buildServices(config, connect({}), connect, pino({ level: 'silent' }));
  await initialiseStore(s, [FIXTURE_CONTENT]);
  app = await buildApp(s);
  admin = (await issueUserToken(s.store, s.signer, 'admin', ADMIN_PASSWORD, 3600)).token;
  await startWorkerRole();
});
afterAll(async () => {
  await stopWorkerRole();
  await app?.close();
  s?.bus.close();
  await s?.queues.close();
  conns.forEach((c) => c.disconnect());
  await rx.close();
});

describe('webhooks', () => {
  it('delivers structured CloudEvents (application/cloudevents+json) with the subscription headers', async () => {
    await subscribe({ name: 'wh-structured', url: `${rx.url}/structured`, topics: ['profiles.create.*'], headers: { 'direktiv-token': 'tok-123' } });
    for (const name of ['wh-p1', 'wh-p2', 'wh-p3']) await s.store.create('profiles', { name, description: `about ${name}` }, { principal: SystemPrincipal });
    const got = await until(() => rx.of('/structured').length >= 3 && rx.of('/structured'));
    const stream = (await s.redis.xrange(s.keys.events(), '-', '+')).filter(([, f]) => f[1] === 'profiles' && f[5]?.startsWith('wh-p'));
    expect(got).toHaveLength(3);
    got.forEach((r, i) => {
      expect(r.headers['content-type']).toBe('application/cloudevents+json; charset=utf-8');
      expect(r.headers['direktiv-token']).toBe('tok-123');
      const ce = ceOf(r);
      expectCloudEvent(ce);
      const name = `wh-p${i + 1}`;
      expect(ce).toMatchObject({ id: stream[i]![0], source: `/ironflow/profiles/${name}`, type: 'io.ironflow.profiles.create', subject: name, data: { name, description: `about ${name}` } });
    });
    await expect.poll(async () => (await deliveries('wh-structured')).length).toBe(3);
    const records = await deliveries('wh-structured');
    expect(records.map((d) => [d.eventId, d.attempt, d.status, d.outcome])).toEqual(stream.map(([id]) => [id, 1, 200, 'delivered']).reverse());
    expect(JSON.stringify(records)).not.toContain('tok-123');
    expect((await api('GET', '/api/v1/subscriptions/nope/deliveries')).statusCode).toBe(404);
  });

  it('delivers binary CloudEvents: ce-* headers (percent-encoded) and the data as the body', async () => {
    await subscribe({ name: 'wh-binary', url: `${rx.url}/binary`, topics: ['whbin.*.*'], mode: 'binary' });
    const id = await publish('whbin', 'node 1 é', { hello: 'world', n: 1 });
    const [r] = await until(() => rx.of('/binary').length >= 1 && rx.of('/binary'));
    expect(r!.headers['content-type']).toBe('application/json');
    expect(r!.headers).toMatchObject({
      'ce-specversion': '1.0', 'ce-id': id, 'ce-type': 'io.ironflow.whbin.save', 'ce-subject': 'node%201%20%C3%A9',
    });
    // header values are percent-decoded once by the receiver: the source attribute is itself a URI-reference
    expect(decodeURIComponent(r!.headers['ce-source'] as string)).toBe('/ironflow/whbin/node%201%20%C3%A9');
    expect(decodeURIComponent(r!.headers['ce-subject'] as string)).toBe('node 1 é');
    expect(Date.parse(r!.headers['ce-time'] as string)).not.toBeNaN();
    expect(r!.headers['ce-datacontenttype']).toBeUndefined();
    expect(JSON.parse(r!.body)).toEqual({ hello: 'world', n: 1 });
  });

  it('delivers batches (application/cloudevents-batch+json): every event once, in order', async () => {
    rx.behave.set('/batch', (_r, nth) => ({ status: nth === 1 ? 503 : 200 }));
    await subscribe({ name: 'wh-batch', url: `${rx.url}/batch`, topics: ['whbatch.*.*'], mode: 'batch' });
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) ids.push(await publish('whbatch', `k${i}`, { i }));
    await until(() => rx.of('/batch').slice(1).flatMap((r) => JSON.parse(r.body) as unknown[]).length >= 8);
    const reqs = rx.of('/batch');
    for (const r of reqs) expect(r.headers['content-type']).toBe('application/cloudevents-batch+json; charset=utf-8');
    const batches = reqs.slice(1).map((r) => JSON.parse(r.body) as Record<string, unknown>[]);
    expect(batches.length).toBeLessThan(8); // events queued behind the failure went out together
    const all = batches.flat();
    all.forEach(expectCloudEvent);
    expect(all.map((ce) => ce.id)).toEqual(ids);
    expect(all.map((ce) => (ce.data as { i: number }).i)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('keeps order per subscription through failures and retries after 500s with growing delays', async () => {
    const failOn = new Set([1, 2, 6, 11, 12, 13]);
    rx.behave.set('/ordered', (_r, nth) => ({ status: failOn.has(nth) ? 500 : 200, delayMs: nth % 3 === 0 ? 20 : 0 }));
    await subscribe({ name: 'wh-ordered', url: `${rx.url}/ordered`, topics: ['whorder.*.*'] });
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) ids.push(await publish('whorder', `k${i}`, { i }));
    await until(() => rx.of('/ordered').length >= 25 + failOn.size);
    const reqs = rx.of('/ordered');
    const okIds = reqs.filter((_, n) => !failOn.has(n + 1)).map((r) => ceOf(r).id);
    expect(okIds).toEqual(ids);
    // the failed head is retried before anything after it, with exponential backoff
    expect(ceOf(reqs[0]!).id).toBe(ids[0]);
    expect(ceOf(reqs[1]!).id).toBe(ids[0]);
    expect(ceOf(reqs[2]!).id).toBe(ids[0]);
    expect(reqs[1]!.at - reqs[0]!.at).toBeGreaterThanOrEqual(45);
    expect(reqs[2]!.at - reqs[1]!.at).toBeGreaterThanOrEqual(95);
    await expect.poll(async () => (await deliveries('wh-ordered')).length).toBe(25 + failOn.size);
    const log = await deliveries('wh-ordered');
    const first = log.filter((d) => d.eventId === ids[0]).reverse();
    expect(first.map((d) => [d.attempt, d.status, d.outcome])).toEqual([[1, 500, 'retrying'], [2, 500, 'retrying'], [3, 200, 'delivered']]);
    expect(first[0]!.error).toBe('HTTP 500');
  });

  it('retries after a timeout', async () => {
    rx.behave.set('/slow', (_r, nth) => ({ status: 200, delayMs: nth === 1 ? 2000 : 0 }));
    await subscribe({ name: 'wh-slow', url: `${rx.url}/slow`, topics: ['whslow.*.*'] });
    const id = await publish('whslow', 'k', { slow: true });
    await until(() => rx.of('/slow').length >= 2);
    expect(rx.of('/slow').map((r) => ceOf(r).id)).toEqual([id, id]);
    await expect.poll(async () => (await deliveries('wh-slow')).length).toBe(2);
    const [second, first] = await deliveries('wh-slow');
    expect(first).toMatchObject({ eventId: id, attempt: 1, status: 0, outcome: 'retrying', error: 'no response within 300 ms' });
    expect(second).toMatchObject({ eventId: id, attempt: 2, status: 200, outcome: 'delivered' });
  });

  it('gives up on an event after maxAttempts and goes on with the next', async () => {
    rx.behave.set('/dead', (r) => ({ status: (ceOf(r).data as { i: number }).i === 0 ? 500 : 200 }));
    await subscribe({ name: 'wh-dead', url: `${rx.url}/dead`, topics: ['whdead.*.*'], maxAttempts: 3 });
    const a = await publish('whdead', 'a', { i: 0 });
    const b = await publish('whdead', 'b', { i: 1 });
    await until(() => rx.of('/dead').some((r) => ceOf(r).id === b));
    expect(rx.of('/dead').map((r) => ceOf(r).id)).toEqual([a, a, a, b]);
    await expect.poll(async () => (await deliveries('wh-dead')).length).toBe(4);
    const log = (await deliveries('wh-dead')).reverse();
    expect(log.map((d) => [d.eventId === a ? 'a' : 'b', d.attempt, d.outcome])).toEqual([['a', 1, 'retrying'], ['a', 2, 'retrying'], ['a', 3, 'dropped'], ['b', 1, 'delivered']]);
  });

  it('loses nothing when the worker is closed mid-run and a new one starts', async () => {
    rx.behave.set('/restart', () => ({ status: 200, delayMs: 30 }));
    await subscribe({ name: 'wh-restart', url: `${rx.url}/restart`, topics: ['whrestart.*.*'] });
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(await publish('whrestart', `k${i}`, { i }));
    await until(() => rx.of('/restart').length >= 5);
    await stopWorkerRole();
    const during = rx.of('/restart').length;
    expect(during).toBeLessThan(20);
    for (let i = 20; i < 30; i++) ids.push(await publish('whrestart', `k${i}`, { i }));
    await new Promise((r) => setTimeout(r, 300));
    expect(rx.of('/restart').length).toBe(during); // nobody delivers while no worker runs
    await startWorkerRole();
    await until(() => new Set(rx.of('/restart').map((r) => ceOf(r).id)).size >= 30);
    const got = rx.of('/restart').map((r) => ceOf(r).id as string);
    const firstSeen = got.filter((id, i) => got.indexOf(id) === i);
    expect(firstSeen).toEqual(ids);
    expect(got.length - firstSeen.length).toBeLessThanOrEqual(1); // at least once: at most the in-flight one again
  });

  it('delivers nothing for a disabled subscription, and resumes when it is enabled again', async () => {
    await subscribe({ name: 'wh-toggle', url: `${rx.url}/toggle`, topics: ['whtoggle.*.*'], enabled: false });
    await publish('whtoggle', 'off', {});
    const res = await api('PATCH', '/api/v1/subscriptions/wh-toggle', { enabled: true });
    expect(res.statusCode, res.body).toBe(200);
    const on = await publish('whtoggle', 'on', {});
    await until(() => rx.of('/toggle').length >= 1);
    await new Promise((r) => setTimeout(r, 200));
    expect(rx.of('/toggle').map((r) => ceOf(r).id)).toEqual([on]);
  });
});
