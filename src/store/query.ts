// List queries (SPEC 3.1): parses `?field=Op(args)` filters, sort and paging, and runs them over the
// backend's indexes so a page costs O(log N + limit) in the common cases and never holds every object.
import { AppError } from '../errors.js';
import type { IndexSpec, KindDef, StoredObject } from '../models/common.js';
import type { Backend } from './backend.js';
import { encodeValue, decodeValue, indexedValues, matches, member, Operators, rangeFor, splitMember, type Operator } from './index-encoding.js';

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;
const SCAN_CHUNK = 500;

export interface Filter {
  field: string;
  op: Operator;
  args: string[];
  /** 'index' (indexed field), 'key' (the kind's key), 'field' (a top-level scalar field without an index: scanned) or 'param' (a param on machines/profiles) */
  target: 'index' | 'key' | 'field' | 'param';
  re?: RegExp;
}

export interface ListQuery {
  filters: Filter[];
  sort?: string;
  reverse: boolean;
  offset: number;
  limit: number;
  slim: string[];
}

const RESERVED = new Set(['sort', 'reverse', 'offset', 'limit', 'slim', 'aggregate', 'decode']);
const OP_SYNTAX = /^(Eq|Ne|Lt|Lte|Gt|Gte|In|Nin|Re|Between)\((.*)\)$/s;

function parseInt0(name: string, raw: string | undefined, dflt: number, max: number): number {
  if (raw === undefined || raw === '') return dflt;
  if (!/^\d+$/.test(raw)) throw new AppError('INVALID', `${name} must be a non-negative integer, got "${raw}"`);
  const n = Number(raw);
  if (n > max) throw new AppError('INVALID', `${name} must be at most ${max}`);
  return n;
}

/** Parses the query string of `GET /{prefix}`; unknown fields are params on kinds with params, else a 400. */
export function parseListQuery(kind: KindDef, query: Record<string, string | string[] | undefined>): ListQuery {
  const filters: Filter[] = [];
  for (const [field, rawValue] of Object.entries(query)) {
    if (RESERVED.has(field) || rawValue === undefined) continue;
    const raw = Array.isArray(rawValue) ? rawValue[rawValue.length - 1]! : rawValue;
    const spec = kind.indexes[field];
    const target: Filter['target'] = field === kind.key ? 'key' : spec && !spec.internal ? 'index' : scalarFields(kind).has(field) ? 'field' : kind.hasParams ? 'param' : (() => {
      throw new AppError('INVALID', `unknown filter "${field}" for ${kind.prefix}; filterable: ${filterable(kind).join(', ')}`);
    })();
    const m = OP_SYNTAX.exec(raw);
    const op = (m?.[1] ?? 'Eq') as Operator;
    const inner = m ? m[2]! : raw;
    const args = op === 'Re' ? [inner] : op === 'In' || op === 'Nin' || op === 'Between' ? inner.split(',') : [inner];
    if (op === 'Between' && args.length !== 2) throw new AppError('INVALID', `${field}: Between needs two values, e.g. Between(1,5)`);
    if (args.some((a) => a.includes('\x00'))) throw new AppError('INVALID', `${field}: NUL bytes are not allowed in filters`);
    const f: Filter = { field, op, args, target };
    if (op === 'Re') {
      if (inner.length > 256) throw new AppError('INVALID', `${field}: regular expression longer than 256 characters`);
      try {
        f.re = new RegExp(inner);
      } catch (err) {
        throw new AppError('INVALID', `${field}: invalid regular expression: ${(err as Error).message}`);
      }
    }
    if (target === 'index' && op !== 'Re') {
      const encoded = args.map((a) => encodeValue(spec!, spec!.normalise ? spec!.normalise(a) : a));
      if (encoded.some((e) => e === undefined)) throw new AppError('INVALID', `${field}: "${args.join(',')}" is not a valid ${spec!.type}`);
      f.args = encoded as string[];
    }
    filters.push(f);
  }
  const sort = typeof query.sort === 'string' && query.sort !== '' ? query.sort : undefined;
  if (sort !== undefined && sort !== kind.key) {
    const spec = kind.indexes[sort];
    if (!spec || spec.internal || spec.multi) throw new AppError('INVALID', `cannot sort ${kind.prefix} by "${sort}"; sortable: ${[kind.key, ...Object.entries(kind.indexes).filter(([, s]) => !s.multi && !s.internal).map(([f]) => f)].join(', ')}`);
  }
  const reverse = query.reverse === 'true' || query.reverse === '';
  if (typeof query.limit === 'string' && query.limit.startsWith('-')) throw new AppError('INVALID', `limit must be between 0 and ${MAX_LIMIT}`);
  const slim = typeof query.slim === 'string' && query.slim ? query.slim.split(',') : [];
  for (const s of slim) if (s !== 'params' && s !== 'meta') throw new AppError('INVALID', `slim accepts "params" and "meta", got "${s}"`);
  return {
    filters,
    sort,
    reverse,
    offset: parseInt0('offset', query.offset as string | undefined, 0, Number.MAX_SAFE_INTEGER),
    limit: parseInt0('limit', query.limit as string | undefined, DEFAULT_LIMIT, MAX_LIMIT),
    slim,
  };
}

