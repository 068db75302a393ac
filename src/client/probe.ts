/**
 * The probe back to WebSocket while the link is on a fallback: open a
 * socket and send `ping`. Only a `pong` counts (the server answers it before
 * any auth): a proxy that lets the upgrade through but not the frames fails
 * the probe, as it would fail the connection.
 */
import { setTimer, type Timer } from './timer.js';
import type { ClientTransport, TransportHandler } from './transports/transport.js';
import { CloseCode } from '../protocol/close-code.js';

/** What the probe needs from the link. */
export interface ProbeHost {
  /** Whether a probe makes sense now (connected, on a fallback). */
  wanted(): boolean;
  /** Whether a connection is up. */
  readonly connected: boolean;
  /** A WebSocket transport to the current URL (not opened yet). */
  webSocket(handler: TransportHandler): ClientTransport;
  /** The probe failed: WebSocket is still out of reach. */
  failed(): void;
  /** The server answered through WebSocket. */
  reachable(): void;
}

export class UpgradeProbe {
  readonly #host: ProbeHost;
  readonly #timeoutMs: number;
  readonly #retryMs: number;
  #timer: Timer | null = null;
  #probe: ClientTransport | null = null;

  /** A probe waits `timeoutMs` for its `pong`; after a failure the next one runs `retryMs` later. */
  constructor(host: ProbeHost, timeoutMs: number, retryMs: number) {
    this.#host = host;
    this.#timeoutMs = timeoutMs;
    this.#retryMs = retryMs;
  }

  /** Probe `delay` ms from now (instead of any probe scheduled). */
  schedule(delay: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimer(() => {
      this.#timer = null;
      this.#run();
    }, delay);
  }

  /** No probe scheduled, none under way. */
  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const probe = this.#probe;
    this.#probe = null;
    probe?.close(CloseCode.NormalClosure, 'probe');
  }

  #run(): void {
    if (!this.#host.wanted()) return;
    let timer: Timer | null = null;
    let probe: ClientTransport;
    const finish = (ok: boolean): void => {
      if (this.#probe !== probe) return;
      if (timer) clearTimeout(timer);
      this.#probe = null;
      probe.close(CloseCode.NormalClosure, 'probe');
      if (ok) {
        this.#host.reachable();
        return;
      }
      this.#host.failed();
      if (this.#host.connected) this.schedule(this.#retryMs);
    };
    probe = this.#host.webSocket({
      onOpen: () => probe.send({ op: 'ping' }),
      onMessage: (message) => {
        if (message.op === 'pong') finish(true);
      },
      onClose: () => finish(false),
    });
    this.#probe = probe;
    timer = setTimer(() => finish(false), this.#timeoutMs);
    probe.open();
  }
}
