// Metrics on the HTTP side: every request is observed (route pattern, method, status class, duration),
// the WebSocket hub is sampled on scrape, and `GET /metrics` serves this process's registry in the
// Prometheus text format — on the main port, without a token (like /healthz: it holds counts, route
// patterns and queue names, never secrets, tokens, keys or addresses), unless IRONFLOW_METRICS_PORT
// moves it to a separate listener (then the main port has no /metrics).
import type { FastifyInstance } from 'fastify';
import { startMetricSources } from '../metrics/sources.js';
import type { Services } from '../services.js';

export function registerMetrics(app: FastifyInstance, s: Services): void {
  const m = s.metrics;
  app.addHook('onResponse', async (req, reply) => {
    m.httpRequest(req.routeOptions.url, req.method, reply.statusCode, reply.elapsedTime);
  });

  let slowSeen = 0;
  const stopHub = m.onScrape(() => {
    if (!app.hasDecorator('eventHub')) return;
    const stats = app.eventHub.stats();
    m.wsClients.set(stats.connections);
    if (stats.slowClosed > slowSeen) m.wsSlowClose(stats.slowClosed - slowSeen);
    slowSeen = stats.slowClosed;
  });
  app.addHook('onClose', async () => stopHub());

  if (s.config.metricsPort > 0) return;
  const stopSources = startMetricSources(s);
  app.addHook('onClose', async () => stopSources());
  app.get('/metrics', {
    schema: { hide: true },
    config: { public: true },
  }, async (_req, reply) => reply.type(m.contentType).send(await m.text()));
}
