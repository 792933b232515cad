// Property-based fuzzing (fast-check): random and adversarial requests at every route never get a 5xx,
// never crash the server, and a rejected request changes nothing stored.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
let uuid: string;
beforeAll(async () => {
  t = await createTestApp();
  uuid = (await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'fuzz-target', hardwareAddrs: ['02:00:00:00:0f:0f'] } })).json().uuid;
});
afterAll(async () => t.close());

const RUNS = Number(process.env.FUZZ_RUNS ?? 1500);

const nasty = fc.oneof(
  fc.constantFrom('..', '../..', '%2e%2e', '%00', '%2F', 'name:', ':', 'hardwareAddrs:zz', '__proto__', 'constructor', 'x'.repeat(2000), '😀', '\u202e', 'a b', '%ZZ', '*', '@UUID', 'name:fuzz-target', 'global', 'local'),
  fc.string({ maxLength: 40 }),
  fc.stringMatching(/^[A-Za-z0-9:%._~-]{0,60}$/),
);
const body = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.constantFrom('{"__proto__":{"polluted":1}}', '{"name":', '[]', 'null', '"x"', '{"name":"a","hardwareAddrs":"notalist"}', '{"locked":true}', '[{"op":"remove","path":"/name"}]', '[{"op":"test","path":"/revision","value":1}]'),
  fc.string({ maxLength: 200 }),
);
const contentType = fc.constantFrom('application/json', 'application/json-patch+json', 'application/merge-patch+json', 'text/plain', 'application/x-www-form-urlencoded', 'application/octet-stream', 'application/yaml', '', 'application/json; charset=utf-16', 'multipart/form-data; boundary=x');
const query = fc.dictionary(fc.constantFrom('limit', 'offset', 'sort', 'reverse', 'slim', 'name', 'bootEnv', 'currentTask', 'aggregate', 'decode', 'ttl', 'bmc/driver', '__proto__'), nasty, { maxKeys: 4 });

describe('fuzzing every route', () => {
  it(`${RUNS} random requests: no 5xx, no crash, rejected requests store nothing`, async () => {
    const routes = t.app.routeTable.filter((r) => !r.url.startsWith('/docs') && !r.url.includes('revoke') && !r.url.includes('rotate-secret'));
    let ran = 0;
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: routes.length - 1 }), nasty, nasty, body, contentType, query, fc.boolean(), async (ri, k1, k2, b, ct, q, withAuth) => {
        const r = routes[ri]!;
        [k1, k2] = [k1, k2].map((k) => (k === '@UUID' ? uuid : k)) as [string, string];
        const url = r.url.replace(':key', encodeURIComponent(k1)).replace(/:[a-zA-Z]+/g, encodeURIComponent(k2)).replace('*', k2.split('/').map(encodeURIComponent).join('/'));
        const qs = new URLSearchParams(Object.entries(q).map(([k, v]) => [k, String(v)] as [string, string])).toString();
        const before = (await t.services.store.backend.readEvents('0', 1_000_000)).length;
        const payload = typeof b === 'string' ? b : JSON.stringify(b);
        const res = await t.app.inject({
          method: r.method as 'GET',
          url: `${url}${qs ? `?${qs}` : ''}`,
          headers: { ...(ct ? { 'content-type': ct } : {}), ...(withAuth ? { authorization: `Bearer ${await t.token('admin')}` } : {}) },
          ...(r.method === 'GET' || r.method === 'HEAD' ? {} : { payload }),
        });
        ran++;
        expect(res.statusCode, `${r.method} ${url} ${ct} ${payload.slice(0, 100)} → ${res.body.slice(0, 200)}`).toBeLessThan(500);
        if (res.statusCode >= 400) {
          const after = (await t.services.store.backend.readEvents('0', 1_000_000)).length;
          expect(after, `${r.method} ${url} was rejected with ${res.statusCode} but wrote`).toBe(before);
        }
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      }),
      { numRuns: RUNS, seed: Number(process.env.FUZZ_SEED ?? Date.now() % 100000) },
    );
    expect(ran).toBe(RUNS);
    console.log(`fuzz: ${ran} requests over ${routes.length} routes`);
    expect((await t.call({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
  }, 300_000);
});
