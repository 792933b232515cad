// The workflow runner (SPEC 5.2): one advance pass rolls a machine forward over its task list —
// special entries applied, server tasks run here, agent tasks handed out as `created` jobs — and
// applies what an ended job means (retries, error handlers, stop). Plus the worker-role starter: the
// BullMQ worker of the `advance` queue, the event triggers and the dirty-set sweeper.
//
// Every step is one fenced compare-and-set write of the machine (same workflow, same currentTask and
// currentJob as decided, fence still ours) made BEFORE the step's effect, so a crash never repeats a
// recorded step. Runner state that must change with the machine (which job's end was applied, the
// retry time, the action in progress, a pending wait) lives in the machine's hidden `engine` field,
// so it commits in the same write.
import { randomUUID } from 'node:crypto';
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { errorCode, ErrorStatus } from '../errors.js';
import { eventObject } from '../events/bus.js';
import type { Timeline } from '../events/timeline.js';
import { entryArgs } from '../models/action-schemas.js';
import type { StoredObject } from '../models/common.js';
import { SystemPrincipal } from '../models/principal.js';
import type { ParamResolver } from '../params/layers.js';
import type { Services } from '../services.js';
import type { StoredEvent } from '../store/backend.js';
import type { StoreKeys } from '../store/keys.js';
import type { ObjectSource } from '../store/object-cache.js';
import type { ObjectStore } from '../store/objects.js';
import { isRedisDown } from '../store/redis-errors.js';
import { checkWait, runAction, type WaitSpec } from './actions.js';
import { LostLock, MachineLocks, type AdvanceData, type AdvanceRequests, type Fence } from './advance.js';
import { engineParts, type JobService } from './job-service.js';
import { parseEntry } from './plan.js';
import { QueueNames, queuePrefix } from './queues.js';

/** Runner state on the machine (hidden field `engine`). */
export interface EngineState {
  /** the job `action`/`wait`/`handler` belong to */
  job?: string;
  /** index of the next action of a server job: actions before it are done, this one may have started */
  action?: number;
  /** the error handler task the job runs (to recreate a lost handler job) */
  handler?: string;
  /** a recorded wait of action `action` */
  wait?: WaitSpec;
  /** the ended job whose consequences (failure policy, exit stop) were applied */
  applied?: string;
  /** epoch ms before which a failed job is not retried */
  retryAt?: number;
  /** the breakpoint (task-stop-at) the machine already stopped at */
  stoppedAt?: { index: number; entry: string; workflow: string };
}

export type Move =
  | { type: 'idle'; why: string; wakeAt?: number }
  /** apply the failure policy to the current (failed) job */
  | { type: 'failure'; job: StoredObject }
  /** the current job finished with exit state stop: the machine stops */
  | { type: 'stop'; job: StoredObject }
  /** continue the current server job from engine.action */
  | { type: 'resume'; job: StoredObject }
  /** start `entry` (a task or action entry) as a new job at `index`; `reuse` recreates a lost current job */
  | { type: 'start'; index: number; entry: string; handler?: string; shiftHandler?: boolean; reuse?: string }
  /** roll forward to `index` (a special entry, a task, a breakpoint, or the end) */
  | { type: 'roll'; index: number };

const engineOf = (m: StoredObject): EngineState => (m.engine as EngineState | undefined) ?? {};
const tasksOf = (m: StoredObject): string[] => (m.tasks as string[] | undefined) ?? [];
const stacksOf = (m: StoredObject): string[][] => (m.taskErrorStacks as string[][] | undefined) ?? [];
const isHandlerJob = (j: StoredObject) => j.meta?.errorHandler === 'true';

/**
 * What to do next, from the machine and its current job (`null` = the machine names a job that
 * does not exist: it was lost between the machine write and the job write). Pure.
 */
