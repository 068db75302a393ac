// @ts-check
/**
 * A fixed-rate tick loop that measures itself: tick n is due at
 * start + n·period; each tick's duration goes into a window for the
 * percentiles; a tick whose work took longer than one period is an overrun,
 * one that started more than a period late is late. When it falls behind, the
 * schedule restarts from now instead of bursting the missed ticks (game time
 * then runs slow: the honest failure). Used by the arena server and by the
 * benchmark's naive server, so both are measured the same way.
 */

/** Durations kept for the percentiles (the last this many ticks). */
const WINDOW = 4096;

/**
 * @typedef {object} TickStats
 * @property {number} ticks ticks run since the start (or the last `resetStats`)
 * @property {number} overruns ticks whose work took longer than one period
 * @property {number} late ticks that started more than one period after their time
 * @property {number} p50Ms median tick duration, ms (the last 4096 ticks)
 * @property {number} p99Ms
 * @property {number} maxMs
 */

/**
 * @param {number} tickHz
 * @param {() => void} tick the work of one tick (an exception goes to `onError`; the loop goes on)
 * @param {{ onError?: (err: unknown) => void, now?: () => number }} [options]
 */
export function startTickLoop(tickHz, tick, options = {}) {
  const now = options.now ?? (() => performance.now());
  const periodMs = 1000 / tickHz;
  const durations = new Float64Array(WINDOW);
  let counts = { ticks: 0, overruns: 0, late: 0 };
  let stopped = false;
  /** @type {ReturnType<typeof setTimeout> | null} */
  let timer = null;
  let start = now() + periodMs;
  let n = 0;
  const run = () => {
    if (stopped) return;
    const t0 = now();
    if (t0 - (start + n * periodMs) > periodMs) counts.late++;
    try {
      tick();
    } catch (err) {
      options.onError?.(err);
    }
    const t1 = now();
    const d = t1 - t0;
    durations[counts.ticks % WINDOW] = d;
    counts.ticks++;
    if (d > periodMs) counts.overruns++;
    n++;
    let next = start + n * periodMs;
    if (next < t1) {
      start = t1;
      n = 0;
      next = t1;
    }
    timer = setTimeout(run, Math.max(0, next - now()));
  };
  timer = setTimeout(run, periodMs);
  return {
    /** @returns {TickStats} */
    stats() {
      const count = Math.min(counts.ticks, WINDOW);
      const sorted = Array.from(durations.subarray(0, count)).sort((a, b) => a - b);
      const pct = (/** @type {number} */ p) => (count === 0 ? 0 : sorted[Math.min(count - 1, Math.floor(p * count))]);
      return { ...counts, p50Ms: pct(0.5), p99Ms: pct(0.99), maxMs: count === 0 ? 0 : sorted[count - 1] };
    },
    /** Count afresh from now (a benchmark's measurement window). */
    resetStats() {
      counts = { ticks: 0, overruns: 0, late: 0 };
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
