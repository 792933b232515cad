// A minimal RFC 1350/2348 TFTP read client for the boot-storm benchmark (real UDP, blksize option,
// one outstanding block): enough to load the server without spawning a process per file. Like every
// real client it sends its last packet again when nothing arrives for `retryMs` (UDP may drop a
// request under a burst of 200 clients); `retransmits` counts those resends.
import { createSocket } from 'node:dgram';

export const tftpStats = { retransmits: 0 };

export function tftpGet(host: string, port: number, path: string, blksize = 1468, timeoutMs = 10_000, retryMs = 1000): Promise<number> {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    let received = 0;
    let expected = 1;
    let size = blksize;
    let last: { packet: Buffer; port: number; address: string } | undefined;
    const send = (packet: Buffer, to: { port: number; address: string }, then?: () => void) => {
      last = { packet, ...to };
      sock.send(packet, to.port, to.address, () => then?.());
    };
    const retry = setInterval(() => {
      if (!last) return;
      tftpStats.retransmits++;
      sock.send(last.packet, last.port, last.address);
    }, retryMs);
    const timer = setTimeout(() => done(new Error(`tftp ${path}: timeout`)), timeoutMs);
    const done = (err?: Error) => {
      clearTimeout(timer);
      clearInterval(retry);
      sock.close();
      err ? reject(err) : resolve(received);
    };
    const ack = (block: number, rinfo: { address: string; port: number }, then?: () => void) => {
      const b = Buffer.alloc(4);
      b.writeUInt16BE(4, 0);
      b.writeUInt16BE(block & 0xffff, 2);
      send(b, rinfo, then);
    };
    sock.on('message', (msg, rinfo) => {
      retry.refresh(); // something arrived: the next resend is a full interval away
      const op = msg.readUInt16BE(0);
      if (op === 6) { // OACK
        const parts = msg.subarray(2).toString('latin1').split('\0');
        const i = parts.indexOf('blksize');
        if (i >= 0) size = Number(parts[i + 1]);
        ack(0, rinfo);
      } else if (op === 3) {
        const block = msg.readUInt16BE(2);
        if (block === (expected & 0xffff)) {
          received += msg.length - 4;
          expected++;
        }
        // the last block's ACK must leave before the socket closes, or the server retransmits and gives up
        if (msg.length - 4 < size) ack(block, rinfo, () => done());
        else ack(block, rinfo);
      } else if (op === 5) {
        done(new Error(`tftp ${path}: error ${msg.readUInt16BE(2)} ${msg.subarray(4).toString().replace(/\0.*/, '')}`));
      }
    });
    send(Buffer.from(`\0\x01${path}\0octet\0blksize\0${blksize}\0`, 'latin1'), { port, address: host });
  });
}
