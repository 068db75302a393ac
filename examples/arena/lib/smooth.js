// @ts-check
/**
 * Smooth rendering from snapshots that arrive at the tick rate, late, in
 * bursts or not at all: the others are interpolated with a fixed render
 * delay, our own player is predicted. Browser-safe and pure (times come in
 * as arguments), so both are tested without a browser.
 */
import { move } from './sim.js';

/** @typedef {import('./config.js').ArenaConfig} ArenaConfig */

/**
 * Maps server ticks to local time and keeps a short history of positions per
 * player; `sample(now)` gives each one's position `delayMs` in the past,
 * between the two snapshots around that moment.
 *
 * The clock: a snapshot of tick T that arrives at local time t says that T
 * happened at most at t (minus the network delay). The offset `t − T·period`
 * follows the fastest arrivals: it drops at once to a smaller value and
 * rises only slowly, so jitter (late snapshots) does not move the render
 * time, and a link that got slower for good is followed within a second or so.
 */
export class Interpolator {
  /**
   * @param {number} tickHz
   * @param {number} delayMs render this far behind the newest snapshot's time
   */
  constructor(tickHz, delayMs) {
    this.periodMs = 1000 / tickHz;
    this.delayMs = delayMs;
    /** @type {number | null} local ms at server tick 0 */
    this.offset = null;
    /** @type {Map<number, { t: number, x: number, y: number }[]>} per player: (tick, x, y), oldest first */
    this.tracks = new Map();
    /** Newest tick seen, and when it arrived (local ms). */
    this.newestTick = 0;
    this.newestAt = 0;
  }

  /** A snapshot of tick `tick` arrived at local time `now`. */
  observe(/** @type {number} */ tick, /** @type {number} */ now) {
    const est = now - tick * this.periodMs;
    if (this.offset === null || est < this.offset) this.offset = est;
    else this.offset += (est - this.offset) * 0.02;
    if (tick >= this.newestTick) {
      this.newestTick = tick;
      this.newestAt = now;
    }
  }

  /** Where player `id` was at `tick`. */
  add(/** @type {number} */ id, /** @type {number} */ tick, /** @type {number} */ x, /** @type {number} */ y) {
    let track = this.tracks.get(id);
    if (!track) this.tracks.set(id, (track = []));
    const last = track[track.length - 1];
    if (last && last.t >= tick) {
      if (last.t === tick) {
        last.x = x;
        last.y = y;
      }
      return;
    }
    track.push({ t: tick, x, y });
    if (track.length > 64) track.splice(0, track.length - 64);
  }

  /** Forget a player (it left our areas). */
  remove(/** @type {number} */ id) {
    this.tracks.delete(id);
  }

  /** The (fractional) server tick to draw at local time `now`. */
  renderTick(/** @type {number} */ now) {
    if (this.offset === null) return 0;
    return (now - this.offset - this.delayMs) / this.periodMs;
  }

  /**
   * Player `id` at render time: between the two samples around it; before the
   * first, the first; after the last, the last (no extrapolation: a player
   * who stopped sending is shown where it was last seen, not walked off).
   * @returns {{ x: number, y: number } | null}
   */
  position(/** @type {number} */ id, /** @type {number} */ tick) {
    const track = this.tracks.get(id);
    if (!track || track.length === 0) return null;
    if (tick <= track[0].t) return { x: track[0].x, y: track[0].y };
    for (let i = track.length - 1; i > 0; i--) {
      const a = track[i - 1];
      const b = track[i];
      if (tick >= a.t && tick <= b.t) {
        const f = (tick - a.t) / (b.t - a.t);
        return { x: a.x + (b.x - a.x) * f, y: a.y + (b.y - a.y) * f };
      }
    }
    const last = track[track.length - 1];
    return { x: last.x, y: last.y };
  }
}

/**
 * Our own player, predicted: local ticks run the same `move` as the server
 * with the keys we hold, and each authoritative snapshot of us is replayed
 * forward with the inputs the server had not applied yet.
 *
 * The server tells, per player, the last input number it applied (`ack`)
 * and the tick it started applying it (`ackTick`). We remember at which
 * local tick each input started, so server tick T is local tick
 * `startedAt(ack) + (T − ackTick)`; from the server's position at T we
 * re-run the local ticks after it. What is left of the difference to what
 * was drawn (collisions we do not predict, timing) is drawn away over a few
 * frames instead of jumping.
 */
export class Predictor {
  /** @param {ArenaConfig} config */
  constructor(config) {
    this.config = config;
    this.periodMs = 1000 / config.tickHz;
    /** Local ticks run. */
    this.tick = 0;
    /** Keys held at each local tick (ring). */
    this.keysAt = new Int8Array(512);
    /** Input number → the local tick it started at. */
    /** @type {Map<number, number>} */
    this.inputStart = new Map();
    this.keys = 0;
    /** @type {{ x: number, y: number } | null} */
    this.pos = null;
    /** What is drawn: pos + a correction that decays. */
    this.correction = { x: 0, y: 0 };
    this.acc = 0;
    /** Corrections larger than this (units) snap instead of smoothing (a respawn, a long freeze). */
    this.snapDistance = 4 * config.areaSize;
  }

  /** Hold `keys` from the next local tick; `seq` is the input number sent to the server. */
  press(/** @type {number} */ keys, /** @type {number} */ seq) {
    this.keys = keys;
    if (seq > 0) {
      this.inputStart.set(seq, this.tick + 1);
      // Keep the map small: inputs older than the ring cannot be replayed anyway.
      if (this.inputStart.size > 256) this.inputStart.delete(this.inputStart.keys().next().value ?? 0);
    }
  }

  /** Advance local time by `dtMs`, running as many ticks as fit. */
  advance(/** @type {number} */ dtMs) {
    if (this.pos === null) return;
    this.acc = Math.min(this.acc + dtMs, 10 * this.periodMs);
    while (this.acc >= this.periodMs) {
      this.acc -= this.periodMs;
      this.tick++;
      this.keysAt[this.tick % this.keysAt.length] = this.keys;
      move(this.pos, this.keys, this.config);
    }
    this.correction.x *= 0.85;
    this.correction.y *= 0.85;
  }

  /**
   * An authoritative snapshot of us: position (x, y) at server tick `tick`,
   * input `ack` applied since server tick `ackTick`.
   */
  reconcile(/** @type {number} */ x, /** @type {number} */ y, /** @type {number} */ tick, /** @type {number} */ ack, /** @type {number} */ ackTick) {
    const before = this.pos ? { x: this.pos.x + this.correction.x, y: this.pos.y + this.correction.y } : null;
    const start = this.inputStart.get(ack);
    const p = { x, y };
    if (ack > 0 && start !== undefined) {
      const localAtSnapshot = start + (tick - ackTick);
      const ring = this.keysAt.length;
      for (let l = Math.max(localAtSnapshot + 1, this.tick - ring + 1); l <= this.tick; l++) move(p, this.keysAt[l % ring], this.config);
    }
    this.pos = p;
    if (before === null) return;
    const cx = before.x - p.x;
    const cy = before.y - p.y;
    if (Math.hypot(cx, cy) > this.snapDistance) this.correction = { x: 0, y: 0 };
    else this.correction = { x: cx, y: cy };
  }

  /** Where to draw us. */
  drawn() {
    if (this.pos === null) return null;
    return { x: this.pos.x + this.correction.x, y: this.pos.y + this.correction.y };
  }
}
