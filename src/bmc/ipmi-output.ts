// Pure interpretation of ipmitool's text output: what success looks like per command, and how a failure is classified.
import type { BmcErrorCode, BmcErrorKind, PowerAction } from './driver.js';

export type IpmiCommand =
  | { op: 'status' }
  | { op: 'power'; action: PowerAction }
  | { op: 'bootdev'; device: IpmitoolBootDevice; persistent: boolean; efi: boolean }
  | { op: 'mcReset'; type: 'warm' | 'cold' };

/** Devices ipmitool 1.8.19 `chassis bootdev` accepts that Ironflow maps to (it has no usb). */
export type IpmitoolBootDevice = 'pxe' | 'disk' | 'cdrom' | 'bios';

export interface IpmiFailure {
  code: BmcErrorCode;
  kind: BmcErrorKind;
  reason: string;
  /** The BMC refused the cipher suite: the driver should try the next configured one. */
  cipherMismatch: boolean;
}

export type IpmiOutcome = { ok: true; power?: 'on' | 'off' } | { ok: false; failure: IpmiFailure };

const POWER_LABEL: Record<PowerAction, string> = {
  on: 'Up/On',
  off: 'Down/Off',
  soft: 'Soft',
  reset: 'Reset',
  cycle: 'Cycle',
};

/**
 * Drops what `-v` prints on every call: probes that fail harmlessly on most BMCs (VSO/HPM.x) would
 * otherwise read as "Invalid command" or "Insufficient privilege level" failures.
 */
export function meaningfulLines(output: string): string[] {
  const lines = output.split(/\r?\n/).map((l) => l.replace(/^Password:\s*/, '').trim());
  const kept: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (line === '') continue;
    if (/^Running Get VSO Capabilities/.test(line)) {
      if (/^Invalid completion code received/.test(lines[i + 1] ?? '')) i++;
      continue;
    }
    if (/^(Loading IANA PEN Registry|Discovered IPMB address|Get HPM\.x Capabilities request failed)/.test(line)) continue;
    kept.push(line);
  }
  return kept;
}

export function parsePowerStatus(output: string): 'on' | 'off' | undefined {
  const m = /^Chassis Power is (on|off)\s*$/m.exec(output);
  return m?.[1] === 'on' ? 'on' : m?.[1] === 'off' ? 'off' : undefined;
}

function succeeded(cmd: IpmiCommand, output: string): boolean {
  switch (cmd.op) {
    case 'status':
      return parsePowerStatus(output) !== undefined;
    case 'power':
      return new RegExp(`^Chassis Power Control: ${POWER_LABEL[cmd.action]}\\s*$`, 'm').test(output);
    case 'bootdev':
      return new RegExp(`^Set Boot Device to ${cmd.device}\\s*$`, 'm').test(output);
    case 'mcReset':
      return new RegExp(`^Sent ${cmd.type} reset command to MC\\s*$`, 'm').test(output);
  }
}

interface Rule {
  re: RegExp;
  code: BmcErrorCode;
  kind: BmcErrorKind;
  cipher?: true;
}

// Order matters: several lines print for one failure (e.g. "RAKP 2 HMAC is invalid" then "Unable to
// establish ... session"), and the most specific line decides.
const RULES: Rule[] = [
  {
    re: /invalid (authentication|integrity|confidentiality) algorithm|no matching (cipher suite|authentication|integrity|confidentiality)|unsupported cipher suite|invalid cipher suite/i,
    code: 'BMC_AUTH',
    kind: 'permanent',
    cipher: true,
  },
  {
    re: /insufficient resources|node busy|initialization in progress|in update mode|destination unavailable|cannot execute duplicated request|command response could not be provided/i,
    code: 'BMC_UNREACHABLE',
    kind: 'transient',
  },
  { re: /timeout while processing command/i, code: 'BMC_TIMEOUT', kind: 'transient' },
  // Nothing answered the session handshake: the BMC is down, rebooting or unroutable.
  {
    re: /get auth capabilities error|error issuing get channel authentication capabilities|no response from remote controller|could not open socket|address lookup for .* failed/i,
    code: 'BMC_UNREACHABLE',
    kind: 'transient',
  },
  // The session worked but the command's response never came: it may or may not have been applied.
  {
    re: /^unable to (get|set) |^error (setting|getting|sending) |^MC reset command failed\.$|close session command failed/i,
    code: 'BMC_TIMEOUT',
    kind: 'transient',
  },
  { re: /insufficient privilege/i, code: 'BMC_AUTH', kind: 'permanent' },
  {
    re: /RAKP \d HMAC is invalid|RAKP \d message indicates an error|unauthorized name|invalid user name|invalid role|activate session error|authentication type .* not supported|unable to read password/i,
    code: 'BMC_AUTH',
    kind: 'permanent',
  },
  {
    re: /invalid command|command invalid for given LUN|command disabled|parameter not supported|not supported in present state|invalid argument|invalid chassis power command|command not supported/i,
    code: 'BMC_UNSUPPORTED',
    kind: 'permanent',
  },
  // A silent BMC is caught above by the capabilities line, so a bare session failure means the BMC
  // answered and refused us (credentials, privilege or cipher).
  { re: /unable to establish (IPMI v2 \/ RMCP\+|LAN) session/i, code: 'BMC_AUTH', kind: 'permanent' },
  { re: /failed: .+/i, code: 'BMC_PROTOCOL', kind: 'permanent' },
];

export function classifyFailure(output: string, exitCode: number | null): IpmiFailure {
  const lines = meaningfulLines(output);
  for (const rule of RULES) {
    const line = lines.find((l) => rule.re.test(l));
    if (line !== undefined) {
      return { code: rule.code, kind: rule.kind, reason: clean(line), cipherMismatch: rule.cipher === true };
    }
  }
  const tail = lines.slice(-3).map(clean).join('; ') || '(no output)';
  return {
    code: 'BMC_PROTOCOL',
    kind: 'permanent',
    reason: `unexpected ipmitool output (exit ${exitCode ?? 'signal'}): ${tail}`,
    cipherMismatch: false,
  };
}

function clean(line: string): string {
  return line.replace(/^(Error:|>)\s*/, '').replace(/\s+/g, ' ').trim();
}

/** Success is decided by the expected line, not the exit code: ipmitool exits 0 on some failures and vice versa. */
export function parseIpmitool(cmd: IpmiCommand, output: string, exitCode: number | null): IpmiOutcome {
  if (succeeded(cmd, output)) {
    const power = cmd.op === 'status' ? parsePowerStatus(output) : undefined;
    return power === undefined ? { ok: true } : { ok: true, power };
  }
  return { ok: false, failure: classifyFailure(output, exitCode) };
}
