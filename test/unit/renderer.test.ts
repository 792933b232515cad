// The renderer (SPEC 4.1): every helper, strict mode, error wording, partials, cache invalidation, bounds, prototype safety.
import { describe, expect, it } from 'vitest';
import { errorCode, type AppError } from '../../src/errors.js';
import { usesHelper } from '../../src/render/analyse.js';
import { formatMac, hexAddress, pxelinuxMac } from '../../src/render/boot-paths.js';
import { Lru } from '../../src/render/lru.js';
import { checkRequiredParams, createRenderer, type ParamLookup, type RenderContext, type RendererOptions } from '../../src/render/renderer.js';

const UUID = '3f0c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f';

function templateStore(initial: Record<string, string> = {}) {
  const items = new Map(Object.entries(initial).map(([id, contents]) => [id, { contents, revision: 1 }]));
  return {
    source: { get: (id: string) => items.get(id) },
    set(id: string, contents: string, revision = items.get(id)?.revision ?? 1) {
      items.set(id, { contents, revision });
    },
  };
}

function lookup(values: Record<string, unknown>): ParamLookup {
  return { get: (name) => (Object.prototype.hasOwnProperty.call(values, name) ? { found: true, value: values[name] } : { found: false }) };
}

function context(overrides: Partial<RenderContext> = {}): RenderContext {
  return {
    machine: {
      uuid: UUID,
      name: 'node1.example.com',
      address: '192.168.100.10',
      hardwareAddrs: ['52:54:00:12:34:56', '52:54:00:ab:cd:ef'],
      arch: 'amd64',
      secret: 'never-rendered',
    },
    env: { name: 'test-env', kernel: 'k/vmlinuz', initrds: ['k/initrd'], bootParams: 'url={{machineURL}}/p\n  ds=nocloud-net;s={{machineURL}}/ {{param "console"}}' },
    prefs: { autoDiscover: 'false' },
    params: lookup({ disk: '/dev/vda', keys: ['ssh-ed25519 A', 'ssh-rsa B'], console: 'console=ttyS0', empty: '' }),
    urls: { publicUrl: 'http://10.0.0.1:8080/' },
    token: () => 'tok-123',
    templateName: 'test.tmpl',
    ...overrides,
  };
}

function renderFailure(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    expect(errorCode(err)).toBe('RENDER_FAILED');
    return err as AppError;
  }
  throw new Error('expected the render to fail');
}

const store = templateStore({ inc: 'inc:{{machine.name}}', 'p/child': '[{{this}}]', 'p/parent': '{{#each (param "keys")}}{{> "p/child"}}{{/each}}' });
const renderer = createRenderer(store.source);
const render = (src: string, ctx: RenderContext = context()) => renderer.renderString(src, ctx, 'test.tmpl');

const MACHINE_URL = `http://10.0.0.1:8080/boot/machines/${UUID}`;
const BOOT_PARAMS = `url=${MACHINE_URL}/p ds=nocloud-net;s=${MACHINE_URL}/ console=ttyS0`;

