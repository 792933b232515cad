// ws-fanout (BENCH.md): C WebSocket clients each registered on `machine_jobs.*.<its uuid>` plus W on
// `*.*.*`; E job events published through the event bus by P separate producer processes (as a worker
// process publishes them: EventBus.publish → the shared stream → every api process's tail → its hub),
// each event carrying its send time. Baseline: a plain `ws` server in one process broadcasting the same
// frames to the same kind of clients (each event to its keyed client and the W wildcard ones).
//
// Throughput rounds (producers unthrottled) alternate Ironflow / baseline; msgs/s = frames received by all
// clients / (last receive − first send). Latency is measured in one paced round each (the producers at
// a fixed event rate, so queueing behind an unbounded burst is not what is measured): p99 of receive
// time − send time over every frame. Lost = frames expected − frames received (after a quiet period).
//
// This file is also the producer and the baseline server: `node --import tsx bench/ws-fanout.ts producer|baseline`.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import WebSocket, { WebSocketServer } from 'ws';
import { EventBus } from '../src/events/bus.js';
import { SystemPrincipal } from '../src/models/principal.js';
import { storeKeys } from '../src/store/keys.js';
import { median, pct, ROOT, type Row, type Server } from './lib.js';

export interface WsFanoutOptions {
  clients: number;
  wildcards: number;
  events: number;
  producers: number;
  rounds: number;
  /** events/s of the paced latency round (all producers together) */
  pacedRate: number;
}

/**
 * The server under test is an api process: the producer processes stand in for the worker processes that
 * publish job events (a `--role all` process would also run the worker role's consumer groups over the
 * same events, which is not the fan-out being measured).
 */
export const WS_FANOUT_ENV = { IRONFLOW_ROLE: 'api' };

const now = () => performance.timeOrigin + performance.now();
const SELF = fileURLToPath(import.meta.url);

// ---- the child processes -------------------------------------------------------------------------

/** A line protocol over stdin/stdout: the parent sends commands, the child answers one line each. */
function serveCommands(handle: (words: string[]) => Promise<string>): void {
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    void handle(line.trim().split(' ')).then((answer) => process.stdout.write(`${answer}\n`), (err: Error) => process.stdout.write(`error ${err.message}\n`));
  });
  rl.on('close', () => process.exit(0));
}

function eventObject(run: string, seq: number, key: string): Record<string, unknown> {
  return { bench: run, seq, sentAt: now(), uuid: `job-${seq}`, machine: key, state: 'running', task: 'bench:fanout', stage: 'bench', workflow: 'bench' };
}

/** Publishes events i ≡ index (mod producers) for keys[i % keys.length], unthrottled (32 in flight) or paced. */
async function producer(): Promise<void> {
  const [redisUrl = '', keysFile = '', index = '0', producers = '1'] = process.argv.slice(3);
  const keys = JSON.parse(readFileSync(keysFile, 'utf8')) as string[];
  const redis = new Redis(redisUrl);
  const bus = new EventBus(redis, () => redis, storeKeys('ironflow'), 1_000_000);
  serveCommands(async ([cmd, run = '', count = '0', rate = '0']) => {
    if (cmd !== 'run') return `error unknown command ${cmd}`;
    const mine: number[] = [];
    for (let i = Number(index); i < Number(count); i += Number(producers)) mine.push(i);
    const publish = (i: number) => bus.publish({ type: 'machine_jobs', action: 'update', key: keys[i % keys.length]!, object: eventObject(run, i, keys[i % keys.length]!), principal: SystemPrincipal });
    if (Number(rate) === 0) {
      let next = 0;
      await Promise.all(Array.from({ length: 32 }, async () => { while (next < mine.length) await publish(mine[next++]!); }));
    } else {
      const perMs = Number(rate) / Number(producers) / 1000;
      const t0 = performance.now();
      let sent = 0;
      while (sent < mine.length) {
        const due = Math.min(mine.length, Math.floor((performance.now() - t0) * perMs) + 1);
        const batch: Promise<string>[] = [];
        while (sent < due) batch.push(publish(mine[sent++]!));
        await Promise.all(batch);
        await new Promise((r) => setTimeout(r, 2));
      }
    }
    return `done ${run}`;
  });
  process.stdout.write('ready\n');
}

