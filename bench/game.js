#!/usr/bin/env node
// The game benchmark (`BENCH_SUITE=game npm run bench`, or `node bench/game.js`
// after `npm run build`): the arena (examples/arena/) on Switchboard beside
// the naive version (`ws`, the whole state as one JSON text per player per
// tick), at 30 and 60 Hz with 100, 500 and 1000 bots. For every cell a
// server child (bench/game-server.js) and bot children in separate processes
// (examples/arena/bots.mjs for Switchboard, bench/game-naive-bots.js for the
// naive one, at most BOTS_PER_PROCESS each), so the server's CPU time is its
// own (process.cpuUsage in the server child). With two or more CPUs and
// taskset, the server is pinned to CPU 0 and every bot process to CPU 1, so
// the server has a core to itself (apart from other programs on the machine,
// reported as "CPU 0 busy" above the server's own share). Method:
// docs/benchmarks.md.
//
// Knobs: GAME_SECONDS (measured, default 10), GAME_WARMUP_SECONDS (default 3),
// GAME_BOTS (default 100,500,1000), GAME_HZ (default 30,60), GAME_IMPLS
// (default switchboard,naive; also floor: one pre-built frame of GAME_FLOOR_BYTES, default 500,
// written straight to every socket per tick and nothing else — the kernel's share, see
// bench/game-server.js), GAME_PIN (1: server on CPU 0, bots on CPU 1 —
// the default when taskset works and there are 2+ CPUs; 0: no pinning),
// GAME_BOT_KIND (sdk: examples/arena/bots.mjs, full SDK players that decode
// and apply every message — the default; light: bench/game-light-bots.js,
// which read and count without decoding, like the naive bots, so that 1,000
// of them keep up on one CPU at 60 Hz), GAME_NICE=1 (bots at nice 10), GAME_CPU_PROF=DIR (the server runs with
// --cpu-prof, its profile written to DIR when the cell ends), GAME_TICK_LOG=DIR
// (every measured tick as a JSON line, one file per cell: bench/game-server.js; read it with
// bench/game-ticks.js), GAME_NODE_ARGS (Node options for the server child, e.g.
// --max-semi-space-size=64), BENCH_OUT
// (default bench/results/game.md).

import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Child, tasksetAvailable } from './lib/child.js';
import { positiveEnvNumber } from './lib/env.js';
import { cpuBetween, sampleCpu } from './lib/sysload.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);
const BOTS_PER_PROCESS = 250;
/** Joining is slow on a loaded machine (every bot is a full SDK client that decodes its areas from the start). */
const JOIN_TIMEOUT_S = 240;
/** The world of every cell: 7 × 7 areas of 600 units. */
const WORLD = { width: 4200, height: 4200, areaSize: 600, gemsPerArea: 3 };

const list = (name, def) => (process.env[name] ? process.env[name].split(',').map((s) => s.trim()).filter(Boolean) : def);
const num = positiveEnvNumber;
const settings = {
  seconds: num('GAME_SECONDS', 10),
  warmup: num('GAME_WARMUP_SECONDS', 3),
  bots: list('GAME_BOTS', ['100', '500', '1000']).map(Number),
  hz: list('GAME_HZ', ['30', '60']).map(Number),
  impls: list('GAME_IMPLS', ['switchboard', 'naive']),
  out: path.resolve(process.env.BENCH_OUT || path.join(BENCH_DIR, 'results', 'game.md')),
};
for (const i of settings.impls) if (i !== 'switchboard' && i !== 'naive' && i !== 'floor') throw new Error(`GAME_IMPLS: unknown "${i}"`);
/** The floor's frame: the bytes a Switchboard player gets per tick at 1,000 players (~500 B). */
const FLOOR_BYTES = num('GAME_FLOOR_BYTES', 500);

