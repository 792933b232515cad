// Validates param values against their Param's JSON Schema (SPEC 3.2): one message per bad value.
import { Compile, type Validator } from 'typebox/compile';
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

/** Checks every value whose Param declares a schema; returns all problems. */
export async function checkParamValues(store: ObjectStore, values: Record<string, unknown>): Promise<string[]> {
  const names = Object.keys(values);
  if (names.length === 0) return [];
  const defs = await store.getMany('params', names);
  return defs.flatMap((d) => paramValueErrors(d.name as string, d.schema as Record<string, unknown> | undefined, values[d.name as string]));
}
