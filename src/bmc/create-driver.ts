// Builds the BMC driver a machine's bmc/* params select, rejecting configs no driver could use.
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { BmcError, type BmcConfig, type BmcDriver } from './driver.js';
import { IpmiDriver } from './ipmi.js';
import { RedfishDriver } from './redfish.js';
import { SimDriver } from './sim.js';

export interface BmcDriverDeps {
  redis: Redis;
  keyPrefix: string;
  machineUuid: string;
  log: Logger;
}

function invalid(param: string, why: string): BmcError {
  return BmcError.permanent('BMC_CONFIG', `invalid BMC config: ${param} ${why}`);
}

export function createBmcDriver(cfg: BmcConfig, deps: BmcDriverDeps): BmcDriver {
  const driver = (cfg as { driver?: unknown }).driver;
  if (driver !== 'ipmi' && driver !== 'redfish' && driver !== 'sim') {
    throw invalid('bmc/driver', `must be one of ipmi, redfish, sim (got ${JSON.stringify(driver)})`);
  }
  if (!Number.isFinite(cfg.timeoutSeconds) || cfg.timeoutSeconds <= 0) {
    throw invalid('bmc/timeout-seconds', `must be a positive number (got ${JSON.stringify(cfg.timeoutSeconds)})`);
  }
  if (cfg.port !== undefined && !(Number.isInteger(cfg.port) && cfg.port > 0 && cfg.port < 65536)) {
    throw invalid('bmc/port', `must be an integer 1-65535 (got ${JSON.stringify(cfg.port)})`);
  }
  // Never log cfg itself: it carries the password.
  const log = deps.log.child({ bmcDriver: driver, machine: deps.machineUuid });
  if (driver === 'sim') return new SimDriver(cfg, deps.redis, deps.keyPrefix, deps.machineUuid);
  if (typeof cfg.address !== 'string' || cfg.address.trim() === '') {
    throw invalid('bmc/address', `is required for the ${driver} driver`);
  }
  if (driver === 'ipmi') {
    if (cfg.ipmiCipherSuites?.some((s) => !Number.isInteger(s) || s < 0 || s > 255)) {
      throw invalid('ipmiCipherSuites', `must be integers 0-255 (got ${JSON.stringify(cfg.ipmiCipherSuites)})`);
    }
    return new IpmiDriver(cfg, { log });
  }
  return new RedfishDriver(cfg, { log });
}
