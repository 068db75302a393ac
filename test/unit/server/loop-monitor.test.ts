/**
 * The event-loop delay sampler behind `switchboard_nodejs_eventloop_lag_*`
 * (src/server/loop-monitor.ts): once per `idleMs` while the loop idles,
 * every `busyMs` while it works, a stall always seen, the metric still
 * reported through `Metrics`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { acquireLoopMonitor, LoopMonitor, releaseLoopMonitor } from '../../../src/server/loop-monitor.js';
import { Metrics } from '../../../src/server/metrics.js';
import { sleep, until, WAIT } from '../../support/wait.js';
import '../../support/leak-check.js';

/** Keep the loop busy (`busyMs` of work in every `everyMs`) for `forMs`. */
async function work(forMs: number, busyMs = 8, everyMs = 10): Promise<void> {
  const end = performance.now() + forMs;
  while (performance.now() < end) {
    const until = performance.now() + busyMs;
    while (performance.now() < until);
    await sleep(everyMs - busyMs);
  }
}

function block(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

test('an idle loop is sampled once per idleMs; a busy one every busyMs; idle again, coarse again', async (t) => {
  // A high threshold here: on a loaded machine, being preempted counts as busy time (wall clock) in an idle window.
  const monitor = new LoopMonitor({ busyMs: 10, idleMs: 200, busyUtilization: 0.25 });
  t.after(() => monitor.stop());
  monitor.start();
  // Idle (the test only sleeps, once the process has started up): the coarse period, about one sample per 200 ms.
  await sleep(600);
  await until(() => monitor.resolutionMs === 200, WAIT, 'the idle period');
  monitor.take();
  await sleep(1000);
  const idle = monitor.take();
  assert.equal(monitor.resolutionMs, 200);
  assert.ok(idle.count >= 1 && idle.count <= 8, `${idle.count} samples in an idle second (prom-client's monitor: 100)`);
  // Busy: the fine period, many samples.
  await work(600);
  assert.equal(monitor.resolutionMs, 10);
  assert.ok(monitor.take().count > 8);
  await until(() => monitor.resolutionMs === 200, WAIT, 'the idle period again');
});

test('a stall of the loop is recorded (by the coarse sample too): max and p99 at least the stall minus one period', async (t) => {
  const monitor = new LoopMonitor({ busyMs: 10, idleMs: 200 });
  t.after(() => monitor.stop());
  monitor.start();
  await until(() => monitor.resolutionMs === 200, WAIT, 'the idle period');
  monitor.take();
  // Longer than a period: a sample falls due inside it, whatever the phase.
  block(500);
  await sleep(50);
  const s = monitor.take();
  assert.ok(s.count >= 1);
  assert.ok(s.max >= 0.3 && s.max < 5, `max ${s.max} s after a 500 ms stall with a 200 ms period`);
  assert.ok(s.p99 >= 0.3, `p99 ${s.p99} s`);
  // Reset by take().
  assert.equal(monitor.take().count, 0);
});

test('one monitor per process, running while held', () => {
  const a = acquireLoopMonitor();
  const b = acquireLoopMonitor();
  assert.equal(a, b);
  assert.equal(a.running, true);
  releaseLoopMonitor();
  assert.equal(a.running, true);
  releaseLoopMonitor();
  assert.equal(a.running, false);
  releaseLoopMonitor(); // one too many: no-op
  assert.equal(a.running, false);
});

test("Metrics reports prom-client's event-loop delay gauges from the monitor, reset at each scrape; close() stops it", async () => {
  const metrics = new Metrics();
  try {
    assert.equal(acquireLoopMonitor().running, true);
    releaseLoopMonitor();
    await metrics.registry.metrics(); // reset
    block(1100); // longer than the idle period (1 s)
    await sleep(20);
    const text = await metrics.registry.metrics();
    const read = (name: string): number => {
      const m = new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text);
      assert.ok(m, `${name} missing from the scrape`);
      return Number(m[1]);
    };
    for (const stat of ['min', 'mean', 'stddev', 'p50', 'p90']) assert.ok(read(`switchboard_nodejs_eventloop_lag_${stat}_seconds`) >= 0);
    assert.ok(read('switchboard_nodejs_eventloop_lag_max_seconds') >= 0.05, 'the stall is in max');
    assert.ok(read('switchboard_nodejs_eventloop_lag_p99_seconds') >= 0.05, 'and in p99');
    assert.match(text, /^switchboard_nodejs_eventloop_lag_seconds /m, "prom-client's own setImmediate lag stays");
    assert.equal((text.match(/^# HELP switchboard_nodejs_eventloop_lag_p99_seconds /gm) ?? []).length, 1, 'one p99 gauge, not two');
    const again = await metrics.registry.metrics();
    assert.ok(Number(/^switchboard_nodejs_eventloop_lag_max_seconds ([0-9.e+-]+)$/m.exec(again)![1]) < 0.05, 'reset by the previous scrape');
  } finally {
    metrics.close();
  }
  const shared = acquireLoopMonitor();
  releaseLoopMonitor();
  assert.equal(shared.running, false, 'stopped with the last holder');
  metrics.close(); // twice: no-op
});
