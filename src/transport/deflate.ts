/**
 * The zlib side of permessage-deflate (RFC 7692): a per-connection codec that
 * the transport hands to the sans-I/O `Connection` as its {@link Inflater} and
 * uses itself as the {@link Deflater}.
 *
 * ## Design
 *
 * - Asynchronous node:zlib raw streams (`createDeflateRaw`/`createInflateRaw`),
 *   never the `*Sync` functions, so a large message is processed on the libuv
 *   thread pool in `chunkSize` steps and never blocks the event loop.
 * - Every write is made with `Z_SYNC_FLUSH` (the stream's `flush` option), so
 *   each message or fragment ends on a byte boundary and all its output has
 *   been emitted when the write callback runs. This is the same as writing and
 *   then calling `flush(Z_SYNC_FLUSH)`, with one thread-pool round trip fewer.
 * - A process-wide limiter (zlib-limiter.ts) bounds how many zlib operations
 *   run at once (default {@link DEFAULT_ZLIB_CONCURRENCY}), as `ws` does.
 * - Streams are created on first use and released (destroyed, their native
 *   memory freed) after each message in a direction without context takeover;
 *   an idle connection then holds no zlib memory at all. With context takeover
 *   the stream must live as long as the connection (RFC 7692 §7.2.1: the
 *   sliding window carries over to the next message).
 * - The inflated size of a whole message is counted as zlib produces it; past
 *   `maxPayload` the stream is destroyed at once, so a "zip bomb" costs at most
 *   `maxPayload` plus one output chunk of memory.
 *
 * ## Window of 8 bits
 *
 * zlib cannot deflate raw data with an 8-bit (256-byte) window: zlib ≥ 1.2.9
 * rejects it and Node's binding silently raises it to 9. The codec therefore
 * compresses with 9 bits when 8 was negotiated. That is still compatible with
 * a peer that only keeps 256 bytes of history: zlib's deflate never emits a
 * match distance greater than the window size minus 262 (its minimum
 * lookahead), i.e. at most 250 for a 512-byte window, so every back reference
 * fits in 256 bytes. The tests check this by decoding with a streaming 8-bit
 * inflater. Inflating with 8 bits works as is (zlib's inflate supports it).
 *
 * @see https://www.rfc-editor.org/rfc/rfc7692#section-7
 */
import { channel } from 'node:diagnostics_channel';
import * as zlib from 'node:zlib';
import type { Deflater, Inflater } from '../protocol/extension.js';
import type { NegotiatedDeflate } from '../protocol/extensions/permessage-deflate.js';
import {
  InternalError,
  InvalidDataError,
  InvalidStateError,
  MessageTooBigError,
  type WebSocketError,
} from '../protocol/errors.js';
import { limiter, setZlibConcurrencyLimit, type ZlibJob } from './zlib-limiter.js';

// The limiter's API was first published from this module; importers keep working.
export {
  DEFAULT_ZLIB_CONCURRENCY,
  getZlibConcurrencyStats,
  setZlibConcurrencyLimit,
  type ZlibConcurrencyStats,
} from './zlib-limiter.js';

/**
 * Default compression level: 3. `ws` passes nothing and so gets zlib's default
 * (6); its README's tuning example uses level 3 (with memLevel 7). Measured on
 * Node 20 with realtime-style JSON, level 3 deflates about 2.3× faster than 6
 * for output about 15% larger; levels 1 and 2 save little more time. Note that
 * zlib's fast levels (1-3) find fewer matches with small negotiated windows.
 */
export const DEFAULT_DEFLATE_LEVEL = 3;

/**
 * Default zlib memory level: 8, zlib's and `ws`'s default. A 15-bit deflate
 * stream then takes about 256 KiB (window 64 KiB + hash chains 64 KiB + hash
 * heads 64 KiB + pending buffer 64 KiB); an inflate stream about 40 KiB.
 */
