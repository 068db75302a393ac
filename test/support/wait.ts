/**
 * Bounded waits for every kind of test (unit, integration, interop, e2e).
 * Free of node:test: child processes and hook-free helper modules import it.
 */
import type { EventEmitter } from 'node:events';

/**
 * The default bound of every wait in the test kit, in ms. Generous: loopback
 * events take milliseconds; a broken behaviour fails the test after this
 * instead of hanging it.
 */
export const WAIT = 3000;

/**
 * The bound of waits on a child process (through tsx, which compiles on
 * start; Python): its start, its answers, its exit.
 */
export const CHILD_WAIT = 20_000;

/** Reject with a clear message when `promise` does not settle within `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolve after `ms` (for "nothing happens during this time" checks, and pacing). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * `fn()` again every `pauseMs` while it rejects with an error `retryable`
 * accepts (default: any), for at most `ms`; then its last rejection.
 */
export async function retrying<T>(fn: () => Promise<T>, ms: number, retryable: (err: unknown) => boolean = () => true, pauseMs = 50): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!retryable(err) || Date.now() > deadline) throw err;
      await sleep(pauseMs);
    }
  }
}

/** Poll `predicate` every 5 ms; reject after `ms`. */
export async function until(predicate: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * Resolve with the arguments of the next `event` on `emitter`, or reject
 * after `ms`. Unlike `events.once`, it attaches no 'error' listener: whether
 * one is attached changes what a WebSocket does with its errors.
 */
export function waitEvent<T extends unknown[] = any[]>(emitter: EventEmitter, event: string, ms = WAIT): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const listener = (...args: unknown[]): void => {
      clearTimeout(timer);
      resolve(args as T);
    };
    const timer = setTimeout(() => {
      emitter.removeListener(event, listener);
      reject(new Error(`timed out after ${ms} ms waiting for '${event}'`));
    }, ms);
    emitter.once(event, listener);
  });
}

/**
 * Waits re-checked whenever something arrives: the receiver calls `wake()`,
 * `until()` re-runs its probe then (and gives up at its deadline).
 */
export class Wakeup {
  private waiters: Array<() => void> = [];

  wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /**
   * The first value other than `undefined` that `probe()` returns, probed now
   * and at each `wake()`. Rejects with the error `stop()` returns (asked after
   * each probe that found nothing), or after `ms`; `got()` is added to both
   * messages.
   */
  async until<T>(probe: () => T | undefined, ms: number, what: string, stop: () => Error | null = () => null, got: () => string = () => ''): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const value = probe();
      if (value !== undefined) return value;
      const error = stop();
      if (error) throw error;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}${got()}`);
      await new Promise<void>((resolve) => {
        const waiter = (): void => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          resolve();
        }, left);
        this.waiters.push(waiter);
      });
    }
  }
}
