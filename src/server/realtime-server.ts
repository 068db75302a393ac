/**
 * The realtime server: the hub behind a WebSocket endpoint, an HTTP API,
 * metrics, health checks and graceful shutdown. Standalone
 * (`switchboard serve`, `listen()`) or attached to an existing Node HTTP
 * server (`createRealtimeServer({ server })`, then mount `handleRequest`).
 *
 * This file puts the parts together and runs their lifecycle (start, listen,
 * close); admission.ts admits connections for every carrier, http-api.ts
 * serves the HTTP routes, src/carriers/ carries sessions to the hub.
 */
import http from 'node:http';
import { hostname } from 'node:os';
import https from 'node:https';
import type http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import pino from 'pino';
import { isNodeBus, type Broker, type PresenceStore } from '../brokers/broker.js';
import { createConfiguredBroker, startBrokerProbe, type Connectable } from './brokers.js';

/** How often a networked broker's fan-out is probed, and how long a probe may take before the subscription is made again (`broker.probe*`). */
const DEFAULT_PROBE_INTERVAL_MS = 10_000;
const DEFAULT_PROBE_TIMEOUT_MS = 5_000;
import { SnapshotFile } from '../brokers/memory/snapshot-file.js';
import { HandshakeError } from '../protocol/errors.js';
import { buildErrorResponse } from '../protocol/handshake.js';
import { validateConnectRequest } from '../protocol/extended-connect.js';
import { createAuthenticator, TicketStore, type ClientCertificate, type Identity } from '../realtime/auth.js';
import { Hub, type RpcHandler } from '../realtime/hub.js';
import type { Logger } from '../realtime/transport.js';
import { codecFor } from '../wire/codec.js';
import { DEFAULT_SUBPROTOCOL, SUBPROTOCOLS } from '../wire/messages.js';
import { FallbackRouter } from '../carriers/fallback-router.js';
import { SessionRelay } from '../carriers/session-relay.js';
import { NodeMessages } from '../brokers/node-messages.js';
import { ClusterOps, type CloseConnectionResult, type ClusterDisconnectResult, type DisconnectOptions } from '../realtime/cluster-ops.js';
import { WebSocketServer } from '../transport/websocket-server.js';
import type { RawData, WebSocket } from '../transport/websocket.js';
import type { Session } from '../realtime/session.js';
import { attachHttp2Server, http2UpgradeRequest, isHttp2Request, isHttp2Server, isHttp2Stream, respondHttp2Refusal } from '../transport/http2.js';
import { createHttp2Listener, type Http2Listener } from './http2-server.js';
import { ConfigError, resolveNamespace, validateConfig, type BrokerProbeConfig, type DeepPartial, type RealtimeConfig } from './config/index.js';
import { Admission } from './admission.js';
import { AdminConsole } from './admin.js';
import { HttpApi } from './http-api.js';
import { sendText } from './http-util.js';
import { Metrics } from './metrics.js';
import { CertificateReloader, certificateWarnings, describeCertificate, readTlsMaterial, tlsServerOptions, type ReloadResult } from './tls.js';
import { WebSocketCarrier } from '../carriers/websocket.js';

export interface RealtimeServerOptions {
  /** Configuration (validated; missing fields take their defaults). See docs/configuration.md. */
  config?: DeepPartial<RealtimeConfig>;
  /**
   * Attach to this server instead of creating one: upgrades on `config.path` are taken; mount `handleRequest` for the HTTP routes.
   * An HTTP/2 server (node:http2) also gets its WebSockets over h2 extended CONNECT (RFC 8441) taken.
   */
  server?: http.Server | https.Server | http2.Http2SecureServer;
  /** Default: a new `MemoryBroker`. One passed in is not closed by `close()`: its owner closes it. */
  broker?: Broker;
  /** Default: a new `MemoryPresenceStore`. One passed in is not closed by `close()`. */
  presence?: PresenceStore;
  /** A pino logger (or compatible). Default: JSON lines on stdout at `config.log.level`. */
  logger?: Logger;
  /**
   * Development mode: issue tokens at `POST /dev/token` (`{"user": "alice"}`),
   * signed with `config.auth.hmacSecret`, for the demo pages. Never for
   * production: anyone who reaches the server can get a token. `switchboard
   * serve` turns it on (with an ephemeral secret) only when no key is
   * configured and it listens on loopback. Default false.
   */
  devTokens?: boolean;
  /**
   * mTLS authentication: a connection whose handshake carries no credential
   * (token, ticket, cookie) but a client certificate that verified against
   * `tls.ca` (`tls.clientCertificates: request|require`) gets the identity
   * this returns (null: none, the client sends `auth` first as usual).
   * Certificates that did not verify are never passed here. Whatever the
   * identity's source, the certificate is on it as `identity.clientCertificate`.
   */
  authenticateClientCertificate?: (certificate: ClientCertificate) => Identity | null | Promise<Identity | null>;
}

