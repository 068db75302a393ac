/**
 * The admission of new realtime connections, whatever carries them (a
 * WebSocket upgrade, an SSE or long-polling session): shutdown, Origin,
 * connection limits and rate, then the handshake credential (token, ticket or
 * cookie). One path for every carrier, so a limit or a credential rule cannot
 * hold for one and not for another.
 *
 * It also counts the open connections (`maxConnections`,
 * `maxConnectionsPerIp`): the carrier counts a connection right before it is
 * handed to the hub, after a synchronous re-check (`checkAdmission`).
 */
import type http from 'node:http';
import { HandshakeError } from '../protocol/errors.js';
import { createOriginCheck, type OriginCheck } from '../transport/origin.js';
import { tokenFromRequest, type Authenticator, type ClientCertificate, type Identity, type TicketStore } from '../realtime/auth.js';
import { KeyedRateLimiter } from '../realtime/rate-limit.js';
import type { Logger } from '../realtime/transport.js';
import type { RealtimeConfig } from './config/index.js';
import { clientAddress, trustedProxyList } from './client-address.js';
import { clientCertificateOf } from './tls.js';

export interface AdmissionOptions {
  config: RealtimeConfig;
  authenticator: Authenticator;
  tickets: TicketStore;
  logger: Logger;
  /** Whether the server is shutting down: then every new connection is refused (503). */
  closing: () => boolean;
  /** The identity a verified client certificate proves when the handshake has no other credential (see RealtimeServerOptions). */
  authenticateClientCertificate?: (certificate: ClientCertificate) => Identity | null | Promise<Identity | null>;
}

export class Admission {
  private readonly config: RealtimeConfig;
  private readonly authenticator: Authenticator;
  private readonly tickets: TicketStore;
  private readonly logger: Logger;
  private readonly closing: () => boolean;
  private readonly authenticateClientCertificate: AdmissionOptions['authenticateClientCertificate'];
  private readonly connectionRate: KeyedRateLimiter;
  private readonly connectionsPerIp = new Map<string, number>();
  private count = 0;
  /** `trustedProxies` as a matcher (null: none, the socket's peer is the client). */
  private readonly trustedProxies;
  /** The one allowedOrigins policy (transport/origin.ts), shared with WebSocketServer. */
  private readonly originCheck: OriginCheck;

  constructor(options: AdmissionOptions) {
    this.originCheck = createOriginCheck(options.config.allowedOrigins);
    this.config = options.config;
    this.authenticator = options.authenticator;
    this.tickets = options.tickets;
    this.logger = options.logger;
    this.closing = options.closing;
    this.authenticateClientCertificate = options.authenticateClientCertificate;
    this.trustedProxies = trustedProxyList(this.config.trustedProxies);
    const rate = this.config.limits.connectionRatePerIp;
    this.connectionRate = new KeyedRateLimiter(rate.perSecond, rate.burst);
  }

  /** Open connections, every carrier together. */
  get connectionCount(): number {
    return this.count;
  }

  /** Open connections per client address (an address leaves the map with its last connection). */
  get connectionsPerAddress(): ReadonlyMap<string, number> {
    return this.connectionsPerIp;
  }

  /**
   * The admission of a new realtime connection, whatever carries it (a
   * WebSocket upgrade, an SSE or long-polling session): shutdown (503),
   * origin (403), connection limits (503/429) and rate (429), then
   * `beforeCredentials` (the carrier's own checks: subprotocol, body), then
   * the handshake credential — `Authorization: Bearer`, `?ticket=` or the
   * auth cookie (401 when invalid); none leaves the identity null (the client
   * sends `auth` first) unless a verified TLS client certificate proves one
   * (`authenticateClientCertificate`). The client certificate, if any, is on
   * the identity as `clientCertificate`. Throws `HandshakeError`s. The caller re-checks with
   * `checkAdmission(ip)` synchronously before it counts the connection.
   */
  async admit(req: http.IncomingMessage, beforeCredentials?: () => void | Promise<void>): Promise<{ ip: string; identity: Identity | null }> {
    const ip = this.clientIp(req);
    if (this.closing()) throw new HandshakeError('RT_ERR_SHUTTING_DOWN', 'server shutting down', 503, { 'Retry-After': '5' });
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
    // A TLS client certificate (tls.clientCertificates, or the app's own server asking for one): on the identity, for auth.
    const certificate = clientCertificateOf(req.socket);
    if (certificate !== null) {
      if (identity === null && certificate.authorized && this.authenticateClientCertificate) {
        identity = await this.authenticateClientCertificate(certificate);
      }
      if (identity !== null) identity = { ...identity, clientCertificate: certificate };
    }
    return { ip, identity };
  }

  /** The Origin check against cross-site hijacking (`allowedOrigins`; the server's own origin and non-browsers pass). */
  originAllowed(req: http.IncomingMessage): boolean {
    return this.originCheck(headerValue(req.headers.origin), headerValue(req.headers.host));
  }

  /** Shutdown and connection limits, again, right before a connection is counted. */
  checkAdmission(ip: string): void {
    if (this.closing()) throw new HandshakeError('RT_ERR_SHUTTING_DOWN', 'server shutting down', 503, { 'Retry-After': '5' });
    this.checkConnectionLimits(ip);
  }

  /** Count a connection toward `maxConnections` and `maxConnectionsPerIp`; returns its release (call once). */
  countConnection(ip: string): () => void {
    this.addConnection(ip);
    return () => this.removeConnection(ip);
  }

  /** Count a connection from `ip` (what `countConnection` does, without making its release function). */
  addConnection(ip: string): void {
    this.count++;
    this.connectionsPerIp.set(ip, (this.connectionsPerIp.get(ip) ?? 0) + 1);
  }

  /** The connection from `ip` that `addConnection` counted closed. */
  removeConnection(ip: string): void {
    this.count--;
    const n = (this.connectionsPerIp.get(ip) ?? 1) - 1;
    if (n > 0) this.connectionsPerIp.set(ip, n);
    else this.connectionsPerIp.delete(ip);
  }

  /**
   * The credential a request on an existing fallback session carries,
   * unverified. Headers only: a ticket in the URL opens a session, it is not
   * redeemed by later requests.
   */
  requestCredential(req: http.IncomingMessage): string | null {
    return tokenFromRequest({ headers: req.headers }, this.config.auth.cookieName)?.value ?? null;
  }

  /** The user a credential proves, or null when it does not verify. */
  credentialUser(credential: string): Promise<string | null> {
    return this.authenticator.verify(credential).then(
      (identity) => identity.user,
      () => null,
    );
  }

  /** The client's address: the socket's peer, or what a trusted proxy forwarded (see client-address.ts). */
  clientIp(req: http.IncomingMessage): string {
    return clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for'], this.trustedProxies);
  }

  /** `maxConnections` and `maxConnectionsPerIp`: 503 / 429 with Retry-After. */
  private checkConnectionLimits(ip: string): void {
    const limits = this.config.limits;
    if (this.count >= limits.maxConnections) {
      throw new HandshakeError('RT_ERR_CONNECTION_LIMIT', 'too many connections', 503, { 'Retry-After': '5' });
    }
    if ((this.connectionsPerIp.get(ip) ?? 0) >= limits.maxConnectionsPerIp) {
      throw new HandshakeError('RT_ERR_IP_CONNECTION_LIMIT', 'too many connections from this address', 429, { 'Retry-After': '5' });
    }
  }
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
