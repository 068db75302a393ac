/**
 * The HTTP routes of the fallback transports, under `<path>/session`
 * (docs/protocol.md, "Fallback transports: SSE and long-polling"):
 *
 * | route | does |
 * |---|---|
 * | `POST <path>/session` | open a session (`{"transport": "sse"\|"poll"}`) → 201 |
 * | `POST <path>/session/<id>` | client messages, a JSON array of 1-100 → 204 |
 * | `GET <path>/session/<id>/events` | the SSE stream (`Last-Event-ID` / `?lastEventId=`) |
 * | `GET <path>/session/<id>/poll?ack=<seq>` | one long poll |
 * | `DELETE <path>/session/<id>` | close the session (1000) → 204 |
 * | `OPTIONS` on any of them | CORS preflight for allowed origins |
 *
 * Opening a session goes through the same admission as a WebSocket upgrade
 * (origin, shutdown, connection limits and rate, credentials), supplied by the
 * server as a {@link FallbackHost}; every other request checks the origin
 * again, and a credential it carries must be the session's user's (403
 * otherwise, see `owned`). An unknown or ended session is
 * `404 {"error": "no such session"}`.
 *
 * Each session is one `hub.connect(transport, identity, ip)`: incoming
 * messages go through `Session.receive` one by one, so size, rate and
 * validation rules are those of WebSocket.
 */
import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import { HandshakeError } from '../protocol/errors.js';
import type { Hub, Identity } from '../realtime/hub.js';
import type { Logger } from '../realtime/transport.js';
import { HttpSessionCarrier, type HttpTransportKind } from './http-session.js';
import { HttpError, readJsonBody, sendJson, sendNoContent, type ResponseLike } from './http-json.js';
import { PendingPoll } from './long-polling.js';
import type { SessionOp, SessionRelay, SessionRequest } from './session-relay.js';
import { SseStream } from './sse.js';

/** What the server lends the fallback routes: the hub and the admission checks shared with WebSocket upgrades. */
export interface FallbackHost {
  readonly hub: Hub;
  readonly logger: Logger;
  /**
   * Admit a new realtime connection: shutdown, origin, connection limits and
   * rate, then (after `beforeCredentials`, which may read the body)
   * credentials — `Authorization: Bearer`, `?ticket=`, the auth cookie.
   * Rejects with a `HandshakeError` (status, headers, message).
   */
  admit(req: http.IncomingMessage, beforeCredentials?: () => void | Promise<void>): Promise<{ ip: string; identity: Identity | null }>;
  /**
   * Re-check (shutdown, limits) and count a new connection, synchronously;
   * returns the function that uncounts it. Throws a `HandshakeError`.
   */
  openConnection(ip: string): () => void;
  /** The Origin check alone, for requests on an existing session. */
  originAllowed(req: http.IncomingMessage): boolean;
  /**
   * The credential a request on an existing session carries, unverified:
   * `Authorization: Bearer` or the auth cookie (a `?ticket=` is for opening
   * only and is not redeemed here); null when it has none.
   */
  requestCredential(req: http.IncomingMessage): string | null;
  /** The user a credential proves, or null when it does not verify (expired, bad signature, …). */
  credentialUser(credential: string): Promise<string | null>;
  /** A refused open (for metrics). */
  refused?(status: number): void;
}

