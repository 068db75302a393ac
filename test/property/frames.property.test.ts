/**
 * Properties of the protocol core (fast-check):
 * - parse(encode(frame)) equals the frame;
 * - any chunking of a valid stream yields the same events and writes;
 * - masking twice is the identity;
 * - random or corrupted bytes never throw, and fail only with 1002/1007/1009;
 * - Utf8Validator agrees with isUtf8 and, chunk by chunk, with a fatal streaming TextDecoder.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import fc from 'fast-check';
import { Connection } from '../../src/protocol/connection.js';
import type { WebSocketError } from '../../src/protocol/errors.js';
import { FrameParser, type FrameHandler } from '../../src/protocol/frame-parser.js';
import { encodeFrame, encodeServerFrame } from '../../src/protocol/frame-writer.js';
import { maskInPlace } from '../../src/protocol/mask.js';
import { Opcode } from '../../src/protocol/opcode.js';
import { Utf8Validator } from '../../src/protocol/utf8.js';
import { buildFrame, decodeClose, RecordingHandler } from '../unit/protocol/helpers.js';

const ROLES = ['server', 'client'] as const;

/** Deterministic bytes for large payloads (fc.uint8Array of 70 KB is slow to generate and shrink). */
function fill(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Split `bytes` (a copy: the parser unmasks in place) at the given cut points. */
function chunk(bytes: Buffer, cuts: number[]): Buffer[] {
  const copy = Buffer.from(bytes);
  const points = [...new Set(cuts.map((c) => c % (copy.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    out.push(copy.subarray(at, p));
    at = p;
  }
  out.push(copy.subarray(at));
  return out;
}

const payloadLength = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 200 }) },
  { weight: 2, arbitrary: fc.constantFrom(125, 126, 127, 65535, 65536, 65537) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 70_000 }) },
);

describe('property: encode -> parse round trip', () => {
  const frameArb = fc
    .record({
      opcode: fc.constantFrom(0x0, 0x1, 0x2, 0x8, 0x9, 0xa),
      fin: fc.boolean(),
      rsv1: fc.boolean(),
      length: payloadLength,
      seed: fc.integer(),
      masked: fc.boolean(),
    })
    .map((f) => {
      const control = f.opcode >= 0x8;
      // Control frames are never fragmented, never compressed, at most 125 bytes (§5.5).
      return control ? { ...f, fin: true, rsv1: false, length: f.length % 126 } : f;
    });

  it('FrameParser(encodeFrame(f)) gives back f, whole or split', () => {
    fc.assert(
      fc.property(frameArb, fc.array(fc.nat(), { maxLength: 4 }), (f, cuts) => {
        const payload = fill(f.length, f.seed);
        const wire = Buffer.concat(encodeFrame(f.opcode, payload, f.fin, f.rsv1, f.masked));
        const starts: [boolean, boolean, number, number][] = [];
        const pieces: Buffer[] = [];
        let ends = 0;
        const errors: WebSocketError[] = [];
        const handler: FrameHandler = {
          onFrameStart: (fin, rsv1, opcode, length) => void starts.push([fin, rsv1, opcode, length]),
          onFramePayload: (data) => void pieces.push(Buffer.from(data)),
          onFrameEnd: () => void ends++,
          onFrameError: (err) => void errors.push(err),
        };
        const parser = new FrameParser(handler, { expectMasked: f.masked, maxFrameSize: 0, allowRsv1: true });
        for (const piece of chunk(wire, cuts)) parser.write(piece);
        assert.deepEqual(errors, []);
        assert.deepEqual(starts, [[f.fin, f.rsv1, f.opcode, f.length]]);
        assert.equal(ends, 1);
        assert.ok(Buffer.concat(pieces).equals(payload));
        assert.equal(parser.bufferedAmount, 0);
      }),
      { numRuns: 150 },
    );
  });

  it('encodeServerFrame gives the same bytes as an unmasked encodeFrame', () => {
    fc.assert(
      fc.property(frameArb, (f) => {
        const payload = fill(f.length, f.seed);
        const a = encodeServerFrame(f.opcode, payload, f.fin, f.rsv1);
        const b = Buffer.concat(encodeFrame(f.opcode, payload, f.fin, f.rsv1, false));
        assert.ok(a.equals(b));
      }),
      { numRuns: 60 },
    );
  });
});

// A valid stream: messages (possibly fragmented, with control frames between the
// fragments), pings and pongs, and maybe a closing close frame.
type Item =
  | { kind: 'message'; isBinary: boolean; payload: Buffer; cuts: number[]; between: Buffer | null }
  | { kind: 'ping' | 'pong'; payload: Buffer };

