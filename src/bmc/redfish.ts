// The redfish driver: finds the ComputerSystem and Manager, then ComputerSystem/Manager.Reset and the Boot PATCH, over HTTP(S) with basic or session auth.
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Logger } from 'pino';
import { BmcError, type BmcConfig, type BmcDriver, type BootDevice, type BootOptions, type PowerAction, type PowerState } from './driver.js';

type Json = Record<string, unknown>;

export interface HttpResult {
  status: number;
  headers: IncomingHttpHeaders;
  body: unknown;
}

export interface RedfishDriverOptions {
  log?: Logger;
}

/** ResetType values of the DMTF ResetType enum, assumed when a BMC advertises none. */
export const STANDARD_RESET_TYPES = ['On', 'ForceOff', 'GracefulShutdown', 'GracefulRestart', 'ForceRestart', 'Nmi', 'ForceOn', 'PushPowerButton', 'PowerCycle'];

// Options in preference order; each option is a sequence of steps, each step a list of acceptable
// ResetTypes. "off" never degrades to a graceful shutdown: the caller asked for a hard off.
const POWER_PLANS: Record<PowerAction, string[][][]> = {
  on: [[['On', 'ForceOn']]],
  off: [[['ForceOff']]],
  soft: [[['GracefulShutdown']]],
  reset: [[['ForceRestart', 'GracefulRestart', 'PowerCycle']]],
  cycle: [[['PowerCycle', 'ForceRestart']], [['ForceOff'], ['On', 'ForceOn']]],
};

const MANAGER_PLANS: Record<'warm' | 'cold', string[][][]> = {
  warm: [[['GracefulRestart', 'ForceRestart']]],
  cold: [[['ForceRestart', 'PowerCycle', 'GracefulRestart']]],
};

export const BOOT_TARGETS: Record<BootDevice, string> = { pxe: 'Pxe', disk: 'Hdd', cdrom: 'Cd', bios: 'BiosSetup', usb: 'Usb' };

/** The ResetType sequence for an action given what the BMC allows, or undefined when nothing fits. */
export function planReset(action: PowerAction, allowed: readonly string[]): string[] | undefined {
  return choose(POWER_PLANS[action], allowed);
}

function choose(options: string[][][], allowed: readonly string[]): string[] | undefined {
  for (const steps of options) {
    const picked = steps.map((alts) => alts.find((a) => allowed.includes(a)));
    if (picked.every((p): p is string => p !== undefined)) return picked;
  }
  return undefined;
}

export function redfishBaseUrl(address: string, port?: number): URL {
  let a = address.trim();
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(a)) {
    if (a.split(':').length > 2 && !a.startsWith('[')) a = `[${a}]`;
    a = `https://${a}`;
  }
  const url = new URL(a);
  if (port !== undefined) url.port = String(port);
  url.pathname = '/';
  url.search = '';
  return url;
}

const TLS_VERIFY_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_UNTRUSTED', 'CERT_SIGNATURE_FAILURE',
]);
const MAX_BODY_BYTES = 8 << 20;

function odataId(v: unknown): string | undefined {
  const id = (v as Json | undefined)?.['@odata.id'];
  return typeof id === 'string' ? id : undefined;
}

function memberId(uri: string): string {
  return uri.replace(/\/+$/, '').split('/').pop() ?? uri;
}

function extendedMessage(body: unknown): string | undefined {
  const error = (body as Json | undefined)?.error as Json | undefined;
  if (!error) return undefined;
  const infos = error['@Message.ExtendedInfo'];
  const msgs = Array.isArray(infos) ? infos.map((i) => (i as Json).Message).filter((m): m is string => typeof m === 'string') : [];
  if (msgs.length) return msgs.join('; ');
  return typeof error.message === 'string' ? error.message : undefined;
}

