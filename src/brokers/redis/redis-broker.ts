/**
 * `RedisBroker`: the Broker contract (../broker.ts) on Redis, for several
 * server nodes sharing one Redis (standalone, Sentinel or Redis Cluster;
 * Redis 7). Two clients per node: commands (publish, history) and a
 * subscriber (on Redis Cluster: a connection per master, see *Redis Cluster*).
 * `RedisPresenceStore` (presence.ts) is its PresenceStore. Names of keys and
 * channels: keys.ts; bytes: frames.ts; the Lua scripts: scripts.ts.
 *
 * ## Publish
 *
 * One script per publish, atomic on the keys of the channel (one hash tag):
 * idempotency key check → the stream (created if absent) → next offset →
 * history append with the Redis server's time (trimmed by size, entries at
 * least `ttlMs` old dropped, on write and on read) → PUBLISH of the frame
 * carrying offset and epoch → the key's result remembered (PX its ttl).
 * Volatile publications are delivered with the current position and not
 * stored. The position of a channel (its meta) lives `historyMetaTtlMs`
 * after its last publication (longer when its history does), and forever
 * while it keeps history without an age limit.
 *
 * ## Epochs: an offset is never reused inside an epoch
 *
 * A stream's epoch is random (12 base36 characters), chosen when the
 * stream's meta is created: by the first publish, or by a `history` read of
 * a quiet channel (so a quiet channel has offset 0 and an epoch that stays
 * while its meta lives, and its first publications continue it). Offsets
 * come from the meta only, so any loss of the meta (removeHistory, expiry,
 * FLUSHALL, a restart without persistence) makes the next stream a new
 * random epoch: lost offsets are never handed out again in an old epoch, and
 * resuming clients get `recovered: false`. With persistence (AOF) the meta
 * survives a restart, epochs stay, and clients resume with `recovered: true`.
 *
 * The one loss that keeps a meta is a failover to a replica that missed the
 * last writes: its meta is behind, and would hand out offsets again. So each
 * meta carries the Redis *instance id* (key `<prefix>id`, random, created
 * when absent), and a meta with another instance id counts as lost. After
 * every (re)connection to a master, the node reads its replication ids: a
 * master that has a previous replication id (Redis keeps one from a
 * promotion until its next restart) and a replication id no node recorded
 * yet (`<prefix>replid`) is a replica promoted since we last looked: the
 * instance id is bumped, so every channel gets a new epoch — clients get
 * `recovered: false`, never a reused offset. A restart with AOF, or a
 * replica attaching, changes the replication id without leaving a previous
 * one: epochs stay. (On Redis Cluster the rule is the same, checked per
 * script instead: see *Redis Cluster*.)
 *
 * ## Delivery and routing
 *
 * Interest-based: the subscriber connection SUBSCRIBEs only to the channels
 * this node holds and PSUBSCRIBEs only to its patterns' globs (keys.ts).
 * Every delivery is checked against the node's subscriptions (a glob's `*`
 * also matches `/`: matchesPattern decides), and a publication matched by
 * several subscriptions arrives once (frames carry a nonce; Redis sends the
 * copies for one PUBLISH back to back). Order per channel is Redis' order,
 * which is offset order. A handler that throws goes to `onError`.
 *
 * ## Failure
 *
 * A Redis that is down never crashes the node: publish, history and
 * subscribe reject with `code: 'RT_ERR_BROKER_UNAVAILABLE'` meanwhile (never
 * queued), ioredis reconnects, and after the subscriber reconnects every
 * subscription is made again and the node's continuity refills what it
 * missed.
 *
 * ## Redis Cluster
 *
 * `cluster: [urls]`: an ioredis `Cluster` for commands (it follows MOVED
 * and ASK, and a master failover, by itself) and one with
 * `shardedSubscribers` for delivery (a subscriber connection per master,
 * SSUBSCRIBE routed by slot, made again by ioredis after a slot moved or a
 * connection dropped). All keys of a channel and its pub/sub name share one
 * hash tag (keys.ts), so each script touches one slot, and it fans out with
 * `SPUBLISH` on the channel's shard: a publication costs one master, not
 * the whole cluster. A node SSUBSCRIBEs to the channels its clients hold.
 * Node messages (`<prefix>n:<node id>`) and the probe are shard channels too;
 * the probe so checks the subscriber connection of one master (the one
 * holding its slot), and ioredis' health check PINGs every shard subscriber
 * (`shardedSubscriberHealthCheckInterval`, 10 s) and replaces one that does
 * not answer.
 *
 * - *Epochs*: the instance id key would be in another slot, so scripts get
 *   none; instead each meta carries the replication id of the master that
 *   wrote it, read with `INFO replication` inside the script (a few µs per
 *   call), and a meta from before a promotion (this master has a previous
 *   replication id and the meta another one) is lost: a new epoch, as above,
 *   decided atomically by the script, per channel, with no window after a
 *   failover.
 * - *Patterns*: sharded pub/sub has no PSUBSCRIBE. A pattern subscription is
 *   a plain PSUBSCRIBE (the same globs) on the cluster's plain subscriber,
 *   and the publish script adds a plain `PUBLISH` copy of the frame only
 *   when some node holds a pattern matching the channel (the registry of
 *   cluster-patterns.ts, which the publishing node reads). Trade-off: a
 *   plain PUBLISH travels to every master over the cluster bus, so channels
 *   matched by patterns cost what unsharded pub/sub costs (and nothing more
 *   for the rest); the alternative, a copy of every publication, would
 *   make all of them cost that. A node's first `subscribe` of a pattern
 *   resolves only once every live node confirmed it knows the pattern, and
 *   a node reads the registry before its first publish: no window after
 *   `subscribe` but for a node that does not confirm within
 *   `patternTimeoutMs` (reported; cluster-patterns.ts states the rest).
 *   Pattern deliveries are at most once, as they are everywhere (no
 *   refill for patterns). A node whose
 *   channel is held both by name and by a pattern takes the shard copy and
 *   ignores the plain one.
 * - *Continuity*: ioredis makes the shard subscriptions again after a
 *   reconnect or a slot move; the node cannot see the moment it is done, so
 *   after every change of the subscriber connections (`±node`,
 *   `±subscriber`, and `refresh`: the slots were read again after a MOVED
 *   or a slot migration's SUNSUBSCRIBE) it refills every channel from
 *   history (`resync`) twice, after 0.5 s and 3 s. A publication lost in
 *   between is refilled at the latest when the channel's next one shows the
 *   gap.
 *
 * ## Continuity
 *
 * Redis pub/sub is at most once. Everything the subscriber receives goes
 * through a Continuity (../continuity.ts): per channel subscribed by name it
 * delivers in offset order, drops duplicates and refills gaps from
 * `history` (at most `refillLimit` per gap); after a reconnect it refills
 * every such channel (`resync`). Patterns and volatile publications pass
 * through as received.
 */
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import { isPattern, isValidChannel, isValidPattern, PatternIndex } from '../../wire/channel.js';
import { IDEMPOTENCY_TTL_MS } from '../../wire/messages.js';
import { checkNodeMessage } from '../broker.js';
import type {
  Broker,
  BrokerHandler,
  ClientInfo,
  HistoryFilter,
  HistoryResult,
  NodeBus,
  Publication,
  PublishOptions,
  PublishResult,
} from '../broker.js';
import { Continuity } from '../continuity.js';
import { ClusterPatterns, nodesListening } from './cluster-patterns.js';
import { closedError, invalidChannel, Link, randomId, unavailable as unavailableError, type RedisConnectionOptions } from './connection.js';
import { decodeEntry, decodeFrame, encodePayload, presenceFrame } from './frames.js';
import { channelKeys, channelOf, escapeGlob, nodeIdsIn, patternGlobs, pubsubName } from './keys.js';
import { FAILOVER_LUA, HISTORY_LUA, PUBLISH_LUA } from './scripts.js';

