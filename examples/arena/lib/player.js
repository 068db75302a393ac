// @ts-check
/**
 * One player's side of the arena over the Switchboard SDK, shared by the
 * browser page and the bots: join, keep the subscription to the channel of
 * the 2×2 block of areas around the player (interest.js), apply each area's
 * keyframes and deltas from it (codec.js), ask for an area's keyframe at once
 * when the area is new to us or after a gap, send the keys held (numbered,
 * only when they change, by `send`: no reply, the state acknowledges them),
 * and join again after a reconnect (the server forgets the player of a
 * closed connection).
 *
 * Browser-safe; the SDK client comes in as a parameter.
 */
import { AreaState, readBlockMessage } from './codec.js';
import { AreaGrid, interestChange } from './interest.js';

/**
 * Keys not acknowledged by the state (our player's `ack`) this long after they were sent are sent
 * again, numbered anew: a `send` that was dropped (over the connection's rate budget, or lost in a
 * reconnect) is not retried by the SDK, and keys are sent only when they change.
 */
export const INPUT_RESEND_MS = 250;

/** @typedef {import('./config.js').ArenaConfig} ArenaConfig */
/** @typedef {import('./interest.js').Block} Block */
/** @typedef {{ readonly channel: string, readonly state: string, unsubscribe(): Promise<void> }} BlockSubscription the part of the SDK's Subscription this needs */

/**
 * The part of the SDK's Client this needs.
 * @typedef {object} SdkClient
 * @property {(method: string, data?: unknown) => Promise<any>} rpc
 * @property {(method: string, data?: unknown) => boolean} send
 * @property {(channel: string, options: { onMessage(pub: { channel: string, data: unknown }): void, onSubscribed?(): void }) => BlockSubscription} subscribe
 * @property {(event: 'connected', listener: () => void) => unknown} on
 */

/**
 * @typedef {object} ArenaPlayerOptions
 * @property {string} name
 * @property {'centre' | 'random'} [spawn]
 * @property {(area: number, state: AreaState, kind: string) => void} [onArea] after each applied message
 * @property {(info: { id: number }) => void} [onJoined]
 * @property {(err: unknown) => void} [onError]
 */

export class ArenaPlayer {
  /**
   * @param {SdkClient} client
   * @param {ArenaPlayerOptions} options
   */
  constructor(client, options) {
    this.client = client;
    this.options = options;
    /** @type {ArenaConfig | null} */
    this.config = null;
    /** @type {AreaGrid | null} */
    this.grid = null;
    /** Our player's id (changes when we join again). */
    this.id = 0;
    /** The areas of our block, by area number. @type {Map<number, { state: AreaState, asking: boolean }>} */
    this.areas = new Map();
    /** @type {Block | null} */
    this.block = null;
    /** The subscription to our block's channel. @type {BlockSubscription | null} */
    this.sub = null;
    /** Subscriptions to blocks we left, kept until the current one is confirmed. @type {BlockSubscription[]} */
    this.leaving = [];
    this.keys = 0;
    this.inputSeq = 0;
    /** When the keys last went out (Date.now()). */
    this.inputSentAt = 0;
    /** Counters for the overlay and the bots' summary. */
    this.counters = { messages: 0, keyframes: 0, deltas: 0, gaps: 0, waiting: 0, old: 0, invalid: 0, keyframeAsks: 0, joins: 0 };
    this.joined = false;
    this.#wasConnected = false;
    client.on('connected', () => {
      // A reconnect: the server removed the player of the old connection.
      if (this.#wasConnected && this.joined) this.join().catch((err) => this.#fail(err));
      this.#wasConnected = true;
    });
  }

  /** @type {boolean} */
  #wasConnected;

  #fail(/** @type {unknown} */ err) {
    this.options.onError?.(err);
  }

  /** Join (again): a new player for this connection, and the areas around it. */
  async join() {
    const reply = await this.client.rpc('arena.join', { name: this.options.name, spawn: this.options.spawn ?? 'centre' });
    this.config = reply.config;
    if (!this.grid) this.grid = new AreaGrid(/** @type {ArenaConfig} */ (this.config));
    this.id = reply.id;
    this.joined = true;
    this.counters.joins++;
    // A new player holds no keys on the server: send ours (the numbers go on increasing).
    if (this.keys !== 0) this.#sendKeys();
    this.follow(reply.x, reply.y);
    this.options.onJoined?.({ id: this.id });
    return reply;
  }

