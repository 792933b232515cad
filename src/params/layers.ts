// Loads the param layers of a machine, profile or stage from the store, for the pure resolver.
import type { StoredObject } from '../models/common.js';
import type { ObjectCache, ObjectSource } from '../store/object-cache.js';
import type { ObjectStore } from '../store/objects.js';
import { aggregateParams, lookupParam, orderProfiles, type Lookup, type ParamDefaults, type ParamLayer } from './resolve.js';

type Owner = { prefix: 'machines' | 'profiles' | 'stages'; obj: StoredObject };

const paramsOf = (o: StoredObject | undefined) => (o?.params as Record<string, unknown> | undefined) ?? {};
const profilesOf = (o: StoredObject | undefined) => (o?.profiles as string[] | undefined) ?? [];

export interface ResolveOptions {
  /** decrypt secure values (default true: renderer, BMC drivers); the API passes false and masks */
  reveal?: boolean;
  /** where profiles, stages and Params are read (default: a fresh view of the process cache, else the store) */
  source?: ObjectSource;
}

export class ParamResolver {
  /**
   * @param reveal decrypts sealed values (auth/secrets.ts), wired in services.ts
   * @param cache profiles, stages and Params of this process (store/object-cache.ts), when there is one
   */
  constructor(private readonly store: ObjectStore, private readonly reveal: <T>(v: T) => T = (v) => v, private readonly cache?: ObjectCache) {}

  /** A consistent source for one resolution: the process cache when it is current, else the store. */
  source(): ObjectSource {
    return this.cache?.view() ?? this.store;
  }

  /**
   * Fetches every profile reachable from `roots` (breadth by breadth, one round trip per depth), starting
   * from profiles already fetched.
   */
  private async profileMap(src: ObjectSource, roots: string[], map = new Map<string, StoredObject>()): Promise<Map<string, StoredObject>> {
    let frontier = [...new Set(roots)].filter((n) => !map.has(n));
    while (frontier.length > 0) {
      const fetched = await src.getMany('profiles', frontier);
      for (const p of fetched) map.set(p.name as string, p);
      frontier = [...new Set(fetched.flatMap(profilesOf))].filter((n) => !map.has(n));
    }
    return map;
  }

  async layers(owner: Owner, opts: ResolveOptions = {}): Promise<ParamLayer[]> {
    const layers = await this.rawLayers(owner, opts.source ?? this.source());
    return opts.reveal === false ? layers : layers.map((l) => ({ source: l.source, params: this.reveal(l.params) }));
  }

  private async rawLayers(owner: Owner, src: ObjectSource): Promise<ParamLayer[]> {
    const { prefix, obj } = owner;
    const ownProfiles = prefix === 'stages' ? [] : profilesOf(obj);
    // The stage and the first level of profiles in one round trip; then whatever they lead to.
    const [stage, first] = await Promise.all([
      prefix === 'machines' && obj.stage ? src.get('stages', obj.stage as string) : Promise.resolve(prefix === 'stages' ? obj : undefined),
      src.getMany('profiles', [...new Set([...ownProfiles, 'global'])]),
    ]);
    const stageProfiles = profilesOf(stage);
    const known = new Map(first.map((p) => [p.name as string, p]));
    const profiles = await this.profileMap(src, [...first.flatMap(profilesOf), ...stageProfiles], known);
    const nested = (n: string) => profilesOf(profiles.get(n));
    const layer = (name: string): ParamLayer => ({ source: `profiles/${name}`, params: paramsOf(profiles.get(name)) });
    const key = prefix === 'machines' ? (obj.uuid as string) : (obj.name as string);
    const out: ParamLayer[] = [];
    if (prefix !== 'stages') out.push({ source: `${prefix}/${key}`, params: paramsOf(obj) });
    const chain = orderProfiles(ownProfiles, nested).filter((n) => !(prefix === 'profiles' && n === key));
    out.push(...chain.filter((n) => n !== 'global').map(layer));
    if (stage) {
      out.push({ source: `stages/${stage.name as string}`, params: paramsOf(stage) });
      out.push(...orderProfiles(stageProfiles, nested).filter((n) => n !== 'global' && !chain.includes(n)).map(layer));
    }
    if (!(prefix === 'profiles' && key === 'global')) out.push(layer('global'));
    return out;
  }

  /** Schema defaults of the named Params (or of every Param when `names` is omitted). */
  async defaults(names?: string[], source?: ObjectSource): Promise<ParamDefaults> {
    const defs = names
      ? await (source ?? this.source()).getMany('params', names)
      : (await this.store.list('params', { filters: [], reverse: false, offset: 0, limit: 1000, slim: [] })).items;
    const map = new Map<string, unknown>();
    for (const d of defs) {
      const schema = d.schema as Record<string, unknown> | undefined;
      if (schema && 'default' in schema) map.set(d.name as string, schema.default);
    }
    return {
      get: (n) => (map.has(n) ? { found: true, value: map.get(n) } : { found: false }),
      names: () => map.keys(),
    };
  }

  async lookup(owner: Owner, name: string, opts: ResolveOptions = {}): Promise<Lookup> {
    const source = opts.source ?? this.source();
    const [layers, defaults] = await Promise.all([this.layers(owner, { ...opts, source }), this.defaults([name], source)]);
    return lookupParam(layers, defaults, name);
  }

  async aggregate(owner: Owner, opts: ResolveOptions = {}): Promise<Record<string, { value: unknown; source: string }>> {
    return aggregateParams(await this.layers(owner, opts), await this.defaults());
  }
}
