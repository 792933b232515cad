// TFTP wire format (RFC 1350, 2347 OACK) and option negotiation (RFC 2348/2349/7440), pure and I/O-free.

export const Opcode = { RRQ: 1, WRQ: 2, DATA: 3, ACK: 4, ERROR: 5, OACK: 6 } as const;
type OpName = keyof typeof Opcode;

export const TftpErrorCode = {
  NOT_DEFINED: 0,
  FILE_NOT_FOUND: 1,
  ACCESS_VIOLATION: 2,
  DISK_FULL: 3,
  ILLEGAL_OPERATION: 4,
  UNKNOWN_TID: 5,
  FILE_EXISTS: 6,
  NO_SUCH_USER: 7,
  OPTION_REFUSED: 8,
} as const;

export const DEFAULT_BLKSIZE = 512;
export const MIN_BLKSIZE = 8;
export const MAX_BLKSIZE = 65464; // largest payload that still fits an IPv4 UDP datagram with the 4-byte header
export const MAX_WINDOWSIZE = 65535;
export const DEFAULT_MAX_WINDOWSIZE = 64;

/** Option names are lower-cased on decode (RFC 2347: case-insensitive); values are kept verbatim. */
export type TftpOptions = Record<string, string>;

export type TftpPacket =
  | { op: 'RRQ' | 'WRQ'; filename: string; mode: string; options: TftpOptions }
  | { op: 'DATA'; block: number; data: Buffer }
  | { op: 'ACK'; block: number }
  | { op: 'ERROR'; code: number; message: string }
  | { op: 'OACK'; options: TftpOptions };

const opNames = new Map<number, OpName>(Object.entries(Opcode).map(([k, v]) => [v, k as OpName]));

/** Splits a run of NUL-terminated strings; null when the last one is unterminated. */
function cstrings(buf: Buffer, start: number): string[] | null {
  const out: string[] = [];
  let pos = start;
  while (pos < buf.length) {
    const end = buf.indexOf(0, pos);
    if (end < 0) return null;
    out.push(buf.toString('utf8', pos, end));
    pos = end + 1;
  }
  return out;
}

function optionsFrom(strings: string[]): TftpOptions {
  const options: TftpOptions = {};
  // A dangling name or empty names (NUL padding some ROMs send) are ignored rather than
  // failing the whole request: options are advisory by design.
  for (let i = 0; i + 1 < strings.length; i += 2) {
    const name = (strings[i] ?? '').toLowerCase();
    if (name === '' || name === '__proto__' || Object.hasOwn(options, name)) continue;
    options[name] = strings[i + 1] ?? '';
  }
  return options;
}

/** Decodes one datagram; null for anything malformed (callers ignore those, they never throw). */
export function decodePacket(buf: Buffer): TftpPacket | null {
  if (buf.length < 2) return null;
  const op = opNames.get(buf.readUInt16BE(0));
  switch (op) {
    case 'RRQ':
    case 'WRQ': {
      const s = cstrings(buf, 2);
      if (!s || s.length < 2) return null;
      return { op, filename: s[0] ?? '', mode: (s[1] ?? '').toLowerCase(), options: optionsFrom(s.slice(2)) };
    }
    case 'DATA':
      if (buf.length < 4) return null;
      return { op, block: buf.readUInt16BE(2), data: buf.subarray(4) };
    case 'ACK':
      // Trailing bytes after the block number are tolerated: some firmware pads short datagrams.
      if (buf.length < 4) return null;
      return { op, block: buf.readUInt16BE(2) };
    case 'ERROR': {
      if (buf.length < 4) return null;
      const end = buf.indexOf(0, 4);
      return { op, code: buf.readUInt16BE(2), message: buf.toString('utf8', 4, end < 0 ? buf.length : end) };
    }
    case 'OACK': {
      const s = cstrings(buf, 2);
      return s ? { op, options: optionsFrom(s) } : null;
    }
    default:
      return null;
  }
}

function cstring(s: string): Buffer {
  if (s.includes('\0')) throw new RangeError('TFTP strings cannot contain NUL');
  return Buffer.from(`${s}\0`, 'utf8');
}

function header(op: number, word: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt16BE(op, 0);
  b.writeUInt16BE(word & 0xffff, 2);
  return b;
}

function opOnly(op: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(op, 0);
  return b;
}

function optionBytes(options: TftpOptions): Buffer[] {
  return Object.entries(options).flatMap(([k, v]) => [cstring(k), cstring(v)]);
}

