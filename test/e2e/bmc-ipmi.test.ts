// The ipmi driver: real ipmitool against a real OpenIPMI ipmi_sim (state in files, restartable).
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTransient, type BmcConfig, type PowerState } from '../../src/bmc/driver.js';
import { IpmiDriver, ipmitoolArgs, type IpmiDriverOptions } from '../../src/bmc/ipmi.js';
import { startIpmiSim, type IpmiSim } from '../helpers/ipmi-sim.js';
import { requirePrograms } from '../helpers/peers.js';

const PASSWORD = 'Sekr1t-pw';
const enabled = requirePrograms('ipmitool', 'ipmi_sim');

async function failure(p: Promise<unknown>): Promise<{ code: string; kind: string; message: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: string; kind: string; message: string };
  }
  throw new Error('expected a failure');
}

async function waitForPower(read: () => Promise<PowerState>, want: PowerState, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await read()) === want) return;
    if (Date.now() > deadline) throw new Error(`power never became ${want}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('ipmitoolArgs', () => {
  it('passes the password only through -E (IPMI_PASSWORD), never in argv', () => {
    const argv = ipmitoolArgs({ address: '10.0.0.9', port: 6230, username: 'admin' }, 3, 10, ['chassis', 'power', 'status']);
    expect(argv).toEqual(['-I', 'lanplus', '-H', '10.0.0.9', '-p', '6230', '-U', 'admin', '-E', '-C', '3', '-N', '3', '-R', '1', '-v', 'chassis', 'power', 'status']);
    expect(argv).not.toContain('-P');
  });

  it('keeps ipmitool’s own give-up inside the call timeout', () => {
    expect(ipmitoolArgs({ address: 'h' }, 17, 2, [])).toEqual(expect.arrayContaining(['-p', '623', '-N', '1']));
    expect(ipmitoolArgs({ address: 'h' }, 17, 120, [])).toEqual(expect.arrayContaining(['-N', '10']));
  });
});

describe('ipmi driver with a stub ipmitool', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'ironflow-stub-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function stub(name: string, script: string): string {
    const path = join(dir, name);
    writeFileSync(path, `#!/bin/sh\n${script}\n`);
    chmodSync(path, 0o755);
    return path;
  }
  const cfg: BmcConfig = { driver: 'ipmi', address: 'bmc.example', username: 'admin', password: PASSWORD, insecure: false, timeoutSeconds: 5, ipmiCipherSuites: [3] };

  it('hands the password to ipmitool through IPMI_PASSWORD, in the C locale', async () => {
    const bin = stub('env-check', `[ "$IPMI_PASSWORD" = '${PASSWORD}' ] && [ "$LC_ALL" = C ] && echo 'Chassis Power is on' || echo 'Error: Unable to establish IPMI v2 / RMCP+ session'`);
    expect(await new IpmiDriver(cfg, { ipmitool: bin }).powerState()).toBe('on');
  });

  it('cycle refused while off ("not supported in present state") becomes on', async () => {
    const log = join(dir, 'cycle.log');
    const bin = stub('cycle', `for a; do last=$a; done; echo "$last" >> '${log}'
case $last in
  cycle) echo 'Set Chassis Power Control to Cycle failed: Command not supported in present state'; exit 1 ;;
  on) echo 'Chassis Power Control: Up/On' ;;
esac`);
    await new IpmiDriver(cfg, { ipmitool: bin }).power('cycle');
    expect(readFileSync(log, 'utf8').split('\n').filter(Boolean)).toEqual(['cycle', 'on']);
  });
});

