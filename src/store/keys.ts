// Every Redis key name Ironflow's store uses. The prefix carries a hash tag so that, on Redis Cluster,
// an object, its indexes and the event stream share one slot and can change in one Lua script.

export interface StoreKeys {
  object(prefix: string, key: string): string;
  keySet(prefix: string): string;
  index(prefix: string, field: string): string;
  unique(prefix: string, field: string): string;
  events(): string;
  /** a machine's own capped timeline stream */
  timeline(machineUuid: string): string;
  prefs(): string;
  /** anything else a module needs, namespaced (e.g. `keys.extra('bmcsim', uuid)`) */
  extra(...parts: string[]): string;
}

/** `base` like `ironflow` becomes `{ironflow}`: the hash tag that pins the store to one cluster slot. */
export function storeKeys(base: string): StoreKeys {
  const p = `{${base}}`;
  return {
    object: (prefix, key) => `${p}:o:${prefix}:${key}`,
    keySet: (prefix) => `${p}:k:${prefix}`,
    index: (prefix, field) => `${p}:i:${prefix}:${field}`,
    unique: (prefix, field) => `${p}:u:${prefix}:${field}`,
    events: () => `${p}:events`,
    timeline: (uuid) => `${p}:tl:${uuid}`,
    prefs: () => `${p}:prefs`,
    extra: (...parts) => `${p}:x:${parts.join(':')}`,
  };
}
