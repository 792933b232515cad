// Params sub-resources (SPEC 3.2) of machines, profiles and stages. Every write goes through the
// object store as a JSON Patch, so locking, read-only, schema checks and events stay in one place.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import type { KindDef, StoredObject } from '../models/common.js';
import { Kinds } from '../models/registry.js';
import { applyPatch } from '../store/patch.js';
import type { AppDeps } from './deps.js';
import { maskSealed } from '../models/sealed.js';
import { etag, ifMatch, patchDoc, sendJson, wantsDecode } from './http.js';

const pointer = (name: string) => `/params/${name.replace(/~/g, '~0').replace(/\//g, '~1')}`;

export function registerParamRoutes(app: FastifyInstance, deps: AppDeps): void {
  for (const kind of Kinds.filter((k) => k.hasParams)) registerFor(app, deps, kind);
}

function registerFor(app: FastifyInstance, deps: AppDeps, kind: KindDef): void {
  const { store, params } = deps;
  const { prefix } = kind;
  const base = `/api/v1/${prefix}/:key/params`;
  const config = { access: { prefix } };
  const tags = [prefix];
  const owner = async (req: FastifyRequest) => ({ prefix: prefix as 'machines', obj: await store.mustGet(prefix, (req.params as { key: string }).key) });
  const nameOf = (req: FastifyRequest) => {
    const name = (req.params as Record<string, string>)['*'];
    if (!name) throw new AppError('INVALID', 'missing param name');
    return name;
  };
  const aggregate = (req: FastifyRequest) => (req.query as Record<string, string>).aggregate === 'true';
  const write = async (req: FastifyRequest, ops: unknown[]) => {
    const obj = await store.patch(prefix, (req.params as { key: string }).key, { type: 'json', ops }, { principal: req.principal, ifMatch: ifMatch(req) });
    return obj;
  };
  const mapOf = (o: StoredObject) => (o.params as Record<string, unknown> | undefined) ?? {};
  /** secure values leave as {"secure": true}, or in clear for an admin's ?decode=true */
  const shown = <T>(req: FastifyRequest, v: T): T => (wantsDecode(req) ? deps.secrets.reveal(v) : maskSealed(v));

  app.get(base, { schema: { tags, summary: `Params of one of ${prefix} (?aggregate=true resolves them with their source)` }, config }, async (req) => {
    const o = await owner(req);
    return shown(req, aggregate(req) ? await params.aggregate(o, { reveal: false }) : mapOf(o.obj));
  });

  app.post(base, { schema: { tags, summary: 'Replace the whole params map' }, config }, async (req, reply) => {
    const body = req.body;
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new AppError('INVALID', 'body must be a JSON object of param name → value');
    const obj = await write(req, [{ op: 'add', path: '/params', value: body }]);
    void reply.header('ETag', etag(obj.revision));
    return maskSealed(mapOf(obj));
  });

  app.patch(base, { schema: { tags, summary: 'Patch the params map (RFC 6902 or RFC 7396)' }, config }, async (req, reply) => {
    const cur = mapOf((await owner(req)).obj);
    const next = applyPatch(cur, patchDoc(req));
    if (next === null || typeof next !== 'object' || Array.isArray(next)) throw new AppError('INVALID', 'the patch must leave an object');
    const obj = await write(req, [{ op: 'test', path: '/params', value: cur }, { op: 'add', path: '/params', value: next }]);
    void reply.header('ETag', etag(obj.revision));
    return maskSealed(mapOf(obj));
  });

  app.get(`${base}/*`, { schema: { tags, summary: 'One param (?aggregate=true resolves it)' }, config }, async (req, reply) => {
    const name = nameOf(req);
    const o = await owner(req);
    if (aggregate(req)) {
      const hit = await params.lookup(o, name, { reveal: false });
      if (!hit.found) throw new AppError('NOT_FOUND', `param ${name} is not set for ${prefix}/${(req.params as { key: string }).key} nor anywhere it inherits from`);
      return shown(req, { value: hit.value, source: hit.source });
    }
    const map = mapOf(o.obj);
    if (!Object.prototype.hasOwnProperty.call(map, name)) throw new AppError('NOT_FOUND', `param ${name} is not set on ${prefix}/${(req.params as { key: string }).key}`);
    return sendJson(reply, shown(req, map[name]));
  });

  app.put(`${base}/*`, { schema: { tags, summary: 'Set one param (body: the JSON value)' }, config }, async (req, reply) => {
    const obj = await write(req, [{ op: 'add', path: pointer(nameOf(req)), value: req.body ?? null }]);
    void reply.header('ETag', etag(obj.revision));
    return sendJson(reply, maskSealed(mapOf(obj)[nameOf(req)]));
  });

  app.delete(`${base}/*`, { schema: { tags, summary: 'Remove one param' }, config }, async (req, reply) => {
    const name = nameOf(req);
    const map = mapOf((await owner(req)).obj);
    if (!Object.prototype.hasOwnProperty.call(map, name)) throw new AppError('NOT_FOUND', `param ${name} is not set on ${prefix}/${(req.params as { key: string }).key}`);
    await write(req, [{ op: 'remove', path: pointer(name) }]);
    return sendJson(reply, maskSealed(map[name]));
  });
}
