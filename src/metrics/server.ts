// The optional metrics listener (IRONFLOW_METRICS_PORT): a bare node:http server answering
// `GET /metrics` (Prometheus text) and `GET /healthz`, in every role — worker processes have no other
// HTTP listener. When it is configured, the main port does not serve /metrics.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Services } from '../services.js';
import { startMetricSources } from './sources.js';

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

export async function startMetricsServer(s: Pick<Services, 'metrics' | 'bus' | 'redis' | 'queues' | 'log'>, host: string, port: number): Promise<MetricsServer> {
  const stopSources = startMetricSources(s);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('only GET /metrics and GET /healthz\n');
      return;
    }
    if (path === '/healthz') {
      const ok = s.redis.status === 'ready';
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ status: ok ? 'ok' : 'store unavailable' }));
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: this port serves GET /metrics and GET /healthz\n');
      return;
    }
    s.metrics.text().then(
      (text) => res.writeHead(200, { 'content-type': s.metrics.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: Error) => {
        s.log.warn({ err: err.message }, 'metrics scrape failed');
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('metrics could not be collected\n');
      },
    );
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      stopSources();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
