// Webhook subscriptions (SPEC 7.4): events delivered as CloudEvents 1.0 over HTTP, at least once, in
// order per subscription, retried with exponential backoff, with a bounded delivery log.
//
// Shape: the matcher (consumer group `webhooks`, one leader, stream order) appends each matching event
// to the subscription's own Redis list, atomically with its XACK, and asks for a drain job. A drain job
// (BullMQ, jobs/webhook-worker.ts) takes the subscription's lock and sends the list head first; a
// failure leaves the head in place and the job waits out the backoff delayed, without holding a slot.
// The CloudEvents encoding is written here (a few lines; no SDK dependency).
import type { Redis } from 'ioredis';
import type { StoredObject } from '../models/common.js';
import { QueueNames } from '../jobs/queues.js';
import type { Services } from '../services.js';
import type { StoredEvent } from '../store/backend.js';
import { GroupConsumer } from './group-consumer.js';
import { matchesPattern, parsePattern } from './topics.js';

export const WEBHOOK_GROUP = 'webhooks';
/** events waiting per subscription; beyond this the oldest are dropped (a dead receiver must not fill Redis) */
export const MAX_QUEUED = 100_000;
export const MAX_BATCH = 100;
export const DELIVERY_LOG_LENGTH = 1000;
const SCHEDULED_TTL_MS = 30_000;
const LOCK_TTL_MS = 60_000;

// ---------------------------------------------------------------- CloudEvents 1.0 (JSON and HTTP bindings)

export interface CloudEvent {
  specversion: '1.0';
  id: string;
  source: string;
  type: string;
  subject: string;
  time: string;
  datacontenttype: 'application/json';
  data: unknown;
}

export function toCloudEvent(e: StoredEvent): CloudEvent {
  let data: unknown = null;
  try {
    data = JSON.parse(e.object);
  } catch {
    data = e.object;
  }
  return {
    specversion: '1.0',
    id: e.id,
    source: `/ironflow/${encodeURIComponent(e.type)}/${encodeURIComponent(e.key)}`,
    type: `io.ironflow.${e.type}.${e.action}`,
    subject: e.key,
    time: e.time,
    datacontenttype: 'application/json',
    data,
  };
}

/** HTTP binding 3.1.3.2: header values percent-encode everything but printable ASCII other than `"` and `%`. */
export function ceHeaderValue(v: string): string {
  let out = '';
  for (const b of Buffer.from(v, 'utf8')) out += b >= 0x21 && b <= 0x7e && b !== 0x22 && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return out;
}

export type DeliveryMode = 'structured' | 'binary' | 'batch';

export interface HttpRequestShape {
  headers: Record<string, string>;
  body: string;
}

/** The request for one event (structured, binary) or for a batch. */
export function encodeDelivery(mode: DeliveryMode, events: StoredEvent[]): HttpRequestShape {
  if (mode === 'batch') return { headers: { 'content-type': 'application/cloudevents-batch+json; charset=utf-8' }, body: JSON.stringify(events.map(toCloudEvent)) };
  const ce = toCloudEvent(events[0]!);
  if (mode === 'structured') return { headers: { 'content-type': 'application/cloudevents+json; charset=utf-8' }, body: JSON.stringify(ce) };
  const { data, datacontenttype, ...attrs } = ce;
  const headers: Record<string, string> = { 'content-type': datacontenttype };
  for (const [k, v] of Object.entries(attrs)) headers[`ce-${k}`] = ceHeaderValue(v);
  return { headers, body: JSON.stringify(data) };
}

// ---------------------------------------------------------------- keys and the delivery log

export interface WebhookKeys {
  queue(name: string): string;
  state(name: string): string;
  lock(name: string): string;
  scheduled(name: string): string;
  log(name: string): string;
}

export function webhookKeys(keys: Services['keys']): WebhookKeys {
  return {
    queue: (n) => keys.extra('wh', 'q', n),
    state: (n) => keys.extra('wh', 's', n),
    lock: (n) => keys.extra('wh', 'lock', n),
    scheduled: (n) => keys.extra('wh', 'sched', n),
    log: (n) => keys.extra('wh', 'log', n),
  };
}

export interface DeliveryRecord {
  eventId: string;
  /** events in this request (batch mode sends several; eventId is the first) */
  events: number;
  attempt: number;
  /** HTTP status, or 0 when there was no response (refused, timed out) */
  status: number;
  error: string | null;
  /** delivered | retrying | dropped */
  outcome: 'delivered' | 'retrying' | 'dropped';
  at: string;
}

