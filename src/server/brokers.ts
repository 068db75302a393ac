/**
 * The broker and presence store a configuration names (`broker.type`):
 * memory (one process), Redis or NATS (many nodes, one system).
 *
 * The server is built synchronously (the hub takes its broker at
 * construction) while a NATS connection is made asynchronously, so a
 * networked broker is wrapped in a `Connecting…` adapter: calls wait for
 * the connection, `ready()` (awaited by `RealtimeServer#start`) says whether
 * it came, and `available` answers `/readyz` from then on.
 */
import type {
  Broker,
  BrokerHandler,
  ClientInfo,
  HistoryFilter,
  HistoryResult,
  PresenceExpiryHandler,
  NodeBus,
  PresenceStore,
  PublishOptions,
  PublishResult,
} from '../brokers/broker.js';
import { MemoryBroker, MemoryPresenceStore } from '../brokers/memory/memory-broker.js';
import { NatsBroker, NatsPresenceStore } from '../brokers/nats/nats-broker.js';
import { RedisBroker, RedisPresenceStore } from '../brokers/redis/redis-broker.js';
import type { Logger } from '../realtime/transport.js';
import type { BrokerConfig } from './config/index.js';

/** What the server needs of a broker beyond the contract: whether it is connected. */
export interface Connectable {
  /** Resolves once connected; rejects (RT_ERR_BROKER_UNAVAILABLE) when the connection did not come. */
  ready(): Promise<void>;
  /** Connected now (`/readyz`). */
  readonly available: boolean;
}

export interface BrokerEvents {
  /** A node-side gap in the fan-out was found and is being refilled from history. */
  onGap(channel: string, missing: number): void;
  /** The broker's subscriptions came back after its connection was lost (and gaps were refilled). */
  onReconnected(): void;
}

export interface ConfiguredBroker {
  broker: Broker & Partial<Connectable>;
  presence: PresenceStore & Partial<Connectable>;
  /** The memory broker itself (snapshot file), when that is the type. */
  memory: MemoryBroker | null;
}

export function createConfiguredBroker(config: BrokerConfig, logger: Logger, events: BrokerEvents): ConfiguredBroker {
  const onError = (what: string) => (err: unknown) => logger.error({ err: err instanceof Error ? err.message : String(err) }, what);
  switch (config.type) {
    case 'memory': {
      // A handler that throws is a bug of ours (the hub never throws from fan-out): logged, and delivery goes on.
      const memory = new MemoryBroker({ onError: onError('broker delivery failed') });
      return { broker: memory, presence: new MemoryPresenceStore(), memory };
    }
    case 'redis': {
      const where = {
        ...(config.url === undefined ? {} : { url: config.url }),
        ...(config.cluster === undefined ? {} : { cluster: config.cluster }),
        ...(config.sentinels === undefined ? {} : { sentinels: config.sentinels, name: config.name! }),
      };
      const broker = new RedisBroker({ ...where, onError: onError('redis broker'), onGap: events.onGap, onResubscribed: events.onReconnected });
      const presence = new RedisPresenceStore({ ...where, onError: onError('redis presence') });
      return { broker, presence, memory: null };
    }
    case 'nats': {
      const options = { servers: config.servers, onError: onError('nats broker') };
      return {
        broker: new ConnectingBroker(NatsBroker.connect({ ...options, onGap: events.onGap, onResubscribed: events.onReconnected }), (b) => b.connected),
        presence: new ConnectingPresence(NatsPresenceStore.connect({ ...options, onError: onError('nats presence') }), (p) => p.connected),
        memory: null,
      };
    }
  }
}

/**
 * A broker whose connection is still being made: every call waits for it.
 * Only networked brokers are wrapped, and the contract lets only a broker of
 * one process omit `probe`: so the wrapped one must have it (a probe is
 * passed through, never answered with a made-up round trip).
 */
class ConnectingBroker<B extends Broker & NodeBus & Required<Pick<Broker, 'probe'>>> implements Broker, NodeBus, Connectable {
  #broker: B | null = null;
  readonly #connecting: Promise<B>;
  readonly #available: (broker: B) => boolean;
  #handler: BrokerHandler | null = null;