/** The sessions' timings and bounds (the `fallbacks` configuration, defaults in server/config/defaults.ts). */
export interface FallbackSessionOptions {
  /**
   * How long a session outlives its last stream or poll, in ms: an SSE client
   * may reconnect (with `Last-Event-ID`) and a polling client may poll again
   * within it. After it the session closes with 1006 semantics (presence
   * leave, subscriptions dropped). Default 30000.
   */
  graceMs: number;
  /** How long a poll waits for a message before it is answered empty, in ms. Default 25000; at most 120000. */
  pollTimeoutMs: number;
  /** Interval of the SSE keep-alive comment (`: keep-alive`) that keeps proxies from closing an idle stream, in ms. Default 15000. */
  sseKeepAliveMs: number;
  /** Reconnect delay for EventSource, sent as the stream's `retry:` field and in the open answer (`retryMs`), in ms. Default 2000. */
  sseRetryMs: number;
  /**
   * Messages kept per session: the ones not yet delivered, and the ones
   * delivered but not yet acknowledged (by a reconnect's `Last-Event-ID` or
   * the next poll's `ack`), kept for resume and dropped oldest first when
   * room is needed. When the undelivered ones left by earlier event-loop
   * turns fill the bound alone, the session is a slow consumer (close 4003);
   * a burst queued within one turn is taken whole. Default 1000.
   */
  bufferMessages: number;
  /** The same bound in bytes of UTF-8 JSON. Default 1 MiB (1048576). */
  bufferBytes: number;
}

export interface FallbackRouterOptions extends FallbackSessionOptions {
  /** `<path>/session`, e.g. `/rt/session`. */
  basePath: string;
  /** `limits.maxMessageSize`: bounds the body of a message batch. */
  maxMessageSize: number;
  /** `allowedOrigins`: with `'*'`, CORS answers do not allow credentials. */
  allowedOrigins: readonly string[];
  /**
   * The relay of requests between nodes (on the broker's node messages):
   * with it, the requests of one session may reach any node. Without it,
   * every session is this node's, and a request for another node's session
   * is 404.
   */
  relay?: SessionRelay;
}

/** Messages per `POST <path>/session/<id>`. */
export const MAX_BATCH = 100;
/** Body limit of `POST <path>/session`, in bytes. */
const OPEN_BODY_LIMIT = 1024;
/**
 * A session id: the id of the node holding the session (a broker node id,
 * `NodeBus.nodeId`), a dot, and 128 random bits in base64url. The random
 * part is the capability; the node part tells every other node where to
 * relay the session's requests (session-relay.ts).
 */
const SESSION_ID = /^[0-9a-z]{4,32}\.[A-Za-z0-9_-]{22}$/;
const SEQ = /^[0-9]{1,15}$/;

export class FallbackRouter {
  private readonly host: FallbackHost;
  private readonly options: FallbackRouterOptions;
  private readonly sessions = new Map<string, HttpSessionCarrier>();
  /** Per session, the last credential that verified as its user's: the same one again is not verified again. */
  private readonly ownerCredential = new WeakMap<HttpSessionCarrier, string>();
  /** Largest body of a message batch: 100 messages of `maxMessageSize`, commas and brackets. */
  private readonly batchLimit: number;

  private readonly relay: SessionRelay | null;
  /** This node's id without a relay. */
  private readonly localNodeId = randomBytes(6).readUIntBE(0, 6).toString(36).padStart(8, '0').slice(-8);

  constructor(host: FallbackHost, options: FallbackRouterOptions) {
    this.host = host;
    this.options = options;
    this.relay = options.relay ?? null;
    this.batchLimit = MAX_BATCH * (options.maxMessageSize + 1) + 2;
  }

  /** The id of this node (the first part of its session ids). */
  get nodeId(): string {
    try {
      return this.relay?.nodeId ?? this.localNodeId;
    } catch {
      // A broker still connecting (attach mode before start()): sessions opened now are reachable on this node only.
      return this.localNodeId;
    }
  }

  /** Take requests other nodes relay for this node's sessions (once the broker is connected). */
  async listenRelay(): Promise<void> {
    await this.relay?.listen((request, res) => this.runRelayed(request, res));
  }

  /** Open sessions (closing ones included): counted in the shutdown wait. */
  get size(): number {
    return this.sessions.size;
  }

