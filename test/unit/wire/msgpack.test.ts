import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decode, encode } from '@msgpack/msgpack';
import { packMsgpack, unpackMsgpack } from '../../../src/wire/msgpack.js';

test('packMsgpack: the same bytes as the library, each result in a buffer of exactly its size', () => {
  const values: unknown[] = [null, 1, -1.5, 'é', [1, [2, [3]]], { a: 1, b: new Uint8Array([1, 2, 3]) }, { big: 'x'.repeat(70_000) }];
  const results = values.map((v) => packMsgpack(v));
  for (const [i, v] of values.entries()) {
    const bytes = results[i]!;
    assert.deepEqual(Buffer.from(bytes), Buffer.from(encode(v)), `value ${i}`);
    // Not a view into a shared (or 2 KiB) buffer: kept results hold only their own bytes.
    assert.equal(bytes.buffer.byteLength, bytes.byteLength, `value ${i} owns its buffer`);
    assert.equal(bytes.byteOffset, 0);
  }
  // Results made earlier are not overwritten by later encodings.
  assert.deepEqual(decode(results[5]!), { a: 1, b: new Uint8Array([1, 2, 3]) });
});

test('packMsgpack: ignoreUndefined leaves undefined fields out, as JSON does; without it they are nil', () => {
  assert.deepEqual(decode(packMsgpack({ a: 1, b: undefined }, { ignoreUndefined: true })), { a: 1 });
  assert.deepEqual(decode(packMsgpack({ a: 1, b: undefined })), { a: 1, b: null });
});

test('unpackMsgpack: round trip, and malformed input throws without breaking the next decode', () => {
  const value = { push: { channel: 'a/b', data: [1, 'two', { three: 3 }] } };
  assert.deepEqual(unpackMsgpack(packMsgpack(value)), value);
  assert.throws(() => unpackMsgpack(new Uint8Array([0xc1])));
  assert.throws(() => unpackMsgpack(new Uint8Array([0x92, 0x01]))); // an array cut short
  assert.throws(() => unpackMsgpack(new Uint8Array([0x01, 0x02]))); // extra bytes
  assert.deepEqual(unpackMsgpack(packMsgpack(value)), value);
});
