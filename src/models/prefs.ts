// Preferences (SPEC 2): a closed set of string settings with defaults and per-name checks.
export interface PrefDef {
  default: string;
  /** a value check; returns a problem or undefined */
  check?: (value: string) => string | undefined;
  /** the value names an object of this kind ("" allowed where `emptyOk`) */
  ref?: { prefix: string; emptyOk?: boolean };
  description: string;
}

const bool = (v: string) => (v === 'true' || v === 'false' ? undefined : 'must be "true" or "false"');
const nonNegInt = (v: string) => (/^\d{1,9}$/.test(v) ? undefined : 'must be a non-negative integer');

export const Prefs: Record<string, PrefDef> = {
  defaultBootEnv: { default: 'local', ref: { prefix: 'bootenvs' }, description: 'bootenv of new machines' },
  unknownBootEnv: { default: 'ignore', ref: { prefix: 'bootenvs' }, description: 'bootenv served to machines Ironflow does not know' },
  defaultStage: { default: 'none', ref: { prefix: 'stages' }, description: 'stage of new machines' },
  defaultWorkflow: { default: '', ref: { prefix: 'workflows', emptyOk: true }, description: 'workflow of new machines ("" = none)' },
  autoDiscover: { default: 'false', check: bool, description: 'register unknown machines that boot discover.ipxe' },
  knownTokenTimeout: { default: '3600', check: nonNegInt, description: 'lifetime in seconds of machine tokens rendered into boot files' },
  jobsToKeep: { default: '20', check: nonNegInt, description: 'finished jobs kept per machine' },
  eventRetentionDays: { default: '30', check: nonNegInt, description: 'timeline entries older than this are trimmed' },
  userStateTokenOnly: { default: 'false', check: bool, description: 'POST /events requires a machine token (no source-address lookup)' },
};

export function prefDefaults(): Record<string, string> {
  return Object.fromEntries(Object.entries(Prefs).map(([k, d]) => [k, d.default]));
}