/** Newest first. */
export async function deliveryLog(redis: Redis, keys: Services['keys'], name: string, limit: number): Promise<DeliveryRecord[]> {
  const rows = await redis.lrange(webhookKeys(keys).log(name), 0, limit - 1);
  return rows.map((r) => JSON.parse(r) as DeliveryRecord);
}

// ---------------------------------------------------------------- the matcher (worker role)

interface CachedSub {
  name: string;
  patterns: [string, string, string][];
}

// KEYS[1] global stream, then per subscription: its queue, its scheduled flag.
// ARGV[1] group, ARGV[2] event id, ARGV[3] queued item, ARGV[4] max queued, ARGV[5] scheduled ttl.
// Returns, per subscription, 1 when a drain job must be added (nobody was scheduled).
const ENQUEUE = `
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return {} end
local out = {}
for i = 2, #KEYS, 2 do
  redis.call('RPUSH', KEYS[i], ARGV[3])
  redis.call('LTRIM', KEYS[i], -tonumber(ARGV[4]), -1)
  if redis.call('SET', KEYS[i + 1], '1', 'NX', 'PX', ARGV[5]) then out[#out + 1] = 1 else out[#out + 1] = 0 end
end
return out
`;

type Enqueue = (n: number, ...args: string[]) => Promise<number[]>;

function cached(o: StoredObject): CachedSub | undefined {
  if (o.enabled === false) return undefined;
  const patterns = ((o.topics as string[] | undefined) ?? []).map(parsePattern).filter((p): p is [string, string, string] => p !== undefined);
  return { name: String(o.name), patterns };
}

export class WebhookMatcher {
  private readonly subs = new Map<string, CachedSub>();
  private readonly wk: WebhookKeys;

  constructor(private readonly s: Pick<Services, 'redis' | 'keys' | 'store' | 'queues' | 'log'>) {
    this.wk = webhookKeys(s.keys);
    s.redis.defineCommand('ironflowWebhookEnqueue', { lua: ENQUEUE });
  }

  /** Loads the enabled subscriptions; afterwards `subscriptions.*` events keep the cache exact, in stream order. */
  async load(): Promise<void> {
    this.subs.clear();
    for (let offset = 0; ; offset += 1000) {
      const q = this.s.store.parseQuery('subscriptions', { enabled: 'true', limit: '1000', offset: String(offset) });
      const { items } = await this.s.store.list('subscriptions', q);
      for (const o of items) {
        const c = cached(o);
        if (c) this.subs.set(c.name, c);
      }
      if (items.length < 1000) break;
    }
  }

  names(): string[] {
    return [...this.subs.keys()];
  }

  private apply(e: StoredEvent): void {
    if (e.action === 'delete') {
      this.subs.delete(e.key);
      return;
    }
    try {
      const c = cached(JSON.parse(e.object) as StoredObject);
      if (c) this.subs.set(e.key, c);
      else this.subs.delete(e.key);
    } catch {
      /* not an object: leave the cache as it is */
    }
  }

  async handle(events: StoredEvent[]): Promise<void> {
    const { redis, keys } = this.s;
    const stream = keys.events();
    let ackOnly: string[] = [];
    const work: Promise<unknown>[] = [];
    const enqueued: { at: number; matched: string[] }[] = [];
    const flush = () => {
      if (ackOnly.length > 0) work.push(redis.xack(stream, WEBHOOK_GROUP, ...ackOnly));
      ackOnly = [];
    };
    for (const e of events) {
      if (e.type === 'subscriptions') this.apply(e);
      const matched: string[] = [];
      for (const sub of this.subs.values()) if (sub.patterns.some((p) => matchesPattern(p, e))) matched.push(sub.name);
      if (matched.length === 0) {
        ackOnly.push(e.id);
        continue;
      }
      flush();
      const keyList = [stream, ...matched.flatMap((n) => [this.wk.queue(n), this.wk.scheduled(n)])];
      enqueued.push({ at: work.length, matched });
      work.push((redis as unknown as { ironflowWebhookEnqueue: Enqueue }).ironflowWebhookEnqueue(keyList.length, ...keyList,
        WEBHOOK_GROUP, e.id, JSON.stringify(e), String(MAX_QUEUED), String(SCHEDULED_TTL_MS)));
    }
    flush();
    const results = await Promise.all(work);
    const names = new Set(enqueued.flatMap(({ at, matched }) => matched.filter((_, i) => (results[at] as number[])[i] === 1)));
    await Promise.all([...names].map((name) => this.schedule(name)));
  }

