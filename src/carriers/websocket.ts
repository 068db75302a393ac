/**
 * The WebSocket carrier of a realtime session: adapts a `WebSocket` to the
 * realtime layer's `RealtimeTransport`.
 */
import { encodeServerFrame } from '../protocol/frame-writer.js';
import { Opcode } from '../protocol/opcode.js';
import type { RealtimeTransport, SharedMessage } from '../realtime/transport.js';
import type { WireCodec } from '../wire/codec.js';
import type { WebSocket } from '../transport/websocket.js';
import { MAX_CLOSE_REASON_BYTES } from '../protocol/close-code.js';
import { truncateUtf8 } from '../protocol/connection.js';

/**
 * The turn of the event loop, as a number that changes once per tick in which
 * someone looked (one process.nextTick per tick for every connection, not one
 * per connection: the fan-out looks at each subscriber's backlog).
 */
let turn = 0;
let turnArmed = false;
function endTurn(): void {
  turn++;
  turnArmed = false;
}
function currentTurn(): number {
  if (!turnArmed) {
    turnArmed = true;
    process.nextTick(endTurn);
  }
  return turn;
}

export class WebSocketCarrier implements RealtimeTransport {
  readonly kind = 'websocket';
  readonly codec: WireCodec;
  private readonly ws: WebSocket;
  /** Whether this connection negotiated compression (then large messages are compressed per connection). */
  private readonly compressing: boolean;
  private readonly threshold: number;
  private backlog = 0;
  /** The turn (see currentTurn) the backlog was taken in; -1: never. */
  private backlogTurn = -1;

  constructor(ws: WebSocket, codec: WireCodec, compressionThreshold: number) {
    this.ws = ws;
    this.codec = codec;
    this.compressing = ws.extensions !== '';
    this.threshold = compressionThreshold;
  }

  get httpVersion(): '1.1' | '2' | undefined {
    return this.ws.httpVersion || undefined;
  }

  get bufferedAmount(): number {
    // Snapshot at the first look in each turn: what earlier turns left behind.
    const now = currentTurn();
    if (this.backlogTurn !== now) {
      this.backlog = this.ws.bufferedAmount;
      this.backlogTurn = now;
    }
    return this.backlog;
  }

  send(payload: string | Uint8Array): void {
    this.ws.send(payload, { binary: this.codec.binary });
  }

  /**
   * Broadcast path: the frame is built once per message and encoding, and the
   * same bytes are written to every connection. Connections that negotiated
   * compression get large messages compressed for them instead.
   */
  sendShared(shared: SharedMessage): void {
    const payload = shared.encoded(this.codec);
    const size = typeof payload === 'string' ? payload.length : payload.byteLength;
    if (this.compressing && size >= this.threshold) {
      this.send(payload);
      return;
    }
    const framed = shared.framed;
    let frame = this.codec.binary ? framed.msgpack : framed.json;
    if (!frame) {
      const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload;
      frame = encodeServerFrame(this.codec.binary ? Opcode.Binary : Opcode.Text, bytes);
      if (this.codec.binary) framed.msgpack = frame;
      else framed.json = frame;
    }
    this.ws.sendFrame(frame);
  }

  close(code: number, reason: string): void {
    this.ws.close(code, truncateUtf8(reason, MAX_CLOSE_REASON_BYTES));
  }

  terminate(): void {
    this.ws.terminate();
  }
}
