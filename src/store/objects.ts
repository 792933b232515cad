// The object service: the one CRUD for every kind. Validates (schema, kind rules, references),
// enforces read-only, locked and in-use rules, bumps revisions, and commits object + indexes + event
// atomically through the backend.
import { AppError } from '../errors.js';
import { ServerFields, type IndexSpec, type KindContext, type KindDef, type StoredObject } from '../models/common.js';
import { principalId, SystemPrincipal, type Principal } from '../models/principal.js';
import { maskSealed } from '../models/sealed.js';
import { kindOf, mustKind } from '../models/registry.js';
import type { Backend, CommitResult, IndexEntry, UniqueEntry, WriteOp } from './backend.js';
import { encodeValue, indexedValues, member, splitMember } from './index-encoding.js';
import { CACHED_KINDS } from './object-cache.js';
import { applyPatch, type PatchDoc } from './patch.js';
import { parseListQuery, runListQuery, type ListQuery } from './query.js';
import { schemaErrors } from './validate.js';

export type WriteAction = 'create' | 'update' | 'save' | 'delete';

export interface WriteOptions {
  principal: Principal;
  /** revision the client expects (If-Match); a mismatch is 412 */
  ifMatch?: number;
  /** `update` for client PUT/PATCH, `save` for server-side changes (SPEC 7.1) */
  action?: 'update' | 'save';
  /** content loading may write read-only objects */
  allowReadOnly?: boolean;
  /** trusted loaders store objects with missing references as unavailable instead of refusing them */
  tolerateMissingRefs?: boolean;
  /**
   * The object as the caller last read or wrote it: the first attempt of a read-modify-write starts
   * from it instead of reading (the commit's revision check still decides; a stale one is re-read)
   */
  current?: StoredObject;
  /** references (`prefix/key`) the caller has just seen exist (the workflow runner's own machine): not looked up */
  knownRefs?: readonly string[];
}

export interface KindHooks {
  /** async preparation before validation, e.g. hashing a user's password; `cur` is the stored object */
  beforeWrite?: (next: StoredObject, cur: StoredObject | undefined, opts: WriteOptions) => Promise<StoredObject>;
}

export interface ObjectStoreOptions {
  hooks?: Record<string, KindHooks>;
  prefs?: () => Promise<Record<string, string>>;
  /**
   * validates param values against their Param schemas and seals secure ones (wired to params/check.ts);
   * `current` is the stored map, whose sealed values stand in for {"secure": true} placeholders
   */
  prepareParams?: (store: ObjectStore, values: Record<string, unknown>, current: Record<string, unknown>) => Promise<{ values: Record<string, unknown>; problems: string[] }>;
}

const MAX_RETRIES = 20;

export class ObjectStore {
  readonly backend: Backend;
  private readonly hooks: Record<string, KindHooks>;
  private readonly ctx: KindContext;
  private readonly prefsOf: () => Promise<Record<string, string>>;
  private readonly prepareParams: ObjectStoreOptions['prepareParams'];

  constructor(backend: Backend, opts: ObjectStoreOptions = {}) {
    this.backend = backend;
    this.hooks = opts.hooks ?? {};
    this.prefsOf = opts.prefs ?? (async () => ({}));
    this.prepareParams = opts.prepareParams;
    this.ctx = {
      exists: async (prefix, key) => (await this.backend.get(prefix, key)) !== null,
      get: (prefix, key) => this.get(prefix, key),
      findKeys: async (prefix, field, value, limit) => {
        const members = await this.backend.indexRange(prefix, field, { min: `[${value}\x00`, max: `(${value}\x01` }, 0, limit, false);
        return members.map((m) => splitMember(m).key);
      },
    };
  }

