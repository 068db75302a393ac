/**
 * Hostile inputs for the process-level fuzz test (serve-fuzz.test.ts), as
 * fast-check arbitraries.
 *
 * A value is a small syntax tree, not a JavaScript value, so it can say what
 * JavaScript cannot hold or what JSON.stringify / MessagePack's encoder would
 * refuse to write: 1e400, 2^64, NaN in a float32, a MessagePack str that is
 * not UTF-8, extension types and timestamps, duplicate and `__proto__` keys,
 * keys that are not strings, and nesting tens of thousands of levels deep
 * (written without recursion). Each tree has both a JSON text and MessagePack
 * bytes; a scalar that exists in one encoding only has a harmless stand-in in
 * the other.
 *
 * What the server must answer is not decided here: the test decodes what it
 * sends with the plain decoders (JSON.parse, @msgpack/msgpack) and applies
 * the documented rules (docs/protocol.md) to the result.
 */
import fc from 'fast-check';
import { encode } from '@msgpack/msgpack';

export interface Lit {
  k: 'lit';
  json: string;
  mp: Uint8Array;
  label: string;
}
export interface Key {
  json: string;
  mp: Uint8Array;
  label: string;
}
export type Shape = 'arr' | 'obj' | 'mixed';
export type Value =
  | Lit
  | { k: 'arr'; items: Value[] }
  | { k: 'obj'; entries: Array<[Key, Value]> }
  /** `depth` levels of arrays, one-key objects or both alternating, around `leaf`. */
  | { k: 'deep'; shape: Shape; depth: number; leaf: Value }
  /** An array of `count` items, or an object of `count` keys, all `item`. */
  | { k: 'wide'; shape: 'arr' | 'obj'; count: number; item: Value };

// ---------------------------------------------------------------------------
// Building blocks

const bytes = (...parts: Array<number | number[] | Uint8Array>): Uint8Array =>
  Uint8Array.from(parts.flatMap((p) => (typeof p === 'number' ? [p] : [...p])));

