// Keeps this process's path index and content caches current (the design is at the top of
// path-index.ts): a paged build at start, then the global event stream applied in order, and a
// barrier that lets a request wait until every event committed before it has been applied.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { eventObject, type EventBus } from '../events/bus.js';
import type { StoredObject } from '../models/common.js';
import type { Renderer } from '../render/renderer.js';
import type { StoredEvent } from '../store/backend.js';
import type { StoreKeys } from '../store/keys.js';
import type { ObjectStore } from '../store/objects.js';
import { compareIds } from '../store/stream-ids.js';
import { ContentCache, pages } from './caches.js';
import { machineFiles, PathIndex } from './path-index.js';

const PULL_BATCH = 1000;
const RETRY_MS = 500;

export interface IndexSyncDeps {
  store: ObjectStore;
  bus: EventBus;
  redis: Redis;
  keys: StoreKeys;
  renderer: Renderer;
  log: Logger;
}

export class IndexSync {
  readonly index = new PathIndex();
  readonly cache = new ContentCache();
  /** every event up to this id is reflected in the index and caches */
  private appliedId = '0-0';
  private readonly queue: StoredEvent[] = [];
  private draining = false;
  private pullWanted = false;
  private gapChecked = false;
  private started = false;
  private closed = false;
  private unsubscribe: (() => void) | undefined;
  private unsubscribeGap: (() => void) | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly waiters = new Set<{ id: string; done: (ok: boolean) => void }>();
  private readyPromise: Promise<void> | undefined;

  constructor(private readonly deps: IndexSyncDeps) {
    this.cache.onTemplateChange = (id) => deps.renderer.invalidate(id);
  }

  /** Builds the index once (retrying while Redis is unavailable); every caller awaits the same build. */
  ready(): Promise<void> {
    this.readyPromise ??= this.buildWithRetry();
    return this.readyPromise;
  }

