/**
 * The arena's state codec (examples/arena/lib/codec.js): what the server's
 * AreaEncoder sends, an AreaState rebuilds exactly, through MessagePack as on
 * the wire; a lost delta leaves the receiver stale until the next keyframe
 * (or the keyframe rpc's answer), never wrong.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { msgpackCodec } from '../../../src/wire/codec.js';
import { AreaEncoder, AreaState, blockMessage, DELTA, EARLY_DELTAS, KEYFRAME, readBlockMessage } from '../../../examples/arena/lib/codec.js';
import { arenaConfig } from '../../../examples/arena/lib/config.js';
import { World } from '../../../examples/arena/lib/sim.js';

const Q = 0.25;

/** Through the wire encoding and back, as a subscriber gets it (the publication's data). */
function wire(data: unknown): unknown {
  return (msgpackCodec.decode(msgpackCodec.encode({ op: 'msg', data }) as Uint8Array) as { data: unknown }).data;
}

/** What the receiver should hold: the encoder's own record of what it sent (less its bookkeeping `mark`). */
function expected(enc: AreaEncoder) {
  return {
    players: [...enc.players.values()].map(({ mark: _, ...p }) => p).sort((a, b) => a.id - b.id),
    gems: [...enc.gems.values()].map(({ mark: _, ...g }) => g).sort((a, b) => a.id - b.id),
  };
}
function held(state: AreaState) {
  return {
    players: [...state.players.values()].map((p) => ({ ...p })).sort((a, b) => a.id - b.id),
    gems: [...state.gems.values()].map((g) => ({ ...g })).sort((a, b) => a.id - b.id),
  };
}

/** Players in one area of a running world, tick after tick (movement, collisions, gems, joins and leaves). */
function* ticks(seed: number, count: number) {
  const config = arenaConfig({ width: 600, height: 600, areaSize: 600, gemsPerArea: 6 });
  const world = new World(config, { seed });
  for (let i = 0; i < 12; i++) world.addPlayer(`p${i}`);
  let seq = 0;
  for (let t = 0; t < count; t++) {
    for (const p of world.players.values()) if (world.random() < 0.2) world.setInput(p.id, ++seq, Math.floor(world.random() * 16));
    if (t % 17 === 5) world.addPlayer(`late${t}`);
    if (t % 23 === 7) world.removePlayer([...world.players.keys()][0]!);
    world.step();
    yield { tick: world.tick, players: [...world.players.values()], gems: [...world.gems.values()] };
  }
}

/** The encoder's message for the next tick of `gen`, each call. */
function encodeNext(enc: AreaEncoder, gen: ReturnType<typeof ticks>) {
  return () => {
    const t = gen.next().value!;
    return enc.encode(t.tick, t.players, t.gems);
  };
}

