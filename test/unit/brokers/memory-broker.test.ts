/**
 * What MemoryBroker promises beyond the Broker contract (the contract itself
 * is in test/conformance/broker.suite.ts): delivery timing and order, the
 * rule that keeps memory bounded, the epoch scheme, the bounds on channels
 * and idempotency keys, and close().
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBroker, MemoryPresenceStore, randomId, type MemoryBrokerOptions } from '../../../src/brokers/memory/memory-broker.js';
import type { BrokerHandler, ClientInfo, Publication } from '../../../src/brokers/broker.js';

const H = { size: 10, ttlMs: 0 };

class Recorder implements BrokerHandler {
  readonly log: string[] = [];
  readonly pubs: Publication[] = [];
  onPub?: (pub: Publication) => void;
  onPublication(pub: Publication): void {
    this.pubs.push(pub);
    this.log.push(`pub ${pub.channel} ${String(pub.data)}`);
    this.onPub?.(pub);
  }
  onJoin(channel: string, info: ClientInfo): void {
    this.log.push(`join ${channel} ${info.client}`);
  }
  onLeave(channel: string, info: ClientInfo): void {
    this.log.push(`leave ${channel} ${info.client}`);
  }
}

/** A broker on an injected clock, without the sweep timer unless asked. */
function setup(options: MemoryBrokerOptions = {}) {
  const clock = { now: 1_700_000_000_000 };
  const broker = new MemoryBroker({ now: () => clock.now, sweepIntervalMs: 0, ...options });
  const rec = new Recorder();
  broker.setHandler(rec);
  return { broker, rec, clock };
}

/** Let every queued microtask run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A broker whose handler throws at the publication of 1 on 'a', once 1 and 2 were published there and delivered. */
async function throwingOnOne(options: MemoryBrokerOptions = {}) {
  const { broker, rec } = setup(options);
  await broker.subscribe('a');
  rec.onPub = (pub) => {
    if (pub.data === 1) throw new Error('boom');
  };
  void broker.publish('a', 1);
  void broker.publish('a', 2);
  await settle();
  return { broker, rec };
}

describe('MemoryBroker: epochs', () => {
  it('has an 8-character base36 id that prefixes its epochs', async () => {
    const { broker } = setup();
    assert.match(broker.id, /^[0-9a-z]{8}$/);
    const r = await broker.publish('a', 1, { history: H });
    assert.ok(r.epoch.startsWith(broker.id));
    assert.notEqual(new MemoryBroker({ sweepIntervalMs: 0 }).id, broker.id);
    assert.match(randomId(12), /^[0-9a-z]{12}$/);
    await broker.close();
  });

  it('a dropped stream that assigned offsets changes the channel quiet epoch; nothing else does', async () => {
    const { broker } = setup();
    const quiet = (await broker.history('c')).position;
    await broker.subscribe('c');
    await broker.unsubscribe('c'); // no stream was created: no change
    assert.deepEqual((await broker.history('c')).position, quiet);
    const r = await broker.publish('c', 1, { history: H });
    assert.equal(r.epoch, quiet.epoch);
    await broker.removeHistory('c');
    const after = (await broker.history('c')).position;
    assert.equal(after.offset, 0);
    assert.notEqual(after.epoch, quiet.epoch);
    assert.equal((await broker.history('c', { since: quiet })).recovered, false);
    await broker.close();
  });

  it('a publication without history, state or subscription gets offset 1 in a throwaway epoch', async () => {
    const { broker } = setup();
    const quiet = (await broker.history('c')).position;
    const r1 = await broker.publish('c', 1);
    const r2 = await broker.publish('c', 2);
    assert.equal(r1.offset, 1);
    assert.equal(r2.offset, 1);
    assert.notEqual(r1.epoch, r2.epoch);
    assert.notEqual(r1.epoch, quiet.epoch);
    assert.equal(broker.stats().channels, 0);
    assert.deepEqual((await broker.history('c')).position, quiet);
    await broker.close();
  });
});