/** Servers made in this process so far: the second one's node id gets a suffix. */
let serversMade = 0;

/** What a realtime connection's WebSocket listeners need, kept on the WebSocket. */
interface SessionLink {
  server: RealtimeServer;
  session: Session;
  ip: string;
  /** Counted in `switchboard_websockets{http_version}` under this. */
  httpVersion: '1.1' | '2';
}
const kLink = Symbol('switchboard.session');
type LinkedWebSocket = WebSocket & { [kLink]?: SessionLink };

function onSessionMessage(this: LinkedWebSocket, data: RawData, isBinary: boolean): void {
  this[kLink]!.session.receive(isBinary ? (data as Buffer) : (data as Buffer).toString());
}

function onSessionError(this: LinkedWebSocket, err: Error): void {
  const link = this[kLink]!;
  link.server._connectionFailed(link, err);
}

function onSessionClose(this: LinkedWebSocket, code: number): void {
  const link = this[kLink]!;
  link.server._connectionClosed(this, link, code);
}

function destroyOnError(this: Duplex): void {
  this.destroy();
}

export class RealtimeServer {
  readonly config: RealtimeConfig;
  /**
   * This node's name in the dashboard snapshots and the admin UI:
   * `<hostname>/<pid>` (a pod's name under Kubernetes), with `#n` for the n-th
   * further server of the same process.
   */
  readonly nodeId: string;
  readonly hub: Hub;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly tickets: TicketStore;
  /** The listener: HTTP, HTTPS, or with `tls` and `http2.enabled` an HTTP/2 server with HTTP/1.1 beside it (ALPN h2,http/1.1). */
  readonly httpServer: http.Server | https.Server | http2.Http2SecureServer;
  /** The certificate reloader when the server serves TLS itself (`config.tls`), else null. */
  readonly certificates: CertificateReloader | null = null;
  private readonly ownsServer: boolean;
  /** The h2 sessions of the listener this server created (null without TLS or with `http2.enabled: false`). */
  private readonly h2Listener: Http2Listener | null = null;
  /** Stops taking WebSocket streams of an HTTP/2 listener. */
  private readonly detachHttp2: (() => void) | null = null;
  private readonly wss: WebSocketServer;
  private readonly broker: Broker;
  private readonly presence: PresenceStore;
  private stopProbe: () => void = () => {};
  /** Created here (not passed in), so `close()` closes them; a passed-in one may be shared with other servers. */
  private readonly ownsBroker: boolean;
  private readonly ownsPresence: boolean;
  /** Disconnecting users and closing connections on whichever node holds them. */
  private readonly ops: ClusterOps;
  /** Shutdown, origin, limits and credentials for every carrier; counts the open connections. */
  private readonly admission: Admission;
  private readonly api: HttpApi;
  /** The admin UI under `config.admin.path` (null unless `admin.enabled`). */
  readonly admin: AdminConsole | null;
  private readonly sockets = new Set<WebSocket>();
  /** SSE and long-polling sessions under `<path>/session` (null when `fallbacks.enabled` is false). */
  private readonly fallbacks: FallbackRouter | null;
  private closing: Promise<void> | null = null;
  /** The memory broker's history file (`broker.snapshotFile`), when configured. */
  private readonly snapshotFile: SnapshotFile | null;
  private starting: Promise<void> | null = null;

