// The in-memory backend: the same primitives as Redis over Maps and sorted arrays, for unit tests and
// single-process demos. It passes the same conformance suite as the Redis backend.
import type { Backend, CommitResult, LexRange, StoredEvent, WriteOp } from './backend.js';

/** A sorted set of strings with Redis lex-range semantics. */
class LexSet {
  private items: string[] = [];

  private search(s: string): number {
    let lo = 0;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.items[mid]! < s) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  add(s: string): void {
    const i = this.search(s);
    if (this.items[i] !== s) this.items.splice(i, 0, s);
  }

  remove(s: string): void {
    const i = this.search(s);
    if (this.items[i] === s) this.items.splice(i, 1);
  }

  get size(): number {
    return this.items.length;
  }

  /** [start, end) positions of a lex range */
  private bounds(r: LexRange): [number, number] {
    const lower = (b: string) => (b === '-' ? 0 : b === '+' ? this.items.length : b.startsWith('[') ? this.search(b.slice(1)) : this.upper(b.slice(1)));
    const upperB = (b: string) => (b === '+' ? this.items.length : b === '-' ? 0 : b.startsWith('[') ? this.upper(b.slice(1)) : this.search(b.slice(1)));
    return [lower(r.min), Math.max(lower(r.min), upperB(r.max))];
  }

  private upper(s: string): number {
    const i = this.search(s);
    return this.items[i] === s ? i + 1 : i;
  }

  count(r: LexRange): number {
    const [a, b] = this.bounds(r);
    return b - a;
  }

  range(r: LexRange, offset: number, count: number, reverse: boolean): string[] {
    const [a, b] = this.bounds(r);
    if (!reverse) return this.items.slice(a + offset, Math.min(b, a + offset + count));
    const end = b - offset;
    return this.items.slice(Math.max(a, end - count), Math.max(a, end)).reverse();
  }
}

export class MemoryBackend implements Backend {
  private readonly objects = new Map<string, { r: number; j: string }>();
  private readonly keySets = new Map<string, LexSet>();
  private readonly indexes = new Map<string, LexSet>();
  private readonly uniques = new Map<string, Map<string, string>>();
  private readonly events: StoredEvent[] = [];
  private readonly prefMap = new Map<string, string>();
  private lastEventMs = 0;
  private eventSeq = 0;

  constructor(private readonly eventsMaxLen = 10_000) {}

  private set(map: Map<string, LexSet>, name: string): LexSet {
    let s = map.get(name);
    if (!s) map.set(name, (s = new LexSet()));
    return s;
  }

  private uniq(prefix: string, field: string): Map<string, string> {
    const name = `${prefix}:${field}`;
    let m = this.uniques.get(name);
    if (!m) this.uniques.set(name, (m = new Map()));
    return m;
  }

  async get(prefix: string, key: string): Promise<string | null> {
    return this.objects.get(`${prefix}:${key}`)?.j ?? null;
  }

  async getMany(prefix: string, keys: string[]): Promise<(string | null)[]> {
    return keys.map((k) => this.objects.get(`${prefix}:${k}`)?.j ?? null);
  }

  async unique(prefix: string, field: string, value: string): Promise<string | null> {
    return this.uniq(prefix, field).get(value) ?? null;
  }

  async commit(op: WriteOp): Promise<CommitResult> {
    const id = `${op.prefix}:${op.key}`;
    const cur = this.objects.get(id);
    if (op.expectRevision === null && cur) return { ok: false, reason: 'exists', revision: cur.r };
    if (op.expectRevision !== null && !cur) return { ok: false, reason: 'missing' };
    if (op.expectRevision !== null && cur && cur.r !== op.expectRevision) return { ok: false, reason: 'stale', revision: cur.r };
    for (const u of op.uniqueAdd) {
      const owner = this.uniq(op.prefix, u.field).get(u.value);
      if (owner !== undefined && owner !== op.key) return { ok: false, reason: 'unique', field: u.field, value: u.value, owner };
    }
    for (const u of op.uniqueRemove) {
      const m = this.uniq(op.prefix, u.field);
      if (m.get(u.value) === op.key) m.delete(u.value);
    }
    for (const e of op.indexRemove) this.set(this.indexes, `${op.prefix}:${e.field}`).remove(e.member);
    for (const u of op.uniqueAdd) this.uniq(op.prefix, u.field).set(u.value, op.key);
    for (const e of op.indexAdd) this.set(this.indexes, `${op.prefix}:${e.field}`).add(e.member);
    const keySet = this.set(this.keySets, op.prefix);
    if (op.value === null) {
      this.objects.delete(id);
      keySet.remove(op.key);
    } else {
      this.objects.set(id, { r: op.revision, j: op.value });
      keySet.add(op.key);
    }
    return { ok: true, eventId: this.appendEvent(op) };
  }

  private appendEvent(op: WriteOp): string {
    const now = Date.now();
    if (now > this.lastEventMs) {
      this.lastEventMs = now;
      this.eventSeq = 0;
    } else {
      this.eventSeq += 1;
    }
    const id = `${this.lastEventMs}-${this.eventSeq}`;
    this.events.push({ id, ...op.event });
    if (this.events.length > this.eventsMaxLen) this.events.splice(0, this.events.length - this.eventsMaxLen);
    return id;
  }

  async countKeys(prefix: string): Promise<number> {
    return this.keySets.get(prefix)?.size ?? 0;
  }

  async rangeKeys(prefix: string, offset: number, count: number, reverse: boolean): Promise<string[]> {
    return this.keySets.get(prefix)?.range({ min: '-', max: '+' }, offset, count, reverse) ?? [];
  }

  async indexCount(prefix: string, field: string, range: LexRange): Promise<number> {
    return this.indexes.get(`${prefix}:${field}`)?.count(range) ?? 0;
  }

  async indexRange(prefix: string, field: string, range: LexRange, offset: number, count: number, reverse: boolean): Promise<string[]> {
    return this.indexes.get(`${prefix}:${field}`)?.range(range, offset, count, reverse) ?? [];
  }

  async indexContains(prefix: string, field: string, members: string[]): Promise<boolean[]> {
    const set = this.indexes.get(`${prefix}:${field}`);
    return members.map((m) => (set ? set.count({ min: `[${m}`, max: `[${m}` }) > 0 : false));
  }

  async readEvents(afterId: string, count: number): Promise<StoredEvent[]> {
    const after = parseId(afterId);
    return this.events.filter((e) => compareIds(parseId(e.id), after) > 0).slice(0, count);
  }

  async prefs(): Promise<Record<string, string>> {
    return Object.fromEntries(this.prefMap);
  }

  async setPrefs(values: Record<string, string>): Promise<void> {
    for (const [k, v] of Object.entries(values)) this.prefMap.set(k, v);
  }

  ready(): boolean {
    return true;
  }

  async close(): Promise<void> {}
}

function parseId(id: string): [number, number] {
  const [ms = '0', seq = '0'] = id.split('-');
  return [Number(ms), Number(seq)];
}

function compareIds(a: [number, number], b: [number, number]): number {
  return a[0] - b[0] || a[1] - b[1];
}
