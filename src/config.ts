// The only reader of process.env: every setting, its variable, its flag, its default and its check.
import { isIP } from 'node:net';
import { isAbsolute, resolve } from 'node:path';

export const Roles = ['all', 'api', 'worker'] as const;
export type ProcessRole = (typeof Roles)[number];
const LogLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export interface Config {
  role: ProcessRole;
  port: number;
  host: string;
  tftpPort: number;
  dataDir: string;
  publicUrl: string | undefined;
  contentDirs: string[];
  logLevel: (typeof LogLevels)[number];
  redisUrl: string | undefined;
  redisPrefix: string;
  adminPassword: string | undefined;
  secretKey: string | undefined;
  tokenTtlSeconds: number;
  eventsMaxLen: number;
  benchRoutes: boolean;
  /** per-class overrides of the per-address rate limits, or null to disable them (benchmarks) */
  rateLimits: Record<string, { perSecond: number; burst: number }> | null;
  timelineMaxLen: number;
  trustedProxies: string[];
  wsMaxBufferBytes: number;
  metricsPort: number;
  redisWaitReplicas: number;
  redisWaitTimeoutMs: number;
  jobLogMaxBytes: number;
}

interface Setting<K extends keyof Config> {
  key: K;
  env: string;
  flag: string;
  parse: (raw: string) => Config[K];
  accepted: string;
  help: string;
}

export class ConfigError extends Error {}

const int = (min: number, max: number) => (raw: string) => {
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) throw new ConfigError(`an integer from ${min} to ${max}`);
  return Number(raw);
};
const oneOf = <T extends string>(values: readonly T[]) => (raw: string) => {
  if (!(values as readonly string[]).includes(raw)) throw new ConfigError(values.join(', '));
  return raw as T;
};
const text = (raw: string) => raw;
const LIMIT_CLASSES = ['auth', 'boot', 'discovery', 'machine'];
function parseRateLimits(raw: string): Config['rateLimits'] {
  if (raw === 'off') return null;
  const out: Record<string, { perSecond: number; burst: number }> = {};
  for (const part of raw.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([a-z]+)=(\d+(?:\.\d+)?)\/(\d+)$/.exec(part);
    if (!m || !LIMIT_CLASSES.includes(m[1]!) || Number(m[2]) <= 0 || Number(m[3]) < 1) throw new ConfigError(`"off" or class=perSecond/burst with a class among ${LIMIT_CLASSES.join(', ')} ("${part}" is not)`);
    out[m[1]!] = { perSecond: Number(m[2]), burst: Number(m[3]) };
  }
  return out;
}
const ipList = (raw: string) => raw.split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
  const [ip, bits, more] = s.split('/');
  const family = isIP(ip ?? '');
  if (family === 0 || more !== undefined || (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128)))) throw new ConfigError(`IPs or CIDRs separated by commas ("${s}" is neither)`);
  return s;
});
// Sentinel and Cluster URLs list several hosts (h1:p1,h2:p2), which WHATWG URL refuses; store/connect.ts parses them.
const MULTI_HOST_REDIS = /^redis\+(sentinel|cluster):\/\/(?:[^@/?\s]*@)?[^/?@\s]+(?:\/[^?]*)?(?:\?.*)?$/;
const redisUrl = (raw: string) => (MULTI_HOST_REDIS.test(raw) ? raw : url(['redis:', 'rediss:', 'redis+sentinel:', 'redis+cluster:', 'unix:'])(raw));
const url = (schemes: string[]) => (raw: string) => {
  try {
    const u = new URL(raw);
    if (!schemes.includes(u.protocol)) throw new Error();
  } catch {
    throw new ConfigError(`a URL (${schemes.join(' or ')})`);
  }
  return raw.replace(/\/+$/, '');
};

