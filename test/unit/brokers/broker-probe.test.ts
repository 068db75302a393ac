/**
 * `Broker#probe` on Redis and NATS, against real servers behind a TCP relay
 * (test/support/tcp-relay.ts) that can make a connection go silent: open,
 * no error, nothing delivered. A probe measures the round trip through the
 * fan-out; a probe that times out makes the broker drop the dead connection
 * and subscribe again, and what was published meanwhile is refilled from
 * history, in order, with nothing lost.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Broker } from '../../../src/brokers/broker.js';
import { NatsBroker } from '../../../src/brokers/nats/nats-broker.js';
import { RedisBroker } from '../../../src/brokers/redis/redis-broker.js';
import { silentLogger } from '../../../src/realtime/transport.js';
import { createConfiguredBroker } from '../../../src/server/brokers.js';
import { BrokerRecorder } from '../../support/broker-recorder.js';
import { NatsServer } from '../../support/nats.js';
import { RedisServer } from '../../support/redis.js';
import { serverForSuite } from '../../support/server-hooks.js';
import { TcpRelay } from '../../support/tcp-relay.js';
import { until, within } from '../../support/wait.js';

const H = { size: 100, ttlMs: 0 };
/** Far above a loopback round trip, far below the tests' own bounds. */
const PROBE_TIMEOUT_MS = 1500;

/**
 * `broker` subscribed, a probe answered, one publication delivered; then
 * `silence()` makes its connection go quiet, five publications are stored
 * through `publisher` meanwhile; the probe gives up, the broker subscribes
 * again (`resubscribed`), and every publication arrives once, in order.
 */
async function silentSubscriptionRecovers(broker: Broker, publisher: Broker, silence: () => void, resubscribed: () => number): Promise<void> {
  const rec = new BrokerRecorder(10_000);
  broker.setHandler(rec);
  await broker.subscribe('room');
  const rtt = await broker.probe!(PROBE_TIMEOUT_MS);
  assert.ok(rtt > 0 && rtt < PROBE_TIMEOUT_MS, `a round trip in ms: ${rtt}`);
  await publisher.publish('room', 'before', { history: H });
  await rec.waitFor('before');

  silence();
  // Published while the subscription is dead: stored in history, not delivered.
  for (let i = 1; i <= 5; i++) await publisher.publish('room', `during ${i}`, { history: H });
  await assert.rejects(within(broker.probe!(PROBE_TIMEOUT_MS), 20_000, 'the probe to give up'), /probe|unavailable/i);
  await until(() => resubscribed() > 0, 20_000, 'the broker to subscribe again');
  // Made again: probes answer, the gap was refilled in order, new publications flow.
  assert.ok((await within(broker.probe!(PROBE_TIMEOUT_MS), 20_000, 'a probe after recovery')) > 0);
  await publisher.publish('room', 'after', { history: H });
  await rec.waitFor('after');
  assert.deepEqual(
    rec.pubs.map((p) => p.data),
    ['before', 'during 1', 'during 2', 'during 3', 'during 4', 'during 5', 'after'],
  );
  assert.deepEqual(
    rec.pubs.map((p) => p.offset),
    [1, 2, 3, 4, 5, 6, 7],
  );
}

describe('broker probe: redis', () => {
  const server = serverForSuite(() => RedisServer.start());

  it('measures the round trip; a silently dead subscriber connection is found, made again, and the gap refilled', async () => {
    const relay = await TcpRelay.start(Number(new URL(server().url).port));
    let resubscribed = 0;
    const broker = new RedisBroker({ url: `redis://127.0.0.1:${relay.port}`, onError: () => {}, onResubscribed: () => void resubscribed++ });
    try {
      await broker.ready();
      await silentSubscriptionRecovers(
        broker,
        broker, // publishes through its other (command) connection, which stays healthy
        () => {
          const subscriber = relay.connections.filter((c) => /SUBSCRIBE/i.test(c.sent()));
          assert.equal(subscriber.length, 1, 'one subscriber connection');
          subscriber[0]!.silence();
        },
        () => resubscribed,
      );
    } finally {
      await broker.close();
      await relay.close();
    }
  });
});

describe('broker probe: nats', () => {
  const server = serverForSuite(() => NatsServer.start());

  it('measures the round trip; a silently dead connection is found, made again, and the gap refilled', async () => {
    const relay = await TcpRelay.start(Number(new URL(server().url).port));
    let resubscribed = 0;
    // The broker publishes through JetStream on the same connection: the silence is applied after
    // the publications of the gap are stored, through a second (healthy) broker.
    const broker = await NatsBroker.connect({ servers: `nats://127.0.0.1:${relay.port}`, onError: () => {}, onResubscribed: () => void resubscribed++ });
    const publisher = await NatsBroker.connect({ servers: server().url, onError: () => {} });
    try {
      assert.equal(relay.connections.length, 1);
      await silentSubscriptionRecovers(broker, publisher, () => relay.connections[0]!.silence(), () => resubscribed);
    } finally {
      await publisher.close();
      await broker.close();
      await relay.close();
    }
  });

  it("through the server's configured broker (connecting while the server is built): the NATS broker's own round trip, never a made-up one", async () => {
    const relay = await TcpRelay.start(Number(new URL(server().url).port));
    const { broker, presence } = createConfiguredBroker({ type: 'nats', servers: [`nats://127.0.0.1:${relay.port}`], probeIntervalMs: 0, probeTimeoutMs: 0 }, silentLogger, { onGap: () => {}, onReconnected: () => {} });
    try {
      await broker.ready!();
      assert.ok((await broker.probe!(PROBE_TIMEOUT_MS)) > 0, 'a measured round trip');
      // The presence store connects through the relay too: every connection goes quiet.
      for (const c of relay.connections) c.silence();
      await assert.rejects(within(broker.probe!(PROBE_TIMEOUT_MS), 20_000, 'the probe to give up'), /probe|unavailable/i);
    } finally {
      // The relay first: a client closing over a quiet connection would wait for its flush.
      await relay.close();
      await broker.close();
      await presence.close();
    }
  });
});