export function decide(m: StoredObject, cur: StoredObject | null | undefined, now: number): Move {
  if (m.runnable !== true) return { type: 'idle', why: 'not runnable' };
  if (m.locked === true) return { type: 'idle', why: 'locked' };
  const tasks = tasksOf(m);
  const i = (m.currentTask as number | undefined) ?? -1;
  const eng = engineOf(m);
  const jobUuid = (m.currentJob as string | undefined) ?? '';
  const pending = stacksOf(m)[0] ?? [];
  const roll = (): Move => (i + 1 >= tasks.length && m.workflowComplete === true ? { type: 'idle', why: 'workflow complete' } : { type: 'roll', index: i + 1 });
  if (!jobUuid || i < 0 || i >= tasks.length) return roll();
  if (cur === null) {
    const handler = eng.job === jobUuid ? eng.handler : undefined;
    return { type: 'start', index: i, entry: handler ?? tasks[i]!, ...(handler ? { handler } : {}), reuse: jobUuid };
  }
  if (cur === undefined) return roll();
  const server = cur.context === 'server';
  switch (cur.state) {
    case 'created':
    case 'incomplete':
    case 'running':
      if (!server && cur.state === 'incomplete' && cur.exitState === 'stop' && eng.applied !== jobUuid) return { type: 'stop', job: cur };
      return server ? { type: 'resume', job: cur } : { type: 'idle', why: `job ${jobUuid} is the agent's (${String(cur.state)})` };
    case 'failed':
      if (eng.applied !== jobUuid) return { type: 'failure', job: cur };
      if (eng.retryAt !== undefined && eng.retryAt > now) return { type: 'idle', why: 'retry backoff', wakeAt: eng.retryAt };
      if (isHandlerJob(cur)) return { type: 'start', index: i, entry: String(cur.task), handler: String(cur.task) };
      if (pending.length > 0) return { type: 'start', index: i, entry: pending[0]!, handler: pending[0]!, shiftHandler: true };
      return { type: 'start', index: i, entry: tasks[i]! };
    case 'finished':
      if (cur.exitState === 'stop' && eng.applied !== jobUuid) return { type: 'stop', job: cur };
      if (pending.length > 0) return { type: 'start', index: i, entry: pending[0]!, handler: pending[0]!, shiftHandler: true };
      if (isHandlerJob(cur)) return { type: 'start', index: i, entry: tasks[i]! };
      return roll();
    default:
      return roll();
  }
}

export interface RetryPolicy {
  attempts: number;
  backoffSeconds: number;
}

export type FailurePlan =
  | { next: 'retry'; attempt: number; retryAt: number }
  | { next: 'error-handlers'; handlers: string[] }
  | { next: 'stop'; why: string };

/** SPEC 5.2's failure policy, pure: retries with exponential backoff, then error handlers once (depth 1), then stop. */
export function failurePlan(m: StoredObject, job: StoredObject, retry: RetryPolicy, handlers: string[], now: number): FailurePlan {
  if (isHandlerJob(job)) return { next: 'stop', why: `error handler ${String(job.task)} failed` };
  const attempt = (m.retryTaskAttempt as number | undefined) ?? 0;
  if (attempt < retry.attempts) return { next: 'retry', attempt: attempt + 1, retryAt: now + retry.backoffSeconds * 1000 * 2 ** attempt };
  if (stacksOf(m).length === 0 && handlers.length > 0) return { next: 'error-handlers', handlers };
  return { next: 'stop', why: retry.attempts > 0 ? `failed after ${retry.attempts} retr${retry.attempts === 1 ? 'y' : 'ies'}` : 'failed' };
}

/** The plan moved under this pass (a client changed the workflow, runnable, …): stop the pass quietly. */
class Superseded extends Error {}

type JobFields = { uuid: string; machine: StoredObject; index: number; previous: string; task: string; meta?: Record<string, string>; startTime?: string };

/** A server job's record: written once when it ends, or first as `running` when it takes a while or waits. */
class ServerJobRecord {
  private created: Promise<unknown> | undefined;

  constructor(private readonly jobs: JobService, private readonly pass: Pass, readonly fields: JobFields) {}

  static existing(jobs: JobService, pass: Pass, job: StoredObject): ServerJobRecord {
    const r = new ServerJobRecord(jobs, pass, { uuid: String(job.uuid), machine: {}, index: -1, previous: '', task: String(job.task) });
    r.created = Promise.resolve();
    return r;
  }

