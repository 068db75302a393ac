/**
 * The server side of WebSockets over HTTP/2 (RFC 8441): what differs from
 * the HTTP/1.1 Upgrade, kept out of `WebSocketServer` so that everything
 * after the handshake is the same code path (the same `WebSocket` bound to
 * the h2 stream as a `Duplex`).
 *
 * - {@link Http2UpgradeRequest}: the request a `verifyClient`,
 *   `handleProtocols` or `'connection'` listener sees for an h2 stream: the
 *   fields of `http.IncomingMessage` they read (`method`, `url`, `headers`
 *   with `host` taken from `:authority`, `httpVersion` `'2.0'`, `socket`),
 *   plus the `stream`.
 * - {@link respondHttp2Accept} / {@link respondHttp2Refusal}: the answer on
 *   the stream (`:status` 200, or an ordinary HTTP error response).
 * - {@link attachHttp2Server}: the `'stream'` listener of an h2 server, the
 *   `enableConnectProtocol` setting, and the compatibility layer's 405 trap
 *   (with a `'request'` listener, node:http2 answers every CONNECT with 405
 *   unless a `'connect'` listener exists).
 *
 * @see https://www.rfc-editor.org/rfc/rfc8441
 */
import type http from 'node:http';
import http2 from 'node:http2';
import type { Socket } from 'node:net';
import { addAbortSignal, type Duplex } from 'node:stream';
import { HandshakeError } from '../protocol/errors.js';
import { isToken } from '../protocol/extensions/header.js';

const {
  NGHTTP2_CANCEL,
  NGHTTP2_NO_ERROR,
  HTTP2_HEADER_STATUS,
  HTTP2_HEADER_METHOD,
  HTTP2_HEADER_PATH,
  HTTP2_HEADER_AUTHORITY,
} = http2.constants;
/** Not in @types/node's constants (node:http2 has it since the extended CONNECT support). */
const HTTP2_HEADER_PROTOCOL = ':protocol';

/** An HTTP/2 server a `WebSocketServer` can attach to. */
export type AnyHttp2Server = http2.Http2Server | http2.Http2SecureServer;

/**
 * The request of a WebSocket opened by an extended CONNECT, shaped like the
 * `http.IncomingMessage` of an Upgrade for the code that inspects requests
 * (origin, credentials, path, client address): `headers` holds the stream's
 * fields, pseudo-headers included, and `host` (from `:authority` when the
 * client sent no `host`). `httpVersion` is `'2.0'`: that is how a
 * `'connection'` listener tells an h2 WebSocket from an HTTP/1.1 one.
 */
export class Http2UpgradeRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly rawHeaders: string[];
  readonly httpVersion = '2.0';
  readonly httpVersionMajor = 2;
  readonly httpVersionMinor = 0;
  /** The TLS or TCP socket under the HTTP/2 session (read-only use: node:http2 forbids I/O on it). */
  readonly socket: Socket;
  /** The HTTP/2 stream the WebSocket runs on. */
  readonly stream: http2.ServerHttp2Stream;

  constructor(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) {
    this.stream = stream;
    this.method = String(headers[HTTP2_HEADER_METHOD] ?? '');
    this.url = String(headers[HTTP2_HEADER_PATH] ?? '/');
    const copy: http.IncomingHttpHeaders = { ...(headers as http.IncomingHttpHeaders) };
    const authority = headers[HTTP2_HEADER_AUTHORITY];
    if (copy.host === undefined && typeof authority === 'string') copy.host = authority;
    this.headers = copy;
    this.rawHeaders = [];
    for (const [name, value] of Object.entries(copy)) {
      for (const v of Array.isArray(value) ? value : [value]) if (v !== undefined) this.rawHeaders.push(name, String(v));
    }
    this.socket = stream.session!.socket as Socket;
  }

  /** `ws`'s name for the socket (`req.connection`). */
  get connection(): Socket {
    return this.socket;
  }
}

/** Wrap an h2 stream's request for the code that reads `http.IncomingMessage`s (see {@link Http2UpgradeRequest}). */
export function http2UpgradeRequest(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): http.IncomingMessage {
  return new Http2UpgradeRequest(stream, headers) as unknown as http.IncomingMessage;
}

/** Whether a request came on an HTTP/2 stream (an {@link Http2UpgradeRequest}). */
export function isHttp2Request(req: http.IncomingMessage | Http2UpgradeRequest): req is http.IncomingMessage & Http2UpgradeRequest {
  return req instanceof Http2UpgradeRequest;
}

/** Whether a stream is a WebSocket request: an extended CONNECT (any `:protocol`, so that others get their 501). */
export function isExtendedConnect(headers: http2.IncomingHttpHeaders): boolean {
  return headers[HTTP2_HEADER_METHOD] === 'CONNECT' && headers[HTTP2_HEADER_PROTOCOL] !== undefined;
}

