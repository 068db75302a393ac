/**
 * The realtime client SDK: one logical connection to a Switchboard server
 * that survives drops. Browser-safe (only `WebSocket`, `EventSource`,
 * `fetch`, timers and the `online`/`offline` events); runs in Node 20 too,
 * with a `WebSocket` constructor passed in.
 *
 * Lifecycle (`state` events):
 *
 * ```
 * disconnected/closed --connect()--> connecting --auth ok--> connected
 *   connected --drop, may reconnect (or the move back to WebSocket)--> reconnecting --auth ok--> connected
 *   connecting/reconnecting --attempt failed--> (backoff) --> same state, next attempt
 *   any --close that says not to reconnect, maxAttempts, getToken() with no token--> disconnected
 *   any --close()--> closed
 * ```
 *
 * What it guarantees to the application:
 * - every subscription is restored after a reconnect from the position of the
 *   last publication it delivered; publications are delivered once and in
 *   order per channel (duplicates dropped by offset), and `recovered: false`
 *   says when the server could not fill the gap;
 * - `publish()` settles with the server's ack; a publication is sent again
 *   (after a timeout, or after a reconnect) with the same idempotency key, so
 *   the server stores it once;
 * - publications made while disconnected wait (up to `queueLimit`) and go out
 *   after the reconnect, in order.
 */
import type {
  ClientInfo,
  ClientMessage,
  ErrorReply,
  OkReply,
  Publication,
  RequestId,
  ServerMessage,
  StreamPosition,
} from '../wire/messages.js';
import { IDEMPOTENCY_TTL_MS } from '../wire/messages.js';
import { Backoff, type ReconnectOptions } from './backoff.js';
import { closeMeaning, shouldReconnect } from './close-codes.js';
import { Emitter } from './emitter.js';
import { ClientError } from './errors.js';
import { SendPacer, utf8Length, type Rate } from './pacer.js';
import { PollTransport } from './transports/poll.js';
import { SseTransport } from './transports/sse.js';
import {
  TRANSPORT_NAMES,
  type ClientTransport,
  type EventSourceConstructor,
  type FetchLike,
  type TransportContext,
  type TransportHandler,
  type TransportName,
  type WebSocketConstructor,
} from './transports/transport.js';
import { WebSocketTransport } from './transports/websocket.js';
import { Subscription, type SubscribedEvent, type SubscribeOptions } from './subscription.js';

// ---- options -------------------------------------------------------------------

/**
 * Whether the device is online, and news when that changes. The default
 * uses `navigator.onLine` and the `online`/`offline` events of `globalThis`
 * (browsers); where those do not exist (Node), the client assumes it is
 * online.
 */
export interface NetworkMonitor {
  isOnline(): boolean;
  /** Call `onOnline`/`onOffline` on changes; returns a function that stops. */
  subscribe(onOnline: () => void, onOffline: () => void): () => void;
}

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
  /** EventSource constructor. Default `globalThis.EventSource` (browsers). */
  EventSource?: EventSourceConstructor;
  /** fetch. Default `globalThis.fetch`. */
  fetch?: FetchLike;
  /** Online/offline source. Default: `navigator.onLine` and `online`/`offline` on `globalThis`, when present. */
  network?: NetworkMonitor | null;
}

export type ClientState = 'disconnected' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

export interface ConnectedEvent {
  transport: TransportName;
  /** Connection id the server assigned (null for anonymous connections, which send no `auth`). */
  client: string | null;
  /** User id from the token (null for anonymous connections). */
  user: string | null;
  /** The server URL in use. */
  url: string;
}

export interface DisconnectedEvent {
  /** Close code (1006 for a connection lost without a close, including dead-link detection). */
  code: number;
  reason: string;
  /** What the code means (the SDK's close-code table). */
  meaning: string;
  willReconnect: boolean;
}

export interface ReconnectingEvent {
  /** Delay before the attempt, in ms. */
  inMs: number;
  /** Attempt number since the last stable connection (1, 2, …). */
  attempt: number;
  /** The URL and transport of the attempt. */
  url: string;
  transport: TransportName;
  /** Close code and reason of the failure before it. */
  code: number;
  reason: string;
}

export interface ClientEvents {
  state: ClientState;
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  reconnecting: ReconnectingEvent;
  /** Any subscription was confirmed (see `Subscription` for per-channel events). */
  subscribed: SubscribedEvent;
  /** Any resubscription with `since` was answered. */
  recovered: SubscribedEvent;
  /** The client moved to another transport. */
  transport: { from: TransportName; to: TransportName; reason: string };
  error: ClientError;
}

/** The server's ack of a publication. */
export interface PublishResult {
  offset: number;
  epoch: string;
  /** The server had this idempotency key already (a retry of a publication it stored). */
  duplicate: boolean;
}

export interface PublishOptions {
  /** May be dropped for slow subscribers; not kept in history. Default false. */
  volatile?: boolean;
}

export interface HistoryOptions {
  /** Publications after this position. */
  since?: StreamPosition;
  /** At most this many (the server caps it at 1000). */
  limit?: number;
}

export interface HistoryResult {
  channel: string;
  publications: Publication[];
  position: StreamPosition;
  /** With `since`: whether the history reaches back to it. */
  recovered?: boolean;
}

export interface PresenceResult {
  channel: string;
  /** Full presence: connection id → who. */
  clients?: Record<string, ClientInfo> | number;
  /** Counts presence: distinct users. */
  users?: number;
}

// ---- internals -----------------------------------------------------------------

interface PendingPublish {
  channel: string;
  data: unknown;
  volatile: boolean;
  /** One idempotency key for every send of this publication. */
  key: string;
  /** Sends after a timeout or a retryable error so far. */
  retries: number;
  /** Sent on the current connection and not answered. */
  sent: boolean;
  /** When it was first sent (0: not yet): the server's duplicate check lasts from then. */
  firstSentAt: number;
  /** Request ids of its sends on the current connection (a late reply to any of them settles it). */
  ids: RequestId[];
  timer: ReturnType<typeof setTimeout> | null;
  resolve(result: PublishResult): void;
  reject(err: ClientError): void;
}

type RequestKind = 'rpc' | 'read';

interface PendingRequest {
  kind: RequestKind;
  op: 'rpc' | 'presence' | 'history';
  fields: Record<string, unknown>;
  sent: boolean;
  /** Request id of the send on the current connection. */
  id: RequestId | null;
  /** The overall deadline (waiting for a connection plus waiting for the reply). */
  timer: ReturnType<typeof setTimeout> | null;
  resolve(reply: OkReply): void;
  reject(err: ClientError): void;
}

type Inflight =
  | { kind: 'auth' }
  | { kind: 'sub'; sub: Subscription; since: StreamPosition | undefined }
  | { kind: 'unsub'; sub: Subscription }
  | { kind: 'refresh' }
  | { kind: 'pub'; entry: PendingPublish }
  | { kind: 'request'; entry: PendingRequest };

const FACTORIES: Record<TransportName, (context: TransportContext, handler: TransportHandler) => ClientTransport> = {
  websocket: (c, h) => new WebSocketTransport(c, h),
  sse: (c, h) => new SseTransport(c, h),
  poll: (c, h) => new PollTransport(c, h),
};

/** The browser's online/offline source, or null where there is none. */
export function browserNetworkMonitor(): NetworkMonitor | null {
  const g = globalThis as {
    navigator?: { onLine?: boolean };
    addEventListener?: (type: string, fn: () => void) => void;
    removeEventListener?: (type: string, fn: () => void) => void;
  };
  if (typeof g.addEventListener !== 'function' || typeof g.removeEventListener !== 'function') return null;
  return {
    isOnline: () => g.navigator?.onLine !== false,
    subscribe(onOnline, onOffline) {
      g.addEventListener!('online', onOnline);
      g.addEventListener!('offline', onOffline);
      return () => {
        g.removeEventListener!('online', onOnline);
        g.removeEventListener!('offline', onOffline);
      };
    },
  };
}

/** A random idempotency key (crypto.getRandomValues where available). */
function randomKey(): string {
  const bytes = new Uint8Array(16);
  const crypto = (globalThis as { crypto?: { getRandomValues?(a: Uint8Array): Uint8Array } }).crypto;
  if (crypto?.getRandomValues) crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  let out = '';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}

