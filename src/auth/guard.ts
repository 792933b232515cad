// The one place that decides who may call what: authenticates a bearer token to a Principal and
// authorises it for a route by role (SPEC 10).
import { AppError } from '../errors.js';
import type { StoredObject } from '../models/common.js';
import type { Principal } from '../models/principal.js';
import type { Role } from '../models/users.js';
import type { ObjectStore } from '../store/objects.js';
import type { TokenSigner } from './tokens.js';

export interface RouteAccess {
  method: string;
  /** the route's kind prefix, when it has one */
  prefix?: string;
  /** the machine the route is about (for machine tokens) */
  machine?: string;
  /** routes a machine token may use (its own metadata, events, jobs, object) */
  machineScope?: boolean;
  /** admin only (users, secure values, tokens of other principals) */
  adminOnly?: boolean;
}

/** How long an api process trusts what it read about a user (role, token generation): revocation and role changes take effect within this. */
export const USER_CACHE_MS = 1000;

export class AuthGuard {
  private readonly users = new Map<string, { at: number; user: StoredObject | undefined }>();
  private epochCache = { at: -Infinity, value: 0 };

  /**
   * @param epochs reads and bumps the global token epoch (raising it revokes every user token)
   */
  constructor(
    private readonly signer: TokenSigner,
    private readonly store: ObjectStore,
    private readonly epochs: { read(): Promise<number>; bump(): Promise<number> },
    private readonly now = () => Date.now(),
  ) {}

  async epoch(): Promise<number> {
    const t = this.now();
    if (t - this.epochCache.at >= USER_CACHE_MS) this.epochCache = { at: t, value: await this.epochs.read() };
    return this.epochCache.value;
  }

  /** Drops what this process cached about a user (after revoking their tokens here). */
  forgetUser(name: string): void {
    this.users.delete(name);
  }

  /** Revokes every user token issued so far (machine tokens are revoked per machine by rotating its secret). */
  async revokeAll(): Promise<void> {
    this.epochCache = { at: this.now(), value: await this.epochs.bump() };
    this.users.clear();
  }

  /** Users are read on every request; a one-second cache keeps that off the hot path. */
  private async user(name: string): Promise<StoredObject | undefined> {
    const hit = this.users.get(name);
    const t = this.now();
    if (hit && t - hit.at < USER_CACHE_MS) return hit.user;
    const user = await this.store.get('users', name);
    if (this.users.size > 10_000) this.users.clear();
    this.users.set(name, { at: t, user });
    return user;
  }

  async authenticate(authorization: string | undefined): Promise<Principal> {
    const m = authorization ? /^Bearer\s+(\S+)\s*$/i.exec(authorization) : null;
    if (!m) throw new AppError('UNAUTHENTICATED', 'missing bearer token: send "Authorization: Bearer <token>" (POST /api/v1/auth/token issues one)');
    const token = m[1]!;
    const nowS = Math.floor(this.now() / 1000);
    const peeked = this.signer.peek(token);
    if (!peeked) throw new AppError('UNAUTHENTICATED', 'malformed token');
    let machineSecret = '';
    let machine;
    if (peeked.typ === 'machine') {
      machine = await this.store.get('machines', peeked.sub);
      machineSecret = (machine?.secret as string | undefined) ?? '';
      if (!machine) throw new AppError('UNAUTHENTICATED', 'token of an unknown machine');
    }
    const res = this.signer.verify(token, nowS, machineSecret);
    if (!res.ok) throw new AppError('UNAUTHENTICATED', res.reason === 'expired' ? 'token expired' : 'invalid token');
    const c = res.claims;
    if (c.typ === 'machine') return { type: 'machine', name: (machine?.name as string) ?? c.sub, uuid: c.sub };
    const user = await this.user(c.sub);
    if (!user) throw new AppError('UNAUTHENTICATED', 'token of a deleted user');
    if ((user.tokenGeneration as number | undefined ?? 0) !== c.gen || (c.ep ?? 0) !== (await this.epoch())) throw new AppError('UNAUTHENTICATED', 'token revoked');
    return { type: 'user', name: c.sub, role: user.role as Role };
  }

  authorize(p: Principal, route: RouteAccess): void {
    if (p.type === 'system') return;
    if (p.type === 'machine') {
      if (!route.machineScope) throw new AppError('FORBIDDEN', 'machine tokens may only use their own machine\'s routes');
      if (route.machine !== undefined && route.machine !== p.uuid) throw new AppError('FORBIDDEN', 'this token belongs to another machine');
      return;
    }
    if (p.role === 'admin') return;
    if (route.adminOnly || route.prefix === 'users') throw new AppError('FORBIDDEN', `role ${p.role} may not use this route (admin only)`);
    if (p.role === 'readonly' && route.method !== 'GET' && route.method !== 'HEAD') throw new AppError('FORBIDDEN', 'role readonly may only read');
  }
}
