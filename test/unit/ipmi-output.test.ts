// ipmitool output classification, against outputs captured from ipmitool 1.8.19 talking to OpenIPMI ipmi_sim 2.0.
import { describe, expect, it } from 'vitest';
import { classifyFailure, meaningfulLines, parseIpmitool, parsePowerStatus, type IpmiCommand } from '../../src/bmc/ipmi-output.js';

// What `-v` prints before every command's own output.
const V = 'Loading IANA PEN Registry...\nRunning Get VSO Capabilities my_addr 0x20, transit 0, target 0x20\nInvalid completion code received: Invalid command\nDiscovered IPMB address 0x0\n';
const V_USER_PRIV =
  'Loading IANA PEN Registry...\nGet HPM.x Capabilities request failed, compcode = d4\nRunning Get VSO Capabilities my_addr 0x20, transit 0, target 0x20\nInvalid completion code received: Insufficient privilege level\nDiscovered IPMB address 0x0\n';
const NO_SESSION = 'Error: Unable to establish IPMI v2 / RMCP+ session\n';

const status: IpmiCommand = { op: 'status' };
const on: IpmiCommand = { op: 'power', action: 'on' };
const pxe: IpmiCommand = { op: 'bootdev', device: 'pxe', persistent: true, efi: true };

describe('parseIpmitool: success is the expected line, whatever the exit code', () => {
  const cases: Array<{ name: string; cmd: IpmiCommand; out: string; rc: number; power?: 'on' | 'off' }> = [
    { name: 'status on (-v noise)', cmd: status, out: `${V}Chassis Power is on\n`, rc: 0, power: 'on' },
    { name: 'status off', cmd: status, out: 'Chassis Power is off\n', rc: 0, power: 'off' },
    { name: 'status despite a privilege-level probe failure', cmd: status, out: `${V_USER_PRIV}Chassis Power is on\n`, rc: 0, power: 'on' },
    { name: 'power on', cmd: on, out: `${V}Chassis Power Control: Up/On\n`, rc: 0 },
    { name: 'power off', cmd: { op: 'power', action: 'off' }, out: 'Chassis Power Control: Down/Off\n', rc: 0 },
    { name: 'power soft', cmd: { op: 'power', action: 'soft' }, out: 'Chassis Power Control: Soft\n', rc: 0 },
    { name: 'power reset', cmd: { op: 'power', action: 'reset' }, out: 'Chassis Power Control: Reset\n', rc: 0 },
    { name: 'power cycle', cmd: { op: 'power', action: 'cycle' }, out: 'Chassis Power Control: Cycle\n', rc: 0 },
    { name: 'bootdev pxe', cmd: pxe, out: `${V}Set Boot Device to pxe\n`, rc: 0 },
    { name: 'mc reset cold', cmd: { op: 'mcReset', type: 'cold' }, out: `${V}Sent cold reset command to MC\n`, rc: 0 },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = parseIpmitool(c.cmd, c.out, c.rc);
      expect(r.ok).toBe(true);
      if (r.ok) expect(r.power).toBe(c.power);
    });
  }

  it('a different power control line is not success', () => {
    expect(parseIpmitool(on, 'Chassis Power Control: Down/Off\n', 0).ok).toBe(false);
  });
});

