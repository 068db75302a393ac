/**
 * One realtime connection: its identity, subscriptions and limits, and the
 * handling of every client request. Requests are answered with `ok` or
 * `error` carrying the request's `id`; nothing a client sends can throw out
 * of `receive`.
 */
import type { Action, Identity, NamespaceRules, SessionHost, Subscriber, Subscription } from './session-host.js';
import { isPattern, isValidChannel, isValidPattern } from '../wire/channel.js';
import { TokenBucket } from './rate-limit.js';
import { utf8Length, type RealtimeTransport, type SharedMessage, type Logger } from './transport.js';
import { isRequestId, validateClientMessage } from '../wire/validate.js';
import { dataProblem } from '../wire/data.js';
import { Disconnect } from '../wire/disconnect.js';
import { closeMeaning } from '../wire/close-codes.js';
import {
  ErrorCode,
  IDEMPOTENCY_TTL_MS,
  MAX_TOKEN_LENGTH,
  type ClientInfo,
  type ClientMessage,
  type Publication,
  type RequestId,
  type StreamPosition,
} from '../wire/messages.js';

/**
 * Live publications buffered for a subscription while its history is being
 * read, and the most a resume replays: a client further behind is told
 * `recovered: false` and reloads, rather than getting a partial replay.
 */
const MAX_RECOVERY_BUFFER = 10_000;
/** Consecutive rate-limited messages after which the connection is closed (4004). */
const MAX_RATE_LIMITED = 20;
/** Publishes of one connection in flight at the broker at once (a run of `pub`s, see Session#enqueue). */
const MAX_PUB_RUN = 32;

export type { Subscription } from './session-host.js';

class RequestError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** A token `HubAuth#verify` refused: answered 401, and a failed `auth` closes with `disconnect`. */
class TokenRefused extends RequestError {
  readonly disconnect: Disconnect;
  constructor(message: string, closeCode: number | undefined) {
    super(ErrorCode.Unauthorized, message);
    this.disconnect = closeCode === undefined ? Disconnect.Unauthorized.with(message) : new Disconnect(closeCode, message);
  }
}

/** The close code a verifier's rejection names (AuthError#closeCode, or any error with a numeric one). */
function closeCodeOf(err: unknown): number | undefined {
  const code = typeof err === 'object' && err !== null ? (err as { closeCode?: unknown }).closeCode : undefined;
  return typeof code === 'number' ? code : undefined;
}

const DRAINED: Promise<void> = Promise.resolve();

function askForRefresh(session: Session, at: number): void {
  session._askForRefresh(at);
}

function closeIfExpired(session: Session): void {
  session._closeIfExpired();
}

export class Session implements Subscriber {
  readonly id: string;
  readonly transport: RealtimeTransport;
  readonly remoteAddress: string;
  identity: Identity | null;
  readonly subscriptions = new Map<string, Subscription>();
  /**
   * ms timestamp of the outstanding app-level ping (0: none). It starts as
   * -0, which equals 0 but is not a small integer to V8: the field holds
   * doubles from the start. Started as 0, the first ping's timestamp (no
   * small integer) changed the field's representation, and with it every
   * session's hidden class: the optimized code of the whole delivery path was
   * thrown away, and a game server's next ticks ran twice as long.
   */
  pingSentAt = -0;
  lastActivity: number;
  /** ms timestamp of the connection's start (the close line says how long it lasted; the admin UI shows it). */
  readonly openedAt: number;
  private readonly host: SessionHost;
  /** The connection's child logger, made at its first line above debug (a child per idle connection costs ~1 KiB). */
  private childLog: Logger | null = null;
  private readonly messageBucket: TokenBucket;
  private readonly byteBucket: TokenBucket;
  private rateLimitedInARow = 0;
  /** The tail of the request queue (see enqueue); the shared resolved promise once it drained. */
  private requests: Promise<void> = DRAINED;
  /**
   * The open run of `pub`s (see enqueue): its channel, the promise its
   * members start on, and how many it holds; null when the last request
   * queued was not a `pub`.
   */
  private pubRun: { channel: string; gate: Promise<void>; size: number; last: Promise<void> } | null = null;
  private authTimer: NodeJS.Timeout | null = null;
  private expiryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** `close()` was called: the close handshake is under way, nothing more is delivered. */
  private closing = false;
  /** Fan-out stamp of the last publication delivered (dedupe channel + pattern matches). */
  private lastFanout = 0;
  private authPending = false;

