import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { WebSocketError } from '../../../src/protocol/errors.js';
import { FrameParser, type FrameHandler, type FrameParserOptions } from '../../../src/protocol/frame-parser.js';
import { Opcode } from '../../../src/protocol/opcode.js';
import { buildFrame, hex, type RawFrame } from './helpers.js';

type ParserEvent =
  | ['start', boolean, boolean, number, number]
  | ['payload', string]
  | ['end']
  | ['error', string, number];

class RecordingFrameHandler implements FrameHandler {
  readonly events: ParserEvent[] = [];
  /** The raw payload pieces, as handed out (not copied). */
  readonly pieces: Buffer[] = [];
  onStart: (() => void) | null = null;
  onPiece: ((data: Buffer) => void) | null = null;
  onEnd: (() => void) | null = null;

  onFrameStart(fin: boolean, rsv1: boolean, opcode: number, length: number): void {
    this.events.push(['start', fin, rsv1, opcode, length]);
    this.onStart?.();
  }
  onFramePayload(data: Buffer): void {
    this.pieces.push(data);
    this.events.push(['payload', data.toString('hex')]);
    this.onPiece?.(data);
  }
  onFrameEnd(): void {
    this.events.push(['end']);
    this.onEnd?.();
  }
  onFrameError(err: WebSocketError): void {
    this.events.push(['error', err.code, err.closeCode]);
  }

  /** Frames as [fin, rsv1, opcode, length, payload hex], payload pieces joined. */
  frames(): [boolean, boolean, number, number, string][] {
    const out: [boolean, boolean, number, number, string][] = [];
    let current: [boolean, boolean, number, number, string] | null = null;
    for (const e of this.events) {
      if (e[0] === 'start') current = [e[1], e[2], e[3], e[4], ''];
      else if (e[0] === 'payload') current![4] += e[1];
      else if (e[0] === 'end') out.push(current!);
    }
    return out;
  }

  errors(): ParserEvent[] {
    return this.events.filter((e) => e[0] === 'error');
  }
}

function setup(options: Partial<FrameParserOptions> = {}) {
  const handler = new RecordingFrameHandler();
  const parser = new FrameParser(handler, { expectMasked: false, maxFrameSize: 0, allowRsv1: false, ...options });
  return { handler, parser };
}

function expectError(bytes: Buffer, code: string, closeCode: number, options: Partial<FrameParserOptions> = {}) {
  const { handler, parser } = setup(options);
  parser.write(bytes);
  assert.deepEqual(handler.errors(), [['error', code, closeCode]]);
  return handler;
}

