// The boot tree over real sockets: HTTP (fetch, curl --path-as-is) and TFTP (curl, atftp) serve the same
// bytes for a machine's per-MAC iPXE, PXELINUX and GRUB files, static files and iPXE binaries; and the
// real `ironflow serve` process starts TFTP, logs it, serves through it and closes it on SIGTERM.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBootTftp } from '../../src/boot/tftp-server.js';
import type { TftpServer } from '../../src/boot/tftp.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { requirePrograms } from '../helpers/peers.js';
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js';
import { freePort } from '../helpers/redis-server.js';
import { fixtureMachine, fixtureParams, repoRoot } from '../helpers/render-content.js';

const peers = requirePrograms('curl', 'atftp');
const MAC = fixtureMachine.hardwareAddrs[0]!;
const UUID = fixtureMachine.uuid;
const MAIN = join(import.meta.dirname, '..', 'helpers', 'ironflow-main.ts');

function run(cmd: string, args: string[]): Promise<{ code: number | string | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 60_000, maxBuffer: 16 << 20, encoding: 'latin1' }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number | string }).code ?? null) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

describe.skipIf(!peers)('boot files over HTTP and TFTP', () => {
  let t: TestApp;
  let tftp: TftpServer;
  let http: string;
  const dir = mkdtempSync(join(tmpdir(), 'ironflow-boot-e2e-'));

  const viaHttp = async (path: string) => {
    const res = await fetch(`${http}/boot/${path}`);
    return { status: res.status, body: Buffer.from(await res.arrayBuffer()), type: res.headers.get('content-type') };
  };
  const viaCurlTftp = async (path: string) => {
    const out = join(dir, `curl-${Math.random()}`);
    const r = await run('curl', ['-sS', '--max-time', '30', '-o', out, `tftp://127.0.0.1:${tftp.port}/${path}`]);
    return { code: r.code, body: r.code === 0 ? readFileSync(out) : Buffer.alloc(0) };
  };
  const viaAtftp = async (path: string) => {
    const out = join(dir, `atftp-${Math.random()}`);
    const r = await run('atftp', ['--option', 'blksize 1428', '--option', 'tsize 0', '--option', 'windowsize 8', '-g', '-r', path, '-l', out, '127.0.0.1', String(tftp.port)]);
    return { code: r.code, stderr: r.stderr, body: r.code === 0 ? readFileSync(out) : Buffer.alloc(0) };
  };

  beforeAll(async () => {
    t = await createTestApp({ content: [join(repoRoot, 'content')] });
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    const port = (t.app.server.address() as { port: number }).port;
    http = `http://127.0.0.1:${port}`;
    // No IRONFLOW_PUBLIC_URL: HTTP scripts name the Host they were asked on, TFTP ones the address the request arrived on + the HTTP port.
    t.services.config.port = port;
    tftp = await startBootTftp(t.app.bootFiles, { ...t.services.config, host: '0.0.0.0', tftpPort: 0 }, t.services.log);
    const res = await t.call({ method: 'POST', url: '/api/v1/machines', payload: { uuid: UUID, name: 'node1', address: fixtureMachine.address, hardwareAddrs: [MAC], params: fixtureParams, bootEnv: 'debian-12-install' } });
    expect(res.statusCode, res.body).toBe(201);
  });
  afterAll(async () => {
    await tftp?.close();
    await t?.close();
  });

  it.each([`${MAC}.ipxe`, '192.168.100.10.ipxe', 'pxelinux.cfg/01-52-54-00-12-34-56', 'pxelinux.cfg/C0A8640A', 'grub/grub.cfg-01-52-54-00-12-34-56'])(
    '%s: HTTP, curl tftp:// and atftp get the same bytes',
    async (path) => {
      const h = await viaHttp(path);
      expect(h.status).toBe(200);
      expect(h.type).toBe('text/plain; charset=utf-8');
      expect(h.body.toString()).toContain(`${http}/boot/`.replace(/\/boot\/$/, '')); // the URL machines use to come back
      const c = await viaCurlTftp(path);
      expect(c.code).toBe(0);
      expect(c.body.equals(h.body)).toBe(true);
      const a = await viaAtftp(path);
      expect(a.code, a.stderr).toBe(0);
      expect(a.body.equals(h.body)).toBe(true);
    },
  );

  it('decodes iPXE\'s percent-encoded MAC over HTTP and TFTP', async () => {
    const plain = await viaHttp(`${MAC}.ipxe`);
    const enc = MAC.replaceAll(':', '%3A');
    expect((await viaHttp(`${enc}.ipxe`)).body.equals(plain.body)).toBe(true);
    const a = await viaAtftp(`${enc}.ipxe`);
    expect(a.code, a.stderr).toBe(0);
    expect(a.body.equals(plain.body)).toBe(true);
  });

  it('a preseed differs only in its (per-render) machine token', async () => {
    const path = `machines/${UUID}/preseed.cfg`;
    const h = (await viaHttp(path)).body.toString();
    const c = (await viaCurlTftp(path)).body.toString();
    const strip = (s: string) => s.replace(/Bearer [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/g, 'Bearer T');
    expect(c).toContain('Bearer ');
    expect(strip(c)).toBe(strip(h));
  });

  it('records a TFTP transfer of a machine file on its timeline with protocol tftp', async () => {
    expect((await viaCurlTftp('grub/grub.cfg-01-52-54-00-12-34-56')).code).toBe(0);
    const deadline = Date.now() + 3000;
    let found: Record<string, unknown> | undefined;
    while (!found && Date.now() < deadline) {
      const rows = await t.redis.xrange(t.services.keys.timeline(UUID), '-', '+');
      found = rows.map(([, f]) => JSON.parse(f[f.indexOf('body') + 1]!) as Record<string, unknown>).find((b) => b?.protocol === 'tftp' && b.path === 'grub/grub.cfg-01-52-54-00-12-34-56');
      if (!found) await new Promise((r) => setTimeout(r, 25));
    }
    expect(found).toMatchObject({ protocol: 'tftp', bootEnv: 'debian-12-install', bytes: expect.any(Number) });
  });

  it('serves static files and the system iPXE binaries identically over both', async () => {
    const up = await fetch(`${http}/api/v1/files/debian-12/amd64/initrd.gz`, { method: 'PUT', body: readFileSync('/usr/lib/ipxe/ipxe.efi'), headers: { 'content-type': 'application/octet-stream', authorization: `Bearer ${await t.token()}` } });
    expect(up.status).toBe(201);
    for (const path of ['debian-12/amd64/initrd.gz', 'undionly.kpxe', 'snponly.efi']) {
      const h = await viaHttp(path);
      expect(h.status, path).toBe(200);
      const a = await viaAtftp(path);
      expect(a.code, a.stderr).toBe(0);
      expect(a.body.equals(h.body), path).toBe(true);
    }
  });

  it('a failed iPXE render is the error script over TFTP too; other paths are a TFTP error', async () => {
    const res = await t.call({ method: 'PATCH', url: `/api/v1/machines/${UUID}`, payload: [{ op: 'replace', path: '/bootEnv', value: 'rocky-9-install' }, { op: 'replace', path: '/params', value: {} }], headers: { 'content-type': 'application/json-patch+json' } });
    expect(res.statusCode, res.body).toBe(200);
    try {
      const c = await viaCurlTftp(`${MAC}.ipxe`);
      expect(c.code).toBe(0);
      expect(c.body.toString()).toMatch(/^#!ipxe\necho Ironflow: cannot render 52:54:00:12:34:56\.ipxe: .*provisioner-default-password-hash.*\nshell\n$/);
      expect(c.body.equals((await viaHttp(`${MAC}.ipxe`)).body)).toBe(true);
      expect((await viaCurlTftp('pxelinux.cfg/01-52-54-00-12-34-56')).code).not.toBe(0);
    } finally {
      await t.call({ method: 'PATCH', url: `/api/v1/machines/${UUID}`, payload: { bootEnv: 'debian-12-install', params: fixtureParams }, headers: { 'content-type': 'application/merge-patch+json' } });
    }
  });

  it('missing files are 404 / TFTP error 1 (curl exit 68); escapes are refused', async () => {
    expect((await viaHttp('no/such/file')).status).toBe(404);
    expect((await viaCurlTftp('no/such/file')).code).toBe(68);
    for (const path of ['../../etc/passwd', '%2e%2e/%2e%2e/etc/passwd', 'a/..%2f..%2fetc/passwd']) {
      const r = await run('curl', ['-s', '--path-as-is', '-o', '/dev/null', '-w', '%{http_code}', `${http}/boot/${path}`]);
      expect(r.stdout, path).toBe('403');
    }
    const a = await viaAtftp('../../etc/passwd');
    expect(a.code).not.toBe(0);
    expect(a.body.length).toBe(0);
  });
});

describe.skipIf(!peers)('ironflow serve with TFTP', () => {
  it('starts TFTP in the api role, logs its address, serves through it and closes it on SIGTERM', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'if-tftp-'));
    const [port, tftpPort] = [await freePort(), await freePort()];
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'serve', '--role', 'api'], {
      env: { ...process.env, REDIS_URL: testRedisUrl(), IRONFLOW_REDIS_PREFIX: uniquePrefix('serve'), IRONFLOW_DATA_DIR: dataDir, IRONFLOW_PORT: String(port), IRONFLOW_HOST: '127.0.0.1', IRONFLOW_TFTP_PORT: String(tftpPort), IRONFLOW_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    try {
      for (let i = 0; i < 300 && !out.includes('tftp listening'); i++) await new Promise((r) => setTimeout(r, 100));
      expect(out).toContain(`tftp listening on tftp://127.0.0.1:${tftpPort}`);
      const outFile = join(dataDir, 'default.ipxe');
      const r = await run('curl', ['-sS', '--max-time', '20', '-o', outFile, `tftp://127.0.0.1:${tftpPort}/default.ipxe`]);
      expect(r.code, r.stderr).toBe(0);
      const script = readFileSync(outFile, 'utf8');
      expect(script).toContain(`chain --autofree http://127.0.0.1:${port}/boot/\${netX/mac}.ipxe`);
      expect(Buffer.from(await (await fetch(`http://127.0.0.1:${port}/boot/default.ipxe`)).arrayBuffer()).toString()).toBe(script);
    } finally {
      const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
  }, 60_000);
});
