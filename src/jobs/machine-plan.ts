// The machine write hook for workflows (SPEC 5.1): a new workflow is expanded into the task list
// (currentTask -1), clearing it clears the list, and client writes may not break the plan's guards.
import { AppError } from '../errors.js';
import type { StoredObject } from '../models/common.js';
import type { KindHooks, ObjectStore } from '../store/objects.js';
import { expandWorkflow, planGuardProblems, type MachinePlanState, type StageDef } from './plan.js';

function planState(m: StoredObject): MachinePlanState {
  return {
    workflow: (m.workflow as string | undefined) ?? '',
    stage: (m.stage as string | undefined) ?? '',
    bootEnv: (m.bootEnv as string | undefined) ?? '',
    tasks: (m.tasks as string[] | undefined) ?? [],
    currentTask: (m.currentTask as number | undefined) ?? -1,
  };
}

/** @param store the object store (a getter: the hook is built while the store is) */
export function machinePlanHooks(store: () => ObjectStore): KindHooks {
  return {
    async beforeWrite(next, cur, opts) {
      const n = planState(next);
      const c = cur ? planState(cur) : undefined;
      if (c && opts.action !== 'save') {
        const problems = planGuardProblems(c, n);
        if (problems.length > 0) throw new AppError('CONFLICT', problems[0]!, { kind: 'machines', key: String(next.uuid), messages: problems });
      }
      if (c && n.workflow === c.workflow) return next;
      if (!n.workflow) return { ...next, tasks: [], currentTask: -1, workflowComplete: false, taskErrorStacks: [], retryTaskAttempt: 0 };
      const wf = await store().get('workflows', n.workflow);
      if (!wf) return next; // the reference check names the missing workflow (422)
      const stages = await store().getMany('stages', (wf.stages as string[] | undefined) ?? []);
      const tasks = expandWorkflow(stages as unknown as StageDef[], n.bootEnv);
      return { ...next, tasks, currentTask: -1, currentJob: '', workflowComplete: false, taskErrorStacks: [], retryTaskAttempt: 0, runnable: next.runnable ?? true };
    },
  };
}