  constructor(host: SessionHost, id: string, transport: RealtimeTransport, identity: Identity | null, remoteAddress: string) {
    this.host = host;
    this.id = id;
    this.transport = transport;
    this.identity = identity;
    this.remoteAddress = remoteAddress;
    const { messageRate, byteRate } = host.limits;
    this.messageBucket = new TokenBucket(messageRate.perSecond, messageRate.burst, host.now);
    this.byteBucket = new TokenBucket(byteRate.perSecond, byteRate.burst, host.now);
    this.lastActivity = host.now();
    this.openedAt = this.lastActivity;
    if (identity) {
      this.scheduleExpiry();
    } else if (!host.auth.anonymous) {
      this.authTimer = setTimeout(() => {
        if (!this.identity) this.close(Disconnect.AuthTimeout);
      }, host.auth.authTimeoutMs);
      this.authTimer.unref();
    }
    // One line per connection and one per close, at debug: at info a busy server would log two lines per
    // connection (docs/configuration.md, "log"). Failures worth an operator's eye are warn/error lines of their own.
    host.logger.debug({ conn: id, transport: transport.kind, remote: remoteAddress, user: identity?.user }, 'connected');
  }

  private get log(): Logger {
    return (this.childLog ??= this.host.logger.child({ conn: this.id }));
  }

  get info(): ClientInfo {
    const info: ClientInfo = { client: this.id, user: this.identity?.user ?? '' };
    if (this.identity?.info !== undefined) info.info = this.identity.info;
    return info;
  }

  // ---- output ------------------------------------------------------------------

  send(message: object): void {
    if (this.closed) return;
    const payload = this.transport.codec.encode(message);
    this.transport.send(payload);
    this.host.observer.messagesOut(1, typeof payload === 'string' ? utf8Length(payload) : payload.byteLength);
  }

  /** A push shared with other connections (presence, pings): counted per connection, like a delivery. */
  sendShared(shared: SharedMessage): void {
    if (this.closed) return;
    this.transport.sendShared(shared);
    this.host.observer.messagesOut(1, shared.byteLength(this.transport.codec));
  }

  private reply(id: RequestId, result: object = {}): void {
    this.send({ op: 'ok', id, ...result });
  }

  private replyError(op: string, id: RequestId | undefined, code: number, message: string): void {
    this.host.observer.requestFailed(op, code);
    this.send(id === undefined ? { op: 'error', code, message } : { op: 'error', id, code, message });
  }

  /**
   * Deliver a live publication (called by the hub's fan-out). Returns the
   * bytes written (0: not written), which the hub counts. Applies the
   * slow-consumer policy.
   */
  deliver(sub: Subscription, pub: Publication, shared: SharedMessage, fanout: number): number {
    if (this.closed || this.closing) return 0;
    // A pattern defers to this session's subscription to the channel itself: that one may be
    // recovering (buffering), and delivers the publication in order with what it recovers.
    if (sub.channel !== pub.channel && this.subscriptions.has(pub.channel)) return 0;
    if (!sub.live) {
      if (sub.buffer && sub.buffer.length < MAX_RECOVERY_BUFFER) sub.buffer.push(pub);
      else {
        this.host.observer.dropped('recovery-overflow');
        this.close(Disconnect.SlowConsumer.with('too many messages during recovery'));
      }
      return 0;
    }
    if (this.lastFanout === fanout) return 0;
    this.lastFanout = fanout;
    if (this.transport.bufferedAmount > this.host.limits.sendHighWaterMark) {
      if (pub.volatile && this.host.limits.slowConsumer === 'drop-volatile') {
        this.host.observer.dropped('slow-consumer-volatile');
        return 0;
      }
      this.host.observer.dropped('slow-consumer');
      this.log.warn({ buffered: this.transport.bufferedAmount }, 'slow consumer disconnected');
      this.close(Disconnect.SlowConsumer);
      return 0;
    }
    // Offsets (volatile publications have none of their own) dedupe what recovery already sent.
    const tracked = !pub.volatile && !isPattern(sub.channel);
    if (tracked && sub.lastOffset !== 0 && pub.epoch === sub.epoch && pub.offset <= sub.lastOffset) return 0;
    if (tracked) {
      sub.lastOffset = pub.offset;
      sub.epoch = pub.epoch;
    }
    this.transport.sendShared(shared);
    return shared.byteLength(this.transport.codec);
  }

