// Route × role × token kind, generated from the route table: a new route is covered automatically.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RouteEntry } from '../../src/app.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
let tokens: Record<string, string>;
let machineA: string;
let machineB: string;

beforeAll(async () => {
  t = await createTestApp();
  machineA = (await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'matrix-a' } })).json().uuid;
  machineB = (await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'matrix-b' } })).json().uuid;
  tokens = {
    admin: await t.token('admin'),
    operator: await t.token('operator'),
    readonly: await t.token('readonly'),
    machine: (await t.call({ method: 'GET', url: `/api/v1/machines/${machineA}/token` })).json().token,
  };
});
afterAll(async () => t.close());

/** Fills a route's parameters; `key` is machine A, or B to test a machine token on another machine. */
const concrete = (r: RouteEntry, key: string) => r.url.replace(/:key/g, key).replace(/:[a-zA-Z]+/g, 'x').replace(/\*/g, 'x');
const isRead = (m: string) => m === 'GET' || m === 'HEAD';

/** What the role may do on the route, from SPEC 10 (admin all; operator all but users/admin-only; readonly GET). */
function allowed(role: string, r: RouteEntry): boolean {
  const a = r.access ?? {};
  if (role === 'admin') return true;
  const adminOnly = a.adminOnly === true || a.prefix === 'users' || /^\/api\/v1\/users/.test(r.url);
  if (role === 'operator') return !adminOnly;
  return !adminOnly && isRead(r.method);
}

describe('route × role × token kind', () => {
  const protectedRoutes = () => t.app.routeTable.filter((r) => r.url.startsWith('/api/') && !r.public);

  it('covers every protected route', () => {
    expect(protectedRoutes().length).toBeGreaterThan(90);
  });

  it.each(['admin', 'operator', 'readonly'])('%s: allowed routes pass the guard, the rest get 403', async (role) => {
    for (const r of protectedRoutes()) {
      if (r.url.includes('revoke') || r.url.includes('rotate-secret')) continue; // would revoke the tokens this test uses
      const res = await t.app.inject({ method: r.method as 'GET', url: concrete(r, machineA), headers: { authorization: `Bearer ${tokens[role]}` } });
      const label = `${role} ${r.method} ${r.url} → ${res.statusCode}`;
      expect(res.statusCode, label).not.toBe(401);
      if (allowed(role, r)) expect(res.statusCode, label).not.toBe(403);
      else expect(res.statusCode, label).toBe(403);
    }
  });

  it('machine tokens reach only their own machine\'s machine-scoped routes', async () => {
    // fresh machines: the role passes above may have deleted A
    machineA = (await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'matrix-a2' } })).json().uuid;
    machineB = (await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'matrix-b2' } })).json().uuid;
    tokens.machine = (await t.call({ method: 'GET', url: `/api/v1/machines/${machineA}/token` })).json().token;
    let reachable = 0;
    for (const r of protectedRoutes()) {
      for (const key of [machineA, machineB]) {
        const res = await t.app.inject({ method: r.method as 'GET', url: concrete(r, key), headers: { authorization: `Bearer ${tokens.machine}` } });
        const label = `machine token ${r.method} ${concrete(r, key)} → ${res.statusCode}`;
        // Routes whose machine is not in the path (jobs, the WebSocket) let machine tokens through and check
        // ownership in the handler (tested in jobs-api.test.ts): with a key that is no job of its own, a
        // machine token never succeeds there.
        if (r.access?.machineScope && !r.access.machineParam && r.url.includes(':')) {
          expect(res.statusCode, label).toBeGreaterThanOrEqual(400);
          expect(res.statusCode, label).not.toBe(401);
          continue;
        }
        // machine-scoped routes: allowed for the token's own machine; routes with no machine in the
        // path (the WebSocket, a job claim) are allowed and restrict what the machine may do inside the handler
        if (r.access?.machineScope && (key === machineA || !r.url.includes(':'))) {
          expect(res.statusCode, label).not.toBe(403);
          reachable++;
        } else {
          expect(res.statusCode, label).toBe(403);
        }
      }
    }
    expect(reachable).toBeGreaterThanOrEqual(1);
  });
});