export function filterable(kind: KindDef): string[] {
  return [kind.key, ...new Set([...Object.entries(kind.indexes).filter(([, s]) => !s.internal).map(([f]) => f), ...scalarFields(kind)])];
}

const scalarCache = new WeakMap<KindDef, Set<string>>();

/** Top-level string, number and boolean fields of a kind's schema (hidden ones excluded): filterable without an index. */
function scalarFields(kind: KindDef): Set<string> {
  let s = scalarCache.get(kind);
  if (!s) {
    const props = (kind.schema as { properties?: Record<string, { type?: string }> }).properties ?? {};
    s = new Set(Object.entries(props).filter(([f, p]) => ['string', 'number', 'integer', 'boolean'].includes(p.type ?? '') && !kind.hidden?.includes(f)).map(([f]) => f));
    scalarCache.set(kind, s);
  }
  return s;
}

/** A field's value as filters compare it (booleans and numbers as their text; numbers compare as text). */
function fieldString(v: unknown): string {
  return v === undefined || v === null ? '' : typeof v === 'string' ? v : String(v);
}

export interface ListPage {
  keys: string[];
  total: number;
}

/** Finds the keys of one page; the caller fetches the objects. */
export async function runListQuery(backend: Backend, kind: KindDef, q: ListQuery): Promise<ListPage> {
  const { prefix } = kind;
  if (q.filters.length === 0 && (q.sort === undefined || q.sort === kind.key)) {
    return { total: await backend.countKeys(prefix), keys: await backend.rangeKeys(prefix, q.offset, q.limit, q.reverse) };
  }
  if (q.filters.length === 0) {
    const all = { min: '-', max: '+' };
    const members = await backend.indexRange(prefix, q.sort!, all, q.offset, q.limit, q.reverse);
    return { total: await backend.indexCount(prefix, q.sort!, all), keys: members.map((m) => splitMember(m).key) };
  }
  const [only] = q.filters;
  if (q.filters.length === 1 && only!.target === 'index' && !kind.indexes[only!.field]!.multi) {
    // One range filter on a single-valued index: its members are ordered by (value, key), which is the
    // requested order when sorting by that field, or by key under an Eq filter.
    const range = rangeFor(only!.op, only!.args);
    const ordered = q.sort === only!.field || ((q.sort === undefined || q.sort === kind.key) && only!.op === 'Eq');
    if (range && ordered) {
      const members = await backend.indexRange(prefix, only!.field, range, q.offset, q.limit, q.reverse);
      return { total: await backend.indexCount(prefix, only!.field, range), keys: members.map((m) => splitMember(m).key) };
    }
  }
  if ((q.sort === undefined || q.sort === kind.key) && backend.indexContains && q.filters.every((f) => f.target === 'index' && f.op === 'Eq')) {
    return indexOnlyQuery(backend, kind, q);
  }
  return scanQuery(backend, kind, q);
}

/**
 * Only Eq filters on indexed fields, in key order: the candidates of the most selective index are
 * checked against the other indexes' members (`value \0 key`), never reading an object — a count or a
 * page costs index reads only.
 */
