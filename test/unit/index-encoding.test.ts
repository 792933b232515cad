import { describe, expect, it } from 'vitest';
import { encodeValue, matches, rangeFor } from '../../src/store/index-encoding.js';
import { parseListQuery } from '../../src/store/query.js';
import { machines } from '../../src/models/machines.js';
import { workflows } from '../../src/models/workflows.js';

describe('index encoding', () => {
  it('orders integers numerically, negatives first', () => {
    const values = [-1_000_000, -10, -2, -1, 0, 1, 2, 10, 99, 100, 1_000_000_000];
    const enc = values.map((v) => encodeValue({ type: 'integer' }, v)!);
    expect([...enc].sort()).toEqual(enc);
  });

  it.each([
    ['integer', 1.5], ['integer', 'x'], ['boolean', 'yes'], ['string', 'a\x00b'], ['string', 3],
  ] as const)('refuses %s value %s', (type, v) => {
    expect(encodeValue({ type }, v)).toBeUndefined();
  });

  it('range and stream evaluation agree', () => {
    const values = ['a', 'ab', 'b', 'ba', 'c'];
    for (const op of ['Eq', 'Lt', 'Lte', 'Gt', 'Gte'] as const) {
      const r = rangeFor(op, ['b'])!;
      const inRange = (v: string) => {
        const m = `${v}\x00key`;
        const lo = r.min === '-' || (r.min.startsWith('[') ? m >= r.min.slice(1) : m > r.min.slice(1));
        const hi = r.max === '+' || (r.max.startsWith('[') ? m <= r.max.slice(1) : m < r.max.slice(1));
        return lo && hi;
      };
      expect(values.filter(inRange), op).toEqual(values.filter((v) => matches(op, v, ['b'])));
    }
  });
});

describe('list query parsing', () => {
  it.each([
    ['unknown filter on a kind without params', workflows, { nope: 'x' }, false],
    ['param filter on machines', machines, { 'bmc/driver': 'redfish' }, true],
    ['negative limit', machines, { limit: '-1' }, false],
    ['limit above 1000', machines, { limit: '1001' }, false],
    ['non-numeric offset', machines, { offset: 'x' }, false],
    ['sort by a list field', machines, { sort: 'hardwareAddrs' }, false],
    ['bad integer operand', machines, { currentTask: 'Lt(x)' }, false],
    ['Between with one value', machines, { currentTask: 'Between(1)' }, false],
    ['bad regex', machines, { name: 'Re(()' }, false],
    ['slim', machines, { slim: 'params,meta' }, true],
    ['bad slim', machines, { slim: 'tasks' }, false],
  ] as const)('%s', (_name, kind, query, ok) => {
    const run = () => parseListQuery(kind, query as Record<string, string>);
    if (ok) expect(run).not.toThrow();
    else expect(run).toThrow(expect.objectContaining({ code: 'INVALID' }));
  });

  it('normalises MAC filters', () => {
    const q = parseListQuery(machines, { hardwareAddrs: 'AA-BB-CC-DD-EE-FF' });
    expect(q.filters[0]!.args).toEqual(['aa:bb:cc:dd:ee:ff']);
  });
});
