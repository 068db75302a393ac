#!/usr/bin/env node
// "Cost per connection": what an idle WebSocket connection costs a server
// (RSS), how fast it accepts handshakes, and a heartbeat hold with many
// connections. Method and how to read it: docs/benchmarks.md ("Cost per connection").
//
//   BENCH_SUITE=connections npm run bench     (or: node bench/connections.js after npm run build)
//
// Targets, each in a fresh server process, one after the other, in the same run:
//   switchboard  the library WebSocketServer ({ port }, default options: no compression)
//   ws           ws's WebSocketServer, the same way
//   node         Node's floor: a minimal upgrade parser on net.Server (bench/conn-server.js)
//   serve        `switchboard serve`: authenticated realtime connections, one
//                subscription each, the default heartbeat (25 s) on
//   serve+semi   the same with node --max-semi-space-size=1
//   serve-bearer `switchboard serve`, the JWT in the upgrade's Authorization
//                header (verified before the 101), no subscription: what
//                serve's WebSocket handshake costs, one round trip as ws's
// For each: a warm-up (connections opened and closed, so JIT and lazily loaded
// code are not counted), the baseline RSS, a burst of N connections
// (handshakes/s over the whole burst), RSS right after the burst and after a
// hold, per connection = (RSS - baseline) / N.
// Then the heartbeat hold (switchboard library server, heartbeat 10 s):
// BENCH_CONN_HOLD_COUNT connections held BENCH_CONN_HOLD_SECONDS, 1 in 100 of
// them silent (they stop answering pings), a new client's handshake timed
// every 5 s, event-loop p99 sampled every 5 s.
//
// BENCH_CONN_ROUNDS > 1 runs the target list that many times over (a fresh
// server each time) and adds medians: per target, and of each round's ratio
// to ws, so that the VM's speed drifting between minutes does not decide a
// ratio (read docs/benchmarks.md on this machine's noise).
//
// BENCH_CONN_PAIR=a,b (two of node, switchboard, ws, base) runs a paired comparison
// instead: both servers at once, every load generator's connections going to
// each in turn, so that both see the same machine at the same moment; per
// round (BENCH_CONN_ROUNDS, at least 5 here) each server's handshakes per
// CPU-second and their ratio. For a small change (a before/after with `base`),
// where one burst after the other cannot separate it from the VM's drift.
//
// Knobs (env): BENCH_CONN_COUNT (10000), BENCH_CONN_SETTLE_SECONDS (45), BENCH_CONN_ROUNDS (1),
// BENCH_CONN_TARGETS (node,switchboard,ws,serve,serve+semi; also serve-bearer, and base: the library
// server of the build at BENCH_CONN_BASE_MODULE, e.g. another checkout's dist/index.js), BENCH_CONN_HOLD_COUNT
// (19000; 0 skips the hold), BENCH_CONN_HOLD_SECONDS (60), BENCH_CONN_HOLD_NODE_ARGS (node
// flags for the hold's server, e.g. --max-semi-space-size=1), BENCH_CONN_LOADGENS (2),
// BENCH_CONN_CONCURRENCY (64 handshakes in flight per load generator),
// BENCH_OUT (default bench/results/connections.md; .json beside it).
//
// Loopback only: the load generators (bench/conn-client.js, separate
// processes, each well under the 20,000 open-files limit) connect from
// 127.0.0.1-127.0.0.4 so that ephemeral ports do not run out. Every child is
// killed by PID at the end, also on error.

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { SignJWT } from 'jose';
import { Child } from './lib/child.js';
import { freePort } from './lib/ports.js';
import { childEnv, implementations, ROOT } from './lib/impls.js';

const BENCH_DIR = path.join(ROOT, 'bench');
const BIN = path.join(ROOT, 'bin', 'switchboard.js');
const KIB = 1024;

