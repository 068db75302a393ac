#!/usr/bin/env node
// What the slow ticks of a game benchmark cell have in common: reads a tick
// log (GAME_TICK_LOG=DIR node bench/game.js writes one JSON line per measured
// tick, bench/game-server.js) and compares the slowest tenth of the ticks by
// CPU time with the rest: work, synchronous part, inputs answered during the
// tick, GC pause inside it, start lateness. Then the slowest ticks one by one.
//
//   node bench/game-ticks.js FILE.jsonl [tickHz]
//
// tickHz (default: from the file name, `-30hz-`) sets the period for the
// overrun counts.

import { readFileSync } from 'node:fs';
import path from 'node:path';

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: node bench/game-ticks.js FILE.jsonl [tickHz]\n');
  process.exit(2);
}
const hz = Number(process.argv[3] ?? /-(\d+)hz-/.exec(path.basename(file))?.[1]);
if (!(hz > 0)) {
  process.stderr.write('game-ticks: give the tick rate (the file name does not say it)\n');
  process.exit(2);
}
const period = 1000 / hz;
const rows = readFileSync(file, 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l));
if (rows.length === 0) {
  process.stderr.write(`game-ticks: no ticks in ${file}\n`);
  process.exit(1);
}

const quantile = (values, p) => {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};
const mean = (list, key) => list.reduce((n, r) => n + r[key], 0) / Math.max(1, list.length);
const fmt = (n) => n.toFixed(2);

const cpu = rows.map((r) => r.cpu);
const work = rows.map((r) => r.work);
process.stdout.write(
  `${rows.length} ticks at ${hz} Hz (period ${fmt(period)} ms)\n` +
    `CPU per tick p50 / p90 / p99 / max: ${fmt(quantile(cpu, 0.5))} / ${fmt(quantile(cpu, 0.9))} / ${fmt(quantile(cpu, 0.99))} / ${fmt(Math.max(...cpu))} ms; over the period: ${rows.filter((r) => r.cpu > period).length}\n` +
    `work per tick p50 / p90 / p99 / max: ${fmt(quantile(work, 0.5))} / ${fmt(quantile(work, 0.9))} / ${fmt(quantile(work, 0.99))} / ${fmt(Math.max(...work))} ms; overruns: ${rows.filter((r) => r.work > period).length}, missed (late + work > period): ${rows.filter((r) => r.late + r.work > period).length}\n`,
);
const threshold = quantile(cpu, 0.9);
const slow = rows.filter((r) => r.cpu >= threshold);
const rest = rows.filter((r) => r.cpu < threshold);
process.stdout.write(`\n| mean per tick | slowest 10 % by CPU (${slow.length}) | the rest (${rest.length}) |\n|---|---:|---:|\n`);
// Counters since the previous tick ended, in logs written since they were added: write system calls,
// major page faults, involuntary context switches.
const since = [
  ['writes', 'write system calls since the previous tick'],
  ['majflt', 'major page faults since the previous tick'],
  ['preempted', 'involuntary context switches since the previous tick'],
  ['steal', 'ms the hypervisor took the CPU since the previous tick'],
].filter(([key]) => rows.every((r) => typeof r[key] === 'number'));
for (const [key, label] of [['cpu', 'CPU ms'], ['work', 'work ms'], ['sync', 'synchronous part ms'], ['inputs', 'inputs answered'], ...since, ['gc', 'GC pause ms'], ['late', 'start late ms']]) {
  process.stdout.write(`| ${label} | ${fmt(mean(slow, key))} | ${fmt(mean(rest, key))} |\n`);
}
// CPU per tick against the inputs answered in it (least squares): what one input costs, and what a tick
// costs without any (the fan-out, the writes, the simulation).
{
  const n = rows.length;
  const mx = mean(rows, 'inputs');
  const my = mean(rows, 'cpu');
  let sxy = 0;
  let sxx = 0;
  for (const r of rows) {
    sxy += (r.inputs - mx) * (r.cpu - my);
    sxx += (r.inputs - mx) ** 2;
  }
  const slope = sxx > 0 ? sxy / sxx : NaN;
  if (!Number.isFinite(slope)) process.stdout.write('\nno inputs were answered (or always as many): no fit of CPU against inputs\n');
  else process.stdout.write(`\nCPU per tick ≈ ${fmt(my - slope * mx)} ms + ${fmt(slope * 1000)} µs × inputs answered (least squares over ${n} ticks, ${fmt(mx)} inputs a tick on average)\n`);
}
const withGc = rows.filter((r) => r.gc > 0);
process.stdout.write(`\nticks with a GC pause: ${withGc.length} (CPU mean ${fmt(mean(withGc, 'cpu'))} ms, the others ${fmt(mean(rows.filter((r) => r.gc === 0), 'cpu'))} ms)\n`);
process.stdout.write('\nslowest ticks by CPU:\n');
for (const r of [...rows].sort((a, b) => b.cpu - a.cpu).slice(0, 10)) process.stdout.write(`  ${JSON.stringify(r)}\n`);
