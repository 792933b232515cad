// The routes machines call from inside (SPEC 7.3, Equinix Metal compatible), under `/` and without a
// user token: GET /metadata, POST /events (user state), POST /phone-home. The machine is found by its
// machine token or by its source address (X-Forwarded-For only from configured trusted proxies),
// through the machines `address` unique index: an unknown machine costs one index lookup.
import { BlockList, isIP } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import type { StoredObject } from '../models/common.js';
import type { Principal } from '../models/principal.js';
import { lookupParam } from '../params/resolve.js';
import type { Services } from '../services.js';

export const USER_STATES = ['running', 'succeeded', 'failed'] as const;
export const USER_CODE_MIN = 1000;
export const USER_CODE_MAX = 1099;
export const USER_MESSAGE_MAX_BYTES = 4096;
const BODY_LIMIT = 16 * 1024;

/** A body that is not JSON: each route decides (user state refuses it, phone-home ignores it). */
class NotJson {
  constructor(readonly length: number) {}
}

export function trustedProxyList(entries: string[]): BlockList {
  const list = new BlockList();
  for (const e of entries) {
    const [ip = '', bits] = e.split('/');
    const family = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(ip, family);
    else list.addSubnet(ip, Number(bits), family);
  }
  return list;
}

const unmapped = (ip: string) => (ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip);

const verdicts = new WeakMap<BlockList, Map<string, boolean>>();

/** Whether `ip` is one of the trusted proxies (BlockList.check is slow: answers are remembered per list). */
function trusted(list: BlockList, ip: string): boolean {
  let known = verdicts.get(list);
  if (!known) verdicts.set(list, (known = new Map()));
  let v = known.get(ip);
  if (v === undefined) {
    const family = isIP(ip);
    v = family !== 0 && list.check(ip, family === 6 ? 'ipv6' : 'ipv4');
    if (known.size >= 100_000) known.clear();
    known.set(ip, v);
  }
  return v;
}

/**
 * The client's address: the peer, or — only when the peer is a trusted proxy — the right-most
 * X-Forwarded-For hop that is not itself a trusted proxy.
 */
export function sourceAddress(req: FastifyRequest, proxies: BlockList, anyProxy: boolean): string {
  const peer = unmapped(req.socket.remoteAddress ?? req.ip);
  const xff = req.headers['x-forwarded-for'];
  if (!anyProxy || xff === undefined || !trusted(proxies, peer)) return peer;
  const hops = [xff].flat().join(',').split(',').map((h) => unmapped(h.trim())).filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) if (!trusted(proxies, hops[i]!)) return hops[i]!;
  return hops[0] ?? peer;
}

/** Checks a user-state body; every problem names its field. Unknown fields are ignored (Equinix clients send extras). */
export function userStateProblems(body: unknown): string[] {
  if (body instanceof NotJson) return ['body: not valid JSON; send {"state": "running", "code": 1000, "message": "…"}'];
  if (body === undefined) return ['body: missing; send {"state": "running", "code": 1000, "message": "…"}'];
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return ['body: must be a JSON object'];
  const b = body as Record<string, unknown>;
  const problems: string[] = [];
  if (b.state === undefined) problems.push(`state: required, one of ${USER_STATES.join(', ')}`);
  else if (!(USER_STATES as readonly unknown[]).includes(b.state)) problems.push(`state: must be one of ${USER_STATES.join(', ')}, got ${JSON.stringify(b.state)?.slice(0, 40)}`);
  if (b.code === undefined) problems.push(`code: required, an integer from ${USER_CODE_MIN} to ${USER_CODE_MAX}`);
  else if (typeof b.code !== 'number' || !Number.isInteger(b.code) || b.code < USER_CODE_MIN || b.code > USER_CODE_MAX) {
    problems.push(`code: must be an integer from ${USER_CODE_MIN} to ${USER_CODE_MAX}, got ${JSON.stringify(b.code)?.slice(0, 40)}`);
  }
  if (b.message !== undefined && typeof b.message !== 'string') problems.push('message: must be a string');
  else if (typeof b.message === 'string' && Buffer.byteLength(b.message) > USER_MESSAGE_MAX_BYTES) problems.push(`message: at most ${USER_MESSAGE_MAX_BYTES} bytes, got ${Buffer.byteLength(b.message)}`);
  return problems;
}

/** Names of the Params marked `meta.metadata: "true"` (never secure ones), refreshed on `params.*` events. */
class MetadataParams {
  private names: Promise<string[]> | undefined;

  constructor(private readonly s: Services) {}

  invalidate(): void {
    this.names = undefined;
  }

  get(): Promise<string[]> {
    this.names ??= this.load().catch((err: unknown) => {
      this.names = undefined;
      throw err;
    });
    return this.names;
  }

  private async load(): Promise<string[]> {
    const out: string[] = [];
    for (let offset = 0; ; offset += 1000) {
      const q = this.s.store.parseQuery('params', { limit: '1000', offset: String(offset) });
      const { items } = await this.s.store.list('params', q);
      for (const p of items) if (p.meta?.metadata === 'true' && p.secure !== true) out.push(String(p.name));
      if (items.length < 1000) return out;
    }
  }
}

