// `ironflow agent` (SPEC 5.4): the machine agent. It claims its machine's jobs, runs their scripts,
// streams their output, reports their end by exit code, and reboots or powers off when told to. It
// waits on the WebSocket (falling back to polling) and never gives up on transient errors. It talks
// to the server over HTTP/WS only.
//
// A job its previous life left `running` (a crash, a reboot mid-task) is failed on start, so the
// server applies its failure policy (retries, error handlers). When the machine's bootEnv changes the
// agent reboots into it, except in a bootenv named `*-install`, where it exits (the installer reboots).
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { interpretExitCode, type AgentNext } from './exit-codes.js';
import { AgentHttp, Stopped, type AgentResponse } from './http.js';
import { freshTaskDir, LogSink, startScript, writeActionFile, type RenderedAction, type RunningScript, type ScriptEnv } from './scripts.js';
import { Waker } from './waker.js';

export interface AgentOptions {
  endpoint: string;
  machine: string;
  token: string;
  /** task directories live under `<workDir>/jobs/` (default $TMPDIR/ironflow-agent) */
  workDir?: string;
  /** the job context this agent serves ("" = the agent on the machine) */
  context?: string;
  rebootCommand?: string;
  poweroffCommand?: string;
  /** longest wait between claims when nothing happens (ms); the WebSocket wakes it earlier */
  idleMaxMs?: number;
  /** do not open the WebSocket (poll only) */
  noWebSocket?: boolean;
  log?: (msg: string) => void;
}

/** Why `run()` returned. */
export type AgentExit = 'stopped' | 'reboot' | 'poweroff' | 'bootenv-install' | 'fatal';

interface Job {
  uuid: string;
  task: string;
  state: string;
  bootEnv?: string;
}

const PREVIOUS_LIFE = 'the agent restarted while this job was running (machine rebooted or agent killed)';

export class Agent {
  private readonly http: AgentHttp;
  private readonly waker: Waker;
  private readonly log: (msg: string) => void;
  private readonly workDir: string;
  private bootEnv: string | undefined;
  private running: RunningScript | undefined;
  private stopping = false;
  /** jobs run (for tests and benchmarks) */
  jobsRun = 0;

  constructor(private readonly o: AgentOptions) {
    this.log = o.log ?? ((m) => process.stderr.write(`${new Date().toISOString()} ironflow agent: ${m}\n`));
    this.http = new AgentHttp(o.endpoint.replace(/\/+$/, ''), o.token, this.log);
    this.waker = new Waker(this.http.endpoint, o.token, [`machine_jobs.*.${o.machine}`, `machines.*.${o.machine}`], this.log);
    this.workDir = resolve(o.workDir ?? join(tmpdir(), 'ironflow-agent'));
    // Job events wake the agent. A machine write wakes it only when it could matter here: a new bootEnv,
    // runnable again, or a new current job (the runner names it just before creating it: a claim that
    // finds nothing yet looks again shortly, in case the job event is late).
    this.waker.onEvent = (e) => {
      if (e.type === 'machine_jobs') {
        // our own job's updates and log chunks are no news; a new job, or someone else's change, is
        return e.action !== 'log' && (e.action === 'create' || (e.object as { uuid?: unknown } | null)?.uuid !== this.lastJob);
      }
      if (e.type !== 'machines') return true;
      const m = (e.object ?? {}) as { bootEnv?: unknown; runnable?: unknown; currentJob?: unknown };
      if (typeof m.bootEnv === 'string') this.seenBootEnv = m.bootEnv;
      const named = typeof m.currentJob === 'string' && m.currentJob !== '' && m.currentJob !== this.lastJob ? m.currentJob : undefined;
      if (named) this.expectedJob = named;
      const wake = named !== undefined || (this.seenBootEnv !== undefined && this.seenBootEnv !== this.bootEnv) || (m.runnable === true && this.lastRunnable === false);
      if (typeof m.runnable === 'boolean') this.lastRunnable = m.runnable;
      return wake;
    };
  }