export function lit(json: string, mp: Uint8Array, label = json): Lit {
  return { k: 'lit', json, mp, label };
}
/** A JSON-safe value written by the ordinary encoders. */
export function plain(v: unknown, label = JSON.stringify(v) ?? String(v)): Lit {
  return lit(JSON.stringify(v), encode(v), label.length > 40 ? `${label.slice(0, 37)}...` : label);
}
export function strKey(s: string): Key {
  const label = JSON.stringify(s);
  return { json: JSON.stringify(s), mp: encode(s), label: label.length > 30 ? `${label.slice(0, 27)}..."(${s.length})` : label };
}
function f64(x: number): Uint8Array {
  const b = Buffer.alloc(9);
  b[0] = 0xcb;
  b.writeDoubleBE(x, 1);
  return b;
}
function f64bits(hi: number, lo: number): Uint8Array {
  const b = Buffer.alloc(9);
  b[0] = 0xcb;
  b.writeUInt32BE(hi, 1);
  b.writeUInt32BE(lo, 5);
  return b;
}
function f32bits(bits: number): Uint8Array {
  const b = Buffer.alloc(5);
  b[0] = 0xca;
  b.writeUInt32BE(bits, 1);
  return b;
}
function u16(n: number): number[] {
  return [(n >>> 8) & 0xff, n & 0xff];
}
function u32(n: number): number[] {
  return [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}
function arrayHeader(n: number): number[] {
  return n < 16 ? [0x90 | n] : n < 0x10000 ? [0xdc, ...u16(n)] : [0xdd, ...u32(n)];
}
function mapHeader(n: number): number[] {
  return n < 16 ? [0x80 | n] : n < 0x10000 ? [0xde, ...u16(n)] : [0xdf, ...u32(n)];
}
function strHeader(n: number): number[] {
  return n < 32 ? [0xa0 | n] : n < 0x100 ? [0xd9, n] : n < 0x10000 ? [0xda, ...u16(n)] : [0xdb, ...u32(n)];
}

// ---------------------------------------------------------------------------
// Serializers (iterative where depth is unbounded)

export function toJson(v: Value): string {
  switch (v.k) {
    case 'lit':
      return v.json;
    case 'arr':
      return `[${v.items.map(toJson).join(',')}]`;
    case 'obj':
      return `{${v.entries.map(([k, x]) => `${k.json}:${toJson(x)}`).join(',')}}`;
    case 'deep': {
      const [open, close] = deepParts(v.shape, 'json');
      return `${repeatAlternating(open, v.depth)}${toJson(v.leaf)}${repeatAlternating([...close].reverse(), v.depth, true)}`;
    }
    case 'wide': {
      const item = toJson(v.item);
      if (v.shape === 'arr') return `[${new Array(v.count).fill(item).join(',')}]`;
      const parts: string[] = [];
      for (let i = 0; i < v.count; i++) parts.push(`"k${i}":${item}`);
      return `{${parts.join(',')}}`;
    }
  }
}

export function toMsgpack(v: Value): Uint8Array {
  const chunks: Uint8Array[] = [];
  writeMsgpack(v, chunks);
  return Buffer.concat(chunks);
}

function writeMsgpack(v: Value, out: Uint8Array[]): void {
  switch (v.k) {
    case 'lit':
      out.push(v.mp);
      return;
    case 'arr':
      out.push(bytes(arrayHeader(v.items.length)));
      for (const x of v.items) writeMsgpack(x, out);
      return;
    case 'obj':
      out.push(bytes(mapHeader(v.entries.length)));
      for (const [k, x] of v.entries) {
        out.push(k.mp);
        writeMsgpack(x, out);
      }
      return;
    case 'deep': {
      const [open] = deepParts(v.shape, 'mp');
      const levels: Uint8Array[] = open.map((o) => Buffer.from(o, 'latin1'));
      const unit = Buffer.concat(levels);
      const whole = Math.floor(v.depth / levels.length);
      out.push(Buffer.alloc(unit.length * whole, unit));
      for (let i = 0; i < v.depth % levels.length; i++) out.push(levels[i]!);
      writeMsgpack(v.leaf, out);
      return;
    }
    case 'wide': {
      const item = toMsgpack(v.item);
      out.push(bytes(v.shape === 'arr' ? arrayHeader(v.count) : mapHeader(v.count)));
      for (let i = 0; i < v.count; i++) {
        if (v.shape === 'obj') out.push(encode(`k${i}`));
        out.push(item);
      }
      return;
    }
  }
}

/** The opening (and for JSON closing) text of one level, per shape; 'mixed' alternates two kinds of level. */
function deepParts(shape: Shape, encoding: 'json' | 'mp'): [string[], string[]] {
  if (encoding === 'json') {
    if (shape === 'arr') return [['['], [']']];
    if (shape === 'obj') return [['{"a":'], ['}']];
    return [['[', '{"m":'], [']', '}']];
  }
  // MessagePack as latin1 text: fixarray(1) = 0x91; fixmap(1) 0x81 + fixstr "a" (0xa1 0x61).
  if (shape === 'arr') return [['\x91'], []];
  if (shape === 'obj') return [['\x81\xa1a'], []];
  return [['\x91', '\x81\xa1m'], []];
}

/** `parts` alternating, `n` of them; `closing`: the closers of the levels in reverse order. */
function repeatAlternating(parts: string[], n: number, closing = false): string {
  if (parts.length === 1) return parts[0]!.repeat(n);
  // For 'mixed', level i opens with parts[i % 2]; the closers must be the reverse sequence.
  const unit = parts.join('');
  const whole = unit.repeat(Math.floor(n / parts.length));
  if (n % parts.length === 0) return whole;
  // An odd number of levels: the innermost level is parts[0] (opening) and must close first.
  return closing ? parts[parts.length - 1]! + whole : whole + parts[0]!;
}

/** Nesting depth of a value (how deep a decoder or encoder has to go). */
export function depthOf(v: Value): number {
  switch (v.k) {
    case 'lit':
      return 0;
    case 'arr':
      return 1 + Math.max(0, ...v.items.map(depthOf));
    case 'obj':
      return 1 + Math.max(0, ...v.entries.map(([, x]) => depthOf(x)));
    case 'deep':
      return v.depth + depthOf(v.leaf);
    case 'wide':
      return 1 + depthOf(v.item);
  }
}

/** A short description for failure reports. */
export function describe(v: Value, max = 160): string {
  const text = describeInner(v);
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}
function describeInner(v: Value): string {
  switch (v.k) {
    case 'lit':
      return v.label;
    case 'arr':
      return `[${v.items.map(describeInner).join(',')}]`;
    case 'obj':
      return `{${v.entries.map(([k, x]) => `${k.label}:${describeInner(x)}`).join(',')}}`;
    case 'deep':
      return `${v.shape}^${v.depth}(${describeInner(v.leaf)})`;
    case 'wide':
      return `${v.shape}x${v.count}(${describeInner(v.item)})`;
  }
}

// ---------------------------------------------------------------------------
// Scalars

const FF8 = new Array(8).fill(0xff);
/** Numbers at and past the edges; [JSON text, MessagePack bytes, label]. */
const HOSTILE_NUMBERS: Lit[] = [
  lit('1e400', f64(Infinity), '1e400|+Inf'),
  lit('-1e400', f64(-Infinity), '-1e400|-Inf'),
  lit('-0', f64(-0), '-0'),
  lit('-0.0e-0', f64(-0), '-0.0e-0'),
  lit('18446744073709551616', bytes(0xcf, FF8), '2^64|uint64max'),
  lit('18446744073709551615', bytes(0xcf, FF8), 'uint64max'),
  lit('9007199254740993', bytes(0xcf, 0, 0x20, 0, 0, 0, 0, 0, 1), '2^53+1'),
  lit('-9223372036854775809', bytes(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0), 'int64min'),
  lit('1e-400', f64(NaN), '1e-400|NaN'),
  lit('0.30000000000000004', f32bits(0x7fc00000), '0.1+0.2|f32NaN'),
  lit('123e45678', f64bits(0x7ff00000, 1), '123e45678|sNaN'),
  lit('5e-324', f64(5e-324), '5e-324'),
  lit('1.7976931348623157e308', f64(Number.MAX_VALUE), 'MAX_VALUE'),
  lit(`1${'0'.repeat(400)}`, f32bits(0xff800000), '1e400 digits|f32-Inf'),
  lit(`0.${'0'.repeat(400)}1`, f64bits(0xfff80000, 0xdeadbeef), 'tiny|NaN payload'),
  lit('-1e-400', bytes(0xd0, 0x80), '-1e-400|int8 -128'),
  lit('4294967296', bytes(0xce, 0xff, 0xff, 0xff, 0xff), '2^32|uint32max'),
];

function str(s: string): Lit {
  return plain(s, JSON.stringify(s).length > 40 ? `str(${s.length}):${JSON.stringify(s.slice(0, 12))}` : JSON.stringify(s));
}
const ODD_STRINGS: string[] = [
  '',
  '\u0000',
  'a\u0000b',
  '\ud800',
  '\udfff',
  'a\ud800b\udc00c',
  '\udc00\ud800',
  '\ufeff',
  '\ufffe\uffff',
  '\u2028\u2029',
  '\u202eevil',
  '\u0007\u001b[31m',
  '💥'.repeat(10),
  '</script><script>',
  '%s%n%x',
  '\\u0000',
  '${constructor}',
  '__proto__',
  'null',
];
/** A MessagePack str whose bytes are not UTF-8 (JSON stand-in: escapes of lone surrogates and NUL). */
const BAD_UTF8: Lit[] = [
  [0xff],
  [0xfe, 0xff],
  [0xc0, 0x80],
  [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf, 0xed, 0xa0, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0x80, 0x80],
  [0xe2, 0x82],
  [0x61, 0x00, 0xc3],
].map((b, i) => lit(['"\\ud800"', '"\\udc00\\u0000"', '"\\u0000"', '"\\udbff\\udfff"'][i % 4]!, bytes(strHeader(b.length), b), `str bytes ${Buffer.from(b).toString('hex')}`));

/** Extension types (and bin): MessagePack only, a string or array in JSON. */
const extensions: fc.Arbitrary<Lit> = fc.oneof(
  // fixext 1/2/4/8/16 and ext8 of any type, timestamps (-1) included.
  fc
    .tuple(fc.constantFrom(1, 2, 4, 8, 16, 0, 3, 12, 17), fc.integer({ min: -128, max: 127 }), fc.uint8Array({ minLength: 17, maxLength: 17 }))
    .map(([n, type, data]) => {
      const fixed: Record<number, number> = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 };
      const t = type & 0xff;
      const mp = fixed[n] !== undefined ? bytes(fixed[n]!, t, data.slice(0, n)) : bytes(0xc7, n, t, data.slice(0, n));
      return lit('"ext"', mp, `ext(type ${type}, ${n} B)`);
    }),
  // Timestamps at the edges: 32-bit, 64-bit with nanoseconds over 999999999, 96-bit with seconds out of Date's range.
  fc.constantFrom(
    lit('"ts"', bytes(0xd6, 0xff, 0xff, 0xff, 0xff, 0xff), 'timestamp32 max'),
    lit('"ts"', bytes(0xd7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), 'timestamp64 nsec overflow'),
    lit('"ts"', bytes(0xc7, 12, 0xff, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), 'timestamp96 int64max s (Invalid Date)'),
    lit('"ts"', bytes(0xc7, 12, 0xff, 0x3b, 0x9a, 0xca, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0), 'timestamp96 int64min s, 1e9 ns'),
    lit('"ts"', bytes(0xd4, 0xff, 0x00), 'timestamp 1 byte (not a timestamp size)'),
    lit('"ts"', bytes(0xc7, 0, 0xff), 'timestamp 0 bytes'),
  ),
  fc.uint8Array({ maxLength: 40 }).map((b) => lit(`[${[...b].join(',')}]`, bytes(0xc4, b.length, b), `bin(${b.length})`)),
);

