// The workflows kind: an ordered list of stages a machine runs through.
import { Type } from 'typebox';
import { defineKind, NameSchema, objectSchema } from './common.js';

export const WorkflowSchema = objectSchema('Workflow', {
  name: NameSchema,
  stages: Type.Array(NameSchema, { maxItems: 1000 }),
});

export const workflows = defineKind({
  prefix: 'workflows',
  key: 'name',
  schema: WorkflowSchema,
  description: 'Ordered lists of stages',
  indexes: { stages: { type: 'string', multi: true } },
  references: (w) => ((w.stages as string[] | undefined) ?? []).map((s, i) => ({ prefix: 'stages', key: s, field: `stages/${i}` })),
  async usedBy(name, ctx) {
    return (await ctx.findKeys('machines', 'workflow', name, 10)).map((k) => `machines/${k}`);
  },
});
