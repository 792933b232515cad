// Authentication routes: exchanging a username and password for a bearer token.
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { issueUserToken } from '../auth/users.js';
import type { AppDeps } from './deps.js';

const TokenRequest = Type.Object({
  username: Type.String({ minLength: 1, maxLength: 64 }),
  password: Type.String({ minLength: 1, maxLength: 1024 }),
  ttlSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 31_536_000 })),
}, { additionalProperties: false });

export function registerAuthRoutes(app: FastifyInstance, deps: AppDeps): void {
  app.post('/api/v1/auth/token', {
    schema: { tags: ['auth'], summary: 'Issue a bearer token for a user', body: TokenRequest, security: [] },
    config: { public: true },
  }, async (req) => {
    const { username, password, ttlSeconds } = req.body as { username: string; password: string; ttlSeconds?: number };
    return issueUserToken(deps.store, deps.signer, username, password, Math.min(ttlSeconds ?? deps.config.tokenTtlSeconds, deps.config.tokenTtlSeconds));
  });
}
