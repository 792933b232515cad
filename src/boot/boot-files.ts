// The boot file system of one api process (SPEC 4.3), wired from the services: renderer over the
// cached Templates, the path index and its sync, the resolver, static files, discovery and the
// timeline entries of what was served. http.ts and tftp-server.ts adapt it to their protocols.
import type { Logger } from 'pino';
import type { TokenSigner } from '../auth/tokens.js';
import type { Config } from '../config.js';
import type { EventBus } from '../events/bus.js';
import type { Timeline } from '../events/timeline.js';
import { SystemPrincipal } from '../models/principal.js';
import type { ParamResolver } from '../params/layers.js';
import { createRenderer } from '../render/renderer.js';
import type { StoreKeys } from '../store/keys.js';
import type { ObjectStore } from '../store/objects.js';
import type { PrefsService } from '../store/prefs.js';
import type { Redis } from 'ioredis';
import { admitAll, discover, type Admit } from './discovery.js';
import { IndexSync } from './index-sync.js';
import { BootResolver, type BootFile } from './resolver.js';
import { StaticFiles } from './static-files.js';

export type BootProtocol = 'http' | 'tftp';

export interface BootFilesDeps {
  config: Config;
  store: ObjectStore;
  params: ParamResolver;
  prefs: PrefsService;
  signer: TokenSigner;
  bus: EventBus;
  timeline: Timeline;
  redis: Redis;
  keys: StoreKeys;
  log: Logger;
}

export interface BootFilesOptions {
  /** where the system iPXE binaries are (default /usr/lib/ipxe; undefined in tests that want none) */
  systemIpxeDir?: string;
  admit?: Admit;
}

export class BootFiles {
  readonly sync: IndexSync;
  readonly resolver: BootResolver;
  readonly files: StaticFiles;
  readonly admit: Admit;
  private readonly log: Logger;

  constructor(private readonly deps: BootFilesDeps, opts: BootFilesOptions = {}) {
    this.log = deps.log.child({ module: 'boot' });
    this.admit = opts.admit ?? admitAll;
    this.files = 'systemIpxeDir' in opts ? new StaticFiles(deps.config.dataDir, opts.systemIpxeDir) : new StaticFiles(deps.config.dataDir);
    const renderer = createRenderer({ get: (id) => this.sync.cache.get(id) });
    this.sync = new IndexSync({ store: deps.store, bus: deps.bus, redis: deps.redis, keys: deps.keys, renderer, log: this.log });
    this.resolver = new BootResolver({ store: deps.store, params: deps.params, prefs: deps.prefs, signer: deps.signer, sync: this.sync, renderer, files: this.files });
  }

  /** Starts building the index in the background; requests wait for it. */
  start(): void {
    this.sync.ready().catch((err: unknown) => this.log.error({ err }, 'boot index failed to start'));
  }

  resolve(path: string, publicUrl: string): Promise<BootFile | null> {
    return this.resolver.resolve(path, publicUrl);
  }

  discover(query: { mac?: string; arch?: string }, ip: string, publicUrl: string): Promise<BootFile | null> {
    return discover({ store: this.deps.store, prefs: this.deps.prefs, resolver: this.resolver, timeline: this.deps.timeline, admit: this.admit }, query, ip, publicUrl);
  }

  /**
   * Records what a known machine was served (or failed to be) on its timeline. Not awaited by the
   * adapters: the file goes out at once, and a timeline write that fails is logged, never retried.
   */
  record(file: BootFile, protocol: BootProtocol, extra: Record<string, unknown> = {}): void {
    if (file.kind === 'static' || !file.machine) return;
    const failed = file.kind === 'failed';
    if (failed) this.log.warn({ machine: file.machine.uuid, path: file.path, protocol, err: file.error.message }, 'boot file render failed');
    const body = failed ? { path: file.path, protocol, bootEnv: file.bootEnv, error: file.error.message, ...extra } : { path: file.path, protocol, bootEnv: file.bootEnv, ...extra };
    this.deps.timeline.record(file.machine.uuid, { type: failed ? 'boot.render_failed' : 'boot.file_served', body }, SystemPrincipal)
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message, machine: file.machine?.uuid }, 'boot timeline entry not recorded'));
  }

  /** A timeline entry for something else that happened to a machine's boot (e.g. a failed TFTP transfer). */
  note(uuid: string, type: string, body: Record<string, unknown>): void {
    this.deps.timeline.record(uuid, { type, body }, SystemPrincipal)
      .catch((err: unknown) => this.log.warn({ err: (err as Error).message, machine: uuid }, 'boot timeline entry not recorded'));
  }

  close(): void {
    this.sync.close();
  }
}
