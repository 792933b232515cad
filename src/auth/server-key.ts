// The server key: IRONFLOW_SECRET_KEY or a random key generated once in the data dir (mode 0600).
// Purpose-specific subkeys are derived with HKDF so one secret serves signing and encryption.
import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ServerKey {
  /** a subkey for one purpose, e.g. `token-signing`, `param-encryption` */
  derive(purpose: string): Buffer;
  /** a short fingerprint that identifies the key without revealing it */
  fingerprint(): string;
}

export function loadServerKey(secretKeyHex: string | undefined, dataDir: string): ServerKey {
  let key: Buffer;
  if (secretKeyHex) {
    key = Buffer.from(secretKeyHex, 'hex');
  } else {
    const file = join(dataDir, 'secret.key');
    if (existsSync(file)) {
      key = Buffer.from(readFileSync(file, 'utf8').trim(), 'hex');
    } else {
      mkdirSync(dataDir, { recursive: true });
      key = randomBytes(32);
      writeFileSync(file, `${key.toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
    }
  }
  if (key.length !== 32) throw new Error('the server key must be 32 bytes (64 hex characters)');
  return {
    derive: (purpose) => Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), `ironflow:${purpose}`, 32)),
    fingerprint: () => createHmac('sha256', key).update('ironflow:fingerprint').digest('hex').slice(0, 16),
  };
}
