/**
 * The server's own HTTP routes: `/healthz`, `/readyz`, `/metrics`, the HTTP
 * API under `/api/` (publish, broadcast, presence, history, disconnect,
 * close, stats, tickets) and, in development mode, `/dev/token`. The API speaks
 * JSON and answers every refusal as `{"error": message}` with its status.
 */
import { equalInConstantTime } from '../realtime/hmac-jwt.js';
import type http from 'node:http';
import type { Broker, HistoryResult, PresenceStore } from '../brokers/broker.js';
import type { ClientInfo } from '../wire/messages.js';
import type { Authenticator, Identity, TicketStore } from '../realtime/auth.js';
import type { Hub } from '../realtime/hub.js';
import { NodeOpError, type ClusterOps, type CloseConnectionResult, type ClusterDisconnectResult, type DisconnectOptions } from '../realtime/cluster-ops.js';
import type { Logger } from '../realtime/transport.js';
import { isValidChannel } from '../wire/channel.js';
import { describeValue } from '../wire/validate.js';
import { dataProblem, InvalidDataError } from '../wire/data.js';
import { resolveNamespace, type RealtimeConfig } from './config/index.js';
import { isLoopback } from './client-address.js';
import { asObject, expectMethod, HttpError, optionalInt, readJson, requireChannel, requireChannelParam, requireString, sendJson, sendText } from './http-util.js';
import type { Metrics } from './metrics.js';

const API_BODY_LIMIT = 1024 * 1024;
const DEV_TOKEN_TTL_S = 3600;

export interface HttpApiOptions {
  config: RealtimeConfig;
  hub: Hub;
  /** Disconnects and closes on whichever node holds the connections. */
  ops: ClusterOps;
  broker: Broker;
  presence: PresenceStore;
  authenticator: Authenticator;
  tickets: TicketStore;
  metrics: Metrics;
  logger: Logger;
  /** The key for `/dev/token` (development mode), else null: the route does not exist. */
  devSecret: Uint8Array | null;
  /** Whether the server is shutting down (`/readyz` answers 503). */
  closing: () => boolean;
  /** Whether the broker is connected (`/readyz` answers 503 while it is not). */
  brokerAvailable: () => boolean;
}

/**
 * The health routes let a page of any origin read their Resource Timing
 * (`Timing-Allow-Origin`): the SDK's warm-up request (src/client/warmup.ts)
 * learns from its `nextHopProtocol` whether the browser has an h2 connection
 * to this server, which the WebSocket rides on. Nothing else is exposed.
 */
const HEALTH_HEADERS = { 'Timing-Allow-Origin': '*' };

export class HttpApi {
  private readonly config: RealtimeConfig;
  private readonly hub: Hub;
  private readonly ops: ClusterOps;
  private readonly broker: Broker;
  private readonly presence: PresenceStore;
  private readonly authenticator: Authenticator;
  private readonly tickets: TicketStore;
  private readonly metrics: Metrics;
  private readonly logger: Logger;
  private readonly devSecret: Uint8Array | null;
  private readonly apiKey: Buffer | null;
  private readonly closing: () => boolean;
  private readonly brokerAvailable: () => boolean;

  constructor(options: HttpApiOptions) {
    this.config = options.config;
    this.hub = options.hub;
    this.ops = options.ops;
    this.broker = options.broker;
    this.presence = options.presence;
    this.authenticator = options.authenticator;
    this.tickets = options.tickets;
    this.metrics = options.metrics;
    this.logger = options.logger;
    this.devSecret = options.devSecret;
    this.apiKey = this.config.apiKey ? Buffer.from(this.config.apiKey) : null;
    this.closing = options.closing;
    this.brokerAvailable = options.brokerAvailable;
  }

  /** Serve `req` when its path is one of these routes; false otherwise. */
  handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL): boolean {
    const path = url.pathname;
    if (path === '/healthz') {
      sendText(res, 200, 'ok\n', undefined, HEALTH_HEADERS);
      return true;
    }
    if (path === '/readyz') {
      if (this.closing()) sendText(res, 503, 'shutting down\n', undefined, HEALTH_HEADERS);
      else if (!this.brokerAvailable()) sendText(res, 503, 'broker unavailable\n', undefined, HEALTH_HEADERS);
      else sendText(res, 200, 'ready\n', undefined, HEALTH_HEADERS);
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
        sendJson(res, 200, await publishRequest(this.hub, await readJson(req, API_BODY_LIMIT)));
        return;
      }
      case '/api/broadcast': {
        expectMethod(method, 'POST');
        const body = asObject(await readJson(req, API_BODY_LIMIT));
        if (!Array.isArray(body.channels) || body.channels.length === 0 || body.channels.length > 1000) {
          throw new HttpError(400, 'channels must be a list of 1-1000 channel names');
        }
        for (const c of body.channels) if (typeof c !== 'string' || !isValidChannel(c)) throw new HttpError(400, `invalid channel ${describeValue(c)}`);
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
        const presence = await channelPresence(this.config, this.presence, channel);
        if (presence === null) throw new HttpError(400, `presence is off for ${channel}`);
        sendJson(res, 200, { channel, ...presence });
        return;
      }
      case '/api/history': {
        expectMethod(method, 'GET');
        sendJson(res, 200, await historyRequest(this.broker, url));
        return;
      }
      case '/api/disconnect': {
        expectMethod(method, 'POST');
        sendJson(res, 200, await disconnectRequest(this.ops, await readJson(req, API_BODY_LIMIT)));
        return;
      }
      case '/api/close': {
        expectMethod(method, 'POST');
        sendJson(res, 200, await closeRequest(this.ops, await readJson(req, API_BODY_LIMIT)));
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
    return equalInConstantTime(given, this.apiKey);
  }

  private requireApiKey(req: http.IncomingMessage): void {
    if (!this.apiKey) throw new HttpError(404, 'the HTTP API is disabled (no apiKey configured)');
    const bearer = bearerToken(req);
    if (bearer === null || !this.isApiKey(bearer)) {
      throw new HttpError(401, 'Authorization: Bearer <api key> required', { 'WWW-Authenticate': 'Bearer' });
    }
  }
}

