// The boot path index (SPEC 4.3): boot-tree path → the machine file it names (machine, bootenv entry, MAC).
//
// Decision: each api process keeps the index in its own memory, built at start by paging through the
// machines (500 at a time, never all objects at once) and kept current from the global event stream,
// applied in order (index-sync.ts). Not a Redis hash: a hash still needs a maintainer per change, lags
// the write by the same event delay, and costs a round trip per request; here a lookup is one Map.get.
// Cost: ≈ 1 KB of heap per machine with the core bootenvs' 5–6 paths (≈ 90–130 MB at 100,000
// machines) and a start-up build of ≈ 15 s at 100,000 (5–6 path renders per machine).
// Correct across processes: every hit is checked against the machine and its bootenv read fresh from
// Redis (bootenv name, MAC, and — unless both revisions are those the path was computed from — the path
// re-rendered), and a miss or a failed check first waits until this process has applied every event
// up to the stream's head at request time (a "barrier": one XREVRANGE, then reading the stream itself),
// so a change committed by any process before the request is seen at once: new paths are served, old
// ones 404. Path templates are rendered with the machine, its bootenv, the MAC, the machine's own params
// and Param defaults (not profiles, stages or prefs: their changes publish nothing naming the machines).
import { normaliseTftpPath } from './tftp-packets.js';
import { usesHelper } from '../render/analyse.js';
import type { ParamLookup, RenderMachine, Renderer } from '../render/renderer.js';
import type { StoredObject } from '../models/common.js';
import type { TemplateEntry } from '../models/template-entry.js';
import type { ParamDefaults } from '../params/resolve.js';

/** What a path names: entry `entry` of bootenv `bootEnv` rendered for machine `uuid` (and `mac`). */
export interface BootTarget {
  uuid: string;
  bootEnv: string;
  entry: number;
  mac?: string;
  /** revisions of the machine and bootenv objects the path was computed from */
  revisions?: { machine: number; bootenv: number };
}

export interface MachineFile extends BootTarget {
  path: string;
  /** entry name, e.g. `ipxe-mac` */
  name: string;
  /** Template id, or undefined for inline contents */
  template?: string;
}

/** Decodes percent-encoding (iPXE sends `52%3A54…`) and normalises like TFTP: null for `..`, NUL, empty or bad encoding. */
export function normaliseBootPath(raw: string, decode = true): string | null {
  let s = raw;
  if (decode && s.includes('%')) {
    try {
      s = decodeURIComponent(s);
    } catch {
      return null;
    }
  }
  return normaliseTftpPath(s);
}

const macPaths = new Map<string, boolean>();
/** Whether an entry path is rendered once per hardware address (cached per source; a bad source is not). */
function pathUsesMac(source: string): boolean {
  let hit = macPaths.get(source);
  if (hit === undefined) {
    try {
      hit = usesHelper(source, 'mac');
    } catch {
      hit = false;
    }
    if (macPaths.size > 10_000) macPaths.clear();
    macPaths.set(source, hit);
  }
  return hit;
}

export const PATH_CONTEXT_URL = 'http://ironflow.invalid';

/** The ParamLookup path templates see: the machine's own params, then Param defaults. */
export function pathParams(machine: StoredObject, defaults: ParamDefaults): ParamLookup {
  const own = (machine.params as Record<string, unknown> | undefined) ?? {};
  return {
    get: (name) => (Object.prototype.hasOwnProperty.call(own, name) ? { found: true, value: own[name] } : defaults.get(name)),
  };
}

export const entriesOf = (bootenv: StoredObject | undefined): TemplateEntry[] => (bootenv?.templates as TemplateEntry[] | undefined) ?? [];

/** Renders one entry's path for a machine (and MAC); '' means the entry serves nothing (e.g. no address). */
export function renderEntryPath(renderer: Renderer, machine: StoredObject | undefined, bootenv: StoredObject, entry: TemplateEntry, mac: string | undefined, params: ParamLookup): string | null {
  const name = `${String(bootenv.name)}/${entry.name}`;
  const ctx = {
    ...(machine ? { machine: machine as RenderMachine } : {}),
    env: bootenv,
    prefs: {},
    params,
    urls: { publicUrl: PATH_CONTEXT_URL },
    ...(mac ? { mac } : {}),
    templateName: `path of ${name}`,
  };
  const rendered = renderer.renderString(entry.path ?? '', ctx, `path of ${name}`).trim();
  if (rendered === '') return '';
  return normaliseBootPath(rendered, false);
}

/**
 * Every file a machine is served by its bootenv: one per entry, or one per MAC when the entry's path
 * uses `mac`. Entries whose path does not render are reported in `errors`, not thrown.
 */