  get uuid(): string {
    return this.fields.uuid;
  }

  running(): Promise<unknown> {
    this.created ??= this.pass.fence.check().then(() => this.jobs.create({ ...this.fields, context: 'server', state: 'running' })).catch((err: unknown) => {
      if (errorCode(err) !== 'CONFLICT') throw err;
    });
    return this.created;
  }

  /** Ends the job (true: the pass goes on to look at what follows). */
  async end(state: 'finished' | 'failed', resultErrors: string[]): Promise<boolean> {
    const before = () => this.pass.fence.check();
    if (!this.created) {
      // claimed synchronously, so the `running` timer cannot create the job meanwhile
      this.created = before().then(() => this.jobs.create({ ...this.fields, context: 'server', state, resultErrors }));
      await this.created;
      return true;
    }
    await this.created;
    await this.jobs.end(this.uuid, state, resultErrors, before);
    return true;
  }
}

export interface RunnerDeps {
  store: ObjectStore;
  params: ParamResolver;
  redis: Redis;
  keys: StoreKeys;
  log: Logger;
  timeline: Timeline;
  jobs: JobService;
  advance: AdvanceRequests;
}

/** Moves one pass makes before it ends; the machine is marked dirty, so the processor passes again. */
const MAX_MOVES_PER_PASS = 500;

interface Pass {
  fence: Fence;
  stopAt?: string[];
  /** where this move reads tasks, profiles, stages and Params (a cache view started with its first reads) */
  source?: ObjectSource;
  /** the machine as this pass last read or wrote it (the next write starts from it) */
  latest?: StoredObject;
  /** the job this pass last started: read together with the machine, which usually names it */
  job?: string;
}

type Action = { action: string; args: Record<string, unknown> };

export class Runner {
  readonly waitingKey: string;

  constructor(private readonly d: RunnerDeps) {
    this.waitingKey = d.keys.extra('engine-waiting');
  }

  /** One pass over one machine, under its lock. */
  async advanceOnce(uuid: string, fence: Fence): Promise<void> {
    const pass: Pass = { fence };
    for (let n = 0; n < MAX_MOVES_PER_PASS; n++) {
      // One round trip: the machine, the job it most likely names, and the cache view's version check.
      pass.source = this.d.params.source();
      const guess = pass.job;
      const [m, guessed] = await Promise.all([this.d.store.get('machines', uuid), guess ? this.d.store.get('jobs', guess) : undefined]);
      if (!m) return;
      pass.latest = m;
      const named = m.currentJob ? String(m.currentJob) : '';
      const cur = !named ? undefined : ((named === guess ? guessed : await this.d.store.get('jobs', named)) ?? null);
      const move = decide(m, cur, Date.now());
      if (move.type === 'idle') {
        if (move.wakeAt !== undefined) await this.d.advance.requestAt(uuid, move.wakeAt);
        return;
      }
      let more: boolean;
      try {
        more = await this.apply(m, move, pass);
      } catch (err) {
        if (err instanceof Superseded) return;
        if (err instanceof LostLock) throw err;
        const code = errorCode(err);
        if (code === 'LOCKED' || code === 'NOT_FOUND') return;
        // a step the store refuses (e.g. `bootenv:x` naming a missing bootenv) stops the machine, loudly
        if (code && code !== 'STALE' && ErrorStatus[code] < 500) {
          await this.halt(m, pass, `${describeMove(move, m)}: ${(err as Error).message}`);
          return;
        }
        throw err;
      }
      if (!more) return;
    }
    await this.d.advance.mark(uuid);
  }

  private async apply(m: StoredObject, move: Exclude<Move, { type: 'idle' }>, pass: Pass): Promise<boolean> {
    switch (move.type) {
      case 'failure': return this.applyFailure(m, move.job, pass);
      case 'stop':
        await this.write(m, pass, (c) => c.currentJob === move.job.uuid, (c) => ({ ...c, runnable: false, engine: { ...engineOf(c), applied: String(move.job.uuid) } }));
        await this.record(m, 'workflow.stopped', 'stopped', { job: move.job.uuid, task: move.job.task, reason: 'the task exited with stop' });
        return false;
      case 'resume': return this.resume(m, move.job, pass);
      case 'start': return this.start(m, move, pass);
      case 'roll': return this.roll(m, move.index, pass);
    }
  }

