/**
 * `WebSocket`: the `ws`-compatible API over the sans-I/O `Connection`, for
 * both sides. A server-side instance is created by `WebSocketServer` and
 * bound to the upgraded socket; a client-side one is created with a URL and
 * performs the opening handshake itself (see client-handshake.ts).
 *
 * Differences from `ws`, on purpose:
 * - a protocol error from the peer never throws out of the socket: `error` is
 *   emitted only when someone listens to it, and the close frame tells the peer;
 * - `send()` returns false once `bufferedAmount` reaches the high-water mark,
 *   and `drain` follows when it falls back;
 * - an optional heartbeat terminates peers that stop answering pings.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { Blob } from 'node:buffer';
import { CloseCode } from '../protocol/close-code.js';
import { Connection, type ConnectionHandler, DEFAULT_MAX_PAYLOAD, encodeClosePayload } from '../protocol/connection.js';
import { InvalidStateError, type WebSocketError } from '../protocol/errors.js';
import { encodeServerFrame } from '../protocol/frame-writer.js';
import { Opcode } from '../protocol/opcode.js';
import type { PerMessageDeflateCodec } from './deflate.js';
import { Sender, takeWriteCallback, writeOp, type SendCallback, type SenderHost, type SendOp } from './sender.js';
import { sharedHeartbeatWheel, type HeartbeatMember, type HeartbeatOptions, type HeartbeatWheel } from './heartbeat.js';
import {
  addEventListener,
  getOnProperty,
  removeEventListener,
  setOnProperty,
  type EventListenerLike,
} from './event-target.js';
import {
  connectClient,
  type ClientHandshake,
  type ClientHandshakeHandler,
} from './client-handshake.js';
import { connectHttp2Client, type Http2ClientHandshakeOptions } from './http2-client.js';

export type BinaryType = 'nodebuffer' | 'arraybuffer' | 'fragments' | 'blob';
export type { SendCallback } from './sender.js';
export type { HeartbeatOptions } from './heartbeat.js';

/** Options of a client `WebSocket`: the opening handshake's, and the connection's below. */
export interface ClientOptions extends Http2ClientHandshakeOptions {
  skipUTF8Validation?: boolean;
  autoPong?: boolean;
  /** Ping the server periodically and terminate when it stops answering. */
  heartbeat?: HeartbeatOptions;
  /** Time to wait for the server's part of the closing handshake, in ms. Default 30 s. */
  closeTimeout?: number;
}

/** @internal What the server or the client handshake hands to `setSocket`. */
export interface SocketSetup {
  role: 'server' | 'client';
  maxPayload?: number;
  codec?: PerMessageDeflateCodec | null;
  skipUTF8Validation?: boolean;
  autoPong?: boolean;
  heartbeat?: HeartbeatOptions | null;
  /** The server's heartbeat wheel (shared by its connections); else `heartbeat` picks a shared one. */
  heartbeatWheel?: HeartbeatWheel | null;
  closeTimeout?: number;
  protocol?: string;
  extensions?: string;
  /** Told once when the socket closed (the server's bookkeeping). */
  owner?: SocketOwner | null;
}

/** @internal What was negotiated for one connection (a server passes one `SocketSetup` for all of them). */
export interface Negotiated {
  codec: PerMessageDeflateCodec | null;
  protocol: string;
  extensions: string;
}

/** @internal Who created a server-side `WebSocket` and counts it. */
export interface SocketOwner {
  _clientClosed(ws: WebSocket): void;
}

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;
const READY_STATES = ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'];

/** Default time to wait for the peer's part of the closing handshake, in ms. */
export const DEFAULT_CLOSE_TIMEOUT = 30_000;

const EMPTY: Buffer = Buffer.alloc(0);

/**
 * The heartbeat's ping from a server: FIN + Ping, no mask, no payload (RFC
 * 6455 §5.5.2). Server frames are not masked, so every connection writes
 * these same two bytes; a heartbeat ping allocates no frame and makes no
 * `Connection` on an idle socket.
 */
const SERVER_PING: Buffer = encodeServerFrame(Opcode.Ping, EMPTY);
// The peer's answer when it has nothing to echo (§5.5.3: the pong carries the ping's payload, here none):
// FIN + Pong, then the MASK bit and length 0; from a client (masked) 4 bytes of masking key follow.
const EMPTY_PONG_B0 = 0x80 | Opcode.Pong;

