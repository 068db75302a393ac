// @ts-check
/**
 * The arena's authoritative loop on a Switchboard realtime server.
 *
 *   import { createRealtimeServer } from 'switchboard/server';
 *   import { startArena, ARENA_NAMESPACE } from './examples/arena/server.js';
 *   const server = createRealtimeServer({ config: { namespaces: [ARENA_NAMESPACE], limits: { slowConsumer: 'drop-volatile' } } });
 *   const arena = startArena(server, { tickHz: 60 });
 *   await server.listen();
 *
 * Each tick: step the world, compute every area's message once (AreaEncoder:
 * a keyframe every `keyframeEvery` ticks, deltas between), then publish, once
 * per block of 2×2 areas, the messages of its areas together, volatile, to
 * the block's channel (interest.js): a player subscribes to the one block
 * around it. The hub encodes each publication once (MessagePack for
 * `switchboard.v1.msgpack` clients) and writes the same bytes to every
 * subscriber; a subscriber whose socket is behind
 * (`limits.sendHighWaterMark`) loses the frame instead of queueing it
 * (`limits.slowConsumer: 'drop-volatile'`), and catches up at the next
 * keyframe (or asks for one).
 *
 * Clients talk to the loop by rpc:
 * - `arena.join` `{ name, spawn? }` → `{ id, tick, config }`: a player for this connection
 *   (a second join replaces the first); it leaves when the connection closes.
 * - `arena.input` `{ s, k }`: the keys held (`k`, 0..15) from input number `s` on. Newest wins;
 *   an older one is ignored. Players send it by `send` (an rpc without a reply: the state's `ack`
 *   says which input was applied, and a player sends its keys again when it does not); as an rpc
 *   it answers null, or `{ refused }` with the reason.
 * - `arena.keyframe` `{ area }` → the area's state now, as a keyframe (a client that just
 *   subscribed, or that saw a gap, need not wait for the next periodic one).
 *
 * This file is Node-side only in that it runs the loop with timers; it
 * imports nothing from Node and nothing from the library: the server comes in
 * as a parameter.
 */
import { AreaEncoder, blockMessage } from './lib/codec.js';
import { arenaConfig } from './lib/config.js';
import { startTickLoop } from './lib/loop.js';
import { ALL_KEYS, World } from './lib/sim.js';

/** @typedef {import('./lib/config.js').ArenaConfig} ArenaConfig */

/**
 * What the loop needs of a realtime server (a `RealtimeServer` has it all).
 * @typedef {object} ArenaHost
 * @property {(method: string, handler: (data: unknown, ctx: { client: string, user: string }) => unknown) => void} rpc
 * @property {(channel: string, data: unknown, options: { volatile: boolean }) => Promise<unknown>} publish
 * @property {{ onSessionClosed(listener: (client: string) => void): () => void }} hub
 */

/** The namespace of the area channels: only the server publishes; no history, no presence. */
export const ARENA_NAMESPACE = Object.freeze({ prefix: 'arena', clientPublish: false, presence: /** @type {const} */ ('off') });

/**
 * Start the loop on `host`. Returns a handle to stop it and read its numbers.
 * `autoStart: false` registers the rpcs (players can join) but ticks only
 * from `start()` on: the benchmark lets a thousand bots join before the
 * state starts flowing to them.
 * @param {ArenaHost} host
 * `onTick` gets each finished tick's numbers (loop.js, `TickRecord`).
 * @param {Partial<ArenaConfig> & { seed?: number, onError?: (err: unknown) => void, now?: () => number, autoStart?: boolean, onTick?: (record: import('./lib/loop.js').TickRecord) => void }} [options]
 */
