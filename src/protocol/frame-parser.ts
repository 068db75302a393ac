/**
 * Incremental frame parser (RFC 6455 §5.2). Bytes go in through `write` in
 * chunks of any size; frames come out through a `FrameHandler` as a start,
 * payload pieces (unmasked, in place) and an end, so a large frame is never
 * copied into one buffer here and a text frame can be checked as it arrives.
 * The same stream gives the same calls for any split of the input, except
 * that payload pieces follow the chunk boundaries.
 *
 * Frame-level rules are checked here; message-level rules (fragmentation,
 * UTF-8, close payloads) belong to `Connection`.
 */
import { ProtocolError, MessageTooBigError, type WebSocketError } from './errors.js';
import { maskInPlace } from './mask.js';
import { isControlOpcode } from './opcode.js';

export interface FrameHandler {
  /** A frame header was read. `length` is the payload length in bytes. */
  onFrameStart(fin: boolean, rsv1: boolean, opcode: number, length: number): void;
  /** Unmasked payload bytes; a view into the input (valid until the handler returns if kept, own it otherwise). */
  onFramePayload(data: Buffer): void;
  /** The whole payload of the current frame has been delivered. */
  onFrameEnd(): void;
  /** The stream broke a rule; no further calls follow. */
  onFrameError(err: WebSocketError): void;
}

export interface FrameParserOptions {
  /** Server side: frames from the peer must be masked. Client side: they must not be (RFC 6455 §5.1). */
  expectMasked: boolean;
  /** Max payload length of one frame in bytes; 0 for no limit. A longer frame fails with 1009 before its payload is read. */
  maxFrameSize: number;
  /** Whether RSV1 may be set (permessage-deflate negotiated, RFC 7692 §6). */
  allowRsv1: boolean;
}

const GET_INFO = 0;
const GET_LENGTH_16 = 1;
const GET_LENGTH_64 = 2;
const GET_MASK = 3;
const GET_PAYLOAD = 4;
const FAILED = 5;

const EMPTY: Buffer = Buffer.alloc(0);
/**
 * Header bytes cut by a chunk boundary are gathered here. One buffer for
 * every parser: header bytes are read right after they are gathered, before
 * anything else can run (an idle connection keeps no Buffer of its own).
 */
const SCRATCH = Buffer.alloc(8);
/** The mask key of the frame being unmasked, written from the parser's fields just before use. */
const MASK_KEY = Buffer.alloc(4);

export class FrameParser {
  private handler: FrameHandler;
  private expectMasked: boolean;
  private maxFrameSize: number;
  allowRsv1: boolean;

  /** Unconsumed input: `chunks[0]` from `offset` on, then the other chunks whole. */
  private chunks: Buffer[] = [];
  private offset = 0;
  private buffered = 0;
  /** Where the header bytes just read are (a chunk, or SCRATCH); only valid right after `readHeader`. */
  private header: Buffer = EMPTY;
  private headerPos = 0;
  private state = GET_INFO;
  private paused = false;
  private looping = false;

  private fin = false;
  private rsv1 = false;
  private opcode = 0;
  private masked = false;
  private payloadLength = 0;
  private payloadRead = 0;
  /** The mask key as two 16-bit halves (small integers: no Buffer per connection). */
  private maskHigh = 0;
  private maskLow = 0;

  constructor(handler: FrameHandler, options: FrameParserOptions) {
    this.handler = handler;
    this.expectMasked = options.expectMasked;
    this.maxFrameSize = options.maxFrameSize;
    this.allowRsv1 = options.allowRsv1;
  }

  /** Bytes not yet consumed. */
  get bufferedAmount(): number {
    return this.buffered;
  }

  /**
   * Between frames with nothing buffered, not paused, not failed: the parser
   * holds no state of its connection and may serve another one (`reuse`).
   */
  get idle(): boolean {
    return this.state === GET_INFO && this.buffered === 0 && !this.paused && !this.looping;
  }

