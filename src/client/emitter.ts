/**
 * A small typed event emitter for the client SDK. Browser-safe (no
 * `node:events`): `on()` returns a function that removes the listener, an
 * `'error'` event without listeners is simply dropped (unlike Node's
 * `EventEmitter`, which throws), and a listener that throws does not break
 * the SDK: the exception is reported asynchronously (`reportError` in
 * browsers, an uncaught exception in Node) and the other listeners still run.
 */

export type Listener<T> = (payload: T) => void;

/** `Events` maps each event name to the type of its payload. */
export class Emitter<Events extends object> {
  #listeners = new Map<keyof Events, Array<Listener<never>>>();

  /** Call `listener` on every `event`. Returns a function that removes it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    const list = this.#listeners.get(event);
    if (list) list.push(listener as Listener<never>);
    else this.#listeners.set(event, [listener as Listener<never>]);
    return () => this.off(event, listener);
  }

  /** Call `listener` on the next `event` only. Returns a function that removes it. */
  once<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    const wrapper: Listener<Events[K]> = (payload) => {
      this.off(event, wrapper);
      listener(payload);
    };
    return this.on(event, wrapper);
  }

  /** Remove a listener added with `on` (the first registration of it). */
  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    const list = this.#listeners.get(event);
    if (!list) return;
    const i = list.indexOf(listener as Listener<never>);
    if (i !== -1) list.splice(i, 1);
    if (list.length === 0) this.#listeners.delete(event);
  }

  /** Number of listeners of `event`. */
  listenerCount<K extends keyof Events>(event: K): number {
    return this.#listeners.get(event)?.length ?? 0;
  }

  /** Remove every listener (of `event`, or of all events). */
  removeAllListeners<K extends keyof Events>(event?: K): void {
    if (event === undefined) this.#listeners.clear();
    else this.#listeners.delete(event);
  }

  /** @internal Call the listeners of `event` in registration order. */
  protected emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const list = this.#listeners.get(event);
    if (!list) return;
    // A copy: listeners may remove themselves (once) or others while we iterate.
    for (const listener of list.slice()) {
      try {
        (listener as Listener<Events[K]>)(payload);
      } catch (err) {
        reportListenerError(err);
      }
    }
  }
}

/** Report an exception thrown by application code without unwinding the SDK's stack. */
export function reportListenerError(err: unknown): void {
  const g = globalThis as { reportError?: (e: unknown) => void };
  if (typeof g.reportError === 'function') g.reportError(err);
  else
    setTimeout(() => {
      throw err;
    }, 0);
}
