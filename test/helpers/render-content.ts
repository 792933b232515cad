// Renders the shipped core content for tests: loads content/core and templates/ from disk and renders
// every file of a bootenv as the boot index will (one file per MAC when a path uses `mac`).
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { usesHelper } from '../../src/render/analyse.js';
import { checkRequiredParams, createRenderer, type ParamLookup, type RenderMachine, type Renderer } from '../../src/render/renderer.js';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

export interface TemplateEntry {
  name: string;
  path: string;
  id?: string;
  contents?: string;
}

export interface BootEnvDoc extends Record<string, unknown> {
  name: string;
  onlyUnknown?: boolean;
  requiredParams?: string[];
  optionalParams?: string[];
  templates: TemplateEntry[];
}

export interface ParamDoc extends Record<string, unknown> {
  name: string;
  description?: string;
  schema?: Record<string, unknown>;
  secure?: boolean;
  meta?: Record<string, string>;
}

export interface CorePack {
  params: Map<string, ParamDoc>;
  bootenvs: Map<string, BootEnvDoc>;
  /** Template id (path under templates/) → contents */
  templates: Map<string, string>;
  /** file name (under content/core/<kind>/) of each object, for naming checks */
  files: Map<string, string>;
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

export function loadTemplates(dir = join(repoRoot, 'templates')): Map<string, string> {
  const out = new Map<string, string>();
  for (const file of walk(dir).sort()) {
    const id = relative(dir, file).split(sep).join('/');
    if (id !== 'README.md') out.set(id, readFileSync(file, 'utf8'));
  }
  return out;
}

export function loadCorePack(root = repoRoot): CorePack {
  const pack: CorePack = { params: new Map(), bootenvs: new Map(), templates: loadTemplates(join(root, 'templates')), files: new Map() };
  const load = <T extends { name: string }>(kind: string, into: Map<string, T>) => {
    const dir = join(root, 'content', 'core', kind);
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort()) {
      const doc = parse(readFileSync(join(dir, file), 'utf8')) as T;
      into.set(doc.name, doc);
      pack.files.set(`${kind}/${doc.name}`, file);
    }
  };
  load('params', pack.params);
  load('bootenvs', pack.bootenvs);
  return pack;
}

export function sourceOf(templates: Map<string, string>) {
  return { get: (id: string) => (templates.has(id) ? { contents: templates.get(id)!, revision: 1 } : undefined) };
}

/** Machine params first, then each Param's schema default: the two ends of SPEC 4.2's precedence. */
export function paramLookup(machineParams: Record<string, unknown>, params: Map<string, ParamDoc>): ParamLookup {
  return {
    get(name) {
      if (Object.prototype.hasOwnProperty.call(machineParams, name)) return { found: true, value: machineParams[name] };
      const schema = params.get(name)?.schema;
      return schema && 'default' in schema ? { found: true, value: schema.default } : { found: false };
    },
  };
}

export const FIXTURE_PUBLIC_URL = 'http://192.168.100.1:8080';

export const fixtureParams: Record<string, unknown> = {
  'provisioner-default-password-hash': '$6$IronflowFixture$6k.kaqlHAE3nr9xyz0hqy.ZrSLLpkAn6UtH.gi5MTLoFabM/g4BEhktZYPXdL0uH/hfGpJISFkM7lIScxfUT//',
  'ssh-keys': ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILVira2GeZ57/IQtDDEfRUBRFrAUI03BnodeGq8keacZ admin@node1.example'],
};

export const fixtureMachine: RenderMachine = {
  uuid: '3f0c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f',
  name: 'node1',
  address: '192.168.100.10',
  hardwareAddrs: ['52:54:00:12:34:56'],
  arch: 'amd64',
  params: fixtureParams,
};

export interface RenderedFile {
  entry: string;
  path: string;
  contents: string;
}

export interface RenderOptions {
  machine?: RenderMachine;
  prefs?: Record<string, string>;
  renderer?: Renderer;
}

/** Every file `bootenv` serves: with a machine, its per-MAC/per-IP/machines/ files; without, the unknown-machine fallbacks. */
export function renderBootEnv(pack: CorePack, bootenv: BootEnvDoc, opts: RenderOptions = {}): RenderedFile[] {
  const renderer = opts.renderer ?? createRenderer(sourceOf(pack.templates));
  const { machine } = opts;
  const params = paramLookup((machine?.params as Record<string, unknown> | undefined) ?? {}, pack.params);
  const base = {
    env: bootenv,
    prefs: opts.prefs ?? { unknownBootEnv: 'ignore', autoDiscover: 'false' },
    params,
    urls: { publicUrl: FIXTURE_PUBLIC_URL },
    ...(machine ? { machine, token: () => `test-token.${machine.name}` } : {}),
  };
  if (machine) checkRequiredParams(bootenv.requiredParams ?? [], params, { machine, templateName: bootenv.name });
  const out: RenderedFile[] = [];
  for (const entry of bootenv.templates) {
    const macs = machine && usesHelper(entry.path, 'mac') ? machine.hardwareAddrs : [undefined];
    for (const mac of macs) {
      const ctx = { ...base, templateName: `${bootenv.name}/${entry.name}`, ...(mac ? { mac } : {}) };
      const path = renderer.renderString(entry.path, ctx, `path of ${bootenv.name}/${entry.name}`);
      if (path === '') continue; // e.g. a per-IP file of a machine without an address
      const fileCtx = { ...ctx, templateName: path };
      const contents = entry.id ? renderer.render(entry.id, fileCtx) : renderer.renderString(entry.contents ?? '', fileCtx, path);
      out.push({ entry: entry.name, path, contents });
    }
  }
  return out;
}
