// @ts-check
/**
 * The state codec: what one area sends each tick, shared by the server
 * (AreaEncoder) and the browser and bots (AreaState). Browser-safe: it
 * builds and reads plain arrays of small integers; the wire codec
 * (`switchboard.v1.msgpack`) turns them into MessagePack once per block
 * channel and tick, for every subscriber (the hub's SharedMessage).
 *
 * A block channel (`arena/<ax>-<ay>`, interest.js) carries one publication
 * per tick: the messages of its areas, `[area, message, area, message, …]`
 * (blockMessage, readBlockMessage). An area's message is computed once per
 * tick and goes, as the same array, into each of the (up to 4) blocks that
 * hold the area. Area messages:
 *
 *   keyframe  [0, seq, tick, players, gems]
 *   delta     [1, seq, tick, moved, entered, left, changed, gemsAdded, gemsRemoved]
 *
 * - `seq` counts the area's messages (1, 2, …); a delta applies to the state
 *   after `seq - 1` only. A receiver that missed one (a dropped volatile
 *   frame) ignores deltas until the next keyframe, every `keyframeEvery`
 *   ticks, or asks for one (the `arena.keyframe` rpc).
 * - Positions are integers in `quantum` units (0.25 by default). The encoder
 *   remembers what it sent, so deltas are differences of quantized values
 *   and a receiver that applied them all holds exactly what the encoder
 *   holds: no drift, however long the chain.
 * - players  flat [id, qx, qy, score, name, ack, ackTick] × n (PLAYER_FIELDS)
 * - moved    flat [id, dqx, dqy] × n  (only players whose quantized position changed)
 * - entered  like players: came into the area (or joined)
 * - left     [id, …]: went to another area (or left the game)
 * - changed  flat [id, score, ack, ackTick] × n: score or input ack changed
 * - gems / gemsAdded  flat [id, qx, qy] × n; gemsRemoved [id, …]
 * Trailing empty lists of a delta are left out.
 *
 * Small integers are what MessagePack stores shortest (−32…127 in one byte),
 * which is why a moving player costs about 3 bytes a tick.
 */

export const KEYFRAME = 0;
export const DELTA = 1;
export const PLAYER_FIELDS = 7;
/** Deltas an AreaState keeps while it waits for a keyframe (a few ticks: what an rpc round trip takes). */
export const EARLY_DELTAS = 8;

/**
 * @typedef {object} PlayerState what a receiver knows of a player
 * @property {number} id
 * @property {number} qx
 * @property {number} qy
 * @property {number} score
 * @property {string} name
 * @property {number} ack last input sequence applied
 * @property {number} ackTick tick it was first applied at
 */

/**
 * @typedef {object} GemState
 * @property {number} id
 * @property {number} qx
 * @property {number} qy
 */

/** @typedef {{ id: number, name: string, x: number, y: number, score: number, ack: number, ackTick: number }} PlayerSource */
/** @typedef {{ id: number, x: number, y: number }} GemSource */

/** Encodes one area's messages. Keeps what it last sent, so deltas are exact. Server side. */
export class AreaEncoder {
  /**
   * @param {number} quantum position resolution, units
   * @param {number} keyframeEvery a keyframe every this many messages
   * @param {number} [phase] which message in the cycle is the keyframe (spread areas' keyframes over ticks)
   */
  constructor(quantum, keyframeEvery, phase = 0) {
    this.inv = 1 / quantum;
    this.keyframeEvery = keyframeEvery;
    this.phase = phase % keyframeEvery;
    /** Sequence number of the last message. */
    this.seq = 0;
    this.tick = 0;
    /**
     * What receivers hold after `seq`. Each entry's `mark` is the `seq` of the last message it was
     * in the area for: who left is whoever was not marked this time. (A Set of the ids seen, cleared
     * every tick, cost a new hash table per clear and per growth, made in the old generation once
     * the Set had lived there: most of what the arena's server allocated straight into the old
     * generation, and so most of its full collections; docs/benchmarks.md, "Game state sync".)
     * @type {Map<number, PlayerState & { mark: number }>}
     */
    this.players = new Map();
    /** @type {Map<number, GemState & { mark: number }>} */
    this.gems = new Map();
  }

