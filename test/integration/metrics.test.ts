// Prometheus metrics (src/metrics/, GET /metrics): after HTTP, TFTP, BMC-job and WebSocket traffic,
// every family is present with sane values; the scrape holds no secret, token, address or key; and
// IRONFLOW_METRICS_PORT moves /metrics off the main port onto its own listener.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startBootTftp } from '../../src/boot/tftp-server.js';
import { buildApp } from '../../src/app.js';
import { startBmcWorker } from '../../src/jobs/bmc-worker.js';
import { startMetricsServer } from '../../src/metrics/server.js';
import { ADMIN_PASSWORD, createTestApp, type TestApp } from '../helpers/app.js';

const CORE = join(import.meta.dirname, '..', '..', 'content', 'core');
const MAC = '52:54:00:aa:bb:01';
const BMC_PASSWORD = 'bmc-secret-pw-7781';

let t: TestApp;
let base: string;
let stopWorker: () => Promise<void>;
let tftp: Awaited<ReturnType<typeof startBootTftp>>;
let uuid: string;

/** Parses the text format into `name{labels}` → value (samples only). */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

const sum = (m: Map<string, number>, prefix: string, ...contains: string[]) =>
  [...m].filter(([k]) => k.startsWith(prefix) && contains.every((c) => k.includes(c))).reduce((a, [, v]) => a + v, 0);

beforeAll(async () => {
  t = await createTestApp({ content: [CORE] });
  await t.app.listen({ host: '127.0.0.1', port: 0 });
  const port = (t.app.server.address() as { port: number }).port;
  base = `http://127.0.0.1:${port}`;
  t.services.config.port = port;
  tftp = await startBootTftp(t.app.bootFiles, { ...t.services.config, host: '127.0.0.1', tftpPort: 0 }, t.services.log, t.services.metrics);
  stopWorker = await startBmcWorker(t.services, { backoffBaseMs: 50, pollMs: 50, sweepIntervalMs: 500 });
});

afterAll(async () => {
  await stopWorker?.();
  await tftp?.close();
  await t?.close();
});

