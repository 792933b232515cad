// Generic CRUD routes (SPEC 3.1) generated from the kind registry: one implementation for every kind.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { KindDef, StoredObject } from '../models/common.js';
import { Kinds } from '../models/registry.js';
import { publicView, withoutHidden } from '../store/objects.js';
import type { AppDeps } from './deps.js';
import { decodedKey, etag, ifMatch, pagingHeaders, patchDoc, wantsDecode } from './http.js';

const PatchBodySchema = Type.Union([Type.Array(Type.Record(Type.String(), Type.Unknown())), Type.Record(Type.String(), Type.Unknown())], {
  description: 'RFC 6902 operations (array) or an RFC 7396 merge patch (object)',
});

function slim(obj: StoredObject, fields: string[]): StoredObject {
  if (fields.length === 0) return obj;
  const out = { ...obj };
  for (const f of fields) delete out[f];
  return out;
}

export function registerCrud(app: FastifyInstance, deps: AppDeps): void {
  for (const kind of Kinds) registerKind(app, deps, kind);
}

function registerKind(app: FastifyInstance, deps: AppDeps, kind: KindDef): void {
  const { store } = deps;
  const { prefix } = kind;
  const base = `/api/v1/${prefix}`;
  const one = kind.slashKeys ? `${base}/*` : `${base}/:key`;
  const keyOf = (req: FastifyRequest) => decodedKey((req.params as Record<string, string>)[kind.slashKeys ? '*' : 'key']);
  const view = (o: StoredObject) => publicView(kind, o);
  const readView = (req: FastifyRequest) => (wantsDecode(req) ? (o: StoredObject) => deps.secrets.reveal(withoutHidden(kind, o)) : view);
  const tags = [prefix];
  const machineRead = prefix === 'machines' ? { machineScope: true, machineParam: 'key' } : {};

  app.get(base, { schema: { tags, summary: `List ${prefix}`, description: kind.description }, config: { access: { prefix } } }, async (req, reply) => {
    const q = store.parseQuery(prefix, req.query as Record<string, string>);
    const { items, total } = await store.list(prefix, q);
    pagingHeaders(req, reply, total, q.offset, q.limit);
    const show = readView(req);
    return items.map((o) => slim(show(o), q.slim));
  });

  app.head(base, { schema: { tags, summary: `Count ${prefix}` }, config: { access: { prefix } } }, async (req, reply) => {
    const q = store.parseQuery(prefix, req.query as Record<string, string>);
    void reply.header('X-Total-Count', String(await store.count(prefix, q)));
    return reply.send();
  });

  app.get(one, { schema: { tags, summary: `Get one of ${prefix} by key or {index}:{value}` }, config: { access: { prefix, ...machineRead } } }, async (req, reply) => {
    const obj = await store.mustGet(prefix, keyOf(req));
    void reply.header('ETag', etag(obj.revision));
    return readView(req)(obj);
  });

  if (kind.customWrites) return;

  app.post(base, { schema: { tags, summary: `Create one of ${prefix}`, body: kind.schema }, config: { access: { prefix } } }, async (req, reply) => {
    const obj = await store.create(prefix, req.body as StoredObject, { principal: req.principal });
    void reply.code(201).header('ETag', etag(obj.revision)).header('Location', `${base}/${encodeURIComponent(String(obj[kind.key]))}`);
    return view(obj);
  });

  app.put(one, { schema: { tags, summary: `Replace one of ${prefix}`, body: kind.schema }, config: { access: { prefix } } }, async (req, reply) => {
    const obj = await store.replace(prefix, keyOf(req), req.body as StoredObject, { principal: req.principal, ifMatch: ifMatch(req) });
    void reply.header('ETag', etag(obj.revision));
    return view(obj);
  });

  app.patch(one, { schema: { tags, summary: `Patch one of ${prefix} (RFC 6902 or RFC 7396)`, body: PatchBodySchema }, config: { access: { prefix } } }, async (req, reply) => {
    const obj = await store.patch(prefix, keyOf(req), patchDoc(req), { principal: req.principal, ifMatch: ifMatch(req) });
    void reply.header('ETag', etag(obj.revision));
    return view(obj);
  });

  app.delete(one, { schema: { tags, summary: `Delete one of ${prefix}` }, config: { access: { prefix } } }, async (req) => {
    return view(await store.remove(prefix, keyOf(req), { principal: req.principal, ifMatch: ifMatch(req) }));
  });
}
