/**
 * The arena's tick loop (examples/arena/lib/loop.js) on a scripted clock:
 * a tick's work includes what it set off (microtasks, nextTicks: the
 * fan-out and the socket writes), its synchronous part is told apart, and
 * a tick that starts late is counted as late — not as an overrun.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startTickLoop } from '../../../examples/arena/lib/loop.js';
import { until } from '../../support/wait.js';

/** Generous: only the real timers between ticks take time; the clock is scripted. */
const BOUND = 10_000;

describe('arena tick loop', () => {
  it('counts the microtasks and nextTicks a tick queued in its work, not in its synchronous part', async () => {
    let clock = 0;
    // 100 Hz: a period of 10 ms; each tick's follow-up work "takes" 30.
    const loop = startTickLoop(100, () => queueMicrotask(() => process.nextTick(() => (clock += 30))), { now: () => clock });
    try {
      await until(() => loop.stats().ticks >= 3, BOUND, 'three ticks');
      const s = loop.stats();
      assert.equal(s.p50Ms, 30);
      assert.equal(s.maxMs, 30);
      assert.equal(s.syncP99Ms, 0);
      assert.equal(s.overruns, s.ticks);
      assert.equal(s.missed, s.ticks);
      // Behind after each one, the schedule restarts at the end of the last: none starts late.
      assert.equal(s.late, 0);
      assert.equal(s.lateMaxMs, 0);
    } finally {
      loop.stop();
    }
  });

  it("measures a tick's CPU time apart from its wall time: waiting for a CPU is not work", async () => {
    let clock = 0;
    let cpu = 0;
    // Each tick: 2 ms of CPU, but 40 ms of wall time (the process was descheduled meanwhile).
    const loop = startTickLoop(
      100,
      () => {
        cpu += 2;
        clock += 40;
      },
      { now: () => clock, cpu: () => cpu },
    );
    try {
      await until(() => loop.stats().ticks >= 3, BOUND, 'three ticks');
      const s = loop.stats();
      assert.equal(s.maxMs, 40);
      assert.equal(s.overruns, s.ticks);
      assert.equal(s.cpuP50Ms, 2);
      assert.equal(s.cpuMaxMs, 2);
      assert.equal(s.cpuOverruns, 0);
    } finally {
      loop.stop();
    }
  });

  it('reports a tick that started late as late, with its lateness, and not as an overrun', async () => {
    let clock = 0;
    let ticks = 0;
    const loop = startTickLoop(
      100,
      () => {
        clock += 1;
        // After the first tick has finished (its end is taken in the setImmediate queued after this
        // one's), the process "stalls" 100 ms before the second is due (19 ms of real time later).
        if (++ticks === 1) setImmediate(() => setImmediate(() => (clock += 100)));
      },
      { now: () => clock },
    );
    try {
      await until(() => loop.stats().ticks >= 3, BOUND, 'three ticks');
      const s = loop.stats();
      assert.equal(s.overruns, 0);
      assert.equal(s.maxMs, 1);
      assert.equal(s.syncP99Ms, 1);
      // Tick 2 was due at 20 and started at 101.
      assert.equal(s.late, 1);
      // It finished after the third was due (30): missed, through no fault of its own work.
      assert.equal(s.missed, 1);
      assert.equal(s.lateMaxMs, 81);
      assert.equal(s.lateP50Ms, 0);
    } finally {
      loop.stop();
    }
  });

  it('counts a tick that started late and finished after the next was due as missed, though neither late nor an overrun', async () => {
    let clock = 0;
    let ticks = 0;
    // 100 Hz: each tick works 6 ms. After the first, the process "stalls" 20 ms: the second, due at
    // 20, starts at 26 and ends at 32, after the third was due (30).
    const loop = startTickLoop(
      100,
      () => {
        clock += 6;
        if (++ticks === 1) setImmediate(() => setImmediate(() => (clock += 20)));
      },
      { now: () => clock },
    );
    try {
      await until(() => loop.stats().ticks >= 3, BOUND, 'three ticks');
      const s = loop.stats();
      assert.equal(s.overruns, 0);
      assert.equal(s.late, 0);
      assert.equal(s.lateMaxMs, 6);
      assert.equal(s.missed, 1);
    } finally {
      loop.stop();
    }
  });

  it('counts afresh after resetStats', async () => {
    let clock = 0;
    const loop = startTickLoop(100, () => (clock += 20), { now: () => clock });
    try {
      await until(() => loop.stats().ticks >= 2, BOUND, 'two ticks');
      loop.resetStats();
      assert.equal(loop.stats().ticks, 0);
      assert.equal(loop.stats().p99Ms, 0);
      await until(() => loop.stats().ticks >= 1, BOUND, 'a tick after the reset');
      assert.equal(loop.stats().overruns, loop.stats().ticks);
    } finally {
      loop.stop();
    }
  });
});
