/**
 * The conformance cases: one table, run against our server (the peer plays
 * a client and masks) and against our client (the peer plays a server and
 * does not). The families and ids follow the Autobahn|Testsuite (1 framing,
 * 2 pings/pongs, 3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8,
 * 7 closing, 9 limits, 10 misc, 12/13 permessage-deflate); the payloads,
 * wording and extra cases (`extra: true`) are ours. Sizes and counts of the
 * 9.x and 12.x/13.x families are scaled down to keep the run short.
 *
 * Expectation semantics, as in Autobahn:
 * - `events` are all the data and control frames the peer must receive
 *   before the closing handshake, exactly and in order (echoes, pongs).
 * - `close.by: 'peer'`: the connection must stay up; the peer then closes
 *   (with 1000 unless the steps sent a close frame themselves) and the
 *   implementation's close frame must carry one of `close.codes` (1005
 *   stands for a close frame without a code).
 * - `close.by: 'impl'`: the implementation must fail the connection with a
 *   close frame carrying one of `close.codes`.
 * - In every case the TCP connection must then be closed properly: by the
 *   server first (RFC 6455 §5.5.1, §7.1.1), with a FIN, not a reset.
 * - Fail-fast (6.4.x): `expectOpen` checks that valid data so far did not
 *   fail the connection; `expectClose` requires the close frame before the
 *   rest of the message is sent (Autobahn's "OK"; failing only at the end
 *   of the message would be its "NON-STRICT", which we do not accept). The
 *   steps after a successful `expectClose` are not sent.
 */
import { deflateRawSync } from 'node:zlib';
import type { PerMessageDeflateOptions } from '../../src/index.js';
import { closePayload, Op, type FrameSpec, type PeerDeflateParams } from './peer.js';
import { isInvalidPrefix, KOSME, UTF8_CATEGORIES } from './utf8-vectors.js';

/** Which implementation is under test. */
export type Role = 'server' | 'client';

export type Step =
  /** One frame in its own write, or in chops of `chop` bytes. */
  | { kind: 'frame'; frame: FrameSpec; chop?: number }
  /** Several frames in one write ("one chop"), or all their bytes in chops of `chop`. */
  | { kind: 'frames'; frames: FrameSpec[]; chop?: number }
  /**
   * A data message, compressed if asked (permessage-deflate must be
   * negotiated), in frames of `fragmentSize` payload bytes if given;
   * `awaitEcho` waits for the next event before going on (a round trip).
   */
  | {
      kind: 'message';
      data: Buffer;
      binary: boolean;
      fragmentSize?: number;
      chop?: number;
      compress?: boolean;
      continuationRsv?: number;
      between?: FrameSpec;
      awaitEcho?: boolean;
    }
  /** The header of a frame; its payload follows in `framePayload` steps. */
  | { kind: 'beginFrame'; frame: FrameSpec }
  /** The begun frame's payload up to offset `end` (default: the rest). */
  | { kind: 'framePayload'; end?: number }
  | { kind: 'sleep'; ms: number }
  /** The implementation must not have closed within `ms` (the data so far is valid). */
  | { kind: 'expectOpen'; ms: number; why: string }
  /** The implementation must send its close frame within `ms`; the remaining steps are not sent. */
  | { kind: 'expectClose'; ms: number; why: string }
  /** Wait until `count` events have arrived, failing after `ms`. */
  | { kind: 'awaitEvents'; count: number; ms: number; why: string };

export type ExpectedEvent =
  | { type: 'message'; data: Buffer; binary: boolean; /** Checked when given. */ compressed?: boolean }
  | { type: 'ping' | 'pong'; data: Buffer };

export interface Expectation {
  events: ExpectedEvent[];
  close: { by: 'peer' | 'impl'; codes: number[] };
}

/** permessage-deflate settings of a case, for either implementation. */
export interface DeflateVariant {
  name: string;
  /** Server under test: its `perMessageDeflate` option; the peer offers `offer`. */
  server: PerMessageDeflateOptions;
  offer: string;
  /** Client under test: its `perMessageDeflate` option; the peer answers with `response`. */
  client: PerMessageDeflateOptions;
  response: string;
  /** What must have been agreed, seen from the peer. */
  params: PeerDeflateParams;
}

export interface ConformanceCase {
  /** Autobahn's numbering where the case mirrors one of its cases. */
  id: string;
  title: string;
  steps: Step[];
  expect: Expectation;
  /** Default: both. */
  roles?: Role[];
  /** Negotiate permessage-deflate with these settings; without it none is negotiated. */
  deflate?: DeflateVariant;
  /** Not an Autobahn case: ours, in the same family. */
  extra?: boolean;
  /** Max time for each wait of the case, in ms. Default 2000. */
  wait?: number;
  /** Frames the peer sends in the same write as its 101 response (client under test only). */
  early?: FrameSpec[];
  /**
   * A known deviation, not a breach of the RFC: the case runs and reports,
   * but does not fail the suite (node:test `todo`). Says why.
   */
  todo?: string;
}

// ---------------------------------------------------------------------------
// Building blocks

const b = (s: string): Buffer => Buffer.from(s);
const hex = (h: string): Buffer => Buffer.from(h.replace(/\s+/g, ''), 'hex');

/** How several frames are written: all in one write, one write per frame, or byte by byte. */
type Chops = 'one' | 'frame' | 'octet';

type FrameOptions = Omit<FrameSpec, 'opcode' | 'payload'>;

function frame(opcode: number, payload: Buffer | string = '', o: FrameOptions = {}): FrameSpec {
  return { opcode, payload: typeof payload === 'string' ? b(payload) : payload, ...o };
}

const text = (p: Buffer | string, o: FrameOptions = {}): FrameSpec => frame(Op.Text, p, o);
const binary = (p: Buffer | string, o: FrameOptions = {}): FrameSpec => frame(Op.Binary, p, o);
const cont = (p: Buffer | string, o: FrameOptions = {}): FrameSpec => frame(Op.Continuation, p, o);
const ping = (p: Buffer | string = '', o: FrameOptions = {}): FrameSpec => frame(Op.Ping, p, o);
const pong = (p: Buffer | string = '', o: FrameOptions = {}): FrameSpec => frame(Op.Pong, p, o);
const close = (code?: number, reason: Buffer | string = ''): FrameSpec =>
  frame(Op.Close, code === undefined ? '' : closePayload(code, reason));

