/**
 * Rendering from snapshots (examples/arena/lib/smooth.js): the others are
 * drawn between the two snapshots around `now − delay`, unmoved by jitter;
 * our own player is predicted, and a snapshot that agrees with the
 * prediction changes nothing on screen.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { arenaConfig } from '../../../examples/arena/lib/config.js';
import { Key, move, World } from '../../../examples/arena/lib/sim.js';
import { Interpolator, Predictor } from '../../../examples/arena/lib/smooth.js';

describe('arena interpolation', () => {
  it('draws a player between the snapshots around the render time, and holds the last one past it', () => {
    const ip = new Interpolator(30, 100);
    // Ticks 1..10 arrive on time (tick n at n × 33.3 ms); the player walks 10 units a tick.
    for (let t = 1; t <= 10; t++) {
      ip.observe(t, t * (1000 / 30));
      ip.add(7, t, t * 10, 0);
    }
    // At the arrival time of tick 10, render 3 ticks (100 ms) earlier: tick 7.
    assert.ok(Math.abs(ip.renderTick(10 * (1000 / 30)) - 7) < 1e-9);
    assert.deepEqual(ip.position(7, 7.5), { x: 75, y: 0 });
    assert.deepEqual(ip.position(7, 42), { x: 100, y: 0 }, 'no extrapolation');
    assert.deepEqual(ip.position(7, 0), { x: 10, y: 0 });
    assert.equal(ip.position(8, 5), null);
  });

  it('jitter does not move the render time: a late snapshot is ignored by the clock, an early one pulls it in', () => {
    const ip = new Interpolator(30, 100);
    for (let t = 1; t <= 30; t++) ip.observe(t, t * (1000 / 30) + (t % 3 === 0 ? 60 : 0));
    const at = ip.renderTick(31 * (1000 / 30));
    assert.ok(Math.abs(at - 28) < 0.2, `render tick ${at}`);
  });
});

describe('arena prediction', () => {
  it('replays the inputs the server had not applied yet on top of its position: no correction when the server agrees', () => {
    const config = arenaConfig({ gemsPerArea: 0 });
    const world = new World(config, { seed: 2 });
    const p = world.addPlayer('me');
    const pr = new Predictor(config);
    pr.reconcile(p.x, p.y, world.tick, 0, 0);
    const period = 1000 / config.tickHz;
    // Local: press right, run 10 ticks. The server got the input when we pressed it (same tick).
    pr.press(Key.Right, 1);
    world.setInput(p.id, 1, Key.Right);
    for (let i = 0; i < 10; i++) pr.advance(period);
    // The server is 4 ticks behind us when its snapshot arrives (latency).
    for (let i = 0; i < 6; i++) world.step();
    pr.reconcile(p.x, p.y, world.tick, p.ack, p.ackTick);
    const expected = { x: p.x, y: p.y };
    for (let i = 0; i < 4; i++) move(expected, Key.Right, config);
    const drawn = pr.drawn()!;
    assert.ok(Math.abs(pr.pos!.x - expected.x) < 1e-9, `${pr.pos!.x} vs ${expected.x}`);
    assert.ok(Math.abs(drawn.x - expected.x) < 1e-9, 'nothing to correct');
  });

  it('a disagreement (a push we did not predict) is drawn away over a few frames, not jumped', () => {
    const config = arenaConfig();
    const pr = new Predictor(config);
    pr.reconcile(500, 500, 1, 0, 0);
    pr.reconcile(530, 500, 2, 0, 0);
    assert.equal(pr.drawn()!.x, 500, 'still drawn where it was');
    for (let i = 0; i < 30; i++) pr.advance(1);
    assert.ok(Math.abs(pr.drawn()!.x - 530) < 0.5);
  });
});
