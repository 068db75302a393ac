/**
 * `NatsPresenceStore`: the PresenceStore contract (../broker.ts) on a
 * JetStream KV bucket (a stream laid out as nats.js's KV makes them:
 * `KV_<bucket>`, subjects `$KV.<bucket>.<key>`, one value per key), so the
 * `nats kv` tools can read it. Join and leave events travel over core NATS
 * through the broker's `publishPresence`; this is the state.
 *
 * Key: `<channel tokens>.<user>.<client>.<nonce>` (each escaped as one
 * token, subjects.ts; an anonymous user is `%`; the nonce is fresh for each
 * entry, see below). With the user in the key, `stats` is one stream-info
 * call (the subjects under `<channel>.*.*.*`: clients, and their distinct
 * user tokens), `get` that call plus one read per client (sent together),
 * and `remove` one purge of `<channel>.*.<client>.*`. The value is the
 * client's info in MessagePack.
 *
 * Expiry: the bucket's max age is `presenceTtlMs`. Each store re-writes
 * the entries it added every third of that, so they live while their node
 * does, and the entries of a node that died (or lost NATS for longer)
 * expire on their own within the TTL.
 *
 * Announcing a dead node's clients (`setExpiryHandler`): JetStream drops
 * an expired entry without a word, so before each re-write a store lists
 * the channels it has entries in and compares with its previous listing.
 * An entry that vanished was either removed by its node or expired; to
 * tell them apart, and to have one node announce each expiry, whoever
 * notices a vanished entry first *claims* it: a message with the
 * deduplication id made of the entry's key on the bucket's `_gone_`
 * subject, where JetStream's duplicate window (the TTL) lets only the
 * first claim through. A node removing its entry claims it before the
 * purge, so the others' claims are duplicates; of the nodes noticing an
 * expiry, the one whose claim went through reports it. The nonce in the
 * key makes a client that leaves and joins again (or an own entry written
 * again after it expired) a new entry. Cost: one stream-info call per
 * channel per heartbeat, and one read per entry the store has not seen yet
 * (for the info its `leave` carries).
 */
import { createHash, randomBytes } from 'node:crypto';
import { jetstream, jetstreamManager, JetStreamApiError, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { decode, encode } from '@msgpack/msgpack';
import { isValidChannel } from '../../wire/channel.js';
import { tellExpiry, type ClientInfo, type PresenceExpiryHandler, type PresenceStore } from '../broker.js';
import { asBrokerError, closedError, invalidChannel, Link, type NatsConnectOptions } from './connection.js';
import { channelTokens, decodeToken, encodeToken } from './subjects.js';

const NS_PER_MS = 1_000_000;

export interface NatsPresenceOptions extends NatsConnectOptions {
  /** The bucket's name prefix: the bucket is `<streamName>_presence`. Default `SWITCHBOARD`. */
  streamName?: string;
  /** How long an entry outlives the store that wrote it, in ms. Default 10 000 (a dead node's clients leave within 10 s plus a heartbeat). */
  presenceTtlMs?: number;
  /** How often this store re-writes its entries and looks for expired ones, in ms. Default a third of `presenceTtlMs`. */
  heartbeatMs?: number;
  /** Stream replicas (a NATS cluster). Default 1. */
  replicas?: number;
}

/** An entry as this store wrote it: who, and the nonce that tells this entry from a later one of the same client. */
interface Entry {
  info: ClientInfo;
  nonce: string;
}

/** A nonce is one subject token (base64url has no `.`, `*`, `>` nor whitespace). */
function newNonce(): string {
  return randomBytes(9).toString('base64url');
}

type BucketConfig = Parameters<JetStreamManager['streams']['add']>[0] & { name: string; max_age: number; duplicate_window: number };

/** The bucket's stream is not there: JetStream answers "stream not found", a KV write finds no stream to take it. */
function bucketMissing(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return err.code === 10059;
  return err instanceof Error && (err.name === 'JetStreamNotEnabled' || err.name === 'NoRespondersError');
}

/** Create the bucket's stream; when it exists already, keep it (`update`: with this store's TTL). */
async function ensureBucket(jsm: JetStreamManager, config: BucketConfig, update: boolean): Promise<void> {
  try {
    await jsm.streams.add(config);
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || err.code !== 10058) throw err;
    if (update) await jsm.streams.update(config.name, { max_age: config.max_age, duplicate_window: config.duplicate_window });
  }
}

