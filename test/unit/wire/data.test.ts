import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dataProblem } from '../../../src/wire/data.js';

const LIMITS = { maxDepth: 4, maxNodes: 100 };

test('dataProblem: a byte array is data without a walk, and still counts as one value', () => {
  assert.equal(dataProblem(new Uint8Array(10_000), LIMITS), null);
  assert.equal(dataProblem(Buffer.from('x'), LIMITS), null);
  assert.match(dataProblem(new Uint8Array(1), { maxDepth: 4, maxNodes: 0 }) ?? '', /more than 0 values/);
});

test('dataProblem: the stack kept between calls starts empty each time (a refusal midway leaves nothing behind)', () => {
  assert.match(dataProblem({ a: [1, 2, { b: NaN }], c: 'x' }, LIMITS) ?? '', /number that JSON cannot carry/);
  assert.equal(dataProblem({ a: [1, 2, { b: 3 }] }, LIMITS), null);
  assert.match(dataProblem([[[[[1]]]]], LIMITS) ?? '', /nested deeper than 4/);
  assert.equal(dataProblem([[[[1]]]], LIMITS), null);
});

test('dataProblem: a call made from inside another (a getter in a library call data) gets its own stack', () => {
  let inner: string | null | undefined;
  const data = {
    get x() {
      inner = dataProblem({ deep: [[[[[1]]]]] }, LIMITS);
      return 1;
    },
    y: [true, 'ok'],
  };
  assert.equal(dataProblem(data, LIMITS), null);
  assert.match(inner ?? '', /nested deeper than 4/);
  assert.equal(dataProblem({ after: [1] }, LIMITS), null);
});
