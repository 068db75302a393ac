/**
 * The realtime client SDK: one logical connection to a Switchboard server
 * that survives drops. Browser-safe (only `WebSocket`, `EventSource`,
 * `fetch`, timers and the `online`/`offline` events); runs in Node 20 too,
 * with a `WebSocket` constructor passed in.
 *
 * Three parts: this public client (its API, the subscriptions and the
 * requests), the link (link.ts: transports, failover, reconnect, the state
 * and its lifecycle) and the outbox (outbox.ts: publications until acked).
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
import type { ClientMessage, OkReply, RequestId, ServerMessage, StreamPosition } from '../wire/messages.js';
import { Backoff } from './backoff.js';
import { Emitter } from './emitter.js';
import { ClientError, isRetryable } from './errors.js';
import { Link } from './link.js';
import { resolveOptions, usableTransports, type ClientOptions } from './options.js';
import { Outbox } from './outbox.js';
import { Subscription, type SubscribeOptions } from './subscription.js';
import { setTimer, type Timer } from './timer.js';
import type { TransportName } from './transports/transport.js';
import type { ClientEvents, ClientState, TransportInfo, HistoryOptions, HistoryResult, PresenceResult, PublishOptions, PublishResult } from './types.js';

type RequestKind = 'rpc' | 'read';

interface PendingRequest {
  kind: RequestKind;
  op: 'rpc' | 'presence' | 'history';
  fields: Record<string, unknown>;
  sent: boolean;
  /** Request id of the send on the current connection. */
  id: RequestId | null;
  /** The overall deadline (waiting for a connection plus waiting for the reply). */
  timer: Timer | null;
  resolve(reply: OkReply): void;
  reject(err: ClientError): void;
}

/** What the server has for a channel on the current connection: a `sub` on its way, confirmed, or an `unsub` on its way. */
interface ServerSubscription {
  state: 'subscribing' | 'subscribed' | 'unsubscribing';
  sub: Subscription;
}