describe('classifyFailure: real failures', () => {
  const cases: Array<{ name: string; out: string; rc: number; code: string; kind: string; cipher?: boolean; reason: RegExp }> = [
    {
      name: 'wrong user name',
      out: `Loading IANA PEN Registry...\nRAKP 2 message indicates an error : unauthorized name\n${NO_SESSION}`,
      rc: 1, code: 'BMC_AUTH', kind: 'permanent', reason: /unauthorized name/,
    },
    {
      name: 'wrong password',
      out: `Loading IANA PEN Registry...\n> RAKP 2 HMAC is invalid\n${NO_SESSION}`,
      rc: 1, code: 'BMC_AUTH', kind: 'permanent', reason: /^RAKP 2 HMAC is invalid$/,
    },
    {
      name: 'IPMI_PASSWORD missing (ipmitool falls back to a prompt)',
      out: `Unable to read password from environment\nPassword: Loading IANA PEN Registry...\n> RAKP 2 HMAC is invalid\n${NO_SESSION}`,
      rc: 1, code: 'BMC_AUTH', kind: 'permanent', reason: /Unable to read password/,
    },
    {
      name: 'wrong password without -v (only the bare session line)',
      out: NO_SESSION, rc: 1, code: 'BMC_AUTH', kind: 'permanent', reason: /Unable to establish/,
    },
    {
      name: 'cipher suite 17 on a BMC without it',
      out: `Loading IANA PEN Registry...\nError in open session response message : invalid authentication algorithm\n\n${NO_SESSION}`,
      rc: 1, code: 'BMC_AUTH', kind: 'permanent', cipher: true, reason: /invalid authentication algorithm/,
    },
    {
      name: 'nothing listening on the port',
      out: `Loading IANA PEN Registry...\nGet Auth Capabilities error\nError issuing Get Channel Authentication Capabilities request\n${NO_SESSION}`,
      rc: 1, code: 'BMC_UNREACHABLE', kind: 'transient', reason: /Get Auth Capabilities error/,
    },
    {
      name: 'host name does not resolve',
      out: `Address lookup for no.such.host.invalid failed\nCould not open socket!\n${NO_SESSION}`,
      rc: 1, code: 'BMC_UNREACHABLE', kind: 'transient', reason: /Address lookup/,
    },
    {
      name: 'response to power on lost (BMC hung mid-command)',
      out: `${V}Unable to set Chassis Power Control to Up/On\nClose Session command failed\n`,
      rc: 1, code: 'BMC_TIMEOUT', kind: 'transient', reason: /Unable to set Chassis Power Control/,
    },
    {
      name: 'response to bootdev lost',
      out: 'Error setting Chassis Boot Parameter 5\nClose Session command failed\n',
      rc: 1, code: 'BMC_TIMEOUT', kind: 'transient', reason: /Error setting Chassis Boot Parameter 5/,
    },
    {
      name: 'mc reset warm on a BMC without it',
      out: `${V}MC reset command failed: Invalid command\n`,
      rc: 1, code: 'BMC_UNSUPPORTED', kind: 'permanent', reason: /MC reset command failed: Invalid command/,
    },
    {
      name: 'power control with a USER-privilege session',
      out: `${V_USER_PRIV}Set Chassis Power Control to Up/On failed: Insufficient privilege level\n`,
      rc: 1, code: 'BMC_AUTH', kind: 'permanent', reason: /Insufficient privilege level/,
    },
    {
      name: 'bootdev with a USER-privilege session (exit 0)',
      out: `${V_USER_PRIV}Set Chassis Boot Parameter 4 failed: Insufficient privilege level\nSet Chassis Boot Parameter 5 failed: Insufficient privilege level\n`,
      rc: 0, code: 'BMC_AUTH', kind: 'permanent', reason: /Parameter 4 failed: Insufficient privilege/,
    },
    {
      name: 'bootdev the BMC rejects (exit 0)',
      out: 'Set Chassis Boot Parameter 5 failed: Unspecified error\n',
      rc: 0, code: 'BMC_PROTOCOL', kind: 'permanent', reason: /Unspecified error/,
    },
    {
      name: 'device ipmitool does not know',
      out: 'Invalid argument: usb\n', rc: 1, code: 'BMC_UNSUPPORTED', kind: 'permanent', reason: /Invalid argument: usb/,
    },
    { name: 'no output at all', out: '', rc: 1, code: 'BMC_PROTOCOL', kind: 'permanent', reason: /unexpected ipmitool output \(exit 1\)/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const f = classifyFailure(c.out, c.rc);
      expect({ code: f.code, kind: f.kind, cipher: f.cipherMismatch }).toEqual({ code: c.code, kind: c.kind, cipher: c.cipher ?? false });
      expect(f.reason).toMatch(c.reason);
    });
  }

  it('parseIpmitool reports an exit-0 failure as a failure', () => {
    const r = parseIpmitool(pxe, 'Set Chassis Boot Parameter 5 failed: Unspecified error\n', 0);
    expect(r).toMatchObject({ ok: false, failure: { code: 'BMC_PROTOCOL' } });
  });
});

describe('helpers', () => {
  it('meaningfulLines drops the -v probes but keeps real errors', () => {
    expect(meaningfulLines(`${V_USER_PRIV}Set Chassis Power Control to Up/On failed: Insufficient privilege level\n`)).toEqual([
      'Set Chassis Power Control to Up/On failed: Insufficient privilege level',
    ]);
  });

  it('parsePowerStatus needs the exact line', () => {
    expect(parsePowerStatus('Chassis Power is on\n')).toBe('on');
    expect(parsePowerStatus('System Power         : on\n')).toBeUndefined();
  });
});
