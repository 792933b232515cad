// Validates param values against their Param's JSON Schema (SPEC 3.2): one message per bad value.
import { isDeepStrictEqual } from 'node:util';
import { Compile, type Validator } from 'typebox/compile';
import { isPlaceholder, isSealed, type Sealed } from '../models/sealed.js';
import type { ObjectStore } from '../store/objects.js';

const compiled = new Map<string, { json: string; v: Validator | null }>();

function validatorFor(name: string, schema: Record<string, unknown>): Validator | null {
  const json = JSON.stringify(schema);
  const hit = compiled.get(name);
  if (hit && hit.json === json) return hit.v;
  let v: Validator | null = null;
  try {
    v = Compile(schema as never);
  } catch {
    v = null; // an uncompilable schema is reported when the Param is written, not on every value
  }
  compiled.set(name, { json, v });
  return v;
}

export function paramValueErrors(name: string, schema: Record<string, unknown> | undefined, value: unknown): string[] {
  if (!schema || Object.keys(schema).length === 0) return [];
  const v = validatorFor(name, schema);
  if (!v || v.Check(value)) return [];
  return v.Errors(value).slice(0, 5).map((e) => {
    const err = e as { instancePath?: string; message?: string };
    return `params/${name}${err.instancePath ?? ''}: ${err.message ?? 'invalid'} (schema ${JSON.stringify(schema)})`;
  });
}

/**
 * Prepares a params map for storage: a {"secure": true} placeholder keeps the stored sealed value,
 * plain values are checked against their Param's schema, and values of secure Params are sealed.
 */
export async function prepareParamValues(
  store: ObjectStore,
  seal: (v: unknown) => Sealed,
  values: Record<string, unknown>,
  current: Record<string, unknown>,
): Promise<{ values: Record<string, unknown>; problems: string[] }> {
  const names = Object.keys(values);
  // Values identical to the stored ones were checked (and sealed) when they were written.
  const changed = new Set(names.filter((n) => !isDeepStrictEqual(values[n], current[n])));
  if (changed.size === 0) return { values, problems: [] };
  const defs = new Map((await store.getMany('params', [...changed])).map((d) => [d.name as string, d]));
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const name of names) {
    const v = values[name];
    if (!changed.has(name)) {
      out[name] = v;
      continue;
    }
    const def = defs.get(name);
    if (isPlaceholder(v)) {
      if (isSealed(current[name])) out[name] = current[name];
      else problems.push(`params/${name}: {"secure": true} stands for a stored secure value; there is none, send the value itself`);
      continue;
    }
    if (isSealed(v)) {
      out[name] = v;
      continue;
    }
    problems.push(...paramValueErrors(name, def?.schema as Record<string, unknown> | undefined, v));
    out[name] = def?.secure === true ? seal(v) : v;
  }
  return { values: out, problems };
}
