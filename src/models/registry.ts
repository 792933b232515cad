// Every kind Ironflow stores, by prefix: routes, the store, content loading and the CLI iterate this.
import { bootenvs } from './bootenvs.js';
import type { KindDef } from './common.js';
import { contents } from './contents.js';
import { jobs } from './jobs.js';
import { machines } from './machines.js';
import { params } from './params.js';
import { profiles } from './profiles.js';
import { stages } from './stages.js';
import { subscriptions } from './subscriptions.js';
import { tasks } from './tasks.js';
import { templates } from './templates.js';
import { users } from './users.js';
import { workflows } from './workflows.js';

export const Kinds: readonly KindDef[] = [
  machines, profiles, params, bootenvs, templates, tasks, stages, workflows, jobs, contents, subscriptions, users,
];

const byPrefix = new Map(Kinds.map((k) => [k.prefix, k]));

export function kindOf(prefix: string): KindDef | undefined {
  return byPrefix.get(prefix);
}

export function mustKind(prefix: string): KindDef {
  const k = byPrefix.get(prefix);
  if (!k) throw new Error(`unknown kind ${prefix}`);
  return k;
}

/** Kinds a content pack may provide, in load order (dependencies first). */
export const ContentKinds = ['params', 'templates', 'profiles', 'bootenvs', 'tasks', 'stages', 'workflows'] as const;
