/**
 * Several NatsBroker nodes on one channel at once: the compare-and-set on
 * the subject's last sequence gives every publication its own offset, with
 * no holes, and a subscriber on a third node gets all of them once, in
 * offset order, although the nodes' fan-outs cross on the way (the
 * Continuity of the receiving node puts them back in order, refilling from
 * history when one overtakes another).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BrokerHandler, Publication } from '../../../src/brokers/broker.js';
import { NatsBroker } from '../../../src/brokers/nats/nats-broker.js';
import { NatsServer } from '../../support/nats.js';
import { until } from '../../support/wait.js';

describe('NatsBroker: several nodes publishing on one channel', () => {
  let server: NatsServer;
  const nodes: NatsBroker[] = [];

  before(async () => {
    server = await NatsServer.start();
    for (let i = 0; i < 3; i++) nodes.push(await NatsBroker.connect({ servers: server.url }));
  });
  after(async () => {
    for (const n of nodes) await n.close();
    await server?.destroy();
  });

  it('offsets 1..N with no hole or repeat; a third node receives them once, in order', async () => {
    const [a, b, watcher] = nodes as [NatsBroker, NatsBroker, NatsBroker];
    const got: Publication[] = [];
    const handler: BrokerHandler = { onPublication: (p) => got.push(p), onJoin: () => {}, onLeave: () => {} };
    watcher.setHandler(handler);
    const c = `race/${Math.random().toString(36).slice(2, 8)}`;
    await watcher.subscribe(c);
    const N = 60;
    const history = { size: 1000, ttlMs: 0 };
    const results = await Promise.all([
      ...Array.from({ length: N }, (_, i) => a.publish(c, `a${i}`, { history })),
      ...Array.from({ length: N }, (_, i) => b.publish(c, `b${i}`, { history })),
    ]);
    const offsets = results.map((r) => r.offset).sort((x, y) => x - y);
    assert.deepEqual(
      offsets,
      Array.from({ length: 2 * N }, (_, i) => i + 1),
    );
    assert.equal(new Set(results.map((r) => r.epoch)).size, 1);
    await until(() => got.length >= 2 * N, 5000, `${2 * N} deliveries`);
    assert.deepEqual(
      got.map((p) => p.offset),
      offsets,
    );
    // Each node's own publications keep their order.
    for (const who of ['a', 'b']) {
      const mine = got.filter((p) => (p.data as string).startsWith(who)).map((p) => Number((p.data as string).slice(1)));
      assert.deepEqual(mine, Array.from({ length: N }, (_, i) => i));
    }
    // And history agrees with what was delivered.
    const h = await watcher.history(c, { since: { offset: 0, epoch: results[0]!.epoch } });
    assert.equal(h.recovered, true);
    assert.deepEqual(
      h.publications.map((p) => p.data),
      got.map((p) => p.data),
    );
  });
});
