// The server child of the game benchmark (bench/game.js): the arena on
// Switchboard (`impl: 'switchboard'`: examples/arena/server.js, per-area
// MessagePack keyframes and deltas, volatile, drop-volatile) or the naive
// version (`impl: 'naive'`: `ws`, the whole state as one JSON text per player
// per tick). Same world, same loop and the same tick measurement
// (examples/arena/lib/loop.js). Answers `stats` over IPC with its CPU time,
// bytes written and tick numbers.

// GC pauses are observed (PerformanceObserver 'gc') and reported with the
// stats: count, total and longest pause since the last `reset`, and how many
// of them fell in a tick that overran. With `config.tickLog` (a file; bench/
// game.js sets it from GAME_TICK_LOG) every tick of the measurement window is
// written there as one JSON line, `{t, late, sync, work, cpu, inputs, writes,
// majflt, preempted, steal, gc}` (ms; `inputs`: `arena.input` calls answered during
// the tick's work; since the previous tick ended, this tick's and the gap's
// before it: `writes`, the write system calls (a heartbeat's pings land
// there), `majflt`, the major page faults (the process waits for a disk read),
// `preempted`, the involuntary context switches (the kernel gave the CPU to
// another task), `steal`, the ms the hypervisor ran something else on the
// virtual CPU the process runs on (/proc/stat, 10 ms resolution); `gc`: pause
// time that started in it), to see what the slow ticks have in common.
// The stats also carry the process's write system calls so far (`syscw`), to
// check that a tick costs one write per socket.

import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { guardChildProcess } from './lib/child.js';

const config = JSON.parse(process.argv[2]);
const fail = guardChildProcess(`game server ${config.impl}`);
const ROOT = new URL('../', import.meta.url);

/** GC pauses since the last reset: [start, duration] pairs (ms, performance.now()), their sum and count, and by kind. */
const gc = { pauses: [], count: 0, ms: 0, maxMs: 0, byKind: {} };
const GC_KINDS = { [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor', [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major', [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental', [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb' };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    gc.count++;
    gc.ms += e.duration;
    if (e.duration > gc.maxMs) gc.maxMs = e.duration;
    const kind = GC_KINDS[e.detail?.kind] ?? 'other';
    const k = (gc.byKind[kind] ??= { count: 0, ms: 0, maxMs: 0 });
    k.count++;
    k.ms += e.duration;
    if (e.duration > k.maxMs) k.maxMs = e.duration;
    if (config.tickLog) gc.pauses.push(e.startTime, e.duration);
  }
}).observe({ entryTypes: ['gc'] });
/** Write system calls of this process so far (Linux: /proc/self/io `syscw`), or null elsewhere. */
function writeSyscalls() {
  try {
    return Number(/^syscw:\s*(\d+)/m.exec(readFileSync('/proc/self/io', 'utf8'))?.[1] ?? NaN);
  } catch {
    return null;
  }
}
/** Inputs answered so far (counted by the bench's host wrapper, for the tick log). */
let inputsAnswered = 0;
/** The measurement window's ticks, for the tick log: flat [start, late, sync, work, cpu, inputs, writes, majflt, preempted, steal] × n. */
const ticks = [];
const TICK_FIELDS = 10;
let inputsAtTickStart = 0;
/** The process's counters as the previous tick ended (tick log only). */
let atTickEnd = config.tickLog ? processCounters() : null;
function processCounters() {
  const u = process.resourceUsage();
  return { writes: writeSyscalls(), majflt: u.majorPageFault, preempted: u.involuntaryContextSwitches, steal: stealMs() };
}
/** Steal time of the CPU this process last ran on, ms (Linux /proc/stat: USER_HZ ticks, taken as 10 ms), or null. */
function stealMs() {
  try {
    const cpu = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[36];
    const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith(`cpu${cpu} `));
    return line ? Number(line.trim().split(/\s+/)[8]) * 10 : null;
  } catch {
    return null;
  }
}
const since = (now, before, key) => (now[key] === null || before[key] === null ? null : now[key] - before[key]);
const onTick = (r) => {
  if (ticks.length >= TICK_FIELDS * 100_000) return;
  // Read after the tick's work was measured: the reads themselves are not in it.
  const now = atTickEnd ? processCounters() : null;
  ticks.push(r.startMs, r.lateMs, r.syncMs, r.workMs, r.cpuMs, inputsAnswered - inputsAtTickStart, now ? since(now, atTickEnd, 'writes') : null, now ? since(now, atTickEnd, 'majflt') : null, now ? since(now, atTickEnd, 'preempted') : null, now ? since(now, atTickEnd, 'steal') : null);
  inputsAtTickStart = inputsAnswered;
  atTickEnd = now;
};
function resetObservations() {
  gc.pauses.length = 0;
  gc.count = 0;
  gc.ms = 0;
  gc.maxMs = 0;
  gc.byKind = {};
  ticks.length = 0;
}
function writeTickLog() {
  if (!config.tickLog) return;
  const lines = [];
  let g = 0;
  for (let i = 0; i < ticks.length; i += TICK_FIELDS) {
    const [start, late, sync, work, cpu, inputs, writes, majflt, preempted, steal] = ticks.slice(i, i + TICK_FIELDS);
    let pause = 0;
    while (g < gc.pauses.length && gc.pauses[g] < start) g += 2;
    for (let j = g; j < gc.pauses.length && gc.pauses[j] < start + work; j += 2) pause += gc.pauses[j + 1];
    const r = (n) => Math.round(n * 100) / 100;
    lines.push(JSON.stringify({ t: r(start), late: r(late), sync: r(sync), work: r(work), cpu: r(cpu), inputs, writes, majflt, preempted, steal, gc: r(pause) }));
  }
  writeFileSync(config.tickLog, lines.join('\n') + '\n');
}

