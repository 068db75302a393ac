/**
 * `MemoryBroker`: the Broker contract (../broker.ts) inside one process
 * (`MemoryPresenceStore`, beside it in presence.ts, is exported from here
 * too). The default broker: nothing to run, and nothing survives a restart
 * (a restart is a new epoch everywhere) unless its state is saved and
 * restored: see *Snapshots*.
 *
 * Runtime-agnostic: no `node:` imports; randomness from
 * `globalThis.crypto.getRandomValues`, one `setInterval` (unref'd where the
 * runtime has `unref`).
 *
 * ## Streams
 *
 * A channel's *stream* is its epoch, its last offset, the publications it
 * retains and its idempotency keys. A stream is created by the channel's
 * first publication and kept while any of these holds:
 *
 * 1. it retains a publication (history `size` > 0, not yet evicted);
 * 2. it holds an idempotency key that has not expired;
 * 3. this broker is subscribed to the channel by name (not by pattern);
 * 4. its last publication had history enabled and was less than
 *    `historyMetaTtlMs` ago: the position outlives the publications, so a
 *    client that saw the last one still resumes with `recovered: true`
 *    after they expired.
 *
 * Otherwise it is dropped: on the next access (lazily) or by the sweep.
 * So a channel with no history and no subscription leaves no state behind,
 * and the rest is bounded by `maxChannels` (least recently published dropped
 * first), `size` publications and `maxIdempotencyKeys` keys per channel.
 *
 * A publication without history to a channel that has no stream and no
 * subscription by name creates no state: it gets offset 1 in an epoch of
 * its own (a throwaway epoch) that no later publication shares.
 *
 * ## Epochs
 *
 * A channel without a stream (never published, or dropped) is *quiet*: its
 * position is `{ offset: 0, epoch: Q }`, where Q is the epoch its next stream
 * will have. Q is stable while nothing happens, so a client that resumes from
 * `{ 0, Q }` gets `recovered: true`, also after the first publications
 * (they are in epoch Q, from offset 1). Q must change whenever a stream that
 * assigned offsets is dropped, or a later stream would reuse them; keeping Q
 * per channel would be state for every channel ever seen, so Q comes from a
 * fixed table: Q = `<broker id><generation of bucket hash(channel) % 4096>`,
 * and dropping such a stream bumps its bucket's generation. A drop thus
 * also changes the quiet epoch of unrelated channels in the same bucket: a
 * client resuming on one of those gets `recovered: false`, which is safe
 * (it refetches), never wrong. The broker id is 8 random base36 characters
 * per instance, so a restarted process never reuses an epoch.
 *
 * ## Delivery
 *
 * Asynchronous, in order: `publish` assigns the offset and stores the
 * publication synchronously (so concurrent publishes get offsets in call
 * order), then appends it to one delivery queue for the whole broker,
 * drained in a microtask (`queueMicrotask`). Publications and presence
 * events reach the handler in the order of the calls that produced them,
 * across channels too; a handler that publishes from `onPublication` never
 * re-enters itself. In this implementation the handler has seen the
 * publication before the promise returned by `publish` settles its
 * awaiters, but the contract does not promise that. Whether to deliver is
 * decided when the publication is queued: one already queued when
 * `unsubscribe` is called is still delivered. A node gets a publication once,
 * however many of its subscriptions (a name, patterns) match. A handler that
 * throws does not stop the queue; the error goes to `onError` (by default
 * `console.error`): never into the event loop, where one bad delivery would
 * end the process.
 *
 * ## Nodes
 *
 * `peer()` makes another node on the same backend, as a second process is
 * with Redis: the nodes share the streams (so offsets, epochs, history and
 * idempotency keys), and each has its own subscriptions, handler and
 * delivery queue. A publication on any node is queued for every node
 * subscribed to it, once per node. Closing a node unsubscribes it; the
 * backend goes with the last node. One instance has one handler: two
 * realtime servers need two nodes, not one shared instance.
 *
 * ## Snapshots
 *
 * `snapshot({ final })` returns the backend's streams (epochs, offsets,
 * retained publications, idempotency keys) as plain data; `restore()` loads
 * one into a broker that has published nothing yet. A *final* snapshot is
 * one taken when nothing can publish any more (a graceful stop): restoring
 * it keeps the epochs, so clients resume across the restart with
 * `recovered: true`. Any other snapshot may be older than the last
 * publications: reusing its epochs would hand out offsets that clients have
 * already seen for other messages, so restoring it keeps the publications
 * (history for new subscribers) under new epochs (resuming clients get
 * `recovered: false` and refetch). Saving snapshots to a file is the
 * caller's business (see snapshot-file.ts): this module does no I/O.
 */