const controlPayload = fc.uint8Array({ maxLength: 125 }).map((a) => Buffer.from(a));
const itemArb: fc.Arbitrary<Item> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('message' as const),
      isBinary: fc.boolean(),
      text: fc.string({ unit: 'binary', maxLength: 40 }),
      bytes: fc.uint8Array({ maxLength: 300 }),
      cuts: fc.array(fc.nat(), { maxLength: 3 }),
      between: fc.option(controlPayload, { nil: null }),
    }).map(({ kind, isBinary, text, bytes, cuts, between }) => ({
      kind,
      isBinary,
      payload: isBinary ? Buffer.from(bytes) : Buffer.from(text),
      cuts,
      between,
    })),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom('ping' as const, 'pong' as const), payload: controlPayload }) },
);
const closeArb = fc.option(
  fc.record({
    code: fc.constantFrom(1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4999),
    reason: fc.string({ maxLength: 30 }),
  }),
  { nil: null },
);

function buildStream(items: Item[], close: { code: number; reason: string } | null, masked: boolean) {
  const frames: Buffer[] = [];
  const expected: unknown[] = [];
  for (const item of items) {
    if (item.kind !== 'message') {
      frames.push(buildFrame({ opcode: item.kind === 'ping' ? Opcode.Ping : Opcode.Pong, payload: item.payload, mask: masked }));
      expected.push([item.kind, item.payload.toString('hex')]);
      continue;
    }
    const points = [...new Set(item.cuts.map((c) => c % (item.payload.length + 1)))].sort((a, b) => a - b);
    const bounds = [0, ...points, item.payload.length];
    for (let i = 0; i + 1 < bounds.length; i++) {
      const last = i + 2 === bounds.length;
      frames.push(
        buildFrame({
          opcode: i === 0 ? (item.isBinary ? Opcode.Binary : Opcode.Text) : Opcode.Continuation,
          payload: item.payload.subarray(bounds[i], bounds[i + 1]),
          fin: last,
          mask: masked,
        }),
      );
      if (!last && item.between) {
        frames.push(buildFrame({ opcode: Opcode.Ping, payload: item.between, mask: masked }));
        expected.push(['ping', item.between.toString('hex')]);
      }
    }
    expected.push([item.isBinary ? 'binary' : 'text', item.payload.toString('hex')]);
  }
  if (close) {
    const reason = Buffer.from(close.reason);
    const payload = Buffer.concat([Buffer.from([close.code >> 8, close.code & 0xff]), reason]);
    frames.push(buildFrame({ opcode: Opcode.Close, payload, mask: masked }));
    expected.push(['close', close.code, reason.toString('hex')]);
  }
  return { stream: Buffer.concat(frames), expected };
}

/** Written frames, comparable across runs (client frames have random mask keys). */
function writtenFrames(rec: RecordingHandler): unknown[] {
  return rec.frames.map((f) => [f.opcode, f.fin, f.rsv1, f.masked, f.payload.toString('hex')]);
}

describe('property: chunking', () => {
  for (const role of ROLES) {
    it(`any chunking of a valid stream yields the same events and writes (${role})`, () => {
      fc.assert(
        fc.property(
          fc.array(itemArb, { maxLength: 6 }),
          closeArb,
          fc.array(fc.nat(), { maxLength: 12 }),
          fc.boolean(),
          (items, close, cuts, byteByByte) => {
            const { stream, expected } = buildStream(items, close, role === 'server');
            const whole = new RecordingHandler();
            new Connection(whole, { role }).receiveData(Buffer.from(stream));
            assert.deepEqual(whole.summary(), expected);

            const split = new RecordingHandler();
            const conn = new Connection(split, { role });
            const pieces = byteByByte ? chunk(stream, [...Array(stream.length).keys()]) : chunk(stream, cuts);
            for (const piece of pieces) conn.receiveData(piece);
            assert.deepEqual(split.summary(), expected);
            assert.deepEqual(writtenFrames(split), writtenFrames(whole));
            if (role === 'server') assert.deepEqual(split.writes, whole.writes);
          },
        ),
        { numRuns: 120 },
      );
    });
  }
});

describe('property: masking', () => {
  it('masking twice is the identity, for any key, key offset and memory alignment', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        fc.nat({ max: 1000 }),
        fc.integer({ min: 0, max: 3 }),
        (data, key, keyOffset, align) => {
          const backing = new Uint8Array(data.length + 4);
          const view = backing.subarray(align, align + data.length);
          view.set(data);
          maskInPlace(view, key, keyOffset);
          for (let i = 0; i < data.length; i++) assert.equal(view[i], data[i]! ^ key[(keyOffset + i) % 4]!);
          maskInPlace(view, key, keyOffset);
          assert.deepEqual(view, data);
        },
      ),
      { numRuns: 300 },
    );
  });
});