const longString = fc
  .tuple(fc.integer({ min: 1000, max: 70_000 }), fc.constantFrom('x', 'é', '€', '😀', '\u0000', '\ud800', '"', '\\'))
  .map(([n, c]) => str(c.repeat(Math.ceil(n / c.length))));

/** Scalars of at most a few dozen bytes (the items of wide structures). */
export const smallScalar: fc.Arbitrary<Value> = fc.oneof(
  fc.constantFrom<Value>(plain(null), plain(true), plain(false), plain(0), plain(''), ...HOSTILE_NUMBERS, ...BAD_UTF8),
  fc.constantFrom(...ODD_STRINGS).map(str),
);

export const scalar: fc.Arbitrary<Value> = fc.oneof(
  { arbitrary: fc.constantFrom<Value>(plain(null), plain(true), plain(false)), weight: 2 },
  { arbitrary: fc.constantFrom<Value>(...HOSTILE_NUMBERS), weight: 4 },
  { arbitrary: fc.integer().map((n) => plain(n)), weight: 1 },
  { arbitrary: fc.double().map((x) => lit(Number.isFinite(x) ? JSON.stringify(x) : 'null', f64(x), String(x))), weight: 1 },
  { arbitrary: fc.constantFrom(...ODD_STRINGS).map(str), weight: 3 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 12 }).map(str), weight: 2 },
  { arbitrary: fc.constantFrom<Value>(...BAD_UTF8), weight: 2 },
  { arbitrary: longString, weight: 1 },
  { arbitrary: extensions, weight: 2 },
);

