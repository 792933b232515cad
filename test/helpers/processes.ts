// Real `ironflow serve --role api|worker` child processes for deployment tests (scale-out, failover,
// chaos): each runs from source (`node --import tsx test/helpers/ironflow-main.ts serve …`) on free
// loopback ports, with the shared REDIS_URL, key prefix, IRONFLOW_SECRET_KEY and admin password of
// its deployment; every process also has a metrics port (workers have no other listener), so a test
// can see what each one did. Readiness is waited for; SIGTERM/SIGKILL helpers wait for the exit.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './redis-server.js';

export const IRONFLOW_MAIN = join(import.meta.dirname, 'ironflow-main.ts');
const MAX_OUTPUT = 2 * 1024 * 1024;

export type Role = 'all' | 'api' | 'worker';

/** What every process of one deployment shares. */
export interface Deployment {
  redisUrl: string;
  prefix: string;
  secretKey: string;
  adminPassword: string;
  /** extra environment for every process (e.g. IRONFLOW_PUBLIC_URL, IRONFLOW_REDIS_WAIT_REPLICAS) */
  env?: Record<string, string>;
}

export function deployment(redisUrl: string, opts: Partial<Omit<Deployment, 'redisUrl'>> = {}): Deployment {
  return {
    redisUrl,
    prefix: opts.prefix ?? `dep-${randomBytes(4).toString('hex')}`,
    secretKey: opts.secretKey ?? randomBytes(32).toString('hex'),
    adminPassword: opts.adminPassword ?? 'deployment-admin-pw',
    env: opts.env,
  };
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface IronflowProcess {
  name: string;
  role: Role;
  pid: number;
  /** http://127.0.0.1:PORT of the API (api and all roles) */
  url: string;
  /** TFTP port (0 when disabled) */
  tftpPort: number;
  metricsUrl: string;
  child: ChildProcess;
  exited: Promise<Exit>;
  /** stdout + stderr so far (pino JSON lines), capped */
  output(): string;
  /** GET /metrics of this process, parsed into `name{labels}` → value */
  metrics(): Promise<Map<string, number>>;
  /** SIGTERM (graceful), then waits for the exit (SIGKILL after `timeoutMs`) */
  stop(timeoutMs?: number): Promise<Exit>;
  /** SIGKILL, then waits for the exit */
  kill(): Promise<Exit>;
}

export interface SpawnOptions {
  name?: string;
  env?: Record<string, string>;
  readyTimeoutMs?: number;
  /** TFTP port for api roles (default: disabled) */
  tftp?: boolean;
}

export async function spawnIronflow(role: Role, d: Deployment, opts: SpawnOptions = {}): Promise<IronflowProcess> {
  const ports = new Set<number>();
  while (ports.size < (opts.tftp ? 3 : 2)) ports.add(await freePort());
  const [port, metricsPort, tftpPort = 0] = [...ports] as [number, number, number?];
  const dataDir = mkdtempSync(join(tmpdir(), `ironflow-${role}-`));
  const name = opts.name ?? `${role}-${port}`;
  const child = spawn(process.execPath, ['--import', 'tsx', IRONFLOW_MAIN, 'serve', '--role', role], {
    env: {
      ...process.env,
      REDIS_URL: d.redisUrl,
      IRONFLOW_REDIS_PREFIX: d.prefix,
      IRONFLOW_SECRET_KEY: d.secretKey,
      IRONFLOW_ADMIN_PASSWORD: d.adminPassword,
      IRONFLOW_PORT: String(port),
      IRONFLOW_HOST: '127.0.0.1',
      IRONFLOW_TFTP_PORT: String(tftpPort),
      IRONFLOW_METRICS_PORT: String(metricsPort),
      IRONFLOW_DATA_DIR: dataDir,
      IRONFLOW_LOG_LEVEL: 'info',
      ...d.env,
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const collect = (chunk: Buffer) => {
    out += chunk.toString();
    if (out.length > MAX_OUTPUT) out = out.slice(-MAX_OUTPUT / 2);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => {
    rmSync(dataDir, { recursive: true, force: true });
    resolve({ code, signal });
  }));
  let exit: Exit | undefined;
  void exited.then((e) => (exit = e));
  const url = `http://127.0.0.1:${port}`;
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;

  const waitExit = async (timeoutMs: number): Promise<Exit> => {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
    const res = await Promise.race([exited, timedOut]);
    clearTimeout(timer);
    if (res !== 'timeout') return res;
    child.kill('SIGKILL');
    return exited;
  };
  const proc: IronflowProcess = {
    name, role, pid: child.pid!, url, tftpPort, metricsUrl, child, exited,
    output: () => out,
    metrics: async () => parseMetrics(await (await fetch(metricsUrl)).text()),
    async stop(timeoutMs = 40_000) {
      if (exit) return exit;
      child.kill('SIGTERM');
      return waitExit(timeoutMs);
    },
    async kill() {
      if (exit) return exit;
      child.kill('SIGKILL');
      return exited;
    },
  };

  // ready: the API answers /healthz (api, all); a worker logged that its role started and its metrics port answers
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  for (;;) {
    if (exit) throw new Error(`ironflow ${name} exited (${exit.code ?? exit.signal}) before it was ready:\n${out.slice(-4000)}`);
    if (Date.now() > deadline) {
      await proc.kill();
      throw new Error(`ironflow ${name} not ready in time:\n${out.slice(-4000)}`);
    }
    try {
      const ok = role === 'worker'
        ? out.includes('worker role started') && (await fetch(metricsUrl)).ok
        : (await fetch(`${url}/healthz`)).ok;
      if (ok) return proc;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Starts several processes at once (they boot in parallel); stops the started ones if one fails. */
export async function spawnAll(specs: { role: Role; name?: string; env?: Record<string, string> }[], d: Deployment): Promise<IronflowProcess[]> {
  const settled = await Promise.allSettled(specs.map((s) => spawnIronflow(s.role, d, { name: s.name, env: s.env })));
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.all(settled.map((r) => (r.status === 'fulfilled' ? r.value.kill() : undefined)));
    throw (failed as PromiseRejectedResult).reason;
  }
  return settled.map((r) => (r as PromiseFulfilledResult<IronflowProcess>).value);
}

export async function adminToken(p: { url: string }, d: Deployment): Promise<string> {
  const res = await fetch(`${p.url}/api/v1/auth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: d.adminPassword }) });
  if (!res.ok) throw new Error(`login on ${p.url}: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

/** Prometheus text → `name{labels}` → value. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** Sum of the samples whose `name{labels}` starts with `name` and contains every `label="value"` given. */
export function metricSum(m: Map<string, number>, name: string, ...labels: string[]): number {
  let total = 0;
  for (const [k, v] of m) if ((k === name || k.startsWith(`${name}{`)) && labels.every((l) => k.includes(l))) total += v;
  return total;
}
