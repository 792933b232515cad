// The template helpers of SPEC 4.1 (each documented in templates/README.md). They see the render in
// progress only through HelperScope, so the renderer owns nesting, bounds and error wording.
import type { HelperOptions } from 'handlebars';
import { formatMac, hexAddress, isMacFormat, MacFormats, shortName } from './boot-paths.js';
import type { RenderContext, RenderMachine } from './types.js';

export interface HelperScope {
  readonly ctx: RenderContext;
  /** fails the render with `detail` as the whole reason (no `helper "x":` prefix) */
  fail(detail: string): never;
  /** renders Template `id` with the render's root context */
  include(id: string): string;
  /** renders inline source with the render's root context */
  renderSource(source: string, name: string): string;
}

/** A helper; a plain Error it throws is reported as `helper "<name>": <message>`. */
export type Helper = (scope: HelperScope, args: unknown[], options: HelperOptions) => unknown;

/** Handlebars' own truthiness (`{{#if}}`): empty arrays are false too. */
export function truthy(value: unknown): boolean {
  return Array.isArray(value) ? value.length > 0 : Boolean(value);
}

function text(value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '') throw new Error(`needs ${what} (a non-empty string)`);
  return value;
}

function machineOf(ctx: RenderContext): RenderMachine {
  if (!ctx.machine) throw new Error('needs a machine, and this render has none');
  return ctx.machine;
}

function urlsOf(ctx: RenderContext) {
  const base = ctx.urls.publicUrl.replace(/\/+$/, '');
  return { base, provisioner: `${base}/boot` };
}

function lookupParam(scope: HelperScope, name: unknown, hash: Record<string, unknown> = {}): unknown {
  const n = text(name, 'a param name');
  const hit = scope.ctx.params.get(n);
  if (hit.found) return hit.value;
  return Object.prototype.hasOwnProperty.call(hash, 'default') ? hash.default : scope.fail(`missing param "${n}"`);
}

const jsonOf = (value: unknown, indent?: number) => JSON.stringify(value, null, indent) ?? 'null';

// Characters GRUB's shell-like lexer leaves alone; any other makes us single-quote the word.
const GRUB_SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;
const grubWord = (word: string) => (GRUB_SAFE.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`);

const IS_URL = /^[a-z][a-z0-9+.-]*:\/\//i;

export const helpers: Record<string, Helper> = {
  param: (scope, [name], options) => lookupParam(scope, name, options.hash),
  paramExists: (scope, [name]) => scope.ctx.params.get(text(name, 'a param name')).found,
  paramJson: (scope, [name]) => jsonOf(lookupParam(scope, name)),
  default: (_scope, [value, fallback]) => (value === undefined || value === null || value === '' ? fallback : value),
  eq: (_scope, [a, b]) => a === b,
  ne: (_scope, [a, b]) => a !== b,
  and: (_scope, args) => args.length > 0 && args.every(truthy),
  or: (_scope, args) => args.find(truthy) ?? false,
  not: (_scope, [value]) => !truthy(value),
  join: (_scope, [list, separator]) => {
    if (list === undefined || list === null) return '';
    if (!Array.isArray(list)) return String(list);
    const sep = separator === undefined ? ',' : String(separator);
    return list.map((v) => (typeof v === 'string' ? v : jsonOf(v))).join(sep);
  },
  json: (_scope, [value, indent]) => jsonOf(value, typeof indent === 'number' ? indent : undefined),
  base64: (_scope, [value]) => Buffer.from(typeof value === 'string' ? value : jsonOf(value), 'utf8').toString('base64'),
  include: (scope, [id]) => scope.include(text(id, 'a template id')),
  urlPart: (_scope, [url, part]) => {
    const u = new URL(text(url, 'a URL'));
    switch (part) {
      case 'protocol':
        return u.protocol.slice(0, -1);
      case 'host':
        return u.host;
      case 'hostname':
        return u.hostname;
      case 'port':
        return u.port;
      case 'path':
        return u.pathname.replace(/\/+$/, '');
      default:
        throw new Error(`unknown part "${String(part)}" (use protocol, host, hostname, port or path)`);
    }
  },
  provisionerURL: (scope) => urlsOf(scope.ctx).provisioner,
  apiURL: (scope) => `${urlsOf(scope.ctx).base}/api/v1`,
  machineURL: (scope) => `${urlsOf(scope.ctx).provisioner}/machines/${machineOf(scope.ctx).uuid}`,
  userStateURL: (scope) => `${urlsOf(scope.ctx).base}/events`,
  phoneHomeURL: (scope) => `${urlsOf(scope.ctx).base}/phone-home`,
  mac: (scope, [format]) => {
    const f = format === undefined ? 'ipxe' : String(format);
    if (!isMacFormat(f)) throw new Error(`unknown format "${f}" (use ${MacFormats.join(', ')})`);
    const mac = scope.ctx.mac ?? scope.ctx.machine?.hardwareAddrs[0];
    if (mac === undefined) throw new Error('no hardware address to format (no machine, or it has none)');
    return formatMac(mac, f);
  },
  hexAddress: (scope, [ip]) => {
    const address = ip ?? machineOf(scope.ctx).address;
    return hexAddress(text(address, 'an IPv4 address (the machine has none)'));
  },
  shortName: (scope, [name]) => shortName(text(name ?? machineOf(scope.ctx).name, 'a host name')),
  bootParams: (scope, [format]) => {
    const env = scope.ctx.env;
    if (!env) throw new Error('needs a bootenv, and this render has none');
    const source = env.bootParams;
    if (source === undefined || source === null || source === '') return '';
    const words = scope.renderSource(text(source, 'env.bootParams'), `bootParams of bootenv ${String(env.name)}`).split(/\s+/).filter(Boolean);
    // A kernel command line is one line whatever the YAML block style was; GRUB alone needs quoting (`;` ends a command there).
    switch (format ?? 'plain') {
      case 'grub':
        return words.map(grubWord).join(' ');
      case 'plain':
      case 'ipxe':
      case 'pxelinux':
        return words.join(' ');
      default:
        throw new Error(`unknown format "${String(format)}" (use ipxe, pxelinux or grub)`);
    }
  },
  pathFor: (scope, [proto, path]) => {
    const p = text(path, 'a path');
    if (proto === 'http') return IS_URL.test(p) ? p : `${urlsOf(scope.ctx).provisioner}/${p.replace(/^\/+/, '')}`;
    if (proto === 'tftp') {
      if (IS_URL.test(p)) throw new Error(`"${p}" is a URL; TFTP serves only paths of the boot tree`);
      return p.replace(/^\/+/, '');
    }
    throw new Error(`unknown protocol "${String(proto)}" (use http or tftp)`);
  },
  token: (scope) => {
    if (!scope.ctx.token) throw new Error('no machine token issuer in this render (is there a machine?)');
    return scope.ctx.token();
  },
};
