/**
 * Pattern subscriptions on Redis Cluster (see redis-broker.ts, *Redis
 * Cluster*). Sharded pub/sub has no PSUBSCRIBE, so a publication reaches a
 * pattern subscriber through a plain PUBLISH copy of its frame (which the
 * cluster bus sends to every node), received with a plain PSUBSCRIBE. The
 * copy is made only for channels that some node's pattern matches: that is
 * what this registry knows, and every node must know it before it publishes.
 *
 * ## The registry
 *
 * Every node writes the patterns it holds into one hash
 * (`<prefix>patterns`: pattern → expiry, ms since the epoch), refreshes them
 * every {@link REFRESH_MS} and reads everyone's back (merged into what it
 * knows: an entry is forgotten only once its own expiry passed). An entry
 * nobody refreshes expires after {@link TTL_MS} (a node that died; a pattern
 * given up is left to expire, as another node may hold it too). Node clocks
 * only need to agree to within the TTL.
 *
 * ## No window after `subscribe` (issue #10)
 *
 * "Once a `sub` is answered, every publication made afterwards on any node
 * reaches the subscriber." A node taking a new pattern (`add`) therefore
 * resolves only once every live node routes it:
 *
 * 1. it writes the pattern into the hash;
 * 2. it lists the live nodes: every node SSUBSCRIBEs its own control
 *    channel `<prefix>pc:<node id>` before it reads the hash, and the list
 *    is `PUBSUB SHARDCHANNELS <prefix>pc:*` on every master;
 * 3. it sends the pattern to each (SPUBLISH on its control channel); each
 *    adds it to its index and answers on the sender's control channel;
 * 4. it resolves when every node it reached answered, or after
 *    `timeoutMs` (default {@link ANNOUNCE_TIMEOUT_MS}), reporting the silent
 *    ones to `onError`.
 *
 * A node missing from the list in step 2 subscribed its control channel
 * after step 1 had written the hash, and reads the hash before its first
 * publish ({@link ClusterPatterns.ready}; `publish` awaits it), so it knows
 * the pattern too. The rest of the window, stated precisely: a node that
 * is listed but does not answer within the timeout (its process stopped,
 * its event loop blocked that long, its command connection down) may still
 * publish without the copy until it reads the message or the hash (its next
 * refresh, at most {@link REFRESH_MS}); so may a node whose shard subscriber
 * connection was being made again at that moment (SPUBLISH reached nobody:
 * it reads the hash 0.5 s and 3 s after its connections changed).
 */
import type { Cluster, Redis } from 'ioredis';
import { PatternIndex } from '../../wire/channel.js';
import { randomId, type Link } from './connection.js';
import { escapeGlob, nodeIdsIn } from './keys.js';

/** How long a registered pattern lives without a refresh, in ms. */
export const TTL_MS = 60_000;
/** How often a node refreshes its own patterns and reads the others', in ms. */
export const REFRESH_MS = 20_000;
/** How long `add` waits for every live node to confirm a new pattern, in ms. */
export const ANNOUNCE_TIMEOUT_MS = 3000;

/** Delete the fields given that are still expired (another node may have written one again since it was read). */
const DROP_EXPIRED_LUA = `
local dropped = 0
for i = 2, #ARGV do
  local until_ = tonumber(redis.call('HGET', KEYS[1], ARGV[i]))
  if until_ ~= nil and until_ <= tonumber(ARGV[1]) then dropped = dropped + redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return dropped`;

export interface ClusterPatternsOptions {
  /** Commands (the hash, SPUBLISH, PUBSUB). */
  cmd: Link;
  /** The sharded subscriber (this node's control channel). */
  sub: Link;
  prefix: string;
  /** This node's id (the broker's, NodeBus). */
  nodeId: string;
  /** How long `add` waits for confirmations, in ms. Default {@link ANNOUNCE_TIMEOUT_MS}. */
  timeoutMs?: number;
  /** Failed refreshes, malformed control messages, nodes that did not confirm (never thrown). */
  onError: (err: unknown) => void;
}

/** A roll call in flight: the nodes that have not confirmed yet. */
interface RollCall {
  waiting: Set<string>;
  done: () => void;
}

