/**
 * The link: one logical connection to the server that survives drops. It
 * picks the transport (WebSocket → SSE → poll, and back), the URL (the next
 * one after every failure), authenticates, reconnects with backoff (paused
 * while the device is offline), probes WebSocket while on a fallback, and
 * drops a link that went silent. It owns the connection's state; what the
 * connection carries (subscriptions, publications, requests) belongs to the
 * client above it, which the link reaches through `LinkHost`. The client and
 * the outbox send through the link: request ids, their replies, and pacing
 * within the server's rate budget.
 *
 * ```
 * disconnected/closed --connect()--> connecting --auth ok--> connected
 *   connected --drop, may reconnect (or the move back to WebSocket)--> reconnecting --auth ok--> connected
 *   connecting/reconnecting --attempt failed--> (backoff) --> same state, next attempt
 *   any --close that says not to reconnect, maxAttempts, getToken() with no token--> disconnected
 *   any --close()--> closed
 * ```
 */
import type { ClientMessage, ErrorReply, OkReply, RequestId, ServerMessage } from '../wire/messages.js';
import { IDEMPOTENCY_TTL_MS } from '../wire/messages.js';
import type { Backoff } from './backoff.js';
import { closeMeaning, shouldReconnect } from './close-codes.js';
import { DeadLinkWatch } from './dead-link.js';
import { ClientError } from './errors.js';
import type { ResolvedOptions } from './options.js';
import { TransportChoice } from './choice.js';
import { PacedSender, isRate } from './pacer.js';
import { UpgradeProbe } from './probe.js';
import { setTimer, type Timer } from './timer.js';
import { Tokens, isNoTokenError } from './token.js';
import { PollTransport } from './transports/poll.js';
import { SseTransport } from './transports/sse.js';
import { httpProtocolOf, webSocketUrl, type ClientTransport, type HttpProtocol, type TransportContext, type TransportFactory, type TransportName } from './transports/transport.js';
import { WebSocketTransport } from './transports/websocket.js';
import type { ClientEvents, ClientState, TransportInfo } from './types.js';
import { WARMUP_TIMEOUT_MS, warmUp, warmupUrl } from './warmup.js';
import { CloseCode } from '../protocol/close-code.js';
import { RealtimeCloseCode } from '../wire/messages.js';

/** Where the reply to a request goes: `error` is set for an `error` reply. */
export type ReplyHandler = (reply: OkReply, error: ClientError | null) => void;

/** The events the link raises; the client emits them to the application. */
export type LinkEvent = 'state' | 'connected' | 'disconnected' | 'reconnecting' | 'transport' | 'error';

/** What the link needs from the client above it. */
export interface LinkHost {
  emit<K extends LinkEvent>(event: K, payload: ClientEvents[K]): void;
  /** Connected (the `connected` event is out): restore the subscriptions, then send what waited, in that order. */
  connected(): void;
  /** A message that is not the link's own: publications, presence, pushes it does not know. */
  message(message: ServerMessage): void;
  /** The connection is gone, and the replies expected on it: park or settle what was in flight. */
  connectionLost(): void;
  /** The link gave up or was closed: settle everything pending with `err` (before the state event). */
  rejectAll(err: ClientError): void;
  /** Whether an rpc is in flight (moving to WebSocket would lose it). */
  rpcInFlight(): boolean;
}

const FACTORIES: Record<TransportName, TransportFactory> = {
  websocket: (c, h) => new WebSocketTransport(c, h),
  sse: (c, h) => new SseTransport(c, h),
  poll: (c, h) => new PollTransport(c, h),
};

/** After a successful WebSocket probe while an rpc is in flight: probe again this much later, in ms. */
const PROBE_RETRY_MS = 1000;

export class Link {
  readonly #options: ResolvedOptions;
  readonly #backoff: Backoff;
  readonly #choice: TransportChoice;
  readonly #host: LinkHost;
  readonly #tokens: Tokens;
  readonly #watch: DeadLinkWatch;
  readonly #sender: PacedSender;
  readonly #probe: UpgradeProbe;

