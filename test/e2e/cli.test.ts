// The CLI against a listening server: output formats, filters, patches, params, errors and exit codes.
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseArgs } from '../../src/cli/args.js';
import { CliError } from '../../src/cli/client.js';
import { runCli } from '../../src/cli/commands.js';
import { ADMIN_PASSWORD, createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
let env: NodeJS.ProcessEnv;
beforeAll(async () => {
  t = await createTestApp();
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  const addr = t.app.server.address() as { port: number };
  env = { IRONFLOW_ENDPOINT: `http://127.0.0.1:${addr.port}`, IRONFLOW_CREDENTIALS: join(mkdtempSync(join(tmpdir(), 'if-cli-')), 'creds.json') };
});
afterAll(async () => t.close());

async function cli(...argv: string[]): Promise<string> {
  const out: string[] = [];
  await runCli(parseArgs(argv), env, (s) => out.push(s));
  return out.join('\n');
}

describe('ironflow CLI', () => {
  it('logs in and stores the token with mode 0600', async () => {
    expect(await cli('login', '--username', 'admin', '--password', ADMIN_PASSWORD)).toContain('logged in');
    expect(existsSync(env.IRONFLOW_CREDENTIALS!)).toBe(true);
    expect(JSON.parse(readFileSync(env.IRONFLOW_CREDENTIALS!, 'utf8')).token).toMatch(/\./);
  });

  it('creates, filters, shows by index, patches and resolves params', async () => {
    await cli('profiles', 'create', '{"name":"cli-prof","params":{"ntp":"10.0.0.1"}}');
    const created = JSON.parse(await cli('machines', 'create', '{"name":"cli1","hardwareAddrs":["52:54:00:cc:00:01"],"profiles":["cli-prof"]}'));
    expect(created.hardwareAddrs).toEqual(['52:54:00:cc:00:01']);
    await cli('machines', 'create', 'name: cli2');
    const table = await cli('machines', 'list', 'name=Re(^cli)', '--sort', 'name', '-o', 'table');
    expect(table.split('\n')[0]).toMatch(/^UUID\s+NAME/);
    expect(table).toMatch(/cli1[\s\S]*cli2/);
    expect(JSON.parse(await cli('machines', 'show', 'hardwareAddrs:52-54-00-CC-00-01')).name).toBe('cli1');
    expect(JSON.parse(await cli('machines', 'update', 'name:cli1', '{"description":"merged"}')).description).toBe('merged');
    await cli('machines', 'params', 'name:cli1', 'set', 'kernel-console', '"console=ttyS1"');
    const agg = JSON.parse(await cli('machines', 'params', 'name:cli1', '--aggregate'));
    expect(agg['kernel-console']).toEqual({ value: 'console=ttyS1', source: `machines/${created.uuid}` });
    expect(agg.ntp).toEqual({ value: '10.0.0.1', source: 'profiles/cli-prof' });
  });

  it('reports API errors with the server message and a non-zero exit code', async () => {
    const err = await cli('machines', 'patch', 'name:cli1', '[{"op":"test","path":"/revision","value":99}]').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).exitCode).toBe(1);
    expect((err as CliError).message).toContain('PATCH_TEST_FAILED');
    const missing = await cli('machines', 'show', 'name:nope').catch((e: unknown) => e);
    expect((missing as CliError).message).toContain('404 NOT_FOUND');
    const usage = await cli('machines', 'explode').catch((e: unknown) => e);
    expect((usage as CliError).exitCode).toBe(2);
  });

  it('round-trips a content pack through bundle and unbundle', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'if-pack-'));
    const bundleFile = join(dir, 'core.yaml');
    await cli('content', 'bundle', join(import.meta.dirname, '..', '..', 'content', 'core'), bundleFile);
    expect(await cli('content', 'unbundle', bundleFile, join(dir, 'pack'))).toMatch(/wrote \d+ files/);
    expect(existsSync(join(dir, 'pack', 'meta.yaml'))).toBe(true);
    expect(existsSync(join(dir, 'pack', 'bootenvs', 'debian-12-install.yaml'))).toBe(true);
  });

  it('logs out', async () => {
    expect(await cli('logout')).toBe('logged out');
    const err = await cli('machines', 'list').catch((e: unknown) => e);
    expect((err as CliError).message).toContain('401');
  });
});
