// The tasks kind: either scripts for the machine agent (`templates`) or server-side steps (`actions`).
import { Type } from 'typebox';
import { actionArgProblems } from './action-schemas.js';
import { defineKind, NameSchema, objectSchema, type StoredObject } from './common.js';
import { checkTemplateEntries, TemplateEntrySchema, templateRefs, type TemplateEntry } from './template-entry.js';

export const TaskActionSchema = Type.Object({
  action: Type.String({ minLength: 1 }),
  args: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
}, { additionalProperties: false });

export const TaskSchema = objectSchema('Task', {
  name: NameSchema,
  templates: Type.Optional(Type.Array(TemplateEntrySchema, { maxItems: 256 })),
  actions: Type.Optional(Type.Array(TaskActionSchema, { maxItems: 256 })),
  requiredParams: Type.Optional(Type.Array(Type.String())),
  optionalParams: Type.Optional(Type.Array(Type.String())),
  timeoutSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 604800 })),
  retry: Type.Optional(Type.Object({
    attempts: Type.Integer({ minimum: 0, maximum: 100 }),
    backoffSeconds: Type.Optional(Type.Number({ minimum: 0, maximum: 86400 })),
  }, { additionalProperties: false })),
});

const entries = (t: StoredObject) => (t.templates as TemplateEntry[] | undefined) ?? [];

export const tasks = defineKind({
  prefix: 'tasks',
  key: 'name',
  schema: TaskSchema,
  description: 'Units of work: agent scripts or server-side actions',
  indexes: {
    templateIds: { type: 'string', multi: true, internal: true, from: (t) => entries(t).flatMap((e) => (e.id ? [e.id] : [])) },
  },
  normalise: (t) => ({ requiredParams: [], optionalParams: [], ...t }),
  check(t) {
    const hasTemplates = Array.isArray(t.templates);
    const hasActions = Array.isArray(t.actions);
    const problems = checkTemplateEntries(entries(t), 'templates');
    if (hasTemplates === hasActions) problems.push('a task needs exactly one of "templates" (agent scripts) or "actions" (server-side steps)');
    ((t.actions as { action: string; args?: unknown }[] | undefined) ?? []).forEach((a, i) => problems.push(...actionArgProblems(a.action, a.args, `actions/${i} (${a.action})`)));
    return problems;
  },
  references: (t) => templateRefs(entries(t), 'templates'),
  async usedBy(name, ctx) {
    return (await ctx.findKeys('stages', 'tasks', name, 10)).map((k) => `stages/${k}`);
  },
});
