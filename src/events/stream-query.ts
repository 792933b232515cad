// Time/id-bounded, newest-first paging over one Redis stream (a machine's timeline or the global event
// stream) with XREVRANGE … COUNT and an opaque cursor: every page costs O(limit), never a scan of the
// stream. Also the one mapping of stream entries to the Equinix-style entry clients see (SPEC 7.3).
import type { Redis } from 'ioredis';
import { AppError } from '../errors.js';
import type { Principal } from '../models/principal.js';
import type { StoredEvent } from '../store/backend.js';
import { compareIds } from '../store/stream-ids.js';
import { parseStreamEntry } from './bus.js';
import type { TimelineEntry } from './timeline.js';

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;
/** With a type filter, one request reads at most this many entries before handing back a cursor. */
export const MAX_SCANNED_PER_PAGE = 20_000;
const CHUNK = 1000;

/** A bound on stream ids: `id` itself included or not. */
export interface IdBound {
  id: string;
  inclusive: boolean;
}

export interface PageQuery {
  /** oldest end (from `since`) */
  lower?: IdBound;
  /** newest end (from `until` and/or `cursor`) */
  upper?: IdBound;
  /** glob patterns on the entry type (`user.*`); any may match */
  types: RegExp[];
  limit: number;
}

export interface Page<T> {
  items: T[];
  /** id the next (older) page starts below; absent on the last page */
  nextId?: string;
}

const STREAM_ID = /^(\d{1,20})-(\d{1,20})$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

export function isStreamId(s: string): boolean {
  return STREAM_ID.test(s);
}

export function encodeCursor(id: string): string {
  return Buffer.from(id).toString('base64url');
}

export function decodeCursor(cursor: string): string {
  const id = /^[A-Za-z0-9_-]{1,64}$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  if (!isStreamId(id)) throw new AppError('INVALID', 'cursor: not a cursor this server issued (use the X-Next-Cursor header of the previous page)');
  return id;
}

/**
 * `since`/`until`: an event id (exclusive at both ends) or an RFC 3339 time (since inclusive, until
 * exclusive: adjacent windows never overlap).
 */
export function parseBound(name: 'since' | 'until', raw: string): IdBound {
  if (isStreamId(raw)) return { id: raw, inclusive: false };
  const ms = RFC3339.test(raw) ? Date.parse(raw.replace(' ', 'T')) : NaN;
  if (!Number.isFinite(ms) || ms < 0) throw new AppError('INVALID', `${name}: expected an RFC 3339 time (2024-05-01T12:00:00Z) or an event id (1714564800000-0), got "${raw}"`);
  return name === 'since' ? { id: `${Math.floor(ms)}-0`, inclusive: true } : { id: `${Math.ceil(ms)}-0`, inclusive: false };
}

