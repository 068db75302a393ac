/**
 * Prometheus metrics (prom-client) fed by the hub's observer calls. Every
 * call only increments a counter or observes a histogram.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { closeMeaning } from '../wire/close-codes.js';
import type { HubObserver } from '../realtime/transport.js';
import type { X509Certificate } from 'node:crypto';
import { expirySeconds, type TlsObserver } from './tls.js';
import { acquireLoopMonitor, releaseLoopMonitor, type LoopMonitor } from './loop-monitor.js';

/**
 * prom-client's event-loop delay gauges, fed here by the process's `LoopMonitor`
 * (loop-monitor.ts) instead of prom-client's own monitor, which wakes every 10 ms.
 */
const LOOP_DELAY_GAUGES = [
  ['min', 'The minimum recorded event loop delay.'],
  ['max', 'The maximum recorded event loop delay.'],
  ['mean', 'The mean of the recorded event loop delays.'],
  ['stddev', 'The standard deviation of the recorded event loop delays.'],
  ['p50', 'The 50th percentile of the recorded event loop delays.'],
  ['p90', 'The 90th percentile of the recorded event loop delays.'],
  ['p99', 'The 99th percentile of the recorded event loop delays.'],
] as const;
/**
 * The resolution given to prom-client's `monitorEventLoopDelay` so that its
 * timer never fires (2^31 − 1 ms, ~24.8 days): its gauges are replaced below,
 * and prom-client has no option to leave that one collector out.
 */
const PROM_CLIENT_MONITOR_NEVER_MS = 2 ** 31 - 1;

const WEBSOCKET_LABELS = { '1.1': { http_version: '1.1' }, '2': { http_version: '2' } } as const;

