// The redfish driver against a DMTF-shaped Redfish service over real sockets.
import { afterEach, describe, expect, it } from 'vitest';
import type { BmcConfig, PowerAction } from '../../src/bmc/driver.js';
import { planReset, RedfishDriver, statusError } from '../../src/bmc/redfish.js';
import { hasProgram } from '../helpers/peers.js';
import { startRedfishServer, type RedfishServer, type RedfishServerOptions } from '../helpers/redfish-server.js';

const servers: RedfishServer[] = [];
const drivers: RedfishDriver[] = [];
afterEach(async () => {
  await Promise.all(drivers.splice(0).map((d) => d.close()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function server(opts: RedfishServerOptions = {}): Promise<RedfishServer> {
  const s = await startRedfishServer(opts);
  servers.push(s);
  return s;
}

function driver(s: RedfishServer | string, over: Partial<BmcConfig> = {}): RedfishDriver {
  const d = new RedfishDriver({
    driver: 'redfish',
    address: typeof s === 'string' ? s : s.url,
    username: 'admin',
    password: 'password',
    insecure: false,
    timeoutSeconds: 5,
    ...over,
  });
  drivers.push(d);
  return d;
}

async function failure(p: Promise<unknown>): Promise<{ code: string; kind: string; message: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: string; kind: string; message: string };
  }
  throw new Error('expected a failure');
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('planReset', () => {
  const std = ['On', 'ForceOff', 'GracefulShutdown', 'GracefulRestart', 'ForceRestart', 'Nmi', 'ForceOn', 'PushPowerButton', 'PowerCycle'];
  const cases: Array<[PowerAction, string[], string[] | undefined]> = [
    ['on', std, ['On']],
    ['on', ['ForceOn', 'ForceOff'], ['ForceOn']],
    ['off', std, ['ForceOff']],
    ['off', ['On', 'GracefulShutdown'], undefined],
    ['soft', std, ['GracefulShutdown']],
    ['reset', std, ['ForceRestart']],
    ['reset', ['On', 'GracefulRestart'], ['GracefulRestart']],
    ['reset', ['On', 'PowerCycle'], ['PowerCycle']],
    ['cycle', std, ['PowerCycle']],
    ['cycle', ['On', 'ForceOff', 'ForceRestart'], ['ForceRestart']],
    ['cycle', ['On', 'ForceOff'], ['ForceOff', 'On']],
    ['cycle', ['ForceOn', 'ForceOff'], ['ForceOff', 'ForceOn']],
    ['cycle', ['On'], undefined],
  ];
  for (const [action, allowed, want] of cases) {
    it(`${action} with [${allowed.join(',')}] → ${want?.join(' then ') ?? 'unsupported'}`, () => {
      expect(planReset(action, allowed)).toEqual(want);
    });
  }
});

describe('statusError', () => {
  const body = { error: { code: 'Base.1.8.GeneralError', message: 'x', '@Message.ExtendedInfo': [{ Message: 'The value Foo is not allowed.' }] } };
  const cases: Array<[number, string, string]> = [
    [401, 'BMC_AUTH', 'permanent'],
    [403, 'BMC_AUTH', 'permanent'],
    [400, 'BMC_PROTOCOL', 'permanent'],
    [404, 'BMC_UNSUPPORTED', 'permanent'],
    [405, 'BMC_UNSUPPORTED', 'permanent'],
    [501, 'BMC_UNSUPPORTED', 'permanent'],
    [500, 'BMC_UNREACHABLE', 'transient'],
    [503, 'BMC_UNREACHABLE', 'transient'],
    [504, 'BMC_TIMEOUT', 'transient'],
    [429, 'BMC_UNREACHABLE', 'transient'],
  ];
  for (const [status, code, kind] of cases) {
    it(`${status} → ${kind} ${code}, with the ExtendedInfo message`, () => {
      const err = statusError({ status, headers: {}, body }, 'GET /x');
      expect(err).toMatchObject({ code, kind });
      expect(err.message).toBe(`GET /x: HTTP ${status} (The value Foo is not allowed.)`);
    });
  }
});

describe('redfish power', () => {
  const cases: Array<{ action: PowerAction; from: 'On' | 'Off'; sent: string[]; to: 'On' | 'Off' }> = [
    { action: 'on', from: 'Off', sent: ['On'], to: 'On' },
    { action: 'on', from: 'On', sent: [], to: 'On' },
    { action: 'off', from: 'On', sent: ['ForceOff'], to: 'Off' },
    { action: 'soft', from: 'On', sent: ['GracefulShutdown'], to: 'Off' },
    { action: 'reset', from: 'On', sent: ['ForceRestart'], to: 'On' },
    { action: 'cycle', from: 'On', sent: ['PowerCycle'], to: 'On' },
    { action: 'cycle', from: 'Off', sent: ['On'], to: 'On' },
  ];
  for (const c of cases) {
    it(`${c.action} from ${c.from} sends ${c.sent.join(', ') || 'nothing'}`, async () => {
      const s = await server({ initialPower: c.from });
      const d = driver(s);
      await d.power(c.action);
      expect(s.resets.map((r) => r.resetType)).toEqual(c.sent);
      expect(await d.powerState()).toBe(c.to === 'On' ? 'on' : 'off');
    });
  }

  it('BMC advertising only On, ForceOff, ForceRestart: cycle → ForceRestart, soft unsupported', async () => {
    const s = await server({ initialPower: 'On', resetTypes: ['On', 'ForceOff', 'ForceRestart'] });
    const d = driver(s);
    await d.power('cycle');
    expect(s.resets.map((r) => r.resetType)).toEqual(['ForceRestart']);
    const err = await failure(d.power('soft'));
    expect(err).toMatchObject({ code: 'BMC_UNSUPPORTED', kind: 'permanent' });
    expect(err.message).toContain('On, ForceOff, ForceRestart');
  });

  it('BMC advertising only On, ForceOff: cycle → ForceOff, waits for Off, then On', async () => {
    const s = await server({ initialPower: 'On', resetTypes: ['On', 'ForceOff'], powerDelayMs: 600 });
    const d = driver(s);
    await d.power('cycle');
    expect(s.resets.map((r) => r.resetType)).toEqual(['ForceOff', 'On']);
    // The server ignores On while still powering off, so reaching On proves the driver waited.
    await eventually(async () => (await d.powerState()) === 'on');
    expect((await failure(d.power('reset'))).code).toBe('BMC_UNSUPPORTED');
  });

  it('no AllowableValues: the standard ResetType list is assumed', async () => {
    const s = await server({ initialPower: 'On', resetTypes: null });
    await driver(s).power('cycle');
    expect(s.resets.map((r) => r.resetType)).toEqual(['PowerCycle']);
  });

  it('ResetTypes advertised through @Redfish.ActionInfo', async () => {
    const s = await server({ initialPower: 'On', actionInfo: true, resetTypes: ['On', 'ForceOff', 'GracefulRestart'] });
    await driver(s).power('reset');
    expect(s.resets.map((r) => r.resetType)).toEqual(['GracefulRestart']);
  });

  it('power() does not wait: a slow power-on reads off until the BMC gets there', async () => {
    const s = await server({ powerDelayMs: 500 });
    const d = driver(s);
    await d.power('on');
    expect(await d.powerState()).toBe('off'); // PoweringOn
    await eventually(async () => (await d.powerState()) === 'on');
  });
});

describe('redfish boot override', () => {
  const devices = [
    { device: 'pxe', target: 'Pxe' },
    { device: 'disk', target: 'Hdd' },
    { device: 'cdrom', target: 'Cd' },
    { device: 'bios', target: 'BiosSetup' },
    { device: 'usb', target: 'Usb' },
  ] as const;
  for (const { device, target } of devices) {
    it(`${device} → ${target}`, async () => {
      const s = await server();
      await driver(s).setBootDevice(device, { persistent: true, efi: false });
      expect(s.system().boot).toEqual({ target, enabled: 'Continuous', mode: 'Legacy' });
    });
  }

  for (const etag of ['header', 'odata'] as const) {
    it(`sends If-Match from the ${etag} ETag`, async () => {
      const s = await server({ etag });
      const version = s.system().version;
      await driver(s).setBootDevice('pxe', { persistent: false, efi: true });
      const patch = s.requests.find((r) => r.method === 'PATCH');
      expect(patch?.headers['if-match']).toBe(`W/"${version}"`);
      expect(patch?.body).toEqual({ Boot: { BootSourceOverrideTarget: 'Pxe', BootSourceOverrideEnabled: 'Once', BootSourceOverrideMode: 'UEFI' } });
      expect(s.system().boot).toEqual({ target: 'Pxe', enabled: 'Once', mode: 'UEFI' });
    });
  }

  it('no ETag given: PATCH without If-Match', async () => {
    const s = await server({ etag: 'none' });
    await driver(s).setBootDevice('disk', { persistent: false, efi: true });
    const patch = s.requests.find((r) => r.method === 'PATCH');
    expect(patch?.headers['if-match']).toBeUndefined();
    expect(s.system().boot.target).toBe('Hdd');
  });

  it('stale ETag: 412, re-read, retried once with the new ETag', async () => {
    const s = await server();
    s.staleNextPatch();
    await driver(s).setBootDevice('pxe', { persistent: true, efi: true });
    const patches = s.requests.filter((r) => r.method === 'PATCH');
    expect(patches.map((p) => p.status)).toEqual([412, 204]);
    expect(patches[1]?.headers['if-match']).not.toBe(patches[0]?.headers['if-match']);
    expect(s.system().boot).toEqual({ target: 'Pxe', enabled: 'Continuous', mode: 'UEFI' });
  });

  it('a target the system does not list → permanent BMC_UNSUPPORTED, nothing patched', async () => {
    const s = await server({ bootTargets: ['None', 'Pxe', 'Hdd'] });
    const err = await failure(driver(s).setBootDevice('usb', { persistent: false, efi: false }));
    expect(err).toMatchObject({ code: 'BMC_UNSUPPORTED', kind: 'permanent' });
    expect(err.message).toContain('None, Pxe, Hdd');
    expect(s.requests.some((r) => r.method === 'PATCH')).toBe(false);
  });

  it('a system without BootSourceOverrideMode: omitted for legacy; UEFI refused with the BMC’s message', async () => {
    const s = await server({ bootMode: false });
    const d = driver(s);
    await d.setBootDevice('pxe', { persistent: false, efi: false });
    expect(s.requests.find((r) => r.method === 'PATCH')?.body).toEqual({ Boot: { BootSourceOverrideTarget: 'Pxe', BootSourceOverrideEnabled: 'Once' } });
    const err = await failure(d.setBootDevice('pxe', { persistent: false, efi: true }));
    expect(err).toMatchObject({ code: 'BMC_PROTOCOL', kind: 'permanent' });
    expect(err.message).toContain('The property BootSourceOverrideMode is not supported.');
  });
});

describe('redfish auth', () => {
  it('basic auth on every request', async () => {
    const s = await server();
    await driver(s).powerState();
    const authed = s.requests.filter((r) => r.path !== '/redfish/v1/');
    expect(authed.length).toBeGreaterThan(0);
    for (const r of authed) expect(r.headers.authorization).toBe(`Basic ${Buffer.from('admin:password').toString('base64')}`);
  });

  it('session auth: one login, X-Auth-Token, re-login once on 401, logout on close', async () => {
    const s = await server({ initialPower: 'On' });
    const d = driver(s, { redfishAuth: 'session' });
    expect(await d.powerState()).toBe('on');
    const logins = () => s.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/Sessions')).length;
    expect(logins()).toBe(1);
    expect(s.requests.every((r) => r.headers.authorization === undefined)).toBe(true);
    expect(s.requests.at(-1)?.headers['x-auth-token']).toEqual(expect.any(String));
    await d.power('off');
    expect(logins()).toBe(1);

    s.expireSessions();
    await d.power('on');
    expect(logins()).toBe(2);
    expect(s.liveSessions()).toBe(1);

    await d.close();
    expect(s.requests.at(-1)).toMatchObject({ method: 'DELETE', status: 204 });
    expect(s.liveSessions()).toBe(0);
  });

  for (const mode of ['basic', 'session'] as const) {
    it(`${mode}: wrong password → permanent BMC_AUTH, no retries`, async () => {
      const s = await server();
      const err = await failure(driver(s, { password: 'nope', redfishAuth: mode }).power('on'));
      expect(err).toMatchObject({ code: 'BMC_AUTH', kind: 'permanent' });
      expect(s.requests.filter((r) => r.status === 401).length).toBe(1);
    });
  }
});

describe('redfish discovery and transport', () => {
  it('several systems without an id → permanent BMC_CONFIG listing them', async () => {
    const s = await server({ systems: ['node-a', 'node-b'] });
    const err = await failure(driver(s).powerState());
    expect(err).toMatchObject({ code: 'BMC_CONFIG', kind: 'permanent' });
    expect(err.message).toContain('node-a, node-b');
  });

  it('a system chosen by id', async () => {
    const s = await server({ systems: ['node-a', 'node-b'] });
    await driver(s, { redfishSystemId: 'node-b' }).power('on');
    expect(s.resets).toEqual([{ system: 'node-b', resetType: 'On' }]);
    expect(s.system('node-a').power).toBe('Off');
    expect((await failure(driver(s, { redfishSystemId: 'node-c' }).powerState())).code).toBe('BMC_CONFIG');
  });

  it('resetBmc: warm → GracefulRestart, cold → ForceRestart, via Links.ManagedBy or the Managers collection', async () => {
    const s = await server();
    await driver(s).resetBmc('warm');
    const s2 = await server({ managedBy: false });
    await driver(s2).resetBmc('cold');
    expect([s.managerResets, s2.managerResets]).toEqual([['GracefulRestart'], ['ForceRestart']]);
    const s3 = await server({ managerResetTypes: [] });
    expect(await failure(driver(s3).resetBmc('cold'))).toMatchObject({ code: 'BMC_UNSUPPORTED', kind: 'permanent' });
  });

  it('503s → transient; fine once the BMC recovers', async () => {
    const s = await server();
    const d = driver(s);
    s.failNext(2);
    for (let i = 0; i < 2; i++) {
      const err = await failure(d.powerState());
      expect(err).toMatchObject({ code: 'BMC_UNREACHABLE', kind: 'transient' });
      expect(err.message).toContain('The service is temporarily unavailable.');
    }
    expect(await d.powerState()).toBe('off');
  });

  it('follows redirects (301 on GET, 307 keeps the POST and its body)', async () => {
    const reset = '/redfish/v1/Systems/1/Actions/ComputerSystem.Reset';
    const s = await server({ redirects: { '/redfish/v1/': '/redfish/v1', [reset]: `${reset}/` } });
    await driver(s).power('on');
    expect(s.requests.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual(
      expect.arrayContaining(['GET /redfish/v1/ 301', 'GET /redfish/v1 200', `POST ${reset} 307`, `POST ${reset}/ 204`]),
    );
    expect(s.system().power).toBe('On');
  });

  it('no answer within timeoutSeconds → transient BMC_TIMEOUT', async () => {
    const s = await server();
    s.stallNext(1, 2500);
    expect(await failure(driver(s, { timeoutSeconds: 1 }).powerState())).toMatchObject({ code: 'BMC_TIMEOUT', kind: 'transient' });
  });

  it('connection refused → transient BMC_UNREACHABLE', async () => {
    const s = await startRedfishServer();
    await s.close();
    expect(await failure(driver(s.url).powerState())).toMatchObject({ code: 'BMC_UNREACHABLE', kind: 'transient' });
  });

  it.skipIf(!hasProgram('openssl'))('https with a self-signed certificate: refused unless insecure', async () => {
    const s = await server({ https: true });
    const err = await failure(driver(s).powerState());
    expect(err).toMatchObject({ code: 'BMC_CONFIG', kind: 'permanent' });
    expect(err.message).toContain('bmc/insecure');
    expect(await driver(s, { insecure: true }).powerState()).toBe('off');
  });
});
