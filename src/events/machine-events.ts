// Derives timeline entries from store events (SPEC 7.1): machine created, bootenv changed, job state
// changes, plus the second publication of every job event as `machine_jobs.{action}.{machineUuid}`.
// Runs in the worker role as consumer group `timeline` on the global stream (one leader at a time, in
// stream order); each event's derived writes and its XACK are one Lua script, so across any number of
// workers and crashes each event is derived exactly once.
import type { Services } from '../services.js';
import type { StoredEvent } from '../store/backend.js';
import { GroupConsumer } from './group-consumer.js';

export const TIMELINE_GROUP = 'timeline';

/** Equinix-style state of a job state, for its timeline entry. */
const JOB_ENTRY_STATE: Record<string, string> = { created: 'queued', running: 'running', finished: 'succeeded', failed: 'failed', incomplete: 'running' };

// KEYS[1] global stream, KEYS[2] derivation state hash, KEYS[3..] timeline streams.
// ARGV[1] group, ARGV[2] event id, ARGV[3] global maxlen, ARGV[4] timeline maxlen, ARGV[5] plan (JSON),
// ARGV[6] the event's object JSON (what a `pub` republishes: passed as is, not escaped into the plan).
const DERIVE = `
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
local plan = cjson.decode(ARGV[5])
for _, s in ipairs(plan.set) do redis.call('HSET', KEYS[2], s[1], s[2]) end
for _, f in ipairs(plan.del) do redis.call('HDEL', KEYS[2], f) end
for _, k in ipairs(plan.persist) do redis.call('PERSIST', KEYS[k]) end
for _, p in ipairs(plan.pub) do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'type', p.type, 'action', p.action, 'key', p.key, 'principal', p.principal, 'time', p.time, 'object', ARGV[6])
end
for _, t in ipairs(plan.tl) do
  local id = redis.call('XADD', KEYS[t.k], 'MAXLEN', '~', ARGV[4], '*', 'type', t.type, 'state', t.state, 'body', t.body, 'createdAt', t.createdAt)
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'type', 'timeline', 'action', t.type, 'key', t.machine, 'principal', t.principal, 'time', t.createdAt, 'object', '{"id":"' .. id .. '",' .. t.rest)
end
for _, x in ipairs(plan.expire) do redis.call('EXPIRE', KEYS[x[1]], x[2]) end
return 1
`;

interface TimelineWrite {
  /** index into KEYS of the machine's timeline stream */
  k: number;
  machine: string;
  principal: string;
  type: string;
  state: string;
  body: string;
  createdAt: string;
  /** the published entry without its leading `{"id":…,` (the id is known only inside the script) */
  rest: string;
}

interface Plan {
  set: [string, string][];
  del: string[];
  persist: number[];
  expire: [number, number][];
  /** republications of the event's own object (under another type and key) */
  pub: { type: string; action: string; key: string; principal: string; time: string }[];
  tl: TimelineWrite[];
}

type Derive = (n: number, ...args: string[]) => Promise<number>;

export interface DeriveContext {
  /** last known value per state field (`m:{uuid}` → bootEnv, `j:{uuid}` → job state); updated as the batch goes */
  state: Map<string, string | null>;
  retentionSeconds: number;
}

