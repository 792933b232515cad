// Timeline derivation (SPEC 7.1): store events on machines and jobs become timeline entries and
// `machine_jobs.*` publications exactly once, whatever the number of workers, their hand-overs and crashes.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { parseStreamEntry } from '../../src/events/bus.js';
import { MachineEvents, startMachineEvents, TIMELINE_GROUP } from '../../src/events/machine-events.js';
import { SystemPrincipal } from '../../src/models/principal.js';
import { buildServices, initialiseStore, type Services } from '../../src/services.js';
import { FIXTURE_CONTENT } from '../helpers/app.js';
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js';

const prefix = uniquePrefix('tl');
const opened: { s: Services; conns: Redis[] }[] = [];

function services(): Services {
  const conns: Redis[] = [];
  const connect = (o: { blocking?: boolean }) => {
    const c = new Redis(testRedisUrl(), { maxRetriesPerRequest: o.blocking ? null : 1 });
    conns.push(c);
    return c;
  };
  const config = loadConfig({ IRONFLOW_REDIS_PREFIX: prefix, IRONFLOW_DATA_DIR: mkdtempSync(join(tmpdir(), 'ironflow-tl-')), IRONFLOW_LOG_LEVEL: 'silent', IRONFLOW_SECRET_KEY: 'cd'.repeat(32) });
  const s = buildServices(config, connect({}), connect, pino({ level: 'silent' }));
  opened.push({ s, conns });
  return s;
}

let s: Services;
const system = { principal: SystemPrincipal };
const timeline = async (uuid: string) => (await s.redis.xrange(s.keys.timeline(uuid), '-', '+')).map(([, f]) => {
  const fields: Record<string, string> = {};
  for (let i = 0; i < f.length; i += 2) fields[f[i]!] = f[i + 1]!;
  return { type: fields.type!, state: fields.state!, body: JSON.parse(fields.body!) as Record<string, unknown> };
});
const globalOf = async (type: string, key: string) => (await s.redis.xrange(s.keys.events(), '-', '+')).map(([id, f]) => parseStreamEntry(id, f)).filter((e) => e.type === type && e.key === key);

beforeAll(async () => {
  s = services();
  await initialiseStore(s, [FIXTURE_CONTENT]);
});
afterAll(async () => {
  for (const { s: x, conns } of opened) {
    x.bus.close();
    await x.queues.close();
    conns.forEach((c) => c.disconnect());
  }
});

