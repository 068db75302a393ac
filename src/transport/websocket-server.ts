/**
 * `WebSocketServer`: accepts HTTP/1.1 Upgrade requests (RFC 6455 §4.2) on a
 * server it creates (`port`), on one it is given (`server`), or through
 * `handleUpgrade` (`noServer`), with the option names and events of `ws`.
 *
 * With `port` the server is a plain `net.Server` that reads the request head
 * itself (upgrade-parser.ts): nothing of `node:http` (request object, parser,
 * closures) stays with an open connection, and a handshake costs less. Other
 * requests get 426; malformed ones 400, 414, 431 or 505; a head that does not
 * arrive within `handshakeTimeout` 408.
 *
 * Beyond `ws`: `allowedOrigins` (403 before the upgrade, against cross-site
 * WebSocket hijacking), `maxConnections` (503 with Retry-After), a handshake
 * timeout on servers it creates, a heartbeat that terminates dead peers, and
 * `close()` that closes its clients with 1001.
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type https from 'node:https';
import type http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { CloseCode } from '../protocol/close-code.js';
import { HandshakeError } from '../protocol/errors.js';
import { buildErrorResponse, buildUpgradeResponse, validateUpgradeRequest } from '../protocol/handshake.js';
import { validateConnectRequest } from '../protocol/extended-connect.js';
import { acceptDeflateOffer, type PerMessageDeflateOptions } from '../protocol/extensions/permessage-deflate.js';
import { DEFAULT_MAX_PAYLOAD } from '../protocol/connection.js';
import { PerMessageDeflateCodec } from './deflate.js';
import { createOriginCheck, type OriginCheck } from './origin.js';
import { UpgradeRequestParser, type ParsedHead, type UpgradeParserLimits } from './upgrade-parser.js';
import { HeartbeatWheel, type HeartbeatOptions } from './heartbeat.js';
import { DEFAULT_CLOSE_TIMEOUT, WebSocket, type SocketOwner, type SocketSetup } from './websocket.js';

/**
 * The upgrade request a server hands to its callbacks and events. On a server
 * created with `port` it is an `IncomingMessage` made from the parsed head
 * (`method`, `url`, `headers`, `rawHeaders`, `httpVersion`, `socket`): the
 * same type as through `node:http`, dropped after the upgrade unless the
 * application keeps it.
 */
type UpgradeRequest = http.IncomingMessage;
import {
  attachHttp2Server,
  http2UpgradeRequest,
  Http2SessionSet,
  isHttp2Request,
  isHttp2Server,
  resetWithCancel,
  respondHttp2Accept,
  respondHttp2Refusal,
  type AnyHttp2Server,
} from './http2.js';

export interface VerifyClientInfo {
  origin: string | undefined;
  secure: boolean;
  req: UpgradeRequest;
}
export type VerifyClientCallback = (result: boolean, code?: number, message?: string, headers?: Record<string, string>) => void;