  // ---- input -------------------------------------------------------------------

  /** One message from the client. Never throws. */
  receive(payload: string | Uint8Array): void {
    // Once this side decided to close, what the client still sends is not read.
    if (this.closed || this.closing) return;
    // Limits are in bytes: a decoded text message counts its UTF-8 length, not its characters.
    const size = typeof payload === 'string' ? utf8Length(payload) : payload.byteLength;
    this.host.observer.messageIn(size);
    this.pingSentAt = 0;
    const limits = this.host.limits;
    if (size > limits.maxMessageSize) {
      this.close(Disconnect.MessageTooBig);
      return;
    }
    if (!this.messageBucket.take(1) || !this.byteBucket.take(size)) {
      this.rateLimitedInARow++;
      if (this.rateLimitedInARow >= MAX_RATE_LIMITED) {
        this.log.warn({}, 'rate limit exceeded repeatedly: disconnected');
        this.close(Disconnect.RateLimited);
        return;
      }
      this.replyError('rate', peekId(payload, this.transport.codec.binary), ErrorCode.TooManyRequests, 'rate limit exceeded');
      return;
    }
    this.rateLimitedInARow = 0;

    let raw: unknown;
    try {
      raw = this.transport.codec.decode(payload);
    } catch {
      this.log.info({ size }, 'undecodable message');
      this.close(Disconnect.BadRequest.with(`malformed ${this.transport.codec.binary ? 'MessagePack' : 'JSON'}`));
      return;
    }
    const checked = validateClientMessage(raw);
    if (!checked.ok) {
      this.log.info({ error: checked.error }, 'invalid message');
      this.replyError('invalid', checked.id, ErrorCode.BadRequest, checked.error);
      return;
    }
    const message = checked.message;
    // Keep-alive traffic (either side's pings) is not activity for the idle timeout.
    if (message.op !== 'pong' && message.op !== 'ping') this.lastActivity = this.host.now();
    try {
      this.dispatch(message);
    } catch (err) {
      this.log.error({ err: String(err), op: message.op }, 'request failed');
      if ('id' in message) this.replyError(message.op, message.id, ErrorCode.Internal, 'internal error');
    }
  }

  /**
   * A message a carrier decoded but cannot hand over as text (a long-polling
   * batch entry too deep to re-encode): answered like an invalid message.
   */
  refuseUnreadable(raw: unknown, reason: string): void {
    if (this.closed || this.closing) return;
    const id = typeof raw === 'object' && raw !== null ? (raw as { id?: unknown }).id : undefined;
    const requestId = isRequestId(id) ? id : undefined;
    this.log.info({ reason }, 'invalid message');
    this.replyError('invalid', requestId, ErrorCode.BadRequest, reason);
  }

