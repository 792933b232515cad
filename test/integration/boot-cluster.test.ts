// Two api processes on one Redis prefix: a machine changed through one is served its new files by the
// other at once, and its old paths 404 there too, even when the second one's event tail lags behind.
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, peerApp, type PeerApp, type TestApp } from '../helpers/app.js';
import { fixtureParams, repoRoot } from '../helpers/render-content.js';

const TAIL_LAG_MS = 1500;

let a: TestApp;
let b: PeerApp;
const get = (app: FastifyInstance, path: string) => app.inject({ method: 'GET', url: `/boot/${path}`, headers: { host: '10.0.0.1:8080' } });

beforeAll(async () => {
  a = await createTestApp({ content: [join(repoRoot, 'content')] });
  // its event-bus tail answers every read 1.5 s late
  b = await peerApp(a, { tailRead: async (read) => { await new Promise((r) => setTimeout(r, TAIL_LAG_MS)); return read(); } });
  await b.app.bootFiles.sync.ready();
});
afterAll(async () => {
  await b?.close();
  await a?.close();
});

describe('two api processes on one prefix', () => {
  it('a machine created, changed and deleted through one is served accordingly by the other at once', async () => {
    const started = Date.now();
    let res = await a.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'c1', hardwareAddrs: ['52:54:00:00:c1:01'], address: '10.0.0.21', bootEnv: 'local' } });
    expect(res.statusCode, res.body).toBe(201);
    const uuid = (res.json() as { uuid: string }).uuid;
    res = await get(b.app, '52%3A54%3A00%3A00%3Ac1%3A01.ipxe');
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('c1 boots from local disk');

    const patch = (body: Record<string, unknown>) => a.call({ method: 'PATCH', url: `/api/v1/machines/${uuid}`, payload: body, headers: { 'content-type': 'application/merge-patch+json' } });
    expect((await patch({ hardwareAddrs: ['52:54:00:00:c1:02'] })).statusCode).toBe(200);
    expect((await get(b.app, '52:54:00:00:c1:01.ipxe')).statusCode).toBe(404);
    expect((await get(b.app, 'pxelinux.cfg/01-52-54-00-00-c1-01')).statusCode).toBe(404);
    expect((await get(b.app, '52:54:00:00:c1:02.ipxe')).statusCode).toBe(200);

    expect((await patch({ bootEnv: 'debian-12-install', params: fixtureParams })).statusCode).toBe(200);
    expect((await get(b.app, '52:54:00:00:c1:02.ipxe')).body).toContain('boots bootenv debian-12-install');
    expect((await get(b.app, `machines/${uuid}/preseed.cfg`)).statusCode).toBe(200);
    expect((await patch({ bootEnv: 'local' })).statusCode).toBe(200);
    expect((await get(b.app, `machines/${uuid}/preseed.cfg`)).statusCode).toBe(404);
    expect((await get(b.app, '52:54:00:00:c1:02.ipxe')).body).toContain('boots from local disk');

    expect((await a.call({ method: 'DELETE', url: `/api/v1/machines/${uuid}` })).statusCode).toBe(200);
    expect((await get(b.app, '52:54:00:00:c1:02.ipxe')).statusCode).toBe(404);
    // all of it before B's lagging tail could have delivered a single event
    expect(Date.now() - started).toBeLessThan(TAIL_LAG_MS);
  });

  it('and the other way round, with a writable bootenv whose paths change', async () => {
    let res = await b.app.inject({ method: 'POST', url: '/api/v1/bootenvs', headers: { authorization: `Bearer ${await a.token()}` }, payload: { name: 'cluster', templates: [{ name: 'x', path: 'one/{{machine.name}}.ipxe', contents: '#!ipxe\necho one\n' }] } });
    expect(res.statusCode, res.body).toBe(201);
    res = await b.app.inject({ method: 'POST', url: '/api/v1/machines', headers: { authorization: `Bearer ${await a.token()}` }, payload: { name: 'c2', hardwareAddrs: ['52:54:00:00:c2:01'], bootEnv: 'cluster' } });
    expect(res.statusCode, res.body).toBe(201);
    expect((await get(a.app, 'one/c2.ipxe')).body).toBe('#!ipxe\necho one\n');
    res = await b.app.inject({ method: 'PUT', url: '/api/v1/bootenvs/cluster', headers: { authorization: `Bearer ${await a.token()}` }, payload: { name: 'cluster', templates: [{ name: 'x', path: 'two/{{machine.name}}.ipxe', contents: '#!ipxe\necho two\n' }] } });
    expect(res.statusCode, res.body).toBe(200);
    expect((await get(a.app, 'one/c2.ipxe')).statusCode).toBe(404);
    expect((await get(a.app, 'two/c2.ipxe')).body).toBe('#!ipxe\necho two\n');
    // B, whose own tail lags, reads its own writes too
    expect((await get(b.app, 'one/c2.ipxe')).statusCode).toBe(404);
    expect((await get(b.app, 'two/c2.ipxe')).body).toBe('#!ipxe\necho two\n');
  });
});
