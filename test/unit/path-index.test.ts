// The boot path index and the pure pieces around it: path normalisation, a machine's files from its
// bootenv, the index's replace/remove/clash rules, stream id order, byte ranges, file paths, iPXE error scripts.
import { describe, expect, it } from 'vitest';
import { ContentCache } from '../../src/boot/caches.js';
import { archOf, discoveryName } from '../../src/boot/discovery.js';
import { compareIds } from '../../src/store/stream-ids.js';
import { machineFiles, normaliseBootPath, PathIndex } from '../../src/boot/path-index.js';
import { ipxeErrorScript } from '../../src/boot/resolver.js';
import { checkFilePath, contentTypeFor, parseRange } from '../../src/boot/static-files.js';
import { errorCode } from '../../src/errors.js';
import type { ParamDefaults } from '../../src/params/resolve.js';
import { createRenderer } from '../../src/render/renderer.js';
import { fixtureMachine, loadCorePack, sourceOf } from '../helpers/render-content.js';

const pack = loadCorePack();
const renderer = createRenderer(sourceOf(pack.templates));
const noDefaults: ParamDefaults = { get: () => ({ found: false }), names: () => [] };
const bootenv = (name: string) => ({ ...pack.bootenvs.get(name)!, revision: 1 });
const machine = { ...fixtureMachine, bootEnv: 'debian-12-install' };

describe('normaliseBootPath', () => {
  it.each([
    ['52%3A54%3A00%3A12%3A34%3A56.ipxe', '52:54:00:12:34:56.ipxe'],
    ['/pxelinux.cfg/01-52-54-00-12-34-56', 'pxelinux.cfg/01-52-54-00-12-34-56'],
    ['//grub//grub.cfg', 'grub/grub.cfg'],
    ['./default.ipxe', 'default.ipxe'],
    ['a\\b', 'a/b'],
  ])('%s → %s', (raw, want) => {
    expect(normaliseBootPath(raw)).toBe(want);
  });

  it.each(['../etc/passwd', '%2e%2e/etc/passwd', 'a/../../b', '%2E%2E%2Fx', 'a%00b', '', '/', '%E0%A4%A'])('refuses %j', (raw) => {
    expect(normaliseBootPath(raw)).toBeNull();
  });

  it('decodes once only when asked (the HTTP router has already decoded)', () => {
    expect(normaliseBootPath('a%253A', true)).toBe('a%3A');
    expect(normaliseBootPath('a%3A', false)).toBe('a%3A');
  });
});

describe('machineFiles', () => {
  it('renders every entry path, per-MAC entries once per hardware address', () => {
    const m = { ...machine, hardwareAddrs: ['52:54:00:12:34:56', '52:54:00:ab:cd:ef'] };
    const { files, errors } = machineFiles(renderer, m, bootenv('debian-12-install'), noDefaults);
    expect(errors).toEqual([]);
    expect(files.map((f) => [f.path, f.entry, f.mac ?? '-', f.template])).toEqual([
      ['52:54:00:12:34:56.ipxe', 0, '52:54:00:12:34:56', 'ipxe/install.ipxe.tmpl'],
      ['52:54:00:ab:cd:ef.ipxe', 0, '52:54:00:ab:cd:ef', 'ipxe/install.ipxe.tmpl'],
      ['192.168.100.10.ipxe', 1, '-', 'ipxe/install.ipxe.tmpl'],
      ['pxelinux.cfg/01-52-54-00-12-34-56', 2, '52:54:00:12:34:56', 'pxelinux/install.cfg.tmpl'],
      ['pxelinux.cfg/01-52-54-00-ab-cd-ef', 2, '52:54:00:ab:cd:ef', 'pxelinux/install.cfg.tmpl'],
      ['pxelinux.cfg/C0A8640A', 3, '-', 'pxelinux/install.cfg.tmpl'],
      ['grub/grub.cfg-01-52-54-00-12-34-56', 4, '52:54:00:12:34:56', 'grub/install.cfg.tmpl'],
      ['grub/grub.cfg-01-52-54-00-ab-cd-ef', 4, '52:54:00:ab:cd:ef', 'grub/install.cfg.tmpl'],
      [`machines/${m.uuid}/preseed.cfg`, 5, '-', 'preseed/debian-12.cfg.tmpl'],
    ]);
    expect(new Set(files.map((f) => f.uuid))).toEqual(new Set([m.uuid]));
  });

  it('skips entries whose path renders empty (no address → no per-IP files)', () => {
    const { address: _a, ...noAddress } = machine;
    const paths = machineFiles(renderer, noAddress, bootenv('local'), noDefaults).files.map((f) => f.path);
    expect(paths).toEqual(['52:54:00:12:34:56.ipxe', 'pxelinux.cfg/01-52-54-00-12-34-56', 'grub/grub.cfg-01-52-54-00-12-34-56']);
  });

  it('serves nothing for a missing or onlyUnknown bootenv', () => {
    expect(machineFiles(renderer, machine, undefined, noDefaults).files).toEqual([]);
    expect(machineFiles(renderer, machine, bootenv('ignore'), noDefaults).files).toEqual([]);
  });

  it('reports a path that does not render (or leaves the tree) instead of throwing, and keeps the others', () => {
    const env = { name: 'custom', templates: [
      { name: 'bad', path: '{{param "nope"}}.ipxe', contents: 'x' },
      { name: 'escape', path: '../{{machine.name}}', contents: 'x' },
      { name: 'param', path: 'by-rack/{{param "rack"}}/{{machine.name}}.ipxe', contents: 'x' },
    ] };
    const defaults: ParamDefaults = { get: (n) => (n === 'rack' ? { found: true, value: 'r1' } : { found: false }), names: () => ['rack'] };
    const { files, errors } = machineFiles(renderer, machine, env, defaults);
    expect(files.map((f) => f.path)).toEqual(['by-rack/r1/node1.ipxe']);
    expect(errors).toHaveLength(2);
    expect(errors[0]).toContain('missing param "nope"');
    expect(errors[1]).toContain('not a valid boot path');
    // the machine's own params win over defaults
    const own = machineFiles(renderer, { ...machine, params: { rack: 'r9' } }, env, defaults).files.map((f) => f.path);
    expect(own).toEqual(['by-rack/r9/node1.ipxe']);
  });
});

