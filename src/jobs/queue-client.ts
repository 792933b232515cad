// The producer side of every BullMQ queue, behind a small interface so API-side modules enqueue work
// without importing BullMQ. Queues are opened lazily and share the hash-tagged prefix.
import { Queue, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { defaultJobOptions, queuePrefix, type QueueName } from './queues.js';

export interface Enqueue {
  /** adds a job; a jobId that is already waiting or active is absorbed (BullMQ deduplication) */
  add(queue: QueueName, name: string, data: unknown, opts?: JobsOptions): Promise<string>;
}

export class QueueClient implements Enqueue {
  private readonly queues = new Map<QueueName, Queue>();

  constructor(private readonly connection: Redis, private readonly redisPrefix: string) {}

  queue(name: QueueName): Queue {
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue(name, { connection: this.connection, prefix: queuePrefix(this.redisPrefix), defaultJobOptions });
      this.queues.set(name, q);
    }
    return q;
  }

  async add(queue: QueueName, name: string, data: unknown, opts?: JobsOptions): Promise<string> {
    const job = await this.queue(queue).add(name, data, opts);
    return job.id ?? '';
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    this.queues.clear();
  }
}