  private dispatch(message: ClientMessage): void {
    switch (message.op) {
      case 'ping':
        this.send({ op: 'pong' });
        return;
      case 'pong':
        return;
      case 'auth':
        this.enqueue(message.op, message.id, () => this.auth(message.id, message.token));
        return;
      case 'refresh':
        this.enqueue(message.op, message.id, () => this.refresh(message.id, message.token));
        return;
      case 'sub':
        this.enqueue(message.op, message.id, () => this.subscribe(message.id, message.channel, message.since, message.presence === true));
        return;
      case 'unsub':
        this.enqueue(message.op, message.id, () => this.unsubscribe(message.id, message.channel));
        return;
      case 'pub':
        this.enqueue(
          message.op,
          message.id,
          (turn) => this.publish(message.id, message.channel, message.data, message.key, message.volatile === true, turn),
          true,
          // Volatile publications have no offset to keep them in order at the broker: one at a time.
          message.volatile === true ? undefined : message.channel,
        );
        return;
      case 'rpc':
        // The application's handler may take its time: later requests do not wait for it.
        this.enqueue(message.op, message.id, () => this.rpc(message.id, message.method, message.data), false);
        return;
      case 'send':
        // An rpc without a reply: in its turn, like an rpc; the result is dropped, a failure answered without id.
        this.enqueue(message.op, undefined, () => this.rpc(undefined, message.method, message.data), false);
        return;
      case 'presence':
        this.enqueue(message.op, message.id, () => this.presence(message.id, message.channel));
        return;
      case 'history':
        this.enqueue(message.op, message.id, () => this.history(message.id, message.channel, message.since, message.limit));
        return;
    }
  }

  /**
   * Requests run one after the other, in the order they came: a client may
   * send `auth`, `sub` and `pub` without waiting for the replies, and its
   * publication comes after its subscription. An `rpc` starts in its turn
   * but does not hold up what follows (`waitForIt` false). What is still
   * queued when the connection closes never runs.
   *
   * One exception, for throughput: consecutive `pub`s (not volatile) to the
   * same channel (`pubChannel`) form a run whose members start one right after the
   * other, without waiting for the previous one's broker round trip. The
   * broker contract keeps their order: publishes on one channel get offsets
   * in the order of the calls (broker.ts). Each is still answered only once
   * the broker accepted it, and the request after the run (a `history`, a
   * `pub` elsewhere) waits for the whole run. A run holds at most
   * MAX_PUB_RUN publishes; the next one opens a new run after it.
   */
  private enqueue(op: string, id: RequestId | undefined, task: (turn: Promise<void>) => Promise<void>, waitForIt = true, pubChannel?: string): void {
    const start = (turn: Promise<void>): Promise<void> | undefined => {
      // Closing (4004, a shutdown, a failed auth): nothing queued runs, so nothing happens without its reply.
      if (this.closed || this.closing) return;
      if (op !== 'auth' && op !== 'refresh' && !this.identity && !this.host.auth.anonymous) {
        return turn.then(() => this.replyError(op, id, ErrorCode.Unauthorized, 'send auth first'));
      }
      const running = this.run(op, id, task, turn);
      return waitForIt ? running : undefined;
    };
    let tail: Promise<void>;
    if (pubChannel === undefined) {
      this.pubRun = null;
      tail = this.requests.then(() => start(DRAINED));
    } else {
      let run = this.pubRun;
      if (run === null || run.channel !== pubChannel || run.size >= MAX_PUB_RUN) {
        run = { channel: pubChannel, gate: this.requests, size: 0, last: DRAINED };
        this.pubRun = run;
      }
      run.size++;
      // Reactions to one promise run in the order they were registered: the members of a run start in
      // order. Each replies after the one before it replied (its turn): replies stay in request order.
      const turn = run.last;
      const done = run.gate.then(() => start(turn));
      run.last = done;
      if (run.size === 1) {
        // The run's first member starts after everything before it: the queue's new tail, as for any request.
        tail = done;
      } else {
        const before = this.requests;
        tail = done.then(() => before);
      }
    }
    this.requests = tail;
    // A drained queue keeps no promise of its own (an idle connection's memory, docs/benchmarks.md), nor a finished run.
    void tail.then(() => {
      if (this.requests === tail) {
        this.requests = DRAINED;
        this.pubRun = null;
      }
    });
  }