import { isPattern, isValidChannel, isValidPattern, PatternIndex } from '../../wire/channel.js';
import { IDEMPOTENCY_TTL_MS } from '../../wire/messages.js';
import type {
  Broker,
  BrokerHandler,
  ClientInfo,
  HistoryFilter,
  HistoryResult,
  Publication,
  PublishOptions,
  PublishResult,
} from '../broker.js';
import { brokerError, invalidChannel } from './errors.js';

export { MemoryPresenceStore } from './presence.js';

/** Default `idempotencyTtlMs` of a publish: 5 minutes, the window the realtime protocol announces. */
export const DEFAULT_IDEMPOTENCY_TTL_MS = IDEMPOTENCY_TTL_MS;

export interface MemoryBrokerOptions {
  /** The clock, in ms since the Unix epoch: publication times and every TTL. Default `Date.now`. */
  now?: () => number;
  /**
   * Interval of the sweep that evicts expired publications and keys and
   * drops idle streams of channels nobody reads, in ms. Default 1000. 0: no
   * timer (eviction then happens only when a channel is accessed, and on
   * {@link MemoryBroker.sweep}).
   */
  sweepIntervalMs?: number;
  /** At most this many channel streams; beyond, the least recently published is dropped. Default 100 000. */
  maxChannels?: number;
  /**
   * Idempotency keys remembered per channel; beyond, the oldest is
   * forgotten early (a retry with it publishes again). Default 1000.
   */
  maxIdempotencyKeys?: number;
  /**
   * How long the position (epoch, offset) of a channel with history is kept
   * after its last publication, in ms, even once the publications have
   * expired. Default 24 hours.
   */
  historyMetaTtlMs?: number;
  /**
   * Called with what a handler threw; delivery goes on either way. Default:
   * `console.error` (never rethrown: an uncaught exception ends the process).
   */
  onError?: (err: unknown) => void;
}

/** One channel's stream in a {@link MemoryBrokerSnapshot}. */
export interface StreamSnapshot {
  channel: string;
  epoch: string;
  /** Offset of the channel's last publication. */
  offset: number;
  /** History settings of the last publication. */
  size: number;
  ttlMs: number;
  lastPublishAt: number;
  /** Retained publications, oldest first, consecutive offsets ending at `offset`. */
  publications: Publication[];
  /** Idempotency keys: `[key, offset, expiresAt]`. */
  keys: Array<[string, number, number]>;
}

/** A broker backend's state as plain data (no classes; `data` of publications as published). */
export interface MemoryBrokerSnapshot {
  format: 'switchboard-memory-broker';
  version: 1;
  /** Taken when nothing could publish any more: restoring keeps the epochs. */
  final: boolean;
  /** When it was taken, ms since the Unix epoch. */
  takenAt: number;
  /** The broker id (prefix of its epochs). */
  id: string;
  /** Epoch generations that are not 0: `[bucket, generation]`. */
  generations: Array<[number, number]>;
  /** In order of last publication, least recent first. */
  streams: StreamSnapshot[];
}

