// The `ironflow` client commands (SPEC 11): parse, call the API, print. No domain logic here.
import { readFileSync, writeFileSync } from 'node:fs';
import YAML from 'yaml';
import { packFromBundle, packToBundle, readPackDir, writePackDir } from '../content/pack.js';
import { Kinds } from '../models/registry.js';
import type { Args } from './args.js';
import { bmcCommand } from './bmc.js';
import { ApiClient, CliError, forgetCredentials, saveCredentials } from './client.js';
import { eventsCommand, EVENTS_USAGE } from './events.js';
import { jobsLog, JOBS_USAGE } from './jobs.js';
import { render } from './output.js';

type Out = (s: string) => void;

const CLI_KINDS = new Set(Kinds.map((k) => k.prefix).filter((p) => p !== 'contents'));
const LIST_FLAGS = new Set(['limit', 'offset', 'sort', 'reverse', 'slim']);

export const USAGE = `usage: ironflow <command> [args] [-o json|table] [--endpoint URL]

server:
  serve [--role all|api|worker] [--port N] ...   run Ironflow (see README for every setting)

session:
  login [--username NAME] [--password PW]        get a token (password also from IRONFLOW_PASSWORD)
  logout

objects (${[...CLI_KINDS].join(', ')}):
  KIND list [field=value|field=Op(args) ...] [--limit N] [--offset N] [--sort F] [--reverse]
  KIND show KEY                                   KEY may be {index}:{value}, e.g. name:node1
  KIND create JSON|@file|-
  KIND update KEY JSON|@file|-                    merge patch (RFC 7396)
  KIND patch KEY JSON|@file|-                     JSON Patch (RFC 6902) operations
  KIND destroy KEY
  machines params KEY [get NAME|set NAME VALUE|delete NAME] [--aggregate]
  machines workflow KEY NAME                      set (or with "" clear) the workflow
  machines run KEY                                make the machine runnable
  prefs [list|set NAME=VALUE ...]

BMC (waits for the outcome; --wait 0 returns the queued request):
  power KEY on|off|cycle|reset|soft|status [--wait SECONDS]
  bootdev KEY pxe|disk|cdrom|bios|usb [--persistent] [--efi] [--wait SECONDS]
  bmc KEY list | show ID | reset [warm|cold]       BMC requests of a machine, newest first

${EVENTS_USAGE}

${JOBS_USAGE}

agent (runs on the machine):
  agent --endpoint URL --machine UUID --token TOKEN [--work-dir DIR] [--reboot-command CMD] [--poweroff-command CMD]

content:
  content bundle DIR [FILE]                       pack folder → one YAML/JSON bundle (stdout without FILE)
  content unbundle FILE DIR                       bundle → pack folder
  content upload FILE|DIR                         install or upgrade a pack on the server
  content list | show NAME | destroy NAME`;

/** Reads a JSON/YAML argument: inline text, @file, or - for stdin. */
function readInput(arg: string | undefined, what: string): unknown {
  if (arg === undefined) throw new CliError(`missing ${what} (inline JSON, @file or -)`, 2);
  const text = arg === '-' ? readFileSync(0, 'utf8') : arg.startsWith('@') ? readFileSync(arg.slice(1), 'utf8') : arg;
  try {
    return YAML.parse(text);
  } catch (err) {
    throw new CliError(`${what} is not valid JSON or YAML: ${(err as Error).message}`, 2);
  }
}

const enc = (s: string) => encodeURIComponent(s);
const keyPath = (prefix: string, key: string) => (prefix === 'params' || prefix === 'templates' ? key.split('/').map(enc).join('/') : enc(key));

function scalar(v: string): unknown {
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
}