  private async buildWithRetry(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.build();
      } catch (err) {
        if (this.closed) throw err;
        this.deps.log.warn({ err: (err as Error).message, attempt }, 'boot index build failed; retrying');
        await new Promise((r) => setTimeout(r, Math.min(5000, RETRY_MS * 2 ** attempt)));
      }
    }
  }

  private async build(): Promise<void> {
    const started = Date.now();
    // Subscribe before reading so nothing committed after the scan is lost; queued until the scan ends.
    this.unsubscribe ??= this.deps.bus.subscribe((e) => {
      this.queue.push(e);
      void this.drain();
    });
    this.unsubscribeGap ??= this.deps.bus.onGap(() => this.rebuild());
    const head = await this.head();
    await this.cache.load(this.deps.store);
    this.index.clear();
    for await (const page of pages(this.deps.store, 'machines')) for (const m of page) this.indexMachine(m);
    this.appliedId = head;
    this.started = true;
    // The events committed during the scan (already seen by it, applying them again is harmless).
    this.pullWanted = true;
    await this.drain();
    const size = this.index.size;
    this.deps.log.info({ machines: size.machines, paths: size.paths, ms: Date.now() - started }, 'boot path index built');
  }

  /**
   * The event tail lost events (trimmed before it read them): the index and caches are built again
   * from the store. Events are held meanwhile (as during the first build); requests wait in ready().
   */
  private rebuild(): void {
    if (this.closed) return;
    this.deps.log.warn('the event tail fell behind the event stream cap; rebuilding the boot path index');
    this.started = false;
    this.readyPromise = this.buildWithRetry();
  }

  /** The id of the newest event in the stream ('0-0' when it is empty). */
  private async head(): Promise<string> {
    const last = await this.deps.redis.xrevrange(this.deps.keys.events(), '+', '-', 'COUNT', 1);
    return last[0]?.[0] ?? '0-0';
  }

  /**
   * Waits until every event committed before this call is applied (bounded by `timeoutMs`); false on
   * timeout. Reads the stream itself, so it does not depend on the bus tail's latency.
   */
  async barrier(timeoutMs = 2000): Promise<boolean> {
    await this.ready();
    const target = await this.head();
    if (compareIds(this.appliedId, target) >= 0) return true;
    const reached = new Promise<boolean>((resolve) => {
      const w = { id: target, done: (ok: boolean) => { clearTimeout(timer); this.waiters.delete(w); resolve(ok); } };
      const timer = setTimeout(() => w.done(false), timeoutMs);
      this.waiters.add(w);
    });
    this.pullWanted = true;
    void this.drain();
    return reached;
  }

  private notify(): void {
    for (const w of this.waiters) if (compareIds(this.appliedId, w.id) >= 0) w.done(true);
  }

  private async drain(): Promise<void> {
    if (this.draining || !this.started || this.closed) return;
    this.draining = true;
    try {
      while (!this.closed && this.started) {
        if (this.pullWanted) {
          this.pullWanted = false;
          await this.pull();
          continue;
        }
        const e = this.queue.shift();
        if (!e) break;
        if (compareIds(e.id, this.appliedId) <= 0) continue;
        if (!this.gapChecked) {
          // The bus tail may have started after our start-up read: read what lies between from the stream.
          this.gapChecked = true;
          await this.pull();
          if (compareIds(e.id, this.appliedId) <= 0) continue;
        }
        const pending = this.apply(e);
        if (pending) await pending;
        this.appliedId = e.id;
        if (this.waiters.size > 0) this.notify();
      }
    } catch (err) {
      this.deps.log.warn({ err: (err as Error).message }, 'boot index update failed; retrying');
      this.pullWanted = true;
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => void this.drain(), RETRY_MS);
    } finally {
      this.draining = false;
    }
  }

  /** Applies every stream event after appliedId, oldest first. */
  private async pull(): Promise<void> {
    for (;;) {
      const batch = await this.deps.store.backend.readEvents(this.appliedId, PULL_BATCH);
      for (const e of batch) {
        const pending = this.apply(e);
        if (pending) await pending;
        this.appliedId = e.id;
      }
      this.notify();
      if (batch.length < PULL_BATCH || this.closed) return;
    }
  }

  /** Applies one event; a promise only when it must read (a bootenv changed). */
  private apply(e: StoredEvent): Promise<void> | undefined {
    if (e.type === 'machines') {
      if (e.action === 'delete') this.index.removeMachine(e.key);
      else {
        const v = eventObject(e);
        if (v && typeof v === 'object') this.indexMachine(v as StoredObject);
      }
      return undefined;
    }
    if (!this.cache.apply(e) || e.type !== 'bootenvs') return undefined;
    return this.reindexBootenv(e.key);
  }

  /** A bootenv changed: its machines' paths are recomputed from their current objects. */
  private async reindexBootenv(name: string): Promise<void> {
    const uuids = this.index.machinesOf(name);
    for (let i = 0; i < uuids.length; i += 500) {
      const batch = uuids.slice(i, i + 500);
      const found = await this.deps.store.getMany('machines', batch);
      const seen = new Set(found.map((m) => String(m.uuid)));
      for (const m of found) this.indexMachine(m);
      for (const u of batch) if (!seen.has(u)) this.index.removeMachine(u);
    }
  }

  private indexMachine(m: StoredObject): void {
    const uuid = String(m.uuid);
    const bootEnv = String(m.bootEnv ?? '');
    const bootenv = this.cache.bootenvs.get(bootEnv);
    // Most machine writes (the workflow runner's) change nothing a path can depend on: skip the re-render.
    const inputs = hashInputs([bootEnv, bootenv?.revision, m.hardwareAddrs, m.address, m.name, m.params, m.arch]);
    if (typeof m.revision === 'number' && this.index.touchMachine(uuid, bootEnv, inputs, m.revision)) return;
    const { files, errors } = machineFiles(this.deps.renderer, m, bootenv, this.cache.paramDefaults);
    const revisions = bootenv && typeof m.revision === 'number' && typeof bootenv.revision === 'number' ? { machine: m.revision, bootenv: bootenv.revision } : undefined;
    const clashes = this.index.setMachine(uuid, bootEnv, files, revisions, inputs);
    if (errors.length > 0) this.deps.log.warn({ machine: uuid, bootEnv, errors }, 'some boot paths of a machine do not render');
    if (clashes.length > 0) this.deps.log.warn({ machine: uuid, paths: clashes }, 'boot paths already claimed by another machine (the first claim is served)');
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.unsubscribe?.();
    this.unsubscribeGap?.();
    for (const w of [...this.waiters]) w.done(false);
  }
}

/** FNV-1a of the JSON of the machine fields and bootenv revision its paths are computed from. */
function hashInputs(values: unknown[]): number {
  const text = JSON.stringify(values);
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
