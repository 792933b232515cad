// Builds a real Ironflow app (Fastify inject) over the shared test Redis with a private key prefix,
// or over the memory backend; loads the fixture content pack; issues tokens per role.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import { buildApp } from '../../src/app.js';
import { issueUserToken } from '../../src/auth/users.js';
import { loadConfig } from '../../src/config.js';
import { SystemPrincipal } from '../../src/models/principal.js';
import { buildServices, initialiseStore, type Services } from '../../src/services.js';
import { testRedisUrl, uniquePrefix } from './redis.js';

export const FIXTURE_CONTENT = join(import.meta.dirname, '..', 'fixtures', 'content');
export const ADMIN_PASSWORD = 'admin-password-1';

export interface TestApp {
  app: FastifyInstance;
  services: Services;
  redis: Redis;
  prefix: string;
  token(role?: 'admin' | 'operator' | 'readonly'): Promise<string>;
  /** inject with an admin token unless `auth: false` or an explicit authorization header */
  call(opts: InjectOptions & { auth?: boolean | string }): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

export async function createTestApp(opts: { content?: string[]; log?: Logger; env?: Record<string, string> } = {}): Promise<TestApp> {
  const prefix = uniquePrefix('app');
  const dataDir = mkdtempSync(join(tmpdir(), 'ironflow-test-'));
  // Discovery is limited to 1/s per address by default; tests discover many machines from one address.
  const config = loadConfig({ IRONFLOW_DATA_DIR: dataDir, IRONFLOW_ADMIN_PASSWORD: ADMIN_PASSWORD, IRONFLOW_REDIS_PREFIX: prefix, IRONFLOW_LOG_LEVEL: 'silent', IRONFLOW_RATE_LIMITS: 'discovery=100/100', ...opts.env });
  const connections: Redis[] = [];
  const connect = (o: { blocking?: boolean }) => {
    const c = new Redis(testRedisUrl(), { maxRetriesPerRequest: o.blocking ? null : 1 });
    connections.push(c);
    return c;
  };
  const redis = connect({});
  const services = buildServices(config, redis, connect, opts.log ?? pino({ level: 'silent' }));
  await initialiseStore(services, opts.content ?? [FIXTURE_CONTENT]);
  const app = await buildApp(services);
  const tokens = new Map<string, string>();
  const token = async (role: 'admin' | 'operator' | 'readonly' = 'admin') => {
    const cached = tokens.get(role);
    if (cached) return cached;
    if (role !== 'admin' && !(await services.store.get('users', role))) {
      await services.store.create('users', { name: role, role, password: `${role}-password-1` }, { principal: SystemPrincipal });
    }
    const t = (await issueUserToken(services.store, services.signer, role, role === 'admin' ? ADMIN_PASSWORD : `${role}-password-1`, 3600, await services.guard.epoch())).token;
    tokens.set(role, t);
    return t;
  };
  return {
    app,
    services,
    redis,
    prefix,
    token,
    async call(o) {
      const { auth = true, ...inject } = o;
      const headers = { ...(inject.headers ?? {}) } as Record<string, string>;
      if (auth !== false && headers.authorization === undefined) headers.authorization = `Bearer ${typeof auth === 'string' ? auth : await token('admin')}`;
      return app.inject({ ...inject, headers });
    },
    async close() {
      await app.close();
      services.bus.close();
      await services.queues.close();
      connections.forEach((c) => c.disconnect());
    },
  };
}

export interface PeerApp {
  app: FastifyInstance;
  services: Services;
  close(): Promise<void>;
}

/**
 * Another api process on `a`'s prefix and data dir (what a second `ironflow serve --role api` builds).
 * `tailRead` wraps every read of its event-bus tail (to delay or hold it).
 */
export async function peerApp(a: TestApp, opts: { env?: Record<string, string>; tailRead?: (read: () => Promise<unknown>) => Promise<unknown> } = {}): Promise<PeerApp> {
  const config = loadConfig({ IRONFLOW_DATA_DIR: a.services.config.dataDir, IRONFLOW_ADMIN_PASSWORD: ADMIN_PASSWORD, IRONFLOW_REDIS_PREFIX: a.prefix, IRONFLOW_LOG_LEVEL: 'silent', ...opts.env });
  const connections: Redis[] = [];
  const connect = (o: { blocking?: boolean }) => {
    const c = new Redis(testRedisUrl(), { maxRetriesPerRequest: o.blocking ? null : 1 });
    connections.push(c);
    const wrap = opts.tailRead;
    if (o.blocking && wrap) {
      const xread = c.xread.bind(c) as (...args: unknown[]) => Promise<unknown>;
      (c as unknown as { xread: (...args: unknown[]) => Promise<unknown> }).xread = (...args) => wrap(() => xread(...args));
    }
    return c;
  };
  const services = buildServices(config, connect({}), connect, pino({ level: 'silent' }));
  const app = await buildApp(services);
  await app.ready();
  return {
    app,
    services,
    async close() {
      await app.close();
      services.bus.close();
      await services.queues.close();
      connections.forEach((c) => c.disconnect());
    },
  };
}
