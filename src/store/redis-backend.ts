// The Redis backend: objects as hashes {r, j}, lex-ordered index zsets, unique hashes, one capped
// event stream; every write is one Lua script so indexes never disagree with their object.
import type { Redis } from 'ioredis';
import { AppError } from '../errors.js';
import type { Backend, CommitResult, LexRange, StoredEvent, WriteOp } from './backend.js';
import type { StoreKeys } from './keys.js';

// KEYS[1] object hash, KEYS[2] key zset, KEYS[3] event stream, KEYS[4..] unique hashes and index zsets.
// ARGV: expect, key, value, revision, maxlen, nEventArgs, eventArgs..., then op triples (op, keyIndex, member).
// Op `cv` (writes of cached kinds, store/object-cache.ts) stores the new event's id in that key.
const COMMIT = `
local cur = redis.call('HGET', KEYS[1], 'r')
local expect = ARGV[1]
if expect == '' then
  if cur then return {'exists', cur} end
else
  if not cur then return {'missing'} end
  if cur ~= expect then return {'stale', cur} end
end
local key, value = ARGV[2], ARGV[3]
local nev = tonumber(ARGV[6])
local ops = 7 + nev
for i = ops, #ARGV, 3 do
  if ARGV[i] == 'ua' then
    local owner = redis.call('HGET', KEYS[tonumber(ARGV[i+1])], ARGV[i+2])
    if owner and owner ~= key then return {'unique', ARGV[i+1], ARGV[i+2], owner} end
  end
end
for i = ops, #ARGV, 3 do
  local op, k, m = ARGV[i], KEYS[tonumber(ARGV[i+1])], ARGV[i+2]
  if op == 'ur' then
    if redis.call('HGET', k, m) == key then redis.call('HDEL', k, m) end
  elseif op == 'ir' then
    redis.call('ZREM', k, m)
  end
end
for i = ops, #ARGV, 3 do
  local op, k, m = ARGV[i], KEYS[tonumber(ARGV[i+1])], ARGV[i+2]
  if op == 'ua' then
    redis.call('HSET', k, m, key)
  elseif op == 'ia' then
    redis.call('ZADD', k, 0, m)
  end
end
if value == '' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], key)
else
  redis.call('HSET', KEYS[1], 'r', ARGV[4], 'j', value)
  if expect == '' then redis.call('ZADD', KEYS[2], 0, key) end
end
local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, 7, 6 + nev))
for i = ops, #ARGV, 3 do
  if ARGV[i] == 'cv' then redis.call('SET', KEYS[tonumber(ARGV[i+1])], id) end
end
return {'ok', id}
`;

/** `{p}:x:content-version`: the event id of the last write of a cached kind */
export const CONTENT_VERSION_KEY = 'content-version';

const EVENT_FIELDS = ['type', 'action', 'key', 'principal', 'time', 'object'] as const;

type CommitReply = [string, ...string[]];

export interface RedisBackendOptions {
  redis: Redis;
  keys: StoreKeys;
  /** approximate cap of the global event stream */
  eventsMaxLen: number;
  /** acknowledge a write only once this many replicas have it (Redis WAIT after the commit); 0 = don't wait */
  waitReplicas?: number;
  waitTimeoutMs?: number;
}

export class RedisBackend implements Backend {
  private readonly redis: Redis;
  private readonly keys: StoreKeys;
  private readonly eventsMaxLen: number;
  private readonly waitReplicas: number;
  private readonly waitTimeoutMs: number;
  private readonly autoPipelined: boolean;

  constructor(opts: RedisBackendOptions) {
    this.redis = opts.redis;
    this.keys = opts.keys;
    this.eventsMaxLen = opts.eventsMaxLen;
    this.waitReplicas = opts.waitReplicas ?? 0;
    this.waitTimeoutMs = opts.waitTimeoutMs ?? 1000;
    this.redis.defineCommand('ironflowCommit', { lua: COMMIT });
    this.autoPipelined = (this.redis.options as { enableAutoPipelining?: boolean } | undefined)?.enableAutoPipelining === true;
  }

  /** The id of the event of the last write of a cached kind ('0-0' when none): see store/object-cache.ts. */
  async contentVersion(): Promise<string> {
    return (await this.redis.get(this.keys.extra(CONTENT_VERSION_KEY))) ?? '0-0';
  }

  async get(prefix: string, key: string): Promise<string | null> {
    return this.redis.hget(this.keys.object(prefix, key), 'j');
  }

  async getMany(prefix: string, keys: string[]): Promise<(string | null)[]> {
    if (keys.length === 0) return [];
    // A few keys ride the connection's auto-pipeline (one write shared with every concurrent request);
    // an explicit pipeline would be a write of its own.
    if (keys.length <= 32 && this.autoPipelined) return Promise.all(keys.map((k) => this.redis.hget(this.keys.object(prefix, k), 'j')));
    const pipe = this.redis.pipeline();
    for (const k of keys) pipe.hget(this.keys.object(prefix, k), 'j');
    const res = (await pipe.exec()) ?? [];
    return res.map(([err, v]) => {
      if (err) throw err;
      return (v as string | null) ?? null;
    });
  }

  async unique(prefix: string, field: string, value: string): Promise<string | null> {
    return this.redis.hget(this.keys.unique(prefix, field), value);
  }

