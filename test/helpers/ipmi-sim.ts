// Runs OpenIPMI's ipmi_sim as a LAN BMC on a free UDP port; its chassis_control script keeps power/boot in files so they survive a BMC restart.
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface IpmiSimOptions {
  user: string;
  password: string;
  /** Reuse a directory (and its state) from an earlier sim. */
  dir?: string;
  port?: number;
}

export interface IpmiSim {
  port: number;
  dir: string;
  /** (Re)starts ipmi_sim on the same dir and port and waits until it answers. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** stop() and remove the directory when this helper created it. */
  close(): Promise<void>;
  /** boot is what ipmi_sim passed to chassis_control: none | pxe | default (disk) | cdrom | bios. */
  readState(): { power: 'on' | 'off'; boot: string };
  /** "<param> <value>" per chassis_control `set`, oldest first (e.g. "power 0", "reset 1", "boot pxe"). */
  events(): string[];
  /** While > 0, chassis_control sleeps that long on `set`, so ipmi_sim stops answering mid-command. */
  setHangSeconds(seconds: number): void;
  /** Runs ipmitool against the sim with the configured credentials; resolves with stdout+stderr. */
  ipmitool(...args: string[]): Promise<{ code: number | null; output: string }>;
}

export async function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    sock.once('error', reject);
    sock.bind(0, '127.0.0.1', () => {
      const { port } = sock.address();
      sock.close(() => resolve(port));
    });
  });
}

// Protocol (OpenIPMI lanserv extcmd): `PROG 0x20 get power boot` prints "power:1" / "boot:pxe";
// `PROG 0x20 set power 1 | reset 1 | shutdown 1 | boot pxe` changes state.
function chassisControl(dir: string): string {
  return `#!/bin/sh
W='${dir}'
dev=$1; op=$2; shift 2
case $op in
  get)
    for p in "$@"; do
      case $p in
        power) echo "power:$(cat "$W/power" 2>/dev/null || echo 0)" ;;
        boot)  echo "boot:$(cat "$W/boot" 2>/dev/null || echo none)" ;;
        *) echo "Invalid parameter: $p"; exit 1 ;;
      esac
    done ;;
  set)
    h=$(cat "$W/hang" 2>/dev/null || echo 0)
    [ "$h" -gt 0 ] && sleep "$h"
    while [ $# -ge 2 ]; do
      p=$1; v=$2; shift 2
      case $p in
        power)    echo "$v" > "$W/power.tmp" && mv "$W/power.tmp" "$W/power" ;;
        reset)    : ;;
        shutdown) echo 0 > "$W/power.tmp" && mv "$W/power.tmp" "$W/power" ;;
        boot)     echo "$v" > "$W/boot.tmp" && mv "$W/boot.tmp" "$W/boot" ;;
        identify) : ;;
        *) echo "Invalid parameter: $p"; exit 1 ;;
      esac
      echo "$p $v" >> "$W/events"
    done ;;
  check) exit 1 ;;
  *) echo "Unknown operation: $op"; exit 1 ;;
esac
exit 0
`;
}

function lanConf(dir: string, port: number, user: string, password: string): string {
  const q = (s: string) => `"${s.replace(/["\\]/g, '')}"`;
  return `name "ironflow-test"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 ${port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "${dir}/chassis_control 0x20"
  user 2 true ${q(user)} ${q(password)} admin 10 none md2 md5 straight
`;
}

const EMU = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
`;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => (clearTimeout(timer), reject(err)));
    child.once('close', (code) => (clearTimeout(timer), resolve({ code, output })));
  });
}

export async function startIpmiSim(opts: IpmiSimOptions): Promise<IpmiSim> {
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'ironflow-ipmi-'));
  const port = opts.port ?? (await freeUdpPort());
  mkdirSync(join(dir, 'state'), { recursive: true });
  writeFileSync(join(dir, 'chassis_control'), chassisControl(dir));
  chmodSync(join(dir, 'chassis_control'), 0o755);
  writeFileSync(join(dir, 'lan.conf'), lanConf(dir, port, opts.user, opts.password));
  writeFileSync(join(dir, 'bmc.emu'), EMU);
  if (!existsSync(join(dir, 'power'))) writeFileSync(join(dir, 'power'), '0\n');
  if (!existsSync(join(dir, 'boot'))) writeFileSync(join(dir, 'boot'), 'none\n');
  if (!existsSync(join(dir, 'events'))) writeFileSync(join(dir, 'events'), '');

  let child: ChildProcess | undefined;
  const env = { PATH: process.env.PATH, LC_ALL: 'C', IPMI_PASSWORD: opts.password };
  const ipmitool = (...args: string[]) =>
    run('ipmitool', ['-I', 'lanplus', '-C', '3', '-N', '1', '-R', '1', '-H', '127.0.0.1', '-p', String(port), '-U', opts.user, '-E', ...args], env, 15_000);

  const sim: IpmiSim = {
    port,
    dir,
    async start() {
      if (child && child.exitCode === null) return;
      let log = '';
      const c = spawn('ipmi_sim', ['-c', join(dir, 'lan.conf'), '-f', join(dir, 'bmc.emu'), '-s', join(dir, 'state'), '-n'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      c.stdout?.on('data', (d: Buffer) => (log += d.toString()));
      c.stderr?.on('data', (d: Buffer) => (log += d.toString()));
      child = c;
      const deadline = Date.now() + 15_000;
      for (;;) {
        if (c.exitCode !== null) throw new Error(`ipmi_sim exited (${c.exitCode}): ${log}`);
        const r = await ipmitool('chassis', 'power', 'status');
        if (/Chassis Power is/.test(r.output)) return;
        if (Date.now() > deadline) throw new Error(`ipmi_sim did not answer on udp ${port}: ${r.output} ${log}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    },
    async stop() {
      const c = child;
      child = undefined;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise((res) => c.once('exit', res));
      c.kill('SIGTERM');
      const timer = setTimeout(() => c.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    },
    async close() {
      await sim.stop();
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
    readState() {
      const power = readFileSync(join(dir, 'power'), 'utf8').trim() === '1' ? 'on' : 'off';
      return { power, boot: readFileSync(join(dir, 'boot'), 'utf8').trim() };
    },
    events() {
      return readFileSync(join(dir, 'events'), 'utf8').split('\n').filter(Boolean);
    },
    setHangSeconds(seconds) {
      writeFileSync(join(dir, 'hang'), `${Math.max(0, Math.floor(seconds))}\n`);
    },
    ipmitool,
  };
  try {
    await sim.start();
  } catch (err) {
    await sim.close();
    throw err;
  }
  return sim;
}