export interface ServerOptions {
  /** Create an HTTP server listening on this port (0 for any free port). */
  port?: number;
  /** Host to listen on with `port`. Default: all interfaces, as `net.Server#listen`. */
  host?: string;
  /** Listen backlog with `port`. */
  backlog?: number;
  /**
   * Attach to this existing HTTP(S) server instead of creating one. An
   * HTTP/2 server (node:http2, e.g. `createSecureServer({ allowHTTP1: true })`)
   * also takes WebSockets over h2 extended CONNECT (RFC 8441) and gets
   * `enableConnectProtocol` turned on while this server is attached.
   */
  server?: http.Server | https.Server | AnyHttp2Server;
  /** Create no server; call `handleUpgrade` from your own 'upgrade' handler. */
  noServer?: boolean;
  /** Accept upgrades only for this path (exact match of the pathname). */
  path?: string;
  /** Max size of a received message in bytes (after inflation). Default 100 MiB. */
  maxPayload?: number;
  /** Enable permessage-deflate (RFC 7692). Default false. */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
  /** Pick a subprotocol from those the client offered; `false` for none. Default: the first offered. */
  handleProtocols?: (protocols: Set<string>, request: UpgradeRequest) => string | false;
  /** Accept or refuse a client before the upgrade; sync (return a boolean) or async (call `cb`). */
  verifyClient?:
    | ((info: VerifyClientInfo) => boolean)
    | ((info: VerifyClientInfo, cb: VerifyClientCallback) => void);
  /** Keep the open connections in `clients`. Default true. */
  clientTracking?: boolean;
  skipUTF8Validation?: boolean;
  /** Answer pings automatically. Default true. */
  autoPong?: boolean;
  /**
   * Origins whose pages may connect, or a predicate; others get 403 before
   * the upgrade. A list means what it means for the realtime server
   * (origin.ts): `http(s)://host[:port]` entries compared normalized (host
   * case and default ports do not matter), `'*'` for any origin; the
   * server's own origin (per the `Host` header) and requests without an
   * Origin header (non-browser clients) are allowed. An entry that is not an
   * origin throws a `TypeError` here. A predicate decides every request
   * alone, those without Origin too. Default: every origin (no check).
   */
  allowedOrigins?: string[] | ((origin: string | undefined, request: UpgradeRequest) => boolean);
  /** Max open connections; more get 503 with Retry-After. Default: no limit. */
  maxConnections?: number;
  /** Seconds sent in Retry-After with a 503. Default 5. */
  retryAfter?: number;
  /** On a server created with `port`: max time in ms for a client to send its whole request head (408 after). Default 10 s. */
  handshakeTimeout?: number;
  /** On a server created with `port`: limits of the request head (defaults: 16 KiB, 100 fields, 8 KiB request-target). */
  requestLimits?: UpgradeParserLimits;
  /** Ping each client every `interval` ms and terminate those that stay silent for `timeout` ms. Default: off. */
  heartbeat?: HeartbeatOptions;
  /** Time to wait for the peer's part of the closing handshake before destroying the socket, in ms. Default 30 s. */
  closeTimeout?: number;
}

const RUNNING = 0;
const CLOSING = 1;
const CLOSED = 2;

/** A socket of a server created with `port` while its request head arrives. */
interface PendingHandshake {
  parser: UpgradeRequestParser;
  /** performance.now() by which the head must be complete. */
  deadline: number;
}
type HandshakingSocket = net.Socket;

/** The WebSocketServers listening for upgrades on each HTTP server, in the order they were attached. */
const attachedServers = new WeakMap<http.Server | https.Server | AnyHttp2Server, WebSocketServer[]>();

export class WebSocketServer extends EventEmitter implements SocketOwner {
  readonly options: ServerOptions;
  /** The open connections (when `clientTracking` is on). */
  readonly clients: Set<WebSocket>;
  private server: http.Server | https.Server | net.Server | AnyHttp2Server | null = null;
  /** The h2 sessions that carried our WebSockets: GOAWAY once they answered the 1001 of close(). */
  private readonly h2Sessions = new Http2SessionSet();
  private ownsServer = false;
  private state = RUNNING;
  private connectionCount = 0;
  private readonly deflateOptions: PerMessageDeflateOptions | null;
  private readonly originCheck: OriginCheck | null;
  /** Every connection's heartbeat on one timer (created with the first connection). */
  private heartbeatWheel: HeartbeatWheel | null = null;
  private connectionSetup: SocketSetup | null = null;
  /**
   * Server created with `port`: sockets whose request head is still arriving
   * (kept here, not on the socket: nothing of the handshake stays with an
   * open connection), and the one timer that bounds them.
   */
  private readonly handshaking = new Map<HandshakingSocket, PendingHandshake>();
  /** The 'data' and 'close' listeners of those sockets: one function per server, not per socket. */
  private readonly onHandshakeData: (this: HandshakingSocket, chunk: Buffer) => void;
  private readonly onHandshakeClose: (this: HandshakingSocket) => void;
  private handshakeTimer: NodeJS.Timeout | null = null;
  private readonly handshakeTimeout: number;
  private readonly removeListeners: () => void = () => {};

