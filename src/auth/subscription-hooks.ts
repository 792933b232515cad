// Subscription headers (e.g. a Direktiv token) are secrets: sealed on write; a {"secure": true}
// placeholder sent back by a client keeps the stored value.
import { AppError } from '../errors.js';
import type { StoredObject } from '../models/common.js';
import { isPlaceholder, isSealed } from '../models/sealed.js';
import type { KindHooks } from '../store/objects.js';
import type { SecretBox } from './secrets.js';

export function subscriptionHooks(secrets: SecretBox): KindHooks {
  return {
    async beforeWrite(next: StoredObject, cur: StoredObject | undefined): Promise<StoredObject> {
      const headers = (next.headers as Record<string, unknown> | undefined) ?? {};
      const stored = (cur?.headers as Record<string, unknown> | undefined) ?? {};
      const sealed: Record<string, unknown> = {};
      for (const [name, value] of Object.entries(headers)) {
        if (isSealed(value)) sealed[name] = value;
        else if (isPlaceholder(value)) {
          if (!isSealed(stored[name])) throw new AppError('INVALID', `headers/${name}: {"secure": true} stands for a stored value; there is none`, { kind: 'subscriptions', key: String(next.name) });
          sealed[name] = stored[name];
        } else if (typeof value === 'string') sealed[name] = secrets.seal(value);
        else throw new AppError('INVALID', `headers/${name}: must be a string`, { kind: 'subscriptions', key: String(next.name) });
      }
      return { ...next, headers: sealed };
    },
  };
}
