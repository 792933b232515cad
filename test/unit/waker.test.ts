// The Waker counts as listening only once the server has acknowledged every subscription: events
// published between the socket opening and the acknowledgement are not delivered, so the wake that
// tells the waiter "look now" must come with the acknowledgement, not with the open.
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { Waker } from '../../src/agent/waker.js';

let server: WebSocketServer | undefined;
let waker: Waker | undefined;
afterEach(async () => {
  waker?.close();
  await new Promise((r) => server?.close(r) ?? r(undefined));
});

it('is connected, and wakes its waiter, when the last subscription is acknowledged (not at open)', async () => {
  server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((r) => server!.once('listening', r));
  const registered = new Promise<{ socket: WebSocket; patterns: string[] }>((resolve) => {
    server!.on('connection', (socket) => {
      const patterns: string[] = [];
      socket.on('message', (data) => {
        patterns.push(String(data).replace(/^register /, ''));
        if (patterns.length === 2) resolve({ socket, patterns });
      });
    });
  });
  waker = new Waker(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 'token', ['a.*.1', 'b.*.1']);
  await waker.start();
  const { socket, patterns } = await registered;
  expect(patterns).toEqual(['a.*.1', 'b.*.1']);
  await waker.wait(20); // whatever the open did is spent
  expect(waker.connected).toBe(false);

  const ack = (p: string) => socket.send(JSON.stringify({ type: 'websocket', action: 'register', key: p, object: { ok: true } }));
  ack(patterns[0]!);
  await waker.wait(20);
  expect(waker.connected).toBe(false);
  ack(patterns[1]!);
  await waker.wait(60_000); // resolved by the acknowledgement, long before the test's timeout
  expect(waker.connected).toBe(true);
  expect(waker.connectedSince).toBeTypeOf('number');
});
