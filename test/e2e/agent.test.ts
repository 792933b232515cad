// The real `ironflow agent` process against a listening server with a real runner: mixed workflows of
// agent scripts and server actions, every exit code, files and interpreters, the environment scripts
// get, bootenv changes, a previous life's running job, and a server restart under a running job.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../src/agent/agent.js';
import { issueMachineToken } from '../../src/auth/machine-tokens.js';
import { clientUpdate, jobsOf, machine, newMachine, put, startEngine, until, workflow, type Engine } from '../integration/engine-fixture.js';

const MAIN = join(import.meta.dirname, '..', 'helpers', 'ironflow-main.ts');
let e: Engine;
let url: string;
const dir = mkdtempSync(join(tmpdir(), 'ironflow-agent-test-'));

export interface AgentProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
  alive(): boolean;
}

export function spawnAgent(endpoint: string, uuid: string, token: string, workDir: string, extra: string[] = []): AgentProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'agent', '--endpoint', endpoint, '--machine', uuid, '--token', token, '--work-dir', workDir,
    '--reboot-command', `echo reboot >> ${workDir}/went-down`, '--poweroff-command', `echo poweroff >> ${workDir}/went-down`, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, output: () => out, exited, alive: () => child.exitCode === null && child.signalCode === null };
}

const agents: AgentProcess[] = [];
const inProcess: Agent[] = [];
async function agentFor(uuid: string, extra: string[] = []): Promise<{ agent: AgentProcess; workDir: string }> {
  const workDir = join(dir, uuid);
  const token = issueMachineToken(e.s.signer, await machine(e.s, uuid), 3600).token;
  const agent = spawnAgent(url, uuid, token, workDir, extra);
  agents.push(agent);
  return { agent, workDir };
}

const side = (uuid: string) => join(dir, `${uuid}.side`);
const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : []);
const log = async (job: string) => (await e.t.call({ method: 'GET', url: `/api/v1/jobs/${job}/log` })).body;

beforeAll(async () => {
  e = await startEngine();
  await e.t.app.listen({ port: 0, host: '127.0.0.1' });
  url = `http://127.0.0.1:${(e.t.app.server.address() as AddressInfo).port}`;
  const s = e.s;
  const script = (name: string, body: string) => put(s, 'tasks', { name, templates: [{ name: `${name}.sh`, contents: body }] });
  await script('ag-a', '#!/bin/sh\necho "ran a on {{machine.name}}"\necho a >> {{param "side"}}\n');
  await script('ag-env', '#!/bin/bash\n[[ "$(pwd)" == "$IRONFLOW_TASK_DIR" ]] && echo "in task dir"\nenv | grep ^IRONFLOW_ | grep -v TOKEN= | sort\n[ -n "$IRONFLOW_TOKEN" ] && echo "token set"\necho env >> {{param "side"}}\n');
  await put(s, 'tasks', { name: 'ag-file', templates: [
    { name: 'conf', path: 'conf/app.txt', contents: 'value={{machine.name}}' },
    { name: 'read', contents: '#!/bin/sh\ncat conf/app.txt; echo\necho file >> {{param "side"}}\n' },
  ] });
  await script('ag-exit', [
    '#!/bin/sh',
    'f={{param "side"}}.count',
    'n=$(cat "$f" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$f"',
    'echo "run $n"',
    'if [ "$n" = 1 ]; then exit {{param "code"}}; fi',
    'exit 0',
  ].join('\n'));
  await script('ag-after', '#!/bin/sh\necho after >> {{param "side"}}\n');
  await script('ag-slow', '#!/bin/sh\nf={{param "side"}}.count\nn=$(cat "$f" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$f"\nif [ "$n" = 1 ]; then i=0; while [ $i -lt {{param "slow-ticks"}} ]; do i=$((i+1)); echo "tick $i"; sleep 0.2; done; fi\necho slow >> {{param "side"}}\n');
  await put(s, 'tasks', { name: 'ag-power', actions: [{ action: 'bmc.power', args: { action: 'on' } }] });
  await workflow(s, 'ag-mixed', [{ name: 'ag-mixed', tasks: ['ag-a', 'ag-power', 'action:machine.setParam:mid=1', 'ag-file', 'ag-env'] }]);
  await workflow(s, 'ag-exit', [{ name: 'ag-exit', tasks: ['ag-exit', 'ag-after'] }]);
  await workflow(s, 'ag-slow', [{ name: 'ag-slow', tasks: ['ag-slow', 'ag-after'] }]);
  await put(s, 'stages', { name: 'ag-bootenv', tasks: ['ag-a', 'bootenv:ignore', 'ag-after'] });
  await put(s, 'workflows', { name: 'ag-bootenv', stages: ['ag-bootenv'] });
  await put(s, 'stages', { name: 'ag-install', tasks: ['ag-a', 'bootenv:local', 'ag-after'] });
  await put(s, 'workflows', { name: 'ag-install', stages: ['ag-install'] });
});
afterAll(async () => {
  for (const a of agents) if (a.alive()) a.child.kill('SIGKILL');
  for (const a of inProcess) a.stop();
  await e.close();
});

