// BullMQ queue names, key prefix and default job options, in one place. The prefix is a hash tag so
// each queue's keys share one Redis Cluster slot.
import type { DefaultJobOptions } from 'bullmq';

export const QueueNames = {
  /** BMC requests (SPEC 6) */
  bmc: 'bmc',
  /** workflow advance jobs, one per machine at a time (SPEC 5.2) */
  advance: 'advance',
  /** webhook deliveries (SPEC 7.4) */
  webhooks: 'webhooks',
} as const;

export type QueueName = (typeof QueueNames)[keyof typeof QueueNames];

export function queuePrefix(redisPrefix: string): string {
  return `{${redisPrefix}-q}`;
}

export const defaultJobOptions: DefaultJobOptions = {
  removeOnComplete: { count: 1000, age: 24 * 3600 },
  removeOnFail: { count: 5000, age: 7 * 24 * 3600 },
};
