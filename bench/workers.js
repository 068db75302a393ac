#!/usr/bin/env node
// `serve --workers N` on this machine (issue 11, "every core of a box"); method
// and results: docs/benchmarks.md ("Workers").
//
//   BENCH_SUITE=workers npm run bench      (or: node bench/workers.js after npm run build)
//
// Two phases, in this order, in one run, on one Debian redis-server (a free
// loopback port; started and killed by this script):
//
// fanout  for each count in BENCH_WORKERS_FANOUT (1,2): `serve --workers W` on
//         Redis, and the fan-out load generator of the fan-out suite
//         (bench/fanout-client.js: raw-TCP clients, one publisher and
//         BENCH_WORKERS_FANOUT_SUBSCRIBERS subscribers on one channel): a
//         saturated closed loop, then a fixed rate. Deliveries/s, the CPU the
//         serve processes and the generator used, the load average.
// idle    BENCH_WORKERS_CONNECTIONS realtime connections over `serve
//         --workers BENCH_WORKERS_COUNT`: each authenticates with a JWT,
//         subscribes to one channel (the same for all), and answers the
//         heartbeat (25 s, on by default). Clients: bench/conn-client.js
//         (bench/lib/raw-ws.js) in G processes, each under 17,000 sockets and
//         bound to source addresses of its own, 127.0.0.2 and up, 4 each (an
//         ephemeral port range of 28,232 per source address). Reports the ramp (time,
//         handshakes/s), what the primary did (CPU, RSS, open fds, restarts),
//         RSS per worker (before, after the ramp, settled after the hold),
//         event-loop p99 per worker (the workers' /metrics), connections
//         dropped during the hold; then one publish (POST /api/publish) and
//         how long it took to reach every connection.
//
// Knobs (env): BENCH_WORKERS_CONNECTIONS (6000; 100000 for the issue's
// measurement), BENCH_WORKERS_COUNT (6), BENCH_WORKERS_GENERATORS (one per
// 17,000 connections, at least 2), BENCH_WORKERS_CONCURRENCY (64 handshakes
// in flight per generator), BENCH_WORKERS_HOLD_S (45), BENCH_WORKERS_RAMP_S
// (200, bound on the ramp), BENCH_WORKERS_FANOUT (1,2; empty skips the
// phase), BENCH_WORKERS_FANOUT_SUBSCRIBERS (1000), BENCH_WORKERS_FANOUT_SECONDS
// (8, per phase), BENCH_WORKERS_PHASES (fanout,idle), BENCH_WORKERS_DEADLINE_S
// (whole run, 600), BENCH_WORKERS_SCHED (rr: node:cluster's default, the
// primary accepts and hands connections out; none: the workers accept from
// the shared socket), BENCH_WORKERS_MIN_FREE_MB (2048: the run stops when the
// machine's MemAvailable falls below it), BENCH_OUT (bench/results/workers.md,
// .json beside it).
//
// Loopback only. redis-server and each `serve` run in a process group of their
// own and are killed with their group (the workers with their primary); the
// load generators are killed by PID; also on error, on a signal and when the
// deadline passes.

import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { SignJWT } from 'jose';
import { Child } from './lib/child.js';
import { positiveEnvNumber } from './lib/env.js';
import { FANOUT_RAISED_LIMITS } from './lib/fanout.js';
import { freePort } from './lib/ports.js';
import { ROOT } from './lib/impls.js';
import { cpuBetween, sampleCpu } from './lib/sysload.js';

const BENCH_DIR = path.join(ROOT, 'bench');
const BIN = path.join(ROOT, 'bin', 'switchboard.js');
const REDIS_SERVER = process.env.SWITCHBOARD_REDIS_SERVER ?? '/usr/bin/redis-server';
const SECRET = 'bench-workers-secret-0123456789abcdef';
const API_KEY = 'bench-workers-api-key-0123456789abcdef';
const CHANNEL = 'bench/0';
/** Sockets per load generator at most: well under the 20,000 open files, and under the 28,232 ports of one source address. */
const PER_GENERATOR = 17_000;
/**
 * Source addresses per generator, taken in turn: each connection binds a source address with port 0 before it
 * connects, and the kernel's search for a free port on one address slows down as its 28,232 ports fill up.
 */
const ADDRESSES_PER_GENERATOR = 4;
/** Open files of a worker besides its connections (fd-limit.ts FD_HEADROOM). */
const FD_HEADROOM = 100;

