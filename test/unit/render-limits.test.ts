// Template safety (SPEC 10): loops and time are bounded, not only the output size.
import { describe, expect, it } from 'vitest';
import { createRenderer } from '../../src/render/renderer.js';
import type { RenderContext } from '../../src/render/types.js';

const ctx = (params: Record<string, unknown>): RenderContext => ({
  prefs: {},
  params: { get: (n) => (n in params ? { found: true, value: params[n] } : { found: false }) },
  urls: { publicUrl: 'http://127.0.0.1:8080' },
  templateName: 'limits',
  env: { list: Array.from({ length: 100 }, (_, i) => i) },
});

describe('render limits', () => {
  const r = createRenderer({ get: () => undefined });

  it('refuses nested loops beyond the iteration budget, even with no output', () => {
    const loops = '{{#each env.list}}{{#each @root.env.list}}{{#each @root.env.list}}{{/each}}{{/each}}{{/each}}';
    expect(() => r.renderString(loops, ctx({}), 'loops')).toThrow(expect.objectContaining({ code: 'RENDER_FAILED', message: expect.stringContaining('loop iterations') }));
  });

  it('allows ordinary loops', () => {
    expect(r.renderString('{{#each env.list}}{{this}},{{/each}}', ctx({}), 'ok').split(',')).toHaveLength(101);
  });

  it('stops a render that runs past its time budget', () => {
    const slow = createRenderer({ get: () => undefined }, { maxRenderMs: 20, maxIterations: 1e9 });
    const big = Array.from({ length: 2000 }, (_, i) => i);
    const c = { ...ctx({}), env: { list: big } };
    expect(() => slow.renderString('{{#each env.list}}{{#each @root.env.list}}{{json this}}{{/each}}{{/each}}', c, 'slow')).toThrow(expect.objectContaining({ code: 'RENDER_FAILED', message: expect.stringMatching(/longer than 20 ms|too large/) }));
  });
});