/** The baseline: a plain ws server; clients send `register PATTERN`; `run` broadcasts the same frames. */
async function baselineServer(): Promise<void> {
  const [keysFile = ''] = process.argv.slice(3);
  const keys = JSON.parse(readFileSync(keysFile, 'utf8')) as string[];
  const byKey = new Map<string, Set<WebSocket>>();
  const wildcards = new Set<WebSocket>();
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  wss.on('connection', (ws) => {
    ws.on('message', (data) => {
      const [, pattern = ''] = data.toString().split(' ');
      const key = pattern.split('.').slice(2).join('.');
      if (key === '*') wildcards.add(ws);
      else {
        if (!byKey.has(key)) byKey.set(key, new Set());
        byKey.get(key)!.add(ws);
      }
      ws.send(JSON.stringify({ id: '', type: 'websocket', action: 'register', key: pattern, object: { ok: true } }));
    });
    ws.on('close', () => {
      wildcards.delete(ws);
      for (const set of byKey.values()) set.delete(ws);
    });
  });
  await new Promise((r) => wss.once('listening', r));
  const frame = (run: string, i: number) => {
    const key = keys[i % keys.length]!;
    const s = JSON.stringify;
    return `{"id":${s(`${Date.now()}-${i}`)},"time":${s(new Date().toISOString())},"type":"machine_jobs","action":"update","key":${s(key)},"principal":"system:ironflow","object":${s(eventObject(run, i, key))}}`;
  };
  const send = (run: string, i: number) => {
    const f = frame(run, i);
    for (const ws of byKey.get(keys[i % keys.length]!) ?? []) ws.send(f);
    for (const ws of wildcards) ws.send(f);
  };
  serveCommands(async ([cmd, run = '', count = '0', rate = '0']) => {
    if (cmd !== 'run') return `error unknown command ${cmd}`;
    const n = Number(count);
    if (Number(rate) === 0) {
      for (let i = 0; i < n; i++) {
        send(run, i);
        if (i % 200 === 199) await new Promise((r) => setImmediate(r));
      }
    } else {
      const perMs = Number(rate) / 1000;
      const t0 = performance.now();
      let sent = 0;
      while (sent < n) {
        const due = Math.min(n, Math.floor((performance.now() - t0) * perMs) + 1);
        while (sent < due) send(run, sent++);
        await new Promise((r) => setTimeout(r, 2));
      }
    }
    return `done ${run}`;
  });
  process.stdout.write(`ready ${(wss.address() as { port: number }).port}\n`);
}

// ---- the parent ----------------------------------------------------------------------------------

interface Child {
  proc: ChildProcess;
  /** sends a command line and resolves with the answer line */
  ask(line: string): Promise<string>;
  ready: Promise<string>;
  stop(): Promise<void>;
}

