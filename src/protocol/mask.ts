/**
 * Masking (RFC 6455 §5.3): XOR of the payload with a 4-byte key, octet i with
 * key[i % 4]. Large payloads go through WebAssembly SIMD (mask-simd.ts),
 * the rest 32 bits at a time where the buffer is aligned for it.
 */
import { randomFillSync } from 'node:crypto';
import { maskSimd } from './mask-simd.js';

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** From this payload size on, masking goes through WebAssembly SIMD (where available). */
const SIMD_THRESHOLD = 2048;
/**
 * Copying out of WebAssembly memory into a large allocation (an ArrayBuffer
 * over 128 KiB here, Node 20 / V8 11.3) runs at about a twentieth of memcpy
 * speed, which would lose more than SIMD wins. Socket reads come in buffers of
 * at most 64 KiB, so received payloads take the SIMD path; a client's frame of
 * a large message is masked in JavaScript.
 */
const SIMD_MAX_BACKING = 128 * 1024;

/** XOR `data` in place with `key` (4 bytes), key byte `keyOffset % 4` applying to data[0]. */
export function maskInPlace(data: Uint8Array, key: Uint8Array, keyOffset = 0): void {
  const len = data.length;
  const k0 = key[keyOffset & 3]!;
  const k1 = key[(keyOffset + 1) & 3]!;
  const k2 = key[(keyOffset + 2) & 3]!;
  const k3 = key[(keyOffset + 3) & 3]!;
  if ((k0 | k1 | k2 | k3) === 0) return;
  if (
    len >= SIMD_THRESHOLD &&
    data.buffer.byteLength <= SIMD_MAX_BACKING &&
    maskSimd(data, (k0 | (k1 << 8) | (k2 << 16) | (k3 << 24)) >>> 0)
  ) {
    return;
  }
  let i = 0;
  if (len >= 64) {
    // Bytes up to a 4-byte boundary of the memory one at a time, then whole
    // words, eight per step (unrolled: about twice the speed of a plain loop).
    const lead = (4 - (data.byteOffset & 3)) & 3;
    for (; i < lead; i++) data[i]! ^= key[(keyOffset + i) & 3]!;
    const a = key[(keyOffset + i) & 3]!;
    const b = key[(keyOffset + i + 1) & 3]!;
    const c = key[(keyOffset + i + 2) & 3]!;
    const d = key[(keyOffset + i + 3) & 3]!;
    const word = LITTLE_ENDIAN ? (a | (b << 8) | (c << 16) | (d << 24)) >>> 0 : ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
    const words = (len - i) >>> 2;
    const v = new Uint32Array(data.buffer, data.byteOffset + i, words);
    let w = 0;
    for (const end8 = words - 7; w < end8; w += 8) {
      v[w]! ^= word;
      v[w + 1]! ^= word;
      v[w + 2]! ^= word;
      v[w + 3]! ^= word;
      v[w + 4]! ^= word;
      v[w + 5]! ^= word;
      v[w + 6]! ^= word;
      v[w + 7]! ^= word;
    }
    for (; w < words; w++) v[w]! ^= word;
    i += words << 2;
  } else {
    for (; i + 3 < len; i += 4) {
      data[i]! ^= k0;
      data[i + 1]! ^= k1;
      data[i + 2]! ^= k2;
      data[i + 3]! ^= k3;
    }
  }
  for (; i < len; i++) data[i]! ^= key[(keyOffset + i) & 3]!;
}

/** XOR `source` with `key` into `output` at `offset` (source is untouched). */
export function maskInto(source: Uint8Array, key: Uint8Array, output: Uint8Array, offset: number): void {
  output.set(source, offset);
  maskInPlace(output.subarray(offset, offset + source.length), key);
}

// Mask keys must be unpredictable to the application (RFC 6455 §10.3): drawn
// from a crypto-random pool, refilled in 8 KiB blocks so a key costs no syscall.
const POOL_SIZE = 8 * 1024;
let pool = Buffer.allocUnsafe(POOL_SIZE);
let poolOffset = POOL_SIZE;

/** A fresh random 4-byte mask key (a view into a pool: use it before the next call that refills). */
export function randomMaskKey(): Buffer {
  if (poolOffset + 4 > POOL_SIZE) {
    pool = Buffer.allocUnsafe(POOL_SIZE);
    randomFillSync(pool);
    poolOffset = 0;
  }
  const key = pool.subarray(poolOffset, poolOffset + 4);
  poolOffset += 4;
  return key;
}
