/**
 * The sans-I/O WebSocket connection (RFC 6455 §5-§7): bytes in through
 * `receiveData`, messages and control events out through a
 * `ConnectionHandler`, and bytes to send out through `handler.onWrite`.
 * No sockets, no timers: the transport owns the TCP connection, its timeouts
 * and compression (reached through the `Inflater` seam).
 *
 * `receiveData` never throws. A broken rule ends in one place, `fail()`: the
 * close frame with the matching code is written, input is discarded from then
 * on, and `handler.onFail(err)` tells the transport to close the transport
 * connection.
 */
import { CloseCode, isValidCloseCode, MAX_CLOSE_REASON_BYTES } from './close-code.js';
import {
  InternalError,
  InvalidArgumentError,
  InvalidDataError,
  InvalidStateError,
  MessageTooBigError,
  ProtocolError,
  type WebSocketError,
} from './errors.js';
import type { Inflater } from './extension.js';
import { FrameParser, type FrameHandler } from './frame-parser.js';
import { encodeFrame } from './frame-writer.js';
import { Opcode } from './opcode.js';
import { isUtf8, Utf8Validator } from './utf8.js';

export interface ConnectionHandler {
  /** Bytes of one frame to write to the peer, in order. */
  onWrite(chunks: Buffer[]): void;
  /** A complete data message. Text messages are passed as their UTF-8 bytes, already validated. */
  onMessage(data: Buffer, isBinary: boolean): void;
  /** A ping arrived; the pong has already been written when `autoPong` is on. */
  onPing(data: Buffer): void;
  onPong(data: Buffer): void;
  /**
   * The peer's close frame arrived; `code` is 1005 when it carried none. When
   * we had not sent a close frame yet, the echo has been written already.
   */
  onCloseFrame(code: number, reason: Buffer): void;
  /**
   * The peer broke a rule or a limit. A close frame with `err.closeCode` has
   * been written (unless one was sent before) and input is ignored from now on.
   */
  onFail(err: WebSocketError): void;
  /** Optional: after `receiveEof`, everything received has been processed (see `inputEnded`). */
  onInputEnd?(): void;
}

export interface ConnectionOptions {
  /** Servers expect masked frames and send unmasked ones; clients the reverse. */
  role: 'server' | 'client';
  /** Max size of a message (all its fragments, after inflation) in bytes; 0 for no limit. Default 100 MiB. */
  maxPayload?: number;
  /** Set when permessage-deflate was negotiated: frames with RSV1 are inflated through it. */
  inflater?: Inflater | null;
  /** Answer pings with pongs automatically. Default true. */
  autoPong?: boolean;
  /** Skip the UTF-8 check of text messages (only for trusted peers). Default false. */
  skipUTF8Validation?: boolean;
  /**
   * Answer the peer's close frame at once (default true). A transport that
   * still has messages queued (accepted before the close arrived, e.g. being
   * compressed) sets false and calls `close(code)` itself once they are out.
   */
  echoClose?: boolean;
}

export const DEFAULT_MAX_PAYLOAD = 100 * 1024 * 1024;

const EMPTY: Buffer = Buffer.alloc(0);

/** Frame parsers between uses (see Connection#releaseParser); a few are enough, whatever the number of connections. */
const IDLE_PARSERS: FrameParser[] = [];
const MAX_IDLE_PARSERS = 16;
const NO_HANDLER: FrameHandler = {
  onFrameStart() {},
  onFramePayload() {},
  onFrameEnd() {},
  onFrameError() {},
};

export class Connection implements FrameHandler {
  readonly role: 'server' | 'client';
  readonly maxPayload: number;
  private readonly handler: ConnectionHandler;
  /**
   * Taken (from the idle parsers, or made) when bytes arrive, given back once
   * they are all consumed at a frame boundary: an idle connection has none.
   */
  private parser: FrameParser | null = null;
  private readonly inflater: Inflater | null;
  private readonly autoPong: boolean;
  private readonly echoClose: boolean;
  private readonly validateUtf8: boolean;
  private readonly mask: boolean;
  /** Made with the first text message. */
  private utf8: Utf8Validator | null = null;

