// Task-list planning (SPEC 5.1), pure: expanding a workflow into entries, the guards on machine
// writes, and which entry comes next. No I/O: the runner and the machine write hook call these.

export const Special = /^(stage|bootenv|context|action):(.*)$/s;

export interface StageDef {
  name: string;
  bootEnv?: string;
  tasks?: string[];
}

/**
 * `stage:<name>` for each stage, then `bootenv:<name>` when the stage's bootenv differs from the one
 * in effect before it (starting from `startBootEnv`), then the stage's tasks.
 */
export function expandWorkflow(stages: readonly StageDef[], startBootEnv: string): string[] {
  const out: string[] = [];
  let bootEnv = startBootEnv;
  for (const s of stages) {
    out.push(`stage:${s.name}`);
    if (s.bootEnv && s.bootEnv !== bootEnv) {
      out.push(`bootenv:${s.bootEnv}`);
      bootEnv = s.bootEnv;
    }
    out.push(...(s.tasks ?? []));
  }
  return out;
}

export interface MachinePlanState {
  workflow: string;
  stage: string;
  bootEnv: string;
  tasks: string[];
  currentTask: number;
}

/**
 * Problems with a client's change to a machine's plan (each a 409 reason): with a workflow set, stage
 * and bootEnv move only through task entries; entries already run are immutable; entries from the
 * next `stage:` on belong to the workflow.
 */
export function planGuardProblems(cur: MachinePlanState, next: MachinePlanState): string[] {
  if (next.workflow !== cur.workflow) return [];
  if (!cur.workflow) return [];
  const problems: string[] = [];
  if (next.stage !== cur.stage) problems.push(`stage is driven by workflow "${cur.workflow}"; change the workflow (or clear it) instead`);
  if (next.bootEnv !== cur.bootEnv) problems.push(`bootEnv is driven by workflow "${cur.workflow}"; change the workflow (or clear it) instead`);
  if (next.currentTask !== cur.currentTask && next.currentTask !== -1) problems.push('currentTask can only be reset to -1 (restart the workflow)');
  const done = cur.currentTask + 1;
  for (let i = 0; i < Math.min(done, cur.tasks.length); i++) {
    if (next.tasks[i] !== cur.tasks[i] && next.currentTask !== -1) {
      problems.push(`tasks/${i} ("${cur.tasks[i]}") has already run and cannot change`);
      break;
    }
  }
  const boundary = nextStageIndex(cur.tasks, done);
  const tailCur = cur.tasks.slice(boundary);
  const tailNext = next.tasks.slice(next.tasks.length - tailCur.length);
  if (boundary < cur.tasks.length && (next.tasks.length - tailCur.length < done || tailNext.join('\n') !== tailCur.join('\n'))) {
    problems.push(`entries from tasks/${boundary} ("${cur.tasks[boundary]}") on belong to workflow "${cur.workflow}" and cannot change`);
  }
  return problems;
}

/** Index of the first `stage:` entry at or after `from` (the list length when there is none). */
export function nextStageIndex(tasks: readonly string[], from: number): number {
  for (let i = Math.max(0, from); i < tasks.length; i++) if (tasks[i]!.startsWith('stage:')) return i;
  return tasks.length;
}

export type Entry =
  | { kind: 'stage'; name: string }
  | { kind: 'bootenv'; name: string }
  | { kind: 'context'; name: string }
  | { kind: 'action'; action: string; arg?: string }
  | { kind: 'task'; name: string };

export function parseEntry(raw: string): Entry {
  const m = Special.exec(raw);
  if (!m) return { kind: 'task', name: raw };
  const [, kind, rest = ''] = m;
  if (kind === 'action') {
    const i = rest.indexOf(':');
    return i < 0 ? { kind: 'action', action: rest } : { kind: 'action', action: rest.slice(0, i), arg: rest.slice(i + 1) };
  }
  return { kind: kind as 'stage' | 'bootenv' | 'context', name: rest };
}
