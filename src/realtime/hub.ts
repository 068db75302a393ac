/**
 * The hub: every realtime connection of this node, their subscriptions, and
 * the fan-out of broker publications to them. It sees connections only
 * through `RealtimeTransport` and channels only through `Broker`.
 *
 * Fan-out: a publication is encoded once per wire encoding (SharedMessage)
 * and the same bytes go to every local subscriber.
 */
import { isNodeBus, NODE_ID, type Broker, type BrokerHandler, type PresenceStore } from '../brokers/broker.js';
import { isPattern, PatternIndex } from '../wire/channel.js';
import { KeyedRateLimiter } from './rate-limit.js';
import { messagePush, Session } from './session.js';
import type { HubAuth, HubLimits, Identity, NamespaceRules, RpcHandler, SessionHost, Subscriber, Subscription } from './session-host.js';
import { SharedMessage, nullObserver, silentLogger, type HubObserver, type Logger, type RealtimeTransport } from './transport.js';
import { dataProblem, InvalidDataError, type DataLimits } from '../wire/data.js';
import { Disconnect } from '../wire/disconnect.js';
import type { ClientInfo, Publication } from '../wire/messages.js';

// Where these lived before session-host.ts; server/index.ts and the tests import them from here.
export type { Action, HubAuth, HubLimits, Identity, NamespaceRules, RpcHandler } from './session-host.js';

export interface HubOptions {
  broker: Broker;
  presence: PresenceStore;
  auth: HubAuth;
  namespaceOf(channel: string): NamespaceRules;
  limits: HubLimits;
  /** App-level ping interval and the time to answer it, in ms (0 interval: off). */
  ping: { intervalMs: number; timeoutMs: number };
  /** Close connections that send nothing but pongs for this long, in ms (0: off). */
  idleTimeoutMs: number;
  logger?: Logger;
  observer?: HubObserver;
  now?: () => number;
}

/** What one fan-out delivered: messages and bytes, counted once per publication. */
interface FanoutTally {
  delivered: number;
  bytes: number;
}

interface PresenceBatch {
  joins: ClientInfo[];
  leaves: ClientInfo[];
  timer: NodeJS.Timeout | null;
}

let nextHubId = 0;
/**
 * The keep-alive's timer runs every 1/KEEPALIVE_STEPS of the interval (but
 * within KEEPALIVE_STEP_MS), each time visiting its share of the sessions:
 * pinging every connection in one callback wrote to all of them in one
 * turn (1,000 writes cost a game server as much as a tick's own writes, and
 * 20,000 would hold the event loop for a few hundred ms).
 */
const KEEPALIVE_STEPS = 16;
const KEEPALIVE_STEP_MS = { min: 5, max: 250 };
/** Values in data published by the server (1 MiB, the HTTP API's body limit): a bound on the walk, not on what apps send. */
const SERVER_DATA_NODES = 1024 * 1024;

export class Hub implements BrokerHandler, SessionHost {
  readonly options: HubOptions;
  readonly broker: Broker;
  readonly presence: PresenceStore;
  readonly auth: HubAuth;
  readonly limits: HubLimits;
  readonly logger: Logger;
  readonly observer: HubObserver;
  readonly now: () => number;
  readonly sessions = new Map<string, Session>();
  /** channel -> subscriptions on this node */
  private readonly channels = new Map<string, Set<Subscription>>();
  private readonly patterns = new PatternIndex<Subscription>();
  /** patterns with local subscribers -> count (broker subscription held while > 0) */
  private readonly patternCounts = new Map<string, number>();
  readonly rpcHandlers = new Map<string, RpcHandler>();
  private readonly closedListeners = new Set<(client: string) => void>();
  private readonly presenceBatches = new Map<string, PresenceBatch>();
  private pingTimer: NodeJS.Timeout | null = null;
  /** The keep-alive pass in progress (see heartbeatStep); null between passes. */
  private keepalivePass: { sessions: Iterator<Session>; startedAt: number; total: number; visited: number } | null = null;
  /** When the next pass may start: one interval after the previous one started. */
  private nextKeepaliveAt = 0;
  private readonly sharedPing = new SharedMessage({ op: 'ping' });
  private readonly hubId = (nextHubId++).toString(36);
  private nextSessionId = 0;
  /** The node part of connection ids (see connect), once known. */
  private idPrefix: string | null = null;
  /** Stamp per fan-out, so a session matching a channel and a pattern gets a publication once. */
  private fanoutSeq = 0;
  private closing = false;

