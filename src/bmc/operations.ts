// Runs one BMC operation against a driver: bounded retries with exponential backoff for transient
// errors, none for permanent ones, power actions verified by polling powerState, timeouts verified by
// reading the state back. One code path for BMC requests (the BullMQ worker) and workflow actions.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { AppError } from '../errors.js';
import type { StoredObject } from '../models/common.js';
import { SystemPrincipal } from '../models/principal.js';
import type { ParamResolver } from '../params/layers.js';
import type { ObjectStore } from '../store/objects.js';
import type { StoreKeys } from '../store/keys.js';
import { bmcConfigFor } from './config-from-params.js';
import { createBmcDriver } from './create-driver.js';
import { BmcError, isBmcError, isTransient, type BmcDriver, type BootDevice, type PowerAction, type PowerState } from './driver.js';

export type BmcOperation =
  | { op: 'power'; action: PowerAction }
  | { op: 'powerStatus' }
  | { op: 'bootDevice'; device: BootDevice; persistent: boolean; efi: boolean }
  | { op: 'resetBmc'; type: 'warm' | 'cold' };

export interface OperationResult {
  /** what happened, in the SPEC's wording (`server power state set successful: on`) */
  msg: string;
  /** the power state learned, when the operation learned one */
  power?: PowerState;
}

export const BMC_MAX_ATTEMPTS = 5;
export const BMC_BACKOFF_BASE_MS = 1000;
export const BMC_BACKOFF_MAX_MS = 8000;
export const BMC_POLL_MS = 500;

export interface OperationOptions {
  /** bmc/timeout-seconds: also the time a power action has to reach its state */
  timeoutSeconds: number;
  maxAttempts?: number;
  backoffBaseMs?: number;
  pollMs?: number;
  /** epoch ms after which no new attempt starts and polling stops */
  deadlineMs?: number;
  /** told before each retry (e.g. to record "attempt 2 of 5") */
  onRetry?: (attempt: number, maxAttempts: number, err: unknown) => Promise<void> | void;
  sleep?: (ms: number) => Promise<void>;
}

/** The state each power action must lead to. */
export const EXPECTED_POWER: Record<PowerAction, 'on' | 'off'> = { on: 'on', off: 'off', soft: 'off', reset: 'on', cycle: 'on' };

/**
 * Sum of the backoff waits between attempts; with the per-attempt budget this bounds a request's run time.
 * An attempt may take: the driver call (timeout), then verification polling (timeout), and for a timed-out
 * power action the read-back (timeout): 3 × timeout.
 */
export function operationBudgetMs(timeoutSeconds: number, maxAttempts = BMC_MAX_ATTEMPTS, backoffBaseMs = BMC_BACKOFF_BASE_MS): number {
  let backoff = 0;
  for (let a = 1; a < maxAttempts; a++) backoff += backoffDelayMs(a, backoffBaseMs);
  return maxAttempts * 3 * timeoutSeconds * 1000 + backoff;
}

export function backoffDelayMs(attempt: number, base = BMC_BACKOFF_BASE_MS): number {
  return Math.min(BMC_BACKOFF_MAX_MS, base * 2 ** (attempt - 1));
}

/** A failure whose message says what happened (`BMC unreachable after 5 attempts: …`); `code`/`kind` from the last error. */
export class BmcOperationError extends Error {
  constructor(message: string, readonly code: string, readonly kind: 'transient' | 'permanent', readonly attempts: number) {
    super(message);
    this.name = 'BmcOperationError';
  }
}

const WHAT: Record<string, string> = {
  BMC_UNREACHABLE: 'BMC unreachable',
  BMC_TIMEOUT: 'BMC did not answer in time',
  BMC_AUTH: 'BMC refused the credentials',
  BMC_UNSUPPORTED: 'BMC does not support this',
  BMC_PROTOCOL: 'BMC error',
  BMC_CONFIG: 'invalid BMC config',
};

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String((err as { message?: unknown } | null)?.message ?? err);
}

function codeOf(err: unknown): string {
  return isBmcError(err) ? err.code : 'BMC_PROTOCOL';
}

const realSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function runBmcOperation(driver: BmcDriver, op: BmcOperation, opts: OperationOptions): Promise<OperationResult> {
  const maxAttempts = Math.max(1, opts.maxAttempts ?? BMC_MAX_ATTEMPTS);
  const sleep = opts.sleep ?? realSleep;
  const deadline = opts.deadlineMs ?? Number.POSITIVE_INFINITY;
  for (let attempt = 1; ; attempt++) {
    try {
      return await attemptOnce(driver, op, opts, deadline);
    } catch (err) {
      if (!isBmcError(err)) throw err; // not the BMC's answer (a bug, Redis down): the caller decides
      const code = codeOf(err);
      if (!isTransient(err)) {
        const what = WHAT[code] ?? 'BMC error';
        throw new BmcOperationError(`${what}: ${messageOf(err)}`, code, 'permanent', attempt);
      }
      const wait = backoffDelayMs(attempt, opts.backoffBaseMs);
      const outOfTime = Date.now() + wait >= deadline;
      if (attempt >= maxAttempts || outOfTime) {
        const what = WHAT[code] ?? 'BMC error';
        const why = outOfTime && attempt < maxAttempts ? ` (stopped: deadline reached)` : '';
        throw new BmcOperationError(`${what} after ${attempt} attempt${attempt === 1 ? '' : 's'}${why}: ${messageOf(err)}`, code, 'transient', attempt);
      }
      await opts.onRetry?.(attempt, maxAttempts, err);
      await sleep(wait);
    }
  }
}

