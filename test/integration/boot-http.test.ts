// The boot file system over HTTP (Fastify inject, real Redis, the real core content pack): golden files
// for every shipped bootenv, percent-encoded MACs, changes served at once, the unknown bootenv,
// discovery, render failures, timeline entries and the operator views.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { fixtureMachine, fixtureParams, FIXTURE_PUBLIC_URL, repoRoot } from '../helpers/render-content.js';

const HOST = new URL(FIXTURE_PUBLIC_URL).host;
const MAC = fixtureMachine.hardwareAddrs[0]!;
const UUID = fixtureMachine.uuid;
const goldenRoot = join(repoRoot, 'test', 'golden');

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]));
}
const goldenFiles = (bootenv: string) => filesUnder(join(goldenRoot, bootenv)).map((f) => relative(join(goldenRoot, bootenv), f).split(sep).join('/')).sort();

let t: TestApp;

const boot = (path: string, opts: { method?: 'GET' | 'HEAD'; headers?: Record<string, string> } = {}) =>
  t.app.inject({ method: opts.method ?? 'GET', url: `/boot/${path}`, headers: { host: HOST, ...opts.headers } });

async function setPrefs(prefs: Record<string, string>): Promise<void> {
  const res = await t.call({ method: 'POST', url: '/api/v1/prefs', payload: prefs });
  expect(res.statusCode, res.body).toBe(200);
}

async function putNode1(bootEnv: string, extra: Record<string, unknown> = {}): Promise<void> {
  await t.services.store.remove('machines', UUID, { principal: { type: 'system', name: 'test' } }).catch(() => undefined);
  const res = await t.call({
    method: 'POST',
    url: '/api/v1/machines',
    payload: { uuid: UUID, name: fixtureMachine.name, address: fixtureMachine.address, hardwareAddrs: fixtureMachine.hardwareAddrs, params: fixtureParams, bootEnv, ...extra },
  });
  expect(res.statusCode, res.body).toBe(201);
}

async function patchMachine(key: string, patch: Record<string, unknown>): Promise<void> {
  const res = await t.call({ method: 'PATCH', url: `/api/v1/machines/${key}`, payload: patch, headers: { 'content-type': 'application/merge-patch+json' } });
  expect(res.statusCode, res.body).toBe(200);
}

/** Machine tokens differ per render: check the token authenticates as node1, then write the golden placeholder. */
async function withFixtureToken(body: string): Promise<string> {
  const tokens = [...body.matchAll(/Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)/g)].map((m) => m[1]!);
  for (const token of new Set(tokens)) {
    const who = await t.services.guard.authenticate(`Bearer ${token}`);
    expect(who).toMatchObject({ type: 'machine', uuid: UUID });
  }
  return body.replace(/Bearer [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/g, `Bearer test-token.${fixtureMachine.name}`);
}

async function timeline(uuid: string): Promise<{ type: string; body: Record<string, unknown> }[]> {
  const rows = await t.redis.xrange(t.services.keys.timeline(uuid), '-', '+');
  return rows.map(([, f]) => {
    const rec: Record<string, string> = {};
    for (let i = 0; i + 1 < f.length; i += 2) rec[f[i]!] = f[i + 1]!;
    return { type: rec.type!, body: JSON.parse(rec.body ?? 'null') as Record<string, unknown> };
  });
}

