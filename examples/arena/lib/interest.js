// @ts-check
/**
 * Interest management: the world is a grid of square areas; the state of each
 * area is computed once per tick (codec.js: a keyframe or a delta). A player
 * needs the 2×2 block of areas around it: with areas at least twice its view
 * half-extent wide, that block always covers everything it can see, whatever
 * its position inside the block. Each block has a channel
 * (`arena/<ax>-<ay>`, its top-left area's column and row) that carries, once
 * per tick, the messages of its areas together; a player subscribes to one
 * block channel, so each tick costs one delivery and one WebSocket frame per
 * player, not four (docs/guides/state-sync.md explains why block channels and
 * not per-player filtering, nor one channel per area).
 *
 * The block changes with hysteresis (`margin`): a player on the line between
 * two blocks does not flip its subscriptions back and forth on every step.
 *
 * Browser-safe, pure: no I/O, no clocks.
 */

/** @typedef {import('./config.js').ArenaConfig} ArenaConfig */

/**
 * @typedef {object} Block
 * @property {number} ax column of the block's top-left area
 * @property {number} ay row of the block's top-left area
 */

export class AreaGrid {
  /** @param {ArenaConfig} config */
  constructor(config) {
    this.size = config.areaSize;
    this.margin = config.margin;
    this.prefix = config.channelPrefix;
    /** Areas across and down. */
    this.cols = Math.max(1, Math.ceil(config.width / config.areaSize));
    this.rows = Math.max(1, Math.ceil(config.height / config.areaSize));
    this.count = this.cols * this.rows;
  }

  /** The area holding a point (points outside the world are clamped to it). */
  areaOf(/** @type {number} */ x, /** @type {number} */ y) {
    const ax = clamp(Math.floor(x / this.size), 0, this.cols - 1);
    const ay = clamp(Math.floor(y / this.size), 0, this.rows - 1);
    return ay * this.cols + ax;
  }

  /** The channel of a block: `<prefix>/<ax>-<ay>`. */
  channel(/** @type {Block} */ block) {
    return `${this.prefix}/${block.ax}-${block.ay}`;
  }

  /** The block of a channel name, or null when it is not one of ours. */
  blockOfChannel(/** @type {string} */ channel) {
    if (!channel.startsWith(`${this.prefix}/`)) return null;
    const m = /^(\d{1,6})-(\d{1,6})$/.exec(channel.slice(this.prefix.length + 1));
    if (!m) return null;
    const ax = Number(m[1]);
    const ay = Number(m[2]);
    return ax <= Math.max(0, this.cols - 2) && ay <= Math.max(0, this.rows - 2) ? { ax, ay } : null;
  }

  /** Every block a player can be given (what the server publishes to), row by row. */
  blocks() {
    /** @type {Block[]} */
    const out = [];
    for (let ay = 0; ay <= Math.max(0, this.rows - 2); ay++) for (let ax = 0; ax <= Math.max(0, this.cols - 2); ax++) out.push({ ax, ay });
    return out;
  }

  /**
   * The 2×2 block for a player at (x, y). With `current`, the block is kept
   * while the player is still `margin` inside the region where it would be
   * chosen afresh; else the nearest block is picked.
   * @param {number} x
   * @param {number} y
   * @param {Block | null} [current]
   * @returns {Block}
   */
  blockFor(x, y, current = null) {
    const ax = this.#axis(x, current?.ax, this.cols);
    const ay = this.#axis(y, current?.ay, this.rows);
    if (current && current.ax === ax && current.ay === ay) return current;
    return { ax, ay };
  }

  /** One axis of blockFor: the block starting at column `start` covers [start·S, (start+2)·S]. */
  #axis(/** @type {number} */ v, /** @type {number | undefined} */ current, /** @type {number} */ n) {
    if (n <= 2) return 0;
    const s = this.size;
    if (current !== undefined) {
      // Chosen afresh in [start·S + S/2, start·S + 3S/2): keep it up to `margin` beyond.
      const lo = current * s + s / 2 - this.margin;
      const hi = current * s + (3 * s) / 2 + this.margin;
      if ((v >= lo || current === 0) && (v < hi || current === n - 2)) return current;
    }
    return clamp(Math.round(v / s) - 1, 0, n - 2);
  }

  /** The areas of a block (1, 2 or 4 of them: fewer at a world smaller than 2×2). */
  areasOf(/** @type {Block} */ block) {
    /** @type {number[]} */
    const out = [];
    for (let dy = 0; dy < Math.min(2, this.rows); dy++) {
      for (let dx = 0; dx < Math.min(2, this.cols); dx++) out.push((block.ay + dy) * this.cols + block.ax + dx);
    }
    return out;
  }
}

/**
 * What to subscribe to and unsubscribe from when the wanted areas change.
 * @param {Iterable<number>} have
 * @param {Iterable<number>} want
 */
export function interestChange(have, want) {
  const haveSet = new Set(have);
  const wantSet = new Set(want);
  return {
    subscribe: [...wantSet].filter((a) => !haveSet.has(a)),
    unsubscribe: [...haveSet].filter((a) => !wantSet.has(a)),
  };
}

function clamp(/** @type {number} */ v, /** @type {number} */ lo, /** @type {number} */ hi) {
  return v < lo ? lo : v > hi ? hi : v;
}