function bearerToken(req: http.IncomingMessage): string | null {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return m ? m[1]! : null;
}


// ---- operations shared with the admin UI (admin.ts): one code path for each ----------------

/** `{channel, data, key?}` published from the server: what `POST /api/publish` answers. */
export async function publishRequest(hub: Hub, parsed: unknown): Promise<{ channel: string; offset: number; epoch: string; duplicate: boolean | undefined }> {
  const body = asObject(parsed);
  const channel = requireChannel(body);
  if (!('data' in body)) throw new HttpError(400, 'data is required');
  const key = body.key === undefined ? undefined : requireString(body, 'key');
  const result = await hub.publish(channel, body.data, { key });
  return { channel, offset: result.offset, epoch: result.epoch, duplicate: result.duplicate };
}

/**
 * `{user, code?, reason?, timeoutMs?}`: every connection of the user on every
 * node closed (4503 unless `code`); what `POST /api/disconnect` answers:
 * `{user, disconnected, nodes, unanswered}` (realtime/cluster-ops.ts).
 */
export async function disconnectRequest(ops: ClusterOps, parsed: unknown): Promise<ClusterDisconnectResult> {
  const body = asObject(parsed);
  const user = requireString(body, 'user');
  return nodeOp(ops.disconnectUser(user, closeOptions(body)));
}

/**
 * `{id, code?, reason?, timeoutMs?}`: the connection closed on whichever node
 * holds it; what `POST /api/close` answers: `{id, node, closed: true}`, 404
 * when no node has it.
 */
export async function closeRequest(ops: ClusterOps, parsed: unknown): Promise<CloseConnectionResult> {
  const body = asObject(parsed);
  const id = requireString(body, 'id');
  const result = await nodeOp(ops.closeConnection(id, closeOptions(body)));
  if (!result.closed) {
    throw new HttpError(404, result.reason === 'no such connection' ? `no connection ${id} (closed already?)` : `no connection ${id}: its node ${result.node} is not in the cluster (gone?)`);
  }
  return result;
}

/** The optional `code`, `reason`, `timeoutMs` of a disconnect or close (checked by ClusterOps). */
function closeOptions(body: Record<string, unknown>): DisconnectOptions {
  const options: DisconnectOptions = {};
  for (const key of ['code', 'reason', 'timeoutMs'] as const) {
    if (body[key] === undefined) continue;
    if (key === 'reason' ? typeof body[key] !== 'string' : typeof body[key] !== 'number') throw new HttpError(400, `${key} must be a ${key === 'reason' ? 'string' : 'number'}`);
    (options as Record<string, unknown>)[key] = body[key];
  }
  return options;
}

/** A cluster operation's refusal (NodeOpError) as its HTTP answer. */
export async function nodeOp<T>(operation: Promise<T>): Promise<T> {
  try {
    return await operation;
  } catch (err) {
    if (err instanceof NodeOpError) throw new HttpError(err.status, err.message);
    throw err;
  }
}

/**
 * Who is in a channel, as its namespace's presence mode allows: counts only
 * (`counts`), the clients with counts (`full`), or null when presence is off.
 */
export async function channelPresence(
  config: RealtimeConfig,
  presence: PresenceStore,
  channel: string,
): Promise<{ clients: Record<string, ClientInfo>; count: number; users: number } | { clients: number; users: number } | null> {
  const ns = resolveNamespace(config, channel);
  if (ns.presence === 'off') return null;
  const stats = await presence.stats(channel);
  if (ns.presence === 'counts') return stats;
  return { clients: await presence.get(channel), count: stats.clients, users: stats.users };
}

/** The history of `?channel=` (`limit`, at most 1000, default 100; `since_offset` with `since_epoch`): what `GET /api/history` answers. */
export async function historyRequest(broker: Broker, url: URL, defaultLimit = 100): Promise<{ channel: string } & HistoryResult> {
  const channel = requireChannelParam(url);
  const limit = optionalInt(url, 'limit') ?? defaultLimit;
  const sinceOffset = optionalInt(url, 'since_offset');
  const sinceEpoch = url.searchParams.get('since_epoch');
  if ((sinceOffset === undefined) !== (sinceEpoch === null)) throw new HttpError(400, 'since_offset and since_epoch go together');
  const since = sinceOffset !== undefined && sinceEpoch !== null ? { offset: sinceOffset, epoch: sinceEpoch } : undefined;
  return { channel, ...(await broker.history(channel, { since, limit: Math.min(limit, 1000) })) };
}