  /**
   * The next message for this area: a keyframe when it is due (or `forceKeyframe`), else a delta.
   * @param {number} tick
   * @param {readonly PlayerSource[]} players the players in the area now
   * @param {readonly GemSource[]} gems the gems in the area now
   * @param {boolean} [forceKeyframe]
   * @returns {unknown[]}
   */
  encode(tick, players, gems, forceKeyframe = false) {
    this.seq++;
    this.tick = tick;
    const keyframe = forceKeyframe || this.seq === 1 || this.seq % this.keyframeEvery === this.phase;
    /** @type {number[]} */ const moved = [];
    /** @type {unknown[]} */ const entered = [];
    /** @type {number[]} */ const changed = [];
    const mark = this.seq;
    /** Players that were here before: when it is all of them, nobody left. */
    let stayed = 0;
    const before = this.players.size;
    for (const p of players) {
      const qx = Math.round(p.x * this.inv);
      const qy = Math.round(p.y * this.inv);
      const was = this.players.get(p.id);
      if (was === undefined) {
        const s = { id: p.id, qx, qy, score: p.score, name: p.name, ack: p.ack, ackTick: p.ackTick, mark };
        this.players.set(p.id, s);
        entered.push(p.id, qx, qy, p.score, p.name, p.ack, p.ackTick);
        continue;
      }
      stayed++;
      was.mark = mark;
      if (was.qx !== qx || was.qy !== qy) {
        moved.push(p.id, qx - was.qx, qy - was.qy);
        was.qx = qx;
        was.qy = qy;
      }
      if (was.score !== p.score || was.ack !== p.ack || was.ackTick !== p.ackTick) {
        changed.push(p.id, p.score, p.ack, p.ackTick);
        was.score = p.score;
        was.ack = p.ack;
        was.ackTick = p.ackTick;
      }
      // A rename is not a thing in this game; the name travels on entering and in keyframes.
    }
    /** @type {number[]} */ const left = [];
    if (stayed < before) forgetUnmarked(this.players, mark, left);
    /** @type {number[]} */ const gemsAdded = [];
    /** @type {number[]} */ const gemsRemoved = [];
    let kept = 0;
    const gemsBefore = this.gems.size;
    for (const g of gems) {
      const had = this.gems.get(g.id);
      if (had !== undefined) {
        had.mark = mark;
        kept++;
        continue;
      }
      const s = { id: g.id, qx: Math.round(g.x * this.inv), qy: Math.round(g.y * this.inv), mark };
      this.gems.set(g.id, s);
      gemsAdded.push(g.id, s.qx, s.qy);
    }
    if (kept < gemsBefore) forgetUnmarked(this.gems, mark, gemsRemoved);
    if (keyframe) return this.keyframe();
    const msg = [DELTA, this.seq, tick, moved, entered, left, changed, gemsAdded, gemsRemoved];
    while (msg.length > 3 && /** @type {unknown[]} */ (msg[msg.length - 1]).length === 0) msg.pop();
    return msg;
  }

  /** The full state after the last message, as a keyframe with its `seq` (what the `arena.keyframe` rpc answers). */
  keyframe() {
    /** @type {unknown[]} */ const players = [];
    for (const s of this.players.values()) players.push(s.id, s.qx, s.qy, s.score, s.name, s.ack, s.ackTick);
    /** @type {number[]} */ const gems = [];
    for (const g of this.gems.values()) gems.push(g.id, g.qx, g.qy);
    return [KEYFRAME, this.seq, this.tick, players, gems];
  }
}

