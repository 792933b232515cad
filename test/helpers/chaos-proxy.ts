// A TCP forwarder on a stable loopback port in front of one api process slot (the chaos test's "load
// balancer" entry): a restarted api process comes back on a new port, and clients that keep the front
// address (agents, WebSocket clients, user-state posters) reach it again by retrying. While the slot has
// no backend, or the backend refuses, an incoming connection is closed at once (a client sees a reset,
// as with a dead server); when the backend dies, every connection through it is closed.
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface ChaosProxy {
  url: string;
  port: number;
  /** the api port new connections go to (undefined: none, refuse) */
  setBackend(port: number | undefined): void;
  /** connections accepted so far */
  connections(): number;
  close(): Promise<void>;
}

export async function startChaosProxy(): Promise<ChaosProxy> {
  let backend: number | undefined;
  let accepted = 0;
  const open = new Set<Socket>();
  const server: Server = createServer((client) => {
    accepted++;
    open.add(client);
    client.on('close', () => open.delete(client));
    client.on('error', () => client.destroy());
    if (backend === undefined) {
      client.destroy();
      return;
    }
    const upstream = connect({ host: '127.0.0.1', port: backend });
    open.add(upstream);
    upstream.on('close', () => {
      open.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    setBackend(p) {
      backend = p;
    },
    connections: () => accepted,
    async close() {
      for (const s of open) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
