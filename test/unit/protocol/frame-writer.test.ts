import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { encodeFrame, encodeFrameHeader, encodeServerFrame } from '../../../src/protocol/frame-writer.js';
import { Opcode } from '../../../src/protocol/opcode.js';
import { decodeFrames, hex } from './helpers.js';

const KEY = hex('37 fa 21 3d');

function joined(chunks: Buffer[]): Buffer {
  return Buffer.concat(chunks);
}

describe('encodeFrame: RFC 6455 §5.7 examples', () => {
  it('a single-frame unmasked text message', () => {
    assert.deepEqual(joined(encodeFrame(Opcode.Text, Buffer.from('Hello'), true, false, false)), hex('81 05 48 65 6c 6c 6f'));
  });

  it('a single-frame masked text message', () => {
    assert.deepEqual(
      joined(encodeFrame(Opcode.Text, Buffer.from('Hello'), true, false, true, KEY)),
      hex('81 85 37 fa 21 3d 7f 9f 4d 51 58'),
    );
  });

  it('a fragmented unmasked text message', () => {
    assert.deepEqual(joined(encodeFrame(Opcode.Text, Buffer.from('Hel'), false, false, false)), hex('01 03 48 65 6c'));
    assert.deepEqual(joined(encodeFrame(Opcode.Continuation, Buffer.from('lo'), true, false, false)), hex('80 02 6c 6f'));
  });

  it('unmasked ping and masked pong', () => {
    assert.deepEqual(joined(encodeFrame(Opcode.Ping, Buffer.from('Hello'), true, false, false)), hex('89 05 48 65 6c 6c 6f'));
    assert.deepEqual(
      joined(encodeFrame(Opcode.Pong, Buffer.from('Hello'), true, false, true, KEY)),
      hex('8a 85 37 fa 21 3d 7f 9f 4d 51 58'),
    );
  });

  it('256 bytes binary in a single unmasked frame', () => {
    const out = joined(encodeFrame(Opcode.Binary, Buffer.alloc(256, 1), true, false, false));
    assert.deepEqual(out.subarray(0, 4), hex('82 7e 01 00'));
    assert.equal(out.length, 4 + 256);
  });

  it('64 KiB binary in a single unmasked frame', () => {
    const out = joined(encodeFrame(Opcode.Binary, Buffer.alloc(65536, 2), true, false, false));
    assert.deepEqual(out.subarray(0, 10), hex('82 7f 00 00 00 00 00 01 00 00'));
    assert.equal(out.length, 10 + 65536);
  });
});

describe('encodeFrame: lengths', () => {
  const cases: [number, string][] = [
    [0, '82 00'],
    [1, '82 01'],
    [125, '82 7d'],
    [126, '82 7e 00 7e'],
    [127, '82 7e 00 7f'],
    [65535, '82 7e ff ff'],
    [65536, '82 7f 00 00 00 00 00 01 00 00'],
    [65537, '82 7f 00 00 00 00 00 01 00 01'],
  ];
  for (const [length, header] of cases) {
    it(`uses the minimal length encoding for ${length} bytes, unmasked and masked`, () => {
      const payload = Buffer.alloc(length, 0x5a);
      const plain = joined(encodeFrame(Opcode.Binary, payload, true, false, false));
      assert.deepEqual(plain.subarray(0, hex(header).length), hex(header));
      assert.equal(plain.length, hex(header).length + length);

      const masked = joined(encodeFrame(Opcode.Binary, payload, true, false, true, KEY));
      const maskedHeader = hex(header);
      maskedHeader[1]! |= 0x80;
      assert.deepEqual(masked.subarray(0, maskedHeader.length), maskedHeader);
      assert.deepEqual(masked.subarray(maskedHeader.length, maskedHeader.length + 4), KEY);
      const [frame] = decodeFrames(masked);
      assert.deepEqual(frame!.payload, payload);
    });
  }

  it('writes 64-bit lengths of 2^32 and above (header only)', () => {
    assert.deepEqual(encodeFrameHeader(Opcode.Binary, 2 ** 32 + 5, true, false), hex('82 7f 00 00 00 01 00 00 00 05'));
    assert.deepEqual(
      encodeFrameHeader(Opcode.Binary, Number.MAX_SAFE_INTEGER, true, false),
      hex('82 7f 00 1f ff ff ff ff ff ff'),
    );
  });
});