const num = (name, def, min = 0) => {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name}=${v}: expected a number >= ${min}`);
  return n;
};
const COUNT = Math.round(num('BENCH_CONN_COUNT', 10_000, 1));
const SETTLE_S = num('BENCH_CONN_SETTLE_SECONDS', 45);
const HOLD_COUNT = Math.round(num('BENCH_CONN_HOLD_COUNT', 19_000));
const HOLD_S = num('BENCH_CONN_HOLD_SECONDS', 60);
const LOADGENS = Math.round(num('BENCH_CONN_LOADGENS', 2, 1));
const CONCURRENCY = Math.round(num('BENCH_CONN_CONCURRENCY', 64, 1));
const WARMUP = 1000;
const HOLD_HEARTBEAT = { interval: 10_000, timeout: 10_000 };
// Node flags for the hold's server (e.g. --max-semi-space-size=1), space-separated.
const HOLD_NODE_ARGS = (process.env.BENCH_CONN_HOLD_NODE_ARGS ?? '').split(' ').filter(Boolean);
const PAIR = (process.env.BENCH_CONN_PAIR ?? '').split(',').map((s) => s.trim()).filter(Boolean);
const PAIRABLE = ['node', 'switchboard', 'ws', 'base'];
if (PAIR.length > 0 && (PAIR.length !== 2 || PAIR[0] === PAIR[1] || PAIR.some((t) => !PAIRABLE.includes(t)))) {
  throw new Error(`BENCH_CONN_PAIR=${process.env.BENCH_CONN_PAIR}: expected two different library servers of ${PAIRABLE.join(', ')}`);
}
const ROUNDS = Math.round(num('BENCH_CONN_ROUNDS', PAIR.length > 0 ? 5 : 1, 1));
const ALL_TARGETS = ['node', 'switchboard', 'ws', 'serve', 'serve+semi', 'serve-bearer', 'base'];
// Target `base`: the library server of another build (a path to its dist/index.js), for a before/after in one run.
const BASE_MODULE = process.env.BENCH_CONN_BASE_MODULE || null;
const DEFAULT_TARGETS = ['node', 'switchboard', 'ws', 'serve', 'serve+semi'];
const TARGETS = (process.env.BENCH_CONN_TARGETS || DEFAULT_TARGETS.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
if ((TARGETS.includes('base') || PAIR.includes('base')) && !BASE_MODULE) throw new Error('BENCH_CONN_TARGETS: "base" needs BENCH_CONN_BASE_MODULE (the dist/index.js of the build to compare with)');
for (const t of TARGETS) if (!ALL_TARGETS.includes(t)) throw new Error(`BENCH_CONN_TARGETS: unknown "${t}" (expected some of: ${ALL_TARGETS.join(', ')})`);
const OUT = path.resolve(process.env.BENCH_OUT || path.join(BENCH_DIR, 'results', 'connections.md'));
const LOCAL_ADDRESSES = ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4'];
const SECRET = 'bench-connections-secret-0123456789abcdef';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const tmpDirs = [];
process.on('exit', () => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

/** RSS of a process in bytes, from /proc (the same source for every target). */
function rssOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

const CLK_TCK = 100; // Linux USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s

/** CPU seconds (user + system) a process used so far, from /proc. */
function cpuOf(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces, hence from the last ')').
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}


// ---------------------------------------------------------------- servers

/** A library server child (bench/conn-server.js). */
async function startLibraryServer(implName, heartbeat, nodeArgs = []) {
  // 'node': Node's floor (no WebSocket library; see bench/conn-server.js).
  const impl =
    implName === 'node'
      ? null
      : implName === 'base'
        ? { ...implementations({ BENCH_SWITCHBOARD_MODULE: BASE_MODULE }).switchboard, name: 'base' }
        : implementations()[implName];
  if (impl?.unavailable) throw new Error(impl.unavailable);
  const child = new Child(
    `server ${implName}`,
    path.join(BENCH_DIR, 'conn-server.js'),
    { impl: impl && { name: impl.name, specifier: impl.specifier, native: impl.native }, heartbeat },
    impl ? childEnv(impl) : process.env,
    null,
    nodeArgs,
  );
  const ready = await child.next('ready', 15_000, 'the server to listen');
  return {
    pid: child.proc.pid,
    path: '/',
    port: ready.port,
    realtime: null,
    stats: async (resetLag = false) => {
      child.send({ type: 'stats', resetLag });
      return (await child.next('stats', 10_000, 'stats')).stats;
    },
    stop: () => child.stop(),
  };
}

/**
 * `switchboard serve` with authenticated connections, the default heartbeat: each
 * sends `auth` and one `sub`, or with `bearer` carries the token in the upgrade.
 */
async function startServe(nodeFlags, { bearer = false } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-bench-conn-'));
  tmpDirs.push(dir);
  const file = path.join(dir, 'switchboard.json');
  const port = await freePort();
  writeFileSync(
    file,
    JSON.stringify({
      host: '127.0.0.1',
      port,
      path: '/rt',
      auth: { hmacSecret: SECRET },
      namespaces: [{ prefix: 'bench', presence: 'off' }],
      limits: {
        maxConnections: 50_000,
        maxConnectionsPerIp: 50_000,
        connectionRatePerIp: { perSecond: 1_000_000, burst: 1_000_000 },
      },
      log: { level: 'info' },
    }),
  );
  const proc = spawn(process.execPath, [...nodeFlags, BIN, 'serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  const tail = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${tail.join(' | ')}`)), 20_000);
    const onLine = (line) => {
      tail.push(line);
      if (tail.length > 20) tail.shift();
      if (line.includes('"msg":"listening"')) {
        clearTimeout(timer);
        resolve();
      }
    };
    createInterface({ input: proc.stdout }).on('line', onLine);
    createInterface({ input: proc.stderr }).on('line', onLine);
    exited.then(() => reject(new Error(`serve exited: ${tail.join(' | ')}`)));
  });
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('bench')
    .setIssuedAt()
    .setExpirationTime('2h')
    .sign(new TextEncoder().encode(SECRET));
  return {
    pid: proc.pid,
    path: '/rt',
    port,
    realtime: { token, channels: 100, bearer },
    stats: async () => {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      const text = await res.text();
      const metric = (name) => {
        const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)`, 'm').exec(text);
        return m ? Number(m[1]) : NaN;
      };
      return { lagP99Ms: metric('switchboard_nodejs_eventloop_lag_p99_seconds') * 1000, open: metric('switchboard_connections') };
    },
    stop: async () => {
      try {
        process.kill(proc.pid, 'SIGKILL');
      } catch {}
      await exited;
    },
  };
}

// ---------------------------------------------------------------- load generators

async function startLoadGens(server, { silentEvery = 0, watchdogMs }) {
  const gens = [];
  for (let i = 0; i < LOADGENS; i++) {
    // Each load generator uses its own local addresses (and so its own ephemeral port ranges).
    const localAddresses = LOADGENS > LOCAL_ADDRESSES.length ? LOCAL_ADDRESSES : LOCAL_ADDRESSES.filter((_, j) => j % LOADGENS === i);
    const gen = new Child(
      `load generator ${i + 1}`,
      path.join(BENCH_DIR, 'conn-client.js'),
      {
        host: '127.0.0.1',
        port: server.port,
        path: server.path,
        localAddresses,
        concurrency: CONCURRENCY,
        watchdogMs,
        realtime: server.realtime,
        ports: server.ports ?? null,
        silentEvery,
      },
      process.env,
      null,
    );
    await gen.next('ready', 10_000, 'the load generator');
    gens.push(gen);
  }
  return gens;
}

/** Open `count` connections over the load generators; returns the handshake rate over the whole burst. */
async function burst(gens, count) {
  const share = (i) => Math.floor(count / gens.length) + (i < count % gens.length ? 1 : 0);
  gens.forEach((g, i) => g.send({ type: 'open', count: share(i) }));
  const done = await Promise.all(gens.map((g) => g.next('opened', 60_000 + count * 5, 'connections to open')));
  const opened = done.reduce((t, d) => t + d.opened, 0);
  const failed = done.reduce((t, d) => t + d.failed, 0);
  const seconds = (Math.max(...done.map((d) => d.endedAt)) - Math.min(...done.map((d) => d.startedAt))) / 1000;
  return { opened, failed, firstError: done.find((d) => d.firstError)?.firstError ?? null, seconds, perSecond: opened / seconds };
}

async function closeAll(gens) {
  for (const g of gens) g.send({ type: 'close' });
  await Promise.all(gens.map((g) => g.next('closed', 10_000, 'connections to close')));
}

async function loadStats(gens) {
  for (const g of gens) g.send({ type: 'stats' });
  const all = await Promise.all(gens.map((g) => g.next('stats', 10_000, 'load generator stats')));
  const sum = (k) => all.reduce((t, s) => t + s[k], 0);
  return {
    open: sum('open'),
    dropped: sum('dropped'),
    firstDrop: all.find((s) => s.firstDrop)?.firstDrop ?? null,
    silent: sum('silent'),
    silentClosed: sum('silentClosed'),
    silentCloseMs: all.flatMap((s) => s.silentCloseMs),
  };
}

// ---------------------------------------------------------------- one target

/** The targets that run `switchboard serve`; every other one is a library server (startLibraryServer). */
const SERVE_TARGETS = {
  serve: () => startServe([]),
  'serve+semi': () => startServe(['--max-semi-space-size=1']),
  'serve-bearer': () => startServe([], { bearer: true }),
};

async function measureTarget(name) {
  const server = await (SERVE_TARGETS[name] ?? (() => startLibraryServer(name, null)))();
  let gens = [];
  try {
    gens = await startLoadGens(server, { watchdogMs: (SETTLE_S + 300) * 1000 });
    // Warm-up: the code paths compiled, lazily loaded modules loaded, then the baseline.
    const warm = await burst(gens, WARMUP);
    if (warm.failed) throw new Error(`warm-up: ${warm.failed} connection(s) failed: ${warm.firstError}`);
    await closeAll(gens);
    await sleep(5000);
    const base = rssOf(server.pid);
    // Library servers report V8's young generation (bench/conn-server.js); serve does not.
    const young = async () => (server.realtime ? NaN : (await server.stats()).newSpace);
    const young0 = await young();
    const cpu0 = cpuOf(server.pid);
    const b = await burst(gens, COUNT);
    const cpuSeconds = cpuOf(server.pid) - cpu0;
    if (b.failed) throw new Error(`${b.failed} connection(s) failed: ${b.firstError}`);
    await sleep(1000);
    const afterBurst = rssOf(server.pid);
    const young1 = await young();
    let settled = afterBurst;
    let minRss = afterBurst;
    // Settled: sample every 5 s; report the last sample (and the lowest seen).
    for (let t = 0; t < SETTLE_S; t += 5) {
      await sleep(Math.min(5, SETTLE_S - t) * 1000);
      settled = rssOf(server.pid);
      minRss = Math.min(minRss, settled);
    }
    const young2 = await young();
    const ls = await loadStats(gens);
    const result = {
      target: name,
      youngAfterBurstKiB: (young1 - young0) / b.opened / KIB,
      youngSettledKiB: (young2 - young0) / b.opened / KIB,
      connections: b.opened,
      handshakesPerSec: b.perSecond,
      burstSeconds: b.seconds,
      // What a handshake costs the server, whatever else the machine is doing: handshakes per CPU-second of the server process.
      handshakesPerCpuSec: b.opened / cpuSeconds,
      serverCpuSeconds: cpuSeconds,
      baseRssMB: base / 2 ** 20,
      afterBurstRssMB: afterBurst / 2 ** 20,
      settledRssMB: settled / 2 ** 20,
      perConnAfterBurstKiB: (afterBurst - base) / b.opened / KIB,
      perConnSettledKiB: (settled - base) / b.opened / KIB,
      perConnLowestKiB: (minRss - base) / b.opened / KIB,
      stillOpen: ls.open,
      dropped: ls.dropped,
    };
    console.error(
      `${name}: ${b.opened} connections, ${Math.round(b.perSecond)} handshakes/s (${Math.round(result.handshakesPerCpuSec)} per server CPU-second); per connection ${result.perConnAfterBurstKiB.toFixed(2)} KiB after the burst, ${result.perConnSettledKiB.toFixed(2)} KiB after ${SETTLE_S} s (lowest ${result.perConnLowestKiB.toFixed(2)}); dropped ${ls.dropped}`,
    );
    return result;
  } catch (err) {
    console.error(`${name}: ERROR ${err.message}`);
    return { target: name, error: err.message };
  } finally {
    for (const g of gens) await g.stop();
    await server.stop();
  }
}

// ---------------------------------------------------------------- a paired comparison

/** BENCH_CONN_PAIR: two library servers at once, the connections alternating between them (see the header). */
async function measurePair([nameA, nameB]) {
  const servers = [];
  let gens = [];
  // Each load generator opens an even number per round (its turns alternate), half to each server: ~COUNT per server.
  const perGenEach = Math.max(1, Math.round(COUNT / LOADGENS));
  try {
    for (const name of [nameA, nameB]) servers.push(await startLibraryServer(name, null));
    gens = await startLoadGens({ ...servers[0], ports: servers.map((s) => s.port) }, { watchdogMs: (ROUNDS * 120 + 300) * 1000 });
    const warm = await burst(gens, WARMUP * 2);
    if (warm.failed) throw new Error(`warm-up: ${warm.failed} connection(s) failed: ${warm.firstError}`);
    await closeAll(gens);
    await sleep(2000);
    const rounds = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const cpu0 = servers.map((s) => cpuOf(s.pid));
      const b = await burst(gens, perGenEach * 2 * gens.length);
      const cpu = servers.map((s, i) => cpuOf(s.pid) - cpu0[i]);
      if (b.failed) throw new Error(`round ${round}: ${b.failed} connection(s) failed: ${b.firstError}`);
      const each = b.opened / 2;
      const r = { round, connectionsEach: each, seconds: b.seconds, cpuSeconds: cpu, perCpuSec: cpu.map((c) => each / c) };
      r.ratio = r.perCpuSec[0] / r.perCpuSec[1];
      rounds.push(r);
      console.error(`pair round ${round}: ${nameA} ${Math.round(r.perCpuSec[0])}, ${nameB} ${Math.round(r.perCpuSec[1])} handshakes per server CPU-second (${each} each); ${nameA} ÷ ${nameB} ${r.ratio.toFixed(3)}`);
      await closeAll(gens);
      await sleep(2000);
    }
    return { pair: [nameA, nameB], rounds, ratio: spread(rounds.map((r) => r.ratio)) };
  } catch (err) {
    console.error(`pair: ERROR ${err.message}`);
    return { pair: [nameA, nameB], error: err.message };
  } finally {
    for (const g of gens) await g.stop();
    for (const s of servers) await s.stop();
  }
}

function renderPair(meta, p) {
  const f = (n, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
  const [a, b] = p.pair;
  const lines = [
    `# Cost per connection: ${a} beside ${b}`,
    '',
    `${meta.date}, Node ${meta.node}, ${meta.cpu} × ${meta.cpus}, git ${meta.git}, load average at the start ${meta.loadAvg.map((l) => l.toFixed(1)).join(' ')}. Both servers at once, each load generator's connections to each in turn; ${LOADGENS} load generator processes, ${CONCURRENCY} handshakes in flight each${BASE_MODULE && p.pair.includes('base') ? `; base = ${BASE_MODULE}` : ''}.`,
    '',
  ];
  if (p.error) return [...lines, `ERROR ${p.error}`].join('\n');
  lines.push(`| round | connections each | ${a}: handshakes per server CPU-second | ${b} | ${a} ÷ ${b} |`, '|---|---|---|---|---|');
  for (const r of p.rounds) lines.push(`| ${r.round} | ${r.connectionsEach} | ${Math.round(r.perCpuSec[0]).toLocaleString('en-US')} | ${Math.round(r.perCpuSec[1]).toLocaleString('en-US')} | ${f(r.ratio, 3)} |`);
  lines.push('', `${a} ÷ ${b}: median ${f(p.ratio.median, 3)} (${f(p.ratio.min, 3)}–${f(p.ratio.max, 3)}) over ${p.rounds.length} rounds.`);
  return lines.join('\n');
}

