// Secure values (SPEC 10): ciphertext at rest, {"secure": true} in every response and event, plaintext
// only for internal consumers and an admin's ?decode=true.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

const SECRET = 'hunter2-very-secret-value';
const HEADER = 'direktiv-token-ABC123xyz';
let t: TestApp;
let uuid: string;
const json = (v: unknown) => ({ headers: { 'content-type': 'application/json' }, payload: JSON.stringify(v) });

/** Every byte Ironflow keeps in Redis under this test's prefix, events and timelines included. */
async function everythingInRedis(): Promise<string> {
  const keys = await t.redis.keys(`{${t.prefix}}*`);
  const parts: string[] = [];
  for (const k of keys) {
    const type = await t.redis.type(k);
    if (type === 'string') parts.push((await t.redis.get(k)) ?? '');
    else if (type === 'hash') parts.push(JSON.stringify(await t.redis.hgetall(k)));
    else if (type === 'zset') parts.push(JSON.stringify(await t.redis.zrange(k, 0, -1)));
    else if (type === 'stream') parts.push(JSON.stringify(await t.redis.xrange(k, '-', '+')));
  }
  return parts.join('\n');
}

beforeAll(async () => {
  t = await createTestApp();
  await t.call({ method: 'POST', url: '/api/v1/params', payload: { name: 'bmc/password', secure: true, schema: { type: 'string', minLength: 4 } } });
  uuid = (await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'sec1', params: { 'bmc/password': SECRET, plain: 'visible' } } })).json().uuid;
});
afterAll(async () => t.close());

describe('secure params', () => {
  it('are returned as {"secure": true} everywhere', async () => {
    const responses = await Promise.all([
      t.call({ method: 'GET', url: `/api/v1/machines/${uuid}` }),
      t.call({ method: 'GET', url: '/api/v1/machines?name=sec1' }),
      t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/params` }),
      t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/params?aggregate=true` }),
      t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/params/bmc%2Fpassword` }),
      t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/params/bmc%2Fpassword?aggregate=true` }),
    ]);
    for (const r of responses) {
      expect(r.statusCode).toBe(200);
      expect(r.body).not.toContain(SECRET);
      expect(r.body).toContain('"secure":true');
    }
    expect(responses[0]!.json().params.plain).toBe('visible');
  });

  it('are ciphertext at rest and absent from events', async () => {
    const all = await everythingInRedis();
    expect(all).toContain('$sealed');
    expect(all).not.toContain(SECRET);
    const events = await t.services.store.backend.readEvents('0', 10_000);
    expect(JSON.stringify(events)).not.toContain(SECRET);
  });

  it('are revealed to internal consumers through the one resolver', async () => {
    const m = await t.services.store.mustGet('machines', uuid);
    expect(await t.services.params.lookup({ prefix: 'machines', obj: m }, 'bmc/password')).toMatchObject({ found: true, value: SECRET });
  });

  it('decode=true: admins see the value, others get 403', async () => {
    const admin = await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/params/bmc%2Fpassword?decode=true` });
    expect(admin.json()).toBe(SECRET);
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}?decode=true` })).json().params['bmc/password']).toBe(SECRET);
    const op = await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}?decode=true`, auth: await t.token('operator') });
    expect(op.statusCode).toBe(403);
  });

  it('survive patches that send the placeholder back, and are still validated when changed', async () => {
    const cur = (await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}` })).json();
    const put = await t.call({ method: 'PUT', url: `/api/v1/machines/${uuid}`, payload: { ...cur, description: 'patched' } });
    expect(put.statusCode, put.body).toBe(200);
    await t.call({ method: 'PATCH', url: `/api/v1/machines/${uuid}`, payload: { description: 'merged' } });
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/params/bmc%2Fpassword?decode=true` })).json()).toBe(SECRET);
    const short = await t.call({ method: 'PUT', url: `/api/v1/machines/${uuid}/params/bmc%2Fpassword`, ...json('abc') });
    expect(short.statusCode).toBe(400);
    expect(short.body).not.toContain('abc"');
    const none = await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'sec2', params: { 'bmc/password': { secure: true } } } });
    expect(none.statusCode).toBe(400);
  });
});

describe('subscription headers', () => {
  it('are sealed, masked, kept through updates and decodable by admins', async () => {
    const res = await t.call({ method: 'POST', url: '/api/v1/subscriptions', payload: { name: 'dk', url: 'http://127.0.0.1:9/broadcast', topics: ['machines.*.*'], headers: { 'direktiv-token': HEADER } } });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.body).not.toContain(HEADER);
    expect(res.json().headers['direktiv-token']).toEqual({ secure: true });
    await t.call({ method: 'PATCH', url: '/api/v1/subscriptions/dk', payload: { enabled: false } });
    expect((await t.call({ method: 'GET', url: '/api/v1/subscriptions/dk?decode=true' })).json().headers['direktiv-token']).toBe(HEADER);
    expect(await everythingInRedis()).not.toContain(HEADER);
  });
});