describe('helpers', () => {
  const cases: Array<{ name: string; src: string; want: string; ctx?: Partial<RenderContext> }> = [
    { name: 'param gives the resolved value', src: '{{param "disk"}}', want: '/dev/vda' },
    { name: 'param default= covers a missing param', src: '{{param "nope" default="fallback"}}', want: 'fallback' },
    { name: 'param returns lists for block helpers', src: '{{#each (param "keys")}}<{{this}}>{{/each}}', want: '<ssh-ed25519 A><ssh-rsa B>' },
    { name: 'paramExists true', src: '{{paramExists "disk"}}', want: 'true' },
    { name: 'paramExists false', src: '{{paramExists "nope"}}', want: 'false' },
    { name: 'paramJson', src: '{{paramJson "keys"}}', want: '["ssh-ed25519 A","ssh-rsa B"]' },
    { name: 'default keeps a value', src: '{{default machine.arch "x"}}', want: 'amd64' },
    { name: 'default replaces undefined', src: '{{default machine.nothing "x"}}', want: 'x' },
    { name: 'default replaces ""', src: '{{default (param "empty") "x"}}', want: 'x' },
    { name: 'eq', src: '{{#if (eq machine.arch "amd64")}}y{{else}}n{{/if}}', want: 'y' },
    { name: 'ne', src: '{{#if (ne machine.arch "amd64")}}y{{else}}n{{/if}}', want: 'n' },
    { name: 'and', src: '{{and true 1 "x"}} {{and true 0}} {{and true (param "keys")}}', want: 'true false true' },
    { name: 'or gives the first truthy argument', src: '{{or "" machine.nothing "second"}}', want: 'second' },
    { name: 'or of nothing truthy is false', src: '{{or "" 0}}', want: 'false' },
    { name: 'not (empty list is false)', src: '{{not ""}} {{not "x"}} {{not machine.nothing}}', want: 'true false true' },
    { name: 'join with a separator', src: '{{join (param "keys") " | "}}', want: 'ssh-ed25519 A | ssh-rsa B' },
    { name: 'join defaults to a comma', src: '{{join machine.hardwareAddrs}}', want: '52:54:00:12:34:56,52:54:00:ab:cd:ef' },
    { name: 'json', src: '{{json machine.arch}} {{json (param "keys")}}', want: '"amd64" ["ssh-ed25519 A","ssh-rsa B"]' },
    { name: 'json with indent', src: '{{json (param "keys") 1}}', want: '[\n "ssh-ed25519 A",\n "ssh-rsa B"\n]' },
    { name: 'json of undefined is null', src: '{{json machine.nothing}}', want: 'null' },
    { name: 'base64', src: '{{base64 "hi there"}}', want: 'aGkgdGhlcmU=' },
    { name: 'include renders with the root context', src: '{{#each (param "keys")}}{{include "inc"}};{{/each}}', want: 'inc:node1.example.com;inc:node1.example.com;' },
    { name: 'urlPart', src: '{{urlPart "https://m.example:8443/debian/" "protocol"}} {{urlPart "https://m.example:8443/debian/" "host"}} {{urlPart "https://m.example:8443/debian/" "path"}}', want: 'https m.example:8443 /debian' },
    { name: 'provisionerURL (trailing slash of publicUrl dropped)', src: '{{provisionerURL}}', want: 'http://10.0.0.1:8080/boot' },
    { name: 'apiURL', src: '{{apiURL}}', want: 'http://10.0.0.1:8080/api/v1' },
    { name: 'machineURL', src: '{{machineURL}}', want: `http://10.0.0.1:8080/boot/machines/${UUID}` },
    { name: 'userStateURL', src: '{{userStateURL}}', want: 'http://10.0.0.1:8080/events' },
    { name: 'phoneHomeURL', src: '{{phoneHomeURL}}', want: 'http://10.0.0.1:8080/phone-home' },
    { name: 'mac pxelinux', src: '{{mac "pxelinux"}}', want: '01-52-54-00-12-34-56' },
    { name: 'mac ipxe', src: '{{mac "ipxe"}}', want: '52:54:00:12:34:56' },
    { name: 'mac grub', src: '{{mac "grub"}}', want: '52:54:00:12:34:56' },
    { name: 'mac without a format is the ipxe one', src: '{{mac}}', want: '52:54:00:12:34:56' },
    { name: 'mac formats the MAC being rendered for', src: '{{mac "pxelinux"}}', want: '01-52-54-00-ab-cd-ef', ctx: { mac: '52-54-00-AB-CD-EF' } },
    { name: 'hexAddress of the machine', src: '{{hexAddress}}', want: 'C0A8640A' },
    { name: 'hexAddress of an argument', src: '{{hexAddress "10.0.0.1"}}', want: '0A000001' },
    { name: 'shortName', src: '{{shortName}} {{shortName "a.b.c"}}', want: 'node1 a' },
    { name: 'bootParams on one line', src: '{{bootParams}}', want: BOOT_PARAMS },
    { name: 'bootParams for iPXE and PXELINUX keep ;', src: '{{bootParams "ipxe"}}|{{bootParams "pxelinux"}}', want: `${BOOT_PARAMS}|${BOOT_PARAMS}` },
    { name: 'bootParams for GRUB quotes ;', src: '{{bootParams "grub"}}', want: BOOT_PARAMS.replace(/(ds=\S+)/, "'$1'") },
    { name: "bootParams for GRUB escapes '", src: '{{bootParams "grub"}}', want: `a 'b'\\''c'`, ctx: { env: { name: 'e', bootParams: "a b'c" } } },
    { name: 'bootParams of a bootenv without them is empty', src: '[{{bootParams}}]', want: '[]', ctx: { env: { name: 'e' } } },
    { name: 'pathFor http', src: '{{pathFor "http" env.kernel}} {{pathFor "http" "/abs/x"}}', want: 'http://10.0.0.1:8080/boot/k/vmlinuz http://10.0.0.1:8080/boot/abs/x' },
    { name: 'pathFor http keeps a URL', src: '{{pathFor "http" "https://mirror/x"}}', want: 'https://mirror/x' },
    { name: 'pathFor tftp', src: '{{pathFor "tftp" env.kernel}} {{pathFor "tftp" "/abs/x"}}', want: 'k/vmlinuz abs/x' },
    { name: 'token', src: '{{token}}', want: 'tok-123' },
    { name: 'partials see the current context', src: '{{> "p/parent"}}', want: '[ssh-ed25519 A][ssh-rsa B]' },
    { name: 'noEscape: nothing is HTML-escaped', src: '{{param "x"}}', want: `<a href="&">'`, ctx: { params: lookup({ x: `<a href="&">'` }) } },
  ];
  it.each(cases)('$name', ({ src, want, ctx }) => {
    expect(render(src, context(ctx))).toBe(want);
  });
});

