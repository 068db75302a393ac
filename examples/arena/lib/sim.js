// @ts-check
/**
 * The game: players move with the keys they hold, bump into each other,
 * and collect gems. The server runs it (authoritative); the browser runs
 * `move` for its own player only, to predict it between snapshots.
 *
 * Pure and browser-safe: the random numbers come from a seeded generator and
 * time from the caller (one `step()` is one tick), so a test replays a game
 * exactly.
 */
import { AreaGrid } from './interest.js';
import { prng } from './prng.js';


/** @typedef {import('./config.js').ArenaConfig} ArenaConfig */

/** Input bits: the keys held. An input is one small integer (0..15). */
export const Key = Object.freeze({ Up: 1, Down: 2, Left: 4, Right: 8 });
export const ALL_KEYS = 15;

/**
 * @typedef {object} Player
 * @property {number} id
 * @property {string} name
 * @property {number} x
 * @property {number} y
 * @property {number} input keys held (Key bits)
 * @property {number} score gems collected
 * @property {number} ack the sequence number of the last input applied (0: none yet)
 * @property {number} ackTick the tick at which that input was first applied
 */

/**
 * @typedef {object} Gem
 * @property {number} id
 * @property {number} x
 * @property {number} y
 * @property {number} area
 */

const DIAGONAL = Math.SQRT1_2;

/**
 * Move a point one tick with the keys held, kept inside the world. The same
 * function moves a player on the server and predicts one's own in the browser.
 * @param {{ x: number, y: number }} p
 * @param {number} input
 * @param {ArenaConfig} config
 */
export function move(p, input, config) {
  let dx = ((input & Key.Right) !== 0 ? 1 : 0) - ((input & Key.Left) !== 0 ? 1 : 0);
  let dy = ((input & Key.Down) !== 0 ? 1 : 0) - ((input & Key.Up) !== 0 ? 1 : 0);
  if (dx !== 0 && dy !== 0) {
    dx *= DIAGONAL;
    dy *= DIAGONAL;
  }
  const step = config.speed / config.tickHz;
  p.x = clamp(p.x + dx * step, config.radius, config.width - config.radius);
  p.y = clamp(p.y + dy * step, config.radius, config.height - config.radius);
}

export class World {
  /**
   * @param {ArenaConfig} config
   * @param {{ seed?: number }} [options]
   */
  constructor(config, options = {}) {
    this.config = config;
    this.grid = new AreaGrid(config);
    this.random = prng(options.seed ?? 1);
    /** Ticks stepped so far. */
    this.tick = 0;
    /** @type {Map<number, Player>} */
    this.players = new Map();
    /** @type {Map<number, Gem>} */
    this.gems = new Map();
    this.nextPlayerId = 1;
    this.nextGemId = 1;
    /** Cell size of the collision grid: a pair can only touch within one cell of each other. */
    this.cell = Math.max(2 * config.radius, 32);
    /** The collision grid, reused every tick (no allocation per tick): cells across and down, */
    this.cellCols = Math.ceil(config.width / this.cell) + 1;
    this.cellRows = Math.ceil(config.height / this.cell) + 1;
    /** the first index in `byCell` of each cell's players (a counting sort), */
    this.cellStart = new Int32Array(this.cellCols * this.cellRows + 1);
    /** where the next one goes while filling, */
    this.cellFill = new Int32Array(this.cellCols * this.cellRows);
    /** and the players sorted by cell. @type {Player[]} */
    this.byCell = [];
    /** The players in `players` order, and each one's cell this tick. @type {Player[]} */
    this.list = [];
    this.cellOf = new Int32Array(64);
    /** Gems by area, reused by #collect. @type {Gem[][]} */
    this.gemsByArea = Array.from({ length: this.grid.count }, () => []);
    for (let area = 0; area < this.grid.count; area++) {
      for (let i = 0; i < config.gemsPerArea; i++) this.#spawnGem(area);
    }
  }

  /**
   * A new player: near the centre (where new players meet), or anywhere (`spawn: 'random'`, the bots).
   * @param {string} name
   * @param {{ spawn?: 'centre' | 'random' }} [options]
   * @returns {Player}
   */
  addPlayer(name, options = {}) {
    const c = this.config;
    let x;
    let y;
    if (options.spawn === 'random') {
      x = c.radius + this.random() * (c.width - 2 * c.radius);
      y = c.radius + this.random() * (c.height - 2 * c.radius);
    } else {
      const angle = this.random() * 2 * Math.PI;
      const r = this.random() * Math.min(120, c.areaSize / 4);
      x = c.width / 2 + Math.cos(angle) * r;
      y = c.height / 2 + Math.sin(angle) * r;
    }
    // Ids stay small (MessagePack: 1 byte below 128, 3 below 65536): wrap around, skipping ids in use.
    let id = this.nextPlayerId;
    while (this.players.has(id)) id = id >= 65535 ? 1 : id + 1;
    this.nextPlayerId = id >= 65535 ? 1 : id + 1;
    /** @type {Player} */
    const player = { id, name, x, y, input: 0, score: 0, ack: 0, ackTick: 0 };
    this.players.set(id, player);
    return player;
  }

  removePlayer(/** @type {number} */ id) {
    return this.players.delete(id);
  }