/** Counts for tests and metrics. `publications` and `idempotencyKeys` cost O(channels). */
export interface MemoryBrokerStats {
  /** Channel streams held. */
  channels: number;
  /** Publications retained, over all channels. */
  publications: number;
  /** Idempotency keys held, over all channels (some may have expired, awaiting the sweep). */
  idempotencyKeys: number;
  /** Subscriptions by name. */
  subscriptions: number;
  /** Subscriptions by pattern. */
  patterns: number;
}

const EPOCH_BUCKETS = 4096;
const BASE36 = '0123456789abcdefghijklmnopqrstuvwxyz';

/** `length` random base36 characters (the modulo bias is irrelevant for an epoch). */
export function randomId(length = 8): string {
  const bytes = new Uint8Array(length);
  globalThis.crypto.getRandomValues(bytes);
  let out = '';
  for (let i = 0; i < length; i++) out += BASE36[bytes[i]! % 36];
  return out;
}

/** FNV-1a over UTF-16 code units. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

interface IdempotencyEntry {
  offset: number;
  expiresAt: number;
}

class Stream {
  offset = 0;
  /** Retained publications are `pubs[head..]`, consecutive offsets ending at `offset`. */
  pubs: Array<Publication | undefined> = [];
  head = 0;
  /** History settings of the last publication. */
  size = 0;
  ttlMs = 0;
  lastPublishAt = 0;
  keys: Map<string, IdempotencyEntry> | undefined = undefined;
  /** When the last of `keys` expires. */
  keysExpireAt = 0;

  constructor(readonly epoch: string) {}

  get count(): number {
    return this.pubs.length - this.head;
  }

  push(pub: Publication): void {
    this.pubs.push(pub);
    while (this.count > this.size) this.dropOldest();
  }

  dropOldest(): void {
    this.pubs[this.head++] = undefined;
    // Compact now and then: amortised O(1) per publication.
    if (this.head >= 64 && this.head * 2 >= this.pubs.length) {
      this.pubs.splice(0, this.head);
      this.head = 0;
    }
  }

  clearPublications(): void {
    this.pubs = [];
    this.head = 0;
  }

  /** Evict expired publications (oldest first) and keys. */
  evict(now: number): void {
    if (this.ttlMs > 0) {
      while (this.count > 0 && now - this.pubs[this.head]!.time >= this.ttlMs) this.dropOldest();
    }
    const keys = this.keys;
    if (keys !== undefined) {
      if (now >= this.keysExpireAt) this.keys = undefined;
      else {
        // Keys are in insertion order, which is expiry order when every
        // publish uses the same TTL; a key behind a longer-lived one waits
        // (lookups check expiry, and the count is bounded).
        for (const [key, entry] of keys) {
          if (entry.expiresAt > now) break;
          keys.delete(key);
        }
      }
    }
  }
}

class PresenceEvent {
  constructor(
    readonly kind: 'join' | 'leave',
    readonly channel: string,
    readonly info: ClientInfo,
  ) {}
}

/** Set while {@link MemoryBroker.peer} constructs a node: the node whose backend the new one joins. */
let joining: MemoryBroker | undefined;

/** A single-process Broker. See the module comment for the rules on state, epochs and delivery. */
export class MemoryBroker implements Broker {
  /** Random per backend (shared by peers); prefix of every epoch this broker assigns. */

  readonly #now: () => number;
  readonly #maxChannels: number;
  readonly #maxKeys: number;
  readonly #metaTtlMs: number;
  readonly #timer: ReturnType<typeof setInterval> | undefined;
  readonly #onError: (err: unknown) => void;
  readonly #options: MemoryBrokerOptions;

  // The backend, shared with peers: streams and epoch generations, and the open nodes.
  /** Streams in order of last publication (least recent first), for the `maxChannels` bound. */
  readonly #streams: Map<string, Stream>;
  readonly #generations: Uint32Array;
  /** The open nodes of the backend, this one included. */
  readonly #nodes: Set<MemoryBroker>;

  // This node: its subscriptions, handler and delivery queue.
  readonly #exact = new Set<string>();
  readonly #patterns = new PatternIndex<string>();