  /** A fenced compare-and-set write of the machine; `same` must hold on the stored machine. */
  private async write(m: StoredObject, pass: Pass, same: (cur: StoredObject) => boolean, change: (cur: StoredObject) => StoredObject): Promise<StoredObject> {
    await pass.fence.check();
    const latest = pass.latest?.uuid === m.uuid ? pass.latest : undefined;
    const stored = await this.d.store.update('machines', String(m.uuid), (cur) => {
      if (cur.workflow !== m.workflow || !same(cur)) throw new Superseded();
      return change(cur);
    }, { principal: SystemPrincipal, action: 'save', ...(latest ? { current: latest } : {}) });
    pass.latest = stored;
    return stored;
  }

  /** The decided position still holds: same currentTask and currentJob, still runnable. */
  private samePosition(m: StoredObject): (cur: StoredObject) => boolean {
    return (cur) => cur.currentTask === m.currentTask && (cur.currentJob ?? '') === (m.currentJob ?? '') && cur.runnable === true;
  }

  private async record(m: StoredObject, type: string, state: string, body: Record<string, unknown>): Promise<void> {
    await this.d.timeline.record(String(m.uuid), { type, state, body }, SystemPrincipal).catch((err: unknown) => {
      this.d.log.warn({ err: (err as Error).message, machine: m.uuid, type }, 'timeline entry not recorded');
    });
  }

  private async halt(m: StoredObject, pass: Pass, why: string): Promise<void> {
    this.d.log.warn({ machine: m.uuid, why }, 'workflow stopped');
    try {
      await this.write(m, pass, () => true, (c) => ({ ...c, runnable: false }));
    } catch (err) {
      if (err instanceof LostLock) throw err;
      if (!(err instanceof Superseded)) this.d.log.error({ err: (err as Error).message, machine: m.uuid }, 'could not stop the machine');
      return;
    }
    await this.record(m, 'workflow.error', 'failed', { message: why, currentTask: m.currentTask });
  }

  private async stopAt(m: StoredObject, pass: Pass): Promise<string[]> {
    if (!pass.stopAt) {
      const hit = await this.d.params.lookup({ prefix: 'machines', obj: m }, 'task-stop-at', pass.source ? { source: pass.source } : {});
      pass.stopAt = hit.found && Array.isArray(hit.value) ? hit.value.filter((x): x is string => typeof x === 'string') : [];
    }
    return pass.stopAt;
  }

  private async roll(m: StoredObject, index: number, pass: Pass): Promise<boolean> {
    const tasks = tasksOf(m);
    const workflow = String(m.workflow ?? '');
    if (index >= tasks.length) {
      if (tasks.length === 0 && !workflow) return false;
      // the workflow.complete timeline entry is derived from this write, exactly once (events/machine-events.ts)
      await this.write(m, pass, this.samePosition(m), (c) => ({ ...c, workflowComplete: true, retryTaskAttempt: 0, taskErrorStacks: [], engine: {} }));
      return false;
    }
    const entry = tasks[index]!;
    const passed = engineOf(m).stoppedAt;
    if ((await this.stopAt(m, pass)).includes(entry) && !(passed?.index === index && passed.entry === entry && passed.workflow === workflow)) {
      await this.write(m, pass, this.samePosition(m), (c) => ({ ...c, runnable: false, engine: { ...engineOf(c), stoppedAt: { index, entry, workflow } } }));
      await this.record(m, 'workflow.breakpoint', 'stopped', { index, entry, message: `stopped before ${entry} (param task-stop-at); set runnable to true to continue` });
      return false;
    }
    const e = parseEntry(entry);
    if (e.kind === 'stage' || e.kind === 'bootenv' || e.kind === 'context') {
      const field = e.kind === 'bootenv' ? 'bootEnv' : e.kind;
      await this.write(m, pass, this.samePosition(m), (c) => ({ ...c, currentTask: index, currentJob: '', [field]: e.name, retryTaskAttempt: 0, taskErrorStacks: [], engine: {} }));
      return true;
    }
    return this.start(m, { type: 'start', index, entry }, pass);
  }

