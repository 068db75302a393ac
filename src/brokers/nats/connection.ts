/**
 * The NATS connection a broker or presence store runs on, and what it
 * says when NATS is not there. nats.js reconnects by itself (forever, by
 * default here); meanwhile every operation rejects at once with
 * `RT_ERR_BROKER_UNAVAILABLE` instead of waiting in nats.js's buffers for a
 * timeout, and nothing ever throws into the event loop: a NATS server
 * that is down never takes the node down.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { brokerError, closedError, invalidChannel, unavailable as unavailableError, type BrokerError } from '../errors.js';

export type { BrokerError };

export { brokerError, closedError, invalidChannel };

/** The documented 503-class error: NATS (or JetStream) cannot be reached now; retry later. */
export function unavailable(cause?: unknown): BrokerError {
  return unavailableError('NATS', cause);
}

/** What a caller gets for a failed NATS call: our own errors as they are, anything else as unavailable. */
export function asBrokerError(err: unknown): BrokerError {
  if (err instanceof Error && typeof (err as Partial<BrokerError>).code === 'string' && (err as BrokerError).code.startsWith('RT_ERR_')) {
    return err as BrokerError;
  }
  return unavailable(err);
}

export interface NatsConnectOptions {
  /** NATS server URL(s). Default `nats://127.0.0.1:4222`. */
  servers?: string | string[];
  /** A connection to use instead of opening one; the caller keeps it (close() leaves it open). */
  connection?: NatsConnection;
  /** The connection's name in the server's monitoring. */
  name?: string;
  /** Milliseconds to wait for a JetStream answer. Default 5000. */
  requestTimeoutMs?: number;
  /** Called with errors nobody awaits (a refresh, a resync). Default `console.error`. */
  onError?: (err: unknown) => void;
}

/** A connection, whether it is up, and who to tell when it comes back. */
export class Link {
  #up = true;
  #closing = false;
  readonly #onReconnect: Array<() => void> = [];
  readonly #watch: Promise<void>;

  private constructor(
    readonly nc: NatsConnection,
    readonly owned: boolean,
  ) {
    this.#watch = this.#watchStatus();
  }

  /** Connect (or adopt `options.connection`). Rejects with RT_ERR_BROKER_UNAVAILABLE when no server answers. */
  static async open(options: NatsConnectOptions, name: string): Promise<Link> {
    if (options.connection !== undefined) return new Link(options.connection, false);
    try {
      const nc = await connect({
        servers: options.servers ?? 'nats://127.0.0.1:4222',
        name: options.name ?? name,
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        reconnectJitter: 100,
        // A quick first connect: a node that cannot reach NATS at start says so instead of hanging.
        timeout: 5000,
      });
      return new Link(nc, true);
    } catch (err) {
      throw unavailable(err);
    }
  }

  /** Whether the connection is up now (false while nats.js reconnects, and once closed). */
  get up(): boolean {
    return this.#up && !this.#closing && !this.nc.isClosed();
  }

  /** Throw RT_ERR_BROKER_UNAVAILABLE unless the connection is up. */
  check(): void {
    if (!this.up) throw unavailable(new Error(this.nc.isClosed() ? 'the connection is closed' : 'disconnected, reconnecting'));
  }

  /** Call `fn` after each reconnect. */
  onReconnect(fn: () => void): void {
    this.#onReconnect.push(fn);
  }

  async #watchStatus(): Promise<void> {
    try {
      for await (const s of this.nc.status()) {
        if (s.type === 'disconnect') this.#up = false;
        else if (s.type === 'reconnect') {
          this.#up = true;
          for (const fn of this.#onReconnect) fn();
        }
      }
    } catch {
      // The status iterator ends with the connection; nothing to report.
    }
  }

  /** Close an owned connection (drained: what was published goes out first); leave a borrowed one open. */
  async close(): Promise<void> {
    this.#closing = true;
    if (this.owned && !this.nc.isClosed()) {
      try {
        if (this.#up) await this.nc.drain();
        else await this.nc.close();
      } catch {
        await this.nc.close().catch(() => {});
      }
    }
    if (this.owned) await this.#watch;
  }
}