  constructor(options: ServerOptions, callback?: () => void) {
    super();
    const modes = [options.port !== undefined, options.server !== undefined, options.noServer === true].filter(Boolean).length;
    if (modes !== 1) {
      throw new TypeError('One and only one of the "port", "server", or "noServer" options must be specified');
    }
    // `?? default`, not spread order: an option passed as `undefined` (`{ maxPayload: cli.maxPayload }`) takes its default.
    this.options = {
      ...options,
      maxPayload: options.maxPayload ?? DEFAULT_MAX_PAYLOAD,
      clientTracking: options.clientTracking ?? true,
      closeTimeout: options.closeTimeout ?? DEFAULT_CLOSE_TIMEOUT,
    };
    this.clients = new Set();
    this.deflateOptions =
      options.perMessageDeflate === true ? {} : options.perMessageDeflate ? options.perMessageDeflate : null;
    this.originCheck = Array.isArray(options.allowedOrigins) ? createOriginCheck(options.allowedOrigins) : null;

    this.handshakeTimeout = options.handshakeTimeout ?? 10_000;
    const wss = this;
    this.onHandshakeData = function (chunk) {
      wss.handshakeData(this, chunk);
    };
    this.onHandshakeClose = function () {
      wss.endHandshake(this);
    };
    if (options.port !== undefined) {
      // TCP_NODELAY set as each socket is accepted (WebSocket#setSocket's own setNoDelay is then a no-op).
      const server = net.createServer({ noDelay: true }, (socket) => this.onRawConnection(socket));
      server.on('listening', () => this.emit('listening'));
      server.on('error', (err: Error) => this.emit('error', err));
      this.server = server;
      this.ownsServer = true;
      server.listen(options.port, options.host, options.backlog, callback);
    } else if (options.server) {
      const server = options.server;
      this.server = server;
      const onListening = () => this.emit('listening');
      const onError = (err: Error) => this.emit('error', err);
      const peers = attachedServers.get(server) ?? [];
      attachedServers.set(server, peers);
      peers.push(this);
      const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
        // Several servers (or other upgrade handlers) may share one HTTP
        // server by path: a request for another path is left to them. When
        // none of them takes it, exactly one answer is sent: 400 from the
        // first WebSocketServer attached (unless a foreign 'upgrade' handler
        // is there to answer), so the socket is never left hanging.
        if (!this.shouldHandle(req)) {
          if (peers.some((p) => p !== this && p.shouldHandle(req))) return;
          if (server.listenerCount('upgrade') > peers.length || peers[0] !== this) return;
        }
        this.handleUpgrade(req, socket, head, (ws) => this.emit('connection', ws, req));
      };
      server.on('listening', onListening);
      server.on('error', onError);
      server.on('upgrade', onUpgrade);
      const detachH2 = isHttp2Server(server)
        ? attachHttp2Server(server, {
            shouldHandle: (req) => this.shouldHandle(req),
            handleStream: (stream, headers) => this.handleHttp2Stream(stream, headers, (ws, req) => this.emit('connection', ws, req)),
          })
        : null;
      this.removeListeners = () => {
        detachH2?.();
        server.removeListener('listening', onListening);
        server.removeListener('error', onError);
        server.removeListener('upgrade', onUpgrade);
        const i = peers.indexOf(this);
        if (i !== -1) peers.splice(i, 1);
      };
    }
  }

  // ---- the server created with `port`: request heads read here --------------------

  private onRawConnection(socket: HandshakingSocket): void {
    if (this.state !== RUNNING) {
      socket.destroy();
      return;
    }
    this.handshaking.set(socket, {
      parser: new UpgradeRequestParser(this.options.requestLimits),
      deadline: performance.now() + this.handshakeTimeout,
    });
    socket.on('data', this.onHandshakeData);
    socket.on('error', onHandshakeSocketError);
    socket.on('close', this.onHandshakeClose);
    this.handshakeTimer ??= setInterval(sweepHandshakes, Math.max(100, Math.min(1000, Math.floor(this.handshakeTimeout / 2))), this).unref();
  }

  private handshakeData(socket: HandshakingSocket, chunk: Buffer): void {
    const pending = this.handshaking.get(socket);
    if (pending === undefined) return;
    const result = pending.parser.write(chunk);
    if (result !== null) this.handshakeParsed(socket, result);
  }

  /** The head is complete (or broken): the socket leaves the handshake sweep, then is answered or upgraded. */
  private handshakeParsed(socket: HandshakingSocket, result: ParsedHead | HandshakeError): void {
    this.endHandshake(socket);
    if (result instanceof HandshakeError) {
      answerAndClose(socket, result);
      return;
    }
    const { head, rest } = result;
    const request = new http.IncomingMessage(socket);
    request.method = head.method;
    request.url = head.url;
    request.httpVersionMajor = head.httpVersionMajor;
    request.httpVersionMinor = head.httpVersionMinor;
    request.httpVersion = `${head.httpVersionMajor}.${head.httpVersionMinor}`;
    request.headers = head.headers;
    request.rawHeaders = head.rawHeaders;
    request.complete = true;
    // As node:http: an upgrade is a request with both `Upgrade` and `Connection: upgrade`;
    // anything else is a plain request, and this server only speaks WebSocket.
    const connection = request.headers['connection'];
    if (request.headers['upgrade'] === undefined || typeof connection !== 'string' || !/(?:^|,)\s*upgrade\s*(?:,|$)/i.test(connection)) {
      answerAndClose(socket, new HandshakeError('WS_ERR_UPGRADE_REQUIRED', http.STATUS_CODES[426]!, 426, { Upgrade: 'websocket' }));
      return;
    }
    // Back to "not flowing": bytes that arrive before the WebSocket listens (an async
    // verifyClient) wait in the stream, as after node:http's 'upgrade'.
    (socket as { readableFlowing: boolean | null }).readableFlowing = null;
    this.handleUpgrade(request, socket, rest, (ws) => this.emit('connection', ws, request));
  }

  /** The head arrived (or the socket closed before it did, or its time ran out). */
  private endHandshake(socket: HandshakingSocket): void {
    if (!this.handshaking.delete(socket)) return;
    socket.removeListener('data', this.onHandshakeData);
    socket.removeListener('error', onHandshakeSocketError);
    socket.removeListener('close', this.onHandshakeClose);
  }

  /**
   * @internal One timer for every pending handshake: those past their deadline
   * get 408. It stops at a sweep that finds none pending (not when the last
   * one completes: a burst of handshakes would start and stop it for each).
   */
  _sweepHandshakes(): void {
    if (this.handshaking.size === 0 || this.state !== RUNNING) {
      if (this.handshakeTimer) clearInterval(this.handshakeTimer);
      this.handshakeTimer = null;
      return;
    }
    const now = performance.now();
    for (const [socket, pending] of this.handshaking) {
      if (pending.deadline > now) continue;
      this.endHandshake(socket);
      answerAndClose(socket, new HandshakeError('WS_ERR_HANDSHAKE_TIMEOUT', 'the request head did not arrive in time', 408));
    }
  }

  /** The address the server listens on (not available with `noServer`). */
  address(): AddressInfo | string | null {
    if (this.options.noServer) throw new Error('The server is operating in "noServer" mode');
    return this.server ? this.server.address() : null;
  }

  /** Whether a request is for this server (the `path` option). */
  shouldHandle(req: UpgradeRequest): boolean {
    if (this.options.path) {
      const q = req.url?.indexOf('?') ?? -1;
      const pathname = q !== -1 ? req.url!.slice(0, q) : req.url;
      if (pathname !== this.options.path) return false;
    }
    return true;
  }

  /**
   * Complete (or refuse) a WebSocket request on an HTTP/2 stream: an extended
   * CONNECT with `:protocol` `websocket` (RFC 8441), from your server's
   * `'stream'` listener. The same checks, negotiation and `WebSocket` as
   * `handleUpgrade`; the answer is `:status` 200 on the stream, a refusal an
   * ordinary HTTP response (400, 403, 404, 426, 501 for another `:protocol`,
   * 503...). `req` (for `cb`, `verifyClient`, `handleProtocols`) has
   * `httpVersion` `'2.0'` and the stream as `req.stream`.
   */
  handleHttp2Stream(
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    cb: (ws: WebSocket, req: http.IncomingMessage) => void,
  ): void {
    this.handleUpgrade(http2UpgradeRequest(stream, headers), stream, EMPTY_HEAD, cb);
  }

  /**
   * Complete (or refuse) an upgrade. On success `cb(ws, req)` gets the open
   * connection; on failure the socket gets an HTTP error answer and `cb` is
   * not called.
   */
  handleUpgrade(
    req: UpgradeRequest,
    socket: Duplex,
    head: Buffer,
    cb: (ws: WebSocket, req: UpgradeRequest) => void,
  ): void {
    socket.on('error', onHandshakeSocketError);
    let offer;
    try {
      if (this.state !== RUNNING) {
        throw new HandshakeError('WS_ERR_SERVER_CLOSING', 'The server is shutting down', 503, {
          'Retry-After': String(this.options.retryAfter ?? 5),
        });
      }
      if (!this.shouldHandle(req)) throw new HandshakeError('WS_ERR_INVALID_PATH', 'Unknown path', 400);
      offer = isHttp2Request(req)
        ? { key: '', ...validateConnectRequest(req.headers) }
        : validateUpgradeRequest({ method: req.method ?? '', httpVersion: req.httpVersion, headers: req.headers });
      const origin = headerValue(req.headers.origin);
      if (!this.originAllowed(origin, req)) {
        throw new HandshakeError('WS_ERR_ORIGIN_NOT_ALLOWED', 'Origin not allowed', 403);
      }
      if (this.options.maxConnections !== undefined && this.connectionCount >= this.options.maxConnections) {
        throw new HandshakeError('WS_ERR_TOO_MANY_CONNECTIONS', 'Too many connections', 503, {
          'Retry-After': String(this.options.retryAfter ?? 5),
        });
      }
    } catch (err) {
      this.refuse(socket, req, err as Error);
      return;
    }

    const { key, protocols, extensions } = offer;
    let deflate: ReturnType<typeof acceptDeflateOffer> = null;
    if (this.deflateOptions) {
      try {
        deflate = acceptDeflateOffer(extensions, this.deflateOptions);
      } catch (err) {
        this.refuse(socket, req, err as Error);
        return;
      }
    }

    let protocol = '';
    try {
      if (protocols.length > 0) {
        const chosen = this.options.handleProtocols
          ? this.options.handleProtocols(new Set(protocols), req)
          : protocols[0]!;
        // A server may only answer with a protocol the client offered (§4.2.2).
        if (chosen && protocols.includes(chosen)) protocol = chosen;
      }
      if (this.options.verifyClient && this.options.verifyClient.length < 2) {
        if (!(this.options.verifyClient as (i: VerifyClientInfo) => boolean)(verifyInfo(req))) {
          throw new HandshakeError('WS_ERR_CLIENT_REJECTED', 'Unauthorized', 401);
        }
      }
    } catch (err) {
      // A throwing application callback gets a 500, not a crash.
      this.refuse(socket, req, err as Error);
      return;
    }

    const verify = this.options.verifyClient;
    if (!verify || verify.length < 2) {
      this.completeUpgrade(key, protocol, deflate, req, socket, head, cb);
      return;
    }
    (verify as (i: VerifyClientInfo, cb: VerifyClientCallback) => void)(verifyInfo(req), (ok, code, message, headers) => {
      if (!ok) {
        const status = code ?? 401;
        this.refuse(socket, req, new HandshakeError('WS_ERR_CLIENT_REJECTED', message ?? http.STATUS_CODES[status] ?? 'Unauthorized', status, headers));
        return;
      }
      this.completeUpgrade(key, protocol, deflate, req, socket, head, cb);
    });
  }

  private originAllowed(origin: string | undefined, req: UpgradeRequest): boolean {
    const allowed = this.options.allowedOrigins;
    if (allowed === undefined) return true;
    if (typeof allowed === 'function') return allowed(origin, req);
    return this.originCheck!(origin, headerValue(req.headers.host));
  }

  private refuse(socket: Duplex, req: UpgradeRequest, err: Error): void {
    const handshakeErr =
      err instanceof HandshakeError ? err : new HandshakeError('WS_ERR_HANDSHAKE_FAILED', 'Internal Server Error', 500);
    if (this.listenerCount('wsClientError') > 0) {
      this.emit('wsClientError', handshakeErr, socket, req);
      return;
    }
    if (isHttp2Request(req)) {
      respondHttp2Refusal(req.stream, handshakeErr);
      return;
    }
    if (socket.writable) socket.end(buildErrorResponse(handshakeErr));
    socket.destroy();
  }

  private completeUpgrade(
    key: string,
    protocol: string,
    deflate: ReturnType<typeof acceptDeflateOffer>,
    req: UpgradeRequest,
    socket: Duplex,
    head: Buffer,
    cb: (ws: WebSocket, req: UpgradeRequest) => void,
  ): void {
    if (!socket.readable || !socket.writable) {
      socket.destroy();
      return;
    }
    if (this.state !== RUNNING) {
      this.refuse(socket, req, new HandshakeError('WS_ERR_SERVER_CLOSING', 'The server is shutting down', 503));
      return;
    }
    const extraHeaders: string[] = [];
    try {
      this.emit('headers', extraHeaders, req);
      if (isHttp2Request(req)) {
        respondHttp2Accept(req.stream, protocol, deflate ? deflate.responseHeader : '', extraHeaders);
        this.h2Sessions.add(req.stream);
        resetWithCancel(req.stream);
      } else {
        socket.write(
          buildUpgradeResponse({
            key,
            protocol: protocol || undefined,
            extensions: deflate ? deflate.responseHeader : undefined,
            headers: extraHeaders.length > 0 ? linesToHeaders(extraHeaders) : undefined,
          }),
        );
      }
    } catch (err) {
      // A 'headers' listener that throws or sets a handshake header is the
      // application's bug: answer 500 rather than take the process down.
      this.refuse(socket, req, err as Error);
      return;
    }
    socket.removeListener('error', onHandshakeSocketError);

    const codec = deflate
      ? new PerMessageDeflateCodec({
          role: 'server',
          params: deflate.params,
          maxPayload: this.options.maxPayload!,
          level: this.deflateOptions!.level,
          memLevel: this.deflateOptions!.memLevel,
          threshold: this.deflateOptions!.threshold,
          concurrencyLimit: this.deflateOptions!.concurrencyLimit,
          idleReleaseMs: this.deflateOptions!.idleReleaseMs,
        })
      : null;
    const ws = new WebSocket(null);
    ws.setSocket(socket, head, this.connectionSetup ??= this.makeConnectionSetup(), {
      codec,
      protocol,
      extensions: deflate ? deflate.responseHeader : '',
    });
    this.connectionCount++;
    if (this.options.clientTracking) this.clients.add(ws);
    cb(ws, req);
  }

  /** What every connection of this server shares (one object, not a copy per connection). */
  private makeConnectionSetup(): SocketSetup {
    const heartbeat = this.options.heartbeat;
    if (heartbeat && heartbeat.interval > 0) this.heartbeatWheel ??= new HeartbeatWheel(heartbeat);
    return {
      role: 'server',
      maxPayload: this.options.maxPayload,
      skipUTF8Validation: this.options.skipUTF8Validation,
      autoPong: this.options.autoPong,
      heartbeatWheel: this.heartbeatWheel,
      closeTimeout: this.options.closeTimeout,
      owner: this,
    };
  }

  /** @internal SocketOwner: one of our connections closed. */
  _clientClosed(ws: WebSocket): void {
    this.connectionCount--;
    this.clients.delete(ws);
    if (this.state === CLOSING) this.maybeClosed();
  }

  /**
   * Stop accepting connections and close the open ones with 1001 (Going
   * Away). Clients that do not answer are destroyed after `closeTimeout`.
   * 'close' is emitted (and `cb` called) once the server and every client are closed.
   */
  close(cb?: (err?: Error) => void): void {
    if (this.state === CLOSED) {
      if (cb) process.nextTick(cb, new Error('The server is not running'));
      return;
    }
    if (cb) this.once('close', () => cb());
    if (this.state === CLOSING) return;
    this.state = CLOSING;
    this.removeListeners();
    for (const socket of this.handshaking.keys()) {
      this.endHandshake(socket);
      socket.destroy();
    }
    if (this.handshakeTimer) clearInterval(this.handshakeTimer);
    this.handshakeTimer = null;
    for (const ws of this.clients) ws.close(CloseCode.GoingAway, 'server shutting down');
    if (this.ownsServer && this.server) {
      this.server.close(() => {
        this.ownsServer = false;
        this.maybeClosed();
      });

    } else {
      process.nextTick(() => this.maybeClosed());
    }
  }

  private maybeClosed(): void {
    if (this.state !== CLOSING || this.ownsServer || this.connectionCount > 0) return;
    this.state = CLOSED;
    // RFC 8441 streams have answered the 1001 (or were cut off): their sessions get a GOAWAY.
    this.h2Sessions.goAway();
    this.emit('close');
  }
}

