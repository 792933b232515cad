// Encodes indexed values so that Redis lex order equals value order (strings, integers, booleans),
// and turns filter operators into lex ranges over members `encoded + "\0" + key`.
import type { IndexSpec, StoredObject } from '../models/common.js';
import type { LexRange } from './backend.js';

const SEP = '\x00';
const INT_WIDTH = 16;
const INT_OFFSET = 10n ** BigInt(INT_WIDTH);

export function encodeValue(spec: IndexSpec, value: unknown): string | undefined {
  switch (spec.type) {
    case 'integer': {
      const n = typeof value === 'number' ? value : typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : NaN;
      if (!Number.isSafeInteger(n)) return undefined;
      return n < 0 ? `n${(INT_OFFSET + BigInt(n)).toString().padStart(INT_WIDTH, '0')}` : `p${String(n).padStart(INT_WIDTH, '0')}`;
    }
    case 'boolean':
      if (value === true || value === 'true') return 'true';
      if (value === false || value === 'false') return 'false';
      return undefined;
    default:
      return typeof value === 'string' && !value.includes(SEP) ? value : undefined;
  }
}

export function decodeValue(spec: IndexSpec, encoded: string): string {
  if (spec.type !== 'integer') return encoded;
  return encoded.startsWith('n') ? String(BigInt(encoded.slice(1)) - INT_OFFSET) : String(Number(encoded.slice(1)));
}

export function member(encoded: string, key: string): string {
  return `${encoded}${SEP}${key}`;
}

export function splitMember(m: string): { encoded: string; key: string } {
  const i = m.indexOf(SEP);
  return { encoded: m.slice(0, i), key: m.slice(i + 1) };
}

/** The raw value(s) of an indexed field; a missing single value indexes as "" so every object is listed once. */
export function indexedValues(field: string, spec: IndexSpec, obj: StoredObject): unknown[] {
  const raw = spec.from ? spec.from(obj) : obj[field];
  if (spec.multi) return Array.isArray(raw) ? [...new Set(raw)] : [];
  return [raw ?? (spec.type === 'string' ? '' : undefined)].filter((v) => v !== undefined);
}

export function indexMembers(indexes: Record<string, IndexSpec>, obj: StoredObject, key: string): { field: string; member: string }[] {
  const out: { field: string; member: string }[] = [];
  for (const [field, spec] of Object.entries(indexes)) {
    for (const v of indexedValues(field, spec, obj)) {
      const enc = encodeValue(spec, v);
      if (enc !== undefined) out.push({ field, member: member(enc, key) });
    }
  }
  return out;
}

export const Operators = ['Eq', 'Ne', 'Lt', 'Lte', 'Gt', 'Gte', 'In', 'Nin', 'Re', 'Between'] as const;
export type Operator = (typeof Operators)[number];

/** The lex range of members whose value satisfies a range operator; undefined for Ne/Nin/Re/In. */
export function rangeFor(op: Operator, encoded: string[]): LexRange | undefined {
  const [a = '', b = ''] = encoded;
  switch (op) {
    case 'Eq': return { min: `[${a}${SEP}`, max: `(${a}\x01` };
    case 'Lt': return { min: '-', max: `(${a}${SEP}` };
    case 'Lte': return { min: '-', max: `(${a}\x01` };
    case 'Gt': return { min: `[${a}\x01`, max: '+' };
    case 'Gte': return { min: `[${a}${SEP}`, max: '+' };
    case 'Between': return { min: `[${a}${SEP}`, max: `(${b}\x01` };
    default: return undefined;
  }
}

/** Evaluates an operator on one encoded value (used when filtering objects in a stream). */
export function matches(op: Operator, value: string, args: string[], re?: RegExp): boolean {
  const [a = '', b = ''] = args;
  switch (op) {
    case 'Eq': return value === a;
    case 'Ne': return value !== a;
    case 'Lt': return value < a;
    case 'Lte': return value <= a;
    case 'Gt': return value > a;
    case 'Gte': return value >= a;
    case 'Between': return value >= a && value <= b;
    case 'In': return args.includes(value);
    case 'Nin': return !args.includes(value);
    case 'Re': return re ? re.test(value) : false;
  }
}
