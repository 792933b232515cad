// events-query (BENCH.md): E timeline events over N machines, written straight into Redis before the
// server starts (pipelined XADDs with explicit, time-ordered ids into each machine's timeline stream and
// the global stream, with the store's key names and field layout), then time-filtered pages of 100:
// `GET /api/v1/machines/{uuid}/events?since&until&limit=100`, `GET /api/v1/events?since&until&limit=100`
// (and the same with type=user.*), against raw `XREVRANGE … COUNT 100` of the same windows on the same
// stream. Rounds interleave the kinds; each row is the median over rounds of the per-round p99.
//
// The server runs as `--role api`: a worker's exactly-once consumer group would start by deriving from
// the whole (synthetic) history, which is not what this measures.
import { Redis } from 'ioredis';
import { storeKeys } from '../src/store/keys.js';
import { api, load, median, pct, startServer, type Row, type Server } from './lib.js';

export interface EventsQueryOptions {
  machines: number;
  events: number;
  rounds: number;
  /** queries of each kind per round */
  queries: number;
  concurrency: number;
}

export interface EventsSeed {
  uuids: string[];
  /** ms of the first event; event i is at first + i * step */
  first: number;
  step: number;
}

const TYPES = ['user.1000', 'boot.file_served', 'job.running', 'bmc.request'];

/** Writes the events: event i belongs to machine i % N, one ms step apart, ending an hour ago. */
export async function seedEvents(redisUrl: string, o: Pick<EventsQueryOptions, 'machines' | 'events'>): Promise<EventsSeed> {
  const keys = storeKeys('ironflow');
  const redis = new Redis(redisUrl);
  const redis2 = new Redis(redisUrl); // the global stream's pipeline runs beside the timelines'
  const uuids = Array.from({ length: o.machines }, () => crypto.randomUUID());
  const step = 10;
  const first = Date.now() - 3_600_000 - o.events * step;
  const BATCH = 10_000;
  for (let start = 0; start < o.events; start += BATCH) {
    const pipe = redis.pipeline();
    const pipe2 = redis2.pipeline();
    for (let i = start; i < Math.min(o.events, start + BATCH); i++) {
      const ms = first + i * step;
      const id = `${ms}-0`;
      const uuid = uuids[i % o.machines]!;
      const type = TYPES[i % TYPES.length]!;
      const createdAt = new Date(ms).toISOString();
      const body = { code: 1000, message: `event ${i}` };
      pipe.xadd(keys.timeline(uuid), id, 'type', type, 'state', 'running', 'body', JSON.stringify(body), 'createdAt', createdAt);
      pipe2.xadd(keys.events(), id, 'type', 'timeline', 'action', type, 'key', uuid, 'principal', `machine:${uuid}`, 'time', createdAt,
        'object', JSON.stringify({ id, type, state: 'running', body, createdAt, machine: uuid }));
    }
    for (const [err] of (await Promise.all([pipe.exec(), pipe2.exec()])).flatMap((r) => r ?? [])) if (err) throw err;
  }
  redis.disconnect();
  redis2.disconnect();
  return { uuids, first, step };
}

/** A bench server over seeded Redis (api role; the global stream's cap above the seeded size). */
export async function eventsQueryServer(o: EventsQueryOptions): Promise<{ s: Server; seed: EventsSeed }> {
  let seed: EventsSeed | undefined;
  const t0 = performance.now();
  const s = await startServer({
    env: { IRONFLOW_ROLE: 'api', IRONFLOW_EVENTS_MAXLEN: String(Math.max(100_000, o.events * 2)) },
    beforeStart: async (r) => { seed = await seedEvents(r.url, o); },
  });
  console.log(`events-query: ${o.events} events over ${o.machines} machines written in ${((performance.now() - t0) / 1000).toFixed(1)} s (with server start)`);
  return { s, seed: seed! };
}