const EMPTY_HEAD = Buffer.alloc(0);

function onHandshakeSocketError(this: Duplex): void {
  this.destroy();
}

function sweepHandshakes(server: WebSocketServer): void {
  server._sweepHandshakes();
}

/** Answer a refused request head and close; a peer that does not read the answer is cut off after a second. */
function answerAndClose(socket: net.Socket, err: HandshakeError): void {
  socket.on('error', onHandshakeSocketError);
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(buildErrorResponse(err));
  setTimeout(destroySocket, 1000, socket).unref();
}

function destroySocket(socket: net.Socket): void {
  socket.destroy();
}

/** The 'headers' event hands out `Name: value` lines (as `ws` does); the response builder takes a record. */
function linesToHeaders(lines: string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim();
    (out[name] ??= []).push(line.slice(colon + 1).trim());
  }
  return out;
}

function verifyInfo(req: UpgradeRequest): VerifyClientInfo {
  return {
    origin: headerValue(req.headers.origin) ?? headerValue(req.headers['sec-websocket-origin']),
    secure: Boolean((req.socket as { encrypted?: boolean }).encrypted),
    req,
  };
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

// Typed events (merged into the class).
export interface WebSocketServer {
  on(event: 'connection', listener: (this: WebSocketServer, ws: WebSocket, request: UpgradeRequest) => void): this;
  on(event: 'error', listener: (this: WebSocketServer, err: Error) => void): this;
  on(event: 'headers', listener: (this: WebSocketServer, headers: string[], request: UpgradeRequest) => void): this;
  on(event: 'wsClientError', listener: (this: WebSocketServer, err: HandshakeError, socket: Duplex, request: UpgradeRequest) => void): this;
  on(event: 'listening' | 'close', listener: (this: WebSocketServer) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  once(event: 'connection', listener: (this: WebSocketServer, ws: WebSocket, request: UpgradeRequest) => void): this;
  once(event: 'listening' | 'close', listener: (this: WebSocketServer) => void): this;
  once(event: string | symbol, listener: (...args: any[]) => void): this;
}
