// Static files of the boot tree (SPEC 4.3): uploads under `<data dir>/files` (streamed to a temp file,
// checked, renamed into place), the system's iPXE binaries as a fallback, byte ranges, content types.
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../errors.js';
import type { TftpFile } from './tftp.js';

/** Debian's `ipxe` package (apt-get install ipxe). */
export const SYSTEM_IPXE_DIR = '/usr/lib/ipxe';
/** Names served from the system iPXE package when the files dir has no file of that name. */
export const IPXE_BINARIES = ['undionly.kpxe', 'undionly.kkpxe', 'ipxe.efi', 'snponly.efi', 'ipxe.pxe', 'ipxe.lkrn'] as const;
export const MAX_UPLOAD_BYTES = 4 * 1024 ** 3;

export interface StaticFile {
  /** path in the boot tree */
  path: string;
  fsPath: string;
  size: number;
  mtimeMs: number;
  source: 'files' | 'system';
}

export interface StoredFileInfo {
  path: string;
  size: number;
  sha256: string;
  created: boolean;
}

const TEXT_EXTENSIONS = /\.(ipxe|cfg|conf|txt|ks|sh|ya?ml|json|seed|preseed|msg)$/i;
const TEXT_NAMES = /(^|\/)(pxelinux\.cfg\/[^/]+|grub\.cfg[^/]*|user-data|meta-data|vendor-data|network-config)$/;

/** text/plain for scripts and configs (iPXE, PXELINUX, GRUB, installers), octet-stream for everything else. */
export function contentTypeFor(path: string): string {
  return TEXT_EXTENSIONS.test(path) || TEXT_NAMES.test(path) ? 'text/plain; charset=utf-8' : 'application/octet-stream';
}

/**
 * A path for the files API: relative, `/`-separated, no empty, `.` or `..` segments, no NUL or
 * backslash; anything else is a 400 (never silently rewritten, so the operator knows what is stored).
 */
export function checkFilePath(raw: string | undefined): string {
  const path = raw ?? '';
  const problem = path === '' ? 'a file path is required'
    : path.length > 1024 ? 'the path is longer than 1024 characters'
    : /[\x00-\x1f\\]/.test(path) ? 'the path contains a control character or a backslash'
    : path.startsWith('/') ? 'the path must be relative (no leading /)'
    : path.split('/').some((s) => s === '' || s === '.' || s === '..') ? 'the path must not contain empty, "." or ".." segments'
    : undefined;
  if (problem) throw new AppError('INVALID', `${problem}: ${JSON.stringify(path.slice(0, 200))}`);
  return path;
}

export type ByteRange = { start: number; end: number };