// ---------------------------------------------------------------------------
// Keys

const PROTO_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', 'then', '__defineGetter__', 'toJSON'];
export const objectKey: fc.Arbitrary<Key> = fc.oneof(
  { arbitrary: fc.constantFrom(...PROTO_KEYS).map(strKey), weight: 4 },
  { arbitrary: fc.constantFrom('', '\u0000', '\ud800', 'a.b', '💥', ' ', 'op', 'data', 'channel').map(strKey), weight: 2 },
  { arbitrary: fc.string({ maxLength: 8 }).map(strKey), weight: 3 },
  { arbitrary: fc.integer({ min: 200, max: 5000 }).map((n) => strKey('k'.repeat(n))), weight: 1 },
  // Keys that are not strings (MessagePack only; strings in JSON).
  { arbitrary: fc.integer({ min: -1000, max: 1000 }).map((n): Key => ({ json: JSON.stringify(String(n)), mp: encode(n), label: `int key ${n}` })), weight: 1 },
  { arbitrary: fc.constantFrom<Key>({ json: '"nil"', mp: bytes(0xc0), label: 'nil key' }, { json: '"[]"', mp: bytes(0x90), label: '[] key' }, { json: '"1.5"', mp: f64(1.5), label: 'float key' }), weight: 1 },
);

// ---------------------------------------------------------------------------
// Values

export interface ValueOptions {
  /** Largest depth of a deep structure (the HTTP API takes 1 MiB bodies, a WebSocket message 64 KiB). */
  maxDeep: number;
  /** Largest width of a wide structure. */
  maxWide: number;
}

