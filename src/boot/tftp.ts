// The TFTP server: request intake on the listening socket and one windowed read transfer per client TID.
import { createSocket, type RemoteInfo, type Socket, type SocketType } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import {
  DEFAULT_BLKSIZE,
  DEFAULT_MAX_WINDOWSIZE,
  MAX_BLKSIZE,
  TftpErrorCode,
  dataHeader,
  decodePacket,
  encodeError,
  encodePacket,
  isSupportedMode,
  negotiateOptions,
  normaliseTftpPath,
  type TftpOptions,
} from './tftp-packets.js';

export { normaliseTftpPath } from './tftp-packets.js';

export interface TftpFile {
  size: number;
  read(offset: number, length: number): Promise<Buffer>;
}
export interface TftpClient {
  address: string;
  port: number;
}
export type TftpResolve = (path: string, client: TftpClient) => Promise<TftpFile | null>;
export interface TftpTransferEvent {
  path: string;
  client: TftpClient;
  bytes: number;
  ok: boolean;
  error?: string;
  ms: number;
}
export interface TftpServerOptions {
  host: string;
  port: number;
  resolve: TftpResolve;
  log: Logger;
  admit?: (client: TftpClient) => boolean;
  timeoutMs?: number;
  maxRetries?: number;
  maxBlksize?: number;
  maxWindowsize?: number;
  maxTransfers?: number;
  onTransfer?: (e: TftpTransferEvent) => void;
}
export interface TftpServer {
  readonly port: number;
  close(): Promise<void>;
  activeTransfers(): number;
}

export function fileFromBuffer(buf: Buffer): TftpFile {
  return { size: buf.length, read: async (offset, length) => buf.subarray(offset, offset + length) };
}

interface Settings {
  type: SocketType;
  host: string;
  resolve: TftpResolve;
  log: Logger;
  timeoutMs: number;
  maxRetries: number;
  maxBlksize: number;
  maxWindowsize: number;
  onTransfer: ((e: TftpTransferEvent) => void) | undefined;
}

interface Ending {
  ok: boolean;
  error?: string;
  /** Best-effort ERROR packet to the client before the socket closes. */
  reply?: Buffer;
}

/** One RRQ: its own socket (the server TID), state in absolute block numbers, wire numbers mod 2^16. */
class Transfer {
  readonly closed: Promise<void>;
  private markClosed!: () => void;
  private socket: Socket | undefined;
  private ended = false;
  private phase: 'starting' | 'oack' | 'data' = 'starting';
  private file: TftpFile | undefined;
  private blksize = DEFAULT_BLKSIZE;
  private windowsize = 1;
  private timeoutMs: number;
  private totalBlocks = 0;
  private acked = 0; // highest block the client confirmed
  private sentMax = 0; // highest block put on the wire so far
  private retries = 0;
  private timer: NodeJS.Timeout | undefined;
  private oack: Buffer | undefined;
  private window: { start: number; end: number; bytes: Buffer } | undefined;
  private readonly started = performance.now();
  private childLog: Logger | undefined;

  /** this transfer's logger, made on first use (most transfers log nothing at the default level) */
  private get log(): Logger {
    this.childLog ??= this.s.log.child({ tftpClient: `${this.client.address}:${this.client.port}`, path: this.path });
    return this.childLog;
  }

  constructor(
    private readonly s: Settings,
    readonly client: TftpClient,
    private readonly path: string,
    private readonly requested: TftpOptions,
    private readonly onDone: (t: Transfer) => void,
  ) {
    this.closed = new Promise((r) => (this.markClosed = r));
    this.timeoutMs = s.timeoutMs;
  }

