/**
 * The dashboard feed: once a second, a snapshot of the server's own metrics
 * (the prom-client values of `server.metrics` and `hub.channelStats()`)
 * published to a channel (`sys/dashboard`) through the realtime protocol, so
 * the dashboard page (web/dashboard.html) is just another subscriber.
 *
 * Rates (messages and bytes per second) are the counters' differences
 * between two snapshots divided by the time between them. The channel's
 * namespace must forbid client publications (`clientPublish: false`),
 * otherwise any client could forge the numbers: `switchboard serve` starts
 * the feed only then (in development mode it configures such a `sys`
 * namespace itself).
 */
import { closeMeaning } from '../wire/close-codes.js';
import type { Metrics } from './metrics.js';

export const DASHBOARD_CHANNEL = 'sys/dashboard';

/** What one snapshot carries (the `data` of each publication on the channel). */
export interface DashboardSnapshot {
  /** Format version of this object. */
  v: 1;
  /** The node that took it (`RealtimeServer#nodeId`): in a cluster every node publishes its own to the channel. */
  node: string;
  /** Server time, ms since the epoch. */
  time: number;
  /** Seconds since the feed started. */
  uptimeS: number;
  /** Seconds between this snapshot and the one before (the window of the rates). */
  intervalS: number;
  /** Open realtime connections, in all and by transport (`websocket`, `sse`, `poll`). */
  connections: { total: number; byTransport: Record<string, number> };
  /** Connections opened since the start. */
  connectionsOpened: number;
  /** Active subscriptions on this node. */
  subscriptions: number;
  /** Per second over the last interval. */
  rates: { messagesIn: number; messagesOut: number; bytesIn: number; bytesOut: number; deliveries: number };
  /** Counters since the start. */
  totals: { messagesIn: number; messagesOut: number; bytesIn: number; bytesOut: number; deliveries: number };
  /** Channels (and patterns) with local subscribers, most subscribers first, at most {@link MAX_CHANNELS}. */
  channels: { channel: string; subscribers: number }[];
  /** How many channels have subscribers (all of them, beyond the list). */
  channelCount: number;
  /** Closed connections by close code, since the start, most frequent first. */
  closes: { code: number; meaning: string; count: number }[];
  /** Requests answered with an error, by op and error code. */
  errors: { op: string; code: number; count: number }[];
  /** Upgrades refused before the handshake, by HTTP status. */
  rejections: { status: number; count: number }[];
  /** Messages dropped or connections cut, by reason. */
  dropped: { reason: string; count: number }[];
  /** Process: resident memory and heap in use, in bytes; event-loop lag in seconds (null when default metrics are off). */
  process: { rssBytes: number; heapUsedBytes: number; eventLoopLagS: number | null };
}

/** Channels listed per snapshot (the busiest). */
export const MAX_CHANNELS = 50;

/** What the feed needs of a server (a `RealtimeServer` has it all). */
export interface DashboardSource {
  /** Names the node in each snapshot. Default `''`. */
  readonly nodeId?: string;
  readonly metrics: Metrics;
  readonly hub: { channelStats(): { channel: string; subscribers: number }[] };
  publish(channel: string, data: unknown): Promise<unknown>;
}

export interface DashboardFeedOptions {
  /** Default `sys/dashboard`. */
  channel?: string;
  /** Default 1000 ms. */
  intervalMs?: number;
  /** Called when a snapshot cannot be taken or published (the feed goes on). */
  onError?: (err: unknown) => void;
}

export interface DashboardFeed {
  readonly channel: string;
  /** Take a snapshot now (also advances the rate window). */
  snapshot(): Promise<DashboardSnapshot>;
  /** Stop publishing. */
  stop(): void;
}

interface Totals {
  at: number;
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  deliveries: number;
}

type Labelled = { value: number; labels: Record<string, string | number | undefined> };

async function values(metric: { get(): Promise<{ values: Labelled[] }> } | undefined): Promise<Labelled[]> {
  if (!metric) return [];
  return (await metric.get()).values;
}

async function sum(metric: { get(): Promise<{ values: Labelled[] }> }): Promise<number> {
  let n = 0;
  for (const v of await values(metric)) n += v.value;
  return n;
}

/**
 * A snapshot taker with a rate window of its own: each call's rates are the
 * counters' growth since its previous call (0 on the first). The feed and the
 * admin UI (admin.ts) each have one, so neither moves the other's window.
 */