const num = positiveEnvNumber;
const list = (name, def) => (process.env[name] ?? def).split(',').map((s) => s.trim()).filter(Boolean);
const N = Math.round(num('BENCH_WORKERS_CONNECTIONS', 6000));
const W = Math.round(num('BENCH_WORKERS_COUNT', 6));
const G = Math.round(num('BENCH_WORKERS_GENERATORS', Math.max(2, Math.ceil(N / PER_GENERATOR))));
const CONCURRENCY = Math.round(num('BENCH_WORKERS_CONCURRENCY', 64));
const HOLD_S = num('BENCH_WORKERS_HOLD_S', 45);
const RAMP_S = num('BENCH_WORKERS_RAMP_S', 200);
const FANOUT = list('BENCH_WORKERS_FANOUT', '1,2').map(Number);
const FANOUT_SUBSCRIBERS = Math.round(num('BENCH_WORKERS_FANOUT_SUBSCRIBERS', 1000));
const FANOUT_SECONDS = num('BENCH_WORKERS_FANOUT_SECONDS', 8);
const PHASES = list('BENCH_WORKERS_PHASES', 'fanout,idle');
const DEADLINE_S = num('BENCH_WORKERS_DEADLINE_S', 600);
/** Attempts again after a refused or failed connection, as a reconnecting client would. */
const RETRIES = 5;
/** node:cluster's scheduling (NODE_CLUSTER_SCHED_POLICY): rr, the primary accepts and hands out; none, the workers accept. */
const SCHED = process.env.BENCH_WORKERS_SCHED || 'rr';
if (!['rr', 'none'].includes(SCHED)) throw new Error(`BENCH_WORKERS_SCHED=${SCHED}: rr or none`);
const MIN_FREE_MB = num('BENCH_WORKERS_MIN_FREE_MB', 2048);
const OUT = path.resolve(process.env.BENCH_OUT || path.join(BENCH_DIR, 'results', 'workers.md'));
for (const p of PHASES) if (!['fanout', 'idle'].includes(p)) throw new Error(`BENCH_WORKERS_PHASES: unknown "${p}" (fanout, idle)`);
for (const w of FANOUT) if (!Number.isInteger(w) || w < 1) throw new Error(`BENCH_WORKERS_FANOUT: worker counts, got ${process.env.BENCH_WORKERS_FANOUT}`);
if (Math.ceil(N / G) > PER_GENERATOR) throw new Error(`${N} connections over ${G} generators is more than ${PER_GENERATOR} each: raise BENCH_WORKERS_GENERATORS`);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error('[workers]', ...a);
const loadAvg = () => os.loadavg().map((x) => Number(x.toFixed(2)));

// ---------------------------------------------------------------- processes, always killed

/** Leaders of the process groups we started (redis-server, each serve with its workers). */
const groups = new Set();
/** @type {Set<Child>} */
const generators = new Set();
const tmpDirs = [];
function killEverything() {
  for (const g of generators) g.kill();
  for (const pid of groups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {}
  }
  groups.clear();
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
  tmpDirs.length = 0;
}
process.on('exit', killEverything);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => process.exit(130));
const RUN_STARTED = Date.now();
/** What the run measured so far: written out as it is when the deadline passes. */
const run = { meta: null, fanout: [], idle: null };
setTimeout(() => {
  console.error(`[workers] the whole run passed its deadline (BENCH_WORKERS_DEADLINE_S=${DEADLINE_S}): killing everything, writing what was measured`);
  if (run.idle && !run.idle.error) run.idle.error = `the run's deadline (${DEADLINE_S} s) passed here`;
  try {
    writeReport();
  } catch (err) {
    console.error(`[workers] no report: ${err.message}`);
  }
  process.exit(3);
}, DEADLINE_S * 1000).unref();

/**
 * Spawn in a process group of its own; resolves with the first stdout/stderr
 * line `match` accepts. Later lines at warn level or above are kept in `warnings`.
 */
function startGroup(name, cmd, args, match, ms = 60_000, env = {}) {
  const child = spawn(cmd, args, {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SWITCHBOARD_'))), ...env },
  });
  groups.add(child.pid);
  const tail = [];
  const warnings = [];
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within ${ms} ms: ${tail.join(' | ')}`)), ms);
    const onLine = (line) => {
      tail.push(line);
      if (tail.length > 20) tail.shift();
      if (/"level":(4|5|6)0/.test(line) || /^switchboard serve:/.test(line)) warnings.push(line.slice(0, 400));
      const m = match(line);
      if (m !== undefined && m !== null && m !== false) {
        clearTimeout(timer);
        resolve(m);
      }
    };
    createInterface({ input: child.stdout }).on('line', onLine);
    createInterface({ input: child.stderr }).on('line', onLine);
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}): ${tail.join(' | ')}`));
    });
  });
  return ready.then((m) => ({ pid: child.pid, m, warnings, exited, alive: () => child.exitCode === null && child.signalCode === null }));
}

/** SIGTERM the group, SIGKILL it after `graceMs`. */
async function stopGroup(proc, graceMs = 10_000) {
  if (!proc) return;
  try {
    if (proc.alive()) process.kill(-proc.pid, 'SIGTERM');
  } catch {}
  const done = await Promise.race([proc.exited.then(() => true), sleep(graceMs).then(() => false)]);
  try {
    process.kill(-proc.pid, 'SIGKILL'); // the workers too, if the primary went first
  } catch {}
  if (!done) await Promise.race([proc.exited, sleep(5000)]);
  groups.delete(proc.pid);
}

