// One CRUD table run over HTTP for every kind in the registry (SPEC 3.1).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kinds } from '../../src/models/registry.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;

beforeAll(async () => {
  t = await createTestApp();
  await t.call({ method: 'POST', url: '/api/v1/tasks', payload: { name: 'base-task', actions: [{ action: 'wait.seconds', args: { seconds: 1 } }] } });
  await t.call({ method: 'POST', url: '/api/v1/stages', payload: { name: 'base-stage', tasks: ['base-task'] } });
});
afterAll(async () => t.close());

interface Case {
  /** a valid new object */
  sample: () => Record<string, unknown>;
  /** a field to change with a merge patch */
  change: Record<string, unknown>;
  /** an equality filter that finds the sample */
  filter: (o: Record<string, unknown>) => string;
}

const cases: Record<string, Case> = {
  machines: { sample: () => ({ name: 'crud-m', hardwareAddrs: ['02:00:00:00:00:01'], address: '10.9.0.1' }), change: { description: 'changed' }, filter: () => 'hardwareAddrs=02:00:00:00:00:01' },
  profiles: { sample: () => ({ name: 'crud-p', params: { a: 1 } }), change: { params: { a: 2 } }, filter: () => 'name=crud-p' },
  params: { sample: () => ({ name: 'crud/param', schema: { type: 'string' } }), change: { description: 'd' }, filter: () => 'name=crud/param' },
  bootenvs: { sample: () => ({ name: 'crud-b', kernel: 'vmlinuz', templates: [{ name: 'x', path: 'x.ipxe', contents: '#!ipxe' }] }), change: { kernel: 'linux' }, filter: () => 'name=Re(^crud)' },
  templates: { sample: () => ({ id: 'crud/t.tmpl', contents: 'hello {{machine.name}}' }), change: { contents: 'bye' }, filter: () => 'id=crud/t.tmpl' },
  tasks: { sample: () => ({ name: 'crud-t', templates: [{ name: 's', contents: 'echo hi' }] }), change: { description: 'x' }, filter: () => 'name=crud-t' },
  stages: { sample: () => ({ name: 'crud-s', tasks: ['base-task'], bootEnv: 'local' }), change: { tasks: [] }, filter: () => 'bootEnv=local' },
  workflows: { sample: () => ({ name: 'crud-w', stages: ['base-stage'] }), change: { stages: ['base-stage', 'base-stage'] }, filter: () => 'stages=base-stage' },
  subscriptions: { sample: () => ({ name: 'crud-sub', url: 'http://127.0.0.1:1/hook', topics: ['machines.*.*'] }), change: { enabled: false }, filter: () => 'enabled=true' },
  users: { sample: () => ({ name: 'crud-u', role: 'readonly', password: 'a-long-password' }), change: { role: 'operator' }, filter: () => 'role=readonly' },
};

it('every kind with generic writes has a CRUD case', () => {
  expect(Kinds.filter((k) => !k.customWrites).map((k) => k.prefix).sort()).toEqual(Object.keys(cases).sort());
});