function send(frames: FrameSpec[], chops: Chops = 'frame'): Step[] {
  if (chops === 'one') return [{ kind: 'frames', frames }];
  if (chops === 'octet') return [{ kind: 'frames', frames, chop: 1 }];
  return frames.map((f) => ({ kind: 'frame', frame: f }));
}

const chopped = (f: FrameSpec, chop: number): Step => ({ kind: 'frame', frame: f, chop });

/** How long a fail-fast check gives the implementation to keep the connection open or to close it. */
const STILL_OPEN_MS = 50;
const CLOSE_WITHIN_MS = 1000;

const expectOpen = (why: string): Step => ({ kind: 'expectOpen', ms: STILL_OPEN_MS, why });
const expectClose = (why: string): Step => ({ kind: 'expectClose', ms: CLOSE_WITHIN_MS, why });

const echoText = (p: Buffer | string): ExpectedEvent => ({ type: 'message', data: typeof p === 'string' ? b(p) : p, binary: false });
const echoBinary = (p: Buffer | string): ExpectedEvent => ({ type: 'message', data: typeof p === 'string' ? b(p) : p, binary: true });
const gotPong = (p: Buffer | string = ''): ExpectedEvent => ({ type: 'pong', data: typeof p === 'string' ? b(p) : p });

/** The connection stays up; the peer closes with 1000 and gets 1000 back. */
function ok(...events: ExpectedEvent[]): Expectation {
  return { events, close: { by: 'peer', codes: [1000] } };
}
/** The implementation fails the connection with 1002. */
function protocolError(...events: ExpectedEvent[]): Expectation {
  return { events, close: { by: 'impl', codes: [1002] } };
}
/** The implementation fails the connection with 1007. */
function invalidData(...events: ExpectedEvent[]): Expectation {
  return { events, close: { by: 'impl', codes: [1007] } };
}
/** The peer closes with a close frame of its own in the steps; the implementation answers with one of `codes`. */
function answeredWith(codes: number[], ...events: ExpectedEvent[]): Expectation {
  return { events, close: { by: 'peer', codes } };
}

/** `n` bytes of valid UTF-8 mixing 1- to 4-byte code points (ASCII-padded to the exact length). */
export function utf8Text(n: number): Buffer {
  const unit = b('Hello-µ@ßöäüàá-κόσμε-€-𤭢-UTF-8!! ');
  const out = Buffer.allocUnsafe(n);
  let i = 0;
  for (; i + unit.length <= n; i += unit.length) unit.copy(out, i);
  out.fill(0x2a, i);
  return out;
}

