/**
 * One ioredis connection as the broker needs it: reconnects forever (ioredis
 * does), never queues a command while down, and turns "Redis is not there"
 * into an Error with `code: 'RT_ERR_BROKER_UNAVAILABLE'` (the realtime layer
 * answers 503) instead of waiting or crashing. The first operations wait for
 * the first connection (bounded by `connectTimeoutMs`); later ones fail fast
 * while it is down, and work again once it is back.
 */
import { randomBytes } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { brokerError, closedError, invalidChannel, unavailable as unavailableError, type BrokerError } from '../errors.js';

export interface RedisConnectionOptions {
  /** `redis://[[user]:password@]host[:port][/db]` (or `rediss://`). Default: ioredis' (localhost:6379). */
  url?: string;
  /** ioredis options, applied over the broker's defaults (Sentinel: `sentinels` and `name`). */
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

export class Link {
  readonly redis: Redis;
  readonly #connectTimeoutMs: number;
  readonly #onError: (err: unknown) => void;
  readonly #onReady: ((redis: Redis) => Promise<void>) | undefined;
  /** Whether commands may go: connected and the onReady step done. */
  #usable = false;
  #everUsable = false;
  #firstUsable: Promise<void>;
  #resolveFirst!: () => void;
  #reported = false;
  #closed = false;

  /**
   * `onReady` runs after every (re)connection before any operation goes
   * through (the failover check, resubscribing); if it throws, the
   * connection is dropped and retried.
   */
  constructor(options: RedisConnectionOptions, name: string, extra: RedisOptions, onReady?: (redis: Redis) => Promise<void>) {
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.#onError = options.onError ?? ((err) => console.warn(`switchboard redis (${name}):`, err instanceof Error ? err.message : err));
    this.#onReady = onReady;
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
    const settings = { ...defaults, ...options.redis };
    this.redis = options.url === undefined ? new Redis(settings) : new Redis(options.url, settings);
    this.redis.on('error', (err) => this.#report(err));
    this.redis.on('close', () => {
      this.#usable = false;
    });
    this.redis.on('ready', () => void this.#ready());
  }

  get usable(): boolean {
    return this.#usable;
  }

  async #ready(): Promise<void> {
    try {
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
