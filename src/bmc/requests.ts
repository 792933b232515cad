// BMC requests (SPEC 6, modelled on metal-toolbox conditions): create, read, list, the state machine
// pending → active → succeeded | failed, persistence in Redis, events and timeline entries, deadlines.
//
// Redis (all under the store's hash tag, so the Lua scripts touch one cluster slot):
//   bmc:requests:<uuid>  hash id → request JSON        bmc:order:<uuid>  list of ids, newest first (capped)
//   bmc:active:<uuid>    id of the unfinished request   bmc:unfinished    zset "<uuid>/<id>" scored by deadline (ms)
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { Type, type Static } from 'typebox';
import { AppError } from '../errors.js';
import type { EventBus } from '../events/bus.js';
import type { Timeline } from '../events/timeline.js';
import type { StoredObject } from '../models/common.js';
import { principalId, SystemPrincipal, type Principal } from '../models/principal.js';
import { bmcConfigFor } from './config-from-params.js';
import { BootDevices, isBmcError, PowerActions, type BootDevice, type PowerAction } from './driver.js';
import { BMC_MAX_ATTEMPTS, BmcOperationError, operationBudgetMs, runMachineOperation, type BmcOperation, type MachineBmcDeps } from './operations.js';

export const BmcActions = ['set_power_state', 'get_power_state', 'set_next_boot_device', 'pxe_boot_persistent', 'power_cycle_bmc'] as const;
export type BmcAction = (typeof BmcActions)[number];
export const BmcRequestStates = ['pending', 'active', 'succeeded', 'failed'] as const;
export type BmcRequestState = (typeof BmcRequestStates)[number];
const BmcResetTypes = ['warm', 'cold'] as const;


export const BmcRequestBodySchema = Type.Object({
  action: Type.Enum(BmcActions),
  parameter: Type.Optional(Type.String({ maxLength: 64, description: 'set_power_state: on|off|soft|reset|cycle; set_next_boot_device: pxe|disk|cdrom|bios|usb; power_cycle_bmc: warm|cold (default cold)' })),
  persistent: Type.Optional(Type.Boolean({ description: 'boot device for every boot, not only the next (set_next_boot_device)' })),
  efi: Type.Optional(Type.Boolean({ description: 'UEFI boot (set_next_boot_device, pxe_boot_persistent)' })),
}, { additionalProperties: false, title: 'BmcRequestBody' });
export type BmcRequestBody = Static<typeof BmcRequestBodySchema>;

export const BmcRequestSchema = Type.Object({
  id: Type.String(),
  kind: Type.Literal('serverControl'),
  machine: Type.String({ description: 'machine uuid' }),
  state: Type.Enum(BmcRequestStates),
  parameters: Type.Object({
    action: Type.Enum(BmcActions),
    parameter: Type.Optional(Type.String()),
    persistent: Type.Optional(Type.Boolean()),
    efi: Type.Optional(Type.Boolean()),
  }),
  status: Type.Object({ msg: Type.String(), power: Type.Optional(Type.Enum(['on', 'off', 'unknown'] as const)) }),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
  deadline: Type.String({ format: 'date-time', description: 'an unfinished request is failed after this time' }),
  requestedBy: Type.String(),
}, { title: 'BmcRequest' });
export type BmcRequest = Static<typeof BmcRequestSchema>;
export type BmcRequestParameters = BmcRequest['parameters'];

const UNFINISHED: ReadonlySet<string> = new Set(['pending', 'active']);
const isUnfinished = (r: BmcRequest) => UNFINISHED.has(r.state);

function invalid(field: string, message: string): AppError {
  return new AppError('INVALID', `${field}: ${message}`, { kind: 'bmc' });
}

function oneOf<T extends string>(field: string, value: string | undefined, allowed: readonly T[], action: string): T {
  if (value === undefined || value === '') throw invalid(field, `required for ${action} (one of ${allowed.join(', ')})`);
  if (!(allowed as readonly string[]).includes(value)) throw invalid(field, `must be one of ${allowed.join(', ')} for ${action} (got ${JSON.stringify(value)})`);
  return value as T;
}