/** `n` deterministic, hardly compressible bytes. */
export function noise(n: number, seed = 0x9e3779b9): Buffer {
  const out = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const KiB = 1024;
const MiB = 1024 * KiB;

// ---------------------------------------------------------------------------
// 1 Framing

function framing(): ConformanceCase[] {
  const sizes = [0, 125, 126, 127, 128, 65535, 65536];
  const cases: ConformanceCase[] = [];
  for (const [sub, kind] of [
    [1, 'text'],
    [2, 'binary'],
  ] as const) {
    const payload = (n: number): Buffer => (kind === 'text' ? Buffer.alloc(n, '*') : Buffer.alloc(n, 0xfe));
    const make = kind === 'text' ? text : binary;
    const echo = kind === 'text' ? echoText : echoBinary;
    sizes.forEach((n, i) => {
      cases.push({
        id: `1.${sub}.${i + 1}`,
        title: `${kind} message of ${n} bytes`,
        steps: send([make(payload(n))]),
        expect: ok(echo(payload(n))),
      });
    });
    cases.push({
      id: `1.${sub}.8`,
      title: `${kind} message of 65536 bytes in chops of 997 bytes`,
      steps: [chopped(make(payload(65536)), 997)],
      expect: ok(echo(payload(65536))),
    });
  }
  cases.push({
    id: '1.3.1',
    title: 'frame with the mask bit of the wrong role',
    extra: true,
    steps: send([text('Hello, world!'), text('masked the wrong way', { wrongMask: true }), ping()]),
    expect: protocolError(echoText('Hello, world!')),
  });
  cases.push({
    // RFC 6455 §4.1: the client may not send before the 101; the server may send right after it.
    id: '1.3.2',
    title: 'frames in the same TCP segment as the 101 response',
    extra: true,
    roles: ['client'],
    early: [text('early bird'), ping('early ping')],
    steps: [],
    expect: ok(echoText('early bird'), gotPong('early ping')),
  });
  return cases;
}

// ---------------------------------------------------------------------------
// 2 Pings and pongs

function pings(): ConformanceCase[] {
  const bin = hex('00 ff fe fd fc fb 00 ff');
  const p125 = Buffer.alloc(125, 0xfe);
  const ten = Array.from({ length: 10 }, (_, i) => `payload-${i}`);
  return [
    { id: '2.1', title: 'ping without payload', steps: send([ping()]), expect: ok(gotPong()) },
    { id: '2.2', title: 'ping with a text payload', steps: send([ping('Hello, world!')]), expect: ok(gotPong('Hello, world!')) },
    { id: '2.3', title: 'ping with a binary payload', steps: send([ping(bin)]), expect: ok(gotPong(bin)) },
    { id: '2.4', title: 'ping with a 125-byte payload', steps: send([ping(p125)]), expect: ok(gotPong(p125)) },
    {
      id: '2.5',
      title: 'ping with a 126-byte payload fails',
      steps: send([ping(Buffer.alloc(126, 0xfe))]),
      expect: protocolError(),
    },
    { id: '2.6', title: 'ping with a 125-byte payload sent byte by byte', steps: [chopped(ping(p125), 1)], expect: ok(gotPong(p125)) },
    { id: '2.7', title: 'unsolicited pong without payload is ignored', steps: send([pong()]), expect: ok() },
    {
      id: '2.8',
      title: 'unsolicited pong with payload is ignored',
      steps: send([pong('unsolicited pong payload')]),
      expect: ok(),
    },
    {
      id: '2.9',
      title: 'unsolicited pong then ping',
      steps: send([pong('unsolicited pong payload'), ping('ping payload')]),
      expect: ok(gotPong('ping payload')),
    },
    {
      id: '2.10',
      title: '10 pings get 10 pongs in order',
      steps: send(ten.map((p) => ping(p)), 'one'),
      expect: ok(...ten.map((p) => gotPong(p))),
    },
    {
      id: '2.11',
      title: '10 pings sent byte by byte get 10 pongs in order',
      steps: send(ten.map((p) => ping(p)), 'octet'),
      expect: ok(...ten.map((p) => gotPong(p))),
    },
  ];
}

// ---------------------------------------------------------------------------
// 3 Reserved bits

function reservedBits(): ConformanceCase[] {
  const hello = 'Hello, world!';
  const cases: ConformanceCase[] = [
    { id: '3.1', title: 'text frame with RSV3 set', steps: send([text(hello, { rsv: 1 })]), expect: protocolError() },
    { id: '3.2', title: 'text, then text with RSV2, then ping: echo, then failure', steps: send([text(hello), text(hello, { rsv: 2 }), ping()], 'one'), expect: protocolError(echoText(hello)) },
    { id: '3.3', title: 'same with RSV2+RSV3, frame by frame', steps: send([text(hello), text(hello, { rsv: 3 }), ping()], 'frame'), expect: protocolError(echoText(hello)) },
    { id: '3.4', title: 'same with RSV1 (no extension), byte by byte', steps: send([text(hello), text(hello, { rsv: 4 }), ping()], 'octet'), expect: protocolError(echoText(hello)) },
    { id: '3.5', title: 'binary frame with RSV1+RSV3', steps: send([binary(Buffer.alloc(8, 0xff), { rsv: 5 })]), expect: protocolError() },
    { id: '3.6', title: 'ping with RSV1+RSV2', steps: send([ping('', { rsv: 6 })]), expect: protocolError() },
    {
      // The peer's frame is a close frame, if a bad one: the answer is a close with 1002.
      id: '3.7',
      title: 'close with all RSV bits fails',
      steps: send([frame(Op.Close, closePayload(1000), { rsv: 7 })]),
      expect: answeredWith([1002]),
    },
  ];
  // With permessage-deflate negotiated RSV1 means "compressed"; RSV2 and RSV3 stay reserved.
  for (const [id, rsv, name] of [
    ['3.8', 2, 'RSV2'],
    ['3.9', 1, 'RSV3'],
  ] as const) {
    cases.push({
      id,
      title: `with permessage-deflate: text, then text with ${name}, then ping`,
      extra: true,
      deflate: DEFLATE_DEFAULT,
      steps: send([text(hello), text(hello, { rsv }), ping()], 'frame'),
      expect: protocolError(echoText(hello)),
    });
  }
  return cases;
}

// ---------------------------------------------------------------------------
// 4 Opcodes

function opcodes(): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  const hello = 'Hello, world!';
  for (const [sub, ops, kind] of [
    [1, [3, 4, 5, 6, 7], 'data'],
    [2, [11, 12, 13, 14, 15], 'control'],
  ] as const) {
    ops.forEach((op, i) => {
      const n = i + 1;
      const withPayload = n === 2 || n >= 4;
      const reserved = frame(op, withPayload ? 'reserved opcode payload' : '');
      const title = `reserved ${kind} opcode ${op}${withPayload ? ' with payload' : ''}`;
      cases.push(
        n <= 2
          ? { id: `4.${sub}.${n}`, title, steps: send([reserved]), expect: protocolError() }
          : {
              id: `4.${sub}.${n}`,
              title: `text, ${title}, ping${n === 5 ? ', byte by byte' : ''}`,
              steps: send([text(hello), reserved, ping()], n === 5 ? 'octet' : 'frame'),
              expect: protocolError(echoText(hello)),
            },
      );
    });
  }
  return cases;
}

// ---------------------------------------------------------------------------
// 5 Fragmentation

