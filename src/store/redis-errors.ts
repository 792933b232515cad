// Telling "Redis is unreachable right now" (retry later, 503) from real failures, across modules.

/** ioredis failures that mean Redis is down or failing over (→ 503 for requests, a retry for work). */
export function isRedisDown(err: unknown): boolean {
  const e = err as { name?: string; message?: string; code?: string } | null;
  if (!e) return false;
  return e.name === 'MaxRetriesPerRequestError' || e.code === 'ECONNREFUSED' || e.code === 'ENOTCONN'
    || /Connection is closed|Stream isn't writeable|connect ECONNREFUSED|LOADING|READONLY|CLUSTERDOWN|MASTERDOWN|max retries per request/i.test(e.message ?? '');
}