  /**
   * A player's input: the keys it holds from now on. Inputs carry increasing
   * sequence numbers; an older one arriving late is ignored (inputs are
   * states, not events: the newest one is all that matters).
   * Returns whether it was taken.
   * @param {number} id
   * @param {number} seq
   * @param {number} input
   */
  setInput(id, seq, input) {
    const p = this.players.get(id);
    if (!p || !Number.isSafeInteger(seq) || seq <= p.ack) return false;
    if (!Number.isInteger(input) || input < 0 || input > ALL_KEYS) return false;
    p.input = input;
    p.ack = seq;
    // Applied from the next step on.
    p.ackTick = this.tick + 1;
    return true;
  }

  /** One tick: move, separate overlapping players, collect gems. */
  step() {
    this.tick++;
    const c = this.config;
    for (const p of this.players.values()) move(p, p.input, c);
    this.#separate();
    this.#collect();
  }

  /**
   * Push overlapping players apart (half each). Pairs are found through a
   * grid of cells at least a diameter wide, filled by a counting sort into
   * arrays kept from tick to tick; each pair is looked at once, in the order
   * of `players` (the outcome is deterministic).
   */
  #separate() {
    const n = this.players.size;
    if (n < 2) return;
    const c = this.config;
    const cell = this.cell;
    const cols = this.cellCols;
    const rows = this.cellRows;
    const minD = 2 * c.radius;
    if (this.cellOf.length < n) this.cellOf = new Int32Array(2 * n);
    const cellOf = this.cellOf;
    const start = this.cellStart;
    start.fill(0);
    const players = this.list;
    players.length = n;
    let i = 0;
    for (const p of this.players.values()) {
      const k = clamp(Math.floor(p.y / cell), 0, rows - 1) * cols + clamp(Math.floor(p.x / cell), 0, cols - 1);
      players[i] = p;
      cellOf[i++] = k;
      start[k + 1]++;
    }
    for (let k = 0; k < cols * rows; k++) start[k + 1] += start[k];
    const byCell = this.byCell;
    byCell.length = n;
    // Each cell filled from its end backwards (its fill index moves down from start[k + 1] to start[k]).
    const fill = this.cellFill;
    fill.set(start.subarray(1));
    for (let j = n - 1; j >= 0; j--) byCell[--fill[cellOf[j]]] = players[j];
    for (let j = 0; j < n; j++) {
      const p = players[j];
      // Where p is now (an earlier pair may have pushed it); the others are where they were sorted.
      const cx = clamp(Math.floor(p.x / cell), 0, cols - 1);
      const cy = clamp(Math.floor(p.y / cell), 0, rows - 1);
      for (let y = Math.max(0, cy - 1); y <= Math.min(rows - 1, cy + 1); y++) {
        for (let x = Math.max(0, cx - 1); x <= Math.min(cols - 1, cx + 1); x++) {
          const kk = y * cols + x;
          for (let m = start[kk], end = start[kk + 1]; m < end; m++) {
            const q = byCell[m];
            // Each pair once.
            if (q.id <= p.id) continue;
            const ex = q.x - p.x;
            const ey = q.y - p.y;
            const d2 = ex * ex + ey * ey;
            if (d2 >= minD * minD) continue;
            const d = Math.sqrt(d2);
            // Exactly on top of each other: push along x.
            const nx = d > 1e-6 ? ex / d : 1;
            const ny = d > 1e-6 ? ey / d : 0;
            const push = (minD - d) / 2;
            p.x = clamp(p.x - nx * push, c.radius, c.width - c.radius);
            p.y = clamp(p.y - ny * push, c.radius, c.height - c.radius);
            q.x = clamp(q.x + nx * push, c.radius, c.width - c.radius);
            q.y = clamp(q.y + ny * push, c.radius, c.height - c.radius);
          }
        }
      }
    }
    // Hold no players past the tick (one that leaves must not stay reachable).
    players.length = 0;
    byCell.length = 0;
  }

  /** A player touching a gem takes it; a new gem appears elsewhere in the same area. */
  #collect() {
    if (this.gems.size === 0) return;
    const reach = this.config.radius + this.config.gemRadius;
    const byArea = this.gemsByArea;
    for (const list of byArea) list.length = 0;
    for (const g of this.gems.values()) byArea[g.area].push(g);
    for (const p of this.players.values()) {
      const list = byArea[this.grid.areaOf(p.x, p.y)];
      if (list.length === 0) continue;
      for (let i = 0; i < list.length; i++) {
        const g = list[i];
        if (!this.gems.has(g.id)) continue;
        const ex = g.x - p.x;
        const ey = g.y - p.y;
        if (ex * ex + ey * ey > reach * reach) continue;
        p.score++;
        this.gems.delete(g.id);
        this.#spawnGem(g.area);
      }
    }
  }

  #spawnGem(/** @type {number} */ area) {
    const c = this.config;
    const g = this.grid;
    const ax = area % g.cols;
    const ay = Math.floor(area / g.cols);
    const x0 = ax * c.areaSize;
    const y0 = ay * c.areaSize;
    const w = Math.min(c.areaSize, c.width - x0);
    const h = Math.min(c.areaSize, c.height - y0);
    const pad = c.gemRadius;
    const x = x0 + pad + this.random() * Math.max(0, w - 2 * pad);
    const y = y0 + pad + this.random() * Math.max(0, h - 2 * pad);
    let id = this.nextGemId;
    while (this.gems.has(id)) id = id >= 65535 ? 1 : id + 1;
    this.nextGemId = id >= 65535 ? 1 : id + 1;
    this.gems.set(id, { id, x, y, area: this.grid.areaOf(x, y) });
  }
}

function clamp(/** @type {number} */ v, /** @type {number} */ lo, /** @type {number} */ hi) {
  return v < lo ? lo : v > hi ? hi : v;
}
