// Pure engine pieces: action argument schemas and entry parsing, the runner's decision table, the
// failure policy, the agent's interpreter choice, and the shipped core pack (read and checked whole).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { interpreterOf } from '../../src/agent/scripts.js';
import { checkPack } from '../../src/content/install.js';
import { readPackDir } from '../../src/content/pack.js';
import { decide, failurePlan, type Move } from '../../src/jobs/runner.js';
import { actionArgProblems, entryArgs } from '../../src/models/action-schemas.js';
import type { StoredObject } from '../../src/models/common.js';
import { tasks } from '../../src/models/tasks.js';
import { stages } from '../../src/models/stages.js';
import { MemoryBackend } from '../../src/store/memory-backend.js';
import { ObjectStore } from '../../src/store/objects.js';

describe('action arguments', () => {
  it.each([
    ['bmc.power', { action: 'cycle' }, 0],
    ['bmc.power', { action: 'boom' }, 1],
    ['bmc.power', {}, 1],
    ['bmc.power', { action: 'on', extra: 1 }, 1],
    ['bmc.bootDevice', { device: 'pxe', persistent: true, efi: false }, 0],
    ['bmc.bootDevice', { device: 'floppy' }, 1],
    ['bmc.resetBmc', {}, 0],
    ['bmc.resetBmc', { type: 'lukewarm' }, 1],
    ['bmc.powerStatus', {}, 0],
    ['bmc.powerStatus', { x: 1 }, 1],
    ['wait.userState', { state: 'succeeded', code: 1000, timeoutSeconds: 60 }, 0],
    ['wait.userState', { state: 'succeeded', code: 999 }, 1],
    ['wait.userState', { state: 'done' }, 1],
    ['wait.seconds', { seconds: 1.5 }, 0],
    ['wait.seconds', { seconds: -1 }, 1],
    ['wait.seconds', { seconds: 'soon' }, 1],
    ['machine.setParam', { name: 'a/b', value: { x: 1 } }, 0],
    ['machine.setParam', { name: 'a' }, 1],
    ['machine.setParam', { name: 'a:b', value: 1 }, 1],
    ['no.such', {}, 1],
  ] as [string, Record<string, unknown>, number][])('%s %j → %i problem(s)', (action, args, count) => {
    const problems = actionArgProblems(action, args);
    expect(problems).toHaveLength(count);
    for (const p of problems) expect(p).toContain(action);
  });

  it('names the allowed values of a closed set', () => {
    expect(actionArgProblems('bmc.power', { action: 'boom' })).toEqual(['bmc.power: action: must be one of on, off, soft, reset, cycle (got "boom")']);
  });

  it.each([
    ['bmc.power', 'cycle', { action: 'cycle' }],
    ['bmc.bootDevice', 'pxe', { device: 'pxe' }],
    ['bmc.bootDevice', '{"device":"disk","persistent":true}', { device: 'disk', persistent: true }],
    ['wait.seconds', '30', { seconds: 30 }],
    ['wait.userState', 'succeeded', { state: 'succeeded' }],
    ['machine.setParam', 'os/ready=true', { name: 'os/ready', value: true }],
    ['machine.setParam', 'note=hello world', { name: 'note', value: 'hello world' }],
    ['bmc.powerStatus', undefined, {}],
  ] as [string, string | undefined, Record<string, unknown>][])('action:%s:%s → %j', (action, arg, args) => {
    expect(entryArgs(action, arg)).toEqual({ args, problems: [] });
  });

  it.each([
    ['bmc.power', 'boom'],
    ['wait.seconds', 'soon'],
    ['machine.setParam', 'novalue'],
    ['bmc.powerStatus', 'x'],
    ['bmc.power', '{not json'],
    ['nope', undefined],
  ])('action:%s:%s is refused', (action, arg) => {
    expect(entryArgs(action, arg).problems.length).toBeGreaterThan(0);
  });

  it('checks action arguments when a task or stage is saved', () => {
    expect(tasks.check!({ name: 't', actions: [{ action: 'bmc.power', args: { action: 'sideways' } }] })).toEqual(['actions/0 (bmc.power): action: must be one of on, off, soft, reset, cycle (got "sideways")']);
    expect(tasks.check!({ name: 't', actions: [{ action: 'wait.seconds', args: { seconds: 3 } }] })).toEqual([]);
    expect(stages.check!({ name: 's', tasks: ['a', 'action:bmc.power:sideways', 'action:wait.seconds:5'] })).toHaveLength(1);
  });
});

