// Authentication routes: exchanging a username and password for a bearer token.
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { issueUserToken, revokeUserTokens } from '../auth/users.js';
import { AppError } from '../errors.js';
import type { AppDeps } from './deps.js';

const TokenRequest = Type.Object({
  username: Type.String({ minLength: 1, maxLength: 64 }),
  password: Type.String({ minLength: 1, maxLength: 1024 }),
  ttlSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 31_536_000 })),
}, { additionalProperties: false });

export function registerAuthRoutes(app: FastifyInstance, deps: AppDeps): void {
  app.post('/api/v1/auth/token', {
    schema: { tags: ['auth'], summary: 'Issue a bearer token for a user', body: TokenRequest, security: [] },
    config: { public: true, rateLimit: 'auth' },
  }, async (req) => {
    const { username, password, ttlSeconds } = req.body as { username: string; password: string; ttlSeconds?: number };
    return issueUserToken(deps.store, deps.signer, username, password, Math.min(ttlSeconds ?? deps.config.tokenTtlSeconds, deps.config.tokenTtlSeconds), await deps.guard.epoch());
  });

  app.post('/api/v1/auth/revoke', {
    schema: { tags: ['auth'], summary: 'Revoke every token of the calling user (log out everywhere)' },
    config: { access: { prefix: 'auth' } },
  }, async (req, reply) => {
    if (req.principal.type !== 'user') throw new AppError('FORBIDDEN', 'only users have tokens to revoke; rotate a machine\'s secret instead');
    await revokeUserTokens(deps.store, req.principal.name);
    deps.guard.forgetUser(req.principal.name);
    return reply.code(204).send();
  });

  app.post('/api/v1/users/:key/revoke-tokens', {
    schema: { tags: ['users'], summary: 'Revoke every token of a user' },
    config: { access: { prefix: 'users' } },
  }, async (req, reply) => {
    const user = await deps.store.mustGet('users', (req.params as { key: string }).key);
    await revokeUserTokens(deps.store, String(user.name));
    deps.guard.forgetUser(String(user.name));
    return reply.code(204).send();
  });

  app.post('/api/v1/auth/revoke-all', {
    schema: { tags: ['auth'], summary: 'Revoke every user token (everyone logs in again)' },
    config: { access: { prefix: 'auth', adminOnly: true } },
  }, async (_req, reply) => {
    await deps.guard.revokeAll();
    return reply.code(204).send();
  });
}
