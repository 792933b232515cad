// Event retention (SPEC 7.1): the global stream and every machine's timeline are capped by count on
// each append (XADD MAXLEN ~) and, here, by age: entries older than the `eventRetentionDays` pref are
// removed with XTRIM MINID. Runs periodically in the worker role, once per interval across all workers.
import type { Services } from '../services.js';

const MACHINE_CHUNK = 500;

export interface RetentionResult {
  /** entries removed from the global stream and from timelines */
  removed: number;
  /** timelines looked at */
  timelines: number;
}

/** One pass: trims everything older than the retention period (a pref of 0 keeps everything). */
export async function runRetention(s: Pick<Services, 'redis' | 'keys' | 'prefs' | 'store'>, now = Date.now()): Promise<RetentionResult> {
  const days = Number(await s.prefs.get('eventRetentionDays'));
  if (!(days > 0)) return { removed: 0, timelines: 0 };
  const minId = `${Math.max(0, Math.floor(now - days * 86_400_000))}-0`;
  let removed = Number(await s.redis.xtrim(s.keys.events(), 'MINID', minId));
  let timelines = 0;
  // machines are walked by their key set, a chunk at a time; deleted machines' timelines expire on their own
  for (let offset = 0; ; offset += MACHINE_CHUNK) {
    const uuids = await s.store.backend.rangeKeys('machines', offset, MACHINE_CHUNK, false);
    if (uuids.length === 0) break;
    const pipe = s.redis.pipeline();
    for (const uuid of uuids) pipe.xtrim(s.keys.timeline(uuid), 'MINID', minId);
    for (const [err, n] of (await pipe.exec()) ?? []) if (!err) removed += Number(n);
    timelines += uuids.length;
    if (uuids.length < MACHINE_CHUNK) break;
  }
  return { removed, timelines };
}

export interface RetentionOptions {
  intervalMs?: number;
}

/** Worker-role starter: a pass every interval (default 10 min), skipped when another worker ran one. */
export async function startRetention(s: Services, opts: RetentionOptions = {}): Promise<() => Promise<void>> {
  const intervalMs = opts.intervalMs ?? 600_000;
  const lock = s.keys.extra('retention', 'lock');
  let running: Promise<void> | undefined;
  const pass = async () => {
    try {
      // the lock expires with the interval: whichever worker comes first does this round's pass
      if ((await s.redis.set(lock, '1', 'PX', Math.max(1000, intervalMs - 500), 'NX')) !== 'OK') return;
      const r = await runRetention(s);
      if (r.removed > 0) s.log.info({ removed: r.removed, timelines: r.timelines }, 'event retention pass');
    } catch (err) {
      s.log.warn({ err: (err as Error).message }, 'event retention pass failed; next interval retries');
    }
  };
  const timer = setInterval(() => {
    if (!running) running = pass().finally(() => (running = undefined));
  }, intervalMs);
  timer.unref();
  running = pass().finally(() => (running = undefined));
  return async () => {
    clearInterval(timer);
    await running;
  };
}