  async start(): Promise<void> {
    try {
      const socket = createSocket(this.s.type);
      this.socket = socket;
      socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
      socket.on('error', (err) => this.end({ ok: false, error: `socket error: ${err.message}` }));
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(0, this.s.host, () => {
          socket.off('error', reject);
          resolve();
        });
      });
      if (this.ended) return;
      const file = await this.s.resolve(this.path, this.client);
      if (this.ended) return;
      if (!file) return this.end({ ok: false, error: 'file not found', reply: encodeError(TftpErrorCode.FILE_NOT_FOUND, 'file not found') });
      if (!Number.isSafeInteger(file.size) || file.size < 0) throw new Error(`resolver returned invalid size ${file.size}`);
      this.file = file;
      const n = negotiateOptions(this.requested, file.size, { maxBlksize: this.s.maxBlksize, maxWindowsize: this.s.maxWindowsize });
      this.blksize = n.blksize;
      this.windowsize = n.windowsize;
      if (n.timeoutMs !== null) this.timeoutMs = n.timeoutMs;
      // A final block shorter than blksize ends the transfer, so an exact multiple needs an empty one.
      this.totalBlocks = Math.floor(file.size / this.blksize) + 1;
      if (Object.keys(n.accepted).length > 0) {
        this.phase = 'oack';
        this.oack = encodePacket({ op: 'OACK', options: n.accepted });
        this.sendOack();
      } else {
        this.phase = 'data';
        await this.sendWindow();
      }
    } catch (err) {
      this.internalError(err);
    }
  }

  abort(reason: string): void {
    this.end({ ok: false, error: reason, reply: encodeError(TftpErrorCode.NOT_DEFINED, reason) });
  }

  private internalError(err: unknown): void {
    if (this.ended) return;
    this.log.error({ err }, 'tftp transfer failed');
    this.end({ ok: false, error: 'internal error', reply: encodeError(TftpErrorCode.NOT_DEFINED, 'internal error') });
  }

  private onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    if (this.ended) return;
    if (rinfo.address !== this.client.address || rinfo.port !== this.client.port) {
      // RFC 1350 §4: a stray TID gets an error but must not end the transfer in progress.
      this.send(encodeError(TftpErrorCode.UNKNOWN_TID, 'unknown transfer ID'), rinfo);
      return;
    }
    const p = decodePacket(msg);
    if (p?.op === 'ERROR') {
      if (this.phase === 'oack' && p.code === TftpErrorCode.OPTION_REFUSED) {
        this.log.debug({ message: p.message }, 'tftp client refused the options');
        return this.end({ ok: false, error: 'client refused options' });
      }
      return this.end({ ok: false, error: `client error ${p.code}: ${p.message}` });
    }
    if (p?.op !== 'ACK') {
      this.log.debug({ op: p?.op ?? 'malformed' }, 'tftp ignoring unexpected packet');
      return;
    }
    if (this.phase === 'oack') {
      if (p.block !== 0) return;
      this.phase = 'data';
      this.retries = 0;
      void this.sendWindow();
      return;
    }
    if (this.phase !== 'data') return;
    // Only blocks sent but not yet acked count; anything else (notably a repeat of the last ACK)
    // is dropped, which is what prevents the Sorcerer's Apprentice retransmission storm.
    const ahead = (p.block - this.acked) & 0xffff;
    if (ahead === 0 || ahead > this.sentMax - this.acked) return;
    this.acked += ahead;
    this.retries = 0;
    if (this.acked >= this.totalBlocks) return this.end({ ok: true });
    // Go-back-N: an ACK short of the window end means the client lost what followed.
    void this.sendWindow();
  }

  private sendOack(): void {
    if (this.oack) this.send(this.oack);
    this.arm();
  }

  private async sendWindow(): Promise<void> {
    const file = this.file;
    if (!file || this.ended) return;
    clearTimeout(this.timer);
    const start = this.acked + 1;
    const end = Math.min(this.acked + this.windowsize, this.totalBlocks);
    let w = this.window;
    if (!w || w.start !== start || w.end !== end) {
      // Holding exactly one window per transfer bounds memory whatever the file size.
      this.window = undefined;
      const offset = (start - 1) * this.blksize;
      const length = Math.min(end * this.blksize, file.size) - offset;
      let bytes: Buffer;
      try {
        bytes = length > 0 ? await file.read(offset, length) : Buffer.alloc(0);
        if (bytes.length !== length) throw new Error(`read(${offset}, ${length}) returned ${bytes.length} bytes`);
      } catch (err) {
        return this.internalError(err);
      }
      // An ACK that arrived while reading moved the window on; its own sendWindow call wins.
      if (this.ended || this.acked + 1 !== start) return;
      w = { start, end, bytes };
      this.window = w;
    }
    for (let b = w.start; b <= w.end; b++) {
      const from = (b - w.start) * this.blksize;
      this.send([dataHeader(b), w.bytes.subarray(from, Math.min(from + this.blksize, w.bytes.length))]);
    }
    this.sentMax = Math.max(this.sentMax, w.end);
    this.arm();
  }

  private arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.onTimeout(), this.timeoutMs);
  }

  private onTimeout(): void {
    if (this.ended) return;
    if (this.retries >= this.s.maxRetries) {
      this.log.warn({ retries: this.retries, acked: this.acked, phase: this.phase }, 'tftp transfer timed out');
      return this.end({ ok: false, error: 'timeout', reply: encodeError(TftpErrorCode.NOT_DEFINED, 'timeout') });
    }
    this.retries++;
    if (this.phase === 'oack') this.sendOack();
    else if (this.phase === 'data') void this.sendWindow();
  }

  private send(msg: Buffer | Buffer[], to: TftpClient = this.client, cb?: () => void): void {
    try {
      this.socket?.send(msg, to.port, to.address, (err) => {
        if (err) this.log.debug({ err }, 'tftp send failed');
        cb?.();
      });
    } catch (err) {
      this.log.debug({ err }, 'tftp send failed');
      cb?.();
    }
  }

  private end(e: Ending): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    this.window = undefined;
    const bytes = e.ok ? (this.file?.size ?? 0) : Math.min(this.acked * this.blksize, this.file?.size ?? 0);
    const ms = Math.round(performance.now() - this.started);
    if (this.s.log.isLevelEnabled('debug')) this.log.debug({ ok: e.ok, error: e.error, bytes, ms }, 'tftp transfer ended');
    const close = (): void => {
      try {
        this.socket?.close(() => this.markClosed());
        if (!this.socket) this.markClosed();
      } catch {
        this.markClosed(); // already closed by a socket error
      }
    };
    if (e.reply && this.socket) this.send(e.reply, this.client, close);
    else close();
    this.onDone(this);
    try {
      this.s.onTransfer?.({ path: this.path, client: this.client, bytes, ok: e.ok, ...(e.error ? { error: e.error } : {}), ms });
    } catch (err) {
      this.log.error({ err }, 'tftp onTransfer hook threw');
    }
  }
}

