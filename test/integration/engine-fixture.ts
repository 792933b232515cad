// Shared by the engine, jobs and agent tests: a test app over the core content with real runner
// workers (BullMQ on the shared test redis-server), extra service sets on the same key prefix (other
// "processes"), object helpers and polling.
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { startMachineEvents } from '../../src/events/machine-events.js';
import { startRunner, type RunnerOptions } from '../../src/jobs/runner.js';
import type { StoredObject } from '../../src/models/common.js';
import { SystemPrincipal } from '../../src/models/principal.js';
import { buildServices, type Services } from '../../src/services.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { testRedisUrl } from '../helpers/redis.js';

export const CORE_CONTENT = join(import.meta.dirname, '..', '..', 'content');
export const FAST_RUNNER: RunnerOptions = { lockTtlMs: 3000, jobLockMs: 4000, stalledIntervalMs: 1000, sweepIntervalMs: 500 };

export interface Engine {
  t: TestApp;
  s: Services;
  /** starts another runner over a fresh service set (another "worker process" on the same Redis) */
  addWorker(opts?: RunnerOptions): Promise<{ s: Services; stop: () => Promise<void> }>;
  close(): Promise<void>;
}

export async function startEngine(opts: { workers?: number; runner?: RunnerOptions; content?: string[] } = {}): Promise<Engine> {
  const t = await createTestApp({ content: opts.content ?? [CORE_CONTENT] });
  const stops: (() => Promise<void>)[] = [];
  const addWorker = async (o: RunnerOptions = opts.runner ?? FAST_RUNNER) => {
    const s = otherServices(t);
    const stopRunner = await startRunner(s.services, o);
    // as in the worker role: timeline entries derived from events (workflow.complete among them)
    const stopEvents = await startMachineEvents(s.services);
    const stop = async () => {
      await stopRunner();
      await stopEvents();
      await s.close();
    };
    stops.push(stop);
    return { s: s.services, stop };
  };
  for (let i = 0; i < (opts.workers ?? 1); i++) await addWorker();
  return {
    t,
    s: t.services,
    addWorker,
    async close() {
      for (const stop of stops.splice(0)) await stop().catch(() => undefined);
      await t.close();
    },
  };
}

/** Services over the same prefix and data dir as `t` (what another process would build). */
export function otherServices(t: TestApp): { services: Services; close: () => Promise<void> } {
  const config = loadConfig({ IRONFLOW_DATA_DIR: t.services.config.dataDir, IRONFLOW_REDIS_PREFIX: t.prefix, IRONFLOW_LOG_LEVEL: 'silent' });
  const connections: Redis[] = [];
  const connect = (o: { blocking?: boolean }) => {
    const c = new Redis(testRedisUrl(), { maxRetriesPerRequest: o.blocking ? null : 1 });
    connections.push(c);
    return c;
  };
  const services = buildServices(config, connect({}), connect, pino({ level: process.env.ENGINE_TEST_LOG ? 'debug' : 'silent' }));
  return {
    services,
    async close() {
      services.bus.close();
      await services.queues.close();
      connections.forEach((c) => c.disconnect());
    },
  };
}

export async function put(s: Services, prefix: string, obj: StoredObject): Promise<StoredObject> {
  return s.store.create(prefix, obj, { principal: SystemPrincipal });
}

/** A client-style change (action `update`, guards apply), e.g. `runnable: true`. */
export async function clientUpdate(s: Services, uuid: string, change: Partial<StoredObject>): Promise<StoredObject> {
  return s.store.patch('machines', uuid, { type: 'merge', doc: change }, { principal: { type: 'user', name: 'admin', role: 'admin' } });
}

/** Polls `fn` until it returns something other than undefined/false; fails with `what` and the last value seen. */
export async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 15_000, everyMs = 50): Promise<Exclude<T, false | undefined>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as Exclude<T, false | undefined>;
    last = v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export async function machine(s: Services, uuid: string): Promise<StoredObject> {
  return s.store.mustGet('machines', uuid);
}

/** A machine's jobs, oldest first. */
export async function jobsOf(s: Services, uuid: string): Promise<StoredObject[]> {
  const q = s.store.parseQuery('jobs', { machine: uuid, limit: '1000' });
  const { items } = await s.store.list('jobs', q);
  return items.sort((a, b) => String(a.startTime).localeCompare(String(b.startTime)) || (a.currentIndex as number) - (b.currentIndex as number));
}

export async function timelineTypes(s: Services, uuid: string): Promise<{ type: string; state: string; body: unknown }[]> {
  const rows = await s.redis.xrange(s.keys.timeline(uuid), '-', '+');
  return rows.map(([, f]) => {
    const rec: Record<string, string> = {};
    for (let i = 0; i + 1 < f.length; i += 2) rec[f[i]!] = f[i + 1]!;
    return { type: rec.type ?? '', state: rec.state ?? '', body: JSON.parse(rec.body ?? 'null') as unknown };
  });
}

/** Creates tasks (`actions` or `templates`), a stage per list and a workflow over them. */
export async function workflow(s: Services, name: string, stages: { name: string; bootEnv?: string; tasks: string[] }[]): Promise<void> {
  for (const st of stages) await put(s, 'stages', { name: st.name, bootEnv: st.bootEnv ?? '', tasks: st.tasks });
  await put(s, 'workflows', { name, stages: stages.map((st) => st.name) });
}

export async function actionTask(s: Services, name: string, actions: { action: string; args?: Record<string, unknown> }[], extra: StoredObject = {}): Promise<void> {
  await put(s, 'tasks', { name, actions, ...extra });
}

let n = 0;
export async function newMachine(s: Services, fields: StoredObject = {}): Promise<string> {
  const m = await put(s, 'machines', { name: `m${process.pid}-${++n}-${Math.random().toString(36).slice(2, 7)}`, ...fields });
  return String(m.uuid);
}
