/**
 * Continuity (src/brokers/continuity.ts): what an at-most-once fan-out
 * loses, the node refills from history, and hands over in offset order.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HistoryResult, Publication, StreamPosition } from '../../../src/brokers/broker.js';
import { Continuity } from '../../../src/brokers/continuity.js';

const pub = (offset: number, epoch = 'e', channel = 'c', extra: Partial<Publication> = {}): Publication => ({ channel, offset, epoch, data: offset, time: 0, ...extra });

/**
 * A history of offsets 1..n in `epoch` ('e' by default; minus `evicted`), answered when `release()` is
 * called. Asked from a position in another epoch, it answers as the brokers do: its position, nothing else.
 */
function setup(options: { upTo?: number; evicted?: number[]; fail?: boolean; epoch?: string } = {}) {
  const epoch = options.epoch ?? 'e';
  const delivered: string[] = [];
  const gaps: Array<[string, number]> = [];
  const errors: unknown[] = [];
  const asked: StreamPosition[] = [];
  let release: () => void = () => {};
  const c = new Continuity({
    history: async (channel, since) => {
      asked.push(since);
      await new Promise<void>((resolve) => (release = resolve));
      if (options.fail) throw new Error('broker down');
      const publications: Publication[] = [];
      const same = since.epoch === epoch;
      if (same) for (let o = since.offset + 1; o <= (options.upTo ?? 0); o++) if (!options.evicted?.includes(o)) publications.push(pub(o, epoch, channel));
      return { publications, position: { offset: options.upTo ?? 0, epoch }, recovered: same && !options.evicted?.length } satisfies HistoryResult;
    },
    onGap: (channel, missing) => gaps.push([channel, missing]),
    onError: (err) => errors.push(err),
  });
  c.setHandler({
    onPublication: (p) => delivered.push(`${p.channel}:${p.epoch}:${p.offset}${p.volatile ? 'v' : ''}`),
    onJoin: (ch, info) => delivered.push(`join ${ch} ${info.client}`),
    onLeave: (ch, info) => delivered.push(`leave ${ch} ${info.client}`),
  });
  c.track('c');
  const settle = async () => {
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  };
  return { c, delivered, gaps, errors, asked, release: () => release(), settle };
}

