// The subscriptions kind: outbound CloudEvents webhooks (SPEC 7.4).
import { Type } from 'typebox';
import { defineKind, NameSchema, objectSchema } from './common.js';

export const SubscriptionSchema = objectSchema('Subscription', {
  name: NameSchema,
  url: Type.String({ format: 'uri', pattern: '^https?://' }),
  topics: Type.Array(Type.String({ minLength: 1, maxLength: 512 }), { minItems: 1, maxItems: 100 }),
  mode: Type.Optional(Type.Union([Type.Literal('structured'), Type.Literal('binary'), Type.Literal('batch')])),
  headers: Type.Optional(Type.Record(Type.String(), Type.Union([
    Type.String(),
    Type.Object({ $sealed: Type.String() }, { additionalProperties: false }),
    Type.Object({ secure: Type.Literal(true) }, { additionalProperties: false }),
  ]), { description: 'sent with every delivery; stored encrypted, returned as {"secure": true}' })),
  enabled: Type.Optional(Type.Boolean()),
  maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
});

export const subscriptions = defineKind({
  prefix: 'subscriptions',
  key: 'name',
  schema: SubscriptionSchema,
  description: 'Webhook subscriptions delivering events as CloudEvents',
  indexes: { enabled: { type: 'boolean' } },
  normalise: (s) => ({ mode: 'structured', headers: {}, enabled: true, maxAttempts: 10, ...s }),
});
