// Secrets never reach a log line: secure values, passwords and tokens, even at trace level and on errors.
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { ADMIN_PASSWORD, createTestApp, type TestApp } from '../helpers/app.js';

const SECRET = 'log-secret-5f2c9a';
let t: TestApp;
let lines = '';
beforeAll(async () => {
  const sink = new Writable({ write(chunk, _enc, cb) { lines += chunk.toString(); cb(); } });
  t = await createTestApp({ log: createLogger('trace', sink) });
});
afterAll(async () => t.close());

describe('log redaction', () => {
  it('keeps secure values, passwords and tokens out of every log line', async () => {
    const token = await t.token('admin');
    await t.call({ method: 'POST', url: '/api/v1/params', payload: { name: 'bmc/password', secure: true, schema: { type: 'string', minLength: 20 } } });
    await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'logged', params: { 'bmc/password': `${SECRET}-long-enough` } } });
    await t.call({ method: 'POST', url: '/api/v1/machines', payload: { name: 'logged2', params: { 'bmc/password': SECRET } } }); // fails validation
    await t.app.inject({ method: 'POST', url: '/api/v1/auth/token', payload: { username: 'admin', password: ADMIN_PASSWORD } });
    await t.app.inject({ method: 'POST', url: '/api/v1/auth/token', payload: { username: 'admin', password: `${SECRET}-guess` } });
    await t.call({ method: 'GET', url: '/api/v1/machines/name:logged' });
    await t.app.inject({ method: 'GET', url: `/api/v1/machines?token=${token}&limit=1` });
    expect(lines.length).toBeGreaterThan(100);
    expect(lines).toContain('"url":"/api/v1/machines"');
    for (const s of [SECRET, ADMIN_PASSWORD, token]) expect(lines).not.toContain(s);
  });
});
