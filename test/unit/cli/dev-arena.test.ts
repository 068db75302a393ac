/**
 * How `serve` finds the arena (src/cli/dev-arena.ts): in a checkout it is
 * there (examples/arena/server.js) and brings its namespace; the
 * environment turns it off or sets its tick rate, and a bad rate is refused
 * with the variable's name.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadDevArena } from '../../../src/cli/dev-arena.js';

describe('serve: the arena in development mode', () => {
  it('is found in a checkout, with the arena namespace (server-only publications)', async () => {
    const arena = await loadDevArena({});
    assert.ok(arena);
    assert.equal(arena.namespace.prefix, 'arena');
    assert.equal(arena.namespace.clientPublish, false);
  });

  it('SWITCHBOARD_ARENA=0 turns it off', async () => {
    assert.equal(await loadDevArena({ SWITCHBOARD_ARENA: '0' }), null);
  });

  it('SWITCHBOARD_ARENA_HZ must be an integer from 1 to 120', async () => {
    for (const bad of ['0', '121', '30.5', 'fast']) {
      await assert.rejects(loadDevArena({ SWITCHBOARD_ARENA_HZ: bad }), /SWITCHBOARD_ARENA_HZ=.*integer tick rate from 1 to 120/, bad);
    }
    assert.ok(await loadDevArena({ SWITCHBOARD_ARENA_HZ: '60' }));
  });
});