export function valueArb({ maxDeep, maxWide }: ValueOptions): fc.Arbitrary<Value> {
  const depth = fc.oneof(
    fc.integer({ min: 2, max: 99 }),
    fc.constantFrom(99, 100, 101, 102, 128, 200, 256, 1000, 1024, 2000, 3000, 4000, 5000, 8000, 10_000, 20_000),
    fc.integer({ min: 1000, max: maxDeep }),
  );
  const { value } = fc.letrec<{ value: Value }>((tie) => ({
    value: fc.oneof(
      { maxDepth: 3, depthIdentifier: 'value' },
      { arbitrary: scalar, weight: 6 },
      { arbitrary: fc.array(tie('value'), { maxLength: 5 }).map((items): Value => ({ k: 'arr', items })), weight: 2 },
      { arbitrary: fc.array(fc.tuple(objectKey, tie('value')), { maxLength: 5 }).map((entries): Value => ({ k: 'obj', entries })), weight: 2 },
      {
        arbitrary: fc
          .record({ shape: fc.constantFrom<Shape>('arr', 'obj', 'mixed'), depth, leaf: tie('value') })
          .map(({ shape, depth: d, leaf }): Value => ({ k: 'deep', shape, depth: Math.min(d, maxDeep), leaf })),
        weight: 3,
      },
      {
        arbitrary: fc
          .record({ shape: fc.constantFrom<'arr' | 'obj'>('arr', 'obj'), count: fc.integer({ min: 100, max: maxWide }), item: smallScalar })
          .map((w): Value => ({ k: 'wide', ...w })),
        weight: 1,
      },
    ),
  }));
  return value;
}

// ---------------------------------------------------------------------------
// Client messages (WebSocket, fallback sessions)

export const OPS = ['auth', 'sub', 'unsub', 'pub', 'rpc', 'send', 'presence', 'history', 'refresh', 'ping', 'pong'] as const;
export type Op = (typeof OPS)[number];

/** Channels: ones that exist in the test's configuration (the bystander's too), patterns and broken names. */
export const GOOD_CHANNELS = ['hist/bystander', 'hist/other', 'plain/a', 'full/room', 'counts/room', 'ro/news', 'plain/+', 'hist/#', '#', '+/+', 'full/+'];
const BAD_CHANNELS = ['', '/', 'a//b', '/a', 'a/', '#/a', 'a/#/b', 'a+/b', 'a\u0000b', 'chat/\u0007', '\ud800', `x/${'y'.repeat(300)}`, 'é'.repeat(130), ' ', 'a/ /b'];

/** What fills a message's `id`. */
export type IdSlot = { mode: 'unique' } | { mode: 'bent'; value: Value } | { mode: 'missing' };

export interface Envelope {
  k: 'envelope';
  op: Value;
  opName: string;
  id: IdSlot;
  fields: Array<[Key, Value]>;
}
/** What a connection sends as one message. */
export type Message =
  | Envelope
  /** A top-level value that is not a request object. */
  | { k: 'top'; value: Value }
  /** Bytes that are (most likely) neither JSON nor MessagePack, in a text or a binary frame. */
  | { k: 'garbage'; bytes: Uint8Array; text: boolean }
  /** A message cut short. */
  | { k: 'truncated'; of: Envelope; keep: number }
  /** The right encoding in the other frame type (JSON in a binary frame, MessagePack in a text frame). */
  | { k: 'wrong-frame'; of: Envelope };

/** Ids that are not request ids (a non-negative safe integer, or a string of 1-64 characters). -0 is one, so it is not here. */
const BENT_IDS: Value[] = [
  plain(-1),
  plain(1.5),
  lit('9007199254740992', bytes(0xcf, 0, 0x20, 0, 0, 0, 0, 0, 0), '2^53'),
  lit('1e400', f64(Infinity), '1e400'),
  lit('1e-400', f64(NaN), '1e-400|NaN'),
  plain(''),
  plain('x'.repeat(65)),
  plain(null),
  plain(true),
  plain({}),
  plain([1]),
  plain('0'.repeat(1000)),
];

function field(name: string, value: Value): [Key, Value] {
  return [strKey(name), value];
}