async function startRedis() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-bench-workers-redis-'));
  tmpDirs.push(dir);
  const port = await freePort();
  const proc = await startGroup(
    'redis-server',
    REDIS_SERVER,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--maxclients', '1000'],
    (l) => /Ready to accept connections/.test(l),
    15_000,
  );
  return { ...proc, url: `redis://127.0.0.1:${port}` };
}

/** `serve --workers w` with this configuration; resolves once every worker listens. */
async function startServe(w, config) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-bench-workers-'));
  tmpDirs.push(dir);
  const file = path.join(dir, 'switchboard.json');
  writeFileSync(file, JSON.stringify(config));
  const t0 = Date.now();
  const proc = await startGroup(`serve --workers ${w}`, process.execPath, [BIN, 'serve', '--config', file, '--workers', String(w)], (l) => {
    // The banner on stderr: a single process's once it listens, a primary's once every worker does.
    const m = /^switchboard: http:\/\/127\.0\.0\.1:(\d+)\/ /.exec(l);
    return m ? Number(m[1]) : undefined;
  }, 60_000, { NODE_CLUSTER_SCHED_POLICY: SCHED });
  const workerPids = w === 1 ? [proc.pid] : childPids(proc.pid);
  if (workerPids.length !== w) throw new Error(`serve --workers ${w}: ${workerPids.length} worker processes under the primary ${proc.pid}`);
  return { ...proc, port: proc.m, workerPids, primaryPid: w === 1 ? null : proc.pid, startMs: Date.now() - t0 };
}

function childPids(pid) {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
}

// ---------------------------------------------------------------- /proc

function rssKiB(pid) {
  try {
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

/** CPU seconds (user + system) of a process so far. */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

function openFds(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

function memAvailableMB() {
  return Math.round(Number(/^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? NaN) / 1024);
}

const sum = (a) => a.reduce((t, x) => t + x, 0);
const mib = (kib) => Math.round(kib / 1024);

// ---------------------------------------------------------------- workers' /metrics

/**
 * Each worker's event-loop delay p99 (ms, since that worker's previous
 * scrape: prom-client resets its histogram on every collect) and its open
 * WebSocket connections. Scrapes go through the shared port, so the primary
 * hands each to the next worker; scraped until every worker answered.
 */
async function scrapeWorkers(port, w) {
  const seen = new Map();
  const scrape = () =>
    fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) }).then(
      (res) => res.text(),
      () => '',
    );
  // Rounds of w scrapes at once: the primary gives a connection only to a worker that took its previous one, so
  // scrapes one after the other keep landing on the least busy worker.
  for (let round = 0; round < 10 && seen.size < w; round++) {
    for (const text of await Promise.all(Array.from({ length: w }, scrape))) addScrape(seen, text);
  }
  return [...seen.entries()].sort((a, b) => Number(a[0]) - Number(b[0])).map(([worker, m]) => ({ worker: Number(worker), ...m }));
}

