// Route access: every /api/v1 route is authenticated and authorised here, from its `access` config;
// routes opt out only by declaring `public: true`.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RouteAccess } from '../auth/guard.js';
import type { RateLimitClass } from '../auth/rate-limit.js';
import { AppError } from '../errors.js';
import type { Principal } from '../models/principal.js';
import type { AppDeps } from './deps.js';

export interface AccessConfig {
  public?: boolean;
  /** per-source-address limit (429 RATE_LIMITED with Retry-After when exceeded) */
  rateLimit?: RateLimitClass;
  access?: Omit<RouteAccess, 'method' | 'machine'> & { machineParam?: string };
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
  interface FastifyContextConfig extends AccessConfig {}
}

export function registerAccess(app: FastifyInstance, deps: AppDeps): void {
  app.decorateRequest('principal', null as never);
  // onRequest: before the body is read, so an unauthenticated client cannot make the server parse anything.
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const cfg = request.routeOptions.config as AccessConfig | undefined;
    if (cfg?.rateLimit) {
      const wait = deps.limits.take(cfg.rateLimit, request.ip);
      if (wait > 0) {
        void reply.header('Retry-After', String(wait));
        throw new AppError('RATE_LIMITED', `too many requests from ${request.ip}; retry in ${wait} s`);
      }
    }
    if (!request.url.startsWith('/api/') || cfg?.public) return;
    const principal = await deps.guard.authenticate(request.headers.authorization);
    const access = cfg?.access ?? {};
    const params = request.params as Record<string, string> | undefined;
    const machine = access.machineParam ? params?.[access.machineParam] : undefined;
    deps.guard.authorize(principal, { ...access, method: request.method, machine });
    request.principal = principal;
  });
}
