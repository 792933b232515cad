// The TFTP server against real clients (curl, atftp) and a scripted node:dgram client for the edge cases.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePacket, encodePacket, type TftpOptions, type TftpPacket } from '../../src/boot/tftp-packets.js';
import { fileFromBuffer, startTftpServer, type TftpServer, type TftpServerOptions } from '../../src/boot/tftp.js';
import { requirePrograms } from '../helpers/peers.js';

const HOST = '127.0.0.1';
const log = pino({ level: process.env.TFTP_TEST_LOG ?? 'silent' });
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const files = new Map<string, Buffer>([
  ['empty', Buffer.alloc(0)],
  ['exact512', randomBytes(512)],
  ['one-mib', randomBytes(1 << 20)],
  ['ten-mib', randomBytes(10 << 20)],
  ['mult512', randomBytes(512 * 300)],
  ['mult1468', randomBytes(1468 * 100)],
  ['mult1428x8', randomBytes(1428 * 64)], // also an exact multiple of the 8-block window
  ['dir/small', randomBytes(1500)],
  ['rollover', randomBytes(8 * 65_600 + 3)], // > 65535 blocks at blksize 8
]);
for (let i = 0; i < 100; i++) files.set(`many/${i}`, randomBytes(1 + Math.floor(Math.random() * 200_000)));

type Event = Parameters<NonNullable<TftpServerOptions['onTransfer']>>[0];

async function start(extra: Partial<TftpServerOptions> = {}): Promise<{ server: TftpServer; resolved: string[]; events: Event[] }> {
  const resolved: string[] = [];
  const events: Event[] = [];
  const server = await startTftpServer({
    host: HOST,
    port: 0,
    log,
    resolve: async (path) => {
      resolved.push(path);
      if (path === 'boom') throw new Error('resolver exploded');
      const b = files.get(path);
      return b ? fileFromBuffer(b) : null;
    },
    onTransfer: (e) => events.push(e),
    ...extra,
  });
  return { server, resolved, events };
}

async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function run(cmd: string, args: string[], timeout = 90_000): Promise<{ code: number | string | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout, maxBuffer: 1 << 20 }, (err, _stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number | string }).code ?? null) : 0, stderr: String(stderr) });
    });
  });
}

async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(Array.from({ length: limit }, async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await fn(item);
  }));
}

/** A UDP endpoint that queues decoded packets so a test can script a conversation. */
class Raw {
  readonly sock: Socket = createSocket('udp4');
  private queue: Array<{ p: TftpPacket | null; port: number }> = [];
  private waiter: (() => void) | undefined;
  private sending = new Set<Promise<void>>();

  async open(): Promise<this> {
    this.sock.on('message', (msg, rinfo) => {
      this.queue.push({ p: decodePacket(msg), port: rinfo.port });
      this.waiter?.();
    });
    await new Promise<void>((r) => this.sock.bind(0, HOST, r));
    return this;
  }
  get port(): number {
    return this.sock.address().port;
  }
  send(p: TftpPacket | Buffer, port: number): void {
    const sent = new Promise<void>((r) => this.sock.send(Buffer.isBuffer(p) ? p : encodePacket(p), port, HOST, () => r()));
    this.sending.add(sent);
    void sent.then(() => this.sending.delete(sent));
  }
  async recv(ms = 5000): Promise<{ p: TftpPacket; port: number }> {
    const deadline = Date.now() + ms;
    for (;;) {
      const next = this.queue.shift();
      if (next?.p) return { p: next.p, port: next.port };
      if (next) throw new Error('undecodable packet from the server');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no packet from the server');
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiter = () => (clearTimeout(t), r());
      });
    }
  }
  /** Waits for queued sends first: closing right after send() can silently drop the datagram. */
  async close(): Promise<void> {
    await Promise.all(this.sending);
    await new Promise<void>((r) => this.sock.close(r));
  }
}

interface GetOpts {
  options?: TftpOptions;
  skipAckOnce?: number; // absolute block whose first ACK is "lost"
  dropDataOnce?: number; // absolute block whose first arrival is "lost"
  dupAcks?: boolean;
  onData?: (block: number, serverPort: number, sendRaw: (b: Buffer) => void) => Promise<void>;
}

