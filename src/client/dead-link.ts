/**
 * Dead-link detection for one connection at a time: silence for the server's
 * ping interval (learned from two of its pings) plus `pingGraceMs`, or
 * `pingTimeoutMs` before that is known, means the link is dead. Before the
 * interval is known (a server with heartbeats off, or the first interval),
 * the client asks itself: a `ping` after half of `pingTimeoutMs` of silence,
 * which the server answers with `pong`.
 */
import { setTimer, type Timer } from './timer.js';

export interface DeadLinkOptions {
  pingTimeoutMs: number;
  pingGraceMs: number;
}

/** What the watch asks of the link it watches. */
export interface DeadLinkActions {
  /** Whether a connection is up (the watch rests otherwise). */
  live(): boolean;
  /** Send our own `ping`. */
  ping(): void;
  /** Nothing came for `silentMs`: drop the connection. */
  dead(silentMs: number): void;
}

export class DeadLinkWatch {
  readonly #options: DeadLinkOptions;
  readonly #actions: DeadLinkActions;
  #timer: Timer | null = null;
  #lastReceivedAt = 0;
  #lastPingAt = 0;
  /** The server's ping interval as observed on this connection, in ms (0: not known yet). */
  #pingIntervalMs = 0;
  /** The `#lastReceivedAt` for which the client sent its own ping (one per silence). */
  #selfPingFor = -1;

  constructor(options: DeadLinkOptions, actions: DeadLinkActions) {
    this.#options = options;
    this.#actions = actions;
  }

  /**
   * How long silence may last before the link counts as dead, in ms: the
   * server's ping interval (learned from two pings on this connection) plus
   * `pingGraceMs`, else `pingTimeoutMs`.
   */
  get timeoutMs(): number {
    return this.#pingIntervalMs > 0 ? this.#pingIntervalMs + this.#options.pingGraceMs : this.#options.pingTimeoutMs;
  }

  /** A connection is up: watch it from now, its ping interval not known yet. */
  start(): void {
    this.#lastReceivedAt = Date.now();
    this.#lastPingAt = 0;
    this.#pingIntervalMs = 0;
    this.#selfPingFor = -1;
    this.#arm();
  }

  /** Something came from the server. */
  received(): void {
    this.#lastReceivedAt = Date.now();
  }

  /** The server's `ping` came (after `received()`): learn its interval. */
  serverPing(): void {
    const now = Date.now();
    if (this.#lastPingAt > 0 && now > this.#lastPingAt && now - this.#lastPingAt !== this.#pingIntervalMs) {
      // The server's interval, learned: the dead-link limit follows it (re-armed, as it may be sooner now).
      this.#pingIntervalMs = now - this.#lastPingAt;
      this.#arm();
    }
    this.#lastPingAt = now;
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #selfPingDue(): number | null {
    if (this.#pingIntervalMs > 0 || this.#selfPingFor === this.#lastReceivedAt) return null;
    return this.#lastReceivedAt + Math.floor(this.#options.pingTimeoutMs / 2);
  }

  #arm(): void {
    if (this.#timer) clearTimeout(this.#timer);
    const now = Date.now();
    const deadline = this.#lastReceivedAt + this.timeoutMs;
    const ping = this.#selfPingDue();
    const at = ping !== null && ping < deadline ? ping : deadline;
    this.#timer = setTimer(this.#check, at - now);
  }

  // One timer per connection, re-armed when it fires: a message costs a Date.now(), not a timer.
  readonly #check = (): void => {
    this.#timer = null;
    if (!this.#actions.live()) return;
    const now = Date.now();
    const silent = now - this.#lastReceivedAt;
    if (silent >= this.timeoutMs) {
      this.#actions.dead(silent);
      return;
    }
    const ping = this.#selfPingDue();
    if (ping !== null && now >= ping) {
      this.#selfPingFor = this.#lastReceivedAt;
      this.#actions.ping();
    }
    this.#arm();
  };
}