  /** An idle parser, set up for another connection (or none: `NO_HANDLER` lets go of the handler). Allocates nothing. */
  reuse(handler: FrameHandler, expectMasked: boolean, maxFrameSize: number, allowRsv1: boolean): this {
    this.handler = handler;
    this.expectMasked = expectMasked;
    this.maxFrameSize = maxFrameSize;
    this.allowRsv1 = allowRsv1;
    this.offset = 0;
    this.header = EMPTY;
    return this;
  }

  /** Feed bytes. The parser takes ownership of `chunk` (it unmasks in place). */
  write(chunk: Buffer): void {
    if (this.state === FAILED) return;
    if (chunk.length > 0) {
      // Nothing buffered (the usual case): a fresh one-element list, so an
      // idle parser holds no list grown by an earlier burst.
      if (this.buffered === 0) this.chunks = [chunk];
      else this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    this.run();
  }

  /** Stop emitting at the next frame boundary or payload piece; input is kept until `resume`. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.run();
  }

  /** Drop buffered input and stop for good. */
  stop(): void {
    this.state = FAILED;
    this.header = EMPTY;
    this.chunks = [];
    this.offset = 0;
    this.buffered = 0;
  }

  private run(): void {
    // Handlers may call write/resume re-entrantly; the outer loop picks it up.
    if (this.looping) return;
    this.looping = true;
    try {
      while (!this.paused && this.state !== FAILED) {
        let progressed: boolean;
        switch (this.state) {
          case GET_INFO:
            progressed = this.getInfo();
            break;
          case GET_LENGTH_16:
            progressed = this.getLength16();
            break;
          case GET_LENGTH_64:
            progressed = this.getLength64();
            break;
          case GET_MASK:
            progressed = this.getMask();
            break;
          default:
            progressed = this.getPayload();
        }
        if (!progressed) break;
      }
    } finally {
      this.looping = false;
    }
  }

  private fail(err: WebSocketError): false {
    this.stop();
    this.handler.onFrameError(err);
    return false;
  }

  /**
   * Make `n` header bytes (n <= 8, n <= buffered) readable at
   * `this.header[this.headerPos...]` and consume them: straight from the
   * first chunk when they sit there (no allocation), else copied into scratch.
   */
  private readHeader(n: number): void {
    const first = this.chunks[0]!;
    if (first.length - this.offset >= n) {
      this.header = first;
      this.headerPos = this.offset;
      this.advance(n);
      return;
    }
    for (let i = 0; i < n; i++) {
      const chunk = this.chunks[0]!;
      SCRATCH[i] = chunk[this.offset]!;
      this.advance(1);
    }
    this.header = SCRATCH;
    this.headerPos = 0;
  }

  private advance(n: number): void {
    this.offset += n;
    this.buffered -= n;
    if (this.offset === this.chunks[0]!.length) {
      this.chunks.shift();
      this.offset = 0;
    }
  }

  private getInfo(): boolean {
    if (this.buffered < 2) return false;
    this.readHeader(2);
    const b0 = this.header[this.headerPos]!;
    const b1 = this.header[this.headerPos + 1]!;
    this.fin = (b0 & 0x80) !== 0;
    this.rsv1 = (b0 & 0x40) !== 0;
    this.opcode = b0 & 0x0f;
    this.masked = (b1 & 0x80) !== 0;
    this.payloadLength = b1 & 0x7f;

    // §5.2: RSV bits MUST be 0 unless an extension defines them.
    if ((b0 & 0x30) !== 0 || (this.rsv1 && !this.allowRsv1)) {
      return this.fail(new ProtocolError('WS_ERR_UNEXPECTED_RSV', 'RSV bits set without a negotiated extension'));
    }
    const op = this.opcode;
    if (op > 0x2 && op < 0x8) {
      return this.fail(new ProtocolError('WS_ERR_INVALID_OPCODE', `reserved data opcode 0x${op.toString(16)}`));
    }
    if (op > 0xa) {
      return this.fail(new ProtocolError('WS_ERR_INVALID_OPCODE', `reserved control opcode 0x${op.toString(16)}`));
    }
    if (isControlOpcode(op)) {
      // §5.5: control frames are never fragmented and carry at most 125 bytes.
      if (!this.fin) return this.fail(new ProtocolError('WS_ERR_FRAGMENTED_CONTROL_FRAME', 'fragmented control frame'));
      if (this.payloadLength > 125) {
        return this.fail(new ProtocolError('WS_ERR_CONTROL_FRAME_TOO_LONG', 'control frame payload over 125 bytes'));
      }
      // RFC 7692 §6: RSV1 is only meaningful on data frames.
      if (this.rsv1) return this.fail(new ProtocolError('WS_ERR_UNEXPECTED_RSV', 'RSV1 set on a control frame'));
    }
    // §5.1: clients mask, servers do not.
    if (this.masked !== this.expectMasked) {
      return this.fail(
        new ProtocolError(
          this.expectMasked ? 'WS_ERR_EXPECTED_MASK' : 'WS_ERR_UNEXPECTED_MASK',
          this.expectMasked ? 'client frame is not masked' : 'server frame is masked',
        ),
      );
    }
    if (this.payloadLength === 126) this.state = GET_LENGTH_16;
    else if (this.payloadLength === 127) this.state = GET_LENGTH_64;
    else return this.haveLength();
    return true;
  }

  private getLength16(): boolean {
    if (this.buffered < 2) return false;
    this.readHeader(2);
    this.payloadLength = this.header.readUInt16BE(this.headerPos);
    return this.haveLength();
  }

  private getLength64(): boolean {
    if (this.buffered < 8) return false;
    this.readHeader(8);
    const high = this.header.readUInt32BE(this.headerPos);
    // §5.2: the most significant bit MUST be 0.
    if (high & 0x80000000) {
      return this.fail(new ProtocolError('WS_ERR_INVALID_LENGTH', '64-bit payload length with the top bit set'));
    }
    // Past 2^53 - 1 a length cannot be represented exactly; no limit would accept it anyway.
    if (high > 0x1fffff) {
      return this.fail(new MessageTooBigError('WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 'payload length over 2^53 - 1'));
    }
    this.payloadLength = high * 0x100000000 + this.header.readUInt32BE(this.headerPos + 4);
    return this.haveLength();
  }

  private haveLength(): boolean {
    if (this.maxFrameSize > 0 && this.payloadLength > this.maxFrameSize && !isControlOpcode(this.opcode)) {
      return this.fail(new MessageTooBigError('WS_ERR_MESSAGE_TOO_BIG', 'frame payload over maxPayload'));
    }
    this.state = this.masked ? GET_MASK : GET_PAYLOAD;
    if (!this.masked) this.startPayload();
    return true;
  }

  private getMask(): boolean {
    if (this.buffered < 4) return false;
    this.readHeader(4);
    this.maskHigh = this.header.readUInt16BE(this.headerPos);
    this.maskLow = this.header.readUInt16BE(this.headerPos + 2);
    this.state = GET_PAYLOAD;
    this.startPayload();
    return true;
  }

  private startPayload(): void {
    // The header is read: keep no reference to the chunk it came in.
    this.header = EMPTY;
    this.payloadRead = 0;
    this.handler.onFrameStart(this.fin, this.rsv1, this.opcode, this.payloadLength);
  }

  private getPayload(): boolean {
    const remaining = this.payloadLength - this.payloadRead;
    if (remaining === 0) {
      this.state = GET_INFO;
      this.handler.onFrameEnd();
      return true;
    }
    if (this.buffered === 0) return false;
    const first = this.chunks[0]!;
    const take = Math.min(remaining, first.length - this.offset);
    const piece =
      this.offset === 0 && take === first.length ? first : first.subarray(this.offset, this.offset + take);
    this.advance(take);
    if (this.masked) {
      MASK_KEY.writeUInt16BE(this.maskHigh, 0);
      MASK_KEY.writeUInt16BE(this.maskLow, 2);
      maskInPlace(piece, MASK_KEY, this.payloadRead);
    }
    this.payloadRead += take;
    this.handler.onFramePayload(piece);
    return true;
  }
}
