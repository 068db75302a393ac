/**
 * The sans-I/O connection on bytes: frames in, events and bytes out. The
 * shared rules run for both roles (python-websockets' CommonTests): the
 * server side is fed masked frames, the client side unmasked ones.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Connection, DEFAULT_MAX_PAYLOAD, encodeClosePayload, truncateUtf8, type ConnectionOptions } from '../../../src/protocol/connection.js';
import {
  InternalError,
  InvalidArgumentError,
  InvalidDataError,
  InvalidStateError,
  MessageTooBigError,
  ProtocolError,
  WebSocketError,
} from '../../../src/protocol/errors.js';
import type { Inflater } from '../../../src/protocol/extension.js';
import { Opcode } from '../../../src/protocol/opcode.js';
import { buildFrame, closePayload, decodeClose, hex, RecordingHandler, type RawFrame } from './helpers.js';

/** Inflates by doubling the payload (so inflated data differs from the wire data); sync or async. */
class FakeInflater implements Inflater {
  readonly calls: [string, boolean][] = [];
  private readonly pending: (() => void)[] = [];
  /** Fail the next call with this error. */
  failWith: WebSocketError | null = null;

  constructor(private readonly mode: 'sync' | 'async') {}

  inflate(payload: Buffer, fin: boolean, callback: (err: WebSocketError | null, data?: Buffer) => void): void {
    const copy = Buffer.from(payload);
    this.calls.push([copy.toString(), fin]);
    const err = this.failWith;
    this.failWith = null;
    const done = () => (err ? callback(err) : callback(null, Buffer.concat([copy, copy])));
    if (this.mode === 'sync') done();
    else this.pending.push(done);
  }

  get pendingCount(): number {
    return this.pending.length;
  }

  /** Complete the oldest pending call. */
  completeOne(): void {
    const next = this.pending.shift();
    assert.ok(next, 'no pending inflate call');
    next();
  }
}

