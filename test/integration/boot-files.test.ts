// Static files of the boot tree: upload (X-Sha256, size bound, path checks), download, list, delete,
// serving under /boot with HEAD and Range, and the system iPXE binaries.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerFileRoutes } from '../../src/api/files.js';
import { errorHandler } from '../../src/api/errors.js';
import { StaticFiles, SYSTEM_IPXE_DIR } from '../../src/boot/static-files.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { repoRoot } from '../helpers/render-content.js';

let t: TestApp;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const put = (path: string, body: Buffer | string, headers: Record<string, string> = {}) =>
  t.call({ method: 'PUT', url: `/api/v1/files/${path}`, payload: body, headers: { 'content-type': 'application/octet-stream', ...headers } });
const filesRoot = () => join(t.services.config.dataDir, 'files');

beforeAll(async () => {
  t = await createTestApp({ content: [join(repoRoot, 'content')] });
});
afterAll(async () => {
  await t?.close();
});

describe('upload', () => {
  it('stores a file (201), replaces it (200), checks X-Sha256 and serves it under /boot and the API', async () => {
    const body = randomBytes(3 * 1024 * 1024 + 17); // over the 1 MiB JSON body limit: uploads stream
    let res = await put('debian-12/amd64/linux', body, { 'x-sha256': sha(body) });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toEqual({ path: 'debian-12/amd64/linux', size: body.length, sha256: sha(body) });
    expect(res.headers.location).toBe('/api/v1/files/debian-12/amd64/linux');
    expect(readFileSync(join(filesRoot(), 'debian-12', 'amd64', 'linux')).equals(body)).toBe(true);

    const served = await t.app.inject({ method: 'GET', url: '/boot/debian-12/amd64/linux' });
    expect(served.statusCode).toBe(200);
    expect(served.headers['content-type']).toBe('application/octet-stream');
    expect(served.rawPayload.equals(body)).toBe(true);
    const api = await t.call({ method: 'GET', url: '/api/v1/files/debian-12/amd64/linux' });
    expect(api.rawPayload.equals(body)).toBe(true);

    const next = Buffer.from('second version');
    res = await put('debian-12/amd64/linux', next);
    expect(res.statusCode).toBe(200);
    expect((await t.app.inject({ method: 'GET', url: '/boot/debian-12/amd64/linux' })).body).toBe('second version');
  });

  it('a wrong X-Sha256 is a 400 and stores nothing (the old file stays)', async () => {
    await put('keep.txt', 'original');
    const res = await put('keep.txt', 'tampered', { 'x-sha256': sha(Buffer.from('something else')) });
    expect(res.statusCode).toBe(400);
    expect(res.json().message).toContain('X-Sha256 mismatch');
    expect(readFileSync(join(filesRoot(), 'keep.txt'), 'utf8')).toBe('original');
    expect((await put('fresh.bin', 'x', { 'x-sha256': '0'.repeat(64) })).statusCode).toBe(400);
    expect(existsSync(join(filesRoot(), 'fresh.bin'))).toBe(false);
    expect((await put('fresh.bin', 'x', { 'x-sha256': 'not-hex' })).statusCode).toBe(400);
    expect(existsSync(join(t.services.config.dataDir, '.files-upload')) ? (await import('node:fs')).readdirSync(join(t.services.config.dataDir, '.files-upload')) : []).toEqual([]);
  });

  it.each([
    ['a%2F..%2F..%2Fescape', 400],
    ['..%2Fescape', 400],
    ['%2Fetc%2Fescape', 400],
    ['a%2F.%2Fb', 400],
    ['a%5Cb', 400],
    ['a%00b', 400],
  ])('refuses path %s (%d) and writes nothing outside the files dir', async (path, status) => {
    const res = await put(path, 'nope');
    expect(res.statusCode).toBe(status);
    expect(res.json()).toMatchObject({ code: 'INVALID' });
    expect(existsSync(join(t.services.config.dataDir, 'escape'))).toBe(false);
    expect(existsSync(join(t.services.config.dataDir, '..', 'escape'))).toBe(false);
  });

  it('refuses other content types (415), and a file where a folder is (409)', async () => {
    expect((await t.call({ method: 'PUT', url: '/api/v1/files/x.json', payload: { a: 1 } })).statusCode).toBe(415);
    expect((await put('dir/inner', 'x')).statusCode).toBe(201);
    expect((await put('dir', 'x')).statusCode).toBe(409);
    expect((await put('dir/inner/deeper', 'x')).statusCode).toBe(409);
  });

  it('needs a token, and readonly users may not upload', async () => {
    expect((await t.call({ method: 'PUT', url: '/api/v1/files/a', payload: 'x', headers: { 'content-type': 'application/octet-stream' }, auth: false })).statusCode).toBe(401);
    expect((await t.call({ method: 'PUT', url: '/api/v1/files/a', payload: 'x', headers: { 'content-type': 'application/octet-stream' }, auth: await t.token('readonly') })).statusCode).toBe(403);
    expect((await t.call({ method: 'GET', url: '/api/v1/files', auth: await t.token('readonly') })).statusCode).toBe(200);
  });

  it('bounds the size, by Content-Length and while streaming, and keeps nothing', async () => {
    const app = Fastify();
    app.setErrorHandler(errorHandler);
    const files = new StaticFiles(t.services.config.dataDir, undefined);
    await registerFileRoutes(app, files, { maxBytes: 1000 });
    let res = await app.inject({ method: 'PUT', url: '/api/v1/files/big', payload: randomBytes(1001), headers: { 'content-type': 'application/octet-stream' } });
    expect(res.statusCode).toBe(413);
    res = await app.inject({ method: 'PUT', url: '/api/v1/files/big', payload: Readable.from([randomBytes(600), randomBytes(600)]), headers: { 'content-type': 'application/octet-stream' } });
    expect(res.statusCode).toBe(413);
    expect(res.json()).toMatchObject({ code: 'TOO_LARGE' });
    expect(existsSync(join(filesRoot(), 'big'))).toBe(false);
    res = await app.inject({ method: 'PUT', url: '/api/v1/files/small', payload: randomBytes(1000), headers: { 'content-type': 'application/octet-stream' } });
    expect(res.statusCode).toBe(201);
    await app.close();
  });
});

