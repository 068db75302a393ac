/**
 * Redis names (src/brokers/redis/keys.ts): the hash-tag encoding of channels
 * and the MQTT pattern → Redis glob translation, first as strings, then
 * against a real redis-server: every channel a pattern matches is received,
 * glob metacharacters in channel names are literal, and the node filters
 * what a glob receives beyond the pattern.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { channelKeys, channelOf, decodeChannel, encodeChannel, patternGlobs, pubsubName } from '../../../src/brokers/redis/keys.js';
import { RedisBroker } from '../../../src/brokers/redis/redis-broker.js';
import { BrokerRecorder } from '../../support/broker-recorder.js';
import { RedisServer } from '../../support/redis.js';

describe('redis keys: channel encoding', () => {
  it('escapes only % and } and round-trips', () => {
    for (const c of ['a/b', 'a}b', '}', '%', '%7D', 'x{y}z', 'a*b?[c]\\d', 'émoji/😀']) {
      assert.equal(decodeChannel(encodeChannel(c)), c);
      assert.ok(!encodeChannel(c).includes('}'));
    }
    assert.equal(encodeChannel('a}b%c'), 'a%7Db%25c');
    // Injective: the channel spelled like an escape is not the escaped one.
    assert.notEqual(encodeChannel('%7D'), encodeChannel('}'));
  });

  it('puts every key of a channel under one non-empty hash tag', () => {
    const tag = (key: string): string => {
      const open = key.indexOf('{');
      const close = key.indexOf('}', open + 1);
      return key.slice(open + 1, close);
    };
    for (const c of ['a', '}x', 'x}', 'a{b}c', '%']) {
      const k = channelKeys('sb:', c);
      const tags = new Set([k.pubsub, k.meta, k.history, k.idempotency('key}{'), k.presence, k.presenceExpiry, k.presenceUsers].map(tag));
      assert.equal(tags.size, 1, `one tag for ${c}`);
      assert.ok([...tags][0]!.length > 0);
    }
  });

  it('channelOf inverts pubsubName and rejects foreign names', () => {
    for (const c of ['a/b', 'a}b', '%25']) assert.equal(channelOf('sb:', pubsubName('sb:', c)), c);
    assert.equal(channelOf('sb:', 'other:{a}'), undefined);
    assert.equal(channelOf('sb:', 'sb:a'), undefined);
    assert.equal(channelOf('sb:', 'sb:{a}:s'), undefined);
  });
});

describe('redis keys: MQTT pattern to glob', () => {
  it('+ is one glob *, # adds the parent itself, # alone is everything', () => {
    assert.deepEqual(patternGlobs('sb:', 'a/+/c'), ['sb:{a/*/c}']);
    assert.deepEqual(patternGlobs('sb:', 'a/#'), ['sb:{a/*}', 'sb:{a}']);
    assert.deepEqual(patternGlobs('sb:', '+/#'), ['sb:{*/*}', 'sb:{*}']);
    assert.deepEqual(patternGlobs('sb:', '#'), ['sb:{*}']);
    assert.deepEqual(patternGlobs('sb:', '+'), ['sb:{*}']);
  });

  it('escapes glob metacharacters and the tag encoding in literal segments', () => {
    assert.deepEqual(patternGlobs('sb:', 'a*b/+'), ['sb:{a\\*b/*}']);
    assert.deepEqual(patternGlobs('sb:', 'q?/[x]/\\/#'), ['sb:{q\\?/\\[x\\]/\\\\/*}', 'sb:{q\\?/\\[x\\]/\\\\}']);
    assert.deepEqual(patternGlobs('sb:', 'a}/%/+'), ['sb:{a%7D/%25/*}']);
    assert.deepEqual(patternGlobs('p*:', '+'), ['p\\*:{*}']);
  });
});

describe('redis keys: globs on a real Redis', () => {
  let server: RedisServer;
  let broker: RedisBroker;
  let rec: BrokerRecorder;
  before(async () => {
    server = await RedisServer.start();
  });
  after(async () => {
    await server?.dispose();
  });

  const fresh = async (): Promise<void> => {
    broker = new RedisBroker({ url: server.url, keyPrefix: `k${Math.random().toString(36).slice(2, 8)}:` });
    rec = new BrokerRecorder();
    broker.setHandler(rec);
    await broker.ready();
  };

  /**
   * On a fresh broker: subscribe to `patterns` and to `marker`, publish each
   * `[channel, data]` and then `m` on `marker`; what was received once `m` is in.
   */
  const receivedAfter = async (patterns: string[], publications: ReadonlyArray<readonly [string, string | number]>): Promise<unknown[]> => {
    await fresh();
    try {
      for (const p of [...patterns, 'marker']) await broker.subscribe(p);
      for (const [c, d] of [...publications, ['marker', 'm'] as const]) await broker.publish(c, d);
      await rec.waitFor('m');
      return rec.data();
    } finally {
      await broker.close();
    }
  };

  it('metacharacters in names are literal: a*/+ does not receive ab/x', async () => {
    const data = await receivedAfter(['a*/+', 'q?/[x]/\\/#'], [
      ['ab/x', 'no'], ['a*/x', 1], ['a*/x/y', 'no'],
      ['qq/x/\\', 'no'], ['q?/[x]/\\', 2], ['q?/[x]/\\/deep/er', 3], ['q?/x/\\', 'no'],
    ]);
    assert.deepEqual(data, [1, 2, 3, 'm']);
  });

  it('channels with } and % route by their own tag; + filters what the glob * lets through', async () => {
    const data = await receivedAfter(['x}/+', '%/#'], [
      ['x}/a', 1], ['x}/a/b', 'no: + is one segment'], ['x%7D/a', 'no: the escape is not the character'],
      ['%', 2], ['%/a/b', 3], ['%25/a', 'no'],
    ]);
    assert.deepEqual(data, [1, 2, 3, 'm']);
  });

  it('overlapping patterns share a glob: dropping one keeps the other', async () => {
    await fresh();
    try {
      await broker.subscribe('r/+'); // glob r/*
      await broker.subscribe('r/#'); // globs r/* and r
      await broker.publish('r/a', 1);
      await rec.waitFor(1);
      await broker.unsubscribe('r/#');
      await broker.publish('r', 'no: only r/# matched it');
      await broker.publish('r/b', 2);
      await rec.waitFor(2);
      assert.deepEqual(rec.data(), [1, 2]);
    } finally {
      await broker.close();
    }
  });
});
