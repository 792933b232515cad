// Redis high availability as a tested deployment. Sentinel: an api and a worker process on
// `REDIS_URL=redis+sentinel://…/mymaster` (primary + 2 replicas, 3 sentinels, AOF appendfsync always,
// IRONFLOW_REDIS_WAIT_REPLICAS=1) take a stream of machine creates; the primary is SIGKILLed mid-run; the
// sentinels promote a replica; requests get 503 meanwhile (never another 5xx), then succeed; every
// acknowledged (201) create is there afterwards, and the worker runs BMC requests again.
// Cluster: a smoke test of `redis+cluster://` with three masters.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminToken, deployment, metricSum, spawnIronflow, type Deployment, type IronflowProcess } from '../helpers/processes.js';
import { startRedisCluster, startSentinelDeployment, type ClusterDeployment, type SentinelDeployment } from '../helpers/sentinel.js';

async function until<T>(what: string, f: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function caller(p: { url: string }, token: string) {
  return async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${p.url}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(20_000),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
}

async function bmcRoundTrip(call: ReturnType<typeof caller>, name: string): Promise<string> {
  const m = await until(`machine ${name}`, async () => {
    const r = await call('POST', '/machines', { name, params: { 'bmc/driver': 'sim' } });
    return r.status === 201 ? r.body : r.status === 409 ? (await call('GET', `/machines/name:${name}`)).body : undefined;
  });
  const req = await until('bmc request accepted', async () => {
    const r = await call('POST', `/machines/${m.uuid}/bmc`, { action: 'set_power_state', parameter: 'on' });
    return r.status === 202 ? r.body : undefined;
  });
  const done = await until('bmc request finished', async () => {
    const r = await call('GET', `/machines/${m.uuid}/bmc/${req.id}`);
    return r.body?.state === 'succeeded' || r.body?.state === 'failed' ? r.body : undefined;
  });
  return done.state;
}

describe('Redis Sentinel: primary killed mid-run', () => {
  let sd: SentinelDeployment;
  let d: Deployment;
  let api: IronflowProcess;
  let worker: IronflowProcess;

  beforeAll(async () => {
    sd = await startSentinelDeployment({ replicas: 2 });
    d = deployment(sd.url, { env: { IRONFLOW_REDIS_WAIT_REPLICAS: '1', IRONFLOW_REDIS_WAIT_TIMEOUT: '1000' } });
    api = await spawnIronflow('api', d, { name: 'api' });
    worker = await spawnIronflow('worker', d, { name: 'worker' });
  }, 120_000);

  afterAll(async () => {
    await Promise.all([api?.kill(), worker?.kill()]);
    await sd?.stop();
  });

  it('503 while the sentinels fail over, then service again; every acknowledged write survives', async () => {
    const call = caller(api, await adminToken(api, d));
    expect(await bmcRoundTrip(call, 'fo-bmc-before')).toBe('succeeded');

    const acked: { name: string; at: number }[] = [];
    const statuses = new Map<number | string, number>();
    let killedAt = 0;
    let first503 = 0;
    let firstOkAfterKill = 0;
    let stop = false;
    let seq = 0;
    const writer = async (w: number) => {
      while (!stop) {
        const name = `fo-${w}-${seq++}`;
        const startedAt = Date.now();
        let status: number | string;
        try {
          status = (await call('POST', '/machines', { name, meta: { writer: String(w) } })).status;
        } catch (err) {
          status = (err as Error).name; // a timeout or a dropped connection: not acknowledged
        }
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        const now = Date.now();
        if (status === 201) {
          acked.push({ name, at: now });
          if (killedAt && startedAt > killedAt && !firstOkAfterKill) firstOkAfterKill = now; // sent after the kill
        } else if (status === 503 && killedAt && !first503) first503 = now;
        else if (status !== 503) await new Promise((r) => setTimeout(r, 50));
      }
    };
    const writers = Array.from({ length: 4 }, (_, w) => writer(w));
    await until('100 acknowledged writes', async () => acked.length >= 100);
    const oldPort = await sd.primaryPort();
    killedAt = Date.now();
    const ackedBeforeKill = acked.length;
    await sd.primary.kill();
    const newPort = await sd.waitForFailover(oldPort);
    const promotedAt = Date.now();
    await until('100 acknowledged writes after the failover', async () => firstOkAfterKill > 0 && acked.filter((a) => a.at > firstOkAfterKill).length >= 100, 45_000);
    stop = true;
    await Promise.all(writers);

    const summary = {
      ackedBeforeKill, ackedAfterKill: acked.length - ackedBeforeKill, statuses: Object.fromEntries(statuses),
      promotedAfterMs: promotedAt - killedAt, first503AfterMs: first503 ? first503 - killedAt : null, firstOkAfterMs: firstOkAfterKill - killedAt, oldPort, newPort,
    };
    console.log(`sentinel failover: ${JSON.stringify(summary)}`);
    // only 201 and 503: never another 5xx, never a hang (a request timeout would show as TimeoutError)
    expect([...statuses.keys()].every((s) => s === 201 || s === 503), JSON.stringify(summary)).toBe(true);
    expect(newPort).not.toBe(oldPort);

    // every acknowledged write is on the new primary, read through the service
    const missing: string[] = [];
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < acked.length) {
        const { name } = acked[next++]!;
        const r = await call('GET', `/machines/name:${name}`);
        if (r.status !== 200) missing.push(`${name}: ${r.status}`);
      }
    }));
    expect(missing, `${missing.length} acknowledged writes lost`).toEqual([]);

    // the worker side continues: BullMQ on the promoted primary
    expect(await bmcRoundTrip(call, 'fo-bmc-after')).toBe('succeeded');
    const m = await api.metrics();
    expect(metricSum(m, 'ironflow_redis_up')).toBe(1);
    expect((await fetch(`${api.url}/healthz`)).status).toBe(200);
  }, 150_000);
});

