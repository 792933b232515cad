// The params kind: declares a param's JSON Schema (its `default` is the last-resort value) and secrecy.
import { Type } from 'typebox';
import { defineKind, objectSchema, ParamNameSchema } from './common.js';

export const ParamSchema = objectSchema('Param', {
  name: ParamNameSchema,
  schema: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'JSON Schema for values' })),
  secure: Type.Optional(Type.Boolean()),
});

export const params = defineKind({
  prefix: 'params',
  key: 'name',
  schema: ParamSchema,
  description: 'Param declarations: schema, default and secrecy',
  slashKeys: true,
  indexes: { secure: { type: 'boolean' } },
  normalise: (p) => ({ schema: {}, secure: false, ...p }),
});