  #state: ClientState = 'disconnected';
  #transport: ClientTransport | null = null;
  #transportOpened = false;
  #everConnected = false;
  /** Connected at least once since the last `connect()` (the state of a new attempt: `reconnecting`, else `connecting`). */
  #connectedSinceConnect = false;
  #attemptSeq = 0;
  #clientId: string | null = null;
  #user: string | null = null;
  #authError: string | null = null;
  /** The `error` reply to this connection's `auth`: reported once, when the close that follows says what it means. */
  #authFailure: ClientError | null = null;
  /** What the attempt's warm-up request went over (null: none, or unknown). */
  #warmupProtocol: HttpProtocol | null = null;
  /** What carries the connection (null while not connected). */
  #transportInfo: TransportInfo | null = null;

  #connectPromise: Promise<void> | null = null;
  #connectResolve: (() => void) | null = null;
  #connectReject: ((err: ClientError) => void) | null = null;

  #nextId = 1;
  /** Replies expected on the current connection, by request id. */
  readonly #replies = new Map<RequestId, ReplyHandler>();
  /** How long the server remembers publish keys (its `auth` reply says; 5 minutes otherwise). */
  #idempotencyTtlMs = IDEMPOTENCY_TTL_MS;

  #reconnectTimer: Timer | null = null;
  #waitingForOnline = false;
  #lastFailure = { code: CloseCode.AbnormalClosure as number, reason: '' };
  #connectTimer: Timer | null = null;
  #stableTimer: Timer | null = null;
  /** The server's `closing` hint: reconnect after this many ms (used once). */
  #reconnectHintMs: number | null = null;
  #unsubscribeNetwork: (() => void) | null = null;

