// user-state (BENCH.md): N machines; 200 connections POST /events (Equinix user state) for random
// machines, each found by its source address (the bench server trusts 127.0.0.1 as a proxy, so the
// X-Forwarded-For hop is the machine's address) — against Fastify's POST echo of the same body from the
// same process. A/B rounds interleaved, medians. Afterwards the machines' timelines must hold exactly
// as many user.* entries as posts were acknowledged (201).
import { Agent, request } from 'node:http';
import { storeKeys } from '../src/store/keys.js';
import { api, load, median, pct, redisClient, type Row, type Server } from './lib.js';

export interface UserStateOptions {
  rounds: number;
  seconds: number;
  connections: number;
}

/** The bench server must trust the load generator as a proxy. */
export const USER_STATE_ENV = { IRONFLOW_TRUSTED_PROXIES: '127.0.0.1' };

const address = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
const BODY = JSON.stringify({ state: 'running', code: 1000, message: 'installing packages' });

interface PostResult {
  rps: number;
  ok: number;
  failed: number;
  statuses: Record<number, number>;
  latencies: number[];
}

/** Closed loop: `connections` POSTs in flight for `seconds`; `ok` counts responses with status `okStatus`. */
async function postLoad(base: string, path: string, okStatus: number, n: number, o: UserStateOptions): Promise<PostResult> {
  const url = new URL(base);
  const agent = new Agent({ keepAlive: true, maxSockets: o.connections });
  const latencies: number[] = [];
  const statuses: Record<number, number> = {};
  let ok = 0;
  let failed = 0;
  const one = () => new Promise<void>((resolve) => {
    const t0 = performance.now();
    const req = request({
      host: url.hostname, port: url.port, path, method: 'POST', agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BODY), 'x-forwarded-for': address(Math.floor(Math.random() * n)) },
    }, (res) => {
      res.resume();
      res.on('end', () => {
        const code = res.statusCode ?? 0;
        statuses[code] = (statuses[code] ?? 0) + 1;
        if (code === okStatus) ok++;
        else failed++;
        latencies.push(performance.now() - t0);
        resolve();
      });
    });
    req.on('error', () => { failed++; resolve(); });
    req.end(BODY);
  });
  const started = performance.now();
  const deadline = started + o.seconds * 1000;
  await Promise.all(Array.from({ length: o.connections }, async () => { while (performance.now() < deadline) await one(); }));
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  return { rps: ok / elapsed, ok, failed, statuses, latencies };
}

export async function userStateBench(s: Server, n: number, o: UserStateOptions): Promise<Row[]> {
  const uuids: string[] = new Array(n);
  await load(n, 32, async (i) => {
    const res = await api(s, 'POST', '/machines', { name: `us${i}`, address: address(i) });
    uuids[i] = ((await res.json()) as { uuid: string }).uuid;
  });
  const probe = await fetch(`${s.url}/events`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': address(0) }, body: BODY });
  if (probe.status !== 201) throw new Error(`user-state: POST /events from ${address(0)} → ${probe.status} ${await probe.text()} (is IRONFLOW_TRUSTED_PROXIES=127.0.0.1 set?)`);
  let acknowledged = 1;

  const ironflow: number[] = [];
  const echo: number[] = [];
  const lat: number[] = [];
  const echoLat: number[] = [];
  let failed = 0;
  const statuses: Record<number, number> = {};
  for (let r = 0; r < o.rounds; r++) {
    const a = await postLoad(s.url, '/events', 201, n, o);
    const b = await postLoad(s.url, '/bench/echo', 200, n, o);
    ironflow.push(a.rps);
    echo.push(b.rps);
    lat.push(...a.latencies);
    echoLat.push(...b.latencies);
    acknowledged += a.ok;
    failed += a.failed + b.failed;
    for (const [k, v] of Object.entries(a.statuses)) if (Number(k) !== 201) statuses[Number(k)] = (statuses[Number(k)] ?? 0) + v;
  }

  // Every acknowledged post is a user.* entry on its machine's timeline (and nothing else is one).
  const redis = redisClient(s);
  const keys = storeKeys('ironflow');
  let recorded = 0;
  for (let i = 0; i < n; i += 500) {
    const pipe = redis.pipeline();
    for (const u of uuids.slice(i, i + 500)) pipe.xrange(keys.timeline(u), '-', '+');
    for (const [err, rows] of (await pipe.exec()) ?? []) {
      if (err) throw err;
      for (const [, fields] of rows as [string, string[]][]) if (fields[fields.indexOf('type') + 1]?.startsWith('user.')) recorded++;
    }
  }
  redis.disconnect();

  const ratio = median(ironflow) / median(echo);
  console.log(`user-state: ${n} machines, ${o.connections} connections; POST /events ${median(ironflow).toFixed(0)} req/s (p99 ${pct(lat, 99).toFixed(1)} ms) vs echo ${median(echo).toFixed(0)} req/s (p99 ${pct(echoLat, 99).toFixed(1)} ms); rounds ${ironflow.map((x) => x.toFixed(0)).join('/')} vs ${echo.map((x) => x.toFixed(0)).join('/')}; ${acknowledged} acknowledged, ${recorded} on timelines, ${failed} not acknowledged ${JSON.stringify(statuses)}`);
  return [
    { name: 'user-state', metric: 'POST /events req/s', value: median(ironflow), baseline: median(echo), ratio, target: '≥ 0.6', pass: ratio >= 0.6 },
    { name: 'user-state', metric: 'timeline entries = acknowledged posts', value: recorded, baseline: acknowledged, ratio: acknowledged ? recorded / acknowledged : null, target: 'equal', pass: recorded === acknowledged },
  ];
}
