#!/usr/bin/env node
// Benchmarks: switchboard vs ws (pure JS) vs ws + native addons, in two suites.
// Method, knobs and how to read the output: docs/benchmarks.md.
//
// echo:   for every (client mode, scenario, implementation) cell this process
//         starts an echo server child (bench/server.js) and a load-generator
//         child (bench/client.js), collects the numbers over IPC and kills both.
// fanout: for every (scenario, implementation) cell, a realtime server child
//         (bench/fanout-server.js) and a raw-TCP load generator with one
//         publisher and many subscribers (bench/fanout-client.js); see
//         bench/lib/fanout.js.
// A failing cell becomes an error row; the run goes on.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Child, tasksetAvailable } from './lib/child.js';
import { FANOUT_AA_NOTE, FANOUT_SCENARIOS, fanoutServerKind, runFanoutCell } from './lib/fanout.js';
import { childEnv, implementations, ROOT } from './lib/impls.js';
import { renderReport } from './lib/report.js';
import { cpuBetween, isNoisy, noiseOf, sampleCpu } from './lib/sysload.js';

const BENCH_DIR = path.join(ROOT, 'bench');
const SERVER_SCRIPT = path.join(BENCH_DIR, 'server.js');
const CLIENT_SCRIPT = path.join(BENCH_DIR, 'client.js');

/**
 * Scenarios in run order. `inflight` = messages outstanding per connection;
 * `connections` overrides BENCH_CONNECTIONS.
 */
export const SCENARIOS = [
  // colocate: both processes on one CPU, so a round trip costs CPU time
  // only, not the idle wake-up of a second (virtual) CPU; see docs/benchmarks.md.
  { id: 'pingpong', title: 'Ping-pong 32 B binary, 1 connection', kind: 'binary', size: 32, inflight: 1, deflate: false, connections: 1, colocate: true },
  { id: '32b', title: 'Echo 32 B binary', kind: 'binary', size: 32, inflight: 8, deflate: false },
  { id: '1k', title: 'Echo 1 KiB binary', kind: 'binary', size: 1024, inflight: 8, deflate: false },
  { id: '64k', title: 'Echo 64 KiB binary', kind: 'binary', size: 64 * 1024, inflight: 4, deflate: false },
  { id: '1m', title: 'Echo 1 MiB binary', kind: 'binary', size: 1024 * 1024, inflight: 1, deflate: false },
  { id: 'deflate', title: 'permessage-deflate, 16 KiB JSON text', kind: 'json', size: 16 * 1024, inflight: 4, deflate: true, pool: 32 },
];

const IMPLS = implementations();
const IMPL_NAMES = Object.keys(IMPLS);
const MODES = ['same', 'fixed'];
const SUITES = {
  echo: SCENARIOS.map((s) => s.id),
  fanout: FANOUT_SCENARIOS.map((s) => s.id),
};
SUITES.all = [...SUITES.echo, ...SUITES.fanout];
// Optional, not part of `all`: 3 nodes on Redis beside Socket.IO (bench/cluster.js, its own report).
SUITES.cluster = [];
// Optional, not part of `all`: the arena game vs a naive ws version (bench/game.js, its own report and GAME_* knobs).
SUITES.game = [];
// Optional, not part of `all`: what an idle connection costs, handshakes/s, the heartbeat hold (bench/connections.js, its own report).
SUITES.connections = [];
// Optional, not part of `all`: serve --workers N, fan-out with 1 and 2 workers and idle connections over 6 (bench/workers.js, its own report).
SUITES.workers = [];

// ---------------------------------------------------------------- settings

function envNumber(name, def, { min = 0, integer = false } = {}) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
    throw new Error(`${name}=${raw}: expected ${integer ? 'an integer' : 'a number'} >= ${min}`);
  }
  return n;
}

function envList(name, def, allowed) {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return def;
  const items = raw.split(',').map((s) => s.trim()).filter(Boolean);
  for (const item of items) {
    if (!allowed.includes(item)) throw new Error(`${name}: unknown "${item}" (expected some of: ${allowed.join(', ')})`);
  }
  return items;
}

