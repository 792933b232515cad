// Preferences routes: GET the whole map, POST/PUT some names (each checked).
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { AppError } from '../errors.js';
import type { AppDeps } from './deps.js';

export function registerPrefRoutes(app: FastifyInstance, deps: AppDeps): void {
  const tags = ['prefs'];
  const config = { access: { prefix: 'prefs' } };
  app.get('/api/v1/prefs', { schema: { tags, summary: 'All preferences' }, config }, async () => deps.prefs.all());
  const set = async (body: unknown) => {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new AppError('INVALID', 'body must be a JSON object of preference name → value');
    return deps.prefs.set(body as Record<string, unknown>);
  };
  const body = Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()]));
  app.post('/api/v1/prefs', { schema: { tags, summary: 'Set preferences', body }, config }, async (req) => set(req.body));
  app.put('/api/v1/prefs', { schema: { tags, summary: 'Set preferences', body }, config }, async (req) => set(req.body));
}
