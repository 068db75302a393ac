/**
 * A session's hidden class (V8's map) stays the same when the keep-alive
 * stamps its first ping: the field started as the small integer 0, a
 * timestamp in ms since 1970 is not one, and the change of representation
 * gave every session a new map at the first ping, which threw away the
 * optimized code of the whole delivery path (a game server's ticks ran twice
 * as long for a while, 25 s after it started). Its own file: the test runner
 * gives each file a fresh process, and the map must not have been changed by
 * another test before this one looks.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import v8 from 'node:v8';
import { settle, setup } from './fakes.js';

test("a ping's timestamp does not change the session's hidden class (it did, and V8 threw away the delivery path's optimized code)", async (t) => {
  v8.setFlagsFromString('--allow-natives-syntax');
  const sameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;
  t.mock.timers.enable({ apis: ['setInterval'] });
  // A real clock's reading: ms since 1970 is far from a small integer.
  let clock = Date.now();
  const h = setup({ ping: { intervalMs: 1600, timeoutMs: 10_000 }, now: () => clock });
  t.after(() => h.close());
  const [first, second] = [h.connect('a'), h.connect('b')];
  assert.ok(sameMap(first.session, second.session), 'two fresh sessions share a hidden class');
  // The first step of the first pass pings one of the two (a sixteenth of the interval's share, rounded up).
  clock += 1600;
  t.mock.timers.tick(1600);
  assert.equal(first.transport.pushes('ping').length, 1);
  assert.equal(second.transport.pushes('ping').length, 0);
  assert.ok(sameMap(first.session, second.session), 'the pinged session and the other still share a hidden class');
  await settle();
});