/** Checks a request body beyond its schema (which parameter each action takes) and fills in defaults. */
export function normaliseParameters(body: BmcRequestBody): BmcRequestParameters {
  const { action, parameter } = body;
  const bootFlags = action === 'set_next_boot_device' || action === 'pxe_boot_persistent';
  if (!bootFlags) {
    if (body.persistent !== undefined) throw invalid('persistent', `is only for set_next_boot_device and pxe_boot_persistent, not ${action}`);
    if (body.efi !== undefined) throw invalid('efi', `is only for set_next_boot_device and pxe_boot_persistent, not ${action}`);
  }
  switch (action) {
    case 'set_power_state':
      return { action, parameter: oneOf('parameter', parameter, PowerActions, action) };
    case 'get_power_state':
      if (parameter !== undefined && parameter !== '') throw invalid('parameter', `get_power_state takes none (got ${JSON.stringify(parameter)})`);
      return { action };
    case 'set_next_boot_device':
      return { action, parameter: oneOf('parameter', parameter, BootDevices, action), persistent: body.persistent ?? false, efi: body.efi ?? false };
    case 'pxe_boot_persistent':
      if (parameter !== undefined && parameter !== '' && parameter !== 'pxe') throw invalid('parameter', `pxe_boot_persistent always boots pxe (got ${JSON.stringify(parameter)})`);
      if (body.persistent === false) throw invalid('persistent', 'pxe_boot_persistent is always persistent');
      return { action, parameter: 'pxe', persistent: true, efi: body.efi ?? false };
    case 'power_cycle_bmc':
      return { action, parameter: parameter === undefined || parameter === '' ? 'cold' : oneOf('parameter', parameter, BmcResetTypes, action) };
  }
}

/** The driver operation a request's parameters stand for (also what workflow actions map to). */
export function operationFor(p: BmcRequestParameters): BmcOperation {
  switch (p.action) {
    case 'set_power_state': return { op: 'power', action: p.parameter as PowerAction };
    case 'get_power_state': return { op: 'powerStatus' };
    case 'set_next_boot_device':
    case 'pxe_boot_persistent': return { op: 'bootDevice', device: p.parameter as BootDevice, persistent: p.persistent ?? false, efi: p.efi ?? false };
    case 'power_cycle_bmc': return { op: 'resetBmc', type: p.parameter as 'warm' | 'cold' };
  }
}

// Creates the request unless the machine has an unfinished one (atomic: two concurrent creates cannot both win).
const CREATE = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local raw = redis.call('HGET', KEYS[2], cur)
  if raw then
    local st = cjson.decode(raw)['state']
    if st == 'pending' or st == 'active' then return {0, cur} end
  end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('LPUSH', KEYS[3], ARGV[1])
local max = tonumber(ARGV[3])
local old = redis.call('LRANGE', KEYS[3], max, -1)
for _, o in ipairs(old) do
  redis.call('HDEL', KEYS[2], o)
  redis.call('ZREM', KEYS[4], ARGV[6] .. o)
end
redis.call('LTRIM', KEYS[3], 0, max - 1)
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])
return {1, ARGV[1]}
`;

// Compare-and-set of one request; a finished request releases the machine and leaves the deadline set.
const SWAP = `
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return -1 end
if raw ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] == '1' then
  if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
  redis.call('ZREM', KEYS[3], ARGV[5])
