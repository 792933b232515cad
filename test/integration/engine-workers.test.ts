// Several runners (each with its own connections and BullMQ worker, as separate processes would have)
// competing for the same machines while advance requests rain on them: every task runs exactly once
// (counted by a side effect: the sim BMC's reset counter), every workflow finishes, nothing is left dirty.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simStateKey } from '../../src/bmc/sim.js';
import { AdvanceRequests } from '../../src/jobs/advance.js';
import { actionTask, jobsOf, machine, newMachine, startEngine, until, workflow, type Engine } from './engine-fixture.js';

let e: Engine;
const TASKS = ['w-r1', 'w-r2', 'w-r3', 'w-r4', 'w-r5', 'w-r6'];

beforeAll(async () => {
  e = await startEngine({ workers: 3 });
  for (const t of TASKS) await actionTask(e.s, t, [{ action: 'bmc.resetBmc', args: { type: 'warm' } }]);
  await workflow(e.s, 'w-resets', [{ name: 'w-resets', tasks: TASKS }]);
});
afterAll(async () => e.close());

const resets = async (uuid: string) => Number(await e.s.redis.hget(simStateKey(`${e.s.keys.extra('bmcsim')}:`, uuid), 'bmcResets') ?? 0);

describe('competing workers', () => {
  it('run every task of every machine exactly once', async () => {
    const advance = new AdvanceRequests(e.s.redis, e.s.keys, e.s.queues);
    const uuids = await Promise.all(Array.from({ length: 40 }, () => newMachine(e.s, { workflow: 'w-resets', params: { 'bmc/driver': 'sim', 'bmc/sim': { latencyMs: 5 } } })));
    // duplicate requests from everywhere while they run
    let raining = true;
    const rain = (async () => {
      while (raining) {
        await advance.requestMany(uuids);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    try {
      await until('every workflow complete', async () => (await Promise.all(uuids.map((u) => machine(e.s, u)))).every((m) => m.workflowComplete === true), 30_000, 100);
    } finally {
      raining = false;
      await rain;
    }
    for (const u of uuids) {
      expect(await resets(u), `resets of ${u}`).toBe(TASKS.length);
      const jobs = await jobsOf(e.s, u);
      expect(jobs.map((j) => j.currentIndex).sort()).toEqual([1, 2, 3, 4, 5, 6]);
      expect(jobs.every((j) => j.state === 'finished')).toBe(true);
    }
    await until('nothing dirty', async () => (await e.s.redis.zcard(advance.dirtyKey)) === 0, 10_000);
  });
});