  /**
   * Gets by key or by `{index}:{value}` on a unique index (e.g. `name:node1`, `hardwareAddrs:aa:bb:…`).
   * A unique ref is first tried as the key it last resolved to here: the object read holds that value
   * only if it still owns it (the unique hash moves with the object in the same commit), so a hit is
   * exact and a miss falls back to the index. One round trip instead of two for a known ref.
   */
  async get(prefix: string, ref: string): Promise<StoredObject | undefined> {
    const kind = mustKind(prefix);
    const unique = uniqueRef(kind, ref);
    if (!unique) return this.read(prefix, ref.startsWith(`${kind.key}:`) ? ref.slice(kind.key.length + 1) : ref);
    const memo = `${prefix}\0${unique.field}\0${unique.value}`;
    const guess = this.lastOwner.get(memo);
    if (guess !== undefined) {
      const obj = await this.read(prefix, guess);
      if (obj && indexedValues(unique.field, unique.spec, obj).includes(unique.value)) return obj;
      this.lastOwner.delete(memo);
    }
    const key = await this.backend.unique(prefix, unique.field, unique.value);
    if (key === null) return undefined;
    if (this.lastOwner.size >= MAX_REMEMBERED_OWNERS) this.lastOwner.clear();
    this.lastOwner.set(memo, key);
    return this.read(prefix, key);
  }

  private async read(prefix: string, key: string): Promise<StoredObject | undefined> {
    const raw = await this.backend.get(prefix, key);
    return raw === null ? undefined : (JSON.parse(raw) as StoredObject);
  }

  /** unique ref → the key it last resolved to (see get) */
  private readonly lastOwner = new Map<string, string>();

  async mustGet(prefix: string, ref: string): Promise<StoredObject> {
    const obj = await this.get(prefix, ref);
    if (!obj) throw new AppError('NOT_FOUND', `${prefix}/${ref} not found`, { kind: prefix, key: ref });
    return obj;
  }

  async getMany(prefix: string, keys: string[]): Promise<StoredObject[]> {
    const raws = await this.backend.getMany(prefix, keys);
    return raws.flatMap((r) => (r === null ? [] : [JSON.parse(r) as StoredObject]));
  }

  parseQuery(prefix: string, query: Record<string, string | string[] | undefined>): ListQuery {
    return parseListQuery(mustKind(prefix), query);
  }

  async list(prefix: string, q: ListQuery): Promise<{ items: StoredObject[]; total: number }> {
    const page = await runListQuery(this.backend, mustKind(prefix), q);
    return { items: await this.getMany(prefix, page.keys), total: page.total };
  }

  async count(prefix: string, q: ListQuery): Promise<number> {
    return (await runListQuery(this.backend, mustKind(prefix), { ...q, offset: 0, limit: 0 })).total;
  }

  async create(prefix: string, input: StoredObject, opts: WriteOptions): Promise<StoredObject> {
    const kind = mustKind(prefix);
    let obj = stripServerFields(kind, input, opts);
    if (obj[kind.key] === undefined || obj[kind.key] === '') {
      if (!kind.generateKey) throw new AppError('INVALID', `${kind.key}: required`, { kind: prefix });
      obj[kind.key] = kind.generateKey();
    }
    if (kind.createDefaults) obj = kind.createDefaults(obj, await this.prefsOf());
    const next = await this.prepare(kind, obj, undefined, opts);
    const key = String(next[kind.key]);
    const now = new Date().toISOString();
    const stored = { ...next, createdAt: now, updatedAt: now, revision: 1 };
    const res = await this.commit(kind, key, undefined, stored, 'create', opts);
    if (!res.ok && res.reason === 'exists') throw new AppError('CONFLICT', `${prefix}/${key} already exists`, { kind: prefix, key });
    this.throwIfFailed(kind, key, res);
    return stored;
  }

