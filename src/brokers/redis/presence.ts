/**
 * `RedisPresenceStore`: the PresenceStore contract (../broker.ts) on Redis,
 * shared by every node. Per channel (one hash tag, keys.ts): the entries
 * (client id → user and info), their expiry times (a sorted set) and a count
 * of clients per user, changed together by Lua scripts (scripts.ts).
 *
 * Entries expire: each is valid `presenceTtlMs` after its node last
 * refreshed it, and every node refreshes its own entries (a heartbeat every
 * third of the TTL, one script per channel, pipelined). A node that dies
 * stops refreshing: its clients vanish from `get` and `stats` at most
 * `presenceTtlMs` later (expired entries are dropped by every script before
 * it answers; the keys themselves expire when nobody refreshes them). A
 * dropped entry is kept in the channel's list of gone entries until the
 * heartbeat of a node with entries in that channel takes it and reports it
 * (`setExpiryHandler`): the survivors announce a dead node's `leave` once,
 * within the TTL plus one heartbeat. An entry that expired while its node
 * was cut off is added again by the next heartbeat (and reported as
 * restored). Times are the Redis server's clock.
 *
 * A Redis that is down: operations reject with RT_ERR_BROKER_UNAVAILABLE
 * (connection.ts); the heartbeat retries on its next beat.
 */
import type { Redis } from 'ioredis';
import { isValidChannel } from '../../wire/channel.js';
import { tellExpiry, type ClientInfo, type PresenceExpiryHandler, type PresenceStore } from '../broker.js';
import { closedError, invalidChannel, Link, type RedisConnectionOptions } from './connection.js';
import { decodeInfo, encodeInfo } from './frames.js';
import { channelKeys } from './keys.js';
import { PRESENCE_ADD_LUA, PRESENCE_GET_LUA, PRESENCE_REFRESH_LUA, PRESENCE_REMOVE_LUA, PRESENCE_STATS_LUA } from './scripts.js';

export interface RedisPresenceStoreOptions extends RedisConnectionOptions {
  /** Prefix of every key. Default `sb:` (the broker's). */
  keyPrefix?: string;
  /** How long an entry outlives its node's last heartbeat, in ms. Default 10 000 (a dead node's clients leave within 10 s plus a heartbeat). */
  presenceTtlMs?: number;
  /** Heartbeat interval, in ms. Default a third of `presenceTtlMs`. */
  heartbeatMs?: number;
}

interface Scripted {
  sbPresenceAdd(...args: Array<string | Buffer | number>): Promise<number>;
  sbPresenceRemove(...args: string[]): Promise<number>;
  sbPresenceGetBuffer(...args: string[]): Promise<Buffer[]>;
  sbPresenceStats(...args: string[]): Promise<[number, number]>;
  sbPresenceRefresh(...args: Array<string | number>): Promise<[string[], Buffer[]]>;
  sbPresenceRefreshBuffer(...args: Array<string | number>): Promise<[Buffer[], Buffer[]]>;
}

function scripted(redis: Redis): Scripted {
  return redis as unknown as Scripted;
}

/** `<bytes of user>:<user><info>`: the scripts read the user (to count users) without decoding the info. */
function entryValue(info: ClientInfo): Buffer {
  const user = Buffer.from(info.user, 'utf8');
  return Buffer.concat([Buffer.from(`${user.length}:`, 'latin1'), user, encodeInfo(info)]);
}

function entryInfo(value: Buffer): ClientInfo {
  const colon = value.indexOf(0x3a);
  const length = Number(value.toString('latin1', 0, colon));
  return decodeInfo(value.subarray(colon + 1 + length));
}

export class RedisPresenceStore implements PresenceStore {
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #link: Link;
  readonly #onError: (err: unknown) => void;
  /** This node's own entries, refreshed by the heartbeat: channel → client id → info. */
  readonly #own = new Map<string, Map<string, ClientInfo>>();
  readonly #timer: NodeJS.Timeout;
  #expiry: PresenceExpiryHandler | undefined;
  #closed = false;

  constructor(options: RedisPresenceStoreOptions = {}) {
    this.#prefix = options.keyPrefix ?? 'sb:';
    this.#ttlMs = Math.max(100, Math.ceil(options.presenceTtlMs ?? 10_000));
    this.#onError = options.onError ?? ((err) => console.warn('switchboard redis presence:', err instanceof Error ? err.message : err));
    this.#link = new Link(options, 'presence', {});
    const redis = this.#link.redis;
    redis.defineCommand('sbPresenceAdd', { lua: PRESENCE_ADD_LUA, numberOfKeys: 4 });
    redis.defineCommand('sbPresenceRemove', { lua: PRESENCE_REMOVE_LUA, numberOfKeys: 4 });
    redis.defineCommand('sbPresenceGet', { lua: PRESENCE_GET_LUA, numberOfKeys: 4 });
    redis.defineCommand('sbPresenceStats', { lua: PRESENCE_STATS_LUA, numberOfKeys: 4 });
    redis.defineCommand('sbPresenceRefresh', { lua: PRESENCE_REFRESH_LUA, numberOfKeys: 4 });
    this.#timer = setInterval(() => void this.heartbeat(), Math.max(10, options.heartbeatMs ?? Math.floor(this.#ttlMs / 3)));
    this.#timer.unref();
  }

