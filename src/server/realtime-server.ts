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
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import pino from 'pino';
import { isNodeBus, type Broker, type PresenceStore } from '../brokers/broker.js';
import { createConfiguredBroker, type Connectable } from './brokers.js';
import { SnapshotFile } from '../brokers/memory/snapshot-file.js';
import { HandshakeError } from '../protocol/errors.js';
import { buildErrorResponse } from '../protocol/handshake.js';
import { createAuthenticator, TicketStore, type Identity } from '../realtime/auth.js';
import { Hub, type RpcHandler } from '../realtime/hub.js';
import type { Logger } from '../realtime/transport.js';
import { codecFor } from '../wire/codec.js';
import { DEFAULT_SUBPROTOCOL, SUBPROTOCOLS } from '../wire/messages.js';
import { FallbackRouter } from '../carriers/fallback-router.js';
import { SessionRelay } from '../carriers/session-relay.js';
import { WebSocketServer } from '../transport/websocket-server.js';
import type { WebSocket } from '../transport/websocket.js';
import { ConfigError, resolveNamespace, validateConfig, type DeepPartial, type RealtimeConfig } from './config/index.js';
import { Admission } from './admission.js';
import { HttpApi } from './http-api.js';
import { sendText } from './http-util.js';
import { Metrics } from './metrics.js';
import { WebSocketCarrier } from '../carriers/websocket.js';

export interface RealtimeServerOptions {
  /** Configuration (validated; missing fields take their defaults). See docs/configuration.md. */
  config?: DeepPartial<RealtimeConfig>;
  /** Attach to this server instead of creating one: upgrades on `config.path` are taken; mount `handleRequest` for the HTTP routes. */
  server?: http.Server | https.Server;
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
}

export class RealtimeServer {
  readonly config: RealtimeConfig;
  readonly hub: Hub;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly tickets: TicketStore;
  readonly httpServer: http.Server | https.Server;
  private readonly ownsServer: boolean;
  private readonly wss: WebSocketServer;
  private readonly broker: Broker;
  private readonly presence: PresenceStore;
  /** Created here (not passed in), so `close()` closes them; a passed-in one may be shared with other servers. */
  private readonly ownsBroker: boolean;
  private readonly ownsPresence: boolean;
  /** Shutdown, origin, limits and credentials for every carrier; counts the open connections. */
  private readonly admission: Admission;
  private readonly api: HttpApi;
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
        ? createConfiguredBroker(brokerConfig, this.logger, { onGap: (channel, missing) => this.metrics.gapRefilled(missing) })
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
    this.admission = new Admission({ config: this.config, authenticator, tickets: this.tickets, logger: this.logger, closing });
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
    this.api = new HttpApi({
      config: this.config,
      hub: this.hub,
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
            ...(isNodeBus(this.broker) ? { relay: new SessionRelay({ bus: this.broker, logger: this.logger, maxBacklogBytes: fb.bufferBytes * 2 }) } : {}),
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
      this.httpServer = this.config.tls
        ? https.createServer({ ...timeouts, cert: readFileSync(this.config.tls.cert), key: readFileSync(this.config.tls.key), minVersion: 'TLSv1.2' }, handler)
        : http.createServer(timeouts, handler);
      this.ownsServer = true;
    }
    this.httpServer.on('upgrade', this.onUpgrade);
  }

  /**
   * What must happen before the first client: restore the history file
   * (`broker.snapshotFile`). `listen()` calls it; in attach mode, await it
   * before the HTTP server accepts connections. Idempotent.
   */
  start(): Promise<void> {
    this.starting ??= (async () => {
      await this.connectBroker();
      await this.fallbacks?.listenRelay();
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
    const where = this.config.broker.type === 'redis' ? this.config.broker.url : this.config.broker.type === 'nats' ? this.config.broker.servers.join(',') : 'the broker';
    try {
      await Promise.all(waits);
    } catch (err) {
      // Its reconnect timers would keep the process alive after the refusal.
      await Promise.all([this.ownsBroker && this.broker.close(), this.ownsPresence && this.presence.close()]).catch(() => {});
      throw new Error(`cannot reach the ${this.config.broker.type} broker at ${where}: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.logger.info({ broker: this.config.broker.type, at: where }, 'broker connected');
  }

  /**
   * This node's id in a cluster: its broker's node id (`NodeBus`), the first
   * part of its fallback session ids; '' before a connecting broker is up.
   */
  get nodeId(): string {
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
        this.logger.info({ host: address.address, port: address.port, path: this.config.path, tls: Boolean(this.config.tls) }, 'listening');
        resolve(address);
      });
    });
  }

  /** Register an `rpc` method clients can call. */
  rpc(method: string, handler: RpcHandler): void {
    this.hub.rpc(method, handler);
  }

  /** Publish from the server side. */
  publish(channel: string, data: unknown, options?: { key?: string }) {
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
    socket.on('error', () => socket.destroy());
    this.acceptUpgrade(req, socket, head).catch((err: unknown) => {
      const status = err instanceof HandshakeError ? err : new HandshakeError('RT_ERR_INTERNAL', 'internal error', 500);
      if (!(err instanceof HandshakeError)) this.logger.error({ err: String(err) }, 'upgrade failed');
      this.refuse(socket, status);
    });
  };

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
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, ip, identity, protocol));
  }

  private refuse(socket: Duplex, err: HandshakeError): void {
    this.metrics.handshakeRejections.inc({ status: String(err.statusCode) });
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

  private onConnection(ws: WebSocket, ip: string, identity: Identity | null, protocol: string): void {
    const codec = codecFor(protocol)!;
    const release = this.admission.countConnection(ip);
    this.sockets.add(ws);
    const session = this.hub.connect(new WebSocketCarrier(ws, codec, this.config.compression.threshold), identity, ip);
    const log = this.logger.child({ conn: session.id });
    ws.on('message', (data, isBinary) => {
      session.receive(isBinary ? (data as Buffer) : (data as Buffer).toString());
    });
    ws.on('error', (err: Error & { code?: string; closeCode?: number }) => {
      log.info({ code: err.code, closeCode: err.closeCode, reason: err.message }, 'connection failed');
    });
    ws.on('close', (code: number) => {
      release();
      this.sockets.delete(ws);
      session.closedByTransport(code);
    });
  }

  // ---- HTTP routes -----------------------------------------------------------------

  /**
   * Serve the server's HTTP routes: `/healthz`, `/readyz`, `/metrics`, `/api/*`,
   * the fallback transports under `<path>/session` (SSE and long-polling,
   * unless `fallbacks.enabled` is false) and (development mode) `/dev/token`.
   * Returns false for other paths, so an app can mount it in front of its
   * own routes.
   */
  handleRequest(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (this.api.handle(req, res, url)) return true;
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
      if (this.ownsServer) {
        const serverClosed = new Promise<void>((resolve) => this.httpServer.close(() => resolve()));
        (this.httpServer as http.Server).closeAllConnections?.();
        await serverClosed;
      }
      this.httpServer.removeListener('upgrade', this.onUpgrade);
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

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