export const DEFAULT_DEFLATE_MEM_LEVEL = 8;

/** Default {@link PerMessageDeflateCodec.threshold}, in bytes (same as `ws`). */
export const DEFAULT_DEFLATE_THRESHOLD = 1024;

/** Idle time after which a compression context is released, in ms. */
export const DEFAULT_IDLE_RELEASE_MS = 10_000;

/**
 * Name of the `node:diagnostics_channel` on which the codec publishes a
 * {@link DeflateStreamCreated} message each time it allocates a zlib stream.
 * Publishing is skipped when nobody subscribes. For tracing and tests.
 */
export const DEFLATE_STREAM_CHANNEL = 'switchboard:deflate:stream';

/** Message published on {@link DEFLATE_STREAM_CHANNEL}. */
export interface DeflateStreamCreated {
  /** `'inflate'` for incoming messages, `'deflate'` for outgoing ones. */
  direction: 'inflate' | 'deflate';
  /** The role of the codec that created the stream. */
  role: 'server' | 'client';
  /** windowBits the stream was created with (9..15 for deflate, 8..15 for inflate). */
  windowBits: number;
  /** The stream. Observe it; do not write to it or end it. */
  stream: zlib.InflateRaw | zlib.DeflateRaw;
}

/** Options of {@link PerMessageDeflateCodec}. */
export interface PerMessageDeflateCodecOptions {
  /**
   * Which end of the connection this codec is. A server compresses with the
   * `server_*` parameters and decompresses with the `client_*` ones; a client
   * the other way round (RFC 7692 §7.1).
   */
  role: 'server' | 'client';
  /** The negotiated parameters (window bits 8..15). */
  params: NegotiatedDeflate;
  /**
   * Largest inflated size of one incoming message, all fragments together, in
   * bytes; 0 for no limit. Over it, inflation stops and the callback gets a
   * `MessageTooBigError` (1009).
   */
  maxPayload: number;
  /** zlib compression level, -1 (zlib default, 6) or 0..9. Default {@link DEFAULT_DEFLATE_LEVEL} (3). */
  level?: number;
  /** zlib memory level for compression, 1..9. Default {@link DEFAULT_DEFLATE_MEM_LEVEL} (8). */
  memLevel?: number;
  /**
   * Messages smaller than this many bytes should be sent uncompressed. Not used
   * by the codec itself; the transport reads {@link PerMessageDeflateCodec.threshold}.
   * Default {@link DEFAULT_DEFLATE_THRESHOLD} (1024 bytes).
   */
  threshold?: number;
  /**
   * When given, sets the process-wide zlib concurrency limit (see
   * {@link setZlibConcurrencyLimit}); the last value set wins. Default: leave
   * the limit as it is ({@link DEFAULT_ZLIB_CONCURRENCY} unless changed).
   */
  concurrencyLimit?: number;
  /**
   * Release this side's compression context after this many ms without a
   * message; the next message starts a fresh one. RFC 7692 allows an endpoint
   * to drop its own context at any time (context takeover is a permission,
   * not a duty), so peers notice nothing but a lower ratio for that message.
   * Bounds zlib memory to the connections that are actually sending.
   * Default {@link DEFAULT_IDLE_RELEASE_MS} (10000); 0 keeps the context.
   */
  idleReleaseMs?: number;
}

// ---------------------------------------------------------------------------
// One direction of a codec

/** The 4 octets a sync flush ends with; RFC 7692 §7.2.1 removes them, §7.2.2 appends them. */
const TRAILER = Buffer.from([0x00, 0x00, 0xff, 0xff]);
const EMPTY = Buffer.alloc(0);
/** Payloads up to this size are copied to append the trailer, saving a thread-pool round trip. */
const SMALL_PAYLOAD = 16 * 1024;

const IDLE = 0; // no operation pending
const QUEUED = 1; // waiting in the limiter
const RUNNING = 2; // holds a limiter slot, zlib working
const FAILED = 3; // inflate failed: every call gets `failure`
const CLOSED = 4; // codec closed

