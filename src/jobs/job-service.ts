// Jobs (SPEC 5.4, 5.5): the agent's claim, state transitions, logs and retention. No HTTP here:
// api/jobs.ts adapts it, and the runner creates and ends server-side jobs through it too.
//
// State machine: created → running → finished | failed | incomplete, and incomplete → running (the
// claim hands an incomplete job out again, 202). A job ending requests an advance of its machine;
// the runner applies what the end means for the workflow (retries, error handlers, stop).
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { AppError } from '../errors.js';
import type { StoredObject } from '../models/common.js';
import { ExitStates } from '../models/jobs.js';
import { SystemPrincipal, type Principal } from '../models/principal.js';
import type { EventBus } from '../events/bus.js';
import type { StoreKeys } from '../store/keys.js';
import type { ObjectStore } from '../store/objects.js';
import { applyPatch, type PatchDoc } from '../store/patch.js';
import type { PrefsService } from '../store/prefs.js';
import type { Services } from '../services.js';
import { AdvanceRequests } from './advance.js';

export type JobState = 'created' | 'running' | 'finished' | 'failed' | 'incomplete';
export const EndStates: readonly JobState[] = ['finished', 'failed', 'incomplete'];

/** Allowed moves; anything else is a 409 naming the rule. */
const TRANSITIONS: Record<JobState, readonly JobState[]> = {
  created: ['running'],
  running: ['finished', 'failed', 'incomplete'],
  incomplete: ['running'],
  finished: [],
  failed: [],
};
const RULE = 'a job moves created → running → finished | failed | incomplete (and incomplete → running again)';

/** Fields a PATCH may change; the rest belong to the server. */
const PATCHABLE = new Set(['state', 'exitState', 'resultErrors', 'meta']);

export const MAX_LOG_CHUNK_BYTES = 4 * 1024 * 1024;
export const DEFAULT_JOB_LOG_MAX_BYTES = 16 * 1024 * 1024;

export type ClaimResult = { status: 201 | 202; job: StoredObject } | { status: 204 };

export interface JobServiceDeps {
  store: ObjectStore;
  redis: Redis;
  keys: StoreKeys;
  bus: EventBus;
  prefs: PrefsService;
  log: Logger;
  advance: AdvanceRequests;
  /** bound of one job's log (bytes); past it the log ends with a truncation marker */
  logMaxBytes?: number;
}

// KEYS[1] log, KEYS[2] truncated flag; ARGV[1] chunk, ARGV[2] max bytes, ARGV[3] marker.
// Returns {offset the chunk landed at, bytes stored of it, size after, truncated now (0/1)}.
const APPEND = `
local size = redis.call('STRLEN', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then return {size, 0, size, 1} end
local room = tonumber(ARGV[2]) - size
if string.len(ARGV[1]) <= room then
  return {size, string.len(ARGV[1]), redis.call('APPEND', KEYS[1], ARGV[1]), 0}
end
local keep = math.max(room, 0)
redis.call('APPEND', KEYS[1], string.sub(ARGV[1], 1, keep) .. ARGV[3])
redis.call('SET', KEYS[2], '1')
return {size, keep, redis.call('STRLEN', KEYS[1]), 1}
`;

type AppendScript = { ironflowJobLogAppend(log: string, flag: string, chunk: Buffer, max: number, marker: string): Promise<[number, number, number, number]> };

export class JobService {
  readonly logMaxBytes: number;

  constructor(private readonly d: JobServiceDeps) {
    this.logMaxBytes = d.logMaxBytes ?? DEFAULT_JOB_LOG_MAX_BYTES;
    d.redis.defineCommand('ironflowJobLogAppend', { numberOfKeys: 2, lua: APPEND });
  }

  logKey(uuid: string): string {
    return this.d.keys.extra('joblog', uuid);
  }

  private truncatedKey(uuid: string): string {
    return this.d.keys.extra('joblog', uuid, 'truncated');
  }

  private countKey(): string {
    return this.d.keys.extra('job-count');
  }