for (const role of ['server', 'client'] as const) {
  describe(`Connection, common rules (${role})`, () => {
    // The peer masks when we are the server (RFC 6455 §5.1).
    const peerMasks = role === 'server';
    const frame = (f: RawFrame): Buffer => buildFrame({ mask: peerMasks, ...f });
    const text = (payload: string | Buffer, fin = true): Buffer => frame({ opcode: Opcode.Text, payload, fin });
    const binary = (payload: Buffer, fin = true): Buffer => frame({ opcode: Opcode.Binary, payload, fin });
    const cont = (payload: string | Buffer, fin = true): Buffer => frame({ opcode: Opcode.Continuation, payload, fin });
    const close = (payload: Buffer): Buffer => frame({ opcode: Opcode.Close, payload });

    function setup(options: Omit<ConnectionOptions, 'role'> = {}) {
      const rec = new RecordingHandler();
      const conn = new Connection(rec, { role, ...options });
      return { rec, conn };
    }

    /** Every frame we write is masked on the client side and unmasked on the server side. */
    function assertOutgoingMasking(rec: RecordingHandler): void {
      for (const f of rec.frames) assert.equal(f.masked, role === 'client', `opcode ${f.opcode} masking`);
    }

    /** One fail event with `code`/`closeCode`, and exactly one close frame written, carrying `closeCode`. */
    function assertFailed(rec: RecordingHandler, conn: Connection, closeCode: number, code: string): WebSocketError {
      const fails = rec.events.filter((e) => e.type === 'fail');
      assert.equal(fails.length, 1, 'exactly one fail event');
      const err = (fails[0] as { err: WebSocketError }).err;
      assert.ok(err instanceof WebSocketError);
      assert.equal(err.code, code);
      assert.equal(err.closeCode, closeCode);
      assert.equal(conn.error, err);
      assert.equal(conn.inputClosed, true);
      const closes = rec.frames.filter((f) => f.opcode === Opcode.Close);
      assert.equal(closes.length, 1, 'exactly one close frame');
      assert.equal(rec.frames.at(-1)!.opcode, Opcode.Close, 'the close frame is the last thing written');
      assert.equal(decodeClose(closes[0]!.payload).code, closeCode);
      assertOutgoingMasking(rec);
      return err;
    }

    /** Feed `bytes`, then assert the failure. */
    function expectFail(bytes: Buffer, closeCode: number, code: string, options: Omit<ConnectionOptions, 'role'> = {}) {
      const { rec, conn } = setup(options);
      assert.doesNotThrow(() => conn.receiveData(bytes));
      const err = assertFailed(rec, conn, closeCode, code);
      assert.equal(rec.events.filter((e) => e.type === 'message').length, 0);
      return { rec, conn, err };
    }

    describe('payload lengths', () => {
      for (const length of [0, 1, 125, 126, 127, 65535, 65536, 65537]) {
        it(`receives a ${length}-byte binary message and a ${length}-byte text message`, () => {
          const { rec, conn } = setup();
          const payload = Buffer.alloc(length);
          for (let i = 0; i < length; i++) payload[i] = (i * 13) & 0xff;
          const textPayload = Buffer.alloc(length, 0x61);
          conn.receiveData(Buffer.concat([binary(payload), text(textPayload)]));
          assert.deepEqual(rec.summary(), [
            ['binary', payload.toString('hex')],
            ['text', textPayload.toString('hex')],
          ]);
          assert.deepEqual(rec.writes, []);
        });
      }

      it('fails with 1002 on a 64-bit length with the top bit set', () => {
        const header = hex(peerMasks ? '82 ff' : '82 7f');
        expectFail(Buffer.concat([header, hex('80 00 00 00 00 00 00 05')]), 1002, 'WS_ERR_INVALID_LENGTH');
      });

      it('fails with 1009 on a frame over maxPayload from its header alone', () => {
        const { rec, conn } = setup({ maxPayload: 1000 });
        const bytes = binary(Buffer.alloc(1001));
        const headerLength = 4 + (peerMasks ? 4 : 0);
        conn.receiveData(bytes.subarray(0, headerLength));
        assertFailed(rec, conn, 1009, 'WS_ERR_MESSAGE_TOO_BIG');
        conn.receiveData(bytes.subarray(headerLength));
        assert.equal(rec.events.length, 1);
      });

      it('fails with 1009 on a 64-bit declared length over maxPayload (2^40)', () => {
        const { rec, conn } = setup({ maxPayload: 1 << 20 });
        conn.receiveData(frame({ opcode: Opcode.Binary, length: 2 ** 40 }));
        assertFailed(rec, conn, 1009, 'WS_ERR_MESSAGE_TOO_BIG');
      });

      it('accepts a message of exactly maxPayload bytes, in one frame or in fragments', () => {
        const { rec, conn } = setup({ maxPayload: 1000 });
        conn.receiveData(binary(Buffer.alloc(1000)));
        conn.receiveData(Buffer.concat([binary(Buffer.alloc(600), false), cont(Buffer.alloc(400))]));
        assert.equal(rec.events.length, 2);
        assert.equal(rec.events.every((e) => e.type === 'message' && e.data.length === 1000), true);
      });

      it('fails with 1009 when fragments add up over maxPayload, on the header of the fragment that crosses it', () => {
        const { rec, conn } = setup({ maxPayload: 1000 });
        conn.receiveData(text(Buffer.alloc(600, 0x61), false));
        assert.equal(rec.events.length, 0);
        const second = cont(Buffer.alloc(401, 0x61));
        const headerLength = 4 + (peerMasks ? 4 : 0);
        conn.receiveData(second.subarray(0, headerLength));
        assertFailed(rec, conn, 1009, 'WS_ERR_MESSAGE_TOO_BIG');
      });

      it('defaults maxPayload to 100 MiB', () => {
        assert.equal(setup().conn.maxPayload, DEFAULT_MAX_PAYLOAD);
        assert.equal(DEFAULT_MAX_PAYLOAD, 100 * 1024 * 1024);
        const { rec, conn } = setup();
        conn.receiveData(frame({ opcode: Opcode.Binary, length: DEFAULT_MAX_PAYLOAD + 1 }));
        assertFailed(rec, conn, 1009, 'WS_ERR_MESSAGE_TOO_BIG');
      });

      it('has no limit with maxPayload 0', () => {
        const { rec, conn } = setup({ maxPayload: 0 });
        conn.receiveData(binary(Buffer.alloc(200_000)));
        assert.equal(rec.events.length, 1);
      });

      it('counts the limit per message, not per connection', () => {
        const { rec, conn } = setup({ maxPayload: 100 });
        for (let i = 0; i < 5; i++) conn.receiveData(Buffer.concat([text('x'.repeat(60), false), cont('y'.repeat(40))]));
        assert.equal(rec.events.length, 5);
        assert.equal(rec.events.every((e) => e.type === 'message'), true);
      });
    });

    describe('masking', () => {
      it('fails with 1002 on a frame masked the wrong way for the role', () => {
        const wrong = buildFrame({ opcode: Opcode.Text, payload: 'Hello', mask: !peerMasks });
        expectFail(wrong, 1002, role === 'server' ? 'WS_ERR_EXPECTED_MASK' : 'WS_ERR_UNEXPECTED_MASK');
      });
    });

    describe('opcodes and reserved bits', () => {
      for (const opcode of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
        it(`fails with 1002 on reserved opcode 0x${opcode.toString(16)}`, () => {
          const { err } = expectFail(frame({ opcode, payload: 'x' }), 1002, 'WS_ERR_INVALID_OPCODE');
          assert.ok(err instanceof ProtocolError);
        });
      }

      for (const rsv of ['rsv1', 'rsv2', 'rsv3'] as const) {
        it(`fails with 1002 on ${rsv.toUpperCase()} without an extension`, () => {
          expectFail(frame({ opcode: Opcode.Text, payload: 'x', [rsv]: true }), 1002, 'WS_ERR_UNEXPECTED_RSV');
        });
      }
    });

    describe('control frames', () => {
      for (const opcode of [Opcode.Ping, Opcode.Pong, Opcode.Close]) {
        it(`fails with 1002 on a 126-byte control frame (0x${opcode.toString(16)})`, () => {
          expectFail(frame({ opcode, payload: Buffer.alloc(126) }), 1002, 'WS_ERR_CONTROL_FRAME_TOO_LONG');
        });

        it(`fails with 1002 on a fragmented control frame (0x${opcode.toString(16)})`, () => {
          expectFail(frame({ opcode, fin: false, payload: hex('03 e8') }), 1002, 'WS_ERR_FRAGMENTED_CONTROL_FRAME');
        });
      }

      for (const payload of [Buffer.alloc(0), Buffer.from('are you there?'), Buffer.alloc(125, 0xfe)]) {
        it(`answers a ping with a pong with the same ${payload.length}-byte payload`, () => {
          const { rec, conn } = setup();
          conn.receiveData(frame({ opcode: Opcode.Ping, payload }));
          assert.deepEqual(rec.summary(), [['ping', payload.toString('hex')]]);
          const frames = rec.frames;
          assert.equal(frames.length, 1);
          assert.equal(frames[0]!.opcode, Opcode.Pong);
          assert.equal(frames[0]!.fin, true);
          assert.deepEqual(frames[0]!.payload, payload);
          assertOutgoingMasking(rec);
        });
      }

      it('does not answer pings with autoPong: false', () => {
        const { rec, conn } = setup({ autoPong: false });
        conn.receiveData(frame({ opcode: Opcode.Ping, payload: 'x' }));
        assert.deepEqual(rec.summary(), [['ping', '78']]);
        assert.deepEqual(rec.writes, []);
      });

      it('reports pongs and does not answer them', () => {
        const { rec, conn } = setup();
        conn.receiveData(frame({ opcode: Opcode.Pong, payload: 'x' }));
        assert.deepEqual(rec.summary(), [['pong', '78']]);
        assert.deepEqual(rec.writes, []);
      });

      it('handles control frames between the fragments of a message', () => {
        const { rec, conn } = setup();
        conn.receiveData(
          Buffer.concat([
            text('Hel', false),
            frame({ opcode: Opcode.Ping, payload: 'p1' }),
            cont('l', false),
            frame({ opcode: Opcode.Pong, payload: 'p2' }),
            frame({ opcode: Opcode.Ping, payload: '' }),
            cont('o'),
          ]),
        );
        assert.deepEqual(rec.summary(), [
          ['ping', Buffer.from('p1').toString('hex')],
          ['pong', Buffer.from('p2').toString('hex')],
          ['ping', ''],
          ['text', Buffer.from('Hello').toString('hex')],
        ]);
        assert.deepEqual(
          rec.frames.map((f) => [f.opcode, f.payload.toString()]),
          [
            [Opcode.Pong, 'p1'],
            [Opcode.Pong, ''],
          ],
        );
      });

      it('handles a close frame between the fragments of a message (the message is dropped)', () => {
        const { rec, conn } = setup();
        conn.receiveData(Buffer.concat([text('Hel', false), close(hex('03 e8')), cont('lo')]));
        assert.deepEqual(rec.summary(), [['close', 1000, '']]);
      });
    });

    describe('fragmentation', () => {
      it('reassembles a fragmented text and binary message', () => {
        const { rec, conn } = setup();
        conn.receiveData(Buffer.concat([text('Hel', false), cont('l', false), cont('o')]));
        conn.receiveData(Buffer.concat([binary(hex('01 02'), false), cont(hex('03'))]));
        assert.deepEqual(rec.summary(), [
          ['text', Buffer.from('Hello').toString('hex')],
          ['binary', '010203'],
        ]);
      });

      it('fails with 1002 on a continuation without a message to continue', () => {
        expectFail(cont('x'), 1002, 'WS_ERR_UNEXPECTED_CONTINUATION');
        expectFail(cont('x', false), 1002, 'WS_ERR_UNEXPECTED_CONTINUATION');
      });

      it('fails with 1002 on a continuation after a complete message', () => {
        const { rec, conn } = setup();
        conn.receiveData(Buffer.concat([text('a'), cont('b')]));
        assert.equal(rec.events[0]!.type, 'message');
        const fails = rec.events.filter((e) => e.type === 'fail');
        assert.equal(fails.length, 1);
        assert.equal((fails[0] as { err: WebSocketError }).err.code, 'WS_ERR_UNEXPECTED_CONTINUATION');
        assert.equal(decodeClose(rec.frames.at(-1)!.payload).code, 1002);
      });

      for (const [name, second] of [
        ['text', (s: string) => text(s)],
        ['binary', (s: string) => binary(Buffer.from(s))],
        ['unfinished text', (s: string) => text(s, false)],
      ] as const) {
        it(`fails with 1002 on a new ${name} frame inside a fragmented message`, () => {
          const { rec, conn } = setup();
          conn.receiveData(text('Hel', false));
          conn.receiveData(second('lo'));
          assertFailed(rec, conn, 1002, 'WS_ERR_EXPECTED_CONTINUATION');
          assert.equal(rec.events.length, 1);
        });
      }

      it('accepts empty fragments', () => {
        const { rec, conn } = setup();
        conn.receiveData(Buffer.concat([text('', false), cont('', false), cont('')]));
        conn.receiveData(Buffer.concat([binary(Buffer.alloc(0), false), cont('ab', false), cont('')]));
        conn.receiveData(text(''));
        assert.deepEqual(rec.summary(), [
          ['text', ''],
          ['binary', '6162'],
          ['text', ''],
        ]);
        assert.deepEqual(rec.writes, []);
      });
    });

    describe('UTF-8', () => {
      for (const [name, bad] of [
        ['a stray FF', 'ff'],
        ['an overlong', 'c0 af'],
        ['an overlong 3-byte', 'e0 80 af'],
        ['a surrogate', 'ed a0 80'],
        ['a code point over U+10FFFF', 'f4 90 80 80'],
        ['a truncated sequence at the end', 'e2 82'],
      ] as const) {
        it(`fails with 1007 on a text message with ${name}`, () => {
          const { err } = expectFail(text(Buffer.concat([Buffer.from('ok '), hex(bad)])), 1007, 'WS_ERR_INVALID_UTF8');
          assert.ok(err instanceof InvalidDataError);
        });
      }

      it('does not check binary messages', () => {
        const { rec, conn } = setup();
        conn.receiveData(binary(hex('ff ed a0 80')));
        assert.deepEqual(rec.summary(), [['binary', 'ffeda080']]);
      });

      it('skips the check with skipUTF8Validation', () => {
        const { rec, conn } = setup({ skipUTF8Validation: true });
        conn.receiveData(text(hex('ff ed a0 80')));
        assert.deepEqual(rec.summary(), [['text', 'ffeda080']]);
      });

      for (const [name, fragments] of [
        ['an invalid byte', ['48 65', 'ff 6c', '6f']],
        ['a sequence split across fragments (F4 | 90)', ['48 f4', '90 80 80', '6f']],
        ['an overlong split across fragments (E0 | 80)', ['48 e0', '80 af', '6f']],
        ['a surrogate split across fragments (ED | A0 80)', ['ed', 'a0 80', '6f']],
        ['an overlong 4-byte split across fragments (F0 | 8F BF BF)', ['41 f0', '8f bf bf', '6f']],
      ] as const) {
        it(`fails a fragmented text message with ${name} as soon as the bad fragment arrives`, () => {
          const { rec, conn } = setup();
          conn.receiveData(text(hex(fragments[0]), false));
          assert.deepEqual(rec.events, []);
          conn.receiveData(cont(hex(fragments[1]), false));
          // Failed already: the final fragment has not been fed.
          assertFailed(rec, conn, 1007, 'WS_ERR_INVALID_UTF8');
          conn.receiveData(cont(hex(fragments[2])));
          assert.equal(rec.events.length, 1);
          assert.equal(rec.writes.length, 1);
        });
      }

      it('fails a fragmented text message that ends inside a sequence', () => {
        const { rec, conn } = setup();
        conn.receiveData(Buffer.concat([text(hex('41 e2'), false), cont(hex('82'))]));
        assertFailed(rec, conn, 1007, 'WS_ERR_INVALID_UTF8');
      });

      it('fails a text frame delivered one byte at a time right at the bad byte', () => {
        const payload = Buffer.concat([Buffer.from('héllo '), hex('f4 90 80 80'), Buffer.from(' more text')]);
        const bytes = text(payload);
        const headerLength = 2 + (peerMasks ? 4 : 0);
        const badAt = headerLength + Buffer.from('héllo ').length + 1; // the 0x90 after F4
        const { rec, conn } = setup();
        for (let i = 0; i < bytes.length; i++) {
          conn.receiveData(bytes.subarray(i, i + 1));
          if (i < badAt) assert.deepEqual(rec.events, [], `no event before byte ${i}`);
          else if (i === badAt) assertFailed(rec, conn, 1007, 'WS_ERR_INVALID_UTF8');
        }
        assert.equal(rec.events.length, 1);
      });

      it('accepts valid multi-byte text split between two fragments at every position', () => {
        const bytes = Buffer.from('é€😀\u{10FFFF}x\u0800');
        for (let cut = 0; cut <= bytes.length; cut++) {
          const { rec, conn } = setup();
          conn.receiveData(text(bytes.subarray(0, cut), false));
          conn.receiveData(cont(bytes.subarray(cut)));
          assert.deepEqual(rec.summary(), [['text', bytes.toString('hex')]], `cut ${cut}`);
        }
      });

      it('accepts valid multi-byte text delivered one byte at a time', () => {
        const payload = Buffer.from('€😀é');
        const bytes = text(payload);
        const { rec, conn } = setup();
        for (let i = 0; i < bytes.length; i++) conn.receiveData(bytes.subarray(i, i + 1));
        assert.deepEqual(rec.summary(), [['text', payload.toString('hex')]]);
      });

      it('checks each message afresh (a failed-free message does not leak state into the next)', () => {
        const { rec, conn } = setup();
        conn.receiveData(Buffer.concat([text('é'), text('ok'), binary(hex('e2')), text('€')]));
        assert.equal(rec.events.length, 4);
        assert.equal(rec.events.every((e) => e.type === 'message'), true);
      });
    });

    describe('receiving a close frame', () => {
      it('reports 1005 for an empty close frame and echoes an empty one', () => {
        const { rec, conn } = setup();
        conn.receiveData(close(Buffer.alloc(0)));
        assert.deepEqual(rec.summary(), [['close', 1005, '']]);
        assert.equal(rec.frames.length, 1);
        assert.equal(rec.frames[0]!.opcode, Opcode.Close);
        assert.equal(rec.frames[0]!.payload.length, 0);
        assertOutgoingMasking(rec);
        assert.equal(conn.closeCode, 1005);
        assert.equal(conn.closeReceived, true);
        assert.equal(conn.closeSent, true);
        assert.equal(conn.inputClosed, true);
        assert.equal(conn.error, null);
      });

      it('fails with 1002 on a 1-byte close payload', () => {
        expectFail(close(hex('03')), 1002, 'WS_ERR_INVALID_CLOSE_PAYLOAD');
      });

      for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]) {
        it(`fails with 1002 on close code ${code}`, () => {
          expectFail(close(closePayload(code)), 1002, 'WS_ERR_INVALID_CLOSE_CODE');
        });
      }

      for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]) {
        it(`accepts close code ${code}, reports it and echoes it`, () => {
          const { rec, conn } = setup();
          conn.receiveData(close(closePayload(code, 'bye')));
          assert.deepEqual(rec.summary(), [['close', code, Buffer.from('bye').toString('hex')]]);
          assert.equal(rec.frames.length, 1);
          assert.equal(decodeClose(rec.frames[0]!.payload).code, code);
          assertOutgoingMasking(rec);
          assert.equal(conn.closeCode, code);
          assert.equal(conn.closeReason.toString(), 'bye');
        });
      }

      it('fails with 1002 on a close reason that is not UTF-8', () => {
        expectFail(close(hex('03 e8 ff')), 1002, 'WS_ERR_INVALID_CLOSE_REASON');
        expectFail(close(hex('03 e8 41 ed a0 80')), 1002, 'WS_ERR_INVALID_CLOSE_REASON');
      });

      it('accepts a 123-byte reason (a 125-byte payload)', () => {
        const { rec, conn } = setup();
        const reason = 'é'.repeat(61) + 'x'; // 123 bytes of multi-byte UTF-8
        conn.receiveData(close(Buffer.concat([hex('0f a0'), Buffer.from(reason)])));
        assert.deepEqual(rec.summary(), [['close', 4000, Buffer.from(reason).toString('hex')]]);
      });

      it('ignores all input after the close frame, in the same chunk and later', () => {
        const { rec, conn } = setup();
        conn.receiveData(Buffer.concat([close(hex('03 e8')), text('late'), frame({ opcode: Opcode.Ping, payload: 'p' })]));
        conn.receiveData(text('later'));
        conn.receiveData(hex('ff ff ff'));
        assert.deepEqual(rec.summary(), [['close', 1000, '']]);
        assert.equal(rec.writes.length, 1);
      });

      it('does not echo when our close frame went first (closing handshake completes)', () => {
        const { rec, conn } = setup();
        conn.close(1001, 'going');
        conn.receiveData(close(hex('03 e9')));
        assert.deepEqual(rec.summary(), [['close', 1001, '']]);
        assert.equal(rec.writes.length, 1);
        assert.equal(conn.receiveEof(), true);
      });

      it('a handler that throws in onCloseFrame fails with 1011 but writes no second close frame', () => {
        const { rec, conn } = setup();
        rec.throwOn = 'close';
        assert.doesNotThrow(() => conn.receiveData(close(hex('03 e8'))));
        assert.deepEqual(rec.summary(), [
          ['close', 1000, ''],
          ['fail', 'WS_ERR_INTERNAL', 1011],
        ]);
        assert.equal(rec.writes.length, 1);
        assert.equal(decodeClose(rec.frames[0]!.payload).code, 1000);
      });
    });

    describe('sending a close frame', () => {
      it('close() without a code writes an empty close frame', () => {
        const { rec, conn } = setup();
        conn.close();
        assert.equal(rec.frames.length, 1);
        assert.equal(rec.frames[0]!.opcode, Opcode.Close);
        assert.equal(rec.frames[0]!.payload.length, 0);
        assert.equal(conn.closeSent, true);
        assertOutgoingMasking(rec);
      });

      it('close(code, reason) writes the code and the reason', () => {
        const { rec, conn } = setup();
        conn.close(4000, 'bye é');
        assert.deepEqual(decodeClose(rec.frames[0]!.payload), { code: 4000, reason: 'bye é' });
      });

      it('after the close frame, sendData/ping/pong throw InvalidStateError and nothing else is written', () => {
        const { rec, conn } = setup();
        conn.close(1000);
        for (const send of [() => conn.sendData(Buffer.from('x'), false), () => conn.ping(), () => conn.pong(Buffer.from('x'))]) {
          assert.throws(send, (err: unknown) => err instanceof InvalidStateError && err.code === 'WS_ERR_CLOSE_SENT');
        }
        assert.equal(rec.writes.length, 1);
      });

      it('close() twice writes one close frame', () => {
        const { rec, conn } = setup();
        conn.close(1000);
        conn.close(1001);
        conn.close();
        assert.equal(rec.writes.length, 1);
        assert.equal(decodeClose(rec.frames[0]!.payload).code, 1000);
      });

      for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 5000]) {
        it(`close(${code}) throws and writes nothing`, () => {
          const { rec, conn } = setup();
          assert.throws(() => conn.close(code), (err: unknown) => err instanceof InvalidArgumentError && err.code === 'WS_ERR_INVALID_CLOSE_CODE');
          assert.equal(rec.writes.length, 0);
          assert.equal(conn.closeSent, false);
          conn.close(1000);
          assert.equal(rec.writes.length, 1);
        });
      }

      it('a reason of 124 bytes throws; 123 bytes is fine', () => {
        const { rec, conn } = setup();
        assert.throws(
          () => conn.close(1000, 'x'.repeat(124)),
          (err: unknown) => err instanceof InvalidArgumentError && err.code === 'WS_ERR_CLOSE_REASON_TOO_LONG',
        );
        assert.throws(() => conn.close(1000, 'é'.repeat(62)), InvalidArgumentError);
        assert.equal(rec.writes.length, 0);
        conn.close(1000, 'x'.repeat(123));
        assert.equal(rec.frames[0]!.payload.length, 125);
      });

      it('still receives messages after sending close, but no longer answers pings', () => {
        const { rec, conn } = setup();
        conn.close(1000);
        conn.receiveData(Buffer.concat([text('in flight'), frame({ opcode: Opcode.Ping, payload: 'p' })]));
        assert.deepEqual(rec.summary(), [
          ['text', Buffer.from('in flight').toString('hex')],
          ['ping', '70'],
        ]);
        assert.equal(rec.writes.length, 1);
      });
    });

    describe('fail()', () => {
      it('writes exactly one close frame with the error close code and message, and reports once', () => {
        const { rec, conn } = setup();
        const err = new ProtocolError('WS_ERR_TEST', 'custom reason');
        conn.fail(err);
        conn.fail(new ProtocolError('WS_ERR_OTHER', 'second'));
        assert.equal(rec.writes.length, 1);
        assert.deepEqual(decodeClose(rec.frames[0]!.payload), { code: 1002, reason: 'custom reason' });
        assert.deepEqual(rec.summary(), [['fail', 'WS_ERR_TEST', 1002]]);
        assert.equal(conn.error, err);
        assert.throws(() => conn.sendData(Buffer.from('x'), false), InvalidStateError);
        assert.throws(() => conn.ping(), InvalidStateError);
        assert.equal(rec.writes.length, 1);
      });

      it('InternalError sends 1011 without details', () => {
        const { rec, conn } = setup();
        conn.fail(new InternalError('WS_ERR_INTERNAL', 'db password is hunter2'));
        assert.equal(rec.writes.length, 1);
        assert.deepEqual(rec.frames[0]!.payload, hex('03 f3'));
      });

      it('truncates a long message to 123 bytes without splitting a character', () => {
        const { rec, conn } = setup();
        conn.fail(new MessageTooBigError('WS_ERR_TEST', 'a' + 'é'.repeat(100)));
        const payload = rec.frames[0]!.payload;
        assert.ok(payload.length <= 125);
        assert.deepEqual(decodeClose(payload), { code: 1009, reason: 'a' + 'é'.repeat(61) });
      });

      it('writes no close frame when one was sent already', () => {
        const { rec, conn } = setup();
        conn.close(1000);
        conn.fail(new ProtocolError('WS_ERR_TEST', 'x'));
        assert.equal(rec.writes.length, 1);
        assert.deepEqual(rec.summary(), [['fail', 'WS_ERR_TEST', 1002]]);
      });

      it('never throws, even for an error whose close code may not be sent (sends 1011 instead)', () => {
        const { rec, conn } = setup();
        const err = new WebSocketError('WS_ERR_ODD', 'odd', 1006);
        assert.doesNotThrow(() => conn.fail(err));
        assert.deepEqual(rec.summary(), [['fail', 'WS_ERR_ODD', 1006]]);
        assert.equal(rec.writes.length, 1);
        assert.equal(decodeClose(rec.frames[0]!.payload).code, 1011);
      });

      for (const event of ['message', 'ping', 'pong'] as const) {
        it(`receiveData never throws when the handler throws in on${event} (fails with 1011)`, () => {
          const { rec, conn } = setup();
          rec.throwOn = event;
          const trigger =
            event === 'message' ? text('x') : frame({ opcode: event === 'ping' ? Opcode.Ping : Opcode.Pong, payload: 'x' });
          assert.doesNotThrow(() => conn.receiveData(Buffer.concat([trigger, text('after')])));
          assert.equal(rec.events.length, 2);
          const err = assertFailed(rec, conn, 1011, 'WS_ERR_INTERNAL');
          assert.ok(err instanceof InternalError);
          const closeFrame = rec.frames.find((f) => f.opcode === Opcode.Close)!;
          assert.deepEqual(closeFrame.payload, hex('03 f3'), 'no details');
          assert.doesNotThrow(() => conn.receiveData(text('ignored')));
          assert.equal(rec.events.length, 2);
        });
      }

      it('receiveData never throws when the handler throws in onFail', () => {
        const { rec, conn } = setup();
        rec.throwOn = 'fail';
        assert.doesNotThrow(() => conn.receiveData(frame({ opcode: 3 })));
        assert.equal(rec.events.length, 1);
        assert.equal(rec.writes.length, 1);
      });
    });

    describe('end of input', () => {
      it('receiveEof reports an unclean end and ignores later input', () => {
        const { rec, conn } = setup();
        conn.receiveData(text('Hel', false));
        assert.equal(conn.receiveEof(), false);
        conn.receiveData(cont('lo'));
        assert.deepEqual(rec.events, []);
        assert.equal(conn.inputClosed, true);
        assert.equal(conn.closeCode, 1006);
      });

      it('receiveEof after the close frame reports a clean end', () => {
        const { conn } = setup();
        conn.receiveData(close(hex('03 e8')));
        assert.equal(conn.receiveEof(), true);
      });
    });

    describe('flow control', () => {
      it('pause() in a handler holds the next frames until resume()', () => {
        const { rec, conn } = setup();
        let paused = false;
        rec.onMessage = function (data, isBinary) {
          RecordingHandler.prototype.onMessage.call(this, data, isBinary);
          if (!paused) {
            paused = true;
            conn.pause();
          }
        };
        conn.receiveData(Buffer.concat([text('a'), text('b'), text('c')]));
        assert.equal(rec.events.length, 1);
        conn.receiveData(text('d'));
        assert.equal(rec.events.length, 1);
        conn.resume();
        assert.deepEqual(
          rec.events.map((e) => (e.type === 'message' ? e.data.toString() : e.type)),
          ['a', 'b', 'c', 'd'],
        );
      });
    });

    describe('sending', () => {
      it(`writes ${role === 'client' ? 'masked frames with a fresh key each time' : 'unmasked frames'}`, () => {
        const { rec, conn } = setup();
        conn.sendData(Buffer.from('same'), false);
        conn.sendData(Buffer.from('same'), false);
        const [a, b] = rec.frames;
        assert.equal(a!.opcode, Opcode.Text);
        assert.deepEqual(a!.payload, Buffer.from('same'));
        assert.deepEqual(b!.payload, Buffer.from('same'));
        assertOutgoingMasking(rec);
        if (role === 'client') {
          assert.notDeepEqual(rec.writes[0], rec.writes[1]);
          assert.notDeepEqual(a!.maskKey, b!.maskKey);
        } else {
          assert.deepEqual(rec.writes[0], hex('81 04 73 61 6d 65'));
          assert.deepEqual(rec.writes[1], rec.writes[0]);
        }
      });

      it('never modifies the payload it is given', () => {
        const { conn } = setup();
        const payload = Buffer.from('shared between connections');
        conn.sendData(payload, true);
        assert.deepEqual(payload, Buffer.from('shared between connections'));
      });

      it('sends binary, ping and pong frames', () => {
        const { rec, conn } = setup();
        conn.sendData(hex('00 ff'), true);
        conn.ping(Buffer.from('p'));
        conn.pong(Buffer.from('q'));
        conn.ping();
        assert.deepEqual(
          rec.frames.map((f) => [f.opcode, f.fin, f.payload.toString('hex')]),
          [
            [Opcode.Binary, true, '00ff'],
            [Opcode.Ping, true, '70'],
            [Opcode.Pong, true, '71'],
            [Opcode.Ping, true, ''],
          ],
        );
        assertOutgoingMasking(rec);
      });

      it('fragments with fin=false, then continuation frames, then a fresh opcode for the next message', () => {
        const { rec, conn } = setup();
        conn.sendData(Buffer.from('Hel'), false, false);
        conn.ping(Buffer.from('between'));
        conn.sendData(Buffer.from('l'), false, false);
        conn.sendData(Buffer.from('o'), true, true); // isBinary ignored on continuations
        conn.sendData(hex('01'), true);
        assert.deepEqual(
          rec.frames.map((f) => [f.opcode, f.fin]),
          [
            [Opcode.Text, false],
            [Opcode.Ping, true],
            [Opcode.Continuation, false],
            [Opcode.Continuation, true],
            [Opcode.Binary, true],
          ],
        );
      });

      it('sets RSV1 on the first frame of a message only', () => {
        const { rec, conn } = setup();
        conn.sendData(Buffer.from('a'), false, false, true);
        conn.sendData(Buffer.from('b'), false, false, true);
        conn.sendData(Buffer.from('c'), false, true, true);
        conn.sendData(Buffer.from('d'), false, true, true);
        conn.sendData(Buffer.from('e'), false, true, false);
        assert.deepEqual(
          rec.frames.map((f) => [f.opcode, f.rsv1]),
          [
            [Opcode.Text, true],
            [Opcode.Continuation, false],
            [Opcode.Continuation, false],
            [Opcode.Text, true],
            [Opcode.Text, false],
          ],
        );
      });

      it('ping/pong over 125 bytes throw and write nothing', () => {
        const { rec, conn } = setup();
        for (const send of [() => conn.ping(Buffer.alloc(126)), () => conn.pong(Buffer.alloc(126))]) {
          assert.throws(send, (err: unknown) => err instanceof InvalidArgumentError && err.code === 'WS_ERR_CONTROL_PAYLOAD_TOO_LONG');
        }
        conn.ping(Buffer.alloc(125));
        assert.equal(rec.writes.length, 1);
      });

      it('sends a large message with a 64-bit length', () => {
        const { rec, conn } = setup();
        const payload = Buffer.alloc(70_000, 0x42);
        conn.sendData(payload, true);
        const [f] = rec.frames;
        assert.deepEqual(f!.payload, payload);
        assert.equal(rec.writes[0]![1]! & 0x7f, 127);
      });
    });

    for (const mode of ['sync', 'async'] as const) {
      describe(`compressed messages through the Inflater (${mode})`, () => {
        function setupInflate(options: Omit<ConnectionOptions, 'role' | 'inflater'> = {}) {
          const inflater = new FakeInflater(mode);
          const { rec, conn } = setup({ ...options, inflater });
          /** Complete pending inflate calls (async mode) until none is left. */
          const settle = () => {
            while (inflater.pendingCount > 0) inflater.completeOne();
          };
          return { rec, conn, inflater, settle };
        }
        const compressed = (payload: string, fin = true, opcode: number = Opcode.Text) =>
          frame({ opcode, payload, fin, rsv1: true });

        it('hands RSV1 frames to the inflater and delivers the inflated message', () => {
          const { rec, conn, inflater, settle } = setupInflate();
          conn.receiveData(compressed('abc'));
          settle();
          assert.deepEqual(inflater.calls, [['abc', true]]);
          assert.deepEqual(rec.summary(), [['text', Buffer.from('abcabc').toString('hex')]]);
        });

        it('does not inflate a message without RSV1', () => {
          const { rec, conn, inflater } = setupInflate();
          conn.receiveData(text('plain'));
          assert.deepEqual(inflater.calls, []);
          assert.deepEqual(rec.summary(), [['text', Buffer.from('plain').toString('hex')]]);
        });

        it('inflates each frame of a fragmented message, fin on the last', () => {
          const { rec, conn, inflater, settle } = setupInflate();
          conn.receiveData(Buffer.concat([compressed('ab', false, Opcode.Binary), cont('c', false), cont('d')]));
          settle();
          assert.deepEqual(inflater.calls, [
            ['ab', false],
            ['c', false],
            ['d', true],
          ]);
          assert.deepEqual(rec.summary(), [['binary', Buffer.from('ababccdd').toString('hex')]]);
        });

        it('keeps the order of frames in one chunk: parsing waits for the callback', () => {
          const { rec, conn, inflater } = setupInflate();
          conn.receiveData(
            Buffer.concat([compressed('one'), frame({ opcode: Opcode.Ping, payload: 'p' }), compressed('two'), text('three')]),
          );
          const order = () => rec.events.map((e) => (e.type === 'message' ? e.data.toString() : e.type));
          if (mode === 'async') {
            assert.deepEqual(order(), []);
            assert.equal(inflater.calls.length, 1, 'the second frame waits for the first');
            inflater.completeOne();
            assert.deepEqual(order(), ['oneone', 'ping']);
            assert.equal(inflater.calls.length, 2);
            // More input while inflating is queued behind.
            conn.receiveData(text('four'));
            assert.deepEqual(order(), ['oneone', 'ping']);
            inflater.completeOne();
          } else {
            conn.receiveData(text('four'));
          }
          assert.deepEqual(order(), ['oneone', 'ping', 'twotwo', 'three', 'four']);
        });

        for (const err of [
          new InvalidDataError('WS_ERR_INVALID_COMPRESSED_DATA', 'bad deflate data'),
          new MessageTooBigError('WS_ERR_MESSAGE_TOO_BIG', 'inflated too far'),
        ]) {
          it(`fails with the inflater error's close code (${err.closeCode})`, () => {
            const { rec, conn, inflater, settle } = setupInflate();
            inflater.failWith = err;
            conn.receiveData(Buffer.concat([compressed('abc'), text('after')]));
            settle();
            const got = assertFailed(rec, conn, err.closeCode, err.code);
            assert.equal(got, err);
            assert.equal(rec.events.length, 1);
          });
        }

        it('fails with 1009 when the inflated size goes over maxPayload', () => {
          const { rec, conn, settle } = setupInflate({ maxPayload: 10 });
          conn.receiveData(compressed('abcdef')); // 6 on the wire, 12 inflated
          settle();
          assertFailed(rec, conn, 1009, 'WS_ERR_MESSAGE_TOO_BIG');
        });

        it('fails with 1009 when inflated fragments add up over maxPayload', () => {
          const { rec, conn, settle } = setupInflate({ maxPayload: 10 });
          conn.receiveData(compressed('abcd', false));
          settle();
          assert.deepEqual(rec.events, []);
          conn.receiveData(cont('ef'));
          settle();
          assertFailed(rec, conn, 1009, 'WS_ERR_MESSAGE_TOO_BIG');
        });

        it('fails with 1007 on inflated text that is not UTF-8', () => {
          const { rec, conn, settle } = setupInflate();
          conn.receiveData(frame({ opcode: Opcode.Text, payload: hex('ff'), rsv1: true }));
          settle();
          assertFailed(rec, conn, 1007, 'WS_ERR_INVALID_UTF8');
        });

        it('fails with 1002 on RSV1 on a continuation frame', () => {
          for (const first of [compressed('a', false), text('a', false)]) {
            const { rec, conn, settle } = setupInflate();
            conn.receiveData(first);
            settle();
            conn.receiveData(frame({ opcode: Opcode.Continuation, payload: 'b', rsv1: true }));
            settle();
            assertFailed(rec, conn, 1002, 'WS_ERR_UNEXPECTED_RSV');
          }
        });

        it('fails with 1002 on RSV1 on a control frame', () => {
          const { rec, conn } = setupInflate();
          conn.receiveData(frame({ opcode: Opcode.Ping, payload: 'p', rsv1: true }));
          assertFailed(rec, conn, 1002, 'WS_ERR_UNEXPECTED_RSV');
        });

        it('a handler that throws on the inflated message fails with 1011', () => {
          const { rec, conn, settle } = setupInflate();
          rec.throwOn = 'message';
          assert.doesNotThrow(() => {
            conn.receiveData(Buffer.concat([compressed('abc'), text('after')]));
            settle();
          });
          assertFailed(rec, conn, 1011, 'WS_ERR_INTERNAL');
        });

        it('neither receiveData nor the inflate callback throws when onFail throws', () => {
          const { rec, conn, inflater, settle } = setupInflate();
          rec.throwOn = 'fail';
          inflater.failWith = new InvalidDataError('WS_ERR_INVALID_COMPRESSED_DATA', 'bad deflate data');
          assert.doesNotThrow(() => {
            conn.receiveData(compressed('abc'));
            settle();
          });
          assert.deepEqual(rec.summary(), [['fail', 'WS_ERR_INVALID_COMPRESSED_DATA', 1007]]);
          assert.equal(decodeClose(rec.frames[0]!.payload).code, 1007);
        });

        it('pause() in onMessage of a compressed message holds the next frames until resume()', () => {
          const { rec, conn, settle } = setupInflate();
          rec.onMessage = function (data, isBinary) {
            RecordingHandler.prototype.onMessage.call(this, data, isBinary);
            conn.pause();
          };
          conn.receiveData(Buffer.concat([compressed('one'), text('two'), compressed('three')]));
          settle();
          const order = () => rec.events.map((e) => (e.type === 'message' ? e.data.toString() : e.type));
          assert.deepEqual(order(), ['oneone']);
          conn.resume();
          assert.deepEqual(order(), ['oneone', 'two']);
          conn.resume();
          settle();
          assert.deepEqual(order(), ['oneone', 'two', 'threethree']);
        });

        if (mode === 'async') {
          it('EOF during inflation: what arrived before it is still processed, then input ends', () => {
            const { rec, conn, inflater } = setupInflate();
            const ends: number[] = [];
            (rec as unknown as { onInputEnd(): void }).onInputEnd = () => ends.push(rec.events.length);
            conn.receiveData(Buffer.concat([compressed('abc'), text('after')]));
            conn.receiveEof();
            assert.equal(conn.inputEnded, false, 'a message is still being inflated');
            assert.equal(rec.events.length, 0);
            inflater.completeOne();
            const order = rec.events.map((e) => (e.type === 'message' ? e.data.toString() : e.type));
            assert.deepEqual(order, ['abcabc', 'after']);
            assert.equal(conn.inputEnded, true);
            assert.deepEqual(ends, [2], 'onInputEnd fires once, after the last message');
            conn.receiveData(text('too late'));
            assert.equal(rec.events.length, 2);
          });

          it('keeps a pause() made during inflation (backpressure is not lost)', () => {
            const { rec, conn, inflater } = setupInflate();
            conn.receiveData(Buffer.concat([compressed('one'), text('two')]));
            conn.pause();
            inflater.completeOne();
            const order = () => rec.events.map((e) => (e.type === 'message' ? e.data.toString() : e.type));
            assert.deepEqual(order(), ['oneone']);
            conn.resume();
            assert.deepEqual(order(), ['oneone', 'two']);
          });

          it('resume() from onMessage of an inflated message does not deliver the next one re-entrantly', () => {
            const { rec, conn, inflater } = setupInflate();
            let depth = 0;
            let maxDepth = 0;
            rec.onMessage = function (data, isBinary) {
              depth++;
              maxDepth = Math.max(maxDepth, depth);
              RecordingHandler.prototype.onMessage.call(this, data, isBinary);
              conn.resume(); // e.g. a transport resuming on drain
              depth--;
            };
            conn.receiveData(Buffer.concat([compressed('one'), text('two'), text('three')]));
            inflater.completeOne();
            assert.equal(rec.events.length, 3);
            assert.equal(maxDepth, 1);
          });

          it('resume() during inflation does not run ahead of the inflater', () => {
            const { rec, conn, inflater } = setupInflate();
            conn.receiveData(Buffer.concat([compressed('one'), text('two')]));
            conn.resume();
            assert.deepEqual(rec.events, []);
            inflater.completeOne();
            assert.equal(rec.events.length, 2);
          });
        }
      });
    }

    it('RSV1 is accepted only when an inflater is set', () => {
      expectFail(frame({ opcode: Opcode.Text, payload: 'x', rsv1: true }), 1002, 'WS_ERR_UNEXPECTED_RSV');
      expectFail(frame({ opcode: Opcode.Text, payload: 'x', rsv1: true }), 1002, 'WS_ERR_UNEXPECTED_RSV', { inflater: null });
      const { rec, conn } = setup({ inflater: new FakeInflater('sync') });
      conn.receiveData(frame({ opcode: Opcode.Text, payload: 'x', rsv1: true }));
      assert.deepEqual(rec.summary(), [['text', '7878']]);
    });
  });
}

