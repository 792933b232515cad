// The Handlebars environment (SPEC 4.1): one isolated instance per renderer, strict and unescaped, every
// Template object a lazily resolved partial compiled once per (id, revision), with size and depth bounds.
import Handlebars from 'handlebars';
import { AppError } from '../errors.js';
import { asFailure, describeError, RenderFailure, renderFailed, targetOf } from './failure.js';
import { helpers, type HelperScope } from './helpers.js';
import { Lru } from './lru.js';
import type { ParamLookup, RenderContext, Renderer, RendererOptions, TemplateSource } from './types.js';

export type { ParamLookup, RenderContext, RenderMachine, Renderer, RendererOptions, TemplateSource } from './types.js';

type Compiled = Handlebars.TemplateDelegate;
type ResolvePartial = (this: unknown, partial: unknown, context: unknown, options: { name?: unknown }) => unknown;

// Prototype access stays at Handlebars' safe default: no allowProto* option is ever passed.
const COMPILE_OPTIONS = { strict: true, noEscape: true } as const;
const MAX_CACHED_SOURCE_CHARS = 64 * 1024 * 1024;

interface Frame {
  ctx: RenderContext;
  /** the root context templates see */
  view: Record<string, unknown>;
  depth: number;
  /** characters produced by nested renders so far: bounds work even when the final output is small */
  work: number;
  /** `each` iterations so far: bounds loops that produce little or no output */
  iterations: number;
  /** performance.now() when the render started */
  started: number;
  /** nested template names being rendered, outermost first */
  trail: string[];
}

function viewOf(ctx: RenderContext): Record<string, unknown> {
  const view: Record<string, unknown> = { prefs: ctx.prefs };
  if (ctx.machine) {
    // The token-signing secret must never reach a file served without authentication.
    const { secret: _secret, ...machine } = ctx.machine;
    view.machine = machine;
  }
  if (ctx.env !== undefined) view.env = ctx.env;
  if (ctx.task !== undefined) view.task = ctx.task;
  if (ctx.stage !== undefined) view.stage = ctx.stage;
  if (ctx.job !== undefined) view.job = ctx.job;
  return view;
}