describe('arena codec', () => {
  it('round trip: a receiver that gets every message holds exactly what the encoder sent, tick after tick', () => {
    const enc = new AreaEncoder(Q, 30);
    const state = new AreaState();
    let deltas = 0;
    for (const t of ticks(7, 200)) {
      const data = enc.encode(t.tick, t.players, t.gems);
      const kind = state.apply(wire(data));
      assert.ok(kind === 'keyframe' || kind === 'delta', `tick ${t.tick}: ${kind}`);
      if (kind === 'delta') deltas++;
      assert.deepEqual(held(state), expected(enc), `tick ${t.tick}`);
      assert.equal(state.seq, enc.seq);
      assert.equal(state.tick, t.tick);
      // Quantized positions are within half a quantum of the true ones.
      for (const p of t.players) {
        const s = state.players.get(p.id)!;
        assert.ok(Math.abs(s.qx * Q - p.x) <= Q / 2 + 1e-9 && Math.abs(s.qy * Q - p.y) <= Q / 2 + 1e-9);
      }
    }
    assert.ok(deltas > 150, `most messages are deltas (${deltas})`);
    assert.equal(state.missed, 0);
  });

  it('round trip for any game (fast-check over seeds and keyframe intervals)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1e6 }), fc.integer({ min: 1, max: 40 }), (seed, every) => {
        const enc = new AreaEncoder(Q, every);
        const state = new AreaState();
        for (const t of ticks(seed, 60)) {
          state.apply(wire(enc.encode(t.tick, t.players, t.gems)));
          assert.deepEqual(held(state), expected(enc));
        }
      }),
      { numRuns: 30 },
    );
  });

  it('a lost delta: the next deltas are refused as a gap, the state stays as it was, and the next keyframe makes it exact again', () => {
    const enc = new AreaEncoder(Q, 10);
    const state = new AreaState();
    const gen = ticks(3, 40);
    const next = encodeNext(enc, gen);
    for (let i = 0; i < 3; i++) assert.notEqual(state.apply(wire(next())), 'gap');
    const before = held(state);
    next(); // lost (a dropped volatile frame)
    let kind = state.apply(wire(next()));
    assert.equal(kind, 'gap');
    assert.equal(state.stale, true);
    assert.equal(state.missed, 1);
    assert.deepEqual(held(state), before, 'a delta after a gap is not applied');
    // Deltas until the keyframe (seq 10) are refused; the keyframe repairs it.
    while ((kind = state.apply(wire(next()))) === 'gap');
    assert.equal(kind, 'keyframe');
    assert.equal(state.seq, 10);
    assert.equal(state.stale, false);
    assert.deepEqual(held(state), expected(enc));
    assert.equal(state.apply(wire(next())), 'delta');
    assert.deepEqual(held(state), expected(enc));
    assert.equal(state.missed, 1, 'the one lost message is counted once');
  });

  it("the keyframe rpc's answer (keyframe() at the current seq) resumes at once; older deltas still in flight are ignored", () => {
    const enc = new AreaEncoder(Q, 1000);
    const gen = ticks(11, 30);
    const step = encodeNext(enc, gen);
    const inFlight = [step(), step(), step()];
    const late = new AreaState();
    // Joined late: the periodic keyframe is far away; the rpc answers the state now.
    const snap = wire(enc.keyframe()) as unknown[];
    assert.equal(snap[0], KEYFRAME);
    assert.equal(late.apply(snap), 'keyframe');
    for (const m of inFlight) assert.equal(late.apply(wire(m)), 'old');
    assert.equal(late.apply(wire(step())), 'delta');
    assert.deepEqual(held(late), expected(enc));
  });

  it("deltas that overtake the keyframe rpc's answer (while waiting, or stale after a gap) are kept and applied after it", () => {
    const enc = new AreaEncoder(Q, 1000);
    const gen = ticks(12, 40);
    const step = encodeNext(enc, gen);
    step();
    // Just subscribed: the answer is the state at seq 2, but deltas 3 and 4 are handed over first.
    step();
    const answer = wire(enc.keyframe());
    const fresh = new AreaState();
    assert.equal(fresh.apply(wire(step())), 'waiting');
    assert.equal(fresh.apply(wire(step())), 'waiting');
    assert.equal(fresh.apply(answer), 'keyframe');
    assert.equal(fresh.seq, 4, 'the kept deltas were applied');
    assert.equal(fresh.stale, false);
    assert.deepEqual(held(fresh), expected(enc));
    assert.equal(fresh.apply(wire(step())), 'delta');
    // Stale after a loss: the same for the keyframe asked then.
    step(); // lost
    assert.equal(fresh.apply(wire(step())), 'gap');
    const answer2 = wire(enc.keyframe());
    for (let i = 0; i < 3; i++) assert.equal(fresh.apply(wire(step())), 'gap');
    assert.equal(fresh.apply(answer2), 'keyframe');
    assert.equal(fresh.seq, enc.seq);
    assert.deepEqual(held(fresh), expected(enc));
    assert.equal(fresh.missed, 1);
    // Only a few are kept: an answer older than that leaves the state at the answer, and the next delta is a gap.
    const old = wire(enc.keyframe());
    for (let i = 0; i < EARLY_DELTAS + 2; i++) step();
    const behind = new AreaState();
    for (let i = 0; i < EARLY_DELTAS + 1; i++) behind.apply(wire(step()));
    assert.equal(behind.apply(old), 'keyframe');
    assert.equal(behind.apply(wire(step())), 'gap');
  });

  it('a delta is small: 3 integers per moving player, nothing for one standing still; empty trailing lists are left out', () => {
    const enc = new AreaEncoder(Q, 1000);
    const a = { id: 1, name: 'a', x: 100, y: 100, score: 0, ack: 0, ackTick: 0 };
    const b = { id: 2, name: 'b', x: 200, y: 200, score: 0, ack: 0, ackTick: 0 };
    enc.encode(1, [a, b], []);
    a.x += 7.3;
    const d = enc.encode(2, [a, b], []);
    assert.deepEqual(d, [DELTA, 2, 2, [1, 29, 0]]);
    assert.deepEqual(enc.encode(3, [a, b], []), [DELTA, 3, 3]);
    // The whole publication for one moving player, MessagePack-encoded.
    assert.ok((msgpackCodec.encode({ data: d }) as Uint8Array).byteLength < 20);
  });

  it('bad input is refused as invalid and never throws or changes the state', () => {
    const enc = new AreaEncoder(Q, 5);
    const state = new AreaState();
    const t = ticks(5, 1).next().value!;
    state.apply(enc.encode(t.tick, t.players, t.gems));
    const before = held(state);
    fc.assert(
      fc.property(fc.anything(), (junk) => {
        const kind = state.apply(junk);
        assert.ok(['invalid', 'old', 'gap'].includes(kind), String(kind));
      }),
      { numRuns: 300, seed: 14 },
    );
    for (const junk of [[1, 2, 2, [1, 'x', 0]], [0, 9, 9, [1, 2, 3], []], [1, 2, 2, [1, 1]], [0, -1, 0, [], []], [1, 2, 2, [], [1, 2, 3, 4, 5, 6, 7]]]) {
      assert.equal(state.apply(junk), 'invalid', JSON.stringify(junk));
    }
    assert.deepEqual(held(state), before);
  });

  it("a block channel's message: each area's message once, by area, through the wire; anything else is not one", () => {
    const messages = [[DELTA, 4, 9], [DELTA, 7, 9, [1, 1, 0]], [KEYFRAME, 2, 9, [], []], [DELTA, 1, 9]];
    const data = wire(blockMessage([1, 2, 3], messages));
    assert.deepEqual(readBlockMessage(data), [1, messages[1], 2, messages[2], 3, messages[3]]);
    for (const junk of [null, 7, 'x', [1], [1, [], 2], [-1, []], ['1', []], [1.5, []], { 0: 1, 1: [] }]) assert.equal(readBlockMessage(junk), null, JSON.stringify(junk));
  });
});