type ZlibStream = zlib.InflateRaw | zlib.DeflateRaw;
interface StreamOwner {
  onData(chunk: Buffer): void;
  onStreamError(err: Error): void;
  onStreamLost(): void;
}
const kOwner = Symbol('switchboard.deflate.owner');
type OwnedStream = ZlibStream & { [kOwner]: StreamOwner | null };

// Stream listeners are module-level functions with a back reference to their
// direction (no closure per stream). A released stream's owner is null, so
// anything it still emits is ignored; the 'error' listener stays attached so
// a late error cannot become an uncaught exception.
function onStreamData(this: OwnedStream, chunk: Buffer): void {
  const owner = this[kOwner];
  if (owner !== null) owner.onData(chunk);
}
function onStreamError(this: OwnedStream, err: Error): void {
  const owner = this[kOwner];
  if (owner !== null) owner.onStreamError(err);
}
// Our own releases clear the owner first, so this only fires for a stream
// destroyed by someone else (it would otherwise leave an operation hanging).
function onStreamClose(this: OwnedStream): void {
  const owner = this[kOwner];
  if (owner !== null) owner.onStreamLost();
}

interface Op<E extends Error> {
  data: Buffer;
  fin: boolean;
  callback: (err: E | null, data?: Buffer) => void;
}

function closedError(): InvalidStateError {
  return new InvalidStateError('WS_ERR_CODEC_CLOSED', 'the permessage-deflate codec is closed');
}

/**
 * The queue and zlib stream of one direction. Its operations run one at a
 * time (so output chunks always belong to the running one) and in call order;
 * between two of them it goes back to the end of the limiter's queue, so one
 * busy connection cannot starve the others.
 */
abstract class Direction<E extends Error> implements ZlibJob, StreamOwner {
  protected abstract readonly direction: 'inflate' | 'deflate';
  protected state = IDLE;
  protected stream: ZlibStream | null = null;
  protected readonly ops: Op<E>[] = [];
  protected chunks: Buffer[] = [];
  protected chunkBytes = 0;
  /**
   * Bound once: the write callback of every operation. zlib reports invalid
   * data with an 'error' event and then calls no write callback. An error
   * here means a stream was destroyed under us: handled like a stream error
   * if it is the current stream, ignored if it is one already released.
   */
  protected readonly onWritten = (err?: Error | null): void => {
    const stream = this.stream;
    if (this.state !== RUNNING || stream === null) return; // released: failed or closed meanwhile
    if (!stream.destroyed) {
      if (!err) this.written();
      return; // an error from an earlier, released stream
    }
    if (stream.errored) this.onStreamError(stream.errored);
    else this.onStreamLost();
  };

  constructor(
    protected readonly role: 'server' | 'client',
    protected readonly windowBits: number,
    protected readonly noContextTakeover: boolean,
  ) {}

  push(data: Buffer, fin: boolean, callback: (err: E | null, data?: Buffer) => void): void {
    if (this.state >= FAILED) {
      process.nextTick(callback, this.failureFor());
      return;
    }
    this.ops.push({ data, fin, callback });
    if (this.state === IDLE) {
      this.state = QUEUED;
      limiter.add(this);
    }
  }

  startZlibJob(): boolean {
    if (this.state !== QUEUED) return false; // closed or failed while waiting
    this.state = RUNNING;
    try {
      this.run(this.ops[0]!);
    } catch (err) {
      // Only reachable if zlib refuses the options; fail like a stream error.
      process.nextTick(() => this.onStreamError(err as Error));
    }
    return true;
  }