/** Header names HTTP/2 forbids (RFC 9113 §8.2.2) or that the answer sets itself. */
const NOT_ON_H2 = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'content-length', 'content-type']);

/**
 * Accept the WebSocket: `:status` 200 with the negotiated subprotocol and
 * extensions and the application's extra header lines (`Name: value`, the
 * `'headers'` event's). The stream stays open both ways; from here on its
 * DATA frames carry WebSocket frames.
 * @throws TypeError for a subprotocol that is not a token or an extra header HTTP/2 cannot carry.
 * @see https://www.rfc-editor.org/rfc/rfc8441#section-5
 */
export function respondHttp2Accept(stream: http2.ServerHttp2Stream, protocol: string, extensions: string, extraLines: readonly string[]): void {
  const headers: http2.OutgoingHttpHeaders = { [HTTP2_HEADER_STATUS]: 200 };
  if (protocol) {
    if (!isToken(protocol)) throw new TypeError(`Subprotocol is not a token: ${JSON.stringify(protocol)}`);
    headers['sec-websocket-protocol'] = protocol;
  }
  if (extensions) headers['sec-websocket-extensions'] = extensions;
  for (const line of extraLines) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!isToken(name) || NOT_ON_H2.has(name) || name.startsWith('sec-websocket-')) {
      throw new TypeError(`Header ${name} cannot be set on an HTTP/2 WebSocket answer`);
    }
    const value = line.slice(colon + 1).trim();
    const prev = headers[name];
    headers[name] = prev === undefined ? value : ([] as string[]).concat(prev as string | string[], value);
  }
  // A request the client ended (END_STREAM on the CONNECT) cannot carry a WebSocket.
  stream.respond(headers, { endStream: false });
}

/**
 * Refuse on the stream with an ordinary HTTP response: `:status`, the
 * error's headers (`retry-after`, `allow`, `sec-websocket-version`) and its
 * message as a text body; then RST_STREAM(NO_ERROR) if the client has not
 * ended its side (RFC 9113 §8.1: a complete answer may stop the request
 * "without error"). Never throws; a stream already answered or gone is
 * cancelled.
 */
export function respondHttp2Refusal(stream: http2.ServerHttp2Stream, err: HandshakeError): void {
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    stream.close(NGHTTP2_CANCEL);
    return;
  }
  const status = Number.isInteger(err.statusCode) && err.statusCode >= 400 && err.statusCode <= 599 ? err.statusCode : 400;
  const headers: http2.OutgoingHttpHeaders = { [HTTP2_HEADER_STATUS]: status, 'content-type': 'text/plain; charset=utf-8' };
  for (const [name, value] of Object.entries(err.headers)) {
    const lower = name.toLowerCase();
    if (isToken(lower) && !NOT_ON_H2.has(lower) && /^[\t\x20-\x7e]*$/.test(value)) headers[lower] = value;
  }
  stream.on('error', ignore);
  try {
    stream.respond(headers);
    stream.end(err.message, () => {
      if (!stream.closed) stream.close(NGHTTP2_NO_ERROR);
    });
  } catch {
    stream.destroy();
  }
}

function ignore(): void {}

/**
 * Make `destroy()` of an h2 stream that carries a WebSocket reset it with
 * CANCEL, RFC 8441 §6's counterpart of a TCP RST ("RST exceptions represent
 * RST_STREAM frames with the CANCEL error code"). node:http2 would send
 * NO_ERROR, and `close(CANCEL)` ends the stream (END_STREAM, the
 * counterpart of a FIN) before the reset. Destroying with an AbortError
 * (what `addAbortSignal` does) sends the RST_STREAM(CANCEL) alone. The
 * WebSocket destroys its `Duplex` on terminate(), on a close timeout and on
 * a stream error.
 */
export function resetWithCancel(stream: http2.Http2Stream): void {
  const abort = new AbortController();
  addAbortSignal(abort.signal, stream);
  const destroy = stream.destroy;
  stream.destroy = function destroyWithCancel(this: http2.Http2Stream, error?: Error) {
    if (error === undefined && !this.closed && !this.destroyed) {
      abort.abort();
      return this;
    }
    return destroy.call(this, error);
  };
}

/** Whether a `Duplex` handed to a WebSocketServer is an h2 stream (it answers with `respond`). */
export function isHttp2Stream(socket: Duplex): socket is http2.ServerHttp2Stream {
  return typeof (socket as Partial<http2.ServerHttp2Stream>).respond === 'function' && 'session' in socket;
}