const VALID_FAIL_CODES = new Set([1002, 1007, 1009]);

/** Feed `bytes` in pieces; never throws; a failure writes exactly one close frame with 1002/1007/1009. */
function feedAndCheck(role: 'server' | 'client', bytes: Buffer, cuts: number[], maxPayload: number): void {
  const rec = new RecordingHandler();
  const conn = new Connection(rec, { role, maxPayload });
  for (const piece of chunk(bytes, cuts)) assert.doesNotThrow(() => conn.receiveData(piece));
  const fails = rec.events.filter((e) => e.type === 'fail');
  assert.ok(fails.length <= 1);
  const closes = rec.frames.filter((f) => f.opcode === Opcode.Close);
  assert.ok(closes.length <= 1);
  if (fails.length === 1) {
    const err = (fails[0] as { err: WebSocketError }).err;
    assert.ok(VALID_FAIL_CODES.has(err.closeCode), `fail with ${err.closeCode} (${err.code})`);
    assert.equal(closes.length, 1);
    assert.equal(decodeClose(closes[0]!.payload).code, err.closeCode);
  }
  for (const f of rec.frames) assert.equal(f.masked, role === 'client');
}

describe('property: garbage in', () => {
  const maxPayloadArb = fc.constantFrom(0, 16, 1000, 100 * 1024 * 1024);

  it('random bytes never throw and fail only with 1002, 1007 or 1009', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...ROLES),
        fc.uint8Array({ maxLength: 200 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        maxPayloadArb,
        (role, bytes, cuts, maxPayload) => feedAndCheck(role, Buffer.from(bytes), cuts, maxPayload),
      ),
      { numRuns: 400 },
    );
  });

  it('valid streams with corrupted bytes never throw and fail only with 1002, 1007 or 1009', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...ROLES),
        fc.array(itemArb, { minLength: 1, maxLength: 4 }),
        closeArb,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        maxPayloadArb,
        (role, items, close, flips, cuts, maxPayload) => {
          const { stream } = buildStream(items, close, role === 'server');
          for (const [at, xor] of flips) stream[at % stream.length]! ^= xor;
          feedAndCheck(role, stream, cuts, maxPayload);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('property: UTF-8', () => {
  // Bytes biased toward the interesting cases: valid sequences of every length,
  // lead bytes, continuation bytes and the bytes at the edges of Table 3-7.
  const interesting = fc.constantFrom(0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff);
  const codePoint = fc
    .integer({ min: 0, max: 0x10ffff })
    .filter((c) => c < 0xd800 || c > 0xdfff)
    .map((c) => [...Buffer.from(String.fromCodePoint(c))]);
  const bytesArb = fc
    .array(fc.oneof(codePoint, interesting.map((b) => [b]), fc.integer({ min: 0, max: 255 }).map((b) => [b])), { maxLength: 40 })
    .map((parts) => Buffer.from(parts.flat()));

  it('Utf8Validator agrees with isUtf8 for any bytes split anywhere', () => {
    fc.assert(
      fc.property(bytesArb, fc.array(fc.nat(), { maxLength: 5 }), (bytes, cuts) => {
        const v = new Utf8Validator();
        let ok = true;
        for (const piece of chunk(bytes, cuts)) {
          if (!v.write(piece)) {
            ok = false;
            break;
          }
        }
        if (ok) ok = v.end();
        assert.equal(ok, isUtf8(bytes), bytes.toString('hex'));
      }),
      { numRuns: 1000 },
    );
  });

  it('Utf8Validator fails on the same piece as a fatal streaming TextDecoder (fail-fast)', () => {
    fc.assert(
      fc.property(bytesArb, fc.array(fc.nat(), { maxLength: 5 }), (bytes, cuts) => {
        const v = new Utf8Validator();
        const decoder = new TextDecoder('utf-8', { fatal: true });
        for (const piece of chunk(bytes, cuts)) {
          let decoderOk = true;
          try {
            decoder.decode(piece, { stream: true });
          } catch {
            decoderOk = false;
          }
          assert.equal(v.write(piece), decoderOk, `piece ${piece.toString('hex')} of ${bytes.toString('hex')}`);
          if (!decoderOk) return;
        }
        let endOk = true;
        try {
          decoder.decode();
        } catch {
          endOk = false;
        }
        assert.equal(v.end(), endOk);
      }),
      { numRuns: 1000 },
    );
  });
});
