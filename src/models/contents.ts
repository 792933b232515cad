// The contents kind: an installed content pack's metadata (its objects carry `bundle: <name>`).
import { Type } from 'typebox';
import { defineKind, NameSchema, objectSchema } from './common.js';

export const ContentSchema = objectSchema('Content', {
  name: NameSchema,
  version: Type.Optional(Type.String()),
  prerequisites: Type.Optional(Type.Array(Type.String())),
  source: Type.Optional(Type.String({ description: 'where the pack was loaded from' })),
  counts: Type.Optional(Type.Record(Type.String(), Type.Integer(), { description: 'objects provided, per kind' })),
});

export const contents = defineKind({
  prefix: 'contents',
  key: 'name',
  schema: ContentSchema,
  description: 'Installed content packs',
  customWrites: true,
  indexes: {},
});
