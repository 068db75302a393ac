#!/usr/bin/env node
// @ts-check
/**
 * Headless players for the arena, over the Switchboard Node client
 * (MessagePack, `switchboard.v1.msgpack`): each one joins, wanders from gem
 * to gem, keeps its interest areas and applies every keyframe and delta like
 * the browser does.
 *
 *   node examples/arena/bots.mjs --url http://127.0.0.1:8080 --bots 50 --seconds 10
 *
 * Options: --url (the server; default http://127.0.0.1:8080), --bots (N, default 10),
 * --seconds (play time once all have joined, default 10), --ramp (connections per
 * second, default 8: `switchboard serve` admits 10 a second per address by default),
 * --path (realtime path, default /rt), --token (one token for all; default: one per bot
 * from POST /dev/token), --join-timeout (seconds to wait for all to join, default 30), --quiet.
 *
 * Needs the library built (`npm run build`: it imports dist/). Exit status 0 when every
 * bot joined and received state, 1 otherwise; the last line of output is a one-line summary.
 * In a benchmark (bench/game.js) it runs as a child process and reports over IPC.
 */
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { ArenaPlayer } from './lib/player.js';
import { Key } from './lib/sim.js';

const ROOT = new URL('../../', import.meta.url);

const { values } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8080' },
    bots: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '10' },
    ramp: { type: 'string', default: '8' },
    path: { type: 'string', default: '/rt' },
    token: { type: 'string' },
    'id-offset': { type: 'string', default: '0' },
    'join-timeout': { type: 'string', default: '30' },
    quiet: { type: 'boolean', default: false },
  },
});

/** @param {string} name @param {string | undefined} raw @param {number} min @param {number} max */
function number(name, raw, min, max) {
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max) {
    process.stderr.write(`bots: --${name} ${raw}: expected a number from ${min} to ${max}\n`);
    process.exit(2);
  }
  return n;
}

const count = Math.floor(number('bots', values.bots, 1, 5000));
const seconds = number('seconds', values.seconds, 0.1, 3600);
const ramp = number('ramp', values.ramp, 0.1, 100000);
const idOffset = Math.floor(number('id-offset', values['id-offset'], 0, 1e9));
const joinTimeoutS = number('join-timeout', values['join-timeout'], 1, 3600);
/** @type {URL} */
let base;
try {
  base = new URL(values.url ?? '');
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new Error('not http(s)');
} catch {
  process.stderr.write(`bots: --url ${values.url}: expected http://host:port of a switchboard server\n`);
  process.exit(2);
}
const wsUrl = `${base.protocol === 'https:' ? 'wss' : 'ws'}://${base.host}${values.path}`;
const log = (/** @type {string} */ line) => {
  if (!values.quiet) process.stderr.write(`${line}\n`);
};

/** @type {any} */
let sdk;
/** @type {any} */
let WebSocket;
try {
  sdk = await import(new URL('dist/client/index.js', ROOT).href);
  ({ WebSocket } = await import(new URL('dist/index.js', ROOT).href));
} catch (err) {
  process.stderr.write(`bots: cannot load the library from dist/ (${/** @type {Error} */ (err).message}): run \`npm run build\`\n`);
  process.exit(2);
}

/** Bytes received over all bots' sockets (the WebSocket messages' payloads). */
let bytesIn = 0;
let bytesOut = 0;
class CountingWebSocket extends WebSocket {
  /** @param {ConstructorParameters<typeof WebSocket>} args */
  constructor(...args) {
    super(...args);
    this.addEventListener('message', (/** @type {{ data: ArrayBuffer | string }} */ e) => {
      bytesIn += typeof e.data === 'string' ? Buffer.byteLength(e.data) : e.data.byteLength;
    });
  }
  /** @param {any} data @param {any[]} rest */
  send(data, ...rest) {
    bytesOut += typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
    return super.send(data, ...rest);
  }
}

async function tokenFor(/** @type {string} */ user) {
  if (values.token) return values.token;
  const res = await fetch(new URL('/dev/token', base), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user }),
  });
  if (!res.ok) throw new Error(`POST /dev/token answered ${res.status}: pass --token, or run switchboard serve in development mode`);
  return /** @type {{ token: string }} */ (await res.json()).token;
}

/** @type {{ errors: number, disconnects: number, firstError: string | null }} */
const totals = { errors: 0, disconnects: 0, firstError: null };
/** @type {{ client: any, player: ArenaPlayer, target: { x: number, y: number } | null }[]} */
const bots = [];
const note = (/** @type {unknown} */ err) => {
  totals.errors++;
  totals.firstError ??= err instanceof Error ? err.message : String(err);
};

async function startBot(/** @type {number} */ i) {
  const name = `bot-${idOffset + i}`;
  const client = new sdk.Client(wsUrl, {
    WebSocket: CountingWebSocket,
    protocol: 'msgpack',
    transports: ['websocket'],
    getToken: () => tokenFor(name),
    network: null,
  });
  client.on('error', note);
  client.on('disconnected', () => totals.disconnects++);
  const player = new ArenaPlayer(client, { name, spawn: 'random', onError: note });
  const bot = { client, player, target: null };
  bots.push(bot);
  await client.connect();
  // The SDK waits for a connection up to its requestTimeoutMs; the join deadline bounds the rest.
  await player.join();
}