const impl = config.impl === 'naive' ? await naive() : config.impl === 'floor' ? await floor() : await switchboard();
process.send({ type: 'ready', port: impl.port, token: impl.token });
process.on('message', (msg) => {
  if (msg.type === 'stats') {
    impl.stats().then((s) => {
      writeTickLog();
      process.send({ type: 'stats', stats: { ...s, gcCount: gc.count, gcMs: gc.ms, gcMaxMs: gc.maxMs, gcByKind: gc.byKind, syscw: writeSyscalls(), cpu: process.cpuUsage(), t: performance.now(), rssKB: process.memoryUsage().rss / 1024 } });
    }, fail);
  } else if (msg.type === 'start') {
    impl.start();
  } else if (msg.type === 'reset') {
    impl.reset();
    resetObservations();
  } else if (msg.type === 'exit') {
    process.exit(0);
  }
});

async function switchboard() {
  const { createRealtimeServer } = await import(new URL('dist/server/index.js', ROOT).href);
  const { startArena, ARENA_NAMESPACE } = await import(new URL('examples/arena/server.js', ROOT).href);
  const secret = randomBytes(32).toString('base64url');
  const server = createRealtimeServer({
    config: {
      host: '127.0.0.1',
      port: 0,
      auth: { hmacSecret: secret },
      namespaces: [ARENA_NAMESPACE],
      fallbacks: { enabled: false },
      log: { level: 'error' },
      limits: {
        maxConnections: 20_000,
        maxConnectionsPerIp: 20_000,
        connectionRatePerIp: { perSecond: 100_000, burst: 100_000 },
        slowConsumer: 'drop-volatile',
        sendHighWaterMark: 256 * 1024,
      },
    },
  });
  // The loop starts once the bots have joined (as the naive one's): a thousand SDK clients join
  // much faster before the state flows, on a loaded machine at all.
  // The host is the server, with its rpc registrations wrapped to count the inputs for the tick log.
  const host = {
    hub: server.hub,
    publish: (channel, data, options) => server.publish(channel, data, options),
    rpc: (method, handler) =>
      server.rpc(method, method === 'arena.input' ? (data, ctx) => (inputsAnswered++, handler(data, ctx)) : handler),
  };
  const arena = startArena(host, { ...config.world, tickHz: config.tickHz, onError: fail, autoStart: false, onTick });
  const { port } = await server.listen();
  const { SignJWT } = await import('jose');
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('bot').setIssuedAt().setExpirationTime('1h').sign(new TextEncoder().encode(secret));
  const sum = async (metric) => (await metric.get()).values.reduce((n, v) => n + v.value, 0);
  const dropped = async () => (await server.metrics.droppedTotal.get()).values.reduce((n, v) => n + (v.labels.reason === 'slow-consumer-volatile' ? v.value : 0), 0);
  return {
    port,
    token,
    async stats() {
      const bytesOut = await sum(server.metrics.bytesOut);
      const messagesOut = await sum(server.metrics.messagesOutTotal);
      const drops = await dropped();
      // What the design sends when every bot keeps up: the bytes written plus the frames dropped for
      // bots that fell behind, at the average message size.
      const bytesWanted = bytesOut + (messagesOut > 0 ? (drops * bytesOut) / messagesOut : 0);
      return { ...arena.stats(), bytesOut, bytesWanted, dropped: drops, connections: server.hub.sessions.size };
    },
    start: () => arena.start(),
    reset: () => arena.resetStats(),
  };
}