describe('Redis Cluster: redis+cluster:// smoke test', () => {
  let cluster: ClusterDeployment;
  let all: IronflowProcess;
  let d: Deployment;

  beforeAll(async () => {
    cluster = await startRedisCluster(3);
    d = deployment(cluster.url);
    all = await spawnIronflow('all', d, { name: 'cluster-all' });
  }, 120_000);

  afterAll(async () => {
    await all?.kill();
    await cluster?.stop();
  });

  it('objects, boot files, events, BMC jobs and metrics work on a 3-master cluster', async () => {
    const call = caller(all, await adminToken(all, d));
    const mac = '52:54:00:c1:00:01';
    const m = await call('POST', '/machines', { name: 'cluster-1', hardwareAddrs: [mac] });
    expect(m.status, JSON.stringify(m.body)).toBe(201);
    expect((await call('GET', `/machines/hardwareAddrs:${mac}`)).body.uuid).toBe(m.body.uuid);
    expect((await call('GET', '/machines?name=cluster-1')).body).toHaveLength(1);
    expect((await fetch(`${all.url}/boot/${mac}.ipxe`)).status).toBe(200);
    const tl = await until('machine.created on the timeline', async () => {
      const r = await call('GET', `/machines/${m.body.uuid}/events`);
      return r.body?.some((e: { type: string }) => e.type === 'machine.created') ? r.body : undefined;
    });
    expect(tl.length).toBeGreaterThan(0);
    expect(await bmcRoundTrip(call, 'cluster-bmc')).toBe('succeeded');
    const metrics = await all.metrics();
    expect(metricSum(metrics, 'ironflow_redis_up')).toBe(1);
    expect(metricSum(metrics, 'ironflow_queue_jobs', 'queue="bmc"', 'state="failed"')).toBe(0);
  }, 60_000);
});