async function eventually<T>(probe: () => Promise<T>, ok: (v: T) => boolean, what: string, ms = 3000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

beforeAll(async () => {
  t = await createTestApp({ content: [join(repoRoot, 'content')] });
});
afterAll(async () => {
  await t?.close();
});
beforeEach(async () => {
  await setPrefs({ unknownBootEnv: 'ignore', autoDiscover: 'false' });
});

describe('golden files served over HTTP', () => {
  const bootenvs = readdirSync(goldenRoot).sort();

  it('covers every shipped bootenv', () => {
    expect(bootenvs).toEqual(['debian-12-install', 'discovery', 'ignore', 'local', 'rocky-9-install', 'ubuntu-24.04-install']);
  });

  it.each(bootenvs)('%s: every golden file, byte for byte', async (bootenv) => {
    const onlyUnknown = (await t.services.store.mustGet('bootenvs', bootenv)).onlyUnknown === true;
    if (onlyUnknown) {
      await t.services.store.remove('machines', UUID, { principal: { type: 'system', name: 'test' } }).catch(() => undefined);
      await setPrefs({ unknownBootEnv: bootenv });
    } else {
      await putNode1(bootenv);
      const listed = await t.call({ method: 'GET', url: `/api/v1/machines/name:node1/boot`, headers: { host: HOST } });
      expect(listed.statusCode, listed.body).toBe(200);
      expect((listed.json() as { path: string }[]).map((f) => f.path).sort()).toEqual(goldenFiles(bootenv));
    }
    for (const path of goldenFiles(bootenv)) {
      const res = await boot(path);
      expect(res.statusCode, `${bootenv}/${path}: ${res.body}`).toBe(200);
      expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
      expect(await withFixtureToken(res.body), `${bootenv}/${path}`).toBe(readFileSync(join(goldenRoot, bootenv, path), 'utf8'));
    }
  });
});

describe('known machines', () => {
  beforeAll(async () => {
    await putNode1('local');
  });

  it('decodes iPXE\'s percent-encoded MAC (either case of hex)', async () => {
    const plain = await boot(`${MAC}.ipxe`);
    expect(plain.statusCode).toBe(200);
    for (const enc of [MAC.replaceAll(':', '%3A'), MAC.replaceAll(':', '%3a')]) {
      const res = await boot(`${enc}.ipxe`);
      expect(res.statusCode).toBe(200);
      expect(res.body).toBe(plain.body);
    }
  });

  it('answers HEAD with the length and no body, and Range with 206', async () => {
    const full = await boot('pxelinux.cfg/01-52-54-00-12-34-56');
    const head = await boot('pxelinux.cfg/01-52-54-00-12-34-56', { method: 'HEAD' });
    expect(head.statusCode).toBe(200);
    expect(head.body).toBe('');
    expect(Number(head.headers['content-length'])).toBe(Buffer.byteLength(full.body));
    const part = await boot('pxelinux.cfg/01-52-54-00-12-34-56', { headers: { range: 'bytes=0-6' } });
    expect(part.statusCode).toBe(206);
    expect(part.body).toBe(full.body.slice(0, 7));
    expect(part.headers['content-range']).toBe(`bytes 0-6/${Buffer.byteLength(full.body)}`);
  });

  it('records boot.file_served on the machine timeline (path and protocol), not for HEAD', async () => {
    const before = (await timeline(UUID)).filter((e) => e.type === 'boot.file_served').length;
    await boot('grub/grub.cfg-01-52-54-00-12-34-56', { method: 'HEAD' });
    await boot('grub/grub.cfg-01-52-54-00-12-34-56');
    const entries = await eventually(() => timeline(UUID), (es) => es.filter((e) => e.type === 'boot.file_served').length > before, 'boot.file_served');
    const served = entries.filter((e) => e.type === 'boot.file_served');
    expect(served).toHaveLength(before + 1);
    expect(served.at(-1)!.body).toEqual({ path: 'grub/grub.cfg-01-52-54-00-12-34-56', protocol: 'http', bootEnv: 'local' });
  });

  it('serves a changed MAC, address or bootenv at once; old paths 404', async () => {
    await patchMachine(UUID, { hardwareAddrs: ['52:54:00:aa:bb:cc'] });
    expect((await boot(`${MAC}.ipxe`)).statusCode).toBe(404);
    expect((await boot('pxelinux.cfg/01-52-54-00-12-34-56')).statusCode).toBe(404);
    expect((await boot('52:54:00:aa:bb:cc.ipxe')).statusCode).toBe(200);
    expect((await boot('grub/grub.cfg-01-52-54-00-aa-bb-cc')).body).toContain('node1');

    await patchMachine(UUID, { address: '192.168.100.11' });
    expect((await boot('192.168.100.10.ipxe')).statusCode).toBe(404);
    expect((await boot('pxelinux.cfg/C0A8640A')).statusCode).toBe(404);
    expect((await boot('pxelinux.cfg/C0A8640B')).statusCode).toBe(200);

    await patchMachine(UUID, { bootEnv: 'debian-12-install' });
    expect((await boot('52:54:00:aa:bb:cc.ipxe')).body).toContain('boots bootenv debian-12-install');
    expect((await boot(`machines/${UUID}/preseed.cfg`)).statusCode).toBe(200);
    await patchMachine(UUID, { bootEnv: 'local' });
    expect((await boot(`machines/${UUID}/preseed.cfg`)).statusCode).toBe(404);
    expect((await boot('52:54:00:aa:bb:cc.ipxe')).body).toContain('boots from its local disk');

    await t.call({ method: 'DELETE', url: `/api/v1/machines/${UUID}` });
    expect((await boot('52:54:00:aa:bb:cc.ipxe')).statusCode).toBe(404);
    await putNode1('local');
  });

  it('renders with params as they are now (a profile param changes the next render)', async () => {
    const profile = await t.call({ method: 'POST', url: '/api/v1/profiles', payload: { name: 'console-ttyS1', params: { 'kernel-console': 'console=ttyS1,9600' } } });
    expect(profile.statusCode, profile.body).toBe(201);
    await patchMachine(UUID, { bootEnv: 'debian-12-install', profiles: ['console-ttyS1'] });
    expect((await boot(`${MAC}.ipxe`)).body).toContain('console=ttyS1,9600');
    await t.call({ method: 'PUT', url: '/api/v1/profiles/console-ttyS1/params/kernel-console', payload: '"console=ttyS2"', headers: { 'content-type': 'application/json' } });
    expect((await boot(`${MAC}.ipxe`)).body).toContain('console=ttyS2');
    await patchMachine(UUID, { bootEnv: 'local', profiles: [] });
  });

  it('follows writable bootenvs and templates: a new path at once, a new template on the next event', async () => {
    let res = await t.call({ method: 'POST', url: '/api/v1/templates', payload: { id: 'custom/hello.ipxe.tmpl', contents: '#!ipxe\necho hello {{machine.name}}\n' } });
    expect(res.statusCode, res.body).toBe(201);
    res = await t.call({ method: 'POST', url: '/api/v1/bootenvs', payload: { name: 'custom', templates: [{ name: 'hello', path: 'hello/{{machine.name}}.ipxe', id: 'custom/hello.ipxe.tmpl' }] } });
    expect(res.statusCode, res.body).toBe(201);
    await patchMachine(UUID, { bootEnv: 'custom' });
    expect((await boot('hello/node1.ipxe')).body).toBe('#!ipxe\necho hello node1\n');
    res = await t.call({ method: 'PATCH', url: '/api/v1/bootenvs/custom', payload: { templates: [{ name: 'hello', path: 'hi/{{machine.name}}.ipxe', id: 'custom/hello.ipxe.tmpl' }] }, headers: { 'content-type': 'application/merge-patch+json' } });
    expect(res.statusCode, res.body).toBe(200);
    expect((await boot('hello/node1.ipxe')).statusCode).toBe(404);
    expect((await boot('hi/node1.ipxe')).statusCode).toBe(200);
    res = await t.call({ method: 'PUT', url: '/api/v1/templates/custom/hello.ipxe.tmpl', payload: { id: 'custom/hello.ipxe.tmpl', contents: '#!ipxe\necho bye {{machine.name}}\n' } });
    expect(res.statusCode, res.body).toBe(200);
    await eventually(async () => (await boot('hi/node1.ipxe')).body, (b) => b === '#!ipxe\necho bye node1\n', 'the changed template');
    await patchMachine(UUID, { bootEnv: 'local' });
  });
});

describe('unknown machines', () => {
  it('get 404 for a per-MAC file and the unknown bootenv\'s fallback files', async () => {
    expect((await boot('52%3A54%3A00%3Aff%3Aff%3Aff.ipxe')).statusCode).toBe(404);
    const ignore = await boot('default.ipxe');
    expect(ignore.statusCode).toBe(200);
    expect(ignore.body).toContain('unknown bootenv "ignore"');
    expect(ignore.body).not.toContain('discover.ipxe');
    await setPrefs({ autoDiscover: 'true' });
    expect((await boot('default.ipxe')).body).toContain('/boot/discover.ipxe?mac=${netX/mac}&arch=${buildarch}');
    await setPrefs({ unknownBootEnv: 'discovery', autoDiscover: 'false' });
    expect((await boot('default.ipxe')).body).toContain('unknown bootenv "discovery"');
    expect((await boot('pxelinux.cfg/default')).statusCode).toBe(200);
    expect((await boot('grub/grub.cfg')).statusCode).toBe(200);
    expect((await boot('nothing/here')).statusCode).toBe(404);
    expect((await boot('nothing/here')).json()).toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('discovery', () => {
  const mac = '52:54:00:de:ad:01';
  const discoverUrl = (m: string, arch = 'x86_64') => `discover.ipxe?mac=${encodeURIComponent(m)}&arch=${arch}`;

  it('with autoDiscover off serves the unknown bootenv\'s script, never one that chains discovery again', async () => {
    let res = await boot(discoverUrl(mac));
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('unknown bootenv "ignore"');
    await setPrefs({ unknownBootEnv: 'discovery' });
    res = await boot(discoverUrl(mac));
    expect(res.statusCode).toBe(200);
    expect(res.body.startsWith('#!ipxe\n')).toBe(true);
    expect(res.body).not.toContain('discover.ipxe');
    expect(res.body).toContain('sanboot --no-describe --drive 0x80');
    expect(await t.services.store.get('machines', `hardwareAddrs:${mac}`)).toBeUndefined();
  });

  it('with autoDiscover on creates the machine once, records it, and answers with its script', async () => {
    await setPrefs({ autoDiscover: 'true' });
    const res = await boot(discoverUrl(mac.toUpperCase(), 'arm64'));
    expect(res.statusCode, res.body).toBe(200);
    const m = await t.services.store.mustGet('machines', `hardwareAddrs:${mac}`);
    expect(m).toMatchObject({ name: 'd525400dead01', hardwareAddrs: [mac], arch: 'arm64', bootEnv: 'local', stage: 'none' });
    expect(res.body).toBe((await boot(`${mac}.ipxe`)).body);
    expect(res.body).toContain('d525400dead01 boots from local disk');
    const entries = await timeline(String(m.uuid));
    expect(entries.filter((e) => e.type === 'discovery')).toEqual([{ type: 'discovery', body: { mac, arch: 'arm64', address: '127.0.0.1', name: 'd525400dead01' } }]);
    // again, and twice at once: the same machine
    const again = await Promise.all([boot(discoverUrl(mac)), boot(discoverUrl(mac))]);
    expect(again.map((r) => r.statusCode)).toEqual([200, 200]);
    expect((await t.services.store.list('machines', t.services.store.parseQuery('machines', { hardwareAddrs: mac }))).total).toBe(1);
    expect((await timeline(String(m.uuid))).filter((e) => e.type === 'discovery')).toHaveLength(1);
  });

  it('maps iPXE build architectures, and two new MACs at once make two machines', async () => {
    await setPrefs({ autoDiscover: 'true' });
    const res = await Promise.all([boot(discoverUrl('52:54:00:de:ad:02', 'x86_64')), boot(discoverUrl('52-54-00-de-ad-03', 'i386'))]);
    expect(res.map((r) => r.statusCode)).toEqual([200, 200]);
    expect((await t.services.store.mustGet('machines', 'name:d525400dead02')).arch).toBe('amd64');
    expect((await t.services.store.mustGet('machines', 'name:d525400dead03')).arch).toBe('i386');
  });

  it.each([
    ['discover.ipxe', 'mac: required'],
    ['discover.ipxe?mac=nonsense', 'not a MAC address'],
    ['discover.ipxe?mac=52:54:00:de:ad:04&arch=sparc', 'not an iPXE build architecture'],
  ])('%s → 400', async (url, message) => {
    await setPrefs({ autoDiscover: 'true' });
    const res = await boot(url);
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ code: 'INVALID' });
    expect(res.json().message).toContain(message);
  });
});

describe('render failures', () => {
  beforeAll(async () => {
    await putNode1('rocky-9-install', { params: {} });
  });
  afterAll(async () => {
    await putNode1('local');
  });

  it('an iPXE path gets a script that prints the error and drops to the shell, and a timeline entry', async () => {
    const res = await boot(`${MAC.replaceAll(':', '%3A')}.ipxe`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
    const lines = res.body.split('\n');
    expect(lines[0]).toBe('#!ipxe');
    expect(lines[1]).toBe(`echo Ironflow: cannot render ${MAC}.ipxe: template 'rocky-9-install' for machine node1 (${UUID}): missing required param 'provisioner-default-password-hash'`);
    expect(lines.slice(2)).toEqual(['shell', '']);
    const entries = await eventually(() => timeline(UUID), (es) => es.some((e) => e.type === 'boot.render_failed'), 'boot.render_failed');
    expect(entries.find((e) => e.type === 'boot.render_failed')!.body).toMatchObject({ path: `${MAC}.ipxe`, protocol: 'http', bootEnv: 'rocky-9-install' });
    expect(String(entries.find((e) => e.type === 'boot.render_failed')!.body.error)).toContain('provisioner-default-password-hash');
  });

  it('another path is a 422 RENDER_FAILED naming the param, the template and the machine', async () => {
    const res = await boot('pxelinux.cfg/01-52-54-00-12-34-56');
    expect(res.statusCode).toBe(422);
    expect(res.json()).toMatchObject({ code: 'RENDER_FAILED' });
    expect(res.json().message).toBe(`template "rocky-9-install" for machine node1 (${UUID}): missing required param "provisioner-default-password-hash"`);
  });

  it('the operator render view says the same with 422, and lists the files it would serve', async () => {
    const res = await t.call({ method: 'GET', url: `/api/v1/machines/${UUID}/render/pxelinux.cfg/01-52-54-00-12-34-56` });
    expect(res.statusCode).toBe(422);
    expect(res.json()).toMatchObject({ code: 'RENDER_FAILED' });
    expect(res.json().message).toContain('node1');
    const list = await t.call({ method: 'GET', url: `/api/v1/machines/${UUID}/boot` });
    expect(list.statusCode).toBe(200);
    expect(list.json()).toContainEqual({ path: `machines/${UUID}/kickstart.ks`, url: `http://localhost:80/boot/machines/${UUID}/kickstart.ks`, bootEnv: 'rocky-9-install', entry: 'kickstart', template: 'kickstart/rocky-9.ks.tmpl' });
  });

  it('never quotes a secure param value in the error it serves', async () => {
    const param = await t.call({ method: 'POST', url: '/api/v1/params', payload: { name: 'test/secret-ip', secure: true, schema: { type: 'string' } } });
    expect(param.statusCode, param.body).toBe(201);
    await t.call({ method: 'POST', url: '/api/v1/templates', payload: { id: 'custom/leak.ipxe.tmpl', contents: '#!ipxe\n{{hexAddress (param "test/secret-ip")}}\n' } });
    await t.call({ method: 'POST', url: '/api/v1/bootenvs', payload: { name: 'leaky', templates: [{ name: 'x', path: 'leak/{{machine.name}}.ipxe', id: 'custom/leak.ipxe.tmpl' }] } });
    await putNode1('leaky', { params: { 'test/secret-ip': 'hunter2-secret' } });
    const res = await boot('leak/node1.ipxe');
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain('not an IPv4 address');
    expect(res.body).not.toContain('hunter2');
  });
});

describe('operator views', () => {
  beforeAll(async () => {
    await putNode1('debian-12-install');
  });

  it('render one of the machine\'s files exactly as served', async () => {
    for (const path of [`${MAC}.ipxe`, `machines/${UUID}/preseed.cfg`, 'pxelinux.cfg/C0A8640A']) {
      const view = await t.call({ method: 'GET', url: `/api/v1/machines/name:node1/render/${path}`, headers: { host: HOST } });
      expect(view.statusCode, view.body).toBe(200);
      expect(view.headers['content-type']).toBe('text/plain; charset=utf-8');
      expect(await withFixtureToken(view.body)).toBe(await withFixtureToken((await boot(path)).body));
    }
  });

  it('404 for a path that is not one of the machine\'s, or an unknown machine; 401 without a token', async () => {
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/${UUID}/render/default.ipxe` })).statusCode).toBe(404);
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/${UUID}/render/52:54:00:00:00:00.ipxe` })).statusCode).toBe(404);
    expect((await t.call({ method: 'GET', url: '/api/v1/machines/name:nobody/boot' })).statusCode).toBe(404);
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/${UUID}/boot`, auth: false })).statusCode).toBe(401);
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/${UUID}/render/${MAC}.ipxe`, auth: false })).statusCode).toBe(401);
    expect((await t.call({ method: 'GET', url: `/api/v1/machines/${UUID}/render/a%2F..%2Fb` })).statusCode).toBe(400);
  });

  it('a readonly user may read them', async () => {
    const res = await t.call({ method: 'GET', url: `/api/v1/machines/${UUID}/boot`, auth: await t.token('readonly') });
    expect(res.statusCode).toBe(200);
    expect((res.json() as unknown[]).length).toBe(6);
  });
});

describe('bad input', () => {
  it.each([
    ['/boot/a%2F..%2Fetc%2Fpasswd', 403],
    ['/boot/..%5Cetc%5Cpasswd', 403],
    ['/boot/%00', 403],
    ['/boot/', 404],
    ['/boot/%E0%A4%A', 400],
  ])('%s → %d', async (url, status) => {
    const res = await t.app.inject({ method: 'GET', url, headers: { host: HOST } });
    expect(res.statusCode).toBe(status);
    expect(res.json()).toHaveProperty('code');
  });

  it('a Host header that is not a host name is not copied into scripts', async () => {
    await setPrefs({ unknownBootEnv: 'ignore' });
    const res = await t.app.inject({ method: 'GET', url: '/boot/default.ipxe', headers: { host: 'evil"host || shell' } });
    expect(res.statusCode).toBe(200);
    expect(res.body).not.toContain('evil');
    expect(res.body).toContain('chain --autofree http://127.0.0.1:80/boot/${netX/mac}.ipxe');
  });
});