const BOT_KIND = process.env.GAME_BOT_KIND || 'sdk';
if (BOT_KIND !== 'sdk' && BOT_KIND !== 'light') throw new Error(`GAME_BOT_KIND=${BOT_KIND}: expected sdk or light`);
const NICE = process.env.GAME_NICE === '1' && spawnSync('nice', ['-n', '10', 'true']).status === 0;
if (process.env.GAME_PIN !== undefined && process.env.GAME_PIN !== '0' && process.env.GAME_PIN !== '1') throw new Error(`GAME_PIN=${process.env.GAME_PIN}: expected 0 or 1`);
const PIN_WANTED = process.env.GAME_PIN !== '0';
const PIN = PIN_WANTED && os.cpus().length >= 2 && tasksetAvailable();
if (process.env.GAME_PIN === '1' && !PIN) throw new Error('GAME_PIN=1: needs taskset (util-linux) and at least 2 CPUs');
/** Where the server and the bots run when pinned. */
const SERVER_CPU = 0;
const BOTS_CPU = 1;
const CPU_PROF = process.env.GAME_CPU_PROF ? path.resolve(process.env.GAME_CPU_PROF) : null;
/** Node options for the server child (GAME_NODE_ARGS, space-separated), e.g. `--max-semi-space-size=64`. */
const NODE_ARGS = (process.env.GAME_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
const TICK_LOG = process.env.GAME_TICK_LOG ? path.resolve(process.env.GAME_TICK_LOG) : null;
if (TICK_LOG) mkdirSync(TICK_LOG, { recursive: true });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Bot processes: spawned with IPC, killed by PID at the end of the cell (and if this process exits). */
const botProcs = new Set();
process.on('exit', () => {
  for (const p of botProcs) try { process.kill(p.pid, 'SIGKILL'); } catch {}
});

function spawnBots(impl, count, offset, ready, seconds) {
  const args =
    impl === 'switchboard' && BOT_KIND === 'light'
      ? [path.join(BENCH_DIR, 'game-light-bots.js'), JSON.stringify({ url: `ws://127.0.0.1:${ready.port}/rt`, bots: count, token: ready.token })]
      : impl === 'switchboard'
      ? [path.join(ROOT, 'examples/arena/bots.mjs'), '--url', `http://127.0.0.1:${ready.port}`, '--bots', String(count), '--id-offset', String(offset),
         '--seconds', String(seconds), '--ramp', '400', '--token', ready.token, '--join-timeout', String(JOIN_TIMEOUT_S), '--quiet']
      : [path.join(BENCH_DIR, 'game-naive-bots.js'), JSON.stringify({ url: `ws://127.0.0.1:${ready.port}/`, bots: count })];
  // GAME_NICE=1: the bots run at a lower priority (nice 10) than the server they load, so on a
  // machine with fewer cores than processes the server gets the CPU when it has a tick to run. Off by
  // default: on a machine already loaded by others, niced bots did not even join (docs/benchmarks.md).
  // GAME_PIN: all bot processes share CPU 1 (the server has CPU 0).
  const argv = [...(PIN ? ['taskset', '-c', String(BOTS_CPU)] : []), ...(NICE ? ['nice', '-n', '10'] : []), process.execPath, ...args];
  const proc = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  botProcs.add(proc);
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (c) => (stderr = (stderr + c).slice(-2000)));
  const joined = new Promise((resolve, reject) => {
    proc.on('message', (m) => {
      if (m?.type === 'joined') resolve(m.joined);
      if (m?.type === 'error') reject(new Error(`bots: ${m.message}`));
    });
    proc.once('exit', (code) => reject(new Error(`bots exited (${code}) before joining: ${stderr.trim().split('\n').slice(-2).join(' | ')}`)));
  });
  return { proc, joined, stderr: () => stderr.trim().split('\n').slice(-1)[0] ?? '' };
}

