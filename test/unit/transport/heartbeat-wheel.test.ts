/**
 * The heartbeat timing wheel (transport/heartbeat.ts) with recording members:
 * live members are pinged again and again and never expire, silent ones
 * expire once, removed ones are left alone, and the wheel's one timer stops
 * when it is empty (nothing keeps the process busy).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HeartbeatWheel, type HeartbeatMember } from '../../../src/transport/heartbeat.js';
import { sleep } from '../../support/wait.js';

class Member implements HeartbeatMember {
  awaitingPong = false;
  _hbNext: HeartbeatMember | null = null;
  _hbPrev: HeartbeatMember | null = null;
  _hbSlot = -1;
  _hbPinged = false;
  _hbPingAt = 0;
  pings = 0;
  expired = 0;
  constructor(private readonly answers: boolean) {}
  _heartbeatPing(): void {
    this.pings++;
    // A live peer answers at once (anything it sends clears the flag).
    if (this.answers) setImmediate(() => (this.awaitingPong = false));
  }
  _heartbeatExpired(): void {
    this.expired++;
  }
}

async function until(check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(10);
  }
}

for (const [interval, timeout] of [
  [40, 40],
  [40, 120],
  [120, 40],
] as const) {
  test(`interval ${interval} ms, timeout ${timeout} ms: 200 live members pinged repeatedly, 20 silent ones expire once each`, async () => {
    const wheel = new HeartbeatWheel({ interval, timeout });
    const live = Array.from({ length: 200 }, () => new Member(true));
    const silent = Array.from({ length: 20 }, () => new Member(false));
    for (const m of [...live, ...silent]) wheel.add(m);
    assert.equal(wheel.size, 220);
    await until(() => silent.every((m) => m.expired === 1) && live.every((m) => m.pings >= 3));
    assert.ok(live.every((m) => m.expired === 0), 'a live member expired');
    assert.ok(silent.every((m) => m.pings === 1), 'a silent member is pinged once, then expires');
    assert.equal(wheel.size, 200);
    // Removing (what a closing connection does) is idempotent, also for members the wheel dropped.
    for (const m of [...live, ...silent]) wheel.remove(m);
    for (const m of live) wheel.remove(m);
    assert.equal(wheel.size, 0);
    const pings = live.map((m) => m.pings);
    await sleep(Math.max(interval, timeout) * 3);
    assert.deepEqual(
      live.map((m) => m.pings),
      pings,
      'no ping after removal',
    );
    assert.equal((wheel as unknown as { timer: unknown }).timer, null, 'the timer stops when the wheel is empty');
  });
}

test('a timeout longer than the interval: live members are pinged every interval (not every timeout) while a silent one waits out its timeout', async () => {
  const wheel = new HeartbeatWheel({ interval: 40, timeout: 1000 });
  const live = new Member(true);
  const silent = new Member(false);
  wheel.add(live);
  wheel.add(silent);
  await until(() => silent.expired === 1);
  // Both joined together: by the silent member's deadline (one interval plus the timeout), the live one was pinged about 25 times.
  assert.ok(live.pings >= 10, `live member pinged ${live.pings} times before the silent one expired`);
  assert.equal(silent.pings, 1, 'no second ping before the answer to the first');
  assert.equal(live.expired, 0);
  wheel.remove(live);
});

test('members that join together get their first pings spread over the last quarter of the interval, not all in one slot', () => {
  // 25 s (the server default): 250 ms steps, so the quarter is 25 slots.
  const wheel = new HeartbeatWheel({ interval: 25_000, timeout: 10_000 });
  const members = Array.from({ length: 1000 }, () => new Member(true));
  for (const m of members) wheel.add(m);
  const perSlot = new Map<number, number>();
  for (const m of members) perSlot.set(m._hbSlot, (perSlot.get(m._hbSlot) ?? 0) + 1);
  const cursor = (wheel as unknown as { cursor: number }).cursor;
  const stepsAhead = [...perSlot.keys()].map((slot) => slot - cursor);
  assert.ok(Math.min(...stepsAhead) >= 75 && Math.max(...stepsAhead) <= 100, `first pings 18.75–25 s ahead: ${Math.min(...stepsAhead)}..${Math.max(...stepsAhead)} steps`);
  assert.ok(perSlot.size >= 24, `spread over ${perSlot.size} slots`);
  assert.ok(Math.max(...perSlot.values()) <= 50, `at most ${Math.max(...perSlot.values())} in one slot (1,000 over 25)`);
  for (const m of members) wheel.remove(m);
  assert.equal(wheel.size, 0);
});
