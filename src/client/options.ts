/**
 * The client's options: what the application passes to `new Client()`, and
 * the checked, defaulted form the client's parts are built from.
 */
import { ClientError } from './errors.js';
import type { ReconnectOptions } from './backoff.js';
import { browserNetworkMonitor, type NetworkMonitor } from './network.js';
import { inBrowser } from './warmup.js';
import {
  TRANSPORT_NAMES,
  type EventSourceConstructor,
  type FetchLike,
  type TransportName,
  type WebSocketConstructor,
} from './transports/transport.js';

export interface ClientOptions {
  /** A token (JWT) sent in the `auth` message. Without `token` and `getToken`, the client connects anonymously (no `auth`). */
  token?: string;
  /**
   * Returns a fresh token. Called for every connection attempt after the
   * first (and for the first when `token` is not given), when the server
   * says the token is expiring (`refresh` push), and `refreshBeforeMs` before
   * the expiry the server announced. A rejection (or a synchronous throw) is
   * an `error` event (`RT_CLIENT_TOKEN`) and another try: the attempt fails
   * and backs off; a refresh is tried again after a pause. It may take at
   * most `connectTimeoutMs` at connect, `requestTimeoutMs` at refresh (then
   * it counts as failed and a late answer is ignored). An empty answer (`''`,
   * null) means "not authorized": the client gives up (`disconnected`, code
   * 4500, no reconnect) until `connect()` is called again.
   */
  getToken?: () => Promise<string>;
  /** Transports to use, in order of preference. Default `['websocket', 'sse', 'poll']`; those this environment cannot run are skipped. */
  transports?: TransportName[];
  /** Encoding over WebSocket: `'json'` (default; text frames) or `'msgpack'` (binary frames). The HTTP transports always use JSON. */
  protocol?: 'json' | 'msgpack';
  /** Reconnect policy; see {@link ReconnectOptions} for every field and default. */
  reconnect?: Partial<ReconnectOptions>;
  /** How long a request (`rpc`, `presence`, `history`, one `publish` attempt) waits for its reply, in ms. Default 10000. */
  requestTimeoutMs?: number;
  /** How long a connection attempt may take (`getToken()`, transport open and `auth` answered), in ms. Default 10000. */
  connectTimeoutMs?: number;
  /**
   * SSE and long-polling to a server on another origin: send its cookies
   * (`EventSource` `withCredentials`, `fetch` `credentials: 'include'`), for
   * cookie authentication. The server must list the page's origin in
   * `allowedOrigins` (not `*`). WebSocket always sends them. Default false.
   */
  withCredentials?: boolean;
  /** How often a publication is sent again after a timeout (same idempotency key) before `publish()` rejects. Default 3. */
  publishRetries?: number;
  /** Publications kept while disconnected; past it `publish()` rejects with `RT_CLIENT_QUEUE_FULL`. Default 100. */
  queueLimit?: number;
  /**
   * Dead-link detection: with nothing received for this long, in ms, the
   * client drops the connection and reconnects. Used until the server's ping
   * interval is known; then the limit is that interval plus `pingGraceMs`.
   * Default 60000.
   */
  pingTimeoutMs?: number;
  /** Added to the observed ping interval for dead-link detection, in ms. Default 10000. */
  pingGraceMs?: number;
  /** With `getToken`: ask for a new token this long before the announced expiry, in ms. Default 15000. */
  refreshBeforeMs?: number;
  /** Attempts of a transport in a row that fail before it opens, after which the next transport is tried. Default 2. */
  fallbackAfter?: number;
  /**
   * On a fallback transport: probe WebSocket `upgradeProbeDelayMs` after
   * connecting, then every `upgradeIntervalMs`, and switch back when it
   * opens. Also, after a drop, WebSocket is tried first again when its last
   * failure is older than this. In ms. Default 120000.
   */
  upgradeIntervalMs?: number;
  /** The first WebSocket probe after connecting on a fallback transport, in ms. Default 5000. */
  upgradeProbeDelayMs?: number;
  /** WebSocket constructor. Default `globalThis.WebSocket` (in Node 20, pass `WebSocket` from `switchboard`). */
  WebSocket?: WebSocketConstructor;
  /**
   * Passed as the third argument of `new WebSocket(url, protocols, options)`:
   * for `switchboard`'s WebSocket in Node, e.g. `{ http2: true }` (RFC 8441,
   * falling back to HTTP/1.1 by itself), `ca`, `headers`. Browsers take no
   * third argument: leave it unset there. Default: none.
   */
  webSocketOptions?: object;
  /**
   * Before each WebSocket attempt, a `GET` of this path on the WebSocket's
   * origin (https for wss), so that a browser has an h2 connection there for
   * the WebSocket to ride on (RFC 8441: browsers use it only on an h2
   * connection they already have). `no-cors` and credentialed; any answer
   * will do, and a failure (network, CSP `connect-src`, no answer within
   * 3000 ms or half of `connectTimeoutMs`) only skips it. Its
   * `nextHopProtocol` is reported in `transportInfo` when the server does not
   * say. `false` turns it off. Default `'/healthz'` in browsers (pages and
   * workers), `false` elsewhere (Node's `fetch` shares no connection with a
   * WebSocket).
   */
  warmup?: string | false;
  /** EventSource constructor. Default `globalThis.EventSource` (browsers). */
  EventSource?: EventSourceConstructor;
  /** fetch. Default `globalThis.fetch`. */
  fetch?: FetchLike;
  /** Online/offline source. Default: `navigator.onLine` and `online`/`offline` on `globalThis`, when present. */
  network?: NetworkMonitor | null;
}

