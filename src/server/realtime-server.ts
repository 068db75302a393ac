/**
 * The realtime server: the hub behind a WebSocket endpoint, an HTTP API,
 * metrics, health checks and graceful shutdown. Standalone
 * (`switchboard serve`, `listen()`) or attached to an existing Node HTTP
 * server (`createRealtimeServer({ server })`, then mount `handleRequest`).
 */
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import pino from 'pino';
import type { Broker, PresenceStore } from '../brokers/broker.js';
import { MemoryBroker, MemoryPresenceStore } from '../brokers/memory/memory-broker.js';
import { SnapshotFile } from '../brokers/memory/snapshot-file.js';
import { HandshakeError } from '../protocol/errors.js';
import { buildErrorResponse } from '../protocol/handshake.js';
import { createAuthenticator, isOriginAllowed, TicketStore, tokenFromRequest, type Identity } from '../realtime/auth.js';
import { isValidChannel } from '../wire/channel.js';
import { Hub, type RpcHandler } from '../realtime/hub.js';
import { KeyedRateLimiter } from '../realtime/rate-limit.js';
import type { Logger } from '../realtime/transport.js';
import { codecFor } from '../wire/codec.js';
import { DEFAULT_SUBPROTOCOL, SUBPROTOCOLS } from '../wire/messages.js';
import { FallbackRouter } from '../fallbacks/router.js';
import { WebSocketServer } from '../transport/websocket-server.js';
import type { WebSocket } from '../transport/websocket.js';
import { ConfigError, resolveNamespace, validateConfig, type DeepPartial, type RealtimeConfig } from './config/index.js';
import { clientAddress, isLoopback, trustedProxyList } from './client-address.js';
import { HttpError, readJson, sendJson, sendText } from './http-util.js';
import { dataProblem, InvalidDataError } from '../wire/data.js';
import { Metrics } from './metrics.js';
import { WebSocketTransport } from './websocket-transport.js';

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

