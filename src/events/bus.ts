// The event bus on Redis streams: every event goes to one capped global stream (store writes append
// in their commit script; everything else through publish()), and every process tails that stream
// so caches, WebSocket clients and webhooks see events from all processes.
import type { Redis } from 'ioredis';
import type { Principal } from '../models/principal.js';
import { principalId } from '../models/principal.js';
import type { StoredEvent } from '../store/backend.js';
import type { StoreKeys } from '../store/keys.js';

export interface PublishInput {
  type: string;
  action: string;
  key: string;
  object: unknown;
  principal: Principal;
}

export type EventListener = (e: StoredEvent) => void;

export function parseStreamEntry(id: string, fields: string[]): StoredEvent {
  const rec: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) rec[fields[i]!] = fields[i + 1]!;
  return { id, type: rec.type ?? '', action: rec.action ?? '', key: rec.key ?? '', principal: rec.principal ?? '', time: rec.time ?? '', object: rec.object ?? 'null' };
}

export class EventBus {
  private readonly listeners = new Set<EventListener>();
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
    private readonly maxLen: number,
  ) {}

  async publish(e: PublishInput): Promise<string> {
    const id = await this.redis.xadd(this.keys.events(), 'MAXLEN', '~', String(this.maxLen), '*',
      'type', e.type, 'action', e.action, 'key', e.key, 'principal', principalId(e.principal),
      'time', new Date().toISOString(), 'object', JSON.stringify(e.object ?? null));
    return id!;
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
        const res = (await blocking.xread('COUNT', 1000, 'BLOCK', 1000, 'STREAMS', this.keys.events(), this.lastId)) as [string, [string, string[]][]][] | null;
        for (const [, entries] of res ?? []) {
          for (const [id, fields] of entries) {
            this.lastId = id;
            const e = parseStreamEntry(id, fields);
            for (const l of this.listeners) l(e);
          }
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
