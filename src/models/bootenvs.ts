// The bootenvs kind: what a machine boots (kernel, initrds, boot params) and which files it is served.
import { Type } from 'typebox';
import { defineKind, NameSchema, objectSchema, type StoredObject } from './common.js';
import { checkTemplateEntries, TemplateEntrySchema, templateRefs, type TemplateEntry } from './template-entry.js';

export const BootEnvSchema = objectSchema('BootEnv', {
  name: NameSchema,
  os: Type.Optional(Type.Object({
    name: Type.Optional(Type.String()),
    family: Type.Optional(Type.String()),
    version: Type.Optional(Type.String()),
    codename: Type.Optional(Type.String()),
  }, { additionalProperties: false })),
  kernel: Type.Optional(Type.String()),
  initrds: Type.Optional(Type.Array(Type.String())),
  bootParams: Type.Optional(Type.String()),
  templates: Type.Optional(Type.Array(TemplateEntrySchema, { maxItems: 256 })),
  requiredParams: Type.Optional(Type.Array(Type.String())),
  optionalParams: Type.Optional(Type.Array(Type.String())),
  onlyUnknown: Type.Optional(Type.Boolean()),
});

const entries = (b: StoredObject) => (b.templates as TemplateEntry[] | undefined) ?? [];

export const bootenvs = defineKind({
  prefix: 'bootenvs',
  key: 'name',
  schema: BootEnvSchema,
  description: 'Boot environments: kernel, initrds, boot params and the files a machine is served',
  indexes: {
    onlyUnknown: { type: 'boolean' },
    templateIds: { type: 'string', multi: true, internal: true, from: (b) => entries(b).flatMap((t) => (t.id ? [t.id] : [])) },
  },
  normalise: (b) => ({ os: {}, initrds: [], bootParams: '', templates: [], requiredParams: [], optionalParams: [], onlyUnknown: false, ...b }),
  check: (b) => checkTemplateEntries(entries(b), 'templates'),
  references: (b) => templateRefs(entries(b), 'templates'),
  async usedBy(name, ctx) {
    return [
      ...(await ctx.findKeys('machines', 'bootEnv', name, 10)).map((k) => `machines/${k}`),
      ...(await ctx.findKeys('stages', 'bootEnv', name, 10)).map((k) => `stages/${k}`),
    ];
  },
});
