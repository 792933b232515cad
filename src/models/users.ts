// The users kind: API users with a role; the password is write-only and stored as a scrypt hash.
import { Type } from 'typebox';
import { defineKind, objectSchema } from './common.js';

export const Roles = ['admin', 'operator', 'readonly'] as const;
export type Role = (typeof Roles)[number];

export const UserSchema = objectSchema('User', {
  name: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]*$' }),
  role: Type.Union(Roles.map((r) => Type.Literal(r))),
  password: Type.Optional(Type.String({ minLength: 8, maxLength: 1024, description: 'write-only' })),
  passwordHash: Type.Optional(Type.String({ description: 'server-side; never returned' })),
  tokenGeneration: Type.Optional(Type.Integer({ minimum: 0, description: 'bumped to revoke every token of the user' })),
});

export const users = defineKind({
  prefix: 'users',
  key: 'name',
  schema: UserSchema,
  description: 'API users and their roles',
  hidden: ['password', 'passwordHash'],
  indexes: { role: { type: 'string' } },
});
