// The agent's HTTP client: machine token auth, and retries with capped exponential backoff for
// everything transient (network errors, timeouts, 429, 5xx), so a server restart only delays it.
// Other statuses are returned to the caller, which decides. Requests go over node:http(s) with a
// keep-alive connection pool (lighter than fetch: the agent makes five calls per job).
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

/** Response headers by (case-insensitive) name. */
export interface ResponseHeaders {
  get(name: string): string | null;
}

export interface AgentResponse {
  status: number;
  headers: ResponseHeaders;
  text: string;
  /** the body as JSON, or undefined when it is not JSON */
  json: unknown;
}

export interface AgentLog {
  (msg: string): void;
}

export const BACKOFF_BASE_MS = 250;
export const BACKOFF_MAX_MS = 15_000;

export function backoffMs(attempt: number, base = BACKOFF_BASE_MS, max = BACKOFF_MAX_MS): number {
  const exp = Math.min(max, base * 2 ** Math.min(attempt, 20));
  return Math.round(exp / 2 + Math.random() * (exp / 2));
}

export class Stopped extends Error {
  constructor() {
    super('the agent is stopping');
  }
}

export class AgentHttp {
  private stopped = false;
  private readonly stopWaiters = new Set<() => void>();

  private readonly secure: boolean;
  private readonly pool: HttpAgent;

  constructor(readonly endpoint: string, readonly token: string, private readonly log: AgentLog, private readonly requestTimeoutMs = 30_000) {
    this.secure = new URL(endpoint).protocol === 'https:';
    this.pool = this.secure ? new HttpsAgent({ keepAlive: true, maxSockets: 4 }) : new HttpAgent({ keepAlive: true, maxSockets: 4 });
  }

  stop(): void {
    this.stopped = true;
    for (const w of this.stopWaiters) w();
    this.pool.destroy();
  }

  /** One request and its whole body; rejects on network errors and after requestTimeoutMs. */
  private send(method: string, url: string, headers: Record<string, string>, payload: string | Buffer | undefined): Promise<{ status: number; headers: IncomingHttpHeaders; text: string }> {
    return new Promise((resolve, reject) => {
      const req = (this.secure ? httpsRequest : httpRequest)(url, { method, headers, agent: this.pool }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
      });
      const timer = setTimeout(() => req.destroy(Object.assign(new Error(`no response within ${this.requestTimeoutMs} ms`), { code: 'TIMEOUT' })), this.requestTimeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      req.end(payload);
    });
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Sleeps, waking early when the agent stops. */
  sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.stopWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.stopWaiters.add(done);
    });
  }

  /** One API call (`path` under /api/v1), retried until it gets a non-transient answer or the agent stops. */
  async call(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<AgentResponse> {
    const url = `${this.endpoint}/api/v1${path}`;
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, accept: 'application/json' };
    let payload: string | Buffer | undefined;
    if (body !== undefined) {
      headers['content-type'] = contentType;
      payload = Buffer.isBuffer(body) ? body : JSON.stringify(body);
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    for (let attempt = 0; ; attempt++) {
      if (this.stopped) throw new Stopped();
      let why: string;
      let wait = backoffMs(attempt);
      try {
        const res = await this.send(method, url, headers, payload);
        const text = res.text;
        const got: ResponseHeaders = { get: (name) => [res.headers[name.toLowerCase()] ?? null].flat().join(', ') || null };
        if (res.status < 500 && res.status !== 429) {
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          return { status: res.status, headers: got, text, json };
        }
        why = `${res.status} ${text.slice(0, 200)}`;
        const retryAfter = Number(got.get('retry-after'));
        if (Number.isFinite(retryAfter) && retryAfter > 0) wait = Math.min(BACKOFF_MAX_MS, retryAfter * 1000);
      } catch (err) {
        const e = err as Error & { code?: string };
        why = e.code ?? e.message;
      }
      if (attempt === 0 || attempt % 10 === 0) this.log(`${method} ${path}: ${why}; retrying (attempt ${attempt + 1})`);
      await this.sleep(wait);
    }
  }
}