async function attemptOnce(driver: BmcDriver, op: BmcOperation, opts: OperationOptions, deadline: number): Promise<OperationResult> {
  switch (op.op) {
    case 'powerStatus': {
      const power = await driver.powerState();
      return { msg: `server power state: ${power}`, power };
    }
    case 'power': {
      const want = EXPECTED_POWER[op.action];
      try {
        await driver.power(op.action);
      } catch (err) {
        // The command may have been carried out even though its answer was lost: read the state back
        // before calling it a failure (a cycle or reset is not repeated when the machine is on).
        if (codeOf(err) !== 'BMC_TIMEOUT') throw err;
        const seen = await waitForPower(driver, want, opts, deadline).catch(() => undefined);
        if (seen !== want) throw err;
        return { msg: `server power state set successful: ${op.action} (verified after a timeout)`, power: seen };
      }
      const power = await waitForPower(driver, want, opts, deadline);
      if (power !== want) {
        // Not repeated: issuing a cycle or reset again could power-cycle the machine twice.
        throw BmcError.permanent('BMC_PROTOCOL', `power ${op.action} was accepted but the power state stayed ${power} for ${opts.timeoutSeconds}s (expected ${want})`);
      }
      return { msg: `server power state set successful: ${op.action}`, power };
    }
    case 'bootDevice': {
      await driver.setBootDevice(op.device, { persistent: op.persistent, efi: op.efi });
      const flags = [op.persistent ? 'persistent' : '', op.efi ? 'efi' : ''].filter(Boolean);
      return { msg: `next boot device set successful: ${op.device}${flags.length ? ` (${flags.join(', ')})` : ''}` };
    }
    case 'resetBmc':
      await driver.resetBmc(op.type);
      return { msg: `bmc reset successful: ${op.type}` };
  }
}

/**
 * Polls powerState until it reads `want` or the timeout passes; returns the last state read.
 * Transient read errors keep polling; permanent ones end it.
 */
async function waitForPower(driver: BmcDriver, want: PowerState, opts: OperationOptions, deadline: number): Promise<PowerState> {
  const sleep = opts.sleep ?? realSleep;
  const end = Math.min(Date.now() + opts.timeoutSeconds * 1000, deadline);
  let last: PowerState = 'unknown';
  let lastErr: unknown;
  for (;;) {
    try {
      last = await driver.powerState();
      lastErr = undefined;
      if (last === want) return last;
    } catch (err) {
      if (!isTransient(err)) throw err;
      lastErr = err;
    }
    if (Date.now() >= end) {
      if (lastErr !== undefined && last === 'unknown') throw lastErr;
      return last;
    }
    await sleep(Math.min(opts.pollMs ?? BMC_POLL_MS, Math.max(0, end - Date.now())));
  }
}

export interface MachineBmcDeps {
  store: ObjectStore;
  params: ParamResolver;
  redis: Redis;
  keys: StoreKeys;
  log: Logger;
}

/** A machine's driver, built from its params through the one resolver. The caller closes it. */
export async function machineDriver(deps: MachineBmcDeps, machine: StoredObject): Promise<{ driver: BmcDriver; timeoutSeconds: number }> {
  const cfg = await bmcConfigFor(deps.params, machine);
  const driver = createBmcDriver(cfg, { redis: deps.redis, keyPrefix: `${deps.keys.extra('bmcsim')}:`, machineUuid: String(machine.uuid), log: deps.log });
  return { driver, timeoutSeconds: cfg.timeoutSeconds };
}

/**
 * Runs an operation for a machine (config → driver → retries/verification → close) and stores the
 * power state it learned on `machine.power`. This is what BMC requests and workflow actions call.
 * Operations other than a BMC reset read the power state afterwards (best effort) so that every
 * successful request refreshes `machine.power`.
 */
export async function runMachineOperation(deps: MachineBmcDeps, machine: StoredObject, op: BmcOperation, opts: Omit<OperationOptions, 'timeoutSeconds'> = {}): Promise<OperationResult> {
  const { driver, timeoutSeconds } = await machineDriver(deps, machine);
  try {
    const result = await runBmcOperation(driver, op, { ...opts, timeoutSeconds });
    if (result.power === undefined && op.op === 'bootDevice') {
      try {
        const power = await driver.powerState();
        result.power = power;
      } catch {
        /* best effort: the boot device was set; the power state stays as last known */
      }
    }
    if (result.power !== undefined) await recordPower(deps.store, String(machine.uuid), result.power, deps.log);
    return result;
  } finally {
    await driver.close().catch(() => undefined);
  }
}

/** machine.power = {state, checkedAt}; a machine locked or deleted meanwhile keeps its old value. */
export async function recordPower(store: ObjectStore, uuid: string, state: PowerState, log: Logger): Promise<void> {
  try {
    await store.update('machines', uuid, (m) => ({ ...m, power: { state, checkedAt: new Date().toISOString() } }), {
      principal: SystemPrincipal,
      action: 'save',
      allowReadOnly: true,
    });
  } catch (err) {
    const code = (err as AppError).code;
    if (code !== 'LOCKED' && code !== 'NOT_FOUND') throw err;
    log.info({ machine: uuid, reason: code }, 'power state not recorded on the machine');
  }
}
