// The storage primitives every backend (Redis, memory) provides; the object service and the query
// engine are written once on top of them, and one conformance suite checks both backends.

export interface IndexEntry {
  field: string;
  /** encoded value + "\0" + key (see index-encoding.ts) */
  member: string;
}

export interface UniqueEntry {
  field: string;
  value: string;
}

export interface EventRecord {
  type: string;
  action: string;
  key: string;
  principal: string;
  time: string;
  /** JSON of the object (public view) */
  object: string;
}

export interface WriteOp {
  prefix: string;
  key: string;
  /** null: the object must not exist yet; a number: its current revision must be exactly this */
  expectRevision: number | null;
  /** JSON to store (with `revision` inside), or null to delete */
  value: string | null;
  revision: number;
  indexAdd: IndexEntry[];
  indexRemove: IndexEntry[];
  uniqueAdd: UniqueEntry[];
  uniqueRemove: UniqueEntry[];
  event: EventRecord;
  /** a write of a kind processes cache (store/object-cache.ts): record its event id as the content version */
  bumpVersion?: boolean;
}

export type CommitResult =
  | { ok: true; eventId: string }
  | { ok: false; reason: 'exists' | 'missing' | 'stale'; revision?: number }
  | { ok: false; reason: 'unique'; field: string; value: string; owner: string };

export interface LexRange {
  /** Redis lex range syntax: `[x` inclusive, `(x` exclusive, `-` / `+` open */
  min: string;
  max: string;
}

export interface StoredEvent extends EventRecord {
  id: string;
}

export interface Backend {
  get(prefix: string, key: string): Promise<string | null>;
  getMany(prefix: string, keys: string[]): Promise<(string | null)[]>;
  /** the key owning a unique value, or null */
  unique(prefix: string, field: string, value: string): Promise<string | null>;
  /** atomic: checks revision and unique claims, applies index changes, stores, appends the event */
  commit(op: WriteOp): Promise<CommitResult>;
  countKeys(prefix: string): Promise<number>;
  rangeKeys(prefix: string, offset: number, count: number, reverse: boolean): Promise<string[]>;
  indexCount(prefix: string, field: string, range: LexRange): Promise<number>;
  indexRange(prefix: string, field: string, range: LexRange, offset: number, count: number, reverse: boolean): Promise<string[]>;
  /** for each member (`encoded \0 key`), whether the index holds it (optional: the query engine reads objects without it) */
  indexContains?(prefix: string, field: string, members: string[]): Promise<boolean[]>;
  /** events after `afterId` (exclusive; "0" for the start), oldest first */
  readEvents(afterId: string, count: number): Promise<StoredEvent[]>;
  prefs(): Promise<Record<string, string>>;
  setPrefs(values: Record<string, string>): Promise<void>;
  /**
   * The event id of the last write with `bumpVersion` ('0-0' when none); backends without it (memory)
   * leave it out, and nothing caches over them.
   */
  contentVersion?(): Promise<string>;
  /** true when the backend can serve requests (Redis connected) */
  ready(): boolean;
  close(): Promise<void>;
}
