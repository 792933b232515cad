// Redis high-availability deployments on loopback for tests: a primary, N replicas (`--replicaof`) and
// 3 `redis-sentinel` processes watching them (quorum 2, down after 1 s), every data node with AOF
// `appendfsync always`; and a 3-node Redis Cluster (`--cluster-enabled yes` + `redis-cli --cluster create`).
// Free ports, private directories, helpers to SIGKILL / restart a node and to wait for a failover.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort } from './redis-server.js';

export const MASTER_NAME = 'mymaster';

export interface RedisNode {
  port: number;
  dir: string;
  child: ChildProcess;
  /** SIGKILL (no shutdown, no final fsync beyond what appendfsync did) */
  kill(): Promise<void>;
  /** starts it again on the same port and directory (AOF reloaded) with the same arguments */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

async function waitPing(port: number, child: ChildProcess, timeoutMs = 20_000): Promise<void> {
  const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on('error', () => {});
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      try {
        if (probe.status !== 'ready') await probe.connect();
        if ((await probe.ping()) === 'PONG') return;
      } catch {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`redis on ${port} did not start`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    probe.disconnect();
  }
}

/** A redis-server (or sentinel when `args` holds a config file and --sentinel) that can be killed and restarted. */
async function startNode(port: number, dir: string, args: string[], program = 'redis-server'): Promise<RedisNode> {
  const launch = () => spawn(program, args, { stdio: 'ignore' });
  const node: RedisNode = {
    port, dir, child: launch(),
    async kill() {
      if (node.child.exitCode !== null || node.child.signalCode !== null) return;
      const exited = new Promise((r) => node.child.once('exit', r));
      node.child.kill('SIGKILL');
      await exited;
    },
    async restart() {
      await node.kill();
      node.child = launch();
      await waitPing(port, node.child);
    },
    async stop() {
      if (node.child.exitCode !== null || node.child.signalCode !== null) return;
      const exited = new Promise((r) => node.child.once('exit', r));
      node.child.kill('SIGTERM');
      const t = setTimeout(() => node.child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
  await waitPing(port, node.child);
  return node;
}

const dataArgs = (port: number, dir: string) => ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes',
  '--appendfsync', 'always', '--save', '', '--daemonize', 'no', '--loglevel', 'warning'];

/** A standalone data node (AOF, `appendfsync always`) that can be killed and restarted on its port and dir. */
export function startDataNode(port: number, dir: string): Promise<RedisNode> {
  return startNode(port, dir, dataArgs(port, dir));
}

export interface SentinelDeployment {
  primary: RedisNode;
  replicas: RedisNode[];
  sentinels: RedisNode[];
  /** redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/mymaster */
  url: string;
  /** the primary's port as the sentinels report it */
  primaryPort(): Promise<number>;
  /** waits until the sentinels name a primary other than `oldPort` and it answers as a master; returns its port */
  waitForFailover(oldPort: number, timeoutMs?: number): Promise<number>;
  /** a plain connection to the data node on `port` */
  client(port: number): Redis;
  stop(): Promise<void>;
}

export async function startSentinelDeployment(opts: { replicas?: number; downAfterMs?: number } = {}): Promise<SentinelDeployment> {
  const root = mkdtempSync(join(tmpdir(), 'ironflow-sentinel-'));
  const ports = new Set<number>();
  const nReplicas = opts.replicas ?? 1;
  while (ports.size < 1 + nReplicas + 3) ports.add(await freePort());
  const [pPort, ...rest] = [...ports];
  const rPorts = rest.slice(0, nReplicas);
  const sPorts = rest.slice(nReplicas);
  const started: RedisNode[] = [];
  const clients: Redis[] = [];
  try {
    const dirOf = (name: string) => mkdtempSync(join(root, `${name}-`));
    const pDir = dirOf('primary');
    const primary = await startDataNode(pPort!, pDir);
    started.push(primary);
    const replicas: RedisNode[] = [];
    for (const port of rPorts) {
      const dir = dirOf('replica');
      const r = await startNode(port, dir, [...dataArgs(port, dir), '--replicaof', '127.0.0.1', String(pPort)]);
      started.push(r);
      replicas.push(r);
    }
    const client = (port: number) => {
      const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1, retryStrategy: () => 200, lazyConnect: false });
      c.on('error', () => {});
      clients.push(c);
      return c;
    };
    // replicas in sync before the sentinels look (they learn the replicas from the primary's INFO)
    for (const r of replicas) await until(`replica ${r.port} in sync`, async () => /master_link_status:up/.test(await client(r.port).info('replication')));
    const sentinels: RedisNode[] = [];
    for (const port of sPorts) {
      const dir = dirOf('sentinel');
      const conf = join(dir, 'sentinel.conf');
      writeFileSync(conf, [
        `port ${port}`, 'bind 127.0.0.1', 'daemonize no', `dir ${dir}`, 'loglevel warning',
        `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${pPort} 2`,
        `sentinel down-after-milliseconds ${MASTER_NAME} ${opts.downAfterMs ?? 1000}`,
        `sentinel failover-timeout ${MASTER_NAME} 10000`,
        `sentinel parallel-syncs ${MASTER_NAME} 1`,
        '',
      ].join('\n'));
      const s = await startNode(port, dir, [conf], 'redis-sentinel');
      started.push(s);
      sentinels.push(s);
    }
    // every sentinel knows the replicas and the two other sentinels (so a quorum can elect a leader)
    for (const s of sentinels) {
      await until(`sentinel ${s.port} ready`, async () => {
        const info = toMap((await client(s.port).call('SENTINEL', 'MASTER', MASTER_NAME)) as string[]);
        return Number(info['num-slaves']) === nReplicas && Number(info['num-other-sentinels']) === 2;
      }, 20_000);
    }
    const primaryPort = async () => {
      for (const s of sentinels) {
        try {
          const [, port] = (await client(s.port).call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME)) as [string, string];
          return Number(port);
        } catch { /* that sentinel may be down: ask the next */ }
      }
      throw new Error('no sentinel answered');
    };
    return {
      primary, replicas, sentinels, client, primaryPort,
      url: `redis+sentinel://${sPorts.map((p) => `127.0.0.1:${p}`).join(',')}/${MASTER_NAME}`,
      async waitForFailover(oldPort, timeoutMs = 30_000) {
        let port = 0;
        await until('a new primary', async () => {
          port = await primaryPort();
          return port !== oldPort && /role:master/.test(await client(port).info('replication'));
        }, timeoutMs);
        return port;
      },
      async stop() {
        clients.forEach((c) => c.disconnect());
        for (const n of [...sentinels, ...replicas, primary]) await n.stop();
        rmSync(root, { recursive: true, force: true });
      },
    };
  } catch (err) {
    clients.forEach((c) => c.disconnect());
    for (const n of started) await n.kill();
    rmSync(root, { recursive: true, force: true });
    throw err;
  }
}

