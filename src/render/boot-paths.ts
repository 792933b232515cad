// How firmware spells a machine in the boot file names it asks for (SPEC 4.3); pure, shared by the renderer and the boot index.
import { AppError } from '../errors.js';
import { isIPv4, normaliseMac } from '../models/machines.js';

export const MacFormats = ['pxelinux', 'ipxe', 'grub'] as const;
export type MacFormat = (typeof MacFormats)[number];

function canonicalMac(mac: string): string {
  const m = normaliseMac(mac);
  if (m === undefined) throw new AppError('INVALID', `not a MAC address: "${mac}"`);
  return m;
}

/** `01-aa-bb-cc-dd-ee-ff`: ARP hardware type 1 + dashed MAC, the name PXELINUX and GRUB >= 2.04 look for. */
export function pxelinuxMac(mac: string): string {
  return `01-${canonicalMac(mac).replaceAll(':', '-')}`;
}

/** `aa:bb:cc:dd:ee:ff`, what iPXE's `${netX/mac}` expands to (iPXE percent-encodes the colons in a URL path). */
export function ipxeMac(mac: string): string {
  return canonicalMac(mac);
}

/** `aa:bb:cc:dd:ee:ff`, what GRUB's `$net_default_mac` holds (as DRP's `MacAddr "grub"`). */
export function grubMac(mac: string): string {
  return canonicalMac(mac);
}

export function isMacFormat(format: string): format is MacFormat {
  return (MacFormats as readonly string[]).includes(format);
}

export function formatMac(mac: string, format: MacFormat): string {
  switch (format) {
    case 'pxelinux':
      return pxelinuxMac(mac);
    case 'ipxe':
      return ipxeMac(mac);
    case 'grub':
      return grubMac(mac);
  }
}

/** `192.168.100.10` → `C0A8640A`, the per-IP name PXELINUX (and GRUB) look for. */
export function hexAddress(ip: string): string {
  if (!isIPv4(ip)) throw new AppError('INVALID', `not an IPv4 address: "${ip}"`);
  return ip.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join('').toUpperCase();
}

/** The hostname before the first dot. */
export function shortName(name: string): string {
  return name.split('.')[0] ?? name;
}