async function indexOnlyQuery(backend: Backend, kind: KindDef, q: ListQuery): Promise<ListPage> {
  const counts = await Promise.all(q.filters.map((f) => backend.indexCount(kind.prefix, f.field, rangeFor('Eq', f.args)!)));
  let bestAt = 0;
  counts.forEach((n, i) => (n < counts[bestAt]! ? (bestAt = i) : undefined));
  const best = q.filters[bestAt]!;
  const others = q.filters.filter((_, i) => i !== bestAt);
  const range = rangeFor('Eq', best.args)!;
  const hits: string[] = [];
  for (let offset = 0; offset < counts[bestAt]!; offset += SCAN_CHUNK) {
    let keys = (await backend.indexRange(kind.prefix, best.field, range, offset, SCAN_CHUNK, false)).map((m) => splitMember(m).key);
    if (keys.length === 0) break;
    for (const f of others) {
      if (keys.length === 0) break;
      const held = await backend.indexContains!(kind.prefix, f.field, keys.map((k) => member(f.args[0]!, k)));
      keys = keys.filter((_, i) => held[i]);
    }
    hits.push(...keys);
  }
  // a multi-valued index lists a key once per value, but one Eq value names each key at most once
  const sorted = [...new Set(hits)].sort();
  if (q.reverse) sorted.reverse();
  return { total: sorted.length, keys: sorted.slice(q.offset, q.offset + q.limit) };
}

/** General case: stream candidates from the most selective index, filter objects chunk by chunk, keep (sortValue, key) only. */
async function scanQuery(backend: Backend, kind: KindDef, q: ListQuery): Promise<ListPage> {
  const candidates = await candidateSource(backend, kind, q.filters);
  const hits: [string, string][] = [];
  const seen = new Set<string>();
  for await (const chunk of candidates) {
    const fresh = chunk.filter((k) => !seen.has(k));
    fresh.forEach((k) => seen.add(k));
    const raws = await backend.getMany(kind.prefix, fresh);
    raws.forEach((raw, i) => {
      if (raw === null) return;
      const obj = JSON.parse(raw) as StoredObject;
      const key = fresh[i]!;
      if (q.filters.every((f) => objectMatches(kind, obj, key, f))) hits.push([sortValue(kind, obj, key, q.sort), key]);
    });
  }
  hits.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  if (q.reverse) hits.reverse();
  return { total: hits.length, keys: hits.slice(q.offset, q.offset + q.limit).map((h) => h[1]) };
}

async function candidateSource(backend: Backend, kind: KindDef, filters: Filter[]): Promise<AsyncIterable<string[]>> {
  const keyEq = filters.find((f) => f.target === 'key' && f.op === 'Eq');
  if (keyEq) return (async function* () { yield [keyEq.args[0]!]; })();
  let best: { field: string; range: { min: string; max: string }; n: number } | undefined;
  for (const f of filters) {
    if (f.target !== 'index') continue;
    const range = f.op === 'In' ? undefined : rangeFor(f.op, f.args);
    if (!range) continue;
    const n = await backend.indexCount(kind.prefix, f.field, range);
    if (!best || n < best.n) best = { field: f.field, range, n };
  }
  return (async function* () {
    for (let offset = 0; ; offset += SCAN_CHUNK) {
      const keys = best
        ? (await backend.indexRange(kind.prefix, best.field, best.range, offset, SCAN_CHUNK, false)).map((m) => splitMember(m).key)
        : await backend.rangeKeys(kind.prefix, offset, SCAN_CHUNK, false);
      if (keys.length === 0) return;
      yield keys;
      if (keys.length < SCAN_CHUNK) return;
    }
  })();
}

function paramString(v: unknown): string {
  return typeof v === 'string' ? v : v === undefined ? '' : JSON.stringify(v);
}

function objectMatches(kind: KindDef, obj: StoredObject, key: string, f: Filter): boolean {
  if (f.target === 'key') return matches(f.op, key, f.args, f.re);
  if (f.target === 'field') return matches(f.op, fieldString(obj[f.field]), f.args, f.re);
  if (f.target === 'param') {
    const v = paramString((obj.params as Record<string, unknown> | undefined)?.[f.field]);
    return matches(f.op, v, f.args, f.re);
  }
  const spec = kind.indexes[f.field]!;
  const values = indexedValues(f.field, spec, obj).map((v) => encodeValue(spec, v)).filter((v): v is string => v !== undefined);
  const test = (enc: string) => matches(f.op, f.op === 'Re' ? decodeValue(spec, enc) : enc, f.args, f.re);
  // On list fields, negative operators must hold for every element, the others for at least one.
  return f.op === 'Ne' || f.op === 'Nin' ? values.every(test) : values.some(test);
}

function sortValue(kind: KindDef, obj: StoredObject, key: string, sort: string | undefined): string {
  if (sort === undefined || sort === kind.key) return key;
  const spec: IndexSpec = kind.indexes[sort]!;
  const [v] = indexedValues(sort, spec, obj);
  return encodeValue(spec, v) ?? '';
}
