// The agent protocol (SPEC 5.4, 5.5) over HTTP: claim (POST /jobs), state moves (PATCH), rendered
// task scripts (GET …/actions), logs (PUT/GET …/log) and delete. Machine tokens reach these for
// their own machine only: the job's machine is checked here, since the URL names the job.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { ContentCache } from '../boot/caches.js';
import { publicUrlOf } from '../boot/http.js';
import { lookupFrom, renderContextFrom } from '../boot/render-context.js';
import { AppError } from '../errors.js';
import { engineParts, MAX_LOG_CHUNK_BYTES, type JobService } from '../jobs/job-service.js';
import type { StoredObject } from '../models/common.js';
import type { Principal } from '../models/principal.js';
import type { TemplateEntry } from '../models/template-entry.js';
import { checkRequiredParams, createRenderer, type Renderer } from '../render/renderer.js';
import type { Services } from '../services.js';
import type { StoredEvent } from '../store/backend.js';
import { decodedKey, etag, ifMatch, patchDoc } from './http.js';

const ClaimSchema = Type.Object({
  machine: Type.String({ minLength: 1, maxLength: 64 }),
  context: Type.Optional(Type.String({ maxLength: 255 })),
}, { additionalProperties: false });

const PatchBodySchema = Type.Union([Type.Array(Type.Record(Type.String(), Type.Unknown())), Type.Record(Type.String(), Type.Unknown())], {
  description: 'RFC 6902 operations (with a test on /state) or an RFC 7396 merge patch',
});

const LogQuerySchema = Type.Object({ offset: Type.Optional(Type.String({ pattern: '^\\d{1,15}$' })) });

export interface RenderedAction {
  name: string;
  path: string;
  content: string;
  meta: Record<string, string>;
}

/** Templates, bootenvs and param defaults of this api process, kept current from the event stream. */
class TaskRendering {
  private readonly cache = new ContentCache();
  readonly renderer: Renderer;
  private loading: Promise<void> | undefined;
  private readonly pending: StoredEvent[] = [];
  private loaded = false;
  private readonly stop: () => void;

  constructor(private readonly s: Services) {
    this.renderer = createRenderer(this.cache);
    this.cache.onTemplateChange = (id) => this.renderer.invalidate(id);
    // Subscribe before loading: events during the load are applied after it. Before a load starts
    // nothing is kept (the load reads current state): the first load may come much later, or never.
    this.stop = s.bus.subscribe((e) => {
      if (this.loaded) this.cache.apply(e);
      else if (this.loading) this.pending.push(e);
    });
  }

  ready(): Promise<void> {
    this.loading ??= this.cache.load(this.s.store).then(() => {
      for (const e of this.pending.splice(0)) this.cache.apply(e);
      this.loaded = true;
    }).catch((err: unknown) => {
      this.loading = undefined;
      throw err;
    });
    return this.loading;
  }

  async render(job: StoredObject, publicUrl: string): Promise<RenderedAction[]> {
    await this.ready();
    const { store, params, prefs, signer } = this.s;
    // one round trip: the task (through the process cache's view), the machine, and the view's version check
    const source = params.source();
    const [task, stored] = await Promise.all([source.get('tasks', String(job.task)), store.get('machines', String(job.machine))]);
    if (!task || !Array.isArray(task.templates)) return []; // a server-side step or special entry: nothing for the agent
    if (!stored) throw new AppError('NOT_FOUND', `machines/${String(job.machine)} not found`, { kind: 'machines', key: String(job.machine) });
    const { engine: _engine, ...machine } = stored;
    const bootenv = (machine.bootEnv ? this.cache.bootenvs.get(String(machine.bootEnv)) ?? (await store.get('bootenvs', String(machine.bootEnv))) : undefined) ?? {};
    const [stage, layers] = await Promise.all([machine.stage ? source.get('stages', String(machine.stage)) : undefined, params.layers({ prefix: 'machines', obj: machine }, { source })]);
    const lookup = lookupFrom(layers, this.cache.paramDefaults);
    const name = `task ${String(task.name)}`;
    const ctx = renderContextFrom({ signer }, { machine, bootenv, prefs: await prefs.all(), publicUrl, path: name }, lookup);
    ctx.task = task;
    ctx.job = job;
    if (stage) ctx.stage = stage;
    checkRequiredParams((task.requiredParams as string[] | undefined) ?? [], lookup, ctx);
    return (task.templates as TemplateEntry[]).map((t) => {
      const label = `${name} / ${t.name}`;
      const path = t.path ? this.renderer.renderString(t.path, { ...ctx, templateName: `${label} (path)` }, `${label} (path)`) : '';
      const content = t.id ? this.renderer.render(t.id, { ...ctx, templateName: label }) : this.renderer.renderString(t.contents ?? '', { ...ctx, templateName: label }, label);
      return { name: t.name, path, content, meta: t.meta ?? {} };
    });
  }