/** Whether a server given to a `WebSocketServer` is an HTTP/2 one (node:http2, with or without allowHTTP1). */
export function isHttp2Server(server: unknown): server is AnyHttp2Server {
  return typeof (server as Partial<AnyHttp2Server>).updateSettings === 'function';
}

/** The servers that attach to one h2 server (several WebSocketServers by path, as for 'upgrade'). */
export interface Http2Endpoint {
  /** Whether the request is for this endpoint (its path). */
  shouldHandle(req: http.IncomingMessage): boolean;
  /** Take the stream (a WebSocket request for this endpoint, or the refusal). */
  handleStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void;
}

interface AttachedH2 {
  endpoints: Http2Endpoint[];
  onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void;
  onConnect: (req: http.IncomingMessage | http2.Http2ServerRequest, resOrSocket: unknown) => void;
}

const attachedH2 = new WeakMap<AnyHttp2Server, AttachedH2>();

/**
 * Listen for WebSocket streams on an HTTP/2 server, for `endpoint`:
 * - turns `enableConnectProtocol` on for new sessions (and off again when the
 *   last endpoint detaches), so the setting is advertised only while a
 *   WebSocket endpoint is mounted;
 * - one `'stream'` listener per server takes every extended CONNECT: the
 *   endpoint whose path matches gets it; none → 404 (unless the application
 *   has its own `'stream'` listener to answer);
 * - one `'connect'` listener defuses the compatibility layer's 405 for the
 *   streams the `'stream'` listener answers, and answers an HTTP/1.1 CONNECT
 *   (allowHTTP1) with 405 as Node would when no one listens.
 * Returns the detach function.
 */
export function attachHttp2Server(server: AnyHttp2Server, endpoint: Http2Endpoint): () => void {
  let attached = attachedH2.get(server);
  if (!attached) {
    const endpoints: Http2Endpoint[] = [];
    const onStream = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void => {
      if (!isExtendedConnect(headers) || stream.headersSent) return;
      const req = http2UpgradeRequest(stream, headers);
      const target = endpoints.find((e) => e.shouldHandle(req));
      if (target) {
        target.handleStream(stream, headers);
        return;
      }
      // Another 'stream' listener (the application's; the compat layer's is one of ours to count) may answer.
      const compat = server.listenerCount('request') > 0 ? 1 : 0;
      if (server.listenerCount('stream') - compat > 1) return;
      respondHttp2Refusal(stream, new HandshakeError('WS_ERR_INVALID_PATH', 'Unknown path', 404));
    };
    const onConnect = (req: http.IncomingMessage | http2.Http2ServerRequest, resOrSocket: unknown): void => {
      if ((req as http2.Http2ServerRequest).stream !== undefined) {
        // HTTP/2 (compat layer): ours are answered by onStream; a classic CONNECT tunnel is not served.
        const h2req = req as http2.Http2ServerRequest;
        if (isExtendedConnect(h2req.headers)) return;
        if (server.listenerCount('connect') > 1) return;
        const res = resOrSocket as http2.Http2ServerResponse;
        res.writeHead(405, { allow: 'GET, HEAD, POST' });
        res.end();
        return;
      }
      // HTTP/1.1 CONNECT on an allowHTTP1 server: what Node does when no one listens, with a status.
      if (server.listenerCount('connect') > 1) return;
      const socket = resOrSocket as Duplex;
      socket.on('error', ignore);
      socket.end('HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      setTimeout(() => socket.destroy(), 1000).unref();
    };
    attached = { endpoints, onStream, onConnect };
    attachedH2.set(server, attached);
    server.on('stream', onStream);
    server.on('connect', onConnect);
    server.updateSettings({ enableConnectProtocol: true });
  }
  const entry = attached;
  entry.endpoints.push(endpoint);
  return () => {
    const i = entry.endpoints.indexOf(endpoint);
    if (i === -1) return;
    entry.endpoints.splice(i, 1);
    if (entry.endpoints.length > 0) return;
    server.removeListener('stream', entry.onStream);
    server.removeListener('connect', entry.onConnect);
    server.updateSettings({ enableConnectProtocol: false });
    attachedH2.delete(server);
  };
}

/**
 * The h2 sessions that carried a server's WebSockets, for the graceful
 * shutdown: once every WebSocket has answered the 1001, each session gets a
 * GOAWAY (`session.close()`: streams still open finish, no new ones start).
 */
export class Http2SessionSet {
  private readonly sessions = new Set<http2.Http2Session>();

  /** Remember the session of a stream that became a WebSocket (until it closes). */
  add(stream: http2.ServerHttp2Stream): void {
    const session = stream.session;
    if (!session || this.sessions.has(session)) return;
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
  }

  /** GOAWAY on every session. */
  goAway(): void {
    for (const session of this.sessions) if (!session.closed && !session.destroyed) session.close();
    this.sessions.clear();
  }
}