function readSettings() {
  const suite = process.env.BENCH_SUITE?.trim() || 'all';
  if (!Object.hasOwn(SUITES, suite)) throw new Error(`BENCH_SUITE: unknown "${suite}" (expected one of: ${Object.keys(SUITES).join(', ')})`);
  const fixedClient = process.env.BENCH_FIXED_CLIENT || 'ws+native';
  if (!IMPL_NAMES.includes(fixedClient)) throw new Error(`BENCH_FIXED_CLIENT: unknown "${fixedClient}" (expected one of: ${IMPL_NAMES.join(', ')})`);
  // Off by default: on the 2-vCPU VMs we develop on, pinning made cross-CPU
  // wake-ups the bottleneck (ping-pong latency 4x worse) and made cells
  // far more sensitive to other load on the machine. See docs/benchmarks.md.
  const pinWanted = process.env.BENCH_PIN === '1';
  const taskset = tasksetAvailable();
  const pin = pinWanted && os.cpus().length >= 2 && taskset;
  return {
    seconds: envNumber('BENCH_SECONDS', 3, { min: 0.1 }),
    warmupSeconds: envNumber('BENCH_WARMUP_SECONDS', 0.5, { min: 0 }),
    connections: envNumber('BENCH_CONNECTIONS', 64, { min: 1, integer: true }),
    runs: envNumber('BENCH_RUNS', 1, { min: 1, integer: true }),
    impls: envList('BENCH_IMPLS', IMPL_NAMES, IMPL_NAMES),
    suite,
    // Echo and fan-out scenario ids; BENCH_SUITE narrows the default and what BENCH_SCENARIOS may name.
    scenarios: envList('BENCH_SCENARIOS', SUITES[suite], SUITES[suite]),
    modes: envList('BENCH_CLIENT_MODES', MODES, MODES),
    fixedClient,
    pin,
    taskset,
    pinNote: pin
      ? 'server on CPU 0, load generator on CPU 1 (taskset, BENCH_PIN=1)'
      : pinWanted
        ? 'off (BENCH_PIN=1 but taskset or a second CPU is not available)'
        : 'off, the OS schedules both processes on any CPU (BENCH_PIN=1 pins them)',
    noisyRetries: envNumber('BENCH_NOISY_RETRIES', 12, { min: 0, integer: true }),
    fanoutProbes: envNumber('BENCH_FANOUT_PROBES', 512, { min: 1, integer: true }),
    fanoutRateScale: envNumber('BENCH_FANOUT_RATE_SCALE', 1, { min: 0.001 }),
    out: path.resolve(process.env.BENCH_OUT || path.join(BENCH_DIR, 'results', 'latest.md')),
  };
}

// ---------------------------------------------------------------- one cell

const SERVER_START_TIMEOUT_MS = 15_000;
const CONNECT_TIMEOUT_MS = 10_000;
const CLOSE_TIMEOUT_MS = 3_000;
const STATS_TIMEOUT_MS = 3_000;
const DRAIN_TIMEOUT_MS = 3_000;

/**
 * Run one measurement: a fresh server child and a fresh client child.
 * @returns {Promise<object>} metrics, or { error }
 */
