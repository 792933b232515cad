// Runs a job's rendered actions on the machine: an action with a `path` is a file to write, one
// without is a script, run with the interpreter of its `#!` line (default /bin/sh) in the job's fresh
// task directory, stdout and stderr streamed to the job log in chunks bounded by time and size.
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import type { AgentHttp } from './http.js';

export interface RenderedAction {
  name: string;
  path: string;
  content: string;
  meta?: Record<string, string>;
}

/** Environment every script gets (besides the agent's own). Documented in README (agent section). */
export interface ScriptEnv {
  IRONFLOW_ENDPOINT: string;
  IRONFLOW_API_URL: string;
  IRONFLOW_MACHINE: string;
  IRONFLOW_TOKEN: string;
  IRONFLOW_JOB: string;
  IRONFLOW_TASK: string;
  IRONFLOW_TASK_DIR: string;
  IRONFLOW_ACTION?: string;
}

export const LOG_FLUSH_MS = 500;
export const LOG_FLUSH_BYTES = 64 * 1024;
/** largest PUT (the server takes up to 4 MiB) */
const LOG_MAX_PUT = 1024 * 1024;
/** output kept while the server cannot be reached; beyond it output is dropped and the gap marked */
const LOG_MAX_PENDING = 16 * 1024 * 1024;

/** Streams output to PUT /jobs/{uuid}/log, in order, one request at a time. */
export class LogSink {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private dropped = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(private readonly http: AgentHttp, private readonly job: string) {}

  write(data: Buffer | string): void {
    const b = typeof data === 'string' ? Buffer.from(data) : data;
    if (this.pendingBytes + b.length > LOG_MAX_PENDING) {
      this.dropped += b.length;
      return;
    }
    this.pending.push(b);
    this.pendingBytes += b.length;
    if (this.pendingBytes >= LOG_FLUSH_BYTES) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), LOG_FLUSH_MS);
  }

  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.flushing = this.flushing.then(() => this.send());
    return this.flushing;
  }

  private async send(): Promise<void> {
    while (this.pendingBytes > 0 || this.dropped > 0) {
      if (this.dropped > 0) {
        this.pending.push(Buffer.from(`\n[ironflow agent: ${this.dropped} bytes of output dropped while the server was unreachable]\n`));
        this.pendingBytes += this.pending[this.pending.length - 1]!.length;
        this.dropped = 0;
      }
      const all = Buffer.concat(this.pending);
      const chunk = all.subarray(0, LOG_MAX_PUT);
      this.pending = chunk.length < all.length ? [all.subarray(chunk.length)] : [];
      this.pendingBytes = all.length - chunk.length;
      try {
        await this.http.call('PUT', `/jobs/${this.job}/log`, chunk, 'application/octet-stream');
      } catch {
        return; // stopping
      }
    }
  }

  async close(): Promise<void> {
    await this.flush();
  }
}

/** The interpreter line of a script: `#!/bin/bash -e` → ['/bin/bash', '-e'] (Linux passes the rest as one argument). */
export function interpreterOf(content: string): string[] {
  if (!content.startsWith('#!')) return ['/bin/sh'];
  const line = content.slice(2, content.indexOf('\n') < 0 ? undefined : content.indexOf('\n')).trim();
  const sp = line.search(/\s/);
  if (line === '') return ['/bin/sh'];
  return sp < 0 ? [line] : [line.slice(0, sp), line.slice(sp).trim()];
}

/** A file name for an action's script inside the task directory. */
function scriptName(i: number, name: string): string {
  return `${String(i).padStart(2, '0')}-${name.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 100) || 'script'}`;
}

export function freshTaskDir(workDir: string, job: string): string {
  const dir = join(workDir, 'jobs', job);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

export interface RunningScript {
  done: Promise<number | null>;
  kill(): void;
}

/** Writes a `path` action (relative paths land in the task directory). */
export function writeActionFile(dir: string, action: RenderedAction): string {
  const target = isAbsolute(action.path) ? action.path : join(dir, action.path);
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, action.content, { mode: action.meta?.mode ? parseInt(action.meta.mode, 8) : 0o644 });
  return target;
}

/** Starts one script; resolves with its exit code (null when killed by a signal). */
export function startScript(dir: string, i: number, action: RenderedAction, env: ScriptEnv, sink: LogSink): RunningScript {
  const file = join(dir, scriptName(i, action.name));
  writeFileSync(file, action.content, { mode: 0o700 });
  chmodSync(file, 0o700);
  const [interpreter, ...args] = interpreterOf(action.content);
  const child = spawn(interpreter!, [...args, file], {
    cwd: dir,
    env: { ...process.env, ...env, IRONFLOW_ACTION: action.name },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // own process group: kill() reaches whatever the script started
  });
  child.stdout.on('data', (d: Buffer) => sink.write(d));
  child.stderr.on('data', (d: Buffer) => sink.write(d));
  const done = new Promise<number | null>((resolve) => {
    child.on('error', (err) => {
      sink.write(`[ironflow agent: cannot run ${action.name} with ${interpreter}: ${err.message}]\n`);
      resolve(127);
    });
    child.on('close', (code) => resolve(code));
  });
  return {
    done,
    kill: () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
    },
  };
}