describe('errors', () => {
  const cases: Array<{ name: string; src: string; want: string; ctx?: Partial<RenderContext> }> = [
    { name: 'missing param names param, template and machine', src: 'x {{param "operating-system-disk"}}', want: `template "test.tmpl" for machine node1.example.com (${UUID}): missing param "operating-system-disk"` },
    { name: 'paramJson of a missing param', src: '{{paramJson "nope"}}', want: 'missing param "nope"' },
    { name: 'strict mode names the missing field', src: 'a\n{{machine.nothing}}', want: `template "test.tmpl" for machine node1.example.com (${UUID}): missing field "nothing" (line 2, column 2)` },
    { name: 'strict mode: no machine at all', src: '{{machine.name}}', want: 'template "test.tmpl" for an unknown machine: missing field "name", whose parent is missing (line 1, column 2)', ctx: { machine: undefined } },
    { name: 'machineURL needs a machine', src: '{{machineURL}}', want: 'helper "machineURL": needs a machine', ctx: { machine: undefined } },
    { name: 'mac with an unknown format', src: '{{mac "efi"}}', want: 'helper "mac": unknown format "efi"' },
    { name: 'mac without any hardware address', src: '{{mac "ipxe"}}', want: 'helper "mac": no hardware address', ctx: { machine: undefined } },
    { name: 'hexAddress without an address', src: '{{hexAddress}}', want: 'helper "hexAddress": needs an IPv4 address', ctx: { machine: { uuid: UUID, name: 'n', hardwareAddrs: [], arch: 'amd64' } } },
    { name: 'token without an issuer', src: '{{token}}', want: 'helper "token": no machine token issuer', ctx: { token: undefined } },
    { name: 'token issuer failure', src: '{{token}}', want: 'helper "token": boom', ctx: { token: () => { throw new Error('boom'); } } },
    { name: 'pathFor tftp refuses a URL', src: '{{pathFor "tftp" "http://x/y"}}', want: 'helper "pathFor": "http://x/y" is a URL' },
    { name: 'pathFor with an unknown protocol', src: '{{pathFor "nfs" "x"}}', want: 'helper "pathFor": unknown protocol "nfs"' },
    { name: 'include of a missing template', src: '{{include "nope"}}', want: 'include "nope": no such template' },
    { name: 'partial of a missing template', src: '{{> nope}}', want: 'partial "nope": no such template' },
    { name: 'bootParams without a bootenv', src: '{{bootParams}}', want: 'helper "bootParams": needs a bootenv', ctx: { env: undefined } },
    { name: 'syntax error', src: '{{#if x}}', want: 'syntax error' },
    { name: 'the log helper is disabled', src: '{{log "hi"}}', want: 'helper "log" is not available' },
    { name: 'an error in a nested template names it', src: '{{include "bad"}}', want: `template "test.tmpl" (in "bad") for machine node1.example.com (${UUID}): missing param "zzz"` },
  ];
  const errors = createRenderer(templateStore({ bad: '{{param "zzz"}}' }).source);
  it.each(cases)('$name', ({ src, want, ctx }) => {
    const err = renderFailure(() => errors.renderString(src, context(ctx), 'test.tmpl'));
    expect(err.message).toContain(want);
    expect(err.status).toBe(422);
  });

  it('render() names the template id and its file name', () => {
    const r = createRenderer(templateStore({ 'ipxe/install.ipxe': '{{param "operating-system-disk"}}' }).source);
    expect(renderFailure(() => r.render('ipxe/install.ipxe', context({ templateName: 'ipxe/install.ipxe' }))).message).toBe(
      `template "ipxe/install.ipxe" for machine node1.example.com (${UUID}): missing param "operating-system-disk"`,
    );
    expect(renderFailure(() => r.render('ipxe/install.ipxe', context({ templateName: '52:54:00:12:34:56.ipxe' }))).message).toContain(
      'template "52:54:00:12:34:56.ipxe" (in "ipxe/install.ipxe") for machine',
    );
    expect(renderFailure(() => r.render('missing', context())).message).toContain('no such template "missing"');
  });
});