function addScrape(seen, text) {
  if (!text) return;
  const worker = /^switchboard_broker_up\{worker="(\d+)"\} /m.exec(text)?.[1] ?? '1';
  if (seen.has(worker)) return;
  const metric = (name) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN);
  seen.set(worker, {
    lagP99Ms: metric('switchboard_nodejs_eventloop_lag_p99_seconds') * 1000,
    lagMaxMs: metric('switchboard_nodejs_eventloop_lag_max_seconds') * 1000,
    websockets: Number(new RegExp(`^switchboard_connections\\{transport="websocket"[^}]*\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0),
  });
}

// ---------------------------------------------------------------- phase: fan-out with W workers

async function fanoutCell(redis, w) {
  const config = {
    host: '127.0.0.1',
    port: 0,
    path: '/rt',
    auth: { anonymous: true },
    broker: { type: 'redis', url: redis.url },
    namespaces: [{ prefix: '', anonymousSubscribe: true, anonymousPublish: true, clientPublish: true }],
    // As the fan-out suite's server (bench/fanout-server.js): nothing rate-limits, no heartbeat.
    // (maxConnections under the 20,000 open files less serve's 100, so that no fd warning is logged)
    limits: { ...FANOUT_RAISED_LIMITS, maxConnections: 19_000 },
    heartbeat: { intervalMs: 0 },
    fallbacks: { enabled: false },
    log: { level: 'warn' },
  };
  let serve = null;
  let gen = null;
  try {
    serve = await startServe(w, config);
    const pids = [serve.pid, ...(serve.primaryPid ? serve.workerPids : [])];
    const durationMs = FANOUT_SECONDS * 1000;
    const drainMs = 15_000;
    const setupMs = 20_000 + 5 * FANOUT_SUBSCRIBERS;
    gen = new Child(
      'fan-out load generator',
      path.join(BENCH_DIR, 'fanout-client.js'),
      {
        host: '127.0.0.1',
        port: serve.port,
        path: '/rt',
        scenario: { channels: 1, perChannel: FANOUT_SUBSCRIBERS, window: 32, rate: 20 },
        warmupMs: 1000,
        durationMs,
        drainTimeoutMs: drainMs,
        setupTimeoutMs: setupMs,
        concurrency: 200,
        probes: 512,
      },
      process.env,
      null,
    );
    generators.add(gen);
    await gen.next('setup-done', setupMs + 5000, `${FANOUT_SUBSCRIBERS} subscribers`);
    await gen.next('sat-start', 15_000, 'the warm-up');
    const load = loadAvg();
    const sys0 = sampleCpu();
    const cpu0 = sum(pids.map(cpuSeconds));
    const t0 = Date.now();
    await gen.next('sat-end', durationMs + 10_000, 'the saturated phase');
    const serveCpuPct = ((sum(pids.map(cpuSeconds)) - cpu0) / ((Date.now() - t0) / 1000)) * 100;
    const sys = cpuBetween(sys0, sampleCpu());
    const { result: r } = await gen.next('result', 2 * drainMs + durationMs + 20_000, 'the fixed-rate phase and the drain');
    const problems = [];
    if (r.closedEarly) problems.push(`${r.closedEarly} connection(s) closed early (first: ${r.firstError})`);
    if (r.pubErrors) problems.push(`${r.pubErrors} publish error(s) (first: ${r.firstPubError})`);
    if (r.missing > 0) problems.push(`${r.missing} deliveries missing after the drain`);
    if (r.wrongCounts) problems.push(`${r.wrongCounts} subscriber(s) with a wrong count`);
    const cell = {
      workers: w,
      subscribers: FANOUT_SUBSCRIBERS,
      loadAvgAtStart: load,
      deliveriesPerSec: r.sat.deliveries / (r.sat.measureMs / 1000),
      publishesPerSec: r.sat.publishes / (r.sat.measureMs / 1000),
      satP50Ms: r.sat.latency.p50Ms,
      satP99Ms: r.sat.latency.p99Ms,
      fixedP50Ms: r.rate.latency.p50Ms,
      fixedP99Ms: r.rate.latency.p99Ms,
      fixedBehind: r.rate.skippedPublishes > 0 || r.rate.backlogAtEnd > 2 * FANOUT_SUBSCRIBERS,
      serveCpuPct,
      generatorCpuPct: r.sat.cpuPct,
      machineBusyPct: sys.busyPct,
      otherCpuPct: sys.busyPct - serveCpuPct - r.sat.cpuPct,
      missing: r.missing,
      error: problems.length ? problems.join('; ') : undefined,
    };
    log(
      `fan-out, ${w} worker(s): ${Math.round(cell.deliveriesPerSec)} deliveries/s (${cell.publishesPerSec.toFixed(1)} publishes/s), serve ${cell.serveCpuPct.toFixed(0)} % CPU, generator ${cell.generatorCpuPct.toFixed(0)} %, others ${cell.otherCpuPct.toFixed(0)} %, load ${load.join(' ')}${cell.error ? `; ${cell.error}` : ''}`,
    );
    return cell;
  } catch (err) {
    log(`fan-out, ${w} worker(s): ERROR ${err.message}`);
    return { workers: w, error: err.message };
  } finally {
    if (gen) {
      gen.kill();
      await Promise.race([gen.exited, sleep(5000)]);
      generators.delete(gen);
    }
    await stopGroup(serve);
  }
}

// ---------------------------------------------------------------- phase: idle connections over W workers

async function idle(redis) {
  const perWorker = Math.ceil(N / W);
  // The primary hands each connection to a worker that is free to take it (one that acknowledged its last one), which
  // is not an even spread when some workers are busier: each worker takes as many as its open-files limit allows
  // (the serve warning's arithmetic, fd-limit.ts), and a client refused by a full worker (503) tries again.
  const files = Number(/^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? 1_000_000);
  const maxConnections = files - FD_HEADROOM;
  if (perWorker > maxConnections) {
    throw new Error(`${N} connections over ${W} workers is ${perWorker} per worker, over the open-files limit of ${files} (ulimit -n) less ${FD_HEADROOM}: add workers`);
  }
  const config = {
    host: '127.0.0.1',
    port: 0,
    path: '/rt',
    apiKey: API_KEY,
    auth: { hmacSecret: SECRET },
    broker: { type: 'redis', url: redis.url },
    namespaces: [{ prefix: 'bench', presence: 'off' }],
    limits: { maxConnections, maxConnectionsPerIp: 1_000_000, connectionRatePerIp: { perSecond: 1_000_000, burst: 1_000_000 } },
    fallbacks: { enabled: false },
    log: { level: 'warn' },
  };
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('bench').setIssuedAt().setExpirationTime('2h').sign(new TextEncoder().encode(SECRET));
  const result = (run.idle = { connections: N, workers: W, scheduling: SCHED, generators: G, concurrencyPerGenerator: CONCURRENCY, maxConnectionsPerWorker: maxConnections, holdSeconds: HOLD_S });
  let serve = null;
  const gens = [];
  try {
    serve = await startServe(W, config);
    const { primaryPid, workerPids, port } = serve;
    result.startMs = serve.startMs;
    log(`serve --workers ${W} on port ${port}: primary ${primaryPid}, workers ${workerPids.join(' ')}`);
    for (let g = 0; g < G; g++) {
      const gen = new Child(
        `load generator ${g + 1}`,
        path.join(BENCH_DIR, 'conn-client.js'),
        {
          host: '127.0.0.1',
          port,
          path: '/rt',
          localAddresses: Array.from({ length: ADDRESSES_PER_GENERATOR }, (_, k) => `127.0.0.${2 + g * ADDRESSES_PER_GENERATOR + k}`),
          concurrency: CONCURRENCY,
          watchdogMs: DEADLINE_S * 1000,
          realtime: { token, channels: 1 },
          silentEvery: 0,
          retries: RETRIES,
        },
        process.env,
        null,
      );
      generators.add(gen);
      gens.push(gen);
    }
    await Promise.all(gens.map((g) => g.next('ready', 20_000, 'the load generator')));
    const stats = async () => {
      for (const g of gens) g.send({ type: 'stats' });
      return Promise.all(gens.map((g) => g.next('stats', 20_000, 'load generator stats')));
    };
    const open = async (count) => {
      const share = (i) => Math.floor(count / gens.length) + (i < count % gens.length ? 1 : 0);
      gens.forEach((g, i) => g.send({ type: 'open', count: share(i) }));
    };

    // Warm-up: every worker compiles its handshake path and loads what it loads lazily before the baseline.
    const warm = Math.min(100 * W, N);
    await open(warm);
    const w0 = await Promise.all(gens.map((g) => g.next('opened', 60_000, 'warm-up connections')));
    if (sum(w0.map((d) => d.failed))) throw new Error(`warm-up: ${sum(w0.map((d) => d.failed))} connection(s) failed: ${w0.find((d) => d.firstError)?.firstError}`);
    for (const g of gens) g.send({ type: 'close' });
    await Promise.all(gens.map((g) => g.next('closed', 20_000, 'warm-up connections to close')));
    await sleep(3000);
    const rssBase = workerPids.map(rssKiB);
    result.rssBeforeMiB = rssBase.map(mib);
    await scrapeWorkers(port, W); // resets each worker's event-loop histogram: the next scrape covers the ramp

    // The ramp.
    const cpu0 = { primary: primaryPid ? cpuSeconds(primaryPid) : NaN, workers: workerPids.map(cpuSeconds) };
    const sys0 = sampleCpu();
    result.loadAvgAtRampStart = loadAvg();
    result.memAvailableMBAtStart = memAvailableMB();
    const t0 = Date.now();
    const genCpu0 = gens.map((g) => cpuSeconds(g.proc.pid));
    let finished = null;
    Promise.all(gens.map((g) => g.next('opened', (RAMP_S + 120) * 1000, `${N} connections (BENCH_WORKERS_RAMP_S=${RAMP_S})`))).then(
      (d) => (finished = d),
      (e) => (finished = e),
    );
    await open(N);
    result.rampHalted = false;
    const samples = [];
    let primaryFdsMax = 0;
    let primaryRssMax = 0;
    let workerFdsMax = workerPids.map(() => 0);
    let minMem = Infinity;
    let loggedRetry = false;
    let last = { t: t0, open: 0 };
    while (finished === null) {
      await sleep(2000);
      if (finished !== null) break;
      const s = await stats();
      const now = Date.now();
      const openNow = sum(s.map((x) => x.open));
      const failed = sum(s.map((x) => x.opened)) - openNow + sum(s.map((x) => x.failed));
      const retried = sum(s.map((x) => x.retried));
      const rate = ((openNow - last.open) * 1000) / (now - last.t);
      last = { t: now, open: openNow };
      if (primaryPid) {
        primaryFdsMax = Math.max(primaryFdsMax, openFds(primaryPid));
        primaryRssMax = Math.max(primaryRssMax, rssKiB(primaryPid));
      }
      workerFdsMax = workerPids.map((pid, i) => Math.max(workerFdsMax[i], openFds(pid)));
      const mem = memAvailableMB();
      minMem = Math.min(minMem, mem);
      samples.push({ s: (now - t0) / 1000, open: openNow, perSec: Math.round(rate) });
      if (retried > 0 && !loggedRetry) {
        loggedRetry = true;
        log(`ramp: connections are being retried; the first failure: ${s.find((x) => x.firstRetryError)?.firstRetryError}`);
      }
      log(`ramp ${((now - t0) / 1000).toFixed(0)} s: ${openNow} open (${Math.round(rate)}/s), ${failed} failed or closed, ${retried} retried, primary fds ${primaryPid ? openFds(primaryPid) : '-'}, worker fds ${workerPids.map(openFds).join(' ')}, MemAvailable ${mem} MB, load ${loadAvg().join(' ')}`);
      if (mem < MIN_FREE_MB) throw new Error(`MemAvailable ${mem} MB < ${MIN_FREE_MB} MB at ${openNow} connections: stopping (BENCH_WORKERS_MIN_FREE_MB)`);
      for (const [i, pid] of workerPids.entries()) if (!existsPid(pid)) throw new Error(`worker ${i + 1} (pid ${pid}) is gone during the ramp (see the warnings: ${serve.warnings.slice(-3).join(' | ')})`);
      // Out of ramp time, or the rest of the run (drain, hold, publish, stop) would not fit before the deadline.
      if (!result.rampHalted && (now - t0 > RAMP_S * 1000 || now - RUN_STARTED > (DEADLINE_S - HOLD_S - 100) * 1000)) {
        // Out of time: no new connections; those in flight finish, and the run goes on with what is open.
        result.rampHalted = true;
        result.rampHaltedAfterS = (now - t0) / 1000;
        log(`ramp: stopped after ${((now - t0) / 1000).toFixed(0)} s (BENCH_WORKERS_RAMP_S ${RAMP_S}, or what the deadline leaves) with ${openNow} of ${N} open: no new connections from here`);
        for (const g of gens) g.send({ type: 'halt' });
      }
    }
    if (finished instanceof Error) {
      const s = await stats().catch(() => []);
      throw new Error(`${finished.message}; reached ${sum(s.map((x) => x.open))} open, ${sum(s.map((x) => x.failed))} failed (first: ${s.find((x) => x.firstError)?.firstError ?? 'none'})`);
    }
    const done = finished;
    const rampS = (Math.max(...done.map((d) => d.endedAt)) - Math.min(...done.map((d) => d.startedAt))) / 1000;
    const cpu1 = { primary: primaryPid ? cpuSeconds(primaryPid) : NaN, workers: workerPids.map(cpuSeconds) };
    const sysRamp = cpuBetween(sys0, sampleCpu());
    result.generatorCpuSecondsDuringRamp = Number(sum(gens.map((g, i) => cpuSeconds(g.proc.pid) - genCpu0[i])).toFixed(1));
    result.opened = sum(done.map((d) => d.opened));
    result.failed = sum(done.map((d) => d.failed));
    result.firstError = done.find((d) => d.firstError)?.firstError ?? null;
    result.retried = sum(done.map((d) => d.retried));
    result.firstRetryError = done.find((d) => d.firstRetryError)?.firstRetryError ?? null;
    result.rampSeconds = rampS;
    result.handshakesPerSec = result.opened / rampS;
    result.handshakesPerSecPeak2s = Math.max(...samples.map((x) => x.perSec), 0);
    result.rampSamples = samples;
    result.machineBusyPctDuringRamp = sysRamp.busyPct;
    result.primary = primaryPid
      ? {
          cpuSecondsDuringRamp: cpu1.primary - cpu0.primary,
          cpuPctDuringRamp: ((cpu1.primary - cpu0.primary) / rampS) * 100,
          rssMaxMiB: mib(primaryRssMax),
          openFdsMax: primaryFdsMax,
        }
      : null;
    result.workerCpuSecondsDuringRamp = workerPids.map((pid, i) => Number((cpu1.workers[i] - cpu0.workers[i]).toFixed(1)));
    result.handshakesPerWorkerCpuSecond = result.opened / sum(result.workerCpuSecondsDuringRamp);
    result.workerOpenFdsMax = workerFdsMax;
    result.minMemAvailableMB = minMem;
    await sleep(1000);
    const rssBurst = workerPids.map(rssKiB);
    result.rssAfterRampMiB = rssBurst.map(mib);
    result.perWorkerAfterRamp = await scrapeWorkers(port, W);
    log(
      `ramp done: ${result.opened} open, ${result.failed} failed in ${rampS.toFixed(1)} s (${Math.round(result.handshakesPerSec)}/s, peak ${result.handshakesPerSecPeak2s}/s over 2 s); RSS per worker ${result.rssAfterRampMiB.join(' ')} MiB; lag p99 over the ramp ${result.perWorkerAfterRamp.map((x) => x.lagP99Ms.toFixed(0)).join(' ')} ms; holding ${HOLD_S} s`,
    );

    // The hold.
    const holdT0 = Date.now();
    const rssSamples = [];
    const lagP99 = [];
    while (Date.now() - holdT0 < HOLD_S * 1000) {
      await sleep(Math.min(15_000, HOLD_S * 1000 - (Date.now() - holdT0)));
      rssSamples.push(workerPids.map(rssKiB));
      const m = await scrapeWorkers(port, W);
      lagP99.push(m.map((x) => x.lagP99Ms));
      minMem = Math.min(minMem, memAvailableMB());
    }
    const held = await stats();
    const rssEnd = rssSamples.at(-1) ?? workerPids.map(rssKiB);
    result.openAfterHold = sum(held.map((x) => x.open));
    result.droppedDuringHold = sum(held.map((x) => x.dropped));
    result.firstDrop = held.find((x) => x.firstDrop)?.firstDrop ?? null;
    result.rssSettledMiB = rssEnd.map(mib);
    result.totalRssSettledMiB = mib(sum(rssEnd));
    result.kibPerConnectionAfterRamp = (sum(rssBurst) - sum(rssBase)) / result.opened;
    result.kibPerConnectionSettled = (sum(rssEnd) - sum(rssBase)) / result.opened;
    result.lagP99MsDuringHold = lagP99; // per 15 s window, per worker
    result.lagP99MsDuringHoldMax = Math.max(...lagP99.flat());
    result.minMemAvailableMB = minMem;
    result.perWorkerAfterHold = await scrapeWorkers(port, W);
    log(
      `hold: ${result.openAfterHold} open, ${result.droppedDuringHold} dropped; RSS per worker ${result.rssSettledMiB.join(' ')} MiB (total ${result.totalRssSettledMiB} MiB, ${result.kibPerConnectionSettled.toFixed(2)} KiB per connection); lag p99 max ${result.lagP99MsDuringHoldMax.toFixed(0)} ms`,
    );

    // One publish to everyone.
    const sentAt = Date.now();
    const res = await fetch(`http://127.0.0.1:${port}/api/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel: CHANNEL, data: { text: 'to every connection', t: sentAt } }),
      signal: AbortSignal.timeout(30_000),
    });
    const ackMs = Date.now() - sentAt;
    if (res.status !== 200) throw new Error(`POST /api/publish: ${res.status} ${await res.text()}`);
    let got = await stats();
    const expect = result.openAfterHold;
    while (sum(got.map((x) => x.delivered)) < expect && Date.now() - sentAt < 60_000) {
      await sleep(250);
      got = await stats();
    }
    const firsts = got.map((x) => x.firstDeliveryAt).filter((x) => x !== null);
    const lasts = got.map((x) => x.lastDeliveryAt).filter((x) => x !== null);
    result.publish = {
      subscribers: expect,
      delivered: sum(got.map((x) => x.delivered)),
      apiAckMs: ackMs,
      firstDeliveryMs: firsts.length ? Math.min(...firsts) - sentAt : null,
      allDeliveredMs: lasts.length ? Math.max(...lasts) - sentAt : null,
    };
    log(`publish: ${result.publish.delivered} of ${expect} delivered; first after ${result.publish.firstDeliveryMs?.toFixed(0)} ms, all after ${result.publish.allDeliveredMs?.toFixed(0)} ms (API answered in ${ackMs} ms)`);
    result.loadAvgAtEnd = loadAvg();
    result.workersAlive = workerPids.map(existsPid);
    result.serveWarnings = serve.warnings.slice(0, 20);
    return result;
  } catch (err) {
    log(`idle: ERROR ${err.message}`);
    result.error = err.message;
    result.serveWarnings = serve?.warnings.slice(0, 20);
    return result;
  } finally {
    // Generators first: their sockets go with them, so the workers have nothing left to close gracefully.
    for (const g of gens) g.kill();
    await Promise.all(gens.map((g) => Promise.race([g.exited, sleep(5000)])));
    for (const g of gens) generators.delete(g);
    await stopGroup(serve);
  }
}

