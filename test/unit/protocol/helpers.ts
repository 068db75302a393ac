/**
 * Test seams for the protocol core: a recording `ConnectionHandler`, a frame
 * builder that can also build invalid frames, and a decoder for the bytes the
 * core writes. Both are test/support/frames.ts, written independently of
 * `frame-writer.ts` and `frame-parser.ts` so that they check them.
 */
import assert from 'node:assert/strict';
import type { ConnectionHandler } from '../../../src/protocol/connection.js';
import type { WebSocketError } from '../../../src/protocol/errors.js';
import { closePayload, decodeClose, decodeFrame, encodeFrame, type DecodedFrame, type FrameSpec } from '../../support/frames.js';

/** `hex('81 05 48 65')`: bytes from hex digits, spaces ignored. */
export function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

export type RawFrame = Omit<FrameSpec, 'mask'> & {
  /** `true` for a fixed non-zero key ({@link TEST_MASK_KEY}), or the key itself. */
  mask?: boolean | Uint8Array;
};

export const TEST_MASK_KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

/** Encode one frame by hand, valid or not (unmasked unless asked; `mask: true` uses a fixed key). */
export function buildFrame(frame: RawFrame): Buffer {
  return encodeFrame({ ...frame, mask: frame.mask === true ? TEST_MASK_KEY : frame.mask });
}

export type { DecodedFrame };
export { closePayload, decodeClose };

/** Decode a sequence of complete frames (asserts that nothing is left over). */
export function decodeFrames(bytes: Buffer): DecodedFrame[] {
  const frames: DecodedFrame[] = [];
  let at = 0;
  while (at < bytes.length) {
    assert.ok(bytes.length - at >= 2, 'truncated frame header');
    const got = decodeFrame(bytes.subarray(at));
    assert.ok(got, 'truncated frame payload');
    frames.push(got.frame);
    at += got.size;
  }
  return frames;
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
