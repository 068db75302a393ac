/**
 * The dashboard feed (src/server/dashboard-feed.ts): snapshots read the
 * server's prom-client metrics and channel stats, rates are counter
 * differences per second, and snapshots are published on an interval.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { DASHBOARD_CHANNEL, MAX_CHANNELS, startDashboardFeed, type DashboardSnapshot } from '../../../src/server/dashboard-feed.js';
import { Metrics } from '../../../src/server/metrics.js';
import { closeMeaning } from '../../../src/client/index.js';

function source(channels: { channel: string; subscribers: number }[] = []) {
  const metrics = new Metrics({ defaultMetrics: false });
  const published: { channel: string; data: DashboardSnapshot }[] = [];
  return {
    metrics,
    published,
    hub: { channelStats: () => channels },
    publish: async (channel: string, data: unknown) => {
      published.push({ channel, data: data as DashboardSnapshot });
      return { offset: published.length, epoch: 'e', duplicate: false };
    },
  };
}

/** Let pending promise callbacks run (setImmediate is not mocked). */
const flush = () => new Promise((resolve) => setImmediate(resolve));

/** Mock setInterval and Date (from t = 1 000 000 ms); `tick` advances them and lets the snapshots settle. */
function fakeClock(t: TestContext): { tick(ms: number): Promise<void> } {
  t.mock.timers.enable({ apis: ['setInterval', 'Date'], now: 1_000_000 });
  return {
    async tick(ms: number) {
      t.mock.timers.tick(ms);
      for (let i = 0; i < 5; i++) await flush();
    },
  };
}