/** `user.*,job.?ailed`: `*` any run of characters (dots included), `?` one character. */
export function typePatterns(raw: string | undefined): RegExp[] {
  if (raw === undefined || raw === '') return [];
  const parts = raw.split(',').map((p) => p.trim()).filter(Boolean);
  if (parts.length > 20 || parts.some((p) => p.length > 200)) throw new AppError('INVALID', 'type: at most 20 patterns of 200 characters');
  return parts.map((p) => new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`));
}

/** Parses the query string of both event routes; every bad value is a 400 naming it. */
export function parsePageQuery(q: Record<string, unknown>): PageQuery {
  const str = (name: string): string | undefined => {
    const v = q[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw new AppError('INVALID', `${name}: give it once`);
    return v;
  };
  const limitRaw = str('limit');
  let limit = DEFAULT_LIMIT;
  if (limitRaw !== undefined) {
    if (!/^\d{1,7}$/.test(limitRaw) || Number(limitRaw) < 1 || Number(limitRaw) > MAX_LIMIT) throw new AppError('INVALID', `limit: expected an integer from 1 to ${MAX_LIMIT}, got "${limitRaw}"`);
    limit = Number(limitRaw);
  }
  const since = str('since');
  const until = str('until');
  const cursor = str('cursor');
  const lower = since !== undefined ? parseBound('since', since) : undefined;
  let upper = until !== undefined ? parseBound('until', until) : undefined;
  if (cursor !== undefined) {
    const id = decodeCursor(cursor);
    if (!upper || compareIds(id, upper.id) <= 0) upper = { id, inclusive: false };
  }
  return { lower, upper, types: typePatterns(str('type')), limit };
}

const lowerArg = (b: IdBound | undefined) => (b ? `${b.inclusive ? '' : '('}${b.id}` : '-');
const upperArg = (b: IdBound | undefined) => (b ? `${b.inclusive ? '' : '('}${b.id}` : '+');

/**
 * One newest-first page. `typeOf` names an entry's type from its raw fields and `visible` may hide
 * entries (so skipped entries are never decoded); `decode` builds the entry. Without a type filter this
 * is one XREVRANGE of `limit + 1`; otherwise bounded chunks until the page is full or
 * MAX_SCANNED_PER_PAGE entries were read, when the cursor points below the last entry read.
 */
export async function readPage<T>(redis: Redis, key: string, q: PageQuery, opts: {
  typeOf: (fields: string[]) => string;
  decode: (id: string, fields: string[]) => T;
  visible?: (fields: string[]) => boolean;
}): Promise<Page<T>> {
  if (q.lower && q.upper && compareIds(q.lower.id, q.upper.id) > 0) return { items: [] };
  const { typeOf, decode, visible } = opts;
  const matches = (fields: string[]) => (!visible || visible(fields)) && (q.types.length === 0 || q.types.some((r) => r.test(typeOf(fields))));
  const found: [string, string[]][] = [];
  let upper = q.upper;
  let scanned = 0;
  const want = q.limit + 1;
  for (;;) {
    const first = scanned === 0 && q.types.length === 0;
    const count = first ? want : Math.min(CHUNK, Math.max(want * 4, 200), MAX_SCANNED_PER_PAGE - scanned);
    const rows = (await redis.xrevrange(key, upperArg(upper), lowerArg(q.lower), 'COUNT', count)) as [string, string[]][];
    scanned += rows.length;
    for (const row of rows) {
      if (!matches(row[1])) continue;
      found.push(row);
      if (found.length === want) break;
    }
    if (found.length === want) {
      const items = found.slice(0, q.limit);
      return { items: items.map(([id, f]) => decode(id, f)), nextId: items[items.length - 1]![0] };
    }
    if (rows.length < count) return { items: found.map(([id, f]) => decode(id, f)) };
    const last = rows[rows.length - 1]![0];
    if (scanned >= MAX_SCANNED_PER_PAGE) return { items: found.map(([id, f]) => decode(id, f)), nextId: last };
    upper = { id: last, inclusive: false };
  }
}

function field(fields: string[], name: string): string {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1]!;
  return '';
}

function parseJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}

/** Type of a timeline stream entry (`user.1000`). */
export const timelineTypeOf = (fields: string[]) => field(fields, 'type');

export function timelineEntry(machine: string) {
  return (id: string, fields: string[]): TimelineEntry => ({
    id,
    type: field(fields, 'type'),
    state: field(fields, 'state'),
    body: parseJson(field(fields, 'body') || 'null'),
    createdAt: field(fields, 'createdAt'),
    machine,
  });
}

/** Entry type of a global event: a timeline publication keeps its own type, anything else is `{prefix}.{action}`. */
export function globalTypeOf(fields: string[]): string {
  const type = field(fields, 'type');
  return type === 'timeline' ? field(fields, 'action') : `${type}.${field(fields, 'action')}`;
}

/** A global event in the Equinix entry shape: `machines.update` with the object as body, timeline entries as they are. */
export function globalEntry(e: StoredEvent): TimelineEntry {
  const object = parseJson(e.object);
  if (e.type === 'timeline' && object && typeof object === 'object') {
    const t = object as Partial<TimelineEntry>;
    return { id: e.id, type: t.type ?? e.action, state: t.state ?? '', body: t.body ?? null, createdAt: t.createdAt ?? e.time, machine: t.machine ?? e.key };
  }
  const o = object as Record<string, unknown> | null;
  const machine = e.type === 'machines' || e.type === 'machine_jobs' ? e.key : e.type === 'jobs' && typeof o?.machine === 'string' ? o.machine : '';
  return { id: e.id, type: `${e.type}.${e.action}`, state: '', body: object, createdAt: e.time, machine };
}

export const globalEntryOf = (id: string, fields: string[]) => globalEntry(parseStreamEntry(id, fields));

/**
 * Who may see an event: user records only admins (as with the users routes); a machine token only
 * events about its own machine; everyone else everything.
 */
export function eventVisibleTo(p: Principal, type: string, key: string): boolean {
  if (p.type === 'system') return true;
  if (p.type === 'machine') return key === p.uuid;
  return type !== 'users' || p.role === 'admin';
}

/** raw-field variant of eventVisibleTo, for filtering the global stream before decoding */
export function visibleFields(p: Principal) {
  return (fields: string[]) => eventVisibleTo(p, field(fields, 'type'), field(fields, 'key'));
}
