// Hostile and broken requests: each is a 4xx in the SPEC 3.3 error shape, never a 5xx, and changes nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
let uuid: string;
beforeAll(async () => {
  t = await createTestApp();
  uuid = (await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'existing', hardwareAddrs: ['02:00:00:00:00:aa'], address: '10.0.0.5' } })).json().uuid;
});
afterAll(async () => t.close());

const json = { 'content-type': 'application/json' };
type Req = { method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'HEAD'; url: string; headers?: Record<string, string>; payload?: unknown };
const cases: [string, () => Req, number][] = [
  ['malformed JSON', () => ({ method: 'POST', url: '/api/v1/machines', headers: json, payload: '{"name": "x",' }), 400],
  ['empty JSON body', () => ({ method: 'POST', url: '/api/v1/machines', headers: json, payload: '' }), 400],
  ['wrong content type', () => ({ method: 'POST', url: '/api/v1/machines', headers: { 'content-type': 'text/plain' }, payload: 'name=x' }), 415],
  ['form content type', () => ({ method: 'POST', url: '/api/v1/profiles', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'name=x' }), 415],
  ['unknown field', () => ({ method: 'POST', url: '/api/v1/profiles', payload: { name: 'p', colour: 'red' } }), 400],
  ['wrong type', () => ({ method: 'POST', url: '/api/v1/machines', payload: { name: 'w', runnable: 'yes' } }), 400],
  ['array body', () => ({ method: 'POST', url: '/api/v1/machines', payload: [{ name: 'a' }] }), 400],
  ['null body', () => ({ method: 'POST', url: '/api/v1/machines', headers: json, payload: 'null' }), 400],
  ['oversized body', () => ({ method: 'POST', url: '/api/v1/profiles', payload: { name: 'big', description: 'x'.repeat(1024 * 1024 + 10) } }), 413],
  ['invalid MAC', () => ({ method: 'POST', url: '/api/v1/machines', payload: { name: 'm1', hardwareAddrs: ['zz:zz:zz:zz:zz:zz'] } }), 400],
  ['invalid IP', () => ({ method: 'POST', url: '/api/v1/machines', payload: { name: 'm2', address: '300.1.1.1' } }), 400],
  ['invalid UUID', () => ({ method: 'POST', url: '/api/v1/machines', payload: { name: 'm3', uuid: 'not-a-uuid' } }), 400],
  ['duplicate name', () => ({ method: 'POST', url: '/api/v1/machines', payload: { name: 'existing' } }), 409],
  ['duplicate MAC in another form', () => ({ method: 'POST', url: '/api/v1/machines', payload: { name: 'm4', hardwareAddrs: ['02-00-00-00-00-AA'] } }), 409],
  ['duplicate address', () => ({ method: 'POST', url: '/api/v1/machines', payload: { name: 'm5', address: '10.0.0.5' } }), 409],
  ['huge list', () => ({ method: 'POST', url: '/api/v1/machines', payload: { name: 'm6', hardwareAddrs: Array.from({ length: 5000 }, (_, i) => `02:00:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`) } }), 400],
  ['unicode machine name', () => ({ method: 'POST', url: '/api/v1/machines', payload: { name: 'nœud-ünïcode' } }), 400],
  ['control characters in a name', () => ({ method: 'POST', url: '/api/v1/profiles', payload: { name: 'a\u0001b' } }), 400],
  ['name with a colon', () => ({ method: 'POST', url: '/api/v1/profiles', payload: { name: 'a:b' } }), 400],
  ['limit=-1', () => ({ method: 'GET', url: '/api/v1/machines?limit=-1' }), 400],
  ['unknown filter', () => ({ method: 'GET', url: '/api/v1/workflows?colour=red' }), 400],
  ['bad regex filter', () => ({ method: 'GET', url: '/api/v1/machines?name=Re([)' }), 400],
  ['bad If-Match', () => ({ method: 'PUT', url: `/api/v1/machines/${uuid}`, headers: { 'if-match': 'yesterday' }, payload: { name: 'existing' } }), 400],
  ['non-unique index lookup', () => ({ method: 'GET', url: '/api/v1/machines/bootEnv:local' }), 400],
  ['JSON Patch that is not an array of ops', () => ({ method: 'PATCH', url: `/api/v1/machines/${uuid}`, headers: { 'content-type': 'application/json-patch+json' }, payload: { op: 'replace' } }), 400],
  ['JSON Patch with an unknown op', () => ({ method: 'PATCH', url: `/api/v1/machines/${uuid}`, payload: [{ op: 'explode', path: '/name' }] }), 400],
  ['JSON Patch on a missing path', () => ({ method: 'PATCH', url: `/api/v1/machines/${uuid}`, payload: [{ op: 'remove', path: '/nope/deeper' }] }), 422],
  ['JSON Patch changing the key', () => ({ method: 'PATCH', url: `/api/v1/machines/${uuid}`, payload: [{ op: 'replace', path: '/uuid', value: '00000000-0000-4000-8000-000000000000' }] }), 400],
  ['merge patch setting a bad MAC', () => ({ method: 'PATCH', url: `/api/v1/machines/${uuid}`, headers: { 'content-type': 'application/merge-patch+json' }, payload: { hardwareAddrs: ['nope'] } }), 400],
  ['prototype pollution in a merge patch', () => ({ method: 'PATCH', url: `/api/v1/machines/${uuid}`, headers: json, payload: '{"__proto__": {"polluted": true}, "constructor": {"x": 1}}' }), 400],
  ['unknown preference', () => ({ method: 'POST', url: '/api/v1/prefs', payload: { nope: 'x' } }), 400],
  ['preference with a bad value', () => ({ method: 'POST', url: '/api/v1/prefs', payload: { autoDiscover: 'maybe' } }), 400],
  ['preference naming a missing bootenv', () => ({ method: 'POST', url: '/api/v1/prefs', payload: { defaultBootEnv: 'nope' } }), 422],
  ['unknown route', () => ({ method: 'GET', url: '/api/v1/widgets' }), 404],
  ['bad token request', () => ({ method: 'POST', url: '/api/v1/auth/token', payload: { username: 'admin' } }), 400],
  ['wrong password', () => ({ method: 'POST', url: '/api/v1/auth/token', payload: { username: 'admin', password: 'wrong-password' } }), 401],
  ['param value failing its schema', () => ({ method: 'PUT', url: `/api/v1/machines/${uuid}/params/bmc%2Fport`, headers: json, payload: '70000' }), 400],
  ['content bundle with broken objects', () => ({ method: 'POST', url: '/api/v1/contents', payload: { meta: { name: 'broken' }, bootenvs: [{ name: 'b1', templates: [{ name: 'x' }] }, { nope: 1 }], stages: [{ name: 's1', bootEnv: 'missing' }] } }), 422],
];

