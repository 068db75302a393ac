/**
 * The broker contract: how the realtime layer reaches channels across
 * processes. Implementations: `MemoryBroker` (one process, default),
 * `RedisBroker` and `NatsBroker` (later).
 *
 * Every method is async and may reject (network, broker down); the realtime
 * layer turns a rejection into an `error` reply (503) for the request that
 * caused it and never crashes on it.
 */
import type { ClientInfo, Publication, StreamPosition } from '../wire/messages.js';

export type { ClientInfo, Publication, StreamPosition };

export interface HistoryOptions {
  /** Keep at most this many messages per channel (0: no history). */
  size: number;
  /** Drop messages older than this, in ms (0: no age limit). */
  ttlMs: number;
}

export interface PublishOptions {
  /** History settings of the channel's namespace; without it nothing is kept. */
  history?: HistoryOptions;
  /** Publisher, carried in the publication. */
  from?: ClientInfo;
  /**
   * Idempotency key: a second publish with the same key on the same channel
   * within `idempotencyTtlMs` publishes nothing and resolves with the first
   * result and `duplicate: true`.
   */
  idempotencyKey?: string;
  /** How long a key is remembered, in ms. Default 5 minutes. */
  idempotencyTtlMs?: number;
  /** Carried in the publication (`volatile: true`); such publications are not kept in history. */
  volatile?: boolean;
}

export interface PublishResult extends StreamPosition {
  /** True when the idempotency key had been seen: nothing new was published. */
  duplicate: boolean;
}

export interface HistoryFilter {
  /** Only messages after this position. With a different epoch, nothing is returned and `recovered` is false. */
  since?: StreamPosition;
  /** At most this many, oldest first. Without `since`, the newest `limit`. */
  limit?: number;
}

export interface HistoryResult {
  publications: Publication[];
  /** The channel's current position (offset of its newest message, 0 if none). */
  position: StreamPosition;
  /**
   * With `since`: true when every message after `since` was still there (same
   * epoch, nothing evicted in between), so the caller has no gap.
   */
  recovered: boolean;
}

/** What a broker delivers to the node that subscribed. */
export interface BrokerHandler {
  /** A publication on a channel this node subscribed to, in offset order per channel. */
  onPublication(pub: Publication): void;
  /** Presence changes on a channel this node subscribed to. */
  onJoin(channel: string, info: ClientInfo): void;
  onLeave(channel: string, info: ClientInfo): void;
}

/**
 * Ordering: per channel, `onPublication` sees offsets strictly increasing,
 * in publish order. Offsets start at 1 for a new history and increase by
 * exactly one per publication while the epoch stays the same. Publications
 * (not volatile) on one channel get offsets in the order of the `publish`
 * calls, also when a caller starts the next before the previous one resolved
 * (the realtime layer pipelines a connection's consecutive publishes to a
 * channel). Volatile ones have no offset and no such promise.
 * Across channels there is no order: two channels may live on different
 * servers (Redis Cluster shards), whose copies reach a node by different
 * connections. The same holds for presence events (ordered per channel).
 * Delivery: at most once per node subscription; gaps (a broker restart, a
 * lost connection) are found by the offsets and refilled from `history`.
 */
export interface Broker {
  /** Set once by the realtime layer before `subscribe` is called. */
  setHandler(handler: BrokerHandler): void;
  /** Assign the next offset, store in history (per options) and deliver to every subscribed node. */
  publish(channel: string, data: unknown, options?: PublishOptions): Promise<PublishResult>;
  /**
   * Start delivering this channel's publications and presence events to this
   * node. `channel` may be a pattern (`+` one segment, `#` the rest, MQTT
   * style; see wire/channel.ts): then every matching channel is
   * delivered. Idempotent.
   */
  subscribe(channel: string): Promise<void>;
  /** Stop delivering them. Idempotent. */
  unsubscribe(channel: string): Promise<void>;
  /** Deliver a join or leave to every node subscribed to the channel (presence state lives in a PresenceStore). */
  publishPresence(channel: string, kind: 'join' | 'leave', info: ClientInfo): Promise<void>;
  history(channel: string, filter?: HistoryFilter): Promise<HistoryResult>;
  /** Forget a channel's history (its next publication starts a new epoch). */
  removeHistory(channel: string): Promise<void>;
  /**
   * A round trip through the broker's fan-out: a message only this node
   * receives, published and received back; resolves with the time it took in
   * ms. Rejects after `timeoutMs` without it (or at once while the broker is
   * down). A broker whose subscription connection went silently dead (no
   * error, nothing delivered) finds out this way: after a probe that timed
   * out it makes its connection and subscriptions again (and refills what
   * its channels missed). A broker of one process may omit it.
   */
  probe?(timeoutMs: number): Promise<number>;
  /** Release connections and timers. */
  close(): Promise<void>;
}

/**
 * What a shared presence store tells the node about entries it did not
 * remove itself: another node's entries that expired (that node died or was
 * cut off longer than the TTL), and this node's own entries that had expired
 * while it was cut off and are written again. The realtime layer turns them
 * into `leave` and `join` events (`Broker#publishPresence`).
 */
export interface PresenceExpiryHandler {
  /** Told to exactly one node of the cluster per expired entry (within the store's TTL plus a heartbeat). */
  expired(channel: string, info: ClientInfo): void;
  /** This node's entry had expired meanwhile (and may have been announced as gone): it is back. */
  restored(channel: string, info: ClientInfo): void;
}