  /** Release every resource; pending callbacks get a `WS_ERR_CODEC_CLOSED` error on a later tick. */
  close(): void {
    if (this.state === CLOSED) return;
    if (this.state === RUNNING) limiter.release();
    this.state = CLOSED;
    this.releaseStream();
    this.dropOutput();
    this.onClose();
    const ops = this.ops.splice(0);
    if (ops.length > 0) process.nextTick(settleAll, ops, this.failureFor());
  }

  abstract onData(chunk: Buffer): void;
  abstract onStreamError(err: Error): void;
  abstract onStreamLost(): void;
  protected abstract run(op: Op<E>): void;
  protected abstract written(): void;
  /** The error for calls that cannot run: after a failure or after close. */
  protected abstract failureFor(): E;
  protected onClose(): void {}

  protected ensureStream(): ZlibStream {
    if (this.stream !== null) return this.stream;
    const stream = this.createStream() as OwnedStream;
    stream[kOwner] = this;
    stream.on('data', onStreamData);
    stream.on('error', onStreamError);
    stream.on('close', onStreamClose);
    this.stream = stream;
    if (streamChannel.hasSubscribers) {
      const message: DeflateStreamCreated = {
        direction: this.direction,
        role: this.role,
        windowBits: this.windowBits,
        stream,
      };
      streamChannel.publish(message);
    }
    return stream;
  }

  protected abstract createStream(): ZlibStream;

  /** Destroy the stream: zlib frees its native memory (deferred by Node if a chunk is in flight). */
  protected releaseStream(): void {
    const stream = this.stream as OwnedStream | null;
    if (stream === null) return;
    this.stream = null;
    stream[kOwner] = null;
    stream.destroy();
  }

  protected dropOutput(): void {
    this.chunks = [];
    this.chunkBytes = 0;
  }

  protected takeOutput(): Buffer {
    const { chunks, chunkBytes } = this;
    this.dropOutput();
    if (chunks.length === 1) return chunks[0]!;
    if (chunks.length === 0) return EMPTY;
    return Buffer.concat(chunks, chunkBytes);
  }

  /** The running operation finished: free the slot, requeue if more wait, then call back. */
  protected complete(err: E | null, data: Buffer | undefined): void {
    const op = this.ops.shift()!;
    this.state = IDLE;
    limiter.release();
    if (this.ops.length > 0) {
      this.state = QUEUED;
      limiter.add(this);
    }
    op.callback(err, data);
  }
}

function settleAll<E extends Error>(ops: Op<E>[], err: E): void {
  for (const op of ops) op.callback(err);
}

const streamChannel = channel(DEFLATE_STREAM_CHANNEL);

class InflateDirection extends Direction<WebSocketError> {
  protected readonly direction = 'inflate';
  private messageBytes = 0;
  private failure: WebSocketError | null = null;

  constructor(
    role: 'server' | 'client',
    windowBits: number,
    noContextTakeover: boolean,
    private readonly maxPayload: number,
  ) {
    super(role, windowBits, noContextTakeover);
  }

  protected createStream(): ZlibStream {
    return zlib.createInflateRaw({ windowBits: this.windowBits, flush: zlib.constants.Z_SYNC_FLUSH });
  }

  protected run(op: Op<WebSocketError>): void {
    const stream = this.ensureStream();
    if (!op.fin) {
      stream.write(op.data, this.onWritten);
    } else if (op.data.length <= SMALL_PAYLOAD) {
      // RFC 7692 §7.2.2 step 1: append 0x00 0x00 0xff 0xff to the message's payload.
      stream.write(Buffer.concat([op.data, TRAILER], op.data.length + 4), this.onWritten);
    } else {
      stream.write(op.data);
      stream.write(TRAILER, this.onWritten);
    }
  }

  onData(chunk: Buffer): void {
    if (this.state !== RUNNING) return;
    this.messageBytes += chunk.length;
    // The limit applies to the whole message while it is being inflated, so
    // a small compressed payload cannot make us allocate a huge one.
    if (this.maxPayload > 0 && this.messageBytes > this.maxPayload) {
      this.fail(
        new MessageTooBigError(
          'WS_ERR_MESSAGE_TOO_BIG',
          `inflated message exceeds maxPayload (${this.maxPayload} bytes)`,
        ),
      );
      return;
    }
    this.chunks.push(chunk);
    this.chunkBytes += chunk.length;
  }