describe('download, list and delete', () => {
  it('lists a page at a time with X-Total-Count, deletes, then 404', async () => {
    for (const p of ['list/a', 'list/b', 'list/c']) expect((await put(p, p)).statusCode).toBeLessThan(300);
    const all = await t.call({ method: 'GET', url: '/api/v1/files?limit=1000' });
    const paths = (all.json() as { path: string }[]).map((f) => f.path);
    expect(paths).toEqual([...paths].sort());
    expect(paths).toEqual(expect.arrayContaining(['list/a', 'list/b', 'list/c']));
    const page = await t.call({ method: 'GET', url: `/api/v1/files?offset=${paths.indexOf('list/b')}&limit=1` });
    expect(page.json()).toEqual([{ path: 'list/b', size: 6, modifiedAt: expect.any(String) }]);
    expect(Number(page.headers['x-total-count'])).toBe(paths.length);
    expect(page.headers.link).toContain('rel="next"');
    expect((await t.call({ method: 'GET', url: '/api/v1/files?limit=-1' })).statusCode).toBe(400);

    expect((await t.call({ method: 'DELETE', url: '/api/v1/files/list/b' })).json()).toEqual({ path: 'list/b', size: 6 });
    expect((await t.call({ method: 'GET', url: '/api/v1/files/list/b' })).statusCode).toBe(404);
    expect((await t.app.inject({ method: 'GET', url: '/boot/list/b' })).statusCode).toBe(404);
    expect((await t.call({ method: 'DELETE', url: '/api/v1/files/list/b' })).statusCode).toBe(404);
    expect((await t.call({ method: 'DELETE', url: '/api/v1/files/list' })).statusCode).toBe(404);
  });
});

describe('serving static files under /boot', () => {
  const body = Buffer.from(Array.from({ length: 100 }, (_, i) => String.fromCharCode(65 + (i % 26))).join(''));

  beforeAll(async () => {
    expect((await put('ranges.bin', body)).statusCode).toBeLessThan(300);
  });

  it.each([
    ['bytes=10-19', 206, 10, 19],
    ['bytes=95-', 206, 95, 99],
    ['bytes=-5', 206, 95, 99],
    ['bytes=90-500', 206, 90, 99],
  ])('Range %s → %d', async (range, status, start, end) => {
    const res = await t.app.inject({ method: 'GET', url: '/boot/ranges.bin', headers: { range } });
    expect(res.statusCode).toBe(status);
    expect(res.rawPayload.equals(body.subarray(start, end + 1))).toBe(true);
    expect(res.headers['content-range']).toBe(`bytes ${start}-${end}/100`);
    expect(res.headers['content-length']).toBe(String(end - start + 1));
  });

  it('an unsatisfiable range is 416 with the size; HEAD has the length and no body', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/boot/ranges.bin', headers: { range: 'bytes=100-' } });
    expect(res.statusCode).toBe(416);
    expect(res.headers['content-range']).toBe('bytes */100');
    const head = await t.app.inject({ method: 'HEAD', url: '/boot/ranges.bin' });
    expect(head.statusCode).toBe(200);
    expect(head.headers['content-length']).toBe('100');
    expect(head.headers['accept-ranges']).toBe('bytes');
    expect(head.body).toBe('');
  });

  it('serves the iPXE binaries from the system package, unless one was uploaded', async () => {
    for (const name of ['undionly.kpxe', 'ipxe.efi', 'snponly.efi']) {
      const res = await t.app.inject({ method: 'GET', url: `/boot/${name}` });
      expect(res.statusCode, name).toBe(200);
      expect(res.headers['content-type']).toBe('application/octet-stream');
      expect(res.rawPayload.equals(readFileSync(join(SYSTEM_IPXE_DIR, name))), name).toBe(true);
    }
    expect((await t.app.inject({ method: 'GET', url: '/boot/ipxe.iso' })).statusCode).toBe(404);
    expect((await put('snponly.efi', 'my own build')).statusCode).toBe(201);
    expect((await t.app.inject({ method: 'GET', url: '/boot/snponly.efi' })).body).toBe('my own build');
  });

  it('serves an uploaded script as text/plain', async () => {
    await put('tools/menu.ipxe', '#!ipxe\nshell\n');
    const res = await t.app.inject({ method: 'GET', url: '/boot/tools/menu.ipxe' });
    expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(res.body).toBe('#!ipxe\nshell\n');
  });
});