function child(args: string[]): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', SELF, ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: ((l: string) => void)[] = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => lines.shift()?.(l));
  const next = () => new Promise<string>((r) => lines.push(r));
  const ready = next().then((l) => {
    if (!l.startsWith('ready')) throw new Error(`ws-fanout ${args[0]}: ${l}`);
    return l;
  });
  return {
    proc,
    ready,
    async ask(line) {
      const answer = next();
      proc.stdin!.write(`${line}\n`);
      const a = await answer;
      if (a.startsWith('error')) throw new Error(`ws-fanout ${args[0]}: ${a}`);
      return a;
    },
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.stdin!.end();
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** The receiving side: many sockets, one tally per run (frames of other runs and notices ignored). */
class Receivers {
  readonly sockets: WebSocket[] = [];
  run = '';
  received = 0;
  latencies: number[] = [];
  lastAt = 0;
  firstSent = Infinity;
  private acks = 0;

  async connect(url: string, patterns: string[]): Promise<void> {
    let next = 0;
    await Promise.all(Array.from({ length: 50 }, async () => {
      while (next < patterns.length) {
        const pattern = patterns[next++]!;
        const ws = new WebSocket(url, { perMessageDeflate: false });
        this.sockets.push(ws);
        ws.on('message', (data) => this.onMessage(data.toString()));
        await new Promise((res, rej) => ws.once('open', res).once('error', rej));
        ws.send(`register ${pattern}`);
      }
    }));
    const deadline = Date.now() + 30_000;
    while (this.acks < patterns.length) {
      if (Date.now() > deadline) throw new Error(`ws-fanout: only ${this.acks} of ${patterns.length} registrations acknowledged`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private onMessage(text: string): void {
    if (text.includes('"type":"websocket"')) {
      if (text.includes('"action":"register"') && text.includes('"ok":true')) this.acks++;
      return;
    }
    if (!text.includes(`"bench":"${this.run}"`)) return;
    const at = now();
    const i = text.indexOf('"sentAt":');
    const sentAt = parseFloat(text.slice(i + 9, i + 40));
    this.received++;
    this.latencies.push(at - sentAt);
    this.lastAt = at;
    if (sentAt < this.firstSent) this.firstSent = sentAt;
  }

  start(run: string): void {
    this.run = run;
    this.received = 0;
    this.latencies = [];
    this.lastAt = 0;
    this.firstSent = Infinity;
  }

  /** Waits until `expected` frames arrived or nothing arrived for `quietMs`. */
  async settle(expected: number, quietMs = 3000): Promise<void> {
    let seen = -1;
    let since = Date.now();
    while (this.received < expected) {
      if (this.received !== seen) {
        seen = this.received;
        since = Date.now();
      } else if (Date.now() - since > quietMs) return;
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  closed(): number {
    return this.sockets.filter((s) => s.readyState !== WebSocket.OPEN).length;
  }

  close(): void {
    for (const s of this.sockets) s.terminate();
  }
}

interface RoundResult { msgsPerSecond: number; lost: number; p99: number; p50: number }

async function round(recv: Receivers, run: string, expected: number, go: () => Promise<unknown>): Promise<RoundResult> {
  recv.start(run);
  await go();
  await recv.settle(expected);
  const span = (recv.lastAt - recv.firstSent) / 1000;
  return { msgsPerSecond: recv.received / span, lost: expected - recv.received, p99: pct(recv.latencies, 99), p50: pct(recv.latencies, 50) };
}

export async function wsFanoutBench(s: Server, o: WsFanoutOptions): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'ironflow-bench-ws-'));
  const keys = Array.from({ length: o.clients }, () => crypto.randomUUID());
  const keysFile = join(dir, 'keys.json');
  writeFileSync(keysFile, JSON.stringify(keys));
  const patterns = [...keys.map((k) => `machine_jobs.*.${k}`), ...Array.from({ length: o.wildcards }, () => '*.*.*')];
  // each event reaches its keyed client and every wildcard client
  const expected = o.events * (1 + o.wildcards);
  const producers = Array.from({ length: o.producers }, (_, i) => child(['producer', s.redis.url, keysFile, String(i), String(o.producers)]));
  const baseline = child(['baseline', keysFile]);
  const ironRecv = new Receivers();
  const baseRecv = new Receivers();
  try {
    await Promise.all(producers.map((p) => p.ready));
    const basePort = Number((await baseline.ready).split(' ')[1]);
    await ironRecv.connect(`${s.url.replace(/^http/, 'ws')}/api/v1/ws?token=${s.token}`, patterns);
    await baseRecv.connect(`ws://127.0.0.1:${basePort}`, patterns);

    const iron: RoundResult[] = [];
    const base: RoundResult[] = [];
    const produce = (run: string, rate: number) => Promise.all(producers.map((p) => p.ask(`run ${run} ${o.events} ${rate}`)));
    for (let r = 0; r < o.rounds; r++) {
      iron.push(await round(ironRecv, `i${r}`, expected, () => produce(`i${r}`, 0)));
      base.push(await round(baseRecv, `b${r}`, expected, () => baseline.ask(`run b${r} ${o.events} 0`)));
    }
    const ironPaced = await round(ironRecv, 'ip', expected, () => produce('ip', o.pacedRate));
    const basePaced = await round(baseRecv, 'bp', expected, () => baseline.ask(`run bp ${o.events} ${o.pacedRate}`));

    const rate = median(iron.map((x) => x.msgsPerSecond));
    const baseRate = median(base.map((x) => x.msgsPerSecond));
    const lost = [...iron, ironPaced].reduce((a, x) => a + x.lost, 0);
    const ratio = rate / baseRate;
    console.log(`ws-fanout: ${o.clients}+${o.wildcards} clients, ${o.events} events × ${o.rounds} rounds from ${o.producers} producer processes; ironflow ${iron.map((x) => x.msgsPerSecond.toFixed(0)).join('/')} msgs/s (unthrottled p99 ${iron.map((x) => x.p99.toFixed(0)).join('/')} ms) vs ws ${base.map((x) => x.msgsPerSecond.toFixed(0)).join('/')} msgs/s; paced at ${o.pacedRate} events/s: ironflow p50 ${ironPaced.p50.toFixed(1)} / p99 ${ironPaced.p99.toFixed(1)} ms, ws p50 ${basePaced.p50.toFixed(1)} / p99 ${basePaced.p99.toFixed(1)} ms; lost ${lost}, clients closed ${ironRecv.closed()}`);
    return [
      { name: 'ws-fanout', metric: 'messages/s delivered', value: rate, baseline: baseRate, ratio, target: '≥ 0.5', pass: ratio >= 0.5 },
      { name: 'ws-fanout', metric: `p99 delivery ms at ${o.pacedRate} events/s`, value: ironPaced.p99, baseline: basePaced.p99, ratio: ironPaced.p99 / basePaced.p99, target: '≤ 50 ms', pass: ironPaced.p99 <= 50 },
      { name: 'ws-fanout', metric: 'messages lost', value: lost, baseline: null, ratio: null, target: '0', pass: lost === 0 },
    ];
  } finally {
    ironRecv.close();
    baseRecv.close();
    await Promise.all([...producers, baseline].map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === SELF) {
  const mode = process.argv[2];
  if (mode === 'producer') await producer();
  else if (mode === 'baseline') await baselineServer();
  else throw new Error('usage: ws-fanout.ts producer REDIS_URL KEYS_FILE INDEX COUNT | baseline KEYS_FILE');
}
