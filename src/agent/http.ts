// The agent's HTTP client: machine token auth, and retries with capped exponential backoff for
// everything transient (network errors, timeouts, 429, 5xx), so a server restart only delays it.
// Other statuses are returned to the caller, which decides.

export interface AgentResponse {
  status: number;
  headers: Headers;
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

  constructor(readonly endpoint: string, readonly token: string, private readonly log: AgentLog, private readonly requestTimeoutMs = 30_000) {}

  stop(): void {
    this.stopped = true;
    for (const w of this.stopWaiters) w();
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
    }
    for (let attempt = 0; ; attempt++) {
      if (this.stopped) throw new Stopped();
      let why: string;
      let wait = backoffMs(attempt);
      try {
        const res = await fetch(url, { method, headers, body: payload, signal: AbortSignal.timeout(this.requestTimeoutMs) });
        const text = await res.text();
        if (res.status < 500 && res.status !== 429) {
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          return { status: res.status, headers: res.headers, text, json };
        }
        why = `${res.status} ${text.slice(0, 200)}`;
        const retryAfter = Number(res.headers.get('retry-after'));
        if (Number.isFinite(retryAfter) && retryAfter > 0) wait = Math.min(BACKOFF_MAX_MS, retryAfter * 1000);
      } catch (err) {
        const e = err as Error & { cause?: { code?: string; message?: string } };
        why = e.cause?.code ?? e.cause?.message ?? e.message;
      }
      if (attempt === 0 || attempt % 10 === 0) this.log(`${method} ${path}: ${why}; retrying (attempt ${attempt + 1})`);
      await this.sleep(wait);
    }
  }
}
