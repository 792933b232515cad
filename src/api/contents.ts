// Content pack routes: install/upgrade a pack from one JSON or YAML bundle, remove a pack.
import type { FastifyInstance } from 'fastify';
import YAML from 'yaml';
import { installPack, uninstallPack } from '../content/install.js';
import { packFromBundle } from '../content/pack.js';
import { AppError } from '../errors.js';
import type { AppDeps } from './deps.js';

const PACK_LIMIT = 16 * 1024 * 1024;

export function registerContentRoutes(app: FastifyInstance, deps: AppDeps): void {
  app.addContentTypeParser(['application/yaml', 'application/x-yaml', 'text/yaml'], { parseAs: 'string', bodyLimit: PACK_LIMIT }, (_req, body, done) => {
    try {
      done(null, YAML.parse(body as string, { maxAliasCount: 100 }));
    } catch (err) {
      done(new AppError('INVALID', `body is not valid YAML: ${(err as Error).message}`), undefined);
    }
  });
  const config = { access: { prefix: 'contents' } };
  const tags = ['contents'];
  app.post('/api/v1/contents', { bodyLimit: PACK_LIMIT, schema: { tags, summary: 'Install or upgrade a content pack (JSON or YAML bundle)' }, config }, async (req, reply) => {
    const content = await installPack(deps.store, packFromBundle(req.body, 'upload'));
    return reply.code(201).send(content);
  });
  app.delete('/api/v1/contents/:key', { schema: { tags, summary: 'Remove a content pack and its objects' }, config }, async (req) => {
    return uninstallPack(deps.store, (req.params as { key: string }).key);
  });
}
