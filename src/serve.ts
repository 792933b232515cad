// `ironflow serve`: config → Redis (embedded when REDIS_URL is unset) → services → listeners, and a
// graceful close in reverse order with the embedded Redis stopped last.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { buildApp } from './app.js';
import { startBootTftp } from './boot/tftp-server.js';
import { loadConfig, type Config } from './config.js';
import { createLogger } from './log.js';
import { startMetricsServer } from './metrics/server.js';
import { connectRedis } from './store/connect.js';
import { startEmbeddedRedis, type EmbeddedRedis } from './store/embedded-redis.js';
import { buildServices, initialiseStore } from './services.js';
import { startWorkers } from './workers.js';

/** The folder holding content/ and templates/ (the package root, for both src/ under tsx and dist/). */
export const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');


export async function serve(flags: Record<string, string | undefined>): Promise<void> {
  const config = loadConfig(process.env, flags);
  const log = createLogger(config.logLevel);
  let embedded: EmbeddedRedis | undefined;
  const redisUrl = config.redisUrl ?? (embedded = await startEmbeddedRedis(config.dataDir, log)).url;
  try {
    await run(config, redisUrl, log, () => embedded?.stop() ?? Promise.resolve());
  } catch (err) {
    await embedded?.stop();
    throw err;
  }
}

async function run(config: Config, redisUrl: string, log: Logger, stopRedis: () => Promise<void>): Promise<void> {
  const connections: ReturnType<typeof connectRedis>[] = [];
  const connect = (opts: { blocking?: boolean; name: string }) => {
    const c = connectRedis(redisUrl, opts);
    c.on('error', (err) => log.warn({ err: err.message, connection: opts.name }, 'redis connection problem'));
    connections.push(c);
    return c;
  };
  const redis = connect({ name: `ironflow-${config.role}` });
  const services = buildServices(config, redis, connect, log);
  await checkServerKey(redis, services.keys.extra('server-key-fingerprint'), services.serverKey.fingerprint());

  const closers: (() => Promise<void>)[] = [];
  if (config.metricsPort > 0) {
    const metrics = await startMetricsServer(services, config.host, config.metricsPort);
    log.info(`metrics listening on http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${metrics.port}/metrics`);
    closers.push(() => metrics.close());
  }
  if (config.role === 'all' || config.role === 'api') {
    await initialiseStore(services, [join(PACKAGE_ROOT, 'content'), ...config.contentDirs]);
    const app = await buildApp(services);
    await app.listen({ port: config.port, host: config.host });
    for (const a of app.addresses()) {
      const where = typeof a === 'string' ? a : `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
      log.info(`api listening on ${where} (docs at /docs)`);
    }
    closers.push(() => app.close());
    if (config.tftpPort > 0) {
      const tftp = await startBootTftp(app.bootFiles, config, log, services.metrics);
      log.info(`tftp listening on tftp://${config.host.includes(':') ? `[${config.host}]` : config.host}:${tftp.port}`);
      closers.push(() => tftp.close());
    }
  }
  if (config.role === 'all' || config.role === 'worker') {
    closers.push(...(await startWorkers(services)));
    log.info('worker role started');
  }

  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    log.info(`${signal}: shutting down`);
    const timer = setTimeout(() => {
      log.error('shutdown took longer than 30 s; exiting');
      process.exit(1);
    }, 30_000);
    for (const close of closers.reverse()) await close().catch((err) => log.error({ err }, 'close failed'));
    services.bus.close();
    await services.queues.close();
    await Promise.all(connections.map((c) => c.quit().catch(() => c.disconnect())));
    await stopRedis();
    clearTimeout(timer);
    log.flush();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

/** Several processes must share one server key (tokens, encryption); refuse to start with a different one. */
async function checkServerKey(redis: ReturnType<typeof connectRedis>, key: string, fingerprint: string): Promise<void> {
  await redis.set(key, fingerprint, 'NX');
  const stored = await redis.get(key);
  if (stored !== fingerprint) {
    throw new Error('this Redis was initialised with a different server key: give every process the same IRONFLOW_SECRET_KEY (or the same data dir)');
  }
}