describe('decide', () => {
  const NOW = 1_000_000;
  const base: StoredObject = { uuid: 'm', workflow: 'w', tasks: ['stage:s', 'a', 'b'], currentTask: -1, currentJob: '', runnable: true, locked: false, taskErrorStacks: [], retryTaskAttempt: 0, workflowComplete: false };
  const m = (over: StoredObject) => ({ ...base, ...over });
  const job = (over: StoredObject) => ({ uuid: 'j1', task: 'a', context: '', state: 'finished', exitState: 'complete', ...over });
  const cases: [string, StoredObject, StoredObject | null | undefined, Partial<Move>][] = [
    ['not runnable', m({ runnable: false }), undefined, { type: 'idle' }],
    ['locked', m({ locked: true }), undefined, { type: 'idle' }],
    ['nothing run yet', m({}), undefined, { type: 'roll', index: 0 }],
    ['after a special entry', m({ currentTask: 0 }), undefined, { type: 'roll', index: 1 }],
    ['agent job waiting to be claimed', m({ currentTask: 1, currentJob: 'j1' }), job({ state: 'created' }), { type: 'idle' }],
    ['agent job running', m({ currentTask: 1, currentJob: 'j1' }), job({ state: 'running' }), { type: 'idle' }],
    ['agent job incomplete', m({ currentTask: 1, currentJob: 'j1' }), job({ state: 'incomplete' }), { type: 'idle' }],
    ['agent job incomplete with stop', m({ currentTask: 1, currentJob: 'j1' }), job({ state: 'incomplete', exitState: 'stop' }), { type: 'stop' }],
    ['server job running (taken over)', m({ currentTask: 1, currentJob: 'j1' }), job({ state: 'running', context: 'server' }), { type: 'resume' }],
    ['finished: roll on', m({ currentTask: 1, currentJob: 'j1' }), job({}), { type: 'roll', index: 2 }],
    ['finished with stop', m({ currentTask: 1, currentJob: 'j1' }), job({ exitState: 'stop' }), { type: 'stop' }],
    ['finished with stop, applied', m({ currentTask: 1, currentJob: 'j1', engine: { applied: 'j1' } }), job({ exitState: 'stop' }), { type: 'roll', index: 2 }],
    ['failed, not applied', m({ currentTask: 1, currentJob: 'j1' }), job({ state: 'failed' }), { type: 'failure' }],
    ['failed, backoff pending', m({ currentTask: 1, currentJob: 'j1', engine: { applied: 'j1', retryAt: NOW + 5 } }), job({ state: 'failed' }), { type: 'idle', wakeAt: NOW + 5 }],
    ['failed, backoff over: retry', m({ currentTask: 1, currentJob: 'j1', engine: { applied: 'j1', retryAt: NOW - 5 } }), job({ state: 'failed' }), { type: 'start', index: 1, entry: 'a' }],
    ['failed with handlers pushed', m({ currentTask: 1, currentJob: 'j1', taskErrorStacks: [['h1', 'h2']], engine: { applied: 'j1' } }), job({ state: 'failed' }), { type: 'start', index: 1, entry: 'h1', handler: 'h1', shiftHandler: true }],
    ['handler finished, more handlers', m({ currentTask: 1, currentJob: 'j2', taskErrorStacks: [['h2']] }), job({ uuid: 'j2', task: 'h1', meta: { errorHandler: 'true' } }), { type: 'start', entry: 'h2', shiftHandler: true }],
    ['last handler finished: the failed task once more', m({ currentTask: 1, currentJob: 'j3', taskErrorStacks: [[]] }), job({ uuid: 'j3', task: 'h2', meta: { errorHandler: 'true' } }), { type: 'start', index: 1, entry: 'a' }],
    ['a failed handler runs again on continue', m({ currentTask: 1, currentJob: 'j2', taskErrorStacks: [['h2']], engine: { applied: 'j2' } }), job({ uuid: 'j2', task: 'h1', state: 'failed', meta: { errorHandler: 'true' } }), { type: 'start', entry: 'h1', handler: 'h1' }],
    ['current job lost after the machine write', m({ currentTask: 1, currentJob: 'j1' }), null, { type: 'start', index: 1, entry: 'a', reuse: 'j1' }],
    ['lost handler job', m({ currentTask: 1, currentJob: 'j1', engine: { job: 'j1', handler: 'h1' } }), null, { type: 'start', entry: 'h1', handler: 'h1', reuse: 'j1' }],
    ['end of the list', m({ currentTask: 2, currentJob: 'j1' }), job({ task: 'b' }), { type: 'roll', index: 3 }],
    ['complete', m({ currentTask: 2, currentJob: 'j1', workflowComplete: true }), job({ task: 'b' }), { type: 'idle' }],
  ];
  it.each(cases)('%s', (_name, machine, cur, expected) => {
    expect(decide(machine, cur, NOW)).toMatchObject(expected);
  });
});

