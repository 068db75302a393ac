/**
 * The channel flow over `switchboard.v1.msgpack` (binary frames, plain
 * MessagePack maps), and JSON and MessagePack subscribers side by side.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decode as unpack } from '@msgpack/msgpack';
import { offsets, range, sleep, startRealtime, type Namespace } from './helpers.js';

const NAMESPACES: Namespace[] = [
  { prefix: 'chat', history: { size: 100, ttlMs: 0 }, presence: 'full', presenceBatchMs: 10 },
  { prefix: 'live' },
];
const MSGPACK = { protocols: ['switchboard.v1.msgpack'] };

describe('MessagePack', () => {
  test('auth, sub, pub, acks and pushes travel as binary MessagePack maps', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const p = await rt.connect('p', { ...MSGPACK, token: { info: { n: 1 } } });
    const s = await rt.connect('s', MSGPACK);
    assert.equal(p.ws.protocol, 'switchboard.v1.msgpack');
    assert.ok(p.clientId.length > 0, 'the auth reply decoded');
    const sub = await s.ok('sub', { channel: 'chat/m', presence: true });
    assert.equal(sub.position.offset, 0);
    const data = { text: 'héllo', n: 2 ** 40, list: [1, 2.5, null, true], nested: { bin: 'x'.repeat(300) } };
    const ack = await p.ok('pub', { channel: 'chat/m', data });
    assert.equal(ack.offset, 1);
    const [msg] = await s.waitMessages('chat/m', 1);
    assert.deepEqual(msg!.data, data);
    assert.equal(msg!.offset, 1);
    assert.equal(msg!.epoch, ack.epoch);
    assert.deepEqual(msg!.from, { client: p.clientId, user: 'p', info: { n: 1 } });
    await s.waitFor((m) => m.op === 'join', 2000, 'the join push');
    assert.ok(s.frameBinary.every((b) => b), 'every server message in a binary frame');
    // The raw bytes are a plain MessagePack map (no record extension).
    const i = s.received.indexOf(msg!);
    assert.deepEqual(unpack(s.raw[i]!), msg);
    const b0 = s.raw[i]![0]!;
    assert.ok((b0 & 0xf0) === 0x80 || b0 === 0xde || b0 === 0xdf, `a fixmap, map16 or map32, got 0x${b0.toString(16)}`);

    // errors and other replies too
    await s.fails('sub', { channel: 'chat/m' }, 409);
    await s.fails('sub', { channel: 'chat//m' }, 400);
    const presence = await s.ok('presence', { channel: 'chat/m' });
    assert.deepEqual(Object.keys(presence.clients), [s.clientId]);
  });

  test('resume over MessagePack: recovered, missed messages in order, then live', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const p = await rt.connect('p', MSGPACK);
    const s = await rt.connect('s', MSGPACK);
    await s.ok('sub', { channel: 'chat/r' });
    for (let n = 1; n <= 3; n++) await p.ok('pub', { channel: 'chat/r', data: n });
    const last = (await s.waitMessages('chat/r', 3))[2]!;
    await s.close();
    for (let n = 4; n <= 6; n++) await p.ok('pub', { channel: 'chat/r', data: n });
    const s2 = await rt.connect('s', MSGPACK);
    const r = await s2.ok('sub', { channel: 'chat/r', since: { offset: last.offset, epoch: last.epoch } });
    assert.equal(r.recovered, true);
    await p.ok('pub', { channel: 'chat/r', data: 7 });
    await s2.waitMessages('chat/r', 4);
    await sleep(20);
    assert.deepEqual(offsets(s2.messages('chat/r')), range(4, 7));
    assert.deepEqual(s2.messages('chat/r').map((m) => m.data), range(4, 7));
    const h = await s2.ok('history', { channel: 'chat/r', limit: 2 });
    assert.deepEqual(offsets(h.publications), [6, 7]);
  });

  test('a JSON and a MessagePack subscriber on one channel both receive each publication, from either kind of publisher', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const json = await rt.connect('j');
    const json2 = await rt.connect('j2');
    const mp = await rt.connect('m', MSGPACK);
    const mp2 = await rt.connect('m2', MSGPACK);
    for (const c of [json, json2, mp, mp2]) await c.ok('sub', { channel: 'live/mixed' });
    const fromJson = await rt.connect('pj');
    const fromMp = await rt.connect('pm', MSGPACK);
    await fromJson.ok('pub', { channel: 'live/mixed', data: { by: 'json', v: [1, 'a'] } });
    await fromMp.ok('pub', { channel: 'live/mixed', data: { by: 'msgpack', v: [1, 'a'] } });
    for (const c of [json, json2, mp, mp2]) {
      const msgs = await c.waitMessages('live/mixed', 2);
      assert.deepEqual(msgs.map((m) => m.data), [{ by: 'json', v: [1, 'a'] }, { by: 'msgpack', v: [1, 'a'] }]);
      assert.deepEqual(offsets(msgs), [1, 2]);
      assert.deepEqual(msgs.map((m) => m.from.user), ['pj', 'pm']);
    }
    const at = (c: typeof json) => c.raw[c.received.findIndex((m) => m.op === 'msg')]!;
    assert.equal(at(json).toString()[0], '{', 'JSON subscribers get JSON text');
    assert.ok(at(json).equals(at(json2)), 'the same JSON bytes for both JSON subscribers');
    assert.ok(at(mp).equals(at(mp2)), 'the same MessagePack bytes for both MessagePack subscribers');
    assert.deepEqual(JSON.parse(at(json).toString()), unpack(at(mp)));
    assert.equal(json.frameBinary.some((b) => b), false);
    assert.equal(mp.frameBinary.every((b) => b), true);
  });
});