  async get(uuid: string): Promise<StoredObject> {
    const job = await this.d.store.get('jobs', uuid);
    if (!job) throw new AppError('NOT_FOUND', `jobs/${uuid} not found`, { kind: 'jobs', key: uuid });
    return job;
  }

  /** Creates a job (the runner: for an agent task in `created`, for a server task in `running`). */
  /** Creates a job: `created` for an agent, `running` for a server job under way, or already ended (a quick server job). */
  async create(fields: { uuid?: string; machine: StoredObject; index: number; previous: string; task: string; context: string; state: 'created' | 'running' | 'finished' | 'failed'; meta?: Record<string, string>; resultErrors?: string[]; startTime?: string }): Promise<StoredObject> {
    const m = fields.machine;
    const machine = String(m.uuid);
    // The counter moves with the create (one round trip); a create that fails leaves it one high, which
    // only makes the next prune look (and recount).
    const counted = this.d.redis.hincrby(this.countKey(), machine, 1);
    counted.catch(() => undefined);
    const job = await this.d.store.create('jobs', {
      uuid: fields.uuid ?? randomUUID(),
      machine: String(m.uuid),
      task: fields.task,
      stage: (m.stage as string | undefined) ?? '',
      workflow: (m.workflow as string | undefined) ?? '',
      bootEnv: (m.bootEnv as string | undefined) ?? '',
      context: fields.context,
      state: fields.state,
      startTime: fields.startTime ?? new Date().toISOString(),
      previous: fields.previous,
      currentIndex: fields.index,
      ...(fields.meta ? { meta: fields.meta } : {}),
      ...(fields.state === 'finished' || fields.state === 'failed'
        ? { endTime: new Date().toISOString(), exitState: fields.state === 'finished' ? 'complete' : 'failed', resultErrors: fields.resultErrors ?? [] }
        : {}),
    }, { principal: SystemPrincipal, knownRefs: [`machines/${machine}`] }); // the caller (the runner) has just read or written it
    if (this.counts.size > 100_000) this.counts.clear();
    this.counts.set(machine, await counted);
    return job;
  }

  /** the job count of a machine as this process's last create left it (prune's first look, then forgotten) */
  private readonly counts = new Map<string, number>();

  /**
   * The agent's claim (SPEC 5.4): 201 the machine's created job for this context, 202 its incomplete
   * job again, 204 nothing now; 409 when a job is already running (its uuid in `key`, so an agent
   * restarting can fail the job its previous life left running) or the machine is not runnable;
   * 422 for an unknown machine.
   */
  async claim(machineUuid: string, context: string): Promise<ClaimResult> {
    const m = await this.d.store.get('machines', machineUuid);
    if (!m) throw new AppError('UNPROCESSABLE', `machine ${machineUuid} does not exist`, { kind: 'machines', key: machineUuid });
    const current = m.currentJob ? await this.d.store.get('jobs', String(m.currentJob)) : undefined;
    const mine = current !== undefined && (current.context ?? '') === context;
    if (mine && current.state === 'running') {
      throw new AppError('CONFLICT', `job ${String(current.uuid)} (${String(current.task)}) is already running on machine ${String(m.name)}`, { kind: 'jobs', key: String(current.uuid) });
    }
    if (m.runnable !== true) throw new AppError('CONFLICT', `machine ${String(m.name)} is not runnable (set runnable to true to continue)`, { kind: 'machines', key: machineUuid });
    if (mine && current.state === 'created') return { status: 201, job: current };
    if (mine && current.state === 'incomplete') {
      // An incomplete job that asked the machine to stop (exit 144) is not handed out again before the
      // runner has stopped the machine (engine.applied names it): an agent claiming at once would run it
      // again instead. After the stop, `runnable: true` hands it out again (202).
      if (current.exitState === 'stop' && (m.engine as { applied?: string } | undefined)?.applied !== current.uuid) return { status: 204 };
      return { status: 202, job: current };
    }
    return { status: 204 };
  }

