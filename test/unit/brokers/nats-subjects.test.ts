/**
 * Channel names and patterns as NATS subjects (src/brokers/nats/subjects.ts):
 * the escaping is reversible and keeps a segment one token, and patterns
 * match on a real nats-server exactly what matchesPattern says.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { NatsBroker } from '../../../src/brokers/nats/nats-broker.js';
import { channelTokens, decodeToken, encodeToken, patternFilters, tokensToChannel } from '../../../src/brokers/nats/subjects.js';
import { isValidChannel, matchesPattern } from '../../../src/wire/channel.js';
import { BrokerRecorder } from '../../support/broker-recorder.js';
import { NatsServer } from '../../support/nats.js';
import { until } from '../../support/wait.js';

describe('NATS subjects: escaping', () => {
  it('leaves ordinary segments alone and maps / to .', () => {
    assert.equal(channelTokens('chat/room-1'), 'chat.room-1');
    assert.equal(channelTokens('a/b_c/Ünïcødé/日本'), 'a.b_c.Ünïcødé.日本');
  });

  it('escapes ., *, >, whitespace and % inside a segment, percent-style', () => {
    assert.equal(encodeToken('a.b'), 'a%2Eb');
    assert.equal(encodeToken('*'), '%2A');
    assert.equal(encodeToken('>'), '%3E');
    assert.equal(encodeToken('a>b*c'), 'a%3Eb%2Ac');
    assert.equal(encodeToken('with space'), 'with%20space');
    assert.equal(encodeToken('50%'), '50%25');
    assert.equal(encodeToken('%2E'), '%252E', 'an escape-looking segment stays itself');
    assert.equal(encodeToken('nb\u00a0sp'), 'nb%C2%A0sp', 'non-ASCII whitespace too, as its UTF-8 bytes');
    assert.equal(encodeToken(''), '%');
    assert.equal(channelTokens('v1.2/x.y.z'), 'v1%2E2.x%2Ey%2Ez');
  });

  it('decodes what it encodes, for any string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (s) => {
        const t = encodeToken(s);
        assert.ok(t.length > 0 && !/[.*>\s]/u.test(t), `one plain token: ${JSON.stringify(t)}`);
        assert.equal(decodeToken(t), s);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 5 }), (segments) => {
        const channel = segments.join('/');
        fc.pre(isValidChannel(channel) && segments.every((s) => !s.includes('/')));
        assert.equal(tokensToChannel(channelTokens(channel)), channel);
        assert.equal(channelTokens(channel).split('.').length, segments.length, 'a segment is one token');
      }),
      { numRuns: 500 },
    );
  });

  it('rejects a malformed escape', () => {
    assert.throws(() => decodeToken('a%zz'), TypeError);
  });

  it('maps + to *, a final # to >, and a/# to both a and a.>', () => {
    assert.deepEqual(patternFilters('a/+/c'), ['a.*.c']);
    assert.deepEqual(patternFilters('a/#'), ['a', 'a.>']);
    assert.deepEqual(patternFilters('a/+/#'), ['a.*', 'a.*.>']);
    assert.deepEqual(patternFilters('#'), ['>']);
    assert.deepEqual(patternFilters('+'), ['*']);
    assert.deepEqual(patternFilters('a.b/+'), ['a%2Eb.*']);
    assert.deepEqual(patternFilters('plain/channel'), ['plain.channel']);
  });
});

describe('NATS subjects: on a real nats-server', () => {
  let server: NatsServer;
  let broker: NatsBroker;
  const rec = new BrokerRecorder();

  before(async () => {
    server = await NatsServer.start();
    broker = await NatsBroker.connect({ servers: server.url });
    broker.setHandler(rec);
  });
  after(async () => {
    await broker?.close();
    await server?.destroy();
  });

  it('patterns match exactly what matchesPattern says, escaped segments included', async () => {
    const root = `s${Math.random().toString(36).slice(2, 8)}`;
    const patterns = [`${root}/+`, `${root}/#`, `${root}/a.b/+`, `${root}/+/x`, `${root}/*/#`];
    const channels = [
      root,
      `${root}/a`,
      `${root}/a.b`,
      `${root}/a.b/c`,
      `${root}/a/b`,
      `${root}/*`,
      `${root}/*/deep/er`,
      `${root}/>`,
      `${root}/>/x`,
      `${root}/a b`,
      `${root}/50%`,
      `${root}/%2E`,
      `${root}/日本/x`,
      `${root}sibling`,
      `${root}sibling/a`,
    ];
    for (const pattern of patterns) {
      const marker = `${root}/marker/${patterns.indexOf(pattern)}`;
      await broker.subscribe(pattern);
      await broker.subscribe(marker);
      rec.pubs.length = 0;
      for (const c of channels) await broker.publish(c, c);
      await broker.publish(marker, 'm');
      await until(() => rec.pubs.some((p) => p.channel === marker), 2000, `marker for ${pattern}`);
      const got = rec.pubs.filter((p) => p.channel !== marker).map((p) => p.channel);
      const want = channels.filter((c) => matchesPattern(pattern, c));
      assert.deepEqual(got, want, pattern);
      assert.ok(rec.pubs.every((p) => p.data === p.channel || p.data === 'm'), 'the channel name comes back unescaped');
      await broker.unsubscribe(pattern);
      await broker.unsubscribe(marker);
    }
  });

  it('channels that differ only where escaping matters have separate offsets and history', async () => {
    const root = `e${Math.random().toString(36).slice(2, 8)}`;
    const names = [`${root}/a.b`, `${root}/a/b`, `${root}/a%2Eb`, `${root}/a b`, `${root}/a*`, `${root}/a>`];
    for (const c of names) assert.equal((await broker.publish(c, c, { history: { size: 5, ttlMs: 0 } })).offset, 1, c);
    for (const c of names) {
      const h = await broker.history(c);
      assert.deepEqual(
        h.publications.map((p) => [p.channel, p.data]),
        [[c, c]],
      );
    }
  });
});
