/**
 * Interest management (examples/arena/lib/interest.js): a player's 2×2 block
 * of areas always covers what it can see, changes with hysteresis, and the
 * subscription change is exactly the difference. And the world it runs on
 * (examples/arena/lib/sim.js): movement, collisions, gems, inputs.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { arenaConfig, viewHalfExtent } from '../../../examples/arena/lib/config.js';
import { AreaGrid, interestChange, type Block } from '../../../examples/arena/lib/interest.js';
import { Key, move, World } from '../../../examples/arena/lib/sim.js';

const config = arenaConfig({ width: 4000, height: 3000, areaSize: 600, margin: 50 });
const grid = new AreaGrid(config);

/** The rectangle an area covers. */
function bounds(area: number) {
  const ax = area % grid.cols;
  const ay = Math.floor(area / grid.cols);
  return { x0: ax * 600, y0: ay * 600, x1: (ax + 1) * 600, y1: (ay + 1) * 600 };
}
/** Is the point inside one of the areas? */
function covered(areas: number[], x: number, y: number) {
  return areas.some((a) => {
    const b = bounds(a);
    return x >= b.x0 && x <= b.x1 && y >= b.y0 && y <= b.y1;
  });
}

describe('arena interest management', () => {
  it('the grid: areas, block channels, and channel names that are not ours', () => {
    assert.equal(grid.cols, 7);
    assert.equal(grid.rows, 5);
    assert.equal(grid.areaOf(0, 0), 0);
    assert.equal(grid.areaOf(3999, 2999), 34);
    assert.equal(grid.areaOf(-5, 99999), 28, 'outside points are clamped');
    assert.equal(grid.channel({ ax: 5, ay: 1 }), 'arena/5-1');
    assert.deepEqual(grid.blockOfChannel('arena/5-1'), { ax: 5, ay: 1 });
    for (const bad of ['arena/6-0', 'arena/0-4', 'arena/-1-0', 'arena/1x-1', 'arena/12', 'chat/1-1', 'arena/', 'arenas/1-1']) assert.equal(grid.blockOfChannel(bad), null, bad);
    // Every block a player can be given is published to, and no other.
    const blocks = grid.blocks();
    assert.equal(blocks.length, 6 * 4);
    fc.assert(
      fc.property(fc.double({ min: 0, max: 4000, noNaN: true }), fc.double({ min: 0, max: 3000, noNaN: true }), (x, y) => {
        const b = grid.blockFor(x, y);
        assert.ok(blocks.some((o) => o.ax === b.ax && o.ay === b.ay));
      }),
      { numRuns: 200, seed: 7 },
    );
    assert.deepEqual(new AreaGrid(arenaConfig({ width: 300, height: 300, areaSize: 600 })).blocks(), [{ ax: 0, ay: 0 }]);
  });

  it('wherever a player walks, its block covers its whole view, with at most 4 areas', () => {
    const v = viewHalfExtent(config);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.double({ min: 0, max: 4000, noNaN: true }), fc.double({ min: 0, max: 3000, noNaN: true })), { minLength: 1, maxLength: 50 }), (path) => {
        let block: Block | null = null;
        for (const [x, y] of path) {
          block = grid.blockFor(x, y, block);
          const areas = grid.areasOf(block);
          assert.ok(areas.length === 4);
          for (const [px, py] of [[x - v, y - v], [x + v, y - v], [x - v, y + v], [x + v, y + v], [x, y]] as const) {
            const cx = Math.min(Math.max(px, 0), 4000);
            const cy = Math.min(Math.max(py, 0), 3000);
            assert.ok(covered(areas, cx, cy), `(${x}, ${y}) sees (${cx}, ${cy}) outside ${areas}`);
          }
        }
      }),
      { numRuns: 200, seed: 14 },
    );
  });

  it('hysteresis: walking back and forth across a block boundary within the margin changes nothing', () => {
    // Fresh choice flips at x = 900 (start 0 below, start 1 above).
    const first = grid.blockFor(899, 300);
    assert.equal(first.ax, 0);
    let block = first;
    for (const x of [901, 920, 949, 880, 940, 899]) {
      block = grid.blockFor(x, 300, block);
      assert.equal(block, first, `x ${x}`);
    }
    block = grid.blockFor(951, 300, block);
    assert.equal(block.ax, 1, 'past the margin it moves');
    assert.equal(grid.blockFor(860, 300, block).ax, 1, 'and stays until the margin on the other side');
    assert.equal(grid.blockFor(849, 300, block).ax, 0);
  });

  it('a small world: fewer areas, never an area outside it', () => {
    const small = new AreaGrid(arenaConfig({ width: 500, height: 1000, areaSize: 600 }));
    assert.deepEqual(small.areasOf(small.blockFor(250, 900)), [0, 1]);
    const one = new AreaGrid(arenaConfig({ width: 300, height: 300, areaSize: 600 }));
    assert.deepEqual(one.areasOf(one.blockFor(10, 10)), [0]);
  });

  it('interestChange is the difference both ways', () => {
    assert.deepEqual(interestChange([1, 2, 8, 9], [2, 3, 9, 10]), { subscribe: [3, 10], unsubscribe: [1, 8] });
    assert.deepEqual(interestChange([], [4]), { subscribe: [4], unsubscribe: [] });
    assert.deepEqual(interestChange([4], [4]), { subscribe: [], unsubscribe: [] });
  });
});