  /** Opcode of the data message being received (0 when none). */
  private messageOpcode = 0;
  private messageCompressed = false;
  private messageLength = 0;
  /** Made with the first message and reused. */
  private fragments: Buffer[] | null = null;
  /** The current frame. */
  private frameOpcode = 0;
  private frameFin = false;
  /** Pieces of a control or compressed frame; made with the first such frame. */
  private framePieces: Buffer[] | null = null;

  /** True while sending a fragmented message (the next frame is a continuation). */
  private sendingFragmented = false;

  private closeSentFlag = false;
  private closeReceivedFlag = false;
  private failed = false;
  private eof = false;
  private inputEndedFlag = false;
  /** Code and reason of the peer's close frame, once it arrived. */
  closeCode: number = CloseCode.AbnormalClosure;
  closeReason: Buffer = EMPTY;
  /** Code of the close frame we sent (1005 for one without a code), once sent. */
  sentCloseCode: number = CloseCode.AbnormalClosure;
  /** The error that failed the connection, if any. */
  error: WebSocketError | null = null;

  constructor(handler: ConnectionHandler, options: ConnectionOptions) {
    this.handler = handler;
    this.role = options.role;
    this.maxPayload = options.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    this.inflater = options.inflater ?? null;
    this.autoPong = options.autoPong ?? true;
    this.echoClose = options.echoClose ?? true;
    this.validateUtf8 = !options.skipUTF8Validation;
    this.mask = options.role === 'client';
  }

  private createParser(): FrameParser {
    const expectMasked = this.role === 'server';
    const allowRsv1 = this.inflater !== null;
    const spare = IDLE_PARSERS.pop();
    const parser =
      spare !== undefined
        ? spare.reuse(this, expectMasked, this.maxPayload, allowRsv1)
        : new FrameParser(this, { expectMasked, maxFrameSize: this.maxPayload, allowRsv1 });
    if (this.paused) parser.pause();
    return parser;
  }

  /**
   * Everything received is consumed, at a frame boundary: the parser goes
   * back to the idle ones, and what only a message in progress needs goes
   * too (made again with the next message).
   */
  private releaseParser(parser: FrameParser): void {
    this.parser = null;
    if (this.messageOpcode === 0) {
      this.utf8 = null;
      this.fragments = null;
    }
    this.framePieces = null;
    if (IDLE_PARSERS.length < MAX_IDLE_PARSERS) IDLE_PARSERS.push(parser.reuse(NO_HANDLER, false, 0, false));
  }

  get closeSent(): boolean {
    return this.closeSentFlag;
  }

  get closeReceived(): boolean {
    return this.closeReceivedFlag;
  }

  /** True once the connection failed or the peer's close frame arrived: no more input is processed. */
  get inputClosed(): boolean {
    return this.failed || this.closeReceivedFlag || this.inputEnded;
  }

  /** True once the peer ended the stream and everything it sent before has been processed. */
  get inputEnded(): boolean {
    return this.inputEndedFlag;
  }

  // ---- input -------------------------------------------------------------

  /** Feed bytes from the peer. Takes ownership of `chunk`. Never throws. */
  receiveData(chunk: Buffer): void {
    if (this.inputClosed) return;
    try {
      const parser = (this.parser ??= this.createParser());
      parser.write(chunk);
      if (this.parser === parser && parser.idle && !this.inflating) this.releaseParser(parser);
    } catch (err) {
      // A handler threw (application code). Report it without details and stop.
      this.fail(new InternalError('WS_ERR_INTERNAL', err instanceof Error ? err.message : String(err)));
    }
  }

  /** The peer ended the byte stream. Returns whether the close handshake had been received (clean end). */
  receiveEof(): boolean {
    this.eof = true;
    this.maybeEndInput();
    return this.closeReceivedFlag;
  }

  /**
   * After EOF, input that arrived before it is still processed: a message
   * being inflated, then the frames behind it (often the close frame), or
   * frames held back by `pause()`. Then input ends and `onInputEnd` fires.
   */
  private maybeEndInput(): void {
    if (!this.eof || this.inputEndedFlag) return;
    const pending = this.inflating || (this.paused && this.parser !== null && this.parser.bufferedAmount > 0);
    if (pending && !this.failed && !this.closeReceivedFlag) return;
    this.inputEndedFlag = true;
    this.parser?.stop();
    this.handler.onInputEnd?.();
  }

