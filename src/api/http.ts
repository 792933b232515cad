// Small HTTP helpers shared by the route modules: ETags, If-Match, patch bodies, paging links.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import type { PatchDoc } from '../store/patch.js';

export function etag(revision: unknown): string {
  return `"${Number(revision ?? 0)}"`;
}

/** The revision an `If-Match` header asks for (`"3"`, `3`, `W/"3"`); undefined when absent or `*`. */
export function ifMatch(request: FastifyRequest): number | undefined {
  const raw = request.headers['if-match'];
  if (raw === undefined || raw.trim() === '*') return undefined;
  const m = /^\s*(?:W\/)?"?(\d{1,15})"?\s*$/.exec(raw);
  if (!m) throw new AppError('INVALID', `If-Match must be an ETag this server issued (e.g. "3"), got ${raw}`);
  return Number(m[1]);
}

/** RFC 6902 for json-patch+json and JSON arrays; RFC 7396 for merge-patch+json and JSON objects. */
export function patchDoc(request: FastifyRequest): PatchDoc {
  const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  const body = request.body;
  if (type === 'application/json-patch+json') return { type: 'json', ops: body };
  if (type === 'application/merge-patch+json') return { type: 'merge', doc: body };
  return Array.isArray(body) ? { type: 'json', ops: body } : { type: 'merge', doc: body };
}

export function pagingHeaders(request: FastifyRequest, reply: FastifyReply, total: number, offset: number, limit: number): void {
  void reply.header('X-Total-Count', String(total));
  const links: string[] = [];
  const url = new URL(request.url, 'http://x');
  const at = (o: number) => {
    url.searchParams.set('offset', String(o));
    url.searchParams.set('limit', String(limit));
    return `<${url.pathname}${url.search}>`;
  };
  if (limit > 0 && offset + limit < total) links.push(`${at(offset + limit)}; rel="next"`);
  if (offset > 0 && limit > 0) links.push(`${at(Math.max(0, offset - limit))}; rel="prev"`);
  if (links.length > 0) void reply.header('Link', links.join(', '));
}

/** Sends any JSON value as JSON (Fastify would send a bare string as text/plain). */
export function sendJson(reply: FastifyReply, value: unknown): FastifyReply {
  return reply.type('application/json; charset=utf-8').send(JSON.stringify(value ?? null));
}

/** `?decode=true`: admins get secure values in clear; anyone else asking is refused (403). */
export function wantsDecode(request: FastifyRequest): boolean {
  if ((request.query as Record<string, unknown> | undefined)?.decode !== 'true') return false;
  const p = request.principal;
  if (p?.type !== 'user' || p.role !== 'admin') throw new AppError('FORBIDDEN', 'only admins may decode secure values');
  return true;
}

export function decodedKey(raw: string | undefined): string {
  if (!raw) throw new AppError('NOT_FOUND', 'missing key');
  return raw;
}