function fragmentation(): ConformanceCase[] {
  const f = ['fragment1', 'fragment2', 'fragment3', 'fragment4', 'fragment5'];
  const modes: [Chops, string][] = [
    ['one', 'in one write'],
    ['frame', 'frame by frame'],
    ['octet', 'byte by byte'],
  ];
  const cases: ConformanceCase[] = [
    {
      id: '5.1',
      title: 'ping in 2 fragments fails',
      steps: send([ping(f[0]!, { fin: false }), cont(f[1]!)]),
      expect: protocolError(),
    },
    {
      id: '5.2',
      title: 'pong in 2 fragments fails',
      steps: send([pong(f[0]!, { fin: false }), cont(f[1]!)]),
      expect: protocolError(),
    },
  ];
  modes.forEach(([mode, how], i) => {
    cases.push({
      id: `5.${3 + i}`,
      title: `text in 2 fragments, ${how}`,
      steps: send([text(f[0]!, { fin: false }), cont(f[1]!)], mode),
      expect: ok(echoText(f[0]! + f[1]!)),
    });
  });
  modes.forEach(([mode, how], i) => {
    cases.push({
      id: `5.${6 + i}`,
      title: `text in 2 fragments with a ping between, ${how}`,
      steps: send([text(f[0]!, { fin: false }), ping('ping payload'), cont(f[1]!)], mode),
      expect: ok(gotPong('ping payload'), echoText(f[0]! + f[1]!)),
    });
  });
  modes.forEach(([mode, how], i) => {
    cases.push({
      id: `5.${9 + i}`,
      title: `final continuation without a message, then text, ${how}`,
      steps: send([cont('non-continuation payload'), text('Hello, world!')], mode),
      expect: protocolError(),
    });
  });
  modes.forEach(([mode, how], i) => {
    cases.push({
      id: `5.${12 + i}`,
      title: `non-final continuation without a message, then text, ${how}`,
      steps: send([cont('non-continuation payload', { fin: false }), text('Hello, world!')], mode),
      expect: protocolError(),
    });
  });
  cases.push(
    {
      id: '5.15',
      title: 'text in 2 fragments, then a continuation with nothing to continue',
      steps: send([text(f[0]!, { fin: false }), cont(f[1]!), cont(f[2]!, { fin: false }), text(f[3]!)], 'one'),
      expect: protocolError(echoText(f[0]! + f[1]!)),
    },
    {
      id: '5.16',
      title: 'twice: non-final continuation without a message, then text in 2 fragments',
      steps: send(
        [
          cont(f[0]!, { fin: false }),
          text(f[1]!, { fin: false }),
          cont(f[2]!),
          cont(f[0]!, { fin: false }),
          text(f[1]!, { fin: false }),
          cont(f[2]!),
        ],
        'one',
      ),
      expect: protocolError(),
    },
    {
      id: '5.17',
      title: 'twice: final continuation without a message, then text in 2 fragments',
      steps: send(
        [cont(f[0]!), text(f[1]!, { fin: false }), cont(f[2]!), cont(f[0]!), text(f[1]!, { fin: false }), cont(f[2]!)],
        'one',
      ),
      expect: protocolError(),
    },
    {
      id: '5.18',
      title: 'text in 2 fragments, both with the text opcode',
      steps: send([text(f[0]!, { fin: false }), text(f[1]!)], 'one'),
      expect: protocolError(),
    },
  );
  for (const [id, mode] of [
    ['5.19', 'frame'],
    ['5.20', 'octet'],
  ] as const) {
    cases.push({
      id,
      title: `text in 5 fragments with 2 pings between, the first pong before the rest${mode === 'octet' ? ', byte by byte' : ''}`,
      steps: [
        ...send([text(f[0]!, { fin: false }), cont(f[1]!, { fin: false }), ping('pongme 1!')], mode),
        { kind: 'awaitEvents', count: 1, ms: CLOSE_WITHIN_MS, why: 'the pong must come while the message is incomplete' },
        ...send([cont(f[2]!, { fin: false }), cont(f[3]!, { fin: false }), ping('pongme 2!'), cont(f[4]!)], mode),
      ],
      expect: ok(gotPong('pongme 1!'), gotPong('pongme 2!'), echoText(f.join(''))),
    });
  }
  return cases;
}

// ---------------------------------------------------------------------------
// 6 UTF-8 handling

/** Kuhn's sample word, then a code point above U+10FFFF (invalid from its second byte), then ASCII. */
const FAIL_FAST_PARTS = [KOSME, hex('f4 90 80 80'), b('edited')] as const;

