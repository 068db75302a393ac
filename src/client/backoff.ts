/**
 * Reconnect delays: exponential backoff with jitter, reset after a stable
 * connection. Pure logic (no timers): the client asks `next()` for the delay
 * of each attempt and calls `reset()` once a connection has been stable for
 * `resetAfterMs`.
 *
 * The delay of attempt n (1, 2, 3, …) is `d = min(maxDelayMs, minDelayMs *
 * factor^(n-1))`, then jittered down into `[d * (1 - jitter), d]` ("equal
 * jitter" for jitter = 0.5): never above `maxDelayMs`, never below
 * `minDelayMs * (1 - jitter)`, and clients that dropped at the same moment
 * spread out instead of coming back together.
 */

/** Reconnect policy. All times in milliseconds. */
export interface ReconnectOptions {
  /** Base delay before the first reconnect attempt, in ms. Default 500. */
  minDelayMs: number;
  /** Upper bound of any delay, in ms. Default 30000. */
  maxDelayMs: number;
  /** Growth of the delay per attempt. Default 2. */
  factor: number;
  /** Fraction of the delay that is random, 0-1: the delay is in `[d * (1 - jitter), d]`. Default 0.5. */
  jitter: number;
  /** Attempts after a drop before giving up (`disconnected` with `willReconnect: false`). Default Infinity. */
  maxAttempts: number;
  /** A connection that has stayed up this long resets the backoff to the first attempt, in ms. Default 10000. */
  resetAfterMs: number;
}

export const DEFAULT_RECONNECT: Readonly<ReconnectOptions> = Object.freeze({
  minDelayMs: 500,
  maxDelayMs: 30000,
  factor: 2,
  jitter: 0.5,
  maxAttempts: Infinity,
  resetAfterMs: 10000,
});

export class Backoff {
  readonly options: Readonly<ReconnectOptions>;
  #attempt = 0;
  readonly #random: () => number;

  /** `random` returns a number in [0, 1) (default `Math.random`; injectable for tests). */
  constructor(options: Partial<ReconnectOptions> = {}, random: () => number = Math.random) {
    const o = { ...DEFAULT_RECONNECT, ...stripUndefined(options) };
    if (!(o.minDelayMs >= 0)) throw new RangeError('reconnect.minDelayMs must be >= 0');
    if (!(o.maxDelayMs >= o.minDelayMs)) throw new RangeError('reconnect.maxDelayMs must be >= minDelayMs');
    if (!(o.factor >= 1)) throw new RangeError('reconnect.factor must be >= 1');
    if (!(o.jitter >= 0 && o.jitter <= 1)) throw new RangeError('reconnect.jitter must be between 0 and 1');
    if (!(o.maxAttempts >= 0)) throw new RangeError('reconnect.maxAttempts must be >= 0');
    if (!(o.resetAfterMs >= 0)) throw new RangeError('reconnect.resetAfterMs must be >= 0');
    this.options = Object.freeze(o);
    this.#random = random;
  }

  /** Attempts made since the last reset (0 before the first). */
  get attempt(): number {
    return this.#attempt;
  }

  /** Whether another attempt is allowed (`attempt < maxAttempts`). */
  get canRetry(): boolean {
    return this.#attempt < this.options.maxAttempts;
  }

  /** The un-jittered delay of attempt `n` (1-based), in ms. */
  baseDelay(n: number): number {
    const { minDelayMs, maxDelayMs, factor } = this.options;
    // factor^(n-1) overflows to Infinity for large n; min() keeps it bounded.
    return Math.min(maxDelayMs, minDelayMs * Math.pow(factor, Math.max(0, n - 1)));
  }

  /** Count one more attempt and return its delay, in ms (an integer). */
  next(): number {
    this.#attempt++;
    const d = this.baseDelay(this.#attempt);
    const j = this.options.jitter;
    return Math.round(d * (1 - j) + d * j * this.#random());
  }

  /** Start over at the first attempt (after a stable connection). */
  reset(): void {
    this.#attempt = 0;
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
