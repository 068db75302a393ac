/**
 * The carrier of a realtime session over plain HTTP: SSE or long-polling
 * (docs/protocol.md, "Fallback transports"). It is a `RealtimeTransport`
 * like the WebSocket adapter, so the hub and the session neither know nor
 * care which one a client uses.
 *
 * Outgoing messages get a per-session sequence number (`seq`, from 1) and go
 * into a bounded buffer; a *receiver* — the SSE stream (sse.ts) or the
 * waiting poll (long-polling.ts) — takes them out. At most one receiver at a
 * time: a new one replaces the old.
 *
 * The buffer holds the messages after `floorSeq`, contiguous:
 *
 * ```
 *   floorSeq | seq floorSeq+1 ... sentSeq | sentSeq+1 ... nextSeq-1
 *   dropped  | handed to a receiver       | not yet handed out
 * ```
 *
 * - A receiver attaching with an acknowledgement (`Last-Event-ID`, `?ack=`)
 *   drops the messages up to it and rewinds `sentSeq` to it: whatever came
 *   after is (re)sent — a stream that dropped or a poll answer that got lost
 *   loses nothing.
 * - An acknowledgement below `floorSeq` asks for messages that are gone: the
 *   session is closed (4003, "resume point lost") with nothing but the close
 *   message, so the client resubscribes with `since` from what it really has.
 * - Adding a message to a full buffer (`bufferMessages` / `bufferBytes`)
 *   first drops the oldest messages already handed out. If the messages that
 *   earlier turns of the event loop left undelivered fill the bound alone,
 *   the client is a slow consumer: close 4003. A burst queued within one
 *   turn (a broadcast storm, the recovery of a `sub` with `since`) is taken
 *   whole and handed out at the end of the turn, as a WebSocket's send
 *   buffer would take it.
 *
 * Lifecycle: OPEN → (close) CLOSING → ENDED, or OPEN → ENDED (terminate,
 * DELETE, grace period). `close(code, reason)` queues a final
 * `{"op":"close","code","reason"}` message; the session ends once a receiver
 * has taken it (or after `min(graceMs, 5 s)` without a receiver: the close
 * handshake's timeout). Without a receiver for `graceMs`, an OPEN session
 * ends with 1006 (presence leave, subscriptions dropped: the hub's normal
 * path through `Session.closedByTransport`). The end is reported on the
 * next tick, never from inside the hub's own calls, as a WebSocket's 'close'
 * event would be.
 */
import { CloseCode, MAX_CLOSE_REASON_BYTES } from '../protocol/close-code.js';
import { truncateUtf8 } from '../protocol/connection.js';
import type { Session } from '../realtime/session.js';
import type { HubObserver, RealtimeTransport, SharedMessage } from '../realtime/transport.js';
import { jsonCodec, type WireCodec } from '../wire/codec.js';
import { RealtimeCloseCode } from '../wire/messages.js';

/** The fallback transports, as `RealtimeTransport.kind` (and metrics label). */
export type HttpTransportKind = 'sse' | 'poll';

export interface HttpSessionOptions {
  /** Time without a receiver before the session ends (1006), in ms. */
  graceMs: number;
  /** Messages kept (delivered-but-unconfirmed and undelivered). */
  bufferMessages: number;
  /** Bytes kept (UTF-8 JSON). */
  bufferBytes: number;
  /** Where drops are counted (the hub's observer). */
  observer?: HubObserver;
}

/** One buffered server message. */
export interface BufferedMessage {
  readonly seq: number;
  /** The message as JSON text (shared between sessions for a broadcast). */
  readonly text: string;
  /** UTF-8 length of `text`. */
  readonly bytes: number;
}

/** What takes messages out of a session: an SSE stream or a waiting poll. */
export interface Receiver {
  /** Messages after `sentSeq` are buffered: hand them out (and call `markSent`). At most once per turn. */
  flush(): void;
  /** The session no longer uses this receiver (a newer one replaced it, or the session ended): finish the response. */
  release(): void;
  /** Bytes written to the response and not yet taken by the network. */
  readonly backlog: number;
}

/** Result of an acknowledgement check. */
export type AckCheck = 'ok' | 'ahead';