describe('checkRequiredParams', () => {
  const ctx = { machine: context().machine, templateName: 'debian-12-install' };
  it('lists every missing required param in one error', () => {
    const err = renderFailure(() => checkRequiredParams(['disk', 'a', 'b', 'a'], lookup({ disk: 'x' }), ctx));
    expect(err.message).toBe(`template "debian-12-install" for machine node1.example.com (${UUID}): missing required params "a", "b"`);
    expect(err.messages).toHaveLength(2);
    expect(err.messages[1]).toContain('missing required param "b"');
  });
  it('passes when every required param resolves', () => {
    expect(() => checkRequiredParams(['disk'], lookup({ disk: 'x' }), ctx)).not.toThrow();
  });
});

describe('partials and the compile cache', () => {
  it('resolves partials lazily, so a changed partial shows after invalidate()', () => {
    const s = templateStore({ parent: 'P({{> child}})', child: 'v1' });
    const r = createRenderer(s.source);
    expect(r.render('parent', context())).toBe('P(v1)');
    s.set('child', 'v2'); // same revision: the cached compilation stays until invalidated
    expect(r.render('parent', context())).toBe('P(v1)');
    r.invalidate('child');
    expect(r.render('parent', context())).toBe('P(v2)');
  });
  it('recompiles when the revision changes, without invalidate()', () => {
    const s = templateStore({ t: 'one' });
    const r = createRenderer(s.source);
    expect(r.render('t', context())).toBe('one');
    s.set('t', 'two', 2);
    expect(r.render('t', context())).toBe('two');
  });
  it('invalidate() drops every compilation', () => {
    const s = templateStore({ a: 'a1', b: 'b1' });
    const r = createRenderer(s.source);
    r.render('a', context());
    r.render('b', context());
    s.set('a', 'a2');
    s.set('b', 'b2');
    r.invalidate();
    expect([r.render('a', context()), r.render('b', context())]).toEqual(['a2', 'b2']);
  });
  it('keeps each renderer isolated (no shared partials or helpers state)', () => {
    const a = createRenderer(templateStore({ only: 'in a' }).source);
    const b = createRenderer(templateStore({}).source);
    expect(a.renderString('{{> only}}', context(), 't')).toBe('in a');
    expect(renderFailure(() => b.renderString('{{> only}}', context(), 't')).message).toContain('partial "only": no such template');
  });
  it('bounds the inline-source cache', () => {
    const lru = new Lru<number>(2, 1000);
    lru.set('a', 1);
    lru.set('b', 2);
    lru.get('a');
    lru.set('c', 3);
    expect([lru.get('a'), lru.get('b'), lru.get('c'), lru.size]).toEqual([1, undefined, 3, 2]);
    const byChars = new Lru<number>(100, 5);
    byChars.set('abc', 1);
    byChars.set('def', 2);
    expect([byChars.get('abc'), byChars.get('def')]).toEqual([undefined, 2]);
  });
});