describe('failurePlan', () => {
  const NOW = 1_000_000;
  const m = (over: StoredObject = {}): StoredObject => ({ retryTaskAttempt: 0, taskErrorStacks: [], ...over });
  const job = (over: StoredObject = {}): StoredObject => ({ task: 'a', ...over });
  it.each([
    ['first failure with retries', m(), job(), { attempts: 2, backoffSeconds: 10 }, [], { next: 'retry', attempt: 1, retryAt: NOW + 10_000 }],
    ['second failure: doubled backoff', m({ retryTaskAttempt: 1 }), job(), { attempts: 2, backoffSeconds: 10 }, [], { next: 'retry', attempt: 2, retryAt: NOW + 20_000 }],
    ['retries used, no handlers', m({ retryTaskAttempt: 2 }), job(), { attempts: 2, backoffSeconds: 10 }, [], { next: 'stop' }],
    ['retries used, handlers', m({ retryTaskAttempt: 2 }), job(), { attempts: 2, backoffSeconds: 10 }, ['h'], { next: 'error-handlers', handlers: ['h'] }],
    ['handlers already ran (depth 1)', m({ taskErrorStacks: [[]] }), job(), { attempts: 0, backoffSeconds: 10 }, ['h'], { next: 'stop' }],
    ['a handler failed', m({ taskErrorStacks: [['h2']] }), job({ meta: { errorHandler: 'true' } }), { attempts: 5, backoffSeconds: 10 }, ['h'], { next: 'stop' }],
  ] as const)('%s', (_n, machine, j, retry, handlers, expected) => {
    expect(failurePlan(machine, j, retry, [...handlers], NOW)).toMatchObject(expected);
  });
});

describe('interpreterOf', () => {
  it.each([
    ['echo hi', ['/bin/sh']],
    ['#!/bin/bash\necho', ['/bin/bash']],
    ['#!/usr/bin/env python3\nprint(1)', ['/usr/bin/env', 'python3']],
    ['#!/bin/bash -e -u\nx', ['/bin/bash', '-e -u']],
    ['#!\necho', ['/bin/sh']],
  ])('%j → %j', (content, expected) => {
    expect(interpreterOf(content)).toEqual(expected);
  });
});

describe('the core content pack', () => {
  it('reads and checks whole, with the shipped workflows, stages and tasks', async () => {
    const pack = readPackDir(join(import.meta.dirname, '..', '..', 'content', 'core'));
    const store = new ObjectStore(new MemoryBackend());
    await store.ensureBuiltins();
    expect(await checkPack(store, pack)).toEqual([]);
    const names = (prefix: string) => pack.objects.filter((o) => o.prefix === prefix).map((o) => String(o.object.name)).sort();
    expect(names('workflows')).toEqual(['bmc-reset', 'decommission', 'discover', 'power-cycle-pxe', 'provision-os']);
    for (const w of pack.objects.filter((o) => o.prefix === 'workflows')) {
      for (const st of w.object.stages as string[]) expect(st === 'local' || names('stages').includes(st), `${String(w.object.name)} → ${st}`).toBe(true);
    }
  });
});
