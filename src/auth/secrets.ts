// Secure values at rest (SPEC 10): AES-256-GCM with a key derived from the server key. Values are
// sealed on write and revealed only for rendering, BMC drivers, deliveries and admins' ?decode=true.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { AppError } from '../errors.js';
import { mapSealed, SEALED, type Sealed } from '../models/sealed.js';

export class SecretBox {
  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error('SecretBox needs a 32-byte key');
  }

  seal(value: unknown): Sealed {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const ct = Buffer.concat([cipher.update(JSON.stringify(value ?? null), 'utf8'), cipher.final()]);
    return { [SEALED]: `v1.${iv.toString('base64url')}.${ct.toString('base64url')}.${cipher.getAuthTag().toString('base64url')}` };
  }

  open(s: Sealed): unknown {
    const [v, iv, ct, tag] = s[SEALED].split('.');
    if (v !== 'v1' || !iv || ct === undefined || !tag) throw new AppError('INTERNAL', 'a secure value is damaged');
    try {
      const d = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64url'));
      d.setAuthTag(Buffer.from(tag, 'base64url'));
      return JSON.parse(Buffer.concat([d.update(Buffer.from(ct, 'base64url')), d.final()]).toString('utf8'));
    } catch {
      throw new AppError('INTERNAL', 'a secure value cannot be decrypted with this server key (was IRONFLOW_SECRET_KEY changed?)');
    }
  }

  /** Deeply replaces sealed values by their plaintext. */
  reveal<T>(v: T): T {
    return mapSealed(v, (s) => this.open(s)) as T;
  }
}