/**
 * One `bytes=` range (RFC 9110 §14): a range to send, 'unsatisfiable' (416), or undefined to send the
 * whole file (no header, a multi-range or a malformed one, which the RFC lets a server ignore).
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || (m[2] !== '' && Number(m[2]) < start)) return 'unsatisfiable';
  return { start, end };
}

export class StaticFiles {
  readonly root: string;
  private readonly uploads: string;

  constructor(dataDir: string, private readonly systemIpxeDir: string | undefined = SYSTEM_IPXE_DIR) {
    this.root = join(dataDir, 'files');
    this.uploads = join(dataDir, '.files-upload');
  }

  private fsPath(path: string): string {
    return join(this.root, ...path.split('/'));
  }

  /** A regular file of the boot tree (path already normalised), from the files dir, else the system iPXE binaries. */
  async find(path: string): Promise<StaticFile | undefined> {
    const own = await regularFile(this.fsPath(path));
    if (own) return { path, fsPath: this.fsPath(path), ...own, source: 'files' };
    if (this.systemIpxeDir && (IPXE_BINARIES as readonly string[]).includes(path)) {
      const fsPath = join(this.systemIpxeDir, path);
      const sys = await regularFile(fsPath);
      if (sys) return { path, fsPath, ...sys, source: 'system' };
    }
    return undefined;
  }

  /** An uploaded file only (the files API). */
  async get(path: string): Promise<StaticFile | undefined> {
    const fsPath = this.fsPath(checkFilePath(path));
    const own = await regularFile(fsPath);
    return own ? { path, fsPath, ...own, source: 'files' } : undefined;
  }

  /** Streams `body` into place: a temp file, size-bounded and hashed, renamed over the target only when complete and matching. */
  async write(rawPath: string, body: Readable, opts: { sha256?: string; maxBytes?: number } = {}): Promise<StoredFileInfo> {
    const path = checkFilePath(rawPath);
    const max = opts.maxBytes ?? MAX_UPLOAD_BYTES;
    const target = this.fsPath(path);
    await mkdir(this.uploads, { recursive: true });
    const tmp = join(this.uploads, `${randomBytes(8).toString('hex')}.part`);
    const hash = createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > max) return done(new AppError('TOO_LARGE', `the file is larger than ${max} bytes`));
        hash.update(chunk);
        done(null, chunk);
      },
    });
    // The request is piped, not pipelined: a refused upload must not destroy the request (and with it the
    // socket the 413 goes out on); what is left of it is drained. An interrupted upload fails the write.
    const interrupted = (err?: Error) => meter.destroy(err ?? new Error('the upload was interrupted'));
    const onClose = () => {
      if (!body.readableEnded) interrupted();
    };
    body.on('error', interrupted).on('close', onClose).pipe(meter);
    try {
      await pipeline(meter, createWriteStream(tmp, { flags: 'wx', mode: 0o644 }));
      const sha256 = hash.digest('hex');
      if (opts.sha256 !== undefined && opts.sha256.toLowerCase() !== sha256) {
        throw new AppError('INVALID', `X-Sha256 mismatch: the body's SHA-256 is ${sha256}, the header says ${opts.sha256.toLowerCase()}; nothing was stored`);
      }
      const existed = (await regularFile(target)) !== undefined;
      try {
        await mkdir(dirname(target), { recursive: true });
        await rename(tmp, target);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOTDIR' || code === 'EEXIST' || code === 'EISDIR' || code === 'ENOTEMPTY') {
          throw new AppError('CONFLICT', `${path}: a directory and a file would have the same name`);
        }
        throw err;
      }
      return { path, size, sha256, created: !existed };
    } finally {
      body.off('error', interrupted).off('close', onClose);
      if (!body.readableEnded) {
        body.unpipe(meter);
        body.on('error', () => {}).resume();
      }
      await rm(tmp, { force: true });
    }
  }

  async remove(rawPath: string): Promise<{ path: string; size: number }> {
    const path = checkFilePath(rawPath);
    const found = await this.get(path);
    if (!found) throw new AppError('NOT_FOUND', `file ${path} not found`, { kind: 'files', key: path });
    await unlink(found.fsPath);
    // Drop the folders the upload created, up to the root, while they are empty.
    for (let dir = dirname(found.fsPath); dir.startsWith(`${this.root}/`); dir = dirname(dir)) {
      try {
        await rmdir(dir);
      } catch {
        break;
      }
    }
    return { path, size: found.size };
  }

  /** Uploaded files in path order, a page at a time. */
  async list(offset: number, limit: number): Promise<{ items: { path: string; size: number; modifiedAt: string }[]; total: number }> {
    const all: { path: string; fsPath: string }[] = [];
    const walk = async (dir: string, prefix: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const rel = prefix ? `${prefix}/${e.name}` : e.name;
        if (e.isDirectory()) await walk(join(dir, e.name), rel);
        else all.push({ path: rel, fsPath: join(dir, e.name) });
      }
    };
    await walk(this.root, '');
    all.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const page = all.slice(offset, offset + limit);
    const items = [];
    for (const f of page) {
      const st = await regularFile(f.fsPath);
      if (st) items.push({ path: f.path, size: st.size, modifiedAt: new Date(st.mtimeMs).toISOString() });
    }
    return { items, total: all.length };
  }
}

async function regularFile(fsPath: string): Promise<{ size: number; mtimeMs: number } | undefined> {
  try {
    const st = await stat(fsPath);
    return st.isFile() ? { size: st.size, mtimeMs: st.mtimeMs } : undefined;
  } catch {
    return undefined;
  }
}

/** A static file as the TFTP server reads it: one positioned read per window (no handle kept between windows). */
export function tftpFileOf(file: StaticFile): TftpFile {
  return {
    size: file.size,
    async read(offset, length) {
      const fh = await open(file.fsPath, 'r');
      try {
        const buf = Buffer.alloc(length);
        let got = 0;
        while (got < length) {
          const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        return got === length ? buf : buf.subarray(0, got);
      } finally {
        await fh.close();
      }
    },
  };
}
