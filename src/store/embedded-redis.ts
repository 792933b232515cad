// The private redis-server started when REDIS_URL is unset: AOF on, data in the data dir, a unix
// socket only (nothing listens on the network), stopped last on shutdown.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';

export class EmbeddedRedisError extends Error {}

export interface EmbeddedRedis {
  url: string;
  stop(): Promise<void>;
}

function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

export async function startEmbeddedRedis(dataDir: string, log: { info(msg: string): void }): Promise<EmbeddedRedis> {
  if (!hasRedisServer()) {
    throw new EmbeddedRedisError(
      'redis-server not found: install it (Debian/Ubuntu: sudo apt-get install -y redis-server) or set REDIS_URL=redis://host:6379',
    );
  }
  const dir = join(dataDir, 'redis');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const socket = join(dir, 'redis.sock');
  const child: ChildProcess = spawn('redis-server', [
    '--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--dir', dir,
    '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--daemonize', 'no',
    // Redis 7.0 preallocates each stream node at min(4096, this): a machine's one-entry timeline would
    // cost over 4 KB; 512 keeps it under 1 KB and costs large streams little.
    '--stream-node-max-bytes', '512',
    '--loglevel', 'warning', '--logfile', join(dir, 'redis.log'),
  ], { stdio: 'ignore' });
  const url = `unix:${socket}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new EmbeddedRedisError(`redis-server exited with code ${child.exitCode}; see ${join(dir, 'redis.log')}`);
    const probe = new Redis({ path: socket, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => {}); // expected until the socket appears
    try {
      await probe.connect();
      if ((await probe.ping()) === 'PONG') {
        probe.disconnect();
        break;
      }
    } catch {
      probe.disconnect();
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new EmbeddedRedisError(`redis-server did not answer within 15 s; see ${join(dir, 'redis.log')}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  log.info(`embedded redis-server on ${url} (data in ${dir})`);
  return {
    url,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM'); // redis-server flushes the AOF on SIGTERM
      await exited;
    },
  };
}