export function registerMachineFacing(app: FastifyInstance, s: Services): void {
  const proxies = trustedProxyList(s.config.trustedProxies);
  const anyProxy = s.config.trustedProxies.length > 0;
  const metadataParams = new MetadataParams(s);
  const stop = s.bus.subscribe((e) => {
    if (e.type === 'params') metadataParams.invalidate();
  });
  app.addHook('onClose', async () => stop());

  const limit = (reply: FastifyReply, key: string, who: string) => {
    const wait = s.limits.take('machine', key);
    if (wait > 0) {
      void reply.header('Retry-After', String(wait));
      throw new AppError('RATE_LIMITED', `too many requests from ${who}; retry in ${wait} s`);
    }
  };

  /**
   * The calling machine: by machine token when one is sent (it wins over the address), else by source
   * address. Rate-limited per machine for valid tokens, per client address (the real client behind a
   * trusted proxy, not the proxy) for everything else, before any lookup.
   */
  const machineOf = async (req: FastifyRequest, reply: FastifyReply, tokenOnly: boolean): Promise<{ machine: StoredObject; principal: Principal }> => {
    const ip = sourceAddress(req, proxies, anyProxy);
    if (req.headers.authorization !== undefined) {
      let p: Principal;
      try {
        p = await s.guard.authenticate(req.headers.authorization);
      } catch (err) {
        limit(reply, ip, ip);
        throw err;
      }
      if (p.type !== 'machine') throw new AppError('FORBIDDEN', 'this is a user token; machines call this route with their machine token (or none, from their own address)');
      limit(reply, `machine:${p.uuid}`, `machine ${p.uuid}`);
      const machine = await s.store.get('machines', p.uuid);
      if (!machine) throw new AppError('NOT_FOUND', `machine ${p.uuid} no longer exists`, { kind: 'machines', key: p.uuid });
      return { machine, principal: p };
    }
    limit(reply, ip, ip);
    const [only, machine] = await Promise.all([
      tokenOnly ? s.prefs.get('userStateTokenOnly') : Promise.resolve('false'),
      isIP(ip) === 4 ? s.store.get('machines', `address:${ip}`) : Promise.resolve(undefined),
    ]);
    if (only === 'true') throw new AppError('UNAUTHENTICATED', 'this server takes user state only with a machine token (preference userStateTokenOnly): send "Authorization: Bearer <machine token>"');
    if (!machine) {
      throw new AppError('NOT_FOUND', `no machine has address ${ip}: set the machine's "address" to the address it calls from, or send its machine token`, { kind: 'machines', key: `address:${ip}` });
    }
    return { machine, principal: { type: 'machine', name: String(machine.name), uuid: String(machine.uuid) } };
  };

  const baseUrl = (req: FastifyRequest) => s.config.publicUrl ?? `${req.protocol}://${req.host}`;

  app.register(async (child) => {
    // Machines post with curl -d / wget --post-data (application/x-www-form-urlencoded): the body is
    // read as JSON whatever the Content-Type says, on these routes only.
    child.removeAllContentTypeParsers();
    child.addContentTypeParser('*', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (_req, body, done) => {
      const text = String(body);
      if (text.trim() === '') return done(null, undefined);
      try {
        done(null, JSON.parse(text));
      } catch {
        done(null, new NotJson(text.length));
      }
    });
    const config = { public: true };
    const tags = ['machine-facing'];

    child.get('/metadata', { schema: { tags, summary: 'Metadata of the calling machine (Equinix Metal style)', security: [] }, config }, async (req, reply) => {
      const { machine } = await machineOf(req, reply, false);
      const names = await metadataParams.get();
      const params: Record<string, unknown> = {};
      if (names.length > 0) {
        const owner = { prefix: 'machines' as const, obj: machine };
        const [layers, defaults] = await Promise.all([s.params.layers(owner, { reveal: false }), s.params.defaults(names)]);
        for (const n of names) {
          const hit = lookupParam(layers, defaults, n);
          if (hit.found) params[n] = hit.value;
        }
      }
      const base = baseUrl(req);
      const tags = String(machine.meta?.tags ?? '').split(',').map((t) => t.trim()).filter(Boolean);
      return {
        id: machine.uuid,
        hostname: machine.name,
        arch: machine.arch,
        bootEnv: machine.bootEnv,
        workflow: machine.workflow,
        stage: machine.stage,
        tags,
        params,
        api_url: `${base}/api/v1`,
        user_state_url: `${base}/events`,
        phone_home_url: `${base}/phone-home`,
      };
    });

    child.post('/events', { schema: { tags, summary: 'Record a user state event on the calling machine\'s timeline', security: [] }, config }, async (req, reply) => {
      const problems = userStateProblems(req.body);
      const { machine, principal } = await machineOf(req, reply, true);
      if (problems.length > 0) throw new AppError('UNPROCESSABLE', problems[0]!, { messages: problems });
      const b = req.body as { state: string; code: number; message?: string };
      const entry = await s.timeline.record(String(machine.uuid), { type: `user.${b.code}`, state: b.state, body: { code: b.code, message: b.message ?? '' } }, principal);
      return reply.code(201).send(entry);
    });

    child.post('/phone-home', { schema: { tags, summary: 'The machine says it is up (records provisioning.phone_home)', security: [] }, config }, async (req, reply) => {
      const { machine, principal } = await machineOf(req, reply, true);
      const body = req.body instanceof NotJson || req.body === undefined ? null : req.body;
      const entry = await s.timeline.record(String(machine.uuid), { type: 'provisioning.phone_home', state: 'succeeded', body }, principal);
      return reply.code(201).send(entry);
    });
  });
}