  /** The actions a job runs: a task's `actions`, or the one action of an `action:` entry. */
  private async planOf(entry: string, source: ObjectSource = this.d.params.source()): Promise<{ actions: Action[] } | { templates: true } | { error: string }> {
    const e = parseEntry(entry);
    if (e.kind === 'action') {
      const { args, problems } = entryArgs(e.action, e.arg);
      return problems.length > 0 ? { error: problems.join('; ') } : { actions: [{ action: e.action, args }] };
    }
    if (e.kind !== 'task') return { error: `"${entry}" cannot run as a job` };
    const task = await source.get('tasks', e.name);
    if (!task) return { error: `task ${e.name} does not exist` };
    if (Array.isArray(task.templates)) return { templates: true };
    return { actions: ((task.actions as { action: string; args?: Record<string, unknown> }[] | undefined) ?? []).map((a) => ({ action: a.action, args: a.args ?? {} })) };
  }

  /**
   * Starts a job: first the machine write naming it (currentTask, currentJob, engine), then the job.
   * A crash between the two leaves a machine naming a missing job, which the next pass recreates.
   * A server job is recorded when it ends, or as `running` once it has taken a second or waits: a quick
   * step costs one job write, and a crash before it is the same as one before its first action ended.
   */
  private async start(m: StoredObject, move: Extract<Move, { type: 'start' }>, pass: Pass): Promise<boolean> {
    const plan = await this.planOf(move.entry, pass.source);
    const context = 'templates' in plan ? String(m.context ?? '') : 'server';
    const uuid = move.reuse ?? randomUUID();
    pass.job = uuid;
    let machine = m;
    if (!move.reuse) {
      const forward = move.index !== m.currentTask;
      machine = await this.write(m, pass, this.samePosition(m), (c) => {
        const next: StoredObject = { ...c, currentTask: move.index, currentJob: uuid, engine: { job: uuid, action: 0, ...(move.handler ? { handler: move.handler } : {}) } };
        if (forward) Object.assign(next, { retryTaskAttempt: 0, taskErrorStacks: [] });
        if (move.shiftHandler) next.taskErrorStacks = [stacksOf(c)[0]!.slice(1), ...stacksOf(c).slice(1)];
        return next;
      });
    }
    const record = new ServerJobRecord(this.d.jobs, pass, { uuid, machine: m, index: move.index, startTime: new Date().toISOString(), previous: move.reuse ? '' : String(m.currentJob ?? ''), task: move.entry, ...(move.handler ? { meta: { errorHandler: 'true' } } : {}) });
    if (context !== 'server') {
      try {
        await pass.fence.check();
        await this.d.jobs.create({ ...record.fields, context, state: 'created' });
      } catch (err) {
        if (errorCode(err) === 'CONFLICT') return true; // recreated meanwhile: look again
        throw err;
      }
      if ('error' in plan) {
        await this.d.jobs.end(uuid, 'failed', [plan.error], () => pass.fence.check());
        return true;
      }
      return false; // the agent (or the named runner) claims it
    }
    if (!('actions' in plan)) return record.end('failed', ['error' in plan ? plan.error : `${move.entry} is an agent task`]);
    const eng = move.reuse ? engineOf(m) : { job: uuid, action: 0 };
    return this.runActions({ ...machine, currentJob: uuid, engine: eng }, plan.actions, record, pass);
  }

  /** Continues a server job that is recorded as running (after a crash, or a wait). */
  private async resume(m: StoredObject, job: StoredObject, pass: Pass): Promise<boolean> {
    const record = ServerJobRecord.existing(this.d.jobs, pass, job);
    const plan = await this.planOf(String(job.task), pass.source);
    if (!('actions' in plan)) return record.end('failed', ['error' in plan ? plan.error : `${String(job.task)} is an agent task`]);
    return this.runActions(m, plan.actions, record, pass);
  }