function existsPid(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------- report

function render(meta, fanout, idleResult) {
  const f = (n, d = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : 'n/a');
  const lines = [
    '# serve --workers N',
    '',
    `${meta.date}, Node ${meta.node}, ${meta.cpus} CPUs (${meta.cpu}), git ${meta.git}; uptime at the start: ${meta.uptimeStart}; at the end: ${meta.uptimeEnd}.`,
  ];
  if (fanout.length) {
    lines.push(
      '',
      `## Fan-out on Redis: 1 channel × ${FANOUT_SUBSCRIBERS} subscribers (bench/fanout-client.js), ${FANOUT_SECONDS} s saturated`,
      '',
      '| workers | load average (1/5/15 min) | deliveries/s | publishes/s | serve CPU (all processes) | serve CPU per delivery | generator CPU | other processes | fixed 20/s: p50 / p99 |',
      '|---|---|---:|---:|---:|---:|---:|---:|---|',
    );
    for (const c of fanout) {
      if (c.error && !Number.isFinite(c.deliveriesPerSec)) lines.push(`| ${c.workers} | | ERROR ${c.error.slice(0, 200)} | | | | | | |`);
      else
        lines.push(
          `| ${c.workers} | ${c.loadAvgAtStart.join(' / ')} | ${f(c.deliveriesPerSec)} | ${f(c.publishesPerSec, 1)} | ${f(c.serveCpuPct)} % | ${f((c.serveCpuPct * 1e4) / c.deliveriesPerSec, 1)} µs | ${f(c.generatorCpuPct)} % | ${f(c.otherCpuPct)} % | ${f(c.fixedP50Ms, 1)} / ${f(c.fixedP99Ms, 1)} ms${c.fixedBehind ? ' (behind)' : ''}${c.error ? ` — ${c.error}` : ''} |`,
        );
    }
  }
  if (idleResult) {
    const r = idleResult;
    lines.push('', `## Idle realtime connections: ${f(N)} over ${W} workers on Redis (JWT, 1 subscription each, heartbeat 25 s), held ${HOLD_S} s`, '');
    if (r.error) lines.push(`**ERROR**: ${r.error}`, '');
    const row = (k, v) => lines.push(`| ${k} | ${String(v).replace(/undefined/g, 'n/a')} |`);
    lines.push('| | |', '|---|---|');
    row('connections asked / open after the ramp / failed', `${f(N)} / ${f(r.opened)} / ${f(r.failed)}${r.firstError ? ` (first: ${r.firstError})` : ''}`);
    row('ramp', `${f(r.rampSeconds, 1)} s, ${f(r.handshakesPerSec)} handshakes/s (peak ${f(r.handshakesPerSecPeak2s)}/s over 2 s); ${G} generators × ${CONCURRENCY} in flight; scheduling ${SCHED}; load ${r.loadAvgAtRampStart?.join(' ')} at its start`);
    if (r.rampHalted) row('ramp halted', `stopped opening connections after ${f(r.rampHaltedAfterS)} s (BENCH_WORKERS_RAMP_S ${RAMP_S}, or what the deadline left); in-flight handshakes finished`);
    if (r.retried) row('connection attempts made again', `${f(r.retried)} (first failure: ${r.firstRetryError})`);
    row(
      'CPU during the ramp',
      `workers ${f(sum(r.workerCpuSecondsDuringRamp ?? []), 1)} CPU-s (${f(r.handshakesPerWorkerCpuSecond)} handshakes per worker CPU-second), generators ${f(r.generatorCpuSecondsDuringRamp, 1)} CPU-s; the machine's 2 CPUs ${f(r.machineBusyPctDuringRamp)} % busy (all processes)`,
    );
    if (r.primary) row('the primary during the ramp', `${f(r.primary.cpuSecondsDuringRamp, 1)} CPU-s (${f(r.primary.cpuPctDuringRamp)} % of a core), RSS ≤ ${f(r.primary.rssMaxMiB)} MiB, open fds ≤ ${f(r.primary.openFdsMax)}`);
    row('open fds per worker (max)', r.workerOpenFdsMax?.join(' '));
    row('connections per worker after the hold', r.perWorkerAfterHold?.map((x) => f(x.websockets)).join(' '));
    row('dropped during the hold', `${f(r.droppedDuringHold)}${r.firstDrop ? ` (first: ${r.firstDrop})` : ''}`);
    row('RSS per worker: before / after the ramp / settled (MiB)', `${r.rssBeforeMiB?.join(' ')} / ${r.rssAfterRampMiB?.join(' ')} / ${r.rssSettledMiB?.join(' ')}`);
    row('total RSS of the workers, settled', `${f(r.totalRssSettledMiB)} MiB`);
    row('added per connection (all workers): after the ramp / settled', `${f(r.kibPerConnectionAfterRamp, 2)} / ${f(r.kibPerConnectionSettled, 2)} KiB`);
    row('event-loop p99 per worker: over the ramp / max over the hold', `${r.perWorkerAfterRamp?.map((x) => f(x.lagP99Ms)).join(' ')} / ${f(r.lagP99MsDuringHoldMax)} ms`);
    if (r.publish) row('one publish to all', `${f(r.publish.delivered)} of ${f(r.publish.subscribers)} delivered; first after ${f(r.publish.firstDeliveryMs)} ms, all after ${f(r.publish.allDeliveredMs)} ms`);
    row('MemAvailable (lowest)', `${f(r.minMemAvailableMB)} MB`);
    if (r.serveWarnings?.length) row('serve warnings', r.serveWarnings.map((w) => w.replace(/\|/g, '\\|')).join('<br>'));
  }
  return lines.join('\n');
}

async function main() {
  const uptime = () => execFileSync('uptime').toString().trim();
  let git = 'no commit';
  try {
    git = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {}
  const meta = { date: new Date().toISOString(), node: process.version, cpu: os.cpus()[0]?.model ?? 'unknown', cpus: os.cpus().length, git, uptimeStart: uptime(), memAvailableMBStart: memAvailableMB() };
  run.meta = meta;
  log(`phases ${PHASES.join(', ')}; fan-out with ${FANOUT.join(', ')} worker(s); ${N} idle connections over ${W} workers, ${G} generators; ${meta.uptimeStart}; MemAvailable ${meta.memAvailableMBStart} MB`);
  let redis = null;
  try {
    redis = await startRedis();
    if (PHASES.includes('fanout')) for (const w of FANOUT) run.fanout.push(await fanoutCell(redis, w));
    if (PHASES.includes('idle')) await idle(redis);
  } finally {
    await stopGroup(redis, 2000);
  }
  writeReport();
  if (run.fanout.some((c) => c.error) || run.idle?.error) process.exitCode = 1;
}

function writeReport() {
  run.meta.uptimeEnd = execFileSync('uptime').toString().trim();
  log(run.meta.uptimeEnd);
  const markdown = render(run.meta, run.fanout, run.idle);
  process.stdout.write(`${markdown}\n`);
  mkdirSync(path.dirname(OUT), { recursive: true });
  writeFileSync(OUT, `${markdown}\n`);
  writeFileSync(`${OUT.replace(/\.md$/, '')}.json`, `${JSON.stringify(run, null, 2)}\n`);
}

main()
  .catch((err) => {
    console.error(`workers bench: ${err.stack || err.message}`);
    process.exitCode = 2;
  })
  .finally(() => {
    killEverything();
    setTimeout(() => process.exit(), 200).unref();
  });
