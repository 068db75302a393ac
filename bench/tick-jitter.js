#!/usr/bin/env node
// What the machine does to a tick of fixed work: the game bench's loop period
// (30 Hz), with the same pure computation in every tick (calibrated once to
// JITTER_MS, default 14 ms: Switchboard's median tick CPU at 1,000 players),
// no I/O, no allocation. Any spread in its durations is the machine's (CPU
// frequency, the hypervisor, the neighbour on the other CPU), not the code's:
// read a game cell's slowest ticks against it (docs/benchmarks.md, "Game state
// sync").
//
//   node bench/tick-jitter.js
//
// Knobs (env): JITTER_SECONDS (30), JITTER_MS (14), JITTER_HZ (30), JITTER_RUNS (2),
// JITTER_LOAD (1: a busy loop on the other CPU meanwhile, standing in for the
// game's bots; 0: none), JITTER_PIN (1: the tick on CPU 0 and the load on CPU 1
// with taskset, as the game bench pins its server and bots).

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { tasksetAvailable } from './lib/child.js';
import { positiveEnvNumber as num } from './lib/env.js';

const SECONDS = num('JITTER_SECONDS', 30);
const TARGET_MS = num('JITTER_MS', 14);
const HZ = num('JITTER_HZ', 30);
const RUNS = Math.round(num('JITTER_RUNS', 2));
const LOAD = process.env.JITTER_LOAD !== '0';
const PIN = process.env.JITTER_PIN !== '0' && tasksetAvailable();
const SELF = fileURLToPath(import.meta.url);

const scratch = new Float64Array(1 << 16);
/** `n` steps of arithmetic over a 512 KiB array: the same work every call. */
function work(n) {
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const j = (i * 2654435761) & 0xffff;
    scratch[j] = scratch[j] * 0.5 + i;
    sum += scratch[j];
  }
  return sum;
}

const quantile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];

/** One run (in a child pinned to CPU 0): calibrate, then tick for SECONDS. */
async function ticker() {
  let steps = 100_000;
  for (;;) {
    const t = performance.now();
    work(steps);
    const ms = performance.now() - t;
    if (ms > 50) {
      steps = Math.round((steps * TARGET_MS) / ms);
      break;
    }
    steps *= 2;
  }
  const period = 1000 / HZ;
  const wall = [];
  const cpu = [];
  const end = performance.now() + SECONDS * 1000;
  let due = performance.now() + period;
  await new Promise((resolve) => {
    const tick = () => {
      const c0 = process.cpuUsage();
      const t = performance.now();
      work(steps);
      wall.push(performance.now() - t);
      const c = process.cpuUsage(c0);
      cpu.push((c.user + c.system) / 1000);
      if (performance.now() >= end) return resolve();
      due += period;
      setTimeout(tick, Math.max(0, due - performance.now()));
    };
    setTimeout(tick, period);
  });
  const w = [...wall].sort((a, b) => a - b);
  const c = [...cpu].sort((a, b) => a - b);
  const p50 = quantile(w, 0.5);
  process.stdout.write(
    `${JSON.stringify({
      ticks: w.length,
      wallMs: { p50, p99: quantile(w, 0.99), max: w.at(-1) },
      cpuMs: { p50: quantile(c, 0.5), p99: quantile(c, 0.99), max: c.at(-1) },
      overPeriod: w.filter((x) => x > period).length,
      over1_5xMedian: w.filter((x) => x > 1.5 * p50).length,
      maxOverMedian: w.at(-1) / p50,
    })}\n`,
  );
}

function pinned(cpu, args) {
  return PIN ? spawn('taskset', ['-c', String(cpu), process.execPath, ...args], { stdio: ['ignore', 'pipe', 'inherit'] }) : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
}

async function main() {
  const f = (n) => n.toFixed(2);
  console.log(`tick jitter: ${RUNS} run(s) of ${SECONDS} s at ${HZ} Hz, ${TARGET_MS} ms of fixed work per tick${PIN ? ', tick on CPU 0' : ''}${LOAD ? `, a busy loop on ${PIN ? 'CPU 1' : 'another process'}` : ''}`);
  for (let run = 1; run <= RUNS; run++) {
    const load = LOAD ? pinned(1, ['-e', `const end = Date.now() + ${(SECONDS + 10) * 1000}; while (Date.now() < end) {}`]) : null;
    const child = pinned(0, [SELF, '--ticker']);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const code = await new Promise((resolve) => child.once('exit', resolve));
    if (load) load.kill('SIGKILL');
    if (code !== 0) throw new Error(`ticker exited with ${code}`);
    const r = JSON.parse(out);
    console.log(
      `run ${run}: ${r.ticks} ticks, wall p50 / p99 / max ${f(r.wallMs.p50)} / ${f(r.wallMs.p99)} / ${f(r.wallMs.max)} ms (max ${f(r.maxOverMedian)}× the median), CPU p50 / p99 / max ${f(r.cpuMs.p50)} / ${f(r.cpuMs.p99)} / ${f(r.cpuMs.max)} ms; longer than a period: ${r.overPeriod}; over 1.5× the median: ${r.over1_5xMedian}`,
    );
  }
}

if (process.argv[2] === '--ticker') await ticker();
else await main();