/** A minimal RFC 7440 receiver: ACK each full window, re-ACK the last good block on any gap. */
async function rawGet(serverPort: number, path: string, o: GetOpts = {}) {
  const c = await new Raw().open();
  try {
    const request: TftpPacket = { op: 'RRQ', filename: path, mode: 'octet', options: o.options ?? {} };
    c.send(request, serverPort);
    const chunks: Buffer[] = [];
    const wire: number[] = [];
    const seen = new Map<number, number>();
    let oack: TftpOptions | null = null;
    let blksize = 512;
    let windowsize = 1;
    let next = 1;
    let inWindow = 0;
    let reAcked = false;
    let skipped = false;
    let dropped = false;
    let tid = 0;
    const ack = (block: number): void => {
      c.send({ op: 'ACK', block: block & 0xffff }, tid);
      if (o.dupAcks) c.send({ op: 'ACK', block: block & 0xffff }, tid);
    };
    for (let tries = 1; ; ) {
      // Like a real client, repeat the request until the server answers: a busy listener may drop it.
      const got = await c.recv(tid === 0 ? 1000 : 5000).catch((err: unknown) => {
        if (tid !== 0 || tries++ >= 5) throw err;
        c.send(request, serverPort);
        return null;
      });
      if (!got) continue;
      const { p, port } = got;
      if (tid === 0) tid = port;
      if (p.op === 'ERROR') return { error: p, data: Buffer.concat(chunks), oack, wire, seen, tid };
      if (p.op === 'OACK' && next === 1) {
        oack = p.options;
        blksize = Number(p.options.blksize ?? 512);
        windowsize = Number(p.options.windowsize ?? 1);
        ack(0);
        continue;
      }
      if (p.op !== 'DATA') throw new Error(`unexpected ${p.op}`);
      const abs = next + ((p.block - next) & 0xffff) - (((p.block - next) & 0xffff) > 0x8000 ? 0x10000 : 0);
      seen.set(abs, (seen.get(abs) ?? 0) + 1);
      if (abs === o.dropDataOnce && !dropped) {
        dropped = true;
        continue;
      }
      if (abs !== next) {
        if (!reAcked) ack(next - 1);
        reAcked = true;
        continue;
      }
      await o.onData?.(abs, port, (b) => c.send(b, port));
      chunks.push(p.data);
      wire.push(p.block);
      next++;
      inWindow++;
      reAcked = false;
      const last = p.data.length < blksize;
      if (last || inWindow === windowsize) {
        inWindow = 0;
        if (abs === o.skipAckOnce && !skipped) skipped = true;
        else ack(abs);
      }
      if (last) return { error: null, data: Buffer.concat(chunks), oack, wire, seen, tid };
    }
  } finally {
    await c.close();
  }
}

async function rawRequest(serverPort: number, p: TftpPacket): Promise<TftpPacket> {
  const c = await new Raw().open();
  try {
    c.send(p, serverPort);
    return (await c.recv()).p;
  } finally {
    await c.close();
  }
}

const rrq = (filename: string, options: TftpOptions = {}, mode = 'octet'): TftpPacket => ({ op: 'RRQ', filename, mode, options });
const peers = requirePrograms('curl', 'atftp');

