// The runner (SPEC 5.2, 5.3) with real BullMQ workers on the test redis-server: rolling over special
// entries, server actions (sim BMC), waits that hold no worker slot, failures, retries, error
// handlers and breakpoints.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simStateKey } from '../../src/bmc/sim.js';
import { LostLock, MachineLocks } from '../../src/jobs/advance.js';
import { SystemPrincipal } from '../../src/models/principal.js';
import { actionTask, clientUpdate, jobsOf, machine, newMachine, put, startEngine, timelineTypes, until, workflow, type Engine } from './engine-fixture.js';

let e: Engine;
const SIM = { 'bmc/driver': 'sim' };

beforeAll(async () => {
  e = await startEngine();
  const s = e.s;
  await actionTask(s, 'e-set-a', [{ action: 'machine.setParam', args: { name: 'a', value: 1 } }]);
  await actionTask(s, 'e-power', [{ action: 'bmc.power', args: { action: 'on' } }, { action: 'bmc.bootDevice', args: { device: 'pxe' } }]);
  await actionTask(s, 'e-status', [{ action: 'bmc.powerStatus' }]);
  await actionTask(s, 'e-wait', [{ action: 'wait.userState', args: { state: 'succeeded', code: 1000, timeoutSeconds: 30 } }, { action: 'machine.setParam', args: { name: 'after-wait', value: true } }]);
  await actionTask(s, 'e-wait-short', [{ action: 'wait.userState', args: { state: 'succeeded', timeoutSeconds: 1 } }]);
  await actionTask(s, 'e-fix-bmc', [{ action: 'machine.setParam', args: { name: 'bmc/driver', value: 'sim' } }]);
  await actionTask(s, 'e-retried', [{ action: 'bmc.powerStatus' }], { retry: { attempts: 2, backoffSeconds: 0.2 } });
  for (const x of ['b1', 'b2', 'b3']) await actionTask(s, `e-${x}`, [{ action: 'machine.setParam', args: { name: x, value: x } }]);
  await workflow(s, 'e-mixed', [
    { name: 'e-one', bootEnv: 'ignore', tasks: ['e-set-a', 'action:machine.setParam:b=2', 'context:runner-x', 'action:wait.seconds:0.3'] },
    { name: 'e-two', bootEnv: 'local', tasks: ['e-power'] },
  ]);
  await workflow(s, 'e-wait', [{ name: 'e-wait', tasks: ['e-wait'] }]);
  await workflow(s, 'e-wait-short', [{ name: 'e-wait-short', tasks: ['e-wait-short'] }]);
  await workflow(s, 'e-status', [{ name: 'e-status', tasks: ['e-status', 'e-set-a'] }]);
  await workflow(s, 'e-retried', [{ name: 'e-retried', tasks: ['e-retried'] }]);
  await workflow(s, 'e-breaks', [{ name: 'e-breaks', tasks: ['e-b1', 'e-b2', 'e-b3'] }]);
});
afterAll(async () => e.close());

const complete = (uuid: string, ms?: number) => until(`workflow of ${uuid} complete`, async () => {
  const m = await machine(e.s, uuid);
  return m.workflowComplete === true ? m : undefined;
}, ms);

describe('rolling forward', () => {
  it('applies stage, bootenv and context entries and runs server tasks and action entries in order', async () => {
    const uuid = await newMachine(e.s, { bootEnv: 'local', workflow: 'e-mixed', params: SIM });
    const m = await complete(uuid);
    expect(m.tasks).toEqual(['stage:e-one', 'bootenv:ignore', 'e-set-a', 'action:machine.setParam:b=2', 'context:runner-x', 'action:wait.seconds:0.3', 'stage:e-two', 'bootenv:local', 'e-power']);
    expect(m).toMatchObject({ stage: 'e-two', bootEnv: 'local', context: 'runner-x', currentTask: 8, runnable: true, params: { a: 1, b: 2 } });
    const jobs = await jobsOf(e.s, uuid);
    expect(jobs.map((j) => [j.task, j.state, j.context, j.currentIndex])).toEqual([
      ['e-set-a', 'finished', 'server', 2],
      ['action:machine.setParam:b=2', 'finished', 'server', 3],
      ['action:wait.seconds:0.3', 'finished', 'server', 5],
      ['e-power', 'finished', 'server', 8],
    ]);
    const sim = await e.s.redis.hgetall(simStateKey(`${e.s.keys.extra('bmcsim')}:`, uuid));
    expect(sim).toMatchObject({ power: 'on', bootDevice: 'pxe' });
    expect((await machine(e.s, uuid)).power).toMatchObject({ state: 'on' });
    expect((await timelineTypes(e.s, uuid)).map((x) => x.type)).toContain('workflow.complete');
  });

  it('does not expose the runner state', async () => {
    const uuid = await newMachine(e.s, { workflow: 'e-status', params: SIM });
    await complete(uuid);
    const res = await e.t.call({ method: 'GET', url: `/api/v1/machines/${uuid}` });
    expect(res.json()).not.toHaveProperty('engine');
    expect(res.json()).not.toHaveProperty('secret');
  });

  it('starts again when the workflow changes, and when currentTask is reset to -1', async () => {
    const uuid = await newMachine(e.s, { workflow: 'e-status', params: SIM });
    await complete(uuid);
    await clientUpdate(e.s, uuid, { workflow: 'e-breaks' });
    await until('e-breaks complete', async () => (await machine(e.s, uuid)).params && ((await machine(e.s, uuid)).params as Record<string, unknown>).b3 === 'b3' && (await machine(e.s, uuid)).workflowComplete === true);
    const before = (await jobsOf(e.s, uuid)).length;
    await clientUpdate(e.s, uuid, { currentTask: -1, workflowComplete: false });
    await until('re-run', async () => (await jobsOf(e.s, uuid)).length === before + 3 && (await machine(e.s, uuid)).workflowComplete === true);
  });
});

