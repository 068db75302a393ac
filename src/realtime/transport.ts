/**
 * What the realtime layer needs from a connection, whatever carries it
 * (WebSocket, SSE, long-polling). Implemented by the carriers (src/carriers/);
 * the realtime layer never sees a socket.
 */
import type { WireCodec } from '../wire/codec.js';

/**
 * A message encoded once and written to many connections. The carriers keep
 * what they derive from it here, in one named slot each, so a broadcast does
 * that work once per message rather than once per connection.
 */
export class SharedMessage {
  readonly message: object;
  private json: string | Uint8Array | undefined;
  private msgpack: string | Uint8Array | undefined;
  /** The WebSocket frame of each encoding (carriers/websocket.ts). */
  readonly framed: { json?: Buffer; msgpack?: Buffer } = {};
  /** UTF-8 length of the JSON encoding (carriers/http-session.ts: SSE and long-polling buffers count bytes). */
  jsonBytes: number | undefined = undefined;
  private msgpackBytes: number | undefined = undefined;
  constructor(message: object) {
    this.message = message;
  }
  /** Why an encoding failed, kept so that N subscribers do not make N failing attempts (see Hub#deliverTo). */
  private jsonFailure: unknown;
  private msgpackFailure: unknown;
  /** The encoding's length in bytes (UTF-8 for text), computed once per encoding: what `switchboard_bytes_out_total` counts per delivery. */
  byteLength(codec: WireCodec): number {
    const known = codec.binary ? this.msgpackBytes : this.jsonBytes;
    if (known !== undefined) return known;
    const payload = this.encoded(codec);
    const bytes = typeof payload === 'string' ? utf8Length(payload) : payload.byteLength;
    if (codec.binary) this.msgpackBytes = bytes;
    else this.jsonBytes = bytes;
    return bytes;
  }
  encoded(codec: WireCodec): string | Uint8Array {
    const cached = codec.binary ? this.msgpack : this.json;
    if (cached !== undefined) return cached;
    const failure = codec.binary ? this.msgpackFailure : this.jsonFailure;
    if (failure !== undefined) throw failure;
    try {
      const payload = codec.encode(this.message);
      if (codec.binary) this.msgpack = payload;
      else this.json = payload;
      return payload;
    } catch (err) {
      if (codec.binary) this.msgpackFailure = err;
      else this.jsonFailure = err;
      throw err;
    }
  }
}

/** The UTF-8 length of a string in bytes, without encoding it (lone surrogates count 3, as their replacement character). */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // 2 bytes below U+0800, 3 above; a surrogate pair (4 bytes) is two units of 2.
    if (c >= 0x80) n += c < 0x800 || (c >= 0xd800 && c <= 0xdfff) ? 1 : 2;
  }
  return n;
}

export interface RealtimeTransport {
  /** 'websocket', 'sse' or 'poll'. */
  readonly kind: string;
  /**
   * The HTTP version that carries the connection, as the server saw it: `'2'`
   * (a WebSocket on an h2 stream, RFC 8441; a fallback session opened over
   * h2) or `'1.1'`. The `auth` reply tells the client (`http`); undefined
   * when the carrier cannot tell.
   */
  readonly httpVersion?: '1.1' | '2';
  readonly codec: WireCodec;
  /**
   * Bytes queued in earlier turns of the event loop and still not taken by the
   * network: what a slow consumer piles up. A burst written in the current
   * turn does not count, so a fast client is not cut for a large broadcast.
   */
  readonly bufferedAmount: number;
  /** Send one message. */
  send(payload: string | Uint8Array): void;
  /** Send a message shared with other connections (defaults to `send(shared.encoded(codec))`). */
  sendShared(shared: SharedMessage): void;
  /** Close with a code and a reason (<= 123 bytes). */
  close(code: number, reason: string): void;
  /** Drop the connection at once. */
  terminate(): void;
}

/** The pino-compatible subset the realtime layer logs through. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: object): Logger;
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};

/** Counters the server turns into metrics; every method is cheap and synchronous. */
export interface HubObserver {
  connectionOpened(transport: string): void;
  connectionClosed(transport: string, code: number): void;
  messageIn(bytes: number): void;
  messagesOut(count: number, bytes: number): void;
  publicationDelivered(latencyMs: number, subscribers: number): void;
  subscriptionsChanged(delta: number): void;
  requestFailed(op: string, code: number): void;
  dropped(reason: string): void;
}

export const nullObserver: HubObserver = {
  connectionOpened() {},
  connectionClosed() {},
  messageIn() {},
  messagesOut() {},
  publicationDelivered() {},
  subscriptionsChanged() {},
  requestFailed() {},
  dropped() {},
};
