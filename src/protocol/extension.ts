/**
 * The seam between the sans-I/O core and a message compressor (RFC 7692).
 * The core never touches zlib: the transport gives a `Connection` an
 * `Inflater` once permessage-deflate is negotiated, and frames with RSV1 set
 * are handed to it. Calls may complete synchronously or later; the core stops
 * parsing until the callback fires, so messages stay in order.
 */
import type { WebSocketError } from './errors.js';

export interface Inflater {
  /**
   * Inflate one frame's payload of a compressed message. `fin` is true for the
   * last frame of the message (the implementation appends the 0x00 0x00 0xff 0xff
   * tail then, RFC 7692 §7.2.2, and resets the context if no context takeover).
   * The inflated size of the whole message must be checked against the limit
   * while inflating: over it, the callback gets a MessageTooBigError (1009).
   * Invalid compressed data gets an InvalidDataError (1007).
   */
  inflate(payload: Buffer, fin: boolean, callback: (err: WebSocketError | null, data?: Buffer) => void): void;
}

export interface Deflater {
  /**
   * Compress one message (or one fragment when `fin` is false). The result
   * has the trailing 0x00 0x00 0xff 0xff removed when `fin` is true
   * (RFC 7692 §7.2.1). Callbacks complete in call order.
   */
  deflate(data: Buffer, fin: boolean, callback: (err: Error | null, data?: Buffer) => void): void;
}