  /** Stop handing out frames (backpressure on the receiving side); input is buffered until `resume`. */
  pause(): void {
    this.paused = true;
    this.parser?.pause();
  }

  resume(): void {
    this.paused = false;
    if (!this.inputClosed && !this.inflating) this.parser?.resume();
    this.maybeEndInput();
  }

  /** @internal FrameHandler */
  onFrameStart(fin: boolean, rsv1: boolean, opcode: number, length: number): void {
    this.frameOpcode = opcode;
    this.frameFin = fin;
    if (this.framePieces !== null && this.framePieces.length > 0) this.framePieces.length = 0;
    if (opcode >= Opcode.Close) return;

    if (opcode === Opcode.Continuation) {
      // §5.4: a continuation frame needs a fragmented message to continue.
      if (this.messageOpcode === 0) {
        this.fail(new ProtocolError('WS_ERR_UNEXPECTED_CONTINUATION', 'continuation frame without a message to continue'));
        return;
      }
      // RFC 7692 §6.1: RSV1 is set on the first frame of a message only.
      if (rsv1) {
        this.fail(new ProtocolError('WS_ERR_UNEXPECTED_RSV', 'RSV1 set on a continuation frame'));
        return;
      }
    } else {
      // §5.4: a new data frame may not interrupt a fragmented message.
      if (this.messageOpcode !== 0) {
        this.fail(new ProtocolError('WS_ERR_EXPECTED_CONTINUATION', 'new data frame inside a fragmented message'));
        return;
      }
      this.messageOpcode = opcode;
      this.messageCompressed = rsv1;
      this.messageLength = 0;
    }
    if (!this.messageCompressed) {
      // Checked on the declared length, before any of the payload is buffered.
      this.messageLength += length;
      if (this.maxPayload > 0 && this.messageLength > this.maxPayload) {
        this.fail(new MessageTooBigError('WS_ERR_MESSAGE_TOO_BIG', 'message over maxPayload'));
      }
    }
  }

  /** @internal FrameHandler */
  onFramePayload(data: Buffer): void {
    if (this.frameOpcode >= Opcode.Close || this.messageCompressed) {
      (this.framePieces ??= []).push(data);
      return;
    }
    if (this.messageOpcode === Opcode.Text && this.validateUtf8 && !(this.utf8 ??= new Utf8Validator()).write(data)) {
      this.fail(new InvalidDataError('WS_ERR_INVALID_UTF8', 'text message is not valid UTF-8'));
      return;
    }
    (this.fragments ??= []).push(data);
  }

  /** @internal FrameHandler */
  onFrameEnd(): void {
    const opcode = this.frameOpcode;
    if (opcode >= Opcode.Close) {
      this.handleControlFrame(opcode, concat(this.framePieces));
    } else if (this.messageCompressed) {
      this.inflateFrame(concat(this.framePieces), this.frameFin);
    } else if (this.frameFin) {
      this.finishMessage();
    }
    if (this.framePieces !== null && this.framePieces.length > 0) this.framePieces.length = 0;
  }

  /** @internal FrameHandler */
  onFrameError(err: WebSocketError): void {
    this.fail(err);
  }

  private inflating = false;
  private inflateFin = false;
  /** Paused by the caller: an inflate completing must not resume the parser. */
  private paused = false;

  private inflateFrame(payload: Buffer, fin: boolean): void {
    this.inflating = true;
    this.inflateFin = fin;
    this.parser!.pause();
    this.inflater!.inflate(payload, fin, (this.onInflated ??= (err, data) => this.inflatedCallback(err, data)));
  }

  /** One bound callback per connection (one inflation is in flight at a time), made with the first compressed frame. */
  private onInflated: ((err: WebSocketError | null, data?: Buffer) => void) | null = null;

  private inflatedCallback(err: WebSocketError | null, data?: Buffer): void {
    if (this.inputClosed) return;
    // The callback may run outside receiveData (async inflater): it never throws either.
    try {
      this.inflated(err, data, this.inflateFin);
    } catch (e) {
      this.fail(new InternalError('WS_ERR_INTERNAL', e instanceof Error ? e.message : String(e)));
    }
  }