  #handler: BrokerHandler | undefined = undefined;
  /**
   * The backend's id (prefix of its epochs; a final snapshot's restore sets
   * it) and revision (bumped by every change a snapshot would show), one
   * object for all its nodes.
   */
  readonly #shared: { id: string; revision: number };
  readonly #queue: Array<Publication | PresenceEvent> = [];
  #draining = false;
  #closed = false;

  constructor(options: MemoryBrokerOptions = {}) {
    this.#options = options;
    const backend = joining;
    this.#shared = backend === undefined ? { id: randomId(8), revision: 0 } : backend.#shared;
    this.#streams = backend === undefined ? new Map() : backend.#streams;
    this.#generations = backend === undefined ? new Uint32Array(EPOCH_BUCKETS) : backend.#generations;
    this.#nodes = backend === undefined ? new Set() : backend.#nodes;
    this.#nodes.add(this);
    this.#now = options.now ?? Date.now;
    this.#maxChannels = Math.max(1, options.maxChannels ?? 100_000);
    this.#maxKeys = Math.max(1, options.maxIdempotencyKeys ?? 1000);
    this.#metaTtlMs = Math.max(0, options.historyMetaTtlMs ?? 24 * 3600_000);
    this.#onError = options.onError ?? reportError;
    const interval = options.sweepIntervalMs ?? 1000;
    if (interval > 0) {
      const timer = setInterval(() => this.sweep(), interval);
      (timer as { unref?: () => void }).unref?.();
      this.#timer = timer;
    }
  }

  /** Random per backend (shared by peers); prefix of every epoch this broker assigns. A final snapshot's restore sets it. */
  get id(): string {
    return this.#shared.id;
  }

  /**
   * A number that changes whenever the state a snapshot would show changes
   * (a stored publication, a key, a dropped stream): a caller saving
   * snapshots now and then skips the save when it did not move.
   */
  get revision(): number {
    return this.#shared.revision;
  }