export function createRenderer(source: TemplateSource, options: RendererOptions = {}): Renderer {
  const maxOutput = options.maxOutputBytes ?? 4 * 1024 * 1024;
  const maxDepth = options.maxDepth ?? 16;
  const maxWork = maxOutput * 4;
  const maxIterations = options.maxIterations ?? 100_000;
  const maxRenderMs = options.maxRenderMs ?? 2000;
  const hb = Handlebars.create();
  /** A render is synchronous and cannot be interrupted: loops, partials and helpers check the budget. */
  const checkBudget = (f: Frame) => {
    if (f.iterations > maxIterations) throw new RenderFailure(`more than ${maxIterations} loop iterations`, [...f.trail]);
    if (performance.now() - f.started > maxRenderMs) throw new RenderFailure(`render took longer than ${maxRenderMs} ms`, [...f.trail]);
  };
  const builtinEach = hb.helpers.each as Handlebars.HelperDelegate;
  hb.registerHelper('each', function (this: unknown, context: unknown, eachOptions: Handlebars.HelperOptions) {
    const f = frame();
    f.iterations += Array.isArray(context) ? context.length : context !== null && typeof context === 'object' ? Object.keys(context).length : 0;
    checkBudget(f);
    return builtinEach.call(this, context, eachOptions);
  });
  // A template must not write into the server's log; `log` is a known helper compiled as a direct call, so it is replaced, not removed.
  hb.registerHelper('log', () => {
    throw new RenderFailure('helper "log" is not available in Ironflow templates', [...frame().trail]);
  });
  const byId = new Map<string, { revision: number; fn: Compiled }>();
  const bySource = new Lru<Compiled>(options.stringCacheSize ?? 2000, MAX_CACHED_SOURCE_CHARS);
  let active: Frame | undefined;

  const frame = (): Frame => {
    if (!active) throw new Error('template helper called outside a render');
    return active;
  };

  const compiledTemplate = (id: string): Compiled | undefined => {
    const t = source.get(id);
    if (!t) return undefined;
    const hit = byId.get(id);
    if (hit && hit.revision === t.revision) return hit.fn;
    const fn = hb.compile(t.contents, COMPILE_OPTIONS);
    byId.set(id, { revision: t.revision, fn });
    return fn;
  };

  const compiledSource = (src: string): Compiled => {
    let fn = bySource.get(src);
    if (!fn) {
      fn = hb.compile(src, COMPILE_OPTIONS);
      bySource.set(src, fn);
    }
    return fn;
  };

  const checkSize = (out: string, trail: readonly string[]) => {
    // length counts UTF-16 units; only near the bound is the exact UTF-8 size worth computing
    if (out.length > maxOutput || (out.length * 3 > maxOutput && Buffer.byteLength(out, 'utf8') > maxOutput)) {
      throw new RenderFailure(`output too large (over ${maxOutput} bytes)`, trail);
    }
  };

  // Every nested render (partial, include, bootParams) passes here: depth, size and work bounds, and the trail for errors.
  const nested = (name: string, run: () => string): string => {
    const f = frame();
    if (f.depth >= maxDepth) {
      throw new RenderFailure(`templates nested deeper than ${maxDepth} (a partial or include loop?)`, [...f.trail, name]);
    }
    f.depth++;
    f.trail.push(name);
    try {
      const out = run();
      checkSize(out, [...f.trail]);
      f.work += out.length;
      if (f.work > maxWork) throw new RenderFailure(`output too large (nested templates produced over ${maxWork} characters)`, [...f.trail]);
      return out;
    } catch (err) {
      throw asFailure(err, f.trail);
    } finally {
      f.depth--;
      f.trail.pop();
    }
  };

  const scope: HelperScope = {
    get ctx() {
      return frame().ctx;
    },
    fail(detail: string): never {
      throw new RenderFailure(detail, [...frame().trail]);
    },
    include(id: string) {
      const fn = compiledTemplate(id);
      if (!fn) throw new RenderFailure(`include "${id}": no such template`, [...frame().trail]);
      return nested(id, () => fn(frame().view));
    },
    renderSource(src: string, name: string) {
      const fn = compiledSource(src);
      return nested(name, () => fn(frame().view));
    },
  };

  for (const [name, helper] of Object.entries(helpers)) {
    hb.registerHelper(name, (...args: unknown[]) => {
      const helperOptions = args.pop() as Handlebars.HelperOptions;
      checkBudget(frame());
      try {
        return helper(scope, args, helperOptions);
      } catch (err) {
        if (err instanceof RenderFailure) throw err;
        throw new RenderFailure(`helper "${name}": ${describeError(err)}`, [...frame().trail]);
      }
    });
  }

  // Partials resolve through the TemplateSource at call time (this environment only: hb.VM is replaced, not
  // mutated), so a changed Template is seen after invalidate() and no partial is registered up front.
  const vm = hb.VM as unknown as { resolvePartial: ResolvePartial };
  const baseResolve = vm.resolvePartial;
  const resolvePartial: ResolvePartial = function (this: unknown, partial, context, partialOptions) {
    const found = baseResolve.call(this, partial, context, partialOptions);
    const name = typeof partialOptions.name === 'string' ? partialOptions.name : 'partial';
    const fn = found ?? (name === '@partial-block' ? undefined : compiledTemplate(name));
    if (fn === undefined) throw new RenderFailure(`partial "${name}": no such template`, [...frame().trail]);
    checkBudget(frame());
    if (typeof fn !== 'function') return fn;
    return (ctx: unknown, runtime: unknown) => nested(name, () => (fn as Compiled)(ctx, runtime as Handlebars.RuntimeOptions));
  };
  (hb as unknown as { VM: object }).VM = { ...hb.VM, resolvePartial };

  const run = (label: string, ctx: RenderContext, trail: string[], body: (view: Record<string, unknown>) => string): string => {
    const previous = active;
    const f: Frame = { ctx, view: viewOf(ctx), depth: 0, work: 0, iterations: 0, started: performance.now(), trail };
    active = f;
    try {
      const out = body(f.view);
      checkSize(out, []);
      return out;
    } catch (err) {
      throw renderFailed(label, ctx.machine, asFailure(err, f.trail));
    } finally {
      active = previous;
    }
  };

  return {
    render(id, ctx) {
      return run(ctx.templateName || id, ctx, [id], (view) => {
        const fn = compiledTemplate(id);
        if (!fn) throw new RenderFailure(`no such template "${id}"`);
        return fn(view);
      });
    },
    renderString(src, ctx, name) {
      return run(name || ctx.templateName, ctx, [], (view) => compiledSource(src)(view));
    },
    invalidate(id) {
      if (id === undefined) {
        byId.clear();
        bySource.clear();
      } else {
        byId.delete(id);
      }
    },
  };
}

/** Checks a bootenv's or task's requiredParams before rendering: one RENDER_FAILED naming every missing param. */
export function checkRequiredParams(required: readonly string[], params: ParamLookup, ctx: Pick<RenderContext, 'machine' | 'templateName'>): void {
  const missing = [...new Set(required)].filter((name) => !params.get(name).found);
  if (missing.length === 0) return;
  const target = targetOf(ctx.templateName, ctx.machine);
  const names = missing.map((n) => `"${n}"`).join(', ');
  throw new AppError('RENDER_FAILED', `${target}: missing required param${missing.length > 1 ? 's' : ''} ${names}`, {
    messages: missing.map((n) => `${target}: missing required param "${n}"`),
  });
}
