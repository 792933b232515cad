// `ironflow power|bootdev|bmc` (SPEC 11): queue BMC requests and, by default, wait for their outcome.
import { ApiClient, CliError } from './client.js';

type Print = (data: unknown) => void;

interface Request {
  id: string;
  state: string;
  status?: { msg?: string };
}

const POWER: Record<string, { action: string; parameter?: string }> = {
  on: { action: 'set_power_state', parameter: 'on' },
  off: { action: 'set_power_state', parameter: 'off' },
  soft: { action: 'set_power_state', parameter: 'soft' },
  reset: { action: 'set_power_state', parameter: 'reset' },
  cycle: { action: 'set_power_state', parameter: 'cycle' },
  status: { action: 'get_power_state' },
};
const BOOT_DEVICES = ['pxe', 'disk', 'cdrom', 'bios', 'usb'];
const DEFAULT_WAIT_SECONDS = 300;
const POLL_MS = 250;

const enc = encodeURIComponent;

function waitSeconds(flags: Record<string, string | undefined>): number {
  const raw = flags.wait;
  if (raw === undefined) return DEFAULT_WAIT_SECONDS;
  if (!/^\d+$/.test(raw)) throw new CliError(`--wait takes a number of seconds (0 = do not wait), got "${raw}"`, 2);
  return Number(raw);
}

/** Posts the request, then polls it until it succeeds or fails (or the wait ends); a failed request is a non-zero exit. */
async function submit(api: ApiClient, key: string, body: Record<string, unknown>, wait: number, print: Print): Promise<void> {
  const base = `/machines/${enc(key)}/bmc`;
  let req = (await api.request('POST', base, body)).data as Request;
  const until = Date.now() + wait * 1000;
  while (wait > 0 && (req.state === 'pending' || req.state === 'active') && Date.now() < until) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    req = (await api.request('GET', `${base}/${enc(req.id)}`)).data as Request;
  }
  print(req);
  if (req.state === 'failed') throw new CliError(`BMC request ${req.id} ${req.status?.msg ?? 'failed'}`);
  if (wait > 0 && req.state !== 'succeeded') {
    throw new CliError(`BMC request ${req.id} is still ${req.state} after ${wait}s; see \`ironflow bmc ${key} show ${req.id}\``);
  }
}

export async function bmcCommand(api: ApiClient, cmd: 'power' | 'bootdev' | 'bmc', rest: string[], flags: Record<string, string | undefined>, print: Print): Promise<void> {
  const [key, what, arg] = rest;
  switch (cmd) {
    case 'power': {
      const p = what === undefined ? undefined : POWER[what];
      if (!key || !p) throw new CliError('usage: ironflow power KEY on|off|cycle|reset|soft|status [--wait SECONDS]', 2);
      return submit(api, key, { ...p }, waitSeconds(flags), print);
    }
    case 'bootdev': {
      if (!key || !what || !BOOT_DEVICES.includes(what)) throw new CliError(`usage: ironflow bootdev KEY ${BOOT_DEVICES.join('|')} [--persistent] [--efi] [--wait SECONDS]`, 2);
      const body = { action: 'set_next_boot_device', parameter: what, persistent: flags.persistent === 'true', efi: flags.efi === 'true' };
      return submit(api, key, body, waitSeconds(flags), print);
    }
    case 'bmc': {
      const usage = 'usage: ironflow bmc KEY list | show ID | reset [warm|cold] [--wait SECONDS]';
      if (!key) throw new CliError(usage, 2);
      const base = `/machines/${enc(key)}/bmc`;
      switch (what ?? 'list') {
        case 'list': return print((await api.request('GET', base)).data);
        case 'show':
          if (!arg) throw new CliError('usage: ironflow bmc KEY show ID', 2);
          return print((await api.request('GET', `${base}/${enc(arg)}`)).data);
        case 'reset':
          if (arg !== undefined && arg !== 'warm' && arg !== 'cold') throw new CliError('usage: ironflow bmc KEY reset [warm|cold]', 2);
          return submit(api, key, { action: 'power_cycle_bmc', parameter: arg ?? 'cold' }, waitSeconds(flags), print);
        default: throw new CliError(usage, 2);
      }
    }
  }
}