/** Delete from `known` every entry not marked `mark`, listing its id in `out`. */
function forgetUnmarked(/** @type {Map<number, { id: number, mark: number }>} */ known, /** @type {number} */ mark, /** @type {number[]} */ out) {
  for (const s of known.values()) {
    if (s.mark !== mark) {
      out.push(s.id);
      known.delete(s.id);
    }
  }
}

/**
 * One area's state on the receiving side: applies keyframes and deltas in
 * sequence, notices gaps, never throws on bad input.
 *
 * While it has no usable state (before the first keyframe, after a gap) it
 * keeps the last few deltas it could not apply (EARLY_DELTAS), and applies
 * those that follow a keyframe when one comes. That covers the usual race
 * of the `arena.keyframe` rpc: its answer (the state at seq S) can be handed
 * to the application after the delta S+1 that the server sent right behind
 * it (an rpc reply settles a promise; a publication is delivered at once),
 * and without the kept delta the area would be stale again at once.
 *
 * `apply` answers what happened:
 * - `'keyframe'`, `'delta'`: applied; the state is now at `seq`;
 * - `'gap'`: a delta that does not follow the last applied message (one was
 *   lost): ignored; the state is stale until a keyframe (`stale` is true);
 * - `'waiting'`: a delta before the first keyframe (just subscribed): ignored;
 * - `'old'`: a message at or before the current `seq` (e.g. a delta older
 *   than the keyframe the rpc answered): ignored;
 * - `'invalid'`: not a message of this codec: ignored.
 */
export class AreaState {
  constructor() {
    /** Sequence number of the last applied message (0: nothing yet). */
    this.seq = 0;
    this.tick = 0;
    /** True until a keyframe arrives, and again after a gap. */
    this.stale = true;
    /** Messages known lost (gaps in seq), counted once each. */
    this.missed = 0;
    /** Highest seq seen, applied or not (gap accounting). */
    this.highest = 0;
    /** @type {Map<number, PlayerState>} */
    this.players = new Map();
    /** @type {Map<number, GemState>} */
    this.gems = new Map();
    /** Deltas that came while stale, oldest first (at most EARLY_DELTAS). @type {unknown[][]} */
    this.early = [];
  }

  /**
   * @param {unknown} data
   * @returns {'keyframe' | 'delta' | 'gap' | 'waiting' | 'old' | 'invalid'}
   */
  apply(data) {
    if (!Array.isArray(data) || data.length < 3) return 'invalid';
    const [kind, seq, tick] = data;
    if (!isUint(seq) || !isUint(tick) || (kind !== KEYFRAME && kind !== DELTA)) return 'invalid';
    if (seq > this.highest) {
      // Messages between the highest seen and this one never came (the channel is ordered).
      if (this.highest > 0) this.missed += seq - this.highest - 1;
      this.highest = seq;
    }
    if (seq <= this.seq) return 'old';
    if (kind === KEYFRAME) {
      const players = readPlayers(data[3]);
      const gems = readGems(data[4]);
      if (players === null || gems === null) return 'invalid';
      this.players.clear();
      for (const p of players) this.players.set(p.id, p);
      this.gems.clear();
      for (const g of gems) this.gems.set(g.id, g);
      this.seq = seq;
      this.tick = tick;
      this.stale = false;
      // Deltas that came before it and follow it: applied now, in order (one that does not is dropped).
      const early = this.early;
      this.early = [];
      for (const d of early) if (d[1] === this.seq + 1) this.#applyDelta(d);
      return 'keyframe';
    }
    // Subscribed mid-stream: deltas until the first keyframe are not a loss.
    if (this.seq === 0) {
      this.#keep(data);
      return 'waiting';
    }
    if (this.stale || seq !== this.seq + 1) {
      this.stale = true;
      this.#keep(data);
      return 'gap';
    }
    return this.#applyDelta(data);
  }

