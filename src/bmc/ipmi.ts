// The ipmi driver: one ipmitool (lanplus) run per call, password only via IPMI_PASSWORD, cipher-suite fallback.
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';
import {
  BmcError,
  type BmcConfig,
  type BmcDriver,
  type BootDevice,
  type BootOptions,
  type PowerAction,
  type PowerState,
} from './driver.js';
import { parseIpmitool, type IpmiCommand, type IpmiOutcome, type IpmitoolBootDevice } from './ipmi-output.js';

export const DEFAULT_CIPHER_SUITES: readonly number[] = [17, 3];

export interface IpmiTarget {
  address: string;
  port?: number;
  username?: string;
}

export interface IpmiDriverOptions {
  log?: Logger;
  /** Path of the ipmitool binary (tests substitute a stub). */
  ipmitool?: string;
  /** Observes every argv passed to ipmitool (tests count calls and check no secret is in it). */
  onExec?: (argv: readonly string[]) => void;
}

const BOOTDEV: Record<BootDevice, IpmitoolBootDevice | undefined> = {
  pxe: 'pxe',
  disk: 'disk',
  cdrom: 'cdrom',
  bios: 'bios',
  usb: undefined,
};

export function ipmitoolCommand(cmd: IpmiCommand): string[] {
  switch (cmd.op) {
    case 'status':
      return ['chassis', 'power', 'status'];
    case 'power':
      return ['chassis', 'power', cmd.action];
    case 'bootdev': {
      const options = [cmd.persistent ? 'persistent' : '', cmd.efi ? 'efiboot' : ''].filter(Boolean);
      return ['chassis', 'bootdev', cmd.device, ...(options.length ? [`options=${options.join(',')}`] : [])];
    }
    case 'mcReset':
      return ['mc', 'reset', cmd.type];
  }
}

/**
 * The full argv for one ipmitool run. No password: it travels in IPMI_PASSWORD (`-E`). `-v` is
 * needed because only verbose output tells a refused login ("RAKP 2 HMAC is invalid") from a BMC
 * that never answered; both otherwise print the same "Unable to establish" line.
 */
export function ipmitoolArgs(target: IpmiTarget, suite: number, timeoutSeconds: number, command: readonly string[]): string[] {
  // ipmitool waits -N seconds per try and retries -R times (observed: -N 1 -R 1 gives up after ~2 s):
  // keep its own give-up well inside our kill timeout so an unreachable BMC reads as unreachable.
  const perTry = Math.min(10, Math.max(1, Math.floor(timeoutSeconds / 3)));
  return [
    '-I', 'lanplus',
    '-H', target.address,
    '-p', String(target.port ?? 623),
    ...(target.username ? ['-U', target.username] : []),
    '-E',
    '-C', String(suite),
    '-N', String(perTry),
    '-R', '1',
    '-v',
    ...command,
  ];
}

function describe(cmd: IpmiCommand): string {
  return ipmitoolCommand(cmd).join(' ');
}

interface RunResult {
  exitCode: number | null;
  output: string;
  timedOut: boolean;
}

export class IpmiDriver implements BmcDriver {
  readonly name = 'ipmi' as const;
  private readonly suites: number[];
  private workingSuite: number | undefined;

  constructor(
    private readonly cfg: BmcConfig,
    private readonly opts: IpmiDriverOptions = {},
  ) {
    this.suites = cfg.ipmiCipherSuites?.length ? [...cfg.ipmiCipherSuites] : [...DEFAULT_CIPHER_SUITES];
  }

  /** The cipher suite that last worked, if any (tried first on the next call). */
  get cipherSuite(): number | undefined {
    return this.workingSuite;
  }

  async powerState(): Promise<PowerState> {
    const out = await this.run({ op: 'status' });
    return out.power ?? 'unknown';
  }

  async power(action: PowerAction): Promise<void> {
    try {
      await this.run({ op: 'power', action });
    } catch (err) {
      // Many BMCs refuse "cycle" while the chassis is off; the intent (a fresh boot) is then just "on".
      if (action === 'cycle' && err instanceof BmcError && /not supported in present state/i.test(err.message)) {
        await this.run({ op: 'power', action: 'on' });
        return;
      }
      throw err;
    }
  }