  schedule(name: string): Promise<string> {
    return this.s.queues.add(QueueNames.webhooks, 'drain', { name });
  }

  /**
   * Housekeeping: a subscription with queued events but no drain scheduled, running or waiting out a
   * backoff (its job was lost with a process) gets a new drain job.
   */
  async sweep(now = Date.now()): Promise<void> {
    const names = this.names();
    if (names.length === 0) return;
    const pipe = this.s.redis.pipeline();
    for (const n of names) pipe.llen(this.wk.queue(n)).exists(this.wk.lock(n)).exists(this.wk.scheduled(n)).hget(this.wk.state(n), 'retryAt');
    const res = ((await pipe.exec()) ?? []).map(([, v]) => v);
    for (let i = 0; i < names.length; i++) {
      const [len, locked, scheduled, retryAt] = res.slice(i * 4, i * 4 + 4) as [number, number, number, string | null];
      if (len > 0 && !locked && !scheduled && !(retryAt !== null && Number(retryAt) > now - 2000)) {
        if ((await this.s.redis.set(this.wk.scheduled(names[i]!), '1', 'PX', SCHEDULED_TTL_MS, 'NX')) === 'OK') await this.schedule(names[i]!);
      }
    }
  }
}

/** Worker-role starter: the `webhooks` consumer group (the drain jobs run in jobs/webhook-worker.ts). */
export async function startWebhookMatcher(s: Services, opts: { sweepMs?: number } = {}): Promise<() => Promise<void>> {
  const matcher = new WebhookMatcher(s);
  const consumer = new GroupConsumer({
    redis: s.redis,
    openBlocking: () => s.connect({ blocking: true, name: 'ironflow-webhooks-matcher' }),
    stream: s.keys.events(),
    group: WEBHOOK_GROUP,
    leaderKey: s.keys.extra('wh', 'leader'),
    // a subscription receives events from when the worker role first ran, not the stream's history
    startAt: '$',
    // a new leader reloads the subscriptions: from then on `subscriptions.*` events keep them exact
    onLead: () => matcher.load(),
    handle: (events) => matcher.handle(events),
    tick: () => matcher.sweep(),
    tickMs: opts.sweepMs ?? 5000,
    // with no subscription nothing is delivered: events are only acknowledged, in larger batches
    lingerMs: () => (matcher.names().length === 0 ? 50 : 5),
    log: s.log,
  });
  await consumer.start();
  return () => consumer.close();
}

// ---------------------------------------------------------------- delivery (called by the drain job)

export interface DeliveryOptions {
  /** per request (default 10 s) */
  timeoutMs?: number;
  /** first retry delay; doubles per attempt (default 1 s) */
  backoffBaseMs?: number;
  /** longest retry delay (default 5 min) */
  backoffMaxMs?: number;
}

export type DrainResult = { retryAt?: number };

// KEYS[1] lock. ARGV[1] owner, ARGV[2] ttl. Taken when free or already ours (a recovered stalled job).
const LOCK = `local v = redis.call('GET', KEYS[1]) if v == false or v == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end return 0`;
const UNLOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

export class WebhookDeliverer {
  private readonly wk: WebhookKeys;
  private readonly timeoutMs: number;
  private readonly baseMs: number;
  private readonly maxMs: number;

  constructor(private readonly s: Pick<Services, 'redis' | 'keys' | 'store' | 'log' | 'secrets'>, opts: DeliveryOptions = {}) {
    this.wk = webhookKeys(s.keys);
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.baseMs = opts.backoffBaseMs ?? 1000;
    this.maxMs = opts.backoffMaxMs ?? 300_000;
  }

  backoffMs(attempt: number): number {
    return Math.min(this.maxMs, this.baseMs * 2 ** Math.min(attempt - 1, 30));
  }