/** The 4-byte DATA header alone, so the server can send [header, slice] without copying file bytes. */
export function dataHeader(block: number): Buffer {
  return header(Opcode.DATA, block);
}

export function encodePacket(p: TftpPacket): Buffer {
  switch (p.op) {
    case 'RRQ':
    case 'WRQ':
      return Buffer.concat([opOnly(Opcode[p.op]), cstring(p.filename), cstring(p.mode), ...optionBytes(p.options)]);
    case 'DATA':
      return Buffer.concat([dataHeader(p.block), p.data]);
    case 'ACK':
      return header(Opcode.ACK, p.block);
    case 'ERROR':
      return Buffer.concat([header(Opcode.ERROR, p.code), cstring(p.message)]);
    case 'OACK':
      return Buffer.concat([opOnly(Opcode.OACK), ...optionBytes(p.options)]);
  }
}

export function encodeError(code: number, message: string): Buffer {
  return encodePacket({ op: 'ERROR', code, message });
}

/**
 * netascii is accepted but served byte-for-byte like octet: boot files are binary or already
 * LF-terminated text, and no PXE client depends on CRLF translation.
 */
export function isSupportedMode(mode: string): boolean {
  const m = mode.toLowerCase();
  return m === 'octet' || m === 'netascii';
}

export interface OptionLimits {
  maxBlksize?: number;
  maxWindowsize?: number;
}

export interface NegotiatedOptions {
  /** Exactly what goes into the OACK; empty means "send no OACK, start with DATA 1". */
  accepted: TftpOptions;
  blksize: number;
  windowsize: number;
  /** Client-requested retransmit timeout, null when the server default applies. */
  timeoutMs: number | null;
}

function parseUint(v: string | undefined): number | null {
  if (v === undefined || !/^\d{1,15}$/.test(v.trim())) return null;
  return Number(v.trim());
}

const clamp = (n: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, n));

/**
 * RFC 2347 negotiation for a read request. Values the RFCs forbid the server to change
 * (timeout) are dropped when out of range; values it may lower (blksize, windowsize) are clamped.
 */
export function negotiateOptions(requested: TftpOptions, fileSize: number, limits: OptionLimits = {}): NegotiatedOptions {
  const maxBlk = clamp(Math.floor(limits.maxBlksize ?? MAX_BLKSIZE), MIN_BLKSIZE, MAX_BLKSIZE);
  const maxWin = clamp(Math.floor(limits.maxWindowsize ?? DEFAULT_MAX_WINDOWSIZE), 1, MAX_WINDOWSIZE);
  const get = (name: string): number | null => (Object.hasOwn(requested, name) ? parseUint(requested[name]) : null);
  const out: NegotiatedOptions = { accepted: {}, blksize: DEFAULT_BLKSIZE, windowsize: 1, timeoutMs: null };

  const blksize = get('blksize');
  if (blksize !== null && blksize >= MIN_BLKSIZE) {
    out.blksize = Math.min(blksize, maxBlk);
    out.accepted.blksize = String(out.blksize);
  }
  // An empty file gets no tsize: curl (7.88 at least) rejects "tsize 0" in an OACK and hangs up
  // without an ERROR, and RFC 2347 lets a server leave any option unacknowledged.
  if (get('tsize') !== null && fileSize > 0) out.accepted.tsize = String(fileSize);
  const timeout = get('timeout');
  if (timeout !== null && timeout >= 1 && timeout <= 255) {
    out.timeoutMs = timeout * 1000;
    out.accepted.timeout = String(timeout);
  }
  const windowsize = get('windowsize');
  if (windowsize !== null && windowsize >= 1) {
    out.windowsize = Math.min(windowsize, maxWin);
    out.accepted.windowsize = String(out.windowsize);
  }
  return out;
}

/**
 * Maps a client-supplied filename to a path relative to the boot tree, or null when it must be
 * refused. Leading slashes are dropped rather than refused because PXE ROMs commonly send
 * "/pxelinux.0"; the resolver treats every path as relative to its own root.
 */
export function normaliseTftpPath(raw: string): string | null {
  if (raw.includes('\0')) return null;
  const segments = raw.replace(/\\/g, '/').split('/').filter((s) => s !== '' && s !== '.');
  if (segments.length === 0 || segments.includes('..')) return null;
  return segments.join('/');
}