  constructor(options: HubOptions) {
    this.options = options;
    this.broker = options.broker;
    this.presence = options.presence;
    this.auth = options.auth;
    this.limits = options.limits;
    this.logger = options.logger ?? silentLogger;
    this.observer = options.observer ?? nullObserver;
    this.now = options.now ?? Date.now;
    options.broker.setHandler(this);
    options.presence.setExpiryHandler?.({
      expired: (channel, info) => this.announcePresence(channel, 'leave', info, 'expired (its node is gone)'),
      restored: (channel, info) => this.announcePresence(channel, 'join', info, 'restored after it had expired'),
    });
    if (options.ping.intervalMs > 0) {
      const step = Math.max(KEEPALIVE_STEP_MS.min, Math.min(KEEPALIVE_STEP_MS.max, Math.floor(options.ping.intervalMs / KEEPALIVE_STEPS)));
      // The first pass starts one interval from now: a connection is not pinged as it arrives.
      this.nextKeepaliveAt = this.now() + options.ping.intervalMs;
      this.pingTimer = setInterval(() => this.heartbeatStep(step), step);
      this.pingTimer.unref();
    }
  }

  /** The rules of the namespace `channel` is in. */
  namespaceOf(channel: string): NamespaceRules {
    return this.options.namespaceOf(channel);
  }

  /** Register a handler for `rpc` requests with this method name. */
  rpc(method: string, handler: RpcHandler): void {
    this.rpcHandlers.set(method, handler);
  }