const parse = (s: string): Record<string, unknown> => {
  try {
    const v = JSON.parse(s) as unknown;
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
};

/** What one event implies: pure, apart from reading and updating `ctx.state` (so a batch sees its own effects). */
export function derive(e: StoredEvent, ctx: DeriveContext): { plan: Plan; timelines: string[] } | undefined {
  if (e.type !== 'machines' && e.type !== 'jobs') return undefined;
  const plan: Plan = { set: [], del: [], persist: [], expire: [], pub: [], tl: [] };
  const timelines: string[] = [];
  const obj = parse(e.object);
  const entry = (machine: string, type: string, state: string, body: unknown) => {
    let k = timelines.indexOf(machine);
    if (k < 0) k = timelines.push(machine) - 1;
    const rest = JSON.stringify({ type, state, body, createdAt: e.time, machine }).slice(1);
    plan.tl.push({ k: k + 3, machine, principal: e.principal, type, state, body: JSON.stringify(body), createdAt: e.time, rest });
    return k + 3;
  };
  const remember = (field: string, value: string | null) => {
    ctx.state.set(field, value);
    if (value === null) plan.del.push(field);
    else plan.set.push([field, value]);
  };

  if (e.type === 'machines') {
    const field = `m:${e.key}`;
    const bootEnv = typeof obj.bootEnv === 'string' ? obj.bootEnv : '';
    if (e.action === 'create') {
      const k = entry(e.key, 'machine.created', '', { name: obj.name, bootEnv, stage: obj.stage, workflow: obj.workflow });
      plan.persist.push(k);
      remember(field, bootEnv);
    } else if (e.action === 'delete') {
      const k = entry(e.key, 'machine.deleted', '', { name: obj.name });
      if (ctx.retentionSeconds > 0) plan.expire.push([k, ctx.retentionSeconds]);
      remember(field, null);
      remember(`c:${e.key}`, null);
    } else {
      const prev = ctx.state.get(field);
      if (prev !== undefined && prev !== null && prev !== bootEnv) entry(e.key, 'machine.bootenv_changed', '', { from: prev, to: bootEnv });
      if (prev !== bootEnv) remember(field, bootEnv);
      // The runner's write that completes a workflow is the moment; deriving the entry here makes it exactly once.
      const done = obj.workflowComplete === true ? '1' : '0';
      const wasDone = ctx.state.get(`c:${e.key}`);
      if (done === '1' && wasDone !== '1') entry(e.key, 'workflow.complete', 'succeeded', { workflow: obj.workflow, tasks: Array.isArray(obj.tasks) ? obj.tasks.length : 0 });
      if (wasDone !== done) remember(`c:${e.key}`, done);
    }
  } else {
    const machine = typeof obj.machine === 'string' ? obj.machine : '';
    if (!machine) return undefined;
    plan.pub.push({ type: 'machine_jobs', action: e.action, key: machine, principal: e.principal, time: e.time });
    const field = `j:${e.key}`;
    const state = typeof obj.state === 'string' ? obj.state : '';
    if (e.action === 'delete') remember(field, null);
    else if (ctx.state.get(field) !== state) {
      entry(machine, `job.${state}`, JOB_ENTRY_STATE[state] ?? '', { job: e.key, task: obj.task, stage: obj.stage, state, exitState: obj.exitState });
      remember(field, state);
    }
  }
  // nothing to write (e.g. a machine save that keeps its bootEnv): the event is only acknowledged
  if (plan.set.length + plan.del.length + plan.persist.length + plan.expire.length + plan.pub.length + plan.tl.length === 0) return undefined;
  return { plan, timelines };
}

/** Handles one batch of the group: pre-reads the state it needs, then one script per deriving event. */
export class MachineEvents {
  private readonly stateKey: string;

  constructor(private readonly s: Pick<Services, 'redis' | 'keys' | 'config' | 'prefs'>) {
    this.stateKey = s.keys.extra('timeline-derivation');
    s.redis.defineCommand('ironflowDerive', { lua: DERIVE });
  }

  async handle(events: StoredEvent[]): Promise<void> {
    const { redis, keys, config } = this.s;
    const fields = [...new Set(events.flatMap((e) => (e.type === 'machines' ? [`m:${e.key}`, `c:${e.key}`] : e.type === 'jobs' ? [`j:${e.key}`] : [])))];
    const values = fields.length > 0 ? await redis.hmget(this.stateKey, ...fields) : [];
    const ctx: DeriveContext = { state: new Map(fields.map((f, i) => [f, values[i] ?? null])), retentionSeconds: 0 };
    // fields never seen are `undefined` (unknown previous value), not `null`
    for (const [f, v] of ctx.state) if (v === null) ctx.state.delete(f);
    if (events.some((e) => e.type === 'machines' && e.action === 'delete')) ctx.retentionSeconds = Number(await this.s.prefs.get('eventRetentionDays')) * 86_400;
    const stream = keys.events();
    const work: Promise<unknown>[] = [];
    let ackOnly: string[] = [];
    const flushAcks = () => {
      if (ackOnly.length > 0) work.push(redis.xack(stream, TIMELINE_GROUP, ...ackOnly));
      ackOnly = [];
    };
    for (const e of events) {
      const d = derive(e, ctx);
      if (!d) {
        ackOnly.push(e.id);
        continue;
      }
      flushAcks();
      const keyList = [stream, this.stateKey, ...d.timelines.map((m) => keys.timeline(m))];
      work.push((redis as unknown as { ironflowDerive: Derive }).ironflowDerive(keyList.length, ...keyList,
        TIMELINE_GROUP, e.id, String(config.eventsMaxLen), String(config.timelineMaxLen), JSON.stringify(d.plan), e.object));
    }
    flushAcks();
    await Promise.all(work);
  }
}

/** Worker-role starter: the `timeline` consumer group. */
export async function startMachineEvents(s: Services): Promise<() => Promise<void>> {
  const handler = new MachineEvents(s);
  const consumer = new GroupConsumer({
    redis: s.redis,
    openBlocking: () => s.connect({ blocking: true, name: 'ironflow-timeline' }),
    stream: s.keys.events(),
    group: TIMELINE_GROUP,
    leaderKey: s.keys.extra('timeline-derivation', 'leader'),
    startAt: '0',
    handle: (events) => handler.handle(events),
    // derived entries may trail their event by a few ms; in exchange a busy stream is read in batches
    lingerMs: 5,
    log: s.log,
  });
  await consumer.start();
  return () => consumer.close();
}