export { RedisPresenceStore, type RedisPresenceStoreOptions } from './presence.js';

/** Redis Cluster: how often the subscriber reads the slot map, in ms (see the constructor). */
const SLOTS_REFRESH_MS = 2000;

/** Who serves each slot, as runs (`first-last=master;`): compared to tell a changed map. */
function slotOwners(cluster: Cluster): string {
  const slots = cluster.slots;
  let map = '';
  let from = 0;
  for (let slot = 1; slot <= slots.length; slot++) {
    const owner = slots[from]?.[0];
    if (slot < slots.length && slots[slot]?.[0] === owner) continue;
    map += `${from}-${slot - 1}=${owner ?? ''};`;
    from = slot;
  }
  return map;
}

export interface RedisBrokerOptions extends RedisConnectionOptions {
  /** Prefix of every key and pub/sub channel (several apps on one Redis). Default `sb:`. */
  keyPrefix?: string;
  /**
   * How long a channel's position (epoch, offset) is kept after its last
   * publication, in ms, once its publications expired (or without history).
   * Default 24 hours.
   */
  historyMetaTtlMs?: number;
  /**
   * Redis Cluster: how long a node's first `subscribe` of a pattern waits for
   * every other node to confirm it routes the pattern, in ms (see
   * cluster-patterns.ts). Default 3000.
   */
  patternTimeoutMs?: number;
  /** At most this many publications read from history to refill one gap. Default 1000. */
  refillLimit?: number;
  /** A gap of `missing` publications was found on a channel and is being refilled (metrics, logs). */
  onGap?: (channel: string, missing: number) => void;
  /**
   * Called after the subscriber connection came back, every subscription was
   * made again and the continuity refilled what it could (metrics, logs).
   */
  onResubscribed?: () => void | Promise<void>;
}