export class Metrics implements HubObserver, TlsObserver {
  readonly registry = new Registry();
  readonly connections: Gauge;
  readonly connectionsTotal: Counter;
  readonly closes: Counter;
  readonly subscriptions: Gauge;
  readonly messagesIn: Counter;
  readonly bytesIn: Counter;
  readonly messagesOutTotal: Counter;
  readonly bytesOut: Counter;
  readonly deliveryLatency: Histogram;
  readonly deliveries: Counter;
  readonly errors: Counter;
  readonly droppedTotal: Counter;
  readonly handshakeRejections: Counter;
  readonly gapsRefilled: Counter;
  readonly brokerUp: Gauge;
  readonly tlsReloads: Counter;
  readonly tlsCertificateExpiry: Gauge;
  readonly brokerRoundTrip: Histogram;
  readonly brokerProbesFailed: Counter;
  readonly brokerReconnects: Counter;
  readonly http2Sessions: Gauge;
  readonly http2SessionsTotal: Counter;
  readonly websockets: Gauge;
  readonly websocketsTotal: Counter;
  /** The event-loop delay sampler behind `switchboard_nodejs_eventloop_lag_*` (null without default metrics, or once closed). */
  private loopMonitor: LoopMonitor | null = null;
  /** Read at each scrape for `switchboard_broker_up` (the server sets it). */
  brokerAvailable: () => boolean = () => true;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.defaultMetrics !== false) {
      collectDefaultMetrics({ register: this.registry, prefix: 'switchboard_', eventLoopMonitoringPrecision: PROM_CLIENT_MONITOR_NEVER_MS });
      this.replaceLoopDelayGauges();
    }
    this.connections = new Gauge({ name: 'switchboard_connections', help: 'Open realtime connections, by transport (websocket, sse, poll)', labelNames: ['transport'], registers });
    this.connectionsTotal = new Counter({ name: 'switchboard_connections_total', help: 'Realtime connections opened, by transport', labelNames: ['transport'], registers });
    this.closes = new Counter({ name: 'switchboard_closes_total', help: 'Realtime connections closed, by close code and its meaning', labelNames: ['code', 'meaning'], registers });
    this.subscriptions = new Gauge({ name: 'switchboard_subscriptions', help: 'Active subscriptions (channels and patterns) of the connections on this node', registers });
    this.messagesIn = new Counter({ name: 'switchboard_messages_in_total', help: 'Realtime messages received from clients (every transport)', registers });
    this.bytesIn = new Counter({ name: 'switchboard_bytes_in_total', help: 'Bytes (UTF-8 for text) of the realtime messages received from clients', registers });
    this.messagesOutTotal = new Counter({ name: 'switchboard_messages_out_total', help: 'Realtime messages sent to clients: replies, pushes (presence, pings, refresh) and every publication delivered to each subscriber', registers });
    this.bytesOut = new Counter({ name: 'switchboard_bytes_out_total', help: 'Bytes (UTF-8 for text) of the messages counted by switchboard_messages_out_total, each delivery counted; before transport framing and compression', registers });
    this.deliveries = new Counter({ name: 'switchboard_deliveries_total', help: 'Publications delivered live to subscribers on this node, one per subscriber (replays of history on resubscribe are not counted)', registers });
    this.deliveryLatency = new Histogram({
      name: 'switchboard_publish_to_delivery_seconds',
      help: 'Time from a publication (its broker timestamp) to its fan-out on this node, once per publication that has local subscribers',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.errors = new Counter({ name: 'switchboard_request_errors_total', help: 'Requests answered with an error, by op and code', labelNames: ['op', 'code'], registers });
    this.droppedTotal = new Counter({ name: 'switchboard_dropped_total', help: 'Messages dropped or connections cut for their delivery, by reason (slow-consumer, slow-consumer-volatile, resume-lost, recovery-overflow, delivery-failed)', labelNames: ['reason'], registers });
    this.gapsRefilled = new Counter({ name: 'switchboard_broker_gaps_refilled_total', help: 'Publications this node missed in its broker fan-out and refilled from history', registers });
    const metrics = this;
    this.brokerUp = new Gauge({
      name: 'switchboard_broker_up',
      help: '1 while the broker and presence store are connected (always 1 for the memory broker)',
      registers,
      collect() {
        this.set(metrics.brokerAvailable() ? 1 : 0);
      },
    });
    this.tlsReloads = new Counter({ name: 'switchboard_tls_reloads_total', help: 'TLS certificate reloads (SIGHUP, a change of the files, reloadCertificates()), by result: success, failure (the old certificate kept)', labelNames: ['result'], registers });
    // Only with TLS: a server without a certificate exports no expiry (rather than a 0 that alerts would read as expired).
    this.tlsCertificateExpiry = new Gauge({ name: 'switchboard_tls_certificate_expiry_seconds', help: 'notAfter of the TLS certificate served now, in seconds since the epoch (alert on it minus time())', registers: [] });
    this.brokerRoundTrip = new Histogram({
      name: 'switchboard_broker_rtt_seconds',
      help: "Round trip of the broker probe: a message published through the broker's fan-out and received back by this node",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.brokerProbesFailed = new Counter({ name: 'switchboard_broker_probes_failed_total', help: 'Broker probes not answered in time (or refused while the broker was down); a silently dead subscription is made again', registers });
    this.brokerReconnects = new Counter({ name: 'switchboard_broker_reconnects_total', help: "Times the broker's subscriptions came back after its connection was lost (gaps refilled after each)", registers });
    this.http2Sessions = new Gauge({ name: 'switchboard_http2_sessions', help: 'Open HTTP/2 connections (sessions) on the TLS port, whatever their streams carry', registers });
    this.http2SessionsTotal = new Counter({ name: 'switchboard_http2_sessions_total', help: 'HTTP/2 connections (sessions) accepted', registers });
    this.websockets = new Gauge({ name: 'switchboard_websockets', help: 'Open WebSockets by the HTTP version that carries them: "1.1" (Upgrade, one TCP connection each) or "2" (RFC 8441, one stream of an HTTP/2 session)', labelNames: ['http_version'], registers });
    this.websocketsTotal = new Counter({ name: 'switchboard_websockets_total', help: 'WebSockets opened, by the HTTP version that carries them ("1.1" or "2")', labelNames: ['http_version'], registers });
    this.handshakeRejections = new Counter({ name: 'switchboard_handshake_rejections_total', help: 'WebSocket upgrades and fallback session openings refused, by HTTP status', labelNames: ['status'], registers });
  }

  /**
   * The `switchboard_nodejs_eventloop_lag_{min,…,p99}_seconds` gauges, same
   * names and meaning as prom-client's, read at each scrape from the shared
   * `LoopMonitor` (one timer that wakes every 10 ms only while the loop is
   * busy, once a second while it idles) and reset, as prom-client does.
   * prom-client's `switchboard_nodejs_eventloop_lag_seconds` (a setImmediate
   * timed at each scrape) stays as it is.
   */
  private replaceLoopDelayGauges(): void {
    const monitor = (this.loopMonitor = acquireLoopMonitor());
    const gauges: Gauge[] = [];
    for (const [stat, help] of LOOP_DELAY_GAUGES) {
      const name = `switchboard_nodejs_eventloop_lag_${stat}_seconds`;
      this.registry.removeSingleMetric(name);
      // The first gauge's collect (called first at each scrape) sets them all, as in prom-client.
      const collect =
        gauges.length === 0
          ? () => {
              const summary = monitor.take();
              LOOP_DELAY_GAUGES.forEach(([key], i) => gauges[i]!.set(summary[key]));
            }
          : undefined;
      gauges.push(new Gauge({ name, help, registers: [this.registry], collect }));
    }
  }

  /** Stop what runs on its own (the event-loop delay sampler, when no other Metrics holds it). */
  close(): void {
    if (this.loopMonitor === null) return;
    this.loopMonitor = null;
    releaseLoopMonitor();
  }

  /** An HTTP/2 session opened / closed (Http2SessionObserver). */
  sessionOpened(): void {
    this.http2Sessions.inc();
    this.http2SessionsTotal.inc();
  }
  sessionClosed(): void {
    this.http2Sessions.dec();
  }
  /** A WebSocket opened over HTTP/1.1 (`'1.1'`) or an HTTP/2 stream (`'2'`); returns its close report (call once). */
  websocketOpened(httpVersion: '1.1' | '2'): void {
    const labels = WEBSOCKET_LABELS[httpVersion];
    this.websockets.inc(labels);
    this.websocketsTotal.inc(labels);
  }
  /** One of those closed (a function of its own per connection would cost a closure each). */
  websocketClosed(httpVersion: '1.1' | '2'): void {
    this.websockets.dec(WEBSOCKET_LABELS[httpVersion]);
  }

  connectionOpened(transport: string): void {
    this.connections.inc({ transport });
    this.connectionsTotal.inc({ transport });
  }
  connectionClosed(transport: string, code: number): void {
    this.connections.dec({ transport });
    this.closes.inc({ code: String(code), meaning: closeMeaning(code) });
  }
  messageIn(bytes: number): void {
    this.messagesIn.inc();
    this.bytesIn.inc(bytes);
  }
  messagesOut(count: number, bytes: number): void {
    this.messagesOutTotal.inc(count);
    this.bytesOut.inc(bytes);
  }
  publicationDelivered(latencyMs: number, subscribers: number): void {
    this.deliveryLatency.observe(latencyMs / 1000);
    // Each delivery is also one message out, counted (with its bytes) once per fan-out (Hub#onPublication).
    if (subscribers > 0) this.deliveries.inc(subscribers);
  }
  subscriptionsChanged(delta: number): void {
    this.subscriptions.inc(delta);
  }
  requestFailed(op: string, code: number): void {
    this.errors.inc({ op, code: String(code) });
  }
  /** `missing` publications of a fan-out gap are being refilled from history. */
  gapRefilled(missing: number): void {
    this.gapsRefilled.inc(missing);
  }

  tlsReloaded(result: 'success' | 'failure'): void {
    this.tlsReloads.inc({ result });
  }
  tlsCertificate(cert: X509Certificate): void {
    if (this.registry.getSingleMetric('switchboard_tls_certificate_expiry_seconds') === undefined) this.registry.registerMetric(this.tlsCertificateExpiry);
    this.tlsCertificateExpiry.set(expirySeconds(cert));
  }

  dropped(reason: string): void {
    this.droppedTotal.inc({ reason });
  }
}