function utf8(): ConformanceCase[] {
  const hello = b('Hello-µ@ßöäüàá-UTF-8!!');
  const invalidMessage = Buffer.concat([KOSME, hex('ed a0 80'), b('edited')]);
  const bytewise = (payload: Buffer): FrameSpec[] =>
    [...payload].map((byte, i) =>
      (i === 0 ? text : cont)(Buffer.from([byte]), { fin: i === payload.length - 1 }),
    );
  const cases: ConformanceCase[] = [
    { id: '6.1.1', title: 'empty text message', steps: send([text('')]), expect: ok(echoText('')) },
    {
      id: '6.1.2',
      title: 'text message of 3 empty fragments',
      steps: send([text('', { fin: false }), cont('', { fin: false }), cont('')]),
      expect: ok(echoText('')),
    },
    {
      id: '6.1.3',
      title: 'text message of 3 fragments, the first and last empty',
      steps: send([text('', { fin: false }), cont('middle frame payload', { fin: false }), cont('')]),
      expect: ok(echoText('middle frame payload')),
    },
    { id: '6.2.1', title: 'valid UTF-8 in one frame', steps: send([text(hello)]), expect: ok(echoText(hello)) },
    {
      id: '6.2.2',
      title: 'valid UTF-8 in 2 fragments split between code points',
      steps: send([text(hello.subarray(0, 8), { fin: false }), cont(hello.subarray(8))]),
      expect: ok(echoText(hello)),
    },
    {
      id: '6.2.3',
      title: 'valid UTF-8 in 1-byte fragments',
      steps: send(bytewise(hello), 'one'),
      expect: ok(echoText(hello)),
    },
    {
      id: '6.2.4',
      title: 'valid UTF-8 of 2- and 3-byte code points in 1-byte fragments',
      steps: send(bytewise(KOSME), 'one'),
      expect: ok(echoText(KOSME)),
    },
    {
      id: '6.2.5',
      title: 'valid UTF-8 with 1- to 4-byte code points in one frame written byte by byte',
      extra: true,
      steps: [chopped(text(utf8Text(200)), 1)],
      expect: ok(echoText(utf8Text(200))),
    },
    {
      // 7 is prime to every code point length: the chops end at every position within a code point.
      id: '6.2.6',
      title: 'valid UTF-8 of 64 KiB in one frame written in chops of 7 bytes',
      extra: true,
      steps: [chopped(text(utf8Text(64 * KiB)), 7)],
      expect: ok(echoText(utf8Text(64 * KiB))),
    },
    {
      id: '6.2.7',
      title: 'valid UTF-8 of 4 KiB in fragments of 5 bytes',
      extra: true,
      steps: [{ kind: 'message', data: utf8Text(4 * KiB), binary: false, fragmentSize: 5 }],
      expect: ok(echoText(utf8Text(4 * KiB))),
    },
    { id: '6.3.1', title: 'invalid UTF-8 in one frame', steps: send([text(invalidMessage)]), expect: invalidData() },
    {
      id: '6.3.2',
      title: 'invalid UTF-8 in 1-byte fragments',
      steps: send(bytewise(invalidMessage), 'one'),
      expect: invalidData(),
    },
  ];

  // 6.4: fail fast, on frame boundaries and inside a frame arriving in chops.
  const [p1, p2, p3] = FAIL_FAST_PARTS;
  const whole = Buffer.concat([p1, p2, p3]);
  // The first invalid byte: 0x90 after 0xf4 (at offset 12).
  const bad = KOSME.length + 1;
  cases.push(
    {
      id: '6.4.1',
      title: 'fragmented text fails fast on the invalid fragment',
      steps: [
        ...send([text(p1, { fin: false })]),
        expectOpen('the first fragment is valid UTF-8'),
        ...send([cont(p2, { fin: false })]),
        expectClose('the second fragment holds a code point above U+10FFFF'),
        ...send([cont(p3)]),
      ],
      expect: invalidData(),
    },
    {
      id: '6.4.2',
      title: 'fragmented text fails fast on a fragment of one invalid byte',
      steps: [
        ...send([text(whole.subarray(0, bad), { fin: false })]),
        expectOpen('the first fragment ends with a lead byte that may still be valid'),
        ...send([cont(whole.subarray(bad, bad + 1), { fin: false })]),
        expectClose('the byte 0x90 after 0xf4 makes the sequence invalid'),
        ...send([cont(whole.subarray(bad + 1))]),
      ],
      expect: invalidData(),
    },
    {
      id: '6.4.3',
      title: 'text frame arriving in chops fails fast on the invalid chop',
      steps: [
        { kind: 'beginFrame', frame: text(whole) },
        { kind: 'framePayload', end: p1.length },
        expectOpen('the first chop is valid UTF-8'),
        { kind: 'framePayload', end: p1.length + p2.length },
        expectClose('the second chop holds a code point above U+10FFFF'),
        { kind: 'framePayload' },
      ],
      expect: invalidData(),
    },
    {
      id: '6.4.4',
      title: 'text frame arriving in chops fails fast on a chop of one invalid byte',
      steps: [
        { kind: 'beginFrame', frame: text(whole) },
        { kind: 'framePayload', end: bad },
        expectOpen('the first chop ends with a lead byte that may still be valid'),
        { kind: 'framePayload', end: bad + 1 },
        expectClose('the byte 0x90 after 0xf4 makes the sequence invalid'),
        { kind: 'framePayload' },
      ],
      expect: invalidData(),
    },
  );

  // More fail-fast checks, ours: each kind of invalid sequence, on a fragment and inside a frame.
  const failFast: [string, string][] = [
    ['ed a0 80', 'a UTF-16 surrogate'],
    ['c0 af', 'an overlong 2-byte form'],
    ['e0 80 af', 'an overlong 3-byte form'],
    ['f8 88 80 80 80', 'a 5-byte form'],
    ['fc 84 80 80 80 80', 'a 6-byte form'],
    ['80', 'a lone continuation byte'],
    ['fe', 'an impossible byte'],
    ['c2 41', 'a lead byte followed by ASCII'],
  ];
  let n = 5;
  for (const [h, what] of failFast) {
    const vector = hex(h);
    if (!isInvalidPrefix(vector)) throw new Error(`fail-fast vector ${h} is not detectably invalid`);
    const middle = Buffer.concat([vector, b('edited')]);
    cases.push({
      id: `6.4.${n++}`,
      title: `fragmented text with ${what} fails fast`,
      extra: true,
      steps: [
        ...send([text(KOSME, { fin: false })]),
        expectOpen('the first fragment is valid UTF-8'),
        ...send([cont(middle, { fin: false })]),
        expectClose(`the second fragment holds ${what}`),
        ...send([cont('end')]),
      ],
      expect: invalidData(),
    });
    cases.push({
      id: `6.4.${n++}`,
      title: `text frame arriving in chops with ${what} fails fast`,
      extra: true,
      steps: [
        { kind: 'beginFrame', frame: text(Buffer.concat([KOSME, middle, b('end')])) },
        { kind: 'framePayload', end: KOSME.length },
        expectOpen('the first chop is valid UTF-8'),
        { kind: 'framePayload', end: KOSME.length + middle.length },
        expectClose(`the second chop holds ${what}`),
        { kind: 'framePayload' },
      ],
      expect: invalidData(),
    });
  }
  cases.push({
    id: `6.4.${n++}`,
    title: 'a surrogate split over 3 fragments fails on the second byte',
    extra: true,
    steps: [
      ...send([text(KOSME, { fin: false })]),
      expectOpen('the first fragment is valid UTF-8'),
      ...send([cont(hex('ed'), { fin: false })]),
      expectOpen('0xed may begin a valid sequence'),
      ...send([cont(hex('a0 80'), { fin: false })]),
      expectClose('0xa0 after 0xed is a surrogate'),
      ...send([cont('end')]),
    ],
    expect: invalidData(),
  });

  // 6.5 and on: the stress test vectors, each as one text message.
  UTF8_CATEGORIES.forEach((category, i) => {
    category.vectors.forEach((v, j) => {
      cases.push({
        id: `6.${5 + i}.${j + 1}`,
        title: `${category.title}: ${v.valid ? 'valid' : 'invalid'} ${v.bytes.length > 12 ? `${v.bytes.length} bytes` : v.bytes.toString('hex')}`,
        steps: send([text(v.bytes)]),
        expect: v.valid ? ok(echoText(v.bytes)) : invalidData(),
      });
    });
  });
  return cases;
}

// ---------------------------------------------------------------------------
// 7 Close handling

