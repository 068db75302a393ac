/**
 * One subscription of a {@link Client}: a channel (or a pattern), the
 * position of the last publication delivered, and the events of the
 * channel. The client restores it after every reconnect with `since` = that
 * position, and drops what it delivered already, so the application sees
 * each publication once and in order (docs/protocol.md, "Offsets, epochs
 * and resume").
 *
 * A channel subscription takes publications only while it is confirmed on
 * the current connection: before the server's `ok`, a publication of the
 * channel can only have come through a pattern subscription of the same
 * connection (the server sends a channel subscription's own publications
 * after its `ok`), and taking it would move the position past publications
 * the resubscription is about to replay. A publication that does not follow
 * the last one (an offset gap in the same epoch, or another epoch) is not
 * delivered: the subscription goes back to `pending` and the client
 * resubscribes from the last position (the broker contract: offsets grow by
 * exactly one per publication within an epoch; gaps are refilled from
 * history).
 */
import { isPattern, matchesPattern } from '../wire/channel.js';
import type { ClientInfo, Publication, StreamPosition } from '../wire/messages.js';
import { Emitter, reportListenerError } from './emitter.js';
import type { ClientError } from './errors.js';

/** What `subscribed` and `recovered` report. */
export interface SubscribedEvent {
  channel: string;
  /**
   * Whether the subscription continues without a gap: true for a first
   * subscription, and for a resubscription the server could serve from
   * history (every missed publication follows). False when publications may
   * have been missed: the history no longer reaches back (or its epoch
   * changed), or the subscription is a pattern (patterns cannot resume). On
   * false, reload the state (e.g. with `client.history()`).
   */
  recovered: boolean;
  /** Whether this was a resubscription with `since` (after a reconnect, or with the `since` option). */
  resumed: boolean;
  /** The subscription's position now (null for patterns). */
  position: StreamPosition | null;
}

/** Presence counts (namespaces with `presence: 'counts'`). */
export interface PresenceCounts {
  clients: number;
  users: number;
}

export interface SubscriptionEvents {
  /** A publication, once, in order. */
  message: Publication;
  /** Clients that joined (subscriptions with `presence: true` in a `presence: 'full'` namespace). */
  join: ClientInfo[];
  /** Clients that left. */
  leave: ClientInfo[];
  /** Presence counts (in a `presence: 'counts'` namespace). */
  count: PresenceCounts;
  /** The server confirmed the subscription (first time and after every reconnect). */
  subscribed: SubscribedEvent;
  /** A resubscription with `since` was answered: `recovered` says whether anything was missed. */
  recovered: SubscribedEvent;
  /** The server refused the subscription (it is dropped: state `failed`). */
  error: ClientError;
  /** `unsubscribe()` was called. */
  unsubscribed: { channel: string };
}

export interface SubscribeOptions {
  /** Resume after this position: the publications after it come first (when the history reaches back), then live ones. Not for patterns. */
  since?: StreamPosition;
  /** Receive join/leave (or count) events for the channel. Default false. */
  presence?: boolean;
  /** Each publication, once, in order. */
  onMessage?(publication: Publication): void;
  /** Clients that joined. */
  onJoin?(clients: ClientInfo[]): void;
  /** Clients that left. */
  onLeave?(clients: ClientInfo[]): void;
  /** Presence counts. */
  onCount?(counts: PresenceCounts): void;
  /** The server confirmed the subscription; `recovered: false` means publications may have been missed. */
  onSubscribed?(event: SubscribedEvent): void;
  /** The server refused the subscription. */
  onError?(error: ClientError): void;
}

/**
 * - `pending`: waiting for the server's confirmation (also while disconnected,
 *   and while it is redone after a gap);
 * - `subscribed`: confirmed on the current connection;
 * - `unsubscribed`: `unsubscribe()` was called;
 * - `failed`: the server refused it (permissions, invalid name, limit).
 */
export type SubscriptionState = 'pending' | 'subscribed' | 'unsubscribed' | 'failed';

/**
 * What became of a publication handed to a subscription: `delivered` to the
 * application; `duplicate` (seen already); `gap` (it does not follow the
 * last one: the subscription must be resynchronized); `ignored` (the
 * subscription is not taking publications now).
 */
export type DeliveryResult = 'delivered' | 'duplicate' | 'gap' | 'ignored';