  async commit(op: WriteOp): Promise<CommitResult> {
    const keys = [this.keys.object(op.prefix, op.key), this.keys.keySet(op.prefix), this.keys.events()];
    const slot = new Map<string, number>();
    const fieldOfSlot = new Map<number, string>();
    const slotOf = (redisKey: string, field: string) => {
      let i = slot.get(redisKey);
      if (i === undefined) {
        keys.push(redisKey);
        i = keys.length;
        slot.set(redisKey, i);
        fieldOfSlot.set(i, field);
      }
      return String(i);
    };
    const ops: string[] = [];
    for (const u of op.uniqueRemove) ops.push('ur', slotOf(this.keys.unique(op.prefix, u.field), u.field), u.value);
    for (const e of op.indexRemove) ops.push('ir', slotOf(this.keys.index(op.prefix, e.field), e.field), e.member);
    for (const u of op.uniqueAdd) ops.push('ua', slotOf(this.keys.unique(op.prefix, u.field), u.field), u.value);
    for (const e of op.indexAdd) ops.push('ia', slotOf(this.keys.index(op.prefix, e.field), e.field), e.member);
    if (op.bumpVersion) ops.push('cv', slotOf(this.keys.extra(CONTENT_VERSION_KEY), ''), '');
    const ev = EVENT_FIELDS.flatMap((f) => [f, op.event[f]]);
    const args = [
      op.expectRevision === null ? '' : String(op.expectRevision), op.key, op.value ?? '', String(op.revision),
      String(this.eventsMaxLen), String(ev.length), ...ev, ...ops,
    ];
    const reply = (await (this.redis as unknown as { ironflowCommit(n: number, ...a: string[]): Promise<CommitReply> })
      .ironflowCommit(keys.length, ...keys, ...args));
    const [status, ...rest] = reply;
    switch (status) {
      case 'ok':
        if (this.waitReplicas > 0) await this.waitForReplicas();
        return { ok: true, eventId: rest[0]! };
      case 'unique': return { ok: false, reason: 'unique', field: fieldOfSlot.get(Number(rest[0])) ?? '', value: rest[1]!, owner: rest[2]! };
      case 'exists': case 'stale': return { ok: false, reason: status, revision: Number(rest[0]) };
      default: return { ok: false, reason: 'missing' };
    }
  }

  /**
   * WAIT on the connection that wrote: every write it sent so far is on `waitReplicas` replicas (in their
   * memory; their own AOF setting decides the disk). Short of that the write is not acknowledged (503):
   * it is on the primary and may or may not survive a failover, so the client retries.
   */
  private async waitForReplicas(): Promise<void> {
    const acked = Number(await this.redis.call('WAIT', String(this.waitReplicas), String(this.waitTimeoutMs)));
    if (acked < this.waitReplicas) {
      throw new AppError('UNAVAILABLE', `the write reached the Redis primary but only ${acked} of ${this.waitReplicas} replica(s) confirmed it within ${this.waitTimeoutMs} ms (IRONFLOW_REDIS_WAIT_REPLICAS); retry — it may already be stored`);
    }
  }

  countKeys(prefix: string): Promise<number> {
    return this.redis.zcard(this.keys.keySet(prefix));
  }

  rangeKeys(prefix: string, offset: number, count: number, reverse: boolean): Promise<string[]> {
    if (count <= 0) return Promise.resolve([]);
    const k = this.keys.keySet(prefix);
    return reverse ? this.redis.zrevrange(k, offset, offset + count - 1) : this.redis.zrange(k, offset, offset + count - 1);
  }

  indexCount(prefix: string, field: string, range: LexRange): Promise<number> {
    return this.redis.zlexcount(this.keys.index(prefix, field), range.min, range.max);
  }

  indexRange(prefix: string, field: string, range: LexRange, offset: number, count: number, reverse: boolean): Promise<string[]> {
    if (count <= 0) return Promise.resolve([]);
    const k = this.keys.index(prefix, field);
    return reverse
      ? this.redis.zrevrangebylex(k, range.max, range.min, 'LIMIT', offset, count)
      : this.redis.zrangebylex(k, range.min, range.max, 'LIMIT', offset, count);
  }

  async indexContains(prefix: string, field: string, members: string[]): Promise<boolean[]> {
    if (members.length === 0) return [];
    const scores = (await this.redis.call('ZMSCORE', this.keys.index(prefix, field), ...members)) as (string | null)[];
    return scores.map((x) => x !== null);
  }

  async readEvents(afterId: string, count: number): Promise<StoredEvent[]> {
    const rows = await this.redis.xrange(this.keys.events(), `(${afterId}`, '+', 'COUNT', count);
    return rows.map(([id, fields]) => {
      const rec: Record<string, string> = {};
      for (let i = 0; i + 1 < fields.length; i += 2) rec[fields[i]!] = fields[i + 1]!;
      return { id, type: rec.type ?? '', action: rec.action ?? '', key: rec.key ?? '', principal: rec.principal ?? '', time: rec.time ?? '', object: rec.object ?? 'null' };
    });
  }

  prefs(): Promise<Record<string, string>> {
    return this.redis.hgetall(this.keys.prefs());
  }

  async setPrefs(values: Record<string, string>): Promise<void> {
    if (Object.keys(values).length > 0) await this.redis.hset(this.keys.prefs(), values);
  }

  ready(): boolean {
    return this.redis.status === 'ready';
  }

  async close(): Promise<void> {
    /* the connection belongs to the caller */
  }
}