export class NatsPresenceStore implements PresenceStore {
  readonly #link: Link;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #stream: string;
  readonly #config: BucketConfig;
  readonly #subjectPrefix: string;
  readonly #onError: (err: unknown) => void;
  /** What this store added (channel → client → entry), re-written before it expires. */
  readonly #mine = new Map<string, Map<string, Entry>>();
  /** Per channel of #mine: the entries (by subject) the last listing found, with their value once read. */
  readonly #seen = new Map<string, Map<string, ClientInfo>>();
  readonly #timer: ReturnType<typeof setInterval>;
  #expiry: PresenceExpiryHandler | undefined;
  #closed = false;

  /** Connect and find (or create) the bucket. Rejects with RT_ERR_BROKER_UNAVAILABLE when NATS or JetStream is not there. */
  static async connect(options: NatsPresenceOptions = {}): Promise<NatsPresenceStore> {
    const base = options.streamName ?? 'SWITCHBOARD';
    if (!/^[A-Za-z0-9_-]+$/.test(base)) throw new TypeError(`streamName: letters, digits, - and _ only: ${JSON.stringify(base)}`);
    const bucket = `${base}_presence`;
    const ttlMs = Math.max(1000, options.presenceTtlMs ?? 10_000);
    const timeout = options.requestTimeoutMs ?? 5000;
    const link = await Link.open(options, 'switchboard-presence');
    try {
      const js = jetstream(link.nc, { timeout });
      const jsm = await jetstreamManager(link.nc, { timeout });
      const config: BucketConfig = {
        name: `KV_${bucket}`,
        subjects: [`$KV.${bucket}.>`],
        max_msgs_per_subject: 1,
        max_age: ttlMs * NS_PER_MS,
        duplicate_window: Math.min(ttlMs, 120_000) * NS_PER_MS,
        num_replicas: Math.max(1, options.replicas ?? 1),
        allow_rollup_hdrs: true,
        deny_delete: true,
        allow_direct: true,
        discard: 'new' as never,
      };
      // It may exist (another node made it): keep it, with this TTL.
      await ensureBucket(jsm, config, true);
      return new NatsPresenceStore(link, js, jsm, config, `$KV.${bucket}`, ttlMs, options);
    } catch (err) {
      await link.close();
      throw asBrokerError(err);
    }
  }

