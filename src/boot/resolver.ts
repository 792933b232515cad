// THE boot resolver (SPEC 4.3): a normalised boot path → a rendered file, a static file, a render
// failure, or nothing. HTTP and TFTP are thin adapters over it, so both serve the same bytes.
// Order: a known machine's file (index hit, verified against the machine read fresh), static files
// (uploads, then the system iPXE binaries), the unknownBootEnv's fallback files, then — after a barrier
// that applies every event committed before the request — the index once more (a machine just created or changed).
import { AppError, errorCode } from '../errors.js';
import type { StoredObject } from '../models/common.js';
import type { TemplateEntry } from '../models/template-entry.js';
import type { ParamResolver } from '../params/layers.js';
import { checkRequiredParams, type ParamLookup, type Renderer } from '../render/renderer.js';
import type { ObjectSource } from '../store/object-cache.js';
import type { ObjectStore } from '../store/objects.js';
import type { PrefsService } from '../store/prefs.js';
import type { TokenSigner } from '../auth/tokens.js';
import type { IndexSync } from './index-sync.js';
import { entriesOf, machineFiles, pathParams, renderEntryPath, type MachineFile } from './path-index.js';
import { layersFor, lookupFrom, renderContextFrom } from './render-context.js';
import type { StaticFile, StaticFiles } from './static-files.js';

export interface MachineRef {
  uuid: string;
  name: string;
}

export type BootFile =
  | { kind: 'rendered'; path: string; body: Buffer; bootEnv: string; machine?: MachineRef }
  | { kind: 'static'; path: string; file: StaticFile }
  /** `script` is set for iPXE paths: what to serve instead (prints the error, drops to the shell) */
  | { kind: 'failed'; path: string; error: AppError; bootEnv: string; machine?: MachineRef; script?: Buffer };

export interface ResolverDeps {
  store: ObjectStore;
  params: ParamResolver;
  prefs: PrefsService;
  signer: TokenSigner;
  sync: IndexSync;
  renderer: Renderer;
  files: StaticFiles;
}

interface RenderJob {
  /** where the param layers are read (a view started with the request's first reads) */
  source?: ObjectSource;
  machine?: StoredObject;
  bootenv: StoredObject;
  entry: TemplateEntry;
  mac?: string;
  path: string;
  publicUrl: string;
  prefs?: Record<string, string>;
}

const STALE = Symbol('stale');

export const isIpxePath = (path: string) => path.toLowerCase().endsWith('.ipxe');

