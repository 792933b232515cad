// Every registered benchmark (bench/run.ts) still works: each runs once at tiny size against a real
// server started from source, and returns well-formed rows `{name, metric, value, baseline, ratio,
// target, pass}`. No timing is asserted (BENCH.md: benchmarks are never timed assertions in npm test).
import { describe, expect, it } from 'vitest';

process.env.IRONFLOW_BENCH_FROM_SOURCE = '1'; // bench/lib.ts startServer: `node --import tsx`, no build needed

const { benches, SIZES } = await import('../../bench/run.js');

describe('benchmarks at tiny size', () => {
  it.each(Object.keys(benches))('%s returns well-formed rows', async (name) => {
    const rows = await benches[name]!(SIZES.tiny);
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) {
      expect(Object.keys(r).sort()).toEqual(['baseline', 'metric', 'name', 'pass', 'ratio', 'target', 'value']);
      expect(r.name).toBe(name);
      expect(typeof r.metric).toBe('string');
      expect(r.metric.length).toBeGreaterThan(0);
      expect(typeof r.value).toBe('number');
      expect(Number.isNaN(r.value), `${name} / ${r.metric}: value is NaN`).toBe(false);
      expect(r.baseline === null || typeof r.baseline === 'number').toBe(true);
      expect(r.ratio === null || typeof r.ratio === 'number').toBe(true);
      if (r.baseline === null) expect(r.ratio).toBeNull();
      expect(typeof r.target).toBe('string');
      expect(typeof r.pass).toBe('boolean');
    }
  }, 120_000);
});