// WebSocket#flags
const F_COMPRESSING = 1 << 0; // the message being sent is compressed (its next fragments too)
const F_NEED_DRAIN = 1 << 1; // a send() returned false: 'drain' is due
const F_PAUSED = 1 << 2;
const F_CLOSE_EMITTED = 1 << 3;
const F_SOCKET_CLOSED = 1 << 4;
const F_FLUSH_DUE = 1 << 5; // in the end-of-tick flush list (see flushAtTickEnd)
const F_AWAITING_PONG = 1 << 6; // HeartbeatMember.awaitingPong
const F_HB_PINGED = 1 << 7; // HeartbeatMember._hbPinged
const F_WAS_CLEAN = 1 << 8;
const F_SOCKET_CORKED = 1 << 9; // the socket is corked until the end of this tick
const BINARY_TYPE_SHIFT = 10; // two bits: an index in BINARY_TYPES
const BINARY_TYPES: readonly BinaryType[] = ['nodebuffer', 'arraybuffer', 'fragments', 'blob'];
const NODEBUFFER = 0;
const ARRAYBUFFER = 1;
const FRAGMENTS = 2;
/** The setup of a WebSocket that has no socket yet (a client while it connects). */
const CLIENT_SETUP: SocketSetup = { role: 'client' };

/** The `WebSocket` a socket is bound to: the socket listeners are shared functions, not closures per connection. */
const kWebSocket = Symbol('switchboard.websocket');
type BoundSocket = Duplex & { [kWebSocket]?: WebSocket };

/**
 * Frames written in one tick are gathered (see WebSocket#onWrite) and handed
 * to the socket as one buffer when the tick ends, as long as each is smaller
 * than this and all of them together stay below HELD_MAX_BYTES; a larger one
 * goes to the socket as it is, after what was gathered before it.
 */
const HELD_MAX_FRAME = 1024;
const HELD_MAX_BYTES = 64 * 1024;

/**
 * The WebSockets that wrote in this tick, flushed by one `process.nextTick`
 * for all of them (a tick of a fan-out writes to thousands: one callback
 * object each was a share of the garbage a game tick made).
 */
let flushList: (WebSocket | undefined)[] = [];
let flushCount = 0;
/** The other list, kept with its capacity: lists are swapped, not made, per tick. */
let spareList: (WebSocket | undefined)[] = [];

function flushAll(): void {
  const list = flushList;
  const count = flushCount;
  // A write made while flushing (a 'drain' listener that sends) joins the other list and its own tick.
  flushList = spareList;
  flushCount = 0;
  let thrown: { err: unknown } | null = null;
  for (let i = 0; i < count; i++) {
    const ws = list[i]!;
    list[i] = undefined;
    try {
      ws._flushTick();
    } catch (err) {
      // A listener threw ('drain'): the other sockets are flushed all the same, then it is rethrown.
      thrown ??= { err };
    }
  }
  spareList = list;
  if (thrown !== null) throw thrown.err;
}

function flushAtTickEnd(ws: WebSocket): void {
  if (flushCount === 0) process.nextTick(flushAll);
  flushList[flushCount++] = ws;
}

function notOpen(state: number): InvalidStateError {
  return new InvalidStateError('WS_ERR_NOT_OPEN', `WebSocket is not open: readyState ${state} (${READY_STATES[state]})`);
}

function toBuffer(data: unknown): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (typeof data === 'string') return Buffer.from(data);
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (data === undefined || data === null) return EMPTY;
  return Buffer.from(String(data));
}

/** Whether `payload` is at least `n` bytes long, without encoding a string when its length decides. */
function byteLengthAtLeast(payload: Buffer | string, n: number): boolean {
  if (typeof payload !== 'string') return payload.length >= n;
  if (payload.length >= n) return true; // UTF-8 never has fewer bytes than UTF-16 code units
  if (payload.length * 3 < n) return false; // nor more than 3 per code unit
  return Buffer.byteLength(payload) >= n;
}

/**
 * A listener table (EventEmitter's `_events`): a plain object, looked up by
 * event name, whose prototype chain has nothing in it (no `toString` or
 * `__proto__` to find), like the `{ __proto__: null }` it replaces.
 */
const ListenerTable = function ListenerTable() {} as unknown as new () => object;
ListenerTable.prototype = Object.create(null) as object;

/** The `SenderHost` of one socket: one small object instead of a closure per method. */
class SenderLink implements SenderHost {
  constructor(private readonly ws: WebSocket) {}
  notOpenError(): Error {
    return notOpen(this.ws.readyState);
  }
  isClosed(): boolean {
    return this.ws.readyState === CLOSED;
  }
  answerClose(): void {
    this.ws._answerClose();
  }
  onFlushed(): void {
    this.ws._maybeDrain();
  }
  end(): void {
    this.ws._endSocket();
  }
}

export class WebSocket extends EventEmitter implements ConnectionHandler, HeartbeatMember {
  static readonly CONNECTING = CONNECTING;
  static readonly OPEN = OPEN;
  static readonly CLOSING = CLOSING;
  static readonly CLOSED = CLOSED;
  // On the prototype (below the class), as `ws` has them: four fields fewer per connection.
  declare readonly CONNECTING: typeof CONNECTING;
  declare readonly OPEN: typeof OPEN;
  declare readonly CLOSING: typeof CLOSING;
  declare readonly CLOSED: typeof CLOSED;