export async function startTftpServer(opts: TftpServerOptions): Promise<TftpServer> {
  const log = opts.log;
  const settings: Settings = {
    type: isIPv6(opts.host) ? 'udp6' : 'udp4',
    host: opts.host,
    resolve: opts.resolve,
    log,
    timeoutMs: opts.timeoutMs ?? 1000,
    maxRetries: opts.maxRetries ?? 5,
    maxBlksize: opts.maxBlksize ?? MAX_BLKSIZE,
    maxWindowsize: opts.maxWindowsize ?? DEFAULT_MAX_WINDOWSIZE,
    onTransfer: opts.onTransfer,
  };
  const maxTransfers = opts.maxTransfers ?? 1000;
  // Keyed by client TID so a retransmitted RRQ does not start a second transfer.
  const transfers = new Map<string, Transfer>();
  const sockets = new Set<Promise<void>>();
  const socket = createSocket(settings.type);
  let closing: Promise<void> | undefined;

  const reject = (to: RemoteInfo, code: number, message: string): void => {
    try {
      socket.send(encodeError(code, message), to.port, to.address, () => {});
    } catch {
      // socket closing; the client will time out
    }
  };

  const onRequest = (msg: Buffer, rinfo: RemoteInfo): void => {
    const p = decodePacket(msg);
    if (!p || (p.op !== 'RRQ' && p.op !== 'WRQ')) {
      log.debug({ from: `${rinfo.address}:${rinfo.port}`, op: p?.op ?? 'malformed' }, 'tftp ignoring packet on the request port');
      return;
    }
    const client: TftpClient = { address: rinfo.address, port: rinfo.port };
    const key = `${client.address}:${client.port}`;
    if (transfers.has(key)) return;
    if (p.op === 'WRQ') return reject(rinfo, TftpErrorCode.ACCESS_VIOLATION, 'write requests are refused');
    // Admission first, so a flooding client costs neither path checks nor log lines.
    let admitted = true;
    try {
      admitted = opts.admit?.(client) ?? true;
    } catch (err) {
      log.error({ err }, 'tftp admit hook threw');
      return reject(rinfo, TftpErrorCode.NOT_DEFINED, 'internal error');
    }
    if (!admitted) return reject(rinfo, TftpErrorCode.NOT_DEFINED, 'rate limited');
    const path = normaliseTftpPath(p.filename);
    if (path === null) {
      log.info({ from: key, filename: p.filename }, 'tftp refused path');
      return reject(rinfo, TftpErrorCode.ACCESS_VIOLATION, 'access violation');
    }
    if (!isSupportedMode(p.mode)) return reject(rinfo, TftpErrorCode.ILLEGAL_OPERATION, `unsupported mode ${p.mode}`);
    if (transfers.size >= maxTransfers) {
      log.warn({ from: key, active: transfers.size }, 'tftp transfer limit reached');
      return reject(rinfo, TftpErrorCode.NOT_DEFINED, 'server busy');
    }
    const t = new Transfer(settings, client, path, p.options, (done) => {
      if (transfers.get(key) === done) transfers.delete(key);
    });
    transfers.set(key, t);
    sockets.add(t.closed);
    void t.closed.then(() => sockets.delete(t.closed));
    void t.start();
  };

  socket.on('message', (msg, rinfo) => {
    if (closing) return;
    try {
      onRequest(msg, rinfo);
    } catch (err) {
      log.error({ err }, 'tftp request handling failed');
    }
  });
  await new Promise<void>((resolve, rejectBind) => {
    socket.once('error', (err) => {
      socket.close();
      rejectBind(err);
    });
    socket.bind(opts.port, opts.host, () => {
      socket.removeAllListeners('error');
      socket.on('error', (err) => log.error({ err }, 'tftp socket error'));
      resolve();
    });
  });
  const port = socket.address().port;
  log.info({ host: opts.host, port }, 'tftp server listening');

  return {
    port,
    activeTransfers: () => transfers.size,
    close() {
      closing ??= (async () => {
        const listening = new Promise<void>((r) => socket.close(() => r()));
        for (const t of [...transfers.values()]) t.abort('server shutting down');
        await Promise.all([listening, ...sockets]);
      })();
      return closing;
    },
  };
}
