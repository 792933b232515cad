// Every /api/v1 route refuses a missing or bad token (401); tokens work; roles are checked in one place.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenSigner } from '../../src/auth/tokens.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
beforeAll(async () => { t = await createTestApp(); });
afterAll(async () => t.close());

const concrete = (url: string) => url.replace(/:key/g, 'k').replace(/\*/g, 'x');

describe('authentication', () => {
  it('the route table is non-trivial and only the token route and openapi are public under /api', () => {
    const api = t.app.routeTable.filter((r) => r.url.startsWith('/api/'));
    expect(api.length).toBeGreaterThan(80);
    expect(api.filter((r) => r.public).map((r) => `${r.method} ${r.url}`).sort()).toEqual(['GET /api/v1/openapi.json', 'POST /api/v1/auth/token']);
  });

  const forged = new TokenSigner(Buffer.alloc(32, 7)).sign({ typ: 'user', sub: 'admin', role: 'admin', gen: 0, iat: 0, exp: 4_000_000_000 });
  const badTokens: [string, () => Promise<string | undefined>][] = [
    ['no header', async () => undefined],
    ['not bearer', async () => 'Basic YWRtaW46YWRtaW4='],
    ['garbage', async () => 'Bearer not-a-token'],
    ['forged signature', async () => `Bearer ${forged}`],
    ['expired', async () => `Bearer ${t.services.signer.sign({ typ: 'user', sub: 'admin', role: 'admin', gen: 0, iat: 0, exp: 1 })}`],
    ['deleted user', async () => `Bearer ${t.services.signer.sign({ typ: 'user', sub: 'ghost', role: 'admin', gen: 0, iat: 0, exp: 4_000_000_000 })}`],
  ];

  it.each(badTokens)('every protected route refuses %s with 401', async (_name, make) => {
    const authorization = await make();
    const routes = t.app.routeTable.filter((r) => r.url.startsWith('/api/') && !r.public);
    for (const r of routes) {
      const res = await t.app.inject({ method: r.method as 'GET', url: concrete(r.url), headers: authorization ? { authorization } : {} });
      expect(res.statusCode, `${r.method} ${r.url}`).toBe(401);
      if (r.method !== 'HEAD') expect(res.json().code).toBe('UNAUTHENTICATED');
    }
  });

  it('issues a working token with an expiry', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/api/v1/auth/token', payload: { username: 'admin', password: 'admin-password-1' } });
    expect(res.statusCode).toBe(200);
    const { token, expiresAt } = res.json();
    expect(new Date(expiresAt).getTime()).toBeGreaterThan(Date.now());
    const ok = await t.app.inject({ method: 'GET', url: '/api/v1/machines', headers: { authorization: `Bearer ${token}` } });
    expect(ok.statusCode).toBe(200);
  });

  it('readonly users may read but not write; operators may not manage users', async () => {
    const ro = await t.token('readonly');
    expect((await t.call({ method: 'GET', url: '/api/v1/machines', auth: ro })).statusCode).toBe(200);
    const w = await t.call({ method: 'POST', url: '/api/v1/profiles', payload: { name: 'x' }, auth: ro });
    expect(w.statusCode).toBe(403);
    expect(w.json().code).toBe('FORBIDDEN');
    const op = await t.token('operator');
    expect((await t.call({ method: 'POST', url: '/api/v1/profiles', payload: { name: 'by-operator' }, auth: op })).statusCode).toBe(201);
    expect((await t.call({ method: 'GET', url: '/api/v1/users', auth: op })).statusCode).toBe(403);
  });

  it('never returns password hashes', async () => {
    const res = await t.call({ method: 'GET', url: '/api/v1/users/admin' });
    expect(res.json().passwordHash).toBeUndefined();
    expect(res.json().password).toBeUndefined();
    expect(res.body).not.toContain('scrypt$');
  });

  it('events carry the acting principal', async () => {
    const op = await t.token('operator');
    await t.call({ method: 'POST', url: '/api/v1/profiles', payload: { name: 'audited' }, auth: op });
    const events = await t.services.store.backend.readEvents('0', 10_000);
    expect(events.find((e) => e.key === 'audited')?.principal).toBe('user:operator');
  });
});

describe('revocation and brute force', () => {
  const login = async (username: string, password: string, remoteAddress = '127.0.0.1') =>
    t.app.inject({ method: 'POST', url: '/api/v1/auth/token', remoteAddress, payload: { username, password } });

  it('a user revokes their own tokens; an admin revokes another user\'s', async () => {
    await t.token('operator');
    const mine = (await login('operator', 'operator-password-1', '10.1.0.1')).json().token;
    const other = (await login('operator', 'operator-password-1', '10.1.0.1')).json().token;
    expect((await t.call({ method: 'GET', url: '/api/v1/profiles', auth: mine })).statusCode).toBe(200);
    expect((await t.call({ method: 'POST', url: '/api/v1/auth/revoke', auth: mine })).statusCode).toBe(204);
    expect((await t.call({ method: 'GET', url: '/api/v1/profiles', auth: other })).statusCode).toBe(401);
    const fresh = (await login('operator', 'operator-password-1', '10.1.0.1')).json().token;
    expect((await t.call({ method: 'GET', url: '/api/v1/profiles', auth: fresh })).statusCode).toBe(200);
    expect((await t.call({ method: 'POST', url: '/api/v1/users/operator/revoke-tokens' })).statusCode).toBe(204);
    expect((await t.call({ method: 'GET', url: '/api/v1/profiles', auth: fresh })).statusCode).toBe(401);
    expect((await t.call({ method: 'POST', url: '/api/v1/users/operator/revoke-tokens', auth: (await login('operator', 'operator-password-1', '10.1.0.1')).json().token })).statusCode).toBe(403);
  });

  it('revoke-all invalidates every user token; logging in again works', async () => {
    const before = (await login('admin', 'admin-password-1', '10.1.0.2')).json().token;
    expect((await t.call({ method: 'POST', url: '/api/v1/auth/revoke-all', auth: before })).statusCode).toBe(204);
    expect((await t.call({ method: 'GET', url: '/api/v1/profiles', auth: before })).statusCode).toBe(401);
    const after = (await login('admin', 'admin-password-1', '10.1.0.2')).json().token;
    expect((await t.call({ method: 'GET', url: '/api/v1/profiles', auth: after })).statusCode).toBe(200);
  });

  it('password guessing is rate limited per source address (429, Retry-After) and recovers', async () => {
    const codes: number[] = [];
    for (let i = 0; i < 15; i++) codes.push((await login('admin', `wrong-${i}`, '10.9.9.9')).statusCode);
    expect(codes.slice(0, 10).every((c) => c === 401)).toBe(true);
    const limited = await login('admin', 'admin-password-1', '10.9.9.9');
    expect(limited.statusCode).toBe(429);
    expect(limited.json().code).toBe('RATE_LIMITED');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect((await login('admin', 'admin-password-1', '10.9.9.10')).statusCode).toBe(200);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await login('admin', 'admin-password-1', '10.9.9.9')).statusCode).toBe(200);
  });
});
