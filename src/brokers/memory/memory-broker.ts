/**
 * `MemoryBroker`: the Broker contract (../broker.ts) inside one process. The
 * default broker: nothing to run, and nothing survives a restart (a restart
 * is a new epoch everywhere) unless its state is saved and restored (see
 * snapshot.ts). This file is the broker's nodes and their delivery; beside
 * it are the channel streams they share (stream.ts: what state is kept and
 * for how long, epochs and offsets), `MemoryPresenceStore` (presence.ts),
 * and snapshots (snapshot.ts; snapshot-file.ts keeps them in a file). The
 * public names of all of these are exported from here.
 *
 * Runtime-agnostic: no `node:` imports; randomness from
 * `globalThis.crypto.getRandomValues`, one `setInterval` (unref'd where the
 * runtime has `unref`).
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
 */
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
import { brokerError, invalidChannel } from '../errors.js';
import { checkSnapshot, loadSnapshot, takeSnapshot, type MemoryBrokerSnapshot } from './snapshot.js';
import { randomId, StreamTable } from './stream.js';

export { MemoryPresenceStore } from './presence.js';
export type { MemoryBrokerSnapshot, StreamSnapshot } from './snapshot.js';
export { randomId };

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

class PresenceEvent {
  constructor(
    readonly kind: 'join' | 'leave',
    readonly channel: string,
    readonly info: ClientInfo,
  ) {}
}

/** Set while {@link MemoryBroker.peer} constructs a node: the node whose backend the new one joins. */
let joining: MemoryBroker | undefined;

/**
 * A single-process Broker. See the module comment for the rules on delivery
 * and nodes, and stream.ts for those on state and epochs.
 */
export class MemoryBroker implements Broker, NodeBus {
  /** This node's id among its peers (NodeBus). */
  readonly nodeId = randomId(8);
  /** No wire in between: any size. */
  readonly maxNodeMessageBytes = Number.MAX_SAFE_INTEGER;
  #nodeHandler: ((message: string) => void) | undefined = undefined;
  readonly #now: () => number;
  readonly #timer: ReturnType<typeof setInterval> | undefined;
  readonly #onError: (err: unknown) => void;
  readonly #options: MemoryBrokerOptions;

  // The backend, shared with peers: its streams (with its id and revision), and the open nodes.
  readonly #streams: StreamTable;
  /** The open nodes of the backend, this one included. */
  readonly #nodes: Set<MemoryBroker>;

  // This node: its subscriptions, handler and delivery queue.
  readonly #exact = new Set<string>();
  readonly #patterns = new PatternIndex<string>();

  #handler: BrokerHandler | undefined = undefined;
  readonly #queue: Array<Publication | PresenceEvent> = [];
  #draining = false;
  #closed = false;

