// Redis stream ids (`ms-seq`, decimal without leading zeros): their order, exact at any size.

/** Orders two stream ids; an id without `-seq` is `ms-0`. */
export function compareIds(a: string, b: string): number {
  const da = a.indexOf('-');
  const db = b.indexOf('-');
  const c = compareDecimal(da < 0 ? a : a.slice(0, da), db < 0 ? b : b.slice(0, db));
  return c !== 0 ? c : compareDecimal(da < 0 ? '0' : a.slice(da + 1), db < 0 ? '0' : b.slice(db + 1));
}

function compareDecimal(x: string, y: string): number {
  if (x.length !== y.length) return x.length - y.length;
  return x === y ? 0 : x < y ? -1 : 1;
}
