/**
 * One ioredis connection as the broker needs it: reconnects forever (ioredis
 * does), never queues a command while down, and turns "Redis is not there"
 * into an Error with `code: 'RT_ERR_BROKER_UNAVAILABLE'` (the realtime layer
 * answers 503) instead of waiting or crashing. The first operations wait for
 * the first connection (bounded by `connectTimeoutMs`); later ones fail fast
 * while it is down, and work again once it is back.
 *
 * Three deployments: one Redis (`url`), a master found through Sentinel
 * (`sentinels` and `name`), or a Redis Cluster (`cluster`: an ioredis
 * `Cluster`, which follows MOVED/ASK redirects and failovers by itself).
 */
import { randomBytes } from 'node:crypto';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { brokerError, closedError, invalidChannel, unavailable as unavailableError, type BrokerError } from '../errors.js';

export interface RedisConnectionOptions {
  /** `redis://[[user]:password@]host[:port][/db]` (or `rediss://`). Default: ioredis' (localhost:6379). */
  url?: string;
  /**
   * Redis Cluster: some of its nodes, `redis://[[user]:password@]host:port`
   * (or `rediss://`); the rest is discovered. The first URL's credentials
   * and scheme apply to every node. Takes the place of `url`.
   */
  cluster?: string[];
  /**
   * Sentinel: the sentinels, `redis://[[user]:password@]host:port` or
   * `host:port` (their credentials are the sentinels' own); with `name`, the
   * master they watch. A `url` given as well supplies the master's
   * credentials, db and TLS (its host is not used). Takes the place of `url`'s host.
   */
  sentinels?: string[];
  /** Sentinel: the name of the master set (`sentinel monitor <name> …`). */
  name?: string;
  /** ioredis options, applied over the broker's defaults. */
  redis?: RedisOptions;
  /** How long operations wait for the very first connection, in ms. Default 5000. */
  connectTimeoutMs?: number;
  /**
   * Connection trouble and delivery errors, for logs (never thrown). Default:
   * `console.warn`, once per outage.
   */
  onError?: (err: unknown) => void;
}

export type CodedError = BrokerError;

export { brokerError, closedError, invalidChannel };

export function unavailable(cause?: unknown): CodedError {
  return unavailableError('Redis', cause);
}

const BASE36 = '0123456789abcdefghijklmnopqrstuvwxyz';

/** `length` random base36 characters (epochs, instance and node ids). */
export function randomId(length: number): string {
  const bytes = randomBytes(length);
  let out = '';
  for (let i = 0; i < length; i++) out += BASE36[bytes[i]! % 36];
  return out;
}

/** Replies that mean "this server cannot serve now" (loading, a replica, a cluster or master down): an outage. */
const OUTAGE_REPLY = /^(LOADING|READONLY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|BUSY)\b/;

/** Errors Redis answered (a bad script, a wrong type), and our own: not an outage. */
function isReplyError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'ReplyError') return !OUTAGE_REPLY.test(err.message);
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('RT_ERR_');
}

/** `redis://[[user]:password@]host[:port]` or `host:port` → host, port, credentials, TLS. */
export function parseRedisAddress(text: string): { host: string; port: number; username?: string; password?: string; tls: boolean } {
  const url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `redis://${text}`);
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new TypeError(`expected a redis:// or rediss:// address, got ${JSON.stringify(text)}`);
  const out: { host: string; port: number; username?: string; password?: string; tls: boolean } = {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: url.port === '' ? 6379 : Number(url.port),
    tls: url.protocol === 'rediss:',
  };
  if (url.username !== '') out.username = decodeURIComponent(url.username);
  if (url.password !== '') out.password = decodeURIComponent(url.password);
  return out;
}

/** The ioredis client of a Link: one server (standalone, Sentinel) or a Redis Cluster. */
export type RedisClient = Redis | Cluster;

/** Credentials and TLS of a parsed address, as ioredis options. */
function credentials(a: { username?: string; password?: string; tls: boolean }, as: 'node' | 'sentinel'): RedisOptions {
  const out: RedisOptions = {};
  if (as === 'node') {
    if (a.username !== undefined) out.username = a.username;
    if (a.password !== undefined) out.password = a.password;
    if (a.tls) Object.assign(out, { tls: {}, enableTLSForSentinelMode: true });
  } else {
    if (a.username !== undefined) out.sentinelUsername = a.username;
    if (a.password !== undefined) out.sentinelPassword = a.password;
    if (a.tls) out.sentinelTLS = {};
  }
  return out;
}

type CorkableStream = NodeJS.WritableStream & { cork(): void; uncork(): void; writable: boolean };

