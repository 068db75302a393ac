/**
 * How `serve` finds the arena (src/cli/dev-arena.ts): in a checkout it is
 * there (examples/arena/server.js) and brings its namespace; the
 * environment turns it off or sets its tick rate, and a bad rate is refused
 * with the variable's name. Its loop ticks only from `run()` on (serve calls
 * it once the server listens), not from `start()`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadDevArena } from '../../../src/cli/dev-arena.js';
import { createRealtimeServer } from '../../../src/server/index.js';
import { until } from '../../support/wait.js';

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

  it('ticks only from run() on: setting the game up on a server that does not listen yet publishes nothing', async () => {
    const arena = await loadDevArena({ SWITCHBOARD_ARENA_HZ: '60' });
    assert.ok(arena);
    const server = createRealtimeServer({ config: { host: '127.0.0.1', port: 0, namespaces: [arena.namespace], log: { level: 'silent' }, auth: { anonymous: true } } });
    // Every block publication of the loop goes through server.publish: count them.
    let published = 0;
    const publish = server.publish.bind(server);
    server.publish = (...args: Parameters<typeof publish>) => {
      published++;
      return publish(...args);
    };
    const game = arena.start(server);
    try {
      // Fifteen periods at 60 Hz without a tick.
      await new Promise((r) => setTimeout(r, 250));
      assert.equal(published, 0, 'no tick before run()');
      game.run();
      await until(() => published > 0, 10_000, 'the first tick after run()');
    } finally {
      game.stop();
      await server.close();
    }
  });
});

