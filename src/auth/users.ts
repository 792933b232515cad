// User accounts: password hashing on write, the first-start admin, and issuing tokens for a login.
import { randomBytes } from 'node:crypto';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { AppError } from '../errors.js';
import type { StoredObject } from '../models/common.js';
import { SystemPrincipal } from '../models/principal.js';
import type { KindHooks, ObjectStore } from '../store/objects.js';
import { hashPassword, verifyPassword } from './passwords.js';
import type { TokenSigner } from './tokens.js';

/** Replaces a write-only `password` with its scrypt hash; a user needs one or the other. */
export const userHooks: KindHooks = {
  async beforeWrite(next: StoredObject, cur: StoredObject | undefined): Promise<StoredObject> {
    const out = { ...next };
    if (typeof out.password === 'string') {
      if (out.password.length < 8) throw new AppError('INVALID', 'password: must be at least 8 characters', { kind: 'users', key: String(out.name) });
      out.passwordHash = await hashPassword(out.password);
      delete out.password;
    } else if (!out.passwordHash) {
      if (!cur?.passwordHash) throw new AppError('INVALID', 'password: required for a new user', { kind: 'users', key: String(out.name) });
      out.passwordHash = cur.passwordHash;
    }
    // The generation only ever grows: raising it revokes every token of the user, lowering it would revive them.
    out.tokenGeneration = Math.max((cur?.tokenGeneration as number | undefined) ?? 0, typeof next.tokenGeneration === 'number' ? next.tokenGeneration : 0);
    return out;
  },
};

/**
 * On first start (no users at all) creates `admin` with IRONFLOW_ADMIN_PASSWORD or a random password
 * written to <data dir>/admin-password (0600) and said once in the log.
 */
export async function ensureAdmin(store: ObjectStore, adminPassword: string | undefined, dataDir: string, log: { warn(msg: string): void; info(msg: string): void }): Promise<void> {
  const total = await store.count('users', { filters: [], reverse: false, offset: 0, limit: 0, slim: [] });
  if (total > 0) return;
  const password = adminPassword ?? randomBytes(18).toString('base64url');
  try {
    await store.create('users', { name: 'admin', role: 'admin', password, description: 'created on first start' }, { principal: SystemPrincipal });
  } catch (err) {
    if ((err as AppError).code === 'CONFLICT') return; // another process created it first
    throw err;
  }
  if (adminPassword) {
    log.info('created user "admin" with the password from IRONFLOW_ADMIN_PASSWORD');
  } else {
    mkdirSync(dataDir, { recursive: true });
    const file = join(dataDir, 'admin-password');
    writeFileSync(file, `${password}\n`, { mode: 0o600 });
    log.warn(`created user "admin" with password ${password} (also in ${file}; change it with PATCH /api/v1/users/admin)`);
  }
}

export async function issueUserToken(store: ObjectStore, signer: TokenSigner, username: string, password: string, ttlSeconds: number, epoch = 0): Promise<{ token: string; expiresAt: string }> {
  const user = await store.get('users', username);
  const ok = user?.passwordHash ? await verifyPassword(password, user.passwordHash as string) : false;
  if (!user || !ok) throw new AppError('UNAUTHENTICATED', 'wrong username or password');
  const iat = Math.floor(Date.now() / 1000);
  const exp = iat + ttlSeconds;
  const token = signer.sign({ typ: 'user', sub: username, role: user.role as 'admin', gen: (user.tokenGeneration as number | undefined) ?? 0, ep: epoch, iat, exp });
  return { token, expiresAt: new Date(exp * 1000).toISOString() };
}

/** Revokes every token of one user (their generation moves on). */
export async function revokeUserTokens(store: ObjectStore, username: string): Promise<void> {
  await store.update('users', username, (u) => ({ ...u, tokenGeneration: ((u.tokenGeneration as number | undefined) ?? 0) + 1 }), { principal: SystemPrincipal });
}