  /** the machine as the WebSocket last told (undefined: nothing heard yet) */
  private seenBootEnv: string | undefined;
  private lastRunnable: boolean | undefined;
  private lastJob: string | undefined;
  /** a job the machine names that this agent has not run yet */
  private expectedJob: string | undefined;

  stop(): void {
    this.stopping = true;
    this.running?.kill();
    this.http.stop();
    this.waker.close();
  }

  async run(): Promise<AgentExit> {
    try {
      if (!this.o.noWebSocket) await this.waker.start();
      const me = await this.machine();
      if (!me) return 'fatal';
      this.bootEnv = String(me.bootEnv ?? '');
      this.log(`machine ${String(me.name)} (${this.o.machine}) in bootenv ${this.bootEnv || '(none)'}; work dir ${this.workDir}`);
      let firstClaim = true;
      let idle = 0;
      while (!this.stopping) {
        this.waker.clear(); // what happened before this claim, the claim sees
        const res = await this.http.call('POST', '/jobs', { machine: this.o.machine, context: this.o.context ?? '' });
        const body = res.json as { kind?: string; key?: string; message?: string } & Partial<Job> | undefined;
        if (res.status === 201 || res.status === 202) {
          firstClaim = false;
          idle = 0;
          // the job records the bootEnv it was created in: a new one means reboot (or exit) first
          const jobEnv = (body as Job).bootEnv;
          if (typeof jobEnv === 'string' && jobEnv !== this.bootEnv) return this.bootEnvChanged(jobEnv);
          const next = await this.runJob(body as Job);
          if (next === 'reboot' || next === 'poweroff') return this.goDown(next);
          continue;
        }
        if (res.status === 409 && body?.kind === 'jobs' && body.key && firstClaim) {
          firstClaim = false;
          await this.failLeftover(body.key);
          continue;
        }
        if (res.status === 401 || res.status === 403 || res.status === 422) {
          this.log(`the server refuses this agent (${res.status}: ${body?.message ?? res.text}); exiting`);
          return 'fatal';
        }
        firstClaim = false;
        // 204 nothing now, 409 not runnable (or another agent's job running): wait for news
        const change = await this.bootEnvChange();
        if (change) return change;
        idle++;
        const soon = this.expectedJob !== undefined && this.expectedJob !== this.lastJob;
        this.expectedJob = undefined;
        await this.waker.wait(soon ? 100 : this.waker.connected ? this.o.idleMaxMs ?? 30_000 : Math.min(this.o.idleMaxMs ?? 10_000, 250 * 2 ** Math.min(idle, 6)));
      }
      return 'stopped';
    } catch (err) {
      if (err instanceof Stopped || this.stopping) return 'stopped';
      throw err;
    } finally {
      this.waker.close();
    }
  }

  private async machine(): Promise<Record<string, unknown> | undefined> {
    const before = Date.now();
    const res = await this.http.call('GET', `/machines/${this.o.machine}`);
    if (res.status === 200) {
      this.readAt = before;
      const me = res.json as Record<string, unknown>;
      this.seenBootEnv = String(me.bootEnv ?? '');
      return me;
    }
    this.log(`cannot read machine ${this.o.machine}: ${res.status} ${res.text.slice(0, 200)}`);
    return undefined;
  }

  /**
   * When the machine's bootEnv changed: reboot into it (or exit in an `*-install` bootenv). While the
   * WebSocket is up, machine events say it; otherwise the machine is read.
   */
  private async bootEnvChange(): Promise<AgentExit | undefined> {
    let now = this.waker.connected && this.heardSinceConnect() ? this.seenBootEnv : undefined;
    if (now === undefined) {
      const me = await this.machine();
      now = me ? String(me.bootEnv ?? '') : this.bootEnv;
      if (me && typeof me.runnable === 'boolean') this.lastRunnable = me.runnable;
    }
    return now === undefined || now === this.bootEnv ? undefined : this.bootEnvChanged(now);
  }