/** How long a closing session waits for a receiver to take the close message, at most, in ms (cf. WebSocket closeTimeout). */
export const CLOSE_TIMEOUT_MS = 5000;

const OPEN = 0;
const CLOSING = 1;
const ENDED = 2;

function flushSession(transport: HttpSessionCarrier): void {
  transport._flush();
}

function finishSession(transport: HttpSessionCarrier, code: number): void {
  transport._finish(code);
}

function lingerExpired(transport: HttpSessionCarrier): void {
  transport._lingerExpired();
}

function resetBacklog(transport: HttpSessionCarrier): void {
  transport._resetBacklog();
}

export class HttpSessionCarrier implements RealtimeTransport {
  readonly kind: HttpTransportKind;
  readonly codec: WireCodec = jsonCodec;
  /** The session id (a capability: never logged in full). */
  readonly id: string;
  /** The HTTP version of the request that opened the session (`POST <path>/session`). */
  httpVersion: '1.1' | '2' | undefined = undefined;
  /** The hub's session on this transport (set right after `hub.connect`). */
  session: Session | null = null;
  /** Highest seq handed to the current receiver (rewound to the acknowledgement when one attaches). */
  sentSeq = 0;
  /** Highest seq ever handed out: no client can acknowledge more. */
  private maxSentSeq = 0;
  private readonly options: HttpSessionOptions;
  private readonly onEnd: (code: number) => void;
  private readonly queue: BufferedMessage[] = [];
  /** Index of the oldest message in `queue` (entries before it are dropped; compacted now and then). */
  private head = 0;
  private nextSeq = 1;
  /** Every message up to this seq has left the buffer. */
  private floorSeq = 0;
  private queuedBytes = 0;
  /** Bytes of the buffered messages after `sentSeq`. */
  private unsentBytes = 0;
  private state = OPEN;
  private closeCode: number = CloseCode.AbnormalClosure;
  /** Seq of the final close message (CLOSING). */
  private closeSeq = 0;
  private receiver: Receiver | null = null;
  private flushScheduled = false;
  private lingerTimer: NodeJS.Timeout | null = null;
  /** Snapshot at the first look in a turn (see `snapshot()`): what earlier turns left. */
  private snapshotTaken = false;
  private backlog = 0;
  private turnUnsentCount = 0;
  private turnUnsentBytes = 0;

  constructor(kind: HttpTransportKind, id: string, options: HttpSessionOptions, onEnd: (code: number) => void) {
    this.kind = kind;
    this.id = id;
    this.options = options;
    this.onEnd = onEnd;
    // No receiver yet: the client has `graceMs` to open its stream or poll.
    this.startLinger();
  }

  /** Bind the hub's session (after `hub.connect(this, ...)`). */
  attachSession(session: Session): void {
    this.session = session;
  }

  /** The session ended: requests on it get 404. */
  get ended(): boolean {
    return this.state === ENDED;
  }

  get closing(): boolean {
    return this.state === CLOSING;
  }

  /** Messages buffered (for tests and stats). */
  get bufferedMessages(): number {
    return this.queue.length - this.head;
  }

  // ---- RealtimeTransport -------------------------------------------------------------

  /**
   * Bytes the client has not taken yet, as left by earlier turns (snapshot at
   * the first look in a turn, like the WebSocket adapter): for long-polling
   * every unacknowledged message; for SSE the messages not yet written to the
   * stream plus what the stream's socket still holds.
   */
  get bufferedAmount(): number {
    this.snapshot();
    return this.backlog;
  }

  /** Take the per-turn snapshot once per turn (reset on the next tick). */
  private snapshot(): void {
    if (this.snapshotTaken) return;
    this.snapshotTaken = true;
    this.turnUnsentCount = this.nextSeq - 1 - this.sentSeq;
    this.turnUnsentBytes = this.unsentBytes;
    this.backlog = this.kind === 'poll' ? this.queuedBytes : this.unsentBytes + (this.receiver?.backlog ?? 0);
    process.nextTick(resetBacklog, this);
  }

  /** @internal */
  _resetBacklog(): void {
    this.snapshotTaken = false;
  }

