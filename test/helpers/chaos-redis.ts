// A private redis-server for the chaos test: fixed loopback port and data dir, AOF with
// `appendfsync always` (every acknowledged write is on disk before Redis answers, so even a SIGKILL of
// Redis loses nothing a client was told), and kill -9 / restart on the same port and dir.
// (test/helpers/redis-server.ts runs `everysec` and stops with SIGTERM, which flushes anyway; here
// Redis dies abruptly, so only `always` makes "nothing acknowledged is lost" a fair demand.)
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './redis-server.js';

export interface ChaosRedis {
  url: string;
  port: number;
  dir: string;
  /** SIGKILL (no shutdown, no final fsync), then waits for the exit */
  kill(): Promise<void>;
  /** starts redis-server again on the same port and dir (it replays the AOF), ready when PING answers */
  start(): Promise<void>;
  /** stops it and removes the data dir */
  close(): Promise<void>;
}

export async function startChaosRedis(): Promise<ChaosRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'ironflow-chaos-redis-'));
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const start = async () => {
    const c = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes',
      '--appendfsync', 'always', '--save', '', '--daemonize', 'no', '--loglevel', 'warning'], { stdio: 'ignore' });
    child = c;
    exited = new Promise((r) => c.once('exit', () => r()));
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => {});
    const deadline = Date.now() + 20_000;
    try {
      for (;;) {
        try {
          if (probe.status !== 'ready') await probe.connect();
          if ((await probe.ping()) === 'PONG') return; // a PING while the AOF loads is a LOADING error
        } catch {
          if (Date.now() > deadline || c.exitCode !== null) throw new Error(`redis-server did not start on ${port}`);
          probe.disconnect();
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    } finally {
      probe.disconnect();
    }
  };
  await start();
  return {
    url,
    port,
    dir,
    start,
    async kill() {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
    async close() {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