/** Classifies a non-2xx answer. */
export function statusError(res: HttpResult, what: string): BmcError {
  const detail = extendedMessage(res.body);
  const msg = `${what}: HTTP ${res.status}${detail ? ` (${detail})` : ''}`;
  const s = res.status;
  if (s === 401 || s === 403) return BmcError.permanent('BMC_AUTH', msg);
  if (s === 404 || s === 405 || s === 501) return BmcError.permanent('BMC_UNSUPPORTED', msg);
  if (s === 408 || s === 504) return BmcError.transient('BMC_TIMEOUT', msg);
  if (s === 429 || s >= 500) return BmcError.transient('BMC_UNREACHABLE', msg);
  return BmcError.permanent('BMC_PROTOCOL', msg);
}

function networkError(err: NodeJS.ErrnoException, what: string, timeoutSeconds: number): BmcError {
  if (err.name === 'AbortError' || err.name === 'TimeoutError' || err.code === 'ABORT_ERR') {
    return BmcError.transient('BMC_TIMEOUT', `${what}: no answer within ${timeoutSeconds}s`, err);
  }
  if (err.code && TLS_VERIFY_CODES.has(err.code)) {
    return BmcError.permanent('BMC_CONFIG', `${what}: TLS certificate not trusted (${err.code}); set bmc/insecure to skip verification`, err);
  }
  return BmcError.transient('BMC_UNREACHABLE', `${what}: ${err.code ?? err.message}`, err);
}

export class RedfishDriver implements BmcDriver {
  readonly name = 'redfish' as const;
  private readonly base: URL;
  private readonly httpAgent = new HttpAgent({ keepAlive: false });
  private readonly httpsAgent: HttpsAgent;
  private readonly auth: 'basic' | 'session';
  private root: Json | undefined;
  private systemUri: string | undefined;
  private managerUri: string | undefined;
  private token: string | undefined;
  private sessionUri: string | undefined;

  constructor(
    private readonly cfg: BmcConfig,
    private readonly opts: RedfishDriverOptions = {},
  ) {
    this.base = redfishBaseUrl(cfg.address, cfg.port);
    this.auth = cfg.redfishAuth ?? 'basic';
    // Node's fetch cannot skip TLS verification per request without importing undici, so one
    // node:http(s) transport serves both cases: one redirect policy, one error classification.
    this.httpsAgent = new HttpsAgent({ keepAlive: false, rejectUnauthorized: !cfg.insecure });
  }

  async powerState(): Promise<PowerState> {
    const { body } = await this.getSystem();
    switch (body.PowerState) {
      case 'On':
      case 'PoweringOff':
      case 'Paused':
        return 'on';
      case 'Off':
      case 'PoweringOn':
        return 'off';
      default:
        return 'unknown';
    }
  }

  async power(action: PowerAction): Promise<void> {
    const { body: sys, uri } = await this.getSystem();
    const state = sys.PowerState;
    if (action === 'on' && state === 'On') return;
    if ((action === 'off' || action === 'soft') && state === 'Off') return;
    // From off, a cycle's intent (a fresh boot) is a plain power-on; many BMCs refuse PowerCycle then.
    const effective: PowerAction = action === 'cycle' && state === 'Off' ? 'on' : action;
    const { target, allowed } = await this.resetAction(sys, '#ComputerSystem.Reset', uri);
    const plan = planReset(effective, allowed);
    if (!plan) {
      throw BmcError.permanent('BMC_UNSUPPORTED', `power ${action}: the BMC advertises ResetType ${allowed.join(', ') || '(none)'}, none fits`);
    }
    for (const [i, resetType] of plan.entries()) {
      if (i > 0) await this.waitForPowerState('Off');
      this.ensureOk(await this.call('POST', target, { ResetType: resetType }), `POST ${target} ResetType=${resetType}`);
      this.opts.log?.info({ action, resetType }, 'redfish reset');
    }
  }