export class ClusterPatterns {
  readonly #key: string;
  readonly #cmd: Link;
  readonly #sub: Link;
  readonly #nodeId: string;
  readonly #controlPrefix: string;
  /** This node's control channel, and the same as the subscriber's events give names. */
  readonly #control: string;
  readonly #controlBytes: Buffer;
  readonly #timeoutMs: number;
  readonly #onError: (err: unknown) => void;
  /** Patterns of every node (this one's included) → expiry (ms since the epoch). */
  readonly #known = new Map<string, number>();
  readonly #index = new PatternIndex<string>();
  /** This node's patterns. */
  readonly #own = new Set<string>();
  readonly #rollCalls = new Map<string, RollCall>();
  readonly #timer: NodeJS.Timeout;
  #subscribed: Promise<unknown> | null = null;
  #loaded = false;
  #loading: Promise<void> | null = null;
  /** Patterns added in this turn of the event loop: announced together. */
  #batch: { patterns: string[]; done: Promise<void> } | null = null;
  #closed = false;

  constructor(options: ClusterPatternsOptions) {
    this.#cmd = options.cmd;
    this.#sub = options.sub;
    this.#key = `${options.prefix}patterns`;
    this.#nodeId = options.nodeId;
    this.#controlPrefix = `${options.prefix}pc:`;
    this.#control = `${this.#controlPrefix}${options.nodeId}`;
    this.#controlBytes = Buffer.from(this.#control);
    this.#timeoutMs = Math.max(1, options.timeoutMs ?? ANNOUNCE_TIMEOUT_MS);
    this.#onError = options.onError;
    this.#timer = setInterval(() => void this.refresh(), REFRESH_MS);
    this.#timer.unref();
  }