  /**
   * A new connection. `identity` is set when the handshake authenticated it (header, cookie, ticket).
   * Its id: `<node id>.<hub>-<n>-<random>` on a broker that carries node messages (the node id is
   * the broker's, so any node knows where a connection lives: realtime/cluster-ops.ts), else
   * `<hub>-<n>-<random>`.
   */
  connect(transport: RealtimeTransport, identity: Identity | null, remoteAddress: string): Session {
    const id = `${this.idPrefix ?? this.nodePrefix()}${this.hubId}-${(this.nextSessionId++).toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    const session = new Session(this, id, transport, identity, remoteAddress);
    this.sessions.set(id, session);
    this.observer.connectionOpened(transport.kind);
    if (this.closing) session.close(Disconnect.Shutdown);
    return session;
  }

  /** `<node id>.` once the broker knows its node id (a connecting broker does not yet), else ''. */
  private nodePrefix(): string {
    if (!isNodeBus(this.broker)) return (this.idPrefix = '');
    try {
      const node = this.broker.nodeId;
      if (NODE_ID.test(node)) return (this.idPrefix = `${node}.`);
    } catch {
      // Not connected yet: no prefix for now, asked again at the next connection.
    }
    return '';
  }

  /** @internal called by Session when its transport closed. */
  removeSession(session: Subscriber): void {
    this.sessions.delete(session.id);
    for (const listener of this.closedListeners) {
      try {
        listener(session.id);
      } catch (err) {
        this.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'session-closed listener failed');
      }
    }
  }

  /**
   * Call `listener` with the connection id (the `client` of an rpc context)
   * of every connection that closes from now on, once it is
   * gone from the hub. For applications that keep state per connection (a game's player).
   * A listener that throws is logged and does not stop the others. Returns a
   * function that removes the listener.
   */
  onSessionClosed(listener: (client: string) => void): () => void {
    this.closedListeners.add(listener);
    return () => {
      this.closedListeners.delete(listener);
    };
  }

  // ---- subscriptions ---------------------------------------------------------

  /** @internal Track a subscription locally and at the broker. */
  async addSubscription(sub: Subscription): Promise<void> {
    const channel = sub.channel;
    if (isPattern(channel)) {
      this.patterns.add(channel, sub);
      const n = (this.patternCounts.get(channel) ?? 0) + 1;
      this.patternCounts.set(channel, n);
      this.observer.subscriptionsChanged(1);
      if (n === 1) await this.broker.subscribe(channel);
      return;
    }
    let set = this.channels.get(channel);
    if (!set) {
      set = new Set();
      this.channels.set(channel, set);
    }
    set.add(sub);
    this.observer.subscriptionsChanged(1);
    if (set.size === 1) await this.broker.subscribe(channel);
  }

  /** @internal */
  async removeSubscription(sub: Subscription): Promise<void> {
    const channel = sub.channel;
    if (isPattern(channel)) {
      if (!this.patterns.remove(channel, sub)) return;
      this.observer.subscriptionsChanged(-1);
      const n = (this.patternCounts.get(channel) ?? 1) - 1;
      if (n > 0) {
        this.patternCounts.set(channel, n);
        return;
      }
      this.patternCounts.delete(channel);
      await this.broker.unsubscribe(channel);
      return;
    }
    const set = this.channels.get(channel);
    if (!set || !set.delete(sub)) return;
    this.observer.subscriptionsChanged(-1);
    if (set.size > 0) return;
    this.channels.delete(channel);
    await this.broker.unsubscribe(channel);
  }

  // ---- BrokerHandler ---------------------------------------------------------

  /**
   * @internal Fan-out: encode once, deliver to every local subscriber. Never
   * throws: a failure while delivering to one subscriber is that
   * subscriber's alone (see deliverTo), the others still get the publication.
   */
  onPublication(pub: Publication): void {
    const exact = this.channels.get(pub.channel);
    const byPattern = this.patterns.size > 0 ? this.patterns.match(pub.channel) : null;
    if (!exact && (!byPattern || byPattern.length === 0)) return;
    const seq = ++this.fanoutSeq;
    const shared = new SharedMessage(messagePush(pub));
    const tally: FanoutTally = { delivered: 0, bytes: 0 };
    if (exact) this.deliverEach(exact, pub, shared, seq, tally);
    if (byPattern) this.deliverEach(byPattern, pub, shared, seq, tally);
    const delivered = tally.delivered;
    // Counted once per fan-out (two counter increments per subscriber were ~2 % of a node's CPU in the cluster bench).
    if (delivered > 0) this.observer.messagesOut(delivered, tally.bytes);
    this.observer.publicationDelivered(this.now() - pub.time, delivered);
  }

  private deliverEach(subs: Iterable<Subscription>, pub: Publication, shared: SharedMessage, seq: number, tally: FanoutTally): void {
    for (const sub of subs) {
      const bytes = this.deliverTo(sub, pub, shared, seq);
      if (bytes > 0) {
        tally.delivered++;
        tally.bytes += bytes;
      }
    }
  }

  /**
   * One subscriber's delivery. What fails here (an encoding, a transport)
   * must not stop the loop over the others: it is logged and counted, and
   * the subscriber, which has now missed a publication, is closed with
   * InternalError (1011) so that it reconnects and resumes from history.
   */
  private deliverTo(sub: Subscription, pub: Publication, shared: SharedMessage, seq: number): number {
    try {
      return sub.session.deliver(sub, pub, shared, seq);
    } catch (err) {
      this.failedFor(sub.session, err, 'delivery failed', { channel: pub.channel, offset: pub.offset });
      return 0;
    }
  }

  /** The end of a per-connection failure inside a loop over many connections: logged, counted, that connection closed. */
  private failedFor(session: Subscriber, err: unknown, what: string, fields: object = {}): void {
    this.observer.dropped('delivery-failed');
    this.logger.error({ conn: session.id, ...fields, err: err instanceof Error ? err.message : String(err) }, what);
    try {
      session.close(Disconnect.InternalError);
    } catch {
      // Closing failed as well: the transport is broken; terminate() is the last resort and never throws.
      session.terminate();
    }
  }

  /** Run `fn` for each session; one that throws is that session's failure, never the loop's. */
  private forEachSession<S extends Subscriber>(sessions: Iterable<S>, what: string, fn: (session: S) => void): void {
    for (const session of sessions) {
      try {
        fn(session);
      } catch (err) {
        this.failedFor(session, err, what);
      }
    }
  }

  /** A presence change the store found (not a client's own join or leave), told to every node. */
  private announcePresence(channel: string, kind: 'join' | 'leave', info: ClientInfo, why: string): void {
    if (this.closing) return;
    this.logger.info({ channel, client: info.client, user: info.user }, `presence entry ${why}: ${kind} sent`);
    this.broker.publishPresence(channel, kind, info).catch((err: unknown) => {
      this.logger.warn({ channel, client: info.client, err: err instanceof Error ? err.message : String(err) }, `presence ${kind} not sent`);
    });
  }

  /** @internal */
  onJoin(channel: string, info: ClientInfo): void {
    this.batchPresence(channel, info, true);
  }

  /** @internal */
  onLeave(channel: string, info: ClientInfo): void {
    this.batchPresence(channel, info, false);
  }

  /**
   * Join/leave events are collected per channel for `presenceBatchMs` and
   * sent as one message per kind, so N clients joining a room of N cost N
   * messages per batch window, not N².
   */
  private batchPresence(channel: string, info: ClientInfo, join: boolean): void {
    const set = this.channels.get(channel);
    if (!set) return;
    let batch = this.presenceBatches.get(channel);
    if (!batch) {
      batch = { joins: [], leaves: [], timer: null };
      this.presenceBatches.set(channel, batch);
    }
    const list = join ? batch.joins : batch.leaves;
    const other = join ? batch.leaves : batch.joins;
    // A join and a leave of the same connection in one window cancel out.
    const i = other.findIndex((c) => c.client === info.client);
    if (i !== -1) other.splice(i, 1);
    else list.push(info);
    if (!batch.timer) {
      const ms = this.namespaceOf(channel).presenceBatchMs;
      batch.timer = setTimeout(() => this.flushPresence(channel), ms);
      batch.timer.unref();
    }
  }

  private flushPresence(channel: string): void {
    const batch = this.presenceBatches.get(channel);
    this.presenceBatches.delete(channel);
    const set = this.channels.get(channel);
    if (!batch || !set) return;
    const ns = this.namespaceOf(channel);
    if (ns.presence === 'counts') {
      this.presence.stats(channel).then(
        (stats) => this.sendToPresenceSubscribers(channel, new SharedMessage({ op: 'count', channel, ...stats })),
        (err) => this.logger.warn({ channel, err: String(err) }, 'presence stats failed'),
      );
      return;
    }
    if (batch.joins.length > 0) {
      this.sendToPresenceSubscribers(channel, new SharedMessage({ op: 'join', channel, clients: batch.joins }));
    }
    if (batch.leaves.length > 0) {
      this.sendToPresenceSubscribers(channel, new SharedMessage({ op: 'leave', channel, clients: batch.leaves }));
    }
  }

  private sendToPresenceSubscribers(channel: string, shared: SharedMessage): void {
    const set = this.channels.get(channel);
    if (!set) return;
    const sessions: Subscriber[] = [];
    for (const sub of set) if (sub.presence && sub.live) sessions.push(sub.session);
    this.forEachSession(sessions, 'presence delivery failed', (session) => session.sendShared(shared));
  }

  // ---- server-side operations ------------------------------------------------

  /**
   * The bounds of application data (wire/data.ts). From a client: at most one
   * value per byte of its largest message. From the server (HTTP API,
   * library): the API's body limit, or that if larger.
   */
  dataLimits(from: 'client' | 'server'): DataLimits {
    const { maxDataDepth, maxMessageSize } = this.limits;
    return { maxDepth: maxDataDepth, maxNodes: from === 'client' ? maxMessageSize : Math.max(maxMessageSize, SERVER_DATA_NODES) };
  }

  /**
   * Publish from the server (HTTP API, application code). Data that cannot
   * travel to every subscriber is refused with an InvalidDataError before
   * anything is stored. `volatile`: delivered to those subscribed now, never
   * kept in history, and the first thing a slow subscriber loses
   * (`limits.slowConsumer: 'drop-volatile'`); for state that the next
   * publication replaces (a game tick).
   */
  publish(channel: string, data: unknown, options: { key?: string; volatile?: boolean } = {}) {
    const problem = dataProblem(data, this.dataLimits('server'));
    if (problem !== null) return Promise.reject(new InvalidDataError(problem));
    const ns = this.namespaceOf(channel);
    const volatile = options.volatile === true;
    return this.broker.publish(channel, data, {
      history: ns.history.size > 0 && !volatile ? ns.history : undefined,
      volatile,
      // `s:`: the server's own keys (HTTP API, library) never meet a client's (see clientIdempotencyKey).
      idempotencyKey: options.key === undefined ? undefined : `s:${options.key}`,
    });
  }

  /** Close every connection of a user (Kicked, 4503, by default). Returns how many. */
  disconnectUser(user: string, code: number = Disconnect.Kicked.code, reason: string = Disconnect.Kicked.reason): number {
    const matching = [...this.sessions.values()].filter((session) => session.identity?.user === user);
    const disconnect = new Disconnect(code, reason);
    this.forEachSession(matching, 'disconnect failed', (session) => session.close(disconnect));
    return matching.length;
  }

  /** Close one connection of this node (Kicked, 4503, by default). False when there is none with this id. */
  disconnectConnection(id: string, code: number = Disconnect.Kicked.code, reason: string = Disconnect.Kicked.reason): boolean {
    const session = this.sessions.get(id);
    if (!session) return false;
    this.forEachSession([session], 'disconnect failed', (s) => s.close(new Disconnect(code, reason)));
    return true;
  }

  /** Channels with local subscribers and their counts. */
  channelStats(): { channel: string; subscribers: number }[] {
    const out: { channel: string; subscribers: number }[] = [];
    for (const [channel, set] of this.channels) out.push({ channel, subscribers: set.size });
    for (const [pattern, n] of this.patternCounts) out.push({ channel: pattern, subscribers: n });
    return out;
  }

  get subscriptionCount(): number {
    let n = 0;
    for (const set of this.channels.values()) n += set.size;
    for (const c of this.patternCounts.values()) n += c;
    return n;
  }

  // ---- keep-alive --------------------------------------------------------------

  /**
   * One step of the keep-alive. Every `ping.intervalMs` a pass goes over the
   * sessions in their order, spread over the interval: by each step it has
   * visited the share of them that the time elapsed calls for, so a session
   * is visited about once per interval, at about the same point of each pass.
   * A pass visits as many sessions as there were when it started, in the
   * order they arrived (those that close meanwhile make room for some that
   * arrived since). So a session that arrives during a pass may wait for the
   * next one: its first ping comes within two intervals, not one; pinging
   * the newest in the pass's last step instead would bring back the burst
   * after a crowd reconnects.
   */
  private heartbeatStep(stepMs: number): void {
    const now = this.now();
    const intervalMs = this.options.ping.intervalMs;
    let pass = this.keepalivePass;
    if (pass === null) {
      if (now < this.nextKeepaliveAt || this.sessions.size === 0) return;
      pass = this.keepalivePass = { sessions: this.sessions.values(), startedAt: now, total: this.sessions.size, visited: 0 };
      // A late timer does not shorten the next interval; one that was very late does not make passes catch up.
      this.nextKeepaliveAt = Math.max(this.nextKeepaliveAt + intervalMs, now);
    }
    // Done one step before the interval is: the last share goes out before the next pass is due.
    const due = Math.min(pass.total, Math.ceil((pass.total * (now - pass.startedAt + stepMs)) / intervalMs));
    const batch: Session[] = [];
    let ended = false;
    while (pass.visited < due) {
      const next = pass.sessions.next();
      if (next.done === true) {
        ended = true;
        break;
      }
      pass.visited++;
      batch.push(next.value);
    }
    if (ended || pass.visited === pass.total) this.keepalivePass = null;
    this.forEachSession(batch, 'heartbeat failed', (session) => this.keepAlive(session, now));
  }

  /** The keep-alive of one session: no answer to the last ping in time, idle too long, or pinged now. */
  private keepAlive(session: Session, now: number): void {
    const { timeoutMs } = this.options.ping;
    const idle = this.options.idleTimeoutMs;
    if (session.pingSentAt > 0 && now - session.pingSentAt > timeoutMs) {
      this.logger.info({ conn: session.id }, 'no pong: connection dropped');
      session.terminate();
      return;
    }
    if (idle > 0 && now - session.lastActivity > idle) {
      session.close(Disconnect.IdleTimeout);
      return;
    }
    if (session.pingSentAt === 0) {
      session.pingSentAt = now;
      session.sendShared(this.sharedPing);
    }
  }

  /**
   * Graceful shutdown: tell every client `closing` with a jittered
   * reconnect-after hint (so they do not all come back in the same second),
   * then close with Shutdown (1001). New connections are refused with it too.
   */
  shutdown(reconnectJitterMs: number): void {
    this.closing = true;
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
    this.forEachSession([...this.sessions.values()], 'shutdown notice failed', (session) => {
      const reconnectAfter = Math.floor(Math.random() * reconnectJitterMs);
      session.send({ op: 'closing', reason: 'server shutting down', reconnectAfter });
      session.close(Disconnect.Shutdown);
    });
    for (const batch of this.presenceBatches.values()) if (batch.timer) clearTimeout(batch.timer);
    this.presenceBatches.clear();
  }

  /** Stop timers (after shutdown and once connections are gone). */
  dispose(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
    for (const batch of this.presenceBatches.values()) if (batch.timer) clearTimeout(batch.timer);
    this.presenceBatches.clear();
  }
}

export { KeyedRateLimiter, messagePush };