function nonNegative(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value >= 0)) throw new ClientError('RT_CLIENT_INVALID_ARGUMENT', `${name} must be a number >= 0`);
  return value;
}

/** After a successful WebSocket probe while an rpc is in flight: probe again this much later, in ms. */
const PROBE_RETRY_MS = 1000;

/** Server error codes worth a retry (of a publication, same key; of a `sub` or `unsub`): rate limited, temporarily unavailable, timeout. */
const RETRYABLE = new Set([429, 500, 503, 504]);

/**
 * The longest delay a timer can wait (2^31 - 1 ms, about 24.8 days): browsers
 * and Node fire a longer one at once, which would turn a long-lived token's
 * refresh (or `pingTimeoutMs: Infinity`) into a busy loop.
 */
const MAX_TIMER_MS = 0x7fffffff;

/** setTimeout with the delay clamped to [0, MAX_TIMER_MS]. */
function setTimer(fn: () => void, ms: number): ReturnType<typeof setTimeout> {
  return setTimeout(fn, Math.min(MAX_TIMER_MS, Math.max(0, ms)));
}

/** `getToken()` answered with no token (empty, null): the application says the user is not authorized. */
const NO_TOKEN = 'getToken returned no token (not authorized): not reconnecting';
const noTokenErrors = new WeakSet<ClientError>();

/** What the server has for a channel on the current connection: a `sub` on its way, confirmed, or an `unsub` on its way. */
interface ServerSubscription {
  state: 'subscribing' | 'subscribed' | 'unsubscribing';
  sub: Subscription;
}

// ---- the client ----------------------------------------------------------------

