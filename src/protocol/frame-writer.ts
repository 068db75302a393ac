/**
 * Frame encoding (RFC 6455 §5.2). Returns the bytes to write as a list, so a
 * large unmasked payload goes to the socket as it is (header and payload in
 * one writev), while small frames become one buffer.
 */
import { maskInPlace, randomMaskKey } from './mask.js';

/** Below this payload size header and payload are merged into one buffer. */
const MERGE_LIMIT = 1024;

function headerLength(length: number, masked: boolean): number {
  return (length < 126 ? 2 : length < 0x10000 ? 4 : 10) + (masked ? 4 : 0);
}

function writeHeader(
  target: Buffer,
  opcode: number,
  length: number,
  fin: boolean,
  rsv1: boolean,
  maskKey: Uint8Array | null,
): number {
  target[0] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  const maskBit = maskKey ? 0x80 : 0;
  let offset: number;
  if (length < 126) {
    target[1] = maskBit | length;
    offset = 2;
  } else if (length < 0x10000) {
    target[1] = maskBit | 126;
    target.writeUInt16BE(length, 2);
    offset = 4;
  } else {
    target[1] = maskBit | 127;
    target.writeUInt32BE(Math.floor(length / 0x100000000), 2);
    target.writeUInt32BE(length >>> 0, 6);
    offset = 10;
  }
  if (maskKey) {
    target[offset] = maskKey[0]!;
    target[offset + 1] = maskKey[1]!;
    target[offset + 2] = maskKey[2]!;
    target[offset + 3] = maskKey[3]!;
    offset += 4;
  }
  return offset;
}

/** A frame header alone (for callers that write the payload themselves). */
export function encodeFrameHeader(
  opcode: number,
  length: number,
  fin: boolean,
  rsv1: boolean,
  maskKey: Uint8Array | null = null,
): Buffer {
  const header = Buffer.allocUnsafe(headerLength(length, maskKey !== null));
  writeHeader(header, opcode, length, fin, rsv1, maskKey);
  return header;
}

/**
 * Encode one frame. Masked frames (client side) get a fresh random key and a
 * masked copy of the payload; the caller's buffer is never modified.
 * @param maskKey for tests: a fixed key instead of a random one.
 */
export function encodeFrame(
  opcode: number,
  payload: Uint8Array | string,
  fin: boolean,
  rsv1: boolean,
  mask: boolean,
  maskKey?: Uint8Array,
): Buffer[] {
  const isString = typeof payload === 'string';
  // A string is encoded straight into the frame buffer: one allocation, one copy.
  const length = isString ? Buffer.byteLength(payload) : payload.length;
  if (mask) {
    const key = maskKey ?? randomMaskKey();
    const size = headerLength(length, true);
    const out = Buffer.allocUnsafe(size + length);
    writeHeader(out, opcode, length, fin, rsv1, key);
    if (isString) out.write(payload, size);
    else out.set(payload, size);
    maskInPlace(out.subarray(size), key);
    return [out];
  }
  if (length <= MERGE_LIMIT) {
    const size = headerLength(length, false);
    const out = Buffer.allocUnsafe(size + length);
    writeHeader(out, opcode, length, fin, rsv1, null);
    if (isString) out.write(payload, size);
    else out.set(payload, size);
    return [out];
  }
  const header = encodeFrameHeader(opcode, length, fin, rsv1, null);
  const body = isString
    ? Buffer.from(payload)
    : Buffer.isBuffer(payload)
      ? payload
      : Buffer.from(payload.buffer, payload.byteOffset, payload.length);
  return [header, body];
}

/**
 * One unmasked frame as a single buffer: what a server writes to many
 * sockets when it broadcasts (frame once, write the same bytes everywhere).
 */
export function encodeServerFrame(opcode: number, payload: Uint8Array, fin = true, rsv1 = false): Buffer {
  const size = headerLength(payload.length, false);
  const out = Buffer.allocUnsafe(size + payload.length);
  writeHeader(out, opcode, payload.length, fin, rsv1, null);
  out.set(payload, size);
  return out;
}
