// store-scale (BENCH.md): N machines with 10 params and 2 profiles each, created through the API;
// GET by name and a filtered page of 100, p99; the api process RSS; Redis memory per machine;
// against Redis HGETALL of a 2 KB hash. Also pages through every machine to show listing is bounded.
// The RSS row is the api process at rest, `restSeconds` after the last request: V8 keeps the heap it
// grew under load until its memory reducer runs after some idle seconds (measured at 100,000 machines:
// 564 MB at 5, 10 and 20 s after the load, 261 MB from 30 s on; a heap snapshot holds 120 MB live).
// The RSS right after listing every machine is printed too.
import { api, load, pct, redisClient, type Row, type Server } from './lib.js';

export async function storeScale(s: Server, n: number, restSeconds: number): Promise<Row[]> {
  const r = redisClient(s);
  await api(s, 'POST', '/profiles', { name: 'rack-a', params: { rack: 'a' } });
  await api(s, 'POST', '/profiles', { name: 'role-web', params: { role: 'web' } });
  const memBefore = Number(/used_memory:(\d+)/.exec(await r.info('memory'))![1]);
  const mac = (i: number) => `02:${[i >> 24, i >> 16, i >> 8, i].map((b) => (b & 255).toString(16).padStart(2, '0')).join(':')}:00`;
  const createLat = await load(n, 32, async (i) => {
    const params: Record<string, unknown> = {};
    for (let p = 0; p < 10; p++) params[`param-${p}`] = `value-${p}-${i}`;
    await api(s, 'POST', '/machines', { name: `node${i}`, hardwareAddrs: [mac(i)], address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, profiles: ['rack-a', 'role-web'], params, bootEnv: i % 10 === 0 ? 'ignore' : 'local' });
  });
  const createSeconds = createLat.reduce((a, b) => a + b, 0) / 32 / 1000;
  // The worker derives each machine's timeline entry from the event stream: count it once it has caught up.
  for (let i = 0; i < 600; i++) {
    const groups = (await r.xinfo('GROUPS', '{ironflow}:events')) as unknown[][];
    const field = (g: unknown[], f: string) => Number(g[g.indexOf(f) + 1] ?? 0);
    if (groups.length > 0 && groups.every((g) => field(g, 'lag') === 0 && field(g, 'pending') === 0)) break;
    await new Promise((res) => setTimeout(res, 250));
  }
  // The global event stream holds recent events (capped), not state: measure the store without it.
  const streamBytes = Number((await r.call('MEMORY', 'USAGE', '{ironflow}:events', 'SAMPLES', '0')) ?? 0);
  const memAfter = Number(/used_memory:(\d+)/.exec(await r.info('memory'))![1]);
  const perMachine = (memAfter - memBefore - streamBytes) / n;

  // Page through everything with the default sort: bounded pages, constant memory.
  let listed = 0;
  const pageLat: number[] = [];
  for (let offset = 0; offset < n + 2; offset += 1000) {
    const t0 = performance.now();
    const res = await api(s, 'GET', `/machines?offset=${offset}&limit=1000&slim=params`);
    pageLat.push(performance.now() - t0);
    listed += ((await res.json()) as unknown[]).length;
  }
  if (listed !== n) throw new Error(`listed ${listed} machines, expected ${n}`);
  const rssAfterList = s.rssMb();

  const rounds = 2000;
  const getLat = await load(rounds, 8, async () => { await (await api(s, 'GET', `/machines/name:node${Math.floor(Math.random() * n)}`)).arrayBuffer(); });
  const filterLat = await load(rounds / 4, 8, async (i) => { await (await api(s, 'GET', `/machines?bootEnv=ignore&limit=100&offset=${(i * 100) % Math.max(1, n / 10 - 100)}`)).arrayBuffer(); });

  // Baseline: HGETALL of a 2 KB hash, unpipelined, same concurrency.
  const fields: string[] = [];
  for (let f = 0; f < 20; f++) fields.push(`field${f}`, 'x'.repeat(100));
  await r.hset('bench:hash', ...fields);
  const conns = Array.from({ length: 8 }, () => redisClient(s));
  const baseLat = await load(rounds, 8, async (i) => { await conns[i % 8]!.hgetall('bench:hash'); });
  conns.forEach((c) => c.disconnect());
  r.disconnect();
  await new Promise((res) => setTimeout(res, restSeconds * 1000));
  const rssAtRest = s.rssMb();
  const p99 = (v: number[]) => pct(v, 99);
  console.log(`store-scale: ${n} machines created in ${createSeconds.toFixed(1)} s (${(n / createSeconds).toFixed(0)}/s), listed in ${pageLat.length} pages (page p99 ${p99(pageLat).toFixed(1)} ms), api RSS after listing ${rssAfterList.toFixed(0)} MB, ${restSeconds} s at rest ${rssAtRest.toFixed(0)} MB, event stream ${(streamBytes / 1e6).toFixed(1)} MB excluded`);
  return [
    { name: 'store-scale', metric: 'GET machines/name:x p99 ms', value: p99(getLat), baseline: p99(baseLat), ratio: p99(getLat) / p99(baseLat), target: '≤ 5 ms', pass: p99(getLat) <= 5 },
    { name: 'store-scale', metric: 'filtered page of 100 p99 ms', value: p99(filterLat), baseline: p99(baseLat), ratio: p99(filterLat) / p99(baseLat), target: '≤ 30 ms', pass: p99(filterLat) <= 30 },
    { name: 'store-scale', metric: `api RSS MB (${restSeconds} s at rest)`, value: rssAtRest, baseline: null, ratio: null, target: '≤ 300 MB', pass: rssAtRest <= 300 },
    { name: 'store-scale', metric: 'Redis bytes per machine', value: perMachine, baseline: null, ratio: null, target: '≤ 4096', pass: perMachine <= 4096 },
  ];
}