  /**
   * Another node on this broker's backend, with the same options: what a
   * second server process is with Redis. It shares streams (offsets, epochs,
   * history, idempotency keys) and has its own subscriptions, handler and
   * delivery queue. For several realtime servers in one process (tests,
   * blue-green handover); closing a node leaves the others running.
   */
  peer(): MemoryBroker {
    this.#checkOpen();
    joining = this;
    try {
      return new MemoryBroker(this.#options);
    } finally {
      joining = undefined;
    }
  }

  setHandler(handler: BrokerHandler): void {
    this.#handler = handler;
  }

  async publish(channel: string, data: unknown, options: PublishOptions = {}): Promise<PublishResult> {
    this.#checkOpen();
    if (!isValidChannel(channel)) throw invalidChannel(channel);
    const now = this.#now();
    let stream = this.#access(channel, now);

    const key = options.idempotencyKey;
    if (key !== undefined && stream?.keys !== undefined) {
      const seen = stream.keys.get(key);
      if (seen !== undefined && seen.expiresAt > now) return { offset: seen.offset, epoch: stream.epoch, duplicate: true };
    }

    const subscribed = this.#subscribedByName(channel);
    if (options.volatile) {
      // Volatile: delivered, never stored, and no offset of its own (it carries
      // the current position), so history keeps no gap for it.
      const position = stream === undefined ? { offset: 0, epoch: this.#quietEpoch(channel) } : { offset: stream.offset, epoch: stream.epoch };
      const vpub: Publication = { channel, ...position, data, time: now, volatile: true };
      if (options.from !== undefined) vpub.from = options.from;
      this.#deliver(channel, vpub);
      return { ...position, duplicate: false };
    }

    const history = options.history;
    const keep = history !== undefined && history.size > 0;
    let epoch: string;
    let offset: number;
    if (stream === undefined && !keep && key === undefined && !subscribed) {
      // Nothing would keep a stream: publish in a throwaway epoch, leave no state.
      epoch = randomId(8);
      offset = 1;
    } else {
      if (stream === undefined) stream = this.#create(channel);
      else {
        // Most recently published last, for the maxChannels bound.
        this.#streams.delete(channel);
        this.#streams.set(channel, stream);
      }
      epoch = stream.epoch;
      offset = ++stream.offset;
    }

    const from = options.from;
    const pub: Publication =
      from === undefined ? { channel, offset, epoch, data, time: now } : { channel, offset, epoch, data, from, time: now };

    if (stream !== undefined) {
      this.#shared.revision++;
      stream.lastPublishAt = now;
      if (keep) {
        stream.size = history.size;
        stream.ttlMs = history.ttlMs > 0 ? history.ttlMs : 0;
        stream.push(pub);
      } else {
        stream.size = 0;
        stream.ttlMs = 0;
        if (stream.count > 0) stream.clearPublications();
      }
      if (key !== undefined) this.#remember(stream, key, offset, now + (options.idempotencyTtlMs ?? DEFAULT_IDEMPOTENCY_TTL_MS));
      if (this.#isIdle(channel, stream, now)) this.#drop(channel, stream);
    }

    this.#deliver(channel, pub);
    return { offset, epoch, duplicate: false };
  }

  async subscribe(channel: string): Promise<void> {
    this.#checkOpen();
    if (isPattern(channel)) {
      if (!isValidPattern(channel)) throw invalidChannel(channel);
      this.#patterns.add(channel, channel);
    } else {
      if (!isValidChannel(channel)) throw invalidChannel(channel);
      this.#exact.add(channel);
    }
  }

  async unsubscribe(channel: string): Promise<void> {
    this.#checkOpen();
    if (isPattern(channel)) {
      this.#patterns.remove(channel, channel);
    } else if (this.#exact.delete(channel)) {
      this.#access(channel, this.#now()); // drops the stream if that was all that kept it
    }
  }

  async publishPresence(channel: string, kind: 'join' | 'leave', info: ClientInfo): Promise<void> {
    this.#checkOpen();
    if (!isValidChannel(channel)) throw invalidChannel(channel);
    this.#deliver(channel, new PresenceEvent(kind, channel, info));
  }

  async history(channel: string, filter: HistoryFilter = {}): Promise<HistoryResult> {
    this.#checkOpen();
    if (!isValidChannel(channel)) throw invalidChannel(channel);
    const stream = this.#access(channel, this.#now());
    const position = stream === undefined ? { offset: 0, epoch: this.#quietEpoch(channel) } : { offset: stream.offset, epoch: stream.epoch };
    const limit = filter.limit === undefined || !(filter.limit < Infinity) ? Infinity : Math.max(0, Math.floor(filter.limit));
    const since = filter.since;

    if (since !== undefined) {
      if (since.epoch !== position.epoch || !(since.offset >= 0) || since.offset > position.offset) {
        return { publications: [], position, recovered: false };
      }
      if (stream === undefined || since.offset === position.offset) return { publications: [], position, recovered: true };
      const count = stream.count;
      // Retained offsets are first..position.offset, consecutive.
      const first = count > 0 ? stream.pubs[stream.head]!.offset : position.offset + 1;
      const recovered = first <= since.offset + 1;
      const start = stream.head + Math.max(0, since.offset + 1 - first);
      const end = Math.min(stream.pubs.length, start + limit);
      return { publications: stream.pubs.slice(start, end) as Publication[], position, recovered };
    }

    if (stream === undefined) return { publications: [], position, recovered: false };
    const end = stream.pubs.length;
    const start = Math.max(stream.head, end - limit);
    return { publications: stream.pubs.slice(start, end) as Publication[], position, recovered: false };
  }

  async removeHistory(channel: string): Promise<void> {
    this.#checkOpen();
    if (!isValidChannel(channel)) throw invalidChannel(channel);
    const stream = this.#streams.get(channel);
    if (stream !== undefined) this.#drop(channel, stream);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#nodes.delete(this);
    // The last node takes the backend with it.
    if (this.#nodes.size === 0) this.#streams.clear();
    this.#exact.clear();
    this.#patterns.clear();
    this.#queue.length = 0;
    this.#handler = undefined;
  }

  /**
   * Evict expired publications and idempotency keys of every channel and
   * drop idle streams. The sweep timer calls this; O(channels).
   */
  sweep(): void {
    if (this.#closed) return;
    const now = this.#now();
    for (const [channel, stream] of this.#streams) {
      stream.evict(now);
      if (this.#isIdle(channel, stream, now)) this.#drop(channel, stream);
    }
  }

  /**
   * The backend's state as plain data, expired entries left out. `final`:
   * nothing will publish on this backend any more (say so only then: a
   * final snapshot's epochs are reused by `restore`). The publications are
   * the stored objects, not copies: serialize before publishing again.
   */
  snapshot(options: { final?: boolean } = {}): MemoryBrokerSnapshot {
    this.sweep();
    const now = this.#now();
    const generations: Array<[number, number]> = [];
    this.#generations.forEach((g, bucket) => {
      if (g !== 0) generations.push([bucket, g]);
    });
    const streams: StreamSnapshot[] = [];
    for (const [channel, stream] of this.#streams) {
      const keys: Array<[string, number, number]> = [];
      if (stream.keys !== undefined) for (const [key, e] of stream.keys) if (e.expiresAt > now) keys.push([key, e.offset, e.expiresAt]);
      streams.push({
        channel,
        epoch: stream.epoch,
        offset: stream.offset,
        size: stream.size,
        ttlMs: stream.ttlMs,
        lastPublishAt: stream.lastPublishAt,
        publications: stream.pubs.slice(stream.head) as Publication[],
        keys,
      });
    }
    return { format: 'switchboard-memory-broker', version: 1, final: options.final === true, takenAt: now, id: this.#shared.id, generations, streams };
  }

  /**
   * Load a snapshot (see the module comment: a final one keeps its epochs,
   * any other gets new ones). Only into a backend without streams, before
   * anything is published; checks the snapshot's shape first and throws a
   * TypeError naming the first bad field, leaving the broker untouched.
   */
  restore(snapshot: unknown): void {
    this.#checkOpen();
    const snap = checkSnapshot(snapshot);
    if (this.#streams.size > 0) throw new Error('restore: the broker already has channel streams');
    const now = this.#now();
    if (snap.final) {
      this.#shared.id = snap.id;
      for (const [bucket, g] of snap.generations) this.#generations[bucket] = g;
    }
    for (const s of snap.streams) {
      // Not final: the snapshot may be behind what clients saw; a new epoch makes them refetch.
      const epoch = snap.final ? s.epoch : this.#quietEpoch(s.channel);
      const stream = new Stream(epoch);
      stream.offset = s.offset;
      stream.size = s.size;
      stream.ttlMs = s.ttlMs;
      stream.lastPublishAt = s.lastPublishAt;
      stream.pubs = snap.final ? s.publications.slice() : s.publications.map((p) => ({ ...p, epoch }));
      for (const [key, offset, expiresAt] of s.keys) if (expiresAt > now) this.#remember(stream, key, offset, expiresAt);
      stream.evict(now);
      if (this.#isIdle(s.channel, stream, now)) continue;
      this.#streams.set(s.channel, stream);
    }
    // Beyond maxChannels (a smaller bound than the snapshot's): the least recently published go.
    while (this.#streams.size > this.#maxChannels) {
      const [oldest, victim] = this.#streams.entries().next().value as [string, Stream];
      this.#drop(oldest, victim);
    }
    this.#shared.revision++;
  }

  stats(): MemoryBrokerStats {
    let publications = 0;
    let idempotencyKeys = 0;
    for (const stream of this.#streams.values()) {
      publications += stream.count;
      idempotencyKeys += stream.keys?.size ?? 0;
    }
    return {
      channels: this.#streams.size,
      publications,
      idempotencyKeys,
      subscriptions: this.#exact.size,
      patterns: this.#patterns.size,
    };
  }

  // ---- internals --------------------------------------------------------

  #checkOpen(): void {
    if (this.#closed) throw brokerError('RT_ERR_BROKER_CLOSED', 'The broker is closed');
  }

  /** The channel's stream after lazy eviction, or undefined (dropping it if idle). */
  #access(channel: string, now: number): Stream | undefined {
    const stream = this.#streams.get(channel);
    if (stream === undefined) return undefined;
    stream.evict(now);
    if (this.#isIdle(channel, stream, now)) {
      this.#drop(channel, stream);
      return undefined;
    }
    return stream;
  }

  #isIdle(channel: string, stream: Stream, now: number): boolean {
    return (
      stream.count === 0 &&
      stream.keys === undefined &&
      !this.#subscribedByName(channel) &&
      !(stream.size > 0 && now - stream.lastPublishAt < this.#metaTtlMs)
    );
  }

  /** Whether some node of the backend is subscribed to `channel` by name. */
  #subscribedByName(channel: string): boolean {
    for (const node of this.#nodes) if (node.#exact.has(channel)) return true;
    return false;
  }

  /** Queue `item` for every node subscribed to `channel` (by name or by pattern), once per node. */
  #deliver(channel: string, item: Publication | PresenceEvent): void {
    for (const node of this.#nodes) if (node.#exact.has(channel) || node.#patterns.hasMatch(channel)) node.#enqueue(item);
  }

  #quietEpoch(channel: string): string {
    return this.id + this.#generations[hash(channel) % EPOCH_BUCKETS]!.toString(36);
  }

  #create(channel: string): Stream {
    const stream = new Stream(this.#quietEpoch(channel));
    this.#streams.set(channel, stream);
    if (this.#streams.size > this.#maxChannels) {
      const [oldest, victim] = this.#streams.entries().next().value as [string, Stream];
      this.#drop(oldest, victim);
    }
    return stream;
  }

  #drop(channel: string, stream: Stream): void {
    this.#shared.revision++;
    this.#streams.delete(channel);
    // Offsets of this epoch were handed out: the channel's next stream needs another epoch.
    if (stream.offset > 0) {
      const bucket = hash(channel) % EPOCH_BUCKETS;
      this.#generations[bucket] = (this.#generations[bucket]! + 1) >>> 0;
    }
  }

  #remember(stream: Stream, key: string, offset: number, expiresAt: number): void {
    const keys = (stream.keys ??= new Map());
    keys.delete(key); // re-insert at the end (a re-used, expired key)
    keys.set(key, { offset, expiresAt });
    if (expiresAt > stream.keysExpireAt) stream.keysExpireAt = expiresAt;
    if (keys.size > this.#maxKeys) keys.delete(keys.keys().next().value as string);
  }

  #enqueue(item: Publication | PresenceEvent): void {
    this.#queue.push(item);
    if (!this.#draining) {
      this.#draining = true;
      queueMicrotask(this.#drain);
    }
  }

  /** Deliver everything queued, including what handlers queue meanwhile. Bound once: no closure per message. */
  readonly #drain = (): void => {
    const queue = this.#queue;
    for (let i = 0; i < queue.length && !this.#closed; i++) {
      const item = queue[i]!;
      const handler = this.#handler;
      if (handler === undefined) continue;
      try {
        if (item instanceof PresenceEvent) {
          if (item.kind === 'join') handler.onJoin(item.channel, item.info);
          else handler.onLeave(item.channel, item.info);
        } else {
          handler.onPublication(item);
        }
      } catch (err) {
        try {
          this.#onError(err);
        } catch (again) {
          reportError(again);
        }
      }
    }
    queue.length = 0;
    this.#draining = false;
  };
}

/** `value` as a snapshot, or a TypeError naming the first field that is not what `snapshot()` writes. */
function checkSnapshot(value: unknown): MemoryBrokerSnapshot {
  const fail = (path: string, expected: string): never => {
    throw new TypeError(`not a memory broker snapshot: ${path} must be ${expected}`);
  };
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
  if (!isObject(value)) return fail('the snapshot', 'an object');
  if (value['format'] !== 'switchboard-memory-broker') fail('format', '"switchboard-memory-broker"');
  if (value['version'] !== 1) fail('version', '1 (the only version this broker reads)');
  if (typeof value['final'] !== 'boolean') fail('final', 'a boolean');
  if (typeof value['id'] !== 'string' || !/^[0-9a-z]{1,32}$/.test(value['id'])) fail('id', 'base36 characters');
  if (!isTime(value['takenAt'])) fail('takenAt', 'a time in ms');
  const generations = value['generations'];
  if (!Array.isArray(generations)) return fail('generations', 'an array');
  generations.forEach((g: unknown, i) => {
    if (!Array.isArray(g) || g.length !== 2 || !isCount(g[0]) || g[0] >= EPOCH_BUCKETS || !isCount(g[1]) || g[1] > 0xffffffff) {
      fail(`generations[${i}]`, `[bucket < ${EPOCH_BUCKETS}, generation]`);
    }
  });
  const streams = value['streams'];
  if (!Array.isArray(streams)) return fail('streams', 'an array');
  const seen = new Set<string>();
  streams.forEach((s: unknown, i) => {
    const at = `streams[${i}]`;
    if (!isObject(s)) return fail(at, 'an object');
    const channel = s['channel'];
    if (typeof channel !== 'string' || !isValidChannel(channel)) fail(`${at}.channel`, 'a valid channel name');
    if (seen.has(channel as string)) fail(`${at}.channel`, 'unique');
    seen.add(channel as string);
    if (typeof s['epoch'] !== 'string' || s['epoch'] === '') fail(`${at}.epoch`, 'a non-empty string');
    for (const k of ['offset', 'size', 'ttlMs']) if (!isCount(s[k])) fail(`${at}.${k}`, 'an integer >= 0');
    if (!isTime(s['lastPublishAt'])) fail(`${at}.lastPublishAt`, 'a time in ms');
    const pubs = s['publications'];
    if (!Array.isArray(pubs)) return fail(`${at}.publications`, 'an array');
    const offset = s['offset'] as number;
    pubs.forEach((p: unknown, j) => {
      const pat = `${at}.publications[${j}]`;
      if (!isObject(p)) return fail(pat, 'an object');
      if (p['channel'] !== channel) fail(`${pat}.channel`, `${JSON.stringify(channel)}`);
      if (p['offset'] !== offset - pubs.length + 1 + j) fail(`${pat}.offset`, `${offset - pubs.length + 1 + j} (consecutive, ending at the stream's offset)`);
      if (p['epoch'] !== s['epoch']) fail(`${pat}.epoch`, "the stream's epoch");
      if (!isTime(p['time'])) fail(`${pat}.time`, 'a time in ms');
      if (!('data' in p)) fail(`${pat}.data`, 'present');
      const from = p['from'];
      if (from !== undefined && !(isObject(from) && typeof from['client'] === 'string' && typeof from['user'] === 'string')) {
        fail(`${pat}.from`, '{ client, user }');
      }
    });
    const keys = s['keys'];
    if (!Array.isArray(keys)) return fail(`${at}.keys`, 'an array');
    keys.forEach((k: unknown, j) => {
      if (!Array.isArray(k) || k.length !== 3 || typeof k[0] !== 'string' || !isCount(k[1]) || k[1] > offset || !isTime(k[2])) {
        fail(`${at}.keys[${j}]`, '[key, offset <= the stream offset, expiresAt]');
      }
    });
  });
  return value as unknown as MemoryBrokerSnapshot;
}

function reportError(err: unknown): void {
  console.error('switchboard memory broker: a delivery handler threw (delivery goes on):', err);
}
