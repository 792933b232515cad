// The templates kind: Handlebars sources, each also a partial by its id.
import { Type } from 'typebox';
import { defineKind, objectSchema } from './common.js';

export const TemplateSchema = objectSchema('Template', {
  id: Type.String({ minLength: 1, maxLength: 255, pattern: '^[^\\x00-\\x1f:]+$' }),
  contents: Type.String({ maxLength: 1_000_000 }),
});

export const templates = defineKind({
  prefix: 'templates',
  key: 'id',
  schema: TemplateSchema,
  description: 'Handlebars templates used by bootenvs and tasks',
  slashKeys: true,
  indexes: {},
  async usedBy(id, ctx) {
    return (await ctx.findKeys('bootenvs', 'templateIds', id, 10)).map((k) => `bootenvs/${k}`)
      .concat((await ctx.findKeys('tasks', 'templateIds', id, 10)).map((k) => `tasks/${k}`));
  },
});
