/**
 * Timers the client can trust with long delays. Browsers and Node fire a
 * timer longer than 2^31 - 1 ms (about 24.8 days) at once, which would turn a
 * long-lived token's refresh (or `pingTimeoutMs: Infinity`) into a busy loop.
 */

export type Timer = ReturnType<typeof setTimeout>;

/** The longest delay a timer can wait, in ms. */
export const MAX_TIMER_MS = 0x7fffffff;

/** setTimeout with the delay clamped to [0, MAX_TIMER_MS]. */
export function setTimer(fn: () => void, ms: number): Timer {
  return setTimeout(fn, Math.min(MAX_TIMER_MS, Math.max(0, ms)));
}
