// BMC request routes (SPEC 6): POST /machines/{key}/bmc queues a request (202), GET lists or reads them.
// Operator routes: machine tokens are refused (no machineScope), readonly users may only read.
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { BmcActions, BmcRequestBodySchema, BmcRequestSchema, type BmcRequestBody } from '../bmc/requests.js';
import { AppError } from '../errors.js';
import { bmcRequestService } from '../jobs/bmc-worker.js';
import type { Services } from '../services.js';

const tags = ['bmc'];
const KeyParams = Type.Object({ key: Type.String({ description: 'machine uuid or {index}:{value}, e.g. name:node1' }) });
const OneParams = Type.Object({ key: Type.String(), id: Type.String() });

/** Schema errors as the error handler words them, with the accepted actions spelled out. */
function bodyError(err: Error & { validation?: { instancePath?: string; message?: string }[]; validationContext?: string }): unknown {
  if (!err.validation) return err;
  const where = err.validationContext ?? 'body';
  const messages = err.validation.map((v) => {
    const path = v.instancePath ? v.instancePath.replace(/\//g, '.') : '';
    const msg = v.instancePath === '/action' ? `must be one of ${BmcActions.join(', ')}` : v.message ?? 'invalid';
    return `${where}${path}: ${msg}`;
  });
  return new AppError('INVALID', messages[0] ?? 'invalid request', { kind: 'bmc', messages });
}

export function registerBmcRoutes(app: FastifyInstance, deps: Services): void {
  const requests = bmcRequestService(deps);
  const access = { access: { prefix: 'machines' } };

  app.post('/api/v1/machines/:key/bmc', {
    schema: {
      tags,
      summary: 'Queue a BMC request (power, next boot device, BMC reset)',
      description: 'One unfinished request per machine (409 names it). States pending → active → succeeded | failed; status.msg says what happened.',
      params: KeyParams,
      body: BmcRequestBodySchema,
      response: { 202: BmcRequestSchema },
    },
    config: access,
    attachValidation: true,
  }, async (req, reply) => {
    if (req.validationError) throw bodyError(req.validationError);
    const { key } = req.params as { key: string };
    const created = await requests.create(key, req.body as BmcRequestBody, req.principal);
    return reply.code(202).header('Location', `/api/v1/machines/${created.machine}/bmc/${created.id}`).send(created);
  });

  app.get('/api/v1/machines/:key/bmc', {
    schema: { tags, summary: 'BMC requests of a machine, newest first (the last 100 are kept)', params: KeyParams, response: { 200: Type.Array(BmcRequestSchema) } },
    config: access,
  }, async (req) => requests.list((req.params as { key: string }).key));

  app.get('/api/v1/machines/:key/bmc/:id', {
    schema: { tags, summary: 'One BMC request', params: OneParams, response: { 200: BmcRequestSchema } },
    config: access,
  }, async (req) => {
    const { key, id } = req.params as { key: string; id: string };
    return requests.get(key, id);
  });
}