export function startArena(host, options = {}) {
  const { seed, onError, now: nowOption, autoStart, onTick, ...partial } = options;
  const config = arenaConfig(partial);
  const world = new World(config, { seed });
  const grid = world.grid;
  const encoders = Array.from({ length: grid.count }, (_, area) => new AreaEncoder(config.quantum, config.keyframeEvery, area));
  const blocks = grid.blocks().map((block) => ({ channel: grid.channel(block), areas: grid.areasOf(block) }));
  /** This tick's message of each area (reused). */
  const messages = new Array(grid.count);
  /** Connection id → player id. */
  const playerOf = new Map();
  let published = 0;
  const report = onError ?? (() => {});
  const publishFailed = (/** @type {unknown} */ err) => report(err);

  /** Per-area buckets, reused every tick. */
  const playersIn = Array.from({ length: grid.count }, () => /** @type {import('./lib/sim.js').Player[]} */ ([]));
  const gemsIn = Array.from({ length: grid.count }, () => /** @type {import('./lib/sim.js').Gem[]} */ ([]));

  const tick = () => {
    world.step();
    for (let a = 0; a < grid.count; a++) {
      playersIn[a].length = 0;
      gemsIn[a].length = 0;
    }
    for (const p of world.players.values()) playersIn[grid.areaOf(p.x, p.y)].push(p);
    for (const g of world.gems.values()) gemsIn[g.area].push(g);
    for (let a = 0; a < grid.count; a++) messages[a] = encoders[a].encode(world.tick, playersIn[a], gemsIn[a]);
    for (const block of blocks) {
      published++;
      host.publish(block.channel, blockMessage(block.areas, messages), { volatile: true }).catch(publishFailed);
    }
  };

  /** @type {ReturnType<typeof startTickLoop> | null} */
  let loop = null;
  let stopped = false;
  const begin = () => {
    if (!stopped) loop ??= startTickLoop(config.tickHz, tick, { onError: report, now: nowOption, onTick });
  };
  if (autoStart !== false) begin();

  host.rpc('arena.join', (data, ctx) => {
    const d = /** @type {{ name?: unknown, spawn?: unknown }} */ (data && typeof data === 'object' ? data : {});
    const name = typeof d.name === 'string' && d.name.trim() !== '' ? d.name.trim().slice(0, 24) : ctx.user.slice(0, 24) || 'player';
    const old = playerOf.get(ctx.client);
    if (old !== undefined) world.removePlayer(old);
    const player = world.addPlayer(name, { spawn: d.spawn === 'random' ? 'random' : 'centre' });
    playerOf.set(ctx.client, player.id);
    return { id: player.id, tick: world.tick, x: player.x, y: player.y, config: publicConfig(config) };
  });

  host.rpc('arena.input', (data, ctx) => {
    const id = playerOf.get(ctx.client);
    if (id === undefined) return { refused: 'not in the game: call arena.join first' };
    const d = /** @type {{ s?: unknown, k?: unknown }} */ (data && typeof data === 'object' ? data : {});
    if (!Number.isSafeInteger(d.s) || /** @type {number} */ (d.s) < 1) return { refused: 's must be a positive integer' };
    if (!Number.isInteger(d.k) || /** @type {number} */ (d.k) < 0 || /** @type {number} */ (d.k) > ALL_KEYS) return { refused: `k must be an integer from 0 to ${ALL_KEYS}` };
    world.setInput(id, /** @type {number} */ (d.s), /** @type {number} */ (d.k));
    return null;
  });

  host.rpc('arena.keyframe', (data) => {
    const area = /** @type {{ area?: unknown }} */ (data && typeof data === 'object' ? data : {}).area;
    if (!Number.isInteger(area) || /** @type {number} */ (area) < 0 || /** @type {number} */ (area) >= grid.count) {
      return { refused: `area must be an integer from 0 to ${grid.count - 1}` };
    }
    return encoders[/** @type {number} */ (area)].keyframe();
  });

  const offClosed = host.hub.onSessionClosed((client) => {
    const id = playerOf.get(client);
    if (id === undefined) return;
    playerOf.delete(client);
    world.removePlayer(id);
  });

  return {
    config,
    world,
    /** Start the loop (with `autoStart: false`; else it runs already). */
    start: begin,
    /** The loop's numbers, the players, and the block messages published. */
    stats() {
      const ticks = loop ? loop.stats() : { ticks: 0, overruns: 0, missed: 0, late: 0, cpuOverruns: 0, p50Ms: 0, p99Ms: 0, maxMs: 0, syncP99Ms: 0, cpuP50Ms: 0, cpuP99Ms: 0, cpuMaxMs: 0, lateP50Ms: 0, lateP99Ms: 0, lateMaxMs: 0 };
      return { ...ticks, players: world.players.size, published };
    },
    /** Start counting afresh (the benchmark's measurement window). */
    resetStats() {
      loop?.resetStats();
    },
    stop() {
      stopped = true;
      loop?.stop();
      offClosed();
    },
  };
}

/** What a client needs to know of the configuration (all of it is harmless). */
export function publicConfig(/** @type {ArenaConfig} */ c) {
  return { ...c };
}
