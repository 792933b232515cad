// A machine's BmcConfig from its bmc/* params, read through THE param resolver (SPEC 4.2, 6). Problems
// are AppError UNPROCESSABLE naming the param, so the API can refuse a request before it is queued.
import { AppError } from '../errors.js';
import type { StoredObject } from '../models/common.js';
import type { ParamResolver } from '../params/layers.js';
import { lookupParam } from '../params/resolve.js';
import type { BmcConfig } from './driver.js';

/** Every param the BMC config reads. `bmc/sim` (no Param object) tunes the sim driver: {latencyMs, failNext, failMode, powerOnDelayMs}. */
export const BmcParamNames = ['bmc/driver', 'bmc/address', 'bmc/port', 'bmc/username', 'bmc/password', 'bmc/insecure', 'bmc/timeout-seconds', 'bmc/sim'] as const;
type BmcParamName = (typeof BmcParamNames)[number];

/** Used when the core pack's bmc/timeout-seconds Param (default 30) is not loaded. */
export const DEFAULT_BMC_TIMEOUT_SECONDS = 30;

const DRIVERS = ['ipmi', 'redfish', 'sim'] as const;

/**
 * THE point where the BMC password enters a BmcConfig. bmc/password is a secure param, sealed at rest;
 * the one resolver (params/layers.ts) opens it for internal consumers like this one. The result goes
 * only into the BmcConfig handed to a driver: never into logs, events or request objects.
 */
export function revealBmcPassword(stored: unknown, machineUuid: string): string | undefined {
  if (stored === undefined || stored === null) return undefined;
  if (typeof stored === 'string') return stored;
  throw unprocessable(machineUuid, 'bmc/password', 'must be a string');
}

function unprocessable(machineUuid: string, param: string, why: string): AppError {
  return new AppError('UNPROCESSABLE', `machines/${machineUuid}: param ${param} ${why}`, { kind: 'machines', key: machineUuid });
}

/** Resolves the machine's bmc/* params (one resolver, one round of reads) and checks them. */
export async function bmcConfigFor(params: ParamResolver, machine: StoredObject): Promise<BmcConfig> {
  const uuid = String(machine.uuid);
  const [layers, defaults] = await Promise.all([
    params.layers({ prefix: 'machines', obj: machine }),
    params.defaults([...BmcParamNames]),
  ]);
  const get = (name: BmcParamName): unknown => {
    const hit = lookupParam(layers, defaults, name);
    return hit.found ? hit.value : undefined;
  };
  const bad = (name: BmcParamName, why: string) => unprocessable(uuid, name, why);

  const driver = get('bmc/driver');
  if (driver === undefined || driver === null || driver === '') {
    throw new AppError('UNPROCESSABLE', `machines/${uuid} has no BMC configured: set param bmc/driver (${DRIVERS.join(', ')}) and bmc/address`, { kind: 'machines', key: uuid });
  }
  if (!(DRIVERS as readonly unknown[]).includes(driver)) throw bad('bmc/driver', `must be one of ${DRIVERS.join(', ')} (got ${JSON.stringify(driver)})`);

  const address = get('bmc/address');
  if (address !== undefined && typeof address !== 'string') throw bad('bmc/address', 'must be a string');
  if (driver !== 'sim' && (address === undefined || address.trim() === '')) throw bad('bmc/address', `is required for the ${String(driver)} driver`);

  const port = get('bmc/port');
  if (port !== undefined && !(Number.isInteger(port) && (port as number) > 0 && (port as number) < 65536)) throw bad('bmc/port', `must be an integer 1-65535 (got ${JSON.stringify(port)})`);

  const username = get('bmc/username');
  if (username !== undefined && typeof username !== 'string') throw bad('bmc/username', 'must be a string');

  const insecure = get('bmc/insecure') ?? false;
  if (typeof insecure !== 'boolean') throw bad('bmc/insecure', `must be true or false (got ${JSON.stringify(insecure)})`);

  const timeout = get('bmc/timeout-seconds') ?? DEFAULT_BMC_TIMEOUT_SECONDS;
  if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout <= 0 || timeout > 600) {
    throw bad('bmc/timeout-seconds', `must be a number of seconds from 1 to 600 (got ${JSON.stringify(timeout)})`);
  }

  const cfg: BmcConfig = { driver: driver as BmcConfig['driver'], address: (address ?? '').trim(), insecure, timeoutSeconds: timeout };
  if (port !== undefined) cfg.port = port as number;
  if (username !== undefined) cfg.username = username;
  const password = revealBmcPassword(get('bmc/password'), uuid);
  if (password !== undefined) cfg.password = password;
  if (driver === 'sim') {
    const sim = simOptions(get('bmc/sim'), (why) => bad('bmc/sim', why));
    if (sim) cfg.sim = sim;
  }
  return cfg;
}

function simOptions(raw: unknown, bad: (why: string) => AppError): BmcConfig['sim'] | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw bad('must be an object {latencyMs, failNext, failMode, powerOnDelayMs}');
  const out: NonNullable<BmcConfig['sim']> = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (k === 'failMode') {
      if (v !== 'transient' && v !== 'permanent') throw bad(`failMode must be transient or permanent (got ${JSON.stringify(v)})`);
      out.failMode = v;
    } else if (k === 'latencyMs' || k === 'failNext' || k === 'powerOnDelayMs') {
      if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 600_000) throw bad(`${k} must be an integer 0-600000 (got ${JSON.stringify(v)})`);
      out[k] = v as number;
    } else {
      throw bad(`has an unknown field "${k}" (latencyMs, failNext, failMode, powerOnDelayMs)`);
    }
  }
  return out;
}
