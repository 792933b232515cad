// The stored form of a secure value (AES-256-GCM ciphertext, see auth/secrets.ts) and what clients
// see instead of it. Pure: masking needs no key, so every output path can apply it.

export const SEALED = '$sealed';

export interface Sealed {
  [SEALED]: string;
}

/** What clients get in place of a secure value (SPEC 3.2). */
export const SECURE_PLACEHOLDER = Object.freeze({ secure: true });

export function isSealed(v: unknown): v is Sealed {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && typeof (v as Record<string, unknown>)[SEALED] === 'string' && Object.keys(v).length === 1;
}

export function isPlaceholder(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && (v as Record<string, unknown>).secure === true && Object.keys(v).length === 1;
}

/** Replaces every sealed value inside `v` (deeply) by `replace(sealed)`. */
export function mapSealed(v: unknown, replace: (s: Sealed) => unknown): unknown {
  if (isSealed(v)) return replace(v);
  if (Array.isArray(v)) return v.some((x) => typeof x === 'object' && x !== null) ? v.map((x) => mapSealed(x, replace)) : v;
  if (typeof v === 'object' && v !== null) {
    let out: Record<string, unknown> | undefined;
    const o = v as Record<string, unknown>;
    for (const k in o) {
      if (!Object.prototype.hasOwnProperty.call(o, k)) continue;
      const x = o[k];
      if (typeof x !== 'object' || x === null) continue;
      const y = mapSealed(x, replace);
      if (y !== x) (out ??= { ...o })[k] = y;
    }
    return out ?? v;
  }
  return v;
}

export function maskSealed<T>(v: T): T {
  return mapSealed(v, () => SECURE_PLACEHOLDER) as T;
}