  async setBootDevice(device: BootDevice, opts: BootOptions): Promise<void> {
    const target = BOOT_TARGETS[device];
    for (let attempt = 0; ; attempt++) {
      const { body: sys, uri, etag } = await this.getSystem();
      const boot = (sys.Boot ?? {}) as Json;
      const targets = boot['BootSourceOverrideTarget@Redfish.AllowableValues'];
      if (Array.isArray(targets) && !targets.includes(target)) {
        throw BmcError.permanent('BMC_UNSUPPORTED', `boot ${device}: the BMC allows BootSourceOverrideTarget ${targets.join(', ')}, not ${target}`);
      }
      const mode = opts.efi ? 'UEFI' : 'Legacy';
      const modes = boot['BootSourceOverrideMode@Redfish.AllowableValues'];
      if (Array.isArray(modes) && !modes.includes(mode)) {
        throw BmcError.permanent('BMC_UNSUPPORTED', `boot ${device}: the BMC allows BootSourceOverrideMode ${modes.join(', ')}, not ${mode}`);
      }
      const patch: Json = { BootSourceOverrideTarget: target, BootSourceOverrideEnabled: opts.persistent ? 'Continuous' : 'Once' };
      // BMCs without the Mode property reject it as unknown; only insist on it when UEFI is wanted.
      if (opts.efi || 'BootSourceOverrideMode' in boot || Array.isArray(modes)) patch.BootSourceOverrideMode = mode;
      const res = await this.call('PATCH', uri, { Boot: patch }, etag ? { 'If-Match': etag } : {});
      // Someone else changed the system between our GET and PATCH: re-read once.
      if (res.status === 412 && attempt === 0) continue;
      if (res.status === 412) throw BmcError.transient('BMC_PROTOCOL', `PATCH ${uri}: ETag still stale after a re-read (HTTP 412)`);
      this.ensureOk(res, `PATCH ${uri}`);
      return;
    }
  }

  async resetBmc(type: 'warm' | 'cold'): Promise<void> {
    const uri = await this.findManager();
    const mgr = await this.getJson(uri);
    const { target, allowed } = await this.resetAction(mgr, '#Manager.Reset', uri);
    const plan = choose(MANAGER_PLANS[type], allowed);
    if (!plan?.[0]) {
      throw BmcError.permanent('BMC_UNSUPPORTED', `bmc reset ${type}: the Manager advertises ResetType ${allowed.join(', ') || '(none)'}, none fits`);
    }
    this.ensureOk(await this.call('POST', target, { ResetType: plan[0] }), `POST ${target} ResetType=${plan[0]}`);
  }

