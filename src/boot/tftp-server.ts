// The TFTP adapter of the boot file system (SPEC 4.4): the TFTP server of tftp.ts resolving through the
// same resolver as HTTP, so both serve the same bytes; transfers of a machine's files go on its timeline.
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { MetricsSink } from '../metrics/metrics.js';
import type { BootFiles } from './boot-files.js';
import { normaliseBootPath } from './path-index.js';
import type { BootFile } from './resolver.js';
import { tftpFileOf } from './static-files.js';
import { fileFromBuffer, startTftpServer, type TftpServer } from './tftp.js';

const WILDCARD = new Set(['', '0.0.0.0', '::', '[::]']);
const MAX_PENDING = 10_000;

const localAddresses = new Map<string, string>();

/** The local address a reply to `client` leaves from: the one its request arrived on (connect() on UDP sends nothing). */
export async function localAddressFor(client: string): Promise<string> {
  const hit = localAddresses.get(client);
  if (hit) return hit;
  const sock = createSocket(isIPv6(client) ? 'udp6' : 'udp4');
  try {
    const addr = await new Promise<string>((resolve, reject) => {
      sock.once('error', reject);
      sock.connect(9, client, () => resolve(sock.address().address));
    });
    if (localAddresses.size > 4096) localAddresses.clear();
    localAddresses.set(client, addr);
    return addr;
  } finally {
    sock.close();
  }
}

/** IRONFLOW_PUBLIC_URL, else `http://<the address the TFTP request arrived on>:<HTTP port>`. */
export async function tftpPublicUrl(config: Pick<Config, 'publicUrl' | 'host' | 'port'>, client: string): Promise<string> {
  if (config.publicUrl) return config.publicUrl;
  const addr = WILDCARD.has(config.host) ? await localAddressFor(client) : config.host;
  return `http://${isIPv6(addr) ? `[${addr}]` : addr}:${config.port}`;
}

export async function startBootTftp(boot: BootFiles, config: Pick<Config, 'publicUrl' | 'host' | 'port' | 'tftpPort'>, log: Logger, metrics?: Pick<MetricsSink, 'tftpTransfer'>): Promise<TftpServer> {
  // rendered files of known machines by client TID, until their transfer ends (then a timeline entry)
  const pending = new Map<string, BootFile & { kind: 'rendered' }>();
  return startTftpServer({
    host: config.host,
    port: config.tftpPort,
    log: log.child({ module: 'tftp' }),
    admit: (client) => boot.admit(client.address),
    resolve: async (raw, client) => {
      // TFTP names are not URLs, but a client that builds them from one (iPXE) may percent-encode `:`.
      const path = normaliseBootPath(raw, true);
      if (path === null) return null;
      const file = await boot.resolve(path, await tftpPublicUrl(config, client.address));
      if (!file) return null;
      if (file.kind === 'static') return tftpFileOf(file.file);
      if (file.kind === 'failed') {
        boot.record(file, 'tftp');
        if (!file.script) throw file.error;
        return fileFromBuffer(file.script);
      }
      if (file.machine) {
        if (pending.size >= MAX_PENDING) pending.delete(pending.keys().next().value!);
        pending.set(`${client.address}:${client.port}`, file);
      }
      return fileFromBuffer(file.body);
    },
    onTransfer: (e) => {
      metrics?.tftpTransfer(e.ok ? 'ok' : e.error === 'file not found' ? 'not_found' : 'failed', e.bytes);
      const key = `${e.client.address}:${e.client.port}`;
      const file = pending.get(key);
      if (!file?.machine) return;
      pending.delete(key);
      if (e.ok) boot.record(file, 'tftp', { bytes: e.bytes, ms: e.ms });
      else boot.note(file.machine.uuid, 'boot.transfer_failed', { path: file.path, protocol: 'tftp', bootEnv: file.bootEnv, error: e.error ?? 'failed' });
    },
  });
}