  /** Run an async request: RequestErrors become `error` replies, anything else a 500/503 and a log line. Never rejects. */
  private run(op: string, id: RequestId | undefined, task: (turn: Promise<void>) => Promise<void>, turn: Promise<void>): Promise<void> {
    let running: Promise<void>;
    try {
      running = task(turn);
    } catch (err) {
      running = Promise.reject(err);
    }
    return running
      .catch(async (err: unknown) => {
        await turn;
        if (err instanceof RequestError) {
          this.replyError(op, id, err.code, err.message);
          return;
        }
        this.log.error({ op, err: err instanceof Error ? err.message : String(err) }, 'request failed');
        this.replyError(op, id, ErrorCode.Unavailable, 'temporarily unavailable');
      })
      .catch((err: unknown) => {
        // Even the error reply could not be sent (a broken transport): a rejection here would end the
        // process (unhandled), so this connection ends instead.
        this.log.error({ op, err: err instanceof Error ? err.message : String(err) }, 'reply failed: connection closed');
        this.close(Disconnect.InternalError);
      });
  }

  // ---- operations ----------------------------------------------------------------

  private async verify(token: string | undefined): Promise<Identity> {
    if (!token) throw new RequestError(ErrorCode.Unauthorized, 'token required');
    if (token.length > MAX_TOKEN_LENGTH) throw new RequestError(ErrorCode.Unauthorized, 'token too long');
    try {
      return await this.host.auth.verify(token);
    } catch (err) {
      throw new TokenRefused((err as Error).message || 'invalid token', closeCodeOf(err));
    }
  }

  private async auth(id: RequestId, token: string | undefined): Promise<void> {
    if (this.identity) throw new RequestError(ErrorCode.BadRequest, 'already authenticated');
    if (this.authPending) throw new RequestError(ErrorCode.BadRequest, 'auth in progress');
    this.authPending = true;
    let identity: Identity;
    try {
      identity = await this.verify(token);
    } catch (err) {
      this.authPending = false;
      const message = (err as Error).message;
      this.replyError('auth', id, ErrorCode.Unauthorized, message);
      this.log.info({ reason: message }, 'authentication failed');
      this.close(err instanceof TokenRefused ? err.disconnect : Disconnect.Unauthorized.with(message));
      return;
    }
    this.authPending = false;
    if (this.closed) return;
    this.identity = identity;
    if (this.authTimer) clearTimeout(this.authTimer);
    this.authTimer = null;
    this.scheduleExpiry();
    this.host.logger.debug({ conn: this.id, user: identity.user }, 'authenticated');
    // The rate budget, so a client can pace itself instead of learning it from 429s.
    const { messageRate, byteRate, maxMessageSize } = this.host.limits;
    const limits = { messageRate, byteRate, maxMessageSize, idempotencyTtlMs: IDEMPOTENCY_TTL_MS };
    // What carries the connection (HTTP/2 or 1.1), when the carrier knows: a browser cannot tell for its WebSocket.
    const http = this.transport.httpVersion;
    this.reply(id, { client: this.id, user: identity.user, expiresIn: this.expiresIn(), limits, ...(http ? { http } : {}) });
  }

  private async refresh(id: RequestId, token: string): Promise<void> {
    if (!this.identity) throw new RequestError(ErrorCode.BadRequest, 'refresh needs an authenticated connection: send auth');
    const identity = await this.verify(token);
    if (this.identity && identity.user !== this.identity.user) {
      throw new RequestError(ErrorCode.Forbidden, 'a refreshed token must be for the same user');
    }
    if (this.closed) return;
    this.identity = identity;
    this.scheduleExpiry();
    this.reply(id, { expiresIn: this.expiresIn() });
  }

  private expiresIn(): number | null {
    const at = this.identity?.expiresAt ?? Infinity;
    return Number.isFinite(at) ? Math.max(0, at - this.host.now()) : null;
  }