  /** Runs a server job's actions from engine.action on, recording progress between them. */
  private async runActions(m: StoredObject, actions: Action[], record: ServerJobRecord, pass: Pass): Promise<boolean> {
    const uuid = record.uuid;
    const eng = engineOf(m);
    const ours = (c: StoredObject) => c.currentJob === uuid;
    let k = eng.job === uuid ? (eng.action ?? 0) : 0;
    let wait = eng.job === uuid ? eng.wait : undefined;
    const visible = setTimeout(() => void record.running().catch(() => undefined), 1000);
    try {
      for (; k < actions.length; k++) {
        const a = actions[k]!;
        if (!wait) {
          let outcome;
          try {
            outcome = await runAction({ deps: this.d, machine: m, beforeWrite: () => pass.fence.check() }, a.action, a.args);
          } catch (err) {
            // Redis down is not the action failing: the pass ends and is retried (SPEC 9: restarts are survived).
            if (err instanceof LostLock || isRedisDown(err)) throw err;
            return await record.end('failed', [`${a.action}: ${(err as Error).message}`]);
          }
          if (outcome.kind === 'wait') {
            const w = outcome.wait;
            await record.running();
            await this.write(m, pass, ours, (c) => ({ ...c, engine: { ...engineOf(c), job: uuid, action: k, wait: w } }));
            if (w.kind === 'userState') await this.d.redis.sadd(this.waitingKey, String(m.uuid));
            wait = w;
          }
        }
        if (wait) {
          const st = await checkWait(this.d, String(m.uuid), wait);
          if (st.state === 'pending') {
            await this.d.advance.requestAt(String(m.uuid), st.until);
            return false;
          }
          if (wait.kind === 'userState') await this.d.redis.srem(this.waitingKey, String(m.uuid));
          if (st.state === 'failed') return await record.end('failed', [`${a.action}: ${st.message}`]);
          wait = undefined;
        }
        if (k + 1 < actions.length) {
          const next = k + 1;
          await this.write(m, pass, ours, (c) => ({ ...c, engine: { job: uuid, action: next, ...(engineOf(c).handler ? { handler: engineOf(c).handler } : {}) } }));
        }
      }
      await record.end('finished', []);
    } finally {
      clearTimeout(visible);
    }
    await this.d.jobs.prune(String(m.uuid)).catch((err: unknown) => this.d.log.warn({ err: (err as Error).message }, 'job retention failed'));
    return true;
  }

  private async retryPolicy(m: StoredObject, job: StoredObject): Promise<RetryPolicy> {
    const e = parseEntry(String(job.task));
    const task = e.kind === 'task' ? await this.d.store.get('tasks', e.name) : undefined;
    const own = task?.retry as Partial<RetryPolicy> | undefined;
    const param = own ? undefined : await this.d.params.lookup({ prefix: 'machines', obj: m }, 'task-retry');
    const raw = (own ?? (param?.found ? param.value : undefined)) as Partial<RetryPolicy> | undefined;
    const attempts = Number.isInteger(raw?.attempts) && raw!.attempts! >= 0 ? raw!.attempts! : 0;
    const backoffSeconds = typeof raw?.backoffSeconds === 'number' && raw.backoffSeconds >= 0 ? raw.backoffSeconds : 10;
    return { attempts, backoffSeconds };
  }