  close(): void {
    this.stop();
  }
}

/** A machine token may act on its own machine's jobs only. */
function ownJob(principal: Principal, job: StoredObject): void {
  if (principal.type === 'machine' && job.machine !== principal.uuid) throw new AppError('FORBIDDEN', 'this token belongs to another machine');
}

export function registerJobRoutes(app: FastifyInstance, s: Services): JobService {
  const { jobs } = engineParts(s);
  const rendering = new TaskRendering(s);
  app.addHook('onClose', async () => rendering.close());
  const tags = ['jobs'];
  const base = '/api/v1/jobs';
  const scoped = { access: { prefix: 'jobs', machineScope: true } };
  const keyOf = (req: FastifyRequest) => decodedKey((req.params as Record<string, string>).key);
  const loadOwn = async (req: FastifyRequest) => {
    const job = await jobs.get(keyOf(req));
    ownJob(req.principal, job);
    return job;
  };

  app.post(base, {
    schema: { tags, summary: 'Claim the next job of a machine (agent protocol): 201 created job, 202 incomplete job again, 204 nothing now', body: ClaimSchema },
    config: scoped,
  }, async (req, reply) => {
    const body = req.body as { machine: string; context?: string };
    const machine = body.machine.toLowerCase();
    if (req.principal.type === 'machine' && req.principal.uuid !== machine) throw new AppError('FORBIDDEN', 'a machine token may claim jobs for its own machine only');
    const res = await jobs.claim(machine, body.context ?? '');
    if (res.status === 204) return reply.code(204).send();
    void reply.code(res.status).header('ETag', etag(res.job.revision)).header('Location', `${base}/${String(res.job.uuid)}`);
    return res.job;
  });

  app.patch(`${base}/:key`, {
    schema: { tags, summary: 'Move a job\'s state (created → running → finished | failed | incomplete) with exitState and resultErrors', body: PatchBodySchema },
    config: scoped,
  }, async (req, reply) => {
    await loadOwn(req);
    const job = await jobs.patch(keyOf(req), patchDoc(req), req.principal, ifMatch(req));
    void reply.header('ETag', etag(job.revision));
    return job;
  });

  app.delete(`${base}/:key`, { schema: { tags, summary: 'Delete a job and its log' }, config: { access: { prefix: 'jobs' } } }, async (req) => {
    return jobs.remove(keyOf(req), req.principal);
  });

  app.get(`${base}/:key/actions`, {
    schema: { tags, summary: 'The job\'s task scripts rendered for its machine: [{name, path, content, meta}]' },
    config: scoped,
  }, async (req) => {
    const job = await loadOwn(req);
    return rendering.render(job, publicUrlOf(s.config.publicUrl, req));
  });

  app.get(`${base}/:key/log`, {
    schema: { tags, summary: 'The job\'s log (application/octet-stream); ?offset=N for the bytes from N on', querystring: LogQuerySchema },
    config: scoped,
  }, async (req, reply: FastifyReply) => {
    const job = await loadOwn(req);
    const offset = Number((req.query as { offset?: string }).offset ?? 0);
    const log = await jobs.readLog(String(job.uuid), offset);
    return reply
      .type('application/octet-stream')
      .header('X-Log-Size', String(log.size))
      .header('X-Log-Truncated', String(log.truncated))
      .header('X-Job-State', String(job.state))
      .send(log.data);
  });

  app.register(async (child) => {
    // raw log chunks: read here with our own bound, so an oversized chunk is a clear 413
    child.addContentTypeParser('application/octet-stream', (req, payload, done) => {
      const tooLarge = () => new AppError('TOO_LARGE', `a log chunk is at most ${MAX_LOG_CHUNK_BYTES} bytes (4 MiB); send it in smaller pieces`);
      if (Number(req.headers['content-length'] ?? 0) > MAX_LOG_CHUNK_BYTES) {
        payload.resume();
        return done(tooLarge(), undefined);
      }
      const parts: Buffer[] = [];
      let size = 0;
      let over = false;
      payload.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_LOG_CHUNK_BYTES) over = true;
        else parts.push(c);
      });
      payload.on('end', () => (over ? done(tooLarge(), undefined) : done(null, Buffer.concat(parts))));
      payload.on('error', (err) => done(err, undefined));
    });
    child.put(`${base}/:key/log`, {
      schema: { tags, summary: 'Append a chunk (application/octet-stream, at most 4 MiB) to the job\'s log' },
      config: scoped,
    }, async (req, reply) => {
      const job = await loadOwn(req);
      const body = req.body;
      if (!Buffer.isBuffer(body)) throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'send the log chunk as application/octet-stream');
      const res = await jobs.appendLog(job, body);
      return reply.code(200).send({ job: job.uuid, ...res });
    });
  });
  return jobs;
}