interface Scripted {
  sbPublish(...args: Array<string | Buffer | number>): Promise<[number, string, number]>;
  sbHistoryBuffer(...args: Array<string | number>): Promise<[Buffer, number, number, Buffer[]]>;
  sbFailover(...args: string[]): Promise<number>;
}

function scripted(redis: Redis): Scripted {
  return redis as unknown as Scripted;
}

/** Globs a node PSUBSCRIBEd, shared by its patterns. */
interface GlobSubscription {
  count: number;
  done: Promise<unknown>;
}

export class RedisBroker implements Broker, NodeBus {
  /**
   * Node messages (NodeBus) go over pub/sub, on `<prefix>n:<node id>`; Redis
   * drops a subscriber whose unread output passes its pubsub
   * client-output-buffer-limit (32 MiB by default): a few MiB per message
   * keeps well below it.
   */
  readonly maxNodeMessageBytes = 4 * 1024 * 1024;
  #nodeHandler: ((message: string) => void) | undefined = undefined;
  readonly #inbox: string;
  readonly #prefix: string;
  readonly #metaTtlMs: number;
  readonly #onError: (err: unknown) => void;
  readonly #onResubscribed: (() => void | Promise<void>) | undefined;
  readonly #cmd: Link;
  readonly #sub: Link;
  readonly #idKey: string;
  readonly #replidKey: string;

  #handler: BrokerHandler | undefined = undefined;
  readonly #continuity: Continuity;
  /** Channels subscribed by name → their SUBSCRIBE. */
  readonly #exact = new Map<string, Promise<unknown>>();
  /** Patterns → the PSUBSCRIBEs of their globs. */
  readonly #patterns = new Map<string, Promise<unknown>>();
  readonly #index = new PatternIndex<string>();
  readonly #globs = new Map<string, GlobSubscription>();
  /** Frame nonces: this node's id and a counter. */
  readonly #nodeId = randomId(8);
  #counter = 0;
  /** This node's id (NodeBus; also the prefix of its frame nonces). */
  get nodeId(): string {
    return this.#nodeId;
  }
  #lastNonce = '';
  /** The same for frames through patterns (on Redis Cluster another connection than the shard ones). */
  #lastPatternNonce = '';
  #subscribedOnce = false;
  /** Whether the command connection was ready before (a later ready is a reconnection: see #commandReady). */
  #commandReadyOnce = false;
  /** The probe channel (`<prefix>probe:<node id>`), subscribed at the first probe and kept. */
  readonly #probeName: string;
  /** The same, as the subscriber's message events give names: compared without making a string per message. */
  readonly #probeNameBytes: Buffer;
  #probeSubscribed: Promise<unknown> | null = null;
  /** Probes in flight: token → resolve. */
  readonly #probes = new Map<string, () => void>();
  #closed = false;
  /** Redis Cluster: sharded pub/sub, no instance id key, the pattern registry (see *Redis Cluster*). */
  readonly #cluster: ClusterPatterns | null;
  /** Redis Cluster: the pending resyncs after a change of the subscriber connections. */
  readonly #resyncTimers = new Set<NodeJS.Timeout>();