  onStreamError(err: Error): void {
    this.fail(new InvalidDataError('WS_ERR_INFLATE_FAILED', `invalid compressed data: ${err.message}`));
  }

  onStreamLost(): void {
    this.fail(new InternalError('WS_ERR_INFLATE_FAILED', 'the zlib stream was closed unexpectedly'));
  }

  /** The running operation's input was fully processed (called by `onWritten`). */
  protected written(): void {
    const stream = this.stream!;
    const op = this.ops[0]!;
    const data = this.takeOutput();
    if (op.fin) {
      this.messageBytes = 0;
      // RFC 7692 §7.2.2: with <endpoint>_no_context_takeover the next message
      // starts from an empty window; releasing the stream does that and frees
      // its memory until then. A stream that ended (the peer used a block with
      // BFINAL set, §7.2.3.3) cannot take more input, so it goes too.
      if (this.noContextTakeover || stream.readableEnded) this.releaseStream();
    }
    this.complete(null, data);
  }

  protected failureFor(): WebSocketError {
    return this.state === CLOSED || this.failure === null ? closedError() : this.failure;
  }

  /**
   * Stop for good: the connection is about to close (1007 or 1009). The
   * stream is destroyed and buffered output dropped at once; this and every
   * queued or later call get `err`.
   */
  private fail(err: WebSocketError): void {
    if (this.state >= FAILED) return;
    const wasRunning = this.state === RUNNING;
    this.state = FAILED;
    this.failure = err;
    this.releaseStream();
    this.dropOutput();
    this.messageBytes = 0;
    const ops = this.ops.splice(0);
    if (wasRunning) limiter.release();
    settleAll(ops, err);
  }

  protected override onClose(): void {
    this.messageBytes = 0;
  }
}

/**
 * Compression contexts kept between messages, swept by one unref'd timer:
 * one that has been idle for its `idleReleaseMs` is released (not in the
 * middle of a fragmented message).
 */
const retainedDeflaters = new Set<DeflateDirection>();
let idleSweep: NodeJS.Timeout | null = null;
const IDLE_SWEEP_MS = 1000;

function sweepIdleDeflaters(): void {
  const now = Date.now();
  for (const d of retainedDeflaters) d.releaseIfIdle(now);
  if (retainedDeflaters.size === 0 && idleSweep) {
    clearInterval(idleSweep);
    idleSweep = null;
  }
}

class DeflateDirection extends Direction<Error> {
  protected readonly direction = 'deflate';
  private lastUsed = 0;
  private midMessage = false;
  constructor(
    role: 'server' | 'client',
    windowBits: number,
    noContextTakeover: boolean,
    private readonly level: number,
    private readonly memLevel: number,
    private readonly idleReleaseMs: number,
  ) {
    super(role, windowBits, noContextTakeover);
  }

  /** @internal the idle sweep */
  releaseIfIdle(now: number): void {
    if (this.stream === null || this.state === CLOSED) {
      retainedDeflaters.delete(this);
      return;
    }
    if (this.state !== IDLE || this.midMessage || now - this.lastUsed < this.idleReleaseMs) return;
    this.releaseStream();
    retainedDeflaters.delete(this);
  }

  private retain(): void {
    if (this.idleReleaseMs <= 0 || this.stream === null) return;
    retainedDeflaters.add(this);
    if (!idleSweep) {
      idleSweep = setInterval(sweepIdleDeflaters, Math.min(IDLE_SWEEP_MS, this.idleReleaseMs));
      idleSweep.unref();
    }
  }

  protected override onClose(): void {
    retainedDeflaters.delete(this);
  }