describe('encodeFrame: bits and buffers', () => {
  it('sets FIN, RSV1 and the opcode', () => {
    assert.equal(encodeFrame(Opcode.Text, Buffer.from('x'), true, true, false)[0]![0], 0xc1);
    assert.equal(encodeFrame(Opcode.Binary, Buffer.from('x'), false, true, false)[0]![0], 0x42);
    assert.equal(encodeFrame(Opcode.Continuation, Buffer.from('x'), false, false, false)[0]![0], 0x00);
    assert.equal(encodeFrame(Opcode.Close, Buffer.alloc(0), true, false, false)[0]![0], 0x88);
  });

  it('never modifies the caller payload when masking', () => {
    const payload = Buffer.from('do not touch me, I am shared by a broadcast');
    const copy = Buffer.from(payload);
    encodeFrame(Opcode.Text, payload, true, false, true);
    assert.deepEqual(payload, copy);
    const big = Buffer.alloc(5000, 7);
    encodeFrame(Opcode.Binary, big, true, false, true);
    assert.deepEqual(big, Buffer.alloc(5000, 7));
  });

  it('uses a fresh random key per masked frame', () => {
    const payload = Buffer.from('same payload');
    const a = joined(encodeFrame(Opcode.Text, payload, true, false, true));
    const b = joined(encodeFrame(Opcode.Text, payload, true, false, true));
    assert.notDeepEqual(a.subarray(2, 6), b.subarray(2, 6));
    assert.notDeepEqual(a, b);
    assert.deepEqual(decodeFrames(a)[0]!.payload, payload);
    assert.deepEqual(decodeFrames(b)[0]!.payload, payload);
  });

  it('merges small unmasked frames into one buffer and sends large payloads as they are', () => {
    assert.equal(encodeFrame(Opcode.Binary, Buffer.alloc(1024), true, false, false).length, 1);
    const big = Buffer.alloc(1025, 3);
    const chunks = encodeFrame(Opcode.Binary, big, true, false, false);
    assert.equal(chunks.length, 2);
    assert.equal(chunks[1], big, 'the payload is not copied');
    assert.deepEqual(chunks[0], hex('82 7e 04 01'));
  });

  it('accepts a plain Uint8Array view (large and small)', () => {
    const backing = new Uint8Array(3000).map((_, i) => i & 0xff);
    const view = backing.subarray(7, 2007);
    const [frame] = decodeFrames(joined(encodeFrame(Opcode.Binary, view, true, false, false)));
    assert.deepEqual(frame!.payload, Buffer.from(view));
    const small = backing.subarray(3, 10);
    const [masked] = decodeFrames(joined(encodeFrame(Opcode.Binary, small, true, false, true)));
    assert.deepEqual(masked!.payload, Buffer.from(small));
  });
});

describe('encodeFrameHeader', () => {
  it('writes a masked header with the key', () => {
    assert.deepEqual(encodeFrameHeader(Opcode.Text, 5, true, false, KEY), hex('81 85 37 fa 21 3d'));
    assert.deepEqual(encodeFrameHeader(Opcode.Text, 300, false, true, KEY), hex('41 fe 01 2c 37 fa 21 3d'));
  });
});

describe('encodeServerFrame', () => {
  it('returns one unmasked buffer for any size', () => {
    assert.deepEqual(encodeServerFrame(Opcode.Text, Buffer.from('Hello')), hex('81 05 48 65 6c 6c 6f'));
    const big = Buffer.alloc(70000, 9);
    const out = encodeServerFrame(Opcode.Binary, big, false, true);
    assert.deepEqual(out.subarray(0, 10), hex('42 7f 00 00 00 00 00 01 11 70'));
    assert.deepEqual(out.subarray(10), big);
  });
});