  /**
   * Sends a subscription's queued events, head first, until the queue is empty. Returns `retryAt` when
   * the head failed (or the worker is stopping with events left): the caller waits until then and calls
   * again. Several drains for one subscription may run: the lock lets one send, the others return.
   */
  async drain(name: string, owner: string, opts: { stopping?: () => boolean; resumed?: boolean } = {}): Promise<DrainResult> {
    const { redis } = this.s;
    const stopping = opts.stopping ?? (() => false);
    await redis.del(this.wk.scheduled(name));
    for (;;) {
      // a drain that failed waits out the backoff and resumes (`resumed`); any other drain leaves it to that one
      const retryAt = Number((await redis.hget(this.wk.state(name), 'retryAt')) ?? 0);
      if (!opts.resumed && retryAt > Date.now()) return {};
      if ((await redis.eval(LOCK, 1, this.wk.lock(name), owner, String(LOCK_TTL_MS))) !== 1) return {};
      let drained = false;
      try {
        const r = await this.sendAll(name, stopping);
        if (r.retryAt !== undefined) return r;
        drained = r.drained;
      } finally {
        await redis.eval(UNLOCK, 1, this.wk.lock(name), owner).catch(() => undefined);
      }
      // an event queued after our last look but before the unlock was left to us: look again
      if (!drained || (await redis.llen(this.wk.queue(name))) === 0) return {};
    }
  }

  private async sendAll(name: string, stopping: () => boolean): Promise<{ drained: boolean; retryAt?: number }> {
    const { redis, store } = this.s;
    const q = this.wk.queue(name);
    for (;;) {
      const sub = await store.get('subscriptions', name);
      if (!sub) {
        await redis.del(q, this.wk.state(name));
        return { drained: false };
      }
      if (sub.enabled === false) return { drained: false };
      const mode = (sub.mode as DeliveryMode | undefined) ?? 'structured';
      const raw = await redis.lrange(q, 0, mode === 'batch' ? MAX_BATCH - 1 : 0);
      if (raw.length === 0) return { drained: true };
      if (stopping()) return { drained: false, retryAt: Date.now() + 100 };
      const events = raw.map((r) => JSON.parse(r) as StoredEvent);
      const attempt = await redis.hincrby(this.wk.state(name), 'attempt', 1);
      const res = await this.send(sub, mode, events);
      const maxAttempts = Number(sub.maxAttempts ?? 10);
      const done = res.ok || attempt >= maxAttempts;
      const outcome = res.ok ? 'delivered' : done ? 'dropped' : 'retrying';
      const record: DeliveryRecord = { eventId: events[0]!.id, events: events.length, attempt, status: res.status, error: res.error, outcome, at: new Date().toISOString() };
      const retryAt = Date.now() + this.backoffMs(attempt);
      const tx = redis.multi().lpush(this.wk.log(name), JSON.stringify(record)).ltrim(this.wk.log(name), 0, DELIVERY_LOG_LENGTH - 1);
      if (done) tx.ltrim(q, events.length, -1).del(this.wk.state(name));
      else tx.hset(this.wk.state(name), 'retryAt', String(retryAt));
      tx.pexpire(this.wk.lock(name), LOCK_TTL_MS);
      await tx.exec();
      if (!res.ok) this.s.log.warn({ subscription: name, eventId: record.eventId, attempt, status: res.status, error: res.error, outcome }, 'webhook delivery failed');
      if (!done) return { drained: false, retryAt };
    }
  }

  private async send(sub: StoredObject, mode: DeliveryMode, events: StoredEvent[]): Promise<{ ok: boolean; status: number; error: string | null }> {
    const req = encodeDelivery(mode, events);
    try {
      // the subscription's own headers (stored sealed, never logged) first: they must not replace the CloudEvents ones
      const own = this.s.secrets.reveal((sub.headers as Record<string, unknown> | undefined) ?? {});
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(own)) if (typeof v === 'string') headers[k.toLowerCase()] = v;
      Object.assign(headers, req.headers, { 'user-agent': 'ironflow-webhooks' });
      const res = await fetch(String(sub.url), { method: 'POST', headers, body: req.body, redirect: 'manual', signal: AbortSignal.timeout(this.timeoutMs) });
      await res.arrayBuffer().catch(() => undefined);
      const ok = res.status >= 200 && res.status < 300;
      return { ok, status: res.status, error: ok ? null : `HTTP ${res.status}` };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      // never echo fetch's own message for header problems: it quotes the (secret) header value
      const error = e.name === 'TimeoutError' ? `no response within ${this.timeoutMs} ms`
        : e.name === 'TypeError' && /header/i.test(e.message) ? 'a subscription header is not a valid HTTP header'
        : e.cause?.code ?? e.cause?.message ?? e.message;
      return { ok: false, status: 0, error };
    }
  }
}