describe('GET /metrics', () => {
  let text = '';
  let m: Map<string, number>;
  let token: string;
  let ws: WebSocket | undefined;

  beforeAll(async () => {
    token = await t.token('admin');
    const created = await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'metrics-1', hardwareAddrs: [MAC], address: '10.9.8.7', params: { 'bmc/driver': 'sim', 'bmc/password': BMC_PASSWORD } } });
    expect(created.statusCode, created.body).toBe(201);
    uuid = created.json().uuid;
    // HTTP over the socket: 200s, a 404 with a route, an unmatched 404, a 401
    for (let i = 0; i < 5; i++) expect((await fetch(`${base}/api/v1/machines/${uuid}`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    expect((await fetch(`${base}/api/v1/machines/name:nope`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(404);
    expect((await fetch(`${base}/no/such/route`)).status).toBe(404);
    expect((await fetch(`${base}/api/v1/machines`)).status).toBe(401);
    // TFTP: one file served, one missing
    const curl = (path: string) => promisify(execFile)('curl', ['-sS', '--max-time', '10', '-o', '/dev/null', `tftp://127.0.0.1:${tftp.port}/${path}`]);
    await curl(`${MAC}.ipxe`);
    await expect(curl('no-such-file.bin')).rejects.toThrow();
    // a BMC request run by the worker (a BullMQ job)
    const req = await t.call({ method: 'POST', url: `/api/v1/machines/${uuid}/bmc`, payload: { action: 'set_power_state', parameter: 'on' } });
    expect(req.statusCode, req.body).toBe(202);
    for (let i = 0; ; i++) {
      const r = (await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/bmc/${req.json().id}` })).json();
      if (r.state === 'succeeded') break;
      if (i > 200) throw new Error(`bmc request still ${r.state}`);
      await new Promise((r2) => setTimeout(r2, 50));
    }
    // a WebSocket client (token in the query string: it must not reach the metrics)
    ws = new WebSocket(`${base.replace(/^http/, 'ws')}/api/v1/ws?token=${token}`);
    await new Promise((resolve, reject) => ws!.once('open', resolve).once('error', reject));
    // the bus tail counts events asynchronously: wait until it saw the machine's events
    for (let i = 0; ; i++) {
      const res = await fetch(`${base}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      text = await res.text();
      m = samples(text);
      // (a TFTP transfer ends when the server reads the client's last ACK, after the client has the file)
      if (sum(m, 'ironflow_cluster_events_total', 'type="machines"') > 0 && sum(m, 'ironflow_cluster_events_total', 'type="timeline"') > 0 && m.has('ironflow_tftp_transfers_total{outcome="ok"}')) break;
      if (i > 100) throw new Error('the event counter never saw the machine events, or the TFTP transfer never ended');
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  afterAll(() => ws?.close());

  it('HTTP requests by route pattern, method and status class, with a duration histogram', () => {
    expect(m.get('ironflow_http_request_duration_seconds_count{route="/api/v1/machines/:key",method="GET",status_class="2xx"}')).toBeGreaterThanOrEqual(5);
    expect(m.get('ironflow_http_request_duration_seconds_count{route="/api/v1/machines/:key",method="GET",status_class="4xx"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('ironflow_http_request_duration_seconds_count{route="unmatched",method="GET",status_class="4xx"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('ironflow_http_request_duration_seconds_count{route="/api/v1/machines",method="GET",status_class="4xx"}')).toBeGreaterThanOrEqual(1);
    const count = m.get('ironflow_http_request_duration_seconds_count{route="/api/v1/machines/:key",method="GET",status_class="2xx"}')!;
    const inf = m.get('ironflow_http_request_duration_seconds_bucket{le="+Inf",route="/api/v1/machines/:key",method="GET",status_class="2xx"}');
    expect(inf).toBe(count);
    const seconds = m.get('ironflow_http_request_duration_seconds_sum{route="/api/v1/machines/:key",method="GET",status_class="2xx"}')!;
    expect(seconds).toBeGreaterThan(0);
    expect(seconds / count).toBeLessThan(5);
    // raw URLs never become labels
    expect(text).not.toContain('/no/such/route');
    expect(text).not.toContain('name:nope');
  });

  it('TFTP transfers, bytes and failures', () => {
    expect(m.get('ironflow_tftp_transfers_total{outcome="ok"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('ironflow_tftp_transfers_total{outcome="not_found"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('ironflow_tftp_bytes_total')).toBeGreaterThan(10);
  });

  it('job durations and BMC request outcomes', () => {
    expect(m.get('ironflow_job_duration_seconds_count{queue="bmc",outcome="ok"}')).toBeGreaterThanOrEqual(1);
    expect(m.get('ironflow_job_duration_seconds_sum{queue="bmc",outcome="ok"}')).toBeGreaterThan(0);
    expect(m.get('ironflow_bmc_requests_total{action="set_power_state",outcome="succeeded"}')).toBeGreaterThanOrEqual(1);
  });

  it('queue depths per queue and state, sampled on scrape', () => {
    for (const queue of ['bmc', 'advance', 'webhooks']) {
      for (const state of ['waiting', 'active', 'delayed', 'failed']) {
        const v = m.get(`ironflow_queue_jobs{queue="${queue}",state="${state}"}`);
        expect(v, `${queue}/${state}`).toBeGreaterThanOrEqual(0);
        expect(Number.isInteger(v)).toBe(true);
      }
    }
  });

  it('WebSocket clients, events from the shared stream, Redis up, process metrics', () => {
    expect(m.get('ironflow_ws_clients')).toBe(1);
    expect(m.get('ironflow_ws_slow_closed_total')).toBe(0);
    expect(sum(m, 'ironflow_cluster_events_total', 'type="machines"')).toBeGreaterThanOrEqual(1);
    expect(m.get('ironflow_redis_up')).toBe(1);
    expect(m.get('ironflow_info{role="all"}')).toBe(1);
    expect(m.get('ironflow_process_resident_memory_bytes')).toBeGreaterThan(1e6);
    expect(text).toContain('# TYPE ironflow_cluster_events_total counter');
    expect(text).toContain('# HELP ironflow_cluster_events_total');
  });

  it('holds no secrets, tokens, keys or addresses', async () => {
    for (const secret of [token, token.split('.')[1]!, ADMIN_PASSWORD, BMC_PASSWORD, uuid, MAC, '10.9.8.7', t.prefix, 'Bearer', 'authorization']) {
      expect(text.includes(secret), `metrics contain ${secret.slice(0, 12)}…`).toBe(false);
    }
    expect(text).not.toMatch(/[0-9a-f]{32}/); // no key material or uuid-like value anywhere
    // and it is open: no token needed (like /healthz)
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
  });

  it('a machine cannot learn more: the route takes no parameters', async () => {
    const res = await fetch(`${base}/metrics?name[]=x&debug=1`);
    expect(res.status).toBe(200);
    expect(samples(await res.text()).get('ironflow_redis_up')).toBe(1);
  });
});

describe('IRONFLOW_METRICS_PORT', () => {
  it('serves /metrics on its own listener (any role) and the main port has none', async () => {
    const app = await buildApp({ ...t.services, config: { ...t.services.config, metricsPort: 1 } });
    try {
      expect((await app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(404);
    } finally {
      await app.close();
    }
    const server = await startMetricsServer(t.services, '127.0.0.1', 0);
    try {
      const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
      expect(res.status).toBe(200);
      const m = samples(await res.text());
      expect(m.get('ironflow_redis_up')).toBe(1);
      expect(m.get('ironflow_queue_jobs{queue="bmc",state="failed"}')).toBe(0);
      expect((await fetch(`http://127.0.0.1:${server.port}/healthz`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${server.port}/other`)).status).toBe(404);
      expect((await fetch(`http://127.0.0.1:${server.port}/metrics`, { method: 'POST' })).status).toBe(405);
    } finally {
      await server.close();
    }
  });
});