  /**
   * Keep the subscription to the block around (x, y): call with the player's position
   * as it moves. On a new block, areas left behind are forgotten, the areas both
   * blocks hold go on (their messages and sequence numbers are the same on every
   * block channel), new ones start empty. The old block's channel is left only
   * once the server confirmed the new one, so nothing is missed meanwhile (a
   * message that comes on both is applied once: the second is `'old'`).
   */
  follow(/** @type {number} */ x, /** @type {number} */ y) {
    const grid = this.grid;
    if (!grid) return;
    const block = grid.blockFor(x, y, this.block);
    if (block === this.block) return;
    this.block = block;
    const { subscribe, unsubscribe } = interestChange(this.areas.keys(), grid.areasOf(block));
    for (const area of unsubscribe) this.areas.delete(area);
    for (const area of subscribe) this.areas.set(area, { state: new AreaState(), asking: false });
    const channel = grid.channel(block);
    if (this.sub) this.leaving.push(this.sub);
    // Back to a block we are still leaving: that subscription is the current one again.
    const kept = this.leaving.findIndex((sub) => sub.channel === channel);
    if (kept >= 0) {
      this.sub = this.leaving.splice(kept, 1)[0];
      if (this.sub.state === 'subscribed') this.#onSubscribed(this.sub);
      return;
    }
    /** @type {BlockSubscription} */
    const sub = this.client.subscribe(channel, {
      onMessage: (pub) => this.#onBlock(pub.data),
      onSubscribed: () => this.#onSubscribed(sub),
    });
    this.sub = sub;
  }

  /**
   * A block's subscription is confirmed (again, after a reconnect). For the current one: leave
   * the blocks we left, and ask the state now of every area that has none yet, without waiting
   * for the periodic keyframes. (After a reconnect the others see a gap in seq and ask then,
   * unless nothing was missed.)
   */
  #onSubscribed(/** @type {BlockSubscription} */ sub) {
    if (sub !== this.sub) return;
    for (const old of this.leaving.splice(0)) old.unsubscribe().catch(() => {});
    for (const [area, entry] of this.areas) if (entry.state.seq === 0 || entry.state.stale) this.#askKeyframe(area);
  }

  /** A block channel's publication: each of our areas' messages in it. */
  #onBlock(/** @type {unknown} */ data) {
    const pairs = readBlockMessage(data);
    if (pairs === null) {
      this.counters.invalid++;
      return;
    }
    for (let i = 0; i < pairs.length; i += 2) {
      const area = /** @type {number} */ (pairs[i]);
      const entry = this.areas.get(area);
      if (entry) this.#onMessage(area, entry.state, pairs[i + 1]);
    }
  }

  #onMessage(/** @type {number} */ area, /** @type {AreaState} */ state, /** @type {unknown} */ data) {
    if (this.areas.get(area)?.state !== state) return;
    this.counters.messages++;
    const kind = state.apply(data);
    if (kind === 'keyframe') this.counters.keyframes++;
    else if (kind === 'delta') this.counters.deltas++;
    else if (kind === 'waiting') this.counters.waiting++;
    else if (kind === 'gap') {
      this.counters.gaps++;
      this.#askKeyframe(area);
    } else if (kind === 'old') this.counters.old++;
    else this.counters.invalid++;
    if (kind === 'keyframe' || kind === 'delta') {
      this.#resendUnacknowledged();
      this.options.onArea?.(area, state, kind);
    }
  }

  /** The state does not have our latest input yet, a while after it went: send the keys again. */
  #resendUnacknowledged() {
    if (!this.joined || this.inputSeq === 0 || Date.now() - this.inputSentAt < INPUT_RESEND_MS) return;
    const mine = this.self();
    if (mine !== null && mine.p.ack < this.inputSeq) this.#sendKeys();
  }

  /** One keyframe request per area at a time; its answer goes through the same path as a published keyframe. */
  #askKeyframe(/** @type {number} */ area) {
    const entry = this.areas.get(area);
    if (!entry || entry.asking) return;
    entry.asking = true;
    this.counters.keyframeAsks++;
    this.client.rpc('arena.keyframe', { area }).then(
      (data) => {
        entry.asking = false;
        if (this.areas.get(area) === entry) this.#onMessage(area, entry.state, data);
      },
      (err) => {
        entry.asking = false;
        this.#fail(err);
      },
    );
  }

  /** Our player as the areas last told (null before the first keyframe that has it). */
  self() {
    for (const { state } of this.areas.values()) {
      const p = state.players.get(this.id);
      if (p) return { p, tick: state.tick };
    }
    return null;
  }

  /** Hold these keys (Key bits) from now on. Sent only when they change. Returns the input's number, or 0 if unchanged. */
  setKeys(/** @type {number} */ keys) {
    if (keys === this.keys) return 0;
    this.keys = keys;
    if (!this.joined) return 0;
    return this.#sendKeys();
  }

  #sendKeys() {
    const s = ++this.inputSeq;
    this.inputSentAt = Date.now();
    this.client.send('arena.input', { s, k: this.keys });
    return s;
  }
}
