// Render failures: helpers throw RenderFailure (what went wrong, and in which nested template); the
// renderer turns it into the one AppError('RENDER_FAILED') that names template and machine.
import { AppError, errorCode } from '../errors.js';

interface MachineRef {
  name: string;
  uuid: string;
}

export class RenderFailure extends Error {
  constructor(
    readonly detail: string,
    /** nested template ids (partials, includes) being rendered when it failed, outermost first */
    readonly trail: readonly string[] = [],
  ) {
    super(detail);
    this.name = 'RenderFailure';
  }
}

const STRICT_MISSING = /^"(.*)" not defined in ([\s\S]*?) - (\d+):(\d+)$/;

/** Words an arbitrary error thrown while rendering, so the operator sees the field or helper at fault. */
export function describeError(err: unknown): string {
  if (err instanceof RenderFailure) return err.detail;
  const message = err instanceof Error ? err.message : String(err);
  const strict = STRICT_MISSING.exec(message);
  if (strict) {
    // Handlebars names only the last path segment; say when its parent is missing too (e.g. no machine).
    const parent = strict[2] === 'undefined' || strict[2] === 'null' ? ', whose parent is missing' : '';
    return `missing field "${strict[1]}"${parent} (line ${strict[3]}, column ${strict[4]})`;
  }
  if (message.startsWith('Parse error') || message.startsWith('Expecting')) {
    return `syntax error: ${message.replace(/Expecting [\s\S]*?, got/, 'got').replace(/\s*\n\s*/g, ' ')}`;
  }
  if (err instanceof RangeError) return `render aborted: ${message}`;
  const code = errorCode(err);
  return code ? `${code}: ${message}` : message;
}

/** Converts anything thrown below a nested template into a RenderFailure that remembers where it happened. */
export function asFailure(err: unknown, trail: readonly string[]): RenderFailure {
  return err instanceof RenderFailure ? err : new RenderFailure(describeError(err), [...trail]);
}

export function targetOf(templateName: string, machine: MachineRef | undefined, trail: readonly string[] = []): string {
  const inner = trail.filter((t) => t !== templateName).map((t) => `"${t}"`);
  // a loop would otherwise print the same names maxDepth times
  const shown = inner.length > 5 ? [...inner.slice(0, 3), `… ${inner.length - 4} more …`, ...inner.slice(-1)] : inner;
  const where = shown.length > 0 ? ` (in ${shown.join(' > ')})` : '';
  const who = machine ? `machine ${machine.name} (${machine.uuid})` : 'an unknown machine';
  return `template "${templateName}"${where} for ${who}`;
}

export function renderFailed(templateName: string, machine: MachineRef | undefined, err: unknown): AppError {
  const failure = err instanceof RenderFailure ? err : new RenderFailure(describeError(err));
  return new AppError('RENDER_FAILED', `${targetOf(templateName, machine, failure.trail)}: ${failure.detail}`);
}