// ---------------------------------------------------------------- the heartbeat hold

async function heartbeatHold() {
  const server = await startLibraryServer('switchboard', HOLD_HEARTBEAT, HOLD_NODE_ARGS);
  let gens = [];
  try {
    gens = await startLoadGens(server, { silentEvery: 100, watchdogMs: (HOLD_S + 300) * 1000 });
    const warm = await burst(gens, WARMUP);
    if (warm.failed) throw new Error(`warm-up: ${warm.failed} connection(s) failed: ${warm.firstError}`);
    await closeAll(gens);
    await sleep(5000);
    const base = rssOf(server.pid);
    const b = await burst(gens, HOLD_COUNT);
    if (b.failed) throw new Error(`${b.failed} connection(s) failed: ${b.firstError}`);
    const holdStart = Date.now();
    await server.stats(true); // the burst's lag is not the hold's
    const lagP99 = [];
    const probes = [];
    const rss = [];
    const young = [];
    const s0 = await server.stats();
    const young0 = s0.newSpace;
    let prev = s0;
    const allocKiBs = [];
    while (Date.now() - holdStart < HOLD_S * 1000) {
      await sleep(5000);
      gens[0].send({ type: 'probe' });
      const p = await gens[0].next('probed', 30_000, 'a probe handshake');
      probes.push(p.ms ?? Infinity);
      const s = await server.stats(true);
      lagP99.push(s.lagP99Ms);
      rss.push(rssOf(server.pid));
      young.push(s.newSpace);
      // Young-generation allocation rate over the window, when no GC emptied it meanwhile.
      if (s.scavenges === prev.scavenges && s.markCompacts === prev.markCompacts) allocKiBs.push((s.newSpaceUsed - prev.newSpaceUsed) / KIB / 5);
      prev = s;
    }
    const ls = await loadStats(gens);
    const s = await server.stats();
    const sorted = ls.silentCloseMs.sort((x, y) => x - y);
    const result = {
      connections: b.opened,
      handshakesPerSec: b.perSecond,
      holdSeconds: HOLD_S,
      heartbeat: HOLD_HEARTBEAT,
      dropped: ls.dropped,
      firstDrop: ls.firstDrop,
      silent: ls.silent,
      silentTerminated: ls.silentClosed,
      silentTerminatedMinS: sorted.length ? sorted[0] / 1000 : null,
      silentTerminatedMaxS: sorted.length ? sorted[sorted.length - 1] / 1000 : null,
      // A silent peer's deadline: at most one interval until the ping, then the timeout, plus one sweep step.
      deadlineS: (HOLD_HEARTBEAT.interval + HOLD_HEARTBEAT.timeout) / 1000 + 1,
      lagP99MaxMs: Math.max(...lagP99),
      lagP99Ms: lagP99,
      probeMaxMs: Math.max(...probes),
      probesMs: probes,
      serverOpen: s.open,
      perConnEndKiB: (rss[rss.length - 1] - base) / b.opened / KIB,
      perConnMaxKiB: (Math.max(...rss) - base) / b.opened / KIB,
      // V8's young generation (resident) at the start of the hold and at each 5 s sample, MiB: does it shrink while only the heartbeat runs?
      youngStartMB: young0 / 2 ** 20,
      youngMB: young.map((y) => y / 2 ** 20),
      gcsInHold: { scavenges: prev.scavenges - s0.scavenges, markCompacts: prev.markCompacts - s0.markCompacts },
      youngAllocKiBPerSec: allocKiBs,
    };
    console.error(
      `hold: ${b.opened} connections ${HOLD_S} s, dropped ${ls.dropped}, silent terminated ${ls.silentClosed}/${ls.silent} in ${result.silentTerminatedMinS?.toFixed(1)}-${result.silentTerminatedMaxS?.toFixed(1)} s, lag p99 max ${result.lagP99MaxMs.toFixed(1)} ms, probe max ${result.probeMaxMs.toFixed(1)} ms, ${result.perConnEndKiB.toFixed(2)} KiB per connection at the end; young generation ${result.youngStartMB.toFixed(1)} MiB at the start, ${result.youngMB.map((y) => y.toFixed(1)).join(' ')} MiB every 5 s; GCs in the hold ${result.gcsInHold.scavenges} scavenges, ${result.gcsInHold.markCompacts} mark-compacts; young allocation ${allocKiBs.map((a) => a.toFixed(0)).join(' ')} KiB/s`,
    );
    return result;
  } catch (err) {
    console.error(`hold: ERROR ${err.message}`);
    return { error: err.message };
  } finally {
    for (const g of gens) await g.stop();
    await server.stop();
  }
}

