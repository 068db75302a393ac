/**
 * The arena's server loop (examples/arena/server.js) on a real realtime
 * server, with protocol clients over loopback (MessagePack): players join
 * and see each other in the area's state, inputs move them, the keyframe rpc
 * resumes a receiver, bad rpc data is refused with a reason, a closed
 * connection's player leaves, and a client that stops reading loses volatile
 * frames (drop-volatile) — not its connection — and is exact again after the
 * next keyframe.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { AreaState, readBlockMessage } from '../../../examples/arena/lib/codec.js';
import { Key } from '../../../examples/arena/lib/sim.js';
import { ARENA_NAMESPACE, startArena } from '../../../examples/arena/server.js';
import { startRealtime, until, type RtClient } from '../realtime/helpers.js';

const MSGPACK = { protocols: ['switchboard.v1.msgpack'] };

async function setup(t: TestContext, limits: Record<string, unknown> = {}, arenaOptions: Record<string, unknown> = {}) {
  const rt = await startRealtime(t, [{ ...ARENA_NAMESPACE }], { limits: { slowConsumer: 'drop-volatile', ...limits }, metrics: { enabled: true } });
  // One area (600 × 600), 60 Hz, a keyframe every 20 ticks.
  const arena = startArena(rt.server, { width: 600, height: 600, areaSize: 600, tickHz: 60, keyframeEvery: 20, seed: 5, ...arenaOptions });
  t.after(() => arena.stop());
  return { rt, arena };
}

async function rpc(c: RtClient, method: string, data: unknown): Promise<any> {
  return (await c.ok('rpc', { method, data })).data;
}

/** The one block of the one-area world: its channel carries area 0's messages. */
const BLOCK = 'arena/0-0';

/** Feed area 0's message of every block message the client got (from `from` on) into `state`. */
function applyAll(c: RtClient, state: AreaState, from = 0): number {
  const msgs = c.messages(BLOCK);
  for (let i = from; i < msgs.length; i++) {
    const pairs = readBlockMessage(msgs[i]!.data);
    assert.ok(pairs !== null && pairs.length === 2 && pairs[0] === 0, 'a block message of area 0');
    state.apply(pairs[1]);
  }
  return msgs.length;
}

describe('arena server loop', () => {
  test('join, see each other, move by input; the keyframe rpc; bad data refused; a closed connection leaves', async (t) => {
    const { rt, arena } = await setup(t);
    const a = await rt.connect('alice', MSGPACK);
    const b = await rt.connect('bob', MSGPACK);
    const ja = await rpc(a, 'arena.join', { name: 'alice' });
    const jb = await rpc(b, 'arena.join', { name: 'bob' });
    assert.equal(ja.config.tickHz, 60);
    assert.notEqual(ja.id, jb.id);
    await b.ok('sub', { channel: BLOCK });
    let seen = new AreaState();
    // Just subscribed: the state now, by rpc. The state is the last tick's: the players joined
    // above are in it from the first tick after their join (a quiet machine answers within one tick).
    for (let tries = 0; ; tries++) {
      seen = new AreaState();
      assert.equal(seen.apply(await rpc(b, 'arena.keyframe', { area: 0 })), 'keyframe');
      if (seen.players.size === 2 || tries === 100) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.deepEqual([...seen.players.values()].map((p) => p.name).sort(), ['alice', 'bob']);
    let read = 0;
    const x0 = seen.players.get(ja.id)!.qx;
    assert.equal(await rpc(a, 'arena.input', { s: 1, k: Key.Right }), null);
    await until(() => {
      read = applyAll(b, seen, read);
      return !seen.stale && seen.players.get(ja.id)!.qx > x0 + 40;
    }, 10_000, 'bob to see alice walk right');
    assert.equal(seen.players.get(ja.id)!.ack, 1);

    // Bad rpc data: a reason, no crash, the connection stays.
    assert.match((await rpc(a, 'arena.input', { s: 'x', k: 1 })).refused, /s must be/);
    assert.match((await rpc(a, 'arena.input', { s: 2, k: 99 })).refused, /k must be/);
    assert.match((await rpc(b, 'arena.keyframe', { area: 7 })).refused, /area must be/);
    assert.match((await rpc(b, 'arena.keyframe', null)).refused, /area must be/);
    const c = await rt.connect('carol', MSGPACK);
    assert.match((await rpc(c, 'arena.input', { s: 1, k: 1 })).refused, /arena.join first/);
    const joined = await rpc(c, 'arena.join', { name: 'x'.repeat(500), spawn: 'nowhere' });
    assert.equal(arena.world.players.get(joined.id)!.name.length, 24);

    // Alice's connection closes: her player leaves the game, and the area's state says so.
    a.terminate();
    await until(() => !arena.world.players.has(ja.id), 10_000, 'the closed connection to leave the game');
    await until(() => {
      read = applyAll(b, seen, read);
      return !seen.players.has(ja.id);
    }, 10_000, 'bob to see alice gone');
    assert.equal(b.closeCode, null);
  });

  test('a client that stops reading loses volatile frames (not its connection) and is exact again after the next keyframe', async (t) => {
    const { rt, arena } = await setup(t, { sendHighWaterMark: 32 * 1024 }, { keyframeEvery: 6 });
    // A crowd in the area, all walking: about 4 KB of state per tick.
    for (let i = 0; i < 600; i++) {
      const p = arena.world.addPlayer(`npc${i}`, { spawn: 'random' });
      arena.world.setInput(p.id, 1, [Key.Up, Key.Down, Key.Left, Key.Right][i % 4]!);
    }
    const fast = await rt.connect('fast', MSGPACK);
    const slow = await rt.connect('slow', MSGPACK);
    await fast.ok('sub', { channel: BLOCK });
    await slow.ok('sub', { channel: BLOCK });
    const dropped = async () => {
      const m = await rt.server.metrics.droppedTotal.get();
      return m.values.find((v) => v.labels.reason === 'slow-consumer-volatile')?.value ?? 0;
    };
    slow.ws.pause();
    // Bounded: the kernel's socket buffers fill first, then the server's queue passes the mark.
    let drops = 0;
    for (const deadline = Date.now() + 60_000; (drops = await dropped()) <= 60; ) {
      assert.ok(Date.now() < deadline, `the server dropped only ${drops} volatile frames for the paused client in 60 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
    slow.ws.resume();
    const state = new AreaState();
    const reference = new AreaState();
    let readSlow = 0;
    let readFast = 0;
    await until(() => {
      readSlow = applyAll(slow, state, readSlow);
      return !state.stale && state.missed > 0;
    }, 30_000, 'the slow client to apply a keyframe after what it lost');
    // Stop the game and let both drain: they end on the same last message.
    arena.stop();
    const last = arena.stats().published;
    await until(() => {
      readSlow = applyAll(slow, state, readSlow);
      readFast = applyAll(fast, reference, readFast);
      return state.seq === last && reference.seq === last;
    }, 30_000, `both clients to reach the last message ${last}`);
    assert.equal(slow.closeCode, null, 'not disconnected');
    assert.ok(rt.server.hub.sessions.has(slow.clientId));
    assert.equal(state.stale, false);
    assert.deepEqual(state.players, reference.players, 'the same state as a client that missed nothing');
    assert.equal(reference.missed, 0, 'the reader that kept up lost nothing');
    t.diagnostic(`server dropped ${drops} frames for the paused client; it saw ${state.missed} missing`);
  });
});