describe.skipIf(!enabled)('ipmi driver against ipmi_sim', () => {
  let sim: IpmiSim;
  const allArgv: string[][] = [];

  const cfg = (over: Partial<BmcConfig> = {}): BmcConfig => ({
    driver: 'ipmi',
    address: '127.0.0.1',
    port: sim.port,
    username: 'admin',
    password: PASSWORD,
    insecure: false,
    timeoutSeconds: 10,
    ...over,
  });
  const driver = (over: Partial<BmcConfig> = {}, calls: string[][] = [], opts: IpmiDriverOptions = {}) =>
    new IpmiDriver(cfg(over), {
      ...opts,
      onExec: (argv) => {
        calls.push([...argv]);
        allArgv.push([...argv]);
      },
    });

  beforeAll(async () => {
    sim = await startIpmiSim({ user: 'admin', password: PASSWORD });
  });
  afterAll(async () => {
    await sim?.close();
    // Checked over every ipmitool run of this file.
    expect(allArgv.length).toBeGreaterThan(10);
    for (const argv of allArgv) expect(argv.join(' ')).not.toContain(PASSWORD);
  });

  it('falls back from cipher suite 17 to 3 once, then remembers 3', async () => {
    const calls: string[][] = [];
    const d = driver({}, calls);
    expect(await d.powerState()).toBe('off');
    expect(calls.map((a) => a[a.indexOf('-C') + 1])).toEqual(['17', '3']);
    await d.powerState();
    expect(calls.map((a) => a[a.indexOf('-C') + 1])).toEqual(['17', '3', '3']);
    expect(d.cipherSuite).toBe(3);
  });

  it('every power action, and the status that follows', async () => {
    const d = driver({ ipmiCipherSuites: [3] });
    await d.power('on');
    expect(await d.powerState()).toBe('on');
    expect(sim.readState().power).toBe('on');

    await d.power('off');
    expect(await d.powerState()).toBe('off');

    await d.power('on');
    await d.power('reset');
    expect(await d.powerState()).toBe('on');
    expect(sim.events().at(-1)).toBe('reset 1');

    await d.power('soft');
    expect(await d.powerState()).toBe('off');

    await d.power('on');
    const before = sim.events().length;
    await d.power('cycle');
    // ipmi_sim powers off at once and back on after its own ~1 s timer.
    await waitForPower(() => d.powerState(), 'on');
    expect(sim.events().slice(before)).toEqual(['power 0', 'power 1']);
    expect(sim.readState().power).toBe('on');
  });

  const bootCases = [
    { device: 'pxe', persistent: false, efi: false, file: 'pxe', selector: 'Force PXE', options: undefined },
    { device: 'disk', persistent: true, efi: false, file: 'default', selector: 'Force Boot from default Hard-Drive', options: 'options=persistent' },
    { device: 'bios', persistent: false, efi: true, file: 'bios', selector: 'Force Boot into BIOS Setup', options: 'options=efiboot' },
    { device: 'cdrom', persistent: true, efi: true, file: 'cdrom', selector: 'Force Boot from CD/DVD', options: 'options=persistent,efiboot' },
    { device: 'pxe', persistent: true, efi: true, file: 'pxe', selector: 'Force PXE', options: 'options=persistent,efiboot' },
  ] as const;
  for (const c of bootCases) {
    it(`boot device ${c.device} persistent=${c.persistent} efi=${c.efi}`, async () => {
      const calls: string[][] = [];
      const d = driver({ ipmiCipherSuites: [3] }, calls);
      await d.setBootDevice(c.device, { persistent: c.persistent, efi: c.efi });
      expect(sim.readState().boot).toBe(c.file);
      const last = calls.at(-1) ?? [];
      expect(last.slice(last.indexOf('bootdev'))).toEqual(['bootdev', c.device, ...(c.options ? [c.options] : [])]);
      const param = await sim.ipmitool('chassis', 'bootparam', 'get', '5');
      expect(param.output).toContain(`Boot Device Selector : ${c.selector}`);
    });
  }

  it('usb: ipmitool has no such device, refused without calling the BMC', async () => {
    const calls: string[][] = [];
    const err = await failure(driver({}, calls).setBootDevice('usb', { persistent: false, efi: false }));
    expect(err).toMatchObject({ code: 'BMC_UNSUPPORTED', kind: 'permanent' });
    expect(calls).toEqual([]);
  });

  it('mc reset cold works; warm is unsupported by ipmi_sim (permanent)', async () => {
    const d = driver({ ipmiCipherSuites: [3] });
    await d.resetBmc('cold');
    expect(await d.powerState()).toBe('on');
    const err = await failure(d.resetBmc('warm'));
    expect(err).toMatchObject({ code: 'BMC_UNSUPPORTED', kind: 'permanent' });
    expect(err.message).toContain('Invalid command');
  });

  for (const c of [
    { name: 'wrong password', over: { password: 'not-it' }, reason: 'RAKP 2 HMAC is invalid' },
    { name: 'wrong user', over: { username: 'mallory' }, reason: 'unauthorized name' },
  ]) {
    it(`${c.name} → permanent BMC_AUTH, fast, no retry storm`, async () => {
      const calls: string[][] = [];
      const started = Date.now();
      const err = await failure(driver(c.over, calls).power('on'));
      expect(err).toMatchObject({ code: 'BMC_AUTH', kind: 'permanent' });
      expect(err.message).toContain(c.reason);
      expect(calls.length).toBe(2); // suite 17 refused, suite 3 refused the login
      expect(Date.now() - started).toBeLessThan(15_000);
    });
  }

  it('no accepted cipher suite → permanent BMC_AUTH naming the suites', async () => {
    const err = await failure(driver({ ipmiCipherSuites: [17] }).powerState());
    expect(err).toMatchObject({ code: 'BMC_AUTH', kind: 'permanent' });
    expect(err.message).toMatch(/refused every cipher suite tried: 17 \(.*invalid authentication algorithm\)/);
  });

  it('a BMC that stops answering mid-command → transient BMC_TIMEOUT', async () => {
    const d = driver({ ipmiCipherSuites: [3], timeoutSeconds: 3 });
    expect(await d.powerState()).toBe('on');
    sim.setHangSeconds(4);
    try {
      const err = await failure(d.power('off'));
      expect(err).toMatchObject({ code: 'BMC_TIMEOUT', kind: 'transient' });
      expect(err.message).toContain('Unable to set Chassis Power Control to Down/Off');
    } finally {
      sim.setHangSeconds(0);
    }
    // The command did land late: exactly what the request service must verify by reading back.
    await waitForPower(() => d.powerState().catch(() => 'unknown' as const), 'off', 15_000);
  });

  it('an ipmitool that never returns is killed at the call timeout → transient BMC_TIMEOUT', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ironflow-stub-'));
    try {
      const stub = join(dir, 'ipmitool');
      writeFileSync(stub, '#!/bin/sh\nexec sleep 30\n');
      chmodSync(stub, 0o755);
      const started = Date.now();
      const err = await failure(driver({ timeoutSeconds: 1 }, [], { ipmitool: stub }).powerState());
      expect(err).toMatchObject({ code: 'BMC_TIMEOUT', kind: 'transient' });
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ipmitool missing → permanent BMC_CONFIG', async () => {
    const err = await failure(driver({}, [], { ipmitool: '/nonexistent/ipmitool' }).powerState());
    expect(err).toMatchObject({ code: 'BMC_CONFIG', kind: 'permanent' });
  });

  it('a BMC stopped then restarted: transient failures meanwhile, success after, state kept', async () => {
    const d = driver({ timeoutSeconds: 3 });
    await d.power('on');
    await sim.stop();
    const calls: string[][] = [];
    const down = driver({ timeoutSeconds: 3 }, calls);
    for (const attempt of [() => d.powerState(), () => down.power('off')]) {
      const err = await failure(attempt());
      expect(err).toMatchObject({ code: 'BMC_UNREACHABLE', kind: 'transient' });
      expect(isTransient(JSON.parse(JSON.stringify(err)))).toBe(true);
    }
    expect(calls.length).toBe(1); // unreachable is not a cipher problem: no fallback to suite 3
    await sim.start();
    expect(await d.powerState()).toBe('on');
    await down.power('off');
    expect(await d.powerState()).toBe('off');
  });
});
