/**
 * One connection's failure inside a loop over many (issue #8): the hub's
 * fan-out, presence delivery, heartbeat and shutdown go on for everyone
 * else; the failing connection alone is logged, counted and closed (1011).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SharedMessage } from '../../../src/realtime/transport.js';
import { jsonCodec, msgpackCodec, type WireCodec } from '../../../src/wire/codec.js';
import { closeCodeOf, FakeTransport, settle, setup } from './fakes.js';

/** A transport whose writes throw, as a broken socket or a buggy carrier would. */
class ThrowingTransport extends FakeTransport {
  override sendShared(): void {
    throw new Error('socket exploded');
  }
}

describe('isolation of per-connection failures', () => {
  it('fan-out: a subscriber whose transport throws is closed with 1011; those after it in the loop still get the publication', async (t) => {
    const s = setup();
    t.after(() => s.close());
    const first = s.connect('a');
    const broken = new ThrowingTransport();
    const bad = s.hub.connect(broken, { user: 'b', expiresAt: Infinity }, '127.0.0.1');
    broken.session = bad;
    const last = s.connect('c');
    // Subscribe in loop order: first, broken, last.
    for (const [session, transport] of [[first.session, first.transport], [bad, broken], [last.session, last.transport]] as const) {
      assert.equal((await s.request(session, transport, { op: 'sub', channel: 'room' })).op, 'ok');
    }
    await s.broker.publish('room', 'hello');
    await settle();
    assert.deepEqual(first.transport.pushes('msg').map((m) => m.data), ['hello']);
    assert.deepEqual(last.transport.pushes('msg').map((m) => m.data), ['hello']);
    assert.equal(closeCodeOf(broken), 1011);
    assert.deepEqual(s.dropped, ['delivery-failed']);
    // The next publication still reaches the others.
    await s.broker.publish('room', 'again');
    await settle();
    assert.deepEqual(last.transport.pushes('msg').map((m) => m.data), ['hello', 'again']);
  });

  it('fan-out: a message that one encoding cannot encode fails for the subscribers of that encoding only, encoded once', async (t) => {
    const s = setup();
    t.after(() => s.close());
    let attempts = 0;
    let failNow = false;
    // A binary codec that works for replies and fails for the publication, as a too-deep message would.
    const failing: WireCodec = {
      ...msgpackCodec,
      encode(message) {
        if (!failNow) return msgpackCodec.encode(message);
        attempts++;
        throw new RangeError('Maximum call stack size exceeded');
      },
    };
    const json = s.connect('a');
    const broken = [s.connect('b', failing), s.connect('c', failing)];
    for (const c of [json, ...broken]) assert.equal((await s.request(c.session, c.transport, { op: 'sub', channel: 'live/x' })).op, 'ok');
    failNow = true;
    await s.broker.publish('live/x', 'x');
    await settle();
    assert.deepEqual(json.transport.pushes('msg').map((m) => m.data), ['x']);
    for (const c of broken) assert.equal(closeCodeOf(c.transport), 1011);
    assert.equal(attempts, 1, 'encoded once, the failure remembered for the second subscriber');
  });

  it('SharedMessage keeps an encoding failure: a second subscriber does not encode again', () => {
    let attempts = 0;
    const failing: WireCodec = {
      ...jsonCodec,
      encode() {
        attempts++;
        throw new RangeError('too deep');
      },
    };
    const shared = new SharedMessage({ op: 'msg' });
    assert.throws(() => shared.encoded(failing), /too deep/);
    assert.throws(() => shared.encoded(failing), /too deep/);
    assert.equal(attempts, 1);
    // The other encoding is unaffected.
    assert.deepEqual(msgpackCodec.decode(shared.encoded(msgpackCodec)), { op: 'msg' });
  });

  it('presence delivery and shutdown: a throwing transport is closed, the others are served', async (t) => {
    const s = setup();
    t.after(() => s.close());
    const broken = new ThrowingTransport();
    const bad = s.hub.connect(broken, { user: 'b', expiresAt: Infinity }, '127.0.0.1');
    broken.session = bad;
    const good = s.connect('g');
    assert.equal((await s.request(bad, broken, { op: 'sub', channel: 'room/x', presence: true })).op, 'ok');
    assert.equal((await s.request(good.session, good.transport, { op: 'sub', channel: 'room/x', presence: true })).op, 'ok');
    const other = s.connect('o');
    await s.request(other.session, other.transport, { op: 'sub', channel: 'live/x' });
    // The join batch goes out after presenceBatchMs (30 ms in these namespaces).
    const deadline = Date.now() + 2000;
    while (good.transport.pushes('join').length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.deepEqual(good.transport.pushes('join').flatMap((m) => m.clients.map((c: { user: string }) => c.user)), ['b', 'g']);
    assert.equal(closeCodeOf(broken), 1011);
    s.hub.shutdown(0);
    assert.equal(closeCodeOf(good.transport), 1001);
    assert.equal(closeCodeOf(other.transport), 1001);
  });
});

describe('a presence store that fails after the subscribe was answered', () => {
  it('the subscription stands: one reply (ok), publications still delivered, the failure logged', async (t) => {
    const s = setup();
    t.after(() => s.close());
    s.presence.add = async () => {
      throw Object.assign(new Error('NATS is unavailable'), { code: 'RT_ERR_BROKER_UNAVAILABLE' });
    };
    const c = s.connect('a');
    const reply = await s.request(c.session, c.transport, { op: 'sub', channel: 'room/x', presence: true });
    assert.equal(reply.op, 'ok');
    await settle();
    const replies = c.transport.messages.filter((m) => m.id === reply.id);
    assert.deepEqual(replies.map((m) => m.op), ['ok'], 'exactly one reply to the sub');
    await s.broker.publish('room/x', 'still here');
    await settle();
    assert.deepEqual(c.transport.pushes('msg').map((m) => m.data), ['still here']);
  });
});