  /** Keep a delta that cannot be applied yet (the oldest goes past EARLY_DELTAS). */
  #keep(/** @type {unknown[]} */ data) {
    if (this.early.length >= EARLY_DELTAS) this.early.shift();
    this.early.push(data);
  }

  /**
   * Apply a delta that follows the current state (checked by the caller).
   * @param {unknown[]} data
   * @returns {'delta' | 'invalid'}
   */
  #applyDelta(data) {
    const seq = /** @type {number} */ (data[1]);
    const tick = /** @type {number} */ (data[2]);
    const moved = data[3] ?? [];
    const entered = readPlayers(data[4] ?? []);
    const left = data[5] ?? [];
    const changed = data[6] ?? [];
    const gemsAdded = readGems(data[7] ?? []);
    const gemsRemoved = data[8] ?? [];
    if (!isIntList(moved, 3) || entered === null || !isIntList(left, 1) || !isIntList(changed, 4) || gemsAdded === null || !isIntList(gemsRemoved, 1)) {
      return 'invalid';
    }
    for (let i = 0; i < moved.length; i += 3) {
      const p = this.players.get(moved[i]);
      if (p === undefined) continue;
      p.qx += moved[i + 1];
      p.qy += moved[i + 2];
    }
    for (const p of entered) this.players.set(p.id, p);
    for (const id of left) this.players.delete(id);
    for (let i = 0; i < changed.length; i += 4) {
      const p = this.players.get(changed[i]);
      if (p === undefined) continue;
      p.score = changed[i + 1];
      p.ack = changed[i + 2];
      p.ackTick = changed[i + 3];
    }
    for (const g of gemsAdded) this.gems.set(g.id, g);
    for (const id of gemsRemoved) this.gems.delete(id);
    this.seq = seq;
    this.tick = tick;
    return 'delta';
  }
}

/**
 * A block channel's publication: the messages of the block's areas, `[area, message, …]`.
 * @param {readonly number[]} areas the block's areas
 * @param {readonly unknown[]} messages this tick's message of every area, by area number
 */
export function blockMessage(areas, messages) {
  const out = new Array(areas.length * 2);
  for (let i = 0; i < areas.length; i++) {
    out[2 * i] = areas[i];
    out[2 * i + 1] = messages[areas[i]];
  }
  return out;
}

/**
 * The (area, message) pairs of a block channel's publication, flat, or null when it is not one.
 * The messages themselves are checked by AreaState.apply.
 * @param {unknown} data
 * @returns {unknown[] | null}
 */
export function readBlockMessage(data) {
  if (!Array.isArray(data) || data.length % 2 !== 0) return null;
  for (let i = 0; i < data.length; i += 2) if (!isUint(data[i])) return null;
  return data;
}

/** @returns {PlayerState[] | null} */
function readPlayers(/** @type {unknown} */ list) {
  if (!Array.isArray(list) || list.length % PLAYER_FIELDS !== 0) return null;
  /** @type {PlayerState[]} */
  const out = [];
  for (let i = 0; i < list.length; i += PLAYER_FIELDS) {
    const [id, qx, qy, score, name, ack, ackTick] = list.slice(i, i + PLAYER_FIELDS);
    if (!isUint(id) || !Number.isInteger(qx) || !Number.isInteger(qy) || !isUint(score) || typeof name !== 'string' || !isUint(ack) || !isUint(ackTick)) {
      return null;
    }
    out.push({ id, qx, qy, score, name, ack, ackTick });
  }
  return out;
}

/** @returns {GemState[] | null} */
function readGems(/** @type {unknown} */ list) {
  if (!isIntList(list, 3)) return null;
  /** @type {GemState[]} */
  const out = [];
  for (let i = 0; i < list.length; i += 3) out.push({ id: list[i], qx: list[i + 1], qy: list[i + 2] });
  return out;
}

/** @returns {list is number[]} */
function isIntList(/** @type {unknown} */ list, /** @type {number} */ stride) {
  if (!Array.isArray(list) || list.length % stride !== 0) return false;
  for (const v of list) if (!Number.isInteger(v)) return false;
  return true;
}

/** @returns {v is number} */
function isUint(/** @type {unknown} */ v) {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}
