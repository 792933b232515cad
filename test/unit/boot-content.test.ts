// The core content pack and templates/: consistency of the YAML objects, and every shipped bootenv's files
// rendered for a fixture machine and compared byte for byte with test/golden (UPDATE_GOLDEN=1 rewrites them).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { readPackDir } from '../../src/content/pack.js';
import { errorCode } from '../../src/errors.js';
import { mustKind } from '../../src/models/registry.js';
import { paramValueErrors } from '../../src/params/check.js';
import { schemaErrors } from '../../src/store/validate.js';
import { fixtureMachine, fixtureParams, loadCorePack, renderBootEnv, repoRoot, type RenderedFile } from '../helpers/render-content.js';

const pack = loadCorePack();
const goldenRoot = join(repoRoot, 'test', 'golden');
const update = process.env.UPDATE_GOLDEN === '1';

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]));
}

/** The files a bootenv serves in the golden scenario: the fixture machine, or no machine for onlyUnknown ones. */
function renderGolden(name: string): RenderedFile[] {
  const bootenv = pack.bootenvs.get(name)!;
  return renderBootEnv(pack, bootenv, bootenv.onlyUnknown ? {} : { machine: fixtureMachine });
}

const rendered = (bootenv: string, path: string) => renderGolden(bootenv).find((f) => f.path === path)?.contents ?? '';

describe('core content pack', () => {
  it('ships the bootenvs SPEC 4.5 names', () => {
    expect([...pack.bootenvs.keys()].sort()).toEqual(['debian-12-install', 'discovery', 'ignore', 'local', 'rocky-9-install', 'ubuntu-24.04-install']);
  });

  it.each([...pack.params.values()].map((p) => ({ name: p.name, p })))('param $name has a description, a schema and its file name', ({ name, p }) => {
    expect(pack.files.get(`params/${name}`)).toBe(`${name.replaceAll('/', '-')}.yaml`);
    expect(p.description).toMatch(/\S/);
    expect(p.schema).toBeTypeOf('object');
    expect(p.schema?.type).toBeTypeOf('string');
  });

  it('loads with the content pack reader, every object valid for its kind, templates by their path', () => {
    const read = readPackDir(join(repoRoot, 'content', 'core'));
    expect(read.meta.name).toBe('core');
    const problems = read.objects.flatMap((o) => schemaErrors(mustKind(o.prefix).schema, o.object).map((e) => `${o.origin}: ${e}`));
    expect(problems).toEqual([]);
    const templateIds = read.objects.filter((o) => o.prefix === 'templates').map((o) => o.object.id as string);
    expect(templateIds.sort()).toEqual([...pack.templates.keys()].sort());
  });

  it.each([...pack.params.values()].filter((p) => p.schema && 'default' in p.schema).map((p) => ({ name: p.name, p })))(
    'the default of param $name satisfies its own schema',
    ({ name, p }) => {
      expect(paramValueErrors(name, p.schema, p.schema!.default)).toEqual([]);
    },
  );

  it('marks bmc/password secure and the /metadata params', () => {
    expect(pack.params.get('bmc/password')?.secure).toBe(true);
    expect(pack.params.get('ssh-keys')?.meta?.metadata).toBe('true');
    expect(pack.params.get('bmc/driver')?.schema?.enum).toEqual(['ipmi', 'redfish', 'sim']);
  });

  it('declares every param that bootenvs and templates use', () => {
    const used = new Set<string>();
    const scan = (src: string) => {
      for (const m of src.matchAll(/\bparam(?:Exists|Json)?\s+"([^"]+)"/g)) used.add(m[1]!);
    };
    pack.templates.forEach(scan);
    for (const b of pack.bootenvs.values()) {
      scan(String(b.bootParams ?? ''));
      [...(b.requiredParams ?? []), ...(b.optionalParams ?? [])].forEach((p) => used.add(p));
    }
    expect([...used].filter((p) => !pack.params.has(p))).toEqual([]);
  });

  it.each([...pack.bootenvs.values()].map((b) => ({ name: b.name, b })))('bootenv $name references shipped templates only', ({ name, b }) => {
    expect(pack.files.get(`bootenvs/${name}`)).toBe(`${name}.yaml`);
    expect(b.templates.filter((t) => t.id !== undefined && !pack.templates.has(t.id)).map((t) => t.id)).toEqual([]);
  });
});

