// Fuzzing the WebSocket hub (SPEC 7.2, 10): random and adversarial frames never crash the server; every
// frame is answered or the connection is closed with a WebSocket close code, and the hub keeps serving.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
let url: string;
let token: string;
beforeAll(async () => {
  t = await createTestApp();
  const base = await t.app.listen({ port: 0, host: '127.0.0.1' });
  url = `${base.replace('http', 'ws')}/api/v1/ws`;
  token = await t.token('admin');
});
afterAll(async () => t.close());

const RUNS = Number(process.env.FUZZ_RUNS_WS ?? 150);

const frame = fc.oneof(
  fc.string({ maxLength: 300 }),
  fc.constantFrom('register', 'register ', 'register *', 'register *.*', 'register ..', 'register *.*.*', 'register a.b.c.d.e', 'deregister *.*.*',
    'register *.*.* since=', 'register *.*.* since=0-0', 'register *.*.* since=99999999999999-0', 'register *.*.* since=nope', 'register *.*.* extra=1',
    `register ${'x'.repeat(70_000)}`, 'REGISTER *.*.*', '\u0000', '{"register":"*.*.*"}', 'register machine_jobs.*.😀', 'register users.*.*'),
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
);

async function session(frames: (string | Buffer)[]): Promise<{ replies: number; closeCode: number | undefined }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
    let replies = 0;
    let closeCode: number | undefined;
    const timer = setTimeout(() => { ws.terminate(); resolve({ replies, closeCode }); }, 1500);
    ws.on('open', () => { for (const f of frames) ws.send(f); });
    ws.on('message', () => {
      replies++;
      if (replies >= frames.length) { clearTimeout(timer); ws.close(); resolve({ replies, closeCode }); }
    });
    ws.on('close', (code) => { closeCode = code; clearTimeout(timer); resolve({ replies, closeCode }); });
    ws.on('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

describe('WebSocket fuzzing', () => {
  it(`${RUNS} sessions of random frames: answered or closed cleanly, server healthy`, async () => {
    let frames = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(frame, { minLength: 1, maxLength: 6 }), async (batch) => {
        frames += batch.length;
        const { replies, closeCode } = await session(batch);
        // every frame gets an ack or an error event, unless the server closed the connection on purpose (e.g. 1009 too big)
        if (closeCode === undefined) expect(replies).toBeGreaterThanOrEqual(batch.length);
        else expect([1000, 1005, 1008, 1009, 1013]).toContain(closeCode);
      }),
      { numRuns: RUNS },
    );
    console.log(`ws fuzz: ${RUNS} sessions, ${frames} frames`);
    const ok = await session(['register machines.*.*']);
    expect(ok.replies).toBe(1);
    expect((await t.call({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
  }, 300_000);
});