  // What an idle server connection keeps (docs/benchmarks.md, "Cost per connection"):
  // these fields and EventEmitter's five; the booleans share one integer
  // (`flags`), what every connection of a server shares is one object
  // (`setup`), and the protocol state (`Connection`) is made with the first
  // byte received or the first frame sent.
  private _url: string;
  private _readyState = CONNECTING;
  private _protocol = '';
  private _extensions = '';
  /** F_* bits, and the binary type in BINARY_TYPE_SHIFT. */
  private flags = 0;
  private socket: Duplex | null = null;
  private conn: Connection | null = null;
  private codec: PerMessageDeflateCodec | null = null;
  private setup: SocketSetup = CLIENT_SETUP;
  private closeTimer: NodeJS.Timeout | null = null;
  private sender: Sender | null = null;
  /** Small frames written in this tick, not yet handed to the socket (see onWrite); null: none. */
  private held: Buffer[] | null = null;
  private heldBytes = 0;
  /** The client's opening handshake while it is in progress. */
  private handshake: ClientHandshake | null = null;
  /** @internal HeartbeatMember */
  _hbNext: HeartbeatMember | null = null;
  /** @internal HeartbeatMember */
  _hbPrev: HeartbeatMember | null = null;
  /** @internal HeartbeatMember */
  _hbSlot = -1;
  /** @internal HeartbeatMember (whole ms of the wheel's clock) */
  _hbPingAt = 0;

  /** @internal HeartbeatMember: a ping went out and nothing arrived since. */
  get awaitingPong(): boolean {
    return (this.flags & F_AWAITING_PONG) !== 0;
  }
  set awaitingPong(v: boolean) {
    this.flags = v ? this.flags | F_AWAITING_PONG : this.flags & ~F_AWAITING_PONG;
  }
  /** @internal HeartbeatMember */
  get _hbPinged(): boolean {
    return (this.flags & F_HB_PINGED) !== 0;
  }
  set _hbPinged(v: boolean) {
    this.flags = v ? this.flags | F_HB_PINGED : this.flags & ~F_HB_PINGED;
  }
  /** Whether the closing handshake completed before the TCP connection closed. */
  get wasClean(): boolean {
    return (this.flags & F_WAS_CLEAN) !== 0;
  }

  private flag(bit: number): boolean {
    return (this.flags & bit) !== 0;
  }
  private setFlag(bit: number, on: boolean): void {
    this.flags = on ? this.flags | bit : this.flags & ~bit;
  }

  /**
   * Client: `new WebSocket('ws://host/path', ['proto'], options)`.
   * Server-side instances are created by `WebSocketServer` with `address = null`.
   */
  constructor(address: string | URL | null, protocols?: string | string[] | ClientOptions, options?: ClientOptions) {
    super();
    // EventEmitter starts with a dictionary-mode listener table ({ __proto__: null }, ~184 bytes);
    // a fast-mode one without Object.prototype in its chain costs a fraction of it.
    (this as unknown as { _events: object })._events = new ListenerTable();
    if (address === null) {
      this._url = '';
      return;
    }
    if (protocols !== undefined && !Array.isArray(protocols) && typeof protocols === 'object') {
      options = protocols;
      protocols = undefined;
    }
    const list = protocols === undefined ? [] : Array.isArray(protocols) ? protocols : [protocols];
    this._url = typeof address === 'string' ? address : address.href;
    const { skipUTF8Validation, autoPong, heartbeat, closeTimeout, ...handshakeOptions } = options ?? {};
    const connection = { maxPayload: handshakeOptions.maxPayload, skipUTF8Validation, autoPong, heartbeat, closeTimeout };
    // RFC 8441 (`http2`): an extended CONNECT on a shared h2 session, HTTP/1.1 when the server has none.
    const connect = handshakeOptions.http2 ? connectHttp2Client : connectClient;
    this.handshake = connect(this.handshakeHandler(connection), address, list, handshakeOptions);
  }

  /** What the client handshake reports to; `options` are the connection's, used once it is open. */
  private handshakeHandler(options: Pick<SocketSetup, 'maxPayload' | 'skipUTF8Validation' | 'autoPong' | 'heartbeat' | 'closeTimeout'>): ClientHandshakeHandler {
    return {
      onRedirect: (url, request) => {
        this._url = url;
        this.emit('redirect', url, request);
      },
      onUpgradeResponse: (response) => {
        this.emit('upgrade', response);
      },
      onUnexpectedResponse: (request, response) => {
        if (this.listenerCount('unexpected-response') === 0) return false;
        this.handshake = null;
        this._readyState = CLOSING;
        this.emit('unexpected-response', request, response);
        this.emitClose(CloseCode.AbnormalClosure, EMPTY);
        return true;
      },
      onUpgraded: (socket, head, protocol, extensions, codec) => {
        this.handshake = null;
        this.setSocket(socket, head, { role: 'client', ...options, codec, protocol, extensions });
        this.emit('open');
      },
      onRefused: (err) => {
        this.handshake = null;
        this._readyState = CLOSING;
        this.emitError(err);
        this.emitClose(CloseCode.AbnormalClosure, EMPTY);
      },
    };
  }