end
return 1
`;

export interface BmcRequestDeps extends MachineBmcDeps {
  bus: EventBus;
  timeline: Timeline;
  /** hands the request to the worker role (BullMQ); wired by the caller because bmc/ must not import jobs/ */
  enqueue: (req: BmcRequest) => Promise<void>;
}

export interface BmcRequestOptions {
  /** requests kept per machine (older ones are dropped) */
  maxPerMachine?: number;
  /** time a request may wait in the queue, on top of its execution budget */
  queueGraceMs?: number;
  /** clock (epoch ms) */
  now?: () => number;
  /** passed to the operation runner (tests shorten backoff and polling) */
  backoffBaseMs?: number;
  pollMs?: number;
}

export class BmcRequests {
  private readonly maxPerMachine: number;
  private readonly queueGraceMs: number;
  private readonly now: () => number;

  constructor(private readonly deps: BmcRequestDeps, private readonly opts: BmcRequestOptions = {}) {
    this.maxPerMachine = opts.maxPerMachine ?? 100;
    this.queueGraceMs = opts.queueGraceMs ?? 60_000;
    this.now = opts.now ?? Date.now;
  }

  private key(kind: 'requests' | 'order' | 'active', uuid: string): string {
    return this.deps.keys.extra('bmc', kind, uuid);
  }

  private get unfinishedKey(): string {
    return this.deps.keys.extra('bmc', 'unfinished');
  }

  private get redis(): Redis {
    return this.deps.redis;
  }

  /**
   * Validates and stores a request, publishes it and queues it. Refuses: unknown machine 404, locked
   * machine 423 (a locked machine is frozen, its power included), bad parameters 400, missing BMC params
   * 422, an unfinished request on the machine 409.
   */
  async create(machineRef: string, body: BmcRequestBody, principal: Principal): Promise<BmcRequest> {
    const machine = await this.deps.store.mustGet('machines', machineRef);
    const uuid = String(machine.uuid);
    if (machine.locked === true) {
      throw new AppError('LOCKED', `machines/${uuid} is locked: BMC requests are refused until it is unlocked ({"locked": false})`, { kind: 'machines', key: uuid });
    }
    const parameters = normaliseParameters(body);
    const cfg = await bmcConfigFor(this.deps.params, machine);
    const nowMs = this.now();
    const at = new Date(nowMs).toISOString();
    const deadlineMs = nowMs + this.queueGraceMs + operationBudgetMs(cfg.timeoutSeconds, BMC_MAX_ATTEMPTS, this.opts.backoffBaseMs);
    const req: BmcRequest = {
      id: randomUUID(),
      kind: 'serverControl',
      machine: uuid,
      state: 'pending',
      parameters,
      status: { msg: 'queued' },
      createdAt: at,
      updatedAt: at,
      deadline: new Date(deadlineMs).toISOString(),
      requestedBy: principalId(principal),
    };
    for (let tries = 0; ; tries++) {
      const [ok, other] = (await this.redis.eval(CREATE, 4, this.key('active', uuid), this.key('requests', uuid), this.key('order', uuid), this.unfinishedKey,
        req.id, JSON.stringify(req), String(this.maxPerMachine), String(deadlineMs), `${uuid}/${req.id}`, `${uuid}/`)) as [number, string];
      if (ok === 1) break;
      // The unfinished one may be past its deadline (a worker died): fail it, then try again. It may also
      // have ended since the script looked (its worker, or another process's deadline sweep): try again.
      if (tries < 3 && (await this.expireIfOverdue(uuid, other))) continue;
      const cur = await this.read(uuid, other);
      if (tries < 3 && (!cur || !isUnfinished(cur))) continue;
      throw new AppError('CONFLICT', `machines/${uuid} already has an unfinished BMC request ${other} (${cur?.state ?? 'pending'}: ${cur?.parameters.action ?? '?'}); wait until it succeeds or fails`, { kind: 'bmc', key: other });
    }
    await this.announce(req, principal);
    try {
      await this.deps.enqueue(req);
    } catch (err) {
      await this.finish(uuid, req.id, ['pending'], 'failed', `failed: could not queue the request: ${(err as Error).message}`);
      throw new AppError('UNAVAILABLE', 'the request could not be queued; retry shortly', { kind: 'bmc', key: req.id });
    }
    return req;
  }

  /** One request of a machine (404 when unknown); an overdue unfinished one is failed first. */
  async get(machineRef: string, id: string): Promise<BmcRequest> {
    const uuid = String((await this.deps.store.mustGet('machines', machineRef)).uuid);
    await this.expireIfOverdue(uuid, id);
    const req = await this.read(uuid, id);
    if (!req) throw new AppError('NOT_FOUND', `BMC request ${id} of machines/${uuid} not found`, { kind: 'bmc', key: id });
    return req;
  }

  /** Every kept request of a machine, newest first. */
  async list(machineRef: string): Promise<BmcRequest[]> {
    const uuid = String((await this.deps.store.mustGet('machines', machineRef)).uuid);
    const active = await this.redis.get(this.key('active', uuid));
    if (active) await this.expireIfOverdue(uuid, active);
    const ids = await this.redis.lrange(this.key('order', uuid), 0, this.maxPerMachine - 1);
    if (ids.length === 0) return [];
    const raws = await this.redis.hmget(this.key('requests', uuid), ...ids);
    return raws.flatMap((r) => (r === null ? [] : [JSON.parse(r) as BmcRequest]));
  }

  async read(uuid: string, id: string): Promise<BmcRequest | undefined> {
    const raw = await this.redis.hget(this.key('requests', uuid), id);
    return raw === null ? undefined : (JSON.parse(raw) as BmcRequest);
  }

  /**
   * Runs a request (the worker role). Idempotent per state: a finished request is left alone, an
   * active one (its worker died, BullMQ handed the job over) is run again from the start.
   */
  async execute(uuid: string, id: string): Promise<BmcRequest | undefined> {
    const cur = await this.read(uuid, id);
    if (!cur || !isUnfinished(cur)) return cur;
    if (await this.expireIfOverdue(uuid, id)) return this.read(uuid, id);
    const machine = await this.deps.store.get('machines', uuid);
    if (!machine) return this.finish(uuid, id, ['pending', 'active'], 'failed', `failed: machines/${uuid} no longer exists`);
    if (machine.locked === true) return this.finish(uuid, id, ['pending', 'active'], 'failed', `failed: machines/${uuid} was locked before the request ran`);
    const resumed = cur.state === 'active';
    const started = await this.finish(uuid, id, ['pending', 'active'], 'active', resumed ? 'running (resumed after a worker stopped)' : 'running');
    if (started?.state !== 'active') return started;
    return this.run(machine, started);
  }

  private async run(machine: StoredObject, req: BmcRequest): Promise<BmcRequest | undefined> {
    const uuid = req.machine;
    try {
      const result = await runMachineOperation(this.deps, machine, operationFor(req.parameters), {
        // keep a little time to record the outcome before the deadline sweep would fail the request
        deadlineMs: Date.parse(req.deadline) - 2000 - (this.now() - Date.now()),
        backoffBaseMs: this.opts.backoffBaseMs,
        pollMs: this.opts.pollMs,
        onRetry: async (attempt, max, err) => {
          await this.progress(uuid, req.id, `running: attempt ${attempt} of ${max} failed (${(err as Error).message ?? String(err)}); retrying`);
        },
      });
      return this.finish(uuid, req.id, ['active'], 'succeeded', result.msg, result.power);
    } catch (err) {
      // Anything but a BMC outcome or a config problem (Redis down, a bug) goes back to the job runner, which retries.
      if (!(err instanceof BmcOperationError) && !(err instanceof AppError) && !isBmcError(err)) throw err;
      return this.finish(uuid, req.id, ['active'], 'failed', `failed: ${(err as Error).message}`);
    }
  }

  /** Fails a request that is still unfinished (e.g. the worker gave up on its job); returns it, or undefined when it was finished. */
  async failIfUnfinished(uuid: string, id: string, msg: string): Promise<BmcRequest | undefined> {
    const r = await this.finish(uuid, id, ['pending', 'active'], 'failed', msg);
    return r?.state === 'failed' && r.status.msg === msg ? r : undefined;
  }

  /** Fails every unfinished request whose deadline passed (all machines); returns how many. */
  async expireOverdue(limit = 500): Promise<number> {
    const members = await this.redis.zrangebyscore(this.unfinishedKey, '-inf', String(this.now()), 'LIMIT', 0, limit);
    let n = 0;
    for (const m of members) {
      const slash = m.indexOf('/');
      const [uuid, id] = [m.slice(0, slash), m.slice(slash + 1)];
      if (await this.expireIfOverdue(uuid, id)) n++;
      else if (!(await this.read(uuid, id))) await this.redis.zrem(this.unfinishedKey, m); // dropped request: forget it
    }
    return n;
  }

  /** Fails the request when it is unfinished and past its deadline; true when it did. */
  private async expireIfOverdue(uuid: string, id: string): Promise<boolean> {
    const cur = await this.read(uuid, id);
    if (!cur || !isUnfinished(cur) || Date.parse(cur.deadline) > this.now()) return false;
    const secs = Math.round((this.now() - Date.parse(cur.createdAt)) / 1000);
    const msg = `failed: not finished by its deadline ${cur.deadline} (still ${cur.state} ${secs}s after it was created); `
      + (cur.state === 'pending' ? 'no worker took it: is a worker process (ironflow serve --role worker|all) running?' : 'its worker stopped or the BMC never answered');
    const done = await this.finish(uuid, id, ['pending', 'active'], 'failed', msg);
    return done?.state === 'failed' && done.status.msg === msg;
  }

  /** Updates status.msg without a state change (no event). */
  private async progress(uuid: string, id: string, msg: string): Promise<void> {
    await this.swap(uuid, id, (cur) => (cur.state === 'active' ? { ...cur, status: { msg }, updatedAt: new Date(this.now()).toISOString() } : undefined));
  }

  /** Moves a request from one of `from` to `to`, then publishes it; returns the request as it is afterwards. */
  private async finish(uuid: string, id: string, from: BmcRequestState[], to: BmcRequestState, msg: string, power?: 'on' | 'off' | 'unknown'): Promise<BmcRequest | undefined> {
    const res = await this.swap(uuid, id, (cur) => {
      if (!from.includes(cur.state)) return undefined;
      return { ...cur, state: to, status: power === undefined ? { msg } : { msg, power }, updatedAt: new Date(this.now()).toISOString() };
    });
    if (res.changed) await this.announce(res.req!, SystemPrincipal);
    return res.req;
  }

  private async swap(uuid: string, id: string, change: (cur: BmcRequest) => BmcRequest | undefined): Promise<{ changed: boolean; req: BmcRequest | undefined }> {
    for (let i = 0; i < 50; i++) {
      const raw = await this.redis.hget(this.key('requests', uuid), id);
      if (raw === null) return { changed: false, req: undefined };
      const cur = JSON.parse(raw) as BmcRequest;
      const next = change(cur);
      if (!next) return { changed: false, req: cur };
      const res = Number(await this.redis.eval(SWAP, 3, this.key('requests', uuid), this.key('active', uuid), this.unfinishedKey,
        id, raw, JSON.stringify(next), isUnfinished(next) ? '0' : '1', `${uuid}/${id}`));
      if (res === 1) return { changed: true, req: next };
      if (res === -1) return { changed: false, req: undefined };
    }
    throw new AppError('CONFLICT', `BMC request ${id} kept changing; retry`, { kind: 'bmc', key: id });
  }

  /** After a state change is stored: the `bmc.{state}.{uuid}` event and the machine's timeline entry. */
  private async announce(req: BmcRequest, principal: Principal): Promise<void> {
    await this.deps.bus.publish({ type: 'bmc', action: req.state, key: req.machine, object: req, principal });
    await this.deps.timeline.record(req.machine, { type: 'bmc.request', state: req.state, body: req }, principal);
  }
}
