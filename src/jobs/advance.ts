// Requesting workflow advances (SPEC 5.2) without duplicates and without lost wake-ups, and the
// per-machine lock with a fencing token that keeps a stalled worker from writing after a takeover.
//
// A request marks the machine dirty (`{p}:x:advance-dirty`, a sorted set scored by the time it first
// became dirty) and adds BullMQ job `adv-<uuid>`; a job with that id already waiting or active
// absorbs the add. The processor clears the mark before each pass and passes again while it is set,
// so a request that lands during a pass is never lost; a request that lands after the last check but
// before BullMQ frees the job id is caught by the `completed`/`failed` listener (the id is free by then);
// one lost with a killed worker is caught by the sweeper, which re-requests machines dirty for a while.
// Timers (retry backoff, wait deadlines) are separate delayed jobs `tmr-<uuid>-<ms>` that request an
// advance when they fire, so a pending `adv-` job never absorbs them.
import { randomBytes } from 'node:crypto';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { StoreKeys } from '../store/keys.js';
import type { QueueClient } from './queue-client.js';
import { QueueNames } from './queues.js';

export interface AdvanceData {
  uuid: string;
}

export const advanceJobId = (uuid: string) => `adv-${uuid}`;
const timerJobId = (uuid: string, atMs: number) => `tmr-${uuid}-${atMs}`;

export class AdvanceRequests {
  readonly dirtyKey: string;

  constructor(private readonly redis: Redis, keys: StoreKeys, private readonly queues: QueueClient) {
    this.dirtyKey = keys.extra('advance-dirty');
  }

  private get queue(): Queue {
    return this.queues.queue(QueueNames.advance);
  }

  /** Asks for an advance of the machine as soon as a worker is free. */
  async request(uuid: string): Promise<void> {
    await this.redis.zadd(this.dirtyKey, 'NX', Date.now(), uuid);
    await this.queue.add('advance', { uuid } satisfies AdvanceData, { jobId: advanceJobId(uuid), removeOnComplete: true, removeOnFail: true });
  }

  async requestMany(uuids: string[]): Promise<void> {
    if (uuids.length === 0) return;
    const now = Date.now();
    await this.redis.zadd(this.dirtyKey, 'NX', ...uuids.flatMap((u) => [now, u]));
    await this.queue.addBulk(uuids.map((uuid) => ({ name: 'advance', data: { uuid }, opts: { jobId: advanceJobId(uuid), removeOnComplete: true, removeOnFail: true } })));
  }

  /** Asks for an advance at `atMs` (epoch ms): a delayed timer job, never a sleeping worker. */
  async requestAt(uuid: string, atMs: number): Promise<void> {
    const at = Math.ceil(atMs);
    await this.queue.add('timer', { uuid } satisfies AdvanceData, { jobId: timerJobId(uuid, at), delay: Math.max(0, at - Date.now()), removeOnComplete: true, removeOnFail: true });
  }

  /** Clears the mark before a pass; true when it was set. */
  async clear(uuid: string): Promise<boolean> {
    return (await this.redis.zrem(this.dirtyKey, uuid)) > 0;
  }

  async isDirty(uuid: string): Promise<boolean> {
    return (await this.redis.zscore(this.dirtyKey, uuid)) !== null;
  }

  /** Machines marked dirty before `beforeMs`, oldest first (the sweeper's candidates). */
  async dirtySince(beforeMs: number, limit: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.dirtyKey, '-inf', beforeMs, 'LIMIT', 0, limit);
  }

  /** Re-marks a machine whose pass failed, keeping its original time. */
  async mark(uuid: string): Promise<void> {
    await this.redis.zadd(this.dirtyKey, 'NX', Date.now(), uuid);
  }
}

/** Thrown by a fenced write after the lock was lost: the pass stops and writes nothing more. */
export class LostLock extends Error {
  constructor(uuid: string) {
    super(`lost the advance lock of machine ${uuid} (another worker took over)`);
    this.name = 'LostLock';
  }
}

// KEYS[1] lock, KEYS[2] fence counter; ARGV[1] owner id, ARGV[2] ttl ms. Returns the token or false.
const ACQUIRE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local fence = redis.call('INCR', KEYS[2])
local token = fence .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return token
`;
// KEYS[1] lock; ARGV[1] token, ARGV[2] ttl ms (renew) or absent (release)
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

type Scripts = {
  ironflowLockAcquire(lock: string, fence: string, owner: string, ttl: number): Promise<string | null>;
  ironflowLockRenew(lock: string, token: string, ttl: number): Promise<number>;
  ironflowLockRelease(lock: string, token: string): Promise<number>;
};

/**
 * One machine's advance lock, held by one pass. `check()` before every runner write resolves only
 * while this holder still owns the lock: either Redis confirmed it (acquire or renewal) less than half
 * a TTL ago — measured from before the confirming command was sent, so the key cannot have expired
 * since — or a GET shows the lock still holds this holder's token. The token starts with a per-machine
 * counter (INCR), so every holder in history has a distinct, increasing token.
 */
export class Fence {
  private lost = false;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly locks: MachineLocks, readonly uuid: string, readonly token: string, private confirmedAt: number) {
    this.timer = setInterval(() => void this.renew(), Math.max(100, Math.floor(locks.ttlMs / 3)));
    this.timer.unref();
  }

  get number(): number {
    return Number(this.token.split(':')[0]);
  }

  private async renew(): Promise<void> {
    const sentAt = Date.now();
    try {
      if ((await this.locks.scripts.ironflowLockRenew(this.locks.lockKey(this.uuid), this.token, this.locks.ttlMs)) === 0) this.lost = true;
      else this.confirmedAt = sentAt;
    } catch {
      /* Redis unreachable: the next check() decides */
    }
  }

  async check(): Promise<void> {
    if (!this.lost && Date.now() - this.confirmedAt < this.locks.ttlMs / 2) return;
    if (!this.lost && (await this.locks.redis.get(this.locks.lockKey(this.uuid))) === this.token) return;
    this.lost = true;
    throw new LostLock(this.uuid);
  }

  async release(): Promise<void> {
    clearInterval(this.timer);
    await this.locks.scripts.ironflowLockRelease(this.locks.lockKey(this.uuid), this.token).catch(() => undefined);
  }
}

export class MachineLocks {
  readonly scripts: Scripts;
  private readonly owner = randomBytes(6).toString('hex');

  constructor(readonly redis: Redis, private readonly keys: StoreKeys, readonly ttlMs = 10_000) {
    redis.defineCommand('ironflowLockAcquire', { numberOfKeys: 2, lua: ACQUIRE });
    redis.defineCommand('ironflowLockRenew', { numberOfKeys: 1, lua: RENEW });
    redis.defineCommand('ironflowLockRelease', { numberOfKeys: 1, lua: RELEASE });
    this.scripts = redis as unknown as Scripts;
  }

  lockKey(uuid: string): string {
    return this.keys.extra('advance-lock', uuid);
  }

  /** The lock, or undefined while another pass holds it. */
  async acquire(uuid: string): Promise<Fence | undefined> {
    const sentAt = Date.now();
    const token = await this.scripts.ironflowLockAcquire(this.lockKey(uuid), this.keys.extra('advance-fence', uuid), this.owner, this.ttlMs);
    return token ? new Fence(this, uuid, token, sentAt) : undefined;
  }

  /** Milliseconds left on someone else's lock (0 when free). */
  async remainingMs(uuid: string): Promise<number> {
    return Math.max(0, await this.redis.pttl(this.lockKey(uuid)));
  }
}
