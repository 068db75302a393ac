/**
 * Continuity of one node's deliveries, for brokers whose fan-out can lose
 * messages (Redis pub/sub and core NATS are at most once: a dropped
 * connection, a slow subscriber cut by the server). The broker feeds
 * everything its subscription receives through a `Continuity`, which hands
 * it to the realtime layer in offset order per channel, and refills what is
 * missing from history while the node's clients stay connected: they never
 * learn about a gap the node could close itself.
 *
 * Per channel subscribed by name (`track`), the last position delivered:
 * - the next offset in the same epoch is delivered;
 * - an offset already delivered is a duplicate (a refill overlapping live
 *   traffic) and dropped;
 * - a later offset is a gap: live publications are held while history after
 *   the last position is read, then what history has is delivered, then what
 *   was held. If history no longer has everything (evicted, or a channel
 *   without history), the rest is delivered anyway: the subscriber sees the
 *   jump in offsets, as a client that missed messages would, and resumes or
 *   reloads (the SDK resubscribes on a gap).
 * - another epoch means history was lost since the last position (a
 *   failover to a replica, a restart without persistence), and the new
 *   stream began at offset 1, after that position: its offsets count from 0
 *   like a gap (a publication at offset 3 of a new epoch refills 1 and 2),
 *   and a refill that finds history in another epoch delivers what the new
 *   one has. The subscribers' own epoch checks take it from there. (A node
 *   whose shard subscription moved in a failover may miss the first
 *   publications of the new epoch: they come back this way.)
 * Volatile publications and channels reached only through patterns pass
 * through untouched: volatile ones have no offsets of their own, and keeping
 * a position for every channel a pattern ever matched would grow without
 * bound.
 *
 * `resync()` after the broker's subscription came back (a reconnect) refills
 * every tracked channel from its last position the same way.
 */
import type { BrokerHandler, ClientInfo, HistoryResult, Publication, StreamPosition } from './broker.js';

export interface ContinuityOptions {
  /** The channel's publications after `since` (the broker's own `history(channel, { since, limit })`). */
  history(channel: string, since: StreamPosition): Promise<HistoryResult>;
  /**
   * A gap was found (`missing` publications) and is being refilled; after a
   * `resync()`, the publications it refilled per channel (known only once
   * read). For metrics and logs.
   */
  onGap?(channel: string, missing: number): void;
  /** A refill failed (history unreachable): what was held is delivered anyway. */
  onError?(err: unknown, channel: string): void;
}

interface Track {
  /** The last position delivered; null until the first publication. */
  position: StreamPosition | null;
  /** Publications held while a refill runs; null when none runs. */
  held: Publication[] | null;
}

export class Continuity implements BrokerHandler {
  readonly #options: ContinuityOptions;
  #handler: BrokerHandler | undefined;
  readonly #tracks = new Map<string, Track>();

  constructor(options: ContinuityOptions) {
    this.#options = options;
  }

  setHandler(handler: BrokerHandler): void {
    this.#handler = handler;
  }

  /** Keep the order of this channel (subscribed by name). Idempotent. */
  track(channel: string): void {
    if (!this.#tracks.has(channel)) this.#tracks.set(channel, { position: null, held: null });
  }

  untrack(channel: string): void {
    this.#tracks.delete(channel);
  }

  /** The last position delivered on a tracked channel (null: none yet, or not tracked). */
  position(channel: string): StreamPosition | null {
    const p = this.#tracks.get(channel)?.position;
    return p ? { ...p } : null;
  }

  onPublication(pub: Publication): void {
    const track = this.#tracks.get(pub.channel);
    if (track === undefined || pub.volatile) {
      this.#deliver(pub);
      return;
    }
    if (track.held !== null) {
      track.held.push(pub);
      return;
    }
    this.#next(pub.channel, track, pub);
  }

  onJoin(channel: string, info: ClientInfo): void {
    this.#handler?.onJoin(channel, info);
  }

  onLeave(channel: string, info: ClientInfo): void {
    this.#handler?.onLeave(channel, info);
  }

  /** Refill every tracked channel from its last position (after the broker's subscription reconnected). */
  async resync(): Promise<void> {
    const refills: Promise<void>[] = [];
    for (const [channel, track] of this.#tracks) {
      if (track.position === null || track.held !== null) continue;
      track.held = [];
      refills.push(this.#refill(channel, track, track.position, true));
    }
    await Promise.all(refills);
  }

  /** One live publication on a tracked channel, no refill running. */
  #next(channel: string, track: Track, pub: Publication): void {
    const position = track.position;
    if (position === null) {
      this.#accept(track, pub);
      return;
    }
    const last = pub.epoch === position.epoch ? position : { offset: 0, epoch: pub.epoch };
    if (pub.offset <= last.offset) return;
    if (pub.offset === last.offset + 1) {
      this.#accept(track, pub);
      return;
    }
    this.#options.onGap?.(channel, pub.offset - last.offset - 1);
    track.held = [pub];
    void this.#refill(channel, track, last);
  }

  #accept(track: Track, pub: Publication): void {
    track.position = { offset: pub.offset, epoch: pub.epoch };
    this.#deliver(pub);
  }

  async #refill(channel: string, track: Track, since: StreamPosition, reportRefilled = false): Promise<void> {
    try {
      let result = await this.#options.history(channel, since);
      // History is in another epoch (lost since `since`): all of the new stream came after it.
      if (result.position.epoch !== since.epoch && result.position.offset > 0 && this.#tracks.get(channel) === track) {
        result = await this.#options.history(channel, { offset: 0, epoch: result.position.epoch });
      }
      if (this.#tracks.get(channel) !== track) return;
      let refilled = 0;
      for (const pub of result.publications) {
        const last = track.position;
        if (last === null || pub.epoch !== last.epoch || pub.offset > last.offset) {
          this.#accept(track, pub);
          refilled++;
        }
      }
      if (reportRefilled && refilled > 0) this.#options.onGap?.(channel, refilled);
    } catch (err) {
      this.#options.onError?.(err, channel);
    } finally {
      // Untracked meanwhile: what was held still goes out (the realtime layer filters by its own subscriptions).
      const held = track.held ?? [];
      track.held = null;
      const current = this.#tracks.get(channel) === track;
      held.sort((a, b) => (a.epoch === b.epoch ? a.offset - b.offset : 0));
      for (const pub of held) {
        if (!current) this.#deliver(pub);
        else if (track.position !== null && pub.epoch === track.position.epoch && pub.offset <= track.position.offset) continue;
        // What history could not refill is a gap the subscribers see: deliver in order, no second refill.
        else this.#accept(track, pub);
      }
    }
  }

  #deliver(pub: Publication): void {
    this.#handler?.onPublication(pub);
  }
}