  // Kept here for the leak test (channels-leak-child.ts), which reads them off the server.
  private get connectionCount(): number {
    return this.admission.connectionCount;
  }
  private get connectionsPerIp(): ReadonlyMap<string, number> {
    return this.admission.connectionsPerAddress;
  }

  constructor(options: RealtimeServerOptions = {}) {
    this.config = validateConfig(options.config ?? {});
    const made = serversMade++;
    this.nodeId = `${hostname()}/${process.pid}${made === 0 ? '' : `#${made}`}`;
    if (options.devTokens && !this.config.auth.hmacSecret) throw new TypeError('devTokens needs auth.hmacSecret');
    this.logger =
      options.logger ??
      (pino({ level: this.config.log.level, base: { service: 'switchboard' }, timestamp: pino.stdTimeFunctions.isoTime }) as unknown as Logger);
    this.metrics = new Metrics();
    const brokerConfig = this.config.broker;
    // A handler that throws is a bug of ours (the hub never throws from fan-out): logged, and delivery goes on.
    this.metrics.brokerAvailable = () => this.brokerAvailable();
    // Only what is not passed in is made from the configuration (and closed by close()).
    const configured =
      options.broker === undefined || options.presence === undefined
        ? createConfiguredBroker(brokerConfig, this.logger, {
            onGap: (_channel, missing) => this.metrics.gapRefilled(missing),
            onReconnected: () => {
              this.metrics.brokerReconnects.inc();
              this.logger.info({ broker: brokerConfig.type }, 'broker reconnected: subscriptions made again, gaps refilled');
            },
          })
        : null;
    const memoryBroker = options.broker === undefined ? configured!.memory : null;
    this.broker = options.broker ?? configured!.broker;
    this.snapshotFile =
      memoryBroker !== null && brokerConfig.type === 'memory' && brokerConfig.snapshotFile !== undefined
        ? new SnapshotFile(memoryBroker, {
            path: brokerConfig.snapshotFile,
            intervalMs: brokerConfig.snapshotIntervalMs,
            onError: (err) => this.logger.error({ err: err.message, file: brokerConfig.snapshotFile }, 'history snapshot not saved'),
          })
        : null;
    this.presence = options.presence ?? configured!.presence;
    // A configured broker the caller replaced is not used: let go of its connections.
    if (configured !== null && options.broker !== undefined) void configured.broker.close().catch(() => {});
    if (configured !== null && options.presence !== undefined) void configured.presence.close().catch(() => {});
    this.ownsBroker = options.broker === undefined;
    this.ownsPresence = options.presence === undefined;
    const authenticator = createAuthenticator(this.config.auth);
    this.tickets = new TicketStore({ ttlMs: this.config.auth.ticketTtlMs });
    const closing = () => this.closing !== null;
    this.admission = new Admission({
      config: this.config,
      authenticator,
      tickets: this.tickets,
      logger: this.logger,
      closing,
      authenticateClientCertificate: options.authenticateClientCertificate,
    });
    const limits = this.config.limits;
    this.hub = new Hub({
      broker: this.broker,
      presence: this.presence,
      auth: authenticator,
      namespaceOf: (channel) => resolveNamespace(this.config, channel),
      limits,
      ping: { intervalMs: this.config.heartbeat.intervalMs, timeoutMs: this.config.heartbeat.timeoutMs },
      idleTimeoutMs: this.config.idleTimeoutMs,
      logger: this.logger,
      observer: this.metrics,
    });
    // One listener on the broker's node messages, for the fallback relay and the cluster-wide operations.
    const nodeMessages = isNodeBus(this.broker) ? new NodeMessages(this.broker, this.logger) : null;
    this.ops = new ClusterOps({ hub: this.hub, messages: nodeMessages, logger: this.logger });
    this.api = new HttpApi({
      config: this.config,
      hub: this.hub,
      ops: this.ops,
      broker: this.broker,
      presence: this.presence,
      authenticator,
      tickets: this.tickets,
      metrics: this.metrics,
      logger: this.logger,
      devSecret: options.devTokens ? new TextEncoder().encode(this.config.auth.hmacSecret) : null,
      closing,
      brokerAvailable: () => this.brokerAvailable(),
    });
    this.admin = this.config.admin.enabled
      ? new AdminConsole({
          config: this.config,
          nodeId: this.nodeId,
          hub: this.hub,
          ops: this.ops,
          broker: this.broker,
          presence: this.presence,
          metrics: this.metrics,
          logger: this.logger,
          clientIp: (req) => this.admission.clientIp(req),
        })
      : null;
    const z = this.config.compression;
    this.wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: z.enabled
        ? {
            threshold: z.threshold,
            level: z.level,
            serverNoContextTakeover: z.serverNoContextTakeover,
            clientNoContextTakeover: z.clientNoContextTakeover,
            serverMaxWindowBits: z.serverMaxWindowBits,
            idleReleaseMs: z.idleReleaseMs,
            concurrencyLimit: z.concurrencyLimit,
          }
        : false,
      maxPayload: limits.maxMessageSize,
      clientTracking: false,
      heartbeat: this.config.heartbeat.intervalMs > 0 ? { interval: this.config.heartbeat.intervalMs, timeout: this.config.heartbeat.timeoutMs } : undefined,
      // A peer that ignores our close frame is cut off when the shutdown's own bound says so, not earlier.
      closeTimeout: Math.max(5000, this.config.shutdown.timeoutMs),
      // The realtime server picked the protocol before the upgrade (see onUpgrade).
      handleProtocols: (offered, req) => {
        const chosen = (req as RequestWithProtocol).switchboardProtocol;
        return chosen && offered.has(chosen) ? chosen : false;
      },
    });

    const fb = this.config.fallbacks;
    this.fallbacks = fb.enabled
      ? new FallbackRouter(
          {
            hub: this.hub,
            logger: this.logger,
            admit: (req, beforeCredentials) => this.admission.admit(req, beforeCredentials),
            openConnection: (ip) => {
              this.admission.checkAdmission(ip);
              return this.admission.countConnection(ip);
            },
            originAllowed: (req) => this.admission.originAllowed(req),
            requestCredential: (req) => this.admission.requestCredential(req),
            credentialUser: (credential) => this.admission.credentialUser(credential),
            refused: (status) => this.metrics.handshakeRejections.inc({ status: String(status) }),
          },
          {
            basePath: `${this.config.path === '/' ? '' : this.config.path}/session`,
            graceMs: fb.graceMs,
            pollTimeoutMs: fb.pollTimeoutMs,
            sseKeepAliveMs: fb.sseKeepAliveMs,
            sseRetryMs: fb.sseRetryMs,
            bufferMessages: fb.bufferMessages,
            bufferBytes: fb.bufferBytes,
            maxMessageSize: limits.maxMessageSize,
            allowedOrigins: this.config.allowedOrigins,
            // With a broker of many nodes, a session's requests may reach any of them (no sticky sessions).
            ...(nodeMessages !== null ? { relay: new SessionRelay({ messages: nodeMessages, logger: this.logger, maxBacklogBytes: fb.bufferBytes * 2 }) } : {}),
          },
        )
      : null;

    if (options.server) {
      this.httpServer = options.server;
      this.ownsServer = false;
    } else {
      const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
        // Another 'request' listener of the app may have answered already.
        if (!this.handleRequest(req, res) && !res.headersSent) sendText(res, 404, 'not found\n');
      };
      // Node checks these timeouts only every connectionsCheckingInterval (default 30 s): without it a
      // half-open handshake would live up to 40 s instead of 10. As the library's WebSocketServer does.
      const headersTimeout = 10_000;
      const timeouts = {
        headersTimeout,
        requestTimeout: 30_000,
        connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(headersTimeout / 2))),
      };
      const tls = this.config.tls;
      if (tls) {
        // Checked by validateConfig already; read again here, as served (the files may have changed since).
        const material = readTlsMaterial(tls);
        const tlsOptions = { ...timeouts, ...tlsServerOptions(tls, material) };
        let server: https.Server | http2.Http2SecureServer;
        if (this.config.http2.enabled) {
          // h2 and HTTP/1.1 on one TLS port (ALPN h2,http/1.1): RFC 8441 CONNECTs and Upgrades alike.
          this.h2Listener = createHttp2Listener(this.config.http2, tlsOptions, handler as unknown as Parameters<typeof createHttp2Listener>[2], this.metrics);
          server = this.h2Listener.server;
        } else server = https.createServer(tlsOptions, handler);
        this.httpServer = server;
        // Both are tls.Server: setSecureContext() swaps the certificate for new handshakes on either.
        this.certificates = new CertificateReloader({ server, config: tls, initial: material, logger: this.logger, observer: this.metrics, host: this.config.host });
      } else this.httpServer = http.createServer(timeouts, handler);
      this.ownsServer = true;
    }
    this.httpServer.on('upgrade', this.onUpgrade);
    if (isHttp2Server(this.httpServer)) {
      this.detachHttp2 = attachHttp2Server(this.httpServer, {
        shouldHandle: (req) => (req.url ?? '/').split('?')[0] === this.config.path,
        handleStream: (stream, headers) => {
          // The RFC 8441 checks first (501 for another :protocol, 426 for another version), then admission.
          try {
            validateConnectRequest(headers);
          } catch (err) {
            this.refuse(stream, err as HandshakeError);
            return;
          }
          this.acceptStream(stream, http2UpgradeRequest(stream, headers));
        },
      });
    }
  }

  /**
   * What must happen before the first client: restore the history file
   * (`broker.snapshotFile`). `listen()` calls it; in attach mode, await it
   * before the HTTP server accepts connections. Idempotent.
   */
  start(): Promise<void> {
    this.starting ??= (async () => {
      await this.connectBroker();
      // Standalone, listen() logs the whole URL; attached, only the path is known here.
      if (this.admin !== null && !this.ownsServer) this.logger.info({ path: `${this.admin.path}/` }, 'admin UI');
      // Both register their kinds of node message before the one listener starts.
      await Promise.all([this.ops.listen(), this.fallbacks?.listenRelay()]);
      if (this.snapshotFile === null) return;
      const load = await this.snapshotFile.open();
      const file = this.config.broker.type === 'memory' ? this.config.broker.snapshotFile : undefined;
      if (!load.found) this.logger.info({ file }, 'history snapshot: none yet, starting empty');
      else {
        this.logger.info(
          { file, final: load.final, channels: load.channels, publications: load.publications },
          load.final ? 'history restored: clients resume where they were' : 'history restored from a periodic snapshot (the last stop was not graceful): resuming clients are told recovered:false',
        );
      }
    })();
    return this.starting;
  }

  /**
   * Wait for a networked broker's first connection (Redis, NATS): a node
   * that cannot reach its broker refuses to start, with the reason, rather
   * than accept clients it cannot serve. Later outages only turn `/readyz`
   * to 503 and answer publications with 503 until the broker is back.
   */
  private async connectBroker(): Promise<void> {
    const waits = [this.broker, this.presence].map((b) => (b as Partial<Connectable>).ready?.());
    if (waits.every((w) => w === undefined)) return;
    const b = this.config.broker;
    const where =
      b.type === 'redis'
        ? (b.cluster?.join(',') ?? (b.sentinels === undefined ? b.url : `${b.sentinels.join(',')} (sentinels, master ${b.name})`))
        : b.type === 'nats'
          ? b.servers.join(',')
          : 'the broker';
    try {
      await Promise.all(waits);
    } catch (err) {
      // Its reconnect timers would keep the process alive after the refusal.
      await Promise.all([this.ownsBroker && this.broker.close(), this.ownsPresence && this.presence.close()]).catch(() => {});
      throw new Error(`cannot reach the ${this.config.broker.type} broker at ${where}: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.logger.info({ broker: this.config.broker.type, at: where }, 'broker connected');
    const probe: BrokerProbeConfig = this.config.broker.type === 'memory' ? {} : this.config.broker;
    const probeIntervalMs = probe.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS;
    if (probeIntervalMs === 0) return;
    this.stopProbe = startBrokerProbe(this.broker, {
      intervalMs: probeIntervalMs,
      timeoutMs: probe.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS,
      onRoundTrip: (ms) => this.metrics.brokerRoundTrip.observe(ms / 1000),
      onFailure: () => this.metrics.brokerProbesFailed.inc(),
      logger: this.logger,
    });
  }

  /**
   * This node's id in a cluster: its broker's node id (`NodeBus`), the first
   * part of its fallback session ids and the `X-Switchboard-Node` header; ''
   * before a connecting broker is up. (`nodeId` is the name dashboards and
   * the admin UI show: host and pid.)
   */
  get clusterNodeId(): string {
    if (this.fallbacks !== null) return this.fallbacks.nodeId;
    try {
      return isNodeBus(this.broker) ? this.broker.nodeId : '';
    } catch {
      return '';
    }
  }

  /** Whether the broker and presence store are connected now (`/readyz`); always for one in this process. */
  brokerAvailable(): boolean {
    return [this.broker, this.presence].every((b) => (b as Partial<Connectable>).available !== false);
  }

  /** Start listening on `config.host:config.port` (standalone mode). */
  async listen(): Promise<AddressInfo> {
    await this.start();
    return new Promise((resolve, reject) => {
      const server = this.httpServer;
      const onError = (err: Error) => reject(err);
      server.once('error', onError);
      server.listen(this.config.port, this.config.host, () => {
        server.removeListener('error', onError);
        const address = server.address() as AddressInfo;
        this.logger.info({ host: address.address, port: address.port, path: this.config.path, tls: Boolean(this.config.tls), node: this.nodeId }, 'listening');
        if (this.certificates !== null) {
          const cert = this.certificates.certificate;
          this.logger.info({ certificate: describeCertificate(cert), fingerprint: cert.fingerprint256, clientCertificates: this.config.tls!.clientCertificates }, 'TLS certificate');
          for (const warning of certificateWarnings(cert, this.config.host)) this.logger.warn({ certificate: describeCertificate(cert) }, warning);
          this.certificates.watch();
        }
        if (this.admin !== null) {
          const host = this.config.host.includes(':') ? `[${this.config.host}]` : this.config.host;
          this.logger.info({ url: `${this.config.tls ? 'https' : 'http'}://${host}:${address.port}${this.admin.path}/` }, 'admin UI');
        }
        resolve(address);
      });
    });
  }

  /**
   * Read the TLS certificate, key and CA files again and serve them to new
   * handshakes; open connections stay as they are. A pair that fails the
   * checks is refused and the old one kept (see tls.ts). `switchboard serve`
   * calls it on SIGHUP; the server also reloads by itself when the files'
   * directories change. Without `config.tls`: `{ ok: false }`.
   */
  reloadCertificates(trigger = 'api'): ReloadResult {
    if (this.certificates === null) return { ok: false, error: 'the server does not serve TLS itself (no tls in its configuration)' };
    return this.certificates.reload(trigger);
  }

  /** Register an `rpc` method clients can call. */
  rpc(method: string, handler: RpcHandler): void {
    this.hub.rpc(method, handler);
  }

  /**
   * Close every connection of `user` on every node of the cluster (code
   * 4503 unless `options.code`): this node's at once, the others' through
   * the broker's node messages. Resolves how many were closed, summed over
   * the nodes that answered within `options.timeoutMs` (default 5000), and
   * which nodes did not answer (`unanswered`; their connections of the user
   * may still be open). Rejects with a `NodeOpError` (`status` 400 for bad
   * options, 503 while the broker is unreachable). On one node (memory
   * broker) it is `hub.disconnectUser`, which stays this node's alone.
   * Connections the user opens afterwards are not refused: revoke the
   * user's tokens for that.
   */
  disconnectUser(user: string, options?: DisconnectOptions): Promise<ClusterDisconnectResult> {
    return this.ops.disconnectUser(user, options);
  }

  /**
   * Close connection `id` (as the rpc context's `client`, presence and the
   * admin UI name it: `<node id>.<…>`) on whichever node holds it (4503
   * unless `options.code`). Resolves `closed: false` when no node has it.
   * Rejects with a `NodeOpError`: 400 for an id that names no node, 503
   * while the broker is unreachable, 504 when its node does not answer in
   * time. `hub.disconnectConnection` is this node's alone.
   */
  closeConnection(id: string, options?: DisconnectOptions): Promise<CloseConnectionResult> {
    return this.ops.closeConnection(id, options);
  }

  /** Publish from the server side (`volatile`: see Hub#publish). */
  publish(channel: string, data: unknown, options?: { key?: string; volatile?: boolean }) {
    return this.hub.publish(channel, data, options);
  }

  // ---- WebSocket upgrades ----------------------------------------------------------

  private readonly onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    const pathname = (req.url ?? '/').split('?')[0];
    if (pathname !== this.config.path) {
      // Other upgrade handlers on a shared server may want it.
      if (this.httpServer.listenerCount('upgrade') > 1) return;
      this.refuse(socket, new HandshakeError('RT_ERR_NOT_FOUND', `no WebSocket endpoint here: connect to ${this.config.path}`, 404));
      return;
    }
    this.acceptStream(socket, req, head);
  };

  /** Admit and open a WebSocket: an HTTP/1.1 Upgrade's socket, or an h2 stream (RFC 8441) with its request. */
  private acceptStream(socket: Duplex, req: http.IncomingMessage, head: Buffer = EMPTY): void {
    socket.on('error', destroyOnError);
    this.acceptUpgrade(req, socket, head).catch((err: unknown) => {
      const status = err instanceof HandshakeError ? err : new HandshakeError('RT_ERR_INTERNAL', 'internal error', 500);
      if (!(err instanceof HandshakeError)) this.logger.error({ err: String(err) }, 'upgrade failed');
      this.refuse(socket, status);
    });
  }

  private async acceptUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    // Subprotocol: the best version both sides know; an offer of only unknown versions is refused.
    const offered = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean);
    let protocol: string = DEFAULT_SUBPROTOCOL;
    const { ip, identity } = await this.admission.admit(req, () => {
      if (offered.length === 0) return;
      const best = SUBPROTOCOLS.find((p) => offered.includes(p));
      if (!best) {
        throw new HandshakeError('RT_ERR_UNSUPPORTED_PROTOCOL', `unsupported subprotocol; this server speaks ${SUBPROTOCOLS.join(', ')}`, 400);
      }
      protocol = best;
    });
    if (socket.destroyed) return;
    // Again: other handshakes may have completed while the token was verified. From here to
    // onConnection (which counts the connection) all is synchronous.
    this.admission.checkAdmission(ip);
    (req as RequestWithProtocol).switchboardProtocol = offered.length > 0 ? protocol : undefined;
    const httpVersion = isHttp2Request(req) ? '2' : '1.1';
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, ip, identity, protocol, httpVersion));
  }

  private refuse(socket: Duplex, err: HandshakeError): void {
    this.metrics.handshakeRejections.inc({ status: String(err.statusCode) });
    if (isHttp2Stream(socket)) {
      // RFC 8441: a refusal is an ordinary response on the stream (403, 401, 429/503 with retry-after...).
      respondHttp2Refusal(socket, err);
      return;
    }
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    // Let the answer leave before the socket goes (destroying at once may cut it off); a peer that
    // does not read it does not keep the socket for more than a second.
    const timer = setTimeout(() => socket.destroy(), 1000);
    timer.unref();
    socket.end(buildErrorResponse(err), () => {
      clearTimeout(timer);
      socket.destroy();
    });
  }

  private onConnection(ws: WebSocket, ip: string, identity: Identity | null, protocol: string, httpVersion: '1.1' | '2'): void {
    const codec = codecFor(protocol)!;
    this.admission.addConnection(ip);
    this.metrics.websocketOpened(httpVersion);
    this.sockets.add(ws);
    const session = this.hub.connect(new WebSocketCarrier(ws, codec, this.config.compression.threshold), identity, ip);
    // One small record and three listener functions shared by every connection (no closures, no
    // child logger per connection: what an idle connection costs, see docs/benchmarks.md).
    (ws as LinkedWebSocket)[kLink] = { server: this, session, ip, httpVersion };
    ws.on('message', onSessionMessage);
    ws.on('error', onSessionError);
    ws.on('close', onSessionClose);
  }

  /** @internal A realtime connection's WebSocket failed (a protocol error of the peer, a heartbeat timeout). */
  _connectionFailed(link: SessionLink, err: Error & { code?: string; closeCode?: number }): void {
    this.logger.info({ conn: link.session.id, code: err.code, closeCode: err.closeCode, reason: err.message }, 'connection failed');
  }

  /** @internal A realtime connection's WebSocket closed. */
  _connectionClosed(ws: WebSocket, link: SessionLink, code: number): void {
    this.admission.removeConnection(link.ip);
    this.metrics.websocketClosed(link.httpVersion);
    this.sockets.delete(ws);
    link.session.closedByTransport(code);
  }

  // ---- HTTP routes -----------------------------------------------------------------

  /**
   * Serve the server's HTTP routes: `/healthz`, `/readyz`, `/metrics`, `/api/*`,
   * the fallback transports under `<path>/session` (SSE and long-polling,
   * unless `fallbacks.enabled` is false), the admin UI under `admin.path`
   * (when `admin.enabled`) and (development mode) `/dev/token`.
   * Returns false for other paths, so an app can mount it in front of its
   * own routes.
   */
  handleRequest(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (this.api.handle(req, res, url)) return true;
    if (this.admin?.handle(req, res, url)) return true;
    if (this.fallbacks?.handle(req, res, url)) return true;
    return false;
  }

  // ---- shutdown ----------------------------------------------------------------------

  /**
   * Graceful shutdown: `/readyz` turns 503 and new upgrades and fallback
   * sessions get 503; every client gets `closing` (with a jittered reconnect
   * hint) and 1001 (SSE and long-polling sessions as their final messages:
   * open streams and polls get them at once); pending writes drain; whatever
   * is still open after `shutdown.timeoutMs` is terminated. Resolves when
   * everything is closed.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      const { timeoutMs, reconnectJitterMs } = this.config.shutdown;
      this.logger.info({ connections: this.connectionCount }, 'shutting down');
      // While clients drain, the listener stays open: upgrades get 503 and
      // /readyz answers 503, so a load balancer sees the node leaving rather
      // than a refused connection.
      this.hub.shutdown(reconnectJitterMs);
      const deadline = Date.now() + timeoutMs;
      const open = () => this.sockets.size + (this.fallbacks?.size ?? 0);
      while (open() > 0 && Date.now() < deadline) await sleep(20);
      for (const ws of this.sockets) ws.terminate();
      this.fallbacks?.terminateAll();
      while (open() > 0) await sleep(5);
      this.certificates?.close();
      if (this.ownsServer) {
        const serverClosed = new Promise<void>((resolve) => this.httpServer.close(() => resolve()));
        (this.httpServer as http.Server).closeAllConnections?.();
        (this.httpServer as { closeIdleConnections?(): void }).closeIdleConnections?.();
        // Every WebSocket stream has had its 1001: GOAWAY on the h2 sessions, cut off after a second.
        await this.h2Listener?.closeSessions(1000);
        await serverClosed;
      }
      this.httpServer.removeListener('upgrade', this.onUpgrade);
      this.detachHttp2?.();
      this.hub.dispose();
      // Nothing publishes any more: the history file can say so (the next start keeps the epochs).
      // A failed final save is the stop's failure: the next start would resume from an older file and
      // tell clients `recovered: false` although this stop was graceful.
      let saveFailure: Error | null = null;
      if (this.snapshotFile !== null) {
        await this.starting?.catch(() => {});
        await this.snapshotFile.close().then(
          () => this.logger.info({}, 'history saved'),
          (err: Error) => {
            saveFailure = err;
            this.logger.error({ err: err.message }, 'history snapshot not saved at shutdown');
          },
        );
      }
      this.stopProbe();
      this.ops.close();
      this.metrics.close();
      // A broker or presence store passed in belongs to the caller (and may serve other servers).
      if (this.ownsBroker) await this.broker.close();
      if (this.ownsPresence) await this.presence.close();
      if (saveFailure !== null) {
        this.logger.info({}, 'stopped, history not saved');
        throw new Error(`history not saved at shutdown: ${(saveFailure as Error).message}`);
      }
      this.logger.info({}, 'stopped');
    })();
    return this.closing;
  }
}

interface RequestWithProtocol extends http.IncomingMessage {
  switchboardProtocol?: string;
}

export function createRealtimeServer(options: RealtimeServerOptions = {}): RealtimeServer {
  return new RealtimeServer(options);
}

const EMPTY = Buffer.alloc(0);

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