  /**
   * Applies a client's patch (RFC 6902, whose `test` ops see the stored job, or RFC 7396) within the
   * state machine; only state, exitState, resultErrors and meta may change.
   */
  async patch(uuid: string, doc: PatchDoc, principal: Principal, ifMatch?: number): Promise<StoredObject> {
    let from: JobState | undefined;
    const job = await this.d.store.update('jobs', uuid, (cur) => {
      const next = applyPatch(cur, doc);
      if (next === null || typeof next !== 'object' || Array.isArray(next)) throw new AppError('INVALID', 'the patch must leave an object');
      const n = next as StoredObject;
      const changed = Object.keys({ ...cur, ...n }).filter((k) => JSON.stringify(cur[k]) !== JSON.stringify(n[k]) && !PATCHABLE.has(k));
      if (changed.length > 0) {
        throw new AppError('UNPROCESSABLE', `only state, exitState, resultErrors and meta of a job can change (not ${changed.join(', ')})`, { kind: 'jobs', key: uuid });
      }
      from = cur.state as JobState;
      const to = n.state as JobState;
      if (!Object.hasOwn(TRANSITIONS, String(to))) {
        throw new AppError('INVALID', `state must be one of ${Object.keys(TRANSITIONS).join(', ')} (got ${JSON.stringify(to)})`, { kind: 'jobs', key: uuid });
      }
      if (to !== from && !TRANSITIONS[from]?.includes(to)) {
        throw new AppError('CONFLICT', `job ${uuid} is ${from}; it cannot move to ${String(to)} (${RULE})`, { kind: 'jobs', key: uuid });
      }
      if (to === from && n.exitState !== cur.exitState && !EndStates.includes(to)) {
        throw new AppError('UNPROCESSABLE', `exitState is set when the job ends (state finished, failed or incomplete)`, { kind: 'jobs', key: uuid });
      }
      return withStateTimes(cur, n, to !== from);
    }, { principal, action: 'update', ...(ifMatch !== undefined ? { ifMatch } : {}) });
    if (from !== job.state && EndStates.includes(job.state as JobState)) await this.ended(job);
    return job;
  }

  /** The runner ends a server job. */
  async end(uuid: string, state: 'finished' | 'failed', resultErrors: string[], beforeWrite: () => Promise<void>): Promise<StoredObject> {
    await beforeWrite();
    return this.d.store.update('jobs', uuid, (cur) => {
      if (EndStates.includes(cur.state as JobState)) return cur;
      return withStateTimes(cur, { ...cur, state, exitState: state === 'finished' ? 'complete' : 'failed', resultErrors }, true);
    }, { principal: SystemPrincipal, action: 'save' });
  }

  /** After an agent job ended: the runner decides what follows; old jobs are pruned. */
  private async ended(job: StoredObject): Promise<void> {
    const machine = String(job.machine);
    await this.d.advance.request(machine);
    await this.prune(machine).catch((err: unknown) => this.d.log.warn({ err: (err as Error).message, machine }, 'job retention failed'));
  }

  async remove(uuid: string, principal: Principal): Promise<StoredObject> {
    const job = await this.d.store.remove('jobs', uuid, { principal });
    await this.d.redis.del(this.logKey(uuid), this.truncatedKey(uuid));
    await this.d.redis.hincrby(this.countKey(), String(job.machine), -1);
    return job;
  }