  /** Full replace (PUT). The key cannot change. */
  async replace(prefix: string, ref: string, input: StoredObject, opts: WriteOptions): Promise<StoredObject> {
    const kind = mustKind(prefix);
    return this.modify(kind, ref, opts, (cur, key) => {
      if (input[kind.key] !== undefined && String(input[kind.key]).toLowerCase() !== key.toLowerCase()) {
        throw new AppError('INVALID', `${kind.key} cannot change (${key} → ${String(input[kind.key])})`, { kind: prefix, key });
      }
      return { ...carryHidden(kind, stripServerFields(kind, input, opts), cur), [kind.key]: key };
    });
  }

  async patch(prefix: string, ref: string, patch: PatchDoc, opts: WriteOptions): Promise<StoredObject> {
    const kind = mustKind(prefix);
    return this.modify(kind, ref, opts, (cur, key) => {
      const patched = applyPatch(publicView(kind, cur), patch);
      if (patched === null || typeof patched !== 'object' || Array.isArray(patched)) throw new AppError('INVALID', 'the patch must leave an object');
      const next = patched as StoredObject;
      if (next[kind.key] !== cur[kind.key]) throw new AppError('INVALID', `${kind.key} cannot change`, { kind: prefix, key });
      return { ...carryHidden(kind, stripServerFields(kind, next, opts), cur), [kind.key]: key };
    });
  }

  /**
   * Read-modify-write for server-side changes; retried on concurrent writes. `change` gets a shallow
   * copy of the stored object: replace nested values (spread them), never mutate them in place.
   */
  async update(prefix: string, ref: string, change: (cur: StoredObject) => StoredObject, opts: WriteOptions): Promise<StoredObject> {
    const kind = mustKind(prefix);
    // a shallow copy: `change` returns new nested values and never mutates the ones it was given
    return this.modify(kind, ref, { action: 'save', ...opts }, (cur) => change({ ...cur }));
  }

  private async modify(kind: KindDef, ref: string, opts: WriteOptions, change: (cur: StoredObject, key: string) => StoredObject): Promise<StoredObject> {
    for (let attempt = 0; ; attempt++) {
      const hint = attempt === 0 && opts.ifMatch === undefined ? opts.current : undefined;
      const cur = hint && typeof hint.revision === 'number' && hint[kind.key] !== undefined ? hint : await this.mustGet(kind.prefix, ref);
      const key = String(cur[kind.key]);
      if (opts.ifMatch !== undefined && opts.ifMatch !== cur.revision) {
        throw new AppError('STALE', `${kind.prefix}/${key} is at revision ${cur.revision}, not ${opts.ifMatch}`, { kind: kind.prefix, key });
      }
      this.guardReadOnly(kind, cur, key, opts);
      const draft = change(cur, key);
      if (cur.locked === true && draft.locked !== false) {
        throw new AppError('LOCKED', `${kind.prefix}/${key} is locked; unlock it first ({"locked": false})`, { kind: kind.prefix, key });
      }
      const next = await this.prepare(kind, draft, cur, opts);
      const stored = { ...next, createdAt: cur.createdAt, updatedAt: new Date().toISOString(), revision: (cur.revision ?? 0) + 1 };
      if (cur.readOnly) Object.assign(stored, { readOnly: cur.readOnly, bundle: cur.bundle });
      const res = await this.commit(kind, key, cur, stored, opts.action ?? 'update', opts);
      if (res.ok) return stored;
      if ((res.reason === 'stale' || res.reason === 'missing') && attempt < MAX_RETRIES && opts.ifMatch === undefined) continue;
      if (res.reason === 'stale') throw new AppError('STALE', `${kind.prefix}/${key} changed meanwhile; retry`, { kind: kind.prefix, key });
      this.throwIfFailed(kind, key, res);
    }
  }

