// Server-side action names and their argument schemas (SPEC 5.3), pure: tasks are checked against
// them when saved, `action:<name>[:<arg>]` entries are parsed with them, and the runner validates
// again before running (jobs/actions.ts holds the implementations).
import { Type, type TSchema } from 'typebox';
import { Compile, type Validator } from 'typebox/compile';
import { ParamNameSchema } from './common.js';

const literals = <T extends string>(values: readonly T[]) => Type.Union(values.map((v) => Type.Literal(v)));

export const PowerActionNames = ['on', 'off', 'soft', 'reset', 'cycle'] as const;
export const BootDeviceNames = ['pxe', 'disk', 'cdrom', 'bios', 'usb'] as const;
export const UserStateNames = ['running', 'succeeded', 'failed'] as const;

/** Longest wait an action may ask for (a week). */
export const MAX_WAIT_SECONDS = 604_800;
export const DEFAULT_USER_STATE_TIMEOUT_SECONDS = 3600;

export const ActionArgSchemas = {
  'bmc.power': Type.Object({ action: literals(PowerActionNames) }, { additionalProperties: false }),
  'bmc.bootDevice': Type.Object({
    device: literals(BootDeviceNames),
    persistent: Type.Optional(Type.Boolean()),
    efi: Type.Optional(Type.Boolean()),
  }, { additionalProperties: false }),
  'bmc.resetBmc': Type.Object({ type: Type.Optional(literals(['warm', 'cold'] as const)) }, { additionalProperties: false }),
  'bmc.powerStatus': Type.Object({}, { additionalProperties: false }),
  'wait.userState': Type.Object({
    state: literals(UserStateNames),
    code: Type.Optional(Type.Integer({ minimum: 1000, maximum: 1099 })),
    timeoutSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_WAIT_SECONDS })),
  }, { additionalProperties: false }),
  'wait.seconds': Type.Object({ seconds: Type.Number({ minimum: 0, maximum: MAX_WAIT_SECONDS }) }, { additionalProperties: false }),
  'machine.setParam': Type.Object({ name: ParamNameSchema, value: Type.Unknown() }, { additionalProperties: false }),
} as const satisfies Record<string, TSchema>;

export type ActionName = keyof typeof ActionArgSchemas;
export const ActionNames = Object.keys(ActionArgSchemas) as ActionName[];

export function isActionName(name: string): name is ActionName {
  return Object.hasOwn(ActionArgSchemas, name);
}

const validators = new Map<string, Validator>();

/** Problems with an action's arguments, each naming the action and the field. */
export function actionArgProblems(action: string, args: unknown, where = action): string[] {
  if (!isActionName(action)) return [`${where}: unknown action "${action}" (one of ${ActionNames.join(', ')})`];
  let v = validators.get(action);
  if (!v) validators.set(action, (v = Compile(ActionArgSchemas[action])));
  const value = args ?? {};
  if (v.Check(value)) return [];
  const props = (ActionArgSchemas[action] as { properties?: Record<string, { anyOf?: { const?: unknown }[] }> }).properties ?? {};
  const byPath = new Map<string, string>();
  for (const e of v.Errors(value).slice(0, 50)) {
    const err = e as { keyword?: string; schemaPath?: string; instancePath?: string; message?: string };
    if (err.keyword === 'additionalProperties') continue;
    const path = err.instancePath ? err.instancePath.slice(1) : '(args)';
    if (byPath.has(path)) continue;
    // a closed set reads better as its list than as one "must be equal to constant" per member
    const choices = props[path]?.anyOf?.map((s) => s.const).filter((c) => c !== undefined);
    const message = err.keyword === 'boolean' && err.schemaPath?.endsWith('additionalProperties') ? 'unknown field'
      : choices && choices.length > 0 ? `must be one of ${choices.join(', ')} (got ${JSON.stringify((value as Record<string, unknown>)[path])})`
      : err.message ?? 'invalid';
    byPath.set(path, `${where}: ${path}: ${message}`);
  }
  return byPath.size > 0 ? [...byPath.values()] : [`${where}: invalid arguments`];
}

/** The field a bare `action:<name>:<arg>` fills (e.g. `action:bmc.power:cycle` → {action: "cycle"}). */
const PRIMARY: Record<ActionName, string | undefined> = {
  'bmc.power': 'action',
  'bmc.bootDevice': 'device',
  'bmc.resetBmc': 'type',
  'bmc.powerStatus': undefined,
  'wait.userState': 'state',
  'wait.seconds': 'seconds',
  'machine.setParam': undefined,
};

function jsonOrText(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}

/**
 * Arguments of an `action:<name>[:<arg>]` entry: `<arg>` is a JSON object, or the action's main
 * field (`action:bmc.bootDevice:pxe`, `action:wait.seconds:30`, `action:wait.userState:succeeded`),
 * or for machine.setParam `name=value` (value as JSON when it parses).
 */
export function entryArgs(action: string, arg: string | undefined): { args: Record<string, unknown>; problems: string[] } {
  const where = `action:${action}${arg === undefined ? '' : `:${arg}`}`;
  let args: Record<string, unknown> = {};
  if (!isActionName(action)) return { args, problems: actionArgProblems(action, args, where) };
  if (arg !== undefined && arg !== '') {
    if (arg.trimStart().startsWith('{')) {
      const parsed = jsonOrText(arg);
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return { args, problems: [`${where}: the argument is not a JSON object`] };
      args = parsed as Record<string, unknown>;
    } else if (action === 'machine.setParam') {
      const eq = arg.indexOf('=');
      if (eq <= 0) return { args, problems: [`${where}: write action:machine.setParam:NAME=VALUE`] };
      args = { name: arg.slice(0, eq), value: jsonOrText(arg.slice(eq + 1)) };
    } else if (PRIMARY[action]) {
      const field = PRIMARY[action]!;
      args = { [field]: field === 'seconds' ? Number(arg) : arg };
    } else {
      return { args, problems: [`${where}: this action takes no short argument; give a JSON object`] };
    }
  }
  return { args, problems: actionArgProblems(action, args, where) };
}
