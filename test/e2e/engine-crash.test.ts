// kill -9 of a worker process mid-workflow (SPEC 9): real `ironflow serve --role worker` processes on
// the shared test Redis; the first is killed while BMC actions are in flight, another takes over.
// Every workflow finishes, no job recorded as finished is run again, only an action in flight at the
// kill may repeat (at most once per machine), and nothing is left stuck or dirty.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simStateKey } from '../../src/bmc/sim.js';
import { AdvanceRequests } from '../../src/jobs/advance.js';
import { actionTask, jobsOf, machine, newMachine, startEngine, until, workflow, type Engine } from '../integration/engine-fixture.js';
import { testRedisUrl } from '../helpers/redis.js';

const MAIN = join(import.meta.dirname, '..', 'helpers', 'ironflow-main.ts');
const TASKS = ['k-r1', 'k-r2', 'k-r3', 'k-r4', 'k-r5', 'k-r6'];
const MACHINES = 20;
let e: Engine;
const children: ChildProcess[] = [];

function worker(): { child: ChildProcess; ready: Promise<void>; exited: Promise<unknown> } {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'serve', '--role', 'worker'], {
    env: { ...process.env, REDIS_URL: testRedisUrl(), IRONFLOW_REDIS_PREFIX: e.t.prefix, IRONFLOW_DATA_DIR: e.s.config.dataDir, IRONFLOW_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('worker role started')) resolve();
    });
    child.stderr!.on('data', (d) => (out += d));
    child.once('exit', (code) => reject(new Error(`worker exited (${code}): ${out.slice(-2000)}`)));
  });
  return { child, ready, exited: new Promise((r) => child.once('exit', r)) };
}

beforeAll(async () => {
  e = await startEngine({ workers: 0 });
  for (const t of TASKS) await actionTask(e.s, t, [{ action: 'bmc.resetBmc', args: { type: 'cold' } }]);
  await workflow(e.s, 'k-resets', [{ name: 'k-resets', tasks: TASKS }]);
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await e.close();
});

const resets = async (uuid: string) => Number(await e.s.redis.hget(simStateKey(`${e.s.keys.extra('bmcsim')}:`, uuid), 'bmcResets') ?? 0);

describe('a worker killed with SIGKILL mid-workflow', () => {
  it('is taken over: everything finishes, nothing recorded runs twice, nothing is stuck', async () => {
    const a = worker();
    await a.ready;
    const uuids = await Promise.all(Array.from({ length: MACHINES }, () => newMachine(e.s, { workflow: 'k-resets', params: { 'bmc/driver': 'sim', 'bmc/sim': { latencyMs: 150 } } })));
    await until('a third of the work done', async () => (await Promise.all(uuids.map(resets))).reduce((x, y) => x + y, 0) >= (MACHINES * TASKS.length) / 3, 30_000, 20);
    await new Promise((r) => setTimeout(r, 60 + Math.random() * 60)); // mid-action for most machines (the sim BMC takes 150 ms)
    a.child.kill('SIGKILL');
    await a.exited;
    // what was recorded when the worker died
    const snapshot = new Map<string, { finished: Set<string>; running: boolean; resets: number }>();
    for (const u of uuids) {
      const jobs = await jobsOf(e.s, u);
      const finished = new Set(jobs.filter((j) => j.state === 'finished').map((j) => String(j.uuid)));
      // a step in flight: the machine names a job not recorded as finished (quick server jobs are recorded when they end)
      const current = String((await machine(e.s, u)).currentJob ?? '');
      snapshot.set(u, { finished, running: current !== '' && !finished.has(current), resets: await resets(u) });
    }
    const killedAt = Date.now();
    const b = worker();
    await b.ready;
    await until('every workflow complete', async () => (await Promise.all(uuids.map((u) => machine(e.s, u)))).every((m) => m.workflowComplete === true), 45_000, 100);
    const recoverySeconds = (Date.now() - killedAt) / 1000;
    let repeated = 0;
    for (const u of uuids) {
      const snap = snapshot.get(u)!;
      const jobs = await jobsOf(e.s, u);
      expect(jobs.map((j) => j.currentIndex).sort(), `jobs of ${u}`).toEqual([1, 2, 3, 4, 5, 6]);
      expect(jobs.every((j) => j.state === 'finished')).toBe(true);
      for (const id of snap.finished) expect(jobs.some((j) => j.uuid === id), `finished job ${id} kept, not re-run`).toBe(true);
      const n = await resets(u);
      // only the action in flight at the kill may have run twice
      if (!snap.running) expect(n, `resets of ${u} (nothing in flight)`).toBe(TASKS.length);
      else expect(n).toBeGreaterThanOrEqual(TASKS.length);
      expect(n).toBeLessThanOrEqual(TASKS.length + 1);
      repeated += n - TASKS.length;
    }
    const advance = new AdvanceRequests(e.s.redis, e.s.keys, e.s.queues);
    await until('nothing dirty', async () => (await e.s.redis.zcard(advance.dirtyKey)) === 0, 10_000);
    expect(await e.s.queues.queue('advance').getActiveCount()).toBe(0);
    console.log(`engine-crash: ${[...snapshot.values()].filter((x) => x.running).length} machines had an action in flight at the kill; ${repeated} action(s) repeated; recovered in ${recoverySeconds.toFixed(1)} s`);
    b.child.kill('SIGTERM');
    await b.exited;
  }, 90_000);
});