describe('MemoryBroker: delivery', () => {
  it('is asynchronous: nothing during publish(), everything before its awaiter resumes', async () => {
    const { broker, rec } = setup();
    await broker.subscribe('a');
    const pending = broker.publish('a', 1);
    assert.deepEqual(rec.log, [], 'not delivered synchronously');
    await pending;
    assert.deepEqual(rec.log, ['pub a 1']);
    await broker.close();
  });

  it('follows call order across channels and presence events', async () => {
    const { broker, rec } = setup();
    await broker.subscribe('a');
    await broker.subscribe('b/+');
    void broker.publish('a', 1);
    void broker.publishPresence('b/x', 'join', { client: 'c1', user: 'u' });
    void broker.publish('b/x', 2);
    void broker.publish('a', 3);
    void broker.publishPresence('a', 'leave', { client: 'c2', user: 'u' });
    await settle();
    assert.deepEqual(rec.log, ['pub a 1', 'join b/x c1', 'pub b/x 2', 'pub a 3', 'leave a c2']);
    await broker.close();
  });

  it('a handler that publishes is not re-entered: its publication is queued behind the others', async () => {
    const { broker, rec } = setup();
    await broker.subscribe('a');
    let depth = 0;
    let maxDepth = 0;
    rec.onPub = (pub) => {
      depth++;
      maxDepth = Math.max(maxDepth, depth);
      if (pub.data === 1) void broker.publish('a', 'from handler');
      depth--;
    };
    void broker.publish('a', 1);
    void broker.publish('a', 2);
    await settle();
    assert.deepEqual(rec.log, ['pub a 1', 'pub a 2', 'pub a from handler']);
    assert.equal(maxDepth, 1);
    assert.deepEqual(
      rec.pubs.map((p) => p.offset),
      [1, 2, 3],
    );
    await broker.close();
  });

  it('without onError, what a handler throws is reported with console.error, never rethrown into the event loop', async (t) => {
    const reported: unknown[][] = [];
    t.mock.method(console, 'error', (...args: unknown[]) => reported.push(args));
    let uncaught = 0;
    const onUncaught = (): void => {
      uncaught++;
    };
    process.on('uncaughtException', onUncaught);
    t.after(() => process.removeListener('uncaughtException', onUncaught));
    const { broker, rec } = await throwingOnOne();
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(rec.log, ['pub a 1', 'pub a 2']);
    assert.equal(reported.length, 1);
    assert.equal((reported[0]![1] as Error).message, 'boom');
    assert.equal(uncaught, 0);
    await broker.close();
  });

  it('a throwing handler does not stop delivery; the error goes to onError', async () => {
    const errors: unknown[] = [];
    const { broker, rec } = await throwingOnOne({ onError: (err) => errors.push(err) });
    assert.deepEqual(rec.log, ['pub a 1', 'pub a 2']);
    assert.equal(errors.length, 1);
    assert.equal((errors[0] as Error).message, 'boom');
    await broker.publish('a', 3); // the queue still works
    assert.deepEqual(rec.log, ['pub a 1', 'pub a 2', 'pub a 3']);
    await broker.close();
  });

  it('decides at publish time: a publication queued before unsubscribe is still delivered', async () => {
    const { broker, rec } = setup();
    await broker.subscribe('a');
    void broker.publish('a', 'queued');
    void broker.unsubscribe('a');
    void broker.publish('a', 'after');
    await settle();
    assert.deepEqual(rec.log, ['pub a queued']);
    await broker.close();
  });

  it('delivers nothing without a handler, and nothing after close()', async () => {
    const broker = new MemoryBroker({ sweepIntervalMs: 0 });
    await broker.subscribe('a');
    await broker.publish('a', 1); // no handler yet: dropped
    const rec = new Recorder();
    broker.setHandler(rec);
    void broker.publish('a', 2);
    await broker.close();
    await settle();
    assert.deepEqual(rec.log, []);
  });
});

