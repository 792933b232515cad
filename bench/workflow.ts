// workflow (BENCH.md): N machines each run a 10-task server-side workflow at once (sim BMC: next boot
// pxe, power cycle, 8 no-op steps) against raw BullMQ running N chains of 10 no-op jobs on the same
// Redis. Tasks/s of each, their ratio; every workflow must finish with exactly 10 finished jobs.
import { Queue, Worker } from 'bullmq';
import { api, load, redisClient, type Row, type Server } from './lib.js';

const NOOPS = 8;

async function count(s: Server, path: string): Promise<number> {
  const res = await api(s, 'HEAD', path);
  return Number(res.headers.get('x-total-count') ?? 0);
}

async function ironflowRun(s: Server, n: number, run: number): Promise<{ tasksPerSecond: number; seconds: number }> {
  const wf = `bench-wf-${run}`;
  const uuids: string[] = [];
  await load(n, 32, async (i) => {
    const res = await api(s, 'POST', '/machines', { name: `wf${run}-${i}`, workflow: wf, runnable: false, params: { 'bmc/driver': 'sim' } });
    uuids[i] = ((await res.json()) as { uuid: string }).uuid;
  });
  const t0 = performance.now();
  await load(n, 32, async (i) => {
    await api(s, 'PATCH', `/machines/${uuids[i]}`, { runnable: true });
  });
  for (;;) {
    if ((await count(s, `/machines?workflow=${wf}&workflowComplete=true`)) === n) break;
    if (performance.now() - t0 > 600_000) throw new Error('workflow bench: not every workflow finished within 10 minutes');
    await new Promise((r) => setTimeout(r, 100));
  }
  const seconds = (performance.now() - t0) / 1000;
  const jobs = await count(s, `/jobs?workflow=${wf}`);
  const finished = await count(s, `/jobs?workflow=${wf}&state=finished`);
  if (jobs !== n * (NOOPS + 2) || finished !== jobs) throw new Error(`workflow bench: ${jobs} jobs (${finished} finished) for ${n} machines × ${NOOPS + 2} tasks: a task ran twice or not at all`);
  return { tasksPerSecond: (n * (NOOPS + 2)) / seconds, seconds };
}

/** Raw BullMQ: N chains of 10 no-op jobs; each job adds the next of its chain when it runs. */
async function bullmqRun(s: Server, n: number, run: number, concurrency: number): Promise<{ tasksPerSecond: number; seconds: number }> {
  const connection = redisClient(s);
  const workerConnection = redisClient(s);
  (workerConnection.options as { maxRetriesPerRequest: number | null }).maxRetriesPerRequest = null;
  const name = `bench-chains-${run}`;
  const queue = new Queue(name, { connection, prefix: '{bench-q}' });
  const steps = NOOPS + 2;
  let done = 0;
  let finish!: () => void;
  const all = new Promise<void>((r) => (finish = r));
  const worker = new Worker(name, async (job) => {
    const { chain, step } = job.data as { chain: number; step: number };
    if (step + 1 < steps) await queue.add('step', { chain, step: step + 1 }, { removeOnComplete: true, removeOnFail: true });
    if (++done === n * steps) finish();
  }, { connection: workerConnection, prefix: '{bench-q}', concurrency });
  const t0 = performance.now();
  await queue.addBulk(Array.from({ length: n }, (_, chain) => ({ name: 'step', data: { chain, step: 0 }, opts: { removeOnComplete: true, removeOnFail: true } })));
  await all;
  const seconds = (performance.now() - t0) / 1000;
  await worker.close();
  await queue.obliterate({ force: true }).catch(() => undefined);
  await queue.close();
  connection.disconnect();
  workerConnection.disconnect();
  return { tasksPerSecond: (n * steps) / seconds, seconds };
}

async function setup(s: Server, run: number): Promise<void> {
  const task = (name: string, action: string, args: Record<string, unknown>) => api(s, 'POST', '/tasks', { name: `${name}-${run}`, actions: [{ action, args }] });
  await task('bench-nextboot-pxe', 'bmc.bootDevice', { device: 'pxe' });
  await task('bench-power-cycle', 'bmc.power', { action: 'cycle' });
  for (let i = 0; i < NOOPS; i++) await task(`bench-noop-${i}`, 'wait.seconds', { seconds: 0 });
  const tasks = [`bench-nextboot-pxe-${run}`, `bench-power-cycle-${run}`, ...Array.from({ length: NOOPS }, (_, i) => `bench-noop-${i}-${run}`)];
  await api(s, 'POST', '/stages', { name: `bench-wf-${run}`, tasks });
  await api(s, 'POST', '/workflows', { name: `bench-wf-${run}`, stages: [`bench-wf-${run}`] });
}

/** Interleaved ironflow / raw BullMQ pairs (`rounds` of each), medians reported. */
export async function workflowBench(s: Server, n: number, rounds = 2): Promise<Row[]> {
  const ours: number[] = [];
  const base: number[] = [];
  for (let r = 0; r < rounds; r++) {
    await setup(s, r);
    const a = await ironflowRun(s, n, r);
    const b = await bullmqRun(s, n, r, 50);
    console.log(`workflow round ${r + 1}: ironflow ${a.tasksPerSecond.toFixed(0)} tasks/s (${a.seconds.toFixed(1)} s), raw BullMQ ${b.tasksPerSecond.toFixed(0)} jobs/s (${b.seconds.toFixed(1)} s)`);
    ours.push(a.tasksPerSecond);
    base.push(b.tasksPerSecond);
  }
  const med = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)]!;
  const value = med(ours);
  const baseline = med(base);
  return [{ name: 'workflow', metric: `tasks/s (${n} machines × 10 server tasks)`, value, baseline, ratio: value / baseline, target: '≥ 0.5 of raw BullMQ; all finish; none twice', pass: value / baseline >= 0.5 }];
}