const settings = [
  { key: 'role', env: 'IRONFLOW_ROLE', flag: 'role', parse: oneOf(Roles), accepted: Roles.join(', '), help: 'which services this process runs' },
  { key: 'port', env: 'IRONFLOW_PORT', flag: 'port', parse: int(0, 65535), accepted: '0-65535', help: 'HTTP port (API, boot files, metadata)' },
  { key: 'host', env: 'IRONFLOW_HOST', flag: 'host', parse: text, accepted: 'an address', help: 'address to listen on' },
  { key: 'tftpPort', env: 'IRONFLOW_TFTP_PORT', flag: 'tftp-port', parse: int(0, 65535), accepted: '0-65535 (0 disables TFTP)', help: 'TFTP port; 0 disables TFTP' },
  { key: 'dataDir', env: 'IRONFLOW_DATA_DIR', flag: 'data-dir', parse: (r: string) => (isAbsolute(r) ? r : resolve(r)), accepted: 'a directory', help: 'embedded Redis data, static files, generated keys' },
  { key: 'publicUrl', env: 'IRONFLOW_PUBLIC_URL', flag: 'public-url', parse: url(['http:', 'https:']), accepted: 'an http(s) URL', help: 'how machines reach this server (default: from the request Host header)' },
  { key: 'contentDirs', env: 'IRONFLOW_CONTENT_DIRS', flag: 'content-dirs', parse: (r: string) => r.split(',').map((d) => d.trim()).filter(Boolean).map((d) => resolve(d)), accepted: 'comma-separated directories', help: 'extra content pack folders' },
  { key: 'logLevel', env: 'IRONFLOW_LOG_LEVEL', flag: 'log-level', parse: oneOf(LogLevels), accepted: LogLevels.join(', '), help: 'log level' },
  { key: 'redisUrl', env: 'REDIS_URL', flag: 'redis-url', parse: redisUrl, accepted: 'a redis://, rediss://, redis+sentinel://, redis+cluster:// or unix: URL', help: 'Redis to use; unset = start an embedded redis-server' },
  { key: 'redisPrefix', env: 'IRONFLOW_REDIS_PREFIX', flag: 'redis-prefix', parse: (r: string) => { if (!/^[A-Za-z0-9_-]{1,64}$/.test(r)) throw new ConfigError('letters, digits, - and _'); return r; }, accepted: 'letters, digits, - and _', help: 'namespace of all Redis keys (several installations may share one Redis)' },
  { key: 'adminPassword', env: 'IRONFLOW_ADMIN_PASSWORD', flag: 'admin-password', parse: (r: string) => { if (r.length < 8) throw new ConfigError('at least 8 characters'); return r; }, accepted: 'at least 8 characters', help: 'password of the admin user created on first start' },
  { key: 'secretKey', env: 'IRONFLOW_SECRET_KEY', flag: 'secret-key', parse: (r: string) => { if (!/^[0-9a-fA-F]{64}$/.test(r)) throw new ConfigError('64 hex characters (32 bytes)'); return r.toLowerCase(); }, accepted: '64 hex characters', help: 'server key (token signing, encryption); default: generated in the data dir' },
  { key: 'tokenTtlSeconds', env: 'IRONFLOW_TOKEN_TTL', flag: 'token-ttl', parse: int(60, 31_536_000), accepted: '60-31536000', help: 'lifetime of user tokens in seconds' },
  { key: 'timelineMaxLen', env: 'IRONFLOW_TIMELINE_MAXLEN', flag: 'timeline-maxlen', parse: int(100, 10_000_000), accepted: '100-10000000', help: 'approximate length cap of each machine\'s timeline' },
  { key: 'rateLimits', env: 'IRONFLOW_RATE_LIMITS', flag: 'rate-limits', parse: parseRateLimits, accepted: '"off" or class=perSecond/burst,… (classes auth, boot, discovery, machine)', help: 'per-source-address limits of unauthenticated endpoints (default auth=1/10,boot=50/200,discovery=1/5,machine=20/100)' },
  { key: 'benchRoutes', env: 'IRONFLOW_BENCH_ROUTES', flag: 'bench-routes', parse: (r: string) => { if (r !== 'true' && r !== 'false') throw new ConfigError('true or false'); return r === 'true'; }, accepted: 'true or false', help: 'serve GET /bench/constant?bytes=N (the baseline of npm run bench); never in production' },
  { key: 'eventsMaxLen', env: 'IRONFLOW_EVENTS_MAXLEN', flag: 'events-maxlen', parse: int(1000, 100_000_000), accepted: '1000-100000000', help: 'approximate length cap of the global event stream' },
  { key: 'trustedProxies', env: 'IRONFLOW_TRUSTED_PROXIES', flag: 'trusted-proxies', parse: ipList, accepted: 'comma-separated IPs or CIDRs', help: 'peers whose X-Forwarded-For is believed by /metadata, /events, /phone-home (default: none)' },
  { key: 'jobLogMaxBytes', env: 'IRONFLOW_JOB_LOG_MAX', flag: 'job-log-max', parse: int(4096, 1_073_741_824), accepted: '4096-1073741824', help: 'bytes of log kept per job; past it the log is cut and marked' },
  { key: 'metricsPort', env: 'IRONFLOW_METRICS_PORT', flag: 'metrics-port', parse: int(0, 65535), accepted: '0-65535 (0: /metrics on the main HTTP port)', help: 'separate port for GET /metrics (any role; workers need it to be scraped); 0 = /metrics on the main port' },
  { key: 'redisWaitReplicas', env: 'IRONFLOW_REDIS_WAIT_REPLICAS', flag: 'redis-wait-replicas', parse: int(0, 16), accepted: '0-16', help: 'object writes are acknowledged only once this many replicas have them (Redis WAIT); 0 = do not wait' },
  { key: 'redisWaitTimeoutMs', env: 'IRONFLOW_REDIS_WAIT_TIMEOUT', flag: 'redis-wait-timeout', parse: int(1, 60_000), accepted: '1-60000', help: 'milliseconds a write waits for its replicas before it is answered 503' },
  { key: 'wsMaxBufferBytes', env: 'IRONFLOW_WS_MAX_BUFFER', flag: 'ws-max-buffer', parse: int(65_536, 1_073_741_824), accepted: '65536-1073741824', help: 'bytes queued for one WebSocket client before it is closed with 1013' },
] as const satisfies readonly Setting<keyof Config>[];

