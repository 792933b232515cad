import { describe, expect, it } from 'vitest';
import { aggregateParams, lookupParam, orderProfiles, type ParamDefaults, type ParamLayer } from '../../src/params/resolve.js';

const defaults = (d: Record<string, unknown>): ParamDefaults => ({
  get: (n) => (n in d ? { found: true, value: d[n] } : { found: false }),
  names: () => Object.keys(d),
});

const layers: ParamLayer[] = [
  { source: 'machines/m', params: { a: 'machine' } },
  { source: 'profiles/p1', params: { a: 'p1', b: 'p1' } },
  { source: 'profiles/p1-child', params: { b: 'child', c: 'child' } },
  { source: 'stages/s', params: { c: 'stage', d: 'stage', falsy: 0 } },
  { source: 'profiles/global', params: { d: 'global', e: 'global' } },
];

describe('param precedence', () => {
  it.each([
    ['machine wins', 'a', 'machine', 'machines/m'],
    ['first profile before its nested child', 'b', 'p1', 'profiles/p1'],
    ['nested child before the stage', 'c', 'child', 'profiles/p1-child'],
    ['stage before global', 'd', 'stage', 'stages/s'],
    ['global', 'e', 'global', 'profiles/global'],
    ['schema default last', 'f', 'default', 'params/f'],
    ['falsy values count as set', 'falsy', 0, 'stages/s'],
  ])('%s', (_n, name, value, source) => {
    expect(lookupParam(layers, defaults({ f: 'default', e: 'unused' }), name)).toEqual({ found: true, value, source });
  });

  it('reports a miss', () => {
    expect(lookupParam(layers, defaults({}), 'zzz')).toEqual({ found: false });
  });

  it('aggregates every visible param with its source', () => {
    const agg = aggregateParams(layers, defaults({ f: 1, a: 'never' }));
    expect(agg).toMatchObject({ a: { value: 'machine', source: 'machines/m' }, f: { value: 1, source: 'params/f' }, e: { source: 'profiles/global' } });
    expect(Object.keys(agg).sort()).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'falsy']);
  });

  it('orders nested profiles depth-first right after their parent, once each', () => {
    const tree: Record<string, string[]> = { a: ['a1', 'a2'], a1: ['a11'], b: ['a1', 'b1'] };
    expect(orderProfiles(['a', 'b'], (n) => tree[n] ?? [])).toEqual(['a', 'a1', 'a11', 'a2', 'b', 'b1']);
  });
});
