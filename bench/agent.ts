// agent (BENCH.md): N in-process agents (the Agent class `ironflow agent` runs: real HTTP, WebSocket
// and shell scripts) each run a 5-script workflow (claim, running, actions, log, finished per job),
// against a Fastify hello server answering 5 requests per job with the same concurrency.
import Fastify from 'fastify';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../src/agent/agent.js';
import { api, load, type Row, type Server } from './lib.js';

const STEPS = 5;

async function ironflowRun(s: Server, n: number, run: number): Promise<{ jobsPerSecond: number; seconds: number }> {
  const wf = `bench-agent-${run}`;
  for (let i = 0; i < STEPS; i++) await api(s, 'POST', '/tasks', { name: `${wf}-t${i}`, templates: [{ name: 'step.sh', contents: `#!/bin/sh\necho "step ${i} on {{machine.name}}"\n` }] });
  await api(s, 'POST', '/stages', { name: wf, tasks: Array.from({ length: STEPS }, (_, i) => `${wf}-t${i}`) });
  await api(s, 'POST', '/workflows', { name: wf, stages: [wf] });
  const machines: { uuid: string; token: string }[] = [];
  await load(n, 32, async (i) => {
    const res = await api(s, 'POST', '/machines', { name: `ag${run}-${i}`, workflow: wf, runnable: false });
    const uuid = ((await res.json()) as { uuid: string }).uuid;
    const token = ((await (await api(s, 'GET', `/machines/${uuid}/token?ttl=3600`)).json()) as { token: string }).token;
    machines[i] = { uuid, token };
  });
  const workDir = mkdtempSync(join(tmpdir(), 'ironflow-bench-agent-'));
  const agents = machines.map((m) => new Agent({ endpoint: s.url, machine: m.uuid, token: m.token, workDir, log: () => undefined }));
  const running = agents.map((a) => a.run());
  try {
    await new Promise((r) => setTimeout(r, 1000)); // agents connected and idle
    const t0 = performance.now();
    await load(n, 32, async (i) => {
      await api(s, 'PATCH', `/machines/${machines[i]!.uuid}`, { runnable: true });
    });
    for (;;) {
      const res = await api(s, 'HEAD', `/machines?workflow=${wf}&workflowComplete=true`);
      if (Number(res.headers.get('x-total-count')) === n) break;
      if (performance.now() - t0 > 600_000) throw new Error('agent bench: not every workflow finished within 10 minutes');
      await new Promise((r) => setTimeout(r, 100));
    }
    const seconds = (performance.now() - t0) / 1000;
    const ran = agents.reduce((x, a) => x + a.jobsRun, 0);
    if (ran !== n * STEPS) throw new Error(`agent bench: agents ran ${ran} jobs, expected ${n * STEPS}`);
    return { jobsPerSecond: (n * STEPS) / seconds, seconds };
  } finally {
    agents.forEach((a) => a.stop());
    await Promise.allSettled(running);
    rmSync(workDir, { recursive: true, force: true });
  }
}

/** Baseline: the same number of clients, each doing 5 jobs of 5 sequential requests to a Fastify hello route. */
async function helloRun(n: number): Promise<{ jobsPerSecond: number; seconds: number }> {
  const app = Fastify();
  app.get('/hello', async () => ({ hello: 'world' }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/hello`;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: n }, async () => {
    for (let j = 0; j < STEPS; j++) for (let r = 0; r < 5; r++) await (await fetch(url)).arrayBuffer();
  }));
  const seconds = (performance.now() - t0) / 1000;
  await app.close();
  return { jobsPerSecond: (n * STEPS) / seconds, seconds };
}

export async function agentBench(s: Server, n: number, rounds = 2): Promise<Row[]> {
  const ours: number[] = [];
  const base: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const a = await ironflowRun(s, n, r);
    const b = await helloRun(n);
    console.log(`agent round ${r + 1}: ironflow ${a.jobsPerSecond.toFixed(0)} jobs/s (${a.seconds.toFixed(1)} s), Fastify hello ×5 ${b.jobsPerSecond.toFixed(0)} jobs/s (${b.seconds.toFixed(1)} s)`);
    ours.push(a.jobsPerSecond);
    base.push(b.jobsPerSecond);
  }
  const med = (v: number[]) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)]!;
  const value = med(ours);
  const baseline = med(base);
  return [{ name: 'agent', metric: `jobs/s (${n} agents × ${STEPS} scripts)`, value, baseline, ratio: value / baseline, target: '≥ 0.4 of 5 Fastify hello requests per job', pass: value / baseline >= 0.4 }];
}