async function naive() {
  const { WebSocketServer } = await import('ws');
  const { arenaConfig } = await import(new URL('examples/arena/lib/config.js', ROOT).href);
  const { World } = await import(new URL('examples/arena/lib/sim.js', ROOT).href);
  const { startTickLoop } = await import(new URL('examples/arena/lib/loop.js', ROOT).href);
  const world = new World(arenaConfig({ ...config.world, tickHz: config.tickHz }));
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => wss.once('listening', resolve));
  /** Bytes written, and what the design asks to write (also for the texts skipped below). */
  let bytesOut = 0;
  let bytesWanted = 0;
  let skipped = 0;
  /** The naive server still must not take the machine down: past this much queued per socket it skips (counted). */
  const CAP = 256 * 1024;
  wss.on('connection', (ws) => {
    const player = world.addPlayer('bot', { spawn: 'random' });
    let seq = 0;
    ws.on('message', (data) => {
      try {
        const m = JSON.parse(data.toString());
        world.setInput(player.id, ++seq, m.k);
      } catch {
        // a naive server ignores bad input
      }
    });
    ws.on('close', () => world.removePlayer(player.id));
    ws.on('error', () => {});
    ws.playerId = player.id;
  });
  // What people write first: every tick, the whole world to everyone, one JSON text each (with "you").
  // Started once the bots are in (with hundreds of players it would starve the accept loop meanwhile).
  let loop = null;
  const tick = () => {
    world.step();
    const players = [...world.players.values()].map((p) => ({ id: p.id, name: p.name, x: p.x, y: p.y, score: p.score }));
    const gems = [...world.gems.values()].map((g) => ({ id: g.id, x: g.x, y: g.y }));
    for (const ws of wss.clients) {
      const text = JSON.stringify({ tick: world.tick, you: ws.playerId, players, gems });
      const bytes = Buffer.byteLength(text);
      bytesWanted += bytes;
      if (ws.bufferedAmount > CAP) {
        skipped++;
        continue;
      }
      bytesOut += bytes;
      ws.send(text);
    }
  };
  return {
    port: wss.address().port,
    token: '',
    async stats() {
      const ticks = loop ? loop.stats() : { ticks: 0, overruns: 0, missed: 0, late: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 };
      return { ...ticks, players: world.players.size, bytesOut, bytesWanted, dropped: skipped, connections: wss.clients.size };
    },
    start() {
      loop ??= startTickLoop(config.tickHz, tick, { onError: fail, onTick });
    },
    reset: () => loop?.resetStats(),
  };
}

// The floor (`impl: 'floor'`): what one write per socket per tick costs by itself in Node on this
// machine, with nothing else: a `ws` server whose tick (the same loop) writes one WebSocket frame of
// `config.floorBytes` (the size Switchboard's players get per tick), built once, straight to every
// connection's socket. No simulation, no encoding, no realtime layer; inputs are read and dropped.
// Switchboard's tick CPU over this one's, in the same run, is what the library and the game add to
// the kernel's cost of the writes.
async function floor() {
  const { WebSocketServer } = await import('ws');
  const { startTickLoop } = await import(new URL('examples/arena/lib/loop.js', ROOT).href);
  const { encodeServerFrame } = await import(new URL('dist/protocol/frame-writer.js', ROOT).href);
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise((resolve) => wss.once('listening', resolve));
  wss.on('connection', (ws) => ws.on('error', () => {}));
  const frame = encodeServerFrame(0x2, Buffer.alloc(config.floorBytes ?? 500, 0x2a));
  let bytesOut = 0;
  let skipped = 0;
  let loop = null;
  const tick = () => {
    for (const ws of wss.clients) {
      const socket = ws._socket;
      if (socket.writableLength > 256 * 1024) {
        skipped++;
        continue;
      }
      socket.write(frame);
      bytesOut += frame.length;
    }
  };
  return {
    port: wss.address().port,
    token: '',
    async stats() {
      const ticks = loop ? loop.stats() : { ticks: 0, overruns: 0, missed: 0, late: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 };
      return { ...ticks, players: wss.clients.size, bytesOut, bytesWanted: bytesOut + skipped * frame.length, dropped: skipped, connections: wss.clients.size };
    },
    start() {
      loop ??= startTickLoop(config.tickHz, tick, { onError: fail, onTick });
    },
    reset: () => loop?.resetStats(),
  };
}
