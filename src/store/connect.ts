// Opens ioredis connections from one URL: redis://, rediss://, unix:/path, redis+sentinel://h1:p1,h2:p2/master
// and redis+cluster://h1:p1,h2:p2 (the store and BullMQ keys carry hash tags, so Cluster works).
import { Cluster, Redis, type RedisOptions } from 'ioredis';

export type RedisClient = Redis;

export interface MultiHostUrl {
  protocol: 'redis+sentinel:' | 'redis+cluster:';
  username: string | undefined;
  password: string | undefined;
  hosts: { host: string; port: number }[];
  /** path segments: sentinel `[master, db]` */
  path: string[];
  params: URLSearchParams;
}

const MULTI_HOST = /^(redis\+sentinel|redis\+cluster):\/\/(?:([^@/?]*)@)?([^/?@]+)(\/[^?]*)?(?:\?(.*))?$/;

/**
 * `redis+sentinel://[user:pass@]h1:p1,h2:p2/master[/db][?sentinelPassword=…]` and `redis+cluster://h1:p1,h2:p2`:
 * WHATWG URL refuses several hosts in one authority, so these are split by hand. Hosts may be `[v6]:port`;
 * the port defaults to 26379 (sentinel) or 6379 (cluster). Undefined when `url` is not of this form.
 */
export function parseMultiHostUrl(url: string): MultiHostUrl | undefined {
  const m = MULTI_HOST.exec(url);
  if (!m) return undefined;
  const protocol = `${m[1]}:` as MultiHostUrl['protocol'];
  const auth = m[2];
  const colon = auth?.indexOf(':') ?? -1;
  const dec = (v: string | undefined) => (v ? decodeURIComponent(v) : undefined);
  const defaultPort = protocol === 'redis+sentinel:' ? 26379 : 6379;
  const hosts: { host: string; port: number }[] = [];
  for (const hp of m[3]!.split(',')) {
    const h = /^\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?$/.exec(hp) ?? /^([^:[\]\s]+)(?::(\d{1,5}))?$/.exec(hp);
    if (!h) return undefined;
    hosts.push({ host: h[1]!, port: h[2] ? Number(h[2]) : defaultPort });
  }
  return {
    protocol,
    username: dec(colon >= 0 ? auth!.slice(0, colon) : auth),
    password: dec(colon >= 0 ? auth!.slice(colon + 1) : undefined),
    hosts,
    path: (m[4] ?? '').split('/').filter(Boolean).map(decodeURIComponent),
    params: new URLSearchParams(m[5] ?? ''),
  };
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
  const multi = parseMultiHostUrl(url);
  if (multi?.protocol === 'redis+sentinel:') {
    const [name = 'mymaster', db = '0'] = multi.path;
    const { username, password, hosts: sentinels } = multi;
    // failoverDetector: sentinels' +switch-master moves the connection at once, not at its next error
    return new Redis({ ...common, sentinels, name, db: Number(db), password, username, sentinelPassword: multi.params.get('sentinelPassword') ?? undefined, failoverDetector: true });
  }
  if (multi?.protocol === 'redis+cluster:') {
    // ioredis' Cluster speaks the same command API; the store only uses single-slot scripts.
    return new Cluster(multi.hosts, { redisOptions: { ...common, password: multi.password, username: multi.username } }) as unknown as Redis;
  }
  if (url.startsWith('redis+')) throw new Error(`REDIS_URL: cannot read the hosts of ${url.replace(/\/\/[^@/]*@/, '//…@')}`);
  return new Redis(url, common);
}