export function messageArb(values: fc.Arbitrary<Value>, tokens: Lit[]): fc.Arbitrary<Message> {
  const channel = fc.oneof(
    // The bystanders' channel most often: what is published there reaches a JSON and a MessagePack subscriber.
    { arbitrary: fc.constant(plain('hist/bystander')), weight: 3 },
    { arbitrary: fc.constantFrom(...GOOD_CHANNELS).map((c) => plain(c)), weight: 5 },
    { arbitrary: fc.constantFrom(...BAD_CHANNELS).map((c) => plain(c)), weight: 2 },
    { arbitrary: values, weight: 1 },
  );
  const bool = fc.oneof({ arbitrary: fc.boolean().map((b) => plain(b)), weight: 3 }, { arbitrary: fc.constantFrom(plain(1), plain('true'), plain(null), plain(0)), weight: 1 }, { arbitrary: values, weight: 1 });
  const smallString = (max: number): fc.Arbitrary<Value> =>
    fc.oneof(
      { arbitrary: fc.string({ minLength: 1, maxLength: 12 }).map((s) => plain(s)), weight: 3 },
      { arbitrary: fc.constantFrom(plain(''), plain('k'.repeat(max + 1)), plain(7), plain(null), plain({ a: 1 })), weight: 2 },
      { arbitrary: values, weight: 1 },
    );
  const position = fc.oneof(
    { arbitrary: fc.record({ offset: fc.nat(3000), epoch: fc.string({ maxLength: 12 }) }).map((p) => plain(p)), weight: 3 },
    {
      arbitrary: fc.constantFrom(
        plain({ offset: -1, epoch: 'e' }),
        plain({ offset: 1.5, epoch: 'e' }),
        lit('{"offset":1e400,"epoch":"e"}', toMsgpack({ k: 'obj', entries: [[strKey('offset'), HOSTILE_NUMBERS[0]!], [strKey('epoch'), plain('e')]] }), '{offset:1e400}'),
        plain({ offset: 1, epoch: 'e'.repeat(65) }),
        plain({ offset: 1, epoch: 7 }),
        plain({ offset: 1 }),
        plain({ epoch: 'e' }),
        plain({ offset: 1, epoch: 'e', extra: true }),
        plain([1, 'e']),
        plain('1:e'),
      ),
      weight: 2,
    },
    { arbitrary: values, weight: 1 },
  );
  const limit = fc.oneof(
    { arbitrary: fc.nat(2000).map((n) => plain(n)), weight: 3 },
    { arbitrary: fc.constantFrom<Value>(plain(-1), plain(1.5), plain('10'), HOSTILE_NUMBERS[0]!, HOSTILE_NUMBERS[4]!, HOSTILE_NUMBERS[8]!), weight: 2 },
  );
  const token = fc.oneof({ arbitrary: fc.constantFrom(...tokens), weight: 4 }, { arbitrary: smallString(8192), weight: 1 }, { arbitrary: fc.constantFrom(plain('x'.repeat(9000)), plain('a.b.c')), weight: 1 });
  const method = smallString(128);
  const FIELDS: Record<Op, Array<[string, fc.Arbitrary<Value>]>> = {
    auth: [['token', token]],
    refresh: [['token', token]],
    sub: [
      ['channel', channel],
      ['since', position],
      ['presence', bool],
    ],
    unsub: [['channel', channel]],
    pub: [
      ['channel', channel],
      ['data', values],
      ['key', smallString(128)],
      ['volatile', bool],
    ],
    rpc: [
      ['method', method],
      ['data', values],
    ],
    send: [
      ['method', method],
      ['data', values],
    ],
    presence: [['channel', channel]],
    history: [
      ['channel', channel],
      ['since', position],
      ['limit', limit],
    ],
    ping: [],
    pong: [],
  };
  // Required fields are there most of the time, optional ones half of the time.
  const REQUIRED: Record<string, boolean> = { token: true, channel: true, data: true, method: true };
  const extraKey = fc.oneof(fc.constantFrom(...PROTO_KEYS, 'extra', 'ID', 'Op', 'data ', '').map(strKey), objectKey.filter((k) => k.json !== '"op"' && k.json !== '"id"'));

  const envelope: fc.Arbitrary<Envelope> = fc
    .record({
      op: fc.oneof(
        { arbitrary: fc.constantFrom(...OPS), weight: 12 },
        { arbitrary: fc.constantFrom('PUB', 'bogus', '', 'msg', 'ok', 'error', '__proto__', 'constructor', 'toString', 'hasOwnProperty', ' pub'), weight: 2 },
      ),
      opBent: fc.oneof(
        { arbitrary: fc.constant(null), weight: 24 },
        { arbitrary: fc.constantFrom(plain(7), plain(null), plain(['pub']), plain({ op: 'pub' }), plain(true)), weight: 2 },
        { arbitrary: values, weight: 1 },
      ),
      id: fc.oneof(
        { arbitrary: fc.constant<IdSlot>({ mode: 'unique' }), weight: 10 },
        { arbitrary: fc.constantFrom(...BENT_IDS).map((value): IdSlot => ({ mode: 'bent', value })), weight: 2 },
        { arbitrary: fc.constant<IdSlot>({ mode: 'missing' }), weight: 1 },
      ),
      presence: fc.array(fc.nat(99), { minLength: 4, maxLength: 4 }),
      extra: fc.oneof({ arbitrary: fc.constant<Array<[Key, Value]>>([]), weight: 8 }, { arbitrary: fc.array(fc.tuple(extraKey, values), { minLength: 1, maxLength: 2 }), weight: 1 }),
    })
    .chain(({ op, opBent, id, presence, extra }) => {
      const specs = Object.prototype.hasOwnProperty.call(FIELDS, op) ? FIELDS[op as Op] : FIELDS.pub;
      const chosen = specs.filter(([name], i) => presence[i]! < (REQUIRED[name] ? 92 : 50));
      const pings = op === 'ping' || op === 'pong';
      return fc.tuple(...chosen.map(([, arb]) => arb)).map((vals): Envelope => {
        const fields = chosen.map(([name], i) => field(name, vals[i]!));
        // ping/pong mostly as they should be (no id, no fields), so the pong answer is exercised too; a
        // send mostly without the id it must not have.
        const slot: IdSlot = (pings || op === 'send') && presence[3]! < 70 ? { mode: 'missing' } : id;
        return { k: 'envelope', op: opBent ?? plain(op), opName: opBent ? describe(opBent) : op, id: slot, fields: pings && presence[3]! < 70 ? [] : [...fields, ...extra] };
      });
    });

  return fc.oneof(
    { arbitrary: envelope, weight: 40 },
    { arbitrary: values.map((value): Message => ({ k: 'top', value })), weight: 2 },
    { arbitrary: fc.record({ bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }), text: fc.boolean() }).map((g): Message => ({ k: 'garbage', ...g })), weight: 1 },
    { arbitrary: fc.record({ of: envelope, keep: fc.double({ min: 0, max: 0.999, noNaN: true }) }).map((t): Message => ({ k: 'truncated', ...t })), weight: 1 },
    { arbitrary: envelope.map((of): Message => ({ k: 'wrong-frame', of })), weight: 1 },
  );
}

