// The CLI's HTTP client: endpoint and token from the environment or `ironflow login`'s file;
// API errors become CliError with the server's message.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1, readonly details: string[] = []) {
    super(message);
  }
}

interface Credentials {
  endpoint: string;
  token: string;
  expiresAt?: string;
}

export function credentialsPath(env: NodeJS.ProcessEnv): string {
  return env.IRONFLOW_CREDENTIALS ?? join(env.XDG_CONFIG_HOME ?? join(homedir(), '.config'), 'ironflow', 'credentials.json');
}

export function saveCredentials(env: NodeJS.ProcessEnv, c: Credentials): string {
  const path = credentialsPath(env);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, `${JSON.stringify(c, null, 2)}\n`, { mode: 0o600 });
  return path;
}

export function forgetCredentials(env: NodeJS.ProcessEnv): boolean {
  const path = credentialsPath(env);
  if (!existsSync(path)) return false;
  rmSync(path);
  return true;
}

function stored(env: NodeJS.ProcessEnv): Partial<Credentials> {
  try {
    return JSON.parse(readFileSync(credentialsPath(env), 'utf8')) as Credentials;
  } catch {
    return {};
  }
}

export class ApiClient {
  readonly endpoint: string;
  private readonly token: string | undefined;

  constructor(env: NodeJS.ProcessEnv, endpointFlag?: string) {
    const saved = stored(env);
    this.endpoint = (endpointFlag ?? env.IRONFLOW_ENDPOINT ?? saved.endpoint ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
    this.token = env.IRONFLOW_TOKEN ?? saved.token;
  }

  /** The Authorization header this client sends (for the WebSocket). */
  authHeaders(): Record<string, string> {
    return this.token ? { authorization: `Bearer ${this.token}` } : {};
  }

  async request(method: string, path: string, body?: unknown, contentType = 'application/json', extraHeaders: Record<string, string> = {}): Promise<{ status: number; headers: Headers; data: unknown }> {
    const headers: Record<string, string> = { accept: 'application/json', ...extraHeaders };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let payload: string | undefined;
    if (body !== undefined) {
      headers['content-type'] = contentType;
      payload = typeof body === 'string' && contentType !== 'application/json' && !contentType.endsWith('+json') ? body : JSON.stringify(body);
    }
    let res: Response;
    try {
      res = await fetch(`${this.endpoint}/api/v1${path}`, { method, headers, body: payload });
    } catch (err) {
      throw new CliError(`cannot reach ${this.endpoint}: ${(err as Error).cause ? String((err as { cause: Error }).cause.message) : (err as Error).message}`);
    }
    const text = await res.text();
    let data: unknown = text;
    try {
      data = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON: keep the text */
    }
    if (!res.ok) {
      const e = data as { code?: string; message?: string; messages?: string[] } | undefined;
      const hint = res.status === 401 ? ' (run `ironflow login` or set IRONFLOW_TOKEN)' : '';
      throw new CliError(`${res.status} ${e?.code ?? ''}: ${e?.message ?? text}${hint}`, 1, (e?.messages ?? []).filter((m) => m !== e?.message));
    }
    return { status: res.status, headers: res.headers, data };
  }
}