function closing(): ConformanceCase[] {
  const cases: ConformanceCase[] = [
    {
      id: '7.1.1',
      title: 'text message, then close',
      steps: send([text('Hello World!'), close(1000)]),
      expect: answeredWith([1000], echoText('Hello World!')),
    },
    {
      id: '7.1.2',
      title: 'two close frames: the second is ignored',
      steps: send([close(1000), close()], 'one'),
      expect: answeredWith([1000]),
    },
    {
      id: '7.1.3',
      title: 'close, then ping: no pong',
      steps: send([close(1000), ping('ping after close')], 'one'),
      expect: answeredWith([1000]),
    },
    {
      id: '7.1.4',
      title: 'close, then text: no echo',
      steps: send([close(1000), text('text after close')], 'one'),
      expect: answeredWith([1000]),
    },
    {
      id: '7.1.5',
      title: 'first fragment, close, last fragment: no message',
      steps: send([text('fragment1', { fin: false }), close(1000), cont('fragment2')], 'one'),
      expect: answeredWith([1000]),
    },
    {
      // Autobahn reports this one as informational (a close may overtake a large
      // echo in some designs); ours processes frames in order, so both echoes come first.
      id: '7.1.6',
      title: '256 KiB text, text, close, ping: both echoes, then the close',
      steps: send([text(utf8Text(256 * KiB)), text('Hello World!'), close(1000), ping()], 'one'),
      expect: answeredWith([1000], echoText(utf8Text(256 * KiB)), echoText('Hello World!')),
    },
    {
      // The echo, sent by the application before the close arrived, is still
      // being compressed when the close comes in: the close answer waits for it
      // (RFC 6455 §5.5.1 would allow answering first; `ws` sends the echo first too).
      id: '7.1.7',
      title: 'compressed text, then close: the echo, then the close',
      extra: true,
      deflate: DEFLATE_DEFAULT,
      steps: [
        { kind: 'message', data: utf8Text(4 * KiB), binary: false, compress: true },
        { kind: 'frame', frame: close(1000) },
      ],
      expect: answeredWith([1000], echoText(utf8Text(4 * KiB))),
    },
    {
      id: '7.3.1',
      title: 'close without payload',
      steps: send([close()]),
      expect: answeredWith([1000, 1005]),
    },
    {
      id: '7.3.2',
      title: 'close with a 1-byte payload fails',
      steps: send([frame(Op.Close, hex('2a'))]),
      expect: answeredWith([1002]),
    },
    { id: '7.3.3', title: 'close with code 1000', steps: send([close(1000)]), expect: answeredWith([1000]) },
    {
      id: '7.3.4',
      title: 'close with code 1000 and a reason',
      steps: send([close(1000, 'Hello World!')]),
      expect: answeredWith([1000]),
    },
    {
      id: '7.3.5',
      title: 'close with code 1000 and a 123-byte reason',
      steps: send([close(1000, '*'.repeat(123))]),
      expect: answeredWith([1000]),
    },
    {
      id: '7.3.6',
      title: 'close with a 124-byte reason (payload of 126 bytes) fails',
      steps: send([close(1000, '*'.repeat(124))]),
      expect: answeredWith([1002]),
    },
    {
      // RFC 6455 §7.4.1 allows 1002 (protocol) or 1007 (invalid data); ours sends 1002.
      id: '7.5.1',
      title: 'close with a reason that is not UTF-8 fails',
      steps: send([close(1000, Buffer.concat([KOSME, hex('ed a0 80'), b('edited')]))]),
      expect: answeredWith([1002, 1007]),
    },
  ];
  // Valid codes: the answer echoes the code (or says 1000, RFC 6455 §5.5.1 "typically echoes").
  [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999, 1012, 1013, 1014].forEach((code, i) => {
    cases.push({
      id: `7.7.${i + 1}`,
      title: `close with the valid code ${code}`,
      extra: i >= 13,
      steps: send([close(code)]),
      expect: answeredWith([code, 1000]),
    });
  });
  // Invalid codes: 0-999 unused, 1004-1006 and 1015 reserved or never sent, 1016-2999 unassigned.
  [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 1015].forEach((code, i) => {
    cases.push({
      id: `7.9.${i + 1}`,
      title: `close with the invalid code ${code} fails`,
      extra: i >= 9,
      steps: send([close(code)]),
      expect: answeredWith([1002]),
    });
  });
  // Autobahn leaves codes above 4999 to the implementation; no range defines them, so we fail with 1002.
  [5000, 65535].forEach((code, i) => {
    cases.push({
      id: `7.13.${i + 1}`,
      title: `close with the undefined code ${code} fails`,
      steps: send([close(code)]),
      expect: answeredWith([1002]),
    });
  });
  return cases;
}

// ---------------------------------------------------------------------------
// 9 Limits and performance (scaled down: up to 4 MiB, 100 round trips)

function limits(): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  const wait = 20_000;
  const payload = (isText: boolean, n: number): Buffer => (isText ? utf8Text(n) : noise(n));
  const kind = (isText: boolean): string => (isText ? 'text' : 'binary');
  /**
   * Cases 9.`sub`.i (text) then 9.`sub + 1`.i (binary), one for each of
   * `sizes`: the messages `make` gives, each sent in a step with `step`'s
   * options, must all come back.
   */
  const textThenBinary = (
    sub: number,
    sizes: number[],
    make: (isText: boolean, size: number) => { title: string; messages: Buffer[]; step?: { fragmentSize?: number; chop?: number; awaitEcho?: boolean } },
  ): void => {
    for (const [s, isText] of [
      [sub, true],
      [sub + 1, false],
    ] as const) {
      sizes.forEach((size, i) => {
        const { title, messages, step } = make(isText, size);
        cases.push({
          id: `9.${s}.${i + 1}`,
          title,
          steps: messages.map((data) => ({ kind: 'message', data, binary: !isText, ...step })),
          expect: ok(...messages.map((data) => ({ type: 'message', data, binary: !isText }) as const)),
          wait,
        });
      });
    }
  };
  textThenBinary(1, [64 * KiB, 256 * KiB, MiB, 4 * MiB], (isText, n) => ({
    title: `${kind(isText)} message of ${n / KiB} KiB in one frame`,
    messages: [payload(isText, n)],
  }));
  textThenBinary(3, [4 * KiB, 64 * KiB, MiB], (isText, size) => ({
    title: `${kind(isText)} message of 4 MiB in fragments of ${size / KiB} KiB`,
    messages: [payload(isText, 4 * MiB)],
    step: { fragmentSize: size },
  }));
  textThenBinary(5, [4 * KiB, 64 * KiB], (isText, chop) => ({
    title: `${kind(isText)} message of 1 MiB written in chops of ${chop / KiB} KiB`,
    messages: [payload(isText, MiB)],
    step: { chop },
  }));
  textThenBinary(7, [0, 16, 4 * KiB], (isText, n) => ({
    title: `100 round trips of ${kind(isText)} messages of ${n} bytes`,
    messages: Array.from({ length: 100 }, (_, k) => payload(isText, n + (k % 2))),
    step: { awaitEcho: true },
  }));
  return cases;
}