  /** Serve `req` when its path is under `basePath`; false otherwise. */
  handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL): boolean {
    const base = this.options.basePath;
    const path = url.pathname;
    if (path !== base && !path.startsWith(`${base}/`)) return false;
    // Which node took the request (the session's own node is the first part of its id): for operators and tests.
    res.setHeader('X-Switchboard-Node', this.nodeId);
    this.route(req, res, url, path.slice(base.length)).catch((err: unknown) => this.fail(req, res, err));
    return true;
  }

  /** End every session at once (the end of a graceful shutdown). */
  terminateAll(): void {
    for (const transport of this.sessions.values()) transport.terminate();
    this.relay?.close();
  }

  // ---- routes ------------------------------------------------------------------------

  private async route(req: http.IncomingMessage, res: http.ServerResponse, url: URL, rest: string): Promise<void> {
    const method = req.method ?? 'GET';
    // An aborted request is the client's problem; its response's 'close' tells the receivers.
    req.on('error', () => {});
    if (rest === '' && method === 'POST') {
      // The admission checks the origin, with the limits and the credentials.
      await this.open(req, res);
      return;
    }
    if (!this.host.originAllowed(req)) {
      this.host.logger.warn({ origin: req.headers.origin, ip: req.socket.remoteAddress }, 'origin refused');
      req.resume();
      throw new HttpError(403, 'origin not allowed');
    }
    if (method === 'OPTIONS') {
      req.resume();
      this.preflight(req, res);
      return;
    }
    if (rest === '' || rest === '/') {
      req.resume();
      throw new HttpError(405, 'use POST', { Allow: 'POST, OPTIONS' });
    }
    const m = /^\/([^/]+)(\/events|\/poll)?$/.exec(rest);
    if (!m) {
      req.resume();
      throw new HttpError(404, 'no such route');
    }
    const id = m[1]!;
    const route = m[2];
    let op: SessionOp;
    if (route === undefined && method === 'POST') {
      // A malformed id is refused before its body is read, and never reaches the broker.
      if (!SESSION_ID.test(id)) {
        req.resume();
        throw new HttpError(404, 'no such session');
      }
      op = { op: 'post', messages: checkBatch(await readJsonBody(req, this.batchLimit)) };
    } else {
      req.resume();
      if (route === undefined) {
        if (method !== 'DELETE') throw new HttpError(405, 'use POST or DELETE', { Allow: 'POST, DELETE, OPTIONS' });
        op = { op: 'delete' };
      } else {
        expectMethod(method, 'GET');
        if (route === '/events') {
          const header = req.headers['last-event-id'];
          const raw = (Array.isArray(header) ? header[0] : header)?.trim() || url.searchParams.get('lastEventId') || '0';
          op = { op: 'events', last: parseSeq(raw, 'Last-Event-ID') };
        } else op = { op: 'poll', ack: parseSeq(url.searchParams.get('ack') ?? '0', 'ack') };
      }
      if (!SESSION_ID.test(id)) throw new HttpError(404, 'no such session');
    }
    const request: SessionRequest = { session: id, credential: this.host.requestCredential(req), headers: this.cors(req), op };
    const owner = id.slice(0, id.indexOf('.'));
    if (owner !== this.nodeId && this.relay !== null) {
      // Another node holds this session: the request goes there, the answer comes back (session-relay.ts).
      await this.relay.forward(owner, request, res);
      return;
    }
    await this.execute(request, res);
  }

  /**
   * Run one request on a session this node holds: `res` is the request's own
   * response, or the relay back to the node that took it.
   */
  private async execute(request: SessionRequest, res: ResponseLike): Promise<void> {
    const { op, headers } = request;
    const transport = await this.owned(request.credential, request.session);
    switch (op.op) {
      case 'post':
        if (transport.ended) throw new HttpError(404, 'no such session');
        this.receive(transport, op.messages);
        sendNoContent(res, headers);
        return;
      case 'delete':
        transport.endByClient();
        sendNoContent(res, headers);
        return;
      case 'events': {
        if (transport.kind !== 'sse') throw new HttpError(409, 'this is a long-polling session: use /poll');
        if (transport.checkAck(op.last) === 'ahead') throw new HttpError(400, `Last-Event-ID ${op.last} was never sent`);
        const stream = new SseStream(transport, res, { keepAliveMs: this.options.sseKeepAliveMs, retryMs: this.options.sseRetryMs, headers });
        transport.attach(stream, op.last);
        return;
      }
      case 'poll': {
        if (transport.kind !== 'poll') throw new HttpError(409, 'this is an SSE session: use /events');
        if (transport.checkAck(op.ack) === 'ahead') throw new HttpError(400, `ack ${op.ack} is beyond the last message sent`);
        const poll = new PendingPoll(transport, res, { timeoutMs: this.options.pollTimeoutMs, headers });
        transport.attach(poll, op.ack);
        return;
      }
    }
  }

  /** A request another node took for a session of this node (session-relay.ts). */
  private runRelayed(request: SessionRequest, res: ResponseLike): void {
    this.execute(request, res).catch((err: unknown) => this.answerError(res, err, request.headers, `relayed ${request.op.op}`));
  }

  /** `POST <path>/session`: admission (as for a WebSocket), then a new session on the hub. */
  private async open(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let kind: HttpTransportKind = 'poll';
    let gone = false;
    res.once('close', () => {
      gone = true;
    });
    const { ip, identity } = await this.host.admit(req, async () => {
      kind = parseOpen(await readJsonBody(req, OPEN_BODY_LIMIT));
    });
    // The client went away while its credentials were checked: no session for nobody.
    if (gone) return;
    // Synchronous from the re-check to the hub: nothing else can be admitted in between.
    const release = this.host.openConnection(ip);
    const id = `${this.nodeId}.${randomBytes(16).toString('base64url')}`;
    const { graceMs, bufferMessages, bufferBytes } = this.options;
    const transport = new HttpSessionCarrier(kind, id, { graceMs, bufferMessages, bufferBytes, observer: this.host.hub.observer }, () => {
      this.sessions.delete(id);
      release();
    });
    transport.httpVersion = req.httpVersionMajor === 2 ? '2' : '1.1';
    this.sessions.set(id, transport);
    const session = this.host.hub.connect(transport, identity, ip);
    transport.attachSession(session);
    this.host.logger.debug({ conn: session.id, transport: kind, session: `${id.slice(0, id.indexOf('.') + 5)}…` }, 'fallback session opened');
    sendJson(res, 201, { session: id, transport: kind, pollTimeoutMs: this.options.pollTimeoutMs, retryMs: this.options.sseRetryMs }, this.cors(req));
  }

  /** Client messages, one by one through `Session.receive` (the WebSocket path: size, rate, validation). */
  private receive(transport: HttpSessionCarrier, messages: object[]): void {
    const session = transport.session;
    if (!session) return;
    for (const message of messages) {
      // A message may close the session (rate limit, size): the rest are dropped, as after a WebSocket close.
      if (transport.ended || transport.closing) return;
      let text: string;
      try {
        text = JSON.stringify(message);
      } catch {
        // Parsed from the body, but too deep to write back as one message's text (the stack ends first).
        session.refuseUnreadable(message, 'message nested too deep');
        continue;
      }
      session.receive(text);
    }
  }

  // ---- helpers -----------------------------------------------------------------------

  /**
   * The session a request is for, bound to the user it speaks for (from the
   * open request's credential or its `auth` message): a request carrying a
   * credential that verifies as anyone else — or as anyone, while the session
   * has no user (anonymous, or before its `auth`) — is refused with 403 and
   * changes nothing. A request without a credential, or with one that does
   * not verify (an expired cookie, say), is not checked: for it the id alone
   * is the capability, as before. 404 when there is no such session (any more).
   */
  private async owned(credential: string | null, id: string): Promise<HttpSessionCarrier> {
    const transport = this.lookup(id);
    if (credential === null || this.ownerCredential.get(transport) === credential) return transport;
    const user = await this.host.credentialUser(credential);
    if (user === null) return this.lookup(id);
    const owner = transport.session?.identity?.user ?? null;
    if (user !== owner) {
      this.host.logger.warn({ conn: transport.session?.id, user, owner }, "fallback session used with another user's credential");
      throw new HttpError(403, "credential does not match the session's user");
    }
    this.ownerCredential.set(transport, credential);
    return this.lookup(id);
  }

  private lookup(id: string): HttpSessionCarrier {
    const transport = this.sessions.get(id);
    if (!transport || transport.ended) throw new HttpError(404, 'no such session');
    return transport;
  }

  /**
   * CORS for a page of another allowed origin: its own origin echoed, with
   * credentials unless every origin is allowed (`'*'` is for deployments
   * without ambient credentials). None for a refused origin, whatever the
   * answer (its 403 included): that page must not read it.
   */
  private cors(req: http.IncomingMessage): Record<string, string> {
    const origin = req.headers.origin;
    if (!origin || !this.host.originAllowed(req)) return {};
    const headers: Record<string, string> = { 'Access-Control-Allow-Origin': origin, Vary: 'Origin' };
    if (!this.options.allowedOrigins.includes('*')) headers['Access-Control-Allow-Credentials'] = 'true';
    return headers;
  }

  private preflight(req: http.IncomingMessage, res: http.ServerResponse): void {
    res.writeHead(204, {
      ...this.cors(req),
      'Access-Control-Allow-Methods': 'GET, POST, DELETE',
      'Access-Control-Allow-Headers': 'Content-Type, Authorization, Last-Event-ID',
      'Access-Control-Max-Age': '600',
      'Cache-Control': 'no-store',
    });
    res.end();
  }

  private fail(req: http.IncomingMessage, res: ResponseLike, err: unknown): void {
    this.answerError(res, err, this.cors(req), req.url?.split('?')[0] ?? '');
  }

  private answerError(res: ResponseLike, err: unknown, cors: Record<string, string>, what: string): void {
    let status: number;
    let message: string;
    let headers: Record<string, string>;
    if (err instanceof HttpError) {
      ({ status, message, headers } = err);
    } else if (err instanceof HandshakeError) {
      ({ statusCode: status, message, headers } = err);
      this.host.refused?.(status);
    } else {
      this.host.logger.error({ err: err instanceof Error ? err.message : String(err), path: what }, 'fallback request failed');
      status = 500;
      message = 'internal error';
      headers = {};
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    sendJson(res, status, { error: message }, { ...cors, ...headers });
  }
}

