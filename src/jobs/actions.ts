// The server-side actions a worker runs (SPEC 5.3): argument schemas (models/action-schemas.ts),
// a time bound each, and the implementations. BMC actions go through bmc/operations.ts, the same code
// path as BMC requests. Waits never hold a worker slot: they return a wait the runner records on the
// machine, and `checkWait` later says whether it is satisfied, still pending, or failed.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { machineDriver, operationBudgetMs, recordPower, runBmcOperation, type BmcOperation } from '../bmc/operations.js';
import { AppError } from '../errors.js';
import { actionArgProblems, DEFAULT_USER_STATE_TIMEOUT_SECONDS, type ActionName } from '../models/action-schemas.js';
import type { StoredObject } from '../models/common.js';
import { SystemPrincipal } from '../models/principal.js';
import type { ParamResolver } from '../params/layers.js';
import type { StoreKeys } from '../store/keys.js';
import type { ObjectStore } from '../store/objects.js';

export interface ActionDeps {
  store: ObjectStore;
  params: ParamResolver;
  redis: Redis;
  keys: StoreKeys;
  log: Logger;
}

/** A pending wait, recorded on the machine (engine.wait) until satisfied or past its deadline. */
export type WaitSpec =
  | { kind: 'seconds'; deadline: number }
  | { kind: 'userState'; state: string; code?: number; since: number; deadline: number };

export type ActionOutcome = { kind: 'done'; message: string } | { kind: 'wait'; wait: WaitSpec };

export interface ActionContext {
  deps: ActionDeps;
  machine: StoredObject;
  /** before each write the action makes (the runner's fence) */
  beforeWrite: () => Promise<void>;
}

interface Prepared {
  /** upper bound of the run (BMC: from the machine's bmc/timeout-seconds) */
  timeoutMs: number;
  run(deadlineMs: number): Promise<ActionOutcome>;
  close?(): Promise<void>;
}

interface ActionDef {
  prepare(ctx: ActionContext, args: Record<string, unknown>): Promise<Prepared>;
}

const QUICK_MS = 30_000;

/**
 * A BMC action: the machine's driver from its bmc/* params, the operation with bmc/operations.ts'
 * retries and verification, and the power state it learned recorded on the machine (only when it
 * changed, or for bmc.powerStatus whose point it is: workflow steps do not rewrite the machine for nothing).
 */
function bmc(op: (args: Record<string, unknown>) => BmcOperation): ActionDef {
  return {
    async prepare(ctx, args) {
      const { driver, timeoutSeconds } = await machineDriver(ctx.deps, ctx.machine);
      const operation = op(args);
      return {
        timeoutMs: operationBudgetMs(timeoutSeconds),
        async run(deadlineMs) {
          const result = await runBmcOperation(driver, operation, { timeoutSeconds, deadlineMs });
          const known = (ctx.machine.power as { state?: string } | undefined)?.state;
          if (result.power !== undefined && (operation.op === 'powerStatus' || result.power !== known)) {
            await ctx.beforeWrite();
            await recordPower(ctx.deps.store, String(ctx.machine.uuid), result.power, ctx.deps.log);
          }
          return { kind: 'done', message: result.msg };
        },
        close: () => driver.close(),
      };
    },
  };
}

const quick = (run: Prepared['run']): Prepared => ({ timeoutMs: QUICK_MS, run });