describe('bad input', () => {
  it.each(cases)('%s → %i, error shape, nothing changed', async (_name, make, status) => {
    const before = await t.services.store.backend.readEvents('0', 100_000);
    const machine = (await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}` })).json();
    const req = make();
    const res = await t.call({ ...req, auth: req.url.endsWith('/auth/token') ? false : true } as never);
    expect(res.statusCode, res.body.slice(0, 300)).toBe(status);
    const body = res.json();
    expect(typeof body.code).toBe('string');
    expect(typeof body.message).toBe('string');
    expect(Array.isArray(body.messages)).toBe(true);
    const after = await t.services.store.backend.readEvents('0', 100_000);
    expect(after.length).toBe(before.length);
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}` })).json()).toEqual(machine);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('a broken content bundle reports every error with its origin and loads nothing', async () => {
    const res = await t.call({ method: 'POST', url: '/api/v1/contents', payload: { meta: { name: 'broken' }, bootenvs: [{ name: 'b1', templates: [{ name: 'x' }] }, { nope: 1 }], stages: [{ name: 's1', bootEnv: 'missing' }] } });
    const msgs: string[] = res.json().messages;
    expect(msgs.some((m) => m.startsWith('upload:/bootenvs/0') && m.includes('exactly one of'))).toBe(true);
    expect(msgs.some((m) => m.startsWith('upload:/bootenvs/1'))).toBe(true);
    expect(msgs.some((m) => m.startsWith('upload:/stages/0') && m.includes('bootenvs/missing'))).toBe(true);
    expect((await t.call({ method: 'GET', url: '/api/v1/stages/s1' })).statusCode).toBe(404);
    expect((await t.call({ method: 'GET', url: '/api/v1/contents/broken' })).statusCode).toBe(404);
  });
});
