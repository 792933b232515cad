import { describe, expect, it } from 'vitest';
import { expandWorkflow, nextStageIndex, parseEntry, planGuardProblems, type MachinePlanState } from '../../src/jobs/plan.js';

describe('expandWorkflow', () => {
  it.each([
    ['no stages', [], 'local', []],
    ['one stage without a bootenv', [{ name: 'inventory', tasks: ['a', 'b'] }], 'local', ['stage:inventory', 'a', 'b']],
    ['bootenv entry only when it changes', [
      { name: 'discover', bootEnv: 'discovery', tasks: ['inv'] },
      { name: 'more', bootEnv: 'discovery', tasks: ['x'] },
      { name: 'install', bootEnv: 'debian-12-install', tasks: [] },
      { name: 'done', bootEnv: 'local' },
    ], 'local', ['stage:discover', 'bootenv:discovery', 'inv', 'stage:more', 'x', 'stage:install', 'bootenv:debian-12-install', 'stage:done', 'bootenv:local']],
    ['same bootenv as the machine has: no entry', [{ name: 's', bootEnv: 'local', tasks: ['t'] }], 'local', ['stage:s', 't']],
    ['special entries in stage tasks pass through', [{ name: 's', tasks: ['context:', 'action:bmc.power:cycle', 't'] }], 'local', ['stage:s', 'context:', 'action:bmc.power:cycle', 't']],
  ])('%s', (_n, stages, start, expected) => {
    expect(expandWorkflow(stages, start)).toEqual(expected);
  });
});

describe('planGuardProblems', () => {
  const cur: MachinePlanState = { workflow: 'w', stage: 's1', bootEnv: 'local', tasks: ['stage:s1', 'a', 'b', 'stage:s2', 'c'], currentTask: 1 };
  const with_ = (over: Partial<MachinePlanState>) => ({ ...cur, ...over });
  it.each([
    ['no change', with_({}), 0],
    ['direct stage change', with_({ stage: 's2' }), 1],
    ['direct bootEnv change', with_({ bootEnv: 'ignore' }), 1],
    ['changing a run entry', with_({ tasks: ['stage:s1', 'z', 'b', 'stage:s2', 'c'] }), 1],
    ['adding a task in the current stage', with_({ tasks: ['stage:s1', 'a', 'b', 'extra', 'stage:s2', 'c'] }), 0],
    ['removing a pending task of the current stage', with_({ tasks: ['stage:s1', 'a', 'stage:s2', 'c'] }), 0],
    ['changing the next stage', with_({ tasks: ['stage:s1', 'a', 'b', 'stage:s2', 'd'] }), 1],
    ['resetting currentTask to -1', with_({ currentTask: -1 }), 0],
    ['jumping currentTask', with_({ currentTask: 3 }), 1],
    ['changing the workflow is always allowed', with_({ workflow: 'other', stage: 'x', tasks: [] }), 0],
  ])('%s → %i problem(s)', (_n, next, count) => {
    expect(planGuardProblems(cur, next)).toHaveLength(count);
  });

  it('allows anything without a workflow', () => {
    const free = { ...cur, workflow: '' };
    expect(planGuardProblems(free, { ...free, stage: 'x', bootEnv: 'y', tasks: ['q'], currentTask: 5 })).toEqual([]);
  });
});

describe('entries', () => {
  it.each([
    ['stage:install', { kind: 'stage', name: 'install' }],
    ['bootenv:local', { kind: 'bootenv', name: 'local' }],
    ['context:', { kind: 'context', name: '' }],
    ['action:bmc.power:cycle', { kind: 'action', action: 'bmc.power', arg: 'cycle' }],
    ['action:wait.seconds', { kind: 'action', action: 'wait.seconds' }],
    ['my-task', { kind: 'task', name: 'my-task' }],
  ])('%s', (raw, entry) => expect(parseEntry(raw)).toEqual(entry));

  it('finds the next stage boundary', () => {
    expect(nextStageIndex(['stage:a', 'x', 'stage:b'], 1)).toBe(2);
    expect(nextStageIndex(['stage:a', 'x'], 1)).toBe(2);
  });
});
