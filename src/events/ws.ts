// The WebSocket hub (SPEC 7.2) at GET /api/v1/ws: clients register topic patterns and receive every
// matching event from the shared stream (so from every process), with replay `since` an event id,
// keepalive pings, and slow clients cut off with 1013 instead of slowing the others.
import websocket from '@fastify/websocket';
import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import type { Principal } from '../models/principal.js';
import type { Services } from '../services.js';
import type { StoredEvent } from '../store/backend.js';
import { compareIds } from '../store/stream-ids.js';
import { parseStreamEntry } from './bus.js';
import { eventVisibleTo, isStreamId } from './stream-query.js';
import { matchesPattern, parsePattern } from './topics.js';

export const WS_PATH = '/api/v1/ws';
export const WS_MAX_MESSAGE_BYTES = 64 * 1024;
export const WS_MAX_SUBSCRIPTIONS = 100;
const MAX_PATTERN_LENGTH = 512;
const REPLAY_CHUNK = 1000;
const OPEN = 1;

export interface HubOptions {
  /** bytes queued for one client before it is closed with 1013 */
  maxBufferedBytes: number;
  pingIntervalMs?: number;
  maxSubscriptions?: number;
}

interface Client {
  ws: WebSocket;
  principal: Principal;
  subs: Map<string, Sub>;
  alive: boolean;
}

interface Sub {
  pattern: string;
  parts: [string, string, string];
  client: Client;
  /** set while replaying: live events wait here and are sent after the replay, deduplicated by id */
  buffer?: StoredEvent[];
  /**
   * after a replay: the last id sent. This process's tail may still be behind it, so live events up
   * to it were already sent; cleared when the tail passes it.
   */
  floor?: string;
}

/** One frame per event, built once and sent to every client it matches. */
function frameOf(e: StoredEvent): string {
  const s = JSON.stringify;
  return `{"id":${s(e.id)},"time":${s(e.time)},"type":${s(e.type)},"action":${s(e.action)},"key":${s(e.key)},"principal":${s(e.principal)},"object":${e.object || 'null'}}`;
}

function notice(action: string, key: string, object: Record<string, unknown>): string {
  return JSON.stringify({ id: '', time: new Date().toISOString(), type: 'websocket', action, key, principal: 'system:ironflow', object });
}

export interface HubStats {
  connections: number;
  subscriptions: number;
  /** clients closed with 1013 because they could not keep up */
  slowClosed: number;
}

export class EventHub {
  private readonly clients = new Set<Client>();
  /** subscriptions with a concrete key, by key; the others (key `*`) in anyKey */
  private readonly byKey = new Map<string, Set<Sub>>();
  private readonly anyKey = new Set<Sub>();
  private slowClosed = 0;
  private unsubscribe: (() => void) | undefined;
  private pinger: NodeJS.Timeout | undefined;

  constructor(private readonly s: Pick<Services, 'bus' | 'redis' | 'keys' | 'log'>, private readonly opts: HubOptions) {}

  start(): void {
    this.unsubscribe = this.s.bus.subscribe((e) => this.dispatch(e));
    this.pinger = setInterval(() => this.keepalive(), this.opts.pingIntervalMs ?? 30_000);
    this.pinger.unref();
  }

  close(): void {
    this.unsubscribe?.();
    clearInterval(this.pinger);
    for (const c of this.clients) c.ws.terminate();
    this.clients.clear();
  }

  stats(): HubStats {
    let subscriptions = 0;
    for (const c of this.clients) subscriptions += c.subs.size;
    return { connections: this.clients.size, subscriptions, slowClosed: this.slowClosed };
  }

  attach(ws: WebSocket, principal: Principal): void {
    const client: Client = { ws, principal, subs: new Map(), alive: true };
    this.clients.add(client);
    ws.on('pong', () => (client.alive = true));
    ws.on('message', (data, isBinary) => {
      client.alive = true;
      if (isBinary) return this.reply(client, notice('error', '', { ok: false, error: 'send text frames: "register PATTERN [since=ID]" or "deregister PATTERN"' }));
      void this.command(client, data.toString()).catch((err) => {
        this.s.log.warn({ err: (err as Error).message }, 'websocket command failed');
        this.reply(client, notice('error', '', { ok: false, error: 'the server could not complete this command; try again' }));
      });
    });
    ws.on('close', () => this.detach(client));
    ws.on('error', () => this.detach(client));
  }

