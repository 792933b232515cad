// Who is acting: a user (with a role), a machine (with a machine token), or the server itself.
import type { Role } from './users.js';

export type Principal =
  | { type: 'user'; name: string; role: Role }
  | { type: 'machine'; name: string; uuid: string }
  | { type: 'system'; name: string };

export const SystemPrincipal: Principal = { type: 'system', name: 'ironflow' };

/** `user:alice`, `machine:<uuid>`, `system:ironflow` — as recorded on events. */
export function principalId(p: Principal): string {
  return `${p.type}:${p.type === 'machine' ? p.uuid : p.name}`;
}
