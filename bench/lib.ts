// Shared bench plumbing: a private redis-server, a real `ironflow serve` process, an admin token,
// concurrent HTTP load, percentiles, and the results table/JSON of BENCH.md.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { freePort, startRedis, type TestRedis } from '../test/helpers/redis-server.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface Row {
  name: string;
  metric: string;
  value: number;
  baseline: number | null;
  ratio: number | null;
  target: string;
  pass: boolean;
}

export interface Server {
  url: string;
  tftpPort: number;
  pid: number;
  token: string;
  redis: TestRedis;
  rssMb(): number;
  stop(): Promise<void>;
}

/**
 * A server process (its role from `env.IRONFLOW_ROLE`, default all) and `workers` extra `--role worker`
 * processes on the same Redis and data dir (so the same server key).
 */
export async function startServer(opts: { env?: Record<string, string>; beforeStart?: (redis: TestRedis) => Promise<void>; workers?: number } = {}): Promise<Server> {
  const redis = await startRedis();
  await opts.beforeStart?.(redis); // e.g. data written straight into Redis before the server reads it
  const port = await freePort();
  const tftpPort = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'ironflow-bench-'));
  // From source (node --import tsx) with IRONFLOW_BENCH_FROM_SOURCE=1 or when there is no build: tests need no `npm run build`.
  const fromSource = process.env.IRONFLOW_BENCH_FROM_SOURCE === '1' || !existsSync(join(ROOT, 'dist', 'main.js'));
  const entry = fromSource ? ['--import', 'tsx', join(ROOT, 'test', 'helpers', 'ironflow-main.ts')] : [join(ROOT, 'bin', 'ironflow.js')];
  // IRONFLOW_BENCH_CPU_PROF=<dir>: the server writes a V8 CPU profile there when it exits (node --cpu-prof).
  const prof = process.env.IRONFLOW_BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.IRONFLOW_BENCH_CPU_PROF}`] : [];
  const child: ChildProcess = spawn(process.execPath, [...prof, ...entry, 'serve'], {
    env: { ...process.env, REDIS_URL: redis.url, IRONFLOW_PORT: String(port), IRONFLOW_HOST: '127.0.0.1', IRONFLOW_TFTP_PORT: String(tftpPort), IRONFLOW_DATA_DIR: dataDir, IRONFLOW_ADMIN_PASSWORD: 'bench-password', IRONFLOW_LOG_LEVEL: 'warn', IRONFLOW_BENCH_ROUTES: 'true', IRONFLOW_RATE_LIMITS: 'off', ...opts.env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch { /* not up yet */ }
    if (i > 300 || child.exitCode !== null) {
      child.kill('SIGKILL');
      await redis.stop(); // no orphaned redis-server when the server does not come up
      throw new Error('ironflow serve did not start (did you run npm run build?)');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const res = await fetch(`${url}/api/v1/auth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: 'bench-password' }) });
  const { token } = (await res.json()) as { token: string };
  const workers = Array.from({ length: opts.workers ?? 0 }, () => spawn(process.execPath, [...entry, 'serve'], {
    env: { ...process.env, REDIS_URL: redis.url, IRONFLOW_DATA_DIR: dataDir, IRONFLOW_LOG_LEVEL: 'warn', ...opts.env, IRONFLOW_ROLE: 'worker' },
    stdio: ['ignore', 'inherit', 'inherit'],
  }));
  return {
    url, tftpPort, pid: child.pid!, token, redis,
    rssMb: () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024,
    async stop() {
      await Promise.all([child, ...workers].map((c) => {
        if (c.exitCode !== null) return undefined;
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGTERM');
        return exited;
      }));
      await redis.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Runs `fn` `total` times with `concurrency` in flight; returns per-call latencies in ms. */
export async function load(total: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<number[]> {
  const lat: number[] = new Array(total);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= total) return;
      const t0 = performance.now();
      await fn(i);
      lat[i] = performance.now() - t0;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
  return lat;
}

export function pct(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

export function median(values: number[]): number {
  return pct(values, 50);
}

export async function api(s: Server, method: string, path: string, body?: unknown): Promise<Response> {
  const res = await fetch(`${s.url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${s.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res;
}

export function redisClient(s: Server): Redis {
  return new Redis(s.redis.url);
}

export function printAndSave(rows: Row[], extraMeta: Record<string, unknown> = {}): void {
  const fmt = (n: number | null) => (n === null ? '-' : n >= 100 ? n.toFixed(0) : n.toFixed(2));
  const header = ['benchmark', 'metric', 'ironflow', 'baseline', 'ratio', 'target', 'pass'];
  const lines = rows.map((r) => [r.name, r.metric, fmt(r.value), fmt(r.baseline), fmt(r.ratio), r.target, r.pass ? 'yes' : 'NO']);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  console.log([header, ...lines].map((l) => l.map((c, i) => c.padEnd(widths[i]!)).join('  ')).join('\n'));
  const out = join(ROOT, 'bench', 'results', 'latest.json');
  mkdirSync(dirname(out), { recursive: true });
  const meta = { machine: `${cpus().length} cores ${cpus()[0]?.model ?? ''}`, node: process.version, at: new Date().toISOString(), ...extraMeta };
  writeFileSync(out, `${JSON.stringify({ meta, rows }, null, 2)}\n`);
  console.log(`\nwritten to ${out}`);
}