/** Wander: head for the nearest gem in sight, else a random point; keys from the direction. */
function steer(/** @type {typeof bots[number]} */ bot) {
  const me = bot.player.self();
  const c = bot.player.config;
  if (!me || !c) return;
  const x = me.p.qx * c.quantum;
  const y = me.p.qy * c.quantum;
  bot.player.follow(x, y);
  if (!bot.target || Math.hypot(bot.target.x - x, bot.target.y - y) < c.radius || Math.random() < 0.02) {
    let best = null;
    let bestD = Infinity;
    for (const { state } of bot.player.areas.values()) {
      for (const g of state.gems.values()) {
        const d = Math.hypot(g.qx * c.quantum - x, g.qy * c.quantum - y);
        if (d < bestD) {
          bestD = d;
          best = { x: g.qx * c.quantum, y: g.qy * c.quantum };
        }
      }
    }
    bot.target = best && Math.random() < 0.7 ? best : { x: Math.random() * c.width, y: Math.random() * c.height };
  }
  const dx = bot.target.x - x;
  const dy = bot.target.y - y;
  const slack = c.speed / c.tickHz;
  let keys = 0;
  if (dx > slack) keys |= Key.Right;
  if (dx < -slack) keys |= Key.Left;
  if (dy > slack) keys |= Key.Down;
  if (dy < -slack) keys |= Key.Up;
  bot.player.setKeys(keys);
}

const t0 = performance.now();
const starting = [];
for (let i = 0; i < count; i++) {
  starting.push(startBot(i).catch(note));
  // Paced to stay within the server's connection rate per address.
  if (i + 1 < count) await new Promise((r) => setTimeout(r, 1000 / ramp));
}
// Bounded: bots that have not joined by then are counted as not joined.
const joinDeadline = joinTimeoutS * 1000;
await Promise.race([Promise.all(starting), new Promise((r) => setTimeout(r, joinDeadline).unref())]);
const joined = bots.filter((b) => b.player.joined).length;
log(`bots: ${joined}/${count} joined in ${((performance.now() - t0) / 1000).toFixed(1)} s; playing ${seconds} s`);
process.send?.({ type: 'joined', joined });

// Steer a tenth of the bots every 50 ms: each one every half second (cheap, and inputs stay rare).
let turn = 0;
const steerTimer = setInterval(() => {
  for (let i = turn % 10; i < bots.length; i += 10) steer(bots[i]);
  turn++;
}, 50);

const sum = () => {
  const c = { messages: 0, keyframes: 0, deltas: 0, gaps: 0, keyframeAsks: 0, joins: 0 };
  for (const b of bots) for (const k of /** @type {(keyof typeof c)[]} */ (Object.keys(c))) c[k] += b.player.counters[k];
  return c;
};
const before = { ...sum(), bytesIn, bytesOut, cpu: process.cpuUsage(), t: performance.now() };
await new Promise((r) => setTimeout(r, seconds * 1000));
const after = { ...sum(), bytesIn, bytesOut, cpu: process.cpuUsage(), t: performance.now() };
clearInterval(steerTimer);

const elapsed = (after.t - before.t) / 1000;
const withState = bots.filter((b) => b.player.self() !== null).length;
const result = {
  bots: count,
  joined,
  withState,
  seconds: elapsed,
  messages: after.messages - before.messages,
  keyframes: after.keyframes - before.keyframes,
  deltas: after.deltas - before.deltas,
  gaps: after.gaps - before.gaps,
  bytesIn: after.bytesIn - before.bytesIn,
  bytesOut: after.bytesOut - before.bytesOut,
  cpuMs: (after.cpu.user - before.cpu.user + after.cpu.system - before.cpu.system) / 1000,
  errors: totals.errors,
  disconnects: totals.disconnects,
  firstError: totals.firstError,
};
process.send?.({ type: 'result', result });
for (const b of bots) b.client.close();
const perBot = (/** @type {number} */ n) => (n / Math.max(1, joined) / elapsed).toFixed(0);
const ok = joined === count && withState === count;
process.stdout.write(
  `bots: ${joined}/${count} joined, ${withState} with state, ${elapsed.toFixed(1)} s; per bot per second: ${perBot(result.messages)} messages, ` +
    `${perBot(result.bytesIn)} B in, ${perBot(result.bytesOut)} B out; gaps ${result.gaps}, errors ${result.errors}, disconnects ${result.disconnects}` +
    `${totals.firstError ? ` (first error: ${totals.firstError})` : ''}; ${ok ? 'ok' : 'FAILED'}\n`,
);
// Let the close frames go out, then leave even if a socket lingers.
setTimeout(() => process.exit(ok ? 0 : 1), 200).unref();
await new Promise((r) => setTimeout(r, 250));
process.exit(ok ? 0 : 1);
