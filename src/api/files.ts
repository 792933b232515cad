// Static files of the boot tree (SPEC 4.3): PUT streams an application/octet-stream body into
// `<data dir>/files/{path}` (X-Sha256 checked, size bounded), GET downloads, DELETE removes, and
// GET /api/v1/files lists them a page at a time. The octet-stream parser exists for PUT only.
import { createReadStream } from 'node:fs';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Readable } from 'node:stream';
import { Type } from 'typebox';
import { contentTypeFor, MAX_UPLOAD_BYTES, parseRange, type StaticFiles } from '../boot/static-files.js';
import { AppError } from '../errors.js';
import { pagingHeaders } from './http.js';

const tags = ['files'];
const config = { access: { prefix: 'files' } };
const pathOf = (req: FastifyRequest) => (req.params as { '*'?: string })['*'] ?? '';

export interface FileRouteOptions {
  maxBytes?: number;
}

export async function registerFileRoutes(app: FastifyInstance, files: StaticFiles, opts: FileRouteOptions = {}): Promise<void> {
  const maxBytes = opts.maxBytes ?? MAX_UPLOAD_BYTES;

  // Encapsulated: only the upload route streams octet-stream bodies (no buffering, no 1 MiB limit here).
  await app.register(async (scope) => {
    scope.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
    scope.put('/api/v1/files/*', {
      schema: {
        tags,
        summary: 'Upload a static file of the boot tree (application/octet-stream; optional X-Sha256 is checked)',
        headers: Type.Object({ 'x-sha256': Type.Optional(Type.String({ description: 'hex SHA-256 of the body; a mismatch stores nothing (400)' })) }),
      },
      config,
    }, async (req, reply) => {
      const path = pathOf(req);
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/octet-stream' || !(req.body instanceof Readable)) {
        throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'send the file as Content-Type: application/octet-stream');
      }
      const sha = req.headers['x-sha256'];
      if (sha !== undefined && !/^[0-9a-fA-F]{64}$/.test(String(sha))) throw new AppError('INVALID', 'X-Sha256 must be 64 hex characters (the SHA-256 of the body)');
      const length = Number(req.headers['content-length'] ?? NaN);
      if (length > maxBytes) throw new AppError('TOO_LARGE', `the file is larger than ${maxBytes} bytes`);
      const stored = await files.write(path, req.body, { maxBytes, ...(sha !== undefined ? { sha256: String(sha) } : {}) });
      void reply.code(stored.created ? 201 : 200).header('Location', `/api/v1/files/${stored.path.split('/').map(encodeURIComponent).join('/')}`);
      return { path: stored.path, size: stored.size, sha256: stored.sha256 };
    });
  });

  app.get('/api/v1/files', {
    schema: {
      tags,
      summary: 'Uploaded static files in path order',
      querystring: Type.Object({ offset: Type.Optional(Type.Integer({ minimum: 0 })), limit: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })) }),
    },
    config,
  }, async (req, reply) => {
    const { offset = 0, limit = 100 } = req.query as { offset?: number; limit?: number };
    const { items, total } = await files.list(offset, limit);
    pagingHeaders(req, reply, total, offset, limit);
    return items;
  });

  app.get('/api/v1/files/*', { schema: { tags, summary: 'Download an uploaded static file (Range works)' }, config }, async (req, reply) => {
    const file = await files.get(pathOf(req));
    if (!file) throw new AppError('NOT_FOUND', `file ${pathOf(req)} not found`, { kind: 'files', key: pathOf(req) });
    void reply.type(contentTypeFor(file.path)).header('Accept-Ranges', 'bytes');
    const range = parseRange(req.headers.range, file.size);
    if (range === 'unsatisfiable') return reply.code(416).header('Content-Range', `bytes */${file.size}`).send();
    const { start, end } = range ?? { start: 0, end: file.size - 1 };
    if (range) void reply.code(206).header('Content-Range', `bytes ${start}-${end}/${file.size}`);
    void reply.header('Content-Length', String(end - start + 1));
    return end < start ? reply.send() : reply.send(createReadStream(file.fsPath, { start, end }));
  });

  app.delete('/api/v1/files/*', { schema: { tags, summary: 'Delete an uploaded static file' }, config }, async (req) => files.remove(pathOf(req)));
}
