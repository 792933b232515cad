// Machine tokens: scoped to their own machine, revoked by rotating the machine secret.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
let a: string;
let b: string;
beforeAll(async () => {
  t = await createTestApp();
  a = (await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'mt-a' } })).json().uuid;
  b = (await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'mt-b' } })).json().uuid;
});
afterAll(async () => t.close());

describe('machine tokens', () => {
  it('read their own machine, nothing else (403)', async () => {
    const res = await t.call({ method: 'GET', url: `/api/v1/machines/${a}/token?ttl=600` });
    expect(res.statusCode).toBe(200);
    const { token, expiresAt } = res.json();
    expect(Date.parse(expiresAt) - Date.now()).toBeGreaterThan(500_000);
    const own = await t.call({ method: 'GET', url: `/api/v1/machines/${a}`, auth: token });
    expect(own.statusCode).toBe(200);
    expect(own.json().name).toBe('mt-a');
    for (const [method, url] of [['GET', `/api/v1/machines/${b}`], ['GET', '/api/v1/machines'], ['PATCH', `/api/v1/machines/${a}`], ['GET', '/api/v1/profiles'], ['GET', `/api/v1/machines/${a}/token`]] as const) {
      const r = await t.call({ method, url, auth: token, payload: method === 'PATCH' ? { description: 'x' } : undefined });
      expect(r.statusCode, `${method} ${url}`).toBe(403);
    }
  });

  it('stop working when the machine secret is rotated', async () => {
    const { token } = (await t.call({ method: 'GET', url: `/api/v1/machines/${a}/token` })).json();
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/${a}`, auth: token })).statusCode).toBe(200);
    const rot = await t.call({ method: 'POST', url: `/api/v1/machines/${a}/rotate-secret` });
    expect(rot.statusCode).toBe(200);
    expect(rot.json().secret).toBeUndefined();
    const after = await t.call({ method: 'GET', url: `/api/v1/machines/${a}`, auth: token });
    expect(after.statusCode).toBe(401);
  });

  it('refuses a ttl out of range (400)', async () => {
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/${a}/token?ttl=5` })).statusCode).toBe(400);
  });
});
