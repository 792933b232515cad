// `npm run bench [-- name...] [--size tiny|full]`: runs the benchmarks of BENCH.md against a real
// server process and a private redis-server, prints one table and writes bench/results/latest.json.
import { printAndSave, startServer, type Row } from './lib.js';
import { agentBench } from './agent.js';
import { bootStorm } from './boot-storm.js';
import { storeScale } from './store-scale.js';
import { workflowBench } from './workflow.js';

const SIZES = {
  tiny: { storeScale: 300, workflow: 50, agent: 20, boot: { machines: 50, rounds: 1, seconds: 1, tftpFiles: 50 } },
  full: { storeScale: 100_000, workflow: 1000, agent: 500, boot: { machines: 10_000, rounds: 5, seconds: 4, tftpFiles: 4000 } },
} as const;

const benches: Record<string, (size: (typeof SIZES)[keyof typeof SIZES]) => Promise<Row[]>> = {
  'boot-storm': async (size) => {
    const s = await startServer();
    try {
      return await bootStorm(s, size.boot.machines, size.boot);
    } finally {
      await s.stop();
    }
  },
  workflow: async (size) => {
    const s = await startServer();
    try {
      return await workflowBench(s, size.workflow);
    } finally {
      await s.stop();
    }
  },
  agent: async (size) => {
    const s = await startServer();
    try {
      return await agentBench(s, size.agent);
    } finally {
      await s.stop();
    }
  },
  'store-scale': async (size) => {
    const s = await startServer();
    try {
      return await storeScale(s, size.storeScale);
    } finally {
      await s.stop();
    }
  },
};

const args = process.argv.slice(2);
const sizeArg = args.find((a) => a.startsWith('--size='))?.split('=')[1] ?? 'full';
if (!(sizeArg in SIZES)) throw new Error(`--size must be one of ${Object.keys(SIZES).join(', ')}`);
const names = args.filter((a) => !a.startsWith('--'));
for (const n of names) if (!benches[n]) throw new Error(`unknown benchmark ${n}; known: ${Object.keys(benches).join(', ')}`);
const rows: Row[] = [];
for (const name of names.length ? names : Object.keys(benches)) rows.push(...(await benches[name]!(SIZES[sizeArg as keyof typeof SIZES])));
printAndSave(rows, { size: sizeArg });