async function runCell(impl, hz, bots) {
  const nodeArgs = [...NODE_ARGS, ...(CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${CPU_PROF}`, `--cpu-prof-name=game-${impl}-${hz}hz-${bots}-${Date.now()}.cpuprofile`] : [])];
  const server = new Child(`game server ${impl}`, path.join(BENCH_DIR, 'game-server.js'), { impl, tickHz: hz, world: WORLD, floorBytes: FLOOR_BYTES, tickLog: TICK_LOG ? path.join(TICK_LOG, `game-${impl}-${hz}hz-${bots}-${Date.now()}.jsonl`) : null }, process.env, PIN ? SERVER_CPU : null, nodeArgs);
  const load0 = os.loadavg()[0];
  const procs = [];
  try {
    const ready = await server.next('ready', 20_000, 'the game server to listen');
    const botSeconds = settings.warmup + settings.seconds + 60;
    const joins = [];
    const botStderr = [];
    for (let offset = 0; offset < bots; offset += BOTS_PER_PROCESS) {
      const b = spawnBots(impl, Math.min(BOTS_PER_PROCESS, bots - offset), offset, ready, botSeconds);
      procs.push(b.proc);
      joins.push(b.joined);
      botStderr.push(b.stderr);
    }
    const timeout = sleep((JOIN_TIMEOUT_S + 30) * 1000).then(() => { throw new Error(`the bots did not join within ${JOIN_TIMEOUT_S + 30} s`); });
    const joined = (await Promise.race([Promise.all(joins), timeout])).reduce((a, b) => a + b, 0);
    if (joined < bots) throw new Error(`only ${joined} of ${bots} bots joined (${botStderr.map((f) => f()).filter(Boolean).join(' | ')})`);
    // Both servers' loops start now: the naive one would starve its own accept loop while the bots
    // connect, and a thousand SDK bots join far faster before the state flows to them.
    server.send({ type: 'start' });
    await sleep(settings.warmup * 1000);
    server.send({ type: 'reset' });
    server.send({ type: 'stats' });
    // Generous: the naive server answers between two ticks, and its ticks take seconds with many players.
    const s0 = (await server.next('stats', 60_000, 'stats')).stats;
    const sys0 = sampleCpu();
    const core0 = PIN ? [sampleCpu(SERVER_CPU), sampleCpu(BOTS_CPU)] : null;
    await sleep(settings.seconds * 1000);
    server.send({ type: 'stats' });
    const s1 = (await server.next('stats', 60_000, 'stats')).stats;
    const sys = cpuBetween(sys0, sampleCpu());
    const cores = core0 ? [cpuBetween(core0[0], sampleCpu(SERVER_CPU), 1).busyPct, cpuBetween(core0[1], sampleCpu(BOTS_CPU), 1).busyPct] : [NaN, NaN];
    const secs = (s1.t - s0.t) / 1000;
    const cpuUs = s1.cpu.user - s0.cpu.user + (s1.cpu.system - s0.cpu.system);
    const players = s1.players;
    return {
      joined,
      players,
      serverCpuPct: (cpuUs / 1000 / (s1.t - s0.t)) * 100,
      cpuUsPerPlayerS: cpuUs / secs / Math.max(1, players),
      bytesPerPlayerS: (s1.bytesOut - s0.bytesOut) / secs / Math.max(1, players),
      wantedPerPlayerS: (s1.bytesWanted - s0.bytesWanted) / secs / Math.max(1, players),
      ticks: s1.ticks,
      expectedTicks: Math.round(secs * hz),
      cpuUsPerPlayerTick: s1.ticks > 0 ? cpuUs / s1.ticks / Math.max(1, players) : NaN,
      wantedPerPlayerTick: s1.ticks > 0 ? (s1.bytesWanted - s0.bytesWanted) / s1.ticks / Math.max(1, players) : NaN,
      p50Ms: s1.p50Ms,
      p99Ms: s1.p99Ms,
      maxMs: s1.maxMs,
      syncP99Ms: s1.syncP99Ms,
      cpuP50Ms: s1.cpuP50Ms,
      cpuP99Ms: s1.cpuP99Ms,
      cpuMaxMs: s1.cpuMaxMs,
      cpuOverrunPct: s1.ticks > 0 ? (s1.cpuOverruns / s1.ticks) * 100 : NaN,
      lateP50Ms: s1.lateP50Ms,
      lateP99Ms: s1.lateP99Ms,
      lateMaxMs: s1.lateMaxMs,
      overrunPct: s1.ticks > 0 ? (s1.overruns / s1.ticks) * 100 : NaN,
      missedPct: s1.ticks > 0 ? (s1.missed / s1.ticks) * 100 : NaN,
      latePct: s1.ticks > 0 ? (s1.late / s1.ticks) * 100 : NaN,
      droppedPerS: (s1.dropped - s0.dropped) / secs,
      writesPerPlayerTick: s1.syscw !== null && s0.syscw !== null && s1.ticks > 0 ? (s1.syscw - s0.syscw) / s1.ticks / Math.max(1, players) : NaN,
      gcMsPerS: s1.gcMs / secs,
      gcMaxMs: s1.gcMaxMs,
      gcCount: s1.gcCount,
      gcByKind: s1.gcByKind,
      rssMB: s1.rssKB / 1024,
      machineBusyPct: sys.busyPct,
      serverCoreBusyPct: cores[0],
      botsCoreBusyPct: cores[1],
      load: [load0, os.loadavg()[0]],
    };
  } finally {
    for (const p of procs) {
      try { process.kill(p.pid, 'SIGKILL'); } catch {}
      botProcs.delete(p);
    }
    // A profile is written at exit: give it time.
    await server.stop(CPU_PROF ? 30_000 : 2000);
  }
}

const fmt = (n, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '–');
const kb = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n.toFixed(0)} B`);

const rows = [];
const loadBefore = os.loadavg();
for (const hz of settings.hz) {
  for (const bots of settings.bots) {
    for (const impl of settings.impls) {
      process.stderr.write(`game: ${impl} ${hz} Hz ${bots} bots ... `);
      let r;
      try {
        r = await runCell(impl, hz, bots);
        process.stderr.write(
          `cpu ${fmt(r.serverCpuPct)}%, ${kb(r.bytesPerPlayerS)}/player/s, ${fmt(r.writesPerPlayerTick, 2)} writes/player/tick, work p99 ${fmt(r.p99Ms, 2)} ms, overruns ${fmt(r.overrunPct, 1)}% (missed ${fmt(r.missedPct, 1)}%), tick CPU p99 ${fmt(r.cpuP99Ms, 2)} ms, ` +
            `start late p99 ${fmt(r.lateP99Ms, 2)} ms, GC ${fmt(r.gcMsPerS, 1)} ms/s (${Object.entries(r.gcByKind ?? {}).map(([k, v]) => `${k} ${v.count}× max ${fmt(v.maxMs, 1)}`).join(', ')}), ticks ${r.ticks}/${r.expectedTicks}, load ${r.load.map((l) => l.toFixed(1)).join('→')}\n`,
        );
      } catch (err) {
        r = { error: err.message };
        process.stderr.write(`error: ${err.message}\n`);
      }
      rows.push({ impl, hz, bots, ...r });
    }
  }
}

const lines = [];
lines.push(`# Game benchmark (${new Date().toISOString()})`, '');
lines.push(`Node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, load average before the run ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}.`);
lines.push(
  `World ${WORLD.width}×${WORLD.height} units in ${WORLD.areaSize}-unit areas; ${settings.warmup} s warm-up, ${settings.seconds} s measured per cell; ${BOT_KIND === 'light' ? 'light' : 'SDK'} bots for Switchboard in processes of ${BOTS_PER_PROCESS}${NICE ? ' at nice 10' : ''}; ` +
    (NODE_ARGS.length > 0 ? `server run with \`${NODE_ARGS.join(' ')}\`; ` : '') +
    (PIN ? `server pinned to CPU ${SERVER_CPU}, all bots to CPU ${BOTS_CPU} (taskset).` : 'no CPU pinning (server and bots share the CPUs).'),
  '',
);
lines.push('Tick work = from a tick\'s start until the event loop is through with it (the fan-out and socket writes it set off included), p50 / p99 / max, and in brackets the p99 of its synchronous part alone; overrun = work longer than one period; missed = finished after the next tick was due (start lateness + work longer than a period: what "no overrunning ticks" asks). Writes / player / tick = the write system calls (/proc/PID/io syscw) over the window, per tick run and player (the replies to inputs included). Tick CPU = the CPU time the server process used over the same span (it does not grow while the process waits for a CPU); CPU overrun = more CPU time than one period. Start late = how long after its due time a tick started (p50 / p99 / max); late = started more than one period late.', '');
lines.push('| Hz | bots | impl | players | server CPU | CPU µs / player / s | bytes / player / s | bytes / player / tick | writes / player / tick | naive ÷ ours, per tick run: bytes; server CPU | ours ÷ floor: tick CPU p50; p99 | tick work p50 / p99 / max ms (sync p99) | overrun | missed | tick CPU p50 / p99 / max ms | CPU overrun | start late p50 / p99 / max ms | late | ticks run / due | GC ms / s (pauses, longest ms) | dropped / s | RSS MB | CPU 0 / CPU 1 busy | machine busy | load 1 min (start → end) |');
lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  if (r.error) {
    lines.push(`| ${r.hz} | ${r.bots} | ${r.impl} | error: ${r.error} |||||||||||||||||||||`);
    continue;
  }
  const other = rows.find((o) => o.hz === r.hz && o.bots === r.bots && o.impl === 'naive' && !o.error);
  const ratio = r.impl === 'switchboard' && other ? `${fmt(other.wantedPerPlayerTick / r.wantedPerPlayerTick, 0)}×; ${fmt(other.cpuUsPerPlayerTick / r.cpuUsPerPlayerTick, 1)}×` : '';
  const floor = rows.find((o) => o.hz === r.hz && o.bots === r.bots && o.impl === 'floor' && !o.error);
  const overFloor = r.impl === 'switchboard' && floor ? `${fmt(r.cpuP50Ms / floor.cpuP50Ms, 2)}×; ${fmt(r.cpuP99Ms / floor.cpuP99Ms, 2)}×` : '';
  const bytes = r.wantedPerPlayerS > r.bytesPerPlayerS * 1.01 ? `${kb(r.bytesPerPlayerS)} (wants ${kb(r.wantedPerPlayerS)})` : kb(r.bytesPerPlayerS);
  lines.push(
    `| ${r.hz} | ${r.bots} | ${r.impl} | ${r.players} | ${fmt(r.serverCpuPct)}% | ${fmt(r.cpuUsPerPlayerS)} | ${bytes} | ${kb(r.wantedPerPlayerTick)} | ${fmt(r.writesPerPlayerTick, 2)} | ${ratio} | ${overFloor} | ` +
      `${fmt(r.p50Ms, 2)} / ${fmt(r.p99Ms, 2)} / ${fmt(r.maxMs, 1)} (${fmt(r.syncP99Ms, 2)}) | ${fmt(r.overrunPct, 1)}% | ${fmt(r.missedPct, 1)}% | ${fmt(r.cpuP50Ms, 2)} / ${fmt(r.cpuP99Ms, 2)} / ${fmt(r.cpuMaxMs, 1)} | ${fmt(r.cpuOverrunPct, 1)}% | ${fmt(r.lateP50Ms, 2)} / ${fmt(r.lateP99Ms, 2)} / ${fmt(r.lateMaxMs, 1)} | ${fmt(r.latePct, 1)}% | ` +
      `${r.ticks} / ${r.expectedTicks} | ${fmt(r.gcMsPerS, 1)} (${r.gcCount}, ${fmt(r.gcMaxMs, 1)}) | ${fmt(r.droppedPerS)} | ${fmt(r.rssMB)} | ${fmt(r.serverCoreBusyPct)}% / ${fmt(r.botsCoreBusyPct)}% | ${fmt(r.machineBusyPct)}% | ${r.load.map((l) => l.toFixed(1)).join(' → ')} |`,
  );
}
const report = lines.join('\n') + '\n';
mkdirSync(path.dirname(settings.out), { recursive: true });
writeFileSync(settings.out, report);
process.stdout.write(report);
process.stderr.write(`game: report written to ${settings.out}\n`);
process.exit(0);