describe('waits hold no worker slot', () => {
  it('waits for the matching user state, then continues', async () => {
    const uuid = await newMachine(e.s, { workflow: 'e-wait' });
    await until('wait recorded', async () => ((await machine(e.s, uuid)).engine as { wait?: unknown } | undefined)?.wait !== undefined);
    const [job] = await jobsOf(e.s, uuid);
    expect(job).toMatchObject({ task: 'e-wait', state: 'running', context: 'server' });
    // another machine runs meanwhile: the wait holds no slot (the engine here has one worker with concurrency 50, so also check the
    // wait is not an active BullMQ job)
    const active = await e.s.queues.queue('advance').getActiveCount();
    expect(active).toBe(0);
    // the wrong code and a different state are ignored
    await e.s.timeline.record(uuid, { type: 'user.1001', state: 'succeeded', body: { code: 1001 } }, SystemPrincipal);
    await e.s.timeline.record(uuid, { type: 'user.1000', state: 'running', body: { code: 1000 } }, SystemPrincipal);
    await new Promise((r) => setTimeout(r, 300));
    expect((await machine(e.s, uuid)).workflowComplete).toBe(false);
    await e.s.timeline.record(uuid, { type: 'user.1000', state: 'succeeded', body: { code: 1000 } }, SystemPrincipal);
    const m = await complete(uuid);
    expect(m.params).toMatchObject({ 'after-wait': true });
    expect((await jobsOf(e.s, uuid))[0]).toMatchObject({ state: 'finished' });
  });

  it('fails the step past its deadline', async () => {
    const uuid = await newMachine(e.s, { workflow: 'e-wait-short' });
    const m = await until('stopped', async () => {
      const x = await machine(e.s, uuid);
      return x.runnable === false ? x : undefined;
    }, 10_000);
    expect(m.workflowComplete).toBe(false);
    const [job] = await jobsOf(e.s, uuid);
    expect(job).toMatchObject({ state: 'failed', exitState: 'failed' });
    expect(String((job!.resultErrors as string[])[0])).toContain('no user state succeeded within 1 s');
  });
});