function expectMethod(method: string, expected: string): void {
  if (method !== expected) throw new HttpError(405, `use ${expected}`, { Allow: `${expected}, OPTIONS` });
}

function parseOpen(body: unknown): HttpTransportKind {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'body must be {"transport": "sse" | "poll"}');
  const transport = (body as { transport?: unknown }).transport;
  if (transport !== 'sse' && transport !== 'poll') throw new HttpError(400, 'transport must be "sse" or "poll"');
  for (const key of Object.keys(body)) if (key !== 'transport') throw new HttpError(400, `unknown field ${JSON.stringify(key)}`);
  return transport;
}

function checkBatch(body: unknown): object[] {
  if (!Array.isArray(body)) throw new HttpError(400, 'body must be a JSON array of messages');
  if (body.length === 0 || body.length > MAX_BATCH) throw new HttpError(400, `a batch holds 1-${MAX_BATCH} messages, got ${body.length}`);
  for (let i = 0; i < body.length; i++) {
    const m: unknown = body[i];
    if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new HttpError(400, `message ${i} is not a JSON object`);
  }
  return body as object[];
}

function parseSeq(raw: string, what: string): number {
  if (!SEQ.test(raw)) throw new HttpError(400, `${what} must be a sequence number (an integer >= 0)`);
  return Number(raw);
}
