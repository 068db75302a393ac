/**
 * Masking of large payloads with WebAssembly SIMD (16 bytes per step): about
 * 1.7x the fastest plain-JavaScript loop here, and no native addon. The
 * module is mask-simd.wat compiled (the unit tests check the bytes match the
 * source). Falls back to null where WebAssembly SIMD is unavailable.
 */
const MODULE_BASE64 = 'AGFzbQEAAAABBwFgA39/fwADAgEABQMBAAEHEQIGbWVtb3J5AgAEbWFzawAACjsBOQIBfwF7IAL9ESEEIAAgAWohAwJAA0AgACADTw0BIAAgAP0ABAAgBP1R/QsEACAAQRBqIQAMAAsLCw==';

/** Payload bytes handled per call into WebAssembly (the module's memory holds one chunk). */
export const SIMD_CHUNK = 64 * 1024;

interface SimdMasker {
  memory: Uint8Array;
  mask(ptr: number, len: number, key: number): void;
}

function load(): SimdMasker | null {
  try {
    const bytes = Uint8Array.from(atob(MODULE_BASE64), (c) => c.charCodeAt(0));
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes));
    const exports = instance.exports as { memory: WebAssembly.Memory; mask(ptr: number, len: number, key: number): void };
    const pages = Math.ceil(SIMD_CHUNK / 65536);
    const current = exports.memory.buffer.byteLength / 65536;
    if (current < pages) exports.memory.grow(pages - current);
    return { memory: new Uint8Array(exports.memory.buffer), mask: exports.mask };
  } catch {
    return null;
  }
}

export const MODULE_BYTES_BASE64 = MODULE_BASE64;
const simd = load();

/** Whether the SIMD path is available in this runtime. */
export const simdAvailable = simd !== null;

/**
 * XOR `data` in place with `word` (the 4 key bytes as a little-endian word,
 * key byte 0 applying to data[0]). Returns false when SIMD is unavailable.
 */
export function maskSimd(data: Uint8Array, word: number): boolean {
  if (!simd) return false;
  const { memory, mask } = simd;
  const len = data.length;
  for (let off = 0; off < len; off += SIMD_CHUNK) {
    const n = Math.min(SIMD_CHUNK, len - off);
    const piece = off === 0 && n === len ? data : data.subarray(off, off + n);
    memory.set(piece, 0);
    mask(0, (n + 15) & ~15, word | 0);
    piece.set(n === SIMD_CHUNK ? memory : memory.subarray(0, n));
  }
  return true;
}
