// Objects of the small, rarely written kinds every render and workflow step reads (profiles, stages,
// params, tasks), held per process — and never served stale.
//
// How it stays exact across processes: every write of a cached kind stores its event id as the
// "content version" in the same commit script (redis-backend.ts, op `cv`). Each process applies the
// global event stream in order (the bus tail calls `apply`), dropping the entry an event names and
// remembering the last id it applied. A reader asks for a `view()`: one GET of the content version
// (issued at once, so it rides the same auto-pipelined write as the caller's other reads). When this
// process has applied every event up to that version, every write of a cached kind committed before
// the read is reflected here and cached entries are served; otherwise (a write whose event has not
// reached this process yet) the view reads from the store, as if there were no cache. Entries are
// filled lazily from store reads; a fill that raced an invalidation of its key is not kept.
import type { StoredObject } from '../models/common.js';
import type { Backend, StoredEvent } from './backend.js';
import { compareIds } from './stream-ids.js';

/** The kinds cached here; their writes bump the content version (objects.ts). */
export const CACHED_KINDS: ReadonlySet<string> = new Set(['profiles', 'stages', 'params', 'tasks']);

/** Bound on entries (objects and known absences): past it the cache starts over. */
const MAX_ENTRIES = 20_000;

/** What a reader sees: cached objects when this process is up to date, else the store itself. */
export interface ObjectSource {
  get(prefix: string, key: string): Promise<StoredObject | undefined>;
  getMany(prefix: string, keys: string[]): Promise<StoredObject[]>;
}

export class ObjectCache {
  /** `prefix\0key` → the stored object, or null for "does not exist" */
  private readonly entries = new Map<string, StoredObject | null>();
  /** bumped per key on every invalidation (a fill started before one is dropped) */
  private readonly generation = new Map<string, number>();
  private epoch = 0;
  /** every event up to this id has been applied */
  private applied = '0-0';
  private pending: Promise<string> | undefined;

  private started = false;

  /**
   * @param backend where misses are read
   * @param version reads the content version (backend.contentVersion)
   * @param start subscribes `apply` to the global stream, and `reset` to its gaps; called on first use
   */
  constructor(private readonly backend: Pick<Backend, 'getMany'>, private readonly version: () => Promise<string>, private readonly start: (apply: (e: StoredEvent) => void, reset: () => void) => void) {}

  /** Applies one event of the global stream (every event, in stream order). */
  apply(e: StoredEvent): void {
    if (CACHED_KINDS.has(e.type)) {
      const k = `${e.type}\0${e.key}`;
      this.entries.delete(k);
      this.generation.set(k, (this.generation.get(k) ?? 0) + 1);
    }
    this.applied = e.id;
  }

  /**
   * A consistent source for one request: the content version is read now (requests of the same tick
   * share the read, which is sent after all of them began).
   */
  view(): ObjectSource {
    if (!this.started) {
      this.started = true;
      this.start((e) => this.apply(e), () => this.reset());
    }
    if (!this.pending) {
      const p = this.version();
      this.pending = p;
      setImmediate(() => {
        if (this.pending === p) this.pending = undefined;
      });
      p.catch(() => undefined);
    }
    const valid = this.pending.then((v) => compareIds(this.applied, v) >= 0, () => false);
    return {
      get: async (prefix, key) => (await this.read(valid, prefix, [key]))[0],
      getMany: async (prefix, keys) => (await this.read(valid, prefix, keys)).filter((o): o is StoredObject => o !== undefined),
    };
  }

  private async read(valid: Promise<boolean>, prefix: string, keys: string[]): Promise<(StoredObject | undefined)[]> {
    if (!CACHED_KINDS.has(prefix) || !(await valid)) return this.fetch(prefix, keys, false);
    const out: (StoredObject | undefined)[] = new Array(keys.length);
    const missing: number[] = [];
    keys.forEach((key, i) => {
      const hit = this.entries.get(`${prefix}\0${key}`);
      if (hit === undefined) missing.push(i);
      else out[i] = hit ?? undefined;
    });
    if (missing.length > 0) {
      const fetched = await this.fetch(prefix, missing.map((i) => keys[i]!), true);
      missing.forEach((i, j) => (out[i] = fetched[j]));
    }
    return out;
  }

  /** Reads from the store; `fill` keeps what was read unless its key was invalidated meanwhile. */
  private async fetch(prefix: string, keys: string[], fill: boolean): Promise<(StoredObject | undefined)[]> {
    const epoch = this.epoch;
    const gens = keys.map((k) => this.generation.get(`${prefix}\0${k}`) ?? 0);
    const raws = await this.backend.getMany(prefix, keys);
    const objs = raws.map((r) => (r === null ? undefined : (JSON.parse(r) as StoredObject)));
    if (fill && epoch === this.epoch) {
      if (this.entries.size + keys.length > MAX_ENTRIES) this.reset();
      keys.forEach((key, i) => {
        const k = `${prefix}\0${key}`;
        if ((this.generation.get(k) ?? 0) === gens[i]) this.entries.set(k, objs[i] ?? null);
      });
      // cached objects are shared between readers: nobody may change them
      for (const o of objs) if (o) deepFreeze(o);
    }
    return objs;
  }

  /** Forgets every entry (also when the event tail lost events: what they named may have changed). */
  reset(): void {
    this.entries.clear();
    this.generation.clear();
    this.epoch++;
  }
}

function deepFreeze(v: unknown): void {
  if (v === null || typeof v !== 'object' || Object.isFrozen(v)) return;
  Object.freeze(v);
  for (const x of Object.values(v as Record<string, unknown>)) deepFreeze(x);
}