/**
 * Resyncs after gaps with no publication in order between them, after which
 * a subscription stops checking for gaps until the next connection: a server
 * that does not keep offsets contiguous would otherwise make it unsubscribe
 * and subscribe for ever.
 */
export const MAX_GAPS_IN_A_ROW = 3;

/** Pattern subscriptions track this many concrete channels for dedupe; past it the map starts over. */
const MAX_TRACKED_CHANNELS = 10000;

/**
 * Whether a publication is new for a reader whose last delivered position is
 * `last`: volatile ones always are (they have no offset of their own); else
 * one at or below `last.offset` in the same epoch was delivered already. A
 * new epoch starts over (the history was lost).
 */
export function isNewPublication(last: StreamPosition | null | undefined, pub: Pick<Publication, 'offset' | 'epoch' | 'volatile'>): boolean {
  if (pub.volatile) return true;
  if (!last) return true;
  return !(pub.epoch === last.epoch && pub.offset <= last.offset);
}

export class Subscription extends Emitter<SubscriptionEvents> {
  /** The channel or pattern. */
  readonly channel: string;
  /** Whether `channel` is a pattern (`+`, `#`). */
  readonly isPattern: boolean;
  /** Whether presence events were asked for. */
  readonly presence: boolean;
  #state: SubscriptionState = 'pending';
  #position: StreamPosition | null;
  /** Patterns: the last position per concrete channel. */
  #positions: Map<string, StreamPosition> | null;
  readonly #options: SubscribeOptions;
  readonly #unsubscribe: (sub: Subscription) => Promise<void>;
  /** Confirmed at least once (a later confirmation is a resubscription). */
  #everSubscribed = false;
  /** A gap was seen: the client must unsubscribe and subscribe again from the position. */
  #resync = false;
  /** Gaps since the last publication delivered in order. */
  #gapsInARow = 0;
  /** Cleared after MAX_GAPS_IN_A_ROW gaps in a row, until the next connection. */
  #checkGaps = true;

  /** @internal Created by `Client#subscribe`. */
  constructor(channel: string, options: SubscribeOptions, unsubscribe: (sub: Subscription) => Promise<void>) {
    super();
    this.channel = channel;
    this.isPattern = isPattern(channel);
    this.presence = options.presence === true;
    this.#options = options;
    this.#unsubscribe = unsubscribe;
    this.#position = !this.isPattern && options.since ? { offset: options.since.offset, epoch: options.since.epoch } : null;
    this.#positions = this.isPattern ? new Map() : null;
  }

  get state(): SubscriptionState {
    return this.#state;
  }

  /**
   * The position of the last publication delivered (or the channel's
   * position when the subscription was confirmed, before any). What the
   * client resumes from after a reconnect. Null for patterns and before the
   * first confirmation.
   */
  get position(): StreamPosition | null {
    return this.#position ? { ...this.#position } : null;
  }