/** The options with their defaults, checked; the environment's constructors resolved. */
export interface ResolvedOptions {
  requestTimeoutMs: number;
  connectTimeoutMs: number;
  publishRetries: number;
  queueLimit: number;
  pingTimeoutMs: number;
  pingGraceMs: number;
  refreshBeforeMs: number;
  fallbackAfter: number;
  upgradeIntervalMs: number;
  upgradeProbeDelayMs: number;
  protocol: 'json' | 'msgpack';
  token: string | undefined;
  getToken: (() => Promise<string>) | undefined;
  WebSocket: WebSocketConstructor | undefined;
  webSocketOptions: object | undefined;
  /** The warm-up path, or null: none. */
  warmup: string | null;
  EventSource: EventSourceConstructor | undefined;
  fetch: FetchLike | undefined;
  withCredentials: boolean;
  network: NetworkMonitor | null;
}

/** The warm-up request's default path: the server's liveness route (any answer will do). */
export const DEFAULT_WARMUP_PATH = '/healthz';

function nonNegative(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value >= 0)) throw new ClientError('RT_CLIENT_INVALID_ARGUMENT', `${name} must be a number >= 0`);
  return value;
}

/** Defaults and checks (throws `RT_CLIENT_INVALID_ARGUMENT`); `reconnect` and `transports` are checked by their own parts. */
export function resolveOptions(options: ClientOptions): ResolvedOptions {
  const protocol = options.protocol ?? 'json';
  if (protocol !== 'json' && protocol !== 'msgpack') throw new ClientError('RT_CLIENT_INVALID_ARGUMENT', "protocol must be 'json' or 'msgpack'");
  const requestTimeoutMs = nonNegative(options.requestTimeoutMs, 10000, 'requestTimeoutMs');
  const connectTimeoutMs = nonNegative(options.connectTimeoutMs, 10000, 'connectTimeoutMs');
  const publishRetries = nonNegative(options.publishRetries, 3, 'publishRetries');
  const queueLimit = nonNegative(options.queueLimit, 100, 'queueLimit');
  const pingTimeoutMs = nonNegative(options.pingTimeoutMs, 60000, 'pingTimeoutMs');
  const pingGraceMs = nonNegative(options.pingGraceMs, 10000, 'pingGraceMs');
  const refreshBeforeMs = nonNegative(options.refreshBeforeMs, 15000, 'refreshBeforeMs');
  const fallbackAfter = Math.max(1, nonNegative(options.fallbackAfter, 2, 'fallbackAfter'));
  const upgradeIntervalMs = nonNegative(options.upgradeIntervalMs, 120000, 'upgradeIntervalMs');
  const upgradeProbeDelayMs = nonNegative(options.upgradeProbeDelayMs, 5000, 'upgradeProbeDelayMs');
  const warmup = options.warmup === undefined ? (inBrowser() ? DEFAULT_WARMUP_PATH : null) : options.warmup;
  if (warmup !== false && warmup !== null && (typeof warmup !== 'string' || !warmup.startsWith('/'))) {
    throw new ClientError('RT_CLIENT_INVALID_ARGUMENT', "warmup must be a path starting with '/', or false");
  }
  if (options.webSocketOptions !== undefined && (typeof options.webSocketOptions !== 'object' || options.webSocketOptions === null)) {
    throw new ClientError('RT_CLIENT_INVALID_ARGUMENT', 'webSocketOptions must be an object');
  }
  const g = globalThis as { WebSocket?: WebSocketConstructor; EventSource?: EventSourceConstructor; fetch?: FetchLike };
  return {
    requestTimeoutMs,
    connectTimeoutMs,
    publishRetries,
    queueLimit,
    pingTimeoutMs,
    pingGraceMs,
    refreshBeforeMs,
    fallbackAfter,
    upgradeIntervalMs,
    upgradeProbeDelayMs,
    protocol,
    token: options.token,
    getToken: options.getToken,
    WebSocket: options.WebSocket ?? g.WebSocket,
    webSocketOptions: options.webSocketOptions,
    warmup: warmup === false ? null : warmup,
    EventSource: options.EventSource ?? g.EventSource,
    // Unbound `fetch` throws "Illegal invocation" in browsers: call it on globalThis.
    fetch: options.fetch ?? (typeof g.fetch === 'function' ? (u, init) => g.fetch!(u, init) : undefined),
    withCredentials: options.withCredentials === true,
    network: options.network === undefined ? browserNetworkMonitor() : options.network,
  };
}

/** The configured transports (checked) that can run with what `options` found here, in order of preference. */
export function usableTransports(configured: readonly TransportName[] | undefined, options: ResolvedOptions): TransportName[] {
  const wanted = configured ?? TRANSPORT_NAMES;
  for (const t of wanted) {
    if (!TRANSPORT_NAMES.includes(t)) throw new ClientError('RT_CLIENT_INVALID_ARGUMENT', `unknown transport ${JSON.stringify(t)}`);
  }
  return [...new Set(wanted)].filter((t) =>
    t === 'websocket' ? options.WebSocket !== undefined : t === 'sse' ? options.EventSource !== undefined && options.fetch !== undefined : options.fetch !== undefined,
  );
}