describe('MemoryBroker: memory stays bounded', () => {
  it('a channel without history and without subscription leaves no state', async () => {
    const { broker } = setup();
    await broker.subscribe('p/+'); // patterns keep no streams
    for (let i = 0; i < 100; i++) await broker.publish(`p/${i}`, i);
    await broker.history('never/published');
    assert.deepEqual(broker.stats(), { channels: 0, publications: 0, idempotencyKeys: 0, subscriptions: 0, patterns: 1 });
    await broker.close();
  });

  it('a subscription by name keeps the stream (offsets continue); unsubscribing drops it', async () => {
    const { broker } = setup();
    await broker.subscribe('a');
    const r1 = await broker.publish('a', 1);
    const r2 = await broker.publish('a', 2);
    assert.deepEqual([r1.offset, r2.offset, r2.epoch], [1, 2, r1.epoch]);
    assert.equal(broker.stats().channels, 1);
    await broker.unsubscribe('a');
    assert.equal(broker.stats().channels, 0);
    const r3 = await broker.publish('a', 3);
    assert.notEqual(r3.epoch, r1.epoch);
    await broker.close();
  });

  it('history keeps the stream; after the publications expire the position lives historyMetaTtlMs more', async () => {
    const { broker, clock } = setup({ historyMetaTtlMs: 1000 });
    const opts = { history: { size: 10, ttlMs: 100 } };
    await broker.publish('a', 1, opts);
    const last = await broker.publish('a', 2, opts);
    clock.now += 100;
    broker.sweep();
    assert.deepEqual(broker.stats(), { channels: 1, publications: 0, idempotencyKeys: 0, subscriptions: 0, patterns: 0 });
    // A client that saw the last publication missed nothing.
    const resumed = await broker.history('a', { since: last });
    assert.deepEqual(resumed, { publications: [], position: { offset: 2, epoch: last.epoch }, recovered: true });
    assert.equal((await broker.history('a', { since: { offset: 1, epoch: last.epoch } })).recovered, false);
    clock.now += 900; // 1000 ms after the last publication
    broker.sweep();
    assert.equal(broker.stats().channels, 0);
    const gone = await broker.history('a', { since: last });
    assert.equal(gone.recovered, false);
    assert.equal(gone.position.offset, 0);
    assert.notEqual(gone.position.epoch, last.epoch);
    await broker.close();
  });

  it('a publication without history ends the history and its grace period', async () => {
    const { broker } = setup();
    const r = await broker.publish('a', 1, { history: H });
    await broker.publish('a', 2);
    assert.equal(broker.stats().channels, 0);
    assert.equal((await broker.history('a', { since: r })).recovered, false);
    await broker.close();
  });

  it('idempotency keys keep the stream until they expire', async () => {
    const { broker, clock } = setup();
    const first = await broker.publish('a', 1, { idempotencyKey: 'k', idempotencyTtlMs: 50 });
    assert.deepEqual(broker.stats(), { channels: 1, publications: 0, idempotencyKeys: 1, subscriptions: 0, patterns: 0 });
    assert.deepEqual(await broker.publish('a', 1, { idempotencyKey: 'k', idempotencyTtlMs: 50 }), { ...first, duplicate: true });
    clock.now += 50;
    broker.sweep();
    assert.equal(broker.stats().channels, 0);
    await broker.close();
  });

  it('the sweep timer evicts and drops without any access', async () => {
    const { broker, clock } = setup({ sweepIntervalMs: 5, historyMetaTtlMs: 0 });
    for (let i = 0; i < 20; i++) await broker.publish(`c/${i}`, i, { history: { size: 5, ttlMs: 10 }, idempotencyKey: `k${i}`, idempotencyTtlMs: 10 });
    assert.equal(broker.stats().channels, 20);
    clock.now += 10;
    const deadline = Date.now() + 2000;
    while (broker.stats().channels > 0) {
      assert.ok(Date.now() < deadline, 'the sweep did not run');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.deepEqual(broker.stats(), { channels: 0, publications: 0, idempotencyKeys: 0, subscriptions: 0, patterns: 0 });
    await broker.close();
  });

  it('maxChannels drops the least recently published stream', async () => {
    const { broker } = setup({ maxChannels: 3 });
    const first = await broker.publish('a', 1, { history: H });
    await broker.publish('b', 1, { history: H });
    await broker.publish('c', 1, { history: H });
    await broker.publish('a', 2, { history: H }); // a is now the most recent
    await broker.publish('d', 1, { history: H }); // drops b
    assert.equal(broker.stats().channels, 3);
    assert.equal((await broker.history('b')).publications.length, 0);
    assert.deepEqual(
      (await broker.history('a', { since: { offset: 0, epoch: first.epoch } })).publications.map((p) => p.data),
      [1, 2],
    );
    await broker.close();
  });

  it('maxIdempotencyKeys forgets the oldest key first', async () => {
    const { broker } = setup({ maxIdempotencyKeys: 2 });
    await broker.publish('a', 1, { history: H, idempotencyKey: 'k1' });
    await broker.publish('a', 2, { history: H, idempotencyKey: 'k2' });
    await broker.publish('a', 3, { history: H, idempotencyKey: 'k3' });
    assert.equal(broker.stats().idempotencyKeys, 2);
    assert.equal((await broker.publish('a', 'retry', { history: H, idempotencyKey: 'k3' })).duplicate, true);
    assert.equal((await broker.publish('a', 'retry', { history: H, idempotencyKey: 'k1' })).duplicate, false); // forgotten
    await broker.close();
  });

  it('a smaller history size trims the retained publications', async () => {
    const { broker } = setup();
    for (let i = 1; i <= 6; i++) await broker.publish('a', i, { history: { size: 6, ttlMs: 0 } });
    await broker.publish('a', 7, { history: { size: 2, ttlMs: 0 } });
    assert.deepEqual(
      (await broker.history('a')).publications.map((p) => p.data),
      [6, 7],
    );
    assert.equal(broker.stats().publications, 2);
    await broker.close();
  });
});

describe('MemoryBroker: close()', () => {
  it('is idempotent, and every method rejects afterwards with RT_ERR_BROKER_CLOSED', async () => {
    const { broker } = setup({ sweepIntervalMs: 10 });
    await broker.publish('a', 1, { history: H });
    await broker.close();
    await broker.close();
    const closed = { code: 'RT_ERR_BROKER_CLOSED' };
    await assert.rejects(broker.publish('a', 1), closed);
    await assert.rejects(broker.subscribe('a'), closed);
    await assert.rejects(broker.unsubscribe('a'), closed);
    await assert.rejects(broker.publishPresence('a', 'join', { client: 'c', user: '' }), closed);
    await assert.rejects(broker.history('a'), closed);
    await assert.rejects(broker.removeHistory('a'), closed);
    assert.equal(broker.stats().channels, 0);
  });

  it('invalid channels reject with RT_ERR_INVALID_CHANNEL', async () => {
    const { broker } = setup();
    const invalid = { code: 'RT_ERR_INVALID_CHANNEL' };
    await assert.rejects(broker.publish('a/+', 1), invalid);
    await assert.rejects(broker.subscribe('a/#/b'), invalid);
    await assert.rejects(broker.history('a//b'), invalid);
    await assert.rejects(broker.publishPresence('#', 'join', { client: 'c', user: '' }), invalid);
    await broker.close();
  });
});

describe('MemoryPresenceStore', () => {
  it('keeps no state for a channel once its last client is removed', async () => {
    const presence = new MemoryPresenceStore();
    await presence.add('room', { client: 'c1', user: 'u1' });
    await presence.add('room', { client: 'c2', user: '' });
    assert.equal(presence.channelCount, 1);
    await presence.remove('room', 'c1');
    await presence.remove('room', 'c2');
    assert.equal(presence.channelCount, 0);
    await presence.close();
    await assert.rejects(presence.get('room'), { code: 'RT_ERR_BROKER_CLOSED' });
  });
});
