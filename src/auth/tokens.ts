// Signed bearer tokens: base64url(JSON claims) "." base64url(HMAC-SHA256). Stateless, so any api
// process sharing the server key verifies them; user revocation works through a per-user generation.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Role } from '../models/users.js';

export type TokenClaims =
  | { typ: 'user'; sub: string; role: Role; gen: number; ep?: number; iat: number; exp: number }
  | { typ: 'machine'; sub: string; iat: number; exp: number; msk?: string };

export class TokenSigner {
  constructor(private readonly key: Buffer) {}

  private mac(body: string, extraKey = ''): string {
    return createHmac('sha256', this.key).update(extraKey).update('.').update(body).digest('base64url');
  }

  /** `extraKey` binds a machine token to the machine's own secret (rotating it revokes the token). */
  sign(claims: TokenClaims, extraKey = ''): string {
    const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
    return `${body}.${this.mac(body, extraKey)}`;
  }

  /** Decodes without checking the signature (to learn which machine secret to check against). */
  peek(token: string): TokenClaims | undefined {
    const [body] = token.split('.');
    if (!body || token.length > 4096) return undefined;
    try {
      const claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as TokenClaims;
      return claims && typeof claims === 'object' && typeof claims.exp === 'number' ? claims : undefined;
    } catch {
      return undefined;
    }
  }

  verify(token: string, nowSeconds: number, extraKey = ''): { ok: true; claims: TokenClaims } | { ok: false; reason: 'malformed' | 'signature' | 'expired' } {
    const [body, sig, more] = token.split('.');
    if (!body || !sig || more !== undefined) return { ok: false, reason: 'malformed' };
    const expected = Buffer.from(this.mac(body, extraKey));
    const given = Buffer.from(sig);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return { ok: false, reason: 'signature' };
    const claims = this.peek(token);
    if (!claims) return { ok: false, reason: 'malformed' };
    if (claims.exp <= nowSeconds) return { ok: false, reason: 'expired' };
    return { ok: true, claims };
  }
}