const API_BODY_LIMIT = 1024 * 1024;
const DEV_TOKEN_TTL_S = 3600;

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
  private readonly authenticator;
  private readonly connectionRate: KeyedRateLimiter;
  private readonly connectionsPerIp = new Map<string, number>();
  private connectionCount = 0;
  private readonly sockets = new Set<WebSocket>();
  /** SSE and long-polling sessions under `<path>/session` (null when `fallbacks.enabled` is false). */
  private readonly fallbacks: FallbackRouter | null;
  private closing: Promise<void> | null = null;
  /** The memory broker's history file (`broker.snapshotFile`), when configured. */
  private readonly snapshotFile: SnapshotFile | null;
  private starting: Promise<void> | null = null;
  private readonly devSecret: Uint8Array | null;
  private readonly apiKey: Buffer | null;
  /** `trustedProxies` as a matcher (null: none, the socket's peer is the client). */
  private readonly trustedProxies;

  constructor(options: RealtimeServerOptions = {}) {
    this.config = validateConfig(options.config ?? {});
    if (options.devTokens && !this.config.auth.hmacSecret) throw new TypeError('devTokens needs auth.hmacSecret');
    this.devSecret = options.devTokens ? new TextEncoder().encode(this.config.auth.hmacSecret) : null;
    this.apiKey = this.config.apiKey ? Buffer.from(this.config.apiKey) : null;
    this.logger =
      options.logger ??
      (pino({ level: this.config.log.level, base: { service: 'switchboard' }, timestamp: pino.stdTimeFunctions.isoTime }) as unknown as Logger);
    this.metrics = new Metrics();
    const brokerConfig = this.config.broker;
    if (options.broker === undefined && brokerConfig.type !== 'memory') {
      throw new ConfigError([{ path: 'broker.type', message: `"${brokerConfig.type}" is not available in this version (only "memory")` }]);
    }
    // A handler that throws is a bug of ours (the hub never throws from fan-out): logged, and delivery goes on.
    const memoryBroker =
      options.broker === undefined
        ? new MemoryBroker({ onError: (err) => this.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'broker delivery failed') })
        : null;
    this.broker = options.broker ?? memoryBroker!;
    this.snapshotFile =
      memoryBroker !== null && brokerConfig.type === 'memory' && brokerConfig.snapshotFile !== undefined
        ? new SnapshotFile(memoryBroker, {
            path: brokerConfig.snapshotFile,
            intervalMs: brokerConfig.snapshotIntervalMs,
            onError: (err) => this.logger.error({ err: err.message, file: brokerConfig.snapshotFile }, 'history snapshot not saved'),
          })
        : null;
    this.presence = options.presence ?? new MemoryPresenceStore();
    this.ownsBroker = options.broker === undefined;
    this.ownsPresence = options.presence === undefined;
    this.authenticator = createAuthenticator(this.config.auth);
    this.tickets = new TicketStore({ ttlMs: this.config.auth.ticketTtlMs });
    this.trustedProxies = trustedProxyList(this.config.trustedProxies);
    const limits = this.config.limits;
    this.connectionRate = new KeyedRateLimiter(limits.connectionRatePerIp.perSecond, limits.connectionRatePerIp.burst);
    this.hub = new Hub({
      broker: this.broker,
      presence: this.presence,
      auth: this.authenticator,
      namespaceOf: (channel) => resolveNamespace(this.config, channel),
      limits,
      ping: { intervalMs: this.config.heartbeat.intervalMs, timeoutMs: this.config.heartbeat.timeoutMs },
      idleTimeoutMs: this.config.idleTimeoutMs,
      logger: this.logger,
      observer: this.metrics,
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
            admit: (req, beforeCredentials) => this.admit(req, beforeCredentials),
            openConnection: (ip) => {
              this.checkAdmission(ip);
              return this.countConnection(ip);
            },
            originAllowed: (req) => this.originAllowed(req),
            // Headers only: a ticket in the URL opens a session, it is not redeemed by later requests.
            requestCredential: (req) => tokenFromRequest({ headers: req.headers }, this.config.auth.cookieName)?.value ?? null,
            credentialUser: (credential) => this.authenticator.verify(credential).then((identity) => identity.user, () => null),
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

  /** Start listening on `config.host:config.port` (standalone mode). */
  /**
   * What must happen before the first client: restore the history file
   * (`broker.snapshotFile`). `listen()` calls it; in attach mode, await it
   * before the HTTP server accepts connections. Idempotent.
   */
  start(): Promise<void> {
    this.starting ??= (async () => {
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
      this.refuse(socket, new HandshakeError('RT_ERR_NOT_FOUND', 'no WebSocket endpoint here', 404));
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
    const { ip, identity } = await this.admit(req, () => {
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
    this.checkAdmission(ip);
    (req as RequestWithProtocol).switchboardProtocol = offered.length > 0 ? protocol : undefined;
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, ip, identity, protocol));
  }

  /**
   * The admission of a new realtime connection, whatever carries it (a
   * WebSocket upgrade, an SSE or long-polling session): shutdown (503),
   * origin (403), connection limits (503/429) and rate (429), then
   * `beforeCredentials` (the carrier's own checks: subprotocol, body), then
   * the handshake credential — `Authorization: Bearer`, `?ticket=` or the
   * auth cookie (401 when invalid); none leaves the identity null (the client
   * sends `auth` first). Throws `HandshakeError`s. The caller re-checks with
   * `checkAdmission(ip)` synchronously before it counts the connection.
   */
  private async admit(req: http.IncomingMessage, beforeCredentials?: () => void | Promise<void>): Promise<{ ip: string; identity: Identity | null }> {
    const ip = this.clientIp(req);
    if (this.closing) throw new HandshakeError('RT_ERR_SHUTTING_DOWN', 'server shutting down', 503, { 'Retry-After': '5' });
    if (!this.originAllowed(req)) {
      this.logger.warn({ origin: headerValue(req.headers.origin), ip }, 'origin refused');
      throw new HandshakeError('RT_ERR_ORIGIN', 'origin not allowed', 403);
    }
    this.checkConnectionLimits(ip);
    if (!this.connectionRate.take(ip)) {
      throw new HandshakeError('RT_ERR_CONNECTION_RATE', 'connecting too fast', 429, { 'Retry-After': '1' });
    }
    await beforeCredentials?.();
    // Handshake authentication: header, cookie or one-time ticket. Without one the client sends `auth` first.
    let identity: Identity | null = null;
    const credential = tokenFromRequest(req, this.config.auth.cookieName);
    if (credential?.kind === 'ticket') {
      identity = this.tickets.redeem(credential.value);
      if (!identity) throw new HandshakeError('RT_ERR_TICKET_INVALID', 'invalid or used ticket', 401);
    } else if (credential?.kind === 'token') {
      try {
        identity = await this.authenticator.verify(credential.value);
      } catch (err) {
        throw new HandshakeError('RT_ERR_TOKEN_INVALID', (err as Error).message, 401);
      }
    }
    return { ip, identity };
  }

  /** The client's address: the socket's peer, or what a trusted proxy forwarded (see client-address.ts). */
  private clientIp(req: http.IncomingMessage): string {
    return clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], this.trustedProxies);
  }

  /** The Origin check against cross-site hijacking (`allowedOrigins`; the server's own origin and non-browsers pass). */
  private originAllowed(req: http.IncomingMessage): boolean {
    return isOriginAllowed(this.config.allowedOrigins, headerValue(req.headers.origin), headerValue(req.headers.host));
  }

  /** Shutdown and connection limits, again, right before a connection is counted. */
  private checkAdmission(ip: string): void {
    if (this.closing) throw new HandshakeError('RT_ERR_SHUTTING_DOWN', 'server shutting down', 503, { 'Retry-After': '5' });
    this.checkConnectionLimits(ip);
  }

  /** Count a connection toward `maxConnections` and `maxConnectionsPerIp`; returns its release (call once). */
  private countConnection(ip: string): () => void {
    this.connectionCount++;
    this.connectionsPerIp.set(ip, (this.connectionsPerIp.get(ip) ?? 0) + 1);
    return () => {
      this.connectionCount--;
      const n = (this.connectionsPerIp.get(ip) ?? 1) - 1;
      if (n > 0) this.connectionsPerIp.set(ip, n);
      else this.connectionsPerIp.delete(ip);
    };
  }

  /** `maxConnections` and `maxConnectionsPerIp`: 503 / 429 with Retry-After. */
  private checkConnectionLimits(ip: string): void {
    const limits = this.config.limits;
    if (this.connectionCount >= limits.maxConnections) {
      throw new HandshakeError('RT_ERR_CONNECTION_LIMIT', 'too many connections', 503, { 'Retry-After': '5' });
    }
    if ((this.connectionsPerIp.get(ip) ?? 0) >= limits.maxConnectionsPerIp) {
      throw new HandshakeError('RT_ERR_IP_CONNECTION_LIMIT', 'too many connections from this address', 429, { 'Retry-After': '5' });
    }
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
    const release = this.countConnection(ip);
    this.sockets.add(ws);
    const session = this.hub.connect(new WebSocketTransport(ws, codec, this.config.compression.threshold), identity, ip);
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
    const path = url.pathname;
    if (path === '/healthz') {
      sendText(res, 200, 'ok\n');
      return true;
    }
    if (path === '/readyz') {
      if (this.closing) sendText(res, 503, 'shutting down\n');
      else sendText(res, 200, 'ready\n');
      return true;
    }
    if (path === '/metrics' && this.config.metrics.enabled) {
      this.metrics.registry.metrics().then(
        (text) => sendText(res, 200, text, this.metrics.registry.contentType),
        (err) => {
          this.logger.error({ err: String(err) }, 'metrics collection failed');
          sendText(res, 500, 'metrics unavailable\n');
        },
      );
      return true;
    }
    if (path.startsWith('/api/') || (path === '/dev/token' && this.devSecret)) {
      this.handleApi(req, res, url).catch((err: unknown) => {
        if (err instanceof HttpError) {
          sendJson(res, err.status, { error: err.message }, err.headers);
          return;
        }
        if (err instanceof InvalidDataError) {
          this.logger.info({ path, problem: err.message }, 'api request refused: data');
          sendJson(res, err.status, { error: err.message });
          return;
        }
        this.logger.error({ err: String(err), path }, 'api request failed');
        sendJson(res, 503, { error: 'temporarily unavailable' });
      });
      return true;
    }
    if (this.fallbacks?.handle(req, res, url)) return true;
    return false;
  }

  /** Application data in an API request body (wire/data.ts), else 400 with the reason. */
  private requireData(value: unknown, what: string): void {
    const problem = dataProblem(value, this.hub.dataLimits('server'), what);
    if (problem !== null) throw new InvalidDataError(problem);
  }

  private async handleApi(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (path === '/dev/token') {
      // Development tokens only for a browser on this machine talking to us directly: not through a
      // proxy (which would hand them to anyone it serves), whatever interface we listen on.
      if (!isLoopback(req.socket.remoteAddress) || req.headers['x-forwarded-for'] !== undefined || req.headers['forwarded'] !== undefined) {
        throw new HttpError(403, 'development tokens are only for clients on this machine, not through a proxy');
      }
      expectMethod(method, 'POST');
      const body = asObject(await readJson(req, API_BODY_LIMIT));
      const user = requireString(body, 'user');
      const { SignJWT } = await import('jose');
      const token = await new SignJWT({ ...(body.info !== undefined ? { info: body.info } : {}) })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject(user)
        .setIssuedAt()
        .setExpirationTime(`${DEV_TOKEN_TTL_S}s`)
        .sign(this.devSecret!);
      sendJson(res, 200, { token, expiresIn: DEV_TOKEN_TTL_S * 1000 });
      return;
    }
    if (path === '/api/ticket') {
      expectMethod(method, 'POST');
      // With the API key: a ticket for the identity in the body. With a user's token: a ticket for that user.
      const bearer = bearerToken(req);
      let identity: Identity;
      if (bearer !== null && this.isApiKey(bearer)) {
        const body = asObject(await readJson(req, API_BODY_LIMIT));
        if (body.info !== undefined) this.requireData(body.info, 'info');
        identity = { user: requireString(body, 'user'), info: body.info, expiresAt: Date.now() + 3600_000, permissions: null };
      } else if (bearer !== null) {
        try {
          identity = await this.authenticator.verify(bearer);
        } catch (err) {
          throw new HttpError(401, (err as Error).message);
        }
      } else {
        throw new HttpError(401, 'Authorization: Bearer <api key or token> required', { 'WWW-Authenticate': 'Bearer' });
      }
      sendJson(res, 200, { ticket: this.tickets.issue(identity), expiresIn: this.config.auth.ticketTtlMs });
      return;
    }
    this.requireApiKey(req);
    switch (path) {
      case '/api/publish': {
        expectMethod(method, 'POST');
        const body = asObject(await readJson(req, API_BODY_LIMIT));
        const channel = requireChannel(body);
        if (!('data' in body)) throw new HttpError(400, 'data is required');
        const key = body.key === undefined ? undefined : requireString(body, 'key');
        const result = await this.hub.publish(channel, body.data, { key });
        sendJson(res, 200, { channel, offset: result.offset, epoch: result.epoch, duplicate: result.duplicate });
        return;
      }
      case '/api/broadcast': {
        expectMethod(method, 'POST');
        const body = asObject(await readJson(req, API_BODY_LIMIT));
        if (!Array.isArray(body.channels) || body.channels.length === 0 || body.channels.length > 1000) {
          throw new HttpError(400, 'channels must be a list of 1-1000 channel names');
        }
        for (const c of body.channels) if (typeof c !== 'string' || !isValidChannel(c)) throw new HttpError(400, `invalid channel ${JSON.stringify(c)}`);
        if (!('data' in body)) throw new HttpError(400, 'data is required');
        // Refused once for the whole request, not once per channel.
        this.requireData(body.data, 'data');
        const results = await Promise.all(
          (body.channels as string[]).map((channel) =>
            this.hub.publish(channel, body.data).then(
              (r) => ({ channel, offset: r.offset, epoch: r.epoch }),
              (err: unknown) => {
                // The broker's own words stay in the log; the caller learns which channels failed.
                this.logger.error({ err: String(err), channel }, 'broadcast publish failed');
                return { channel, error: 'temporarily unavailable' };
              },
            ),
          ),
        );
        sendJson(res, 200, { results });
        return;
      }
      case '/api/presence': {
        expectMethod(method, 'GET');
        const channel = requireChannelParam(url);
        const ns = resolveNamespace(this.config, channel);
        if (ns.presence === 'off') throw new HttpError(400, `presence is off for ${channel}`);
        if (ns.presence === 'counts') sendJson(res, 200, { channel, ...(await this.presence.stats(channel)) });
        else {
          const stats = await this.presence.stats(channel);
          sendJson(res, 200, { channel, clients: await this.presence.get(channel), count: stats.clients, users: stats.users });
        }
        return;
      }
      case '/api/history': {
        expectMethod(method, 'GET');
        const channel = requireChannelParam(url);
        const limit = optionalInt(url, 'limit') ?? 100;
        const sinceOffset = optionalInt(url, 'since_offset');
        const sinceEpoch = url.searchParams.get('since_epoch');
        if ((sinceOffset === undefined) !== (sinceEpoch === null)) throw new HttpError(400, 'since_offset and since_epoch go together');
        const since = sinceOffset !== undefined && sinceEpoch !== null ? { offset: sinceOffset, epoch: sinceEpoch } : undefined;
        const result = await this.broker.history(channel, { since, limit: Math.min(limit, 1000) });
        sendJson(res, 200, { channel, ...result });
        return;
      }
      case '/api/disconnect': {
        expectMethod(method, 'POST');
        const body = asObject(await readJson(req, API_BODY_LIMIT));
        const user = requireString(body, 'user');
        sendJson(res, 200, { user, disconnected: this.hub.disconnectUser(user) });
        return;
      }
      case '/api/stats': {
        expectMethod(method, 'GET');
        sendJson(res, 200, {
          connections: this.hub.sessions.size,
          subscriptions: this.hub.subscriptionCount,
          channels: this.hub.channelStats(),
        });
        return;
      }
      default:
        throw new HttpError(404, `no API route ${path}`);
    }
  }

  private isApiKey(candidate: string): boolean {
    if (!this.apiKey) return false;
    const given = Buffer.from(candidate);
    return given.length === this.apiKey.length && timingSafeEqual(given, this.apiKey);
  }

  private requireApiKey(req: http.IncomingMessage): void {
    if (!this.apiKey) throw new HttpError(404, 'the HTTP API is disabled (no apiKey configured)');
    const bearer = bearerToken(req);
    if (bearer === null || !this.isApiKey(bearer)) {
      throw new HttpError(401, 'Authorization: Bearer <api key> required', { 'WWW-Authenticate': 'Bearer' });
    }
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

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function bearerToken(req: http.IncomingMessage): string | null {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return m ? m[1]! : null;
}

function expectMethod(method: string, expected: string): void {
  if (method !== expected) throw new HttpError(405, `use ${expected}`, { Allow: expected });
}

function asObject(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'body must be a JSON object');
  return body as Record<string, unknown>;
}

function requireString(body: Record<string, unknown>, field: string): string {
  const v = body[field];
  if (typeof v !== 'string' || v.length === 0 || v.length > 1024) throw new HttpError(400, `${field} must be a non-empty string`);
  return v;
}

function requireChannel(body: Record<string, unknown>): string {
  const channel = requireString(body, 'channel');
  if (!isValidChannel(channel)) throw new HttpError(400, `invalid channel ${JSON.stringify(channel)}`);
  return channel;
}

function requireChannelParam(url: URL): string {
  const channel = url.searchParams.get('channel');
  if (!channel || !isValidChannel(channel)) throw new HttpError(400, 'a valid channel query parameter is required');
  return channel;
}

function optionalInt(url: URL, name: string): number | undefined {
  const v = url.searchParams.get(name);
  if (v === null) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new HttpError(400, `${name} must be an integer >= 0`);
  return n;
}
