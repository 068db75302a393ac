/**
 * Test seams for the protocol core: a recording `ConnectionHandler`, a frame
 * builder that can also build invalid frames, and a decoder for the bytes the
 * core writes. The builder and decoder are written independently of
 * `frame-writer.ts` and `frame-parser.ts` so that they check them.
 */
import assert from 'node:assert/strict';
import type { ConnectionHandler } from '../../../src/protocol/connection.js';
import type { WebSocketError } from '../../../src/protocol/errors.js';

/** `hex('81 05 48 65')`: bytes from hex digits, spaces ignored. */
export function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

export interface RawFrame {
  opcode: number;
  payload?: Uint8Array | string;
  fin?: boolean;
  rsv1?: boolean;
  rsv2?: boolean;
  rsv3?: boolean;
  /** `true` for a fixed non-zero key, or the key itself. */
  mask?: boolean | Uint8Array;
  /** Declared length, when it should differ from the payload's. */
  length?: number;
  /** Force a length encoding (a non-minimal one, say). */
  lengthBits?: 7 | 16 | 64;
}

export const TEST_MASK_KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

/** Encode one frame by hand, valid or not. */
export function buildFrame(frame: RawFrame): Buffer {
  const payload = typeof frame.payload === 'string' ? Buffer.from(frame.payload) : Buffer.from(frame.payload ?? []);
  const length = frame.length ?? payload.length;
  const bits = frame.lengthBits ?? (length < 126 ? 7 : length < 0x10000 ? 16 : 64);
  const key = frame.mask === true ? TEST_MASK_KEY : frame.mask instanceof Uint8Array ? frame.mask : null;
  const head = [
    (frame.fin === false ? 0 : 0x80) |
      (frame.rsv1 ? 0x40 : 0) |
      (frame.rsv2 ? 0x20 : 0) |
      (frame.rsv3 ? 0x10 : 0) |
      frame.opcode,
  ];
  const maskBit = key ? 0x80 : 0;
  if (bits === 7) {
    head.push(maskBit | length);
  } else if (bits === 16) {
    head.push(maskBit | 126, length >> 8, length & 0xff);
  } else {
    head.push(maskBit | 127);
    const big = BigInt(length);
    for (let shift = 56n; shift >= 0n; shift -= 8n) head.push(Number((big >> shift) & 0xffn));
  }
  if (key) head.push(...key);
  const body = Buffer.from(payload);
  if (key) for (let i = 0; i < body.length; i++) body[i]! ^= key[i % 4]!;
  return Buffer.concat([Buffer.from(head), body]);
}

export interface DecodedFrame {
  fin: boolean;
  rsv1: boolean;
  rsv2: boolean;
  rsv3: boolean;
  opcode: number;
  masked: boolean;
  maskKey: Buffer | null;
  /** Unmasked. */
  payload: Buffer;
}

/** Decode a sequence of complete frames (asserts that nothing is left over). */
export function decodeFrames(bytes: Buffer): DecodedFrame[] {
  const frames: DecodedFrame[] = [];
  let at = 0;
  while (at < bytes.length) {
    assert.ok(bytes.length - at >= 2, 'truncated frame header');
    const b0 = bytes[at]!;
    const b1 = bytes[at + 1]!;
    at += 2;
    let length = b1 & 0x7f;
    if (length === 126) {
      length = bytes.readUInt16BE(at);
      at += 2;
    } else if (length === 127) {
      length = Number(bytes.readBigUInt64BE(at));
      at += 8;
    }
    const masked = (b1 & 0x80) !== 0;
    let maskKey: Buffer | null = null;
    if (masked) {
      maskKey = Buffer.from(bytes.subarray(at, at + 4));
      at += 4;
    }
    assert.ok(bytes.length - at >= length, 'truncated frame payload');
    const payload = Buffer.from(bytes.subarray(at, at + length));
    at += length;
    if (maskKey) for (let i = 0; i < payload.length; i++) payload[i]! ^= maskKey[i % 4]!;
    frames.push({
      fin: (b0 & 0x80) !== 0,
      rsv1: (b0 & 0x40) !== 0,
      rsv2: (b0 & 0x20) !== 0,
      rsv3: (b0 & 0x10) !== 0,
      opcode: b0 & 0x0f,
      masked,
      maskKey,
      payload,
    });
  }
  return frames;
}

/** Code and reason of a close frame payload (code 1005 when it is empty). */
export function decodeClose(payload: Buffer): { code: number; reason: string } {
  if (payload.length === 0) return { code: 1005, reason: '' };
  return { code: payload.readUInt16BE(0), reason: payload.subarray(2).toString() };
}

export type RecordedEvent =
  | { type: 'message'; data: Buffer; isBinary: boolean }
  | { type: 'ping'; data: Buffer }
  | { type: 'pong'; data: Buffer }
  | { type: 'close'; code: number; reason: Buffer }
  | { type: 'fail'; err: WebSocketError };

/**
 * The seam: records every event (copying buffers, which may be views into
 * the input) and every write. `throwOn` makes one event type throw, as buggy
 * application code would.
 */
export class RecordingHandler implements ConnectionHandler {
  readonly events: RecordedEvent[] = [];
  /** One entry per `onWrite` call: the chunks joined. */
  readonly writes: Buffer[] = [];
  throwOn: RecordedEvent['type'] | null = null;

  onWrite(chunks: Buffer[]): void {
    this.writes.push(Buffer.concat(chunks));
  }
  onMessage(data: Buffer, isBinary: boolean): void {
    this.record({ type: 'message', data: Buffer.from(data), isBinary });
  }
  onPing(data: Buffer): void {
    this.record({ type: 'ping', data: Buffer.from(data) });
  }
  onPong(data: Buffer): void {
    this.record({ type: 'pong', data: Buffer.from(data) });
  }
  onCloseFrame(code: number, reason: Buffer): void {
    this.record({ type: 'close', code, reason: Buffer.from(reason) });
  }
  onFail(err: WebSocketError): void {
    this.record({ type: 'fail', err });
  }

  private record(event: RecordedEvent): void {
    this.events.push(event);
    if (this.throwOn === event.type) throw new Error(`handler threw on ${event.type}`);
  }

  /** Every frame written so far, decoded. */
  get frames(): DecodedFrame[] {
    return this.writes.flatMap((w) => {
      const frames = decodeFrames(w);
      assert.equal(frames.length, 1, 'each onWrite call carries exactly one frame');
      return frames;
    });
  }

  /** The events as plain, comparable values. */
  summary(): unknown[] {
    return this.events.map((e) => {
      switch (e.type) {
        case 'message':
          return [e.isBinary ? 'binary' : 'text', e.data.toString('hex')];
        case 'ping':
        case 'pong':
          return [e.type, e.data.toString('hex')];
        case 'close':
          return ['close', e.code, e.reason.toString('hex')];
        case 'fail':
          return ['fail', e.err.code, e.err.closeCode];
      }
    });
  }
}
