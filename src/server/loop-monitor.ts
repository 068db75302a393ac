/**
 * The event loop's delay, measured cheaply while the process idles: what
 * `/metrics` reports as `switchboard_nodejs_eventloop_lag_{min,max,mean,
 * stddev,p50,p90,p99}_seconds`.
 *
 * prom-client's default monitor (`monitorEventLoopDelay` at a 10 ms
 * resolution) wakes the process 100 times a second whether anything happens
 * or not: an idle `serve --workers 6` woke 600 times a second only for it.
 * Here one timer samples the loop, and its period follows the load:
 *
 * - every `busyMs` (10 ms, prom-client's resolution) while the loop was busy
 *   for at least `busyUtilization` (5 %) of the last `idleMs`
 *   (`performance.eventLoopUtilization()`, read from libuv's counters,
 *   costs no wake-up of its own; an idle process measured 0.2–0.4 %, and
 *   being preempted on a loaded machine counts as busy wall-clock time);
 * - every `idleMs` (1 s) otherwise: an idle process wakes once a second.
 *
 * A sample is how late the timer fired after its period (in ns, into one
 * histogram that each scrape reads and resets): the time the loop could not
 * run a callback. Unlike `monitorEventLoopDelay`'s samples, which are the
 * whole time between two wake-ups, the period itself is not in it: an idle
 * loop reports ~0, not 10 ms. What the coarse period can miss: a stall in a
 * second that was otherwise idle, shorter than `busyUtilization × idleMs`
 * (50 ms) and not overlapping the sample (a longer stall makes the second
 * busy and the sampling fine from the next check on).
 *
 * One monitor per process (the loop is the process's), shared by every
 * `Metrics` and running while at least one holds it.
 */
import { createHistogram, performance, type EventLoopUtilization, type RecordableHistogram } from 'node:perf_hooks';

export interface LoopMonitorOptions {
  /** Sampling period while the loop is busy, ms. Default 10 (prom-client's). */
  busyMs?: number;
  /** Sampling period while it idles, and how often the utilization is looked at, ms. Default 1000. */
  idleMs?: number;
  /** Share of `idleMs` the loop must have been busy for the fine period (0–1). Default 0.05. */
  busyUtilization?: number;
}

/** What a scrape reads, in seconds (0 when nothing was sampled since the last reset). */
export interface LoopDelaySummary {
  min: number;
  max: number;
  mean: number;
  stddev: number;
  p50: number;
  p90: number;
  p99: number;
  /** Samples since the last reset. */
  count: number;
}

const NS_PER_MS = 1e6;

export class LoopMonitor {
  readonly busyMs: number;
  readonly idleMs: number;
  readonly busyUtilization: number;
  private readonly histogram: RecordableHistogram = createHistogram();
  private timer: NodeJS.Timeout | null = null;
  /** The period the timer runs with now. */
  private period: number;
  /** When the timer is due (performance.now()). */
  private due = 0;
  private lastCheck = 0;
  private lastElu: EventLoopUtilization = performance.eventLoopUtilization();

  constructor(options: LoopMonitorOptions = {}) {
    this.busyMs = options.busyMs ?? 10;
    this.idleMs = options.idleMs ?? 1000;
    this.busyUtilization = options.busyUtilization ?? 0.05;
    if (!(this.busyMs >= 1) || !(this.idleMs >= this.busyMs)) throw new RangeError('loop monitor: need 1 <= busyMs <= idleMs');
    this.period = this.idleMs;
  }

  /** The sampling period now, ms: `busyMs` or `idleMs`. */
  get resolutionMs(): number {
    return this.period;
  }

  get running(): boolean {
    return this.timer !== null;
  }

  start(): void {
    if (this.timer !== null) return;
    this.lastElu = performance.eventLoopUtilization();
    this.lastCheck = performance.now();
    this.period = this.idleMs;
    this.arm(true);
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** The samples since the last reset, in seconds; then reset. */
  take(): LoopDelaySummary {
    const h = this.histogram;
    const count = h.count;
    const s = (ns: number): number => (count > 0 && Number.isFinite(ns) ? ns / 1e9 : 0);
    const summary = { min: s(h.min), max: s(h.max), mean: s(h.mean), stddev: s(h.stddev), p50: s(h.percentile(50)), p90: s(h.percentile(90)), p99: s(h.percentile(99)), count };
    h.reset();
    return summary;
  }

  /** @internal The timer. */
  _sample(): void {
    const now = performance.now();
    // At least 1 ns: the histogram takes positive integers. Node may run a timer up to ~1 ms early (its clock is the loop's, in ms).
    this.histogram.record(Math.max(1, Math.round((now - this.due) * NS_PER_MS)));
    let period = this.period;
    if (now - this.lastCheck >= this.idleMs) {
      const elu = performance.eventLoopUtilization();
      const busy = performance.eventLoopUtilization(elu, this.lastElu).utilization >= this.busyUtilization;
      this.lastElu = elu;
      this.lastCheck = now;
      period = busy ? this.busyMs : this.idleMs;
    }
    const changed = period !== this.period;
    this.period = period;
    this.arm(changed);
  }

  private arm(fresh: boolean): void {
    this.due = performance.now() + this.period;
    if (!fresh && this.timer !== null) {
      // Same period: the same Timeout object again (no allocation per sample).
      this.timer.refresh();
      return;
    }
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(sample, this.period, this);
    this.timer.unref();
  }
}

function sample(monitor: LoopMonitor): void {
  monitor._sample();
}

let shared: LoopMonitor | null = null;
let holders = 0;

/** The process's monitor, started with the first holder; give it back with `releaseLoopMonitor`. */
export function acquireLoopMonitor(): LoopMonitor {
  shared ??= new LoopMonitor();
  if (holders++ === 0) shared.start();
  return shared;
}

/** One holder less; the last one stops the timer. */
export function releaseLoopMonitor(): void {
  if (holders === 0) return;
  if (--holders === 0) shared?.stop();
}
