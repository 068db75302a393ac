/**
 * NatsBroker and NatsPresenceStore when nats-server goes away: restarted
 * with its file store (epochs kept: `recovered: true`), with an empty store
 * (JetStream lost the stream: new epochs), and down for 3 s (operations
 * reject with RT_ERR_BROKER_UNAVAILABLE, nothing crashes, subscriptions
 * work again after). Also: presence entries of a node that is gone expire.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { NatsBroker, NatsPresenceStore } from '../../../src/brokers/nats/nats-broker.js';
import { BrokerRecorder } from '../../support/broker-recorder.js';
import { NatsServer } from '../../support/nats.js';
import { serverForSuite } from '../../support/server-hooks.js';
import { sleep, until } from '../../support/wait.js';

const H = { size: 100, ttlMs: 0 };

/** Errors that reached the process (they would have crashed a node). */
const escaped: unknown[] = [];
const onEscape = (err: unknown): void => {
  escaped.push(err);
};

/** Long, so that an operation that waits for it is told apart from one rejected at once, on any machine. */
const REQUEST_TIMEOUT_MS = 60_000;

async function isUnavailable(p: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(p, (err: Error & { code?: string }) => {
    assert.equal(err.code, 'RT_ERR_BROKER_UNAVAILABLE', `${what}: ${err.message}`);
    return true;
  });
}