  private detach(client: Client): void {
    if (!this.clients.delete(client)) return;
    for (const sub of client.subs.values()) this.unindex(sub);
    client.subs.clear();
  }

  private index(sub: Sub): void {
    const key = sub.parts[2];
    if (key === '*') this.anyKey.add(sub);
    else {
      let set = this.byKey.get(key);
      if (!set) this.byKey.set(key, (set = new Set()));
      set.add(sub);
    }
  }

  private unindex(sub: Sub): void {
    const key = sub.parts[2];
    if (key === '*') this.anyKey.delete(sub);
    else {
      const set = this.byKey.get(key);
      set?.delete(sub);
      if (set?.size === 0) this.byKey.delete(key);
    }
  }

  /** Fan-out of one event: candidates by key, each client at most once. */
  dispatch(e: StoredEvent): void {
    const keyed = this.byKey.get(e.key);
    if (!keyed && this.anyKey.size === 0) return;
    let frame: string | undefined;
    let done: Set<Client> | undefined;
    const offer = (sub: Sub) => {
      if (!matchesPattern(sub.parts, e)) return;
      if (sub.buffer) {
        sub.buffer.push(e);
        return;
      }
      if (sub.floor !== undefined) {
        if (compareIds(e.id, sub.floor) <= 0) return;
        delete sub.floor;
      }
      const c = sub.client;
      if (done?.has(c) || !eventVisibleTo(c.principal, e.type, e.key)) return;
      (done ??= new Set()).add(c);
      this.send(c, (frame ??= frameOf(e)));
    };
    if (keyed) for (const sub of keyed) offer(sub);
    for (const sub of this.anyKey) offer(sub);
  }

  private send(c: Client, frame: string): boolean {
    if (c.ws.readyState !== OPEN) return false;
    if (c.ws.bufferedAmount > this.opts.maxBufferedBytes) {
      this.slowClosed++;
      this.s.log.warn({ buffered: c.ws.bufferedAmount }, 'websocket client too slow; closing it with 1013');
      this.detach(c);
      c.ws.close(1013, 'too slow: events were queued faster than they were read');
      return false;
    }
    c.ws.send(frame);
    return true;
  }

  private reply(c: Client, frame: string): void {
    if (c.ws.readyState === OPEN) c.ws.send(frame);
  }

  private async command(c: Client, text: string): Promise<void> {
    const [verb = '', pattern = '', ...opts] = text.trim().split(/\s+/);
    if (verb !== 'register' && verb !== 'deregister') {
      return this.reply(c, notice('error', '', { ok: false, error: `unknown command "${verb.slice(0, 40)}": use "register PATTERN [since=ID]" or "deregister PATTERN"` }));
    }
    const fail = (error: string) => this.reply(c, notice(verb, pattern.slice(0, MAX_PATTERN_LENGTH), { ok: false, error }));
    const parts = pattern.length <= MAX_PATTERN_LENGTH ? parsePattern(pattern) : undefined;
    if (!parts) return fail('a pattern is {type}.{action}.{key} with * for any part, e.g. machine_jobs.*.<uuid>');
    if (verb === 'deregister') {
      const sub = c.subs.get(pattern);
      if (sub) {
        c.subs.delete(pattern);
        this.unindex(sub);
      }
      return this.reply(c, notice('deregister', pattern, { ok: true, registered: Boolean(sub) }));
    }
    let since: string | undefined;
    for (const o of opts) {
      if (o.startsWith('since=') && isStreamId(o.slice(6))) since = o.slice(6);
      else return fail(`unknown option "${o.slice(0, 80)}" (since=<event id> is the only one)`);
    }
    if (c.principal.type === 'machine' && parts[2] !== c.principal.uuid) return fail('a machine token may only register its own machine\'s topics ({type}.{action}.<its uuid>)');
    if (c.subs.has(pattern)) {
      if (since === undefined) return this.reply(c, notice('register', pattern, { ok: true, already: true }));
      const old = c.subs.get(pattern)!;
      c.subs.delete(pattern);
      this.unindex(old);
    }
    if (c.subs.size >= (this.opts.maxSubscriptions ?? WS_MAX_SUBSCRIPTIONS)) return fail(`at most ${this.opts.maxSubscriptions ?? WS_MAX_SUBSCRIPTIONS} patterns per connection`);
    const sub: Sub = { pattern, parts, client: c, ...(since !== undefined ? { buffer: [] } : {}) };
    c.subs.set(pattern, sub);
    this.index(sub);
    this.reply(c, notice('register', pattern, { ok: true, ...(since !== undefined ? { since } : {}) }));
    if (since !== undefined) {
      try {
        await this.replay(sub, since);
      } catch (err) {
        // a failed replay (Redis down) must not leave the sub buffering forever: the client's retry registers afresh
        if (c.subs.get(pattern) === sub) {
          c.subs.delete(pattern);
          this.unindex(sub);
        }
        throw err;
      }
    }
  }

