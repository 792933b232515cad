// A process whose event tail falls further behind than the stream's cap loses the trimmed events. The
// tail notices (XINFO max-deleted-entry-id past its position) and what is kept current from events is
// rebuilt: the object cache starts over and the boot path index is built again from the store.
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { SystemPrincipal } from '../../src/models/principal.js';
import { compareIds } from '../../src/store/stream-ids.js';
import { createTestApp, peerApp, type PeerApp, type TestApp } from '../helpers/app.js';
import { repoRoot } from '../helpers/render-content.js';

const MAXLEN = 1000;
let writer: TestApp;
let reader: PeerApp;
/** while set, the reader's event tail waits before each read */
let gate: Promise<void> | undefined;
let open: () => void = () => undefined;

beforeAll(async () => {
  writer = await createTestApp({ content: [join(repoRoot, 'content')], env: { IRONFLOW_EVENTS_MAXLEN: String(MAXLEN) } });
  reader = await peerApp(writer, { env: { IRONFLOW_EVENTS_MAXLEN: String(MAXLEN) }, tailRead: async (read) => { await gate; return read(); } });
});
afterAll(async () => {
  open();
  await reader?.close();
  await writer?.close();
});

const opts = { principal: SystemPrincipal };
const slot = async () => {
  const hit = await reader.services.params.lookup({ prefix: 'machines', obj: { uuid: '00000000-0000-4000-8000-0000000000aa', profiles: ['gap-rack'] } }, 'gap/slot');
  return hit.found ? hit.value : undefined;
};
const bootFile = (app: FastifyInstance, path: string) => app.inject({ method: 'GET', url: `/boot/${path}`, headers: { host: '10.0.0.1:8080' } });

it('rebuilds the object cache and the boot path index after its tail lost trimmed events', async () => {
  await writer.services.store.create('profiles', { name: 'gap-rack', params: { 'gap/slot': 0 } }, opts);
  await reader.app.bootFiles.sync.ready();
  // cached: once the tail has caught up (an event after its start), a lookup reads no profile from Redis
  expect(await slot()).toBe(0); // the reader's cache starts listening
  await writer.services.bus.publish({ type: 'test', action: 'tick', key: '0', object: null, principal: SystemPrincipal });
  const reads = vi.spyOn(reader.services.store.backend, 'getMany');
  try {
    await vi.waitFor(async () => {
      reads.mockClear();
      expect(await slot()).toBe(0);
      expect(reads.mock.calls.filter(([prefix]) => prefix === 'profiles')).toEqual([]);
    }, { timeout: 5000, interval: 20 });
  } finally {
    reads.mockRestore();
  }

  // the reader's tail stops reading (the read in flight returns within its 1 s block)
  gate = new Promise((r) => (open = r));
  await new Promise((r) => setTimeout(r, 1200));
  const before = (await writer.redis.xrevrange(writer.services.keys.events(), '+', '-', 'COUNT', 1))[0]![0];
  await writer.services.store.update('profiles', 'gap-rack', (p) => ({ ...p, params: { 'gap/slot': 1 } }), opts);
  await writer.services.store.create('machines', { name: 'gap-m', hardwareAddrs: ['52:54:00:00:9a:01'], bootEnv: 'local' }, opts);
  let last = '';
  for (let i = 0; i < 3 * MAXLEN; i++) last = await writer.services.bus.publish({ type: 'test', action: 'filler', key: String(i), object: null, principal: SystemPrincipal });
  // the premise: the profile's and the machine's events are trimmed from the stream
  const first = (await writer.redis.xrange(writer.services.keys.events(), '-', '+', 'COUNT', 1))[0]![0];
  expect(compareIds(first, before)).toBeGreaterThan(0);
  expect((await writer.redis.xrange(writer.services.keys.events(), `(${before}`, '+', 'COUNT', 1))[0]![1]).toContain('filler');
  const applied = vi.spyOn(reader.services.objectCache, 'apply');
  try {
    open();
    gate = undefined;
    await vi.waitFor(() => expect(applied.mock.calls.some(([e]) => e.id === last)).toBe(true), { timeout: 10_000 });
  } finally {
    applied.mockRestore();
  }
  expect(await slot()).toBe(1);
  await vi.waitFor(async () => expect((await bootFile(reader.app, '52:54:00:00:9a:01.ipxe')).statusCode).toBe(200), { timeout: 10_000 });
  expect((await bootFile(reader.app, '52:54:00:00:9a:01.ipxe')).body).toContain('gap-m boots from local disk');
});