export interface ClusterDeployment {
  nodes: RedisNode[];
  /** redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3 */
  url: string;
  stop(): Promise<void>;
}

/** Three cluster-enabled masters (no replicas) joined with `redis-cli --cluster create`; waits for cluster_state:ok. */
export async function startRedisCluster(size = 3): Promise<ClusterDeployment> {
  const root = mkdtempSync(join(tmpdir(), 'ironflow-cluster-'));
  const ports = new Set<number>();
  // cluster bus ports are port + 10000: keep them under 65536
  while (ports.size < size) {
    const p = await freePort();
    if (p < 55_000) ports.add(p);
  }
  const nodes: RedisNode[] = [];
  try {
    for (const port of ports) {
      const dir = mkdtempSync(join(root, 'node-'));
      nodes.push(await startNode(port, dir, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--cluster-enabled', 'yes',
        '--cluster-config-file', join(dir, 'nodes.conf'), '--cluster-node-timeout', '2000', '--appendonly', 'yes', '--appendfsync', 'everysec',
        '--save', '', '--daemonize', 'no', '--loglevel', 'warning']));
    }
    await promisify(execFile)('redis-cli', ['--cluster', 'create', ...[...ports].map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 });
    const c = new Redis({ port: [...ports][0], host: '127.0.0.1' });
    try {
      await until('cluster_state:ok', async () => /cluster_state:ok/.test((await c.call('CLUSTER', 'INFO')) as string), 20_000);
    } finally {
      c.disconnect();
    }
    return {
      nodes,
      url: `redis+cluster://${[...ports].map((p) => `127.0.0.1:${p}`).join(',')}`,
      async stop() {
        for (const n of nodes) await n.stop();
        rmSync(root, { recursive: true, force: true });
      },
    };
  } catch (err) {
    for (const n of nodes) await n.kill();
    rmSync(root, { recursive: true, force: true });
    throw err;
  }
}

function toMap(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = flat[i + 1]!;
  return out;
}

async function until(what: string, f: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await f()) return;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