  /** The URL the client connected to: after a followed redirect, where it went ('' on the server side). */
  get url(): string {
    return this._url;
  }
  get readyState(): number {
    return this._readyState;
  }
  /** The subprotocol the server selected ('' if none). */
  get protocol(): string {
    return this._protocol;
  }
  /** The extensions negotiated, as the Sec-WebSocket-Extensions value ('' if none). */
  get extensions(): string {
    return this._extensions;
  }
  /**
   * What carries this WebSocket: `'2'` for a stream of an HTTP/2 connection
   * (RFC 8441 extended CONNECT), `'1.1'` for a connection of its own (the
   * HTTP/1.1 Upgrade, also when a client with `http2` fell back to it); `''`
   * before it opened. Not in the WHATWG API (nor in `ws`).
   */
  get httpVersion(): '2' | '1.1' | '' {
    const socket = this.socket;
    if (socket === null) return '';
    // An Http2Stream (client or server side) has its session; a net/tls socket has none.
    return 'session' in socket && 'rstCode' in socket ? '2' : '1.1';
  }
  get binaryType(): BinaryType {
    return BINARY_TYPES[this.flags >>> BINARY_TYPE_SHIFT]!;
  }
  set binaryType(type: BinaryType) {
    const i = BINARY_TYPES.indexOf(type);
    if (i !== -1) this.flags = (this.flags & ~(3 << BINARY_TYPE_SHIFT)) | (i << BINARY_TYPE_SHIFT);
  }
  /** Bytes accepted by `send` and not yet handed to the operating system. */
  get bufferedAmount(): number {
    return (this.socket ? this.socket.writableLength : 0) + this.heldBytes + (this.sender ? this.sender.queuedBytes : 0);
  }
  /** Whether reading from the peer is paused. */
  get isPaused(): boolean {
    return this.flag(F_PAUSED);
  }

  // ---- WHATWG-style events ---------------------------------------------------

  get onopen(): EventListenerLike | null {
    return getOnProperty(this, 'open');
  }
  set onopen(h: EventListenerLike | null) {
    setOnProperty(this, 'open', h);
  }
  get onmessage(): EventListenerLike | null {
    return getOnProperty(this, 'message');
  }
  set onmessage(h: EventListenerLike | null) {
    setOnProperty(this, 'message', h);
  }
  get onclose(): EventListenerLike | null {
    return getOnProperty(this, 'close');
  }
  set onclose(h: EventListenerLike | null) {
    setOnProperty(this, 'close', h);
  }
  get onerror(): EventListenerLike | null {
    return getOnProperty(this, 'error');
  }
  set onerror(h: EventListenerLike | null) {
    setOnProperty(this, 'error', h);
  }
  addEventListener(type: string, listener: EventListenerLike, options?: { once?: boolean }): void {
    addEventListener(this, type, listener, options);
  }
  removeEventListener(type: string, listener: EventListenerLike): void {
    removeEventListener(this, type, listener);
  }

  // ---- setup -------------------------------------------------------------------

  /** @internal Bind to an upgraded socket. `head` holds bytes read past the HTTP head. */
  setSocket(socket: Duplex, head: Buffer, setup: SocketSetup, negotiated?: Negotiated): void {
    this.socket = socket;
    this.codec = negotiated?.codec ?? setup.codec ?? null;
    this._protocol = negotiated?.protocol ?? setup.protocol ?? '';
    this._extensions = negotiated?.extensions ?? setup.extensions ?? '';
    const wheel =
      setup.heartbeatWheel ?? (setup.heartbeat && setup.heartbeat.interval > 0 ? sharedHeartbeatWheel(setup.heartbeat) : null);
    // Kept as it is (a server passes one object for all its connections); a client's own gets its wheel.
    this.setup = wheel !== null && setup.heartbeatWheel === undefined ? { ...setup, heartbeatWheel: wheel } : setup;
    const s = socket as Duplex & { setNoDelay?(b: boolean): void; setTimeout?(ms: number): void };
    s.setTimeout?.(0);
    s.setNoDelay?.(true);
    // Bytes that arrived with the HTTP head go back to the stream, so they are
    // read after 'open'/'connection' listeners are attached.
    if (head.length > 0) socket.unshift(head);
    (socket as BoundSocket)[kWebSocket] = this;
    socket.on('data', WebSocket.onSocketData);
    socket.on('end', WebSocket.onSocketEnd);
    socket.on('close', WebSocket.onSocketClose);
    socket.on('error', WebSocket.onSocketError);
    socket.on('drain', WebSocket.onSocketDrain);
    this._readyState = OPEN;
    if (wheel) wheel.add(this);
  }

