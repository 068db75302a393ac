// @ts-check
/**
 * A fixed-rate tick loop that measures itself. Tick n is due at
 * start + n·period. For each tick it records:
 *
 * - its **work**: from its start until the event loop has done what the tick
 *   set off — the synchronous `tick()` (simulation, encoding, publishing),
 *   then the microtasks and `process.nextTick` callbacks it queued (with the
 *   memory broker the fan-out to the subscribers runs in a microtask, and
 *   each socket's corked frames are written in a nextTick), up to the next
 *   `setImmediate`. An upper bound: I/O callbacks that came due meanwhile
 *   (players' inputs) are counted in too. A tick whose work took longer than
 *   one period is an **overrun**; one that finished after the next tick was
 *   due — its lateness plus its work longer than a period — **missed** its
 *   deadline (every overrun does; a tick that started late can miss without
 *   overrunning). "No overrunning ticks" as a goal means no missed ones;
 * - the synchronous part alone (`syncP99Ms`), to tell the loop's own code
 *   from the fan-out;
 * - the CPU time the process used over the same span (`cpuP50Ms`…, from
 *   `process.cpuUsage()` where there is one): unlike the work's wall time,
 *   it does not grow while the process waits for a CPU, so on a machine
 *   shared with other programs it still says whether a tick would fit in
 *   its period on a core of its own (`cpuOverruns`);
 * - its **lateness** (start jitter): how long after its due time it started
 *   — timer slack, other work on the event loop, or the process waiting for
 *   a CPU. One that started more than a period late is **late**.
 *
 * Work and lateness are kept apart because their causes differ: an overrun
 * is the tick's own cost, lateness is everything around it. When the loop
 * falls behind, the schedule restarts from now instead of bursting the
 * missed ticks (game time then runs slow: the honest failure). Used by the
 * arena server and by the benchmark's naive server, so both are measured
 * the same way. Needs `setImmediate` (Node) to see the end of a tick's work;
 * elsewhere it falls back to a zero-delay timer.
 */

/** Durations kept for the percentiles (the last this many ticks). */
const WINDOW = 4096;

const afterIo = globalThis.setImmediate ?? ((/** @type {() => void} */ fn) => setTimeout(fn, 0));

/** CPU time the process used so far, ms (user + system), or null where it cannot be read (a browser). */
const processCpuMs =
  typeof globalThis.process?.cpuUsage === 'function'
    ? () => {
        const u = process.cpuUsage();
        return (u.user + u.system) / 1000;
      }
    : () => null;

/**
 * @typedef {object} TickStats
 * @property {number} ticks ticks run since the start (or the last `resetStats`)
 * @property {number} overruns ticks whose work took longer than one period
 * @property {number} missed ticks that finished after the next tick was due (lateness + work > one period)
 * @property {number} late ticks that started more than one period after their time
 * @property {number} p50Ms median tick work (through the fan-out and the writes it set off), ms (the last 4096 ticks)
 * @property {number} p99Ms
 * @property {number} maxMs
 * @property {number} syncP99Ms 99th percentile of the synchronous `tick()` alone, ms
 * @property {number} cpuP50Ms median CPU time of a tick's work (the process's, over the same span), ms; 0 without a CPU clock
 * @property {number} cpuP99Ms
 * @property {number} cpuMaxMs
 * @property {number} cpuOverruns ticks whose work took more CPU time than one period
 * @property {number} lateP50Ms median start lateness (start − due time), ms (the last 4096 ticks)
 * @property {number} lateP99Ms
 * @property {number} lateMaxMs
 */

/**
 * One finished tick (what `onTick` gets; the same object every time: copy what you keep).
 * @typedef {object} TickRecord
 * @property {number} startMs when it started (the loop's clock)
 * @property {number} lateMs how long after its due time
 * @property {number} syncMs the synchronous `tick()`
 * @property {number} workMs its work, through the fan-out and the writes it set off
 * @property {number} cpuMs the process's CPU time over its work (0 without a CPU clock)
 */