describe.skipIf(!peers)('tftp server with real clients', () => {
  let s: Awaited<ReturnType<typeof start>>;
  let dir: string;
  beforeAll(async () => {
    s = await start();
    dir = mkdtempSync(join(tmpdir(), 'ironflow-tftp-'));
  });
  afterAll(async () => {
    await s?.server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function curl(path: string, args: string[] = []): Promise<{ code: number | string | null; out: string; stderr: string }> {
    const out = join(dir, `${path.replace(/\//g, '_')}-${randomBytes(4).toString('hex')}`);
    const r = await run('curl', ['-sS', '--max-time', '80', ...args, '-o', out, `tftp://${HOST}:${s.server.port}/${path}`]);
    return { ...r, out };
  }

  const sized = ['empty', 'exact512', 'one-mib', 'ten-mib', 'mult512', 'mult1468', 'mult1428x8'];
  const modes: Array<[string, string[]]> = [['default', []], ['blksize 1468', ['--tftp-blksize', '1468']], ['no options', ['--tftp-no-options']]];
  for (const [mode, args] of modes) {
    it.each(sized)(`curl (${mode}) gets %s byte-identical`, async (name) => {
      const r = await curl(name, args);
      expect(r.code, r.stderr).toBe(0);
      expect(sha(readFileSync(r.out))).toBe(sha(files.get(name)!));
    }, 90_000);
  }

  it('curl gets exit code 68 for a missing file, and the resolver saw the normalised path', async () => {
    const r = await curl('no/such//file');
    expect(r.code).toBe(68);
    expect(s.resolved).toContain('no/such/file');
  });

  it.each(sized)('atftp (blksize 1428, tsize, windowsize 8) gets %s byte-identical', async (name) => {
    const out = join(dir, `atftp-${name}`);
    const r = await run('atftp', ['--option', 'blksize 1428', '--option', 'tsize 0', '--option', 'windowsize 8',
      '-g', '-r', name, '-l', out, HOST, String(s.server.port)]);
    expect(r.code, r.stderr).toBe(0);
    expect(sha(readFileSync(out))).toBe(sha(files.get(name)!));
  }, 90_000);

  it('atftp gets a file of more than 65535 blocks (block numbers roll over)', async () => {
    const out = join(dir, 'atftp-rollover');
    const r = await run('atftp', ['--option', 'blksize 8', '--option', 'windowsize 64', '-g', '-r', 'rollover', '-l', out, HOST, String(s.server.port)]);
    expect(r.code, r.stderr).toBe(0);
    expect(sha(readFileSync(out))).toBe(sha(files.get('rollover')!));
  }, 90_000);

  it('serves 100 concurrent curl transfers byte-identical', async () => {
    const names = [...files.keys()].filter((n) => n.startsWith('many/'));
    expect(names).toHaveLength(100);
    let peak = 0;
    const bad: string[] = [];
    await mapLimit(names, 12, async (name) => {
      const r = await curl(name, name.endsWith('7') ? [] : ['--tftp-blksize', '1468']);
      peak = Math.max(peak, s.server.activeTransfers());
      if (r.code !== 0 || sha(readFileSync(r.out)) !== sha(files.get(name)!)) bad.push(`${name}: ${r.code} ${r.stderr}`);
    });
    expect(bad).toEqual([]);
    expect(s.events.filter((e) => e.path.startsWith('many/') && e.ok)).toHaveLength(100);
    await waitFor(() => s.server.activeTransfers() === 0, 'transfers to drain');
  }, 120_000);

  it('curl upload is refused with an access violation (exit 69)', async () => {
    const src = join(dir, 'upload');
    writeFileSync(src, 'nope');
    const r = await run('curl', ['-sS', '--max-time', '30', '-T', src, `tftp://${HOST}:${s.server.port}/upload`]);
    expect(r.code).toBe(69);
  });
});

describe('tftp server with a scripted client', () => {
  let s: Awaited<ReturnType<typeof start>>;
  const blocked = new Set<number>();
  beforeAll(async () => {
    s = await start({ timeoutMs: 100, maxRetries: 2, admit: (c) => !blocked.has(c.port) });
  });
  afterAll(async () => {
    await s?.server.close();
  });

  it('sends DATA 1 directly without options, 512-byte blocks, from a new TID', async () => {
    const r = await rawGet(s.server.port, 'dir/small');
    expect(r.error).toBeNull();
    expect(r.oack).toBeNull();
    expect(r.wire).toEqual([1, 2, 3]);
    expect(r.tid).not.toBe(s.server.port);
    expect(sha(r.data)).toBe(sha(files.get('dir/small')!));
  });

  it('negotiates options in an OACK and answers tsize with the real size', async () => {
    const r = await rawGet(s.server.port, '/dir//small', { options: { blksize: '100000', tsize: '0', windowsize: '999', foo: 'bar' } });
    expect(r.oack).toEqual({ blksize: '65464', tsize: '1500', windowsize: '64' });
    expect(sha(r.data)).toBe(sha(files.get('dir/small')!));
  });

  it('rolls block numbers over from 65535 to 0', async () => {
    const r = await rawGet(s.server.port, 'rollover', { options: { blksize: '8', windowsize: '64' } });
    expect(r.error).toBeNull();
    expect(r.wire.slice(65534, 65538)).toEqual([65535, 0, 1, 2]);
    expect(sha(r.data)).toBe(sha(files.get('rollover')!));
  }, 60_000);

  it('resends a block whose ACK was lost, then completes', async () => {
    const r = await rawGet(s.server.port, 'dir/small', { skipAckOnce: 1 });
    expect(r.seen.get(1)).toBeGreaterThanOrEqual(2);
    expect(sha(r.data)).toBe(sha(files.get('dir/small')!));
  });

  it('goes back to the block after a partial ACK inside a window', async () => {
    const r = await rawGet(s.server.port, 'mult1428x8', { options: { blksize: '1428', windowsize: '8' }, dropDataOnce: 3 });
    expect(r.seen.get(3)).toBeGreaterThanOrEqual(2);
    expect(sha(r.data)).toBe(sha(files.get('mult1428x8')!));
  });

  it('ignores duplicate ACKs instead of answering each with DATA (Sorcerer’s Apprentice)', async () => {
    // timeout=5 makes a genuine retransmission impossible in a loaded test run, so any repeat is a storm.
    const r = await rawGet(s.server.port, 'mult512', { dupAcks: true, options: { timeout: '5' } });
    expect(sha(r.data)).toBe(sha(files.get('mult512')!));
    expect([...r.seen.values()].filter((n) => n > 1)).toEqual([]);
  });

  it('answers a packet from a wrong TID with ERROR 5 and carries on', async () => {
    let stray: TftpPacket | undefined;
    const r = await rawGet(s.server.port, 'dir/small', {
      onData: async (block, serverPort) => {
        if (block !== 1) return;
        stray = await rawRequest(serverPort, { op: 'ACK', block: 1 });
      },
    });
    expect(stray).toMatchObject({ op: 'ERROR', code: 5 });
    expect(sha(r.data)).toBe(sha(files.get('dir/small')!));
  });

  it.each(['../../etc/passwd', 'a/../../x', '..\\x', '/../x', ''])('refuses %j with ERROR 2 and never resolves it', async (name) => {
    expect(await rawRequest(s.server.port, rrq(name))).toMatchObject({ op: 'ERROR', code: 2 });
    expect(s.resolved.filter((p) => p.split('/').includes('..'))).toEqual([]);
  });

  it('refuses a write request with ERROR 2', async () => {
    expect(await rawRequest(s.server.port, { op: 'WRQ', filename: 'x', mode: 'octet', options: {} }))
      .toEqual({ op: 'ERROR', code: 2, message: 'write requests are refused' });
  });

  it('answers a missing file with ERROR 1 and an unsupported mode with ERROR 4', async () => {
    expect(await rawRequest(s.server.port, rrq('nope'))).toMatchObject({ op: 'ERROR', code: 1, message: 'file not found' });
    expect(await rawRequest(s.server.port, rrq('dir/small', {}, 'mail'))).toMatchObject({ op: 'ERROR', code: 4 });
  });

  it('turns a resolver exception into ERROR 0 "internal error" and keeps serving', async () => {
    expect(await rawRequest(s.server.port, rrq('boom'))).toEqual({ op: 'ERROR', code: 0, message: 'internal error' });
    expect(sha((await rawGet(s.server.port, 'dir/small')).data)).toBe(sha(files.get('dir/small')!));
  });

  it('refuses clients the admit hook rejects with ERROR 0, without a transfer', async () => {
    const c = await new Raw().open();
    blocked.add(c.port);
    const before = s.resolved.length;
    c.send(rrq('dir/small'), s.server.port);
    expect((await c.recv()).p).toEqual({ op: 'ERROR', code: 0, message: 'rate limited' });
    await c.close();
    expect(s.resolved.length).toBe(before);
  });

  it('gives up after maxRetries retransmissions when the client never ACKs', async () => {
    const c = await new Raw().open();
    c.send(rrq('dir/small'), s.server.port);
    const got: TftpPacket[] = [];
    for (let p = (await c.recv()).p; ; p = (await c.recv()).p) {
      got.push(p);
      if (p.op === 'ERROR') break;
    }
    const port = c.port;
    await c.close();
    expect(got.map((p) => p.op)).toEqual(['DATA', 'DATA', 'DATA', 'ERROR']);
    expect(got.at(-1)).toEqual({ op: 'ERROR', code: 0, message: 'timeout' });
    await waitFor(() => s.server.activeTransfers() === 0, 'the transfer to be dropped');
    expect(s.events.find((e) => e.client.port === port)).toMatchObject({ ok: false, error: 'timeout', path: 'dir/small' });
  });

  it('ends quietly when the client refuses the OACK with ERROR 8', async () => {
    const c = await new Raw().open();
    c.send(rrq('dir/small', { blksize: '1024' }), s.server.port);
    const { p, port } = await c.recv();
    expect(p).toEqual({ op: 'OACK', options: { blksize: '1024' } });
    c.send({ op: 'ERROR', code: 8, message: 'no thanks' }, port);
    const me = c.port;
    await waitFor(() => s.events.some((e) => e.client.port === me), 'the transfer to end');
    await c.close();
    expect(s.events.find((e) => e.client.port === me)).toMatchObject({ ok: false, error: 'client refused options' });
    expect(s.server.activeTransfers()).toBe(0);
  });

  it('survives garbage on the request port and on a transfer port', async () => {
    const c = await new Raw().open();
    const junk = [Buffer.alloc(0), Buffer.from([0]), Buffer.from([0, 1, 0x41]), Buffer.from([0, 3, 0, 1, 9]),
      Buffer.from([0, 4, 0, 0]), Buffer.from([0, 6]), ...Array.from({ length: 200 }, () => randomBytes(Math.floor(Math.random() * 600)))];
    for (const j of junk) c.send(j, s.server.port);
    await c.close();
    const r = await rawGet(s.server.port, 'dir/small', {
      onData: async (block, serverPort, sendRaw) => {
        if (block !== 2) return;
        const g = await new Raw().open();
        for (const j of junk) g.send(j, serverPort);
        await g.close();
        // From the client's own TID too; an ERROR would legitimately end the transfer, so none of those.
        for (const j of junk) if (j.length < 2 || j.readUInt16BE(0) !== 5) sendRaw(j);
      },
    });
    expect(sha(r.data)).toBe(sha(files.get('dir/small')!));
  });
});

describe('tftp server limits and shutdown', () => {
  it('ignores a repeated RRQ from the same client TID and refuses others beyond maxTransfers', async () => {
    const s = await start({ maxTransfers: 1, timeoutMs: 60_000 });
    const c = await new Raw().open();
    const me = c.port;
    c.send(rrq('dir/small'), s.server.port);
    c.send(rrq('dir/small'), s.server.port);
    const data: Buffer[] = [];
    let { p, port } = await c.recv();
    expect(p).toMatchObject({ op: 'DATA', block: 1 });
    expect(await rawRequest(s.server.port, rrq('dir/small'))).toEqual({ op: 'ERROR', code: 0, message: 'server busy' });
    for (let block = 1; p.op === 'DATA'; block++) {
      expect(p.block).toBe(block); // a second transfer would show up here as another DATA 1
      data.push(p.data);
      c.send({ op: 'ACK', block }, port);
      if (p.data.length < 512) break;
      ({ p, port } = await c.recv());
    }
    await c.close();
    expect(sha(Buffer.concat(data))).toBe(sha(files.get('dir/small')!));
    await waitFor(() => s.server.activeTransfers() === 0, 'the transfer to finish');
    await s.server.close();
    expect(s.events.filter((e) => e.client.port === me)).toEqual([expect.objectContaining({ ok: true, bytes: 1500 })]);
  });

  it('close() aborts active transfers and releases every socket', async () => {
    const s = await start({ timeoutMs: 60_000 });
    const c = await new Raw().open();
    c.send(rrq('one-mib'), s.server.port);
    expect((await c.recv()).p).toMatchObject({ op: 'DATA', block: 1 });
    expect(s.server.activeTransfers()).toBe(1);
    await s.server.close();
    expect(s.server.activeTransfers()).toBe(0);
    expect((await c.recv()).p).toMatchObject({ op: 'ERROR', code: 0 });
    expect(s.events).toMatchObject([{ ok: false, path: 'one-mib' }]);
    await c.close();
  });
});
