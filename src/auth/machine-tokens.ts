// Machine tokens (SPEC 10): signed with the server key and the machine's own secret, so rotating the
// secret revokes every token issued before; scoped by the guard to that machine's own routes.
import { randomBytes } from 'node:crypto';
import type { StoredObject } from '../models/common.js';
import { SystemPrincipal } from '../models/principal.js';
import type { ObjectStore } from '../store/objects.js';
import type { TokenSigner } from './tokens.js';

export const DEFAULT_MACHINE_TOKEN_TTL_SECONDS = 3600;
export const MAX_MACHINE_TOKEN_TTL_SECONDS = 30 * 24 * 3600;

export function issueMachineToken(signer: TokenSigner, machine: StoredObject, ttlSeconds: number, now = Date.now()): { token: string; expiresAt: string } {
  const iat = Math.floor(now / 1000);
  const exp = iat + ttlSeconds;
  const token = signer.sign({ typ: 'machine', sub: String(machine.uuid), iat, exp, msk: '' }, String(machine.secret ?? ''));
  return { token, expiresAt: new Date(exp * 1000).toISOString() };
}

/** A new secret: every token signed with the old one stops verifying. */
export async function rotateMachineSecret(store: ObjectStore, uuid: string): Promise<StoredObject> {
  return store.update('machines', uuid, (m) => ({ ...m, secret: randomBytes(24).toString('base64url') }), { principal: SystemPrincipal, allowReadOnly: true });
}
