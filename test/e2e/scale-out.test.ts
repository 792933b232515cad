// Scale-out as a deployment (SPEC 1, 9): 2 `--role api` + 2 `--role worker` processes on one Redis.
// Objects written through api #1 are read through api #2 (and the reverse); a WebSocket client on api #2
// sees what api #1 and the workers produce; boot files of a machine created through api #1 are served by
// api #2 at once; BMC requests are spread over both workers (each worker's own metrics count what it ran);
// a worker stopped with SIGTERM mid-run loses nothing — the other finishes the rest. No sticky state:
// every request may go to either api process.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { adminToken, deployment, metricSum, spawnAll, type Deployment, type IronflowProcess } from '../helpers/processes.js';
import { testRedisUrl } from '../helpers/redis.js';

interface Msg { id: string; type: string; action: string; key: string; object: Record<string, unknown> }

let d: Deployment;
let api1: IronflowProcess;
let api2: IronflowProcess;
let w1: IronflowProcess;
let w2: IronflowProcess;
let token: string;
let ws: WebSocket;
const seen: Msg[] = [];

const call = async (p: IronflowProcess, method: string, path: string, body?: unknown) => {
  const res = await fetch(`${p.url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
};

async function until<T>(what: string, f: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const bmcJobs = async (w: IronflowProcess) => metricSum(await w.metrics(), 'ironflow_job_duration_seconds_count', 'queue="bmc"');

beforeAll(async () => {
  d = deployment(testRedisUrl(), { env: { IRONFLOW_PUBLIC_URL: 'http://ironflow.example:8080' } });
  // api #1 first: it initialises the store (content, admin); the others start in parallel
  api1 = (await spawnAll([{ role: 'api', name: 'api1' }], d))[0]!;
  [api2, w1, w2] = (await spawnAll([{ role: 'api', name: 'api2' }, { role: 'worker', name: 'w1' }, { role: 'worker', name: 'w2' }], d)) as [IronflowProcess, IronflowProcess, IronflowProcess];
  token = await adminToken(api1, d);
  ws = new WebSocket(`${api2.url.replace(/^http/, 'ws')}/api/v1/ws?token=${token}`);
  ws.on('message', (data) => seen.push(JSON.parse(data.toString()) as Msg));
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  ws.send('register *.*.*');
  await until('the register ack', () => seen.some((m) => m.type === 'websocket' && m.action === 'register'));
}, 120_000);

afterAll(async () => {
  ws?.close();
  await Promise.all([api1, api2, w1, w2].map((p) => p?.kill()));
});

describe('2 api + 2 worker processes on one Redis', () => {
  it('objects written through api #1 are read through api #2, and the reverse; tokens work on both', async () => {
    const prof = await call(api1, 'POST', '/profiles', { name: 'rack-scale', params: { rack: 'r1' } });
    expect(prof.status, JSON.stringify(prof.body)).toBe(201);
    const m = await call(api1, 'POST', '/machines', { name: 'scale-1', hardwareAddrs: ['52:54:00:5c:00:01'], profiles: ['rack-scale'] });
    expect(m.status, JSON.stringify(m.body)).toBe(201);
    const read = await call(api2, 'GET', `/machines/${m.body.uuid}`);
    expect(read.status).toBe(200);
    expect(read.body).toEqual(m.body);
    expect((await call(api2, 'GET', '/profiles/rack-scale')).body.params).toEqual({ rack: 'r1' });
    const patched = await call(api2, 'PATCH', `/machines/${m.body.uuid}`, [{ op: 'add', path: '/description', value: 'via api2' }]);
    expect(patched.status, JSON.stringify(patched.body)).toBe(200);
    const back = await call(api1, 'GET', `/machines/name:scale-1`);
    expect(back.body).toMatchObject({ description: 'via api2', revision: 2 });
    expect(back.headers.get('etag')).toBe('"2"');
    // the WebSocket client on api #2 saw api #1's writes
    await until('machines.create on api #2', () => seen.some((e) => e.type === 'machines' && e.action === 'create' && e.key === m.body.uuid));
    await until('profiles.create on api #2', () => seen.some((e) => e.type === 'profiles' && e.key === 'rack-scale'));
    // and the worker-derived timeline entry (machine.created comes from the worker's event consumer)
    await until('timeline machine.created', () => seen.some((e) => e.type === 'timeline' && e.action === 'machine.created' && e.key === m.body.uuid));
  });

  it('boot files of a machine created through api #1 are served by api #2 at once', async () => {
    const mac = '52:54:00:5c:00:02';
    const m = await call(api1, 'POST', '/machines', { name: 'scale-boot', hardwareAddrs: [mac] });
    expect(m.status).toBe(201);
    const [a, b] = await Promise.all([fetch(`${api2.url}/boot/${mac}.ipxe`), fetch(`${api1.url}/boot/${mac}.ipxe`)]);
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    const body = await a.text();
    expect(body).toMatch(/^#!ipxe/);
    expect(body).toBe(await b.text());
    // a MAC change through api #2 is served by api #1 at once
    const mac2 = '52:54:00:5c:00:03';
    expect((await call(api2, 'PATCH', `/machines/${m.body.uuid}`, { hardwareAddrs: [mac2] })).status).toBe(200);
    expect((await fetch(`${api1.url}/boot/${mac2}.ipxe`)).status).toBe(200);
    expect((await fetch(`${api1.url}/boot/${mac}.ipxe`)).status).toBe(404);
  });

  it('BMC requests posted through both api processes are run by both workers; api #2 streams their events', async () => {
    const n = 24;
    const uuids: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await call(i % 2 ? api2 : api1, 'POST', '/machines', { name: `scale-bmc-${i}`, params: { 'bmc/driver': 'sim', 'bmc/sim': { latencyMs: 100 } } });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      uuids.push(r.body.uuid);
    }
    const [before1, before2] = [await bmcJobs(w1), await bmcJobs(w2)];
    const ids = await Promise.all(uuids.map(async (u, i) => {
      const r = await call(i % 2 ? api1 : api2, 'POST', `/machines/${u}/bmc`, { action: 'set_power_state', parameter: 'on' });
      expect(r.status, JSON.stringify(r.body)).toBe(202);
      return r.body.id as string;
    }));
    for (const [i, u] of uuids.entries()) {
      const done = await until(`request ${ids[i]}`, async () => {
        const r = await call(i % 2 ? api2 : api1, 'GET', `/machines/${u}/bmc/${ids[i]}`);
        return r.body.state === 'succeeded' || r.body.state === 'failed' ? r.body : undefined;
      }, 60_000);
      expect(done.state, done.status?.msg).toBe('succeeded');
    }
    const [ran1, ran2] = [(await bmcJobs(w1)) - before1, (await bmcJobs(w2)) - before2];
    console.log(`scale-out: ${n} BMC requests — worker w1 ran ${ran1}, w2 ran ${ran2}`);
    expect(ran1 + ran2).toBe(n);
    expect(ran1).toBeGreaterThan(0);
    expect(ran2).toBeGreaterThan(0);
    // api #2's WebSocket client saw every request finish, whichever api took it and whichever worker ran it
    await until('bmc.succeeded events on api #2', () => ids.every((id) => seen.some((e) => e.type === 'bmc' && e.action === 'succeeded' && (e.object as { id?: string }).id === id)));
    // every process counts the events of all processes (the bus tail)
    for (const p of [w1, w2]) expect(metricSum(await p.metrics(), 'ironflow_cluster_events_total', 'type="bmc"')).toBeGreaterThanOrEqual(n * 3);
  });

  it('SIGTERM of a worker mid-run loses nothing: its running requests finish, the other worker takes the rest', async () => {
    const n = 30;
    const uuids: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await call(api1, 'POST', '/machines', { name: `scale-term-${i}`, params: { 'bmc/driver': 'sim', 'bmc/sim': { latencyMs: 400 } } });
      expect(r.status).toBe(201);
      uuids.push(r.body.uuid);
    }
    const before2 = await bmcJobs(w2);
    const ids: string[] = [];
    for (const [i, u] of uuids.entries()) {
      const r = await call(i % 2 ? api1 : api2, 'POST', `/machines/${u}/bmc`, { action: 'set_power_state', parameter: 'cycle' });
      expect(r.status, JSON.stringify(r.body)).toBe(202);
      ids.push(r.body.id);
      if (i === 9) {
        // w1 has work in hand: stop it now, while the remaining 20 requests are still being posted
        await until('w1 running a request', async () => metricSum(await w1.metrics(), 'ironflow_queue_jobs', 'queue="bmc"', 'state="active"') > 0, 10_000);
        void w1.stop();
      }
    }
    const exit = await w1.exited;
    expect(exit.code, w1.output().slice(-2000)).toBe(0);
    expect(w1.output()).toContain('SIGTERM: shutting down');
    for (const [i, u] of uuids.entries()) {
      const done = await until(`request ${ids[i]}`, async () => {
        const r = await call(api2, 'GET', `/machines/${u}/bmc/${ids[i]}`);
        return r.body.state === 'succeeded' || r.body.state === 'failed' ? r.body : undefined;
      }, 60_000);
      expect(done.state, done.status?.msg).toBe('succeeded');
    }
    const ran2 = (await bmcJobs(w2)) - before2;
    console.log(`scale-out: after SIGTERM of w1, w2 ran ${ran2} of ${n} requests; all ${n} succeeded`);
    expect(ran2).toBeGreaterThan(0);
    expect(ran2).toBeLessThanOrEqual(n);
    // a power cycle is never re-issued: each machine's sim BMC saw exactly one cycle request finish
    for (const u of uuids) {
      const tl = await call(api2, 'GET', `/machines/${u}/events?type=bmc.request&limit=100`);
      expect(tl.body.filter((e: { state: string }) => e.state === 'succeeded')).toHaveLength(1);
    }
  });
});
