/**
 * Which transport and which URL the link's next attempt uses. Failover: the
 * next URL after every failure. Fallback: a transport that fails
 * `fallbackAfter` times in a row before the connection is up is left for the
 * next one (WebSocket → SSE → poll → WebSocket); after a drop on a fallback,
 * the preferred transport is tried first again once its last failure is
 * older than `upgradeIntervalMs` (on probation: one failure moves on).
 */
import type { TransportName } from './transports/transport.js';

export interface ChoiceOptions {
  fallbackAfter: number;
  upgradeIntervalMs: number;
}

/** The `transport` event: the choice moved to another transport. */
export type TransportSwitch = { from: TransportName; to: TransportName; reason: string };

export class TransportChoice {
  readonly urls: readonly string[];
  /** Configured transports that can run here, in order of preference. */
  readonly transports: readonly TransportName[];
  readonly #options: ChoiceOptions;
  readonly #onSwitch: (event: TransportSwitch) => void;
  #transportIndex = 0;
  #urlIndex = 0;
  /** Attempts in a row on the current transport that failed before it opened. */
  #failuresBeforeOpen = 0;
  /** When the preferred transport last failed to open (ms since the epoch; 0: never). */
  #preferredFailedAt = 0;

  constructor(urls: readonly string[], transports: readonly TransportName[], options: ChoiceOptions, onSwitch: (event: TransportSwitch) => void) {
    this.urls = urls;
    this.transports = transports;
    this.#options = options;
    this.#onSwitch = onSwitch;
  }

  /** The transport of the next attempt (or the current one). */
  get transport(): TransportName | null {
    return this.transports[this.#transportIndex] ?? null;
  }

  /** The URL of the next attempt (or the current one). */
  get url(): string {
    return this.urls[this.#urlIndex]!;
  }

  /** On a fallback transport, with WebSocket preferred: probe it. */
  get shouldProbe(): boolean {
    return this.#transportIndex !== 0 && this.transports[0] === 'websocket';
  }

  /** On a fallback transport. */
  get onFallback(): boolean {
    return this.#transportIndex !== 0;
  }

  /** A fresh start (`connect()`), or a connection is up: no failures in a row. */
  resetFailures(): void {
    this.#failuresBeforeOpen = 0;
  }

  /** An attempt failed before the connection was up (while online: failures offline say nothing about the transport). */
  failedBeforeOpen(): void {
    if (this.#transportIndex === 0) this.#preferredFailedAt = Date.now();
    this.#failuresBeforeOpen++;
    if (this.#failuresBeforeOpen >= this.#options.fallbackAfter && this.transports.length > 1) {
      this.#switchTo((this.#transportIndex + 1) % this.transports.length, `${this.#failuresBeforeOpen} attempts failed before opening`);
    }
  }

  /** A connection that was up dropped. */
  dropped(): void {
    if (this.#transportIndex !== 0 && Date.now() - this.#preferredFailedAt >= this.#options.upgradeIntervalMs) {
      // A fallback connection dropped: try the preferred transport first again, on probation (one failure moves on).
      this.#switchTo(0, 'reconnect: trying the preferred transport again');
      this.#failuresBeforeOpen = this.#options.fallbackAfter - 1;
    }
  }

  /** The preferred transport failed a probe. */
  preferredFailed(): void {
    this.#preferredFailedAt = Date.now();
  }

  /** The preferred transport answered a probe: the next attempt uses it. */
  upgrade(): void {
    this.#switchTo(0, 'WebSocket is reachable again');
  }

  /** Failover: the next URL after every failure. */
  nextUrl(): void {
    this.#urlIndex = (this.#urlIndex + 1) % this.urls.length;
  }

  #switchTo(index: number, reason: string): void {
    const from = this.transports[this.#transportIndex]!;
    const to = this.transports[index]!;
    this.#transportIndex = index;
    this.#failuresBeforeOpen = 0;
    if (from !== to) this.#onSwitch({ from, to, reason });
  }
}