describe.each(Kinds.filter((k) => !k.customWrites).map((k) => [k.prefix, k] as const))('%s', (prefix, kind) => {
  const c = cases[prefix]!;
  let key = '';
  const url = () => `/api/v1/${prefix}/${encodeURIComponent(key)}`;

  it('creates (201) and refuses a duplicate (409)', async () => {
    const res = await t.call({ method: 'POST', url: `/api/v1/${prefix}`, payload: c.sample() });
    expect(res.statusCode, res.body).toBe(201);
    key = String(res.json()[kind.key]);
    expect(res.headers.etag).toBe('"1"');
    expect(res.json().revision).toBe(1);
    expect(res.json().createdAt).toMatch(/^\d{4}-/);
    if (kind.key === 'name' || kind.key === 'id') {
      const dup = await t.call({ method: 'POST', url: `/api/v1/${prefix}`, payload: c.sample() });
      expect(dup.statusCode).toBe(409);
      expect(dup.json().code).toBe('CONFLICT');
    }
  });

  it('gets by key with an ETag, and 404s an absent key', async () => {
    const res = await t.call({ method: 'GET', url: url() });
    expect(res.statusCode).toBe(200);
    expect(res.headers.etag).toBe('"1"');
    for (const f of kind.hidden ?? []) expect(res.json()[f]).toBeUndefined();
    const missing = await t.call({ method: 'GET', url: `/api/v1/${prefix}/does-not-exist` });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ code: 'NOT_FOUND', kind: prefix });
  });

  it('lists with a filter, X-Total-Count and HEAD', async () => {
    const res = await t.call({ method: 'GET', url: `/api/v1/${prefix}?${c.filter({})}` });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().map((o: Record<string, unknown>) => String(o[kind.key]))).toContain(key);
    expect(Number(res.headers['x-total-count'])).toBeGreaterThanOrEqual(1);
    const head = await t.call({ method: 'HEAD', url: `/api/v1/${prefix}?${c.filter({})}` });
    expect(head.statusCode).toBe(200);
    expect(head.headers['x-total-count']).toBe(res.headers['x-total-count']);
    expect(head.body).toBe('');
  });

  it('merge-patches (revision +1)', async () => {
    const res = await t.call({ method: 'PATCH', url: url(), headers: { 'content-type': 'application/merge-patch+json' }, payload: c.change });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().revision).toBe(2);
    for (const [f, v] of Object.entries(c.change)) expect(res.json()[f]).toEqual(v);
  });

  it('refuses a stale If-Match (412) and a failed JSON Patch test (409), changing nothing', async () => {
    const cur = (await t.call({ method: 'GET', url: url() })).json();
    const put = await t.call({ method: 'PUT', url: url(), headers: { 'if-match': '"1"' }, payload: { ...c.sample(), [kind.key]: key } });
    expect(put.statusCode, put.body).toBe(412);
    expect(put.json().code).toBe('STALE');
    const patch = await t.call({ method: 'PATCH', url: url(), headers: { 'content-type': 'application/json-patch+json' }, payload: [{ op: 'test', path: '/revision', value: 1 }, { op: 'replace', path: '/description', value: 'no' }] });
    expect(patch.statusCode).toBe(409);
    expect(patch.json().code).toBe('PATCH_TEST_FAILED');
    const after = (await t.call({ method: 'GET', url: url() })).json();
    expect(after).toEqual(cur);
  });

  it('replaces with a fresh If-Match (PUT) and refuses a key change (400)', async () => {
    const put = await t.call({ method: 'PUT', url: url(), headers: { 'if-match': '"2"' }, payload: { ...c.sample(), [kind.key]: key, description: 'put' } });
    expect(put.statusCode, put.body).toBe(200);
    expect(put.json().description).toBe('put');
    expect(put.headers.etag).toBe('"3"');
    if (kind.key !== 'uuid') {
      const moved = await t.call({ method: 'PUT', url: url(), payload: { ...c.sample(), [kind.key]: `${key}-other` } });
      expect(moved.statusCode).toBe(400);
    }
  });

  it('JSON Patch with a passing test op applies', async () => {
    const res = await t.call({ method: 'PATCH', url: url(), payload: [{ op: 'test', path: '/revision', value: 3 }, { op: 'add', path: '/meta', value: { team: 'infra' } }] });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().meta).toEqual({ team: 'infra' });
  });

  it('deletes (200 with the object), then 404', async () => {
    const del = await t.call({ method: 'DELETE', url: url() });
    expect(del.statusCode, del.body).toBe(200);
    expect(String(del.json()[kind.key])).toBe(key);
    expect((await t.call({ method: 'GET', url: url() })).statusCode).toBe(404);
  });
});