describe('failures', () => {
  it('retries with backoff, then stops the machine', async () => {
    const uuid = await newMachine(e.s, { workflow: 'e-retried' }); // no BMC configured: every attempt fails
    const t0 = Date.now();
    const m = await until('stopped', async () => {
      const x = await machine(e.s, uuid);
      return x.runnable === false ? x : undefined;
    });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(550); // 0.2 s + 0.4 s of backoff
    expect(m).toMatchObject({ retryTaskAttempt: 2, workflowComplete: false });
    const jobs = await jobsOf(e.s, uuid);
    expect(jobs.map((j) => j.state)).toEqual(['failed', 'failed', 'failed']);
    expect(m.currentJob).toBe(jobs[2]!.uuid);
    expect(String((jobs[0]!.resultErrors as string[])[0])).toContain('no BMC configured');
    const failed = (await timelineTypes(e.s, uuid)).filter((x) => x.type === 'workflow.task_failed').map((x) => (x.body as { next: string }).next);
    expect(failed).toEqual(['retry', 'retry', 'stop']);
    // runnable=true continues: the failed task runs once more (still failing: stops again)
    await clientUpdate(e.s, uuid, { runnable: true });
    await until('fourth attempt', async () => (await jobsOf(e.s, uuid)).length === 4 && (await machine(e.s, uuid)).runnable === false);
  });

  it('runs the error handlers (task-error-handlers), then the failed task once more', async () => {
    const uuid = await newMachine(e.s, { workflow: 'e-status', params: { 'task-error-handlers': ['e-fix-bmc'] } });
    const m = await complete(uuid);
    expect(m).toMatchObject({ taskErrorStacks: [], retryTaskAttempt: 0, params: { 'bmc/driver': 'sim', a: 1 } });
    const jobs = await jobsOf(e.s, uuid);
    expect(jobs.map((j) => [j.task, j.state, j.meta?.errorHandler ?? ''])).toEqual([
      ['e-status', 'failed', ''],
      ['e-fix-bmc', 'finished', 'true'],
      ['e-status', 'finished', ''],
      ['e-set-a', 'finished', ''],
    ]);
  });

  it('stops when the task fails again after its error handlers', async () => {
    const uuid = await newMachine(e.s, { workflow: 'e-status', params: { 'task-error-handlers': ['e-b1'] } });
    const m = await until('stopped', async () => {
      const x = await machine(e.s, uuid);
      return x.runnable === false ? x : undefined;
    });
    expect(m.taskErrorStacks).toEqual([[]]);
    expect((await jobsOf(e.s, uuid)).map((j) => [j.task, j.state])).toEqual([['e-status', 'failed'], ['e-b1', 'finished'], ['e-status', 'failed']]);
  });

  it('stops the machine, loudly, on a step the store refuses', async () => {
    await put(e.s, 'stages', { name: 'e-bad-bootenv', tasks: ['bootenv:does-not-exist', 'e-set-a'] });
    await put(e.s, 'workflows', { name: 'e-bad-bootenv', stages: ['e-bad-bootenv'] });
    const uuid = await newMachine(e.s, { workflow: 'e-bad-bootenv' });
    await until('stopped', async () => (await machine(e.s, uuid)).runnable === false);
    const entry = (await timelineTypes(e.s, uuid)).find((x) => x.type === 'workflow.error');
    expect(JSON.stringify(entry?.body)).toContain('bootenvs/does-not-exist');
    expect((await machine(e.s, uuid)).currentTask).toBe(0);
  });
});

describe('breakpoints (task-stop-at)', () => {
  it('stops before the listed entries; runnable=true continues past them', async () => {
    const uuid = await newMachine(e.s, { workflow: 'e-breaks', params: { 'task-stop-at': ['e-b2', 'e-b3'] } });
    let m = await until('stop before e-b2', async () => {
      const x = await machine(e.s, uuid);
      return x.runnable === false ? x : undefined;
    });
    expect(m).toMatchObject({ currentTask: 1, params: { b1: 'b1' } });
    expect((m.params as Record<string, unknown>).b2).toBeUndefined();
    await clientUpdate(e.s, uuid, { runnable: true });
    m = await until('stop before e-b3', async () => {
      const x = await machine(e.s, uuid);
      return x.runnable === false && x.currentTask === 2 ? x : undefined;
    });
    expect(m.params).toMatchObject({ b2: 'b2' });
    await clientUpdate(e.s, uuid, { runnable: true });
    m = await complete(uuid);
    expect(m.params).toMatchObject({ b3: 'b3' });
    const stops = (await timelineTypes(e.s, uuid)).filter((x) => x.type === 'workflow.breakpoint');
    expect(stops).toHaveLength(2);
  });
});

describe('server jobs', () => {
  it('are recorded as running while a step takes a while, then as ended', async () => {
    const uuid = await newMachine(e.s, { workflow: 'e-status', params: { ...SIM, 'bmc/sim': { latencyMs: 1600 } } });
    const running = await until('a running job', async () => (await jobsOf(e.s, uuid)).find((j) => j.state === 'running'), 5000, 20);
    expect(running).toMatchObject({ task: 'e-status', context: 'server' });
    await complete(uuid);
    expect((await jobsOf(e.s, uuid)).map((j) => [j.task, j.state])).toEqual([['e-status', 'finished'], ['e-set-a', 'finished']]);
  });
});

describe('the advance lock', () => {
  it('has one holder at a time, with increasing fencing tokens', async () => {
    const locks = new MachineLocks(e.s.redis, e.s.keys, 1000);
    const a = await locks.acquire('lock-test-1');
    expect(a).toBeDefined();
    expect(await locks.acquire('lock-test-1')).toBeUndefined();
    await a!.check();
    await a!.release();
    const b = await locks.acquire('lock-test-1');
    expect(b!.number).toBeGreaterThan(a!.number);
    await b!.release();
  });

  it('refuses a holder whose lock was taken over once its lease is no longer fresh', async () => {
    const locks = new MachineLocks(e.s.redis, e.s.keys, 400);
    const a = (await locks.acquire('lock-test-2'))!;
    await e.s.redis.set(locks.lockKey('lock-test-2'), '999:other-worker', 'PX', 5000); // another worker took over after an expiry
    await new Promise((r) => setTimeout(r, 250)); // past half the TTL: the holder must ask Redis
    await expect(a.check()).rejects.toBeInstanceOf(LostLock);
    await a.release();
    expect(await e.s.redis.get(locks.lockKey('lock-test-2'))).toBe('999:other-worker'); // release never deletes someone else's lock
  });
});
