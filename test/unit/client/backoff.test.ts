/**
 * `Backoff` (src/client/backoff.ts): the delay of each attempt, the jitter
 * bounds, the cap, reset, maxAttempts and option checks.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Backoff, DEFAULT_RECONNECT } from '../../../src/client/index.js';

describe('Backoff', () => {
  test('defaults: 500 ms doubling up to 30 s, jitter 0.5, no attempt limit, reset after 10 s', () => {
    assert.deepEqual({ ...DEFAULT_RECONNECT }, { minDelayMs: 500, maxDelayMs: 30000, factor: 2, jitter: 0.5, maxAttempts: Infinity, resetAfterMs: 10000 });
    const b = new Backoff();
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 7, 8, 50, 5000].map((n) => b.baseDelay(n)),
      [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000],
    );
  });

  test('without jitter the delays are exactly exponential and capped', () => {
    const b = new Backoff({ minDelayMs: 100, maxDelayMs: 1000, factor: 3, jitter: 0 });
    const delays = Array.from({ length: 6 }, () => b.next());
    assert.deepEqual(delays, [100, 300, 900, 1000, 1000, 1000]);
    assert.equal(b.attempt, 6);
  });

  test('jitter: the delay lies in [d * (1 - jitter), d]; the extremes of random give the bounds', () => {
    const low = new Backoff({ jitter: 0.5 }, () => 0);
    const high = new Backoff({ jitter: 0.5 }, () => 0.999999);
    assert.deepEqual([low.next(), low.next(), low.next()], [250, 500, 1000]);
    assert.deepEqual([high.next(), high.next(), high.next()], [500, 1000, 2000]);
  });

  test('property: every delay is within its jitter bounds and never above maxDelayMs', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 5000 }),
        fc.integer({ min: 0, max: 100000 }),
        fc.double({ min: 1, max: 4, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.array(fc.double({ min: 0, max: 0.9999999, noNaN: true }), { minLength: 1, maxLength: 40 }),
        (min, extra, factor, jitter, randoms) => {
          let i = 0;
          const b = new Backoff({ minDelayMs: min, maxDelayMs: min + extra, factor, jitter }, () => randoms[i++ % randoms.length]!);
          for (let n = 1; n <= randoms.length; n++) {
            const d = b.baseDelay(n);
            const delay = b.next();
            assert.ok(delay <= min + extra, `delay ${delay} over the cap`);
            assert.ok(delay >= Math.floor(d * (1 - jitter)) && delay <= Math.ceil(d), `attempt ${n}: ${delay} outside [${d * (1 - jitter)}, ${d}]`);
          }
        },
      ),
    );
  });

  test('reset starts over at the first delay', () => {
    const b = new Backoff({ jitter: 0 });
    b.next();
    b.next();
    assert.equal(b.next(), 2000);
    b.reset();
    assert.equal(b.attempt, 0);
    assert.equal(b.next(), 500);
  });

  test('maxAttempts: canRetry turns false after that many attempts', () => {
    const b = new Backoff({ maxAttempts: 2 });
    assert.equal(b.canRetry, true);
    b.next();
    assert.equal(b.canRetry, true);
    b.next();
    assert.equal(b.canRetry, false);
    assert.equal(new Backoff({ maxAttempts: 0 }).canRetry, false);
  });

  test('invalid options throw; undefined fields take the defaults', () => {
    assert.throws(() => new Backoff({ minDelayMs: -1 }), RangeError);
    assert.throws(() => new Backoff({ minDelayMs: 100, maxDelayMs: 50 }), RangeError);
    assert.throws(() => new Backoff({ factor: 0.5 }), RangeError);
    assert.throws(() => new Backoff({ jitter: 1.5 }), RangeError);
    assert.throws(() => new Backoff({ maxAttempts: -1 }), RangeError);
    assert.equal(new Backoff({ minDelayMs: undefined }).options.minDelayMs, 500);
  });
});