  async remove(prefix: string, ref: string, opts: WriteOptions): Promise<StoredObject> {
    const kind = mustKind(prefix);
    for (let attempt = 0; ; attempt++) {
      const cur = await this.mustGet(prefix, ref);
      const key = String(cur[kind.key]);
      if (opts.ifMatch !== undefined && opts.ifMatch !== cur.revision) throw new AppError('STALE', `${prefix}/${key} is at revision ${cur.revision}, not ${opts.ifMatch}`, { kind: prefix, key });
      if (kind.builtins?.some((b) => b[kind.key] === key)) throw new AppError('CONFLICT', `${prefix}/${key} is built in and cannot be deleted`, { kind: prefix, key });
      this.guardReadOnly(kind, cur, key, opts);
      if (cur.locked === true) throw new AppError('LOCKED', `${prefix}/${key} is locked`, { kind: prefix, key });
      const users = kind.usedBy ? await kind.usedBy(key, this.ctx) : [];
      if (users.length > 0) {
        throw new AppError('IN_USE', `${prefix}/${key} is in use by ${users.join(', ')}`, { kind: prefix, key, messages: users.map((u) => `used by ${u}`) });
      }
      const res = await this.commit(kind, key, cur, null, 'delete', opts);
      if (res.ok) return cur;
      if (res.reason === 'stale' && attempt < MAX_RETRIES) continue;
      this.throwIfFailed(kind, key, res);
    }
  }

  /** Schema and kind-rule problems of an object, without writing it (content pack pre-checks). */
  shapeErrors(prefix: string, obj: StoredObject): string[] {
    const kind = mustKind(prefix);
    const normal = kind.normalise ? kind.normalise({ ...obj }) : obj;
    const invalid = schemaErrors(kind.schema, normal);
    return invalid.length > 0 || !kind.check ? invalid : kind.check(normal);
  }

  /**
   * Creates missing built-in objects (profile `global`, stages `none` and `local`) and re-checks those
   * saved while something they reference was not loaded yet (stage `local` before the core pack).
   */
  async ensureBuiltins(): Promise<void> {
    const opts = { principal: SystemPrincipal, allowReadOnly: true, tolerateMissingRefs: true, action: 'save' as const };
    for (const prefix of ['profiles', 'stages']) {
      const kind = mustKind(prefix);
      for (const b of kind.builtins ?? []) {
        const key = String(b[kind.key]);
        const cur = await this.get(prefix, key);
        try {
          if (!cur) await this.create(prefix, b, opts);
          else if (cur.available === false) await this.update(prefix, key, (o) => o, opts);
        } catch (err) {
          if ((err as AppError).code !== 'CONFLICT') throw err; // another process created it first
        }
      }
    }
  }

  private guardReadOnly(kind: KindDef, cur: StoredObject, key: string, opts: WriteOptions): void {
    if (cur.readOnly && !opts.allowReadOnly) {
      const from = cur.bundle ? `content pack "${cur.bundle}"` : 'the server';
      throw new AppError('READ_ONLY', `${kind.prefix}/${key} is read-only (provided by ${from})`, { kind: kind.prefix, key });
    }
  }