for (const masked of [false, true]) {
  const side = masked ? 'server side (masked input)' : 'client side (unmasked input)';
  const frame = (f: RawFrame) => buildFrame({ mask: masked, ...f });

  describe(`FrameParser, ${side}`, () => {
    it('parses a text frame', () => {
      const { handler, parser } = setup({ expectMasked: masked });
      parser.write(frame({ opcode: Opcode.Text, payload: 'Hello' }));
      assert.deepEqual(handler.frames(), [[true, false, 1, 5, Buffer.from('Hello').toString('hex')]]);
      assert.equal(parser.bufferedAmount, 0);
    });

    for (const length of [0, 1, 125, 126, 127, 65535, 65536, 70000]) {
      it(`parses a ${length}-byte payload`, () => {
        const payload = Buffer.alloc(length);
        for (let i = 0; i < length; i++) payload[i] = (i * 7) & 0xff;
        const { handler, parser } = setup({ expectMasked: masked });
        parser.write(frame({ opcode: Opcode.Binary, payload }));
        assert.deepEqual(handler.frames(), [[true, false, 2, length, payload.toString('hex')]]);
      });
    }

    it('accepts non-minimal length encodings', () => {
      const { handler, parser } = setup({ expectMasked: masked });
      parser.write(frame({ opcode: Opcode.Text, payload: 'ab', lengthBits: 16 }));
      parser.write(frame({ opcode: Opcode.Text, payload: 'cd', lengthBits: 64 }));
      assert.deepEqual(handler.frames(), [
        [true, false, 1, 2, '6162'],
        [true, false, 1, 2, '6364'],
      ]);
    });

    it('gives the same frames for every split of the input, one byte at a time included', () => {
      const stream = Buffer.concat([
        frame({ opcode: Opcode.Text, payload: 'Hel', fin: false }),
        frame({ opcode: Opcode.Ping, payload: 'p' }),
        frame({ opcode: Opcode.Continuation, payload: 'lo' }),
        frame({ opcode: Opcode.Binary, payload: Buffer.alloc(300, 0xab) }),
        frame({ opcode: Opcode.Close, payload: hex('03 e8') }),
      ]);
      const { handler: reference, parser: whole } = setup({ expectMasked: masked });
      whole.write(Buffer.from(stream));
      const expected = reference.frames();
      assert.equal(expected.length, 5);
      for (let cut = 1; cut < stream.length; cut++) {
        const { handler, parser } = setup({ expectMasked: masked });
        const copy = Buffer.from(stream);
        parser.write(copy.subarray(0, cut));
        parser.write(copy.subarray(cut));
        assert.deepEqual(handler.frames(), expected, `cut at ${cut}`);
      }
      const { handler, parser } = setup({ expectMasked: masked });
      const copy = Buffer.from(stream);
      for (let i = 0; i < copy.length; i++) parser.write(copy.subarray(i, i + 1));
      assert.deepEqual(handler.frames(), expected);
    });

    it('starts a frame as soon as its header is complete, before the payload', () => {
      const { handler, parser } = setup({ expectMasked: masked });
      const bytes = frame({ opcode: Opcode.Binary, payload: Buffer.alloc(1000, 1) });
      const headerLength = 4 + (masked ? 4 : 0);
      parser.write(bytes.subarray(0, headerLength - 1));
      assert.deepEqual(handler.events, []);
      parser.write(bytes.subarray(headerLength - 1, headerLength));
      assert.deepEqual(handler.events, [['start', true, false, 2, 1000]]);
      parser.write(bytes.subarray(headerLength, headerLength + 10));
      assert.equal(handler.events.length, 2);
      assert.equal(parser.bufferedAmount, 0);
    });

    it('reports RSV1 when allowed', () => {
      const { handler, parser } = setup({ expectMasked: masked, allowRsv1: true });
      parser.write(frame({ opcode: Opcode.Text, payload: 'x', rsv1: true }));
      assert.deepEqual(handler.frames(), [[true, true, 1, 1, '78']]);
    });

    for (const [name, f] of [
      ['RSV1', { rsv1: true }],
      ['RSV2', { rsv2: true }],
      ['RSV3', { rsv3: true }],
    ] as const) {
      it(`rejects ${name} without an extension`, () => {
        expectError(frame({ opcode: Opcode.Text, payload: 'x', ...f }), 'WS_ERR_UNEXPECTED_RSV', 1002, { expectMasked: masked });
      });
    }

    it('rejects RSV2/RSV3 even when RSV1 is allowed', () => {
      const opts = { expectMasked: masked, allowRsv1: true };
      expectError(frame({ opcode: Opcode.Text, payload: 'x', rsv2: true }), 'WS_ERR_UNEXPECTED_RSV', 1002, opts);
      expectError(frame({ opcode: Opcode.Text, payload: 'x', rsv3: true }), 'WS_ERR_UNEXPECTED_RSV', 1002, opts);
    });

    it('rejects RSV1 on a control frame even when allowed', () => {
      expectError(frame({ opcode: Opcode.Ping, rsv1: true }), 'WS_ERR_UNEXPECTED_RSV', 1002, { expectMasked: masked, allowRsv1: true });
    });

    for (const opcode of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
      it(`rejects reserved opcode 0x${opcode.toString(16)}`, () => {
        const handler = expectError(frame({ opcode, payload: 'x' }), 'WS_ERR_INVALID_OPCODE', 1002, { expectMasked: masked });
        assert.equal(handler.events.length, 1, 'no frame start before the error');
      });
    }

    it('rejects a fragmented control frame', () => {
      for (const opcode of [Opcode.Close, Opcode.Ping, Opcode.Pong]) {
        expectError(frame({ opcode, fin: false }), 'WS_ERR_FRAGMENTED_CONTROL_FRAME', 1002, { expectMasked: masked });
      }
    });

    it('rejects a control frame with 126 bytes (on the header alone)', () => {
      for (const opcode of [Opcode.Close, Opcode.Ping, Opcode.Pong]) {
        const bytes = frame({ opcode, payload: Buffer.alloc(126) });
        expectError(bytes.subarray(0, 2), 'WS_ERR_CONTROL_FRAME_TOO_LONG', 1002, { expectMasked: masked });
      }
    });

    it('accepts a control frame with 125 bytes', () => {
      const { handler, parser } = setup({ expectMasked: masked });
      parser.write(frame({ opcode: Opcode.Ping, payload: Buffer.alloc(125, 1) }));
      assert.equal(handler.frames()[0]![3], 125);
    });

    it('rejects a 64-bit length with the top bit set', () => {
      const bytes = Buffer.concat([hex(masked ? '82 ff' : '82 7f'), hex('80 00 00 00 00 00 00 01')]);
      expectError(bytes, 'WS_ERR_INVALID_LENGTH', 1002, { expectMasked: masked });
    });

    it('rejects a 64-bit length over 2^53 - 1 with 1009 even without a limit', () => {
      const bytes = Buffer.concat([hex(masked ? '82 ff' : '82 7f'), hex('00 20 00 00 00 00 00 00')]);
      expectError(bytes, 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', 1009, { expectMasked: masked });
    });

    it('enforces maxFrameSize on the declared length, before the payload arrives', () => {
      const opts = { expectMasked: masked, maxFrameSize: 1000 };
      const ok = setup(opts);
      ok.parser.write(frame({ opcode: Opcode.Binary, payload: Buffer.alloc(1000) }));
      assert.equal(ok.handler.frames().length, 1);
      for (const length of [1001, 65536, 2 ** 40]) {
        const bytes = frame({ opcode: Opcode.Binary, length });
        expectError(bytes, 'WS_ERR_MESSAGE_TOO_BIG', 1009, opts);
      }
    });

    it('does not apply maxFrameSize to control frames', () => {
      const { handler, parser } = setup({ expectMasked: masked, maxFrameSize: 10 });
      parser.write(frame({ opcode: Opcode.Ping, payload: Buffer.alloc(100) }));
      assert.equal(handler.frames().length, 1);
    });

    it('stops for good after an error, ignoring further input', () => {
      const { handler, parser } = setup({ expectMasked: masked });
      parser.write(Buffer.concat([frame({ opcode: 3 }), frame({ opcode: Opcode.Text, payload: 'x' })]));
      parser.write(frame({ opcode: Opcode.Text, payload: 'y' }));
      assert.equal(handler.events.length, 1);
      assert.equal(parser.bufferedAmount, 0);
    });
  });
}

describe('FrameParser: masking direction', () => {
  it('server side: an unmasked frame is a protocol error', () => {
    expectError(buildFrame({ opcode: Opcode.Text, payload: 'x' }), 'WS_ERR_EXPECTED_MASK', 1002, { expectMasked: true });
  });

  it('client side: a masked frame is a protocol error', () => {
    expectError(buildFrame({ opcode: Opcode.Text, payload: 'x', mask: true }), 'WS_ERR_UNEXPECTED_MASK', 1002, { expectMasked: false });
  });

  it('unmasks in place: payload pieces are views into the input', () => {
    const { handler, parser } = setup({ expectMasked: true });
    const input = buildFrame({ opcode: Opcode.Text, payload: 'Hello', mask: true });
    parser.write(input);
    assert.equal(handler.pieces.length, 1);
    assert.equal(handler.pieces[0]!.buffer, input.buffer);
    assert.deepEqual(input.subarray(6), Buffer.from('Hello'));
  });

  it('unmasks correctly with the key offset carried across chunks', () => {
    const payload = Buffer.alloc(200);
    for (let i = 0; i < payload.length; i++) payload[i] = i;
    const input = buildFrame({ opcode: Opcode.Binary, payload, mask: hex('01 02 04 08') });
    for (const step of [1, 3, 5, 64, 65]) {
      const { handler, parser } = setup({ expectMasked: true });
      const copy = Buffer.from(input);
      for (let at = 0; at < copy.length; at += step) parser.write(copy.subarray(at, at + step));
      assert.deepEqual(handler.frames(), [[true, false, 2, 200, payload.toString('hex')]], `step ${step}`);
    }
  });
});

describe('FrameParser: flow control', () => {
  it('pause stops at the next boundary and keeps the input; resume continues', () => {
    const { handler, parser } = setup();
    handler.onEnd = () => parser.pause();
    const stream = Buffer.concat([
      buildFrame({ opcode: Opcode.Text, payload: 'a' }),
      buildFrame({ opcode: Opcode.Text, payload: 'b' }),
      buildFrame({ opcode: Opcode.Text, payload: 'c' }),
    ]);
    parser.write(stream);
    assert.deepEqual(handler.frames().map((f) => f[4]), ['61']);
    assert.equal(parser.bufferedAmount, 6);
    parser.resume();
    assert.deepEqual(handler.frames().map((f) => f[4]), ['61', '62']);
    parser.resume();
    parser.resume();
    assert.deepEqual(handler.frames().map((f) => f[4]), ['61', '62', '63']);
    assert.equal(parser.bufferedAmount, 0);
  });

  it('buffers writes while paused', () => {
    const { handler, parser } = setup();
    parser.pause();
    parser.write(buildFrame({ opcode: Opcode.Text, payload: 'a' }));
    assert.deepEqual(handler.events, []);
    assert.equal(parser.bufferedAmount, 3);
    parser.resume();
    assert.equal(handler.frames().length, 1);
  });

  it('resume without pause is a no-op', () => {
    const { handler, parser } = setup();
    parser.resume();
    assert.deepEqual(handler.events, []);
  });

  it('a write from inside a handler is processed in order by the outer loop', () => {
    const { handler, parser } = setup();
    let injected = false;
    handler.onEnd = () => {
      if (!injected) {
        injected = true;
        parser.write(buildFrame({ opcode: Opcode.Text, payload: 'c' }));
      }
    };
    parser.write(Buffer.concat([buildFrame({ opcode: Opcode.Text, payload: 'a' }), buildFrame({ opcode: Opcode.Text, payload: 'b' })]));
    assert.deepEqual(handler.frames().map((f) => f[4]), ['61', '62', '63']);
  });

  it('a synchronous pause + resume inside a handler goes on in the same write', () => {
    const { handler, parser } = setup();
    handler.onEnd = () => {
      parser.pause();
      parser.resume();
    };
    parser.write(Buffer.concat([buildFrame({ opcode: Opcode.Text, payload: 'a' }), buildFrame({ opcode: Opcode.Text, payload: 'b' })]));
    assert.deepEqual(handler.frames().map((f) => f[4]), ['61', '62']);
  });

  it('stop drops the buffer and ignores later input', () => {
    const { handler, parser } = setup();
    parser.pause();
    parser.write(buildFrame({ opcode: Opcode.Text, payload: 'a' }));
    parser.stop();
    assert.equal(parser.bufferedAmount, 0);
    parser.resume();
    parser.write(buildFrame({ opcode: Opcode.Text, payload: 'b' }));
    assert.deepEqual(handler.events, []);
  });

  it('stop from inside onFrameStart ends the loop before the payload', () => {
    const { handler, parser } = setup();
    handler.onStart = () => parser.stop();
    parser.write(Buffer.concat([buildFrame({ opcode: Opcode.Text, payload: 'a' }), buildFrame({ opcode: Opcode.Text, payload: 'b' })]));
    assert.deepEqual(handler.events, [['start', true, false, 1, 1]]);
  });

  it('ignores empty writes', () => {
    const { handler, parser } = setup();
    parser.write(Buffer.alloc(0));
    assert.equal(parser.bufferedAmount, 0);
    assert.deepEqual(handler.events, []);
  });
});
