// Discovery (SPEC 4.3): `discover.ipxe?mac=…&arch=…` registers an unknown machine when the preference
// autoDiscover is "true" and answers with its boot script; a known MAC just gets its script.
import { AppError, errorCode } from '../errors.js';
import type { Timeline } from '../events/timeline.js';
import type { StoredObject } from '../models/common.js';
import { normaliseMac } from '../models/machines.js';
import { SystemPrincipal } from '../models/principal.js';
import type { ObjectStore } from '../store/objects.js';
import type { PrefsService } from '../store/prefs.js';
import { isIpxePath, type BootFile, type BootResolver } from './resolver.js';

/** iPXE's `${buildarch}` → Ironflow's arch names (machines refuse `x86_64` and `aarch64`). */
export const BUILDARCH: Readonly<Record<string, string>> = {
  x86_64: 'amd64',
  amd64: 'amd64',
  i386: 'i386',
  arm64: 'arm64',
  aarch64: 'arm64',
  arm32: 'arm',
  riscv64: 'riscv64',
};

/**
 * Whether a source address may do something costly now (discovery creates machines). This is the
 * seam for SPEC 10's per-address rate limiting, which comes with the security work: today it admits all.
 */
export type Admit = (ip: string) => boolean;
export const admitAll: Admit = () => true;

export interface DiscoveryDeps {
  store: ObjectStore;
  prefs: PrefsService;
  resolver: BootResolver;
  timeline: Timeline;
  admit: Admit;
}

/** What discover.ipxe answers when discovery is off, or the unknown bootenv would chain discovery again. */
export const LOCAL_BOOT_SCRIPT = [
  '#!ipxe',
  '# Ironflow: discovery is off (preference autoDiscover), so this machine boots from its local disk.',
  'echo Ironflow: unknown machine ${netX/mac}, discovery is off, booting from local disk',
  'iseq ${platform} pcbios && sanboot --no-describe --drive 0x80 ||',
  'exit',
  '',
].join('\n');

export function discoveryName(mac: string): string {
  return `d${mac.replaceAll(':', '')}`;
}

export function archOf(buildarch: string | undefined): string {
  if (buildarch === undefined || buildarch === '') return 'amd64';
  const arch = BUILDARCH[buildarch.toLowerCase()];
  if (!arch) throw new AppError('INVALID', `arch: "${buildarch.slice(0, 40)}" is not an iPXE build architecture (${Object.keys(BUILDARCH).join(', ')})`);
  return arch;
}

export async function discover(deps: DiscoveryDeps, query: { mac?: string; arch?: string }, ip: string, publicUrl: string): Promise<BootFile | null> {
  const mac = normaliseMac(String(query.mac ?? ''));
  if (!mac) throw new AppError('INVALID', `mac: ${query.mac ? `"${String(query.mac).slice(0, 40)}" is not a MAC address` : 'required'} (discover.ipxe?mac=\${netX/mac}&arch=\${buildarch})`);
  const arch = archOf(query.arch);
  const known = await deps.store.get('machines', `hardwareAddrs:${mac}`);
  if (known) return scriptOf(deps, known, mac, publicUrl);
  const prefs = await deps.prefs.all();
  if (prefs.autoDiscover !== 'true') return unknownScript(deps, publicUrl);
  if (!deps.admit(ip)) throw new AppError('RATE_LIMITED', 'too many discovery requests from this address; retry later');
  let machine: StoredObject;
  try {
    machine = await deps.store.create('machines', { name: discoveryName(mac), hardwareAddrs: [mac], arch }, { principal: SystemPrincipal, action: 'save' });
  } catch (err) {
    // Two discover requests for one MAC at once: the second finds the machine the first created.
    const again = errorCode(err) === 'CONFLICT' ? await deps.store.get('machines', `hardwareAddrs:${mac}`) : undefined;
    if (!again) throw err;
    return scriptOf(deps, again, mac, publicUrl);
  }
  await deps.timeline.record(String(machine.uuid), { type: 'discovery', body: { mac, arch, address: ip, name: machine.name } }, SystemPrincipal);
  return scriptOf(deps, machine, mac, publicUrl);
}

/** The machine's iPXE file for this MAC (else its first iPXE file); null when its bootenv has none. */
async function scriptOf(deps: DiscoveryDeps, machine: StoredObject, mac: string, publicUrl: string): Promise<BootFile | null> {
  const ipxe = (await deps.resolver.machineFiles(machine)).files.filter((f) => isIpxePath(f.path));
  const file = ipxe.find((f) => f.mac === mac) ?? ipxe[0];
  return file ? deps.resolver.renderForMachine(machine, file.path, publicUrl) : null;
}

/** The unknown bootenv's iPXE script, unless it would send the machine straight back here (a loop). */
async function unknownScript(deps: DiscoveryDeps, publicUrl: string): Promise<BootFile> {
  const file = await deps.resolver.resolve('default.ipxe', publicUrl);
  if (file?.kind === 'rendered' && !file.machine && !file.body.toString('utf8').includes('discover.ipxe')) return file;
  return { kind: 'rendered', path: 'discover.ipxe', body: Buffer.from(LOCAL_BOOT_SCRIPT), bootEnv: '' };
}