  /** The WebSocket has been up since the machine was last read (its events are complete from there). */
  private heardSinceConnect(): boolean {
    return this.waker.connectedSince !== undefined && this.readAt !== undefined && this.readAt >= this.waker.connectedSince;
  }

  private readAt: number | undefined;

  private async bootEnvChanged(now: string): Promise<AgentExit> {
    if (this.bootEnv!.endsWith('-install')) {
      this.log(`bootenv changed from ${this.bootEnv} to ${now}; exiting (the installer finishes and reboots)`);
      return 'bootenv-install';
    }
    this.log(`bootenv changed from ${this.bootEnv} to ${now}; rebooting`);
    return this.goDown('reboot');
  }

  private async goDown(what: 'reboot' | 'poweroff'): Promise<AgentExit> {
    const cmd = what === 'reboot' ? this.o.rebootCommand ?? 'reboot' : this.o.poweroffCommand ?? 'poweroff';
    this.log(`${what}: running ${JSON.stringify(cmd)}`);
    await new Promise<void>((done) => {
      const child = spawn('/bin/sh', ['-c', cmd], { stdio: 'inherit' });
      child.on('error', (err) => {
        this.log(`${what} command failed: ${err.message}`);
        done();
      });
      child.on('close', () => done());
    });
    return what;
  }

  private patch(uuid: string, from: string, fields: Record<string, unknown>): Promise<AgentResponse> {
    const ops = [{ op: 'test', path: '/state', value: from }, ...Object.entries(fields).map(([k, v]) => ({ op: 'replace', path: `/${k}`, value: v }))];
    return this.http.call('PATCH', `/jobs/${uuid}`, ops, 'application/json-patch+json');
  }

  private async failLeftover(uuid: string): Promise<void> {
    this.log(`job ${uuid} was left running by a previous life of this agent; failing it`);
    const res = await this.patch(uuid, 'running', { state: 'failed', exitState: 'failed', resultErrors: [PREVIOUS_LIFE] });
    if (res.status !== 200) this.log(`could not fail job ${uuid}: ${res.status} ${res.text.slice(0, 200)}`);
  }

  private async isRunningForUs(uuid: string): Promise<boolean> {
    const res = await this.http.call('GET', `/jobs/${uuid}`);
    const j = res.json as { state?: string; machine?: string } | undefined;
    return res.status === 200 && j?.state === 'running' && j.machine === this.o.machine;
  }