/**
 * @param {number} tickHz
 * @param {() => void} tick the work of one tick (an exception goes to `onError`; the loop goes on)
 * @param {{ onError?: (err: unknown) => void, now?: () => number, cpu?: () => number | null, onTick?: (record: TickRecord) => void }} [options] `now`: the clock, ms;
 *   `cpu`: the process's CPU time so far, ms (default `process.cpuUsage()`; null: not known);
 *   `onTick`: called with each finished tick's numbers (a benchmark's per-tick log; the record object is reused)
 */
export function startTickLoop(tickHz, tick, options = {}) {
  const now = options.now ?? (() => performance.now());
  const cpuNow = options.cpu ?? processCpuMs;
  const periodMs = 1000 / tickHz;
  const durations = new Float64Array(WINDOW);
  const syncDurations = new Float64Array(WINDOW);
  const lateness = new Float64Array(WINDOW);
  const cpuTimes = new Float64Array(WINDOW);
  let counts = { ticks: 0, overruns: 0, missed: 0, late: 0, cpuOverruns: 0 };
  let stopped = false;
  /** @type {ReturnType<typeof setTimeout> | null} */
  let timer = null;
  let start = now() + periodMs;
  let n = 0;
  /** The tick in progress: its start, lateness and synchronous part (recorded when it finishes). */
  let t0 = 0;
  /** @type {number | null} */
  let cpu0 = null;
  let lateMs = 0;
  let syncMs = 0;
  const onTick = options.onTick;
  /** @type {TickRecord} */
  const record = { startMs: 0, lateMs: 0, syncMs: 0, workMs: 0, cpuMs: 0 };

  const run = () => {
    if (stopped) return;
    t0 = now();
    cpu0 = cpuNow();
    lateMs = Math.max(0, t0 - (start + n * periodMs));
    try {
      tick();
    } catch (err) {
      options.onError?.(err);
    }
    syncMs = now() - t0;
    // The microtasks and nextTicks the tick queued run before this.
    afterIo(finish);
  };

  const finish = () => {
    if (stopped) return;
    const t1 = now();
    const cpu1 = cpuNow();
    const cpuMs = cpu0 === null || cpu1 === null ? 0 : cpu1 - cpu0;
    const d = t1 - t0;
    const slot = counts.ticks % WINDOW;
    cpuTimes[slot] = cpuMs;
    if (cpuMs > periodMs) counts.cpuOverruns++;
    durations[slot] = d;
    syncDurations[slot] = syncMs;
    lateness[slot] = lateMs;
    if (lateMs > periodMs) counts.late++;
    counts.ticks++;
    if (d > periodMs) counts.overruns++;
    if (lateMs + d > periodMs) counts.missed++;
    if (onTick) {
      record.startMs = t0;
      record.lateMs = lateMs;
      record.syncMs = syncMs;
      record.workMs = d;
      record.cpuMs = cpuMs;
      onTick(record);
    }
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
      const work = percentiles(durations, count);
      const late = percentiles(lateness, count);
      const cpu = percentiles(cpuTimes, count);
      return {
        ...counts,
        p50Ms: work.p50,
        p99Ms: work.p99,
        maxMs: work.max,
        syncP99Ms: percentiles(syncDurations, count).p99,
        cpuP50Ms: cpu.p50,
        cpuP99Ms: cpu.p99,
        cpuMaxMs: cpu.max,
        lateP50Ms: late.p50,
        lateP99Ms: late.p99,
        lateMaxMs: late.max,
      };
    },
    /** Count afresh from now (a benchmark's measurement window). */
    resetStats() {
      counts = { ticks: 0, overruns: 0, missed: 0, late: 0, cpuOverruns: 0 };
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}

/** p50, p99 and max of the first `count` values (0 for none). */
function percentiles(/** @type {Float64Array} */ window, /** @type {number} */ count) {
  if (count === 0) return { p50: 0, p99: 0, max: 0 };
  const sorted = window.slice(0, count).sort();
  const at = (/** @type {number} */ p) => sorted[Math.min(count - 1, Math.floor(p * count))];
  return { p50: at(0.5), p99: at(0.99), max: sorted[count - 1] };
}