  /** Ask for a new token `refreshGraceMs` before expiry; close with 4002 at expiry if none came. */
  private scheduleExpiry(): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = null;
    const at = this.identity?.expiresAt ?? Infinity;
    if (!Number.isFinite(at)) return;
    const now = this.host.now();
    const askAt = Math.max(now, at - this.host.auth.refreshGraceMs);
    // Module functions with the session as argument: no closure (and context) per connection.
    this.expiryTimer = setTimeout(askForRefresh, askAt - now, this, at);
    this.expiryTimer.unref();
  }

  /** @internal The token expires soon: ask for a new one, and close at expiry if none came. */
  _askForRefresh(at: number): void {
    this.send({ op: 'refresh', expiresIn: Math.max(0, at - this.host.now()) });
    this.expiryTimer = setTimeout(closeIfExpired, Math.max(0, at - this.host.now()), this);
    this.expiryTimer.unref();
  }

  /** @internal */
  _closeIfExpired(): void {
    if ((this.identity?.expiresAt ?? 0) <= this.host.now()) this.close(Disconnect.TokenExpired);
  }

  private authorize(action: Action, channel: string): NamespaceRules {
    const pattern = isPattern(channel);
    if (pattern ? !isValidPattern(channel) : !isValidChannel(channel)) {
      throw new RequestError(ErrorCode.BadRequest, `invalid channel name ${JSON.stringify(channel)}`);
    }
    if (pattern && action !== 'subscribe') throw new RequestError(ErrorCode.BadRequest, `${action} needs a channel, not a pattern`);
    const ns = this.host.namespaceOf(channel);
    if (!this.host.auth.can(this.identity, action, channel, ns)) {
      throw new RequestError(ErrorCode.Forbidden, `not allowed to ${action} ${channel}`);
    }
    return ns;
  }

  private async subscribe(id: RequestId, channel: string, since: StreamPosition | undefined, presence: boolean): Promise<void> {
    const ns = this.authorize('subscribe', channel);
    if (this.subscriptions.has(channel)) throw new RequestError(ErrorCode.AlreadySubscribed, `already subscribed to ${channel}`);
    if (this.subscriptions.size >= this.host.limits.maxSubscriptions) {
      throw new RequestError(ErrorCode.SubscriptionLimit, `at most ${this.host.limits.maxSubscriptions} subscriptions`);
    }
    const pattern = isPattern(channel);
    if (pattern && since) throw new RequestError(ErrorCode.BadRequest, 'since is not supported for patterns');
    const sub: Subscription = {
      session: this,
      channel,
      presence: presence && ns.presence !== 'off' && !pattern,
      live: pattern,
      buffer: pattern ? null : [],
      lastOffset: 0,
      epoch: '',
      inPresence: false,
    };
    this.subscriptions.set(channel, sub);
    const broker = this.host.broker;
    try {
      // Register first, read history second: a publication in between lands in sub.buffer.
      await this.host.addSubscription(sub);
      if (pattern) {
        this.reply(id, { channel });
        return;
      }
      const history = await broker.history(channel, since ? { since, limit: MAX_RECOVERY_BUFFER } : { limit: 0 });
      if (this.closed) return;
      // An `unsub` came while the history was read: this request still gets its one reply.
      if (this.subscriptions.get(channel) !== sub) throw new RequestError(ErrorCode.NotFound, `unsubscribed from ${channel} before the subscription completed`);
      let recovered = since ? history.recovered : undefined;
      // The replay must reach the position: more missed than one replay carries is not recovered.
      if (since && recovered && (history.publications.at(-1)?.offset ?? since.offset) < history.position.offset) recovered = false;
      this.reply(id, recovered === undefined ? { channel, position: history.position } : { channel, position: history.position, recovered });
      sub.epoch = history.position.epoch;
      sub.lastOffset = since && recovered ? since.offset : history.position.offset;
      if (since && recovered) for (const pub of history.publications) this.deliverDirect(sub, pub);
      const buffered = sub.buffer ?? [];
      sub.buffer = null;
      sub.live = true;
      for (const pub of buffered) this.deliverDirect(sub, pub);
      if (ns.presence !== 'off') await this.joinPresence(sub);
    } catch (err) {
      if (this.subscriptions.get(channel) === sub) this.subscriptions.delete(channel);
      await this.host.removeSubscription(sub).catch(() => {});
      throw err;
    }
  }

  /**
   * Enter the channel's presence after the `ok` went out: the subscription
   * stands whatever happens here (a second reply to the same request, or a
   * subscription the client believes in and the node dropped, would be
   * worse than a missing presence entry). A failure (the broker down) is
   * logged; the entry is made at the next subscribe.
   */
  private async joinPresence(sub: Subscription): Promise<void> {
    sub.inPresence = true;
    try {
      await this.host.presence.add(sub.channel, this.info);
      await this.host.broker.publishPresence(sub.channel, 'join', this.info);
    } catch (err) {
      this.log.warn({ channel: sub.channel, err: err instanceof Error ? err.message : String(err) }, 'presence join failed: subscribed without a presence entry');
    }
  }

  /** Deliver a recovered or buffered publication, skipping what was already sent. */
  private deliverDirect(sub: Subscription, pub: Publication): void {
    if (pub.volatile) {
      this.send(messagePush(pub));
      return;
    }
    if (pub.epoch === sub.epoch && pub.offset <= sub.lastOffset) return;
    sub.lastOffset = pub.offset;
    sub.epoch = pub.epoch;
    this.send(messagePush(pub));
  }

  private async unsubscribe(id: RequestId, channel: string): Promise<void> {
    const sub = this.subscriptions.get(channel);
    if (!sub) throw new RequestError(ErrorCode.NotFound, `not subscribed to ${channel}`);
    this.subscriptions.delete(channel);
    await this.dropSubscription(sub);
    this.reply(id, { channel });
  }

  private async dropSubscription(sub: Subscription): Promise<void> {
    await this.host.removeSubscription(sub);
    if (sub.inPresence) {
      sub.inPresence = false;
      await this.host.presence.remove(sub.channel, this.id);
      await this.host.broker.publishPresence(sub.channel, 'leave', this.info);
    }
  }

  /** `turn`: resolves once the request before this one replied (Session#enqueue: a run of `pub`s replies in order). */
  private async publish(id: RequestId, channel: string, data: unknown, key: string | undefined, volatile: boolean, turn: Promise<void>): Promise<void> {
    const ns = this.authorize('publish', channel);
    if (!ns.clientPublish) throw new RequestError(ErrorCode.Forbidden, `clients may not publish to ${channel}`);
    this.checkData(data, 'pub.data');
    const result = await this.host.broker.publish(channel, data, {
      history: ns.history.size > 0 && !volatile ? ns.history : undefined,
      from: this.info,
      idempotencyKey: key === undefined ? undefined : clientIdempotencyKey(this.identity?.user ?? null, this.id, key),
      idempotencyTtlMs: IDEMPOTENCY_TTL_MS,
      volatile,
    });
    await turn;
    this.reply(id, { offset: result.offset, epoch: result.epoch, ...(result.duplicate ? { duplicate: true } : {}) });
  }

  /** An `rpc`, or with no `id` a `send`: the handler runs the same, and nothing is answered but a failure. */
  private async rpc(id: RequestId | undefined, method: string, data: unknown): Promise<void> {
    const handler = this.host.rpcHandlers.get(method);
    if (!handler) throw new RequestError(ErrorCode.NotFound, `no rpc method ${method}`);
    if (data !== undefined) this.checkData(data, 'rpc.data');
    let result: unknown;
    try {
      result = await handler(data, { client: this.id, user: this.identity?.user ?? '', identity: this.identity });
    } catch (err) {
      // The application's error stays in the log; the client learns only that it failed.
      this.log.error({ method, err: err instanceof Error ? err.message : String(err) }, 'rpc handler failed');
      throw new RequestError(ErrorCode.Internal, `rpc ${method} failed`);
    }
    if (id === undefined) return;
    // The application's result is encoded for this client only, but a cycle or a deep object would still throw in the middle of a send.
    const problem = result === undefined ? null : dataProblem(result, this.host.dataLimits('server'), 'the result');
    if (problem !== null) {
      this.log.error({ method, problem }, 'rpc handler returned data that cannot be sent');
      throw new RequestError(ErrorCode.Internal, `rpc ${method} failed`);
    }
    this.reply(id, { data: result === undefined ? null : result });
  }

  /** Application data from this client (wire/data.ts): refused with 400 and the reason, before anything acts on it. */
  private checkData(data: unknown, what: string): void {
    const problem = dataProblem(data, this.host.dataLimits('client'), what);
    if (problem !== null) {
      this.log.info({ problem }, 'data refused');
      throw new RequestError(ErrorCode.BadRequest, problem);
    }
  }

  private async presence(id: RequestId, channel: string): Promise<void> {
    const ns = this.authorize('presence', channel);
    if (ns.presence === 'off') throw new RequestError(ErrorCode.BadRequest, `presence is off for ${channel}`);
    if (ns.presence === 'counts') {
      this.reply(id, { channel, ...(await this.host.presence.stats(channel)) });
      return;
    }
    this.reply(id, { channel, clients: await this.host.presence.get(channel) });
  }

  private async history(id: RequestId, channel: string, since: StreamPosition | undefined, limit: number | undefined): Promise<void> {
    this.authorize('history', channel);
    const max = 1000;
    const result = await this.host.broker.history(channel, { since, limit: Math.min(limit ?? max, max) });
    this.reply(id, {
      channel,
      publications: result.publications,
      position: result.position,
      ...(since ? { recovered: result.recovered } : {}),
    });
  }

  // ---- end -----------------------------------------------------------------------

  /** Close with a named {@link Disconnect}; `(code, reason)` stays for carriers and applications. */
  close(disconnect: Disconnect): void;
  close(code: number, reason: string): void;
  close(how: Disconnect | number, reason = ''): void {
    if (this.closed || this.closing) return;
    this.closing = true;
    const disconnect = typeof how === 'number' ? new Disconnect(how, reason) : how;
    this.transport.close(disconnect.code, disconnect.reason);
  }

  terminate(): void {
    if (this.closed) return;
    this.transport.terminate();
  }

  /** The transport closed (any reason): drop subscriptions and presence. Called once by the adapter. */
  closedByTransport(code: number): void {
    if (this.closed) return;
    this.closed = true;
    if (this.authTimer) clearTimeout(this.authTimer);
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.authTimer = this.expiryTimer = null;
    this.host.removeSession(this);
    this.host.observer.connectionClosed(this.transport.kind, code);
    this.host.logger.debug(
      {
        conn: this.id,
        transport: this.transport.kind,
        remote: this.remoteAddress,
        user: this.identity?.user,
        code,
        meaning: closeMeaning(code),
        durationMs: Math.max(0, this.host.now() - this.openedAt),
      },
      'disconnected',
    );
    const subs = [...this.subscriptions.values()];
    this.subscriptions.clear();
    for (const sub of subs) {
      this.dropSubscription(sub).catch((err) => this.log.warn({ channel: sub.channel, err: String(err) }, 'cleanup failed'));
    }
  }
}