  send(payload: string | Uint8Array): void {
    const text = typeof payload === 'string' ? payload : Buffer.from(payload).toString('utf8');
    this.push(text, Buffer.byteLength(text));
  }

  /** Broadcast path: the JSON text (and its byte length) is computed once per message, for every session. */
  sendShared(shared: SharedMessage): void {
    const text = shared.encoded(jsonCodec) as string;
    let bytes = shared.jsonBytes;
    if (bytes === undefined) shared.jsonBytes = bytes = Buffer.byteLength(text);
    this.push(text, bytes);
  }

  /** Queue the final `close` message; the session ends once a receiver took it. */
  close(code: number, reason: string): void {
    if (this.state !== OPEN) return;
    this.state = CLOSING;
    this.closeCode = code;
    const text = JSON.stringify({ op: 'close', code, reason: truncateUtf8(reason, MAX_CLOSE_REASON_BYTES) });
    this.closeSeq = this.nextSeq;
    this.append(text, Buffer.byteLength(text));
    if (this.receiver) this.scheduleFlush();
    else this.startLinger();
  }

  /** End at once, without a close message (a dead peer). */
  terminate(): void {
    this.end(CloseCode.AbnormalClosure);
  }

  // ---- receivers ---------------------------------------------------------------------

  /** Whether an acknowledgement (`Last-Event-ID`, `?ack=`) is possible: not beyond what was handed out. */
  checkAck(seq: number): AckCheck {
    return seq > this.maxSentSeq ? 'ahead' : 'ok';
  }

  /**
   * Make `receiver` the session's receiver after the client acknowledged
   * everything up to `ack` (checked with `checkAck` first): the previous
   * receiver is released, the messages up to `ack` dropped, and the rest
   * (re)sent to the new one. An `ack` below what is still buffered closes
   * the session (4003) with nothing but the close message.
   */
  attach(receiver: Receiver, ack: number): void {
    if (this.state === ENDED) {
      receiver.release();
      return;
    }
    const previous = this.receiver;
    this.receiver = receiver;
    if (previous) previous.release();
    this.stopLinger();
    if (ack < this.floorSeq) this.resumeLost(ack);
    else this.acknowledge(ack);
    if (this.bufferedMessages > 0) this.scheduleFlush();
  }

  /** A receiver is done (answered, or its response closed). Starts the grace period when it was the current one. */
  detach(receiver: Receiver): void {
    if (this.receiver !== receiver) return;
    this.receiver = null;
    if (this.state !== ENDED) this.startLinger();
  }

  /** The buffered messages not handed out yet, oldest first. */
  unsent(): BufferedMessage[] {
    const from = this.head + (this.sentSeq - this.floorSeq);
    return this.queue.slice(from);
  }

  /**
   * The receiver handed out everything up to `seq`. When that includes the
   * final close message, the session ends.
   */
  markSent(seq: number): void {
    if (seq > this.sentSeq) {
      const from = this.head + (this.sentSeq - this.floorSeq);
      const to = Math.min(this.queue.length, this.head + (seq - this.floorSeq));
      for (let i = from; i < to; i++) this.unsentBytes -= this.queue[i]!.bytes;
      this.sentSeq = seq;
      // Back within the bound (after a burst): the oldest handed-out messages go.
      this.trim(0);
    }
    if (seq > this.maxSentSeq) this.maxSentSeq = seq;
    if (this.state === CLOSING && this.sentSeq >= this.closeSeq) this.end(this.closeCode);
  }

  /** The client ended the session (`DELETE`): like a WebSocket close 1000 from the client. */
  endByClient(): void {
    this.end(CloseCode.NormalClosure);
  }

  // ---- internals ---------------------------------------------------------------------

  private push(text: string, bytes: number): void {
    if (this.state !== OPEN) return;
    const { bufferMessages, bufferBytes } = this.options;
    this.snapshot();
    this.trim(bytes);
    // Slow consumer: what earlier turns left undelivered fills the buffer by itself.
    if (this.turnUnsentCount >= bufferMessages || this.turnUnsentBytes >= bufferBytes) {
      this.options.observer?.dropped('slow-consumer');
      if (this.session) this.session.close(RealtimeCloseCode.SlowConsumer, 'slow consumer');
      else this.close(RealtimeCloseCode.SlowConsumer, 'slow consumer');
      return;
    }
    this.append(text, bytes);
    if (this.receiver) this.scheduleFlush();
  }

