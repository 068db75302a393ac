/**
 * The client keeps its traffic within the server's announced rate budget:
 * beyond it messages wait, in order (a pong first), and leave as it refills.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SendPacer, utf8Length } from '../../../src/client/pacer.js';
import { accept, DEFAULT_LIMITS, fakeClock, flush, makeClient } from './fakes.js';

describe('SendPacer', () => {
  test('a burst (less a margin of 2), then the rate (less 10 %)', () => {
    const p = new SendPacer({ perSecond: 10, burst: 5 }, { perSecond: 1e6, burst: 1e6 }, 0);
    for (let i = 0; i < 3; i++) {
      assert.equal(p.waitMs(10, 0), 0);
      p.take(10, 0);
    }
    assert.equal(p.waitMs(10, 0), 112, 'one token at 9/s');
    assert.equal(p.waitMs(10, 112), 0);
  });

  test('bytes count too; a message larger than the byte burst waits for a full bucket, not forever', () => {
    const p = new SendPacer({ perSecond: 1000, burst: 1000 }, { perSecond: 1000, burst: 102 }, 0);
    p.take(100, 0);
    // 100 of the 100 usable bytes (102 less the margin) are gone: 50 more at 900/s (1000 less 10 %) take 55.6 ms.
    assert.equal(p.waitMs(50, 0), 56);
    assert.equal(p.waitMs(5000, 1000), 0, 'full after a second: the big one goes');
  });

  test('utf8Length counts what the server counts', () => {
    for (const s of ['', 'abc', 'é', '€', '😀', 'a😀é€z', '\ud800x']) {
      assert.equal(utf8Length(s), Buffer.byteLength(s), JSON.stringify(s));
    }
  });
});

describe('the client paces to the budget in the auth reply', () => {
  test('publications beyond it wait and leave in order as it refills; a pong goes ahead of them', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { token: 'tok' });
    h.client.connect();
    const ws = await accept(h, { limits: { ...DEFAULT_LIMITS, messageRate: { perSecond: 10, burst: 6 }, byteRate: { perSecond: 1e6, burst: 1e6 } } });
    for (let i = 0; i < 8; i++) void h.client.publish('chat/a', i).catch(() => {});
    await flush();
    // Burst 6 - margin 2 - the auth = 3 now.
    assert.deepEqual(ws.sentOps('pub').map((m) => m.data), [0, 1, 2]);
    ws.receive({ op: 'ping' });
    await clock.tick(112);
    assert.equal(ws.sent.at(-1)!.op, 'pong', 'the pong went first');
    assert.deepEqual(ws.sentOps('pub').map((m) => m.data), [0, 1, 2]);
    // 9 per second: one every 112 ms (ticks in steps: the mock clock jumps to the end of a tick at once).
    for (let i = 0; i < 4; i++) await clock.tick(112);
    assert.deepEqual(ws.sentOps('pub').map((m) => m.data), [0, 1, 2, 3, 4, 5, 6]);
    await clock.tick(112);
    assert.deepEqual(ws.sentOps('pub').map((m) => m.data), [0, 1, 2, 3, 4, 5, 6, 7]);
    h.client.close();
  });
});