  constructor(connecting: Promise<B>, available: (broker: B) => boolean) {
    this.#available = available;
    this.#connecting = connecting.then((broker) => {
      this.#broker = broker;
      if (this.#handler !== null) broker.setHandler(this.#handler);
      return broker;
    });
    // Unobserved until ready() or the first call: never an unhandled rejection.
    this.#connecting.catch(() => {});
  }

  async ready(): Promise<void> {
    await this.#connecting;
  }

  get available(): boolean {
    return this.#broker !== null && this.#available(this.#broker);
  }

  setHandler(handler: BrokerHandler): void {
    this.#handler = handler;
    this.#broker?.setHandler(handler);
  }

  async publish(channel: string, data: unknown, options?: PublishOptions): Promise<PublishResult> {
    return (await this.#connecting).publish(channel, data, options);
  }
  async subscribe(channel: string): Promise<void> {
    return (await this.#connecting).subscribe(channel);
  }
  async unsubscribe(channel: string): Promise<void> {
    return (await this.#connecting).unsubscribe(channel);
  }
  async publishPresence(channel: string, kind: 'join' | 'leave', info: ClientInfo): Promise<void> {
    return (await this.#connecting).publishPresence(channel, kind, info);
  }
  async history(channel: string, filter?: HistoryFilter): Promise<HistoryResult> {
    return (await this.#connecting).history(channel, filter);
  }
  async removeHistory(channel: string): Promise<void> {
    return (await this.#connecting).removeHistory(channel);
  }
  async probe(timeoutMs: number): Promise<number> {
    return (await this.#connecting).probe(timeoutMs);
  }
  /** Known once connected (the server reads it after `ready()`). */
  get nodeId(): string {
    if (this.#broker === null) throw new Error('the broker is not connected yet: no node id');
    return this.#broker.nodeId;
  }
  get maxNodeMessageBytes(): number {
    return this.#broker?.maxNodeMessageBytes ?? 1024 * 1024;
  }
  async listenNodes(handler: (message: string) => void): Promise<void> {
    return (await this.#connecting).listenNodes(handler);
  }
  async sendToNode(to: string, message: string): Promise<boolean> {
    return (await this.#connecting).sendToNode(to, message);
  }
  async nodes(): Promise<string[]> {
    return (await this.#connecting).nodes();
  }
  async close(): Promise<void> {
    const broker = await this.#connecting.catch(() => null);
    await broker?.close();
  }
}

/** A presence store whose connection is still being made. */
class ConnectingPresence<P extends PresenceStore> implements PresenceStore, Connectable {
  #store: P | null = null;
  readonly #connecting: Promise<P>;
  readonly #available: (store: P) => boolean;

  constructor(connecting: Promise<P>, available: (store: P) => boolean) {
    this.#available = available;
    this.#connecting = connecting.then((store) => (this.#store = store));
    this.#connecting.catch(() => {});
  }

  async ready(): Promise<void> {
    await this.#connecting;
  }

  get available(): boolean {
    return this.#store !== null && this.#available(this.#store);
  }

  async add(channel: string, info: ClientInfo): Promise<void> {
    return (await this.#connecting).add(channel, info);
  }
  async remove(channel: string, clientId: string): Promise<void> {
    return (await this.#connecting).remove(channel, clientId);
  }
  async get(channel: string): Promise<Record<string, ClientInfo>> {
    return (await this.#connecting).get(channel);
  }
  async stats(channel: string): Promise<{ clients: number; users: number }> {
    return (await this.#connecting).stats(channel);
  }
  setExpiryHandler(handler: PresenceExpiryHandler): void {
    void this.#connecting.then((store) => store.setExpiryHandler?.(handler), () => {});
  }
  async close(): Promise<void> {
    const store = await this.#connecting.catch(() => null);
    await store?.close();
  }
}

export interface BrokerProbeOptions {
  intervalMs: number;
  timeoutMs: number;
  /** Each answered probe's round trip, in ms. */
  onRoundTrip(ms: number): void;
  /** A probe not answered (timed out, or the broker down). */
  onFailure(err: unknown): void;
  logger: Logger;
}

/**
 * Probe the broker's fan-out every `intervalMs` (`Broker#probe`): the round
 * trip is measured, and a subscription connection that died silently is
 * found and made again by the broker. One probe at a time; the first failure
 * of a series and the recovery are logged, not every failed probe. Returns
 * the function that stops it. A broker without `probe` is not probed.
 */
export function startBrokerProbe(broker: Broker, options: BrokerProbeOptions): () => void {
  if (broker.probe === undefined) return () => {};
  let failing = false;
  let running = false;
  let stopped = false;
  const tick = async (): Promise<void> => {
    if (running || stopped) return;
    running = true;
    try {
      const ms = await broker.probe!(options.timeoutMs);
      if (stopped) return;
      options.onRoundTrip(ms);
      if (failing) options.logger.info({ rttMs: Math.round(ms * 10) / 10 }, 'broker probe answered again');
      failing = false;
    } catch (err) {
      if (stopped) return;
      options.onFailure(err);
      if (!failing) options.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'broker probe failed');
      failing = true;
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void tick(), options.intervalMs);
  timer.unref();
  void tick();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
