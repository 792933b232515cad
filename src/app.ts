// buildApp(deps): the Fastify instance with the TypeBox provider, the one error handler, access
// control and every route plugin. No listening here: main.ts decides that.
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { registerAccess, type AccessConfig } from './api/access.js';
import { registerAuthRoutes } from './api/auth.js';
import { registerBenchRoutes } from './api/bench.js';
import { registerBmcRoutes } from './api/bmc.js';
import { registerBootViewRoutes } from './api/boot-views.js';
import { registerContentRoutes } from './api/contents.js';
import { registerCrud } from './api/crud.js';
import { registerEventRoutes } from './api/events.js';
import { registerFileRoutes } from './api/files.js';
import { registerJobRoutes } from './api/jobs.js';
import { registerMachineFacing } from './api/machine-facing.js';
import { registerMachineTokenRoutes } from './api/machine-tokens.js';
import { registerMetrics } from './api/metrics.js';
import { errorHandler, notFoundHandler } from './api/errors.js';
import { registerParamRoutes } from './api/params.js';
import { registerPrefRoutes } from './api/prefs.js';
import { registerBootRoutes } from './boot/http.js';
import { registerEventStream } from './events/ws.js';
import type { Services } from './services.js';

export const BODY_LIMIT = 1024 * 1024;

export interface RouteEntry {
  method: string;
  url: string;
  public: boolean;
  /** the route's access declaration (what the guard enforces) */
  access: AccessConfig['access'];
}

declare module 'fastify' {
  interface FastifyInstance {
    /** every route with its method and whether it needs no token (drives the auth test matrix) */
    routeTable: RouteEntry[];
  }
}

export async function buildApp(deps: Services): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT,
    exposeHeadRoutes: false,
    requestIdHeader: false,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 1024 },
  });
  const routeTable: RouteEntry[] = [];
  app.decorate('routeTable', routeTable);
  app.addHook('onRoute', (r) => {
    const cfg = r.config as AccessConfig | undefined;
    for (const method of [r.method].flat()) routeTable.push({ method, url: r.url, public: Boolean(cfg?.public) || !r.url.startsWith('/api/'), access: cfg?.access });
  });
  app.setValidatorCompiler(TypeBoxValidatorCompiler);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler(notFoundHandler);
  registerMetrics(app, deps); // first: its onResponse hook observes every route; GET /metrics unless IRONFLOW_METRICS_PORT
  // Only JSON (and YAML bundles for content): any other body is a 415, not a string to validate.
  app.removeContentTypeParser('text/plain');
  // PATCH bodies: JSON Patch and JSON Merge Patch documents are JSON.
  app.addContentTypeParser(['application/json-patch+json', 'application/merge-patch+json'], { parseAs: 'string' }, (req, body, done) => {
    app.getDefaultJsonParser('error', 'ignore')(req, body as string, done);
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'Ironflow API', version: '1', description: 'Bare-metal provisioning: machines, boot environments, workflows, BMCs, events.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  await registerEventStream(app, deps); // before access control: it lifts ?token= into Authorization
  registerAccess(app, deps);
  registerAuthRoutes(app, deps);
  registerCrud(app, deps);
  registerJobRoutes(app, deps);
  registerParamRoutes(app, deps);
  registerPrefRoutes(app, deps);
  registerContentRoutes(app, deps);
  registerMachineTokenRoutes(app, deps);
  registerBmcRoutes(app, deps);
  const boot = registerBootRoutes(app, deps); // GET|HEAD /boot/*, discovery; app.bootFiles (TFTP uses it too)
  registerBootViewRoutes(app, deps, boot);
  await registerFileRoutes(app, boot.files);
  registerEventRoutes(app, deps);
  registerMachineFacing(app, deps);

  if (deps.config.benchRoutes) registerBenchRoutes(app);
  app.get('/api/v1/openapi.json', { schema: { hide: true }, config: { public: true } }, async () => app.swagger());
  app.get('/healthz', { schema: { hide: true } }, async (_req, reply) => {
    const ok = deps.store.backend.ready();
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ok' : 'store unavailable' });
  });
  return app;
}