  /** The protocol state, made with the first byte received or the first frame sent (an idle connection has none). */
  private connOf(): Connection {
    return (this.conn ??= new Connection(this, {
      role: this.setup.role,
      maxPayload: this.setup.maxPayload ?? DEFAULT_MAX_PAYLOAD,
      inflater: this.codec,
      autoPong: this.setup.autoPong,
      skipUTF8Validation: this.setup.skipUTF8Validation,
      echoClose: false,
    }));
  }

  /** Whether our close frame went out (no Connection yet: nothing went out). */
  private get closeSent(): boolean {
    return this.conn !== null && this.conn.closeSent;
  }

  // The socket's listeners: one function each for every socket (`this` is the socket).

  private static onSocketData(this: BoundSocket, chunk: Buffer): void {
    const ws = this[kWebSocket]!;
    ws.flags &= ~F_AWAITING_PONG;
    const conn = ws.conn;
    if (conn !== null) conn.receiveData(chunk);
    else if (!ws.emptyPong(chunk)) ws.connOf().receiveData(chunk);
  }

  /**
   * A read that is exactly one empty pong, on a connection that has no
   * protocol state yet (nothing else was ever received, so no frame is
   * half-read): the heartbeat's answer, taken without making a `Connection`,
   * so an idle connection stays as small as it was. Anything else (a pong
   * with a payload, a mask bit the role forbids, more bytes) goes to the parser.
   */
  private emptyPong(chunk: Buffer): boolean {
    // §5.1: a client masks every frame, a server none.
    const server = this.setup.role === 'server';
    if (chunk.length !== (server ? 6 : 2) || chunk[0] !== EMPTY_PONG_B0 || chunk[1] !== (server ? 0x80 : 0x00)) return false;
    // emit() gathers its arguments into an array: only when someone listens.
    if (this.listenerCount('pong') > 0) this.emit('pong', EMPTY);
    return true;
  }

  private static onSocketEnd(this: BoundSocket): void {
    const ws = this[kWebSocket]!;
    ws.connOf().receiveEof();
    if (ws._readyState === OPEN) ws._readyState = CLOSING;
    // The peer will send nothing more; what we still have queued (a message
    // being compressed, the close answer behind it) goes out before our FIN.
    if (ws.sender) ws.sender.endWhenFlushed();
    else ws.endSocket();
  }

  private static onSocketError(this: BoundSocket): void {
    // The 'close' event follows and reports 1006; a socket error is not the
    // application's to handle (ECONNRESET from a vanished peer is routine).
    this.destroy();
  }

  private static onSocketDrain(this: BoundSocket): void {
    this[kWebSocket]!._maybeDrain();
  }

  private static onSocketClose(this: BoundSocket): void {
    const ws = this[kWebSocket]!;
    ws.flags |= F_SOCKET_CLOSED;
    ws.clearTimers();
    // Input that arrived before the end (a message still being inflated, the
    // close frame behind it) is processed first; then onInputEnd finishes.
    const conn = ws.connOf();
    conn.receiveEof();
    if (conn.inputEnded) ws.finishClose();
  }

  /**
   * Send `op`: at once when nothing waits, else through the send queue. The
   * queue (a `Sender`) is made with the first message to compress: a
   * connection without compression never has one.
   */
  private sendOp(op: SendOp): void {
    if (this.sender !== null || (op.kind === 'data' && op.compress)) this.senderOf().send(op);
    else if (op.kind === 'close-echo') this._answerClose();
    else writeOp(this.connOf(), op);
  }

  /** The send queue (see sendOp). */
  private senderOf(): Sender {
    // Not `this` as the host: the host's methods would become public names on the ws-compatible API.
    return (this.sender ??= new Sender(this.connOf(), this.codec, new SenderLink(this)));
  }

  /** @internal SenderLink */
  _endSocket(): void {
    this.endSocket();
  }

  /** End TCP after the frames gathered in this tick. */
  private endSocket(): void {
    this.flushHeld();
    this.socket!.end();
  }

  /**
   * @internal
   * 'drain' once a send() that returned false can be followed by more: our
   * compression queue is empty and the socket does not wait for its own drain.
   */
  _maybeDrain(): void {
    if (!this.flag(F_NEED_DRAIN) || (this.sender !== null && this.sender.busy)) return;
    const socket = this.socket!;
    if (socket.writableNeedDrain || socket.writableLength >= socket.writableHighWaterMark) return;
    this.flags &= ~F_NEED_DRAIN;
    this.emit('drain');
  }

  /** @internal ConnectionHandler */
  onInputEnd(): void {
    if (this.flag(F_SOCKET_CLOSED)) this.finishClose();
  }

