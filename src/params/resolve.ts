// THE param precedence (SPEC 4.2), pure: the first layer holding a param wins, then the Param's
// schema default. Every caller (API, renderer, engine, BMC) goes through this.

export interface ParamLayer {
  /** where the values come from, e.g. `machines/<uuid>`, `profiles/web`, `stages/install`, `profiles/global` */
  source: string;
  params: Readonly<Record<string, unknown>>;
}

export interface ParamDefaults {
  /** a Param's schema default, when it declares one */
  get(name: string): { found: true; value: unknown } | { found: false };
  names(): Iterable<string>;
}

export type Lookup = { found: true; value: unknown; source: string } | { found: false };

export function lookupParam(layers: readonly ParamLayer[], defaults: ParamDefaults, name: string): Lookup {
  for (const layer of layers) {
    if (Object.prototype.hasOwnProperty.call(layer.params, name)) return { found: true, value: layer.params[name], source: layer.source };
  }
  const d = defaults.get(name);
  return d.found ? { found: true, value: d.value, source: `params/${name}` } : { found: false };
}

/** Every param visible through the layers (and every declared default), with the source that supplied it. */
export function aggregateParams(layers: readonly ParamLayer[], defaults: ParamDefaults): Record<string, { value: unknown; source: string }> {
  const out: Record<string, { value: unknown; source: string }> = {};
  for (const layer of layers) {
    for (const [name, value] of Object.entries(layer.params)) if (!(name in out)) out[name] = { value, source: layer.source };
  }
  for (const name of defaults.names()) {
    const d = defaults.get(name);
    if (!(name in out) && d.found) out[name] = { value: d.value, source: `params/${name}` };
  }
  return out;
}

/**
 * Orders profiles as SPEC 4.2 says: each in order, its nested profiles depth-first right after it.
 * A profile reached twice counts once (its first position); cycles are refused on write but cannot loop here.
 */
export function orderProfiles(roots: readonly string[], nested: (name: string) => readonly string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    out.push(name);
    for (const child of nested(name)) visit(child);
  };
  roots.forEach(visit);
  return out;
}