export class Client extends Emitter<ClientEvents> {
  /** Server URLs, tried in turn (the next one after each failure). */
  readonly urls: readonly string[];
  readonly #requestTimeoutMs: number;
  readonly #backoff: Backoff;
  readonly #link: Link;
  readonly #outbox: Outbox;
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
  readonly #channelHolds = new Map<string, { timer: Timer | null; attempts: number }>();
  /** rpc/presence/history waiting for a connection or a reply. */
  readonly #requests = new Set<PendingRequest>();

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
    const resolved = resolveOptions(options);
    this.#requestTimeoutMs = resolved.requestTimeoutMs;
    const backoff = new Backoff(options.reconnect ?? {});
    this.#backoff = backoff;
    const transports = usableTransports(options.transports, resolved);
    this.#link = new Link(this.urls, resolved, transports, backoff, {
      emit: (event, payload) => this.emit(event, payload),
      connected: () => this.#onConnected(),
      message: (message) => this.#onMessage(message),
      connectionLost: () => this.#onConnectionLost(),
      rejectAll: (err) => this.#rejectAll(err),
      rpcInFlight: () => [...this.#requests].some((request) => request.kind === 'rpc' && request.sent),
    });
    this.#outbox = new Outbox(this.#link, resolved, (n) => backoff.baseDelay(n));
  }

  // ---- state ---------------------------------------------------------------------

  get state(): ClientState {
    return this.#link.state;
  }

  /** The transport of the current connection or attempt (null when there is none). */
  get transport(): TransportName | null {
    return this.#link.transport;
  }

  /** The transport the next attempt uses (or the current one uses). */
  get preferredTransport(): TransportName | null {
    return this.#link.preferredTransport;
  }

  /** The transports this client may use, in order (configured ones that can run here). */
  get transports(): readonly TransportName[] {
    return this.#link.transports;
  }

  /** The URL of the current connection or the next attempt. */
  get url(): string {
    return this.#link.url;
  }

  /** User id of the connection (null while not connected, or anonymous). */
  get user(): string | null {
    return this.#link.user;
  }

  /**
   * What carries the connection (null while not connected): the transport,
   * and the HTTP version under it (`'h2'`, `'http/1.1'`, or null when
   * unknown) with who said so — the server (its `auth` reply), the WebSocket
   * implementation (Node), or the warm-up request (browsers; see the
   * `warmup` option). Also in the `connected` event.
   */
  get transportInfo(): TransportInfo | null {
    return this.#link.transportInfo;
  }

  /** Connection id assigned by the server (null while not connected, or anonymous). */
  get clientId(): string | null {
    return this.#link.clientId;
  }

  /** Publications waiting to be sent or acknowledged. */
  get pendingPublications(): number {
    return this.#outbox.size;
  }

  /** The subscriptions, by channel. */
  get subscriptions(): ReadonlyMap<string, Subscription> {
    return this.#subscriptions;
  }

  /**
   * How long silence may last before the link counts as dead, in ms: the
   * server's ping interval (learned from two pings on this connection) plus
   * `pingGraceMs`, else `pingTimeoutMs`.
   */
  get deadLinkTimeoutMs(): number {
    return this.#link.deadLinkTimeoutMs;
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
    return this.#link.connect();
  }

  /**
   * Close for good (until `connect()` is called again): no reconnect.
   * Pending publications and requests reject with `RT_CLIENT_CLOSED`.
   * Subscriptions are kept and resume if `connect()` is called again.
   */
  close(): void {
    this.#link.close();
  }

  // ---- what the link reports ---------------------------------------------------------

  #onConnected(): void {
    // Subscriptions first, then what waited: the order the application made them in.
    for (const channel of [...this.#subscriptions.keys()]) this.#reconcile(channel);
    this.#outbox.flush();
    for (const request of this.#requests) if (!request.sent) this.#sendRequest(request);
  }

  /** The connection is gone: settle or park what was in flight on it. */
  #onConnectionLost(): void {
    // The server has nothing of ours any more: unsubscribe() promises resolve, retries start over.
    this.#server.clear();
    for (const waiters of this.#unsubWaiters.values()) for (const resolve of waiters) resolve();
    this.#unsubWaiters.clear();
    for (const hold of this.#channelHolds.values()) if (hold.timer) clearTimeout(hold.timer);
    this.#channelHolds.clear();
    for (const sub of this.#subscriptions.values()) sub.markPending();
    this.#outbox.connectionLost();
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
    this.#outbox.rejectAll(err);
    for (const request of [...this.#requests]) {
      this.#settleRequest(request);
      request.reject(err);
    }
  }

  #onMessage(message: ServerMessage): void {
    switch (message.op) {
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
      default:
        // A newer server's push this client does not know: ignore it (forward compatible).
        return;
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
    if (!this.#link.connected) return;
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
    const since = sub.resumeFrom();
    const id = this.#link.expect((reply, error) => this.#onSubscribeReply(sub, since, reply, error));
    this.#server.set(sub.channel, { state: 'subscribing', sub });
    const message: ClientMessage = { op: 'sub', id, channel: sub.channel };
    if (since) message.since = since;
    if (sub.presence) message.presence = true;
    this.#link.send(message);
  }

  #onSubscribeReply(sub: Subscription, since: StreamPosition | undefined, ok: OkReply, error: ClientError | null): void {
    const channel = sub.channel;
    const wanted = this.#subscriptions.get(channel) === sub;
    if (error) {
      this.#server.delete(channel);
      this.#releaseUnsubscribe(sub);
      if (wanted && isRetryable(error)) {
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
      const event = sub.confirmed(ok as { position?: StreamPosition; recovered?: boolean }, since);
      this.emit('subscribed', event);
      if (event.resumed) this.emit('recovered', event);
    }
    // Unsubscribed while the `sub` was on its way (or by a listener just now): undo it on the server.
    this.#reconcile(channel);
  }

  #sendUnsubscribe(sub: Subscription): void {
    const id = this.#link.expect((_reply, error) => this.#onUnsubscribeReply(sub, error));
    this.#server.set(sub.channel, { state: 'unsubscribing', sub });
    this.#link.send({ op: 'unsub', id, channel: sub.channel });
  }

  #onUnsubscribeReply(sub: Subscription, error: ClientError | null): void {
    const channel = sub.channel;
    if (error && isRetryable(error)) {
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
  }

  /** `sub.unsubscribe()`: resolves once the server no longer has it (at once when it has nothing of it). */
  #unsubscribe(sub: Subscription): Promise<void> {
    if (this.#subscriptions.get(sub.channel) === sub) this.#subscriptions.delete(sub.channel);
    if (!this.#link.connected || this.#server.get(sub.channel)?.sub !== sub) return Promise.resolve();
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
    if (this.#link.state === 'closed') return Promise.reject(new ClientError('RT_CLIENT_CLOSED', 'the client is closed'));
    if (typeof channel !== 'string' || channel.length === 0) {
      return Promise.reject(new ClientError('RT_CLIENT_INVALID_ARGUMENT', 'channel must be a non-empty string'));
    }
    return this.#outbox.publish(channel, data, options.volatile === true);
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

  /**
   * Call an rpc method without waiting for, or getting, an answer: for what is
   * stale once the next one is sent (a game's input, a cursor, a typing
   * indicator). Sent now when connected and within the server's rate budget;
   * otherwise dropped, never queued — returns whether it went out. A server that refuses it (404: no such
   * method, 401, 429, 500: the handler failed) says so by an `error` event
   * (`RT_CLIENT_SERVER_ERROR`) with no request to blame.
   */
  send(method: string, data?: unknown): boolean {
    if (typeof method !== 'string' || method.length === 0) throw new ClientError('RT_CLIENT_INVALID_ARGUMENT', 'method must be a non-empty string');
    if (!this.#link.connected) return false;
    return this.#link.send(data === undefined ? { op: 'send', method } : { op: 'send', method, data });
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
    if (this.#link.state === 'closed') return Promise.reject(new ClientError('RT_CLIENT_CLOSED', 'the client is closed'));
    return new Promise<OkReply>((resolve, reject) => {
      const request: PendingRequest = { kind, op, fields, sent: false, id: null, timer: null, resolve, reject };
      request.timer = setTimer(() => {
        request.timer = null;
        const sent = request.sent;
        this.#settleRequest(request);
        reject(
          sent
            ? new ClientError('RT_CLIENT_TIMEOUT', `no reply to ${op} within ${this.#requestTimeoutMs} ms`)
            : new ClientError('RT_CLIENT_DISCONNECTED', `not connected within ${this.#requestTimeoutMs} ms`),
        );
      }, this.#requestTimeoutMs);
      this.#requests.add(request);
      if (this.#link.connected) this.#sendRequest(request);
    });
  }

  #sendRequest(request: PendingRequest): void {
    const id = this.#link.expect((reply, error) => {
      this.#settleRequest(request);
      if (error) request.reject(error);
      else request.resolve(reply);
    });
    request.id = id;
    request.sent = true;
    this.#link.send({ op: request.op, id, ...request.fields } as ClientMessage);
  }

  #settleRequest(request: PendingRequest): void {
    if (request.timer) clearTimeout(request.timer);
    request.timer = null;
    this.#requests.delete(request);
    if (request.id !== null) this.#link.forget(request.id);
    request.id = null;
  }
}