  /** Whether a shard message named `name` is for this registry (this node's control channel). */
  isControl(name: Buffer): boolean {
    return name.equals(this.#controlBytes);
  }

  /** Whether the hash was read once since this node listens: until then `matches` may miss patterns. */
  get loaded(): boolean {
    return this.#loaded;
  }

  /**
   * Listen on this node's control channel, then read the hash (once; later
   * calls resolve at once). Every publish awaits it first. Rejects while
   * Redis is unreachable (RT_ERR_BROKER_UNAVAILABLE); the next call tries again.
   */
  ready(): Promise<void> {
    if (this.#loaded) return Promise.resolve();
    // Listening first, then reading: a pattern written after the read reaches this node by a roll call.
    this.#loading ??= this.#listen()
      .then(() => this.#read())
      .then(() => void (this.#loaded = true))
      .finally(() => (this.#loading = null));
    return this.#loading;
  }

  /** Whether a publication on `channel` needs its plain PUBLISH copy: a pattern somewhere matches it. */
  matches(channel: string): boolean {
    return this.#index.size > 0 && this.#index.hasMatch(channel);
  }

  /**
   * This node took `pattern`: resolves once it is in the hash and every
   * live node confirmed it routes it (or the timeout passed: see the top of
   * this file). Patterns added in one turn of the event loop share one roll call.
   */
  add(pattern: string): Promise<void> {
    this.#own.add(pattern);
    this.#learn(pattern, Date.now() + TTL_MS);
    if (this.#batch !== null) {
      this.#batch.patterns.push(pattern);
      return this.#batch.done;
    }
    const patterns = [pattern];
    const done = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      this.#batch = null;
      return this.#announce(patterns);
    });
    this.#batch = { patterns, done };
    return done;
  }

  /** This node gave `pattern` up (its registration expires unless another node refreshes it). */
  remove(pattern: string): void {
    this.#own.delete(pattern);
  }

  /** A message on this node's control channel: a pattern announced by another node, or a confirmation. */
  onMessage(frame: Buffer): void {
    const text = frame.toString();
    const [head = '', ...patterns] = text.split('\n');
    const [kind, token, from] = head.split(' ');
    if (kind === 'a' && token !== undefined && from !== undefined && patterns.length > 0) {
      const until = Date.now() + TTL_MS;
      for (const pattern of patterns) this.#learn(pattern, until);
      // In the index before the answer leaves: the sender resolves on it.
      this.#cmd.run((redis) => redis.spublish(`${this.#controlPrefix}${from}`, `k ${token} ${this.#nodeId}`)).catch((err) => this.#onError(err));
    } else if (kind === 'k' && token !== undefined && from !== undefined) {
      const call = this.#rollCalls.get(token);
      if (call === undefined) return; // late, after the timeout
      call.waiting.delete(from);
      if (call.waiting.size === 0) call.done();
    } else {
      this.#onError(new Error(`redis cluster patterns: a malformed control message dropped (${JSON.stringify(text.slice(0, 60))})`));
    }
  }

  /** Refresh this node's patterns and read every node's (the timer calls this; also after the subscriber connections changed). */
  async refresh(): Promise<void> {
    if (this.#closed || (!this.#cmd.usable && this.#known.size === 0 && this.#own.size === 0)) return;
    try {
      await this.#read();
    } catch (err) {
      this.#onError(err);
    }
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    for (const call of this.#rollCalls.values()) call.done();
    this.#rollCalls.clear();
  }

  /** SSUBSCRIBE this node's control channel (kept: ioredis makes it again after a reconnect). */
  async #listen(): Promise<void> {
    if (this.#subscribed === null) {
      const done = this.#sub.run((redis) => redis.ssubscribe(this.#control));
      this.#subscribed = done;
      done.catch(() => {
        if (this.#subscribed === done) this.#subscribed = null;
      });
    }
    await this.#subscribed;
  }

  /** Write this node's patterns, read everyone's, forget what expired. */
  async #read(): Promise<void> {
    const now = Date.now();
    const own = [...this.#own];
    const all = await this.#cmd.run(async (redis) => {
      if (own.length > 0) await redis.hset(this.#key, Object.fromEntries(own.map((p) => [p, String(now + TTL_MS)])));
      return redis.hgetall(this.#key);
    });
    const expired: string[] = [];
    for (const [pattern, until] of Object.entries(all)) {
      if (Number(until) > now) this.#learn(pattern, Number(until));
      else expired.push(pattern);
    }
    for (const pattern of this.#own) this.#learn(pattern, now + TTL_MS);
    // Merged, not replaced: a pattern announced while the read was under way stays known.
    for (const [pattern, until] of this.#known) {
      if (until <= now && !this.#own.has(pattern)) {
        this.#known.delete(pattern);
        this.#index.remove(pattern, pattern);
      }
    }
    if (expired.length > 0) await this.#cmd.run((redis) => redis.eval(DROP_EXPIRED_LUA, 1, this.#key, String(now), ...expired));
  }

  /** Steps 1-4 of the top of this file for `patterns`. */
  async #announce(patterns: string[]): Promise<void> {
    await this.ready();
    const until = String(Date.now() + TTL_MS);
    const token = randomId(12);
    const message = `a ${token} ${this.#nodeId}\n${patterns.join('\n')}`;
    const call: RollCall = { waiting: new Set(), done: () => {} };
    const answered = new Promise<void>((resolve) => (call.done = resolve));
    this.#rollCalls.set(token, call);
    let timer: NodeJS.Timeout | undefined;
    try {
      const peers = await this.#cmd.run(async (redis) => {
        await redis.hset(this.#key, Object.fromEntries(patterns.map((p) => [p, until])));
        return this.#nodes(redis);
      });
      // Waiting for an answer from each node reached; one whose subscription just went reads the hash itself.
      await Promise.all(
        peers.map(async (peer) => {
          if (peer === this.#nodeId) return;
          call.waiting.add(peer);
          const reached = await this.#cmd.run((redis) => redis.spublish(`${this.#controlPrefix}${peer}`, message));
          if (Number(reached) === 0) call.waiting.delete(peer);
        }),
      );
      if (call.waiting.size === 0 || this.#closed) return;
      const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.#timeoutMs)));
      if ((await Promise.race([answered, timedOut])) === 'timeout' && call.waiting.size > 0) {
        this.#onError(
          new Error(
            `redis cluster patterns: node(s) ${[...call.waiting].join(', ')} did not confirm pattern(s) ${patterns.join(', ')} within ${this.#timeoutMs} ms; ` +
              `until they read it (at most ${REFRESH_MS / 1000} s) their publications on matching channels may miss this node`,
          ),
        );
      }
    } finally {
      clearTimeout(timer);
      this.#rollCalls.delete(token);
    }
  }

  /** The ids of the nodes whose control channel has a subscriber. */
  #nodes(redis: Redis): Promise<string[]> {
    return nodesListening(redis, this.#controlPrefix);
  }

  #learn(pattern: string, until: number): void {
    if (!this.#known.has(pattern)) {
      try {
        this.#index.add(pattern, pattern);
      } catch {
        return; // not a pattern of ours (another app's key prefix, by mistake): ignored
      }
    }
    this.#known.set(pattern, Math.max(until, this.#known.get(pattern) ?? 0));
  }
}

/**
 * Redis Cluster: the node ids `<id>` of the shard channels `<namePrefix><id>`
 * that have a subscriber now (`PUBSUB SHARDCHANNELS` on every master: a
 * shard channel's subscribers are on the master of its slot). Ids that are
 * not node ids are left out.
 */
export async function nodesListening(redis: Redis, namePrefix: string): Promise<string[]> {
  const glob = `${escapeGlob(namePrefix)}*`;
  const masters = (redis as unknown as Cluster).nodes('master');
  const lists = await Promise.all(masters.map((node) => node.call('PUBSUB', 'SHARDCHANNELS', glob) as Promise<string[]>));
  return nodeIdsIn(lists.flat(), namePrefix);
}
