// The real `ironflow serve` process: configuration errors, a missing redis-server, start-up and graceful stop.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort } from '../helpers/redis-server.js';

const MAIN = join(import.meta.dirname, '..', 'helpers', 'ironflow-main.ts');
const run = (args: string[], env: Record<string, string>) =>
  spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30_000 });

describe('ironflow serve', () => {
  it.each([
    ['IRONFLOW_PORT', 'abc', 'IRONFLOW_PORT'],
    ['IRONFLOW_ROLE', 'boss', 'all, api, worker'],
    ['REDIS_URL', 'http://x', 'REDIS_URL'],
    ['IRONFLOW_SECRET_KEY', 'short', '64 hex characters'],
  ])('refuses %s=%s with one clear line', (name, value, mention) => {
    const res = run(['serve'], { [name]: value, IRONFLOW_DATA_DIR: mkdtempSync(join(tmpdir(), 'if-')) });
    expect(res.status).toBe(2);
    const lines = res.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(mention);
  });

  it('says how to install redis-server when it is missing and REDIS_URL is unset', () => {
    const res = run(['serve'], { PATH: '/nonexistent', IRONFLOW_DATA_DIR: mkdtempSync(join(tmpdir(), 'if-')), REDIS_URL: '' });
    expect(res.status).toBe(2);
    expect(res.stderr).toContain('apt-get install -y redis-server');
    expect(res.stderr).toContain('REDIS_URL');
  });

  it('starts with an embedded Redis, serves, and stops it on SIGTERM', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'if-'));
    const port = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'serve'], {
      env: { ...process.env, IRONFLOW_DATA_DIR: dataDir, IRONFLOW_PORT: String(port), IRONFLOW_HOST: '127.0.0.1', IRONFLOW_TFTP_PORT: '0', REDIS_URL: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    try {
      for (let i = 0; i < 200 && !out.includes('api listening'); i++) await new Promise((r) => setTimeout(r, 100));
      expect(out).toContain(`api listening on http://127.0.0.1:${port}`);
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      expect(statSync(join(dataDir, 'admin-password')).mode & 0o777).toBe(0o600);
      expect(statSync(join(dataDir, 'secret.key')).mode & 0o777).toBe(0o600);
      expect(out).toContain('created user \\"admin\\" with password');
    } finally {
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
    expect(spawnSync('pgrep', ['-f', join(dataDir, 'redis')]).status).toBe(1);
  });
});

describe('rate limit settings', () => {
  it.each(['boot=0/10', 'nope=1/1', 'boot=5', 'boot=5/0'])('refuses IRONFLOW_RATE_LIMITS=%s with one clear line', (value) => {
    const res = run(['serve'], { IRONFLOW_RATE_LIMITS: value, IRONFLOW_DATA_DIR: mkdtempSync(join(tmpdir(), 'if-')) });
    expect(res.status).toBe(2);
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
    expect(res.stderr).toContain('IRONFLOW_RATE_LIMITS');
  });
});
