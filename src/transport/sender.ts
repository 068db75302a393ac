/**
 * The send side of a `WebSocket`: everything the application (or the
 * heartbeat, or the closing handshake) asks to send goes through here as a
 * {@link SendOp}. An op is written to the `Connection` at once unless a
 * message is being compressed or ops wait already; then it queues, so frames
 * leave in the order they were asked for (a ping or a close never overtakes a
 * message still in zlib). Each op carries its own callback; when an op can no
 * longer be sent its callback gets the error, on a later tick.
 */
import type { Connection } from '../protocol/connection.js';
import { InvalidStateError } from '../protocol/errors.js';
import type { PerMessageDeflateCodec } from './deflate.js';

export type SendCallback = (err?: Error | null) => void;

/** What can be sent, by kind. */
export type SendOp =
  /** A message or a fragment of one (`fin: false`). A string stays a string when written at once. */
  | { kind: 'data'; data: Buffer | string; isBinary: boolean; fin: boolean; compress: boolean; cb?: SendCallback }
  /** A server frame encoded once for many sockets (`WebSocket#sendFrame`), written as it is. */
  | { kind: 'frame'; data: Buffer; cb?: SendCallback }
  | { kind: 'ping'; data: Buffer; cb?: SendCallback }
  | { kind: 'pong'; data: Buffer; cb?: SendCallback }
  /** Our close frame: starts the closing handshake. Without `code` the frame has no status. */
  | { kind: 'close'; code: number | undefined; reason: Buffer | string; cb?: SendCallback }
  /** The answer to the peer's close frame, sent after what was queued before it arrived. */
  | { kind: 'close-echo'; cb?: SendCallback };

/** What the sender needs from the socket it sends for. */
export interface SenderHost {
  /** The error an op gets when it can no longer be sent (it names the socket's state). */
  notOpenError(): Error;
  /** Whether the socket is closed (a compression that finishes then is dropped). */
  isClosed(): boolean;
  /** Write the answer to the peer's close frame and, on the server, end TCP. */
  answerClose(): void;
  /** A compressed message went out and the queue moved on: 'drain' may be due. */
  onFlushed(): void;
  /** End the socket (asked for by {@link Sender.endWhenFlushed}, once the queue is empty). */
  end(): void;
}

const EMPTY = Buffer.alloc(0);

function opBytes(op: SendOp): number {
  switch (op.kind) {
    case 'data':
    case 'frame':
    case 'ping':
    case 'pong':
      return op.data.length;
    case 'close':
      return op.reason.length;
    case 'close-echo':
      return 0;
  }
}

/**
 * The callback of the frame being written. `Connection` writes synchronously,
 * so one slot serves every socket: set just before the write, taken by the
 * owner's `onWrite` (frames the connection writes on its own, an automatic
 * pong, find it empty), cleared after.
 */
let writeCallback: SendCallback | undefined;

/** The callback of the frame being written now (once: the next write has its own). */
export function takeWriteCallback(): SendCallback | undefined {
  const cb = writeCallback;
  writeCallback = undefined;
  return cb;
}

/**
 * Write `op` to the connection now. A connection that compresses nothing
 * and has nothing queued sends this way, without a `Sender` of its own.
 */
export function writeOp(conn: Connection, op: Exclude<SendOp, { kind: 'close-echo' }>): void;
export function writeOp(conn: Connection, op: SendOp, host: Pick<SenderHost, 'answerClose'>): void;
export function writeOp(conn: Connection, op: SendOp, host?: Pick<SenderHost, 'answerClose'>): void {
  writeCallback = op.cb;
  try {
    switch (op.kind) {
      case 'data':
        conn.sendData(op.data, op.isBinary, op.fin, false);
        break;
      case 'frame':
        conn.sendPrepared(op.data);
        break;
      case 'ping':
        conn.ping(op.data);
        break;
      case 'pong':
        conn.pong(op.data);
        break;
      case 'close':
        conn.close(op.code, op.reason);
        break;
      case 'close-echo':
        host!.answerClose();
        break;
    }
  } finally {
    writeCallback = undefined;
  }
}

export class Sender {
  private queue: SendOp[] = [];
  private queuedBytesCount = 0;
  private deflating = false;
  private endWhenEmpty = false;

  constructor(
    private readonly conn: Connection,
    private readonly codec: PerMessageDeflateCodec | null,
    private readonly host: SenderHost,
  ) {}

  /** Whether ops wait (or a message is in zlib): a new op would queue behind them. */
  get busy(): boolean {
    return this.deflating || this.queue.length > 0;
  }

  /** Bytes accepted and not yet handed to the `Connection` (part of `bufferedAmount`). */
  get queuedBytes(): number {
    return this.queuedBytesCount;
  }

  /** Send `op` now, or after what is already waiting. A message to compress always goes through the queue. */
  send(op: SendOp): void {
    if (this.busy || (op.kind === 'data' && op.compress)) this.enqueue(op);
    else writeOp(this.conn, op, this.host);
  }

  /** End the socket once everything queued went out (the peer ended its side). */
  endWhenFlushed(): void {
    if (this.busy) this.endWhenEmpty = true;
    else this.host.end();
  }

  /** Drop every queued op; each callback gets `err` on a later tick. */
  fail(err: Error): void {
    const queue = this.queue;
    this.queue = [];
    this.queuedBytesCount = 0;
    for (const op of queue) if (op.cb) process.nextTick(op.cb, err);
  }

  private enqueue(op: SendOp): void {
    // A queued string is encoded now: the caller's value is settled, and the deflater takes bytes.
    if (op.kind === 'data' && typeof op.data === 'string') op = { ...op, data: Buffer.from(op.data) };
    else if (op.kind === 'close' && typeof op.reason === 'string') op = { ...op, reason: op.reason === '' ? EMPTY : Buffer.from(op.reason) };
    this.queue.push(op);
    this.queuedBytesCount += opBytes(op);
    this.flush();
  }

  private flush(): void {
    const conn = this.conn;
    while (!this.deflating && this.queue.length > 0) {
      const op = this.queue.shift()!;
      this.queuedBytesCount -= opBytes(op);
      if (conn.closeSent) {
        if (op.cb) process.nextTick(op.cb, this.host.notOpenError());
        continue;
      }
      if (op.kind === 'data' && op.compress) {
        this.deflate(op as SendOp & { kind: 'data'; data: Buffer });
        return;
      }
      writeOp(conn, op, this.host);
    }
    if (this.endWhenEmpty && !this.busy) this.host.end();
  }

  /** Compress one message (or fragment); the queue waits until it is written. */
  private deflate(op: SendOp & { kind: 'data'; data: Buffer }): void {
    const conn = this.conn;
    this.deflating = true;
    // Still the application's bytes until written: they count in bufferedAmount.
    this.queuedBytesCount += op.data.length;
    this.codec!.deflate(op.data, op.fin, (err: Error | null, out?: Buffer) => {
      this.deflating = false;
      this.queuedBytesCount -= op.data.length;
      if (this.host.isClosed() || conn.closeSent) {
        op.cb?.(err ?? this.host.notOpenError());
        this.fail(this.host.notOpenError());
        return;
      }
      if (err) {
        op.cb?.(err);
        conn.fail(new InvalidStateError('WS_ERR_DEFLATE_FAILED', err.message));
        return;
      }
      writeCallback = op.cb;
      try {
        conn.sendData(out!, op.isBinary, op.fin, true);
      } finally {
        writeCallback = undefined;
      }
      this.flush();
      this.host.onFlushed();
    });
  }
}
