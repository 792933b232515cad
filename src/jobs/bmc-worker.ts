// The BMC request worker (SPEC 6): a BullMQ Worker on the `bmc` queue that runs requests through the
// request service, and a periodic sweep that fails requests left unfinished past their deadline.
import { Worker, type Job } from 'bullmq';
import { BmcRequests, type BmcRequest, type BmcRequestOptions } from '../bmc/requests.js';
import type { Services } from '../services.js';
import type { Enqueue } from './queue-client.js';
import { QueueNames, queuePrefix } from './queues.js';

export interface BmcJobData {
  machine: string;
  id: string;
}

/** Attempts for infrastructure failures only (Redis down, a crash): BMC errors are retried inside the job. */
const JOB_ATTEMPTS = 3;

/** The enqueue side, for the API: one job per request, the request id as job id (duplicates are absorbed). */
export function bmcRequestEnqueuer(queues: Enqueue): (req: BmcRequest) => Promise<void> {
  return async (req) => {
    const data: BmcJobData = { machine: req.machine, id: req.id };
    await queues.add(QueueNames.bmc, 'request', data, { jobId: req.id, attempts: JOB_ATTEMPTS, backoff: { type: 'exponential', delay: 2000 } });
  };
}

/** The request service wired to the services (API and worker build the same one). */
export function bmcRequestService(s: Services, opts: BmcRequestOptions = {}): BmcRequests {
  return new BmcRequests({ store: s.store, params: s.params, redis: s.redis, keys: s.keys, log: s.log, bus: s.bus, timeline: s.timeline, enqueue: bmcRequestEnqueuer(s.queues) }, opts);
}

export interface BmcWorkerOptions extends BmcRequestOptions {
  concurrency?: number;
  /** how often overdue requests are looked for */
  sweepIntervalMs?: number;
}

export async function startBmcWorker(s: Services, opts: BmcWorkerOptions = {}): Promise<() => Promise<void>> {
  const requests = bmcRequestService(s, opts);
  const log = s.log.child({ worker: 'bmc' });
  const worker = new Worker<BmcJobData>(
    QueueNames.bmc,
    async (job: Job<BmcJobData>) => {
      const t0 = performance.now();
      let ok = false;
      try {
        const r = await requests.execute(job.data.machine, job.data.id);
        ok = true;
        if (r?.state === 'succeeded' || r?.state === 'failed') s.metrics.bmcRequest(r.parameters.action, r.state === 'succeeded');
        return r?.state ?? 'gone';
      } finally {
        s.metrics.observeJob(QueueNames.bmc, performance.now() - t0, ok);
      }
    },
    {
      connection: s.connect({ blocking: true, name: 'ironflow-bmc-worker' }),
      prefix: queuePrefix(s.config.redisPrefix),
      concurrency: opts.concurrency ?? 20,
    },
  );
  worker.on('error', (err) => log.warn({ err: err.message }, 'bmc worker problem'));
  worker.on('failed', (job, err) => {
    if (!job || job.attemptsMade < (job.opts.attempts ?? 1)) return;
    void requests.failIfUnfinished(job.data.machine, job.data.id, `failed: the worker could not run the request: ${err.message}`)
      .catch((e: Error) => log.warn({ err: e.message, request: job.data.id }, 'could not record a failed bmc request'));
  });

  let sweeping: Promise<unknown> | undefined;
  const timer = setInterval(() => {
    if (sweeping) return;
    sweeping = requests.expireOverdue()
      .then((n) => n > 0 && log.info({ expired: n }, 'bmc requests failed after their deadline'))
      .catch((err: Error) => log.warn({ err: err.message }, 'bmc deadline sweep failed'))
      .finally(() => (sweeping = undefined));
  }, opts.sweepIntervalMs ?? 5000);
  timer.unref();

  return async () => {
    clearInterval(timer);
    await worker.close();
    await sweeping;
  };
}