describe('NatsBroker when nats-server goes away', () => {
  let server: NatsServer;
  let broker: NatsBroker;
  let presence: NatsPresenceStore;
  let rec: BrokerRecorder;
  const reported: unknown[] = [];

  before(() => {
    process.on('uncaughtException', onEscape);
    process.on('unhandledRejection', onEscape);
  });
  after(() => {
    process.off('uncaughtException', onEscape);
    process.off('unhandledRejection', onEscape);
  });

  beforeEach(async () => {
    server = await NatsServer.start();
    const onError = (err: unknown): void => {
      reported.push(err);
    };
    broker = await NatsBroker.connect({ servers: server.url, onError, requestTimeoutMs: REQUEST_TIMEOUT_MS });
    presence = await NatsPresenceStore.connect({ servers: server.url, onError, presenceTtlMs: 2000, requestTimeoutMs: REQUEST_TIMEOUT_MS });
    rec = new BrokerRecorder();
    broker.setHandler(rec);
  });

  afterEach(async () => {
    await broker.close();
    await presence.close();
    await server.destroy();
    assert.deepEqual(escaped, [], 'nothing escaped into the process');
  });

  it('restarted with the same file store: same epoch, recovered: true, offsets go on', async () => {
    const c = 'restart/same';
    await broker.subscribe(c);
    const r1 = await broker.publish(c, 1, { history: H });
    const r2 = await broker.publish(c, 2, { history: H });
    const idBefore = broker.streamId;
    await server.stop();
    await until(() => !broker.connected, 5000, 'the broker to notice');
    await server.start();
    await until(() => broker.connected && presence.connected, 10_000, 'the broker and the store to reconnect');
    const h = await broker.history(c, { since: { offset: r1.offset, epoch: r1.epoch } });
    assert.equal(h.recovered, true);
    assert.deepEqual(h.position, { offset: 2, epoch: r1.epoch });
    assert.deepEqual(
      h.publications.map((p) => p.data),
      [2],
    );
    assert.equal(broker.streamId, idBefore);
    const r3 = await broker.publish(c, 3, { history: H });
    assert.deepEqual(r3, { offset: r2.offset + 1, epoch: r1.epoch, duplicate: false });
    await until(() => rec.data(c).includes(3), 2000, 'delivery after the restart');
    assert.deepEqual(rec.data(c), [1, 2, 3]);
  });

  it('restarted with an empty store: a new epoch, recovered: false, offsets from 1', async () => {
    const c = 'restart/fresh';
    const quiet = 'restart/quiet';
    const q1 = (await broker.history(quiet)).position;
    const r1 = await broker.publish(c, 1, { history: H });
    await broker.publish(c, 2, { history: H });
    const idBefore = broker.streamId;
    await server.stop();
    await until(() => !broker.connected, 5000, 'the broker to notice');
    await server.start({ fresh: true });
    await until(() => broker.connected && presence.connected, 10_000, 'the broker and the store to reconnect');
    const h = await broker.history(c, { since: { offset: 2, epoch: r1.epoch } });
    assert.equal(h.recovered, false);
    assert.notEqual(h.position.epoch, r1.epoch);
    assert.equal(h.position.offset, 0);
    assert.notEqual(broker.streamId, idBefore);
    const next = await broker.publish(c, 3, { history: H });
    assert.equal(next.offset, 1);
    assert.notEqual(next.epoch, r1.epoch);
    // A quiet channel's epoch changes too: a client resuming from it must not be told it missed nothing.
    assert.notEqual((await broker.history(quiet)).position.epoch, q1.epoch);
  });

  it('down for 3 s: operations reject with RT_ERR_BROKER_UNAVAILABLE, then everything works again', async () => {
    const c = 'outage/held';
    await broker.subscribe(c);
    await broker.publish(c, 'before', { history: H });
    await presence.add(c, { client: 'c1', user: 'u1' });
    await until(() => rec.data(c).includes('before'), 2000, 'the first delivery');

    await server.stop();
    await until(() => !broker.connected, 5000, 'the broker to notice');
    const started = Date.now();
    await isUnavailable(broker.publish(c, 'during', { history: H }), 'publish');
    await isUnavailable(broker.publish(c, 'volatile', { volatile: true }), 'volatile publish');
    await isUnavailable(broker.history(c), 'history');
    await isUnavailable(broker.subscribe('outage/new'), 'subscribe');
    await isUnavailable(broker.publishPresence(c, 'join', { client: 'c2', user: 'u2' }), 'publishPresence');
    await isUnavailable(broker.removeHistory(c), 'removeHistory');
    await isUnavailable(presence.add(c, { client: 'c2', user: 'u2' }), 'presence.add');
    await isUnavailable(presence.get(c), 'presence.get');
    await isUnavailable(presence.stats(c), 'presence.stats');
    // Nine operations together still well under one request timeout: none waited for it (whatever the machine's load).
    assert.ok(Date.now() - started < REQUEST_TIMEOUT_MS, 'rejected at once, not after the request timeout');
    await broker.unsubscribe('never/subscribed'); // local: fine while down
    await sleep(3000);

    await server.start();
    await until(() => broker.connected && presence.connected, 10_000, 'the broker and the store to reconnect');
    // The subscription held through the outage delivers again; a new one works.
    await broker.subscribe('outage/new');
    const r = await broker.publish(c, 'after', { history: H });
    await broker.publish('outage/new', 'new');
    await until(() => rec.data(c).includes('after') && rec.data('outage/new').includes('new'), 3000, 'deliveries after the outage');
    assert.deepEqual(rec.data(c), ['before', 'after']);
    assert.equal(r.offset, 2, 'the failed publish took no offset');
    assert.deepEqual(await presence.get(c), { c1: { client: 'c1', user: 'u1' } });
  });

  it('after a reconnect, publications of another node arrive once and in order, continuing the offsets', async () => {
    const c = 'outage/refill';
    await broker.subscribe(c);
    await broker.publish(c, 1, { history: H });
    await until(() => rec.data(c).length === 1, 2000, 'the first delivery');
    await server.stop();
    await until(() => !broker.connected, 5000, 'the broker to notice');
    await server.start();
    await until(() => broker.connected && presence.connected, 10_000, 'the broker and the store to reconnect');
    const other = await NatsBroker.connect({ servers: server.url });
    try {
      await other.publish(c, 2, { history: H });
      await other.publish(c, 3, { history: H });
      await until(() => rec.data(c).length >= 3, 3000, 'all three');
      assert.deepEqual(rec.data(c), [1, 2, 3]);
    } finally {
      await other.close();
    }
  });

  it('a node that cannot reach NATS at start is told so', async () => {
    const port = server.port;
    await server.stop();
    await isUnavailable(NatsBroker.connect({ servers: `nats://127.0.0.1:${port}` }), 'connect');
    await isUnavailable(NatsPresenceStore.connect({ servers: `nats://127.0.0.1:${port}` }), 'presence connect');
    await server.start();
    await until(() => broker.connected && presence.connected, 10_000, 'the broker and the store to reconnect');
  });
});