/** Characters an iPXE `echo` prints as they are (no `${}` expansion, no `||`/`&&`, no quoting). */
const IPXE_UNSAFE = /[^A-Za-z0-9 .,:/_()=@+\-<>[\]*!?']/g;

/** The script served instead of a failed iPXE render: the error on one line, then the iPXE shell. */
export function ipxeErrorScript(path: string, message: string): string {
  const line = `Ironflow: cannot render ${path}: ${message}`.replace(/"/g, "'").replace(/\s+/g, ' ').replace(IPXE_UNSAFE, '?').slice(0, 400);
  return `#!ipxe\necho ${line}\nshell\n`;
}

export class BootResolver {
  private fallbackPaths: { key: string; paths: Map<string, number> } | undefined;

  constructor(private readonly deps: ResolverDeps) {}

  private get cache() {
    return this.deps.sync.cache;
  }

  async resolve(path: string, publicUrl: string): Promise<BootFile | null> {
    const { sync, files } = this.deps;
    await sync.ready();
    let known = await this.known(path, publicUrl);
    let synced = false;
    if (known === STALE) {
      await sync.barrier();
      synced = true;
      known = await this.known(path, publicUrl);
    }
    if (known && known !== STALE) return known;
    const file = await files.find(path);
    if (file) return { kind: 'static', path, file };
    const fallback = await this.fallback(path, publicUrl);
    if (fallback) return fallback;
    if (!synced) {
      await sync.barrier();
      known = await this.known(path, publicUrl);
      if (known && known !== STALE) return known;
    }
    return null;
  }

  /** The index hit for `path`, checked against the machine as stored now; STALE when the index is behind. */
  private async known(path: string, publicUrl: string): Promise<BootFile | typeof STALE | undefined> {
    const target = this.deps.sync.index.lookup(path);
    if (!target) return undefined;
    // Both read fresh (one round trip): another process may have changed either a moment ago. The
    // param layers' source starts in the same round trip (its content-version check rides along).
    const source = this.deps.params.source();
    const [machine, bootenv] = await Promise.all([this.deps.store.get('machines', target.uuid), this.deps.store.get('bootenvs', target.bootEnv)]);
    if (!machine || String(machine.bootEnv ?? '') !== target.bootEnv) return STALE;
    if (target.mac && !((machine.hardwareAddrs as string[] | undefined) ?? []).includes(target.mac)) return STALE;
    const entry = entriesOf(bootenv)[target.entry];
    if (!bootenv || !entry) return STALE;
    // Computed from exactly these objects: the path stands. Otherwise it must still render to the path asked for.
    const exact = target.revisions?.machine === machine.revision && target.revisions?.bootenv === bootenv.revision;
    if (!exact) {
      try {
        if (renderEntryPath(this.deps.renderer, machine, bootenv, entry, target.mac, pathParams(machine, this.cache.paramDefaults)) !== path) return STALE;
      } catch {
        return STALE;
      }
    }
    return this.render({ machine, bootenv, entry, path, publicUrl, source, ...(target.mac ? { mac: target.mac } : {}) });
  }

  /** The unknownBootEnv's files (rendered with no machine), whose paths are recomputed when that bootenv changes. */
  private async fallback(path: string, publicUrl: string): Promise<BootFile | undefined> {
    const prefs = await this.deps.prefs.all();
    const bootenv = prefs.unknownBootEnv ? await this.deps.store.get('bootenvs', prefs.unknownBootEnv) : undefined;
    if (!bootenv) return undefined;
    const key = `${String(bootenv.name)}\0${String(bootenv.revision)}`;
    if (this.fallbackPaths?.key !== key) {
      const paths = new Map<string, number>();
      const params: ParamLookup = this.cache.paramDefaults;
      entriesOf(bootenv).forEach((entry, i) => {
        if (!entry.path) return;
        try {
          const p = renderEntryPath(this.deps.renderer, undefined, bootenv, entry, undefined, params);
          if (p && !paths.has(p)) paths.set(p, i);
        } catch {
          // a fallback path that needs a machine is not a fallback file
        }
      });
      this.fallbackPaths = { key, paths };
    }
    const i = this.fallbackPaths.paths.get(path);
    if (i === undefined) return undefined;
    return this.render({ bootenv, entry: entriesOf(bootenv)[i]!, path, publicUrl, prefs });
  }

  /** Every file a machine is served now (operator view, discovery), computed from the machine as given. */
  async machineFiles(machine: StoredObject): Promise<{ files: MachineFile[]; errors: string[] }> {
    await this.deps.sync.ready();
    const bootenv = machine.bootEnv ? await this.deps.store.get('bootenvs', String(machine.bootEnv)) : undefined;
    return machineFiles(this.deps.renderer, machine, bootenv, this.cache.paramDefaults);
  }

  /** Renders one of `machine`'s own files; null when `path` is not one of them. */
  async renderForMachine(machine: StoredObject, path: string, publicUrl: string): Promise<BootFile | null> {
    await this.deps.sync.ready();
    const bootenv = machine.bootEnv ? await this.deps.store.get('bootenvs', String(machine.bootEnv)) : undefined;
    const file = machineFiles(this.deps.renderer, machine, bootenv, this.cache.paramDefaults).files.find((f) => f.path === path);
    const entry = file && entriesOf(bootenv)[file.entry];
    if (!file || !bootenv || !entry) return null;
    return this.render({ machine, bootenv, entry, path, publicUrl, ...(file.mac ? { mac: file.mac } : {}) });
  }

  private async render(job: RenderJob): Promise<BootFile> {
    const { machine, bootenv, entry, path } = job;
    const bootEnv = String(bootenv.name);
    const ref = machine ? { uuid: String(machine.uuid), name: String(machine.name) } : undefined;
    const [prefs, layers] = await Promise.all([job.prefs ?? this.deps.prefs.all(), layersFor(this.deps, machine, job.source)]);
    const params = lookupFrom(layers, this.cache.paramDefaults);
    const ctx = renderContextFrom(this.deps, { machine, bootenv, prefs, publicUrl: job.publicUrl, path, ...(job.mac ? { mac: job.mac } : {}) }, params);
    try {
      if (machine) checkRequiredParams((bootenv.requiredParams as string[] | undefined) ?? [], params, { machine: ctx.machine, templateName: bootEnv });
      const text = entry.id ? this.deps.renderer.render(entry.id, ctx) : this.deps.renderer.renderString(entry.contents ?? '', ctx, path);
      return { kind: 'rendered', path, body: Buffer.from(text, 'utf8'), bootEnv, ...(ref ? { machine: ref } : {}) };
    } catch (err) {
      if (errorCode(err) !== 'RENDER_FAILED') throw err;
      const error = this.redacted(err as AppError, params);
      return { kind: 'failed', path, error, bootEnv, ...(ref ? { machine: ref } : {}), ...(isIpxePath(path) ? { script: Buffer.from(ipxeErrorScript(path, error.message)) } : {}) };
    }
  }

  /** A helper may quote a value it could not use; values of secure params never leave in an error. */
  private redacted(err: AppError, params: ParamLookup): AppError {
    const secrets: string[] = [];
    for (const name of this.cache.secureNames()) {
      const hit = params.get(name);
      if (hit.found) {
        const v = typeof hit.value === 'string' ? hit.value : JSON.stringify(hit.value);
        if (v && v.length >= 4) secrets.push(v);
      }
    }
    if (secrets.length === 0) return err;
    const scrub = (s: string) => secrets.reduce((acc, v) => acc.split(v).join('[secure value]'), s);
    return new AppError('RENDER_FAILED', scrub(err.message), { messages: err.messages.map(scrub) });
  }
}