describe('PathIndex', () => {
  const t = (uuid: string, path: string, entry = 0, mac?: string) => ({ path, uuid, bootEnv: 'local', entry, ...(mac ? { mac } : {}) });

  it('looks paths up, and a machine\'s new paths replace all its old ones', () => {
    const idx = new PathIndex();
    idx.setMachine('m1', 'local', [t('m1', 'aa.ipxe', 0, 'aa'), t('m1', 'pxelinux.cfg/01-aa', 2, 'aa')]);
    expect(idx.lookup('aa.ipxe')).toEqual({ uuid: 'm1', bootEnv: 'local', entry: 0, mac: 'aa' });
    idx.setMachine('m1', 'debian', [{ ...t('m1', 'bb.ipxe', 0, 'bb'), bootEnv: 'debian' }]);
    expect(idx.lookup('aa.ipxe')).toBeUndefined();
    expect(idx.lookup('pxelinux.cfg/01-aa')).toBeUndefined();
    expect(idx.lookup('bb.ipxe')?.bootEnv).toBe('debian');
    expect(idx.machinesOf('local')).toEqual([]);
    expect(idx.machinesOf('debian')).toEqual(['m1']);
    idx.setMachine('m1', 'debian', [{ ...t('m1', 'bb.ipxe', 0, 'bb'), bootEnv: 'debian' }], { machine: 7, bootenv: 3 });
    expect(idx.lookup('bb.ipxe')).toEqual({ uuid: 'm1', bootEnv: 'debian', entry: 0, mac: 'bb', revisions: { machine: 7, bootenv: 3 } });
    idx.removeMachine('m1');
    expect(idx.lookup('bb.ipxe')).toBeUndefined();
    expect(idx.size).toEqual({ paths: 0, machines: 0 });
  });

  it('gives a clashing path to the first claim and hands it on when that machine lets go', () => {
    const idx = new PathIndex();
    expect(idx.setMachine('m1', 'local', [t('m1', 'shared.ipxe')])).toEqual([]);
    expect(idx.setMachine('m2', 'local', [t('m2', 'shared.ipxe'), t('m2', 'own.ipxe', 1)])).toEqual(['shared.ipxe']);
    expect(idx.lookup('shared.ipxe')?.uuid).toBe('m1');
    idx.setMachine('m1', 'local', []);
    expect(idx.lookup('shared.ipxe')?.uuid).toBe('m2');
    idx.removeMachine('m2');
    expect(idx.lookup('shared.ipxe')).toBeUndefined();
    expect(idx.pathsOf('m1')).toEqual([]);
    expect(idx.machinesOf('local')).toEqual(['m1']);
  });

  it('holds 10,000 machines and finds each of their paths', () => {
    const idx = new PathIndex();
    for (let i = 0; i < 10_000; i++) idx.setMachine(`m${i}`, 'local', [t(`m${i}`, `${i}.ipxe`), t(`m${i}`, `pxelinux.cfg/${i}`, 2)]);
    expect(idx.size).toEqual({ paths: 20_000, machines: 10_000 });
    expect(idx.lookup('4242.ipxe')?.uuid).toBe('m4242');
    expect(idx.lookup('pxelinux.cfg/9999')?.entry).toBe(2);
  });
});

