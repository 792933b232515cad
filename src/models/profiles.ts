// The profiles kind: named param sets machines (and other profiles) include; `global` always exists.
import { Type } from 'typebox';
import { defineKind, NameSchema, objectSchema, ParamsMapSchema, type KindContext, type StoredObject } from './common.js';

export const ProfileSchema = objectSchema('Profile', {
  name: NameSchema,
  params: Type.Optional(ParamsMapSchema),
  profiles: Type.Optional(Type.Array(NameSchema, { maxItems: 256 })),
});

/** Follows nested profiles from `start`; returns the cycle as a path when one leads back to `start`. */
async function findCycle(start: string, first: string[], ctx: KindContext): Promise<string[] | undefined> {
  const seen = new Set<string>();
  const walk = async (name: string, path: string[]): Promise<string[] | undefined> => {
    if (name === start) return [...path, name];
    if (seen.has(name)) return undefined;
    seen.add(name);
    const p = await ctx.get('profiles', name);
    for (const child of (p?.profiles as string[] | undefined) ?? []) {
      const cycle = await walk(child, [...path, name]);
      if (cycle) return cycle;
    }
    return undefined;
  };
  for (const child of first) {
    const cycle = await walk(child, [start]);
    if (cycle) return cycle;
  }
  return undefined;
}

export const profiles = defineKind({
  prefix: 'profiles',
  key: 'name',
  schema: ProfileSchema,
  description: 'Named sets of params shared by machines, stages and other profiles',
  hasParams: true,
  indexes: { profiles: { type: 'string', multi: true } },
  builtins: [{ name: 'global', params: {}, profiles: [], description: 'Searched last for every param' }],
  normalise: (p: StoredObject) => ({ params: {}, profiles: [], ...p }),
  references: (p: StoredObject) =>
    ((p.profiles as string[] | undefined) ?? []).map((n, i) => ({ prefix: 'profiles', key: n, field: `profiles/${i}` })),
  async checkWith(p, ctx) {
    const cycle = await findCycle(p.name as string, (p.profiles as string[] | undefined) ?? [], ctx);
    return cycle ? [`profiles: cycle ${cycle.join(' → ')}`] : [];
  },
  async usedBy(name, ctx) {
    const users = [
      ...(await ctx.findKeys('machines', 'profiles', name, 10)).map((k) => `machines/${k}`),
      ...(await ctx.findKeys('profiles', 'profiles', name, 10)).map((k) => `profiles/${k}`),
      ...(await ctx.findKeys('stages', 'profiles', name, 10)).map((k) => `stages/${k}`),
    ];
    return users;
  },
});
