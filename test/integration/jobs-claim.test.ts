// A claim right after an agent ended its job with "stop" (exit 144): the incomplete job is not handed
// out again until the runner has applied the stop (engine.applied); after that, runnable: true hands
// it out again (202). No runner runs here: the test plays the runner's write itself.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { engineParts } from '../../src/jobs/job-service.js';
import { SystemPrincipal } from '../../src/models/principal.js';
import { machine, newMachine, startEngine, type Engine } from './engine-fixture.js';

let e: Engine;
beforeAll(async () => {
  e = await startEngine({ workers: 0 });
});
afterAll(async () => e.close());

it('does not hand out a stopping job before the runner has stopped the machine', async () => {
  const { jobs } = engineParts(e.s);
  const uuid = await newMachine(e.s, { runnable: true });
  const job = await jobs.create({ machine: await machine(e.s, uuid), index: 0, previous: '', task: 'claim-task', context: '', state: 'running' });
  await e.s.store.update('machines', uuid, (m) => ({ ...m, currentJob: job.uuid }), { principal: SystemPrincipal });
  await e.s.store.update('jobs', String(job.uuid), (j) => ({ ...j, state: 'incomplete', exitState: 'stop' }), { principal: SystemPrincipal });

  expect((await jobs.claim(uuid, '')).status).toBe(204); // the agent asked to stop: nothing to run now

  // the runner applies the stop; an operator sets runnable again
  await e.s.store.update('machines', uuid, (m) => ({ ...m, runnable: false, engine: { applied: job.uuid } }), { principal: SystemPrincipal });
  await expect(jobs.claim(uuid, '')).rejects.toThrow(/not runnable/);
  await e.s.store.update('machines', uuid, (m) => ({ ...m, runnable: true }), { principal: SystemPrincipal });
  const again = await jobs.claim(uuid, '');
  expect(again.status).toBe(202);
  expect(again.status === 202 && again.job.uuid).toBe(job.uuid);
});
