// Machine-facing routes (SPEC 7.3): user state (POST /events), phone-home and GET /metadata, found by
// source address or machine token, over inject and over a real socket with the real curl binary.
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { issueMachineToken } from '../../src/auth/machine-tokens.js';
import { issueUserToken } from '../../src/auth/users.js';
import { loadConfig } from '../../src/config.js';
import { SystemPrincipal } from '../../src/models/principal.js';
import { buildServices, initialiseStore, type Services } from '../../src/services.js';
import { ADMIN_PASSWORD, FIXTURE_CONTENT } from '../helpers/app.js';
import { requirePrograms } from '../helpers/peers.js';
import { testRedisUrl, uniquePrefix } from '../helpers/redis.js';

const run = promisify(execFile);
const SECRET = 'ab'.repeat(32);

interface Instance {
  app: FastifyInstance;
  s: Services;
  close(): Promise<void>;
}

async function instance(prefix: string, env: Record<string, string> = {}): Promise<Instance> {
  const config = loadConfig({
    IRONFLOW_DATA_DIR: mkdtempSync(join(tmpdir(), 'ironflow-us-')), IRONFLOW_ADMIN_PASSWORD: ADMIN_PASSWORD, IRONFLOW_REDIS_PREFIX: prefix,
    IRONFLOW_LOG_LEVEL: 'silent', IRONFLOW_SECRET_KEY: SECRET, ...env,
  });
  const conns: Redis[] = [];
  const connect = (o: { blocking?: boolean }) => {
    const c = new Redis(testRedisUrl(), { maxRetriesPerRequest: o.blocking ? null : 1 });
    conns.push(c);
    return c;
  };
  const s = buildServices(config, connect({}), connect, pino({ level: 'silent' }));
  await initialiseStore(s, [FIXTURE_CONTENT]);
  const app = await buildApp(s);
  return {
    app, s, async close() {
      await app.close();
      s.bus.close();
      await s.queues.close();
      conns.forEach((c) => c.disconnect());
    },
  };
}

const prefix = uniquePrefix('us');
let a: Instance;
let proxied: Instance;
let admin: string;
const m: Record<'local' | 'b' | 'c', { uuid: string; token: string }> = {} as never;

const post = (opts: InjectOptions & { from?: string }, on: Instance = a) => on.app.inject({ method: 'POST', url: '/events', remoteAddress: opts.from ?? '10.0.0.2', ...opts });
const timeline = async (uuid: string) => (await a.app.inject({ method: 'GET', url: `/api/v1/machines/${uuid}/events?limit=1000`, headers: { authorization: `Bearer ${admin}` } })).json() as { id: string; type: string; state: string; body: { code: number; message: string } }[];

beforeAll(async () => {
  a = await instance(prefix);
  proxied = await instance(prefix, { IRONFLOW_TRUSTED_PROXIES: '127.0.0.1,192.168.50.0/24' });
  admin = (await issueUserToken(a.s.store, a.s.signer, 'admin', ADMIN_PASSWORD, 3600)).token;
  const mk = async (name: string, address?: string) => {
    const o = await a.s.store.create('machines', { name, ...(address ? { address } : {}), meta: { tags: 'rack-1, gpu' }, params: { 'site/rack': 'r42', 'not-meta': 'x' } }, { principal: SystemPrincipal });
    return { uuid: String(o.uuid), token: issueMachineToken(a.s.signer, o, 600).token };
  };
  m.local = await mk('us-local', '127.0.0.1');
  m.b = await mk('us-b', '10.0.0.2');
  m.c = await mk('us-c');
  await a.s.store.create('params', { name: 'site/rack', meta: { metadata: 'true' }, schema: { type: 'string' } }, { principal: SystemPrincipal });
  await a.s.store.create('params', { name: 'site/zone', meta: { metadata: 'true' }, schema: { type: 'string', default: 'z1' } }, { principal: SystemPrincipal });
  await a.s.store.create('params', { name: 'not-meta', schema: { type: 'string' } }, { principal: SystemPrincipal });
});
afterAll(async () => {
  await a?.close();
  await proxied?.close();
});

