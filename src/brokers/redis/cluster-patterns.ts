/**
 * Pattern subscriptions on Redis Cluster (see redis-broker.ts, *Redis
 * Cluster*). Sharded pub/sub has no PSUBSCRIBE, so a publication reaches a
 * pattern subscriber through a plain PUBLISH copy of its frame (which the
 * cluster bus sends to every node), received with a plain PSUBSCRIBE. The
 * copy is made only for channels that some node's pattern matches: that is
 * what this registry knows.
 *
 * Every node writes the patterns it holds into one hash
 * (`<prefix>patterns`: pattern → expiry, ms since the epoch), refreshes them
 * every {@link REFRESH_MS} and reads everyone's back; a node taking a new
 * pattern also announces it on the plain pub/sub channel `<prefix>patterns`
 * before its `subscribe` resolves, so the other nodes copy at once, not at
 * their next read. An entry nobody refreshes expires after {@link TTL_MS}
 * (a node that died; a pattern given up is left to expire, as another node
 * may hold it too). Node clocks only need to agree to within the TTL.
 */
import { PatternIndex } from '../../wire/channel.js';
import type { Link } from './connection.js';

/** How long a registered pattern lives without a refresh, in ms. */
export const TTL_MS = 60_000;
/** How often a node refreshes its own patterns and reads the others', in ms. */
export const REFRESH_MS = 20_000;

export class ClusterPatterns {
  readonly #key: string;
  readonly #link: Link;
  readonly #onError: (err: unknown) => void;
  /** Patterns of every node (this one's included) → expiry (ms since the epoch). */
  readonly #known = new Map<string, number>();
  readonly #index = new PatternIndex<string>();
  /** This node's patterns. */
  readonly #own = new Set<string>();
  readonly #timer: NodeJS.Timeout;

  constructor(link: Link, prefix: string, onError: (err: unknown) => void) {
    this.#link = link;
    this.#key = `${prefix}patterns`;
    this.#onError = onError;
    this.#timer = setInterval(() => void this.refresh(), REFRESH_MS);
    this.#timer.unref();
  }

  /** The plain pub/sub channel new patterns are announced on (every node SUBSCRIBEs to it). */
  get channel(): string {
    return this.#key;
  }

  /** Whether a publication on `channel` needs its plain PUBLISH copy: a pattern somewhere matches it. */
  matches(channel: string): boolean {
    return this.#index.size > 0 && this.#index.hasMatch(channel);
  }

  /** This node took `pattern`: registered and announced before this resolves. */
  async add(pattern: string): Promise<void> {
    this.#own.add(pattern);
    this.#learn(pattern, Date.now() + TTL_MS);
    await this.#link.run(async (redis) => {
      await redis.hset(this.#key, pattern, String(Date.now() + TTL_MS));
      await redis.publish(this.#key, pattern);
    });
  }

  /** This node gave `pattern` up (its registration expires unless another node refreshes it). */
  remove(pattern: string): void {
    this.#own.delete(pattern);
  }

  /** An announcement from another node. */
  onAnnounce(pattern: string): void {
    this.#learn(pattern, Date.now() + TTL_MS);
  }

  /** Refresh this node's patterns and read every node's (the timer calls this; also once at start). */
  async refresh(): Promise<void> {
    if (!this.#link.usable && this.#known.size === 0 && this.#own.size === 0) return;
    try {
      const now = Date.now();
      const all = await this.#link.run(async (redis) => {
        if (this.#own.size > 0) await redis.hset(this.#key, Object.fromEntries([...this.#own].map((p) => [p, String(now + TTL_MS)])));
        return redis.hgetall(this.#key);
      });
      const expired: string[] = [];
      this.#known.clear();
      this.#index.clear();
      for (const [pattern, until] of Object.entries(all)) {
        if (Number(until) > now) this.#learn(pattern, Number(until));
        else expired.push(pattern);
      }
      for (const pattern of this.#own) this.#learn(pattern, now + TTL_MS);
      if (expired.length > 0) await this.#link.run((redis) => redis.hdel(this.#key, ...expired));
    } catch (err) {
      this.#onError(err);
    }
  }

  close(): void {
    clearInterval(this.#timer);
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