describe('timeline derivation', () => {
  it('records machine created, bootenv changes and job states once each, with two workers running', async () => {
    const closers = [await startMachineEvents(services()), await startMachineEvents(services())];
    try {
      const m = await s.store.create('machines', { name: 'tl-1', bootEnv: 'local' }, system);
      const uuid = String(m.uuid);
      await s.store.update('machines', uuid, (o) => ({ ...o, description: 'no bootenv change' }), system);
      await s.store.update('machines', uuid, (o) => ({ ...o, bootEnv: 'ignore' }), system);
      const job = await s.store.create('jobs', { machine: uuid, task: 'tl-task' }, system);
      const juuid = String(job.uuid);
      await s.store.update('jobs', juuid, (j) => ({ ...j, state: 'running' }), system);
      await s.store.update('jobs', juuid, (j) => ({ ...j, currentIndex: 1 }), system);
      await s.store.update('jobs', juuid, (j) => ({ ...j, state: 'finished', exitState: 'complete' }), system);
      const want = ['machine.created', 'machine.bootenv_changed', 'job.created', 'job.running', 'job.finished'];
      await expect.poll(async () => (await timeline(uuid)).map((e) => e.type), { timeout: 10_000 }).toEqual(want);
      await new Promise((r) => setTimeout(r, 500)); // give a duplicate the chance to appear
      const entries = await timeline(uuid);
      expect(entries.map((e) => e.type)).toEqual(want);
      expect(entries[1]!.body).toEqual({ from: 'local', to: 'ignore' });
      expect(entries[4]).toMatchObject({ state: 'succeeded', body: { job: juuid, task: 'tl-task', state: 'finished', exitState: 'complete' } });
      // published on the global stream too, once per entry, in the Equinix entry shape
      const published = await globalOf('timeline', uuid);
      expect(published.map((e) => e.action)).toEqual(want);
      expect(JSON.parse(published[0]!.object)).toMatchObject({ type: 'machine.created', machine: uuid, id: expect.stringMatching(/^\d+-\d+$/) });
      // every job event a second time as machine_jobs.{action}.{machine}, in order
      const jobEvents = (await globalOf('jobs', juuid)).map((e) => e.action);
      expect(jobEvents).toEqual(['create', 'save', 'save', 'save']);
      expect((await globalOf('machine_jobs', uuid)).map((e) => `${e.action}:${JSON.parse(e.object).uuid}`)).toEqual(jobEvents.map((a) => `${a}:${juuid}`));
    } finally {
      for (const c of closers) await c();
    }
  });

  it('hands over to another worker when the leader stops, losing nothing', async () => {
    const first = await startMachineEvents(services());
    const m = await s.store.create('machines', { name: 'tl-2', bootEnv: 'local' }, system);
    const uuid = String(m.uuid);
    await expect.poll(async () => (await timeline(uuid)).length, { timeout: 10_000 }).toBe(1);
    await first();
    await s.store.update('machines', uuid, (o) => ({ ...o, bootEnv: 'ignore' }), system);
    await s.store.update('machines', uuid, (o) => ({ ...o, bootEnv: 'local' }), system);
    const second = await startMachineEvents(services());
    try {
      await expect.poll(async () => (await timeline(uuid)).map((e) => e.body.to ?? e.type), { timeout: 10_000 }).toEqual(['machine.created', 'ignore', 'local']);
    } finally {
      await second();
    }
  });

  it('takes over what a dead worker read but never acknowledged', async () => {
    const m = await s.store.create('machines', { name: 'tl-3' }, system);
    const uuid = String(m.uuid);
    // a worker that crashed: it read the event from the group and died before its script ran
    await s.redis.xgroup('CREATE', s.keys.events(), TIMELINE_GROUP, '0', 'MKSTREAM').catch(() => undefined);
    const read = (await s.redis.xreadgroup('GROUP', TIMELINE_GROUP, 'dead-worker', 'COUNT', 10_000, 'STREAMS', s.keys.events(), '>')) as [string, [string, string[]][]][];
    expect(read[0]![1].some(([, f]) => parseStreamEntry('', f).key === uuid)).toBe(true);
    expect(await timeline(uuid)).toEqual([]);
    const next = await startMachineEvents(services());
    try {
      await expect.poll(async () => (await timeline(uuid)).map((e) => e.type), { timeout: 10_000 }).toEqual(['machine.created']);
      const pending = (await s.redis.xpending(s.keys.events(), TIMELINE_GROUP)) as [number, ...unknown[]];
      expect(pending[0]).toBe(0);
    } finally {
      await next();
    }
  });

  it('derives an event once even when two handlers process it (the acknowledgement is in the script)', async () => {
    const m = await s.store.create('machines', { name: 'tl-4' }, system);
    const uuid = String(m.uuid);
    const read = (await s.redis.xreadgroup('GROUP', TIMELINE_GROUP, 'racer', 'COUNT', 10_000, 'STREAMS', s.keys.events(), '>')) as [string, [string, string[]][]][];
    const events = read[0]![1].map(([id, f]) => parseStreamEntry(id, f));
    await Promise.all([new MachineEvents(services()).handle(events), new MachineEvents(services()).handle(events)]);
    expect((await timeline(uuid)).map((e) => e.type)).toEqual(['machine.created']);
  });

  it('a deleted machine\'s timeline says so and expires after the retention period', async () => {
    await s.prefs.set({ eventRetentionDays: '2' });
    const stop = await startMachineEvents(services());
    try {
      const m = await s.store.create('machines', { name: 'tl-5' }, system);
      const uuid = String(m.uuid);
      await s.store.remove('machines', uuid, system);
      await expect.poll(async () => (await timeline(uuid)).map((e) => e.type), { timeout: 10_000 }).toEqual(['machine.created', 'machine.deleted']);
      const ttl = await s.redis.ttl(s.keys.timeline(uuid));
      expect(ttl).toBeGreaterThan(2 * 86_400 - 60);
      expect(ttl).toBeLessThanOrEqual(2 * 86_400);
    } finally {
      await stop();
    }
  });
});