describe('encodeClosePayload', () => {
  it('encodes the code big-endian followed by the reason', () => {
    assert.deepEqual(encodeClosePayload(1000, ''), hex('03 e8'));
    assert.deepEqual(encodeClosePayload(4999, 'ok'), hex('13 87 6f 6b'));
    assert.deepEqual(encodeClosePayload(3000, Buffer.from('é')), hex('0b b8 c3 a9'));
  });

  it('rejects codes that may not be sent and reasons over 123 bytes', () => {
    for (const code of [1004, 1005, 1006, 1015, 2999, 5000]) assert.throws(() => encodeClosePayload(code, ''), InvalidArgumentError);
    assert.throws(() => encodeClosePayload(1000, Buffer.alloc(124)), InvalidArgumentError);
    assert.equal(encodeClosePayload(1000, Buffer.alloc(123)).length, 125);
  });
});

describe('truncateUtf8', () => {
  it('keeps short strings and cuts long ones on a character boundary', () => {
    assert.equal(truncateUtf8('short', 123), 'short');
    assert.equal(truncateUtf8('abcdef', 3), 'abc');
    assert.equal(truncateUtf8('aé', 2), 'a');
    assert.equal(truncateUtf8('a€', 3), 'a');
    assert.equal(truncateUtf8('a😀', 4), 'a');
    assert.equal(truncateUtf8('a😀', 5), 'a😀');
    assert.equal(truncateUtf8('é'.repeat(100), 123), 'é'.repeat(61));
  });
});
