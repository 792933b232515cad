// `npm run bench [-- name...] [--size tiny|full]`: runs the benchmarks of BENCH.md against a real
// server process and a private redis-server, prints one table and writes bench/results/latest.json.
import { printAndSave, startServer, type Row, type Server } from './lib.js';
import { bootStorm } from './boot-storm.js';
import { storeScale } from './store-scale.js';
import { workflowBench } from './workflow.js';
import { agentBench } from './agent.js';
import { userStateBench, USER_STATE_ENV } from './user-state.js';
import { wsFanoutBench, WS_FANOUT_ENV } from './ws-fanout.js';
import { eventsQueryBench, eventsQueryServer } from './events-query.js';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SIZES = {
  tiny: { storeScale: { machines: 300, restSeconds: 1 }, userState: { machines: 50, rounds: 1, seconds: 0.3, connections: 20 }, wsFanout: { clients: 20, wildcards: 2, events: 200, producers: 2, rounds: 1, pacedRate: 1000 }, eventsQuery: { machines: 20, events: 8000, rounds: 1, queries: 50, concurrency: 4 }, workflow: 50, agent: 20, boot: { machines: 50, rounds: 1, seconds: 1, tftpFiles: 50 } },
  full: { storeScale: { machines: 100_000, restSeconds: 45 }, userState: { machines: 10_000, rounds: 5, seconds: 4, connections: 200 }, wsFanout: { clients: 1000, wildcards: 10, events: 20_000, producers: 2, rounds: 3, pacedRate: 2000 }, eventsQuery: { machines: 10_000, events: 1_000_000, rounds: 3, queries: 2000, concurrency: 4 }, workflow: 1000, agent: 500, boot: { machines: 10_000, rounds: 5, seconds: 4, tftpFiles: 4000 } },
} as const;

/** Runs one benchmark against a server started for it, and always stops that server. */
async function withServer<T>(server: Promise<Server>, run: (s: Server) => Promise<T>): Promise<T> {
  const s = await server;
  try {
    return await run(s);
  } finally {
    await s.stop();
  }
}

export const benches: Record<string, (size: (typeof SIZES)[keyof typeof SIZES]) => Promise<Row[]>> = {
  'user-state': (size) => withServer(startServer({ env: USER_STATE_ENV }), (s) => userStateBench(s, size.userState.machines, size.userState)),
  'ws-fanout': (size) => withServer(startServer({ env: WS_FANOUT_ENV }), (s) => wsFanoutBench(s, size.wsFanout)),
  'events-query': async (size) => {
    const { s, seed } = await eventsQueryServer(size.eventsQuery);
    return withServer(Promise.resolve(s), () => eventsQueryBench(s, seed, size.eventsQuery));
  },
  'boot-storm': (size) => withServer(startServer(), (s) => bootStorm(s, size.boot.machines, size.boot)),
  // as deployed: BENCH.md bounds the api process; a worker process derives the machines' timelines
  'store-scale': (size) => withServer(startServer({ env: { IRONFLOW_ROLE: 'api' }, workers: 1 }), (s) => storeScale(s, size.storeScale.machines, size.storeScale.restSeconds)),
  workflow: (size) => withServer(startServer(), (s) => workflowBench(s, size.workflow)),
  agent: (size) => withServer(startServer(), (s) => agentBench(s, size.agent)),
};

// Runs only as `tsx bench/run.ts`; test/e2e/bench-tiny.test.ts imports `benches` and `SIZES`.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main(process.argv.slice(2));

async function main(args: string[]): Promise<void> {
  const sizeArg = args.find((a) => a.startsWith('--size='))?.split('=')[1] ?? 'full';
  if (!(sizeArg in SIZES)) throw new Error(`--size must be one of ${Object.keys(SIZES).join(', ')}`);
  const names = args.filter((a) => !a.startsWith('--'));
  for (const n of names) if (!benches[n]) throw new Error(`unknown benchmark ${n}; known: ${Object.keys(benches).join(', ')}`);
  const rows: Row[] = [];
  for (const name of names.length ? names : Object.keys(benches)) rows.push(...(await benches[name]!(SIZES[sizeArg as keyof typeof SIZES])));
  printAndSave(rows, { size: sizeArg });
}
