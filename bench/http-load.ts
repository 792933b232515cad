// A small closed-loop HTTP load generator over keep-alive sockets (node:http, lighter than fetch):
// `connections` requests in flight for `seconds`, returning requests/s and latencies.
import { Agent, request } from 'node:http';

export interface LoadResult {
  rps: number;
  latencies: number[];
  errors: number;
}

export async function httpLoad(base: string, opts: { connections: number; seconds: number; path: () => string; method?: string; body?: () => string; headers?: Record<string, string> }): Promise<LoadResult> {
  const url = new URL(base);
  const agent = new Agent({ keepAlive: true, maxSockets: opts.connections });
  const latencies: number[] = [];
  let errors = 0;
  const deadline = performance.now() + opts.seconds * 1000;
  const one = () => new Promise<void>((resolve) => {
    const t0 = performance.now();
    const body = opts.body?.();
    const req = request({ host: url.hostname, port: url.port, path: opts.path(), method: opts.method ?? 'GET', agent, headers: { ...opts.headers, ...(body ? { 'content-length': Buffer.byteLength(body) } : {}) } }, (res) => {
      res.on('data', () => {});
      res.on('end', () => {
        if ((res.statusCode ?? 500) >= 400) errors++;
        latencies.push(performance.now() - t0);
        resolve();
      });
    });
    req.on('error', () => { errors++; resolve(); });
    if (body) req.write(body);
    req.end();
  });
  const started = performance.now();
  await Promise.all(Array.from({ length: opts.connections }, async () => { while (performance.now() < deadline) await one(); }));
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  return { rps: latencies.length / elapsed, latencies, errors };
}
