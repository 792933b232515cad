// Params sub-resources and the resolver through the API (SPEC 3.2, 4.2), with provenance.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
let uuid: string;
/** a JSON value as a request body (a bare string payload would be sent as text/plain) */
const json = (value: unknown) => ({ headers: { 'content-type': 'application/json' }, payload: JSON.stringify(value) });
beforeAll(async () => {
  t = await createTestApp();
  const post = (url: string, payload: Record<string, unknown>) => t.call({ method: 'POST', url, payload });
  await post('/api/v1/params', { name: 'level', schema: { type: 'integer', minimum: 0, default: 7 } });
  await post('/api/v1/profiles', { name: 'nested', params: { nestedOnly: 'nested', shared: 'nested' } });
  await post('/api/v1/profiles', { name: 'first', profiles: ['nested'], params: { shared: 'first', firstOnly: 'first' } });
  await post('/api/v1/profiles', { name: 'second', params: { shared: 'second', secondOnly: 'second', nestedOnly: 'second' } });
  await post('/api/v1/profiles', { name: 'stage-profile', params: { stageProfileOnly: 'sp', stageOnly: 'sp' } });
  await post('/api/v1/stages', { name: 'st', params: { stageOnly: 'stage', globalToo: 'stage' }, profiles: ['stage-profile'] });
  await t.call({ method: 'PUT', url: '/api/v1/profiles/global/params/globalOnly', ...json('global') });
  await t.call({ method: 'PUT', url: '/api/v1/profiles/global/params/globalToo', ...json('global') });
  const m = await post('/api/v1/machines', { name: 'pm', profiles: ['first', 'second'], stage: 'st', params: { own: 'machine', shared: 'machine' } });
  uuid = m.json().uuid;
});
afterAll(async () => t.close());

describe('resolution through the API', () => {
  it.each([
    ['own', 'machine', `machines/UUID`],
    ['shared', 'machine', 'machines/UUID'],
    ['firstOnly', 'first', 'profiles/first'],
    ['nestedOnly', 'nested', 'profiles/nested'],
    ['secondOnly', 'second', 'profiles/second'],
    ['stageOnly', 'stage', 'stages/st'],
    ['stageProfileOnly', 'sp', 'profiles/stage-profile'],
    ['globalToo', 'stage', 'stages/st'],
    ['globalOnly', 'global', 'profiles/global'],
    ['level', 7, 'params/level'],
  ])('%s → %s from %s', async (name, value, source) => {
    const one = await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/params/${name}?aggregate=true` });
    expect(one.statusCode, one.body).toBe(200);
    expect(one.json()).toEqual({ value, source: source.replace('UUID', uuid) });
    const all = (await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/params?aggregate=true` })).json();
    expect(all[name]).toEqual({ value, source: source.replace('UUID', uuid) });
  });

  it('without aggregate returns only the machine\'s own params', async () => {
    const res = await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/params` });
    expect(res.json()).toEqual({ own: 'machine', shared: 'machine' });
  });
});

describe('params sub-resource writes', () => {
  it('sets, reads, deletes one param whose name contains a slash', async () => {
    const url = `/api/v1/machines/${uuid}/params/bmc%2Fdriver`;
    expect((await t.call({ method: 'PUT', url, ...json('sim') })).statusCode).toBe(200);
    expect((await t.call({ method: 'PUT', url, payload: 'sim' })).statusCode).toBe(415);
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/${uuid}/params/bmc/driver` })).json()).toBe('sim');
    const listed = await t.call({ method: 'GET', url: '/api/v1/machines?bmc/driver=sim' });
    expect(listed.json().map((m: { uuid: string }) => m.uuid)).toEqual([uuid]);
    expect((await t.call({ method: 'DELETE', url })).json()).toBe('sim');
    expect((await t.call({ method: 'GET', url })).statusCode).toBe(404);
  });

  it('validates values against the Param schema (400 naming the param)', async () => {
    const bad = await t.call({ method: 'PUT', url: `/api/v1/machines/${uuid}/params/level`, ...json(-1) });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toContain('params/level');
    const bad2 = await t.call({ method: 'POST', url: '/api/v1/profiles', payload: { name: 'badlevel', params: { level: 'high' } } });
    expect(bad2.statusCode).toBe(400);
    expect((await t.call({ method: 'GET', url: '/api/v1/profiles/badlevel' })).statusCode).toBe(404);
    expect((await t.call({ method: 'PUT', url: `/api/v1/machines/${uuid}/params/level`, ...json(3) })).statusCode).toBe(200);
  });

  it('replaces the map (POST) and patches it (merge and JSON Patch)', async () => {
    const url = `/api/v1/profiles/second/params`;
    expect((await t.call({ method: 'POST', url, payload: { x: 1, y: 2 } })).json()).toEqual({ x: 1, y: 2 });
    expect((await t.call({ method: 'PATCH', url, headers: { 'content-type': 'application/merge-patch+json' }, payload: { y: null, z: 3 } })).json()).toEqual({ x: 1, z: 3 });
    const jp = await t.call({ method: 'PATCH', url, payload: [{ op: 'test', path: '/x', value: 2 }, { op: 'remove', path: '/x' }] });
    expect(jp.statusCode).toBe(409);
    expect((await t.call({ method: 'GET', url })).json()).toEqual({ x: 1, z: 3 });
  });
});