/**
 * What a shared presence store does with an entry it found expired or back:
 * tell `handler` (once the realtime layer set one); a handler that throws
 * goes to `onError`, never into the store's heartbeat.
 */
export function tellExpiry(
  handler: PresenceExpiryHandler | undefined,
  kind: keyof PresenceExpiryHandler,
  channel: string,
  info: ClientInfo,
  onError: (err: unknown) => void,
): void {
  try {
    handler?.[kind](channel, info);
  } catch (err) {
    onError(err);
  }
}

/** Who is in a channel. Entries of a vanished node expire after their TTL. */
export interface PresenceStore {
  add(channel: string, info: ClientInfo): Promise<void>;
  remove(channel: string, clientId: string): Promise<void>;
  /** Everyone in the channel, by client id. */
  get(channel: string): Promise<Record<string, ClientInfo>>;
  /** Counts only (cheap for large rooms). */
  stats(channel: string): Promise<{ clients: number; users: number }>;
  /**
   * Set once by the realtime layer. Stores shared by several nodes find the
   * entries of a node that is gone (in the channels where this node has
   * entries of its own, as their heartbeat passes) and report each to one
   * node; a store of one process has nothing to report and may omit this.
   */
  setExpiryHandler?(handler: PresenceExpiryHandler): void;
  close(): Promise<void>;
}

/**
 * Messages between the nodes of one backend: how a request of a fallback
 * session (SSE, long-polling) that reached another node is relayed to the
 * node holding the session (carriers/session-relay.ts). `MemoryBroker`
 * (its peers), `RedisBroker` (a pub/sub channel per node) and `NatsBroker`
 * (a subject per node) implement it.
 *
 * Ordering: the messages one node sends to another arrive in send order.
 * Delivery: at most once; a node that is not listening (never was, closed,
 * or its process died and the broker noticed its connection go) gets
 * nothing, and `sendToNode` says so when the broker can tell.
 */
export interface NodeBus {
  /** This node's id: 4-32 characters of `[0-9a-z]`, random, fixed for the broker's life. */
  readonly nodeId: string;
  /** Largest message `sendToNode` carries, in UTF-8 bytes (NATS: the server's max_payload less room for headers). */
  readonly maxNodeMessageBytes: number;
  /**
   * Receive the messages other nodes send to this one. Resolves once the
   * broker routes them here (a `sendToNode` made afterwards, from any node,
   * arrives). Call once; a handler that throws is reported, never thrown
   * into the broker.
   */
  listenNodes(handler: (message: string) => void): Promise<void>;
  /**
   * Send `message` to node `to`. Resolves true when the broker took it for
   * a listening node, false when the broker knows that no node `to` listens
   * (memory: no such open node; Redis: PUBLISH reached no subscriber; NATS:
   * no responders). True says nothing of an answer: a node that listens but
   * is stuck (Redis: a stopped process; NATS: no receipt within 3 s) gets it
   * later or never; callers time out on their own. Rejects with RT_ERR_BROKER_UNAVAILABLE while the
   * broker is down, and with a TypeError for a malformed node id or a
   * message over `maxNodeMessageBytes`.
   */
  sendToNode(to: string, message: string): Promise<boolean>;
  /**
   * The ids of the nodes that listen now (`listenNodes`), this one included
   * once it listens, in no particular order: whom a cluster-wide operation
   * (a user's disconnect) must reach. What the broker sees, no registry of
   * our own: memory, its open peers; Redis, the node channels with a
   * subscriber (`PUBSUB CHANNELS <prefix>n:*`, one pass over the server's
   * pub/sub channels; Redis Cluster: `PUBSUB SHARDCHANNELS` on every
   * master); NATS, a roll call on `<prefix>.nodes` that every
   * listening node answers, collected until no answer came for 500 ms (at
   * most 3 s). A node whose process died is absent
   * once the broker saw its connection go. Rejects with
   * RT_ERR_BROKER_UNAVAILABLE while the broker is down.
   */
  nodes(): Promise<string[]>;
}

const UTF8 = new TextEncoder();

/** A node id as {@link NodeBus} makes them. */
export const NODE_ID = /^[0-9a-z]{4,32}$/;

/** Whether `broker` also carries messages between nodes. */
export function isNodeBus(broker: object): broker is NodeBus {
  // `nodeId` is not read: a broker still connecting may not know it yet.
  const b = broker as Partial<NodeBus>;
  return 'nodeId' in b && typeof b.listenNodes === 'function' && typeof b.sendToNode === 'function' && typeof b.nodes === 'function';
}

/** The check every implementation makes before it sends. */
export function checkNodeMessage(bus: NodeBus, to: string, message: string): void {
  if (!NODE_ID.test(to)) throw new TypeError(`not a node id: ${JSON.stringify(to.slice(0, 40))}`);
  // UTF-8 is at most 3 bytes per UTF-16 unit: count only when it could matter.
  if (message.length * 3 <= bus.maxNodeMessageBytes) return;
  const bytes = UTF8.encode(message).length;
  if (bytes > bus.maxNodeMessageBytes) throw new TypeError(`node message of ${bytes} bytes over the limit of ${bus.maxNodeMessageBytes}`);
}
