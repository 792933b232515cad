// `ironflow events list|tail` and `ironflow timeline KEY`: the event query API (SPEC 7.3) from the
// command line. `tail` polls the query API with `since` = the newest id seen, following cursors so a
// burst between two polls is printed whole and in order.
import type { ApiClient } from './client.js';
import { CliError } from './client.js';

type Print = (data: unknown) => void;

export interface EventEntry {
  id: string;
  type: string;
  state: string;
  body: unknown;
  createdAt: string;
  machine: string;
}

const enc = (s: string) => encodeURIComponent(s);

export const EVENTS_USAGE = `events:
  events list [--since T|ID] [--until T|ID] [--type PATTERN] [--limit N] [--cursor C] [--machine KEY]
                                                  newest first; T is RFC 3339, ID an event id; the next
                                                  page's cursor is printed on stderr
  events tail [--machine KEY] [--type PATTERN] [--interval SECONDS] [--max N]
                                                  print new events as they happen (oldest first)
  timeline KEY [--since T|ID] [--until T|ID] [--type PATTERN] [--limit N]`;

function query(flags: Record<string, string | undefined>, names: string[]): URLSearchParams {
  const q = new URLSearchParams();
  for (const n of names) if (flags[n] !== undefined) q.set(n, flags[n]!);
  return q;
}

const pathFor = (machine: string | undefined) => (machine ? `/machines/${enc(machine)}/events` : '/events');

/** Every entry newer than `since` (following cursors), oldest first. */
export async function newerThan(api: ApiClient, machine: string | undefined, since: string | undefined, type: string | undefined): Promise<EventEntry[]> {
  const got: EventEntry[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 1000; pages++) {
    const q = new URLSearchParams({ limit: '1000' });
    if (since) q.set('since', since);
    if (type) q.set('type', type);
    if (cursor) q.set('cursor', cursor);
    const res = await api.request('GET', `${pathFor(machine)}?${q}`);
    got.push(...(res.data as EventEntry[]));
    cursor = res.headers.get('x-next-cursor') ?? undefined;
    if (!cursor) break;
  }
  return got.reverse();
}

/** Orders two event ids (`ms-seq`). */
function later(a: string, b: string): boolean {
  const [am = 0n, as = 0n] = a.split('-').map(BigInt);
  const [bm = 0n, bs = 0n] = b.split('-').map(BigInt);
  return am > bm || (am === bm && as > bs);
}

export async function eventsCommand(api: ApiClient, cmd: string, sub: string | undefined, flags: Record<string, string | undefined>, print: Print, out: (s: string) => void, err: (s: string) => void = (s) => process.stderr.write(`${s}\n`)): Promise<void> {
  const newest = async () => ((await api.request('GET', `${pathFor(flags.machine)}?limit=1`)).data as EventEntry[])[0]?.id;
  if (cmd === 'timeline' || sub === 'list') {
    const machine = cmd === 'timeline' ? sub : flags.machine;
    if (cmd === 'timeline' && !machine) throw new CliError('usage: ironflow timeline KEY [--since T|ID] [--until T|ID] [--type PATTERN] [--limit N]', 2);
    const q = query(flags, ['since', 'until', 'type', 'limit', 'cursor']);
    const res = await api.request('GET', `${pathFor(machine)}${q.size ? `?${q}` : ''}`);
    const next = res.headers.get('x-next-cursor');
    print(res.data);
    if (next) err(`more: --cursor ${next}`);
    return;
  }
  if (sub !== 'tail') throw new CliError(`usage: ironflow events list|tail …\n${EVENTS_USAGE}`, 2);
  const intervalMs = Math.max(0.1, Number(flags.interval ?? '1')) * 1000;
  const max = flags.max !== undefined ? Number(flags.max) : Infinity;
  if (!Number.isFinite(intervalMs) || Number.isNaN(max) || max < 1) throw new CliError('--interval and --max take positive numbers', 2);
  // tail shows what happens from now on
  let since = (await newest()) ?? flags.since;
  let shown = 0;
  for (;;) {
    // everything up to `head` is looked at by this round, so a type filter never rescans old entries
    const head = flags.type ? await newest() : undefined;
    for (const e of await newerThan(api, flags.machine, since, flags.type)) {
      out(JSON.stringify(e));
      since = e.id;
      if (++shown >= max) return;
    }
    if (head && (!since || later(head, since))) since = head;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