export function createSnapshotter(server: Omit<DashboardSource, 'publish'>): () => Promise<DashboardSnapshot> {
  const m = server.metrics;
  const startedAt = Date.now();
  let last: Totals | null = null;

  return async (): Promise<DashboardSnapshot> => {
    const now = Date.now();
    const [connections, opened, subscriptions, messagesIn, messagesOut, bytesIn, bytesOut, deliveries, closes, errors, rejections, dropped] =
      await Promise.all([
        values(m.connections),
        sum(m.connectionsTotal),
        sum(m.subscriptions),
        sum(m.messagesIn),
        sum(m.messagesOutTotal),
        sum(m.bytesIn),
        sum(m.bytesOut),
        sum(m.deliveries),
        values(m.closes),
        values(m.errors),
        values(m.handshakeRejections),
        values(m.droppedTotal),
      ]);
    const totals: Totals = { at: now, messagesIn, messagesOut, bytesIn, bytesOut, deliveries };
    const intervalS = last ? Math.max(0.001, (now - last.at) / 1000) : 0;
    const rate = (key: Exclude<keyof Totals, 'at'>): number => (last ? round(Math.max(0, totals[key] - last[key]) / intervalS) : 0);
    const rates = {
      messagesIn: rate('messagesIn'),
      messagesOut: rate('messagesOut'),
      bytesIn: rate('bytesIn'),
      bytesOut: rate('bytesOut'),
      deliveries: rate('deliveries'),
    };
    last = totals;

    const byTransport: Record<string, number> = {};
    let total = 0;
    for (const v of connections) {
      if (v.value === 0) continue;
      const t = String(v.labels.transport ?? 'unknown');
      byTransport[t] = (byTransport[t] ?? 0) + v.value;
      total += v.value;
    }
    const stats = server.hub.channelStats().filter((c) => c.subscribers > 0);
    stats.sort((a, b) => b.subscribers - a.subscribers || (a.channel < b.channel ? -1 : 1));

    const reg = m.registry;
    const single = async (name: string): Promise<number | null> => {
      const found = await values(reg.getSingleMetric(name) as { get(): Promise<{ values: Labelled[] }> } | undefined);
      return found.length > 0 ? found[0]!.value : null;
    };
    // Memory straight from the process (prom-client fills its heap gauges only on a full scrape).
    const memory = process.memoryUsage();
    const eventLoopLagS = await single('switchboard_nodejs_eventloop_lag_seconds');

    return {
      v: 1,
      node: server.nodeId ?? '',
      time: now,
      uptimeS: Math.round((now - startedAt) / 1000),
      intervalS: round(intervalS),
      connections: { total, byTransport },
      connectionsOpened: opened,
      subscriptions,
      rates,
      totals: { messagesIn, messagesOut, bytesIn, bytesOut, deliveries },
      channels: stats.slice(0, MAX_CHANNELS),
      channelCount: stats.length,
      closes: closes
        .filter((v) => v.value > 0)
        // The meaning from the realtime close-code table (4xxx codes by name, not "application-defined").
        .map((v) => ({ code: Number(v.labels.code), meaning: closeMeaning(Number(v.labels.code)), count: v.value }))
        .sort((a, b) => b.count - a.count || a.code - b.code),
      errors: errors
        .filter((v) => v.value > 0)
        .map((v) => ({ op: String(v.labels.op ?? ''), code: Number(v.labels.code), count: v.value }))
        .sort((a, b) => b.count - a.count),
      rejections: rejections.filter((v) => v.value > 0).map((v) => ({ status: Number(v.labels.status), count: v.value })),
      dropped: dropped.filter((v) => v.value > 0).map((v) => ({ reason: String(v.labels.reason ?? ''), count: v.value })),
      process: { rssBytes: memory.rss, heapUsedBytes: memory.heapUsed, eventLoopLagS },
    };
  };
}

/** Start publishing snapshots of `server` every `intervalMs`. The first one goes out after one interval. */
export function startDashboardFeed(server: DashboardSource, options: DashboardFeedOptions = {}): DashboardFeed {
  const channel = options.channel ?? DASHBOARD_CHANNEL;
  const intervalMs = options.intervalMs ?? 1000;
  const snapshot = createSnapshotter(server);
  let busy = false;

  const tick = (): void => {
    // A slow broker must not pile up publications: skip a tick while one is under way.
    if (busy) return;
    busy = true;
    snapshot()
      .then((snap) => server.publish(channel, snap))
      .catch((err: unknown) => options.onError?.(err))
      .finally(() => {
        busy = false;
      });
  };
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  // The first call starts the rate window, so the first published snapshot already has rates.
  void snapshot().catch((err: unknown) => options.onError?.(err));

  return {
    channel,
    snapshot,
    stop: () => clearInterval(timer),
  };
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