  private inflated(err: WebSocketError | null, data: Buffer | undefined, fin: boolean): void {
    if (err) {
      this.fail(err);
      return;
    }
    if (data && data.length > 0) {
      this.messageLength += data.length;
      if (this.maxPayload > 0 && this.messageLength > this.maxPayload) {
        this.fail(new MessageTooBigError('WS_ERR_MESSAGE_TOO_BIG', 'inflated message over maxPayload'));
        return;
      }
      if (this.messageOpcode === Opcode.Text && this.validateUtf8 && !(this.utf8 ??= new Utf8Validator()).write(data)) {
        this.fail(new InvalidDataError('WS_ERR_INVALID_UTF8', 'text message is not valid UTF-8'));
        return;
      }
      (this.fragments ??= []).push(data);
    }
    if (fin) this.finishMessage();
    // Only now: a resume() from onMessage must not deliver the next message inside this one.
    this.inflating = false;
    if (!this.paused) this.parser!.resume();
    this.maybeEndInput();
  }

  private finishMessage(): void {
    const isBinary = this.messageOpcode === Opcode.Binary;
    if (!isBinary && this.validateUtf8 && this.utf8 !== null && !this.utf8.end()) {
      this.fail(new InvalidDataError('WS_ERR_INVALID_UTF8', 'text message ends inside a UTF-8 sequence'));
      return;
    }
    const fragments = this.fragments;
    const data = fragments === null ? EMPTY : fragments.length === 1 ? fragments[0]! : concat(fragments);
    this.messageOpcode = 0;
    this.messageCompressed = false;
    this.messageLength = 0;
    if (fragments !== null) fragments.length = 0;
    this.handler.onMessage(data, isBinary);
  }

  private handleControlFrame(opcode: number, payload: Buffer): void {
    if (opcode === Opcode.Ping) {
      if (this.autoPong && !this.closeSentFlag) this.write(Opcode.Pong, payload, true, false);
      this.handler.onPing(payload);
      return;
    }
    if (opcode === Opcode.Pong) {
      this.handler.onPong(payload);
      return;
    }
    // Close (§5.5.1, §7.1.5): an optional 2-byte code, then a UTF-8 reason.
    let code: number = CloseCode.NoStatusReceived;
    let reason: Buffer = EMPTY;
    if (payload.length === 1) {
      this.fail(new ProtocolError('WS_ERR_INVALID_CLOSE_PAYLOAD', 'close frame with a 1-byte payload'));
      return;
    }
    if (payload.length >= 2) {
      code = payload.readUInt16BE(0);
      if (!isValidCloseCode(code)) {
        this.fail(new ProtocolError('WS_ERR_INVALID_CLOSE_CODE', `invalid close code ${code}`));
        return;
      }
      reason = payload.subarray(2);
      if (this.validateUtf8 && !isUtf8(reason)) {
        this.fail(new ProtocolError('WS_ERR_INVALID_CLOSE_REASON', 'close reason is not valid UTF-8'));
        return;
      }
    }
    this.closeReceivedFlag = true;
    this.closeCode = code;
    this.closeReason = reason;
    this.parser?.stop();
    if (!this.closeSentFlag && this.echoClose) this.echoCloseFrame();
    this.handler.onCloseFrame(code, reason);
  }

  // ---- output ------------------------------------------------------------

  /**
   * Send one data frame. `fin: false` starts or continues a fragmented
   * message; the opcode of the frames after the first becomes Continuation.
   * `rsv1` marks a compressed message and is only set on its first frame.
   */
  sendData(payload: Uint8Array | string, isBinary: boolean, fin = true, rsv1 = false): void {
    this.assertCanSend();
    const opcode = this.sendingFragmented ? Opcode.Continuation : isBinary ? Opcode.Binary : Opcode.Text;
    this.write(opcode, payload, fin, rsv1 && !this.sendingFragmented);
    this.sendingFragmented = !fin;
  }

  /**
   * Write a complete, pre-encoded frame (from `encodeServerFrame`): a server
   * broadcasting frames a message once and hands the same bytes to every
   * connection. Not inside a fragmented message.
   */
  sendPrepared(frame: Buffer): void {
    this.assertCanSend();
    if (this.sendingFragmented) {
      throw new InvalidStateError('WS_ERR_FRAGMENTED_SEND', 'cannot interleave a message with a fragmented one');
    }
    this.handler.onWrite([frame]);
  }

  ping(payload: Uint8Array = EMPTY): void {
    this.assertCanSend();
    assertControlPayload(payload);
    this.write(Opcode.Ping, payload, true, false);
  }