  private async applyFailure(m: StoredObject, job: StoredObject, pass: Pass): Promise<boolean> {
    const jobUuid = String(job.uuid);
    const retry = await this.retryPolicy(m, job);
    const h = await this.d.params.lookup({ prefix: 'machines', obj: m }, 'task-error-handlers');
    const handlers = h.found && Array.isArray(h.value) ? h.value.filter((x): x is string => typeof x === 'string' && x !== '') : [];
    const plan = failurePlan(m, job, retry, handlers, Date.now());
    await this.write(m, pass, (c) => c.currentJob === jobUuid && engineOf(c).applied !== jobUuid, (c) => {
      const eng: EngineState = { ...engineOf(c), applied: jobUuid };
      delete eng.retryAt;
      delete eng.wait;
      const next: StoredObject = { ...c, engine: eng };
      if (plan.next === 'retry') Object.assign(next, { retryTaskAttempt: plan.attempt, engine: { ...eng, retryAt: plan.retryAt } });
      else if (plan.next === 'error-handlers') next.taskErrorStacks = [plan.handlers];
      else next.runnable = false;
      return next;
    });
    const body = { job: jobUuid, task: job.task, errors: job.resultErrors ?? [], next: plan.next, ...(plan.next === 'retry' ? { attempt: plan.attempt, of: retry.attempts, at: new Date(plan.retryAt).toISOString() } : {}), ...(plan.next === 'error-handlers' ? { handlers: plan.handlers } : {}), ...(plan.next === 'stop' ? { why: plan.why } : {}) };
    await this.record(m, 'workflow.task_failed', 'failed', body);
    if (plan.next === 'retry') {
      await this.d.advance.requestAt(String(m.uuid), plan.retryAt);
      return false;
    }
    return plan.next === 'error-handlers';
  }
}

function describeMove(move: Move, m: StoredObject): string {
  if (move.type === 'roll') return `tasks/${move.index} (${tasksOf(m)[move.index] ?? 'end'})`;
  if (move.type === 'start') return `tasks/${move.index} (${move.entry})`;
  return move.type;
}

export interface RunnerOptions {
  concurrency?: number;
  /** the machine lock's time to live (renewed while held) */
  lockTtlMs?: number;
  /** BullMQ job lock and stalled-job check: how fast a killed worker's pass is taken over */
  jobLockMs?: number;
  stalledIntervalMs?: number;
  sweepIntervalMs?: number;
  /** request an advance of every runnable, unfinished machine at start (default true) */
  startupScan?: boolean;
}

/** Machine fields whose change means "advance me"; the rest of a machine write is the runner's own. */
interface Signature {
  workflow: string;
  tasks: number;
  currentTask: number;
  runnable: boolean;
  locked: boolean;
  done: boolean;
}

/** Turns events into advance requests: machine plan changes, agent jobs ending, user states a wait may want. */
export class Triggers {
  private readonly seen = new Map<string, Signature>();

  constructor(private readonly request: (uuid: string) => void, private readonly waiting: (uuid: string) => Promise<boolean>) {}

  onEvent(e: StoredEvent): void {
    if (e.type === 'timeline' && e.action.startsWith('user.')) {
      void this.waiting(e.key).then((w) => w && this.request(e.key)).catch(() => undefined);
      return;
    }
    if (e.type !== 'machines' && e.type !== 'jobs') return;
    if (e.action === 'delete') {
      if (e.type === 'machines') this.seen.delete(e.key);
      return;
    }
    const v = eventObject(e);
    if (!v || typeof v !== 'object') return;
    const o = v as StoredObject;
    if (e.type === 'jobs') {
      if (o.context !== 'server' && (o.state === 'finished' || o.state === 'failed' || o.state === 'incomplete')) this.request(String(o.machine));
      return;
    }
    const sig: Signature = {
      workflow: String(o.workflow ?? ''),
      tasks: tasksOf(o).length,
      currentTask: (o.currentTask as number | undefined) ?? -1,
      runnable: o.runnable === true,
      locked: o.locked === true,
      done: o.workflowComplete === true,
    };
    const prev = this.seen.get(e.key);
    this.seen.set(e.key, sig);
    if (!sig.runnable || sig.locked || sig.tasks === 0) return;
    const wanted = prev === undefined
      ? !sig.done
      : prev.workflow !== sig.workflow || prev.tasks !== sig.tasks || !prev.runnable || prev.locked || sig.currentTask < prev.currentTask;
    if (wanted) this.request(e.key);
  }
}