  /** normalise → hooks → schema → kind rules → references → cross-object rules; collects every problem. */
  private async prepare(kind: KindDef, draft: StoredObject, cur: StoredObject | undefined, opts: WriteOptions): Promise<StoredObject> {
    let obj = kind.normalise ? kind.normalise(draft) : draft;
    const hook = this.hooks[kind.prefix]?.beforeWrite;
    if (hook) obj = await hook(obj, cur, opts);
    const key = String(obj[kind.key] ?? '');
    const invalid = [...schemaErrors(kind.schema, obj)];
    if (invalid.length === 0 && kind.check) invalid.push(...kind.check(obj));
    if (invalid.length === 0 && kind.hasParams && this.prepareParams) {
      const prepared = await this.prepareParams(this, (obj.params as Record<string, unknown>) ?? {}, (cur?.params as Record<string, unknown>) ?? {});
      invalid.push(...prepared.problems);
      obj = { ...obj, params: prepared.values };
    }
    if (invalid.length > 0) throw new AppError('INVALID', `invalid ${kind.prefix} object: ${invalid[0]}`, { kind: kind.prefix, key, messages: invalid });
    // References the stored object already had were checked when it was written, and an object in use
    // cannot be deleted: only new references need a look-up (the runner's saves add none).
    const before = new Set(cur && kind.references ? kind.references(cur).map((r) => `${r.prefix}/${r.key}`) : []);
    for (const r of opts.knownRefs ?? []) before.add(r);
    const refs = kind.references ? kind.references(obj).filter((r) => !before.has(`${r.prefix}/${r.key}`)) : [];
    const found = await Promise.all(refs.map((ref) => (kindOf(ref.prefix) ? this.ctx.exists(ref.prefix, ref.key) : false)));
    const missing = refs.filter((_, i) => !found[i]).map((ref) => `${ref.field}: ${ref.prefix}/${ref.key} does not exist`);
    const problems = kind.checkWith ? await kind.checkWith(obj, this.ctx) : [];
    if (problems.length > 0) throw new AppError('UNPROCESSABLE', problems[0]!, { kind: kind.prefix, key, messages: [...problems, ...missing] });
    if (missing.length > 0 && !opts.tolerateMissingRefs) {
      throw new AppError('UNPROCESSABLE', `${kind.prefix}/${key} references missing objects: ${missing.join('; ')}`, { kind: kind.prefix, key, messages: missing });
    }
    return { ...obj, validated: true, available: missing.length === 0, errors: missing };
  }

  private async commit(kind: KindDef, key: string, cur: StoredObject | undefined, next: StoredObject | null, action: WriteAction, opts: WriteOptions): Promise<CommitResult> {
    // Index members and unique values, field by field: only what changed is sent (a workflow step
    // moves one or two of a machine's eleven indexes). Unchanged unique values stay claimed: the
    // revision check guarantees the stored object, and so its claims, are the ones read.
    const indexRemove: IndexEntry[] = [];
    const indexAdd: IndexEntry[] = [];
    const uniqueRemove: UniqueEntry[] = [];
    const uniqueAdd: UniqueEntry[] = [];
    for (const [field, spec] of indexFields(kind)) {
      const b = cur ? encodedValues(field, spec, cur) : NONE;
      const a = next ? encodedValues(field, spec, next) : NONE;
      if (!sameValues(a, b)) {
        for (const v of b) if (!a.includes(v)) indexRemove.push({ field, member: member(v, key) });
        for (const v of a) if (!b.includes(v)) indexAdd.push({ field, member: member(v, key) });
      }
      if (spec.unique) {
        const ub = cur ? uniqueValues(field, spec, cur) : NONE;
        const ua = next ? uniqueValues(field, spec, next) : NONE;
        if (!sameValues(ua, ub)) {
          for (const v of ub) if (!ua.includes(v)) uniqueRemove.push({ field, value: v });
          for (const v of ua) if (!ub.includes(v)) uniqueAdd.push({ field, value: v });
        }
      }
    }
    const value = next ? JSON.stringify(next) : null;
    const shown = publicView(kind, next ?? cur!);
    const op: WriteOp = {
      prefix: kind.prefix,
      key,
      expectRevision: cur ? (cur.revision ?? 0) : null,
      value,
      revision: next?.revision ?? 0,
      indexRemove,
      indexAdd,
      uniqueRemove,
      uniqueAdd,
      event: {
        type: kind.prefix,
        action,
        key,
        principal: principalId(opts.principal),
        time: new Date().toISOString(),
        // nothing hidden or sealed: the public view is the object itself, already serialised
        object: shown === next && value !== null ? value : JSON.stringify(shown),
      },
      ...(CACHED_KINDS.has(kind.prefix) ? { bumpVersion: true } : {}),
    };
    return this.backend.commit(op);
  }