  protected createStream(): ZlibStream {
    return zlib.createDeflateRaw({
      windowBits: this.windowBits,
      level: this.level,
      memLevel: this.memLevel,
      flush: zlib.constants.Z_SYNC_FLUSH,
    });
  }

  protected run(op: Op<Error>): void {
    this.ensureStream().write(op.data, this.onWritten);
  }

  onData(chunk: Buffer): void {
    if (this.state !== RUNNING) return;
    this.chunks.push(chunk);
    this.chunkBytes += chunk.length;
  }

  onStreamError(err: Error): void {
    // Not expected with valid options; report it and start over with a fresh
    // stream for the next message (the transport closes the connection anyway).
    if (this.state !== RUNNING) {
      this.releaseStream();
      return;
    }
    this.releaseStream();
    this.dropOutput();
    this.complete(new InternalError('WS_ERR_DEFLATE_FAILED', `compression failed: ${err.message}`), undefined);
  }

  onStreamLost(): void {
    this.onStreamError(new Error('the zlib stream was closed unexpectedly'));
  }

  /** The running operation's input was fully processed (called by `onWritten`). */
  protected written(): void {
    const op = this.ops[0]!;
    let data = this.takeOutput();
    if (op.fin) {
      const n = data.length;
      if (n >= 4 && data[n - 4] === 0x00 && data[n - 3] === 0x00 && data[n - 2] === 0xff && data[n - 1] === 0xff) {
        // RFC 7692 §7.2.1 step 3: remove the 4-octet 0x00 0x00 0xff 0xff tail.
        data = data.subarray(0, n - 4);
      } else if (n === 0) {
        // zlib emits nothing for a sync flush right after another with no new
        // input (an empty message, or an empty last fragment). The peer will
        // append 0x00 0x00 0xff 0xff, so send the header octet of an empty
        // stored block, 0x00, to complete it (RFC 7692 §7.2.3.6).
        data = Buffer.from([0x00]);
      } else {
        this.releaseStream();
        this.complete(new InternalError('WS_ERR_DEFLATE_FAILED', 'zlib output does not end with a sync flush'), undefined);
        return;
      }
      // RFC 7692 §7.2.1: with <endpoint>_no_context_takeover the next message
      // must not refer to this one; a fresh stream (created lazily) ensures it.
      if (this.noContextTakeover) this.releaseStream();
    }
    this.midMessage = !op.fin;
    this.lastUsed = Date.now();
    this.retain();
    this.complete(null, data);
  }

  protected failureFor(): InvalidStateError {
    return closedError();
  }
}

// ---------------------------------------------------------------------------
// The codec