  private constructor(link: Link, js: JetStreamClient, jsm: JetStreamManager, config: BucketConfig, subjectPrefix: string, ttlMs: number, options: NatsPresenceOptions) {
    this.#link = link;
    this.#js = js;
    this.#jsm = jsm;
    this.#config = config;
    this.#stream = config.name;
    this.#subjectPrefix = subjectPrefix;
    this.#onError = options.onError ?? ((err) => console.error('NatsPresenceStore:', err));
    this.#timer = setInterval(() => void this.heartbeat(), Math.max(100, options.heartbeatMs ?? Math.floor(ttlMs / 3)));
    this.#timer.unref();
    // After an outage JetStream may have lost the bucket (a server with an empty store) and the entries
    // may have expired meanwhile: find or re-create the bucket, then write them again.
    link.onReconnect(() => void this.#afterReconnect());
  }

  /** Whether the NATS connection is up now. */
  get connected(): boolean {
    return this.#link.up;
  }

  /** Add or replace (same client id) an entry. */
  async add(channel: string, info: ClientInfo): Promise<void> {
    this.#ready(channel);
    try {
      let mine = this.#mine.get(channel);
      const previous = mine?.get(info.client);
      const sameKey = previous !== undefined && previous.info.user === info.user;
      const entry: Entry = { info, nonce: sameKey ? previous.nonce : newNonce() };
      // The user is part of the key: an entry under another user must go first (claimed, as a remove does).
      await this.#retryOnLostBucket(async () => {
        if (previous !== undefined && !sameKey) await this.#claim(this.#key(channel, previous));
        if (!sameKey) await this.#purge(channel, info.client);
        await this.#js.publish(this.#key(channel, entry), encode(info, { ignoreUndefined: true }));
      });
      if (mine === undefined) this.#mine.set(channel, (mine = new Map()));
      mine.set(info.client, entry);
    } catch (err) {
      throw asBrokerError(err);
    }
  }

  async remove(channel: string, clientId: string): Promise<void> {
    this.#checkOpen();
    const mine = this.#mine.get(channel);
    const entry = mine?.get(clientId);
    if (mine?.delete(clientId) && mine.size === 0) this.#mine.delete(channel);
    if (!isValidChannel(channel)) return;
    this.#link.check();
    try {
      // Claimed first: a store that notices the entry gone finds the claim taken and announces nothing.
      if (entry !== undefined) await this.#claim(this.#key(channel, entry));
      await this.#retryOnLostBucket(() => this.#purge(channel, clientId));
    } catch (err) {
      throw asBrokerError(err);
    }
  }

  async get(channel: string): Promise<Record<string, ClientInfo>> {
    this.#ready(channel);
    try {
      const subjects = await this.#retryOnLostBucket(() => this.#subjects(channel));
      const infos = await Promise.all(subjects.map((s) => this.#jsm.streams.getMessage(this.#stream, { last_by_subj: s })));
      const out: Record<string, ClientInfo> = {};
      for (const m of infos) {
        if (m === null) continue; // expired or removed between the two calls
        const info = decode(m.data) as ClientInfo;
        out[info.client] = info;
      }
      return out;
    } catch (err) {
      throw asBrokerError(err);
    }
  }

  async stats(channel: string): Promise<{ clients: number; users: number }> {
    this.#ready(channel);
    try {
      const subjects = await this.#retryOnLostBucket(() => this.#subjects(channel));
      const users = new Set<string>();
      for (const s of subjects) {
        const tokens = s.split('.');
        const user = decodeToken(tokens[tokens.length - 3]!);
        if (user !== '') users.add(user);
      }
      return { clients: subjects.length, users: users.size };
    } catch (err) {
      throw asBrokerError(err);
    }
  }

  setExpiryHandler(handler: PresenceExpiryHandler): void {
    this.#expiry = handler;
  }

  /** Stop refreshing and close the connection (an owned one). The entries expire after the TTL unless removed. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#mine.clear();
    this.#seen.clear();
    await this.#link.close();
  }

  // ---- internals ----------------------------------------------------------

  #key(channel: string, entry: Entry): string {
    return `${this.#subjectPrefix}.${channelTokens(channel)}.${encodeToken(entry.info.user)}.${encodeToken(entry.info.client)}.${entry.nonce}`;
  }

  async #subjects(channel: string): Promise<string[]> {
    const info = await this.#jsm.streams.info(this.#stream, { subjects_filter: `${this.#subjectPrefix}.${channelTokens(channel)}.*.*.*` });
    return Object.keys(info.state.subjects ?? {});
  }

  async #purge(channel: string, client: string): Promise<void> {
    await this.#jsm.streams.purge(this.#stream, { filter: `${this.#subjectPrefix}.${channelTokens(channel)}.*.${encodeToken(client)}.*` });
  }

  async #afterReconnect(): Promise<void> {
    if (this.#closed) return;
    try {
      await ensureBucket(this.#jsm, this.#config, false);
    } catch (err) {
      // JetStream may not answer yet right after the server came back: the next operation or refresh that
      // finds the bucket missing creates it.
      if (!this.#closed) this.#onError(err);
      return;
    }
    await this.heartbeat();
  }

  /** JetStream lost the bucket (a server with an empty store): re-create it and try once more. */
  async #retryOnLostBucket<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (!bucketMissing(err) || !this.#link.up) throw err;
      await ensureBucket(this.#jsm, this.#config, false);
      return await fn();
    }
  }

  /** Claim the announcement of an entry's end (by its key): true for the first claim (JetStream deduplicates the others). */
  async #claim(key: string): Promise<boolean> {
    const id = createHash('sha256').update(key).digest('base64url');
    const ack = await this.#js.publish(`${this.#subjectPrefix}._gone_`, new Uint8Array(0), { msgID: `gone/${id}` });
    return !ack.duplicate;
  }

  /**
   * Compare each channel of #mine with the last listing: entries of other
   * nodes that vanished are claimed, and reported expired when the claim
   * is ours; own entries that vanished (expired while cut off) get a fresh
   * nonce, so the next write makes them a new entry, and are reported
   * restored when another node had claimed them (announced their leave).
   */
  async #sweep(): Promise<void> {
    for (const channel of this.#seen.keys()) if (!this.#mine.has(channel)) this.#seen.delete(channel);
    for (const [channel, mine] of this.#mine) {
      const listed = await this.#subjects(channel);
      const present = new Set(listed);
      const seen = this.#seen.get(channel);
      const own = new Set<string>();
      for (const entry of mine.values()) {
        const key = this.#key(channel, entry);
        if (present.has(key) || seen === undefined) {
          own.add(key);
          continue;
        }
        const announced = !(await this.#claim(key));
        entry.nonce = newNonce();
        own.add(this.#key(channel, entry));
        if (announced) tellExpiry(this.#expiry, 'restored', channel, entry.info, this.#onError);
      }
      const next = new Map<string, ClientInfo>();
      for (const subject of listed) {
        if (own.has(subject)) continue;
        let info = seen?.get(subject);
        if (info === undefined) {
          const m = await this.#jsm.streams.getMessage(this.#stream, { last_by_subj: subject });
          if (m === null) continue; // gone since the listing: the next sweep reads nothing more of it
          info = decode(m.data) as ClientInfo;
        }
        next.set(subject, info);
      }
      this.#seen.set(channel, next);
      for (const [subject, info] of seen ?? []) {
        if (present.has(subject) || own.has(subject)) continue;
        if (await this.#claim(subject)) tellExpiry(this.#expiry, 'expired', channel, info, this.#onError);
      }
    }
  }

  /** Look for expired entries and re-write this store's own (the timer calls this). Never rejects: failures go to `onError`. */
  async heartbeat(): Promise<void> {
    if (this.#closed || !this.#link.up) return;
    if (this.#expiry !== undefined) {
      try {
        await this.#retryOnLostBucket(() => this.#sweep());
      } catch (err) {
        if (!this.#closed) this.#onError(err);
      }
    }
    // Written all at once, not one by one: settled together, so a failure is reported once.
    const writeAll = async (): Promise<void> => {
      const writes: Promise<unknown>[] = [];
      for (const [channel, clients] of this.#mine) {
        for (const entry of clients.values()) {
          writes.push(this.#js.publish(this.#key(channel, entry), encode(entry.info, { ignoreUndefined: true })));
        }
      }
      const failed = (await Promise.allSettled(writes)).find((r) => r.status === 'rejected');
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    };
    try {
      await this.#retryOnLostBucket(writeAll);
    } catch (err) {
      if (!this.#closed) this.#onError(err);
    }
  }

  #ready(channel: string): void {
    this.#checkOpen();
    if (!isValidChannel(channel)) throw invalidChannel(channel);
    this.#link.check();
  }

  #checkOpen(): void {
    if (this.#closed) throw closedError('presence store');
  }
}