  async setBootDevice(device: BootDevice, opts: BootOptions): Promise<void> {
    const dev = BOOTDEV[device];
    if (dev === undefined) {
      throw BmcError.permanent('BMC_UNSUPPORTED', `ipmitool chassis bootdev has no "${device}" device (supported: pxe, disk, cdrom, bios)`);
    }
    await this.run({ op: 'bootdev', device: dev, persistent: opts.persistent, efi: opts.efi });
  }

  async resetBmc(type: 'warm' | 'cold'): Promise<void> {
    await this.run({ op: 'mcReset', type });
  }

  async close(): Promise<void> {}

  private async run(cmd: IpmiCommand): Promise<Extract<IpmiOutcome, { ok: true }>> {
    const known = this.workingSuite;
    const order = known === undefined ? this.suites : [known, ...this.suites.filter((s) => s !== known)];
    const refused: string[] = [];
    for (const suite of order) {
      const outcome = await this.exec(cmd, suite);
      if (outcome.ok) {
        this.workingSuite = suite;
        return outcome;
      }
      const f = outcome.failure;
      if (f.cipherMismatch) {
        refused.push(`${suite} (${f.reason})`);
        continue;
      }
      // The BMC executed and rejected the command, so the session (and this suite) worked.
      if (f.code === 'BMC_UNSUPPORTED' || f.code === 'BMC_PROTOCOL') this.workingSuite = suite;
      throw new BmcError(f.code, f.kind, `ipmitool ${describe(cmd)}: ${f.reason}`);
    }
    throw BmcError.permanent('BMC_AUTH', `ipmitool ${describe(cmd)}: the BMC refused every cipher suite tried: ${refused.join(', ')}`);
  }

  private async exec(cmd: IpmiCommand, suite: number): Promise<IpmiOutcome> {
    const argv = ipmitoolArgs(
      { address: this.cfg.address, port: this.cfg.port, username: this.cfg.username },
      suite,
      this.cfg.timeoutSeconds,
      ipmitoolCommand(cmd),
    );
    this.opts.onExec?.(argv);
    const started = Date.now();
    const res = await this.spawn(argv);
    const outcome: IpmiOutcome = res.timedOut
      ? { ok: false, failure: { code: 'BMC_TIMEOUT', kind: 'transient', reason: `no result within ${this.cfg.timeoutSeconds}s (killed)`, cipherMismatch: false } }
      : parseIpmitool(cmd, res.output, res.exitCode);
    this.opts.log?.debug(
      { cmd: describe(cmd), suite, ms: Date.now() - started, exitCode: res.exitCode, ok: outcome.ok, failure: outcome.ok ? undefined : outcome.failure },
      'ipmitool',
    );
    return outcome;
  }

  private spawn(argv: string[]): Promise<RunResult> {
    const bin = this.opts.ipmitool ?? 'ipmitool';
    // LC_ALL=C keeps the messages we parse in English; an empty IPMI_PASSWORD still keeps -E from prompting.
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', IPMI_PASSWORD: this.cfg.password ?? '' };
    return new Promise((resolve, reject) => {
      // detached: no controlling terminal, so ipmitool can never prompt for a password on one.
      const child = spawn(bin, argv, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      let output = '';
      const collect = (d: Buffer) => {
        if (output.length < 1 << 20) output += d.toString('utf8');
      };
      child.stdout.on('data', collect);
      child.stderr.on('data', collect);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, this.cfg.timeoutSeconds * 1000);
      child.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(
          err.code === 'ENOENT'
            ? BmcError.permanent('BMC_CONFIG', `${bin} not found: install ipmitool`, err)
            : BmcError.transient('BMC_UNREACHABLE', `cannot run ${bin}: ${err.message}`, err),
        );
      });
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ exitCode: code, output, timedOut });
      });
    });
  }
}