  pong(payload: Uint8Array = EMPTY): void {
    this.assertCanSend();
    assertControlPayload(payload);
    this.write(Opcode.Pong, payload, true, false);
  }

  /**
   * Start (or answer) the closing handshake. Without a code the close frame
   * has no payload (the peer sees 1005). After it, nothing more is sent (§5.5.1).
   */
  close(code?: number, reason: string | Uint8Array = ''): void {
    if (this.closeSentFlag) return;
    const payload = code === undefined ? EMPTY : encodeClosePayload(code, reason);
    this.closeSentFlag = true;
    this.sentCloseCode = code ?? CloseCode.NoStatusReceived;
    this.write(Opcode.Close, payload, true, false);
  }

  /** Answer the peer's close frame (§5.5.1: echoing the status code it carried). No-op once a close frame was sent. */
  echoCloseFrame(): void {
    if (this.closeSentFlag || !this.closeReceivedFlag) return;
    const code = this.closeCode;
    this.closeSentFlag = true;
    this.sentCloseCode = code;
    this.write(Opcode.Close, code === CloseCode.NoStatusReceived ? EMPTY : encodeClosePayload(code, EMPTY), true, false);
  }

  /**
   * Fail the connection (§7.1.7): send a close frame with `err.closeCode`
   * unless one was sent, ignore all further input, and tell the handler.
   */
  fail(err: WebSocketError): void {
    if (this.failed) return;
    this.failed = true;
    this.error = err;
    this.parser?.stop();
    this.fragments = null;
    this.framePieces = null;
    if (!this.closeSentFlag) {
      this.closeSentFlag = true;
      // §7.4.1: 1005, 1006, 1015 and unassigned codes never go on the wire; an
      // error carrying one is reported as 1011. Internal errors are reported
      // without details (they may be sensitive).
      const sendable = isValidCloseCode(err.closeCode);
      const code = sendable ? err.closeCode : CloseCode.InternalError;
      const reason = err instanceof InternalError || !sendable ? '' : truncateUtf8(err.message, MAX_CLOSE_REASON_BYTES);
      this.sentCloseCode = code;
      this.write(Opcode.Close, encodeClosePayload(code, reason), true, false);
    }
    this.handler.onFail(err);
  }

  private assertCanSend(): void {
    if (this.closeSentFlag) throw new InvalidStateError('WS_ERR_CLOSE_SENT', 'cannot send after the close frame');
  }

  private write(opcode: number, payload: Uint8Array | string, fin: boolean, rsv1: boolean): void {
    this.handler.onWrite(encodeFrame(opcode, payload, fin, rsv1, this.mask));
  }
}

function concat(pieces: Buffer[] | null): Buffer {
  if (pieces === null || pieces.length === 0) return EMPTY;
  if (pieces.length === 1) return pieces[0]!;
  return Buffer.concat(pieces);
}

function assertControlPayload(payload: Uint8Array): void {
  if (payload.length > 125) {
    throw new InvalidArgumentError('WS_ERR_CONTROL_PAYLOAD_TOO_LONG', 'control frame payload must be <= 125 bytes');
  }
}

/** The payload of a close frame: code (2 bytes, big-endian) + UTF-8 reason (<= 123 bytes). */
export function encodeClosePayload(code: number, reason: string | Uint8Array): Buffer {
  if (!isValidCloseCode(code)) {
    throw new InvalidArgumentError('WS_ERR_INVALID_CLOSE_CODE', `${code} is not a close code that may be sent`);
  }
  const reasonBytes = typeof reason === 'string' ? Buffer.from(reason) : reason;
  if (reasonBytes.length > MAX_CLOSE_REASON_BYTES) {
    throw new InvalidArgumentError('WS_ERR_CLOSE_REASON_TOO_LONG', 'close reason must be <= 123 bytes of UTF-8');
  }
  const out = Buffer.allocUnsafe(2 + reasonBytes.length);
  out.writeUInt16BE(code, 0);
  out.set(reasonBytes, 2);
  return out;
}

/** Cut a string to at most `max` bytes of UTF-8 without splitting a character. */
export function truncateUtf8(text: string, max: number): string {
  const bytes = Buffer.from(text);
  if (bytes.length <= max) return text;
  let end = max;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString();
}