describe('arena world', () => {
  it('moves by speed/tickHz, diagonals at the same speed, and stays inside the walls', () => {
    const c = arenaConfig({ speed: 300, tickHz: 30 });
    const p = { x: 500, y: 500 };
    move(p, Key.Right, c);
    assert.equal(p.x, 510);
    move(p, Key.Up | Key.Left, c);
    assert.ok(Math.abs(Math.hypot(p.x - 510, p.y - 500) - 10) < 1e-9);
    move(p, Key.Left | Key.Right, c);
    assert.ok(Math.abs(p.x - (510 - 10 * Math.SQRT1_2)) < 1e-9, 'opposite keys cancel');
    const q = { x: 5, y: c.height - 1 };
    move(q, Key.Left | Key.Down, c);
    assert.deepEqual(q, { x: c.radius, y: c.height - c.radius });
  });

  it('players never overlap after a step, however they crowd', () => {
    const world = new World(arenaConfig({ gemsPerArea: 0 }), { seed: 3 });
    for (let i = 0; i < 40; i++) world.addPlayer(`p${i}`);
    for (let t = 0; t < 60; t++) world.step();
    const ps = [...world.players.values()];
    let worst = Infinity;
    for (let i = 0; i < ps.length; i++) for (let j = i + 1; j < ps.length; j++) worst = Math.min(worst, Math.hypot(ps[i]!.x - ps[j]!.x, ps[i]!.y - ps[j]!.y));
    // One pass of pairwise pushes: crowds settle over a few ticks, never stack.
    assert.ok(worst > world.config.radius, `closest pair ${worst}`);
  });

  it('a player walking over a gem collects it; a new one appears in the same area', () => {
    const world = new World(arenaConfig({ gemsPerArea: 1, width: 600, height: 600 }), { seed: 9 });
    const gem = [...world.gems.values()][0]!;
    const p = world.addPlayer('a');
    p.x = gem.x - 20;
    p.y = gem.y;
    world.setInput(p.id, 1, Key.Right);
    world.step();
    assert.equal(p.score, 1);
    assert.equal(world.gems.size, 1);
    assert.notEqual([...world.gems.values()][0]!.id, gem.id);
  });

  it('inputs: newest wins, an older or malformed one is ignored, the ack records when it took effect', () => {
    const world = new World(arenaConfig(), { seed: 1 });
    const p = world.addPlayer('a');
    world.step();
    assert.equal(world.setInput(p.id, 2, Key.Up), true);
    assert.equal(p.ackTick, 2);
    assert.equal(world.setInput(p.id, 1, Key.Down), false, 'older');
    assert.equal(world.setInput(p.id, 2, Key.Down), false, 'same number');
    assert.equal(world.setInput(p.id, 3, 16), false, 'not keys');
    assert.equal(world.setInput(p.id, 3.5, 1), false);
    assert.equal(world.setInput(999, 3, 1), false, 'no such player');
    assert.deepEqual([p.input, p.ack], [Key.Up, 2]);
  });

  it('the same seed plays the same game', () => {
    const run = () => {
      const w = new World(arenaConfig(), { seed: 42 });
      for (let i = 0; i < 10; i++) w.addPlayer(`p${i}`, { spawn: 'random' });
      for (let t = 0; t < 50; t++) {
        for (const p of w.players.values()) w.setInput(p.id, t + 1, (t * p.id) % 16);
        w.step();
      }
      return [...w.players.values()].map((p) => [p.x, p.y, p.score]);
    };
    assert.deepEqual(run(), run());
  });
});