  constructor(options: MemoryBrokerOptions = {}) {
    this.#options = options;
    const backend = joining;
    if (backend === undefined) {
      const nodes = new Set<MemoryBroker>();
      const limits = {
        maxChannels: Math.max(1, options.maxChannels ?? 100_000),
        maxIdempotencyKeys: Math.max(1, options.maxIdempotencyKeys ?? 1000),
        historyMetaTtlMs: Math.max(0, options.historyMetaTtlMs ?? 24 * 3600_000),
      };
      // A subscription by name on any node keeps the channel's stream.
      const subscribedByName = (channel: string): boolean => {
        for (const node of nodes) if (node.#exact.has(channel)) return true;
        return false;
      };
      this.#nodes = nodes;
      this.#streams = new StreamTable(limits, subscribedByName);
    } else {
      this.#nodes = backend.#nodes;
      this.#streams = backend.#streams;
    }
    this.#nodes.add(this);
    this.#now = options.now ?? Date.now;
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
    return this.#streams.id;
  }

  /**
   * A number that changes whenever the state a snapshot would show changes
   * (a stored publication, a key, a dropped stream): a caller saving
   * snapshots now and then skips the save when it did not move.
   */
  get revision(): number {
    return this.#streams.revision;
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

  async listenNodes(handler: (message: string) => void): Promise<void> {
    this.#checkOpen();
    this.#nodeHandler = handler;
  }

  /** To an open peer that listens: delivered in a microtask (in send order); otherwise false. */
  async sendToNode(to: string, message: string): Promise<boolean> {
    this.#checkOpen();
    checkNodeMessage(this, to, message);
    for (const node of this.#nodes) {
      if (node.nodeId !== to || node.#nodeHandler === undefined) continue;
      queueMicrotask(() => {
        const handler = node.#nodeHandler;
        if (handler === undefined) return;
        try {
          handler(message);
        } catch (err) {
          node.#onError(err);
        }
      });
      return true;
    }
    return false;
  }

  /** The open peers that listen (this one included). */
  async nodes(): Promise<string[]> {
    this.#checkOpen();
    const out: string[] = [];
    for (const node of this.#nodes) if (node.#nodeHandler !== undefined) out.push(node.nodeId);
    return out;
  }

  async publish(channel: string, data: unknown, options: PublishOptions = {}): Promise<PublishResult> {
    this.#checkOpen();
    if (!isValidChannel(channel)) throw invalidChannel(channel);
    const streams = this.#streams;
    const now = this.#now();
    let stream = streams.access(channel, now);

    const key = options.idempotencyKey;
    if (key !== undefined && stream !== undefined) {
      const seen = stream.published(key, now);
      if (seen !== undefined) return { offset: seen, epoch: stream.epoch, duplicate: true };
    }

    if (options.volatile) {
      // Volatile: delivered, never stored, and no offset of its own (it carries
      // the current position), so history keeps no gap for it.
      const position = streams.position(channel, stream);
      const vpub: Publication = { channel, ...position, data, time: now, volatile: true };
      if (options.from !== undefined) vpub.from = options.from;
      this.#deliver(channel, vpub);
      return { ...position, duplicate: false };
    }

    const history = options.history;
    stream = streams.advance(channel, stream, (history !== undefined && history.size > 0) || key !== undefined);
    // No stream: nothing would keep one, so a throwaway epoch and no state.
    const epoch = stream === undefined ? randomId(8) : stream.epoch;
    const offset = stream === undefined ? 1 : stream.offset;

    const from = options.from;
    const pub: Publication =
      from === undefined ? { channel, offset, epoch, data, time: now } : { channel, offset, epoch, data, from, time: now };
    if (stream !== undefined) streams.store(channel, stream, pub, history, key, options.idempotencyTtlMs ?? DEFAULT_IDEMPOTENCY_TTL_MS, now);

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
      this.#streams.access(channel, this.#now()); // drops the stream if that was all that kept it
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
    const stream = this.#streams.access(channel, this.#now());
    const position = this.#streams.position(channel, stream);
    const limit = filter.limit === undefined || !(filter.limit < Infinity) ? Infinity : Math.max(0, Math.floor(filter.limit));
    const since = filter.since;

    if (since !== undefined) {
      if (since.epoch !== position.epoch || !(since.offset >= 0) || since.offset > position.offset) {
        return { publications: [], position, recovered: false };
      }
      if (stream === undefined || since.offset === position.offset) return { publications: [], position, recovered: true };
      const { publications, recovered } = stream.after(since.offset, limit);
      return { publications, position, recovered };
    }

    if (stream === undefined) return { publications: [], position, recovered: false };
    return { publications: stream.newest(limit), position, recovered: false };
  }

  async removeHistory(channel: string): Promise<void> {
    this.#checkOpen();
    if (!isValidChannel(channel)) throw invalidChannel(channel);
    const stream = this.#streams.byChannel.get(channel);
    if (stream !== undefined) this.#streams.drop(channel, stream);
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
    this.#nodeHandler = undefined;
  }

  /**
   * Evict expired publications and idempotency keys of every channel and
   * drop idle streams. The sweep timer calls this; O(channels).
   */
  sweep(): void {
    if (this.#closed) return;
    this.#streams.sweep(this.#now());
  }

  /**
   * The backend's state as plain data, expired entries left out. `final`:
   * nothing will publish on this backend any more (say so only then: a
   * final snapshot's epochs are reused by `restore`). The publications are
   * the stored objects, not copies: serialize before publishing again.
   */
  snapshot(options: { final?: boolean } = {}): MemoryBrokerSnapshot {
    this.sweep();
    return takeSnapshot(this.#streams, this.#now(), options.final === true);
  }

  /**
   * Load a snapshot (see snapshot.ts: a final one keeps its epochs, any
   * other gets new ones). Only into a backend without streams, before
   * anything is published; checks the snapshot's shape first and throws a
   * TypeError naming the first bad field, leaving the broker untouched.
   */
  restore(snapshot: unknown): void {
    this.#checkOpen();
    const snap = checkSnapshot(snapshot);
    if (this.#streams.size > 0) throw new Error('restore: the broker already has channel streams');
    loadSnapshot(this.#streams, snap, this.#now());
  }

  stats(): MemoryBrokerStats {
    return { ...this.#streams.counts(), subscriptions: this.#exact.size, patterns: this.#patterns.size };
  }

  // ---- internals --------------------------------------------------------

  #checkOpen(): void {
    if (this.#closed) throw brokerError('RT_ERR_BROKER_CLOSED', 'The broker is closed');
  }

  /** Queue `item` for every node subscribed to `channel` (by name or by pattern), once per node. */
  #deliver(channel: string, item: Publication | PresenceEvent): void {
    for (const node of this.#nodes) if (node.#exact.has(channel) || node.#patterns.hasMatch(channel)) node.#enqueue(item);
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

function reportError(err: unknown): void {
  console.error('switchboard memory broker: a delivery handler threw (delivery goes on):', err);
}
