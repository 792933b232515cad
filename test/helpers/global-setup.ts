// One redis-server for the whole test run; each test file uses its own key prefix (test/helpers/redis.ts).
import type { TestProject } from 'vitest/node';
import { requirePrograms } from './peers.js';
import { startRedis, type TestRedis } from './redis-server.js';

let redis: TestRedis | undefined;

export async function setup(project: TestProject): Promise<void> {
  requirePrograms('redis-server');
  redis = await startRedis();
  project.provide('redisUrl', redis.url);
}

export async function teardown(): Promise<void> {
  await redis?.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}
