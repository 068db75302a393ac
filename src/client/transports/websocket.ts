/**
 * The WebSocket transport: one socket at the realtime endpoint, subprotocol
 * `switchboard.v1.json` (text frames) or `switchboard.v1.msgpack` (binary
 * frames), one protocol message per WebSocket message (docs/protocol.md).
 */
import { codecFor, jsonCodec, msgpackCodec, type WireCodec } from '../../wire/codec.js';
import type { ClientMessage } from '../../wire/messages.js';
import {
  httpProtocolOf,
  isServerMessage,
  later,
  webSocketUrl,
  type ClientTransport,
  type HttpProtocol,
  type TransportContext,
  type TransportHandler,
  type WebSocketLike,
} from './transport.js';

const OPEN = 1;

/** Close codes a page may pass to `WebSocket#close()`: 1000 and 3000-4999 (others throw in browsers). */
function closableCode(code: number): number {
  return code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000;
}

/** Cut a reason to the 123 bytes of UTF-8 a close frame can carry. */
function closableReason(reason: string): string {
  const bytes = new TextEncoder().encode(reason);
  if (bytes.length <= 123) return reason;
  let cut = reason.slice(0, 123);
  while (new TextEncoder().encode(cut).length > 123) cut = cut.slice(0, -1);
  return cut;
}

export class WebSocketTransport implements ClientTransport {
  readonly name = 'websocket' as const;
  #context: TransportContext;
  #handler: TransportHandler;
  #ws: WebSocketLike | null = null;
  #codec: WireCodec;
  /** Set when the handler must hear nothing more (closed by the client, or onClose delivered). */
  #done = false;
  #httpProtocol: HttpProtocol | null = null;

  constructor(context: TransportContext, handler: TransportHandler) {
    this.#context = context;
    this.#handler = handler;
    this.#codec = context.protocol === 'msgpack' ? msgpackCodec : jsonCodec;
  }

  open(): void {
    const Ctor = this.#context.WebSocket;
    if (!Ctor) {
      later(() => this.#fail(1006, 'no WebSocket implementation'));
      return;
    }
    let ws: WebSocketLike;
    try {
      const url = webSocketUrl(this.#context.url);
      const options = this.#context.webSocketOptions;
      ws = options === undefined ? new Ctor(url, [this.#codec.subprotocol]) : new Ctor(url, [this.#codec.subprotocol], options);
    } catch (err) {
      later(() => this.#fail(1006, `cannot open WebSocket: ${(err as Error).message}`));
      return;
    }
    this.#ws = ws;
    ws.binaryType = 'arraybuffer';
    ws.addEventListener('open', () => {
      if (this.#done) return;
      // A server that selected no subprotocol speaks the default (JSON); else the one it chose.
      this.#codec = (ws.protocol && codecFor(ws.protocol)) || (ws.protocol ? this.#codec : jsonCodec);
      this.#httpProtocol = httpProtocolOf(ws.httpVersion);
      this.#handler.onOpen();
    });
    ws.addEventListener('message', (event: { data: unknown }) => {
      if (this.#done) return;
      let message: unknown;
      try {
        const data = event.data;
        const payload =
          typeof data === 'string'
            ? data
            : data instanceof ArrayBuffer
              ? new Uint8Array(data)
              : ArrayBuffer.isView(data)
                ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
                : null;
        if (payload === null) throw new TypeError('unexpected message type');
        message = this.#codec.decode(payload);
      } catch (err) {
        this.#abort(`malformed message from the server: ${(err as Error).message}`);
        return;
      }
      if (!isServerMessage(message)) {
        this.#abort('malformed message from the server: not an object with an op');
        return;
      }
      this.#handler.onMessage(message);
    });
    // 'error' is always followed by 'close' (WHATWG "fail the WebSocket connection").
    ws.addEventListener('error', () => {});
    ws.addEventListener('close', (event: { code: number; reason: string }) => {
      this.#fail(typeof event.code === 'number' ? event.code : 1006, String(event.reason ?? ''));
    });
  }

  /** What the WebSocket implementation says carries it (`switchboard`'s in Node); null in browsers. */
  get httpProtocol(): HttpProtocol | null {
    return this.#httpProtocol;
  }

  send(message: ClientMessage): void {
    const ws = this.#ws;
    if (this.#done || !ws || ws.readyState !== OPEN) return;
    ws.send(this.#codec.encode(message) as string | Uint8Array);
  }

  close(code = 1000, reason = ''): void {
    this.#done = true;
    const ws = this.#ws;
    if (!ws) return;
    try {
      ws.close(closableCode(code), closableReason(reason));
    } catch {
      // Closed already.
    }
  }

  /** A broken message: close the socket and report a drop (the client reconnects). */
  #abort(reason: string): void {
    const ws = this.#ws;
    this.#fail(1006, reason);
    try {
      ws?.close(1000, 'malformed message');
    } catch {
      // Closed already.
    }
  }

  #fail(code: number, reason: string): void {
    if (this.#done) return;
    this.#done = true;
    this.#handler.onClose(code, reason);
  }
}