const complete = (uuid: string, ms = 20_000) => until(`workflow of ${uuid} complete`, async () => (await machine(e.s, uuid)).workflowComplete === true, ms);

describe('ironflow agent', () => {
  it('runs a workflow of agent scripts and server actions, each once, in order', async () => {
    const uuid = await newMachine(e.s, { workflow: 'ag-mixed', params: { side: side('mixed'), 'bmc/driver': 'sim' } });
    const { agent } = await agentFor(uuid);
    await complete(uuid);
    expect(lines(side('mixed'))).toEqual(['a', 'file', 'env']);
    const m = await machine(e.s, uuid);
    expect(m).toMatchObject({ params: { mid: 1 }, power: { state: 'on' } });
    const jobs = await jobsOf(e.s, uuid);
    expect(jobs.map((j) => [j.task, j.context, j.state, j.exitState])).toEqual([
      ['ag-a', '', 'finished', 'complete'],
      ['ag-power', 'server', 'finished', 'complete'],
      ['action:machine.setParam:mid=1', 'server', 'finished', 'complete'],
      ['ag-file', '', 'finished', 'complete'],
      ['ag-env', '', 'finished', 'complete'],
    ]);
    expect(await log(String(jobs[0]!.uuid))).toContain(`ran a on ${String(m.name)}`);
    expect(await log(String(jobs[3]!.uuid))).toContain(`value=${String(m.name)}`);
    const env = await log(String(jobs[4]!.uuid));
    expect(env).toContain('in task dir');
    expect(env).toContain('token set');
    for (const name of ['IRONFLOW_ENDPOINT=', 'IRONFLOW_API_URL=', `IRONFLOW_MACHINE=${uuid}`, `IRONFLOW_JOB=${String(jobs[4]!.uuid)}`, 'IRONFLOW_TASK=ag-env', 'IRONFLOW_TASK_DIR=', 'IRONFLOW_ACTION=ag-env.sh']) expect(env).toContain(name);
    expect(agent.alive()).toBe(true);
  });

  // code, job end state, exit state, then: the workflow completes, the machine stops (runnable=true
  // continues), the agent ran its reboot/poweroff command and returned (a new one carries on), or the job failed.
  // In-process agents (the same Agent class the command runs; real HTTP, WebSocket and shell scripts) keep this table fast.
  const cases: [number, string, string, 'complete' | 'stopped' | 'down' | 'failed'][] = [
    [0, 'finished', 'complete', 'complete'],
    [16, 'finished', 'stop', 'stopped'],
    [32, 'finished', 'poweroff', 'down'],
    [64, 'finished', 'reboot', 'down'],
    [128, 'incomplete', 'complete', 'complete'],
    [144, 'incomplete', 'stop', 'stopped'],
    [160, 'incomplete', 'poweroff', 'down'],
    [192, 'incomplete', 'reboot', 'down'],
    [1, 'failed', 'failed', 'failed'],
    [255, 'failed', 'failed', 'failed'],
  ];
  it.concurrent.each(cases)('exit code %i → %s (%s), then %s', async (code, state, exitState, then) => {
    const uuid = await newMachine(e.s, { workflow: 'ag-exit', params: { side: side(`exit-${code}`), code } });
    const workDir = join(dir, uuid);
    const token = issueMachineToken(e.s.signer, await machine(e.s, uuid), 3600).token;
    const start = () => {
      const agent = new Agent({ endpoint: url, machine: uuid, token, workDir, rebootCommand: `echo reboot >> ${workDir}/went-down`, poweroffCommand: `echo poweroff >> ${workDir}/went-down`, log: () => undefined });
      inProcess.push(agent);
      return { agent, done: agent.run() };
    };
    let a = start();
    try {
      const first = await until(`first run of ${code} reported`, async () => {
        const [j] = await jobsOf(e.s, uuid);
        return j && j.state !== 'created' && j.state !== 'running' ? j : undefined;
      }, 20_000);
      if (state === 'incomplete' && then === 'complete') {
        // 128: the agent claims the same job again (202) and the second run succeeds
        await complete(uuid);
        const jobs = await jobsOf(e.s, uuid);
        expect(jobs.map((j) => [j.task, j.state])).toEqual([['ag-exit', 'finished'], ['ag-after', 'finished']]);
        expect(lines(`${side(`exit-${code}`)}.count`)).toEqual(['2']);
        expect(await log(String(jobs[0]!.uuid))).toContain('run 2');
        return;
      }
      expect(first).toMatchObject({ state, exitState });
      if (then === 'complete') {
        await complete(uuid);
        expect(lines(side(`exit-${code}`))).toEqual(['after']);
      } else if (then === 'stopped') {
        await until('machine stopped', async () => (await machine(e.s, uuid)).runnable === false);
        expect(lines(side(`exit-${code}`))).toEqual([]);
        await clientUpdate(e.s, uuid, { runnable: true }); // continue: the next entry (16), the incomplete job again (144)
        await complete(uuid);
        expect(lines(side(`exit-${code}`))).toEqual(['after']);
      } else if (then === 'down') {
        expect(await a.done).toBe(exitState);
        expect(lines(join(workDir, 'went-down'))).toEqual([exitState]);
        a = start(); // the machine "boots" again: the incomplete job is handed out again, or the next one
        await complete(uuid);
        expect(lines(side(`exit-${code}`))).toEqual(['after']);
        expect(lines(`${side(`exit-${code}`)}.count`)).toEqual([state === 'incomplete' ? '2' : '1']);
      } else {
        await until('machine stopped', async () => (await machine(e.s, uuid)).runnable === false);
        expect(first.resultErrors).toEqual([`ag-exit.sh exited with ${code}`]);
      }
      expect(a.agent.jobsRun).toBeGreaterThan(0);
    } finally {
      a.agent.stop();
      await a.done;
    }
  });

  it('reboots when the bootEnv changes under it, and carries on in the new bootenv', async () => {
    const uuid = await newMachine(e.s, { workflow: 'ag-bootenv', bootEnv: 'local', params: { side: side('bootenv') } });
    const { agent, workDir } = await agentFor(uuid);
    expect(await agent.exited).toBe(0);
    expect(lines(join(workDir, 'went-down'))).toEqual(['reboot']);
    expect(agent.output()).toContain('bootenv changed from local to ignore; rebooting');
    const jobs = await jobsOf(e.s, uuid);
    expect(jobs.map((j) => [j.task, j.state])).toEqual([['ag-a', 'finished'], ['ag-after', 'created']]);
    await agentFor(uuid);
    await complete(uuid);
    expect(lines(side('bootenv'))).toEqual(['a', 'after']);
  });

  it('exits (no reboot) when the bootEnv changes under it in an *-install bootenv', async () => {
    const uuid = await newMachine(e.s, { workflow: 'ag-install', bootEnv: 'ubuntu-24.04-install', params: { side: side('install') } });
    const { agent, workDir } = await agentFor(uuid);
    expect(await agent.exited).toBe(0);
    expect(existsSync(join(workDir, 'went-down'))).toBe(false);
    expect(agent.output()).toContain('bootenv changed from ubuntu-24.04-install to local; exiting');
  });

  it('fails the job its previous life left running; the task is retried per task-retry', async () => {
    const uuid = await newMachine(e.s, { workflow: 'ag-slow', params: { side: side('slow'), 'slow-ticks': 100, 'task-retry': { attempts: 1, backoffSeconds: 0 } } });
    const first = await agentFor(uuid);
    const [job] = await until('the slow job running', async () => {
      const j = await jobsOf(e.s, uuid);
      return j[0]?.state === 'running' && (await log(String(j[0].uuid))).includes('tick 2') ? j : undefined;
    });
    first.agent.child.kill('SIGKILL');
    await first.agent.exited;
    await agentFor(uuid);
    await complete(uuid);
    const jobs = await jobsOf(e.s, uuid);
    expect(jobs.map((j) => [j.task, j.state])).toEqual([['ag-slow', 'failed'], ['ag-slow', 'finished'], ['ag-after', 'finished']]);
    expect(jobs[0]!.uuid).toBe(job!.uuid);
    expect(String((jobs[0]!.resultErrors as string[])[0])).toContain('agent restarted');
    expect(lines(side('slow'))).toEqual(['slow', 'after']);
  });
});