describe('golden boot files', () => {
  it.each([...pack.bootenvs.keys()])('%s renders exactly its golden files', (name) => {
    const files = renderGolden(name);
    const dir = join(goldenRoot, name);
    if (update) {
      rmSync(dir, { recursive: true, force: true });
      for (const f of files) {
        mkdirSync(dirname(join(dir, f.path)), { recursive: true });
        writeFileSync(join(dir, f.path), f.contents);
      }
    }
    const onDisk = filesUnder(dir).map((f) => relative(dir, f).split(sep).join('/')).sort();
    expect(onDisk, `golden files of ${name} (UPDATE_GOLDEN=1 rewrites them)`).toEqual(files.map((f) => f.path).sort());
    for (const f of files) expect(f.contents, `${name}/${f.path}`).toBe(readFileSync(join(dir, f.path), 'utf8'));
  });
});

describe('rendered files are what firmware and installers accept', () => {
  const all = [...pack.bootenvs.keys()].flatMap((b) => renderGolden(b).map((f) => ({ bootenv: b, ...f })));

  it.each(all.filter((f) => f.path.endsWith('.ipxe')).map((f) => ({ at: `${f.bootenv}/${f.path}`, f })))('$at is an iPXE script', ({ f }) => {
    expect(f.contents.startsWith('#!ipxe\n')).toBe(true);
    expect(f.contents).not.toMatch(/\{\{|\}\}/);
  });

  it('serves the standard SPEC 4.3 paths for a known machine', () => {
    expect(renderGolden('debian-12-install').map((f) => f.path)).toEqual([
      '52:54:00:12:34:56.ipxe',
      '192.168.100.10.ipxe',
      'pxelinux.cfg/01-52-54-00-12-34-56',
      'pxelinux.cfg/C0A8640A',
      'grub/grub.cfg-01-52-54-00-12-34-56',
      `machines/${fixtureMachine.uuid}/preseed.cfg`,
    ]);
    expect(renderGolden('ignore').map((f) => f.path)).toEqual(['default.ipxe', 'pxelinux.cfg/default', 'grub/grub.cfg']);
  });

  it('Ubuntu user-data is #cloud-config with an autoinstall section', () => {
    const text = rendered('ubuntu-24.04-install', `machines/${fixtureMachine.uuid}/user-data`);
    expect(text.startsWith('#cloud-config\n')).toBe(true);
    const doc = parse(text) as { autoinstall: Record<string, any> };
    expect(doc.autoinstall.version).toBe(1);
    expect(doc.autoinstall.identity.password).toMatch(/^\$6\$/);
    expect(doc.autoinstall.ssh['authorized-keys']).toEqual(fixtureParams['ssh-keys']);
    expect(doc.autoinstall.storage.layout.match.path).toBe('/dev/sda');
    expect(doc.autoinstall['late-commands'][0]).toContain('"state":"succeeded","code":1000');
    expect(parse(rendered('ubuntu-24.04-install', `machines/${fixtureMachine.uuid}/meta-data`))).toEqual({ 'instance-id': fixtureMachine.uuid, 'local-hostname': 'node1' });
  });

  it('the Debian preseed is only well-formed debconf lines', () => {
    const text = rendered('debian-12-install', `machines/${fixtureMachine.uuid}/preseed.cfg`);
    const logical = text.replace(/\\\n/g, ' ').split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'));
    const bad = logical.filter((l) => !/^(d-i|tasksel|popularity-contest) \S+ (string|boolean|select|multiselect|note|password)( |$)/.test(l));
    expect(bad).toEqual([]);
    expect(text).toContain('d-i partman-auto/disk string /dev/sda');
    expect(text).toMatch(/late_command string[\s\S]*"code":1000[\s\S]*phone-home/);
  });

  it('the Rocky kickstart has every section closed and the commands Anaconda needs', () => {
    const text = rendered('rocky-9-install', `machines/${fixtureMachine.uuid}/kickstart.ks`);
    expect((text.match(/^%(packages|post|pre)\b/gm) ?? []).length).toBe((text.match(/^%end$/gm) ?? []).length);
    for (const cmd of ['text', 'url', 'lang', 'keyboard', 'timezone', 'network', 'rootpw', 'bootloader', 'zerombr', 'clearpart', 'autopart', 'reboot']) {
      expect(text, cmd).toMatch(new RegExp(`^${cmd}\\b`, 'm'));
    }
  });

  it('kernel command lines quote ; for GRUB only', () => {
    const files = renderGolden('ubuntu-24.04-install');
    const of = (p: string) => files.find((f) => f.path === p)!.contents;
    expect(of('grub/grub.cfg-01-52-54-00-12-34-56')).toContain(`'ds=nocloud-net;s=http://192.168.100.1:8080/boot/machines/${fixtureMachine.uuid}/'`);
    expect(of('pxelinux.cfg/01-52-54-00-12-34-56')).toContain(` ds=nocloud-net;s=http://192.168.100.1:8080/boot/machines/${fixtureMachine.uuid}/ `);
    expect(of('52:54:00:12:34:56.ipxe')).toContain(` ds=nocloud-net;s=http://192.168.100.1:8080/boot/machines/${fixtureMachine.uuid}/ `);
  });
});