  /** Drop the oldest messages already handed out while the buffer (plus `room` bytes and one message when `room` > 0) passes the bound. */
  private trim(room: number): void {
    const { bufferMessages, bufferBytes } = this.options;
    const slots = room > 0 ? 1 : 0;
    while (this.bufferedMessages > 0 && (this.bufferedMessages + slots > bufferMessages || this.queuedBytes + room > bufferBytes)) {
      if (this.queue[this.head]!.seq > this.sentSeq) return;
      this.dropOldest();
    }
  }

  private append(text: string, bytes: number): void {
    this.queue.push({ seq: this.nextSeq++, text, bytes });
    this.queuedBytes += bytes;
    this.unsentBytes += bytes;
  }

  private dropOldest(): void {
    const oldest = this.queue[this.head]!;
    this.queuedBytes -= oldest.bytes;
    this.floorSeq = oldest.seq;
    this.head++;
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }

  /** Drop everything up to `ack` (the client has it) and rewind: what follows is sent again. */
  private acknowledge(ack: number): void {
    while (this.bufferedMessages > 0 && this.queue[this.head]!.seq <= ack) this.dropOldest();
    if (ack > this.floorSeq) this.floorSeq = ack;
    this.sentSeq = this.floorSeq;
    this.unsentBytes = this.queuedBytes;
  }

  /** The client asks for messages that were dropped: close with only the close message left to deliver. */
  private resumeLost(ack: number): void {
    const reason = `resume point lost (messages after ${ack} are gone): resubscribe with since`;
    const closeMessage = this.state === CLOSING ? this.queue[this.queue.length - 1]! : null;
    this.queue.length = 0;
    this.head = 0;
    this.queuedBytes = this.unsentBytes = 0;
    this.floorSeq = this.nextSeq - 1;
    this.sentSeq = this.floorSeq;
    if (closeMessage) {
      // Already closing: keep the close message (it was not handed out: the session would have ended).
      this.floorSeq = this.sentSeq = closeMessage.seq - 1;
      this.queue.push(closeMessage);
      this.queuedBytes = this.unsentBytes = closeMessage.bytes;
      return;
    }
    this.options.observer?.dropped('resume-lost');
    if (this.session) this.session.close(RealtimeCloseCode.SlowConsumer, reason);
    else this.close(RealtimeCloseCode.SlowConsumer, reason);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    process.nextTick(flushSession, this);
  }

  /** @internal */
  _flush(): void {
    this.flushScheduled = false;
    if (this.state === ENDED || !this.receiver) return;
    if (this.sentSeq < this.nextSeq - 1) this.receiver.flush();
  }

  private startLinger(): void {
    this.stopLinger();
    const ms = this.state === CLOSING ? Math.min(this.options.graceMs, CLOSE_TIMEOUT_MS) : this.options.graceMs;
    this.lingerTimer = setTimeout(lingerExpired, ms, this);
    this.lingerTimer.unref();
  }

  private stopLinger(): void {
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = null;
  }

  /** @internal No receiver for the grace period (or, closing, for the close timeout). */
  _lingerExpired(): void {
    this.lingerTimer = null;
    if (this.receiver || this.state === ENDED) return;
    this.end(this.state === CLOSING ? this.closeCode : CloseCode.AbnormalClosure);
  }

  private end(code: number): void {
    if (this.state === ENDED) return;
    this.state = ENDED;
    this.stopLinger();
    const receiver = this.receiver;
    this.receiver = null;
    if (receiver) receiver.release();
    this.queue.length = 0;
    this.head = 0;
    this.queuedBytes = this.unsentBytes = 0;
    // Reported on the next tick: end() may run inside the hub's own iteration (heartbeat, fan-out).
    process.nextTick(finishSession, this, code);
  }

  /** @internal */
  _finish(code: number): void {
    this.onEnd(code);
    this.session?.closedByTransport(code);
  }
}