  async close(): Promise<void> {
    const { token, sessionUri } = this;
    this.token = undefined;
    this.sessionUri = undefined;
    if (token && sessionUri) {
      try {
        await this.send('DELETE', new URL(sessionUri, this.base), undefined, { 'X-Auth-Token': token });
      } catch (err) {
        this.opts.log?.debug({ err: (err as Error).message }, 'redfish session logout failed');
      }
    }
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  // ---- discovery ----

  private async serviceRoot(): Promise<Json> {
    if (this.root) return this.root;
    // Anyone may read the service root (DMTF DSP0266), and session auth needs it to find where to log in.
    const headers = this.auth === 'basic' ? await this.authHeaders() : this.token ? { 'X-Auth-Token': this.token } : {};
    const res = await this.send('GET', new URL('/redfish/v1/', this.base), undefined, headers);
    this.ensureOk(res, 'GET /redfish/v1/');
    if (typeof res.body !== 'object' || res.body === null) throw BmcError.permanent('BMC_PROTOCOL', 'GET /redfish/v1/: not a JSON object');
    this.root = res.body as Json;
    return this.root;
  }

  private async findSystem(): Promise<string> {
    if (this.systemUri) return this.systemUri;
    const coll = odataId((await this.serviceRoot()).Systems);
    if (!coll) throw BmcError.permanent('BMC_UNSUPPORTED', 'the Redfish service root has no Systems collection');
    this.systemUri = await this.pickMember(coll, 'ComputerSystem', this.cfg.redfishSystemId, 'redfishSystemId');
    return this.systemUri;
  }

  private async findManager(): Promise<string> {
    if (this.managerUri) return this.managerUri;
    const { body: sys } = await this.getSystem();
    const managedBy = ((sys.Links as Json | undefined)?.ManagedBy as unknown[] | undefined)?.map(odataId).find(Boolean);
    if (managedBy) {
      this.managerUri = managedBy;
    } else {
      const coll = odataId((await this.serviceRoot()).Managers);
      if (!coll) throw BmcError.permanent('BMC_UNSUPPORTED', 'the Redfish service has no Managers collection');
      this.managerUri = await this.pickMember(coll, 'Manager', undefined, 'the system Links.ManagedBy');
    }
    return this.managerUri;
  }

  private async pickMember(collection: string, kind: string, wanted: string | undefined, param: string): Promise<string> {
    const members = ((await this.getJson(collection)).Members as unknown[] | undefined)?.map(odataId).filter((m): m is string => !!m) ?? [];
    const ids = members.map(memberId);
    if (wanted !== undefined) {
      const hit = members.find((m) => m === wanted || memberId(m) === wanted);
      if (!hit) throw BmcError.permanent('BMC_CONFIG', `no ${kind} "${wanted}" at ${collection} (members: ${ids.join(', ') || 'none'})`);
      return hit;
    }
    if (members.length === 1 && members[0]) return members[0];
    if (members.length === 0) throw BmcError.permanent('BMC_UNSUPPORTED', `${collection} lists no ${kind}`);
    throw BmcError.permanent('BMC_CONFIG', `${collection} lists several ${kind}s (${ids.join(', ')}): set ${param} to one of them`);
  }

  private async getSystem(): Promise<{ body: Json; uri: string; etag: string | undefined }> {
    const uri = await this.findSystem();
    const res = await this.call('GET', uri);
    this.ensureOk(res, `GET ${uri}`);
    const body = (res.body ?? {}) as Json;
    const header = res.headers.etag;
    const etag = typeof header === 'string' ? header : typeof body['@odata.etag'] === 'string' ? body['@odata.etag'] : undefined;
    return { body, uri, etag };
  }

  private async resetAction(resource: Json, name: string, uri: string): Promise<{ target: string; allowed: string[] }> {
    const action = (resource.Actions as Json | undefined)?.[name] as Json | undefined;
    const target = action?.target;
    if (typeof target !== 'string') throw BmcError.permanent('BMC_UNSUPPORTED', `${uri} has no ${name} action`);
    const listed = action?.['ResetType@Redfish.AllowableValues'];
    if (Array.isArray(listed)) return { target, allowed: listed.filter((v): v is string => typeof v === 'string') };
    const info = action?.['@Redfish.ActionInfo'];
    if (typeof info === 'string') {
      try {
        const params = (await this.getJson(info)).Parameters as Json[] | undefined;
        const values = params?.find((p) => p.Name === 'ResetType')?.AllowableValues;
        if (Array.isArray(values)) return { target, allowed: values.filter((v): v is string => typeof v === 'string') };
      } catch (err) {
        if (!(err instanceof BmcError) || err.kind === 'transient') throw err;
      }
    }
    return { target, allowed: STANDARD_RESET_TYPES };
  }

  private async waitForPowerState(want: 'Off'): Promise<void> {
    const deadline = Date.now() + this.cfg.timeoutSeconds * 1000;
    for (;;) {
      if ((await this.getSystem()).body.PowerState === want) return;
      if (Date.now() > deadline) throw BmcError.transient('BMC_TIMEOUT', `PowerState did not become ${want} within ${this.cfg.timeoutSeconds}s`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  // ---- HTTP ----

  private async getJson(uri: string): Promise<Json> {
    const res = await this.call('GET', uri);
    this.ensureOk(res, `GET ${uri}`);
    if (typeof res.body !== 'object' || res.body === null) throw BmcError.permanent('BMC_PROTOCOL', `GET ${uri}: not a JSON object`);
    return res.body as Json;
  }

  private ensureOk(res: HttpResult, what: string): void {
    if (res.status < 200 || res.status >= 300) throw statusError(res, what);
  }

  /** An authenticated request; with session auth a 401 means the session expired: log in again once. */
  private async call(method: string, uri: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpResult> {
    const url = new URL(uri, this.base);
    let res = await this.send(method, url, body, { ...headers, ...(await this.authHeaders()) });
    if (res.status === 401 && this.auth === 'session') {
      this.token = undefined;
      res = await this.send(method, url, body, { ...headers, ...(await this.authHeaders()) });
    }
    return res;
  }

  private async authHeaders(): Promise<Record<string, string>> {
    const { username, password } = this.cfg;
    if (username === undefined) return {};
    if (this.auth === 'basic') {
      return { Authorization: `Basic ${Buffer.from(`${username}:${password ?? ''}`).toString('base64')}` };
    }
    if (!this.token) await this.login(username, password ?? '');
    return this.token ? { 'X-Auth-Token': this.token } : {};
  }

  private async login(username: string, password: string): Promise<void> {
    let root: Json | undefined;
    try {
      root = await this.serviceRoot();
    } catch (err) {
      if (!(err instanceof BmcError) || err.code !== 'BMC_AUTH') throw err;
    }
    const sessions =
      odataId((root?.Links as Json | undefined)?.Sessions) ??
      (odataId(root?.SessionService) ? `${odataId(root?.SessionService)?.replace(/\/+$/, '')}/Sessions` : '/redfish/v1/SessionService/Sessions');
    const url = new URL(sessions, this.base);
    const res = await this.send('POST', url, { UserName: username, Password: password }, {});
    this.ensureOk(res, `POST ${sessions} (login)`);
    const token = res.headers['x-auth-token'];
    if (typeof token !== 'string' || token === '') throw BmcError.permanent('BMC_PROTOCOL', `POST ${sessions}: no X-Auth-Token in the answer`);
    this.token = token;
    const location = typeof res.headers.location === 'string' ? res.headers.location : odataId(res.body);
    this.sessionUri = location ? new URL(location, url).toString() : undefined;
  }

  /** One request, following redirects like fetch does, under one deadline. */
  private async send(method: string, url: URL, body: unknown, headers: Record<string, string>): Promise<HttpResult> {
    const what = `${method} ${url.pathname}`;
    const signal = AbortSignal.timeout(this.cfg.timeoutSeconds * 1000);
    let current = url;
    let m = method;
    let payload = body;
    let hdrs = headers;
    for (let hop = 0; hop <= 5; hop++) {
      const started = Date.now();
      let res: HttpResult;
      try {
        res = await this.once(m, current, payload, hdrs, signal);
      } catch (err) {
        throw networkError(err as NodeJS.ErrnoException, what, this.cfg.timeoutSeconds);
      }
      this.opts.log?.debug({ method: m, path: current.pathname, status: res.status, ms: Date.now() - started }, 'redfish');
      const location = res.headers.location;
      if (![301, 302, 303, 307, 308].includes(res.status) || typeof location !== 'string') return res;
      const next = new URL(location, current);
      if ((res.status === 303 && m !== 'GET' && m !== 'HEAD') || ((res.status === 301 || res.status === 302) && m === 'POST')) {
        m = 'GET';
        payload = undefined;
      }
      // Credentials stay with the host they were meant for (an http→https hop on the same host keeps them).
      if (next.hostname !== current.hostname) {
        hdrs = Object.fromEntries(Object.entries(hdrs).filter(([k]) => !/^(authorization|x-auth-token)$/i.test(k)));
      }
      current = next;
    }
    throw BmcError.permanent('BMC_PROTOCOL', `${what}: more than 5 redirects`);
  }

  private once(method: string, url: URL, body: unknown, headers: Record<string, string>, signal: AbortSignal): Promise<HttpResult> {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const isHttps = url.protocol === 'https:';
    const request = isHttps ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          agent: isHttps ? this.httpsAgent : this.httpAgent,
          signal,
          headers: {
            Accept: 'application/json',
            'OData-Version': '4.0',
            ...(data ? { 'Content-Type': 'application/json', 'Content-Length': String(data.length) } : {}),
            ...headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_BODY_BYTES) req.destroy(new Error(`response larger than ${MAX_BODY_BYTES} bytes`));
            else chunks.push(c);
          });
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = undefined;
            if (text.trim()) {
              try {
                parsed = JSON.parse(text);
              } catch {
                parsed = text;
              }
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed });
          });
        },
      );
      req.on('error', reject);
      req.end(data);
    });
  }
}
