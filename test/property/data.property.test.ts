/**
 * wire/data.ts: what `dataProblem` accepts encodes in both wire encodings,
 * inside a `msg` push, and decodes back to the same value; what it refuses
 * it refuses without recursion, whatever the depth.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { messagePush } from '../../src/realtime/hub.js';
import { jsonCodec, msgpackCodec } from '../../src/wire/codec.js';
import { dataProblem, DEFAULT_MAX_DATA_DEPTH, MAX_DATA_DEPTH_LIMIT } from '../../src/wire/data.js';

const LIMITS = { maxDepth: MAX_DATA_DEPTH_LIMIT, maxNodes: 1 << 20 };

/** Anything a decoder or an application may hand over, odd values included. */
const anyValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(null, true, false, 0, -0, NaN, Infinity, -Infinity, 2 ** 64, Number.MAX_VALUE, '', '\ud800', '\udc00x', '\u0000', '__proto__'),
    fc.double(),
    fc.string({ unit: 'binary' }),
    fc.uint8Array({ maxLength: 8 }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.oneof(fc.string({ unit: 'binary', maxLength: 4 }), fc.constant('__proto__')), tie('value'), { maxKeys: 4 }),
  ),
})).value;

/** -0 travels as 0 in both encodings (JSON has no -0; MessagePack encoders write it as the integer 0). */
function zeroed(v: unknown): unknown {
  if (Object.is(v, -0)) return 0;
  if (Array.isArray(v)) return v.map(zeroed);
  if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, zeroed(x)]));
  }
  return v;
}

describe('application data', () => {
  it('accepted ⇒ a msg push with it encodes in JSON and MessagePack and decodes to the same data', () => {
    fc.assert(
      fc.property(anyValue, (value) => {
        if (dataProblem(value, LIMITS) !== null) return;
        const push = messagePush({ channel: 'c', offset: 1, epoch: 'e', data: value, time: 0, from: { client: 'x', user: 'u', info: value } });
        const mp = msgpackCodec.decode(msgpackCodec.encode(push)) as { data: unknown };
        assert.deepEqual(zeroed(mp.data), zeroed(value));
        const json = jsonCodec.decode(jsonCodec.encode(push)) as { data: unknown };
        // JSON has no bytes: only byte-free values come back equal.
        if (!JSON.stringify(value, (_k, v: unknown) => (v instanceof Uint8Array ? 'BYTES' : v)).includes('BYTES')) assert.deepEqual(zeroed(json.data), zeroed(value));
      }),
      { numRuns: 2000 },
    );
  });

  it('refusals say why, for every value the encoders could not carry faithfully', () => {
    fc.assert(
      fc.property(anyValue, (value) => {
        const problem = dataProblem(value, LIMITS);
        if (problem === null) return;
        assert.match(problem, /^data (is nested deeper|has more than|holds )/);
      }),
      { numRuns: 2000 },
    );
  });

  it('a million levels (built without recursion) are refused at the limit, without touching the stack', () => {
    let deep: unknown = 0;
    for (let i = 0; i < 1_000_000; i++) deep = [deep];
    assert.equal(dataProblem(deep, { maxDepth: DEFAULT_MAX_DATA_DEPTH, maxNodes: 1 << 30 }), `data is nested deeper than ${DEFAULT_MAX_DATA_DEPTH} levels`);
    let wide: Record<string, unknown> = {};
    for (let i = 0; i < 1000; i++) wide = { next: wide };
    assert.equal(dataProblem(wide, { maxDepth: 2000, maxNodes: 100 }), 'data has more than 100 values');
  });

  it('depth counts containers: a scalar is 0, [] is 1, the limit itself is allowed', () => {
    const limits = (maxDepth: number) => ({ maxDepth, maxNodes: 100 });
    assert.equal(dataProblem('x', limits(0)), null);
    assert.equal(dataProblem([], limits(1)), null);
    assert.equal(dataProblem([[]], limits(1)), 'data is nested deeper than 1 levels');
    assert.equal(dataProblem({ a: { b: 1 } }, limits(2)), null);
    assert.equal(dataProblem(new Uint8Array(4), limits(0)), null, 'bytes are a value, not a container');
    assert.equal(dataProblem(Object.create(null) as object, limits(1)), null, 'a null-prototype object is plain');
  });
});