  /**
   * Keeps the newest `jobsToKeep` ended jobs of a machine (never its current job) and deletes older
   * ones with their logs. A per-machine counter makes this a no-op until there is something to prune.
   */
  async prune(machineUuid: string): Promise<number> {
    const known = this.counts.get(machineUuid);
    this.counts.delete(machineUuid);
    const count = known ?? Number((await this.d.redis.hget(this.countKey(), machineUuid)) ?? 0);
    if (count <= 0) return 0;
    const keep = await this.jobsToKeep();
    if (!Number.isFinite(keep) || count <= keep) return 0;
    const machine = await this.d.store.get('machines', machineUuid);
    const q = this.d.store.parseQuery('jobs', { machine: machineUuid, sort: 'startTime', reverse: 'true', limit: '1000' });
    const all = (await this.d.store.list('jobs', q)).items;
    const ended = all.filter((j) => EndStates.includes(j.state as JobState));
    let removed = 0;
    for (const j of ended.slice(keep).filter((x) => x.uuid !== machine?.currentJob)) {
      try {
        await this.d.store.remove('jobs', String(j.uuid), { principal: SystemPrincipal });
        await this.d.redis.del(this.logKey(String(j.uuid)), this.truncatedKey(String(j.uuid)));
        removed++;
      } catch (err) {
        if ((err as AppError).code !== 'NOT_FOUND') throw err;
      }
    }
    await this.d.redis.hset(this.countKey(), machineUuid, String(Math.max(0, all.length - removed)));
    return removed;
  }

  private keepCache = { at: -Infinity, value: 20 };

  /** The jobsToKeep preference, re-read at most every 2 s (it is consulted after every job). */
  private async jobsToKeep(): Promise<number> {
    if (Date.now() - this.keepCache.at > 2000) this.keepCache = { at: Date.now(), value: Number(await this.d.prefs.get('jobsToKeep')) };
    return this.keepCache.value;
  }

  /** Appends a chunk (bounded per job; the first chunk past the bound is cut and marked) and publishes it live. */
  async appendLog(job: StoredObject, chunk: Buffer): Promise<{ offset: number; size: number; truncated: boolean }> {
    if (chunk.length > MAX_LOG_CHUNK_BYTES) throw new AppError('TOO_LARGE', `a log chunk is at most ${MAX_LOG_CHUNK_BYTES} bytes (4 MiB); send it in smaller pieces`);
    const uuid = String(job.uuid);
    const marker = `\n[ironflow: log truncated at ${this.logMaxBytes} bytes; later output was dropped]\n`;
    const [offset, stored, size, truncated] = await (this.d.redis as unknown as AppendScript).ironflowJobLogAppend(this.logKey(uuid), this.truncatedKey(uuid), chunk, this.logMaxBytes, marker);
    if (stored > 0) {
      await this.d.bus.publish({
        type: 'machine_jobs',
        action: 'log',
        key: String(job.machine),
        object: { job: uuid, offset, size, truncated: truncated === 1, text: chunk.subarray(0, stored).toString('utf8') },
        principal: SystemPrincipal,
      });
    }
    return { offset, size, truncated: truncated === 1 };
  }

  async readLog(uuid: string, offset: number): Promise<{ data: Buffer; size: number; truncated: boolean }> {
    const key = this.logKey(uuid);
    const [data, size, flag] = await Promise.all([
      this.d.redis.getrangeBuffer(key, offset, -1),
      this.d.redis.strlen(key),
      this.d.redis.exists(this.truncatedKey(uuid)),
    ]);
    return { data: offset >= size ? Buffer.alloc(0) : data, size, truncated: flag === 1 };
  }
}

function withStateTimes(cur: StoredObject, next: StoredObject, moved: boolean): StoredObject {
  if (!moved) return next;
  const now = new Date().toISOString();
  const out = { ...next };
  const state = next.state as JobState;
  if (state === 'running') {
    out.startTime = now;
    delete out.endTime;
    if (cur.state === 'incomplete') out.exitState = '';
  }
  if (EndStates.includes(state)) {
    out.endTime = now;
    if (!(ExitStates as readonly string[]).includes(String(out.exitState))) out.exitState = state === 'failed' ? 'failed' : 'complete';
  }
  return out;
}

/** The advance requester and job service over the services (the api and the worker role build the same). */
export function engineParts(s: Services): { advance: AdvanceRequests; jobs: JobService } {
  const advance = new AdvanceRequests(s.redis, s.keys, s.queues);
  const jobs = new JobService({ store: s.store, redis: s.redis, keys: s.keys, bus: s.bus, prefs: s.prefs, log: s.log, advance, logMaxBytes: s.config.jobLogMaxBytes });
  return { advance, jobs };
}