export const Actions: Record<ActionName, ActionDef> = {
  'bmc.power': bmc((a) => ({ op: 'power', action: a.action as 'on' })),
  'bmc.bootDevice': bmc((a) => ({ op: 'bootDevice', device: a.device as 'pxe', persistent: a.persistent === true, efi: a.efi === true })),
  'bmc.resetBmc': bmc((a) => ({ op: 'resetBmc', type: (a.type as 'warm' | 'cold' | undefined) ?? 'warm' })),
  'bmc.powerStatus': bmc(() => ({ op: 'powerStatus' })),
  'wait.seconds': {
    prepare: async (_ctx, args) => quick(async () => {
      const seconds = Number(args.seconds);
      if (seconds <= 0) return { kind: 'done', message: 'waited 0 s' };
      return { kind: 'wait', wait: { kind: 'seconds', deadline: Date.now() + seconds * 1000 } };
    }),
  },
  'wait.userState': {
    prepare: async (_ctx, args) => quick(async () => {
      const now = Date.now();
      const timeout = (args.timeoutSeconds as number | undefined) ?? DEFAULT_USER_STATE_TIMEOUT_SECONDS;
      const wait: WaitSpec = { kind: 'userState', state: String(args.state), since: now, deadline: now + timeout * 1000 };
      if (args.code !== undefined) wait.code = args.code as number;
      return { kind: 'wait', wait };
    }),
  },
  'machine.setParam': {
    prepare: async (ctx, args) => quick(async () => {
      const name = String(args.name);
      await ctx.beforeWrite();
      await ctx.deps.store.update('machines', String(ctx.machine.uuid), (m) => ({ ...m, params: { ...((m.params as Record<string, unknown> | undefined) ?? {}), [name]: args.value } }), {
        principal: SystemPrincipal,
        action: 'save',
      });
      return { kind: 'done', message: `param ${name} set` };
    }),
  },
};

/** Runs one action within its time bound; a failure is an Error whose message says what happened. */
export async function runAction(ctx: ActionContext, action: string, args: Record<string, unknown>): Promise<ActionOutcome> {
  const problems = actionArgProblems(action, args);
  if (problems.length > 0) throw new AppError('UNPROCESSABLE', problems.join('; '));
  const prepared = await Actions[action as ActionName].prepare(ctx, args);
  const { timeoutMs } = prepared;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${action} did not finish within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs + 1000);
  });
  try {
    return await Promise.race([prepared.run(Date.now() + timeoutMs), timedOut]);
  } finally {
    clearTimeout(timer);
    await prepared.close?.().catch(() => undefined);
  }
}

export type WaitState = { state: 'satisfied'; message: string } | { state: 'pending'; until: number } | { state: 'failed'; message: string };

const TIMELINE_PAGE = 500;

/**
 * Whether a recorded wait is over. A user-state wait looks at the machine's timeline for a
 * `user.<code>` entry after the wait began: the wanted state satisfies it, `failed` (when another
 * state is wanted) fails it. Past the deadline, a wait that is not satisfied has failed.
 */
export async function checkWait(deps: Pick<ActionDeps, 'redis' | 'keys'>, uuid: string, wait: WaitSpec, now = Date.now()): Promise<WaitState> {
  if (wait.kind === 'seconds') return now >= wait.deadline ? { state: 'satisfied', message: 'waited' } : { state: 'pending', until: wait.deadline };
  let cursor = `${wait.since}-0`;
  const key = deps.keys.timeline(uuid);
  for (;;) {
    const rows = await deps.redis.xrange(key, cursor, '+', 'COUNT', TIMELINE_PAGE);
    for (const [id, fields] of rows) {
      cursor = `(${id}`;
      const rec: Record<string, string> = {};
      for (let i = 0; i + 1 < fields.length; i += 2) rec[fields[i]!] = fields[i + 1]!;
      const type = rec.type ?? '';
      if (!type.startsWith('user.') || (wait.code !== undefined && type !== `user.${wait.code}`)) continue;
      if (rec.state === wait.state) return { state: 'satisfied', message: `user state ${rec.state} (${type}) received` };
      if (rec.state === 'failed') return { state: 'failed', message: `the machine reported user state failed (${type}) while waiting for ${wait.state}` };
    }
    if (rows.length < TIMELINE_PAGE) break;
  }
  if (now >= wait.deadline) return { state: 'failed', message: `no user state ${wait.state}${wait.code !== undefined ? ` with code ${wait.code}` : ''} within ${Math.round((wait.deadline - wait.since) / 1000)} s` };
  return { state: 'pending', until: wait.deadline };
}
