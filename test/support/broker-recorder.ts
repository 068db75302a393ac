/**
 * A BrokerHandler for the broker tests (memory, Redis, NATS): keeps every
 * publication and the client of every join, in order, with a bounded wait
 * for a publication. (The conformance suite has its own, which also keeps
 * leaves and their order among publications.)
 */
import { isDeepStrictEqual } from 'node:util';
import type { BrokerHandler, ClientInfo, Publication } from '../../src/brokers/broker.js';
import { until, WAIT } from './wait.js';

export class BrokerRecorder implements BrokerHandler {
  readonly pubs: Publication[] = [];
  /** The client of each join, in order. */
  readonly joins: string[] = [];

  /** `waitMs`: the bound of `waitFor()`. */
  constructor(private readonly waitMs = WAIT) {}

  onPublication(pub: Publication): void {
    this.pubs.push(pub);
  }
  onJoin(_channel: string, info: ClientInfo): void {
    this.joins.push(info.client);
  }
  onLeave(): void {}

  /** The data of every publication (on `channel` only, if given), in order. */
  data(channel?: string): unknown[] {
    return this.pubs.filter((p) => channel === undefined || p.channel === channel).map((p) => p.data);
  }

  /** Resolves once a publication with this data has arrived; rejects after `waitMs`. */
  waitFor(data: unknown): Promise<void> {
    return until(() => this.pubs.some((p) => isDeepStrictEqual(p.data, data)), this.waitMs, JSON.stringify(data));
  }
}
