// A small Redfish service on node:http(s), shaped after the DMTF schemas (ServiceRoot, ComputerSystem, Manager, SessionService), with knobs for BMC quirks and failures.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const STANDARD_RESET_TYPES = ['On', 'ForceOff', 'GracefulShutdown', 'GracefulRestart', 'ForceRestart', 'Nmi', 'ForceOn', 'PushPowerButton', 'PowerCycle'];

export interface RedfishServerOptions {
  user?: string;
  password?: string;
  /** ComputerSystem ids; default ['1']. */
  systems?: string[];
  /** ResetType@Redfish.AllowableValues of #ComputerSystem.Reset; null omits the annotation. */
  resetTypes?: string[] | null;
  /** Advertise the ResetTypes through @Redfish.ActionInfo instead of the annotation. */
  actionInfo?: boolean;
  bootTargets?: string[];
  /** Whether Boot carries BootSourceOverrideMode (a PATCH with it is otherwise rejected as unknown). */
  bootMode?: boolean;
  /** Where the system's ETag is given: the ETag header (and @odata.etag), only @odata.etag, or nowhere. */
  etag?: 'header' | 'odata' | 'none';
  managerResetTypes?: string[];
  /** Whether the system links its Manager (Links.ManagedBy); default true. */
  managedBy?: boolean;
  /** PowerState reads PoweringOn/PoweringOff this long before reaching the new state. */
  powerDelayMs?: number;
  initialPower?: 'On' | 'Off';
  /** Exact path → Location: 301 for GET, 307 otherwise. */
  redirects?: Record<string, string>;
  https?: boolean;
}

export interface SystemState {
  power: 'On' | 'Off';
  pending?: { to: 'On' | 'Off'; at: number };
  boot: { target: string; enabled: string; mode: string };
  version: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: unknown;
  status: number;
}

export interface RedfishServer {
  url: string;
  port: number;
  requests: RecordedRequest[];
  resets: Array<{ system: string; resetType: string }>;
  managerResets: string[];
  system(id?: string): SystemState;
  /** The next n requests (any path) answer `status` (default 503). */
  failNext(n: number, status?: number): void;
  /** The next n requests answer only after ms. */
  stallNext(n: number, ms: number): void;
  /** The next PATCH finds the system changed by someone else (its If-Match goes stale). */
  staleNextPatch(): void;
  expireSessions(): void;
  liveSessions(): number;
  close(): Promise<void>;
}

const R = '/redfish/v1';

function error(res: ServerResponse, status: number, messageId: string, message: string, headers: Record<string, string> = {}): void {
  send(res, status, { error: { code: `Base.1.8.${messageId}`, message, '@Message.ExtendedInfo': [{ MessageId: `Base.1.8.${messageId}`, Message: message, Severity: 'Warning' }] } }, headers);
}

function send(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
  const data = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'OData-Version': '4.0', ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...headers });
  res.end(data);
}