  constructor(urls: readonly string[], options: ResolvedOptions, transports: readonly TransportName[], backoff: Backoff, host: LinkHost) {
    this.#options = options;
    this.#choice = new TransportChoice(urls, transports, options, (event) => host.emit('transport', event));
    this.#backoff = backoff;
    this.#host = host;
    const link = this;
    this.#tokens = new Tokens(options, {
      get connected() {
        return link.connected;
      },
      error: (err) => host.emit('error', err),
      sendRefresh: (token, onReply) => this.send({ op: 'refresh', id: this.expect(onReply), token }),
      giveUp: (code, reason) => this.#giveUp(code, reason),
      pauseMs: (n) => backoff.baseDelay(n),
    });
    this.#watch = new DeadLinkWatch(options, {
      live: () => this.#state === 'connected' && this.#transport !== null,
      ping: () => this.send({ op: 'ping' }),
      dead: (silent) => this.#dropTransport(1006, `dead link: nothing from the server for ${silent} ms`),
    });
    this.#sender = new PacedSender(() => this.#transport);
    this.#probe = new UpgradeProbe(
      {
        wanted: () => this.#state === 'connected' && this.#choice.onFallback,
        get connected() {
          return link.connected;
        },
        webSocket: (handler) => FACTORIES.websocket(this.#context(this.url), handler),
        failed: () => this.#choice.preferredFailed(),
        reachable: () => this.#upgrade(),
      },
      options.connectTimeoutMs,
      options.upgradeIntervalMs,
    );
  }

  // ---- state ---------------------------------------------------------------------

  get state(): ClientState {
    return this.#state;
  }

  /** Whether a connection is up (auth answered). */
  get connected(): boolean {
    return this.#state === 'connected';
  }

  /** The transport of the current connection or attempt (null when there is none). */
  get transport(): TransportName | null {
    return this.#transport?.name ?? null;
  }

  /** The transport the next attempt uses (or the current one uses). */
  get preferredTransport(): TransportName | null {
    return this.#choice.transport;
  }

  /** The transports this link may use, in order. */
  get transports(): readonly TransportName[] {
    return this.#choice.transports;
  }

  /** The URL of the current connection or the next attempt. */
  get url(): string {
    return this.#choice.url;
  }

  get user(): string | null {
    return this.#user;
  }

  get clientId(): string | null {
    return this.#clientId;
  }

  /** What carries the connection: the transport and the HTTP version under it (null while not connected). */
  get transportInfo(): TransportInfo | null {
    const info = this.#transportInfo;
    // Nobody said when it connected; the warm-up's protocol may have come since.
    if (info !== null && info.httpProtocolSource === null && this.#transport !== null) {
      this.#transportInfo = transportInfoOf(this.#transport, null, this.#warmupProtocol);
    }
    return this.#transportInfo;
  }

  /** The dead-link limit now, in ms (see DeadLinkWatch). */
  get deadLinkTimeoutMs(): number {
    return this.#watch.timeoutMs;
  }

  /** How long the server remembers publish keys, in ms. */
  get idempotencyTtlMs(): number {
    return this.#idempotencyTtlMs;
  }

  #setState(state: ClientState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#host.emit('state', state);
  }

  // ---- sending -------------------------------------------------------------------

  /** A request id for a message about to be sent; its reply goes to `onReply`, unless the connection ends first. */
  expect(onReply: ReplyHandler): RequestId {
    const id = this.#nextId++;
    this.#replies.set(id, onReply);
    return id;
  }

  /** A reply to `id` is ignored from now on. */
  forget(id: RequestId): void {
    this.#replies.delete(id);
  }

  /** Send on the current connection within the server's rate budget (dropped when there is none). */
  send(message: ClientMessage): boolean {
    return this.#sender.send(message);
  }

  // ---- connect / close -------------------------------------------------------------

  /** See `Client.connect()`. */
  connect(): Promise<void> {
    if (this.#state === 'connected') return Promise.resolve();
    if (this.#connectPromise) return this.#connectPromise;
    // Already trying (after a drop): wait for the attempt under way or scheduled.
    if (this.#state === 'connecting' || this.#state === 'reconnecting') return this.#newConnectPromise();
    if (this.#choice.transports.length === 0) {
      return Promise.reject(new ClientError('RT_CLIENT_NO_TRANSPORT', 'no transport can run here: pass a WebSocket (or EventSource and fetch) implementation'));
    }
    const promise = this.#newConnectPromise();
    this.#backoff.reset();
    this.#choice.resetFailures();
    this.#connectedSinceConnect = false;
    if (this.#options.network && !this.#unsubscribeNetwork) {
      this.#unsubscribeNetwork = this.#options.network.subscribe(this.#onOnline, this.#onOffline);
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

  /** See `Client.close()`. */
  close(): void {
    if (this.#state === 'closed') return;
    const wasConnected = this.#state === 'connected';
    this.#attemptSeq++;
    this.#clearConnectionTimers();
    this.#clearReconnectTimer();
    this.#waitingForOnline = false;
    this.#reconnectHintMs = null;
    const transport = this.#transport;
    this.#transport = null;
    transport?.close(1000, 'client closed');
    const err = new ClientError('RT_CLIENT_CLOSED', 'the client was closed');
    this.#afterTransportGone();
    this.#unsubscribeNetwork?.();
    this.#unsubscribeNetwork = null;
    // Settle everything before the events: a listener that calls connect() starts afresh.
    this.#host.rejectAll(err);
    this.#settleConnect(err);
    this.#setState('closed');
    if (wasConnected) this.#host.emit('disconnected', { code: 1000, reason: 'closed by the client', meaning: closeMeaning(1000), willReconnect: false });
  }

  #settleConnect(err?: ClientError): void {
    const resolve = this.#connectResolve;
    const reject = this.#connectReject;
    this.#connectPromise = null;
    this.#connectResolve = this.#connectReject = null;
    if (err) reject?.(err);
    else resolve?.();
  }

  // ---- an attempt ------------------------------------------------------------------

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
      this.#host.emit('error', error);
      if (abandoned !== this.#attemptSeq) return; // an 'error' listener closed or restarted the client
      this.#attemptFailed(CloseCode.AbnormalClosure, error.message, false);
    }, timeoutMs);
    // The warm-up runs while the token is fetched; the WebSocket opens once both are done.
    this.#warmupProtocol = null;
    const warm = this.#warmup(seq);
    Promise.all([this.#tokens.forAttempt(this.#everConnected), warm]).then(
      ([token]) => {
        if (seq !== this.#attemptSeq) return;
        this.#tokens.use(token);
        this.#openTransport();
      },
      (err: unknown) => {
        if (seq !== this.#attemptSeq) return;
        const error = err as ClientError;
        this.#host.emit('error', error);
        if (seq !== this.#attemptSeq) return; // an 'error' listener closed or restarted the client
        if (isNoTokenError(error)) this.#giveUp(RealtimeCloseCode.Unauthorized, error.message);
        else this.#attemptFailed(CloseCode.AbnormalClosure, error.message, false);
      },
    );
  }

  /**
   * The warm-up request before a WebSocket attempt (warmup.ts): resolves when
   * it is answered, failed or timed out, never rejects.
   */
  async #warmup(seq: number): Promise<void> {
    const path = this.#options.warmup;
    const fetch = this.#options.fetch;
    if (path === null || fetch === undefined || this.#choice.transport !== 'websocket') return;
    let url: string | null;
    try {
      url = warmupUrl(webSocketUrl(this.url), path);
    } catch {
      return; // a URL the WebSocket transport will refuse, with its own close
    }
    if (url === null) return;
    await warmUp(url, fetch, Math.min(WARMUP_TIMEOUT_MS, this.#options.connectTimeoutMs / 2), {
      wanted: () => seq === this.#attemptSeq,
      // Known a moment after the answer, maybe once connected: transportInfo reads it then.
      protocol: (protocol) => {
        this.#warmupProtocol = protocol;
      },
    });
  }

  #openTransport(): void {
    const name = this.#choice.transport!;
    let transport: ClientTransport;
    transport = FACTORIES[name](this.#context(this.url), {
      onOpen: () => {
        if (this.#transport === transport) this.#onTransportOpen();
      },
      onMessage: (message) => {
        if (this.#transport === transport) this.#onMessage(message);
      },
      onClose: (code, reason) => {
        if (this.#transport === transport) this.#onTransportClose(code, reason);
      },
    });
    this.#transport = transport;
    this.#transportOpened = false;
    this.#authError = null;
    this.#authFailure = null;
    transport.open();
  }

  #context(url: string): TransportContext {
    const o = this.#options;
    return {
      url,
      protocol: o.protocol,
      connectTimeoutMs: o.connectTimeoutMs,
      WebSocket: o.WebSocket,
      webSocketOptions: o.webSocketOptions,
      EventSource: o.EventSource,
      fetch: o.fetch,
      withCredentials: o.withCredentials,
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
    this.#sender.drop();
    this.#sender.setBudget();
    this.#watch.received();
    const token = this.#tokens.current;
    if (token === undefined) {
      this.#onConnected(null, null, null, null);
      return;
    }
    this.send({ op: 'auth', id: this.expect((reply, error) => this.#onAuthReply(reply, error)), token });
  }

  #onAuthReply(ok: OkReply, error: ClientError | null): void {
    if (error) {
      // The server closes the connection next (4500, or 4002 for an expired token).
      // Reported with that close (#attemptFailed): once, as RT_CLIENT_UNAUTHORIZED when it is 4500.
      this.#authError = `authentication failed: ${(ok as unknown as ErrorReply).message}`;
      this.#authFailure = error;
      return;
    }
    // The server's own budget, when it says (the auth message already spent one).
    const limits = ok.limits as { messageRate?: unknown; byteRate?: unknown; idempotencyTtlMs?: unknown } | undefined;
    if (typeof limits?.idempotencyTtlMs === 'number' && limits.idempotencyTtlMs > 0) this.#idempotencyTtlMs = limits.idempotencyTtlMs;
    if (isRate(limits?.messageRate) && isRate(limits?.byteRate)) this.#sender.setBudget(limits.messageRate, limits.byteRate, 64);
    this.#onConnected(
      typeof ok.client === 'string' ? ok.client : null,
      typeof ok.user === 'string' ? ok.user : null,
      typeof ok.expiresIn === 'number' ? ok.expiresIn : null,
      httpProtocolOf(ok.http),
    );
  }

  /** `serverHttp`: what the server said carries the connection (its `auth` reply's `http`). */
  #onConnected(clientId: string | null, user: string | null, expiresIn: number | null, serverHttp: HttpProtocol | null): void {
    const transport = this.#transport!;
    const info = transportInfoOf(transport, serverHttp, this.#warmupProtocol);
    this.#transportInfo = info;
    if (this.#connectTimer) clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    this.#clientId = clientId;
    this.#user = user;
    this.#choice.resetFailures();
    this.#everConnected = true;
    this.#connectedSinceConnect = true;
    this.#setState('connected');
    this.#watch.start();
    const { resetAfterMs } = this.#backoff.options;
    this.#stableTimer = setTimer(() => {
      this.#stableTimer = null;
      this.#backoff.reset();
    }, resetAfterMs);
    this.#tokens.connected(expiresIn);
    this.#settleConnect();
    this.#host.emit('connected', { ...info, client: clientId, user, url: this.url });
    if (this.#transport !== transport || this.#state !== 'connected') return; // a listener closed the client
    this.#host.connected();
    if (this.#choice.shouldProbe) this.#probe.schedule(this.#options.upgradeProbeDelayMs);
  }

  #onTransportClose(code: number, reason: string): void {
    const transport = this.#transport!;
    const opened = this.#transportOpened;
    const wasConnected = this.#state === 'connected';
    this.#transport = null;
    this.#clearConnectionTimers();
    this.#afterTransportGone();
    if (this.#authError !== null && reason === '') reason = this.#authError;
    const authFailure = this.#authFailure;
    this.#authFailure = null;
    if (authFailure && !isUnauthorizedClose(code, this.#tokens.current)) {
      this.#host.emit('error', authFailure);
      if (this.#state === 'closed' || this.#state === 'disconnected') return; // an 'error' listener closed the client
    }
    // Blocked counts like refused: a transport that opened but never carried the auth exchange
    // (our connect timeout, or the connection lost, 1006; or the server's 4001: our auth never reached it).
    const blocked = !opened || (!wasConnected && (code === CloseCode.AbnormalClosure || code === RealtimeCloseCode.AuthTimeout));
    this.#attemptFailed(code, reason, blocked, transport.name, wasConnected);
  }

  // ---- after a failure: fallback, failover, reconnect ---------------------------------

  /**
   * An attempt failed or a connection was lost: decide about the transport
   * (fallback), the URL (failover) and whether and when to try again.
   */
  #attemptFailed(code: number, reason: string, failedBeforeOpen: boolean, transportName?: TransportName, wasConnected = false): void {
    // An 'error' listener may have closed the client already.
    if (this.#state === 'closed' || this.#state === 'disconnected') return;
    this.#clearConnectionTimers();
    this.#lastFailure = { code, reason };
    // Fallback: attempts that fail while the device is offline say nothing about the transport.
    if (failedBeforeOpen && transportName !== undefined && this.#options.network?.isOnline() !== false) this.#choice.failedBeforeOpen();
    else if (wasConnected) this.#choice.dropped();
    if (isUnauthorizedClose(code, this.#tokens.current)) {
      // Retrying cannot help: no token will appear by itself, an invalid one stays invalid.
      // Said once, with what to do, and the client stops (docs/close-codes.md: 4500-4999 do not reconnect;
      // 4001 does, but a client with no token at all never passes it).
      const advice = unauthorizedAdvice(code, reason, this.#tokens.current !== undefined);
      this.#host.emit('error', new ClientError('RT_CLIENT_UNAUTHORIZED', advice, { closeCode: code }));
      const state = this.#state as ClientState;
      if (state === 'closed' || state === 'disconnected') return; // an 'error' listener closed the client
      this.#giveUp(code, reason || closeMeaning(code), advice);
      return;
    }
    let willReconnect = shouldReconnect(code) && !(code === RealtimeCloseCode.TokenExpired && !this.#tokens.renewable);
    let why = reason;
    if (willReconnect && !this.#backoff.canRetry) {
      willReconnect = false;
      why = `${reason ? `${reason}; ` : ''}gave up after ${this.#backoff.attempt} attempts`;
    }
    if (!willReconnect) {
      this.#giveUp(code, why);
      return;
    }
    if (wasConnected) this.#host.emit('disconnected', { code, reason, meaning: closeMeaning(code), willReconnect: true });
    if (this.#state !== 'connected' && this.#state !== 'connecting' && this.#state !== 'reconnecting') return; // a listener closed us
    this.#choice.nextUrl();
    this.#scheduleReconnect();
  }

  /**
   * Stop for good (until `connect()`): a close that says not to reconnect,
   * `maxAttempts`, or getToken() with no token. Pending work is rejected and
   * `connect()` settled before the events, so a listener may call
   * `connect()` again at once.
   */
  #giveUp(code: number, reason: string, advice?: string): void {
    this.#attemptSeq++;
    this.#clearReconnectTimer();
    this.#clearConnectionTimers();
    this.#waitingForOnline = false;
    this.#reconnectHintMs = null;
    const transport = this.#transport;
    this.#transport = null;
    if (transport) {
      transport.close(1000, reason);
      this.#afterTransportGone();
    }
    this.#unsubscribeNetwork?.();
    this.#unsubscribeNetwork = null;
    this.#host.rejectAll(new ClientError('RT_CLIENT_DISCONNECTED', `disconnected: ${code} ${reason || closeMeaning(code)}`, { closeCode: code }));
    const failed = `connection failed: ${code} ${reason || closeMeaning(code)}${advice ? ` (${advice})` : ''}`;
    this.#settleConnect(new ClientError('RT_CLIENT_CONNECT_FAILED', failed, { closeCode: code }));
    this.#setState('disconnected');
    this.#host.emit('disconnected', { code, reason, meaning: closeMeaning(code), willReconnect: false });
  }

  #scheduleReconnect(): void {
    let delay = this.#backoff.next();
    if (this.#reconnectHintMs !== null) {
      delay = this.#reconnectHintMs;
      this.#reconnectHintMs = null;
    }
    this.#setState(this.#connectedSinceConnect ? 'reconnecting' : 'connecting');
    if (this.#state !== 'connecting' && this.#state !== 'reconnecting') return; // a 'state' listener closed the client
    if (this.#options.network && !this.#options.network.isOnline()) {
      // Offline: no attempt can succeed; the `online` event starts the next one.
      this.#waitingForOnline = true;
      return;
    }
    this.#armReconnect(delay);
  }

  #armReconnect(delay: number): void {
    this.#host.emit('reconnecting', {
      inMs: delay,
      attempt: Math.max(1, this.#backoff.attempt),
      url: this.url,
      transport: this.#choice.transport!,
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

  /** Timers (and the probe, the token refresh) that belong to one connection. */
  #clearConnectionTimers(): void {
    for (const timer of [this.#connectTimer, this.#stableTimer]) if (timer) clearTimeout(timer);
    this.#connectTimer = this.#stableTimer = null;
    this.#probe.stop();
    this.#watch.stop();
    this.#tokens.stop();
  }

  /** The connection is gone: what was sent or expected on it goes with it; the client parks the rest. */
  #afterTransportGone(): void {
    this.#transportInfo = null;
    this.#sender.drop();
    this.#clientId = null;
    this.#user = null;
    this.#replies.clear();
    this.#host.connectionLost();
  }

  // ---- the probe back to WebSocket -------------------------------------------------------

  /** WebSocket answered the probe: move over, unless that would lose an rpc in flight (then probe again shortly). */
  #upgrade(): void {
    if (this.#state !== 'connected' || !this.#transport) return;
    // An rpc in flight would be lost by the switch (it is not sent again): try again shortly.
    if (this.#host.rpcInFlight()) {
      this.#probe.schedule(PROBE_RETRY_MS);
      return;
    }
    // WebSocket gets through now: move over (subscriptions resume from their positions).
    this.#choice.upgrade();
    const old = this.#transport;
    this.#transport = null;
    const reason = 'switching to websocket';
    old.close(CloseCode.NormalClosure, reason);
    this.#clearConnectionTimers();
    this.#afterTransportGone();
    this.#host.emit('disconnected', { code: 1000, reason, meaning: closeMeaning(1000), willReconnect: true });
    if (this.#state !== 'connected') return; // a listener closed the client
    this.#setState('reconnecting');
    if ((this.#state as ClientState) === 'reconnecting') this.#startAttempt();
  }

  // ---- incoming --------------------------------------------------------------------------

  #onMessage(message: ServerMessage): void {
    this.#watch.received();
    switch (message.op) {
      case 'ok':
      case 'error':
        this.#onReply(message);
        return;
      case 'ping':
        this.#watch.serverPing();
        this.send({ op: 'pong' });
        return;
      case 'pong':
        return;
      case 'refresh':
        this.#tokens.refresh();
        return;
      case 'closing':
        if (typeof message.reconnectAfter === 'number' && message.reconnectAfter >= 0) this.#reconnectHintMs = message.reconnectAfter;
        return;
      case 'close':
        // Fallback transports turn this into a close themselves; a WebSocket server never sends it.
        this.#dropTransport(typeof message.code === 'number' ? message.code : 1006, String(message.reason ?? ''));
        return;
      default:
        this.#host.message(message);
        return;
    }
  }

  #onReply(reply: OkReply | ErrorReply): void {
    if (reply.id === undefined) {
      if (reply.op === 'error') {
        this.#host.emit('error', new ClientError('RT_CLIENT_SERVER_ERROR', `server error ${reply.code}: ${reply.message}`, { serverCode: reply.code }));
      }
      return;
    }
    const onReply = this.#replies.get(reply.id);
    if (!onReply) return; // a late reply to a request that timed out
    this.#replies.delete(reply.id);
    const error =
      reply.op === 'error'
        ? new ClientError('RT_CLIENT_SERVER_ERROR', `${reply.message} (${reply.code})`, { serverCode: (reply as ErrorReply).code })
        : null;
    onReply(reply as OkReply, error);
  }
}

/**
 * What carries a connection, from the best witness: the server (it saw the
 * connection arrive), else the WebSocket implementation (Node), else, for a
 * WebSocket, the warm-up request's protocol (a browser WebSocket rides on
 * that connection when the server allows RFC 8441; over HTTP/1.1 it cannot).
 */
function transportInfoOf(transport: ClientTransport, server: HttpProtocol | null, warmup: HttpProtocol | null): TransportInfo {
  const own = transport.httpProtocol ?? null;
  if (server !== null) return { transport: transport.name, httpProtocol: server, httpProtocolSource: 'server' };
  if (own !== null) return { transport: transport.name, httpProtocol: own, httpProtocolSource: 'websocket' };
  if (warmup !== null && transport.name === 'websocket') return { transport: transport.name, httpProtocol: warmup, httpProtocolSource: 'warmup' };
  return { transport: transport.name, httpProtocol: null, httpProtocolSource: null };
}

/**
 * A close that says this client cannot authenticate as it is: 4500 (the
 * server refused the token, or the credentials of a fallback session), or
 * 4001 (no `auth` in time) for a client that has no token at all — it
 * sends no `auth`, so every connection would end the same way.
 */
function isUnauthorizedClose(code: number, token: string | undefined): boolean {
  return code === RealtimeCloseCode.Unauthorized || (code === RealtimeCloseCode.AuthTimeout && token === undefined);
}

/** What an RT_CLIENT_UNAUTHORIZED error says: what happened, and what to do. */
function unauthorizedAdvice(code: number, reason: string, hadToken: boolean): string {
  const said = `${code}${reason ? `: ${reason}` : ''}`;
  if (code === RealtimeCloseCode.AuthTimeout) {
    return `the server requires a token and this client has none (closed with ${said}): pass \`token\` or \`getToken\` to new Client(url, { … }); not reconnecting`;
  }
  if (!hadToken) {
    return `the server refused this client as unauthorized (closed with ${said}) and it has no token: pass \`token\` or \`getToken\` to new Client(url, { … }); not reconnecting`;
  }
  return `the server refused the token (closed with ${said}): pass a valid \`token\`, or a \`getToken\` that returns one; not reconnecting`;
}