describe('bounds', () => {
  const small: RendererOptions = { maxOutputBytes: 1000 };
  it('fails an output over the size bound', () => {
    const r = createRenderer(templateStore({}).source, small);
    expect(r.renderString('{{param "x"}}', context({ params: lookup({ x: 'y'.repeat(1000) }) }), 't')).toHaveLength(1000);
    expect(renderFailure(() => r.renderString('{{param "x"}}', context({ params: lookup({ x: 'y'.repeat(1001) }) }), 't')).message).toContain('output too large');
    expect(renderFailure(() => r.renderString('{{param "x"}}', context({ params: lookup({ x: 'é'.repeat(501) }) }), 't')).message).toContain('output too large');
  });
  it('stops a fan-out of nested templates early', () => {
    const fan = (next: string) => Array.from({ length: 10 }, () => `{{> ${next}}}`).join('');
    const r = createRenderer(templateStore({ l1: fan('l2'), l2: fan('l3'), l3: fan('l4'), l4: fan('l5'), l5: fan('l6'), l6: 'x'.repeat(100) }).source, small);
    const started = Date.now();
    expect(renderFailure(() => r.render('l1', context())).message).toContain('output too large');
    expect(Date.now() - started).toBeLessThan(2000);
  });
  it.each<{ name: string; templates: Record<string, string>; src: string; ctx?: Partial<RenderContext> }>([
    { name: 'a partial including itself', templates: { loop: '{{> loop}}' }, src: '{{> loop}}' },
    { name: 'includes including each other', templates: { a: '{{include "b"}}', b: '{{include "a"}}' }, src: '{{include "a"}}' },
    { name: 'an inline partial calling itself', templates: {}, src: '{{#*inline "q"}}{{> q}}{{/inline}}{{> q}}' },
    { name: 'bootParams rendering bootParams', templates: {}, src: '{{bootParams}}', ctx: { env: { name: 'e', bootParams: '{{bootParams}}' } } },
  ])('bounds nesting depth: $name', ({ templates, src, ctx }) => {
    const r = createRenderer(templateStore(templates).source);
    expect(renderFailure(() => r.renderString(src, context(ctx), 't')).message).toContain('nested deeper than 16');
  });
  it('allows nesting up to the bound', () => {
    const chain = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`t${i}`, i === 15 ? 'end' : `{{> t${i + 1}}}`]));
    expect(createRenderer(templateStore(chain).source).renderString('{{> t0}}', context(), 't')).toBe('end');
  });
});

