// The baseline route of `npm run bench` (BENCH.md: "Fastify serving a constant body of the same size
// from the same process"). Registered only with IRONFLOW_BENCH_ROUTES=true.
import type { FastifyInstance } from 'fastify';

export function registerBenchRoutes(app: FastifyInstance): void {
  const bodies = new Map<number, Buffer>();
  app.get('/bench/constant', { schema: { hide: true } }, async (req, reply) => {
    const bytes = Math.min(1 << 20, Math.max(0, Number((req.query as { bytes?: string }).bytes ?? 0) | 0));
    let body = bodies.get(bytes);
    if (!body) bodies.set(bytes, (body = Buffer.alloc(bytes, 'x')));
    return reply.type('text/plain; charset=utf-8').send(body);
  });
  app.post('/bench/echo', { schema: { hide: true } }, async (req) => req.body);
}
