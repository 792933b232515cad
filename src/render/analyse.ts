// Static questions about a template's source, answered from its Handlebars AST (no rendering).
import Handlebars from 'handlebars';
import { AppError } from '../errors.js';
import { describeError } from './failure.js';

type Node = { type?: unknown; path?: { original?: unknown } } & Record<string, unknown>;

const CALLS = new Set(['MustacheStatement', 'SubExpression', 'BlockStatement']);

/**
 * Whether `source` calls `helper` anywhere, e.g. a bootenv path using `mac` is rendered once per
 * hardware address. A source that does not parse is a RENDER_FAILED.
 */
export function usesHelper(source: string, helper: string): boolean {
  const seen = (node: unknown): boolean => {
    if (Array.isArray(node)) return node.some(seen);
    if (node === null || typeof node !== 'object') return false;
    const n = node as Node;
    if (typeof n.type === 'string' && CALLS.has(n.type) && n.path?.original === helper) return true;
    return Object.entries(n).some(([key, value]) => key !== 'loc' && seen(value));
  };
  let ast: unknown;
  try {
    ast = Handlebars.parse(source);
  } catch (err) {
    throw new AppError('RENDER_FAILED', `template source: ${describeError(err)}`);
  }
  return seen(ast);
}