  private throwIfFailed(kind: KindDef, key: string, res: CommitResult): void {
    if (res.ok) return;
    if (res.reason === 'unique') {
      throw new AppError('CONFLICT', `${res.field} "${res.value}" is already used by ${kind.prefix}/${res.owner}`, { kind: kind.prefix, key });
    }
    if (res.reason === 'missing') throw new AppError('NOT_FOUND', `${kind.prefix}/${key} not found`, { kind: kind.prefix, key });
    if (res.reason === 'stale') throw new AppError('STALE', `${kind.prefix}/${key} changed meanwhile`, { kind: kind.prefix, key });
    throw new AppError('CONFLICT', `${kind.prefix}/${key} already exists`, { kind: kind.prefix, key });
  }
}

/** Hidden fields (a machine's secret, a user's password hash) removed; secure values still sealed. */
export function withoutHidden(kind: KindDef, obj: StoredObject): StoredObject {
  const hidden = kind.hidden;
  if (!hidden?.length) return obj;
  // copied key by key (no `delete`, which leaves a slow dictionary-mode object to serialise)
  const out: StoredObject = {};
  for (const k in obj) if (Object.prototype.hasOwnProperty.call(obj, k) && !hidden.includes(k)) out[k] = obj[k];
  return out;
}

const NONE: readonly string[] = [];
const MAX_REMEMBERED_OWNERS = 100_000;

/** `{field}:{value}` on a unique index (value normalised as the index stores it); undefined for a key. */
function uniqueRef(kind: KindDef, ref: string): { field: string; spec: IndexSpec; value: string } | undefined {
  const colon = ref.indexOf(':');
  if (colon < 0) return undefined;
  const field = ref.slice(0, colon);
  if (field === kind.key) return undefined;
  const value = ref.slice(colon + 1);
  const spec = kind.indexes[field];
  if (!spec?.unique) {
    throw new AppError('INVALID', `"${field}" is not a unique index of ${kind.prefix}; use one of ${[kind.key, ...Object.entries(kind.indexes).filter(([, s]) => s.unique).map(([f]) => f)].join(', ')}`, { kind: kind.prefix, key: ref });
  }
  return { field, spec, value: spec.normalise ? spec.normalise(value) : value };
}
const indexFieldCache = new WeakMap<KindDef, [string, IndexSpec][]>();

function indexFields(kind: KindDef): [string, IndexSpec][] {
  let f = indexFieldCache.get(kind);
  if (!f) indexFieldCache.set(kind, (f = Object.entries(kind.indexes)));
  return f;
}

/** The encoded values an object indexes under a field (one per member `value \0 key`). */
function encodedValues(field: string, spec: IndexSpec, obj: StoredObject): readonly string[] {
  const out: string[] = [];
  for (const v of indexedValues(field, spec, obj)) {
    const enc = encodeValue(spec, v);
    if (enc !== undefined) out.push(enc);
  }
  return out;
}

/** The values an object claims under a unique field. */
function uniqueValues(field: string, spec: IndexSpec, obj: StoredObject): readonly string[] {
  return indexedValues(field, spec, obj).filter((v): v is string => typeof v === 'string' && v !== '');
}

function sameValues(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The object as clients and events see it: hidden fields removed, secure values as {"secure": true}. */
export function publicView(kind: KindDef, obj: StoredObject): StoredObject {
  return maskSealed(withoutHidden(kind, obj));
}

function stripServerFields(kind: KindDef, input: StoredObject, opts: WriteOptions): StoredObject {
  const out: StoredObject = { ...input };
  for (const f of ServerFields) if (!(opts.allowReadOnly && (f === 'readOnly' || f === 'bundle'))) delete out[f];
  if (opts.principal.type !== 'system') for (const f of kind.hidden ?? []) if (f !== 'password') delete out[f];
  return out;
}

/** Hidden fields the client cannot see are kept from the stored object (e.g. a machine's secret). */
function carryHidden(kind: KindDef, next: StoredObject, cur: StoredObject): StoredObject {
  const out = { ...next };
  for (const f of kind.hidden ?? []) if (out[f] === undefined && cur[f] !== undefined && f !== 'password') out[f] = cur[f];
  return out;
}
