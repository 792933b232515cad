// `ironflow jobs log JOB [--follow]`: prints a job's log as it is (bytes, not JSON). With --follow it
// keeps printing from the last offset until the job has ended and its log is drained, woken by the
// WebSocket (`machine_jobs.log.<machine>` and `jobs.*.<job>`) when one can be opened, else polling
// every --interval seconds.
// (`jobs list` and `jobs show` are the generic object commands.)
import { readFileSync } from 'node:fs';
import { Waker } from '../agent/waker.js';
import { ApiClient, CliError, credentialsPath } from './client.js';

export const JOBS_USAGE = `jobs:
  jobs list [machine=UUID] [state=running] ...    jobs, filtered like any list
  jobs show JOB
  jobs log JOB [--follow] [--interval SECONDS] [--websocket=false]
                                                  the job's log; --follow prints new output until the job ends`;

const ENDED = new Set(['finished', 'failed', 'incomplete']);

function tokenOf(env: NodeJS.ProcessEnv): string | undefined {
  if (env.IRONFLOW_TOKEN) return env.IRONFLOW_TOKEN;
  try {
    return (JSON.parse(readFileSync(credentialsPath(env), 'utf8')) as { token?: string }).token;
  } catch {
    return undefined;
  }
}

/** GET of a log from `offset`: the bytes, the log's size and the job's state. */
async function readFrom(endpoint: string, token: string | undefined, job: string, offset: number): Promise<{ data: Buffer; size: number; state: string }> {
  let res: Response;
  try {
    res = await fetch(`${endpoint}/api/v1/jobs/${encodeURIComponent(job)}/log?offset=${offset}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  } catch (err) {
    throw new CliError(`cannot reach ${endpoint}: ${(err as Error).message}`);
  }
  if (!res.ok) {
    const body = (await res.json().catch(() => ({}))) as { code?: string; message?: string };
    throw new CliError(`${res.status} ${body.code ?? ''}: ${body.message ?? res.statusText}`);
  }
  return { data: Buffer.from(await res.arrayBuffer()), size: Number(res.headers.get('x-log-size') ?? 0), state: res.headers.get('x-job-state') ?? '' };
}

export async function jobsLog(env: NodeJS.ProcessEnv, endpointFlag: string | undefined, args: string[], flags: Record<string, string | undefined>, write: (b: Buffer) => void = (b) => void process.stdout.write(b)): Promise<void> {
  const [job] = args;
  if (!job) throw new CliError('usage: ironflow jobs log JOB [--follow] [--interval SECONDS]', 2);
  const api = new ApiClient(env, endpointFlag);
  const token = tokenOf(env);
  const intervalMs = Math.max(0.05, Number(flags.interval ?? '1')) * 1000;
  if (!Number.isFinite(intervalMs)) throw new CliError('--interval takes a number of seconds', 2);
  let offset = 0;
  const first = await readFrom(api.endpoint, token, job, 0);
  write(first.data);
  offset += first.data.length;
  if (flags.follow !== 'true' || ENDED.has(first.state)) return;
  const { data } = await api.request('GET', `/jobs/${encodeURIComponent(job)}`);
  const { machine = '', uuid = job } = data as { machine?: string; uuid?: string };
  // log chunks come as machine_jobs.log.<machine>; the job's own end as jobs.update.<job>, straight from
  // its commit (the machine_jobs copy of it is made by a worker process, which may be busy or absent)
  const waker = new Waker(api.endpoint, token ?? '', [`machine_jobs.log.${machine}`, `jobs.*.${uuid}`]);
  if (token && flags.websocket !== 'false') await waker.start();
  try {
    for (;;) {
      await waker.wait(waker.connected ? 30_000 : intervalMs);
      const next = await readFrom(api.endpoint, token, job, offset);
      write(next.data);
      offset += next.data.length;
      if (ENDED.has(next.state) && offset >= next.size) return;
    }
  } finally {
    waker.close();
  }
}