describe('Continuity', () => {
  it('in order: delivered as they come; duplicates dropped', () => {
    const s = setup();
    for (const o of [1, 2, 2, 3, 1]) s.c.onPublication(pub(o));
    assert.deepEqual(s.delivered, ['c:e:1', 'c:e:2', 'c:e:3']);
    assert.deepEqual(s.c.position('c'), { offset: 3, epoch: 'e' });
  });

  it('a gap: live publications wait while history refills it, then all go out in order, once', async () => {
    const s = setup({ upTo: 6 });
    s.c.onPublication(pub(1));
    s.c.onPublication(pub(4));
    s.c.onPublication(pub(6));
    s.c.onPublication(pub(5));
    await s.settle();
    assert.deepEqual(s.delivered, ['c:e:1'], 'nothing after the gap before the refill');
    assert.deepEqual(s.asked, [{ offset: 1, epoch: 'e' }]);
    assert.deepEqual(s.gaps, [['c', 2]]);
    s.release();
    await s.settle();
    assert.deepEqual(s.delivered, ['c:e:1', 'c:e:2', 'c:e:3', 'c:e:4', 'c:e:5', 'c:e:6']);
  });

  it('history that lost part of the gap: what it has, then the rest in order (the subscriber sees the jump)', async () => {
    const s = setup({ upTo: 5, evicted: [2, 3] });
    s.c.onPublication(pub(1));
    s.c.onPublication(pub(5));
    s.release();
    await s.settle();
    s.release();
    await s.settle();
    assert.deepEqual(s.delivered, ['c:e:1', 'c:e:4', 'c:e:5']);
    assert.equal(s.asked.length, 1, 'one refill, no second one for what history lost');
  });

  it('history unreachable: the error is reported and what was held goes out', async () => {
    const s = setup({ fail: true });
    s.c.onPublication(pub(1));
    s.c.onPublication(pub(3));
    s.release();
    await s.settle();
    assert.deepEqual(s.delivered, ['c:e:1', 'c:e:3']);
    assert.equal((s.errors[0] as Error).message, 'broker down');
  });

  it('another epoch starts over; volatile publications and untracked channels pass through; presence passes through', () => {
    const s = setup();
    s.c.onPublication(pub(5));
    s.c.onPublication(pub(1, 'f'));
    s.c.onPublication(pub(0, 'f', 'c', { volatile: true }));
    s.c.onPublication(pub(9, 'x', 'other'));
    s.c.onPublication(pub(2, 'x', 'other'));
    s.c.onJoin('c', { client: 'k', user: 'u' });
    assert.deepEqual(s.delivered, ['c:e:5', 'c:f:1', 'c:f:0v', 'other:x:9', 'other:x:2', 'join c k']);
  });

  it('another epoch from offset 2 on: the new stream began at 1, and what is missing of it is refilled', async () => {
    const s = setup({ upTo: 3, epoch: 'f' });
    s.c.onPublication(pub(5));
    s.c.onPublication(pub(3, 'f'));
    s.c.onPublication(pub(4, 'f'));
    await s.settle();
    assert.deepEqual(s.delivered, ['c:e:5']);
    assert.deepEqual(s.asked, [{ offset: 0, epoch: 'f' }]);
    assert.deepEqual(s.gaps, [['c', 2]]);
    s.release();
    await s.settle();
    assert.deepEqual(s.delivered, ['c:e:5', 'c:f:1', 'c:f:2', 'c:f:3', 'c:f:4']);
  });

  it('resync after a failover: history is in a new epoch, and all it has is delivered (the live copies were lost with the old subscription)', async () => {
    const s = setup({ upTo: 2, epoch: 'f' });
    s.c.onPublication(pub(1));
    s.c.onPublication(pub(2));
    const done = s.c.resync();
    s.c.onPublication(pub(3, 'f'));
    s.release();
    await s.settle();
    s.release();
    await done;
    assert.deepEqual(s.asked, [{ offset: 2, epoch: 'e' }, { offset: 0, epoch: 'f' }]);
    assert.deepEqual(s.delivered, ['c:e:1', 'c:e:2', 'c:f:1', 'c:f:2', 'c:f:3']);
    assert.deepEqual(s.c.position('c'), { offset: 3, epoch: 'f' });
  });

  it('resync in the same epoch as the position: one read; a later epoch with nothing in it yet: nothing delivered, the position stays', async () => {
    const s = setup({ upTo: 0, epoch: 'f' });
    s.c.onPublication(pub(1));
    const done = s.c.resync();
    s.release();
    await done;
    assert.deepEqual(s.asked, [{ offset: 1, epoch: 'e' }], 'a new epoch at offset 0 has nothing to read');
    assert.deepEqual(s.delivered, ['c:e:1']);
    s.c.onPublication(pub(1, 'f'));
    assert.deepEqual(s.delivered, ['c:e:1', 'c:f:1']);
  });

  it('resync after a reconnect refills every tracked channel from its last position', async () => {
    const s = setup({ upTo: 4 });
    s.c.onPublication(pub(1));
    const done = s.c.resync();
    s.c.onPublication(pub(4));
    await s.settle();
    assert.deepEqual(s.delivered, ['c:e:1']);
    s.release();
    await done;
    assert.deepEqual(s.delivered, ['c:e:1', 'c:e:2', 'c:e:3', 'c:e:4']);
  });

  it('untracked during a refill: what was held is still delivered, nothing tracked any more', async () => {
    const s = setup({ upTo: 3 });
    s.c.onPublication(pub(1));
    s.c.onPublication(pub(3));
    s.c.untrack('c');
    s.release();
    await s.settle();
    assert.deepEqual(s.delivered, ['c:e:1', 'c:e:3']);
    assert.equal(s.c.position('c'), null);
  });
});
