// TFTP packet codec, option negotiation and path normalisation (pure functions, no sockets).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodePacket,
  encodePacket,
  isSupportedMode,
  negotiateOptions,
  normaliseTftpPath,
  type TftpPacket,
} from '../../src/boot/tftp-packets.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const z = (s: string): string => Buffer.from(`${s}\0`).toString('hex');

describe('encodePacket / decodePacket', () => {
  const cases: Array<[string, TftpPacket, Buffer]> = [
    ['RRQ without options', { op: 'RRQ', filename: 'pxelinux.0', mode: 'octet', options: {} }, hex(`0001${z('pxelinux.0')}${z('octet')}`)],
    ['RRQ with options', { op: 'RRQ', filename: 'a/b', mode: 'octet', options: { blksize: '1468', tsize: '0' } },
      hex(`0001${z('a/b')}${z('octet')}${z('blksize')}${z('1468')}${z('tsize')}${z('0')}`)],
    ['WRQ', { op: 'WRQ', filename: 'up', mode: 'netascii', options: {} }, hex(`0002${z('up')}${z('netascii')}`)],
    ['DATA', { op: 'DATA', block: 0xfffe, data: Buffer.from('hi') }, hex('0003fffe6869')],
    ['empty DATA', { op: 'DATA', block: 7, data: Buffer.alloc(0) }, hex('00030007')],
    ['ACK', { op: 'ACK', block: 65535 }, hex('0004ffff')],
    ['ERROR', { op: 'ERROR', code: 2, message: 'access violation' }, hex(`00050002${z('access violation')}`)],
    ['OACK', { op: 'OACK', options: { blksize: '512', windowsize: '8' } }, hex(`0006${z('blksize')}${z('512')}${z('windowsize')}${z('8')}`)],
    ['empty OACK', { op: 'OACK', options: {} }, hex('0006')],
  ];

  it.each(cases)('%s encodes to the wire bytes and back', (_name, packet, wire) => {
    expect(encodePacket(packet).toString('hex')).toBe(wire.toString('hex'));
    expect(decodePacket(wire)).toEqual(packet);
  });

  it.each([
    ['too short', '00'],
    ['unknown opcode', '0009000100'],
    ['opcode 0', '0000'],
    ['RRQ missing mode', `0001${z('file')}`],
    ['RRQ unterminated mode', `0001${z('file')}6f63746574`],
    ['DATA without block', '000300'],
    ['ACK without block', '000400'],
    ['ERROR without code', '0005'],
    ['OACK unterminated', `0006${z('blksize')}353132`],
  ])('rejects %s as malformed', (_name, wire) => {
    expect(decodePacket(hex(wire))).toBeNull();
  });

  it('lower-cases mode and option names, keeps the first of duplicates, ignores dangling names', () => {
    const wire = hex(`0001${z('F')}${z('OcTeT')}${z('BLKSIZE')}${z('1024')}${z('blksize')}${z('8')}${z('')}${z('')}${z('tsize')}`);
    expect(decodePacket(wire)).toEqual({ op: 'RRQ', filename: 'F', mode: 'octet', options: { blksize: '1024' } });
  });

  it('tolerates padding after an ACK and an unterminated ERROR message', () => {
    expect(decodePacket(hex('0004000200000000'))).toEqual({ op: 'ACK', block: 2 });
    expect(decodePacket(hex('000500086e6f'))).toEqual({ op: 'ERROR', code: 8, message: 'no' });
  });

  it('refuses to encode strings containing NUL', () => {
    expect(() => encodePacket({ op: 'ERROR', code: 0, message: 'a\0b' })).toThrow(RangeError);
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 700 }), (bytes) => {
        const p = decodePacket(Buffer.from(bytes));
        expect(p === null || typeof p.op === 'string').toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('isSupportedMode', () => {
  it.each([
    ['octet', true], ['OCTET', true], ['netascii', true], ['mail', false], ['', false], ['binary', false],
  ] as const)('%s → %s', (mode, ok) => {
    expect(isSupportedMode(mode)).toBe(ok);
  });
});

describe('negotiateOptions', () => {
  const size = 100_000;
  it.each([
    ['no options', {}, {}, { accepted: {}, blksize: 512, windowsize: 1, timeoutMs: null }],
    ['blksize accepted', { blksize: '1468' }, {}, { accepted: { blksize: '1468' }, blksize: 1468, windowsize: 1, timeoutMs: null }],
    ['blksize minimum', { blksize: '8' }, {}, { accepted: { blksize: '8' }, blksize: 8, windowsize: 1, timeoutMs: null }],
    ['blksize below 8 ignored', { blksize: '7' }, {}, { accepted: {}, blksize: 512, windowsize: 1, timeoutMs: null }],
    ['blksize clamped to 65464', { blksize: '65535' }, {}, { accepted: { blksize: '65464' }, blksize: 65464, windowsize: 1, timeoutMs: null }],
    ['blksize clamped to the configured max', { blksize: '9000' }, { maxBlksize: 1468 },
      { accepted: { blksize: '1468' }, blksize: 1468, windowsize: 1, timeoutMs: null }],
    ['blksize non-numeric ignored', { blksize: '1k' }, {}, { accepted: {}, blksize: 512, windowsize: 1, timeoutMs: null }],
    ['tsize answered with the real size', { tsize: '0' }, {}, { accepted: { tsize: '100000' }, blksize: 512, windowsize: 1, timeoutMs: null }],
    ['timeout accepted', { timeout: '3' }, {}, { accepted: { timeout: '3' }, blksize: 512, windowsize: 1, timeoutMs: 3000 }],
    ['timeout 255 accepted', { timeout: '255' }, {}, { accepted: { timeout: '255' }, blksize: 512, windowsize: 1, timeoutMs: 255_000 }],
    ['timeout 0 ignored', { timeout: '0' }, {}, { accepted: {}, blksize: 512, windowsize: 1, timeoutMs: null }],
    ['timeout 256 ignored', { timeout: '256' }, {}, { accepted: {}, blksize: 512, windowsize: 1, timeoutMs: null }],
    ['windowsize accepted', { windowsize: '8' }, {}, { accepted: { windowsize: '8' }, blksize: 512, windowsize: 8, timeoutMs: null }],
    ['windowsize clamped to default max 64', { windowsize: '65535' }, {}, { accepted: { windowsize: '64' }, blksize: 512, windowsize: 64, timeoutMs: null }],
    ['windowsize clamped to configured max', { windowsize: '300' }, { maxWindowsize: 200 },
      { accepted: { windowsize: '200' }, blksize: 512, windowsize: 200, timeoutMs: null }],
    ['windowsize 0 ignored', { windowsize: '0' }, {}, { accepted: {}, blksize: 512, windowsize: 1, timeoutMs: null }],
    ['unknown options ignored', { multicast: '', utimeout: '5000', rollover: '0' }, {}, { accepted: {}, blksize: 512, windowsize: 1, timeoutMs: null }],
    ['everything at once', { blksize: '1428', tsize: '0', timeout: '2', windowsize: '8' }, {},
      { accepted: { blksize: '1428', tsize: '100000', timeout: '2', windowsize: '8' }, blksize: 1428, windowsize: 8, timeoutMs: 2000 }],
  ] as const)('%s', (_name, requested, limits, want) => {
    expect(negotiateOptions({ ...requested }, size, limits)).toEqual(want);
  });

  it('omits tsize for an empty file (curl rejects "tsize 0" in an OACK)', () => {
    expect(negotiateOptions({ tsize: '0', blksize: '512' }, 0).accepted).toEqual({ blksize: '512' });
  });

  it('keeps a nonsensical configured max inside the protocol range', () => {
    expect(negotiateOptions({ blksize: '100000', windowsize: '5' }, 1, { maxBlksize: 1e9, maxWindowsize: 0 })).toMatchObject({
      blksize: 65464,
      windowsize: 1,
    });
  });
});

describe('normaliseTftpPath', () => {
  it.each([
    ['pxelinux.0', 'pxelinux.0'],
    ['/etc/passwd', 'etc/passwd'], // fine: resolved under the tree root, not the host's /
    ['//boot//x86_64///grubx64.efi', 'boot/x86_64/grubx64.efi'],
    ['\\boot\\bootx64.efi', 'boot/bootx64.efi'],
    ['a/./b/', 'a/b'],
    ['..foo/bar..', '..foo/bar..'],
    ['../x', null],
    ['a/../../x', null],
    ['a/..', null],
    ['..\\x', null],
    ['a\\..\\..\\x', null],
    ['/../../etc/passwd', null],
    ['..', null],
    ['pxe\0linux', null],
    ['', null],
    ['/', null],
    ['//./', null],
  ])('%j → %j', (raw, want) => {
    expect(normaliseTftpPath(raw)).toBe(want);
  });

  it('never yields a path with .., empty segments, backslashes or a leading slash', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z./\\\0]{0,24}$/), (raw) => {
        const p = normaliseTftpPath(raw);
        if (p === null) return;
        expect(p.split('/')).not.toContain('..');
        expect(p.split('/')).not.toContain('');
        expect(p).not.toMatch(/[\\\0]/);
      }),
      { numRuns: 3000 },
    );
  });
});
