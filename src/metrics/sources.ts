// Feeds a process's Metrics from the shared services: the event counter from the bus tail (so every
// process counts the events of all processes), and samplers run on scrape for BullMQ queue depths and
// Redis reachability. Started by whatever serves /metrics (the api route, the metrics port); started
// twice it feeds once.
import { QueueNames } from '../jobs/queues.js';
import type { Services } from '../services.js';
import type { Metrics } from './metrics.js';

const QUEUE_STATES = ['waiting', 'active', 'delayed', 'failed'] as const;

const running = new WeakMap<Metrics, { refs: number; stop: () => void }>();

export function startMetricSources(s: Pick<Services, 'metrics' | 'bus' | 'redis' | 'queues'>): () => void {
  const m = s.metrics;
  const current = running.get(m);
  if (current) {
    current.refs++;
    return once(() => release(m));
  }
  m.enableProcessMetrics();
  const unsubscribe = s.bus.subscribe((e) => m.event(e.type));
  const stopRedis = m.onScrape(() => m.redisUp.set(s.redis.status === 'ready' ? 1 : 0));
  const stopQueues = m.onScrape(async () => {
    if (s.redis.status !== 'ready') return; // do not wait on a Redis that is down: the gauges keep their last values
    await Promise.all(Object.values(QueueNames).map(async (name) => {
      const counts = await s.queues.queue(name).getJobCounts(...QUEUE_STATES);
      for (const state of QUEUE_STATES) m.queueJobs.set({ queue: name, state }, counts[state] ?? 0);
    }));
  });
  running.set(m, { refs: 1, stop: () => { unsubscribe(); stopRedis(); stopQueues(); } });
  return once(() => release(m));
}

function release(m: Metrics): void {
  const r = running.get(m);
  if (!r || --r.refs > 0) return;
  running.delete(m);
  r.stop();
}

function once(f: () => void): () => void {
  let done = false;
  return () => {
    if (!done) {
      done = true;
      f();
    }
  };
}
