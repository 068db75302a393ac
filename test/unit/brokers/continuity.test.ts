/**
 * Continuity (src/brokers/continuity.ts): what an at-most-once fan-out
 * loses, the node refills from history, and hands over in offset order.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { HistoryResult, Publication, StreamPosition } from '../../../src/brokers/broker.js';
import { Continuity } from '../../../src/brokers/continuity.js';

const pub = (offset: number, epoch = 'e', channel = 'c', extra: Partial<Publication> = {}): Publication => ({ channel, offset, epoch, data: offset, time: 0, ...extra });

/** A history of offsets 1..n in epoch 'e' (minus `evicted`), answered when `release()` is called. */
function setup(options: { upTo?: number; evicted?: number[]; fail?: boolean } = {}) {
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
      for (let o = since.offset + 1; o <= (options.upTo ?? 0); o++) if (!options.evicted?.includes(o)) publications.push(pub(o, 'e', channel));
      return { publications, position: { offset: options.upTo ?? 0, epoch: 'e' }, recovered: !options.evicted?.length } satisfies HistoryResult;
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
