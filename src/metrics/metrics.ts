// Prometheus metrics of one process: its own prom-client Registry (never the global default one), the
// collectors, and the small interface other modules call (`metrics.httpRequest(...)`,
// `metrics.observeJob(...)`). Gauges that describe shared state (queue depths, Redis up, WebSocket
// clients) are sampled when scraped, through samplers the wiring registers (sources.ts).
//
// Nothing here carries a secret, a token, a key of an object or an address: labels are route
// patterns, methods, status classes, queue names, BMC actions and event types (bounded sets).
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export type Sampler = () => Promise<void> | void;

/** What a scrape waits for the samplers (Redis may be down: the scrape still answers). */
const SAMPLE_TIMEOUT_MS = 1000;

const statusClass = (status: number) => `${Math.floor(status / 100)}xx`;

export class Metrics {
  readonly registry = new Registry();
  private readonly samplers: Sampler[] = [];

  private readonly http: Histogram<'route' | 'method' | 'status_class'>;
  private readonly tftpTransfers: Counter<'outcome'>;
  private readonly tftpBytes: Counter;
  private readonly jobDuration: Histogram<'queue' | 'outcome'>;
  private readonly bmcRequests: Counter<'action' | 'outcome'>;
  private readonly events: Counter<'type'>;
  private readonly wsSlowClosed: Counter;
  readonly queueJobs: Gauge<'queue' | 'state'>;
  readonly redisUp: Gauge;
  readonly wsClients: Gauge;

  private defaultsOn = false;

  constructor(opts: { role: string }) {
    const registers = [this.registry];
    new Gauge({ name: 'ironflow_info', help: 'Always 1; the label names the role of this process (all, api or worker)', labelNames: ['role'], registers })
      .set({ role: opts.role }, 1);
    this.http = new Histogram({
      name: 'ironflow_http_request_duration_seconds',
      help: 'HTTP requests served by this process, by route pattern (unmatched for 404s without a route), method and status class',
      labelNames: ['route', 'method', 'status_class'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    });
    this.tftpTransfers = new Counter({ name: 'ironflow_tftp_transfers_total', help: 'TFTP transfers ended by this process (outcome ok, not_found or failed)', labelNames: ['outcome'], registers });
    this.tftpBytes = new Counter({ name: 'ironflow_tftp_bytes_total', help: 'Bytes sent (and acknowledged) over TFTP by this process', registers });
    this.jobDuration = new Histogram({
      name: 'ironflow_job_duration_seconds',
      help: 'BullMQ jobs processed by this process: processing time by queue and outcome (ok or failed)',
      labelNames: ['queue', 'outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    });
    this.bmcRequests = new Counter({ name: 'ironflow_bmc_requests_total', help: 'BMC requests finished by this process, by action and outcome (succeeded or failed)', labelNames: ['action', 'outcome'], registers });
    this.events = new Counter({
      name: 'ironflow_cluster_events_total',
      help: 'Events on the shared event stream, published by any process (this process counts what its tail reads), by event type',
      labelNames: ['type'],
      registers,
    });
    this.wsSlowClosed = new Counter({ name: 'ironflow_ws_slow_closed_total', help: 'WebSocket clients of this process closed with 1013 because they could not keep up', registers });
    this.queueJobs = new Gauge({ name: 'ironflow_queue_jobs', help: 'BullMQ jobs per queue and state (waiting, active, delayed, failed), sampled when scraped', labelNames: ['queue', 'state'], registers });
    this.redisUp = new Gauge({ name: 'ironflow_redis_up', help: '1 when this process\'s main Redis connection is ready, else 0', registers });
    this.wsClients = new Gauge({ name: 'ironflow_ws_clients', help: 'WebSocket clients connected to this process', registers });
  }

  /** Process metrics (CPU, memory, event loop lag, GC) as `ironflow_process_*` / `ironflow_nodejs_*`; once, when served. */
  enableProcessMetrics(): void {
    if (this.defaultsOn) return;
    this.defaultsOn = true;
    collectDefaultMetrics({ register: this.registry, prefix: 'ironflow_' });
  }

  /** One HTTP request; `route` is the route pattern (`/api/v1/machines/:key`), never the raw URL. */
  httpRequest(route: string | undefined, method: string, status: number, ms: number): void {
    this.http.observe({ route: route ?? 'unmatched', method, status_class: statusClass(status) }, ms / 1000);
  }

  tftpTransfer(outcome: 'ok' | 'not_found' | 'failed', bytes: number): void {
    this.tftpTransfers.inc({ outcome });
    if (bytes > 0) this.tftpBytes.inc(bytes);
  }

  /** A BullMQ job this process ran (advance, bmc, webhooks, …): processing time and whether it succeeded. */
  observeJob(queue: string, ms: number, ok: boolean): void {
    this.jobDuration.observe({ queue, outcome: ok ? 'ok' : 'failed' }, ms / 1000);
  }

  bmcRequest(action: string, ok: boolean): void {
    this.bmcRequests.inc({ action, outcome: ok ? 'succeeded' : 'failed' });
  }

  /** An event read from the shared stream (fed by the bus tail: counts events of every process). */
  event(type: string): void {
    this.events.inc({ type: type || 'unknown' });
  }

  wsSlowClose(n = 1): void {
    this.wsSlowClosed.inc(n);
  }

  /** Registers a function run before every scrape (bounded by a timeout; a failing sampler is skipped). */
  onScrape(sampler: Sampler): () => void {
    this.samplers.push(sampler);
    return () => {
      const i = this.samplers.indexOf(sampler);
      if (i >= 0) this.samplers.splice(i, 1);
    };
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition of this process. */
  async text(): Promise<string> {
    await Promise.all(this.samplers.map((s) => withTimeout(Promise.resolve().then(s), SAMPLE_TIMEOUT_MS).catch(() => undefined)));
    return this.registry.metrics();
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)))]).finally(() => clearTimeout(timer));
}

/** What other modules need (so they can take a partial stand-in in tests). */
export type MetricsSink = Pick<Metrics, 'httpRequest' | 'tftpTransfer' | 'observeJob' | 'bmcRequest' | 'event'>;
