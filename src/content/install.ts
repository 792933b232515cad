// Installs a content pack as a read-only layer: every object checked first (all errors reported
// with their origin, nothing written when any fails), then written with `readOnly` and `bundle`;
// objects the previous version had and this one dropped are removed.
import { AppError } from '../errors.js';
import type { StoredObject } from '../models/common.js';
import { SystemPrincipal } from '../models/principal.js';
import { ContentKinds, mustKind } from '../models/registry.js';
import type { ObjectStore } from '../store/objects.js';
import type { Pack, PackObject } from './pack.js';

const SERVER_FIELDS = ['createdAt', 'updatedAt', 'revision', 'validated', 'available', 'errors'];

function comparable(o: StoredObject): string {
  const c: StoredObject = { ...o };
  for (const f of SERVER_FIELDS) delete c[f];
  return JSON.stringify(c, Object.keys(c).sort());
}

export async function checkPack(store: ObjectStore, pack: Pack): Promise<string[]> {
  const problems: string[] = [];
  const provided = new Set(pack.objects.map((o) => `${o.prefix}/${String(o.object[mustKind(o.prefix).key] ?? '')}`));
  const seen = new Set<string>();
  for (const o of pack.objects) {
    const kind = mustKind(o.prefix);
    const key = o.object?.[kind.key];
    if (!o.object || typeof o.object !== 'object' || typeof key !== 'string' || key === '') {
      problems.push(`${o.origin}: ${o.prefix} object needs a "${kind.key}"`);
      continue;
    }
    if (seen.has(`${o.prefix}/${key}`)) problems.push(`${o.origin}: ${o.prefix}/${key} is defined twice in the pack`);
    seen.add(`${o.prefix}/${key}`);
    for (const e of store.shapeErrors(o.prefix, o.object)) problems.push(`${o.origin}: ${e}`);
    const existing = await store.get(o.prefix, key);
    if (existing && existing.bundle !== pack.meta.name) {
      problems.push(`${o.origin}: ${o.prefix}/${key} already exists ${existing.bundle ? `in content pack "${existing.bundle}"` : 'as a user object'}`);
    }
    for (const ref of kind.references?.(kind.normalise ? kind.normalise({ ...o.object }) : o.object) ?? []) {
      if (!provided.has(`${ref.prefix}/${ref.key}`) && !(await store.get(ref.prefix, ref.key))) {
        problems.push(`${o.origin}: ${ref.field}: ${ref.prefix}/${ref.key} does not exist`);
      }
    }
  }
  return problems;
}

export async function installPack(store: ObjectStore, pack: Pack): Promise<StoredObject> {
  const problems = await checkPack(store, pack);
  if (problems.length > 0) {
    throw new AppError('UNPROCESSABLE', `content pack "${pack.meta.name}" has ${problems.length} problem(s): ${problems[0]}`, { kind: 'contents', key: pack.meta.name, messages: problems });
  }
  const opts = { principal: SystemPrincipal, allowReadOnly: true, tolerateMissingRefs: true, action: 'save' as const };
  const bundle = pack.meta.name;
  for (const prefix of ContentKinds) {
    for (const o of pack.objects.filter((x) => x.prefix === prefix)) await upsert(store, o, bundle, opts);
  }
  await removeDropped(store, pack, opts);
  const counts: Record<string, number> = {};
  for (const o of pack.objects) counts[o.prefix] = (counts[o.prefix] ?? 0) + 1;
  const content = { ...pack.meta, source: pack.source, counts, readOnly: true, bundle };
  const cur = await store.get('contents', bundle);
  return cur ? store.replace('contents', bundle, content, opts) : store.create('contents', content, opts);
}

async function upsert(store: ObjectStore, o: PackObject, bundle: string, opts: Parameters<ObjectStore['create']>[2]): Promise<void> {
  const kind = mustKind(o.prefix);
  const key = String(o.object[kind.key]);
  const obj = { ...o.object, readOnly: true, bundle };
  const cur = await store.get(o.prefix, key);
  if (cur && comparable({ ...kind.normalise?.({ ...obj }) ?? obj, validated: cur.validated }) === comparable({ ...cur })) return;
  if (cur) await store.replace(o.prefix, key, obj, opts);
  else {
    try {
      await store.create(o.prefix, obj, opts);
    } catch (err) {
      if ((err as AppError).code !== 'CONFLICT') throw err;
      await store.replace(o.prefix, key, obj, opts); // another process installed it meanwhile
    }
  }
}

/** Removes objects of this bundle that the new version no longer provides (reverse dependency order). */
async function removeDropped(store: ObjectStore, pack: Pack, opts: Parameters<ObjectStore['remove']>[2]): Promise<void> {
  const keep = new Set(pack.objects.map((o) => `${o.prefix}/${String(o.object[mustKind(o.prefix).key])}`));
  for (const prefix of [...ContentKinds].reverse()) {
    for (const key of await bundleKeys(store, prefix, pack.meta.name)) {
      if (!keep.has(`${prefix}/${key}`)) await store.remove(prefix, key, opts);
    }
  }
}

async function bundleKeys(store: ObjectStore, prefix: string, bundle: string): Promise<string[]> {
  const kind = mustKind(prefix);
  const keys: string[] = [];
  for (let offset = 0; ; offset += 1000) {
    const { items } = await store.list(prefix, { filters: [], reverse: false, offset, limit: 1000, slim: [] });
    keys.push(...items.filter((o) => o.bundle === bundle).map((o) => String(o[kind.key])));
    if (items.length < 1000) return keys;
  }
}

/** Removes a whole pack: refused (409 naming the users) while anything outside it uses its objects. */
export async function uninstallPack(store: ObjectStore, name: string): Promise<StoredObject> {
  await store.mustGet('contents', name);
  const opts = { principal: SystemPrincipal, allowReadOnly: true };
  await removeDropped(store, { meta: { name }, objects: [], source: '' }, opts);
  return store.remove('contents', name, opts);
}
