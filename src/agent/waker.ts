// Wakes a waiting loop when something happens to a machine: a WebSocket on /api/v1/ws registered to
// topic patterns (e.g. machine_jobs.*.<uuid>, machines.*.<uuid>), reconnecting with backoff; while it
// is not connected, waits are plain timeouts (polling). Used by the agent and `ironflow jobs log --follow`.
import { backoffMs } from './http.js';

export interface WakeEvent {
  type: string;
  action: string;
  key: string;
  object: unknown;
}

interface MinimalSocket {
  on(event: 'open' | 'close' | 'error' | 'message', listener: (...args: unknown[]) => void): void;
  send(data: string): void;
  close(): void;
  terminate?: () => void;
}

type SocketCtor = new (url: string, opts?: { handshakeTimeout?: number }) => MinimalSocket;

/** The `ws` package when installed (it comes with @fastify/websocket); undefined means poll only. */
async function socketClass(): Promise<SocketCtor | undefined> {
  try {
    const mod = (await import('ws')) as unknown as { default?: SocketCtor; WebSocket?: SocketCtor };
    return mod.WebSocket ?? mod.default;
  } catch {
    return undefined;
  }
}

export class Waker {
  private poked = false;
  private waiter: (() => void) | undefined;
  private socket: MinimalSocket | undefined;
  private closed = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** true once the server has acknowledged every subscription: from then on, events arrive */
  connected = false;
  /** when `connected` last became true */
  connectedSince: number | undefined;
  private acked = 0;
  /** told about every event received; an event wakes the waiter only when this returns true */
  onEvent: (e: WakeEvent) => boolean = () => true;

  constructor(private readonly endpoint: string, private readonly token: string, private readonly patterns: string[], private readonly log: (m: string) => void = () => {}) {}

  async start(): Promise<void> {
    const Ctor = await socketClass();
    if (!Ctor) {
      this.log('no WebSocket client available; polling');
      return;
    }
    this.connect(Ctor);
  }

  private connect(Ctor: SocketCtor): void {
    if (this.closed) return;
    const url = `${this.endpoint.replace(/^http/, 'ws')}/api/v1/ws?token=${encodeURIComponent(this.token)}`;
    let ws: MinimalSocket;
    try {
      ws = new Ctor(url, { handshakeTimeout: 10_000 });
    } catch (err) {
      this.log(`websocket: ${(err as Error).message}`);
      return this.retry(Ctor);
    }
    this.socket = ws;
    ws.on('open', () => {
      this.acked = 0;
      this.attempt = 0;
      for (const p of this.patterns) ws.send(`register ${p}`);
    });
    ws.on('message', (data: unknown) => {
      let e: WakeEvent;
      try {
        e = JSON.parse(String(data)) as WakeEvent;
      } catch {
        return;
      }
      if (e.type === 'websocket') {
        // register acknowledgements and notices
        if (e.action === 'register' && (e.object as { ok?: boolean } | null)?.ok && ++this.acked === this.patterns.length) {
          this.connected = true;
          this.connectedSince = Date.now();
          this.poke(); // anything may have happened before we were listening: the waiter looks now
        }
        return;
      }
      if (this.onEvent(e)) this.poke();
    });
    ws.on('error', () => undefined); // 'close' follows
    ws.on('close', () => {
      const was = this.connected;
      this.connected = false;
      this.connectedSince = undefined;
      if (this.socket === ws) this.socket = undefined;
      if (was) this.poke();
      this.retry(Ctor);
    });
  }

  private retry(Ctor: SocketCtor): void {
    if (this.closed) return;
    this.reconnectTimer = setTimeout(() => this.connect(Ctor), backoffMs(this.attempt++, 500, 10_000));
  }

  /** Forgets events seen so far (the caller is about to look at the current state). */
  clear(): void {
    this.poked = false;
  }

  poke(): void {
    this.poked = true;
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** Resolves at the next event (or at once if one came since the last wait), or after `ms`. */
  wait(ms: number): Promise<void> {
    if (this.poked || this.closed) {
      this.poked = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        resolve();
      }, ms);
      this.waiter = () => {
        clearTimeout(timer);
        this.poked = false;
        resolve();
      };
    });
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    const ws = this.socket;
    this.socket = undefined;
    try {
      ws?.terminate ? ws.terminate() : ws?.close();
    } catch {
      /* already closed */
    }
    this.poke();
  }
}