export async function runCli(args: Args, env: NodeJS.ProcessEnv, out: Out): Promise<void> {
  const [cmd, sub, ...rest] = args.positional;
  const fmt = args.flags.output;
  const print = (data: unknown) => out(render(data, fmt));
  if (!cmd || cmd === 'help' || args.flags.help) return out(USAGE);
  const client = () => new ApiClient(env, args.flags.endpoint);

  if (cmd === 'login') {
    const api = new ApiClient({ ...env, IRONFLOW_TOKEN: '' }, args.flags.endpoint);
    const username = args.flags.username ?? sub ?? 'admin';
    const password = args.flags.password ?? env.IRONFLOW_PASSWORD;
    if (!password) throw new CliError('give the password with --password or IRONFLOW_PASSWORD', 2);
    const { data } = await api.request('POST', '/auth/token', { username, password });
    const t = data as { token: string; expiresAt: string };
    const path = saveCredentials(env, { endpoint: api.endpoint, token: t.token, expiresAt: t.expiresAt });
    return out(`logged in to ${api.endpoint} as ${username} until ${t.expiresAt} (token in ${path})`);
  }
  if (cmd === 'logout') return out(forgetCredentials(env) ? 'logged out' : 'not logged in');
  if (cmd === 'prefs') return prefs(client(), sub, rest, print);
  if (cmd === 'content') return content(client(), sub, rest, print, out);
  if (cmd === 'power' || cmd === 'bootdev' || cmd === 'bmc') return bmcCommand(client(), cmd, args.positional.slice(1), args.flags, print);
  if (cmd === 'events' || cmd === 'timeline') return eventsCommand(client(), cmd, sub, args.flags, print, out);
  if (cmd === 'jobs' && sub === 'log') return jobsLog(env, args.flags.endpoint, rest, args.flags);
  if (!CLI_KINDS.has(cmd)) throw new CliError(`unknown command "${cmd}"\n${USAGE}`, 2);
  const api = client();
  const base = `/${cmd}`;
  const [key] = rest;
  const needKey = () => {
    if (!key) throw new CliError(`usage: ironflow ${cmd} ${sub} KEY`, 2);
    return `${base}/${keyPath(cmd, key)}`;
  };
  switch (sub) {
    case 'list': {
      const q = new URLSearchParams();
      for (const f of rest) {
        const i = f.indexOf('=');
        if (i <= 0) throw new CliError(`filters look like field=value or field=Op(args), got "${f}"`, 2);
        q.append(f.slice(0, i), f.slice(i + 1));
      }
      for (const [k, v] of Object.entries(args.flags)) if (LIST_FLAGS.has(k) && v !== undefined) q.set(k, v);
      return print((await api.request('GET', `${base}${q.size ? `?${q}` : ''}`)).data);
    }
    case 'show': return print((await api.request('GET', needKey())).data);
    case 'create': return print((await api.request('POST', base, readInput(rest[0], 'object'))).data);
    case 'update': return print((await api.request('PATCH', needKey(), readInput(rest[1], 'changes'), 'application/merge-patch+json')).data);
    case 'patch': return print((await api.request('PATCH', needKey(), readInput(rest[1], 'patch'), 'application/json-patch+json')).data);
    case 'destroy': return print((await api.request('DELETE', needKey())).data);
    case 'params': return params(api, cmd, rest, args, print);
    case 'workflow':
      if (cmd !== 'machines' || rest[1] === undefined) throw new CliError('usage: ironflow machines workflow KEY NAME', 2);
      return print((await api.request('PATCH', needKey(), { workflow: rest[1] }, 'application/merge-patch+json')).data);
    case 'run':
      if (cmd !== 'machines') throw new CliError('usage: ironflow machines run KEY', 2);
      return print((await api.request('PATCH', needKey(), { runnable: true }, 'application/merge-patch+json')).data);
    default:
      throw new CliError(`usage: ironflow ${cmd} list|show|create|update|patch|destroy`, 2);
  }
}

async function params(api: ApiClient, prefix: string, rest: string[], args: Args, print: (d: unknown) => void): Promise<void> {
  const [key, action, name, value] = rest;
  if (!key) throw new CliError(`usage: ironflow ${prefix} params KEY [get NAME|set NAME VALUE|delete NAME]`, 2);
  const base = `/${prefix}/${enc(key)}/params`;
  const agg = args.flags.aggregate ? '?aggregate=true' : '';
  const one = () => {
    if (!name) throw new CliError(`usage: ironflow ${prefix} params KEY ${action} NAME`, 2);
    return `${base}/${name.split('/').map(enc).join('/')}`;
  };
  switch (action) {
    case undefined: return print((await api.request('GET', `${base}${agg}`)).data);
    case 'get': return print((await api.request('GET', `${one()}${agg}`)).data);
    case 'set':
      if (value === undefined) throw new CliError(`usage: ironflow ${prefix} params KEY set NAME VALUE`, 2);
      return print((await api.request('PUT', one(), scalar(value))).data);
    case 'delete': return print((await api.request('DELETE', one())).data);
    default: throw new CliError(`unknown params action "${action}" (get, set, delete)`, 2);
  }
}

async function prefs(api: ApiClient, sub: string | undefined, rest: string[], print: (d: unknown) => void): Promise<void> {
  if (sub === undefined || sub === 'list') return print((await api.request('GET', '/prefs')).data);
  if (sub !== 'set' || rest.length === 0) throw new CliError('usage: ironflow prefs [list|set NAME=VALUE ...]', 2);
  const body = Object.fromEntries(rest.map((kv) => {
    const i = kv.indexOf('=');
    if (i <= 0) throw new CliError(`expected NAME=VALUE, got "${kv}"`, 2);
    return [kv.slice(0, i), kv.slice(i + 1)];
  }));
  return print((await api.request('POST', '/prefs', body)).data);
}

async function content(api: ApiClient, sub: string | undefined, rest: string[], print: (d: unknown) => void, out: Out): Promise<void> {
  const [a, b] = rest;
  const bundleOf = (path: string) => {
    try {
      return packToBundle(readPackDir(path));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'ENOTDIR') throw err;
      return readInput(`@${path}`, 'bundle');
    }
  };
  switch (sub) {
    case 'bundle': {
      if (!a) throw new CliError('usage: ironflow content bundle DIR [FILE]', 2);
      const bundle = packToBundle(readPackDir(a));
      const text = b?.endsWith('.json') ? JSON.stringify(bundle, null, 2) : YAML.stringify(bundle);
      if (b) writeFileSync(b, text);
      return b ? out(`wrote ${b}`) : out(text);
    }
    case 'unbundle': {
      if (!a || !b) throw new CliError('usage: ironflow content unbundle FILE DIR', 2);
      const files = writePackDir(packFromBundle(readInput(`@${a}`, 'bundle'), a), b);
      return out(`wrote ${files.length} files under ${b}`);
    }
    case 'upload':
      if (!a) throw new CliError('usage: ironflow content upload FILE|DIR', 2);
      return print((await api.request('POST', '/contents', bundleOf(a))).data);
    case 'list': return print((await api.request('GET', '/contents')).data);
    case 'show': return print((await api.request('GET', `/contents/${enc(a ?? '')}`)).data);
    case 'destroy': return print((await api.request('DELETE', `/contents/${enc(a ?? '')}`)).data);
    default: throw new CliError('usage: ironflow content bundle|unbundle|upload|list|show|destroy', 2);
  }
}