describe('NatsPresenceStore expiry', () => {
  const server = serverForSuite(() => NatsServer.start());

  it("a live store keeps its entries past the TTL; a gone store's entries expire", async () => {
    const alive = await NatsPresenceStore.connect({ servers: server().url, presenceTtlMs: 1000 });
    const dying = await NatsPresenceStore.connect({ servers: server().url, presenceTtlMs: 1000 });
    try {
      await alive.add('room', { client: 'a', user: 'ua' });
      await dying.add('room', { client: 'd', user: 'ud' });
      assert.deepEqual(Object.keys(await alive.get('room')).sort(), ['a', 'd']);
      await dying.close(); // no more refreshes: as if its node died
      await sleep(2500);
      assert.deepEqual(Object.keys(await alive.get('room')), ['a']);
      assert.deepEqual(await alive.stats('room'), { clients: 1, users: 1 });
    } finally {
      await alive.close();
      await dying.close();
    }
  });
  /** A store that records what it reports; its heartbeat runs when the test calls it. */
  async function node(name: string, reports: string[]): Promise<NatsPresenceStore> {
    const store = await NatsPresenceStore.connect({ servers: server().url, presenceTtlMs: 1000, heartbeatMs: 3_600_000 });
    store.setExpiryHandler({
      expired: (channel, info) => void reports.push(`${name} expired ${channel} ${info.client} ${info.user} ${JSON.stringify(info.info ?? null)}`),
      restored: (channel, info) => void reports.push(`${name} restored ${channel} ${info.client}`),
    });
    return store;
  }

  /** `rounds` heartbeats of each store, 200 ms apart (well inside the 1 s TTL). */
  async function beat(stores: NatsPresenceStore[], rounds: number): Promise<void> {
    for (let i = 0; i < rounds; i++) {
      for (const store of stores) await store.heartbeat();
      await sleep(200);
    }
  }

  it("a dead store's entries are reported expired once, by one survivor; a removed entry by none", async () => {
    const reports: string[] = [];
    const dead = await node('dead', reports);
    const b = await node('b', reports);
    const c = await node('c', reports);
    try {
      await dead.add('hall', { client: 'd1', user: 'dora', info: { seat: 1 } });
      await dead.add('hall', { client: 'd2', user: 'dora' });
      await b.add('hall', { client: 'b1', user: 'bob' });
      await c.add('hall', { client: 'c1', user: 'cy' });
      await c.add('hall', { client: 'c2', user: 'cy' });
      await beat([b, c], 1); // every survivor has listed the channel
      await c.remove('hall', 'c2'); // a normal leave: its node announces it, the stores do not
      await dead.close(); // no remove: as if the process died
      await beat([b, c], 12); // 2.4 s: past the dead store's TTL, and more sweeps after
      assert.deepEqual(reports.map((r) => r.replace(/^[bc] /, '')).sort(), ['expired hall d1 dora {"seat":1}', 'expired hall d2 dora null']);
      assert.deepEqual(Object.keys(await b.get('hall')).sort(), ['b1', 'c1']);
      assert.deepEqual(await b.stats('hall'), { clients: 2, users: 2 });
    } finally {
      await Promise.all([dead.close(), b.close(), c.close()]);
    }
  });

  /** b1's entry vanishes from the bucket as an expired entry would (a purge leaves no marker). */
  async function expireB1(): Promise<void> {
    const nc = await connect({ servers: server().url });
    try {
      await (await jetstreamManager(nc)).streams.purge('KV_SWITCHBOARD_presence', { filter: '$KV.SWITCHBOARD_presence.hall2.bob.b1.*' });
    } finally {
      await nc.close();
    }
  }

  it('an own entry that expired comes back; reported restored only when another node had announced it gone', async () => {
    const reports: string[] = [];
    const b = await node('b', reports);
    const c = await node('c', reports);
    try {
      await b.add('hall2', { client: 'b1', user: 'bob' });
      await c.add('hall2', { client: 'c1', user: 'cy' });
      await beat([b, c], 1);
      await expireB1();
      await c.heartbeat(); // c notices first: it announces b1's leave
      await b.heartbeat(); // b finds its entry gone: written again, announced back
      assert.deepEqual(reports, ['c expired hall2 b1 bob null', 'b restored hall2 b1']);
      assert.deepEqual(Object.keys(await c.get('hall2')).sort(), ['b1', 'c1']);

      await beat([b, c], 1);
      await expireB1();
      await b.heartbeat(); // its own node notices first: nobody announced anything, it comes back silently
      await beat([c, b], 2);
      assert.equal(reports.length, 2, reports.join('; '));
      assert.deepEqual(Object.keys(await c.get('hall2')).sort(), ['b1', 'c1']);
    } finally {
      await Promise.all([b.close(), c.close()]);
    }
  });
});