describe('dashboard feed', () => {
  it('reports connections by transport, subscriptions, channels (busiest first), closes and errors', async () => {
    const s = source([
      { channel: 'chat/a', subscribers: 2 },
      { channel: 'chat/b', subscribers: 5 },
      { channel: 'empty', subscribers: 0 },
    ]);
    const m = s.metrics;
    m.connectionOpened('websocket');
    m.connectionOpened('websocket');
    m.connectionOpened('sse');
    m.connectionOpened('websocket');
    m.connectionClosed('websocket', 1001);
    m.subscriptionsChanged(7);
    m.requestFailed('pub', 403);
    m.handshakeRejections.inc({ status: '403' });
    const feed = startDashboardFeed(s, { intervalMs: 60_000 });
    try {
      const snap = await feed.snapshot();
      assert.equal(snap.v, 1);
      assert.deepEqual(snap.connections, { total: 3, byTransport: { websocket: 2, sse: 1 } });
      assert.equal(snap.connectionsOpened, 4);
      assert.equal(snap.subscriptions, 7);
      assert.deepEqual(snap.channels, [
        { channel: 'chat/b', subscribers: 5 },
        { channel: 'chat/a', subscribers: 2 },
      ]);
      assert.equal(snap.channelCount, 2);
      assert.deepEqual(snap.closes, [{ code: 1001, meaning: snap.closes[0]!.meaning, count: 1 }]);
      assert.match(snap.closes[0]!.meaning, /going away/i);
      assert.deepEqual(snap.errors, [{ op: 'pub', code: 403, count: 1 }]);
      assert.deepEqual(snap.rejections, [{ status: 403, count: 1 }]);
      assert.ok(snap.process.rssBytes > 0);
      assert.equal(snap.process.eventLoopLagS, null, 'no default metrics here');
    } finally {
      feed.stop();
    }
  });

  it('labels the realtime close codes (4xxx) with their meaning from the realtime table, as the SDK does, not "application-defined code"', async () => {
    const s = source();
    s.metrics.connectionOpened('websocket');
    s.metrics.connectionClosed('websocket', 4501);
    s.metrics.connectionOpened('websocket');
    s.metrics.connectionClosed('websocket', 4001);
    s.metrics.connectionOpened('websocket');
    s.metrics.connectionClosed('websocket', 4321); // not in the table: still application-defined
    const feed = startDashboardFeed(s, { intervalMs: 60_000 });
    try {
      const snap = await feed.snapshot();
      const meaning = (code: number) => snap.closes.find((c) => c.code === code)?.meaning;
      assert.equal(meaning(4501), 'bad request: a message that is not JSON / MessagePack (do not reconnect)');
      assert.equal(meaning(4001), 'no auth message in time (reconnect)');
      assert.equal(meaning(4321), 'application-defined code (reconnect)');
      for (const code of [4501, 4001]) assert.equal(meaning(code), closeMeaning(code), 'the same text as the SDK');
      // Prometheus carries the same label.
      const text = await s.metrics.registry.metrics();
      assert.match(text, /^switchboard_closes_total\{code="4501",meaning="bad request: a message that is not JSON \/ MessagePack \(do not reconnect\)"\} 1$/m);
    } finally {
      feed.stop();
    }
  });

  it('with the default process metrics: named switchboard_process_* and switchboard_nodejs_* (one prefix), event-loop lag in the snapshot', async () => {
    const metrics = new Metrics();
    const feed = startDashboardFeed({ ...source(), metrics }, { intervalMs: 60_000 });
    try {
      const snap = await feed.snapshot();
      assert.equal(typeof snap.process.eventLoopLagS, 'number', 'event-loop lag from switchboard_nodejs_eventloop_lag_seconds');
      const text = await metrics.registry.metrics();
      assert.match(text, /^switchboard_process_cpu_user_seconds_total /m);
      assert.match(text, /^switchboard_nodejs_eventloop_lag_seconds /m);
      assert.doesNotMatch(text, /switchboard_process_process_|switchboard_process_nodejs_/);
    } finally {
      feed.stop();
    }
  });

  it('computes rates per second from counter differences between snapshots', async (t) => {
    const clock = fakeClock(t);
    const s = source();
    const feed = startDashboardFeed(s, { intervalMs: 60_000 });
    try {
      const first = await feed.snapshot();
      assert.equal(first.intervalS, 0);
      assert.deepEqual(first.rates, { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, deliveries: 0 });
      for (let i = 0; i < 10; i++) s.metrics.messageIn(100);
      s.metrics.messagesOut(4, 400);
      await clock.tick(200);
      const snap = await feed.snapshot();
      assert.equal(snap.time, 1_000_200);
      assert.equal(snap.intervalS, 0.2);
      // 10 messages of 100 bytes in 0.2 s; 4 messages out (400 bytes) in 0.2 s.
      assert.deepEqual(snap.rates, { messagesIn: 50, messagesOut: 20, bytesIn: 5000, bytesOut: 2000, deliveries: 0 });
      assert.equal(snap.totals.messagesIn, 10);
      assert.equal(snap.totals.messagesOut, 4);
      await clock.tick(1000);
      const next = await feed.snapshot();
      assert.equal(next.intervalS, 1);
      assert.equal(next.rates.messagesIn, 0);
      assert.equal(next.uptimeS, 1);
    } finally {
      feed.stop();
    }
  });

  it('publishes a snapshot on its channel every interval, and stops', async (t) => {
    const clock = fakeClock(t);
    const s = source(Array.from({ length: MAX_CHANNELS + 10 }, (_, i) => ({ channel: `c/${i}`, subscribers: 1 })));
    const feed = startDashboardFeed(s, { intervalMs: 40 });
    // The first one after one interval, not before.
    await clock.tick(39);
    assert.equal(s.published.length, 0);
    await clock.tick(1);
    assert.equal(s.published.length, 1);
    await clock.tick(40);
    await clock.tick(40);
    assert.deepEqual(
      s.published.map((p) => [p.channel, p.data.time]),
      [
        [DASHBOARD_CHANNEL, 1_000_040],
        [DASHBOARD_CHANNEL, 1_000_080],
        [DASHBOARD_CHANNEL, 1_000_120],
      ],
    );
    const last = s.published[2]!.data;
    assert.equal(last.intervalS, 0.04);
    assert.equal(last.channels.length, MAX_CHANNELS);
    assert.equal(last.channelCount, MAX_CHANNELS + 10);
    feed.stop();
    await clock.tick(400);
    assert.equal(s.published.length, 3, 'published after stop()');
  });

  it('reports a failed publication and goes on', async (t) => {
    const clock = fakeClock(t);
    const s = source();
    const errors: unknown[] = [];
    let calls = 0;
    const feed = startDashboardFeed(
      {
        ...s,
        publish: async () => {
          calls++;
          throw new Error('broker down');
        },
      },
      { intervalMs: 30, onError: (err) => errors.push(err) },
    );
    await clock.tick(30);
    assert.equal(calls, 1);
    assert.equal(errors.length, 1);
    await clock.tick(30);
    await clock.tick(30);
    feed.stop();
    await clock.tick(30);
    assert.equal(calls, 3, 'one attempt per interval, going on after each failure');
    assert.deepEqual(errors.map(String), Array(3).fill('Error: broker down'));
  });
});
