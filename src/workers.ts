// The worker role: starts every BullMQ worker and background loop; each returns its closer.
import { startBmcWorker } from './jobs/bmc-worker.js';
import type { Services } from './services.js';

export type Closer = () => Promise<void>;
type WorkerStarter = (s: Services) => Promise<Closer>;

/** Every worker of the worker role; a module adds its starter here. */
const starters: WorkerStarter[] = [(s) => startBmcWorker(s)];

export async function startWorkers(s: Services): Promise<Closer[]> {
  const closers: Closer[] = [];
  for (const start of starters) closers.push(await start(s));
  return closers;
}
