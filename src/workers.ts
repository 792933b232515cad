// The worker role: starts every BullMQ worker and background loop; each returns its closer.
import { startMachineEvents } from './events/machine-events.js';
import { startRetention } from './events/retention.js';
import { startWebhookMatcher } from './events/webhooks.js';
import { startBmcWorker } from './jobs/bmc-worker.js';
import { startRunner } from './jobs/runner.js';
import { startWebhookWorker } from './jobs/webhook-worker.js';
import type { Services } from './services.js';

export type Closer = () => Promise<void>;
type WorkerStarter = (s: Services) => Promise<Closer>;

/** Every worker of the worker role; a module adds its starter here. */
const starters: WorkerStarter[] = [
  (s) => startBmcWorker(s),
  (s) => startRunner(s),
  (s) => startMachineEvents(s),
  (s) => startRetention(s),
  (s) => startWebhookMatcher(s),
  (s) => startWebhookWorker(s),
];

export async function startWorkers(s: Services): Promise<Closer[]> {
  const closers: Closer[] = [];
  for (const start of starters) closers.push(await start(s));
  return closers;
}
