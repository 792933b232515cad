// Machine token routes: issue a token for a machine, rotate its secret (revoking every token).
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { issueMachineToken, MAX_MACHINE_TOKEN_TTL_SECONDS, rotateMachineSecret } from '../auth/machine-tokens.js';
import { publicView } from '../store/objects.js';
import { machines } from '../models/machines.js';
import type { AppDeps } from './deps.js';

export function registerMachineTokenRoutes(app: FastifyInstance, deps: AppDeps): void {
  const tags = ['machines'];
  app.get('/api/v1/machines/:key/token', {
    schema: { tags, summary: 'Issue a machine token (scoped to this machine)', querystring: Type.Object({ ttl: Type.Optional(Type.Integer({ minimum: 60, maximum: MAX_MACHINE_TOKEN_TTL_SECONDS })) }) },
    config: { access: { prefix: 'machines', adminOnly: false } },
  }, async (req) => {
    const m = await deps.store.mustGet('machines', (req.params as { key: string }).key);
    const ttl = (req.query as { ttl?: number }).ttl ?? Number(await deps.prefs.get('knownTokenTimeout'));
    return issueMachineToken(deps.signer, m, ttl);
  });
  app.post('/api/v1/machines/:key/rotate-secret', {
    schema: { tags, summary: 'Rotate the machine secret: every machine token issued before stops working' },
    config: { access: { prefix: 'machines' } },
  }, async (req) => {
    const m = await deps.store.mustGet('machines', (req.params as { key: string }).key);
    return publicView(machines, await rotateMachineSecret(deps.store, String(m.uuid)));
  });
}