function checkInt(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer in ${min}..${max}, got ${value}`);
  }
  return value;
}

/**
 * permessage-deflate compression for one connection (RFC 7692 §7.2).
 *
 * Contract:
 * - Each direction processes its calls one at a time, in call order, and calls
 *   back in that order; the two directions are independent. Callbacks always
 *   run on a later tick than the call.
 * - The codec keeps a reference to each `payload`/`data` buffer until its
 *   callback runs: the caller must not modify it before.
 * - Returned buffers may be views into a larger zlib output chunk (up to
 *   16 KiB); copy one before keeping it for long.
 * - After an inflate error (1007 or 1009) the inflate side is dead: every
 *   pending and later `inflate` call gets the same error. Compression is not
 *   affected.
 * - {@link close} frees everything; pending and later calls of both
 *   directions get an `InvalidStateError` `WS_ERR_CODEC_CLOSED` (1011) on a
 *   later tick, never a crash and never data.
 */
export class PerMessageDeflateCodec implements Inflater, Deflater {
  /**
   * Messages smaller than this many bytes should be sent uncompressed; applied
   * by the transport. Default {@link DEFAULT_DEFLATE_THRESHOLD} (1024 bytes).
   */
  readonly threshold: number;
  /** Which end of the connection this codec is. */
  readonly role: 'server' | 'client';
  private readonly inflater: InflateDirection;
  private readonly deflater: DeflateDirection;
  private closed = false;

  constructor(options: PerMessageDeflateCodecOptions) {
    const { role, params } = options;
    if (role !== 'server' && role !== 'client') throw new RangeError(`role must be 'server' or 'client', got ${String(role)}`);
    const maxPayload = options.maxPayload;
    if (!(maxPayload >= 0)) throw new RangeError(`maxPayload must be >= 0 bytes, got ${maxPayload}`);
    const level = checkInt('level', options.level ?? DEFAULT_DEFLATE_LEVEL, -1, 9);
    const memLevel = checkInt('memLevel', options.memLevel ?? DEFAULT_DEFLATE_MEM_LEVEL, 1, 9);
    const threshold = options.threshold ?? DEFAULT_DEFLATE_THRESHOLD;
    if (!(threshold >= 0)) throw new RangeError(`threshold must be >= 0 bytes, got ${threshold}`);
    const serverBits = checkInt('serverMaxWindowBits', params.serverMaxWindowBits, 8, 15);
    const clientBits = checkInt('clientMaxWindowBits', params.clientMaxWindowBits, 8, 15);
    if (options.concurrencyLimit !== undefined) setZlibConcurrencyLimit(options.concurrencyLimit);

    this.role = role;
    this.threshold = threshold;
    // RFC 7692 §7.1: the server_* parameters govern what the server sends,
    // the client_* ones what the client sends.
    const isServer = role === 'server';
    const ownBits = isServer ? serverBits : clientBits;
    const peerBits = isServer ? clientBits : serverBits;
    this.deflater = new DeflateDirection(
      role,
      // zlib cannot deflate raw data with an 8-bit window; 9 is compatible (see the module comment).
      ownBits === 8 ? 9 : ownBits,
      isServer ? params.serverNoContextTakeover : params.clientNoContextTakeover,
      level,
      memLevel,
      checkInt('idleReleaseMs', options.idleReleaseMs ?? DEFAULT_IDLE_RELEASE_MS, 0, 2 ** 31 - 1),
    );
    this.inflater = new InflateDirection(
      role,
      peerBits,
      isServer ? params.clientNoContextTakeover : params.serverNoContextTakeover,
      maxPayload,
    );
  }

  /**
   * Decompress one frame's payload of a compressed message (RFC 7692 §7.2.2).
   * `fin` marks the last frame: the 0x00 0x00 0xff 0xff tail is appended, and
   * the context is dropped if the peer does not take it over.
   *
   * @param callback `(null, data)` with this frame's inflated bytes;
   *   `MessageTooBigError` (1009, `WS_ERR_MESSAGE_TOO_BIG`) once the message
   *   inflates past `maxPayload`; `InvalidDataError` (1007,
   *   `WS_ERR_INFLATE_FAILED`) for invalid data.
   */
  inflate(payload: Buffer, fin: boolean, callback: (err: WebSocketError | null, data?: Buffer) => void): void {
    this.inflater.push(payload, fin, callback);
  }

  /**
   * Compress one message, or one fragment of it when `fin` is false (RFC 7692
   * §7.2.1). With `fin` the trailing 0x00 0x00 0xff 0xff is removed; a
   * fragment keeps it (a valid empty stored block).
   *
   * @param callback `(null, data)` with the payload to send with RSV1 set on
   *   the message's first frame.
   */
  deflate(data: Buffer, fin: boolean, callback: (err: Error | null, data?: Buffer) => void): void {
    this.deflater.push(data, fin, callback);
  }

  /** True once {@link close} was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Free both zlib streams and drop all pending work; called by the transport
   * when the connection closes. Pending callbacks get `WS_ERR_CODEC_CLOSED` on
   * a later tick. Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.inflater.close();
    this.deflater.close();
  }
}