describe('prototype access', () => {
  const attacks: Array<{ name: string; src: string }> = [
    { name: 'constructor', src: '{{constructor}}' },
    { name: '__proto__', src: '{{__proto__}}' },
    { name: 'constructor of a field', src: '{{machine.constructor}}' },
    { name: 'lookup constructor', src: '{{lookup machine "constructor"}}' },
    { name: 'lookup __proto__', src: '{{lookup machine "__proto__"}}' },
    { name: 'constructor.constructor', src: '{{#with machine}}{{#with constructor}}{{constructor}}{{/with}}{{/with}}' },
    { name: 'string method', src: '{{machine.name.toString}}' },
    {
      name: 'the classic Function-constructor RCE payload',
      src: `{{#with "s" as |string|}}{{#with "e"}}{{#with split as |conslist|}}{{this.pop}}{{this.push (lookup string.sub "constructor")}}{{this.pop}}{{#with string.split as |codelist|}}{{this.pop}}{{this.push "globalThis.__ironflowPwned = true; return 'pwned';"}}{{this.pop}}{{#each conslist}}{{#with (string.sub.apply 0 codelist)}}{{this}}{{/with}}{{/each}}{{/with}}{{/with}}{{/with}}{{/with}}`,
    },
  ];
  it.each(attacks)('$name renders nothing dangerous', ({ src }) => {
    let out = '';
    try {
      out = render(src);
    } catch (err) {
      expect(errorCode(err)).toBe('RENDER_FAILED');
    }
    expect(out).not.toMatch(/function|Function|Object|pwned|\[native code\]/);
    expect((globalThis as { __ironflowPwned?: boolean }).__ironflowPwned).toBeUndefined();
  });
  it('never exposes the machine secret', () => {
    expect(render('{{#each machine}}{{@key}}={{this}};{{/each}}')).not.toContain('never-rendered');
    expect(renderFailure(() => render('{{machine.secret}}')).message).toContain('missing field "secret"');
  });
});

describe('boot paths', () => {
  it.each([
    { name: 'pxelinux', mac: '52:54:00:12:34:56', format: 'pxelinux' as const, want: '01-52-54-00-12-34-56' },
    { name: 'pxelinux from dashed upper case', mac: '52-54-00-AB-CD-EF', format: 'pxelinux' as const, want: '01-52-54-00-ab-cd-ef' },
    { name: 'ipxe', mac: '5254.0012.3456', format: 'ipxe' as const, want: '52:54:00:12:34:56' },
    { name: 'grub', mac: '525400123456', format: 'grub' as const, want: '52:54:00:12:34:56' },
  ])('formats a MAC: $name', ({ mac, format, want }) => {
    expect(formatMac(mac, format)).toBe(want);
  });
  it.each([
    { ip: '192.168.100.10', want: 'C0A8640A' },
    { ip: '10.0.0.1', want: '0A000001' },
    { ip: '255.255.255.255', want: 'FFFFFFFF' },
  ])('hexAddress($ip) = $want', ({ ip, want }) => {
    expect(hexAddress(ip)).toBe(want);
  });
  it('refuses what is not a MAC or an IPv4 address', () => {
    expect(() => pxelinuxMac('52:54:00:12:34')).toThrow(/not a MAC/);
    expect(() => hexAddress('192.168.1.256')).toThrow(/not an IPv4/);
  });
  it.each([
    { src: '{{mac "ipxe"}}.ipxe', want: true },
    { src: 'grub/grub.cfg-{{mac "pxelinux"}}', want: true },
    { src: '{{json (mac "grub")}}', want: true },
    { src: '{{#if machine.address}}{{machine.address}}.ipxe{{/if}}', want: false },
    { src: 'x/{{machine.mac}}', want: false },
    { src: 'machines/{{machine.uuid}}/preseed.cfg', want: false },
  ])('usesHelper($src, mac) = $want', ({ src, want }) => {
    expect(usesHelper(src, 'mac')).toBe(want);
  });
});
