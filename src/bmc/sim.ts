// The sim driver: a simulated BMC whose state lives in a Redis hash, with latency, failure injection and a power-on delay.
import type { Redis } from 'ioredis';
import { BmcError, type BmcConfig, type BmcDriver, type BootDevice, type BootOptions, type PowerAction, type PowerState } from './driver.js';

export function simStateKey(keyPrefix: string, machineUuid: string): string {
  return `${keyPrefix}bmcsim:${machineUuid}`;
}

export interface SimState {
  power: 'on' | 'off';
  /** Epoch ms at which a pending power-on completes; powerState reads off until then. */
  powerOnAt?: number;
  bootDevice?: BootDevice;
  persistent: boolean;
  efi: boolean;
  bmcResets: number;
  lastAction?: string;
}

// Arms the failure counter only when the configured failNext changes, so a driver re-created per job
// with the same params does not re-arm it; then consumes one failure if any are left.
const CONSUME_FAILURE = `
if redis.call('HGET', KEYS[1], 'failNextCfg') ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'failNextCfg', ARGV[1], 'failRemaining', ARGV[1])
end
local left = tonumber(redis.call('HGET', KEYS[1], 'failRemaining') or '0')
if left > 0 then
  redis.call('HSET', KEYS[1], 'failRemaining', left - 1)
  return left
end
return 0
`;

export class SimDriver implements BmcDriver {
  readonly name = 'sim' as const;
  private readonly key: string;
  private readonly sim: NonNullable<BmcConfig['sim']>;

  constructor(
    cfg: Pick<BmcConfig, 'sim'>,
    private readonly redis: Redis,
    keyPrefix: string,
    machineUuid: string,
  ) {
    this.key = simStateKey(keyPrefix, machineUuid);
    this.sim = cfg.sim ?? {};
  }

  async powerState(): Promise<PowerState> {
    await this.enter();
    return effectivePower(await this.state(), Date.now());
  }

  async power(action: PowerAction): Promise<void> {
    await this.enter();
    const now = Date.now();
    const current = await this.state();
    const delay = Math.max(0, this.sim.powerOnDelayMs ?? 0);
    const fields: Record<string, string> = { lastAction: `power ${action}` };
    switch (action) {
      case 'on':
        // A power-on already under way keeps its original completion time.
        if (current.power === 'off') Object.assign(fields, { power: 'on', powerOnAt: String(now + delay) });
        break;
      case 'off':
      case 'soft':
        Object.assign(fields, { power: 'off', powerOnAt: '' });
        break;
      case 'reset':
        break;
      case 'cycle':
        Object.assign(fields, { power: 'on', powerOnAt: String(now + delay) });
        break;
    }
    await this.redis.hset(this.key, fields);
  }

  async setBootDevice(device: BootDevice, opts: BootOptions): Promise<void> {
    await this.enter();
    await this.redis.hset(this.key, {
      bootDevice: device,
      persistent: String(opts.persistent),
      efi: String(opts.efi),
      lastAction: `boot ${device}`,
    });
  }

  async resetBmc(type: 'warm' | 'cold'): Promise<void> {
    await this.enter();
    await this.redis.multi().hincrby(this.key, 'bmcResets', 1).hset(this.key, 'lastAction', `bmc reset ${type}`).exec();
  }

  async close(): Promise<void> {}

  async state(): Promise<SimState> {
    return parseState(await this.redis.hgetall(this.key));
  }

  private async enter(): Promise<void> {
    const latency = this.sim.latencyMs ?? 0;
    if (latency > 0) await new Promise((r) => setTimeout(r, latency));
    const left = Number(await this.redis.eval(CONSUME_FAILURE, 1, this.key, String(this.sim.failNext ?? 0)));
    if (left > 0) {
      const mode = this.sim.failMode ?? 'transient';
      const msg = `sim: injected ${mode} failure (${left - 1} more to come)`;
      throw mode === 'transient' ? BmcError.transient('BMC_UNREACHABLE', msg) : BmcError.permanent('BMC_PROTOCOL', msg);
    }
  }
}

function effectivePower(s: SimState, now: number): 'on' | 'off' {
  return s.power === 'on' && (s.powerOnAt ?? 0) <= now ? 'on' : 'off';
}

function parseState(h: Record<string, string>): SimState {
  const s: SimState = {
    power: h.power === 'on' ? 'on' : 'off',
    persistent: h.persistent === 'true',
    efi: h.efi === 'true',
    bmcResets: Number(h.bmcResets ?? 0),
  };
  if (h.powerOnAt) s.powerOnAt = Number(h.powerOnAt);
  if (h.bootDevice) s.bootDevice = h.bootDevice as BootDevice;
  if (h.lastAction) s.lastAction = h.lastAction;
  return s;
}