export class Client extends Emitter<ClientEvents> {
  /** Server URLs, tried in turn (the next one after each failure). */
  readonly urls: readonly string[];
  readonly #options: {
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
  };
  readonly #token: string | undefined;
  readonly #getToken: (() => Promise<string>) | undefined;
  readonly #WebSocket: WebSocketConstructor | undefined;
  readonly #EventSource: EventSourceConstructor | undefined;
  readonly #fetch: FetchLike | undefined;
  readonly #withCredentials: boolean;
  readonly #network: NetworkMonitor | null;
  readonly #backoff: Backoff;
  /** Configured transports that can run here, in order of preference. */
  readonly #transports: TransportName[];

  #state: ClientState = 'disconnected';
  #transport: ClientTransport | null = null;
  /** The server's rate budget for this connection (see pacer.ts), and the messages waiting for it, in order. */
  #pacer = new SendPacer();
  #paced: Array<{ message: ClientMessage; size: number }> = [];
  #paceTimer: ReturnType<typeof setTimeout> | null = null;
  #transportOpened = false;
  #transportIndex = 0;
  #urlIndex = 0;
  /** Attempts in a row on the current transport that failed before it opened. */
  #failuresBeforeOpen = 0;
  /** When the preferred transport last failed to open (ms since the epoch; 0: never). */
  #preferredFailedAt = 0;
  #everConnected = false;
  /** Connected at least once since the last `connect()` (the state of a new attempt: `reconnecting`, else `connecting`). */
  #connectedSinceConnect = false;
  #attemptSeq = 0;
  #currentToken: string | undefined;
  #clientId: string | null = null;
  #user: string | null = null;
  #authError: string | null = null;

  #connectPromise: Promise<void> | null = null;
  #connectResolve: (() => void) | null = null;
  #connectReject: ((err: ClientError) => void) | null = null;

  #nextId = 1;
  readonly #inflight = new Map<RequestId, Inflight>();
  /** The subscriptions the application wants, by channel. */
  readonly #subscriptions = new Map<string, Subscription>();
  /**
   * What the server has on the current connection, by channel. One `sub` or
   * `unsub` per channel at a time: the next waits for the reply, so a
   * resubscription never meets the server's 409 and an `unsub` never races
   * the `sub` it undoes.
   */
  readonly #server = new Map<string, ServerSubscription>();
  /** `unsubscribe()` promises waiting until the server no longer has that subscription. */
  readonly #unsubWaiters = new Map<Subscription, Array<() => void>>();
  /** Channels whose `sub`/`unsub` was refused with a retryable code (429, 503, …): retried after a pause. */
  readonly #channelHolds = new Map<string, { timer: ReturnType<typeof setTimeout> | null; attempts: number }>();
  /** Publications not yet acknowledged, in order (queued or sent). */
  readonly #outbox: PendingPublish[] = [];
  /** How long the server remembers publish keys (its `auth` reply says; 5 minutes otherwise). */
  #idempotencyTtlMs = IDEMPOTENCY_TTL_MS;
  /** rpc/presence/history waiting for a connection or a reply. */
  readonly #requests = new Set<PendingRequest>();

  #reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  #waitingForOnline = false;
  #lastFailure = { code: 1006, reason: '' };
  #connectTimer: ReturnType<typeof setTimeout> | null = null;
  #stableTimer: ReturnType<typeof setTimeout> | null = null;
  #deadLinkTimer: ReturnType<typeof setTimeout> | null = null;
  #refreshTimer: ReturnType<typeof setTimeout> | null = null;
  #probeTimer: ReturnType<typeof setTimeout> | null = null;
  #probe: ClientTransport | null = null;
  #refreshing = false;
  /** Identifies the `getToken()` call of the refresh under way (a late answer to an abandoned one is dropped). */
  #refreshSeq = 0;
  /** Bounds that call by `requestTimeoutMs`. */
  #refreshWaitTimer: ReturnType<typeof setTimeout> | null = null;
  /** Refresh failures in a row (the pause before the next try grows like the reconnect backoff). */
  #refreshFailures = 0;
  /** The server's `closing` hint: reconnect after this many ms (used once). */
  #reconnectHintMs: number | null = null;
  #lastReceivedAt = 0;
  #lastPingAt = 0;
  /** The server's ping interval as observed on this connection, in ms (0: not known yet). */
  #pingIntervalMs = 0;
  /** The `#lastReceivedAt` for which the client sent its own ping (one per silence). */
  #selfPingFor = -1;
  #unsubscribeNetwork: (() => void) | null = null;

  /**
   * @param url One server URL or several (failover: the next one after each
   * failure). `ws(s)://host/rt` or `http(s)://host/rt`; the HTTP fallbacks
   * use `<path>/session` on the same host.
   */
  constructor(url: string | readonly string[], options: ClientOptions = {}) {
    super();
    const urls = typeof url === 'string' ? [url] : [...url];
    if (urls.length === 0 || urls.some((u) => typeof u !== 'string' || u.length === 0)) {
      throw new ClientError('RT_CLIENT_INVALID_ARGUMENT', 'at least one server URL is required');
    }
    this.urls = Object.freeze(urls);
    const protocol = options.protocol ?? 'json';
    if (protocol !== 'json' && protocol !== 'msgpack') throw new ClientError('RT_CLIENT_INVALID_ARGUMENT', "protocol must be 'json' or 'msgpack'");
    this.#options = {
      requestTimeoutMs: nonNegative(options.requestTimeoutMs, 10000, 'requestTimeoutMs'),
      connectTimeoutMs: nonNegative(options.connectTimeoutMs, 10000, 'connectTimeoutMs'),
      publishRetries: nonNegative(options.publishRetries, 3, 'publishRetries'),
      queueLimit: nonNegative(options.queueLimit, 100, 'queueLimit'),
      pingTimeoutMs: nonNegative(options.pingTimeoutMs, 60000, 'pingTimeoutMs'),
      pingGraceMs: nonNegative(options.pingGraceMs, 10000, 'pingGraceMs'),
      refreshBeforeMs: nonNegative(options.refreshBeforeMs, 15000, 'refreshBeforeMs'),
      fallbackAfter: Math.max(1, nonNegative(options.fallbackAfter, 2, 'fallbackAfter')),
      upgradeIntervalMs: nonNegative(options.upgradeIntervalMs, 120000, 'upgradeIntervalMs'),
      upgradeProbeDelayMs: nonNegative(options.upgradeProbeDelayMs, 5000, 'upgradeProbeDelayMs'),
      protocol,
    };
    this.#token = options.token;
    this.#getToken = options.getToken;
    const g = globalThis as { WebSocket?: WebSocketConstructor; EventSource?: EventSourceConstructor; fetch?: FetchLike };
    this.#WebSocket = options.WebSocket ?? g.WebSocket;
    this.#EventSource = options.EventSource ?? g.EventSource;
    // Unbound `fetch` throws "Illegal invocation" in browsers: call it on globalThis.
    this.#fetch = options.fetch ?? (typeof g.fetch === 'function' ? (u, init) => g.fetch!(u, init) : undefined);
    this.#withCredentials = options.withCredentials === true;
    this.#network = options.network === undefined ? browserNetworkMonitor() : options.network;
    this.#backoff = new Backoff(options.reconnect ?? {});
    const wanted = options.transports ?? [...TRANSPORT_NAMES];
    for (const t of wanted) {
      if (!TRANSPORT_NAMES.includes(t)) throw new ClientError('RT_CLIENT_INVALID_ARGUMENT', `unknown transport ${JSON.stringify(t)}`);
    }
    this.#transports = [...new Set(wanted)].filter((t) =>
      t === 'websocket' ? this.#WebSocket !== undefined : t === 'sse' ? this.#EventSource !== undefined && this.#fetch !== undefined : this.#fetch !== undefined,
    );
  }

  // ---- state ---------------------------------------------------------------------

  get state(): ClientState {
    return this.#state;
  }

  /** The transport of the current connection or attempt (null when there is none). */
  get transport(): TransportName | null {
    return this.#transport?.name ?? null;
  }

  /** The transport the next attempt uses (or the current one uses). */
  get preferredTransport(): TransportName | null {
    return this.#transports[this.#transportIndex] ?? null;
  }

  /** The transports this client may use, in order (configured ones that can run here). */
  get transports(): readonly TransportName[] {
    return this.#transports;
  }

  /** The URL of the current connection or the next attempt. */
  get url(): string {
    return this.urls[this.#urlIndex]!;
  }

  /** User id of the connection (null while not connected, or anonymous). */
  get user(): string | null {
    return this.#user;
  }

  /** Connection id assigned by the server (null while not connected, or anonymous). */
  get clientId(): string | null {
    return this.#clientId;
  }

  /** Publications waiting to be sent or acknowledged. */
  get pendingPublications(): number {
    return this.#outbox.length;
  }

  /** The subscriptions, by channel. */
  get subscriptions(): ReadonlyMap<string, Subscription> {
    return this.#subscriptions;
  }

  #setState(state: ClientState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.emit('state', state);
  }

  // ---- connect / close ---------------------------------------------------------------

  /**
   * Connect (and keep reconnecting). Resolves once connected; rejects with
   * `RT_CLIENT_CONNECT_FAILED` when the client gives up (a close that says
   * not to reconnect, `maxAttempts`, `getToken()` with no token),
   * `RT_CLIENT_CLOSED` after `close()`, `RT_CLIENT_NO_TRANSPORT` when no
   * transport can run here. After giving up or `close()` it may be called
   * again (also from a `disconnected` or `state` listener): it starts over
   * in `connecting`, with the backoff reset, and restores the subscriptions
   * from their positions.
   */
  connect(): Promise<void> {
    if (this.#state === 'connected') return Promise.resolve();
    if (this.#connectPromise) return this.#connectPromise;
    // Already trying (after a drop): wait for the attempt under way or scheduled.
    if (this.#state === 'connecting' || this.#state === 'reconnecting') return this.#newConnectPromise();
    if (this.#transports.length === 0) {
      return Promise.reject(new ClientError('RT_CLIENT_NO_TRANSPORT', 'no transport can run here: pass a WebSocket (or EventSource and fetch) implementation'));
    }
    const promise = this.#newConnectPromise();
    this.#backoff.reset();
    this.#failuresBeforeOpen = 0;
    this.#connectedSinceConnect = false;
    if (this.#network && !this.#unsubscribeNetwork) {
      this.#unsubscribeNetwork = this.#network.subscribe(this.#onOnline, this.#onOffline);
    }
    this.#setState('connecting');
    // A 'state' listener may have called close().
    if ((this.#state as ClientState) === 'connecting') this.#startAttempt();
    return promise;
  }

  #newConnectPromise(): Promise<void> {
    const promise = new Promise<void>((resolve, reject) => {
      this.#connectResolve = resolve;
      this.#connectReject = reject;
    });
    // The caller may not await it; a rejection nobody handles must not crash the app.
    promise.catch(() => {});
    this.#connectPromise = promise;
    return promise;
  }

  /**
   * Close for good (until `connect()` is called again): no reconnect.
   * Pending publications and requests reject with `RT_CLIENT_CLOSED`.
   * Subscriptions are kept and resume if `connect()` is called again.
   */
  close(): void {
    if (this.#state === 'closed') return;
    const wasConnected = this.#state === 'connected';
    this.#attemptSeq++;
    this.#clearConnectionTimers();
    this.#clearReconnectTimer();
    this.#waitingForOnline = false;
    this.#reconnectHintMs = null;
    this.#closeProbe();
    const transport = this.#transport;
    this.#transport = null;
    transport?.close(1000, 'client closed');
    const err = new ClientError('RT_CLIENT_CLOSED', 'the client was closed');
    this.#afterTransportGone();
    this.#unsubscribeNetwork?.();
    this.#unsubscribeNetwork = null;
    // Settle everything before the events: a listener that calls connect() starts afresh.
    this.#rejectAll(err);
    this.#settleConnect(err);
    this.#setState('closed');
    if (wasConnected) this.emit('disconnected', { code: 1000, reason: 'closed by the client', meaning: closeMeaning(1000), willReconnect: false });
  }

  #settleConnect(err?: ClientError): void {
    const resolve = this.#connectResolve;
    const reject = this.#connectReject;
    this.#connectPromise = null;
    this.#connectResolve = this.#connectReject = null;
    if (err) reject?.(err);
    else resolve?.();
  }

  #resolveToken(): Promise<string | undefined> {
    // A given token serves the first attempt; getToken serves every later one (the token may have expired).
    if (this.#getToken && (this.#currentToken !== undefined || this.#token === undefined || this.#everConnected)) {
      return this.#callGetToken();
    }
    return Promise.resolve(this.#token);
  }

  /**
   * Call `getToken()`: a synchronous throw, a rejection or a non-promise
   * result are all handled. Rejects with `RT_CLIENT_TOKEN`; an empty result
   * rejects with an error in `noTokenErrors` (the application says: not
   * authorized).
   */
  #callGetToken(): Promise<string> {
    const getToken = this.#getToken!;
    return new Promise<unknown>((resolve) => resolve(getToken())).then(
      (token) => {
        if (typeof token === 'string' && token.length > 0) return token;
        const err = new ClientError('RT_CLIENT_TOKEN', NO_TOKEN);
        noTokenErrors.add(err);
        throw err;
      },
      (err: unknown) => {
        throw new ClientError('RT_CLIENT_TOKEN', `getToken failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
      },
    );
  }

  #startAttempt(): void {
    this.#clearReconnectTimer();
    this.#waitingForOnline = false;
    const seq = ++this.#attemptSeq;
    // One bound on the whole attempt: getToken(), the transport opening, the auth reply.
    if (this.#connectTimer) clearTimeout(this.#connectTimer);
    const timeoutMs = this.#options.connectTimeoutMs;
    this.#connectTimer = setTimer(() => {
      this.#connectTimer = null;
      if (this.#transport) {
        this.#dropTransport(1006, `not connected within ${timeoutMs} ms`);
        return;
      }
      if (seq !== this.#attemptSeq) return;
      const abandoned = ++this.#attemptSeq; // a late token is not used
      const error = new ClientError('RT_CLIENT_TOKEN', `getToken did not answer within ${timeoutMs} ms`);
      this.emit('error', error);
      if (abandoned !== this.#attemptSeq) return; // an 'error' listener closed or restarted the client
      this.#attemptFailed(1006, error.message, false);
    }, timeoutMs);
    this.#resolveToken().then(
      (token) => {
        if (seq !== this.#attemptSeq) return;
        this.#currentToken = token;
        this.#openTransport();
      },
      (err: unknown) => {
        if (seq !== this.#attemptSeq) return;
        const error = err as ClientError;
        this.emit('error', error);
        if (seq !== this.#attemptSeq) return; // an 'error' listener closed or restarted the client
        if (noTokenErrors.has(error)) this.#giveUp(4500, error.message);
        else this.#attemptFailed(1006, error.message, false);
      },
    );
  }

  #openTransport(): void {
    const name = this.#transports[this.#transportIndex]!;
    const context = this.#context(this.url);
    let transport: ClientTransport;
    const handler: TransportHandler = {
      onOpen: () => {
        if (this.#transport === transport) this.#onTransportOpen();
      },
      onMessage: (message) => {
        if (this.#transport === transport) this.#onMessage(message);
      },
      onClose: (code, reason) => {
        if (this.#transport === transport) this.#onTransportClose(code, reason);
      },
    };
    transport = FACTORIES[name](context, handler);
    this.#transport = transport;
    this.#transportOpened = false;
    this.#authError = null;
    transport.open();
  }

  #context(url: string): TransportContext {
    return {
      url,
      protocol: this.#options.protocol,
      connectTimeoutMs: this.#options.connectTimeoutMs,
      WebSocket: this.#WebSocket,
      EventSource: this.#EventSource,
      fetch: this.#fetch,
      withCredentials: this.#withCredentials,
    };
  }

  /** Close the current transport ourselves and handle it like a close from the other side. */
  #dropTransport(code: number, reason: string): void {
    const transport = this.#transport;
    if (!transport) return;
    transport.close(code === 1006 ? 1000 : code, reason);
    this.#onTransportClose(code, reason);
  }

  #onTransportOpen(): void {
    this.#transportOpened = true;
    this.#dropPaced();
    this.#resetPacer();
    this.#lastReceivedAt = Date.now();
    if (this.#currentToken === undefined) {
      this.#onConnected(null, null, null);
      return;
    }
    const id = this.#nextId++;
    this.#inflight.set(id, { kind: 'auth' });
    this.#send({ op: 'auth', id, token: this.#currentToken });
  }

  #onConnected(clientId: string | null, user: string | null, expiresIn: number | null): void {
    const transport = this.#transport!;
    if (this.#connectTimer) clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    this.#clientId = clientId;
    this.#user = user;
    this.#failuresBeforeOpen = 0;
    this.#everConnected = true;
    this.#connectedSinceConnect = true;
    this.#setState('connected');
    this.#lastReceivedAt = Date.now();
    this.#lastPingAt = 0;
    this.#pingIntervalMs = 0;
    this.#selfPingFor = -1;
    this.#armDeadLink();
    const { resetAfterMs } = this.#backoff.options;
    this.#stableTimer = setTimer(() => {
      this.#stableTimer = null;
      this.#backoff.reset();
    }, resetAfterMs);
    this.#refreshFailures = 0;
    if (expiresIn !== null) this.#scheduleRefresh(expiresIn);
    this.#settleConnect();
    this.emit('connected', { transport: transport.name, client: clientId, user, url: this.url });
    if (this.#transport !== transport || this.#state !== 'connected') return; // a listener closed the client
    // Subscriptions first, then what waited: the order the application made them in.
    for (const channel of [...this.#subscriptions.keys()]) this.#reconcile(channel);
    for (const entry of [...this.#outbox]) if (!entry.sent && this.#outbox.includes(entry)) this.#sendPublish(entry);
    for (const request of this.#requests) if (!request.sent) this.#sendRequest(request);
    if (this.#transportIndex !== 0 && this.#transports[0] === 'websocket') this.#scheduleProbe(this.#options.upgradeProbeDelayMs);
  }

  #onTransportClose(code: number, reason: string): void {
    const transport = this.#transport!;
    const opened = this.#transportOpened;
    const wasConnected = this.#state === 'connected';
    this.#transport = null;
    this.#clearConnectionTimers();
    this.#closeProbe();
    this.#afterTransportGone();
    if (this.#authError !== null && reason === '') reason = this.#authError;
    // Blocked counts like refused: a transport that opened but never carried the auth exchange
    // (our connect timeout, or the connection lost, 1006; or the server's 4001: our auth never reached it).
    const blocked = !opened || (!wasConnected && (code === 1006 || code === 4001));
    this.#attemptFailed(code, reason, blocked, transport.name, wasConnected);
  }

  /**
   * An attempt failed or a connection was lost: decide about the transport
   * (fallback), the URL (failover) and whether and when to try again.
   */
  #attemptFailed(code: number, reason: string, failedBeforeOpen: boolean, transportName?: TransportName, wasConnected = false): void {
    // An 'error' listener may have closed the client already.
    if (this.#state === 'closed' || this.#state === 'disconnected') return;
    this.#clearConnectionTimers();
    this.#lastFailure = { code, reason };
    // Fallback: a transport that fails `fallbackAfter` times in a row before it opens is given up for the next one.
    // Attempts that fail while the device is offline say nothing about the transport.
    if (failedBeforeOpen && transportName !== undefined && this.#network?.isOnline() !== false) {
      if (this.#transportIndex === 0) this.#preferredFailedAt = Date.now();
      this.#failuresBeforeOpen++;
      if (this.#failuresBeforeOpen >= this.#options.fallbackAfter && this.#transports.length > 1) {
        this.#switchTransport((this.#transportIndex + 1) % this.#transports.length, `${this.#failuresBeforeOpen} attempts failed before opening`);
      }
    } else if (wasConnected && this.#transportIndex !== 0 && Date.now() - this.#preferredFailedAt >= this.#options.upgradeIntervalMs) {
      // A fallback connection dropped: try the preferred transport first again, on probation (one failure moves on).
      this.#switchTransport(0, 'reconnect: trying the preferred transport again');
      this.#failuresBeforeOpen = this.#options.fallbackAfter - 1;
    }
    let willReconnect = shouldReconnect(code) && !(code === 4002 && !this.#getToken);
    let why = reason;
    if (willReconnect && !this.#backoff.canRetry) {
      willReconnect = false;
      why = `${reason ? `${reason}; ` : ''}gave up after ${this.#backoff.attempt} attempts`;
    }
    if (!willReconnect) {
      this.#giveUp(code, why);
      return;
    }
    if (wasConnected) this.emit('disconnected', { code, reason, meaning: closeMeaning(code), willReconnect: true });
    if (this.#state !== 'connected' && this.#state !== 'connecting' && this.#state !== 'reconnecting') return; // a listener closed us
    // Failover: the next URL after every failure.
    this.#urlIndex = (this.#urlIndex + 1) % this.urls.length;
    this.#scheduleReconnect();
  }

  /**
   * Stop for good (until `connect()`): a close that says not to reconnect,
   * `maxAttempts`, or getToken() with no token. Pending work is rejected and
   * `connect()` settled before the events, so a listener may call
   * `connect()` again at once.
   */
  #giveUp(code: number, reason: string): void {
    this.#attemptSeq++;
    this.#clearReconnectTimer();
    this.#clearConnectionTimers();
    this.#waitingForOnline = false;
    this.#reconnectHintMs = null;
    this.#closeProbe();
    const transport = this.#transport;
    this.#transport = null;
    if (transport) {
      transport.close(1000, reason);
      this.#afterTransportGone();
    }
    this.#unsubscribeNetwork?.();
    this.#unsubscribeNetwork = null;
    this.#rejectAll(new ClientError('RT_CLIENT_DISCONNECTED', `disconnected: ${code} ${reason || closeMeaning(code)}`, { closeCode: code }));
    this.#settleConnect(new ClientError('RT_CLIENT_CONNECT_FAILED', `connection failed: ${code} ${reason || closeMeaning(code)}`, { closeCode: code }));
    this.#setState('disconnected');
    this.emit('disconnected', { code, reason, meaning: closeMeaning(code), willReconnect: false });
  }

  #scheduleReconnect(): void {
    let delay = this.#backoff.next();
    if (this.#reconnectHintMs !== null) {
      delay = this.#reconnectHintMs;
      this.#reconnectHintMs = null;
    }
    this.#setState(this.#connectedSinceConnect ? 'reconnecting' : 'connecting');
    if (this.#state !== 'connecting' && this.#state !== 'reconnecting') return; // a 'state' listener closed the client
    if (this.#network && !this.#network.isOnline()) {
      // Offline: no attempt can succeed; the `online` event starts the next one.
      this.#waitingForOnline = true;
      return;
    }
    this.#armReconnect(delay);
  }

  #armReconnect(delay: number): void {
    this.emit('reconnecting', {
      inMs: delay,
      attempt: Math.max(1, this.#backoff.attempt),
      url: this.url,
      transport: this.#transports[this.#transportIndex]!,
      code: this.#lastFailure.code,
      reason: this.#lastFailure.reason,
    });
    if (this.#state !== 'connecting' && this.#state !== 'reconnecting') return;
    this.#reconnectTimer = setTimer(() => {
      this.#reconnectTimer = null;
      this.#startAttempt();
    }, delay);
  }

  #clearReconnectTimer(): void {
    if (this.#reconnectTimer) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
  }

  readonly #onOnline = (): void => {
    // Back online: try now instead of waiting out the backoff.
    if (this.#waitingForOnline || this.#reconnectTimer) {
      this.#clearReconnectTimer();
      this.#waitingForOnline = false;
      this.#armReconnect(0);
    }
  };

  readonly #onOffline = (): void => {
    // Pause: attempts while offline only burn the backoff.
    if (this.#reconnectTimer) {
      this.#clearReconnectTimer();
      this.#waitingForOnline = true;
    } else if (this.#transport && this.#state === 'connected') {
      // The connection may live on half-open until the dead-link timeout (a browser
      // keeps a WebSocket whose network is gone): drop it now, and let `online`
      // reconnect and resume at once, as centrifuge-js and engine.io do.
      this.#dropTransport(1006, 'the network went offline');
    }
  };

  #switchTransport(index: number, reason: string): void {
    const from = this.#transports[this.#transportIndex]!;
    const to = this.#transports[index]!;
    this.#transportIndex = index;
    this.#failuresBeforeOpen = 0;
    if (from !== to) this.emit('transport', { from, to, reason });
  }

  /** Timers that belong to one connection. */
  #clearConnectionTimers(): void {
    for (const timer of [this.#connectTimer, this.#stableTimer, this.#deadLinkTimer, this.#refreshTimer, this.#refreshWaitTimer, this.#probeTimer]) {
      if (timer) clearTimeout(timer);
    }
    this.#connectTimer = this.#stableTimer = this.#deadLinkTimer = this.#refreshTimer = this.#refreshWaitTimer = this.#probeTimer = null;
  }

  /** The connection is gone: settle or park what was in flight on it. */
  #afterTransportGone(): void {
    this.#dropPaced();
    this.#clientId = null;
    this.#user = null;
    this.#inflight.clear();
    // A refresh under way belongs to the old connection (the next one asks getToken itself).
    this.#refreshing = false;
    this.#refreshSeq++;
    // The server has nothing of ours any more: unsubscribe() promises resolve, retries start over.
    this.#server.clear();
    for (const waiters of this.#unsubWaiters.values()) for (const resolve of waiters) resolve();
    this.#unsubWaiters.clear();
    for (const hold of this.#channelHolds.values()) if (hold.timer) clearTimeout(hold.timer);
    this.#channelHolds.clear();
    for (const sub of this.#subscriptions.values()) sub.markPending();
    // Publications go again after the reconnect, with the same key.
    for (const entry of this.#outbox) {
      entry.sent = false;
      entry.ids = [];
      if (entry.timer) clearTimeout(entry.timer);
      entry.timer = null;
    }
    // Reads are sent again; an rpc may have run: the application decides.
    for (const request of [...this.#requests]) {
      if (!request.sent) continue;
      if (request.kind === 'rpc') {
        this.#settleRequest(request);
        request.reject(new ClientError('RT_CLIENT_DISCONNECTED', `the connection dropped during rpc ${String(request.fields.method)}`));
      } else {
        request.sent = false;
        request.id = null;
      }
    }
  }

  #rejectAll(err: ClientError): void {
    for (const entry of this.#outbox.splice(0)) {
      if (entry.timer) clearTimeout(entry.timer);
      entry.reject(err);
    }
    for (const request of [...this.#requests]) {
      this.#settleRequest(request);
      request.reject(err);
    }
  }

  // ---- the probe back to WebSocket -------------------------------------------------------

  #scheduleProbe(delay: number): void {
    if (this.#probeTimer) clearTimeout(this.#probeTimer);
    this.#probeTimer = setTimer(() => {
      this.#probeTimer = null;
      this.#runProbe();
    }, delay);
  }

  /**
   * Probe WebSocket while on a fallback: open a socket and send `ping`. Only
   * a `pong` counts (the server answers it before any auth): a proxy that
   * lets the upgrade through but not the frames fails the probe, as it
   * would fail the connection.
   */
  #runProbe(): void {
    if (this.#state !== 'connected' || this.#transportIndex === 0) return;
    let timer: ReturnType<typeof setTimeout> | null = null;
    let probe: ClientTransport;
    const finish = (ok: boolean): void => {
      if (this.#probe !== probe) return;
      if (timer) clearTimeout(timer);
      this.#probe = null;
      probe.close(1000, 'probe');
      if (!ok) {
        this.#preferredFailedAt = Date.now();
        if (this.#state === 'connected') this.#scheduleProbe(this.#options.upgradeIntervalMs);
        return;
      }
      if (this.#state !== 'connected' || !this.#transport) return;
      // An rpc in flight would be lost by the switch (it is not sent again): try again shortly.
      for (const request of this.#requests) {
        if (request.kind === 'rpc' && request.sent) {
          this.#scheduleProbe(PROBE_RETRY_MS);
          return;
        }
      }
      // WebSocket gets through now: move over (subscriptions resume from their positions).
      this.#switchTransport(0, 'WebSocket is reachable again');
      const old = this.#transport;
      this.#transport = null;
      const reason = 'switching to websocket';
      old.close(1000, reason);
      this.#clearConnectionTimers();
      this.#afterTransportGone();
      this.emit('disconnected', { code: 1000, reason, meaning: closeMeaning(1000), willReconnect: true });
      if (this.#state !== 'connected') return; // a listener closed the client
      this.#setState('reconnecting');
      if ((this.#state as ClientState) === 'reconnecting') this.#startAttempt();
    };
    probe = FACTORIES.websocket(this.#context(this.url), {
      onOpen: () => probe.send({ op: 'ping' }),
      onMessage: (message) => {
        if (message.op === 'pong') finish(true);
      },
      onClose: () => finish(false),
    });
    this.#probe = probe;
    timer = setTimer(() => finish(false), this.#options.connectTimeoutMs);
    probe.open();
  }

  #closeProbe(): void {
    if (this.#probeTimer) clearTimeout(this.#probeTimer);
    this.#probeTimer = null;
    const probe = this.#probe;
    this.#probe = null;
    probe?.close(1000, 'probe');
  }

  // ---- dead-link detection ---------------------------------------------------------------

  /**
   * How long silence may last before the link counts as dead, in ms: the
   * server's ping interval (learned from two pings on this connection) plus
   * `pingGraceMs`, else `pingTimeoutMs`.
   */
  get deadLinkTimeoutMs(): number {
    return this.#pingIntervalMs > 0 ? this.#pingIntervalMs + this.#options.pingGraceMs : this.#options.pingTimeoutMs;
  }

  /**
   * Before the server's pings are known (a server with heartbeats off, or
   * the first interval), the client asks itself: a `ping` after half the
   * limit of silence, which the server answers with `pong`.
   */
  #selfPingDue(): number | null {
    if (this.#pingIntervalMs > 0 || this.#selfPingFor === this.#lastReceivedAt) return null;
    return this.#lastReceivedAt + Math.floor(this.#options.pingTimeoutMs / 2);
  }

  #armDeadLink(): void {
    if (this.#deadLinkTimer) clearTimeout(this.#deadLinkTimer);
    const now = Date.now();
    const deadline = this.#lastReceivedAt + this.deadLinkTimeoutMs;
    const ping = this.#selfPingDue();
    const at = ping !== null && ping < deadline ? ping : deadline;
    this.#deadLinkTimer = setTimer(this.#checkDeadLink, at - now);
  }

  // One timer per connection, re-armed when it fires: a message costs a Date.now(), not a timer.
  readonly #checkDeadLink = (): void => {
    this.#deadLinkTimer = null;
    if (this.#state !== 'connected' || !this.#transport) return;
    const now = Date.now();
    const silent = now - this.#lastReceivedAt;
    if (silent >= this.deadLinkTimeoutMs) {
      this.#dropTransport(1006, `dead link: nothing from the server for ${silent} ms`);
      return;
    }
    const ping = this.#selfPingDue();
    if (ping !== null && now >= ping) {
      this.#selfPingFor = this.#lastReceivedAt;
      this.#send({ op: 'ping' });
    }
    this.#armDeadLink();
  };

  // ---- token refresh ---------------------------------------------------------------------

  #scheduleRefresh(expiresIn: number): void {
    if (this.#refreshTimer) clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    if (!this.#getToken || !(expiresIn >= 0)) return;
    const before = this.#options.refreshBeforeMs;
    const delay = expiresIn > before ? expiresIn - before : expiresIn / 2;
    this.#armRefreshAt(Date.now() + delay);
  }

  /** Refresh at `at` (ms since the epoch), also when that is further away than a timer can wait. */
  #armRefreshAt(at: number): void {
    if (this.#refreshTimer) clearTimeout(this.#refreshTimer);
    this.#refreshTimer = setTimer(() => {
      this.#refreshTimer = null;
      if (Date.now() < at) this.#armRefreshAt(at);
      else this.#refresh();
    }, at - Date.now());
  }

  /**
   * Get a new token and send `refresh` (on the server's push, or before the
   * expiry). getToken() is bounded by `requestTimeoutMs`; a failure (or the
   * server refusing the token) is an `error` event and another try after a
   * pause that grows like the reconnect backoff, while the token lasts (at
   * its expiry the server closes with 4002 and the reconnect asks
   * getToken() again). No token at all (an empty answer) ends the
   * connection for good, as at connect.
   */
  #refresh(): void {
    if (!this.#getToken) {
      this.emit('error', new ClientError('RT_CLIENT_TOKEN', 'the server asked for a new token, but there is no getToken option: the connection closes with 4002 at expiry'));
      return;
    }
    if (this.#refreshing || this.#state !== 'connected') return;
    this.#refreshing = true;
    const transport = this.#transport;
    const seq = ++this.#refreshSeq;
    const timeoutMs = this.#options.requestTimeoutMs;
    if (this.#refreshWaitTimer) clearTimeout(this.#refreshWaitTimer);
    this.#refreshWaitTimer = setTimer(() => {
      this.#refreshWaitTimer = null;
      if (seq !== this.#refreshSeq) return;
      this.#refreshSeq++; // a late token is not used
      this.#refreshFailed(new ClientError('RT_CLIENT_TOKEN', `getToken did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    this.#callGetToken().then(
      (token) => {
        if (seq !== this.#refreshSeq) return;
        if (this.#refreshWaitTimer) clearTimeout(this.#refreshWaitTimer);
        this.#refreshWaitTimer = null;
        this.#refreshing = false;
        this.#currentToken = token;
        if (this.#transport !== transport || this.#state !== 'connected') return; // the next connection authenticates with it
        const id = this.#nextId++;
        this.#inflight.set(id, { kind: 'refresh' });
        this.#send({ op: 'refresh', id, token });
      },
      (err: unknown) => {
        if (seq !== this.#refreshSeq) return;
        if (this.#refreshWaitTimer) clearTimeout(this.#refreshWaitTimer);
        this.#refreshWaitTimer = null;
        const error = err as ClientError;
        if (noTokenErrors.has(error)) {
          this.#refreshing = false;
          this.emit('error', error);
          if (this.#transport === transport && this.#state === 'connected') this.#giveUp(4500, error.message);
          return;
        }
        this.#refreshFailed(error);
      },
    );
  }

  #refreshFailed(error: ClientError): void {
    this.#refreshing = false;
    this.emit('error', error);
    if (this.#state !== 'connected') return;
    this.#refreshFailures++;
    this.#armRefreshAt(Date.now() + this.#backoff.baseDelay(this.#refreshFailures));
  }

  // ---- incoming --------------------------------------------------------------------------

  #send(message: ClientMessage): void {
    if (!this.#transport) return;
    const size = messageSize(message);
    if (this.#paced.length === 0 && this.#pacer.waitMs(size) === 0) {
      this.#pacer.take(size);
      this.#transport.send(message);
      return;
    }
    // A pong answers the server's liveness check: ahead of what waits.
    if (message.op === 'pong') this.#paced.unshift({ message, size });
    else this.#paced.push({ message, size });
    this.#schedulePaced();
  }

  #schedulePaced(): void {
    if (this.#paceTimer || this.#paced.length === 0) return;
    this.#paceTimer = setTimer(() => {
      this.#paceTimer = null;
      this.#sendPaced();
    }, this.#pacer.waitMs(this.#paced[0]!.size));
  }

  #sendPaced(): void {
    while (this.#transport && this.#paced.length > 0) {
      const { message, size } = this.#paced[0]!;
      if (this.#pacer.waitMs(size) > 0) break;
      this.#pacer.take(size);
      this.#paced.shift();
      this.#transport.send(message);
    }
    this.#schedulePaced();
  }

  /** A new connection: the server's budget starts full; what waited for the old one is gone with it. */
  #resetPacer(messageRate?: Rate, byteRate?: Rate): void {
    this.#pacer = new SendPacer(messageRate, byteRate);
  }

  #dropPaced(): void {
    this.#paced.length = 0;
    if (this.#paceTimer) clearTimeout(this.#paceTimer);
    this.#paceTimer = null;
  }

  #onMessage(message: ServerMessage): void {
    this.#lastReceivedAt = Date.now();
    switch (message.op) {
      case 'ok':
      case 'error':
        this.#onReply(message);
        return;
      case 'msg': {
        const { op: _op, ...pub } = message;
        // A snapshot: listeners may subscribe or unsubscribe while it is delivered.
        const subs = [...this.#subscriptions.values()];
        const exact = this.#subscriptions.get(pub.channel);
        // A gap: subscribe again from the last position (the server replays what is missing, or says recovered: false).
        if (exact && exact.deliver(pub) === 'gap') this.#reconcile(exact.channel);
        for (const sub of subs) {
          if (sub.isPattern && sub.matches(pub.channel)) sub.deliver(pub);
        }
        return;
      }
      case 'join':
        this.#subscriptions.get(message.channel)?.joined(message.clients);
        return;
      case 'leave':
        this.#subscriptions.get(message.channel)?.left(message.clients);
        return;
      case 'count':
        this.#subscriptions.get(message.channel)?.counted({ clients: message.clients, users: message.users });
        return;
      case 'ping': {
        const now = Date.now();
        if (this.#lastPingAt > 0 && now > this.#lastPingAt && now - this.#lastPingAt !== this.#pingIntervalMs) {
          // The server's interval, learned: the dead-link limit follows it (re-armed, as it may be sooner now).
          this.#pingIntervalMs = now - this.#lastPingAt;
          this.#armDeadLink();
        }
        this.#lastPingAt = now;
        this.#send({ op: 'pong' });
        return;
      }
      case 'pong':
        return;
      case 'refresh':
        this.#refresh();
        return;
      case 'closing':
        if (typeof message.reconnectAfter === 'number' && message.reconnectAfter >= 0) this.#reconnectHintMs = message.reconnectAfter;
        return;
      case 'close':
        // Fallback transports turn this into a close themselves; a WebSocket server never sends it.
        this.#dropTransport(typeof message.code === 'number' ? message.code : 1006, String(message.reason ?? ''));
        return;
      default:
        // A newer server's push this client does not know: ignore it (forward compatible).
        return;
    }
  }

  #onReply(reply: OkReply | ErrorReply): void {
    if (reply.id === undefined) {
      if (reply.op === 'error') {
        this.emit('error', new ClientError('RT_CLIENT_SERVER_ERROR', `server error ${reply.code}: ${reply.message}`, { serverCode: reply.code }));
      }
      return;
    }
    const item = this.#inflight.get(reply.id);
    if (!item) return; // a late reply to a request that timed out
    this.#inflight.delete(reply.id);
    const error =
      reply.op === 'error'
        ? new ClientError('RT_CLIENT_SERVER_ERROR', `${reply.message} (${reply.code})`, { serverCode: (reply as ErrorReply).code })
        : null;
    const ok = reply as OkReply;
    switch (item.kind) {
      case 'auth':
        if (error) {
          // The server closes the connection next (4500, or 4002 for an expired token).
          this.#authError = `authentication failed: ${(reply as ErrorReply).message}`;
          this.emit('error', error);
          return;
        }
        // The server's own budget, when it says (the auth message already spent one).
        const limits = ok.limits as { messageRate?: unknown; byteRate?: unknown; idempotencyTtlMs?: unknown } | undefined;
        if (typeof limits?.idempotencyTtlMs === 'number' && limits.idempotencyTtlMs > 0) this.#idempotencyTtlMs = limits.idempotencyTtlMs;
        if (isRate(limits?.messageRate) && isRate(limits?.byteRate)) {
          this.#resetPacer(limits.messageRate, limits.byteRate);
          this.#pacer.take(64);
        }
        this.#onConnected(
          typeof ok.client === 'string' ? ok.client : null,
          typeof ok.user === 'string' ? ok.user : null,
          typeof ok.expiresIn === 'number' ? ok.expiresIn : null,
        );
        return;
      case 'sub': {
        const sub = item.sub;
        const channel = sub.channel;
        const wanted = this.#subscriptions.get(channel) === sub;
        if (error) {
          this.#server.delete(channel);
          this.#releaseUnsubscribe(sub);
          if (wanted && RETRYABLE.has(error.serverCode ?? 0)) {
            // Rate limited or unavailable: not a refusal. Try again after a pause.
            this.emit('error', error);
            this.#holdChannel(channel);
          } else if (wanted) {
            this.#subscriptions.delete(channel);
            this.#dropHold(channel);
            sub.failed(error);
            this.emit('error', error);
          }
          this.#reconcile(channel);
          return;
        }
        this.#server.set(channel, { state: 'subscribed', sub });
        this.#dropHold(channel);
        if (wanted) {
          const event = sub.confirmed(ok as { position?: StreamPosition; recovered?: boolean }, item.since);
          this.emit('subscribed', event);
          if (event.resumed) this.emit('recovered', event);
        }
        // Unsubscribed while the `sub` was on its way (or by a listener just now): undo it on the server.
        this.#reconcile(channel);
        return;
      }
      case 'unsub': {
        const sub = item.sub;
        const channel = sub.channel;
        if (error && RETRYABLE.has(error.serverCode ?? 0)) {
          // The server still has it: try again after a pause.
          this.#server.set(channel, { state: 'subscribed', sub });
          this.#holdChannel(channel);
          return;
        }
        // ok, or an error that means it is gone (404: not subscribed).
        this.#server.delete(channel);
        this.#dropHold(channel);
        this.#releaseUnsubscribe(sub);
        this.#reconcile(channel);
        return;
      }
      case 'refresh':
        if (error) {
          // The server kept the old token (invalid or another user's): try again later.
          this.#refreshFailed(error);
          return;
        }
        this.#refreshFailures = 0;
        if (typeof ok.expiresIn === 'number') this.#scheduleRefresh(ok.expiresIn);
        return;
      case 'pub':
        this.#onPublishReply(item.entry, ok, error);
        return;
      case 'request': {
        const request = item.entry;
        this.#settleRequest(request);
        if (error) request.reject(error);
        else request.resolve(ok);
        return;
      }
    }
  }

  // ---- subscriptions ---------------------------------------------------------------------

  /**
   * Subscribe to a channel or a pattern (`chat/+`, `game/#`). Returns at once;
   * the subscription is sent now when connected, else on connect, and
   * restored after every reconnect. Throws `RT_CLIENT_ALREADY_SUBSCRIBED`
   * when this client has an active subscription to `channel` already.
   */
  subscribe(channel: string, options: SubscribeOptions = {}): Subscription {
    if (typeof channel !== 'string' || channel.length === 0) throw new ClientError('RT_CLIENT_INVALID_ARGUMENT', 'channel must be a non-empty string');
    if (this.#subscriptions.has(channel)) throw new ClientError('RT_CLIENT_ALREADY_SUBSCRIBED', `already subscribed to ${channel}`);
    const sub = new Subscription(channel, options, (s) => this.#unsubscribe(s));
    this.#subscriptions.set(channel, sub);
    // Sent now, or once what the server is doing for this channel (an `unsub`, a `sub`) is answered.
    this.#reconcile(channel);
    return sub;
  }

  /** The subscription to `channel`, if any. */
  getSubscription(channel: string): Subscription | undefined {
    return this.#subscriptions.get(channel);
  }

  /**
   * Bring the server's subscription to `channel` in line with what the
   * application wants, one request at a time per channel: nothing while a
   * `sub`/`unsub` is on its way (its reply calls this again) or a retry
   * pause runs; `sub` when the server has nothing and a subscription is
   * wanted; `unsub` when the server has a subscription that is no longer
   * wanted, or one that saw a gap (then `sub` from its position follows).
   */
  #reconcile(channel: string): void {
    if (this.#state !== 'connected') return;
    if (this.#channelHolds.get(channel)?.timer) return;
    const server = this.#server.get(channel);
    const wanted = this.#subscriptions.get(channel);
    if (server === undefined) {
      if (wanted && wanted.state === 'pending') this.#sendSubscribe(wanted);
      return;
    }
    if (server.state !== 'subscribed') return;
    if (server.sub !== wanted || server.sub.needsResync) this.#sendUnsubscribe(server.sub);
  }

  #sendSubscribe(sub: Subscription): void {
    const id = this.#nextId++;
    const since = sub.resumeFrom();
    this.#inflight.set(id, { kind: 'sub', sub, since });
    this.#server.set(sub.channel, { state: 'subscribing', sub });
    const message: ClientMessage = { op: 'sub', id, channel: sub.channel };
    if (since) message.since = since;
    if (sub.presence) message.presence = true;
    this.#send(message);
  }

  #sendUnsubscribe(sub: Subscription): void {
    const id = this.#nextId++;
    this.#inflight.set(id, { kind: 'unsub', sub });
    this.#server.set(sub.channel, { state: 'unsubscribing', sub });
    this.#send({ op: 'unsub', id, channel: sub.channel });
  }

  /** `sub.unsubscribe()`: resolves once the server no longer has it (at once when it has nothing of it). */
  #unsubscribe(sub: Subscription): Promise<void> {
    if (this.#subscriptions.get(sub.channel) === sub) this.#subscriptions.delete(sub.channel);
    if (this.#state !== 'connected' || this.#server.get(sub.channel)?.sub !== sub) return Promise.resolve();
    const done = new Promise<void>((resolve) => {
      const waiters = this.#unsubWaiters.get(sub);
      if (waiters) waiters.push(resolve);
      else this.#unsubWaiters.set(sub, [resolve]);
    });
    this.#reconcile(sub.channel);
    return done;
  }

  #releaseUnsubscribe(sub: Subscription): void {
    const waiters = this.#unsubWaiters.get(sub);
    if (!waiters) return;
    this.#unsubWaiters.delete(sub);
    for (const resolve of waiters) resolve();
  }

  /** A retryable refusal on `channel`: its next `sub`/`unsub` waits for a pause that grows with each refusal in a row. */
  #holdChannel(channel: string): void {
    const hold = this.#channelHolds.get(channel) ?? { timer: null, attempts: 0 };
    this.#channelHolds.set(channel, hold);
    hold.attempts++;
    if (hold.timer) clearTimeout(hold.timer);
    hold.timer = setTimer(() => {
      hold.timer = null;
      this.#reconcile(channel);
    }, this.#backoff.baseDelay(hold.attempts));
  }

  #dropHold(channel: string): void {
    const hold = this.#channelHolds.get(channel);
    if (!hold) return;
    if (hold.timer) clearTimeout(hold.timer);
    this.#channelHolds.delete(channel);
  }

  // ---- publish ---------------------------------------------------------------------------

  /**
   * Publish to a channel. Resolves with the server's ack (`offset`, `epoch`).
   * While disconnected the publication waits (at most `queueLimit` of them;
   * past that this rejects at once with `RT_CLIENT_QUEUE_FULL`) and goes out
   * after the reconnect. Without an ack within `requestTimeoutMs` it is sent
   * again, up to `publishRetries` times, always with the same idempotency key,
   * so the server stores it once; then it rejects with `RT_CLIENT_TIMEOUT`.
   * One in flight when the connection drops is sent again after the
   * reconnect (same key). Rejects with `RT_CLIENT_SERVER_ERROR` when the
   * server refuses it (403, 413, …), `RT_CLIENT_CLOSED` on `close()`.
   */
  publish(channel: string, data: unknown, options: PublishOptions = {}): Promise<PublishResult> {
    if (this.#state === 'closed') return Promise.reject(new ClientError('RT_CLIENT_CLOSED', 'the client is closed'));
    if (typeof channel !== 'string' || channel.length === 0) {
      return Promise.reject(new ClientError('RT_CLIENT_INVALID_ARGUMENT', 'channel must be a non-empty string'));
    }
    if (this.#state !== 'connected' && this.#outbox.length >= this.#options.queueLimit) {
      return Promise.reject(
        new ClientError('RT_CLIENT_QUEUE_FULL', `not connected and ${this.#outbox.length} publications are waiting already (queueLimit ${this.#options.queueLimit})`),
      );
    }
    return new Promise<PublishResult>((resolve, reject) => {
      const entry: PendingPublish = {
        channel,
        data,
        volatile: options.volatile === true,
        key: randomKey(),
        retries: 0,
        sent: false,
        firstSentAt: 0,
        ids: [],
        timer: null,
        resolve,
        reject,
      };
      this.#outbox.push(entry);
      if (this.#state === 'connected') this.#sendPublish(entry);
    });
  }

  #sendPublish(entry: PendingPublish): void {
    const now = Date.now();
    if (entry.firstSentAt === 0) entry.firstSentAt = now;
    else if (now - entry.firstSentAt > this.#idempotencyTtlMs - IDEMPOTENCY_MARGIN_MS) {
      // The server may have stored the first send and forgotten its key by now: sending again could
      // publish it twice. The application decides (it may look at the channel's history).
      this.#settlePublish(entry);
      entry.reject(
        new ClientError(
          'RT_CLIENT_PUBLISH_UNCERTAIN',
          `the publication to ${entry.channel} was sent ${Math.round((now - entry.firstSentAt) / 1000)} s ago without an ack, longer than the server remembers publish keys (${Math.round(this.#idempotencyTtlMs / 1000)} s): not sent again; it may or may not have been published`,
        ),
      );
      return;
    }
    const id = this.#nextId++;
    this.#inflight.set(id, { kind: 'pub', entry });
    entry.ids.push(id);
    entry.sent = true;
    const message: ClientMessage = { op: 'pub', id, channel: entry.channel, data: entry.data, key: entry.key };
    if (entry.volatile) message.volatile = true;
    this.#send(message);
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = setTimer(() => {
      entry.timer = null;
      // The reply to this id may still come (it is kept in #inflight); a retry has a new id and the same key.
      this.#retryPublish(entry, new ClientError('RT_CLIENT_TIMEOUT', `no ack for the publication to ${entry.channel} within ${this.#options.requestTimeoutMs} ms`));
    }, this.#options.requestTimeoutMs);
  }

  #retryPublish(entry: PendingPublish, failure: ClientError): void {
    if (!this.#outbox.includes(entry)) return;
    if (entry.retries >= this.#options.publishRetries) {
      this.#settlePublish(entry);
      entry.reject(
        failure.code === 'RT_CLIENT_TIMEOUT'
          ? new ClientError('RT_CLIENT_TIMEOUT', `${failure.message} (after ${entry.retries} retries)`)
          : failure,
      );
      return;
    }
    entry.retries++;
    if (this.#state === 'connected') this.#sendPublish(entry);
    else entry.sent = false; // sent after the reconnect
  }

  #onPublishReply(entry: PendingPublish, reply: OkReply, error: ClientError | null): void {
    if (!this.#outbox.includes(entry)) return; // settled by an earlier reply (a retry's or the first's)
    if (error) {
      if (RETRYABLE.has(error.serverCode ?? 0) && entry.retries < this.#options.publishRetries) {
        // Rate limited or unavailable: retry (same key) after a pause that grows like the reconnect backoff.
        if (entry.timer) clearTimeout(entry.timer);
        entry.sent = false;
        entry.timer = setTimer(() => {
          entry.timer = null;
          this.#retryPublish(entry, error);
        }, this.#backoff.baseDelay(entry.retries + 1));
        return;
      }
      this.#settlePublish(entry);
      entry.reject(error);
      return;
    }
    this.#settlePublish(entry);
    entry.resolve({
      offset: typeof reply.offset === 'number' ? reply.offset : 0,
      epoch: typeof reply.epoch === 'string' ? reply.epoch : '',
      duplicate: reply.duplicate === true,
    });
  }

  #settlePublish(entry: PendingPublish): void {
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = null;
    const i = this.#outbox.indexOf(entry);
    if (i !== -1) this.#outbox.splice(i, 1);
    // Replies to the other sends of it are ignored from now on.
    for (const id of entry.ids) this.#inflight.delete(id);
    entry.ids = [];
  }

  // ---- requests --------------------------------------------------------------------------

  /**
   * Call an rpc method on the server. Waits for a connection for up to
   * `requestTimeoutMs` in all. Rejects with `RT_CLIENT_DISCONNECTED` when the
   * connection drops while it is in flight (it may or may not have run:
   * not retried), `RT_CLIENT_TIMEOUT` without an answer in time,
   * `RT_CLIENT_SERVER_ERROR` for an `error` reply (404: no such method).
   */
  async rpc<T = unknown>(method: string, data?: unknown): Promise<T> {
    const fields: Record<string, unknown> = { method };
    if (data !== undefined) fields.data = data;
    const reply = await this.#request('rpc', 'rpc', fields);
    return reply.data as T;
  }

  /** Who is in a channel (`clients`: connection id → who), or how many (`clients`/`users` counts). A read: sent again after a reconnect. */
  async presence(channel: string): Promise<PresenceResult> {
    const { op: _op, id: _id, ...result } = await this.#request('read', 'presence', { channel });
    return result as unknown as PresenceResult;
  }

  /** Publications kept for a channel: the newest `limit`, or those after `since`. A read: sent again after a reconnect. */
  async history(channel: string, options: HistoryOptions = {}): Promise<HistoryResult> {
    const fields: Record<string, unknown> = { channel };
    if (options.since) fields.since = options.since;
    if (options.limit !== undefined) fields.limit = options.limit;
    const { op: _op, id: _id, ...result } = await this.#request('read', 'history', fields);
    return result as unknown as HistoryResult;
  }

  #request(kind: RequestKind, op: PendingRequest['op'], fields: Record<string, unknown>): Promise<OkReply> {
    if (this.#state === 'closed') return Promise.reject(new ClientError('RT_CLIENT_CLOSED', 'the client is closed'));
    return new Promise<OkReply>((resolve, reject) => {
      const request: PendingRequest = { kind, op, fields, sent: false, id: null, timer: null, resolve, reject };
      request.timer = setTimer(() => {
        request.timer = null;
        const sent = request.sent;
        this.#settleRequest(request);
        reject(
          sent
            ? new ClientError('RT_CLIENT_TIMEOUT', `no reply to ${op} within ${this.#options.requestTimeoutMs} ms`)
            : new ClientError('RT_CLIENT_DISCONNECTED', `not connected within ${this.#options.requestTimeoutMs} ms`),
        );
      }, this.#options.requestTimeoutMs);
      this.#requests.add(request);
      if (this.#state === 'connected') this.#sendRequest(request);
    });
  }

  #sendRequest(request: PendingRequest): void {
    const id = this.#nextId++;
    this.#inflight.set(id, { kind: 'request', entry: request });
    request.id = id;
    request.sent = true;
    this.#send({ op: request.op, id, ...request.fields } as ClientMessage);
  }

  #settleRequest(request: PendingRequest): void {
    if (request.timer) clearTimeout(request.timer);
    request.timer = null;
    this.#requests.delete(request);
    if (request.id !== null) this.#inflight.delete(request.id);
    request.id = null;
  }
}

/** Resend only while the key is surely still remembered: allow for clock drift and the time in flight. */
const IDEMPOTENCY_MARGIN_MS = 10_000;

/** What the server counts for a message, in bytes: its JSON in UTF-8 (MessagePack is about as long or shorter). */
function messageSize(message: ClientMessage): number {
  // Only publications and rpc calls carry application data; the rest are a few dozen bytes.
  return message.op === 'pub' || message.op === 'rpc' ? utf8Length(JSON.stringify(message)) : 64;
}

function isRate(value: unknown): value is Rate {
  const r = value as Rate | undefined;
  return typeof r?.perSecond === 'number' && r.perSecond > 0 && typeof r.burst === 'number' && r.burst >= 1;
}
