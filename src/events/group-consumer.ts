// Runs one Redis consumer group over the global event stream in the worker role, with one leader at a
// time across every worker process (a leased lock): events are handled in stream order, exactly one
// process handles each, and a new leader first takes over what a dead one left pending (XAUTOCLAIM).
// Handlers acknowledge each event themselves, atomically with their effects (see ackScript).
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { StoredEvent } from '../store/backend.js';
import { parseStreamEntry } from './bus.js';

export interface GroupConsumerOptions {
  /** normal connection (handlers' writes, the leader lease) */
  redis: Redis;
  /** opens the dedicated connection XREADGROUP BLOCK needs */
  openBlocking: () => Redis;
  stream: string;
  group: string;
  /** key of the leader lease */
  leaderKey: string;
  /** where a group created for the first time starts: `0` (the whole stream) or `$` (new events) */
  startAt: '0' | '$';
  /** handles a batch in order; must XACK every event it completed (unacknowledged ones are retried) */
  handle: (events: StoredEvent[]) => Promise<void>;
  /** called each time this process becomes the leader, before it reads anything (e.g. to reload a cache) */
  onLead?: () => Promise<void>;
  /** called by the leader about every `tickMs` (housekeeping) */
  tick?: () => Promise<void>;
  tickMs?: number;
  log: Logger;
  batch?: number;
  leaseMs?: number;
  /**
   * After a batch shorter than `batch`, wait this long before reading again, so that a steady trickle of
   * events is read (and acknowledged) a few at a time rather than one read per event; a full batch is
   * followed at once. A function is asked each time (e.g. longer while nothing would be delivered).
   */
  lingerMs?: number | (() => number);
}

const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref?.());

export class GroupConsumer {
  readonly consumer = `c-${randomBytes(6).toString('hex')}`;
  private stopped = false;
  private leader = false;
  private renewedAt = 0;
  private tickedAt = 0;
  private claimPending = true;
  private leadPending = true;
  private blocking: Redis | undefined;
  private loop: Promise<void> | undefined;
  private readonly batch: number;
  private readonly leaseMs: number;

  constructor(private readonly o: GroupConsumerOptions) {
    this.batch = o.batch ?? 500;
    this.leaseMs = o.leaseMs ?? 10_000;
  }

  /** true while this process holds the lease */
  isLeader(): boolean {
    return this.leader;
  }

  async start(): Promise<void> {
    try {
      await this.o.redis.xgroup('CREATE', this.o.stream, this.o.group, this.o.startAt, 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
    this.loop = this.run();
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.blocking?.disconnect();
    await this.loop;
    if (this.leader) await this.o.redis.eval(RELEASE, 1, this.o.leaderKey, this.consumer).catch(() => undefined);
    this.leader = false;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        if (!(await this.lease())) {
          await sleep(Math.min(1000, this.leaseMs / 4));
          continue;
        }
        if (this.leadPending) {
          await this.o.onLead?.();
          this.leadPending = false;
        }
        if (this.claimPending) await this.takeOverPending();
        if (this.o.tick && Date.now() - this.tickedAt >= (this.o.tickMs ?? 10_000)) {
          this.tickedAt = Date.now();
          await this.o.tick();
        }
        if (this.stopped) break;
        const blocking = (this.blocking ??= this.o.openBlocking());
        const res = (await blocking.xreadgroup('GROUP', this.o.group, this.consumer, 'COUNT', this.batch, 'BLOCK', 1000, 'STREAMS', this.o.stream, '>')) as [string, [string, string[]][]][] | null;
        const entries = res?.[0]?.[1] ?? [];
        const events = entries.filter(([, f]) => f !== null).map(([id, f]) => parseStreamEntry(id, f));
        if (events.length > 0) await this.handleSafely(events);
        const linger = typeof this.o.lingerMs === 'function' ? this.o.lingerMs() : (this.o.lingerMs ?? 0);
        if (entries.length > 0 && entries.length < this.batch && linger > 0 && !this.stopped) await sleep(linger);
      } catch (err) {
        if (this.stopped) break;
        this.o.log.warn({ err: (err as Error).message, group: this.o.group }, 'event consumer problem; retrying');
        this.claimPending = true;
        await sleep(250);
      }
    }
    this.blocking?.disconnect();
  }

  private async handleSafely(events: StoredEvent[]): Promise<void> {
    try {
      await this.o.handle(events);
    } catch (err) {
      // unacknowledged events stay pending: handle them again, in order, before reading new ones
      this.claimPending = true;
      throw err;
    }
  }

  /** Takes or keeps the lease; a leader that lost it stops reading until it wins it back. */
  private async lease(): Promise<boolean> {
    const now = Date.now();
    if (this.leader) {
      if (now - this.renewedAt < this.leaseMs / 3) return true;
      const ok = (await this.o.redis.eval(RENEW, 1, this.o.leaderKey, this.consumer, String(this.leaseMs))) === 1;
      if (ok) this.renewedAt = now;
      else {
        this.leader = false;
        this.o.log.warn({ group: this.o.group }, 'event consumer lost its lease');
      }
      return ok;
    }
    const won = (await this.o.redis.set(this.o.leaderKey, this.consumer, 'PX', this.leaseMs, 'NX')) === 'OK';
    if (won) {
      this.leader = true;
      this.renewedAt = now;
      this.claimPending = true;
      this.leadPending = true;
    }
    return won;
  }

  /** Everything delivered but never acknowledged (by a dead leader or by us after an error), oldest first. */
  private async takeOverPending(): Promise<void> {
    let cursor = '0-0';
    do {
      const [next, entries] = (await this.o.redis.xautoclaim(this.o.stream, this.o.group, this.consumer, 0, cursor, 'COUNT', this.batch)) as [string, [string, string[] | null][]];
      const events = entries.filter(([, f]) => f !== null).map(([id, f]) => parseStreamEntry(id, f!));
      // entries trimmed from the stream while pending come back empty: nothing to do but acknowledge
      const gone = entries.filter(([, f]) => f === null).map(([id]) => id);
      if (gone.length > 0) await this.o.redis.xack(this.o.stream, this.o.group, ...gone);
      if (events.length > 0) await this.handleSafely(events);
      cursor = next;
    } while (cursor !== '0-0' && !this.stopped);
    this.claimPending = false;
  }
}
