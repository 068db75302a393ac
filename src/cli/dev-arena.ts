/**
 * The arena game (examples/arena/) in `switchboard serve`'s development mode.
 *
 * The example is not part of the library: it lives in examples/, which the
 * npm package does not ship (package.json `files`), and src/ never imports
 * it. In a checkout, development mode looks for
 * `<package>/examples/arena/server.js` and, when the file is there, imports
 * it at runtime (a computed specifier, so neither the compiler nor the layer
 * check follows it), adds its namespace, serves its page at `/arena` and
 * starts its loop once the server listens. From an installed package there
 * is no such file: nothing happens and `/arena` is a 404. The contract with the example is the small
 * `ArenaModule` interface below.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { DeepPartial, NamespaceConfig } from '../server/config/index.js';
import type { RealtimeServer } from '../server/realtime-server.js';
import { createStaticPages, PACKAGE_ROOT, type StaticHandler } from '../server/static-pages.js';

/** Where the arena's page is served. */
export const ARENA_PATH = '/arena';

/** What serve needs of examples/arena/server.js. */
interface ArenaModule {
  ARENA_NAMESPACE: DeepPartial<NamespaceConfig>;
  startArena(server: RealtimeServer, options: { onError?: (err: unknown) => void; tickHz?: number; autoStart?: boolean }): { start(): void; stop(): void };
}

export interface DevArena {
  /** The namespace of the block channels, for the server's configuration. */
  readonly namespace: DeepPartial<NamespaceConfig>;
  /**
   * Set the game up on the server (its rpcs) and return the page handler, `run` to start the tick
   * loop once the server listens (ticking before that would publish to nobody and, on a busy start,
   * take the CPU the server needs to come up), and `stop`.
   */
  start(server: RealtimeServer): { pages: StaticHandler; run(): void; stop(): void };
}

/**
 * The arena, when this is a checkout with examples/arena/server.js; else null.
 * `SWITCHBOARD_ARENA=0` turns it off; `SWITCHBOARD_ARENA_HZ` sets the tick rate (default 30).
 */
export async function loadDevArena(env: NodeJS.ProcessEnv = process.env): Promise<DevArena | null> {
  if (env.SWITCHBOARD_ARENA === '0') return null;
  const root = join(PACKAGE_ROOT, 'examples', 'arena');
  const file = join(root, 'server.js');
  if (!existsSync(file)) return null;
  const tickHz = env.SWITCHBOARD_ARENA_HZ === undefined || env.SWITCHBOARD_ARENA_HZ === '' ? undefined : Number(env.SWITCHBOARD_ARENA_HZ);
  if (tickHz !== undefined && !(Number.isInteger(tickHz) && tickHz >= 1 && tickHz <= 120)) {
    throw new Error(`SWITCHBOARD_ARENA_HZ=${env.SWITCHBOARD_ARENA_HZ}: expected an integer tick rate from 1 to 120`);
  }
  const mod = (await import(pathToFileURL(file).href)) as ArenaModule;
  return {
    namespace: mod.ARENA_NAMESPACE,
    start(server) {
      const arena = mod.startArena(server, {
        tickHz,
        autoStart: false,
        onError: (err) => server.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'arena tick failed'),
      });
      const pages = createStaticPages({
        webRoot: root,
        mountPath: ARENA_PATH,
        pages: { '/': 'web/index.html' },
        folders: ['web', 'lib'],
        realtimePath: server.config.path,
      });
      return { pages, run: () => arena.start(), stop: () => arena.stop() };
    },
  };
}