export function machineFiles(renderer: Renderer, machine: StoredObject, bootenv: StoredObject | undefined, defaults: ParamDefaults): { files: MachineFile[]; errors: string[] } {
  const files: MachineFile[] = [];
  const errors: string[] = [];
  if (!bootenv || bootenv.onlyUnknown === true) return { files, errors };
  const uuid = String(machine.uuid);
  const bootEnv = String(bootenv.name);
  const params = pathParams(machine, defaults);
  const macs = (machine.hardwareAddrs as string[] | undefined) ?? [];
  entriesOf(bootenv).forEach((entry, i) => {
    if (!entry.path) return;
    for (const mac of pathUsesMac(entry.path) ? macs : [undefined]) {
      try {
        const path = renderEntryPath(renderer, machine, bootenv, entry, mac, params);
        if (path === '') continue;
        if (path === null) throw new Error(`path of ${bootEnv}/${entry.name} is not a valid boot path`);
        files.push({ path, uuid, bootEnv, entry: i, name: entry.name, ...(mac ? { mac } : {}), ...(entry.id ? { template: entry.id } : {}) });
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
  });
  return { files, errors };
}

/** A machine's paths, and for each its entry index and MAC; the index maps every path to this one record. */
interface MachineRecord {
  uuid: string;
  bootEnv: string;
  paths: string[];
  entries: number[];
  macs: (string | undefined)[];
  /** machine and bootenv revisions the paths were computed from (-1 unknown) */
  machineRev: number;
  bootenvRev: number;
  /** hash of everything the paths were computed from (see IndexSync.indexMachine) */
  inputs: number;
}

function targetOf(rec: MachineRecord, path: string): BootTarget {
  const i = Math.max(0, rec.paths.indexOf(path));
  const mac = rec.macs[i];
  const revisions = rec.machineRev >= 0 ? { revisions: { machine: rec.machineRev, bootenv: rec.bootenvRev } } : {};
  return { uuid: rec.uuid, bootEnv: rec.bootEnv, entry: rec.entries[i]!, ...(mac ? { mac } : {}), ...revisions };
}

/**
 * The index itself: pure data, no I/O. Memory is one Map entry per path pointing at the machine's record
 * (≈ 1.5 KB per machine with the core bootenvs' 5–6 paths). A path two machines claim goes to the first; the other waits behind it.
 */
export class PathIndex {
  private readonly byPath = new Map<string, MachineRecord | MachineRecord[]>();
  private readonly byMachine = new Map<string, MachineRecord>();
  private readonly byBootEnv = new Map<string, Set<string>>();

  lookup(path: string): BootTarget | undefined {
    const hit = this.byPath.get(path);
    const rec = Array.isArray(hit) ? hit[0] : hit;
    return rec ? targetOf(rec, path) : undefined;
  }

  /** Replaces every path of a machine (its old paths stop resolving in the same step); returns the paths another machine holds. */
  /**
   * When the inputs a machine's paths depend on are unchanged, only the revision moves (no re-render):
   * returns true when the machine was recorded with exactly these inputs.
   */
  touchMachine(uuid: string, bootEnv: string, inputs: number, machineRev: number): boolean {
    const rec = this.byMachine.get(uuid);
    if (!rec || rec.bootEnv !== bootEnv || rec.inputs !== inputs) return false;
    rec.machineRev = machineRev;
    return true;
  }

  setMachine(uuid: string, bootEnv: string, files: readonly (BootTarget & { path: string })[], revisions?: { machine: number; bootenv: number }, inputs = 0): string[] {
    this.removeMachine(uuid);
    // the same machine naming one path twice: the first entry wins
    const kept = files.filter((f, i) => files.findIndex((g) => g.path === f.path) === i);
    // exact-size arrays: at 100,000 machines every spare slot costs megabytes
    const rec: MachineRecord = { uuid, bootEnv, paths: kept.map((f) => f.path), entries: kept.map((f) => f.entry), macs: kept.map((f) => f.mac), machineRev: revisions?.machine ?? -1, bootenvRev: revisions?.bootenv ?? -1, inputs };
    const clashes: string[] = [];
    for (const path of rec.paths) {
      const cur = this.byPath.get(path);
      if (cur === undefined) this.byPath.set(path, rec);
      else {
        this.byPath.set(path, [...(Array.isArray(cur) ? cur : [cur]), rec]);
        clashes.push(path);
      }
    }
    this.byMachine.set(uuid, rec);
    let set = this.byBootEnv.get(bootEnv);
    if (!set) this.byBootEnv.set(bootEnv, (set = new Set()));
    set.add(uuid);
    return clashes;
  }

  removeMachine(uuid: string): void {
    const rec = this.byMachine.get(uuid);
    if (!rec) return;
    for (const path of rec.paths) {
      const cur = this.byPath.get(path);
      if (cur === rec) this.byPath.delete(path);
      else if (Array.isArray(cur)) {
        const rest = cur.filter((r) => r !== rec);
        if (rest.length === 0) this.byPath.delete(path);
        else this.byPath.set(path, rest.length === 1 ? rest[0]! : rest);
      }
    }
    this.byMachine.delete(uuid);
    const set = this.byBootEnv.get(rec.bootEnv);
    set?.delete(uuid);
    if (set?.size === 0) this.byBootEnv.delete(rec.bootEnv);
  }

  machinesOf(bootEnv: string): string[] {
    return [...(this.byBootEnv.get(bootEnv) ?? [])];
  }

  pathsOf(uuid: string): readonly string[] {
    return this.byMachine.get(uuid)?.paths ?? [];
  }

  get size(): { paths: number; machines: number } {
    return { paths: this.byPath.size, machines: this.byMachine.size };
  }

  clear(): void {
    this.byPath.clear();
    this.byMachine.clear();
    this.byBootEnv.clear();
  }
}