  /** Runs one claimed job to its end; returns what the agent does next. */
  private async runJob(job: Job): Promise<AgentNext> {
    const start = await this.patch(job.uuid, job.state, { state: 'running' });
    // A 409 may mean our own start was committed but its answer was lost (the api or Redis died in
    // between, and the call was retried): the job is then running, for us, and still ours to run.
    const started = start.status === 200 || (start.status === 409 && (await this.isRunningForUs(job.uuid)));
    if (!started) {
      this.log(`job ${job.uuid} (${job.task}) could not be started: ${start.status} ${start.text.slice(0, 200)}`);
      return 'continue';
    }
    this.jobsRun++;
    this.lastJob = job.uuid;
    this.log(`job ${job.uuid}: running ${job.task}`);
    const sink = new LogSink(this.http, job.uuid);
    const res = await this.http.call('GET', `/jobs/${job.uuid}/actions`);
    let code: number | null = 0;
    let errors: string[] = [];
    if (res.status !== 200 || !Array.isArray(res.json)) {
      const message = (res.json as { message?: string } | undefined)?.message ?? res.text.slice(0, 500);
      sink.write(`[ironflow agent: the task's scripts could not be rendered: ${message}]\n`);
      code = 1;
      errors = [`render: ${message}`];
    } else {
      const dir = freshTaskDir(this.workDir, job.uuid);
      const env: ScriptEnv = {
        IRONFLOW_ENDPOINT: this.http.endpoint,
        IRONFLOW_API_URL: `${this.http.endpoint}/api/v1`,
        IRONFLOW_MACHINE: this.o.machine,
        IRONFLOW_TOKEN: this.o.token,
        IRONFLOW_JOB: job.uuid,
        IRONFLOW_TASK: job.task,
        IRONFLOW_TASK_DIR: dir,
      };
      const actions = res.json as RenderedAction[];
      for (const [i, a] of actions.entries()) {
        if (this.stopping) break;
        if (a.path) {
          try {
            sink.write(`[ironflow agent: wrote ${writeActionFile(dir, a)}]\n`);
          } catch (err) {
            sink.write(`[ironflow agent: cannot write ${a.path}: ${(err as Error).message}]\n`);
            code = 1;
            errors = [`${a.name}: cannot write ${a.path}: ${(err as Error).message}`];
            break;
          }
          continue;
        }
        this.running = startScript(dir, i, a, env, sink);
        code = await this.running.done;
        this.running = undefined;
        if (code !== 0) {
          if (interpretExitCode(code).state === 'failed') errors = [`${a.name} exited with ${code === null ? 'a signal' : code}`];
          break;
        }
      }
    }
    if (this.stopping) {
      await sink.close().catch(() => undefined);
      throw new Stopped();
    }
    const meaning = interpretExitCode(code);
    await sink.close();
    const end = await this.patch(job.uuid, 'running', { state: meaning.state, exitState: meaning.exitState, resultErrors: errors });
    if (end.status !== 200) this.log(`job ${job.uuid}: could not report ${meaning.state}: ${end.status} ${end.text.slice(0, 200)}`);
    else this.log(`job ${job.uuid} (${job.task}): ${meaning.state} (${meaning.exitState})`);
    return meaning.next;
  }
}

export const AGENT_USAGE = `usage: ironflow agent --endpoint URL --machine UUID --token TOKEN [--work-dir DIR] [--context NAME]
                      [--reboot-command CMD] [--poweroff-command CMD] [--websocket=false]
  endpoint, machine and token also from IRONFLOW_ENDPOINT, IRONFLOW_MACHINE, IRONFLOW_TOKEN.
  Scripts get IRONFLOW_ENDPOINT, IRONFLOW_API_URL, IRONFLOW_MACHINE, IRONFLOW_TOKEN, IRONFLOW_JOB,
  IRONFLOW_TASK, IRONFLOW_TASK_DIR (their fresh working directory) and IRONFLOW_ACTION.`;

/** `ironflow agent …`: resolves with the process exit code. */
export async function runAgentCommand(flags: Record<string, string | undefined>, env: NodeJS.ProcessEnv): Promise<number> {
  const endpoint = flags.endpoint ?? env.IRONFLOW_ENDPOINT;
  const machine = flags.machine ?? env.IRONFLOW_MACHINE;
  const token = flags.token ?? env.IRONFLOW_TOKEN;
  if (flags.help) {
    process.stdout.write(`${AGENT_USAGE}\n`);
    return 0;
  }
  if (!endpoint || !machine || !token) {
    process.stderr.write(`ironflow agent: --endpoint, --machine and --token are required\n${AGENT_USAGE}\n`);
    return 2;
  }
  const agent = new Agent({
    endpoint,
    machine: machine.toLowerCase(),
    token,
    ...(flags['work-dir'] ? { workDir: flags['work-dir'] } : {}),
    ...(flags.context !== undefined ? { context: flags.context } : {}),
    ...(flags['reboot-command'] ? { rebootCommand: flags['reboot-command'] } : {}),
    ...(flags['poweroff-command'] ? { poweroffCommand: flags['poweroff-command'] } : {}),
    noWebSocket: flags.websocket === 'false',
  });
  const stop = () => agent.stop();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  const why = await agent.run();
  return why === 'fatal' ? 1 : 0;
}