// ---------------------------------------------------------------- report

/** The ws result of the same round (ratios compare within a round). */
function wsOfRound(results, round) {
  return results.find((o) => o.round === round && o.target === 'ws' && !o.error) ?? null;
}

const median = (xs) => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

/** Median, lowest and highest of a list of ratios. */
const spread = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });

/** Per target over the rounds: medians, and each round's ratio to that round's ws (median, lowest, highest). */
function summarize(results) {
  return [...new Set(TARGETS)].map((target) => {
    const rows = results.filter((r) => r.target === target && !r.error);
    const ratios = (key) =>
      rows
        .map((r) => {
          const ws = wsOfRound(results, r.round);
          return ws ? r[key] / ws[key] : NaN;
        })
        .filter(Number.isFinite);
    return {
      target,
      rounds: rows.length,
      handshakesPerSec: median(rows.map((r) => r.handshakesPerSec)),
      handshakesPerCpuSec: median(rows.map((r) => r.handshakesPerCpuSec)),
      perConnAfterBurstKiB: median(rows.map((r) => r.perConnAfterBurstKiB)),
      vsWsCpu: spread(ratios('handshakesPerCpuSec')),
      vsWsWall: spread(ratios('handshakesPerSec')),
      vsWsMemory: spread(ratios('perConnAfterBurstKiB')),
    };
  });
}