// ---------------------------------------------------------------------------
// 10 Miscellaneous

function misc(): ConformanceCase[] {
  const data = Buffer.alloc(65536, '*');
  return [
    {
      id: '10.1.1',
      title: 'text message of 65536 bytes in fragments of 1300 bytes',
      steps: [{ kind: 'message', data, binary: false, fragmentSize: 1300 }],
      expect: ok(echoText(data)),
    },
  ];
}

// ---------------------------------------------------------------------------
// 12, 13 permessage-deflate (RFC 7692)

const DEFAULT_OFFER = 'permessage-deflate; client_max_window_bits';
const FULL_WINDOWS = { ownNoContextTakeover: false, ownWindowBits: 15, implNoContextTakeover: false, implWindowBits: 15 };

/** Both sides' defaults: context takeover, 15-bit windows, the default 1024-byte threshold. */
export const DEFLATE_DEFAULT: DeflateVariant = {
  name: 'default',
  server: {},
  offer: DEFAULT_OFFER,
  client: {},
  response: 'permessage-deflate',
  params: FULL_WINDOWS,
};

/**
 * A 13.x variant: every message is compressed (threshold 0 on both sides),
 * the implementation as server has `server`'s other options, the peer offers
 * `offer`; `params` are what differs from full windows with context takeover.
 */
const variantOf = (name: string, server: PerMessageDeflateOptions, response: string, params: Partial<PeerDeflateParams>, offer = DEFAULT_OFFER): DeflateVariant => ({
  name,
  server: { threshold: 0, ...server },
  offer,
  client: { threshold: 0 },
  response,
  params: { ...FULL_WINDOWS, ...params },
});

/** The 13.x variants. */
const DEFLATE_VARIANTS: DeflateVariant[] = [
  variantOf('default parameters', {}, 'permessage-deflate', {}),
  variantOf('no context takeover by the implementation (serverNoContextTakeover)', { serverNoContextTakeover: true }, 'permessage-deflate; client_no_context_takeover', { implNoContextTakeover: true }),
  variantOf('no context takeover by the peer', {}, 'permessage-deflate; server_no_context_takeover', { ownNoContextTakeover: true }, 'permessage-deflate; client_no_context_takeover; client_max_window_bits'),
  variantOf('a 9-bit window for the implementation', { serverMaxWindowBits: 9 }, 'permessage-deflate; client_max_window_bits=9', { implWindowBits: 9 }),
  variantOf('a 9-bit window for the peer (clientMaxWindowBits: 9)', { clientMaxWindowBits: 9 }, 'permessage-deflate; server_max_window_bits=9', { ownWindowBits: 9 }),
  variantOf(
    'no context takeover and 8-bit windows both ways',
    { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 8, clientMaxWindowBits: 8 },
    'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8; client_max_window_bits=8',
    { ownNoContextTakeover: true, ownWindowBits: 8, implNoContextTakeover: true, implWindowBits: 8 },
  ),
];

/** ASCII JSON records: what realtime traffic looks like, and compressible. */
function jsonCorpus(size: number): Buffer {
  const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet'];
  const parts: string[] = ['['];
  let length = 1;
  for (let i = 0; length < size; i++) {
    const row =
      JSON.stringify({
        id: i,
        user: `user-${(i * 7919) % 1000}`,
        channel: `room-${i % 17}`,
        text: Array.from({ length: 3 + (i % 7) }, (_, k) => words[(i * 31 + k * 7) % words.length]).join(' '),
        score: ((i * 2654435761) % 100000) / 1000,
        ts: 1_700_000_000_000 + i * 1234,
      }) + ',\n';
    parts.push(row);
    length += row.length;
  }
  return Buffer.from(parts.join('')).subarray(0, size);
}

/** A greyscale "picture": smooth gradients with a little noise (partly compressible). */
function imageCorpus(size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  const grain = noise(size, 12345);
  for (let i = 0; i < size; i++) {
    const x = i % 512;
    const y = Math.floor(i / 512);
    out[i] = ((x + y) / 4 + (grain[i]! & 7)) & 0xff;
  }
  return out;
}

const CORPUS_SIZE = 256 * KiB;
const TEXT_CORPUS = jsonCorpus(CORPUS_SIZE);
const BINARY_CORPUS = imageCorpus(CORPUS_SIZE);

/** `count` consecutive slices of `size` bytes from `corpus` (wrapping), as Autobahn walks its test files. */
function slices(corpus: Buffer, size: number, count: number): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    const piece = Buffer.allocUnsafe(size);
    for (let filled = 0; filled < size; ) {
      const n = Math.min(size - filled, corpus.length - at);
      corpus.copy(piece, filled, at, at + n);
      filled += n;
      at = (at + n) % corpus.length;
    }
    out.push(piece);
  }
  return out;
}

interface SizeSpec {
  size: number;
  fragmentSize?: number;
}

function roundTrips(
  id: string,
  what: string,
  deflate: DeflateVariant,
  isText: boolean,
  { size, fragmentSize }: SizeSpec,
  compressedAbove: number,
): ConformanceCase {
  const count = size >= 64 * KiB ? 4 : 10;
  const messages = slices(isText ? TEXT_CORPUS : BINARY_CORPUS, size, count);
  return {
    id,
    title: `${count} compressed ${what} messages of ${size} bytes${fragmentSize ? ` in fragments of ${fragmentSize}` : ''}, ${deflate.name}`,
    deflate,
    steps: messages.map((data) => ({ kind: 'message', data, binary: !isText, compress: true, fragmentSize, awaitEcho: true })),
    expect: ok(...messages.map((data) => ({ type: 'message', data, binary: !isText, compressed: size >= compressedAbove }) as const)),
    wait: 5000,
  };
}

