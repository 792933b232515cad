// Event type strings in one place: `{prefix}.{action}.{key}` (SPEC 7.1) and the topic patterns clients register.

export interface EventLike {
  type: string;
  action: string;
  key: string;
}

export function topic(e: EventLike): string {
  return `${e.type}.${e.action}.${e.key}`;
}

/** A pattern `type.action.key` with `*` for any part; keys may contain dots, so split on the first two only. */
export function parsePattern(pattern: string): [string, string, string] | undefined {
  const first = pattern.indexOf('.');
  const second = first < 0 ? -1 : pattern.indexOf('.', first + 1);
  if (first <= 0 || second <= first + 1 || second === pattern.length - 1) return undefined;
  return [pattern.slice(0, first), pattern.slice(first + 1, second), pattern.slice(second + 1)];
}

export function matchesPattern(pattern: [string, string, string], e: EventLike): boolean {
  const [t, a, k] = pattern;
  return (t === '*' || t === e.type) && (a === '*' || a === e.action) && (k === '*' || k === e.key);
}
