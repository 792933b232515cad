// The stages kind: a bootenv plus a task list (and params/profiles); `none` and `local` are built in.
import { Type } from 'typebox';
import { entryArgs } from './action-schemas.js';
import { defineKind, NameSchema, objectSchema, ParamsMapSchema, type StoredObject } from './common.js';

export const StageSchema = objectSchema('Stage', {
  name: NameSchema,
  bootEnv: Type.Optional(Type.String()),
  tasks: Type.Optional(Type.Array(Type.String(), { maxItems: 1000 })),
  params: Type.Optional(ParamsMapSchema),
  profiles: Type.Optional(Type.Array(NameSchema, { maxItems: 256 })),
});

/** Task list entries that are not task names (SPEC 5.1). */
export const SpecialEntry = /^(stage|bootenv|context|action):/;

export const stages = defineKind({
  prefix: 'stages',
  key: 'name',
  schema: StageSchema,
  description: 'Steps of a workflow: a bootenv and the tasks to run in it',
  hasParams: true,
  indexes: {
    bootEnv: { type: 'string' },
    tasks: { type: 'string', multi: true },
    profiles: { type: 'string', multi: true },
  },
  builtins: [
    { name: 'none', bootEnv: '', tasks: [], params: {}, profiles: [], readOnly: true, description: 'No stage: nothing runs' },
    { name: 'local', bootEnv: 'local', tasks: [], params: {}, profiles: [], readOnly: true, description: 'Boot from the local disk' },
  ],
  normalise: (s) => ({ bootEnv: '', tasks: [], params: {}, profiles: [], ...s }),
  check: (s) => ((s.tasks as string[] | undefined) ?? []).flatMap((t, i) => {
    const m = /^action:([^:]*)(?::(.*))?$/s.exec(t);
    return m ? entryArgs(m[1]!, m[2]).problems.map((p) => `tasks/${i}: ${p}`) : [];
  }),
  references(s: StoredObject) {
    const refs = ((s.profiles as string[] | undefined) ?? []).map((p, i) => ({ prefix: 'profiles', key: p, field: `profiles/${i}` }));
    if (s.bootEnv) refs.push({ prefix: 'bootenvs', key: s.bootEnv as string, field: 'bootEnv' });
    ((s.tasks as string[] | undefined) ?? []).forEach((t, i) => {
      if (!SpecialEntry.test(t)) refs.push({ prefix: 'tasks', key: t, field: `tasks/${i}` });
    });
    return refs;
  },
  async usedBy(name, ctx) {
    return [
      ...(await ctx.findKeys('workflows', 'stages', name, 10)).map((k) => `workflows/${k}`),
      ...(await ctx.findKeys('machines', 'stage', name, 10)).map((k) => `machines/${k}`),
    ];
  },
});
