// Machine-wide CPU accounting, to tell whether something other than the two
// benchmark processes was using the CPUs during a measurement (other
// processes, or the hypervisor: "steal" time on a VM).

import { readFileSync } from 'node:fs';
import os from 'node:os';

/**
 * Cumulative CPU counters: busy (user + system), idle, steal and interrupt time, in arbitrary but equal units.
 * @param {number} [cpu] one core's counters (the `cpuN` line; compare with `cpuBetween(a, b, 1)`); all cores when left out
 */
export function sampleCpu(cpu) {
  try {
    // cpu  user nice system idle iowait irq softirq steal guest guest_nice  (USER_HZ ticks)
    const lines = readFileSync('/proc/stat', 'utf8').split('\n');
    const line = cpu === undefined ? lines[0] : lines.find((l) => l.startsWith(`cpu${cpu} `));
    if (line === undefined) throw new Error(`no cpu${cpu} in /proc/stat`);
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, idle, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
    // irq/softirq time is kept out of "busy": it is mostly the loopback
    // traffic of the benchmark itself (not charged to either process).
    return { busy: user + nice + system, idle: idle + iowait, steal, interrupts: irq + softirq, hasSteal: true };
  } catch {
    let busy = 0;
    let idle = 0;
    let interrupts = 0;
    const cpus = os.cpus();
    for (const { times } of cpu === undefined ? cpus : cpus.slice(cpu, cpu + 1)) {
      busy += times.user + times.nice + times.sys;
      idle += times.idle;
      interrupts += times.irq;
    }
    return { busy, idle, steal: 0, interrupts, hasSteal: false };
  }
}

/**
 * CPU use between two samples, in percent of one CPU (so 2 fully busy CPUs = 200).
 * @returns {{ busyPct: number, stealPct: number }}
 */
export function cpuBetween(a, b, cpuCount = os.cpus().length) {
  const busy = b.busy - a.busy;
  const idle = b.idle - a.idle;
  const steal = b.steal - a.steal;
  const total = busy + idle + steal + (b.interrupts - a.interrupts);
  if (total <= 0) return { busyPct: NaN, stealPct: NaN };
  return {
    busyPct: (busy / total) * cpuCount * 100,
    stealPct: b.hasSteal ? (steal / total) * cpuCount * 100 : NaN,
  };
}

/** Above these (percent of one CPU used by other programs, or stolen by the hypervisor) a measurement is noisy. */
export const NOISY_OTHER_CPU_PCT = 20;
export const NOISY_STEAL_PCT = 10;

/**
 * `cpuSuspect`: the cell's own CPU accounting does not add up (e.g. a
 * single-threaded server above 100 %), which we have seen on a busy VM.
 * @param {{ otherCpuPct?: number, stealPct?: number, cpuSuspect?: boolean, error?: string }} cell
 */
export function isNoisy(cell) {
  return !cell.error && (cell.otherCpuPct > NOISY_OTHER_CPU_PCT || cell.stealPct > NOISY_STEAL_PCT || cell.cpuSuspect === true);
}

/** How much outside interference a cell saw, for picking the quieter of two. */
export function noiseOf(cell) {
  if (cell.error) return Infinity;
  return Math.max(0, cell.otherCpuPct || 0) + (cell.stealPct || 0) + (cell.cpuSuspect ? 100 : 0);
}
