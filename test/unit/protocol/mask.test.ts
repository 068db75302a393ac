import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { maskInPlace, maskInto, randomMaskKey } from '../../../src/protocol/mask.js';
import { hex } from './helpers.js';
import { MODULE_BYTES_BASE64, simdAvailable } from '../../../src/protocol/mask-simd.js';

/** The definition (RFC 6455 §5.3): octet i XOR key[(i + offset) % 4]. */
function naiveMask(data: Uint8Array, key: Uint8Array, keyOffset = 0): Buffer {
  const out = Buffer.from(data);
  for (let i = 0; i < out.length; i++) out[i]! ^= key[(keyOffset + i) % 4]!;
  return out;
}

function pattern(length: number, seed = 1): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed * 17) & 0xff;
  return out;
}

describe('maskInPlace', () => {
  it('masks the RFC 6455 §5.7 example', () => {
    const data = Buffer.from('Hello');
    maskInPlace(data, hex('37 fa 21 3d'));
    assert.deepEqual(data, hex('7f 9f 4d 51 58'));
  });

  it('matches the definition for every length, memory alignment and key offset', () => {
    const key = hex('a1 b2 c3 d4');
    // Lengths around the 64-byte switch to word-at-a-time, alignments 0-3 of byteOffset.
    for (let length = 0; length <= 140; length++) {
      for (let align = 0; align < 4; align++) {
        for (let keyOffset = 0; keyOffset < 8; keyOffset++) {
          const backing = new Uint8Array(new ArrayBuffer(length + 8));
          const view = backing.subarray(align, align + length);
          view.set(pattern(length, align));
          const before = Buffer.from(backing);
          maskInPlace(view, key, keyOffset);
          assert.deepEqual(Buffer.from(view), naiveMask(pattern(length, align), key, keyOffset), `len ${length} align ${align} off ${keyOffset}`);
          // Bytes outside the view are untouched.
          assert.deepEqual(Buffer.from(backing.subarray(0, align)), before.subarray(0, align));
          assert.deepEqual(Buffer.from(backing.subarray(align + length)), before.subarray(align + length));
        }
      }
    }
  });

  it('masking piecewise with running key offsets equals masking the whole (as the parser does)', () => {
    const key = hex('01 80 ff 7e');
    const whole = pattern(1000);
    const expected = naiveMask(whole, key);
    for (const cut of [1, 3, 63, 64, 65, 127, 500]) {
      const data = Buffer.from(whole);
      for (let at = 0; at < data.length; at += cut) maskInPlace(data.subarray(at, at + cut), key, at);
      assert.deepEqual(data, expected, `pieces of ${cut}`);
    }
  });

  it('is a no-op with an all-zero key', () => {
    const data = pattern(200);
    maskInPlace(data, Buffer.alloc(4));
    assert.deepEqual(data, pattern(200));
  });

  it('masking twice gives back the original', () => {
    const data = pattern(333);
    const key = hex('de ad be ef');
    maskInPlace(data, key, 5);
    assert.notDeepEqual(data, pattern(333));
    maskInPlace(data, key, 5);
    assert.deepEqual(data, pattern(333));
  });
});

describe('maskInto', () => {
  it('writes the masked copy at the offset and leaves the source alone', () => {
    const source = Buffer.from('Hello');
    const output = Buffer.alloc(9, 0xee);
    maskInto(source, hex('37 fa 21 3d'), output, 2);
    assert.deepEqual(source, Buffer.from('Hello'));
    assert.deepEqual(output, hex('ee ee 7f 9f 4d 51 58 ee ee'));
  });
});

describe('randomMaskKey', () => {
  it('returns 4-byte keys that differ from call to call, across pool refills', () => {
    const seen = new Set<string>();
    // 8 KiB pool / 4 bytes = 2048 keys per refill: cross several refills.
    for (let i = 0; i < 5000; i++) {
      const key = randomMaskKey();
      assert.equal(key.length, 4);
      seen.add(key.toString('hex'));
    }
    // 5000 draws from 2^32 keys: a collision or two is possible, a stuck pool is not.
    assert.ok(seen.size > 4990, `only ${seen.size} distinct keys`);
  });

  it('does not hand out the same bytes twice in a row', () => {
    const a = Buffer.from(randomMaskKey());
    const b = Buffer.from(randomMaskKey());
    const c = Buffer.from(randomMaskKey());
    assert.ok(!(a.equals(b) && b.equals(c)));
  });
});

describe('WebAssembly SIMD masking', () => {
  it('the embedded module is mask-simd.wat compiled', async () => {
    const { readFileSync } = await import('node:fs');
    const wabtInit = (await import('wabt')).default;
    const wabt = await wabtInit();
    const source = readFileSync(new URL('../../../src/protocol/mask-simd.wat', import.meta.url), 'utf8');
    const compiled = Buffer.from(wabt.parseWat('mask-simd.wat', source, { simd: true }).toBinary({}).buffer);
    assert.equal(compiled.toString('base64'), MODULE_BYTES_BASE64);
  });

  it('is available on this runtime (Node 20 has WebAssembly SIMD)', () => {
    assert.equal(simdAvailable, true);
  });

  it('agrees with a byte-by-byte reference for sizes, key offsets and unaligned views', () => {
    const key = Buffer.from([0x11, 0xa2, 0x3c, 0xf4]);
    for (const size of [2048, 2049, 4095, 65535, 65536, 65537, 100_003]) {
      for (const viewOffset of [0, 1, 3]) {
        for (const keyOffset of [0, 1, 2, 3]) {
          const backing = Buffer.alloc(size + 8);
          for (let i = 0; i < backing.length; i++) backing[i] = (i * 31 + size) & 0xff;
          const view = backing.subarray(viewOffset, viewOffset + size);
          const expected = Buffer.from(view);
          for (let i = 0; i < size; i++) expected[i]! ^= key[(keyOffset + i) & 3]!;
          maskInPlace(view, key, keyOffset);
          assert.ok(view.equals(expected), `size ${size}, view offset ${viewOffset}, key offset ${keyOffset}`);
        }
      }
    }
  });
});