function compression(): ConformanceCase[] {
  const cases: ConformanceCase[] = [];
  const sizes: SizeSpec[] = [
    { size: 16 },
    { size: 64 },
    { size: 256 },
    { size: 1024 },
    { size: 4096 },
    { size: 8192 },
    { size: 16384 },
    { size: 32768 },
    { size: 65536 },
    { size: 131072 },
    { size: 8192, fragmentSize: 256 },
    { size: 65536, fragmentSize: 256 },
    { size: 131072, fragmentSize: 4096 },
    { size: 131072, fragmentSize: 32768 },
  ];
  // 12.x: default negotiation and settings (messages under the 1024-byte threshold echo uncompressed).
  for (const [sub, isText, what] of [
    [1, true, 'text (JSON)'],
    [2, false, 'binary (picture)'],
  ] as const) {
    sizes.forEach((s, i) => cases.push(roundTrips(`12.${sub}.${i + 1}`, what, DEFLATE_DEFAULT, isText, s, 1024)));
  }
  // 13.x: the negotiation variants, every message compressed.
  const variantSizes: SizeSpec[] = [{ size: 16 }, { size: 1024 }, { size: 16384 }, { size: 131072 }, { size: 131072, fragmentSize: 4096 }];
  DEFLATE_VARIANTS.forEach((variant, j) => {
    variantSizes.forEach((s, i) => cases.push(roundTrips(`13.${j + 1}.${i + 1}`, 'text (JSON)', variant, true, s, 0)));
  });

  // 12.9.x, ours: the rules of RFC 7692 §6 and §7.2 on the wire.
  const hello = TEXT_CORPUS.subarray(0, 2000);
  cases.push(
    {
      id: '12.9.1',
      title: 'compressed message with RSV1 also on its continuation fails',
      extra: true,
      deflate: DEFLATE_DEFAULT,
      steps: [{ kind: 'message', data: hello, binary: false, compress: true, fragmentSize: 100, continuationRsv: 4 }],
      expect: protocolError(),
    },
    {
      id: '12.9.2',
      title: 'ping with RSV1 fails',
      extra: true,
      deflate: DEFLATE_DEFAULT,
      steps: send([ping('compressed?', { rsv: 4 })]),
      expect: protocolError(),
    },
    {
      id: '12.9.3',
      title: 'pong with RSV1 fails',
      extra: true,
      deflate: DEFLATE_DEFAULT,
      steps: send([pong('compressed?', { rsv: 4 })]),
      expect: protocolError(),
    },
    {
      id: '12.9.4',
      title: 'close with RSV1 fails',
      extra: true,
      deflate: DEFLATE_DEFAULT,
      steps: send([frame(Op.Close, closePayload(1000), { rsv: 4 })]),
      expect: answeredWith([1002]),
    },
    {
      // A block with the reserved BTYPE 11: not a deflate stream. RFC 7692 names
      // no code; ours reports invalid payload data (1007).
      id: '12.9.5',
      title: 'compressed message that does not inflate fails',
      extra: true,
      deflate: DEFLATE_DEFAULT,
      steps: send([text(hex('07 ff ff ff'), { rsv: 4 })]),
      expect: invalidData(),
    },
    {
      id: '12.9.6',
      title: 'compressed message in fragments with a ping between',
      extra: true,
      deflate: DEFLATE_DEFAULT,
      steps: [{ kind: 'message', data: hello, binary: false, compress: true, fragmentSize: 64, between: ping('between') }],
      expect: ok(gotPong('between'), echoText(hello)),
    },
    {
      id: '12.9.7',
      title: 'empty compressed message',
      extra: true,
      deflate: DEFLATE_DEFAULT,
      steps: [{ kind: 'message', data: b(''), binary: false, compress: true }],
      expect: ok(echoText('')),
    },
    {
      // RFC 7692 §7.2.3.3: a sender may end a message with a final (BFINAL) block;
      // the receiver's next message then starts a new stream.
      id: '12.9.8',
      title: 'two compressed messages each ending with a final block',
      extra: true,
      deflate: DEFLATE_DEFAULT,
      steps: send([text(FINAL_BLOCK_A, { rsv: 4 }), text(FINAL_BLOCK_B, { rsv: 4 })]),
      expect: ok(echoText('final block one'), echoText('final block two')),
    },
    {
      // Inflated output comes in pieces that end inside code points.
      id: '12.9.10',
      title: 'compressed UTF-8 text of 128 KiB with 1- to 4-byte code points',
      extra: true,
      deflate: DEFLATE_DEFAULT,
      steps: [{ kind: 'message', data: utf8Text(128 * KiB), binary: false, compress: true, fragmentSize: 1000 }],
      expect: ok({ type: 'message', data: utf8Text(128 * KiB), binary: false, compressed: true }),
    },
    {
      id: '12.9.11',
      title: 'compressed text that is not UTF-8 fails',
      extra: true,
      deflate: DEFLATE_DEFAULT,
      steps: [
        {
          kind: 'message',
          data: Buffer.concat([utf8Text(10 * KiB), hex('ed a0 80'), utf8Text(KiB)]),
          binary: false,
          compress: true,
        },
      ],
      expect: invalidData(),
    },
    {
      id: '12.9.9',
      title: 'uncompressed messages between compressed ones',
      extra: true,
      deflate: DEFLATE_DEFAULT,
      steps: [
        { kind: 'message', data: hello, binary: false, compress: true },
        { kind: 'message', data: hello, binary: false },
        { kind: 'message', data: hello, binary: true, compress: true },
      ],
      expect: ok(echoText(hello), echoText(hello), echoBinary(hello)),
    },
  );
  return cases;
}

/** Whole raw deflate streams (BFINAL set), built once with zlib's defaults. */
const FINAL_BLOCK_A = deflateRawSync(b('final block one'));
const FINAL_BLOCK_B = deflateRawSync(b('final block two'));

// ---------------------------------------------------------------------------

export const CASES: ConformanceCase[] = [
  ...framing(),
  ...pings(),
  ...reservedBits(),
  ...opcodes(),
  ...fragmentation(),
  ...utf8(),
  ...closing(),
  ...limits(),
  ...misc(),
  ...compression(),
];

// Ids are test names: they must be unique.
{
  const seen = new Set<string>();
  for (const c of CASES) {
    if (seen.has(c.id)) throw new Error(`duplicate case id ${c.id}`);
    seen.add(c.id);
  }
}