/** Worker-role starter: the `advance` queue's worker, the event triggers, the sweeper. */
export async function startRunner(s: Services, opts: RunnerOptions = {}): Promise<() => Promise<void>> {
  const log = s.log.child({ worker: 'advance' });
  const { advance, jobs } = engineParts(s);
  const locks = new MachineLocks(s.redis, s.keys, opts.lockTtlMs ?? 8_000);
  const runner = new Runner({ store: s.store, params: s.params, redis: s.redis, keys: s.keys, log, timeline: s.timeline, jobs, advance });
  const warn = (what: string) => (err: unknown) => log.warn({ err: (err as Error).message }, what);

  const processAdvance = async (uuid: string): Promise<string> => {
    const fence = await locks.acquire(uuid);
    if (!fence) {
      // another pass holds the machine: it passes again while the machine is dirty; a timer covers its death
      await advance.mark(uuid);
      await advance.requestAt(uuid, Date.now() + (await locks.remainingMs(uuid)) + 100);
      return 'busy';
    }
    try {
      do {
        await advance.clear(uuid);
        await runner.advanceOnce(uuid, fence);
      } while (await advance.isDirty(uuid));
      return 'done';
    } catch (err) {
      if (err instanceof LostLock) {
        log.warn({ machine: uuid }, err.message);
        return 'lost';
      }
      await advance.mark(uuid).catch(() => undefined);
      throw err;
    } finally {
      await fence.release();
    }
  };

  const worker = new Worker<AdvanceData, string>(
    QueueNames.advance,
    async (job: Job<AdvanceData, string>) => {
      if (job.name === 'timer') {
        await advance.request(job.data.uuid);
        return 'timer';
      }
      const t0 = performance.now();
      let ok = false;
      try {
        const result = await processAdvance(job.data.uuid);
        ok = true;
        return result;
      } finally {
        s.metrics.observeJob(QueueNames.advance, performance.now() - t0, ok);
      }
    },
    {
      connection: s.connect({ blocking: true, name: 'ironflow-advance-worker' }),
      prefix: queuePrefix(s.config.redisPrefix),
      concurrency: opts.concurrency ?? 50,
      lockDuration: opts.jobLockMs ?? 10_000,
      stalledInterval: opts.stalledIntervalMs ?? 3_000,
      maxStalledCount: 1000, // a pass taken over after a crash is never given up on
    },
  );
  worker.on('error', warn('advance worker problem'));
  worker.on('completed', (job, result) => {
    if (job.name !== 'advance' || result === 'busy') return;
    void advance.isDirty(job.data.uuid).then((d) => (d ? advance.request(job.data.uuid) : undefined)).catch(warn('advance re-request failed'));
  });
  worker.on('failed', (job, err) => {
    if (!job || job.name !== 'advance') return;
    log.warn({ machine: job.data.uuid, err: err.message }, 'advance pass failed; retrying shortly');
    void advance.requestAt(job.data.uuid, Date.now() + 1000).catch(warn('advance re-request failed'));
  });

  const triggers = new Triggers(
    (uuid) => void advance.request(uuid).catch(warn('advance request failed')),
    async (uuid) => (await s.redis.sismember(runner.waitingKey, uuid)) === 1,
  );
  const unsubscribe = s.bus.subscribe((e) => triggers.onEvent(e));

  const sweepMs = opts.sweepIntervalMs ?? 2000;
  let sweeping: Promise<unknown> | undefined;
  const sweeper = setInterval(() => {
    if (sweeping) return;
    sweeping = advance.dirtySince(Date.now() - sweepMs, 1000)
      .then((stale) => advance.requestMany(stale))
      .catch(warn('advance sweep failed'))
      .finally(() => (sweeping = undefined));
  }, sweepMs);
  sweeper.unref();

  if (opts.startupScan !== false) void scanRunnable(s, advance).catch(warn('start-up scan failed'));

  return async () => {
    clearInterval(sweeper);
    unsubscribe();
    await worker.close();
    await sweeping;
  };
}

/** At start: every runnable machine with unfinished work gets a pass (events missed while no worker ran). */
async function scanRunnable(s: Services, advance: AdvanceRequests): Promise<void> {
  for (let offset = 0; ; offset += 1000) {
    const q = s.store.parseQuery('machines', { runnable: 'true', workflowComplete: 'false', limit: '1000', offset: String(offset), slim: 'params' });
    const { items } = await s.store.list('machines', q);
    await advance.requestMany(items.filter((m) => tasksOf(m).length > 0).map((m) => String(m.uuid)));
    if (items.length < 1000) return;
  }
}

