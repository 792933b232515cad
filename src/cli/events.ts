// `ironflow events list|tail` and `ironflow timeline KEY`: the query API (SPEC 7.3) and, for `tail`,
// the live WebSocket (SPEC 7.2) from the command line.
import WebSocket from 'ws';
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
  events tail [--machine KEY] [--type PATTERN] [--max N]
                                                  follow events live over the WebSocket (JSON lines)
  timeline KEY [--since T|ID] [--until T|ID] [--type PATTERN] [--limit N]`;

function query(flags: Record<string, string | undefined>, names: string[]): URLSearchParams {
  const q = new URLSearchParams();
  for (const n of names) if (flags[n] !== undefined) q.set(n, flags[n]!);
  return q;
}

const pathFor = (machine: string | undefined) => (machine ? `/machines/${enc(machine)}/events` : '/events');

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
  const max = flags.max !== undefined ? Number(flags.max) : Infinity;
  if (Number.isNaN(max) || max < 1) throw new CliError('--max takes a positive number', 2);
  const machine = flags.machine ? String(((await api.request('GET', `/machines/${enc(flags.machine)}`)).data as { uuid: string }).uuid) : undefined;
  await tail(api, { machine, type: flags.type, max }, out, err);
}

/** The entry type `list` filters on: a timeline entry's own type (`user.1000`), else `{prefix}.{action}`. */
export function entryType(e: { type: string; action: string }): string {
  return e.type === 'timeline' ? e.action : `${e.type}.${e.action}`;
}

function globMatch(pattern: string, value: string): boolean {
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(value);
}

/**
 * Follows events live over the WebSocket (SPEC 7.2): registers `*.*.<machine>` (or everything), prints
 * each matching event as a JSON line, and after a dropped connection registers again with
 * `since=<last id>` so nothing is missed or repeated.
 */
async function tail(api: ApiClient, o: { machine?: string; type?: string; max: number }, out: (s: string) => void, err: (s: string) => void): Promise<void> {
  const pattern = `*.*.${o.machine ?? '*'}`;
  let last: string | undefined;
  let shown = 0;
  for (let attempt = 0; ; attempt++) {
    const done = await new Promise<boolean>((resolve) => {
      const ws = new WebSocket(`${api.endpoint.replace(/^http/, 'ws')}/api/v1/ws`, { headers: api.authHeaders() });
      ws.on('open', () => {
        attempt = 0;
        ws.send(`register ${pattern}${last ? ` since=${last}` : ''}`);
      });
      ws.on('message', (data) => {
        const e = JSON.parse(String(data)) as { id: string; type: string; action: string; object?: { ok?: boolean; error?: string } };
        if (e.type === 'websocket') {
          if (e.object?.ok === false) err(`ironflow: ${e.object.error ?? 'refused'}`);
          return;
        }
        last = e.id;
        if (o.type && !globMatch(o.type, entryType(e))) return;
        out(JSON.stringify(e));
        if (++shown >= o.max) {
          ws.close();
          resolve(true);
        }
      });
      ws.on('unexpected-response', (_req, res) => {
        err(`ironflow: the server refused the WebSocket (${res.statusCode})${res.statusCode === 401 ? ': run `ironflow login`' : ''}`);
        resolve(true);
      });
      ws.on('error', () => { /* reported by close; we reconnect */ });
      ws.on('close', () => resolve(shown >= o.max));
    });
    if (done) return;
    const waitMs = Math.min(10_000, 250 * 2 ** Math.min(attempt, 6));
    err(`ironflow: connection lost, reconnecting in ${(waitMs / 1000).toFixed(1)} s`);
    await new Promise((r) => setTimeout(r, waitMs));
  }
}