/** The request id of a message we will not decode fully (rate-limited), if cheaply visible. */
function peekId(payload: string | Uint8Array, binary: boolean): RequestId | undefined {
  if (binary || typeof payload !== 'string') return undefined;
  const m = /"id"\s*:\s*("(?:[^"\\]{1,64})"|\d{1,15})/.exec(payload.slice(0, 256));
  if (!m) return undefined;
  return m[1]!.startsWith('"') ? m[1]!.slice(1, -1) : Number(m[1]);
}

/**
 * The broker key of a client's idempotency key: scoped to its user (or, for
 * an anonymous connection, to the connection), length-prefixed so no user id
 * or key, whatever characters it holds, can make another's; `u`/`c` keep it
 * apart from the server's own keys (`s:`, Hub#publish).
 */
export function clientIdempotencyKey(user: string | null, connection: string, key: string): string {
  return user !== null ? `u${user.length}:${user}:${key}` : `c${connection.length}:${connection}:${key}`;
}

/** The `msg` push for a publication (field order fixed: the encoding is shared). */
export function messagePush(pub: Publication): object {
  const msg: Record<string, unknown> = {
    op: 'msg',
    channel: pub.channel,
    offset: pub.offset,
    epoch: pub.epoch,
    data: pub.data,
    time: pub.time,
  };
  if (pub.from) msg.from = pub.from;
  if (pub.volatile) msg.volatile = true;
  return msg;
}
