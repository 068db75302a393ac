/**
 * The seam between the client and a carrier of realtime messages. A
 * transport moves protocol messages (docs/protocol.md) and reports three
 * things to its handler: it opened, a message arrived, it closed. The client
 * knows nothing else about WebSocket, SSE or long-polling.
 *
 * Contract:
 * - `open()` starts connecting and never calls the handler synchronously.
 * - `onOpen` comes at most once, before any `onMessage`.
 * - `onClose(code, reason)` comes at most once, and nothing after it. It is
 *   the same whether the transport never opened (then `code` is 1006 or a
 *   code derived from an HTTP status) or was open.
 * - After the client calls `close()`, the handler is never called again.
 * - `send()` is only called between `onOpen` and the close; messages arrive
 *   at the server in the order they were sent.
 */
import type { ClientMessage, ServerMessage } from '../../wire/messages.js';

/** The carriers, by name: WebSocket, Server-Sent Events (+ POST), HTTP long-polling (+ POST). */
export type TransportName = 'websocket' | 'sse' | 'poll';

export const TRANSPORT_NAMES: readonly TransportName[] = ['websocket', 'sse', 'poll'];

/** The HTTP version carrying a connection, by its ALPN name (as `nextHopProtocol` spells it). */
export type HttpProtocol = 'h2' | 'http/1.1';

/** An ALPN-style protocol name (`nextHopProtocol`, or the server's `'2'`/`'1.1'`) as an {@link HttpProtocol}; null for others (h3, '', unknown). */
export function httpProtocolOf(value: unknown): HttpProtocol | null {
  switch (value) {
    case 'h2':
    case 'h2c':
    case '2':
    case '2.0':
      return 'h2';
    case 'http/1.1':
    case 'http/1.0':
    case '1.1':
    case '1.0':
      return 'http/1.1';
    default:
      return null;
  }
}

export interface TransportHandler {
  onOpen(): void;
  onMessage(message: ServerMessage): void;
  onClose(code: number, reason: string): void;
}

export interface ClientTransport {
  readonly name: TransportName;
  open(): void;
  send(message: ClientMessage): void;
  /** Close (for HTTP transports: end the session with DELETE). `code` defaults to 1000. No handler call follows. */
  close(code?: number, reason?: string): void;
  /**
   * The HTTP version carrying the connection, when the implementation under
   * it says (`switchboard`'s WebSocket in Node: `httpVersion`); null when it
   * cannot tell (browsers), or before `onOpen`.
   */
  readonly httpProtocol?: HttpProtocol | null;
}

// ---- what the environment provides (browser globals, or passed in) ---------------

/** The part of the WHATWG `WebSocket` the SDK uses. The browser's and `switchboard`'s own both fit. */
export interface WebSocketLike {
  readonly readyState: number;
  /** The subprotocol the server selected. */
  readonly protocol: string;
  binaryType: string;
  send(data: string | ArrayBufferView | ArrayBuffer): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: (event: any) => void): void;
  /** `switchboard`'s WebSocket only: `'2'` on an HTTP/2 stream (RFC 8441), `'1.1'` else. */
  readonly httpVersion?: string;
}

/** A WebSocket constructor; the third argument (`webSocketOptions`) reaches implementations that take one (`switchboard`, `ws`); browsers ignore it. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[], options?: object) => WebSocketLike;

/** The part of the WHATWG `EventSource` the SDK uses. */
export interface EventSourceLike {
  /** 0 connecting, 1 open, 2 closed (for good: it will not reconnect by itself). */
  readonly readyState: number;
  close(): void;
  addEventListener(type: string, listener: (event: any) => void): void;
}

export type EventSourceConstructor = new (url: string, init?: { withCredentials?: boolean }) => EventSourceLike;

/** The part of a fetch `Response` the SDK uses. */
export interface ResponseLike {
  readonly status: number;
  readonly ok: boolean;
  json(): Promise<unknown>;
  text(): Promise<string>;
}

export interface FetchInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
  credentials?: 'omit' | 'same-origin' | 'include';
  keepalive?: boolean;
  mode?: 'cors' | 'no-cors' | 'same-origin';
  cache?: 'default' | 'no-store' | 'reload' | 'no-cache';
}

/** `fetch`, or anything with its shape. */
export type FetchLike = (url: string, init?: FetchInit) => Promise<ResponseLike>;

/** What a transport is created with. */
export interface TransportContext {
  /** The server URL as configured (`ws(s)://host/rt` or `http(s)://host/rt`). */
  url: string;
  /** Encoding on WebSocket; the HTTP transports always use JSON. */
  protocol: 'json' | 'msgpack';
  /** Bound on connecting (and, for SSE, on the stream's own reconnect), in ms. */
  connectTimeoutMs: number;
  WebSocket?: WebSocketConstructor;
  /** The third argument of `new WebSocket()` (e.g. `{ http2: true }` for `switchboard`'s); not passed when undefined. */
  webSocketOptions?: object;
  EventSource?: EventSourceConstructor;
  fetch?: FetchLike;
  /** Send cookies cross-origin on the HTTP transports. */
  withCredentials?: boolean;
}

export type TransportFactory = (context: TransportContext, handler: TransportHandler) => ClientTransport;

// ---- URLs ----------------------------------------------------------------------

function parseUrl(url: string): URL {
  try {
    return new URL(url);
  } catch {
    // A relative URL ('/rt') in a page: resolve against the page.
    const location = (globalThis as { location?: { href: string } }).location;
    if (location) return new URL(url, location.href);
    throw new TypeError(`invalid server URL ${JSON.stringify(url)}`);
  }
}

/** The WebSocket URL of an endpoint given as ws(s):// or http(s)://. */
export function webSocketUrl(url: string): string {
  const u = parseUrl(url);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  return u.href;
}

/**
 * The HTTP base of the fallback endpoints: `ws://host:port/rt?ticket=x` →
 * `{ base: 'http://host:port/rt', query: '?ticket=x' }`; sessions live under
 * `${base}/session` (docs/protocol.md, "Fallback transports").
 */
export function httpEndpoint(url: string): { base: string; query: string } {
  const u = parseUrl(url);
  if (u.protocol === 'ws:') u.protocol = 'http:';
  else if (u.protocol === 'wss:') u.protocol = 'https:';
  const query = u.search;
  u.search = '';
  u.hash = '';
  return { base: u.href.replace(/\/+$/, ''), query };
}

/** Whether `value` looks like a server message: an object with a string `op`. */
export function isServerMessage(value: unknown): value is ServerMessage {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && typeof (value as { op?: unknown }).op === 'string';
}

/** Run `fn` on a later microtask (the transport contract: no synchronous handler calls from `open()`). */
export function later(fn: () => void): void {
  Promise.resolve().then(fn);
}