  constructor(options: RedisBrokerOptions = {}) {
    this.#prefix = options.keyPrefix ?? 'sb:';
    this.#metaTtlMs = Math.max(1000, options.historyMetaTtlMs ?? 24 * 3600_000);
    this.#onResubscribed = options.onResubscribed;
    this.#onError = options.onError ?? ((err) => console.error('switchboard redis broker:', err));
    this.#idKey = `${this.#prefix}id`;
    this.#replidKey = `${this.#prefix}replid`;
    this.#probeName = `${this.#prefix}probe:${this.#nodeId}`;
    this.#probeNameBytes = Buffer.from(this.#probeName);
    this.#inbox = `${this.#prefix}n:${this.#nodeId}`;
    const refillLimit = Math.max(1, options.refillLimit ?? 1000);
    this.#continuity = new Continuity({
      history: (channel, since) => this.history(channel, { since, limit: refillLimit }),
      ...(options.onGap === undefined ? {} : { onGap: options.onGap }),
      onError: (err) => this.#report(err),
    });
    // The handler behind continuity never throws into it (a refill delivers from a promise).
    this.#continuity.setHandler({
      onPublication: (pub) => this.#safely((h) => h.onPublication(pub)),
      onJoin: (channel, info) => this.#safely((h) => h.onJoin(channel, info)),
      onLeave: (channel, info) => this.#safely((h) => h.onLeave(channel, info)),
    });
    const cluster = options.cluster !== undefined;
    this.#cmd = new Link(options, 'cmd', {}, cluster ? undefined : (redis) => this.#commandReady(redis));
    this.#cmd.redis.defineCommand('sbPublish', { lua: PUBLISH_LUA });
    this.#cmd.redis.defineCommand('sbHistory', { lua: HISTORY_LUA });
    this.#cmd.redis.defineCommand('sbFailover', { lua: FAILOVER_LUA, numberOfKeys: 2 });
    if (cluster) {
      // ioredis makes the subscriptions again (per shard); we refill after every change of connections.
      // The slots are read again every SLOTS_REFRESH_MS as well: a master that lost its slots in a
      // failover drops our shard subscriptions with an unsolicited SUNSUBSCRIBE, and the refresh that
      // starts may still be answered with the old map (the new one spreads over the cluster bus); only a
      // later read finds the new master, where ioredis subscribes again. A subscriber sends no command
      // that a MOVED could correct.
      this.#sub = new Link(options, 'sub', {}, async () => this.#resyncSoon(), {
        shardedSubscribers: true,
        slotsRefreshInterval: SLOTS_REFRESH_MS,
      });
      const patterns = new ClusterPatterns({
        cmd: this.#cmd,
        sub: this.#sub,
        prefix: this.#prefix,
        nodeId: this.#nodeId,
        ...(options.patternTimeoutMs === undefined ? {} : { timeoutMs: options.patternTimeoutMs }),
        onError: (err) => this.#report(err),
      });
      this.#cluster = patterns;
      const client = this.#sub.client;
      for (const event of ['+node', '-node', '+subscriber', '-subscriber']) client.on(event, () => this.#resyncSoon());
      // `refresh`: the slots were read (after a MOVED, a slot migration's SUNSUBSCRIBE, a lost subscriber,
      // or the timer): a refill only when the map changed.
      let slotMap = '';
      client.on('refresh', () => {
        const now = slotOwners(client as Cluster);
        if (now === slotMap) return;
        slotMap = now;
        this.#resyncSoon();
      });
      client.on('smessageBuffer', (name: Buffer, frame: Buffer) => {
        if (patterns.isControl(name)) patterns.onMessage(frame);
        else this.#message(name, frame);
      });
      // Every node listens for new patterns and reads the registry once connected (publish waits for it).
      patterns.ready().catch((err) => this.#report(err));
    } else {
      this.#cluster = null;
      // The subscriber: we resubscribe ourselves (then refill), not ioredis.
      this.#sub = new Link(options, 'sub', { autoResubscribe: false } satisfies RedisOptions, (redis) => this.#resubscribe(redis));
      this.#sub.redis.on('messageBuffer', (name: Buffer, frame: Buffer) => this.#message(name, frame));
    }
    this.#sub.redis.on('pmessageBuffer', (_glob: Buffer, name: Buffer, frame: Buffer) => this.#receive(name, frame, true));
  }

  /** Resolves once both connections are up (bounded by `connectTimeoutMs`), or rejects RT_ERR_BROKER_UNAVAILABLE. */
  async ready(): Promise<void> {
    await Promise.all([this.#cmd.ready(), this.#sub.ready()]);
  }

  /** Whether both connections are up now (for `/readyz`). */
  get available(): boolean {
    return this.#cmd.usable && this.#sub.usable;
  }

  setHandler(handler: BrokerHandler): void {
    this.#handler = handler;
  }

  async listenNodes(handler: (message: string) => void): Promise<void> {
    this.#checkOpen();
    this.#nodeHandler = handler;
    await this.#sub.run((redis) => (this.#cluster === null ? redis.subscribe(this.#inbox) : redis.ssubscribe(this.#inbox)));
  }

  /** PUBLISH on the node's channel: false when no subscriber got it (no such node, or Redis saw its connection go). */
  async sendToNode(to: string, message: string): Promise<boolean> {
    this.#checkOpen();
    checkNodeMessage(this, to, message);
    const inbox = `${this.#prefix}n:${to}`;
    const receivers = await this.#cmd.run((redis) => (this.#cluster === null ? redis.publish(inbox, message) : redis.spublish(inbox, message)));
    return Number(receivers) > 0;
  }

  /**
   * The node channels with a subscriber: `PUBSUB CHANNELS <prefix>n:*`
   * (one pass over the server's pub/sub channels, for an operator's action,
   * not for every message); on Redis Cluster `PUBSUB SHARDCHANNELS` on
   * every master. A node whose connection Redis saw go is absent.
   */
  async nodes(): Promise<string[]> {
    this.#checkOpen();
    const inboxes = `${this.#prefix}n:`;
    const pattern = `${escapeGlob(inboxes)}*`;
    // Redis Cluster: the inboxes are sharded channels (SSUBSCRIBE), each on the master of its slot: every master is asked.
    if (this.#cluster !== null) return this.#cmd.run((redis) => nodesListening(redis, inboxes));
    const names = await this.#cmd.run(async (redis) => (await redis.call('PUBSUB', 'CHANNELS', pattern)) as string[]);
    return nodeIdsIn(names, inboxes);
  }

  async publish(channel: string, data: unknown, options: PublishOptions = {}): Promise<PublishResult> {
    this.#checkOpen();
    if (!isValidChannel(channel)) throw invalidChannel(channel);
    const keys = channelKeys(this.#prefix, channel);
    const history = options.history;
    const size = history !== undefined && history.size > 0 ? Math.floor(history.size) : 0;
    const ttl = size > 0 && history!.ttlMs > 0 ? Math.ceil(history!.ttlMs) : 0;
    const key = options.idempotencyKey;
    const keyTtl = Math.max(1, Math.ceil(options.idempotencyTtlMs ?? IDEMPOTENCY_TTL_MS));
    const payload = encodePayload(data, options.from);
    const cluster = this.#cluster;
    // Redis Cluster: the copy for pattern subscribers is decided here, so the registry is read first.
    if (cluster !== null && !cluster.loaded) await cluster.ready();
    // Redis Cluster: no instance id key (another slot); the script checks the replication ids.
    const head = cluster === null ? [4, keys.meta, keys.history, keys.idempotency(key ?? ''), this.#idKey] : [3, keys.meta, keys.history, keys.idempotency(key ?? '')];
    const [offset, epoch, duplicate] = await this.#cmd.run((redis) => {
      // The publishes of this tick (a run of `pub`s) go to Redis in one write: see holdWritesForTick.
      this.#cmd.holdWritesForTick();
      return scripted(redis).sbPublish(
        ...head,
        keys.pubsub,
        payload,
        this.#nonce(),
        options.volatile ? '1' : '0',
        size,
        ttl,
        key === undefined ? '0' : '1',
        keyTtl,
        this.#metaTtlMs,
        randomId(12),
        randomId(12),
        cluster === null ? 'PUBLISH' : 'SPUBLISH',
        cluster?.matches(channel) ? '1' : '0',
      );
    });
    return { offset: Number(offset), epoch: String(epoch), duplicate: duplicate === 1 };
  }

  async subscribe(channel: string): Promise<void> {
    this.#checkOpen();
    if (isPattern(channel)) {
      if (!isValidPattern(channel)) throw invalidChannel(channel);
      let done = this.#patterns.get(channel);
      if (done === undefined) {
        this.#index.add(channel, channel);
        const globs = patternGlobs(this.#prefix, channel);
        const cluster = this.#cluster;
        done = Promise.all(globs.map((glob) => this.#addGlob(glob)));
        // Redis Cluster: publishers make the plain copies this pattern needs once they know of it.
        if (cluster !== null) done = done.then(() => cluster.add(channel));
        this.#patterns.set(channel, done);
        done.catch(() => {
          if (this.#patterns.get(channel) === done) this.#dropPattern(channel);
        });
      }
      await done;
    } else {
      if (!isValidChannel(channel)) throw invalidChannel(channel);
      let done = this.#exact.get(channel);
      if (done === undefined) {
        this.#continuity.track(channel);
        const name = pubsubName(this.#prefix, channel);
        done = this.#sub.run((redis) => (this.#cluster === null ? redis.subscribe(name) : redis.ssubscribe(name)));
        this.#exact.set(channel, done);
        done.catch(() => {
          if (this.#exact.get(channel) !== done) return;
          this.#exact.delete(channel);
          this.#continuity.untrack(channel);
        });
      }
      await done;
    }
  }

  async unsubscribe(channel: string): Promise<void> {
    this.#checkOpen();
    if (isPattern(channel)) {
      if (this.#patterns.has(channel)) await this.#dropPattern(channel);
    } else if (this.#exact.delete(channel)) {
      this.#continuity.untrack(channel);
      // Down: the subscription went with the connection, and is not made again.
      const name = pubsubName(this.#prefix, channel);
      if (this.#sub.usable) await (this.#cluster === null ? this.#sub.redis.unsubscribe(name) : this.#sub.redis.sunsubscribe(name)).catch(() => undefined);
    }
  }

  async publishPresence(channel: string, kind: 'join' | 'leave', info: ClientInfo): Promise<void> {
    this.#checkOpen();
    if (!isValidChannel(channel)) throw invalidChannel(channel);
    const frame = presenceFrame(kind, this.#nonce(), info);
    const name = pubsubName(this.#prefix, channel);
    const cluster = this.#cluster;
    if (cluster !== null && !cluster.loaded) await cluster.ready();
    await this.#cmd.run(async (redis) => {
      if (cluster === null) return redis.publish(name, frame);
      await redis.spublish(name, frame);
      if (cluster.matches(channel)) await redis.publish(name, frame);
    });
  }

  async history(channel: string, filter: HistoryFilter = {}): Promise<HistoryResult> {
    this.#checkOpen();
    if (!isValidChannel(channel)) throw invalidChannel(channel);
    const keys = channelKeys(this.#prefix, channel);
    const since = filter.since;
    const limit = filter.limit === undefined || !(filter.limit < Infinity) ? -1 : Math.max(0, Math.floor(filter.limit));
    // A since offset that is no offset (negative, fractional, NaN) matches nothing.
    const sinceOk = since !== undefined && Number.isSafeInteger(since.offset) && since.offset >= 0 && typeof since.epoch === 'string';
    const head = this.#cluster === null ? [3, keys.meta, keys.history, this.#idKey] : [2, keys.meta, keys.history];
    const [epochBuf, offset, recovered, entries] = await this.#cmd.run((redis) =>
      scripted(redis).sbHistoryBuffer(
        ...head,
        randomId(12),
        randomId(12),
        this.#metaTtlMs,
        since === undefined ? '' : sinceOk ? String(since.offset) : '-1',
        since === undefined ? '' : sinceOk ? since.epoch : '',
        limit,
      ),
    );
    const epoch = epochBuf.toString('latin1');
    const position = { offset: Number(offset), epoch };
    if (since !== undefined && !sinceOk) return { publications: [], position, recovered: false };
    const publications: Publication[] = entries.map((entry) => decodeEntry(channel, epoch, entry));
    return { publications, position, recovered: recovered === 1 };
  }

  async removeHistory(channel: string): Promise<void> {
    this.#checkOpen();
    if (!isValidChannel(channel)) throw invalidChannel(channel);
    const keys = channelKeys(this.#prefix, channel);
    await this.#cmd.run((redis) => redis.del(keys.meta, keys.history));
  }

  async probe(timeoutMs: number): Promise<number> {
    this.#checkOpen();
    if (this.#probeSubscribed === null) {
      const done = this.#sub.run((redis) => (this.#cluster === null ? redis.subscribe(this.#probeName) : redis.ssubscribe(this.#probeName)));
      this.#probeSubscribed = done;
      done.catch(() => {
        if (this.#probeSubscribed === done) this.#probeSubscribed = null;
      });
    }
    await this.#probeSubscribed;
    const token = randomId(12);
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const back = new Promise<void>((resolve) => this.#probes.set(token, resolve));
    try {
      await this.#cmd.run((redis) => (this.#cluster === null ? redis.publish(this.#probeName, token) : redis.spublish(this.#probeName, token)));
      const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      if ((await Promise.race([back, timedOut])) === 'timeout') {
        // Published, never delivered: the subscriber connection is dead without knowing it. Made again.
        if (this.#sub.usable && !this.#closed) this.#sub.redis.disconnect(true);
        throw unavailableError(new Error(`probe: published, not delivered back within ${timeoutMs} ms; reconnecting the subscriber connection`));
      }
      return performance.now() - started;
    } finally {
      clearTimeout(timer);
      this.#probes.delete(token);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#handler = undefined;
    this.#nodeHandler = undefined;
    for (const channel of this.#exact.keys()) this.#continuity.untrack(channel);
    this.#exact.clear();
    this.#patterns.clear();
    this.#index.clear();
    this.#globs.clear();
    this.#cluster?.close();
    for (const timer of this.#resyncTimers) clearTimeout(timer);
    this.#resyncTimers.clear();
    await Promise.all([this.#cmd.close(), this.#sub.close()]);
  }

  // ---- internals --------------------------------------------------------

  #checkOpen(): void {
    if (this.#closed) throw closedError('broker');
  }

  #nonce(): string {
    return `${this.#nodeId}${(this.#counter++).toString(36)}`;
  }

  #addGlob(glob: string): Promise<unknown> {
    const held = this.#globs.get(glob);
    if (held !== undefined) {
      held.count++;
      return held.done;
    }
    const done = this.#sub.run((redis) => redis.psubscribe(glob));
    this.#globs.set(glob, { count: 1, done });
    return done;
  }

  async #dropPattern(pattern: string): Promise<void> {
    this.#patterns.delete(pattern);
    this.#index.remove(pattern, pattern);
    this.#cluster?.remove(pattern);
    const gone: string[] = [];
    for (const glob of patternGlobs(this.#prefix, pattern)) {
      const held = this.#globs.get(glob);
      if (held === undefined) continue;
      if (--held.count === 0) {
        this.#globs.delete(glob);
        gone.push(glob);
      }
    }
    if (gone.length > 0 && this.#sub.usable) await this.#sub.redis.punsubscribe(...gone).catch(() => undefined);
  }

  /** After each (re)connection of the subscriber: make every subscription again, then let continuity refill. */
  async #resubscribe(redis: Redis): Promise<void> {
    const names = [...this.#exact.keys()].map((c) => pubsubName(this.#prefix, c));
    if (this.#probeSubscribed !== null) names.push(this.#probeName);
    const globs = [...this.#globs.keys()];
    if (names.length > 0) await redis.subscribe(...names);
    if (globs.length > 0) await redis.psubscribe(...globs);
    if (this.#nodeHandler !== undefined) await redis.subscribe(this.#inbox);
    const again = this.#subscribedOnce;
    this.#subscribedOnce = true;
    if (again) {
      // After the Link marks the connection usable (the refill reads history through the other one, but
      // may race its reconnect: a failed refill delivers what it holds and the next gap refills again).
      queueMicrotask(() => {
        this.#continuity
          .resync()
          .then(() => this.#onResubscribed?.())
          .catch((err) => this.#report(err));
      });
    }
  }

  /**
   * Redis Cluster: the subscriber connections changed (ioredis makes the
   * subscriptions again by itself, at a moment we do not see): refill every
   * channel from history after 0.5 s and again after 3 s.
   */
  #resyncSoon(): void {
    if (this.#closed) return;
    if (this.#resyncTimers.size > 0) {
      for (const timer of this.#resyncTimers) clearTimeout(timer);
      this.#resyncTimers.clear();
    }
    for (const ms of [500, 3000]) {
      const timer = setTimeout(() => {
        this.#resyncTimers.delete(timer);
        // A pattern announced while this node's control channel was being made again: read from the registry.
        void this.#cluster?.refresh();
        if (this.#closed || this.#exact.size === 0) return;
        this.#continuity
          .resync()
          .then(() => this.#onResubscribed?.())
          .catch((err) => this.#report(err));
      }, ms);
      timer.unref();
      this.#resyncTimers.add(timer);
    }
  }

  /**
   * On each (re)connection of the command connection: the failover rule,
   * then, on a reconnection, a refill. The subscriber's refill after its own
   * reconnect reads history through this connection; when both were cut at
   * once (Sentinel kills the clients of a master it demotes), that read can
   * fail, and a publication made before the subscriber was back would only
   * come back with the next gap. So the refill is made again once this
   * connection is usable (what was delivered already is not repeated).
   */
  async #commandReady(redis: Redis): Promise<void> {
    await this.#checkFailover(redis);
    if (!this.#commandReadyOnce) {
      this.#commandReadyOnce = true;
      return;
    }
    // After the Link marks the connection usable (it does once this returns).
    setImmediate(() => {
      if (this.#closed || this.#exact.size === 0 || !this.#subscribedOnce) return;
      this.#continuity.resync().catch((err) => this.#report(err));
    });
  }

  /** The failover rule (see *Epochs*). */
  async #checkFailover(redis: Redis): Promise<void> {
    const info = await redis.info('replication');
    const field = (name: string): string => new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim() ?? '';
    if (field('role') !== 'master') return; // a replica: writes fail with READONLY, reported as unavailable
    const bumped = await scripted(redis).sbFailover(this.#idKey, this.#replidKey, field('master_replid'), field('master_replid2'), randomId(12));
    if (bumped === 1) this.#onError(new Error('switchboard redis broker: connected to a promoted replica; every channel starts a new epoch'));
  }

  #safely(deliver: (handler: BrokerHandler) => void): void {
    const handler = this.#handler;
    if (handler === undefined) return;
    try {
      deliver(handler);
    } catch (err) {
      this.#report(err);
    }
  }

  #report(err: unknown): void {
    try {
      this.#onError(err);
    } catch {
      // nothing left to tell
    }
  }

  #receiveNodeMessage(bytes: Buffer): void {
    const handler = this.#nodeHandler;
    if (handler === undefined) return;
    try {
      handler(bytes.toString('utf8'));
    } catch (err) {
      this.#report(err);
    }
  }

  /** A message on a channel subscribed by name (SUBSCRIBE, or SSUBSCRIBE on Redis Cluster). */
  #message(name: Buffer, frame: Buffer): void {
    if (name.equals(this.#probeNameBytes)) this.#probes.get(frame.toString())?.();
    else this.#receive(name, frame, false);
  }

  #receive(name: Buffer, bytes: Buffer, viaPattern: boolean): void {
    const pubsub = name.toString();
    if (pubsub === this.#inbox) {
      this.#receiveNodeMessage(bytes);
      return;
    }
    if (this.#handler === undefined) return;
    const channel = channelOf(this.#prefix, pubsub);
    if (channel === undefined) return;
    // Still subscribed (unsubscribe is local first), and matched for real (a glob's * spans segments).
    const exact = this.#exact.has(channel);
    if (!exact && !this.#index.hasMatch(channel)) return;
    // Redis Cluster: a channel held by name gets every frame on its shard; the plain copy for patterns is a second one.
    if (viaPattern && exact && this.#cluster !== null) return;
    try {
      const frame = decodeFrame(channel, bytes);
      if (frame === undefined) return;
      // Standalone: one connection, so one last nonce; Redis Cluster: the plain (pattern) connection has its own.
      if (viaPattern && this.#cluster !== null) {
        if (frame.nonce === this.#lastPatternNonce) return;
        this.#lastPatternNonce = frame.nonce;
      } else {
        if (frame.nonce === this.#lastNonce) return;
        this.#lastNonce = frame.nonce;
      }
      if (frame.kind === 'pub') this.#continuity.onPublication(frame.pub);
      else if (frame.kind === 'join') this.#continuity.onJoin(channel, frame.info);
      else this.#continuity.onLeave(channel, frame.info);
    } catch (err) {
      this.#report(err); // a malformed frame
    }
  }
}