describe('rules across kinds', () => {
  it('refuses to delete an object in use, naming the users (409)', async () => {
    await t.call({ method: 'POST', url: '/api/v1/profiles', payload: { name: 'used' } });
    const m = await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'user-of-used', profiles: ['used'] } });
    const del = await t.call({ method: 'DELETE', url: '/api/v1/profiles/used' });
    expect(del.statusCode).toBe(409);
    expect(del.json().code).toBe('IN_USE');
    expect(del.json().message).toContain(`machines/${m.json().uuid}`);
    const stage = await t.call({ method: 'DELETE', url: '/api/v1/bootenvs/local' });
    expect(stage.statusCode).toBe(409);
  });

  it('locked machines refuse every change but the unlock (423)', async () => {
    const m = (await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'locked-one', locked: true } })).json();
    const url = `/api/v1/machines/${m.uuid}`;
    const patch = await t.call({ method: 'PATCH', url, payload: { description: 'x' } });
    expect(patch.statusCode).toBe(423);
    expect(patch.json().code).toBe('LOCKED');
    expect((await t.call({ method: 'DELETE', url })).statusCode).toBe(423);
    expect((await t.call({ method: 'PUT', url: `${url}/params/x`, headers: { 'content-type': 'application/json' }, payload: '1' })).statusCode).toBe(423);
    const unlock = await t.call({ method: 'PATCH', url, payload: { locked: false } });
    expect(unlock.statusCode).toBe(200);
    expect((await t.call({ method: 'PATCH', url, payload: { description: 'x' } })).statusCode).toBe(200);
  });

  it('content-pack objects are read-only (409 READ_ONLY)', async () => {
    const b = await t.call({ method: 'GET', url: '/api/v1/bootenvs/local' });
    expect(b.json()).toMatchObject({ readOnly: true, bundle: 'basic' });
    const patch = await t.call({ method: 'PATCH', url: '/api/v1/bootenvs/local', payload: { kernel: 'x' } });
    expect(patch.statusCode).toBe(409);
    expect(patch.json().code).toBe('READ_ONLY');
    const stage = await t.call({ method: 'PATCH', url: '/api/v1/stages/none', payload: { tasks: ['base-task'] } });
    expect(stage.json().code).toBe('READ_ONLY');
  });

  it('missing references are a 422 naming each one', async () => {
    const res = await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'refs', bootEnv: 'nope', profiles: ['p1', 'p2'], workflow: 'wf' } });
    expect(res.statusCode).toBe(422);
    const msgs: string[] = res.json().messages;
    for (const ref of ['bootenvs/nope', 'profiles/p1', 'profiles/p2', 'workflows/wf']) expect(msgs.join('\n')).toContain(ref);
  });

  it('refuses profile cycles (422) and keeps global and the built-in stages', async () => {
    await t.call({ method: 'POST', url: '/api/v1/profiles', payload: { name: 'cy-a' } });
    await t.call({ method: 'POST', url: '/api/v1/profiles', payload: { name: 'cy-b', profiles: ['cy-a'] } });
    const res = await t.call({ method: 'PATCH', url: '/api/v1/profiles/cy-a', payload: { profiles: ['cy-b'] } });
    expect(res.statusCode).toBe(422);
    expect(res.json().message).toContain('cycle');
    expect((await t.call({ method: 'DELETE', url: '/api/v1/profiles/global' })).statusCode).toBe(409);
    for (const s of ['none', 'local']) expect((await t.call({ method: 'GET', url: `/api/v1/stages/${s}` })).statusCode).toBe(200);
  });

  it('machines: MACs normalised, x86_64 refused with a hint, hostname syntax checked', async () => {
    const ok = await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'macs', hardwareAddrs: ['AA-BB-CC-00-11-22', 'aabb.cc00.1133'] } });
    expect(ok.json().hardwareAddrs).toEqual(['aa:bb:cc:00:11:22', 'aa:bb:cc:00:11:33']);
    const arch = await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'arch', arch: 'x86_64' } });
    expect(arch.statusCode).toBe(400);
    expect(arch.json().message).toContain('amd64');
    const name = await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'bad_name!' } });
    expect(name.statusCode).toBe(400);
  });

  it('pages with Link headers', async () => {
    for (let i = 0; i < 5; i++) await t.call({ method: 'POST', url: '/api/v1/profiles', payload: { name: `page-${i}` } });
    const res = await t.call({ method: 'GET', url: '/api/v1/profiles?name=Re(^page-)&limit=2&offset=2' });
    expect(res.json().map((p: { name: string }) => p.name)).toEqual(['page-2', 'page-3']);
    expect(res.headers['x-total-count']).toBe('5');
    expect(res.headers.link).toContain('rel="next"');
    expect(res.headers.link).toContain('offset=4');
  });
});

describe('workflows on machines (SPEC 5.1)', () => {
  it('expand into the task list, guard it, and clear it', async () => {
    await t.call({ method: 'POST', url: '/api/v1/bootenvs', payload: { name: 'wf-install', templates: [] } });
    await t.call({ method: 'POST', url: '/api/v1/stages', payload: { name: 'wf-s1', tasks: ['base-task'] } });
    await t.call({ method: 'POST', url: '/api/v1/stages', payload: { name: 'wf-s2', bootEnv: 'wf-install', tasks: ['base-task'] } });
    await t.call({ method: 'POST', url: '/api/v1/workflows', payload: { name: 'wf', stages: ['wf-s1', 'wf-s2'] } });
    const m = (await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'wf-machine', workflow: 'wf' } })).json();
    expect(m.tasks).toEqual(['stage:wf-s1', 'base-task', 'stage:wf-s2', 'bootenv:wf-install', 'base-task']);
    expect(m.currentTask).toBe(-1);
    const url = `/api/v1/machines/${m.uuid}`;
    const direct = await t.call({ method: 'PATCH', url, payload: { stage: 'wf-s2' } });
    expect(direct.statusCode).toBe(409);
    expect(direct.json().message).toContain('workflow');
    const tail = await t.call({ method: 'PATCH', url, payload: { tasks: ['stage:wf-s1', 'base-task', 'stage:wf-s2'] } });
    expect(tail.statusCode).toBe(409);
    const cleared = await t.call({ method: 'PATCH', url, payload: { workflow: '' } });
    expect(cleared.json()).toMatchObject({ workflow: '', tasks: [], currentTask: -1 });
    expect((await t.call({ method: 'PATCH', url, payload: { stage: 'wf-s2' } })).statusCode).toBe(200);
  });
});
