// Per-address rate limits on the unauthenticated boot paths (SPEC 10): they trip, other clients keep
// being served meanwhile, and they recover.
import { createSocket } from 'node:dgram';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RateLimits } from '../../src/auth/rate-limit.js';
import { startBootTftp } from '../../src/boot/tftp-server.js';
import type { TftpServer } from '../../src/boot/tftp.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
let tftp: TftpServer;
beforeAll(async () => {
  t = await createTestApp();
  await t.app.ready();
  tftp = await startBootTftp(t.app.bootFiles, { ...t.services.config, host: '127.0.0.1', tftpPort: 0 }, pino({ level: 'silent' }));
});
afterAll(async () => {
  await tftp?.close();
  await t.close();
});

/** One RRQ from a given loopback source address; resolves with the TFTP error code (or -1 for data). */
function rrq(from: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    const timer = setTimeout(() => { sock.close(); reject(new Error('no answer')); }, 3000);
    sock.on('message', (msg) => {
      clearTimeout(timer);
      sock.close();
      resolve(msg.readUInt16BE(0) === 5 ? msg.readUInt16BE(2) : -1);
    });
    sock.bind(0, from, () => sock.send(Buffer.from(`\0\x01${path}\0octet\0`, 'latin1'), tftp.port, '127.0.0.1'));
  });
}

describe('boot rate limits', () => {
  it('HTTP /boot: one address is limited (429, Retry-After), others are served, then it recovers', async () => {
    const get = (ip: string) => t.app.inject({ method: 'GET', url: '/boot/no-such-file.ipxe', remoteAddress: ip });
    const codes: number[] = [];
    let limited;
    while (codes.length < 2000) {
      const res = await get('10.7.0.1');
      codes.push(res.statusCode);
      if (res.statusCode !== 404) { limited = res; break; }
    }
    expect(codes.length).toBeGreaterThan(RateLimits.boot.burst);
    expect(limited?.statusCode).toBe(429);
    expect(limited?.headers['retry-after']).toBeDefined();
    expect((await get('10.7.0.2')).statusCode).toBe(404);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await get('10.7.0.1')).statusCode).toBe(404);
  });

  it('TFTP: one address gets "rate limited" (error 0) while another is still answered', async () => {
    const answers: number[] = [];
    while (answers.length < 2000 && answers.at(-1) !== 0) answers.push(await rrq('127.0.0.2', 'no-such-file'));
    expect(answers.length).toBeGreaterThan(RateLimits.boot.burst);
    expect(answers.slice(0, RateLimits.boot.burst)).toEqual(Array(RateLimits.boot.burst).fill(1));
    expect(answers.at(-1)).toBe(0);
    expect(await rrq('127.0.0.3', 'no-such-file')).toBe(1);
    await new Promise((r) => setTimeout(r, 1100));
    expect(await rrq('127.0.0.2', 'no-such-file')).toBe(1);
  });
});