/** Cork `stream` for the rest of the tick and keep it in `held`, if it can take writes. */
function corkInto(held: CorkableStream[], stream: CorkableStream | undefined | null): void {
  if (stream === undefined || stream === null || !stream.writable) return;
  stream.cork();
  held.push(stream);
}

function releaseHeldWrites(link: Link): void {
  link._releaseWrites();
}

export class Link {
  /** The client; `Redis` unless `cluster` (then `isCluster`). */
  readonly redis: Redis;
  /** The same client, typed as what it is (a `Cluster` in cluster mode). */
  readonly client: RedisClient;
  readonly isCluster: boolean;
  readonly #connectTimeoutMs: number;
  readonly #onError: (err: unknown) => void;
  readonly #onReady: ((redis: Redis) => Promise<void>) | undefined;
  /** Redis Cluster, a link for commands: connect to every master at once (see #connectMasters). */
  readonly #eager: boolean;
  /** Whether commands may go: connected and the onReady step done. */
  #usable = false;
  #everUsable = false;
  #firstUsable: Promise<void>;
  #resolveFirst!: () => void;
  #reported = false;
  #closed = false;
  /** The socket corked by holdWritesForTick until the end of this tick, if any. */
  #held: CorkableStream[] | null = null;

  /**
   * `onReady` runs after every (re)connection before any operation goes
   * through (the failover check, resubscribing); if it throws, the
   * connection is dropped and retried.
   */
  constructor(
    options: RedisConnectionOptions,
    name: string,
    extra: RedisOptions,
    onReady?: (redis: Redis) => Promise<void>,
    clusterExtra: Partial<ClusterOptions> = {},
  ) {
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.#onError = options.onError ?? ((err) => console.warn(`switchboard redis (${name}):`, err instanceof Error ? err.message : err));
    this.#onReady = onReady;
    // A subscriber cluster sends its commands through per-master subscriber connections of its own.
    this.#eager = options.cluster !== undefined && clusterExtra.shardedSubscribers !== true;
    this.#firstUsable = new Promise((resolve) => (this.#resolveFirst = resolve));
    const defaults: RedisOptions = {
      connectionName: `switchboard-${name}`,
      // Fail fast while down: a queued publish would go out late and out of order.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      retryStrategy: (times) => Math.min(50 * times, 1000),
      commandTimeout: 5000,
      // A master demoted under us (failover) answers READONLY: reconnect to find the new one (Sentinel).
      reconnectOnError: (err) => /^READONLY\b/.test(err.message),
      ...extra,
    };
    const settings: RedisOptions = { ...defaults, ...options.redis };
    this.isCluster = options.cluster !== undefined;
    if (options.cluster !== undefined) {
      const nodes = options.cluster.map(parseRedisAddress);
      if (nodes.length === 0) throw new TypeError('a Redis Cluster needs at least one node');
      const { retryStrategy, reconnectOnError: _unused, ...perNode } = settings;
      this.client = new Cluster(
        nodes.map(({ host, port }) => ({ host, port })),
        {
          redisOptions: { ...perNode, ...credentials(nodes[0]!, 'node') },
          // Never queued while the cluster is down: a command refused to its caller must not run later.
          enableOfflineQueue: false,
          clusterRetryStrategy: (times) => (retryStrategy === undefined || retryStrategy === null ? Math.min(50 * times, 1000) : retryStrategy(times)),
          // A failover or a slot moving: MOVED/ASK/TRYAGAIN/CLUSTERDOWN are retried (up to maxRedirections).
          retryDelayOnFailover: 200,
          retryDelayOnClusterDown: 200,
          retryDelayOnTryAgain: 100,
          maxRedirections: 16,
          ...clusterExtra,
        },
      );
    } else if (options.sentinels !== undefined) {
      const sentinels = options.sentinels.map(parseRedisAddress);
      const master = options.url === undefined ? { tls: false } : parseRedisAddress(options.url);
      const db = options.url === undefined ? 0 : Number(new URL(options.url).pathname.slice(1) || '0');
      this.client = new Redis({
        ...settings,
        sentinels: sentinels.map(({ host, port }) => ({ host, port })),
        name: options.name ?? 'mymaster',
        db,
        ...credentials(master, 'node'),
        ...credentials(sentinels[0] ?? { tls: false }, 'sentinel'),
        // Follow the master the sentinels name after a failover (a demoted one answers READONLY: reconnectOnError).
        sentinelRetryStrategy: (times) => Math.min(100 * times, 1000),
        failoverDetector: true,
        ...options.redis,
      });
    } else {
      this.client = options.url === undefined ? new Redis(settings) : new Redis(options.url, settings);
    }
    // The commands both clients share are typed once, as Redis' (Cluster has the same commander).
    this.redis = this.client as Redis;
    this.client.on('error', (err: unknown) => this.#report(err));
    this.client.on('close', () => {
      this.#usable = false;
    });
    this.client.on('ready', () => void this.#ready());
    // A new master after a failover or a reshard: connected at once (see #connectMasters).
    if (this.client instanceof Cluster) {
      const cluster = this.client;
      cluster.on('refresh', () => {
        if (cluster.status === 'ready') void this.#connectMasters().catch(() => undefined);
      });
    }
  }

  /**
   * Redis Cluster: connect to every master now. ioredis connects to each
   * lazily, and a command sent while its master's connection is still
   * being made is refused and retried on another node, redirected, and so
   * overtakes the commands sent after it (node messages must keep their
   * order). Resolves once each is ready or failed.
   */
  async #connectMasters(): Promise<void> {
    if (!(this.client instanceof Cluster) || !this.#eager) return;
    await Promise.all(
      this.client.nodes('master').map((node) => {
        if (node.status === 'ready') return undefined;
        if (node.status === 'wait') return node.connect().catch(() => undefined);
        return new Promise<void>((resolve) => {
          const done = (): void => {
            node.off('ready', done);
            node.off('end', done);
            resolve();
          };
          node.once('ready', done);
          node.once('end', done);
        });
      }),
    );
  }

  get usable(): boolean {
    return this.#usable;
  }

  async #ready(): Promise<void> {
    try {
      await this.#connectMasters();
      if (this.#onReady !== undefined) await this.#onReady(this.redis);
    } catch (err) {
      this.#report(err);
      if (!this.#closed) this.redis.disconnect(true); // try again from scratch
      return;
    }
    if (this.#closed || this.redis.status !== 'ready') return;
    this.#usable = true;
    this.#everUsable = true;
    this.#reported = false;
    this.#resolveFirst();
  }

  #report(err: unknown): void {
    if (this.#closed || this.#reported) return;
    this.#reported = true; // once per outage: reconnect attempts fail every few ms
    try {
      this.#onError(err);
    } catch {
      // a logger that throws must not take the connection down
    }
  }

  /** Run `fn` when the connection is usable; outage errors become RT_ERR_BROKER_UNAVAILABLE. */
  async run<T>(fn: (redis: Redis) => Promise<T>): Promise<T> {
    if (this.#closed) throw closedError('broker connection');
    if (!this.#usable) {
      if (this.#everUsable) throw unavailable();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#connectTimeoutMs)));
      await Promise.race([this.#firstUsable, timeout]).finally(() => clearTimeout(timer));
      if (this.#closed) throw closedError('broker connection');
      if (!this.#usable) throw unavailable();
    }
    try {
      return await fn(this.redis);
    } catch (err) {
      if (isReplyError(err)) throw err;
      throw unavailable(err);
    }
  }

  /**
   * Hold the connection's writes until the end of this tick (cork, uncorked
   * on process.nextTick), so the commands sent in this tick leave in one
   * write. Redis then reads them in one go and runs them in one pass of its
   * event loop, and what they PUBLISH reaches each subscribed node in one
   * write too: a run of publishes (realtime/session.ts) arrives as one batch
   * that the nodes fan out with one write per subscriber socket. No delay:
   * the writes leave when this tick's work is done. On Redis Cluster every
   * master's socket is held (a tick's publishes go to the masters of their
   * channels' slots: each master gets its share in one write).
   */
  holdWritesForTick(): void {
    if (this.#held !== null) return;
    const held: CorkableStream[] = [];
    if (this.client instanceof Cluster) for (const node of this.client.nodes('master')) corkInto(held, node.stream as CorkableStream | undefined);
    else corkInto(held, this.redis.stream as CorkableStream | undefined);
    if (held.length === 0) return;
    this.#held = held;
    process.nextTick(releaseHeldWrites, this);
  }

  /** @internal holdWritesForTick's end of tick. */
  _releaseWrites(): void {
    const held = this.#held;
    this.#held = null;
    if (held !== null) for (const stream of held) stream.uncork();
  }

  /** Wait (bounded) until usable; rejects with RT_ERR_BROKER_UNAVAILABLE otherwise. */
  ready(): Promise<void> {
    return this.run(async () => undefined);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#usable = false;
    const redis = this.redis;
    if (redis.status === 'ready') {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([redis.quit().catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, 1000)))]);
      clearTimeout(timer);
    }
    redis.disconnect(false);
    this.#resolveFirst();
  }
}