export async function eventsQueryBench(s: Server, seed: EventsSeed, o: EventsQueryOptions): Promise<Row[]> {
  const n = seed.uuids.length;
  // the machines exist as objects too (the route reads the machine before its timeline)
  await load(n, 32, async (i) => { await api(s, 'POST', '/machines', { uuid: seed.uuids[i], name: `eq${i}` }); });
  const span = o.events * seed.step;
  const iso = (ms: number) => new Date(ms).toISOString();
  const keys = storeKeys('ironflow');
  const conns = Array.from({ length: o.concurrency }, () => new Redis(s.redis.url));
  /** a window of `fraction` of the whole span at a random place */
  const windowOf = (fraction: number) => {
    const len = Math.floor(span * fraction);
    const since = seed.first + Math.floor(Math.random() * (span - len));
    return { since, until: since + len };
  };
  const get = async (path: string) => {
    const res = await fetch(`${s.url}/api/v1${path}`, { headers: { authorization: `Bearer ${s.token}` } });
    if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as { id: string; type: string; machine: string }[];
  };

  // sanity: full pages, inside their window, of the right machine / type
  {
    const w = windowOf(0.1);
    const page = await get(`/events?since=${iso(w.since)}&until=${iso(w.until)}&limit=100`);
    if (page.length !== 100 || page.some((e) => Number(e.id.split('-')[0]) < w.since || Number(e.id.split('-')[0]) >= w.until)) throw new Error('events-query: a global page is not 100 entries inside its window');
    const typed = await get(`/events?since=${iso(w.since)}&until=${iso(w.until)}&limit=100&type=user.*`);
    if (typed.length !== 100 || typed.some((e) => e.type !== 'user.1000')) throw new Error('events-query: a type-filtered page is wrong');
    const m = seed.uuids[0]!;
    const mine = await get(`/machines/${m}/events?since=${iso(seed.first)}&until=${iso(seed.first + span)}&limit=100`);
    if (mine.length !== Math.min(100, Math.ceil(o.events / n)) || mine.some((e) => e.machine !== m)) throw new Error(`events-query: machine page has ${mine.length} entries`);
  }

  // warm-up (JIT, connections): not measured
  await load(Math.min(200, o.queries), o.concurrency, async (i) => {
    const w = windowOf(0.1);
    await (i % 2 ? get(`/events?since=${iso(w.since)}&until=${iso(w.until)}&limit=100`) : get(`/machines/${seed.uuids[i % n]}/events?since=${iso(w.since)}&until=${iso(w.until)}&limit=100`));
    await conns[i % conns.length]!.xrevrange(keys.events(), `(${w.until}-0`, `${w.since}-0`, 'COUNT', 100);
  });

  const machineP99: number[] = [];
  const globalP99: number[] = [];
  const typedP99: number[] = [];
  const rawP99: number[] = [];
  const p50s: Record<string, number[]> = { machine: [], global: [], typed: [], raw: [] };
  const measure = async (kind: string, into: number[], one: (i: number) => Promise<unknown>) => {
    const lat = await load(o.queries, o.concurrency, async (i) => { await one(i); });
    into.push(pct(lat, 99));
    p50s[kind]!.push(pct(lat, 50));
  };
  for (let r = 0; r < o.rounds; r++) {
    await measure('machine', machineP99, () => {
      const w = windowOf(0.6);
      return get(`/machines/${seed.uuids[Math.floor(Math.random() * n)]}/events?since=${iso(w.since)}&until=${iso(w.until)}&limit=100`);
    });
    await measure('global', globalP99, () => {
      const w = windowOf(0.1);
      return get(`/events?since=${iso(w.since)}&until=${iso(w.until)}&limit=100`);
    });
    await measure('typed', typedP99, () => {
      const w = windowOf(0.1);
      return get(`/events?since=${iso(w.since)}&until=${iso(w.until)}&limit=100&type=user.*`);
    });
    await measure('raw', rawP99, (i) => {
      const w = windowOf(0.1);
      return conns[i % conns.length]!.xrevrange(keys.events(), `(${w.until}-0`, `${w.since}-0`, 'COUNT', 100);
    });
  }
  conns.forEach((c) => c.disconnect());
  const raw = median(rawP99);
  const row = (metric: string, v: number[]): Row => ({ name: 'events-query', metric, value: median(v), baseline: raw, ratio: median(v) / raw, target: '≤ 20 ms', pass: median(v) <= 20 });
  console.log(`events-query: ${o.rounds} rounds × ${o.queries} queries per kind at concurrency ${o.concurrency}; p99 per round: machine ${machineP99.map((x) => x.toFixed(1)).join('/')}, global ${globalP99.map((x) => x.toFixed(1)).join('/')}, global type=user.* ${typedP99.map((x) => x.toFixed(1)).join('/')}, raw XREVRANGE ${rawP99.map((x) => x.toFixed(1)).join('/')} ms; median p50 machine ${median(p50s.machine!).toFixed(1)}, global ${median(p50s.global!).toFixed(1)}, typed ${median(p50s.typed!).toFixed(1)}, raw ${median(p50s.raw!).toFixed(1)} ms`);
  return [
    row('machine timeline page of 100 p99 ms', machineP99),
    row('global events page of 100 p99 ms', globalP99),
    row('global page type=user.* p99 ms', typedP99),
  ];
}
