// Event query routes (SPEC 7.3, 7.4): a machine's timeline and the global stream, newest first, paged
// by an opaque cursor; and a subscription's webhook delivery log.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { AppError } from '../errors.js';
import { deliveryLog, DELIVERY_LOG_LENGTH } from '../events/webhooks.js';
import { encodeCursor, globalEntryOf, globalTypeOf, parsePageQuery, readPage, timelineEntry, timelineTypeOf, visibleFields, type Page } from '../events/stream-query.js';
import type { Services } from '../services.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const PageQuerySchema = Type.Object({
  since: Type.Optional(Type.String({ description: 'RFC 3339 time (inclusive) or event id (exclusive)' })),
  until: Type.Optional(Type.String({ description: 'RFC 3339 time or event id (both exclusive)' })),
  type: Type.Optional(Type.String({ description: 'entry type glob(s), comma-separated, e.g. user.*' })),
  limit: Type.Optional(Type.String({ description: 'page size, 1-1000 (default 100)' })),
  cursor: Type.Optional(Type.String({ description: 'X-Next-Cursor of the previous page' })),
});

function sendPage<T>(req: FastifyRequest, reply: FastifyReply, page: Page<T>): T[] {
  if (page.nextId !== undefined) {
    const cursor = encodeCursor(page.nextId);
    const url = new URL(req.url, 'http://x');
    url.searchParams.set('cursor', cursor);
    void reply.header('X-Next-Cursor', cursor).header('Link', `<${url.pathname}${url.search}>; rel="next"`);
  }
  return page.items;
}

export function registerEventRoutes(app: FastifyInstance, s: Services): void {
  const tags = ['events'];

  app.get('/api/v1/events', {
    schema: { tags, summary: 'Events of every kind, newest first (timeline entries keep their type; others are {prefix}.{action})', querystring: PageQuerySchema },
    config: { access: {} },
  }, async (req, reply) => {
    const q = parsePageQuery(req.query as Record<string, unknown>);
    const p = req.principal;
    const visible = p.type === 'user' && p.role === 'admin' ? undefined : visibleFields(p);
    return sendPage(req, reply, await readPage(s.redis, s.keys.events(), q, { typeOf: globalTypeOf, decode: globalEntryOf, visible }));
  });

  app.get('/api/v1/machines/:key/events', {
    schema: { tags: ['machines', ...tags], summary: 'A machine\'s timeline, newest first', querystring: PageQuerySchema },
    config: { access: { prefix: 'machines', machineScope: true, machineParam: 'key' } },
  }, async (req, reply) => {
    const q = parsePageQuery(req.query as Record<string, unknown>);
    const key = (req.params as { key: string }).key;
    const m = await s.store.get('machines', key);
    let uuid = m ? String(m.uuid) : undefined;
    // a deleted machine's timeline stays readable by uuid until it expires
    if (!uuid && UUID.test(key) && (await s.redis.exists(s.keys.timeline(key))) === 1) uuid = key;
    if (!uuid) throw new AppError('NOT_FOUND', `machines/${key} not found`, { kind: 'machines', key });
    return sendPage(req, reply, await readPage(s.redis, s.keys.timeline(uuid), q, { typeOf: timelineTypeOf, decode: timelineEntry(uuid) }));
  });

  app.get('/api/v1/subscriptions/:key/deliveries', {
    schema: { tags: ['subscriptions'], summary: 'Webhook delivery attempts of a subscription, newest first', querystring: Type.Object({ limit: Type.Optional(Type.String()) }) },
    config: { access: { prefix: 'subscriptions' } },
  }, async (req) => {
    const name = (req.params as { key: string }).key;
    const raw = (req.query as { limit?: string }).limit;
    if (raw !== undefined && (!/^\d{1,5}$/.test(raw) || Number(raw) < 1 || Number(raw) > DELIVERY_LOG_LENGTH)) throw new AppError('INVALID', `limit: expected an integer from 1 to ${DELIVERY_LOG_LENGTH}`);
    await s.store.mustGet('subscriptions', name);
    return deliveryLog(s.redis, s.keys, name, raw === undefined ? 100 : Number(raw));
  });
}
