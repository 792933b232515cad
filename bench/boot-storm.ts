// boot-storm (BENCH.md): N machines; 50 connections fetch /boot/<mac>.ipxe for random machines, against
// the same process serving a constant body of the same size; then the same files over TFTP with 200
// concurrent clients at blksize 1468. A/B rounds interleaved, medians reported.
import { httpLoad } from './http-load.js';
import { api, load, median, pct, type Row, type Server } from './lib.js';
import { tftpGet, tftpStats } from './tftp-client.js';

const mac = (i: number) => `02:00:${[i >> 24, i >> 16, i >> 8, i].map((b) => (b & 255).toString(16).padStart(2, '0')).join(':')}`;

export async function bootStorm(s: Server, n: number, opts: { rounds: number; seconds: number; tftpFiles: number }): Promise<Row[]> {
  await load(n, 32, async (i) => { await api(s, 'POST', '/machines', { name: `boot${i}`, hardwareAddrs: [mac(i)] }); });
  const sample = await fetch(`${s.url}/boot/${mac(0)}.ipxe`);
  if (!sample.ok) throw new Error(`/boot/${mac(0)}.ipxe → ${sample.status}`);
  const bytes = (await sample.arrayBuffer()).byteLength;
  const bootPath = () => `/boot/${mac(Math.floor(Math.random() * n))}.ipxe`;
  const constPath = () => `/bench/constant?bytes=${bytes}`;
  const boot: number[] = [];
  const base: number[] = [];
  const bootLat: number[] = [];
  const baseLat: number[] = [];
  let errors = 0;
  for (let r = 0; r < opts.rounds; r++) {
    const a = await httpLoad(s.url, { connections: 50, seconds: opts.seconds, path: bootPath });
    const b = await httpLoad(s.url, { connections: 50, seconds: opts.seconds, path: constPath });
    boot.push(a.rps);
    base.push(b.rps);
    bootLat.push(...a.latencies);
    baseLat.push(...b.latencies);
    errors += a.errors + b.errors;
  }
  if (errors > 0) throw new Error(`boot-storm: ${errors} failed requests`);
  const tftpPort = s.tftpPort;
  let tftpRate = NaN;
  const resent = tftpStats.retransmits;
  if (tftpPort) {
    const t0 = performance.now();
    await load(opts.tftpFiles, 200, async () => { await tftpGet('127.0.0.1', tftpPort, `${mac(Math.floor(Math.random() * n))}.ipxe`); });
    tftpRate = opts.tftpFiles / ((performance.now() - t0) / 1000);
  }
  const ratio = median(boot) / median(base);
  const p99 = pct(bootLat, 99);
  console.log(`boot-storm: ${n} machines, ${bytes}-byte iPXE files; boot ${median(boot).toFixed(0)} req/s vs constant ${median(base).toFixed(0)} req/s (rounds ${boot.map((x) => x.toFixed(0)).join('/')} vs ${base.map((x) => x.toFixed(0)).join('/')}); constant p99 ${pct(baseLat, 99).toFixed(1)} ms; TFTP ${opts.tftpFiles} files, ${tftpStats.retransmits - resent} client retransmissions`);
  return [
    { name: 'boot-storm', metric: 'HTTP req/s', value: median(boot), baseline: median(base), ratio, target: '≥ 0.6', pass: ratio >= 0.6 },
    { name: 'boot-storm', metric: 'HTTP p99 ms', value: p99, baseline: pct(baseLat, 99), ratio: p99 / pct(baseLat, 99), target: '≤ 20 ms', pass: p99 <= 20 },
    { name: 'boot-storm', metric: 'TFTP files/s (200 clients)', value: tftpRate, baseline: null, ratio: null, target: '≥ 2000', pass: tftpRate >= 2000 },
  ];
}