function selfSignedCert(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ironflow-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
      '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function startRedfishServer(opts: RedfishServerOptions = {}): Promise<RedfishServer> {
  const user = opts.user ?? 'admin';
  const password = opts.password ?? 'password';
  const ids = opts.systems ?? ['1'];
  const resetTypes = opts.resetTypes === undefined ? STANDARD_RESET_TYPES : opts.resetTypes;
  const bootTargets = opts.bootTargets ?? ['None', 'Pxe', 'Hdd', 'Cd', 'Usb', 'BiosSetup'];
  const bootMode = opts.bootMode ?? true;
  const etagMode = opts.etag ?? 'header';
  const managerResetTypes = opts.managerResetTypes ?? ['ForceRestart', 'GracefulRestart'];
  const delay = opts.powerDelayMs ?? 0;
  const systems = new Map<string, SystemState>(
    ids.map((id) => [id, { power: opts.initialPower ?? 'Off', boot: { target: 'None', enabled: 'Disabled', mode: 'UEFI' }, version: 1 }]),
  );
  const sessions = new Map<string, string>(); // token → session id
  const requests: RecordedRequest[] = [];
  const resets: Array<{ system: string; resetType: string }> = [];
  const managerResets: string[] = [];
  let failing = { n: 0, status: 503 };
  let stalling = { n: 0, ms: 0 };
  let staleNext = false;

  const settle = (s: SystemState) => {
    if (s.pending && Date.now() >= s.pending.at) {
      s.power = s.pending.to;
      s.pending = undefined;
    }
  };
  const powerTo = (s: SystemState, to: 'On' | 'Off') => {
    s.version++;
    if (delay > 0) s.pending = { to, at: Date.now() + delay };
    else {
      s.power = to;
      s.pending = undefined;
    }
  };
  const etagOf = (s: SystemState) => `W/"${s.version}"`;

  const systemBody = (id: string, s: SystemState) => {
    settle(s);
    const reset: Record<string, unknown> = { target: `${R}/Systems/${id}/Actions/ComputerSystem.Reset` };
    if (opts.actionInfo) reset['@Redfish.ActionInfo'] = `${R}/Systems/${id}/ResetActionInfo`;
    else if (resetTypes) reset['ResetType@Redfish.AllowableValues'] = resetTypes;
    const boot: Record<string, unknown> = {
      BootSourceOverrideEnabled: s.boot.enabled,
      BootSourceOverrideTarget: s.boot.target,
      'BootSourceOverrideTarget@Redfish.AllowableValues': bootTargets,
    };
    if (bootMode) Object.assign(boot, { BootSourceOverrideMode: s.boot.mode, 'BootSourceOverrideMode@Redfish.AllowableValues': ['Legacy', 'UEFI'] });
    return {
      '@odata.type': '#ComputerSystem.v1_13_0.ComputerSystem',
      '@odata.id': `${R}/Systems/${id}`,
      ...(etagMode === 'none' ? {} : { '@odata.etag': etagOf(s) }),
      Id: id,
      Name: `System ${id}`,
      SystemType: 'Physical',
      PowerState: s.pending ? (s.pending.to === 'On' ? 'PoweringOn' : 'PoweringOff') : s.power,
      Boot: boot,
      Actions: { '#ComputerSystem.Reset': reset },
      Links: opts.managedBy === false ? {} : { ManagedBy: [{ '@odata.id': `${R}/Managers/bmc` }] },
    };
  };

  const authorized = (req: IncomingMessage): boolean => {
    const token = req.headers['x-auth-token'];
    if (typeof token === 'string') return sessions.has(token);
    const m = /^Basic (.+)$/.exec(req.headers.authorization ?? '');
    return !!m?.[1] && Buffer.from(m[1], 'base64').toString('utf8') === `${user}:${password}`;
  };

  const resetSystem = (res: ServerResponse, id: string, s: SystemState, type: string) => {
    settle(s);
    const allowed = resetTypes ?? STANDARD_RESET_TYPES;
    if (!allowed.includes(type)) return error(res, 400, 'ActionParameterNotSupported', `The parameter ResetType with value ${type} is not supported.`);
    resets.push({ system: id, resetType: type });
    switch (type) {
      case 'On':
      case 'ForceOn':
        if (s.power === 'Off' && !s.pending) powerTo(s, 'On');
        break;
      case 'ForceOff':
      case 'GracefulShutdown':
        if (s.power === 'On' || s.pending) powerTo(s, 'Off');
        break;
      case 'PowerCycle':
        s.power = 'Off';
        powerTo(s, 'On');
        break;
      default:
        break; // restarts keep the power on
    }
    send(res, 204);
  };

  const patchSystem = (req: IncomingMessage, res: ServerResponse, s: SystemState, body: unknown) => {
    if (staleNext) {
      staleNext = false;
      s.version++;
    }
    const ifMatch = req.headers['if-match'];
    if (ifMatch !== undefined && ifMatch !== etagOf(s)) return error(res, 412, 'PreconditionFailed', 'The ETag supplied did not match the ETag required to change this resource.');
    const boot = (body as { Boot?: Record<string, unknown> } | undefined)?.Boot;
    if (!boot || typeof boot !== 'object') return error(res, 400, 'PropertyMissing', 'The property Boot is a required property.');
    for (const [k, v] of Object.entries(boot)) {
      if (k === 'BootSourceOverrideTarget' && !bootTargets.includes(String(v))) return error(res, 400, 'PropertyValueNotInList', `The value ${String(v)} for the property ${k} is not in the list of acceptable values.`);
      else if (k === 'BootSourceOverrideEnabled' && !['Disabled', 'Once', 'Continuous'].includes(String(v))) return error(res, 400, 'PropertyValueNotInList', `The value ${String(v)} for the property ${k} is not in the list of acceptable values.`);
      else if (k === 'BootSourceOverrideMode' && (!bootMode || !['Legacy', 'UEFI'].includes(String(v)))) return error(res, 400, bootMode ? 'PropertyValueNotInList' : 'PropertyUnknown', `The property ${k} is not supported.`);
      else if (!['BootSourceOverrideTarget', 'BootSourceOverrideEnabled', 'BootSourceOverrideMode'].includes(k)) return error(res, 400, 'PropertyUnknown', `The property ${k} is not in the list of valid properties for the resource.`);
    }
    if (typeof boot.BootSourceOverrideTarget === 'string') s.boot.target = boot.BootSourceOverrideTarget;
    if (typeof boot.BootSourceOverrideEnabled === 'string') s.boot.enabled = boot.BootSourceOverrideEnabled;
    if (typeof boot.BootSourceOverrideMode === 'string') s.boot.mode = boot.BootSourceOverrideMode;
    s.version++;
    send(res, 204);
  };

  const route = (req: IncomingMessage, res: ServerResponse, path: string, body: unknown): void => {
    const method = req.method ?? 'GET';
    const only = (...methods: string[]) => {
      if (methods.includes(method)) return true;
      error(res, 405, 'OperationNotAllowed', `${method} is not allowed on ${path}`, { Allow: methods.join(', ') });
      return false;
    };
    if (path === '/redfish') return void (only('GET') && send(res, 200, { v1: `${R}/` }));
    if (path === R) {
      if (!only('GET')) return;
      return send(res, 200, {
        '@odata.type': '#ServiceRoot.v1_11_0.ServiceRoot', '@odata.id': `${R}/`, Id: 'RootService', Name: 'Root Service', RedfishVersion: '1.11.0',
        Systems: { '@odata.id': `${R}/Systems` }, Managers: { '@odata.id': `${R}/Managers` }, SessionService: { '@odata.id': `${R}/SessionService` },
        Links: { Sessions: { '@odata.id': `${R}/SessionService/Sessions` } },
      });
    }
    const sessionsPath = `${R}/SessionService/Sessions`;
    if (path === sessionsPath && method === 'POST') {
      const { UserName, Password } = (body ?? {}) as { UserName?: string; Password?: string };
      if (UserName !== user || Password !== password) return error(res, 401, 'NoValidSession', 'Invalid username or password.');
      const id = randomBytes(4).toString('hex');
      const token = randomBytes(16).toString('hex');
      sessions.set(token, id);
      const location = `${sessionsPath}/${id}`;
      return send(res, 201, { '@odata.type': '#Session.v1_3_0.Session', '@odata.id': location, Id: id, Name: 'User Session', UserName }, { 'X-Auth-Token': token, Location: location });
    }
    if (!authorized(req)) return error(res, 401, 'NoValidSession', 'There is no valid session established with the implementation.', { 'WWW-Authenticate': 'Basic realm="redfish"' });

    if (path === `${R}/SessionService`) {
      if (!only('GET')) return;
      return send(res, 200, { '@odata.type': '#SessionService.v1_1_8.SessionService', '@odata.id': path, Id: 'SessionService', ServiceEnabled: true, Sessions: { '@odata.id': sessionsPath } });
    }
    if (path === sessionsPath) {
      if (!only('GET', 'POST')) return;
      const members = [...sessions.values()].map((id) => ({ '@odata.id': `${sessionsPath}/${id}` }));
      return send(res, 200, { '@odata.type': '#SessionCollection.SessionCollection', '@odata.id': path, Members: members, 'Members@odata.count': members.length });
    }
    const sessionMatch = new RegExp(`^${sessionsPath}/([^/]+)$`).exec(path);
    if (sessionMatch) {
      const entry = [...sessions.entries()].find(([, id]) => id === sessionMatch[1]);
      if (!entry) return error(res, 404, 'ResourceMissingAtURI', `The resource at the URI ${path} was not found.`);
      if (!only('GET', 'DELETE')) return;
      if (method === 'DELETE') {
        sessions.delete(entry[0]);
        return send(res, 204);
      }
      return send(res, 200, { '@odata.type': '#Session.v1_3_0.Session', '@odata.id': path, Id: entry[1], UserName: user });
    }
    if (path === `${R}/Systems`) {
      if (!only('GET')) return;
      const members = ids.map((id) => ({ '@odata.id': `${R}/Systems/${id}` }));
      return send(res, 200, { '@odata.type': '#ComputerSystemCollection.ComputerSystemCollection', '@odata.id': path, Name: 'Computer System Collection', Members: members, 'Members@odata.count': members.length });
    }
    const sys = new RegExp(`^${R}/Systems/([^/]+)(/.*)?$`).exec(path);
    if (sys) {
      const id = sys[1] ?? '';
      const s = systems.get(id);
      if (!s) return error(res, 404, 'ResourceMissingAtURI', `The resource at the URI ${path} was not found.`);
      if (sys[2] === '/Actions/ComputerSystem.Reset') return void (only('POST') && resetSystem(res, id, s, String((body as { ResetType?: unknown } | undefined)?.ResetType)));
      if (sys[2] === '/ResetActionInfo' && opts.actionInfo) {
        if (!only('GET')) return;
        return send(res, 200, { '@odata.type': '#ActionInfo.v1_1_2.ActionInfo', '@odata.id': path, Id: 'ResetActionInfo', Parameters: [{ Name: 'ResetType', Required: true, DataType: 'String', AllowableValues: resetTypes ?? [] }] });
      }
      if (sys[2] !== undefined) return error(res, 404, 'ResourceMissingAtURI', `The resource at the URI ${path} was not found.`);
      if (!only('GET', 'PATCH')) return;
      if (method === 'PATCH') return patchSystem(req, res, s, body);
      const out = systemBody(id, s);
      return send(res, 200, out, etagMode === 'header' ? { ETag: etagOf(s) } : {});
    }
    if (path === `${R}/Managers`) {
      if (!only('GET')) return;
      return send(res, 200, { '@odata.type': '#ManagerCollection.ManagerCollection', '@odata.id': path, Members: [{ '@odata.id': `${R}/Managers/bmc` }], 'Members@odata.count': 1 });
    }
    if (path === `${R}/Managers/bmc`) {
      if (!only('GET')) return;
      return send(res, 200, {
        '@odata.type': '#Manager.v1_10_0.Manager', '@odata.id': path, Id: 'bmc', Name: 'Manager', ManagerType: 'BMC',
        Actions: { '#Manager.Reset': { target: `${path}/Actions/Manager.Reset`, 'ResetType@Redfish.AllowableValues': managerResetTypes } },
      });
    }
    if (path === `${R}/Managers/bmc/Actions/Manager.Reset`) {
      if (!only('POST')) return;
      const type = String((body as { ResetType?: unknown } | undefined)?.ResetType);
      if (!managerResetTypes.includes(type)) return error(res, 400, 'ActionParameterNotSupported', `The parameter ResetType with value ${type} is not supported.`);
      managerResets.push(type);
      return send(res, 204);
    }
    error(res, 404, 'ResourceMissingAtURI', `The resource at the URI ${path} was not found.`);
  };

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      try {
        body = raw ? JSON.parse(raw) : undefined;
      } catch {
        return error(res, 400, 'MalformedJSON', 'The request body submitted was malformed JSON.');
      }
      const rawPath = new URL(req.url ?? '/', 'http://x').pathname;
      const path = rawPath.length > 1 ? rawPath.replace(/\/+$/, '') : rawPath;
      const entry: RecordedRequest = { method: req.method ?? 'GET', path: rawPath, headers: req.headers, body, status: 0 };
      requests.push(entry);
      res.on('finish', () => (entry.status = res.statusCode));
      const respond = () => {
        if (failing.n > 0) {
          failing.n--;
          return error(res, failing.status, 'ServiceTemporarilyUnavailable', 'The service is temporarily unavailable.', { 'Retry-After': '1' });
        }
        const target = opts.redirects?.[rawPath];
        if (target) return send(res, req.method === 'GET' ? 301 : 307, undefined, { Location: target });
        route(req, res, path, body);
      };
      if (stalling.n > 0) {
        stalling.n--;
        setTimeout(respond, stalling.ms);
      } else respond();
    });
  };

  let server: Server;
  if (opts.https) server = createHttpsServer(selfSignedCert(), handler);
  else server = createHttpServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `${opts.https ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    requests,
    resets,
    managerResets,
    system(id = ids[0] ?? '1') {
      const s = systems.get(id);
      if (!s) throw new Error(`no system ${id}`);
      settle(s);
      return s;
    },
    failNext(n, status = 503) {
      failing = { n, status };
    },
    stallNext(n, ms) {
      stalling = { n, ms };
    },
    staleNextPatch() {
      staleNext = true;
    },
    expireSessions() {
      sessions.clear();
    },
    liveSessions: () => sessions.size,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
