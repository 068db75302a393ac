/**
 * The dashboard feed (src/server/dashboard-feed.ts): snapshots read the
 * server's prom-client metrics and channel stats, rates are counter
 * differences per second, and snapshots are published on an interval.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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

  it('computes rates per second from counter differences between snapshots', async () => {
    const s = source();
    const feed = startDashboardFeed(s, { intervalMs: 60_000 });
    try {
      await feed.snapshot();
      for (let i = 0; i < 10; i++) s.metrics.messageIn(100);
      s.metrics.messagesOut(4, 400);
      await sleep(200);
      const snap = await feed.snapshot();
      assert.ok(snap.intervalS >= 0.19 && snap.intervalS < 1, `interval ${snap.intervalS}`);
      // 10 messages in ~0.2 s: ~50/s.
      assert.ok(snap.rates.messagesIn > 20 && snap.rates.messagesIn <= 55, `messagesIn ${snap.rates.messagesIn}/s`);
      assert.ok(snap.rates.bytesIn > 2000, `bytesIn ${snap.rates.bytesIn}/s`);
      assert.equal(snap.totals.messagesIn, 10);
      assert.equal(snap.totals.messagesOut, 4);
      const next = await feed.snapshot();
      assert.equal(next.rates.messagesIn, 0);
    } finally {
      feed.stop();
    }
  });

  it('publishes a snapshot on its channel every interval, and stops', async () => {
    const s = source(Array.from({ length: MAX_CHANNELS + 10 }, (_, i) => ({ channel: `c/${i}`, subscribers: 1 })));
    const feed = startDashboardFeed(s, { intervalMs: 40 });
    await sleep(190);
    feed.stop();
    const n = s.published.length;
    assert.ok(n >= 3, `${n} snapshots`);
    assert.ok(s.published.every((p) => p.channel === DASHBOARD_CHANNEL));
    const last = s.published[n - 1]!.data;
    assert.equal(last.channels.length, MAX_CHANNELS);
    assert.equal(last.channelCount, MAX_CHANNELS + 10);
    await sleep(100);
    assert.equal(s.published.length, n, 'published after stop()');
  });

  it('reports a failed publication and goes on', async () => {
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
    await sleep(130);
    feed.stop();
    assert.ok(calls >= 2, `${calls} attempts`);
    assert.ok(errors.length >= 2);
    assert.match(String(errors[0]), /broker down/);
  });
});
