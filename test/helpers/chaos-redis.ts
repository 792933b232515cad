// A private redis-server for the chaos test: a data node of helpers/sentinel.ts on its own (loopback
// port, private dir, AOF with `appendfsync always`: every acknowledged write is on disk before Redis
// answers, so even a SIGKILL of Redis loses nothing a client was told), killed with -9 and started
// again on the same port and dir. (helpers/redis-server.ts runs `everysec` and stops with SIGTERM,
// which flushes anyway; here Redis dies abruptly, so only `always` makes "nothing acknowledged is
// lost" a fair demand.)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './redis-server.js';
import { startDataNode } from './sentinel.js';

export interface ChaosRedis {
  url: string;
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
  const node = await startDataNode(port, dir);
  return {
    url: `redis://127.0.0.1:${port}`,
    kill: () => node.kill(),
    start: () => node.restart(),
    async close() {
      await node.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
