// The BMC driver contract shared by the ipmi, redfish and sim drivers, and the error they all throw.

export const PowerActions = ['on', 'off', 'soft', 'reset', 'cycle'] as const;
export type PowerAction = (typeof PowerActions)[number];

export type PowerState = 'on' | 'off' | 'unknown';

export const BootDevices = ['pxe', 'disk', 'cdrom', 'bios', 'usb'] as const;
export type BootDevice = (typeof BootDevices)[number];

export interface BootOptions {
  persistent: boolean;
  efi: boolean;
}

export interface BmcDriver {
  readonly name: 'ipmi' | 'redfish' | 'sim';
  powerState(): Promise<PowerState>;
  /** Issues the action; does not poll for the result (the request service verifies via powerState). */
  power(action: PowerAction): Promise<void>;
  setBootDevice(device: BootDevice, opts: BootOptions): Promise<void>;
  resetBmc(type: 'warm' | 'cold'): Promise<void>;
  close(): Promise<void>;
}

export type BmcErrorKind = 'transient' | 'permanent';
export const BmcErrorCodes = [
  'BMC_AUTH',
  'BMC_UNREACHABLE',
  'BMC_TIMEOUT',
  'BMC_UNSUPPORTED',
  'BMC_PROTOCOL',
  'BMC_CONFIG',
] as const;
export type BmcErrorCode = (typeof BmcErrorCodes)[number];

export class BmcError extends Error {
  readonly kind: BmcErrorKind;
  readonly code: BmcErrorCode;

  constructor(code: BmcErrorCode, kind: BmcErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BmcError';
    this.code = code;
    this.kind = kind;
  }

  static transient(code: BmcErrorCode, message: string, cause?: unknown): BmcError {
    return new BmcError(code, 'transient', message, cause === undefined ? undefined : { cause });
  }

  static permanent(code: BmcErrorCode, message: string, cause?: unknown): BmcError {
    return new BmcError(code, 'permanent', message, cause === undefined ? undefined : { cause });
  }

  // Errors reach the request service through BullMQ as JSON, so kind and code must survive stringify.
  toJSON(): { name: string; code: BmcErrorCode; kind: BmcErrorKind; message: string } {
    return { name: this.name, code: this.code, kind: this.kind, message: this.message };
  }
}

/** True for a BmcError or any plain object carrying `kind: 'transient'` (instanceof fails across processes). */
export function isTransient(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { kind?: unknown }).kind === 'transient';
}

export function isBmcError(err: unknown): err is { code: BmcErrorCode; kind: BmcErrorKind; message: string } {
  if (typeof err !== 'object' || err === null) return false;
  const { code, kind } = err as { code?: unknown; kind?: unknown };
  return (
    typeof code === 'string' &&
    (BmcErrorCodes as readonly string[]).includes(code) &&
    (kind === 'transient' || kind === 'permanent')
  );
}

export interface BmcConfig {
  driver: 'ipmi' | 'redfish' | 'sim';
  address: string;
  port?: number;
  username?: string;
  password?: string;
  insecure: boolean;
  timeoutSeconds: number;
  /** Tried in order until one is accepted; default [17, 3]. */
  ipmiCipherSuites?: number[];
  redfishSystemId?: string;
  redfishAuth?: 'basic' | 'session';
  sim?: {
    latencyMs?: number;
    failNext?: number;
    failMode?: 'transient' | 'permanent';
    powerOnDelayMs?: number;
  };
}
