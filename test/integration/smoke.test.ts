import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
beforeAll(async () => { t = await createTestApp(); });
afterAll(async () => t.close());

describe('smoke', () => {
  it('creates and reads a machine', async () => {
    const res = await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'node1', hardwareAddrs: ['52-54-00-12-34-56'] } });
    expect(res.statusCode, res.body).toBe(201);
    const m = res.json();
    expect(m.hardwareAddrs).toEqual(['52:54:00:12:34:56']);
    expect(m.bootEnv).toBe('local');
    expect(m.secret).toBeUndefined();
    const got = await t.call({ method: 'GET', url: '/api/v1/machines/hardwareAddrs:52:54:00:12:34:56' });
    expect(got.statusCode, got.body).toBe(200);
    expect(got.headers.etag).toBe('"1"');
    const list = await t.call({ method: 'GET', url: '/api/v1/machines?bootEnv=local' });
    expect(list.json()).toHaveLength(1);
    expect(list.headers['x-total-count']).toBe('1');
  });
});