async function runCell(settings, scenario, serverImpl, clientImpl) {
  for (const impl of new Set([serverImpl, clientImpl])) {
    if (impl.unavailable) return { error: impl.unavailable };
  }
  const warmupMs = Math.round(settings.warmupSeconds * 1000);
  const durationMs = Math.round(settings.seconds * 1000);
  const implConfig = (impl) => ({ name: impl.name, specifier: impl.specifier, native: impl.native });
  const [serverCpu, clientCpu] = scenario.colocate && settings.taskset ? [0, 0] : settings.pin ? [0, 1] : [null, null];
  const server = new Child(
    `server ${serverImpl.name}`,
    SERVER_SCRIPT,
    { impl: implConfig(serverImpl), deflate: scenario.deflate },
    childEnv(serverImpl),
    serverCpu,
  );
  let client = null;
  try {
    const ready = await server.next('ready', SERVER_START_TIMEOUT_MS, 'the server to listen');
    client = new Child(
      `client ${clientImpl.name}`,
      CLIENT_SCRIPT,
      {
        impl: implConfig(clientImpl),
        url: `ws://127.0.0.1:${ready.port}/`,
        scenario,
        connections: scenario.connections ?? settings.connections,
        warmupMs,
        durationMs,
        drainTimeoutMs: DRAIN_TIMEOUT_MS,
        connectTimeoutMs: CONNECT_TIMEOUT_MS,
        closeTimeoutMs: CLOSE_TIMEOUT_MS,
      },
      childEnv(clientImpl),
      clientCpu,
    );
    await client.next('measure-start', CONNECT_TIMEOUT_MS + warmupMs + 10_000, 'connections and warm-up');
    const sys0 = sampleCpu();
    server.send({ type: 'stats' });
    const s0 = (await server.next('stats', STATS_TIMEOUT_MS, 'stats')).stats;
    await client.next('measure-end', durationMs + 10_000, 'the measurement');
    const sys = cpuBetween(sys0, sampleCpu());
    server.send({ type: 'stats' });
    const s1 = (await server.next('stats', STATS_TIMEOUT_MS, 'stats')).stats;
    const { result: r } = await client.next('result', DRAIN_TIMEOUT_MS + 5_000, 'the echoes still in flight');

    const problems = [];
    if (r.closedEarly) problems.push(`${r.closedEarly} connection(s) closed early`);
    if (r.mismatched) problems.push(`${r.mismatched} echo(es) differed from what was sent`);
    if (r.unexpected) problems.push(`${r.unexpected} unsolicited message(s)`);
    if (r.errors) problems.push(`${r.errors} client error event(s)`);
    if (s1.errors) problems.push(`${s1.errors} server error event(s): ${s1.firstError}`);
    if (r.received === 0) problems.push('no echo received during the measurement');
    if (problems.length) return { error: `${problems.join('; ')}${r.firstError ? ` (first: ${r.firstError})` : ''}` };

    const serverMs = s1.t - s0.t;
    const serverCpuUs = s1.cpu.user - s0.cpu.user + (s1.cpu.system - s0.cpu.system);
    const serverMsgs = s1.messages - s0.messages;
    const seconds = r.measureMs / 1000;
    const serverCpuPct = (serverCpuUs / 1000 / serverMs) * 100;
    return {
      msgsPerSec: r.received / seconds,
      mbPerSec: r.bytes / seconds / 1e6,
      p50Ms: r.latency.p50Ms,
      p99Ms: r.latency.p99Ms,
      p999Ms: r.latency.p999Ms,
      maxMs: r.latency.maxMs,
      latencySamples: r.latency.count,
      latencyCensored: r.latency.censored,
      clientCpuPct: r.cpuPct,
      serverCpuPct,
      // Machine-wide busy CPU not accounted to the two benchmark processes
      // (other processes, kernel work such as loopback softirqs), and VM steal.
      otherCpuPct: sys.busyPct - serverCpuPct - r.cpuPct,
      stealPct: sys.stealPct,
      serverCpuUsPerMsg: serverMsgs > 0 ? serverCpuUs / serverMsgs : NaN,
      serverMaxRssMB: s1.maxRssKB / 1024,
      wireInPerPayload:
        s1.wireIn !== null && s0.wireIn !== null && s1.payloadBytes > s0.payloadBytes
          ? (s1.wireIn - s0.wireIn) / (s1.payloadBytes - s0.payloadBytes)
          : NaN,
      messageBytes: r.messageBytes,
      verifiedConnections: r.verified,
      serverNative: ready.native,
      clientNative: r.native,
    };
  } catch (err) {
    return { error: err.message };
  } finally {
    if (client) {
      const exited = await Promise.race([client.exited.then(() => true), sleep(CLOSE_TIMEOUT_MS + 2000).then(() => false)]);
      if (!exited) client.kill();
      await client.exited;
    }
    await server.stop();
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Median of the runs by `key` (msgs/s, deliveries/s); keeps the spread as `${key}All`. */
function combineRuns(runs, key = 'msgsPerSec') {
  const ok = runs.filter((r) => !r.error);
  if (ok.length === 0) return runs[0];
  const sorted = [...ok].sort((a, b) => a[key] - b[key]);
  const median = sorted[Math.floor((sorted.length - 1) / 2)];
  return {
    ...median,
    runs: runs.length,
    failedRuns: runs.length - ok.length,
    [`${key}All`]: ok.map((r) => r[key]),
  };
}

// ---------------------------------------------------------------- metadata

function versionOf(pkg) {
  try {
    return JSON.parse(readFileSync(path.join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')).version;
  } catch {
    return 'not installed';
  }
}

function gitHead() {
  try {
    // Read-only.
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 })
      .toString()
      .trim();
  } catch {
    return 'no commit';
  }
}

function machineInfo() {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    node: process.version,
    v8: process.versions.v8,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpuCount: cpus.length,
    memoryGB: os.totalmem() / 2 ** 30,
    loadAvg: os.loadavg(),
    git: gitHead(),
    versions: { ws: versionOf('ws'), bufferutil: versionOf('bufferutil'), 'utf-8-validate': versionOf('utf-8-validate') },
  };
}

// ---------------------------------------------------------------- main

function fmtShort(cell) {
  if (cell.error) return `ERROR ${cell.error.split('\n')[0].slice(0, 160)}`;
  return `${Math.round(cell.msgsPerSec).toLocaleString('en-US')} msg/s, ${cell.mbPerSec.toFixed(1)} MB/s, p50 ${cell.p50Ms.toFixed(3)} ms, p99 ${cell.p99Ms.toFixed(3)} ms, CPU server ${cell.serverCpuPct.toFixed(0)}% client ${cell.clientCpuPct.toFixed(0)}% other ${Math.max(0, cell.otherCpuPct).toFixed(0)}% steal ${cell.stealPct.toFixed(0)}%`;
}

function fmtFanoutShort(cell) {
  if (cell.error) return `ERROR ${cell.error.split('\n')[0].slice(0, 200)}`;
  const { sat, fixed } = cell;
  return `${Math.round(sat.deliveriesPerSec).toLocaleString('en-US')} deliveries/s (${sat.serverCpuUsPerDelivery.toFixed(2)} µs server CPU each, p99 ${sat.p99Ms.toFixed(1)} ms), fixed rate p50 ${fixed.p50Ms.toFixed(2)} ms p99 ${fixed.p99Ms.toFixed(2)} ms${fixed.behind ? ' (behind)' : ''}, CPU server ${sat.serverCpuPct.toFixed(0)}% load gen ${sat.clientCpuPct.toFixed(0)}% other ${Math.max(0, cell.otherCpuPct).toFixed(0)}% steal ${cell.stealPct.toFixed(0)}%, setup ${cell.setupSeconds.toFixed(1)} s`;
}

/** Measure a cell; if something else used the CPUs meanwhile, measure again (bounded per run) and keep the quieter one. */
async function measure(label, runOnce, fmt, budget) {
  let cell = await runOnce();
  budget.done++;
  console.error(`[${budget.done}/${budget.total}] ${label}: ${fmt(cell)}`);
  if (isNoisy(cell) && budget.retriesLeft > 0) {
    budget.retriesLeft--;
    const again = await runOnce();
    console.error(`  re-run (noisy, ${budget.retriesLeft} re-runs left): ${fmt(again)}`);
    cell = { ...(noiseOf(again) < noiseOf(cell) ? again : cell), remeasured: true };
  }
  return cell;
}

async function main() {
  const settings = readSettings();
  if (settings.suite === 'cluster' || settings.suite === 'game' || settings.suite === 'connections' || settings.suite === 'workers') {
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync(process.execPath, [path.join(BENCH_DIR, `${settings.suite}.js`)], { stdio: 'inherit' });
    process.exitCode = r.status ?? 2;
    return;
  }
  const meta = machineInfo();
  const notes = [];
  for (const name of settings.impls) {
    const impl = IMPLS[name];
    if (impl.unavailable) notes.push(`**${name} is not available**: ${impl.unavailable}. Its rows are errors and its ratios n/a.`);
    if (impl.note) notes.push(impl.note);
  }
  for (const n of notes) console.error(`NOTE: ${n.replace(/\*\*/g, '')}`);

  const scenarios = SCENARIOS.filter((s) => settings.scenarios.includes(s.id));
  const fanoutScenarios = FANOUT_SCENARIOS.filter((s) => settings.scenarios.includes(s.id));
  if (fanoutScenarios.length && settings.impls.includes('switchboard') && fanoutServerKind(IMPLS.switchboard) === 'naive') {
    notes.push(FANOUT_AA_NOTE);
    console.error(`NOTE: ${FANOUT_AA_NOTE}`);
  }
  const echoCells = settings.modes.length * scenarios.length * settings.impls.length * settings.runs;
  const fanoutCells = fanoutScenarios.length * settings.impls.length * settings.runs;
  const echoSeconds = echoCells * (settings.seconds + settings.warmupSeconds + 1);
  // Fan-out: two measured phases, plus connecting (~2,500 subscribers/s) and teardown.
  const fanoutSeconds =
    settings.impls.length * settings.runs * fanoutScenarios.reduce((t, s) => t + 2 * settings.seconds + settings.warmupSeconds + 2 + (s.channels * s.perChannel) / 2500, 0);
  const budget = { total: echoCells + fanoutCells, done: 0, retriesLeft: settings.noisyRetries };
  console.error(
    `bench: ${budget.total} measurement(s) (${echoCells} echo, ${fanoutCells} fan-out), ~${Math.ceil((echoSeconds + fanoutSeconds) / 60)} min without re-runs; pinning ${settings.pinNote}`,
  );

  const started = Date.now();
  const results = {};
  for (const mode of settings.modes) {
    results[mode] = {};
    for (const scenario of scenarios) {
      const runsByImpl = Object.fromEntries(settings.impls.map((n) => [n, []]));
      for (let run = 0; run < settings.runs; run++) {
        // Rotate the order between runs so no implementation always goes first.
        const order = settings.impls.map((_, i) => settings.impls[(i + run) % settings.impls.length]);
        for (const name of order) {
          const clientName = mode === 'same' ? name : settings.fixedClient;
          const label = `${mode === 'same' ? 'same impl' : `client ${clientName}`} | ${scenario.title} | ${name}`;
          const cell = await measure(label, () => runCell(settings, scenario, IMPLS[name], IMPLS[clientName]), fmtShort, budget);
          runsByImpl[name].push(cell);
        }
      }
      results[mode][scenario.id] = Object.fromEntries(settings.impls.map((n) => [n, combineRuns(runsByImpl[n])]));
    }
  }

  const fanoutResults = {};
  for (const scenario of fanoutScenarios) {
    const runsByImpl = Object.fromEntries(settings.impls.map((n) => [n, []]));
    for (let run = 0; run < settings.runs; run++) {
      const order = settings.impls.map((_, i) => settings.impls[(i + run) % settings.impls.length]);
      for (const name of order) {
        const cell = await measure(`${scenario.title} | ${name}`, () => runFanoutCell(settings, scenario, IMPLS[name]), fmtFanoutShort, budget);
        runsByImpl[name].push(cell);
      }
    }
    fanoutResults[scenario.id] = Object.fromEntries(settings.impls.map((n) => [n, combineRuns(runsByImpl[n], 'deliveriesPerSec')]));
  }
  const fanout = { scenarios: fanoutScenarios, results: fanoutResults };
  meta.elapsedSeconds = (Date.now() - started) / 1000;

  const markdown = renderReport({ meta, settings, scenarios, results, notes, fanout });
  process.stdout.write(`${markdown}\n`);
  mkdirSync(path.dirname(settings.out), { recursive: true });
  writeFileSync(settings.out, `${markdown}\n`);
  const jsonOut = settings.out.replace(/\.md$/, '') + '.json';
  writeFileSync(jsonOut, `${JSON.stringify({ meta, settings, scenarios, results, fanout }, null, 2)}\n`);
  console.error(`bench: wrote ${path.relative(process.cwd(), settings.out)} and ${path.relative(process.cwd(), jsonOut)} in ${meta.elapsedSeconds.toFixed(0)} s`);

  const failed =
    Object.values(results).some((byScenario) => Object.values(byScenario).some((byImpl) => Object.values(byImpl).some((c) => c.error))) ||
    Object.values(fanoutResults).some((byImpl) => Object.values(byImpl).some((c) => c.error));
  if (failed) {
    console.error('bench: some measurements failed (see the error rows)');
    process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error(`bench: ${err.stack || err.message}`);
  process.exit(2);
});