describe('ContentCache', () => {
  it('follows templates, params and bootenvs events and ignores other kinds', () => {
    const cache = new ContentCache();
    const changed: string[] = [];
    cache.onTemplateChange = (id) => changed.push(id);
    const ev = (type: string, action: string, key: string, object: unknown) => ({ id: '1-0', type, action, key, principal: 'x', time: '', object: JSON.stringify(object) });
    expect(cache.apply(ev('templates', 'create', 'a.tmpl', { id: 'a.tmpl', contents: 'A', revision: 1 }))).toBe(true);
    expect(cache.get('a.tmpl')).toEqual({ contents: 'A', revision: 1 });
    cache.apply(ev('params', 'create', 'disk', { name: 'disk', schema: { type: 'string', default: '/dev/sda' }, secure: true }));
    expect(cache.paramDefaults.get('disk')).toEqual({ found: true, value: '/dev/sda' });
    expect(cache.isSecure('disk')).toBe(true);
    cache.apply(ev('params', 'update', 'disk', { name: 'disk', schema: { type: 'string' } }));
    expect(cache.paramDefaults.get('disk')).toEqual({ found: false });
    expect(cache.isSecure('disk')).toBe(false);
    cache.apply(ev('bootenvs', 'create', 'x', { name: 'x', templates: [] }));
    expect(cache.bootenvs.has('x')).toBe(true);
    cache.apply(ev('bootenvs', 'delete', 'x', { name: 'x' }));
    expect(cache.bootenvs.has('x')).toBe(false);
    cache.apply(ev('templates', 'delete', 'a.tmpl', { id: 'a.tmpl' }));
    expect(cache.get('a.tmpl')).toBeUndefined();
    expect(changed).toEqual(['a.tmpl', 'a.tmpl']);
    expect(cache.apply(ev('machines', 'create', 'm', {}))).toBe(false);
  });
});

describe('boot helpers', () => {
  it('orders stream ids numerically', () => {
    expect(compareIds('1700000000000-0', '999-5')).toBeGreaterThan(0);
    expect(compareIds('5-10', '5-9')).toBeGreaterThan(0);
    expect(compareIds('5-1', '5-1')).toBe(0);
    expect(compareIds('0-0', '1-0')).toBeLessThan(0);
    expect(compareIds('5', '5-0')).toBe(0); // a bare ms is ms-0
    expect(compareIds('5', '5-1')).toBeLessThan(0);
    expect(compareIds('1-18446744073709551615', '1-18446744073709551614')).toBeGreaterThan(0); // past 2^53
  });

  it.each([
    ['bytes=0-9', 100, { start: 0, end: 9 }],
    ['bytes=90-', 100, { start: 90, end: 99 }],
    ['bytes=-10', 100, { start: 90, end: 99 }],
    ['bytes=95-200', 100, { start: 95, end: 99 }],
    ['bytes=-500', 100, { start: 0, end: 99 }],
    ['bytes=100-', 100, 'unsatisfiable'],
    ['bytes=10-5', 100, 'unsatisfiable'],
    ['bytes=-0', 100, 'unsatisfiable'],
    ['bytes=0-1,5-6', 100, undefined],
    ['items=0-1', 100, undefined],
    [undefined, 100, undefined],
  ])('Range %s of %d bytes → %j', (header, size, want) => {
    expect(parseRange(header, size)).toEqual(want);
  });

  it.each(['../x', 'a/../b', '/etc/passwd', 'a//b', './a', 'a\\b', 'a\0b', ''])('the files API refuses path %j', (p) => {
    let code;
    try {
      checkFilePath(p);
    } catch (err) {
      code = errorCode(err);
    }
    expect(code).toBe('INVALID');
  });

  it('gives scripts and configs text/plain and binaries octet-stream', () => {
    expect(contentTypeFor('52:54:00:12:34:56.ipxe')).toMatch(/^text\/plain/);
    expect(contentTypeFor('pxelinux.cfg/01-52-54-00-12-34-56')).toMatch(/^text\/plain/);
    expect(contentTypeFor('grub/grub.cfg-01-52-54-00-12-34-56')).toMatch(/^text\/plain/);
    expect(contentTypeFor('machines/x/user-data')).toMatch(/^text\/plain/);
    expect(contentTypeFor('undionly.kpxe')).toBe('application/octet-stream');
    expect(contentTypeFor('debian-12/amd64/linux')).toBe('application/octet-stream');
  });

  it('writes a render failure as a one-line iPXE echo that cannot expand or chain anything', () => {
    const script = ipxeErrorScript('aa.ipxe', 'template "x" for machine n1: missing param "${net0/mac}" || chain http://evil && reboot\nshell');
    const lines = script.split('\n');
    expect(lines[0]).toBe('#!ipxe');
    expect(lines[1]).toMatch(/^echo Ironflow: cannot render aa\.ipxe: template 'x' for machine n1: missing param /);
    expect(lines[1]).not.toMatch(/[$|&"{}]/);
    expect(lines.slice(2)).toEqual(['shell', '']);
  });

  it('maps iPXE build architectures and names discovered machines', () => {
    expect([archOf('x86_64'), archOf('arm64'), archOf('aarch64'), archOf('i386'), archOf(undefined)]).toEqual(['amd64', 'arm64', 'arm64', 'i386', 'amd64']);
    expect(() => archOf('sparc')).toThrow(/not an iPXE build architecture/);
    expect(discoveryName('52:54:00:12:34:56')).toBe('d525400123456');
  });
});
