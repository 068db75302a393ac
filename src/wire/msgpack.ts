/**
 * MessagePack with one encoder and one decoder per process. The library's
 * `encode()` makes a new Encoder for every call (a 2 KiB buffer and a
 * DataView) and returns a view into that buffer, so a 40-byte message kept
 * in a history or a queue held its whole 2 KiB. Here the encoder is reused
 * and each result is a copy of exactly its bytes. Browser-safe.
 */
import { Decoder, Encoder } from '@msgpack/msgpack';

/** A message this large grew the shared encoder's buffer: start a new one so the process does not keep it. */
const KEEP_BUFFER_UP_TO = 64 * 1024;

let plain = new Encoder();
let undefinedLeftOut = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder();

/**
 * `value` as MessagePack, in an array buffer of its own. `ignoreUndefined`:
 * fields whose value is undefined are left out (as JSON.stringify does)
 * instead of written as nil.
 */
export function packMsgpack(value: unknown, options: { ignoreUndefined?: boolean } = {}): Uint8Array {
  const encoder = options.ignoreUndefined === true ? undefinedLeftOut : plain;
  // encode() copies out of the shared buffer (encodeSharedRef would not), and makes a
  // fresh encoder itself when called again from inside an encoding (an extension).
  const bytes = encoder.encode(value);
  if (bytes.byteLength > KEEP_BUFFER_UP_TO) {
    if (encoder === plain) plain = new Encoder();
    else undefinedLeftOut = new Encoder({ ignoreUndefined: true });
  }
  return bytes;
}

/** One MessagePack value from `bytes` (binary values in the result are views into `bytes`). Throws on malformed input. */
export function unpackMsgpack(bytes: ArrayLike<number> | ArrayBufferView | ArrayBufferLike): unknown {
  return decoder.decode(bytes);
}