/** `summary`: summarize(results) when there were rounds, else undefined. */
function render(meta, results, summary, hold) {
  const f = (n, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
  const roundCol = ROUNDS > 1;
  const lines = [
    `# Cost per connection`,
    '',
    `${meta.date}, Node ${meta.node}, ${meta.cpu} × ${meta.cpus}, git ${meta.git}, load average at the start ${meta.loadAvg.map((l) => l.toFixed(1)).join(' ')}. ${COUNT} idle connections per target (after a warm-up of ${WARMUP}), settled = ${SETTLE_S} s later; ${LOADGENS} load generator processes, ${CONCURRENCY} handshakes in flight each${roundCol ? `; the targets ran ${ROUNDS} times over (rounds), ratios are to ws of the same round` : ''}.`,
    '',
    `| ${roundCol ? 'round | ' : ''}target | RSS / connection after the burst | settled | of which V8 young generation (after burst / settled) | handshakes/s (wall clock) | handshakes per server CPU-second | vs ws: memory after burst / settled | vs ws: handshakes (wall / CPU) |`,
    `|${roundCol ? '---|' : ''}---|---|---|---|---|---|---|---|`,
  ];
  for (const r of results) {
    const lead = roundCol ? `| ${r.round} ` : '';
    if (r.error) {
      lines.push(`${lead}| ${r.target} | ERROR ${r.error.slice(0, 200)} | | | | | | |`);
      continue;
    }
    const ws = wsOfRound(results, r.round);
    const ratio = ws && r !== ws
      ? `${f(r.perConnAfterBurstKiB / ws.perConnAfterBurstKiB)}× / ${f(r.perConnSettledKiB / ws.perConnSettledKiB)}×`
      : '';
    const hs = ws && r !== ws ? `${f(r.handshakesPerSec / ws.handshakesPerSec)}× / ${f(r.handshakesPerCpuSec / ws.handshakesPerCpuSec)}×` : '';
    lines.push(
      `${lead}| ${r.target} | ${f(r.perConnAfterBurstKiB)} KiB | ${f(r.perConnSettledKiB)} KiB | ${Number.isFinite(r.youngAfterBurstKiB) ? `${f(r.youngAfterBurstKiB)} / ${f(r.youngSettledKiB)} KiB` : 'n/a'} | ${Math.round(r.handshakesPerSec).toLocaleString('en-US')} | ${Math.round(r.handshakesPerCpuSec).toLocaleString('en-US')} | ${ratio} | ${hs} |`,
    );
  }
  if (roundCol) {
    lines.push(
      '',
      `## Over ${ROUNDS} rounds: medians, and each round's ratio to that round's ws (median, lowest–highest)`,
      '',
      '| target | rounds | handshakes/s | per server CPU-second | vs ws per CPU-second | vs ws wall clock | RSS / connection after the burst | vs ws: memory after the burst |',
      '|---|---|---|---|---|---|---|---|',
    );
    const range = (x) => (Number.isFinite(x.median) ? `${f(x.median)}× (${f(x.min)}–${f(x.max)})` : '');
    for (const t of summary) {
      if (t.rounds === 0) continue;
      const isWs = t.target === 'ws';
      lines.push(
        `| ${t.target} | ${t.rounds} | ${Math.round(t.handshakesPerSec).toLocaleString('en-US')} | ${Math.round(t.handshakesPerCpuSec).toLocaleString('en-US')} | ${isWs ? '' : range(t.vsWsCpu)} | ${isWs ? '' : range(t.vsWsWall)} | ${f(t.perConnAfterBurstKiB)} KiB | ${isWs ? '' : range(t.vsWsMemory)} |`,
      );
    }
  }
  if (hold) {
    lines.push('', `## Heartbeat hold (library server, heartbeat ${HOLD_HEARTBEAT.interval / 1000} s${HOLD_NODE_ARGS.length ? `, node ${HOLD_NODE_ARGS.join(' ')}` : ''})`, '');
    if (hold.error) lines.push(`ERROR ${hold.error}`);
    else {
      lines.push(
        '| connections | held | dropped | silent peers terminated | in (s) | deadline (s) | event-loop p99 (max of 5 s windows) | new handshake (max) | RSS / connection at the end (max) | young generation, start → end |',
        '|---|---|---|---|---|---|---|---|---|---|',
        `| ${hold.connections} | ${hold.holdSeconds} s | ${hold.dropped} | ${hold.silentTerminated}/${hold.silent} | ${f(hold.silentTerminatedMinS, 1)}–${f(hold.silentTerminatedMaxS, 1)} | ≤ ${hold.deadlineS} | ${f(hold.lagP99MaxMs, 1)} ms | ${f(hold.probeMaxMs, 1)} ms | ${f(hold.perConnEndKiB)} KiB (${f(hold.perConnMaxKiB)}) | ${f(hold.youngStartMB, 1)} → ${f(hold.youngMB.at(-1), 1)} MiB |`,
      );
    }
  }
  return lines.join('\n');
}

async function main() {
  const { execFileSync } = await import('node:child_process');
  let git = 'no commit';
  try {
    git = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {}
  const meta = { date: new Date().toISOString(), node: process.version, cpu: os.cpus()[0]?.model ?? 'unknown', cpus: os.cpus().length, git, loadAvg: os.loadavg() };
  if (PAIR.length > 0) {
    console.error(`connections: ${PAIR.join(' beside ')}, ~${COUNT} connections each per round, ${ROUNDS} rounds`);
    const p = await measurePair(PAIR);
    writeReport(renderPair(meta, p), { meta, pair: p });
    if (p.error) process.exitCode = 1;
    return;
  }
  console.error(`connections: targets ${TARGETS.join(', ')}, ${COUNT} connections each, settle ${SETTLE_S} s, ${ROUNDS} round(s); hold ${HOLD_COUNT || 'off'}`);
  const results = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const t of TARGETS) results.push({ round, ...(await measureTarget(t)) });
  }
  const hold = HOLD_COUNT > 0 ? await heartbeatHold() : null;
  const summary = ROUNDS > 1 ? summarize(results) : undefined;
  writeReport(render(meta, results, summary, hold), { meta, results, summary, hold });
  if (results.some((r) => r.error) || hold?.error) process.exitCode = 1;
}

/** The report on stdout and in BENCH_OUT (markdown), with its data as JSON beside it. */
function writeReport(markdown, data) {
  process.stdout.write(`${markdown}\n`);
  mkdirSync(path.dirname(OUT), { recursive: true });
  writeFileSync(OUT, `${markdown}\n`);
  writeFileSync(OUT.replace(/\.md$/, '') + '.json', `${JSON.stringify(data, null, 2)}\n`);
}

main().catch((err) => {
  console.error(`connections: ${err.stack || err.message}`);
  process.exit(2);
});
