// The HTTP adapter of the boot file system: `GET|HEAD /boot/*` and `GET /boot/discover.ipxe`, public
// (firmware sends no token), byte-identical to TFTP. Missing → 404; a failed render → for iPXE paths
// a 200 script that prints the error and drops to the iPXE shell, else 422 RENDER_FAILED.
import { createReadStream } from 'node:fs';
import { isIPv6 } from 'node:net';
import type { RateLimiters } from '../auth/rate-limit.js';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { AppError } from '../errors.js';
import { BootFiles, type BootFilesDeps, type BootFilesOptions } from './boot-files.js';
import { normaliseBootPath } from './path-index.js';
import type { BootFile } from './resolver.js';
import { contentTypeFor, parseRange } from './static-files.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** the boot file system of this process (TFTP in serve.ts uses the same one) */
    bootFiles: BootFiles;
  }
}

const TEXT = 'text/plain; charset=utf-8';
const HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** How machines reach us: IRONFLOW_PUBLIC_URL, else the request's own scheme and Host, else the local socket address. */
export function publicUrlOf(configured: string | undefined, req: FastifyRequest): string {
  if (configured) return configured;
  const host = req.host;
  if (host && HOST.test(host)) return `${req.protocol}://${host}`;
  const addr = req.socket.localAddress ?? '127.0.0.1';
  return `${req.protocol}://${isIPv6(addr) ? `[${addr}]` : addr}:${req.socket.localPort ?? 80}`;
}

function servicesOf(deps: Partial<BootFilesDeps>): BootFilesDeps {
  for (const k of ['config', 'store', 'params', 'prefs', 'signer', 'bus', 'timeline', 'redis', 'keys', 'log'] as const) {
    if (!deps[k]) throw new Error(`the boot routes need the services built by buildServices() (missing ${k})`);
  }
  return deps as BootFilesDeps;
}

/** Creates this process's BootFiles (decorated as `app.bootFiles`, closed with the app) and registers the /boot routes. */
export function registerBootRoutes(app: FastifyInstance, deps: Partial<BootFilesDeps>, opts: BootFilesOptions = {}): BootFiles {
  const s = servicesOf(deps);
  // TFTP has no hook of its own: the same per-address limit as /boot/* (SPEC 10).
  const limits = (deps as { limits?: RateLimiters }).limits;
  const boot = new BootFiles(s, { ...(limits ? { admit: (ip: string) => limits.take('boot', ip) === 0 } : {}), ...opts });
  app.decorate('bootFiles', boot);
  app.addHook('onReady', async () => boot.start());
  app.addHook('onClose', async () => boot.close());
  const tags = ['boot'];
  const config = { public: true, rateLimit: 'boot' as const };

  app.get('/boot/discover.ipxe', {
    schema: {
      tags,
      summary: 'Discovery: registers an unknown machine (preference autoDiscover) and returns its iPXE script',
      querystring: Type.Object({ mac: Type.Optional(Type.String({ maxLength: 64 })), arch: Type.Optional(Type.String({ maxLength: 32 })) }),
    },
    config: { public: true, rateLimit: 'discovery' },
  }, async (req, reply) => {
    const q = req.query as { mac?: string; arch?: string };
    const file = await boot.discover(q, req.ip, publicUrlOf(s.config.publicUrl, req));
    if (!file) throw new AppError('NOT_FOUND', `the bootenv of the machine with MAC ${String(q.mac)} serves no iPXE script`);
    return send(boot, req, reply, file);
  });

  app.route({
    method: ['GET', 'HEAD'],
    url: '/boot/*',
    schema: { tags, summary: 'A file of the boot tree (rendered for the machine it names, or static); Range works on every file' },
    config,
    handler: async (req, reply) => {
      const raw = (req.params as { '*'?: string })['*'] ?? '';
      // The router decoded the percent-encoding once (iPXE sends 52%3A54…); `..` must not survive that.
      const path = normaliseBootPath(raw, false);
      if (path === null) {
        if (/(^|[/\\])\.\.([/\\]|$)|\0/.test(raw)) throw new AppError('FORBIDDEN', 'the path leaves the boot tree');
        throw new AppError('NOT_FOUND', 'no such boot file');
      }
      const file = await boot.resolve(path, publicUrlOf(s.config.publicUrl, req));
      if (!file) throw new AppError('NOT_FOUND', `no boot file ${path}`);
      return send(boot, req, reply, file);
    },
  });
  return boot;
}

async function send(boot: BootFiles, req: FastifyRequest, reply: FastifyReply, file: BootFile): Promise<FastifyReply> {
  const head = req.method === 'HEAD';
  if (file.kind === 'failed') {
    if (!head) boot.record(file, 'http');
    if (!file.script) throw file.error;
    return sendBytes(req, reply.header('Cache-Control', 'no-store'), file.script, TEXT);
  }
  if (file.kind === 'rendered') {
    if (!head) boot.record(file, 'http');
    return sendBytes(req, reply.header('Cache-Control', 'no-store'), file.body, TEXT);
  }
  const { size, fsPath, mtimeMs } = file.file;
  void reply.header('Accept-Ranges', 'bytes').header('Last-Modified', new Date(mtimeMs).toUTCString()).type(contentTypeFor(file.path));
  const range = parseRange(req.headers.range, size);
  if (range === 'unsatisfiable') return reply.code(416).header('Content-Range', `bytes */${size}`).send();
  const { start, end } = range ?? { start: 0, end: size - 1 };
  if (range) void reply.code(206).header('Content-Range', `bytes ${start}-${end}/${size}`);
  void reply.header('Content-Length', String(end - start + 1));
  if (head || end < start) return reply.send();
  return reply.send(createReadStream(fsPath, { start, end }));
}

function sendBytes(req: FastifyRequest, reply: FastifyReply, body: Buffer, type: string): FastifyReply {
  void reply.type(type).header('Accept-Ranges', 'bytes');
  const range = parseRange(req.headers.range, body.length);
  if (range === 'unsatisfiable') return reply.code(416).header('Content-Range', `bytes */${body.length}`).send();
  const part = range ? body.subarray(range.start, range.end + 1) : body;
  if (range) void reply.code(206).header('Content-Range', `bytes ${range.start}-${range.end}/${body.length}`);
  if (req.method === 'HEAD') return reply.header('Content-Length', String(part.length)).send();
  return reply.send(part);
}