/** The envelope with its id filled in, as a value. */
export function envelopeValue(e: Envelope, uniqueId: number | string): Value {
  const entries: Array<[Key, Value]> = [[strKey('op'), e.op]];
  if (e.id.mode === 'unique') entries.push([strKey('id'), plain(uniqueId)]);
  else if (e.id.mode === 'bent') entries.push([strKey('id'), e.id.value]);
  entries.push(...e.fields);
  return { k: 'obj', entries };
}

export function describeMessage(m: Message, uniqueId: number | string): string {
  switch (m.k) {
    case 'envelope':
      return describe(envelopeValue(m, uniqueId), 400);
    case 'top':
      return `top-level ${describe(m.value)}`;
    case 'garbage':
      return `garbage ${m.text ? 'text' : 'binary'} frame ${Buffer.from(m.bytes).toString('hex').slice(0, 64)}`;
    case 'truncated':
      return `truncated (${Math.round(m.keep * 100)}%) ${describe(envelopeValue(m.of, uniqueId), 300)}`;
    case 'wrong-frame':
      return `other frame type: ${describe(envelopeValue(m.of, uniqueId), 300)}`;
  }
}

/** Random bytes that start like a WebSocket frame header, never a close frame (whose echo is not an error). */
export const rawFrameArb: fc.Arbitrary<Uint8Array> = fc
  .tuple(fc.integer({ min: 0, max: 255 }).filter((b) => (b & 0x0f) !== 0x08), fc.uint8Array({ minLength: 1, maxLength: 200 }))
  .map(([first, rest]) => bytes(first, rest));