describe('POST /events (user state)', () => {
  it('records every valid state as user.{code} with {code, message}, newest first on the timeline', async () => {
    const before = (await timeline(m.b.uuid)).length;
    for (const state of ['running', 'succeeded', 'failed']) {
      const res = await post({ payload: { state, code: 1000, message: `now ${state}` } });
      expect(res.statusCode, res.body).toBe(201);
      expect(res.json()).toMatchObject({ type: 'user.1000', state, body: { code: 1000, message: `now ${state}` }, machine: m.b.uuid });
    }
    const entries = await timeline(m.b.uuid);
    expect(entries.length - before).toBe(3);
    expect(entries.slice(0, 3).map((e) => e.state)).toEqual(['failed', 'succeeded', 'running']);
  });

  it.each([
    ['999', 999, 422], ['1000', 1000, 201], ['1099', 1099, 201], ['1100', 1100, 422], ['1.5', 1.5, 422], ['the string "1000"', '1000', 422], ['null', null, 422],
  ] as const)('code %s → %i', async (_name, code, status) => {
    const res = await post({ payload: { state: 'running', code, message: 'x' } });
    expect(res.statusCode, res.body).toBe(status);
    if (status === 422) {
      expect(res.json().code).toBe('UNPROCESSABLE');
      expect(res.json().message).toMatch(/^code: /);
    } else expect(res.json().type).toBe(`user.${code}`);
  });

  it('names every missing or wrong field; message is optional; unknown fields are ignored', async () => {
    const none = await post({ payload: {} });
    expect(none.statusCode).toBe(422);
    expect(none.json().messages.map((x: string) => x.split(':')[0])).toEqual(['state', 'code']);
    const badState = await post({ payload: { state: 'done', code: 1000 } });
    expect(badState.statusCode).toBe(422);
    expect(badState.json().message).toMatch(/^state: must be one of running, succeeded, failed/);
    const noMessage = await post({ payload: { state: 'running', code: 1001, extra: true } });
    expect(noMessage.statusCode).toBe(201);
    expect(noMessage.json().body).toEqual({ code: 1001, message: '' });
    const wrongType = await post({ payload: { state: 'running', code: 1001, message: 42 } });
    expect(wrongType.statusCode).toBe(422);
    expect(wrongType.json().message).toMatch(/^message: /);
  });

  it('refuses a message over 4 KiB (5 KiB) and takes exactly 4 KiB', async () => {
    const big = await post({ payload: { state: 'running', code: 1000, message: 'x'.repeat(5 * 1024) } });
    expect(big.statusCode).toBe(422);
    expect(big.json().message).toMatch(/^message: at most 4096 bytes, got 5120/);
    const edge = await post({ payload: { state: 'running', code: 1000, message: 'é'.repeat(2048) } });
    expect(edge.statusCode).toBe(201);
  });

  it('refuses a body that is not JSON (422 naming the body), whatever its content type', async () => {
    for (const type of ['application/x-www-form-urlencoded', 'application/json', 'text/plain']) {
      const res = await post({ payload: 'state=running&code=1000', headers: { 'content-type': type } });
      expect(res.statusCode, type).toBe(422);
      expect(res.json().message).toMatch(/^body: not valid JSON/);
    }
    const empty = await post({ payload: '', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(empty.statusCode).toBe(422);
    expect(empty.json().message).toMatch(/^body: missing/);
  });

  it('reads a JSON body sent as a form (Equinix: curl -X POST -d \'{…}\' URL) over a real socket', async () => {
    requirePrograms('curl');
    const url = await a.app.listen({ port: 0, host: '127.0.0.1' });
    const { stdout } = await run('curl', ['-sS', '-X', 'POST', '-d', '{"state":"running","code":1000,"message":"hi"}', '-w', '\n%{http_code} %{content_type}', `${url}/events`]);
    const [body, status] = stdout.split('\n');
    expect(status).toMatch(/^201 application\/json/);
    expect(JSON.parse(body!)).toMatchObject({ type: 'user.1000', state: 'running', body: { code: 1000, message: 'hi' }, machine: m.local.uuid });
    expect((await timeline(m.local.uuid))[0]).toMatchObject({ type: 'user.1000', body: { message: 'hi' } });
    const meta = await run('curl', ['-sS', `${url}/metadata`]);
    expect(JSON.parse(meta.stdout)).toMatchObject({ id: m.local.uuid, hostname: 'us-local' });
  });

  it('says clearly that an unknown source address has no machine (404)', async () => {
    const res = await post({ from: '10.9.9.9', payload: { state: 'running', code: 1000 } });
    expect(res.statusCode).toBe(404);
    expect(res.json().message).toMatch(/no machine has address 10\.9\.9\.9/);
    const v6 = await post({ from: 'fe80::1', payload: { state: 'running', code: 1000 } });
    expect(v6.statusCode).toBe(404);
  });

  it('a machine token wins over the source address: its own machine gets the entry', async () => {
    const bBefore = (await timeline(m.b.uuid)).length;
    const res = await post({ from: '10.0.0.2', headers: { authorization: `Bearer ${m.c.token}` }, payload: { state: 'succeeded', code: 1050, message: 'from c' } });
    expect(res.statusCode).toBe(201);
    expect(res.json().machine).toBe(m.c.uuid);
    expect((await timeline(m.c.uuid))[0]).toMatchObject({ type: 'user.1050', body: { message: 'from c' } });
    expect((await timeline(m.b.uuid)).length).toBe(bBefore);
  });

  it('a token for this machine works from any address; bad or user tokens are refused', async () => {
    const own = await post({ from: '10.9.9.9', headers: { authorization: `Bearer ${m.b.token}` }, payload: { state: 'running', code: 1002 } });
    expect(own.statusCode).toBe(201);
    expect(own.json().machine).toBe(m.b.uuid);
    const forged = await post({ headers: { authorization: `Bearer ${m.b.token.slice(0, -2)}xx` }, payload: { state: 'running', code: 1002 } });
    expect(forged.statusCode).toBe(401);
    const user = await post({ headers: { authorization: `Bearer ${admin}` }, payload: { state: 'running', code: 1002 } });
    expect(user.statusCode).toBe(403);
  });

  it('records repeated identical posts as distinct entries', async () => {
    const before = (await timeline(m.b.uuid)).length;
    const ids = new Set<string>();
    for (let i = 0; i < 3; i++) ids.add((await post({ payload: { state: 'running', code: 1003, message: 'same' } })).json().id);
    expect(ids.size).toBe(3);
    expect((await timeline(m.b.uuid)).length).toBe(before + 3);
  });

  it('with userStateTokenOnly refuses the source-address lookup (401) but takes a token', async () => {
    await a.s.prefs.set({ userStateTokenOnly: 'true' });
    try {
      const byAddress = await post({ payload: { state: 'running', code: 1000 } });
      expect(byAddress.statusCode).toBe(401);
      expect(byAddress.json().message).toMatch(/userStateTokenOnly/);
      const byToken = await post({ headers: { authorization: `Bearer ${m.b.token}` }, payload: { state: 'running', code: 1000 } });
      expect(byToken.statusCode).toBe(201);
      // metadata is still served by address
      expect((await a.app.inject({ url: '/metadata', remoteAddress: '10.0.0.2' })).statusCode).toBe(200);
    } finally {
      await a.s.prefs.set({ userStateTokenOnly: 'false' });
    }
  });

  it('follows an address that moves to another machine, and one that is given up', async () => {
    const mk = (name: string, address?: string) => a.s.store.create('machines', { name, ...(address ? { address } : {}) }, { principal: SystemPrincipal });
    const x = String((await mk('us-move-x', '10.0.7.7')).uuid);
    const y = String((await mk('us-move-y')).uuid);
    const send = (code: number) => post({ from: '10.0.7.7', payload: { state: 'running', code } });
    const first = await send(1070);
    expect(first.json()).toMatchObject({ machine: x }); // this process now knows 10.0.7.7 as x
    expect((await send(1071)).json().machine).toBe(x);
    await a.s.store.update('machines', x, (o) => ({ ...o, address: '10.0.7.8' }), { principal: SystemPrincipal });
    await a.s.store.update('machines', y, (o) => ({ ...o, address: '10.0.7.7' }), { principal: SystemPrincipal });
    const moved = await send(1072);
    expect(moved.statusCode).toBe(201);
    expect(moved.json().machine).toBe(y);
    expect((await a.app.inject({ url: '/metadata', remoteAddress: '10.0.7.7' })).json().id).toBe(y);
    await a.s.store.update('machines', y, (o) => ({ ...o, address: '' }), { principal: SystemPrincipal });
    expect((await send(1073)).statusCode).toBe(404);
    expect((await a.app.inject({ method: 'POST', url: '/phone-home', remoteAddress: '10.0.7.7' })).statusCode).toBe(404);
    expect((await timeline(x)).map((e) => e.type)).toEqual(['user.1071', 'user.1070']);
    expect((await timeline(y)).map((e) => e.type)).toEqual(['user.1072']);
  });

  it('POST /phone-home records provisioning.phone_home', async () => {
    const res = await a.app.inject({ method: 'POST', url: '/phone-home', remoteAddress: '10.0.0.2', payload: 'instance_id=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toMatchObject({ type: 'provisioning.phone_home', state: 'succeeded', machine: m.b.uuid });
    expect((await timeline(m.b.uuid))[0]!.type).toBe('provisioning.phone_home');
  });
});

describe('rate limit', () => {
  it('limits each client address (the real one behind a trusted proxy) with 429 and Retry-After', async () => {
    const burst = async (on: Instance, from: string, xff?: string) => {
      const codes: number[] = [];
      for (let i = 0; i < 130; i++) codes.push((await on.app.inject({ url: '/metadata', remoteAddress: from, headers: xff ? { 'x-forwarded-for': xff } : {} })).statusCode);
      return codes;
    };
    const own = await burst(a, '10.77.0.1');
    expect(own.slice(0, 100).every((c) => c === 404)).toBe(true);
    expect(own.slice(110)).toContain(429);
    const limited = await a.app.inject({ url: '/metadata', remoteAddress: '10.77.0.1' });
    expect(limited.statusCode).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect((await a.app.inject({ url: '/metadata', remoteAddress: '10.0.0.2' })).statusCode).toBe(200);
    // two machines behind one proxy have a bucket each
    expect((await burst(proxied, '127.0.0.1', '10.77.0.2')).slice(110)).toContain(429);
    expect((await proxied.app.inject({ url: '/metadata', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': '10.0.0.2' } })).statusCode).toBe(200);
    // a valid machine token is limited per machine, not per address
    expect((await a.app.inject({ url: '/metadata', remoteAddress: '10.77.0.1', headers: { authorization: `Bearer ${m.c.token}` } })).statusCode).toBe(200);
  });
});

describe('GET /metadata', () => {
  it('returns the calling machine (by address) with only metadata params, tags and URLs', async () => {
    const res = await a.app.inject({ url: '/metadata', remoteAddress: '10.0.0.2', headers: { host: 'prov.example:8080' } });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      id: m.b.uuid, hostname: 'us-b', arch: 'amd64', bootEnv: 'local', workflow: '', stage: 'none', tags: ['rack-1', 'gpu'],
      params: { 'site/rack': 'r42', 'site/zone': 'z1' },
      api_url: 'http://prov.example:8080/api/v1', user_state_url: 'http://prov.example:8080/events', phone_home_url: 'http://prov.example:8080/phone-home',
    });
  });

  it('finds the machine by its token too; unknown addresses are a 404', async () => {
    const res = await a.app.inject({ url: '/metadata', remoteAddress: '10.9.9.9', headers: { authorization: `Bearer ${m.c.token}` } });
    expect(res.statusCode).toBe(200);
    expect(res.json().id).toBe(m.c.uuid);
    expect((await a.app.inject({ url: '/metadata', remoteAddress: '10.9.9.9' })).statusCode).toBe(404);
  });

  it('sees a new metadata param as soon as it is declared', async () => {
    await a.s.store.patch('params', 'not-meta', { type: 'merge', doc: { meta: { metadata: 'true' } } }, { principal: SystemPrincipal });
    await expect.poll(async () => (await a.app.inject({ url: '/metadata', remoteAddress: '10.0.0.2' })).json().params['not-meta'], { timeout: 5000 }).toBe('x');
    await a.s.store.patch('params', 'not-meta', { type: 'merge', doc: { meta: { metadata: 'false' } } }, { principal: SystemPrincipal });
    await expect.poll(async () => (await a.app.inject({ url: '/metadata', remoteAddress: '10.0.0.2' })).json().params['not-meta'], { timeout: 5000 }).toBeUndefined();
  });

  it('ignores X-Forwarded-For unless the peer is a trusted proxy', async () => {
    const untrusted = await a.app.inject({ url: '/metadata', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': '10.0.0.2' } });
    expect(untrusted.json().id).toBe(m.local.uuid);
    const viaProxy = await proxied.app.inject({ url: '/metadata', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': '10.0.0.2' } });
    expect(viaProxy.json().id).toBe(m.b.uuid);
    // the right-most hop that is not a trusted proxy is the client; a spoofed left-most hop is not believed
    const chain = await proxied.app.inject({ url: '/metadata', remoteAddress: '192.168.50.7', headers: { 'x-forwarded-for': '127.0.0.1, 10.0.0.2, 192.168.50.9' } });
    expect(chain.json().id).toBe(m.b.uuid);
    const notAProxy = await proxied.app.inject({ url: '/metadata', remoteAddress: '10.0.0.2', headers: { 'x-forwarded-for': '127.0.0.1' } });
    expect(notAProxy.json().id).toBe(m.b.uuid);
  });
});
