// The event bus on Redis streams: every event goes to one capped global stream (store writes append
// in their commit script; everything else through publish()), and every process tails that stream
// so caches, WebSocket clients and webhooks see events from all processes.
import type { Redis } from 'ioredis';
import type { Principal } from '../models/principal.js';
import { principalId } from '../models/principal.js';
import type { StoredEvent } from '../store/backend.js';
import type { StoreKeys } from '../store/keys.js';
import { compareIds } from '../store/stream-ids.js';

export interface PublishInput {
  type: string;
  action: string;
  key: string;
  object: unknown;
  principal: Principal;
}

export type EventListener = (e: StoredEvent) => void;

export function parseStreamEntry(id: string, fields: string[]): StoredEvent {
  // every writer appends the fields in this order: read them in place
  if (fields.length === 12 && fields[0] === 'type' && fields[2] === 'action' && fields[4] === 'key' && fields[6] === 'principal' && fields[8] === 'time' && fields[10] === 'object') {
    return { id, type: fields[1]!, action: fields[3]!, key: fields[5]!, principal: fields[7]!, time: fields[9]!, object: fields[11]! };
  }
  const rec: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) rec[fields[i]!] = fields[i + 1]!;
  return { id, type: rec.type ?? '', action: rec.action ?? '', key: rec.key ?? '', principal: rec.principal ?? '', time: rec.time ?? '', object: rec.object ?? 'null' };
}

const parsed = new WeakMap<StoredEvent, unknown>();

/**
 * The event's object, parsed once for every listener of the same event (`undefined` when it is not
 * JSON). Shared: listeners read it and never change it.
 */
export function eventObject(e: StoredEvent): unknown {
  if (parsed.has(e)) return parsed.get(e);
  let v: unknown;
  try {
    v = JSON.parse(e.object);
  } catch {
    v = undefined;
  }
  parsed.set(e, v);
  return v;
}

/** Events per tail read; a full read is the sign of a tail that may have fallen behind the stream's cap. */
const TAIL_BATCH = 1000;

export class EventBus {
  private readonly listeners = new Set<EventListener>();
  private readonly gapListeners = new Set<() => void>();
  private tailing = false;
  private stopped = false;
  private lastId = '$';
  private blocking: Redis | undefined;

  /**
   * @param redis a normal connection for XADD
   * @param openBlocking opens the dedicated connection XREAD BLOCK needs, on the first subscribe
   */
  constructor(
    private readonly redis: Redis,
    private readonly openBlocking: () => Redis,
    private readonly keys: StoreKeys,
    readonly maxLen: number,
  ) {}

  async publish(e: PublishInput): Promise<string> {
    const id = await this.redis.xadd(this.keys.events(), 'MAXLEN', '~', String(this.maxLen), '*',
      'type', e.type, 'action', e.action, 'key', e.key, 'principal', principalId(e.principal),
      'time', new Date().toISOString(), 'object', JSON.stringify(e.object ?? null));
    return id!;
  }

  /**
   * Told when the tail finds that events it had not read yet were trimmed from the stream (it fell more
   * than the stream's cap behind): whatever is kept current from events must be rebuilt from the store.
   */
  onGap(listener: () => void): () => void {
    this.gapListeners.add(listener);
    return () => this.gapListeners.delete(listener);
  }

  /**
   * Whether entries after `id` may have been trimmed: the stream now starts past it. (Trimming drops
   * whole nodes from the front, so this may also say yes when only `id` and older went: a rebuild
   * that was not needed, never a gap missed.)
   */
  private async trimmedAfter(id: string): Promise<boolean> {
    const first = (await this.redis.xrange(this.keys.events(), '-', '+', 'COUNT', 1))[0]?.[0];
    return first !== undefined && compareIds(first, id) > 0;
  }

  /** Listens to every event published after the tail started (by any process). */
  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    if (!this.tailing) void this.tail();
    return () => this.listeners.delete(listener);
  }

  private async tail(): Promise<void> {
    this.tailing = true;
    const blocking = (this.blocking ??= this.openBlocking());
    while (!this.stopped) {
      try {
        // '$' is resolved once, to the newest entry: re-sending '$' after a read that timed out would skip
        // whatever was added between the two reads
        if (this.lastId === '$') this.lastId = (await this.redis.xrevrange(this.keys.events(), '+', '-', 'COUNT', 1))[0]?.[0] ?? '0-0';
        const from = this.lastId;
        const res = (await blocking.xread('COUNT', TAIL_BATCH, 'BLOCK', 1000, 'STREAMS', this.keys.events(), from)) as [string, [string, string[]][]][] | null;
        const entries = res?.[0]?.[1] ?? [];
        if (entries.length === TAIL_BATCH && (await this.trimmedAfter(from))) {
          for (const g of this.gapListeners) g();
        }
        for (const [id, fields] of entries) {
          this.lastId = id;
          const e = parseStreamEntry(id, fields);
          for (const l of this.listeners) l(e);
        }
      } catch {
        if (this.stopped) break;
        await new Promise((r) => setTimeout(r, 250)); // Redis down: the connection retries; resume from lastId
      }
    }
  }

  close(): void {
    this.stopped = true;
    this.listeners.clear();
    this.blocking?.disconnect();
  }
}
