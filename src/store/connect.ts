// Opens ioredis connections from one URL: redis://, rediss://, unix:/path, redis+sentinel://h1:p1,h2:p2/master
// and redis+cluster://h1:p1,h2:p2 (the store and BullMQ keys carry hash tags, so Cluster works).
import { Cluster, Redis, type RedisOptions } from 'ioredis';

export type RedisClient = Redis;

function hosts(list: string): { host: string; port: number }[] {
  return list.split(',').map((hp) => {
    const [host = '127.0.0.1', port = '6379'] = hp.split(':');
    return { host, port: Number(port) };
  });
}

/**
 * `blocking` connections (BullMQ workers, stream readers) never give up on a command
 * (maxRetriesPerRequest null); API connections fail fast so a request gets a 503 while Redis is down.
 */
export function connectRedis(url: string, opts: { blocking?: boolean; name?: string } = {}): Redis {
  const common: RedisOptions = {
    maxRetriesPerRequest: opts.blocking ? null : 1,
    // Concurrent requests' commands go out in one write: the boot and API hot paths are many
    // small independent reads. Blocking connections (XREAD BLOCK, BullMQ) must not pipeline.
    enableAutoPipelining: !opts.blocking,
    enableOfflineQueue: true,
    connectionName: opts.name,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
  };
  if (url.startsWith('unix:')) return new Redis({ ...common, path: url.slice('unix:'.length).replace(/^\/\/(?=\/)/, '') });
  const u = new URL(url);
  const password = u.password ? decodeURIComponent(u.password) : undefined;
  const username = u.username ? decodeURIComponent(u.username) : undefined;
  if (u.protocol === 'redis+sentinel:') {
    const [name = 'mymaster', db = '0'] = u.pathname.replace(/^\//, '').split('/');
    const hostPart = url.slice(url.indexOf('//') + 2).split('/')[0]!.split('@').pop()!;
    return new Redis({ ...common, sentinels: hosts(hostPart), name, db: Number(db), password, username, sentinelPassword: u.searchParams.get('sentinelPassword') ?? undefined });
  }
  if (u.protocol === 'redis+cluster:') {
    const hostPart = url.slice(url.indexOf('//') + 2).split('/')[0]!.split('@').pop()!;
    // ioredis' Cluster speaks the same command API; the store only uses single-slot scripts.
    return new Cluster(hosts(hostPart), { redisOptions: { ...common, password, username } }) as unknown as Redis;
  }
  return new Redis(url, common);
}
