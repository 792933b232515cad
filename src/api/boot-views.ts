// Operator views of a machine's boot files (SPEC 4.3): which files it would be served now, and any one
// of them rendered exactly as the machine gets it (a failed render is 422 RENDER_FAILED naming the cause).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { BootFiles } from '../boot/boot-files.js';
import { publicUrlOf } from '../boot/http.js';
import { normaliseBootPath } from '../boot/path-index.js';
import { AppError } from '../errors.js';
import type { AppDeps } from './deps.js';

const tags = ['machines'];
const config = { access: { prefix: 'machines' } };

export function registerBootViewRoutes(app: FastifyInstance, deps: AppDeps, boot: BootFiles): void {
  const machineOf = (req: FastifyRequest) => deps.store.mustGet('machines', (req.params as { key: string }).key);

  app.get('/api/v1/machines/:key/boot', {
    schema: { tags, summary: 'The boot files this machine is served now: path (TFTP), url (HTTP), bootenv entry and template' },
    config,
  }, async (req) => {
    const machine = await machineOf(req);
    const { files, errors } = await boot.resolver.machineFiles(machine);
    if (errors.length > 0) throw new AppError('RENDER_FAILED', errors[0]!, { kind: 'machines', key: String(machine.uuid), messages: errors });
    const base = `${publicUrlOf(deps.config.publicUrl, req)}/boot/`;
    return files.map((f) => ({
      path: f.path,
      url: base + f.path.split('/').map(encodeURIComponent).join('/'),
      bootEnv: f.bootEnv,
      entry: f.name,
      ...(f.template ? { template: f.template } : { inline: true }),
      ...(f.mac ? { mac: f.mac } : {}),
    }));
  });

  app.get('/api/v1/machines/:key/render/*', {
    schema: { tags, summary: 'Render one of this machine\'s boot files as it would be served (text)' },
    config,
  }, async (req, reply) => {
    const raw = (req.params as { '*'?: string })['*'] ?? '';
    const path = normaliseBootPath(raw, false);
    if (path === null) throw new AppError('INVALID', `not a boot path: ${JSON.stringify(raw.slice(0, 200))}`);
    const machine = await machineOf(req);
    const file = await boot.resolver.renderForMachine(machine, path, publicUrlOf(deps.config.publicUrl, req));
    if (!file) {
      throw new AppError('NOT_FOUND', `${path} is not a boot file of machine ${String(machine.name)} (GET /api/v1/machines/${String(machine.uuid)}/boot lists them)`, { kind: 'machines', key: String(machine.uuid) });
    }
    if (file.kind === 'failed') throw file.error;
    if (file.kind !== 'rendered') throw new AppError('NOT_FOUND', `${path} is not rendered`);
    return reply.type('text/plain; charset=utf-8').header('Cache-Control', 'no-store').send(file.body);
  });
}
