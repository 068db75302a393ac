/**
 * How a realtime connection ends: a close code and a reason, as one value.
 * The closes the server decides on have names here, so no file spells a
 * code above the protocol core as a number. Browser-safe: no `node:`
 * imports (`TextEncoder` / `TextDecoder` are globals in both worlds).
 */
import { CloseCode, MAX_CLOSE_REASON_BYTES } from '../protocol/close-code.js';
import { RealtimeCloseCode } from './messages.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * `reason` cut to the 123 UTF-8 bytes a close frame has room for, never in
 * the middle of a character. Same result as the transport's own cut
 * (protocol/connection.ts `truncateUtf8`), so cutting twice changes nothing.
 */
export function clipCloseReason(reason: string): string {
  // Fewer UTF-16 units than a third of the room cannot exceed it (3 bytes per unit at most).
  if (reason.length * 3 <= MAX_CLOSE_REASON_BYTES) return reason;
  const bytes = encoder.encode(reason);
  if (bytes.length <= MAX_CLOSE_REASON_BYTES) return reason;
  let end = MAX_CLOSE_REASON_BYTES;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return decoder.decode(bytes.subarray(0, end));
}

/** A close code and its reason, the reason already fitting a close frame. Immutable. */
export class Disconnect {
  readonly code: number;
  readonly reason: string;

  constructor(code: number, reason: string) {
    this.code = code;
    // Clipped here, once, so every carrier (close frame, SSE / long-polling `close` message) says the same.
    this.reason = clipCloseReason(reason);
    Object.freeze(this);
  }

  /** The same code with another reason. */
  with(reason: string): Disconnect {
    return new Disconnect(this.code, reason);
  }

  toString(): string {
    return `${this.code} ${this.reason}`;
  }

  // ---- the realtime layer's closes (4000-4499: reconnect, 4500-4999: do not; docs/close-codes.md) ----

  static readonly AuthTimeout = new Disconnect(RealtimeCloseCode.AuthTimeout, 'no auth message in time');
  static readonly TokenExpired = new Disconnect(RealtimeCloseCode.TokenExpired, 'token expired');
  static readonly SlowConsumer = new Disconnect(RealtimeCloseCode.SlowConsumer, 'slow consumer');
  static readonly RateLimited = new Disconnect(RealtimeCloseCode.RateLimited, 'rate limit exceeded');
  static readonly IdleTimeout = new Disconnect(RealtimeCloseCode.IdleTimeout, 'idle timeout');
  static readonly Unauthorized = new Disconnect(RealtimeCloseCode.Unauthorized, 'invalid token');
  static readonly BadRequest = new Disconnect(RealtimeCloseCode.BadRequest, 'bad request');
  static readonly Forbidden = new Disconnect(RealtimeCloseCode.Forbidden, 'forbidden');
  static readonly Kicked = new Disconnect(RealtimeCloseCode.Kicked, 'disconnected by the server');
  static readonly UnsupportedProtocol = new Disconnect(RealtimeCloseCode.UnsupportedProtocol, 'unsupported protocol');

  // ---- RFC 6455 codes the realtime layer closes with ----

  static readonly Shutdown = new Disconnect(CloseCode.GoingAway, 'server shutting down');
  static readonly MessageTooBig = new Disconnect(CloseCode.MessageTooBig, 'message too big');
  static readonly InternalError = new Disconnect(CloseCode.InternalError, 'internal error');
}

/**
 * A {@link Disconnect} to throw, where the close is decided far from the
 * session. `closeCode` is the name the other errors that end a connection
 * use (AuthError, the protocol core's errors).
 */
export class DisconnectError extends Error {
  override readonly name = 'DisconnectError';
  readonly disconnect: Disconnect;

  constructor(disconnect: Disconnect) {
    super(disconnect.reason);
    this.disconnect = disconnect;
  }

  get closeCode(): number {
    return this.disconnect.code;
  }
}
