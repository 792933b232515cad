// Schema validation of objects with TypeBox: compiled once per kind, errors named by field path.
import { Compile, type Validator } from 'typebox/compile';
import type { TSchema } from 'typebox';

const cache = new WeakMap<TSchema, Validator>();

function validator(schema: TSchema): Validator {
  let v = cache.get(schema);
  if (!v) cache.set(schema, (v = Compile(schema)));
  return v;
}

/** Every schema problem as "path: message"; empty when the value conforms. */
export function schemaErrors(schema: TSchema, value: unknown): string[] {
  const v = validator(schema);
  if (v.Check(value)) return [];
  const out: string[] = [];
  for (const e of v.Errors(value).slice(0, 50)) {
    const err = e as { keyword?: string; schemaPath?: string; instancePath?: string; message?: string };
    const path = err.instancePath ? err.instancePath.slice(1) : '(body)';
    // TypeBox reports an unknown field twice: as a false sub-schema and on its parent; keep one clear line.
    if (err.keyword === 'additionalProperties') continue;
    const message = err.keyword === 'boolean' && err.schemaPath?.endsWith('additionalProperties') ? 'unknown field' : err.message ?? 'invalid';
    out.push(`${path}: ${message}`);
  }
  return out;
}
