/**
 * The channel streams of a memory broker backend (memory-broker.ts), shared
 * by all its nodes: epochs, offsets, retained publications, idempotency keys.
 * No I/O; randomness from `globalThis.crypto.getRandomValues`.
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
 */
import type { HistoryOptions, Publication, StreamPosition } from '../broker.js';

/** Buckets of epoch generations (see *Epochs*). */
export const EPOCH_BUCKETS = 4096;
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

/** One channel's stream. */
export class Stream {
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

  /** The retained publications, oldest first. */
  retained(): Publication[] {
    return this.pubs.slice(this.head) as Publication[];
  }

  /**
   * Up to `limit` retained publications after `offset` (at most this
   * stream's offset), oldest first; `recovered` when none after `offset`
   * was evicted.
   */
  after(offset: number, limit: number): { publications: Publication[]; recovered: boolean } {
    // Retained offsets are first..this.offset, consecutive.
    const first = this.count > 0 ? this.pubs[this.head]!.offset : this.offset + 1;
    const start = this.head + Math.max(0, offset + 1 - first);
    const end = Math.min(this.pubs.length, start + limit);
    return { publications: this.pubs.slice(start, end) as Publication[], recovered: first <= offset + 1 };
  }

  /** The newest `limit` retained publications, oldest first. */
  newest(limit: number): Publication[] {
    const end = this.pubs.length;
    return this.pubs.slice(Math.max(this.head, end - limit), end) as Publication[];
  }

  /** The offset published with `key`, if the key is held and has not expired. */
  published(key: string, now: number): number | undefined {
    const seen = this.keys?.get(key);
    return seen !== undefined && seen.expiresAt > now ? seen.offset : undefined;
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

/** The bounds of a {@link StreamTable} (MemoryBrokerOptions, with defaults applied). */
export interface StreamLimits {
  maxChannels: number;
  maxIdempotencyKeys: number;
  historyMetaTtlMs: number;
}

/**
 * A backend's streams and epoch generations, one object for all its nodes.
 * It decides when a stream is kept (see *Streams*); whether a node is
 * subscribed to a channel by name it asks `subscribedByName`.
 */
export class StreamTable {
  /** Streams in order of last publication (least recent first), for the `maxChannels` bound. */
  readonly byChannel = new Map<string, Stream>();
  readonly generations = new Uint32Array(EPOCH_BUCKETS);
  /** Prefix of every epoch (see *Epochs*); a final snapshot's restore sets it. */
  id = randomId(8);
  /** Bumped by every change a snapshot would show. */
  revision = 0;

  constructor(
    readonly limits: StreamLimits,
    readonly subscribedByName: (channel: string) => boolean,
  ) {}

  get size(): number {
    return this.byChannel.size;
  }

  /** The epoch the channel's next stream gets. */
  quietEpoch(channel: string): string {
    return this.id + this.generations[hash(channel) % EPOCH_BUCKETS]!.toString(36);
  }

  /** The channel's current position: its stream's, or offset 0 in its quiet epoch. */
  position(channel: string, stream: Stream | undefined): StreamPosition {
    return stream === undefined ? { offset: 0, epoch: this.quietEpoch(channel) } : { offset: stream.offset, epoch: stream.epoch };
  }

  /** The channel's stream after lazy eviction, or undefined (dropping it if idle). */
  access(channel: string, now: number): Stream | undefined {
    const stream = this.byChannel.get(channel);
    if (stream === undefined) return undefined;
    stream.evict(now);
    if (this.isIdle(channel, stream, now)) {
      this.drop(channel, stream);
      return undefined;
    }
    return stream;
  }

  isIdle(channel: string, stream: Stream, now: number): boolean {
    return (
      stream.count === 0 &&
      stream.keys === undefined &&
      !this.subscribedByName(channel) &&
      !(stream.size > 0 && now - stream.lastPublishAt < this.limits.historyMetaTtlMs)
    );
  }

  /**
   * Assign the channel's next offset: in its stream (`stream`, from
   * {@link access}, or a new one), which becomes the most recently
   * published. Undefined when nothing would keep a stream (no stream yet,
   * `keeps` false: no history and no idempotency key, no subscription by
   * name): the publication then takes offset 1 in a throwaway epoch and
   * leaves no state.
   */
  advance(channel: string, stream: Stream | undefined, keeps: boolean): Stream | undefined {
    if (stream === undefined) {
      if (!keeps && !this.subscribedByName(channel)) return undefined;
      stream = new Stream(this.quietEpoch(channel));
      this.byChannel.set(channel, stream);
      this.trim();
    } else {
      // Most recently published last, for the maxChannels bound.
      this.byChannel.delete(channel);
      this.byChannel.set(channel, stream);
    }
    stream.offset++;
    return stream;
  }

  /**
   * Keep `pub` (the stream's newest offset, from {@link advance}) as its
   * history settings say, and its idempotency key; drop the stream if that
   * leaves nothing to keep it.
   */
  store(channel: string, stream: Stream, pub: Publication, history: HistoryOptions | undefined, key: string | undefined, keyTtlMs: number, now: number): void {
    this.revision++;
    stream.lastPublishAt = now;
    if (history !== undefined && history.size > 0) {
      stream.size = history.size;
      stream.ttlMs = history.ttlMs > 0 ? history.ttlMs : 0;
      stream.push(pub);
    } else {
      stream.size = 0;
      stream.ttlMs = 0;
      if (stream.count > 0) stream.clearPublications();
    }
    if (key !== undefined) this.remember(stream, key, pub.offset, now + keyTtlMs);
    if (this.isIdle(channel, stream, now)) this.drop(channel, stream);
  }

  remember(stream: Stream, key: string, offset: number, expiresAt: number): void {
    const keys = (stream.keys ??= new Map());
    keys.delete(key); // re-insert at the end (a re-used, expired key)
    keys.set(key, { offset, expiresAt });
    if (expiresAt > stream.keysExpireAt) stream.keysExpireAt = expiresAt;
    if (keys.size > this.limits.maxIdempotencyKeys) keys.delete(keys.keys().next().value as string);
  }

  drop(channel: string, stream: Stream): void {
    this.revision++;
    this.byChannel.delete(channel);
    // Offsets of this epoch were handed out: the channel's next stream needs another epoch.
    if (stream.offset > 0) {
      const bucket = hash(channel) % EPOCH_BUCKETS;
      this.generations[bucket] = (this.generations[bucket]! + 1) >>> 0;
    }
  }

  /** Drop the least recently published streams beyond `maxChannels`. */
  trim(): void {
    while (this.byChannel.size > this.limits.maxChannels) {
      const [oldest, victim] = this.byChannel.entries().next().value as [string, Stream];
      this.drop(oldest, victim);
    }
  }

  /** Evict expired publications and keys of every stream; drop the idle ones. O(channels). */
  sweep(now: number): void {
    for (const [channel, stream] of this.byChannel) {
      stream.evict(now);
      if (this.isIdle(channel, stream, now)) this.drop(channel, stream);
    }
  }

  /** Forget every stream (the backend's last node closed). */
  clear(): void {
    this.byChannel.clear();
  }

  counts(): { channels: number; publications: number; idempotencyKeys: number } {
    let publications = 0;
    let idempotencyKeys = 0;
    for (const stream of this.byChannel.values()) {
      publications += stream.count;
      idempotencyKeys += stream.keys?.size ?? 0;
    }
    return { channels: this.byChannel.size, publications, idempotencyKeys };
  }
}