const defaults: Config = {
  role: 'all',
  port: 8080,
  host: '0.0.0.0',
  tftpPort: 69,
  dataDir: resolve('data'),
  publicUrl: undefined,
  contentDirs: [],
  logLevel: 'info',
  redisUrl: undefined,
  redisPrefix: 'ironflow',
  adminPassword: undefined,
  secretKey: undefined,
  tokenTtlSeconds: 86_400,
  eventsMaxLen: 100_000,
  benchRoutes: false,
  rateLimits: {},
  timelineMaxLen: 10_000,
  trustedProxies: [],
  wsMaxBufferBytes: 4 * 1024 * 1024,
  metricsPort: 0,
  redisWaitReplicas: 0,
  redisWaitTimeoutMs: 1000,
  jobLogMaxBytes: 16 * 1024 * 1024,
};

/** The settings table (for `ironflow serve --help` and the README). */
export function describeSettings(): { env: string; flag: string; accepted: string; help: string; default: string }[] {
  return settings.map((s) => ({ env: s.env, flag: `--${s.flag}`, accepted: s.accepted, help: s.help, default: String(defaults[s.key] ?? '') }));
}

/** Reads flags (`--port 9000` or `--port=9000`) over environment variables over defaults; throws ConfigError naming the culprit. */
export function loadConfig(env: Record<string, string | undefined>, flags: Record<string, string | undefined> = {}): Config {
  const cfg: Config = { ...defaults };
  for (const s of settings) {
    const fromFlag = flags[s.flag];
    const raw = fromFlag ?? env[s.env];
    if (raw === undefined || raw === '') continue;
    try {
      (cfg as unknown as Record<string, unknown>)[s.key] = s.parse(raw);
    } catch (err) {
      const name = fromFlag !== undefined ? `--${s.flag}` : s.env;
      const why = err instanceof ConfigError ? err.message : s.accepted;
      throw new ConfigError(`invalid ${name}=${JSON.stringify(raw)}: expected ${why}`);
    }
  }
  return cfg;
}