  /**
   * Stop receiving (at once: nothing more is delivered). Resolves when the
   * server no longer has the subscription: its `unsub` was answered (also
   * when it had to wait for the reply to a `sub` still on its way), at once
   * when not connected, or when the connection drops. The channel may be
   * subscribed again right away (`client.subscribe()`); the client sends
   * that `sub` after the `unsub` is answered.
   */
  unsubscribe(): Promise<void> {
    if (this.#state === 'unsubscribed' || this.#state === 'failed') return Promise.resolve();
    this.#state = 'unsubscribed';
    // The client first: an 'unsubscribed' listener may subscribe to the channel again.
    const done = this.#unsubscribe(this);
    this.#emit('unsubscribed', { channel: this.channel });
    return done;
  }

  /** Whether this subscription receives publications of `channel`. */
  matches(channel: string): boolean {
    return this.isPattern ? matchesPattern(this.channel, channel) : this.channel === channel;
  }

  // ---- @internal, driven by the client -------------------------------------------

  /** @internal Whether the subscription is still wanted (pending or subscribed). */
  get active(): boolean {
    return this.#state === 'pending' || this.#state === 'subscribed';
  }

  /** @internal The `since` to send: the last position, for channels that have one. */
  resumeFrom(): StreamPosition | undefined {
    return this.isPattern || !this.#position ? undefined : { ...this.#position };
  }

  /** @internal The connection dropped: back to pending (resubscribed on reconnect). */
  markPending(): void {
    if (this.#state === 'subscribed') this.#state = 'pending';
    this.#resync = false;
    this.#gapsInARow = 0;
    this.#checkGaps = true;
  }

  /** @internal Whether a gap was seen and the server's subscription must be redone from the position. */
  get needsResync(): boolean {
    return this.#resync;
  }

  /**
   * @internal The server's `ok` to `sub`. `since` is what was sent; the
   * reply carries `position` and, with `since`, `recovered`.
   */
  confirmed(reply: { position?: StreamPosition; recovered?: boolean }, since: StreamPosition | undefined): SubscribedEvent {
    const resumed = since !== undefined || (this.isPattern && this.#everSubscribed);
    let recovered: boolean;
    if (since !== undefined) {
      recovered = reply.recovered === true;
      // Recovered: the missed publications follow, after `since`; keep it. Not: start from now.
      if (!recovered && reply.position) this.#position = { ...reply.position };
    } else if (this.isPattern) {
      recovered = !this.#everSubscribed;
      this.#positions?.clear();
    } else {
      recovered = true;
      if (reply.position) this.#position = { ...reply.position };
    }
    this.#everSubscribed = true;
    this.#resync = false;
    this.#state = 'subscribed';
    const event: SubscribedEvent = { channel: this.channel, recovered, resumed, position: this.position };
    this.#emit('subscribed', event);
    this.#call(this.#options.onSubscribed, event);
    if (resumed) this.#emit('recovered', event);
    return event;
  }

  /** @internal The server refused the subscription. */
  failed(error: ClientError): void {
    this.#state = 'failed';
    this.#emit('error', error);
    this.#call(this.#options.onError, error);
  }

  /**
   * @internal A publication for this subscription. Patterns: delivered unless
   * seen already (per concrete channel; patterns cannot resume, so a gap is
   * not theirs to fill). Channels: only while confirmed on this connection;
   * a repeat is dropped; one that does not follow the last position (an
   * offset gap, another epoch) is not delivered and puts the subscription
   * back to `pending` with `needsResync` set, for the client to subscribe
   * again from the position.
   */
  deliver(pub: Publication): DeliveryResult {
    if (this.#positions) {
      if (!this.active) return 'ignored';
      const last = this.#positions.get(pub.channel);
      if (!isNewPublication(last, pub)) return 'duplicate';
      if (!pub.volatile) {
        if (last === undefined && this.#positions.size >= MAX_TRACKED_CHANNELS) this.#positions.clear();
        this.#positions.set(pub.channel, { offset: pub.offset, epoch: pub.epoch });
      }
    } else {
      if (this.#state !== 'subscribed') return 'ignored';
      const last = this.#position;
      if (!pub.volatile && last) {
        if (pub.epoch === last.epoch && pub.offset <= last.offset) return 'duplicate';
        if (pub.epoch === last.epoch && pub.offset === last.offset + 1) this.#gapsInARow = 0;
        else if (this.#checkGaps) {
          if (++this.#gapsInARow > MAX_GAPS_IN_A_ROW) {
            // Resyncing does not help: take the publications as they come (repeats are still dropped).
            this.#checkGaps = false;
          } else {
            this.#state = 'pending';
            this.#resync = true;
            return 'gap';
          }
        }
      }
      if (!pub.volatile) this.#position = { offset: pub.offset, epoch: pub.epoch };
    }
    this.#emit('message', pub);
    this.#call(this.#options.onMessage, pub);
    return 'delivered';
  }

  /** @internal Presence events. */
  joined(clients: ClientInfo[]): void {
    if (!this.active) return;
    this.#emit('join', clients);
    this.#call(this.#options.onJoin, clients);
  }

  left(clients: ClientInfo[]): void {
    if (!this.active) return;
    this.#emit('leave', clients);
    this.#call(this.#options.onLeave, clients);
  }

  counted(counts: PresenceCounts): void {
    if (!this.active) return;
    this.#emit('count', counts);
    this.#call(this.#options.onCount, counts);
  }

  #emit<K extends keyof SubscriptionEvents & string>(event: K, payload: SubscriptionEvents[K]): void {
    this.emit(event, payload);
  }

  #call<T>(callback: ((payload: T) => void) | undefined, payload: T): void {
    if (!callback) return;
    try {
      callback.call(this.#options, payload);
    } catch (err) {
      reportListenerError(err);
    }
  }
}
