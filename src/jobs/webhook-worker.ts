// The BullMQ side of webhook delivery (SPEC 7.4): a `drain` job sends one subscription's queued events
// (events/webhooks.ts); when the head must be retried later the job moves itself to delayed until then,
// so a failing receiver holds no worker slot, and the delay survives worker restarts.
import { DelayedError, Worker } from 'bullmq';
import { WebhookDeliverer, type DeliveryOptions } from '../events/webhooks.js';
import type { Services } from '../services.js';
import { QueueNames, queuePrefix } from './queues.js';

export interface WebhookWorkerOptions extends DeliveryOptions {
  concurrency?: number;
}

export async function startWebhookWorker(s: Services, opts: WebhookWorkerOptions = {}): Promise<() => Promise<void>> {
  const deliverer = new WebhookDeliverer(s, opts);
  const connection = s.connect({ blocking: true, name: 'ironflow-webhooks' });
  let stopping = false;
  const worker = new Worker(QueueNames.webhooks, async (job, token) => {
    const { name, resumed } = job.data as { name: string; resumed?: boolean };
    const t0 = performance.now();
    const res = await deliverer.drain(name, `job-${job.id ?? ''}`, { stopping: () => stopping, resumed }).catch((err: unknown) => {
      s.metrics.observeJob(QueueNames.webhooks, performance.now() - t0, false);
      throw err;
    });
    s.metrics.observeJob(QueueNames.webhooks, performance.now() - t0, res.retryAt === undefined); // a retry later is a failed delivery now
    if (res.retryAt !== undefined) {
      if (!resumed) await job.updateData({ name, resumed: true });
      await job.moveToDelayed(res.retryAt, token);
      throw new DelayedError();
    }
  }, { connection, prefix: queuePrefix(s.config.redisPrefix), concurrency: opts.concurrency ?? 20 });
  worker.on('error', (err) => s.log.warn({ err: err.message }, 'webhook worker problem'));
  await worker.waitUntilReady();
  return async () => {
    stopping = true;
    await worker.close();
    connection.disconnect();
  };
}
