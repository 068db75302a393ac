/**
 * Group commit on NATS (nats-broker.ts, *Group commit*): the stored
 * publications a node makes on one channel while its previous append is in
 * flight go to JetStream as one record, one compare-and-set for the run.
 * Offsets, order, history (read back across records of runs), keyed
 * publications and the size bound stay what they were with one record per
 * publication; the records themselves round-trip (records.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { NatsBroker } from '../../../src/brokers/nats/nats-broker.js';
import { decodeRecord, encodeRecord, firstOffset, KIND_HISTORY, KIND_POSITION, splitRecord, type StoredRecord } from '../../../src/brokers/nats/records.js';
import { packMsgpack } from '../../../src/wire/msgpack.js';
import { BrokerRecorder } from '../../support/broker-recorder.js';
import { NatsServer } from '../../support/nats.js';
import { serverForSuite } from '../../support/server-hooks.js';

const H = { history: { size: 1000, ttlMs: 0 } };

describe('NATS records of runs', () => {
  const base: StoredRecord = { kind: KIND_HISTORY, offset: 7, epoch: 'e1', time: 300, size: 10, ttlMs: 0, prev: 41, keyTtlMs: 0, data: { n: 7 } };

  it('a record of three publications round-trips, and splits into them newest first with their own offsets, times, data and senders', () => {
    const r: StoredRecord = {
      ...base,
      from: { client: 'c7', user: 'u' },
      earlier: [
        { time: 100, data: { n: 5 }, from: { client: 'c5', user: 'u' } },
        { time: 200, data: new Uint8Array([6]) },
      ],
    };
    const back = decodeRecord(encodeRecord(r))!;
    assert.deepEqual(back, r);
    assert.equal(firstOffset(back), 5);
    assert.deepEqual(
      splitRecord(back).map((p) => [p.offset, p.time, p.data, p.from?.client, p.epoch, p.size, p.earlier]),
      [
        [7, 300, { n: 7 }, 'c7', 'e1', 10, undefined],
        [6, 200, new Uint8Array([6]), undefined, 'e1', 10, undefined],
        [5, 100, { n: 5 }, 'c5', 'e1', 10, undefined],
      ],
    );
  });

  it('a run without history keeps times only; one publication has no earlier field at all', () => {
    const r: StoredRecord = { ...base, kind: KIND_POSITION, size: 0, data: undefined, earlier: [{ time: 100 }, { time: 200 }] };
    delete r.data;
    const back = decodeRecord(encodeRecord(r))!;
    assert.deepEqual(back.earlier, [{ time: 100 }, { time: 200 }]);
    assert.deepEqual(splitRecord(back).map((p) => [p.offset, p.data]), [[7, undefined], [6, undefined], [5, undefined]]);
    const single = decodeRecord(encodeRecord(base))!;
    assert.equal(single.earlier, undefined);
    assert.deepEqual(splitRecord(single), [single]);
  });

  it('a record whose run is not a list of [time, …] is not ours: undefined, nothing thrown', () => {
    const fields = [1, KIND_HISTORY, 7, 'e1', 300, 10, 0, 41, 0, null, null];
    assert.equal(decodeRecord(packMsgpack([...fields, [['x']]])), undefined);
    assert.equal(decodeRecord(packMsgpack([...fields, [7]])), undefined);
    assert.notEqual(decodeRecord(packMsgpack([...fields, 'not a list'])), undefined, 'not a list: a record of one');
  });
});

describe('NatsBroker: a run of publications on one channel', () => {
  const server = serverForSuite(() => NatsServer.start());
  let n = 0;
  const channel = () => `runs/c${n++}-${Math.random().toString(36).slice(2, 6)}`;

  /** How many records the channel has in the stream, and the head's earlier count. */
  async function records(c: string): Promise<number> {
    const nc = await connect({ servers: server().url });
    try {
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info('SWITCHBOARD', { subjects_filter: `sb.h.${c.replaceAll('/', '.')}` });
      return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
    } finally {
      await nc.close();
    }
  }

  it('50 publications made at once: offsets 1..50 in the order they were made, fewer records than publications, history and a subscriber on another node see all 50 in order', async () => {
    const a = await NatsBroker.connect({ servers: server().url });
    const b = await NatsBroker.connect({ servers: server().url });
    const rec = new BrokerRecorder(10_000);
    b.setHandler(rec);
    try {
      const c = channel();
      await b.subscribe(c);
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => a.publish(c, i, H)));
      assert.deepEqual(
        results.map((r) => r.offset),
        Array.from({ length: 50 }, (_, i) => i + 1),
      );
      assert.equal(new Set(results.map((r) => r.epoch)).size, 1);
      const stored = await records(c);
      // Made in one turn of the event loop, before the channel's queue ran: one record for all.
      assert.equal(stored, 1, `records: ${stored}`);
      await rec.waitFor(49);
      assert.deepEqual(
        rec.pubs.map((p) => [p.offset, p.data]),
        Array.from({ length: 50 }, (_, i) => [i + 1, i]),
      );
      const h = await b.history(c, { since: { offset: 0, epoch: results[0]!.epoch } });
      assert.equal(h.recovered, true);
      assert.deepEqual(
        h.publications.map((p) => [p.offset, p.data]),
        Array.from({ length: 50 }, (_, i) => [i + 1, i]),
      );
      // From the middle of a record of a run, and the newest few.
      const mid = await b.history(c, { since: { offset: 23, epoch: results[0]!.epoch } });
      assert.deepEqual(mid.publications.map((p) => p.offset), Array.from({ length: 27 }, (_, i) => i + 24));
      assert.equal(mid.recovered, true);
      const last = await b.history(c, { limit: 3 });
      assert.deepEqual(last.publications.map((p) => p.data), [47, 48, 49]);
      // The next publication after the run continues it.
      assert.equal((await a.publish(c, 'next', H)).offset, 51);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a keyed publication and a change of history settings in the middle keep the order of the calls; a key repeated in the same burst is a duplicate', async () => {
    const a = await NatsBroker.connect({ servers: server().url });
    try {
      const c = channel();
      const noHistory = {};
      const results = await Promise.all([
        a.publish(c, 'a', H),
        a.publish(c, 'b', H),
        a.publish(c, 'k', { ...H, idempotencyKey: 'k1' }),
        a.publish(c, 'c', H),
        a.publish(c, 'd', noHistory),
        a.publish(c, 'e', noHistory),
        a.publish(c, 'f', H),
        a.publish(c, 'k again', { ...H, idempotencyKey: 'k1' }),
      ]);
      assert.deepEqual(
        results.map((r) => [r.offset, r.duplicate]),
        [
          [1, false],
          [2, false],
          [3, false],
          [4, false],
          [5, false],
          [6, false],
          [7, false],
          [3, true],
        ],
      );
      // A publication without history cleared what came before it (the head's settings rule): f alone.
      const h = await a.history(c, { limit: 10 });
      assert.deepEqual(h.publications.map((p) => [p.offset, p.data]), [[7, 'f']]);
    } finally {
      await a.close();
    }
  });

  it('a run too large for one record (8 × 100 KiB at once) is written as several, all answered in order', async () => {
    const a = await NatsBroker.connect({ servers: server().url });
    try {
      const c = channel();
      const big = (i: number) => `${i}`.padEnd(100 * 1024, '.');
      const results = await Promise.all(Array.from({ length: 9 }, (_, i) => a.publish(c, big(i), H)));
      assert.deepEqual(
        results.map((r) => r.offset),
        [1, 2, 3, 4, 5, 6, 7, 8, 9],
      );
      const stored = await records(c);
      assert.ok(stored >= 4, `at most two 100 KiB publications per 256 KiB record: ${stored} records`);
      const h = await a.history(c, { limit: 9 });
      assert.deepEqual(
        h.publications.map((p) => (p.data as string).slice(0, 1)),
        ['0', '1', '2', '3', '4', '5', '6', '7', '8'],
      );
    } finally {
      await a.close();
    }
  });

  it('two nodes making runs on one channel at once: every offset once, no hole, each node in its own order', async () => {
    const a = await NatsBroker.connect({ servers: server().url });
    const b = await NatsBroker.connect({ servers: server().url });
    try {
      const c = channel();
      const results = await Promise.all([
        ...Array.from({ length: 40 }, (_, i) => a.publish(c, `a${i}`, H)),
        ...Array.from({ length: 40 }, (_, i) => b.publish(c, `b${i}`, H)),
      ]);
      const offsets = results.map((r) => r.offset).sort((x, y) => x - y);
      assert.deepEqual(
        offsets,
        Array.from({ length: 80 }, (_, i) => i + 1),
      );
      const h = await a.history(c, { limit: 100 });
      assert.deepEqual(h.publications.map((p) => p.offset), offsets);
      for (const who of ['a', 'b']) {
        const mine = h.publications.filter((p) => (p.data as string).startsWith(who)).map((p) => Number((p.data as string).slice(1)));
        assert.deepEqual(mine, Array.from({ length: 40 }, (_, i) => i));
      }
    } finally {
      await a.close();
      await b.close();
    }
  });
});