describe('server restart under a running agent', () => {
  it('the job finishes and its whole log arrives', async () => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const env = { ...process.env, REDIS_URL: (e.s.config.redisUrl ?? ''), IRONFLOW_REDIS_PREFIX: e.t.prefix, IRONFLOW_DATA_DIR: e.s.config.dataDir, IRONFLOW_PORT: String(port), IRONFLOW_HOST: '127.0.0.1', IRONFLOW_TFTP_PORT: '0', IRONFLOW_ROLE: 'api', IRONFLOW_LOG_LEVEL: 'warn' };
    const { testRedisUrl } = await import('../helpers/redis.js');
    env.REDIS_URL = testRedisUrl();
    const api = () => {
      const p = spawn(process.execPath, ['--import', 'tsx', MAIN, 'serve'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
      return { p, exited: new Promise((r) => p.once('exit', r)) };
    };
    const up = () => until('api up', async () => (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok).catch(() => false)), 30_000, 100);
    let server = api();
    try {
      await up();
      const uuid = await newMachine(e.s, { workflow: 'ag-slow', params: { side: side('restart'), 'slow-ticks': 25 } });
      const token = issueMachineToken(e.s.signer, await machine(e.s, uuid), 3600).token;
      const agent = spawnAgent(`http://127.0.0.1:${port}`, uuid, token, join(dir, `restart-${uuid}`));
      agents.push(agent);
      await until('the slow job running', async () => (await jobsOf(e.s, uuid))[0]?.state === 'running');
      server.p.kill('SIGKILL');
      await server.exited;
      await new Promise((r) => setTimeout(r, 1500));
      server = api();
      await up();
      await complete(uuid, 30_000);
      const [job] = await jobsOf(e.s, uuid);
      const text = await log(String(job!.uuid));
      for (let i = 1; i <= 25; i++) expect(text).toContain(`tick ${i}\n`);
      expect(agent.alive()).toBe(true);
      expect(agent.output()).toContain('retrying');
    } finally {
      server.p.kill('SIGKILL');
      await server.exited;
    }
  }, 60_000);
});
