// Builds the server's long-lived services from a config and a backend; shared by `serve` and tests.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { AppDeps } from './api/deps.js';
import { AuthGuard } from './auth/guard.js';
import { loadServerKey, type ServerKey } from './auth/server-key.js';
import { TokenSigner } from './auth/tokens.js';
import { RateLimiters } from './auth/rate-limit.js';
import { SecretBox } from './auth/secrets.js';
import { subscriptionHooks } from './auth/subscription-hooks.js';
import { ensureAdmin, userHooks } from './auth/users.js';
import type { Config } from './config.js';
import { loadStartupContent } from './content/startup.js';
import { EventBus } from './events/bus.js';
import { Timeline } from './events/timeline.js';
import { machinePlanHooks } from './jobs/machine-plan.js';
import { Metrics } from './metrics/metrics.js';
import { QueueClient } from './jobs/queue-client.js';
import { prepareParamValues } from './params/check.js';
import { ParamResolver } from './params/layers.js';
import { storeKeys, type StoreKeys } from './store/keys.js';
import { ObjectCache } from './store/object-cache.js';
import { ObjectStore } from './store/objects.js';
import { PrefsService } from './store/prefs.js';
import { RedisBackend } from './store/redis-backend.js';

/** Opens another Redis connection to the same server (`blocking` for BullMQ workers and stream readers). */
export type Connect = (opts: { blocking?: boolean; name: string }) => Redis;

export interface Services extends AppDeps {
  serverKey: ServerKey;
  secrets: SecretBox;
  keys: StoreKeys;
  redis: Redis;
  connect: Connect;
  bus: EventBus;
  timeline: Timeline;
  queues: QueueClient;
  /** profiles, stages, Params and tasks of this process, never stale (store/object-cache.ts) */
  objectCache: ObjectCache;
  /** this process's Prometheus metrics (src/metrics/) */
  metrics: Metrics;
}

export function buildServices(config: Config, redis: Redis, connect: Connect, log: Logger): Services {
  const keys = storeKeys(config.redisPrefix);
  const backend = new RedisBackend({ redis, keys, eventsMaxLen: config.eventsMaxLen, waitReplicas: config.redisWaitReplicas, waitTimeoutMs: config.redisWaitTimeoutMs });
  const serverKey = loadServerKey(config.secretKey, config.dataDir);
  const secrets = new SecretBox(serverKey.derive('secure-values'));
  let prefs: PrefsService | undefined;
  const store: ObjectStore = new ObjectStore(backend, {
    hooks: { users: userHooks, subscriptions: subscriptionHooks(secrets), machines: machinePlanHooks(() => store) },
    prefs: () => prefs!.all(),
    prepareParams: (s, values, current) => prepareParamValues(s, (v) => secrets.seal(v), values, current),
  });
  prefs = new PrefsService(backend, async (prefix, key) => (await store.get(prefix, key)) !== undefined);
  const signer = new TokenSigner(serverKey.derive('token-signing'));
  const bus = new EventBus(redis, () => connect({ blocking: true, name: 'ironflow-events' }), keys, config.eventsMaxLen);
  const timeline = new Timeline(redis, keys, bus, config.timelineMaxLen);
  const queues = new QueueClient(connect({ name: 'ironflow-queues' }), config.redisPrefix);
  const objectCache = new ObjectCache(backend, () => backend.contentVersion(), (apply, reset) => {
    bus.subscribe(apply);
    bus.onGap(reset);
  });
  return { config, store, objectCache, params: new ParamResolver(store, (x) => secrets.reveal(x), objectCache), prefs, secrets, limits: new RateLimiters(config.rateLimits), guard: new AuthGuard(signer, store, {
    read: async () => Number((await redis.get(keys.extra('token-epoch'))) ?? 0),
    bump: () => redis.incr(keys.extra('token-epoch')),
  }), signer, log, serverKey, keys, redis, connect, bus, timeline, queues, metrics: new Metrics({ role: config.role }) };
}

/** First-start work every api process may do concurrently (idempotent): built-ins, content, admin. */
export async function initialiseStore(s: Services, contentDirs: string[]): Promise<void> {
  await s.store.ensureBuiltins();
  await loadStartupContent(s.store, contentDirs, s.log);
  await s.store.ensureBuiltins();
  await ensureAdmin(s.store, s.config.adminPassword, s.config.dataDir, s.log);
}