  private finishClose(): void {
    if (this._readyState === CLOSED) return;
    this._readyState = CLOSED;
    this.codec?.close();
    const conn = this.connOf();
    this.setFlag(F_WAS_CLEAN, conn.closeReceived && conn.closeSent && conn.error === null);
    // The peer's code after a close handshake; after we failed the connection,
    // the code we sent (as `ws` reports it); else 1006.
    const code = conn.closeReceived ? conn.closeCode : conn.error ? conn.sentCloseCode : CloseCode.AbnormalClosure;
    const reason = conn.closeReceived ? conn.closeReason : EMPTY;
    this.sender?.fail(new InvalidStateError('WS_ERR_CLOSED', 'the connection closed before the data was sent'));
    // Once: finishClose returns early from now on (CLOSED).
    this.setup.owner?._clientClosed(this);
    this.emitClose(code, reason);
  }

  private emitClose(code: number, reason: Buffer): void {
    if (this.flag(F_CLOSE_EMITTED)) return;
    this.flags |= F_CLOSE_EMITTED;
    this._readyState = CLOSED;
    this.emit('close', code, reason);
  }

  /** 'error' only when someone listens: a peer must not be able to crash the process. */
  private emitError(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  // ---- ConnectionHandler -------------------------------------------------------

  /** @internal */
  onWrite(chunks: Buffer[]): void {
    const socket = this.socket!;
    // Frames the connection writes on its own (an automatic pong) come without a sender.
    const cb = takeWriteCallback();
    if (!this.flag(F_FLUSH_DUE)) {
      this.flags |= F_FLUSH_DUE;
      flushAtTickEnd(this);
    }
    // Small frames without a callback (a fan-out's frames, replies) are gathered and go to the socket
    // as one buffer at the end of the tick: one socket.write per tick instead of one per frame (Node's
    // bookkeeping per write was ~15 % of a cluster node's CPU, docs/benchmarks.md). The bytes are the same.
    // The socket is not corked for them: one uncorked write skips Node's buffering of corked writes.
    if (cb === undefined && this.hold(chunks)) return;
    // Larger frames (a burst of sends, the replies to a chunk of pipelined messages) leave in one
    // writev: the socket is corked until the tick ends.
    if (!this.flag(F_SOCKET_CORKED)) {
      this.flags |= F_SOCKET_CORKED;
      socket.cork();
    }
    this.flushHeld();
    const last = chunks.length - 1;
    for (let i = 0; i < last; i++) socket.write(chunks[i]!);
    if (!socket.write(chunks[last]!, cb)) this.flags |= F_NEED_DRAIN;
  }

  /** Gather `chunks` for the end of the tick (see onWrite); false when they are too large to. */
  private hold(chunks: Buffer[]): boolean {
    let bytes = 0;
    for (const c of chunks) {
      if (c.length >= HELD_MAX_FRAME) return false;
      bytes += c.length;
    }
    if (this.heldBytes + bytes > HELD_MAX_BYTES) return false;
    const held = (this.held ??= []);
    for (const c of chunks) held.push(c);
    this.heldBytes += bytes;
    return true;
  }

  /** Hand the gathered frames to the socket, as one buffer (dropped when the socket can no longer write). */
  private flushHeld(): void {
    const held = this.held;
    if (held === null) return;
    const bytes = this.heldBytes;
    this.held = null;
    this.heldBytes = 0;
    const socket = this.socket!;
    if (socket.destroyed || socket.writableEnded) return;
    if (!socket.write(held.length === 1 ? held[0]! : Buffer.concat(held, bytes))) this.flags |= F_NEED_DRAIN;
  }

  /** @internal The end of a tick in which this WebSocket wrote (flushAll): gathered frames out, the socket uncorked. */
  _flushTick(): void {
    this.flags &= ~F_FLUSH_DUE;
    this.flushHeld();
    if (this.flag(F_SOCKET_CORKED)) {
      this.flags &= ~F_SOCKET_CORKED;
      this.socket!.uncork();
    }
    if (this.flag(F_NEED_DRAIN)) this._maybeDrain();
  }

  /** @internal */
  onMessage(data: Buffer, isBinary: boolean): void {
    const binaryType = this.flags >>> BINARY_TYPE_SHIFT;
    if (!isBinary || binaryType === NODEBUFFER) {
      this.emit('message', data, isBinary);
    } else if (binaryType === ARRAYBUFFER) {
      this.emit('message', data.buffer.slice(data.byteOffset, data.byteOffset + data.length), isBinary);
    } else if (binaryType === FRAGMENTS) {
      this.emit('message', [data], isBinary);
    } else {
      this.emit('message', new Blob([data]), isBinary);
    }
  }

  /** @internal */
  onPing(data: Buffer): void {
    this.emit('ping', data);
  }

  /** @internal */
  onPong(data: Buffer): void {
    this.flags &= ~F_AWAITING_PONG;
    this.emit('pong', data);
  }

  /** @internal */
  onCloseFrame(): void {
    this._readyState = CLOSING;
    // Messages accepted by send() before the close arrived go out first.
    this.sendOp({ kind: 'close-echo' });
    this.armCloseTimer();
  }

  /** @internal The close handshake is complete on our side: the server closes TCP first (§7.1.1). */
  _answerClose(): void {
    this.conn!.echoCloseFrame();
    if (this.setup.role === 'server') this.endSocket();
  }

  /** @internal */
  onFail(err: WebSocketError): void {
    this._readyState = CLOSING;
    this.sender?.fail(err);
    // §7.1.1: the server closes the TCP connection first; a client that
    // failed waits for it (bounded by the close timer), as after any close.
    if (this.setup.role === 'server') this.endSocket();
    this.armCloseTimer();
    this.emitError(err);
  }

  // ---- API ----------------------------------------------------------------------

  /**
   * Send a message. Strings go as text, anything else as binary, unless
   * `options.binary` says otherwise. `fin: false` sends a fragment; the next
   * `send` continues the message. Returns false once `bufferedAmount` reaches
   * the socket's high-water mark; wait for `drain` before sending more.
   */
  send(data: unknown, options?: { binary?: boolean; compress?: boolean; fin?: boolean; mask?: boolean } | SendCallback, cb?: SendCallback): boolean {
    if (typeof options === 'function') {
      cb = options;
      options = undefined;
    }
    if (this._readyState === CONNECTING) {
      throw notOpen(CONNECTING);
    }
    if (this._readyState !== OPEN || this.closeSent) {
      if (cb) {
        process.nextTick(cb, notOpen(this._readyState));
      }
      return false;
    }
    // Strings stay strings down to the frame encoder, which writes them into
    // the frame buffer directly. A number is sent as its decimal text, as `ws` does.
    const payload: Buffer | string = typeof data === 'string' ? data : typeof data === 'number' ? String(data) : toBuffer(data);
    const isBinary = options?.binary ?? typeof payload !== 'string';
    const fin = options?.fin ?? true;
    let compress = false;
    if (this.codec) {
      // The choice is made on the first fragment and holds for the whole message.
      compress = this.flag(F_COMPRESSING) || ((options?.compress ?? true) && byteLengthAtLeast(payload, this.codec.threshold));
      this.setFlag(F_COMPRESSING, compress && !fin);
    }
    this.sendOp({ kind: 'data', data: payload, isBinary, fin, compress, cb });
    return this.checkBackpressure();
  }

  /**
   * Server side: write a frame encoded once with `encodeServerFrame` (from
   * `switchboard/protocol`), e.g. the same broadcast frame to many clients.
   * The frame goes out as it is, uncompressed (RFC 7692 allows uncompressed
   * messages on a connection that negotiated compression).
   * Returns false under backpressure, like `send`.
   */
  sendFrame(frame: Buffer, cb?: SendCallback): boolean {
    if (this._readyState !== OPEN || this.closeSent) {
      if (cb) process.nextTick(cb, notOpen(this._readyState));
      return false;
    }
    if (this.setup.role !== 'server') throw new InvalidStateError('WS_ERR_CLIENT_PREPARED_FRAME', 'clients must mask every frame: use send()');
    // Nothing queued and no callback (a fan-out's frame): straight to the connection, no op object.
    if (this.sender === null && cb === undefined) this.connOf().sendPrepared(frame);
    else this.sendOp({ kind: 'frame', data: frame, cb });
    return this.checkBackpressure();
  }

  /** Send a ping (payload <= 125 bytes). */
  ping(data?: unknown, _mask?: boolean, cb?: SendCallback): void {
    this.control('ping', data, cb);
  }

  /** Send an unsolicited pong (payload <= 125 bytes). */
  pong(data?: unknown, _mask?: boolean, cb?: SendCallback): void {
    this.control('pong', data, cb);
  }

  private control(kind: 'ping' | 'pong', data: unknown, cb?: SendCallback): void {
    if (this._readyState === CONNECTING) {
      throw notOpen(CONNECTING);
    }
    const buf = typeof data === 'number' ? Buffer.from(String(data)) : toBuffer(data);
    if (buf.length > 125) throw new RangeError('The data size must not be greater than 125 bytes');
    if (this._readyState !== OPEN || this.closeSent) {
      if (cb) process.nextTick(cb, notOpen(this._readyState));
      return;
    }
    this.sendOp({ kind, data: buf, cb });
  }

  /**
   * Start the closing handshake. Without `code`, the close frame carries no
   * status (the peer sees 1005). The connection is destroyed if the peer does
   * not complete the handshake within the close timeout.
   */
  close(code?: number, reason?: string | Buffer): void {
    if (this._readyState === CLOSED) return;
    if (this._readyState === CONNECTING) {
      this.handshake?.abort('WebSocket was closed before the connection was established');
      return;
    }
    const conn = this.conn;
    if (conn !== null && conn.closeSent) {
      if (conn.closeReceived) this.endSocket();
      return;
    }
    if (code !== undefined) {
      // Validate now so a bad code throws synchronously even when the frame is queued.
      encodeClosePayload(code, reason ?? '');
    }
    this._readyState = CLOSING;
    this.sendOp({ kind: 'close', code, reason: reason ?? '' });
    this.armCloseTimer();
  }

  /** Destroy the connection at once, without a closing handshake (the close event reports 1006). */
  terminate(): void {
    if (this._readyState === CLOSED) return;
    if (this._readyState === CONNECTING) {
      this.handshake?.abort('WebSocket was closed before the connection was established');
      return;
    }
    this._readyState = CLOSING;
    this.held = null;
    this.heldBytes = 0;
    this.socket!.destroy();
  }

  /** Stop reading from the peer (backpressure); `resume()` starts again. */
  pause(): void {
    if (this._readyState === CONNECTING || this._readyState === CLOSED) return;
    this.flags |= F_PAUSED;
    this.connOf().pause();
    this.socket!.pause();
  }

  resume(): void {
    if (this._readyState === CONNECTING || this._readyState === CLOSED) return;
    this.flags &= ~F_PAUSED;
    this.socket!.resume();
    this.connOf().resume();
  }

  // ---- internals -----------------------------------------------------------------

  private checkBackpressure(): boolean {
    const socket = this.socket!;
    if (this.bufferedAmount >= socket.writableHighWaterMark) {
      this.flags |= F_NEED_DRAIN;
      return false;
    }
    return true;
  }

  private armCloseTimer(): void {
    if (this.closeTimer || this._readyState === CLOSED) return;
    this.closeTimer = setTimeout(destroySocketOf, this.setup.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT, this);
    this.closeTimer.unref?.();
  }

  /** @internal */
  _destroySocket(): void {
    this.socket?.destroy();
  }

  /** @internal HeartbeatMember: the wheel's ping (only while open; the closing handshake has its own timer). */
  _heartbeatPing(): void {
    if (this._readyState !== OPEN || this.closeSent) {
      // Closing: the close timer bounds what is left, not the heartbeat.
      this.flags &= ~F_AWAITING_PONG;
    } else if (this.setup.role === 'server' && this.sender === null) {
      // The shared frame, written as it is: a control frame may go between two
      // frames of a message (§5.4), and nothing waits in a send queue to keep order with.
      if (!this.socket!.write(SERVER_PING)) this.flags |= F_NEED_DRAIN;
    } else {
      // A client masks each frame with a fresh key; a queue keeps order behind a message being compressed.
      this.ping();
    }
  }

  /** @internal HeartbeatMember: nothing arrived within the timeout after a ping. */
  _heartbeatExpired(): void {
    if (this._readyState === CLOSED) return;
    this.emitError(new InvalidStateError('WS_ERR_HEARTBEAT_TIMEOUT', 'no pong within the heartbeat timeout'));
    this.terminate();
  }

  private clearTimers(): void {
    if (this.closeTimer) clearTimeout(this.closeTimer);
    this.closeTimer = null;
    // No-op when not in the wheel (never joined, or expired).
    this.setup.heartbeatWheel?.remove(this);
  }
}

function destroySocketOf(ws: WebSocket): void {
  ws._destroySocket();
}

for (const [name, value] of [['CONNECTING', CONNECTING], ['OPEN', OPEN], ['CLOSING', CLOSING], ['CLOSED', CLOSED]] as const) {
  Object.defineProperty(WebSocket.prototype, name, { value, enumerable: true, writable: false, configurable: false });
}

/** What a 'message' listener receives for binary messages, by `binaryType` (text is always a Buffer). */
export type RawData = Buffer | ArrayBuffer | Buffer[] | Blob;

type WsListener<A extends unknown[]> = (this: WebSocket, ...args: A) => void;

// Typed events (merged into the class).
export interface WebSocket {
  on(event: 'message', listener: WsListener<[data: RawData, isBinary: boolean]>): this;
  on(event: 'close', listener: WsListener<[code: number, reason: Buffer]>): this;
  on(event: 'error', listener: WsListener<[err: Error]>): this;
  on(event: 'ping' | 'pong', listener: WsListener<[data: Buffer]>): this;
  on(event: 'open' | 'drain', listener: WsListener<[]>): this;
  on(event: 'upgrade', listener: WsListener<[response: import('node:http').IncomingMessage]>): this;
  on(event: 'redirect', listener: WsListener<[url: string, request: import('node:http').ClientRequest]>): this;
  on(event: 'unexpected-response', listener: WsListener<[request: import('node:http').ClientRequest, response: import('node:http').IncomingMessage]>): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  once(event: 'message', listener: WsListener<[data: RawData, isBinary: boolean]>): this;
  once(event: 'close', listener: WsListener<[code: number, reason: Buffer]>): this;
  once(event: 'error', listener: WsListener<[err: Error]>): this;
  once(event: 'ping' | 'pong', listener: WsListener<[data: Buffer]>): this;
  once(event: 'open' | 'drain', listener: WsListener<[]>): this;
  once(event: string | symbol, listener: (...args: any[]) => void): this;
}
