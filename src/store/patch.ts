// RFC 6902 (JSON Patch, via fast-json-patch) and RFC 7396 (JSON Merge Patch) applied to a copy.
import fjp from 'fast-json-patch';
import { AppError } from '../errors.js';

export type PatchDoc = { type: 'json'; ops: unknown } | { type: 'merge'; doc: unknown };

export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (k === '__proto__') continue;
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Applies a patch to a deep copy of `doc`. A failed `test` op is 409 PATCH_TEST_FAILED. */
export function applyPatch<T>(doc: T, patch: PatchDoc): unknown {
  if (patch.type === 'merge') return mergePatch(structuredClone(doc), patch.doc);
  if (!Array.isArray(patch.ops)) throw new AppError('INVALID', 'a JSON Patch body must be an array of operations');
  const invalid = fjp.validate(patch.ops as fjp.Operation[]);
  if (invalid) throw new AppError('INVALID', `invalid JSON Patch: ${describe(invalid)}`);
  try {
    return fjp.applyPatch(structuredClone(doc), patch.ops as fjp.Operation[], true, false, true).newDocument;
  } catch (err) {
    const e = err as fjp.JsonPatchError;
    if (e.name === 'TEST_OPERATION_FAILED') {
      const op = e.operation as { path?: string } | undefined;
      throw new AppError('PATCH_TEST_FAILED', `patch test failed at ${op?.path ?? '?'}`);
    }
    throw new AppError('UNPROCESSABLE', `patch cannot be applied: ${describe(e)}`);
  }
}

function describe(e: fjp.JsonPatchError): string {
  const op = e.operation as { op?: string; path?: string } | undefined;
  const where = op ? ` (op ${op.op ?? '?'} at ${op.path ?? '?'})` : '';
  return `${e.message.split('\n')[0]}${where}`;
}