  /**
   * Sends what the stream holds after `since`, then what arrived live meanwhile (only ids past the last
   * one replayed), then goes live: no gap (the sub was indexed before the first read) and no duplicate.
   */
  private async replay(sub: Sub, since: string): Promise<void> {
    const c = sub.client;
    const key = this.s.keys.events();
    const first = (await this.s.redis.xrange(key, '-', '+', 'COUNT', 1))[0]?.[0];
    let cursor = since;
    let replayed = 0;
    for (;;) {
      const rows = await this.s.redis.xrange(key, `(${cursor}`, '+', 'COUNT', REPLAY_CHUNK);
      for (const [id, fields] of rows) {
        cursor = id;
        const e = parseStreamEntry(id, fields);
        if (!matchesPattern(sub.parts, e) || !eventVisibleTo(c.principal, e.type, e.key)) continue;
        if (!this.send(c, frameOf(e))) return;
        replayed++;
      }
      if (rows.length < REPLAY_CHUNK || c.subs.get(sub.pattern) !== sub) break;
    }
    // from here to going live there is no await: nothing can slip between the buffer and live delivery
    const buffered = sub.buffer ?? [];
    delete sub.buffer;
    for (const e of buffered) {
      if (compareIds(e.id, cursor) <= 0 || !eventVisibleTo(c.principal, e.type, e.key)) continue;
      if (!this.send(c, frameOf(e))) return;
      cursor = e.id;
      replayed++;
    }
    sub.floor = cursor;
    this.reply(c, notice('replayed', sub.pattern, { ok: true, since, count: replayed, truncated: first !== undefined && compareIds(since, first) < 0 && since !== '0-0' }));
  }

  /** One keepalive round (every 30 s): a client that did not answer the previous ping is dropped, the others pinged. */
  keepalive(): void {
    for (const c of this.clients) {
      if (!c.alive) {
        this.detach(c);
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      if (c.ws.readyState === OPEN) c.ws.ping();
    }
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** this process's WebSocket hub (stats for operators and tests) */
    eventHub: EventHub;
  }
}

/**
 * Registers the plugin, the route and the hub. Call before access control is registered: its hook
 * lifts `?token=` into the Authorization header (browsers cannot set headers on WebSockets), so the
 * route is authenticated like every other.
 */
export async function registerEventStream(app: FastifyInstance, s: Services): Promise<void> {
  app.addHook('onRequest', async (req) => {
    if (req.routeOptions.url !== WS_PATH || req.headers.authorization !== undefined) return;
    const token = (req.query as Record<string, unknown> | undefined)?.token;
    if (typeof token === 'string' && token !== '') req.headers.authorization = `Bearer ${token}`;
  });
  await app.register(websocket, { options: { maxPayload: WS_MAX_MESSAGE_BYTES } });
  const hub = new EventHub(s, { maxBufferedBytes: s.config.wsMaxBufferBytes });
  hub.start();
  app.decorate('eventHub', hub);
  app.addHook('onClose', async () => hub.close());
  app.get(WS_PATH, {
    websocket: true,
    schema: { tags: ['events'], summary: 'Live events over WebSocket: send "register {type}.{action}.{key} [since=ID]" / "deregister …"' },
    config: { access: { machineScope: true } },
  }, (socket, req) => hub.attach(socket, req.principal));
}