  /** Resolves once connected (bounded by `connectTimeoutMs`), or rejects RT_ERR_BROKER_UNAVAILABLE. */
  ready(): Promise<void> {
    return this.#link.ready();
  }

  /** Whether the connection is up now (for `/readyz`). */
  get available(): boolean {
    return this.#link.usable;
  }

  #keys(channel: string): [string, string, string, string] {
    const k = channelKeys(this.#prefix, channel);
    return [k.presence, k.presenceExpiry, k.presenceUsers, k.presenceGone];
  }

  /** Add or replace (same client id) an entry; this node refreshes it until removed. */
  async add(channel: string, info: ClientInfo): Promise<void> {
    this.#checkOpen();
    if (!isValidChannel(channel)) throw invalidChannel(channel);
    const value = entryValue(info);
    await this.#link.run((redis) => scripted(redis).sbPresenceAdd(...this.#keys(channel), info.client, info.user, value, this.#ttlMs));
    let own = this.#own.get(channel);
    if (own === undefined) this.#own.set(channel, (own = new Map()));
    own.set(info.client, info);
  }

  async remove(channel: string, clientId: string): Promise<void> {
    this.#checkOpen();
    if (!isValidChannel(channel)) return;
    const own = this.#own.get(channel);
    if (own !== undefined && own.delete(clientId) && own.size === 0) this.#own.delete(channel);
    await this.#link.run((redis) => scripted(redis).sbPresenceRemove(...this.#keys(channel), clientId));
  }

  async get(channel: string): Promise<Record<string, ClientInfo>> {
    this.#checkOpen();
    const out: Record<string, ClientInfo> = {};
    if (!isValidChannel(channel)) return out;
    const flat = await this.#link.run((redis) => scripted(redis).sbPresenceGetBuffer(...this.#keys(channel)));
    for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!.toString('utf8')] = entryInfo(flat[i + 1]!);
    return out;
  }

  async stats(channel: string): Promise<{ clients: number; users: number }> {
    this.#checkOpen();
    if (!isValidChannel(channel)) return { clients: 0, users: 0 };
    const [clients, users] = await this.#link.run((redis) => scripted(redis).sbPresenceStats(...this.#keys(channel)));
    return { clients: Number(clients), users: Number(users) };
  }

  setExpiryHandler(handler: PresenceExpiryHandler): void {
    this.#expiry = handler;
  }

  /**
   * Refresh this node's entries now (the timer calls this): entries that
   * expired meanwhile are added again, and the entries of other nodes that
   * expired in these channels are taken from the channel's list of gone
   * entries and reported (each to the one node whose heartbeat took it).
   */
  async heartbeat(): Promise<void> {
    if (this.#closed || this.#own.size === 0 || !this.#link.usable) return;
    try {
      await this.#link.run(async (redis) => {
        // One script per channel, all sent at once (not one pipeline: a Cluster refuses pipelines whose keys live on several nodes).
        const channels = [...this.#own.keys()];
        const results = await Promise.allSettled(
          channels.map((channel) => scripted(redis).sbPresenceRefreshBuffer(...this.#keys(channel), this.#ttlMs, ...this.#own.get(channel)!.keys())),
        );
        let failed: unknown = undefined;
        for (let i = 0; i < results.length; i++) {
          const result = results[i]!;
          if (result.status === 'rejected') {
            failed ??= result.reason; // the others' gone entries are taken: still announced
            continue;
          }
          const channel = channels[i]!;
          const [missing, gone] = result.value;
          const own = this.#own.get(channel);
          /** Own entries this heartbeat took as gone: nobody announced their leave, so they come back silently. */
          const tookOwn = new Set<string>();
          for (const value of gone) {
            const info = entryInfo(value);
            if (own?.has(info.client)) tookOwn.add(info.client);
            else tellExpiry(this.#expiry, 'expired', channel, info, this.#onError);
          }
          for (const idBytes of missing) {
            const client = idBytes.toString('utf8');
            const info = own?.get(client);
            if (info === undefined) continue;
            await scripted(redis).sbPresenceAdd(...this.#keys(channel), client, info.user, entryValue(info), this.#ttlMs);
            if (!tookOwn.has(client)) tellExpiry(this.#expiry, 'restored', channel, info, this.#onError);
          }
        }
        if (failed !== undefined) throw failed;
      });
    } catch (err) {
      if (!this.#closed) this.#onError(err);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#own.clear();
    await this.#link.close();
  }

  #checkOpen(): void {
    if (this.#closed) throw closedError('presence store');
  }
}