describe('rendering variations', () => {
  it('ignore sends unknown machines to discovery when autoDiscover is on', () => {
    const files = renderBootEnv(pack, pack.bootenvs.get('ignore')!, { prefs: { autoDiscover: 'true' } });
    const of = (p: string) => files.find((f) => f.path === p)!.contents;
    expect(of('default.ipxe')).toContain('chain --autofree http://192.168.100.1:8080/boot/discover.ipxe?mac=${netX/mac}&arch=${buildarch} && exit ||');
    expect(of('pxelinux.cfg/default')).toMatch(/^DEFAULT discovery$/m);
    expect(of('grub/grub.cfg')).toContain('chainloader /snponly.efi');
    expect(rendered('ignore', 'default.ipxe')).not.toContain('discover.ipxe');
  });

  it('renders per-MAC files once per hardware address, and no per-IP files without an address', () => {
    const { address: _address, ...rest } = fixtureMachine;
    const machine = { ...rest, hardwareAddrs: ['52:54:00:12:34:56', '52:54:00:ab:cd:ef'] };
    const files = renderBootEnv(pack, pack.bootenvs.get('debian-12-install')!, { machine });
    expect(files.map((f) => f.path)).toEqual([
      '52:54:00:12:34:56.ipxe',
      '52:54:00:ab:cd:ef.ipxe',
      'pxelinux.cfg/01-52-54-00-12-34-56',
      'pxelinux.cfg/01-52-54-00-ab-cd-ef',
      'grub/grub.cfg-01-52-54-00-12-34-56',
      'grub/grub.cfg-01-52-54-00-ab-cd-ef',
      `machines/${machine.uuid}/preseed.cfg`,
    ]);
    expect(files.find((f) => f.path === 'grub/grub.cfg-01-52-54-00-ab-cd-ef')!.contents).toContain('BOOTIF=01-52-54-00-ab-cd-ef ');
  });

  it('refuses to render an installer without its required params, naming them', () => {
    const machine = { ...fixtureMachine, params: {} };
    let err: unknown;
    try {
      renderBootEnv(pack, pack.bootenvs.get('rocky-9-install')!, { machine });
    } catch (e) {
      err = e;
    }
    expect(errorCode(err)).toBe('RENDER_FAILED');
    expect((err as Error).message).toBe(`template "rocky-9-install" for machine node1 (${machine.uuid}): missing required param "provisioner-default-password-hash"`);
  });

  it('takes params from the machine before Param defaults', () => {
    const machine = { ...fixtureMachine, params: { ...fixtureParams, 'operating-system-disk': '/dev/nvme0n1', hostname: 'db-7' } };
    const ks = renderBootEnv(pack, pack.bootenvs.get('rocky-9-install')!, { machine }).find((f) => f.path.endsWith('kickstart.ks'))!.contents;
    expect(ks).toContain('clearpart --all --initlabel --drives=/dev/nvme0n1');
    expect(ks).toContain('--hostname=db-7');
  });
});
