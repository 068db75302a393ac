// Markdown rendering of a bench run. Pure: data in, string out.

import { isNoisy, NOISY_OTHER_CPU_PCT, NOISY_STEAL_PCT } from './sysload.js';

const COMPARE_WITH = ['ws', 'ws+native'];
const OURS = 'switchboard';

const int = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');

function ms(n) {
  if (!Number.isFinite(n)) return 'n/a';
  if (n < 1) return n.toFixed(3);
  if (n < 10) return n.toFixed(2);
  if (n < 100) return n.toFixed(1);
  return n.toFixed(0);
}

function num(n, digits = 1) {
  return Number.isFinite(n) ? n.toFixed(digits) : 'n/a';
}

function ratio(n) {
  return Number.isFinite(n) && n > 0 ? `${n.toFixed(2)}×` : 'n/a';
}

function bytes(n) {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${Math.round(n).toLocaleString('en-US')} B`;
}

function modeTitle(mode, settings) {
  return mode === 'same'
    ? 'both sides the same implementation'
    : `server only (load generator is always ${settings.fixedClient})`;
}

/** "123,456" or "123,456 ±1.2%" when a cell was measured several times. */
function msgsCell(c) {
  const base = int(c.msgsPerSec);
  if (!c.msgsPerSecAll || c.msgsPerSecAll.length < 2) return base;
  const spread = (Math.max(...c.msgsPerSecAll) - Math.min(...c.msgsPerSecAll)) / 2 / c.msgsPerSec;
  return `${base} ±${(spread * 100).toFixed(1)}%`;
}

const COLUMNS = [
  // [header, render(cell), ratio(ours, other) with >1 = ours better, or null]
  ['msgs/s', msgsCell, (o, w) => o.msgsPerSec / w.msgsPerSec],
  ['MB/s', (c) => num(c.mbPerSec, c.mbPerSec < 10 ? 2 : 1), (o, w) => o.mbPerSec / w.mbPerSec],
  ['p50 ms', (c) => ms(c.p50Ms), (o, w) => w.p50Ms / o.p50Ms],
  ['p99 ms', (c) => ms(c.p99Ms), (o, w) => w.p99Ms / o.p99Ms],
  ['server CPU µs/msg', (c) => num(c.serverCpuUsPerMsg, c.serverCpuUsPerMsg < 10 ? 2 : 1), (o, w) => w.serverCpuUsPerMsg / o.serverCpuUsPerMsg],
  ['server CPU %', (c) => num(c.serverCpuPct, 0), null],
  ['client CPU %', (c) => num(c.clientCpuPct, 0), null],
  ['other / steal CPU %', (c) => `${num(Math.max(0, c.otherCpuPct), 0)} / ${num(c.stealPct, 0)}`, null],
  ['server peak RSS MB', (c) => num(c.serverMaxRssMB, 0), (o, w) => w.serverMaxRssMB / o.serverMaxRssMB],
  ['wire in / payload', (c) => num(c.wireInPerPayload, 3), null],
];

function scenarioTable(scenario, mode, settings, cells) {
  const lines = [];
  const msgSize =
    scenario.kind === 'json'
      ? `~${bytes(scenario.size)} JSON text messages (${scenario.pool} distinct documents, ~${int(firstOk(cells)?.messageBytes ?? scenario.size)} B each), permessage-deflate with default options on both sides`
      : `${bytes(scenario.size)} binary messages`;
  lines.push(`### ${scenario.title} — ${modeTitle(mode, settings)}`);
  lines.push('');
  lines.push(
    `${scenario.connections ?? settings.connections} connection(s) × ${scenario.inflight} in flight, ${msgSize}${scenario.colocate && settings.taskset ? ', server and load generator both on CPU 0' : ''}; ${settings.seconds} s measured after ${settings.warmupSeconds} s warm-up${settings.runs > 1 ? `, median of ${settings.runs} runs (± is half the min–max range)` : ''}.`,
  );
  lines.push('');
  lines.push(`| implementation | ${COLUMNS.map((c) => c[0]).join(' | ')} |`);
  lines.push(`|---|${COLUMNS.map(() => '--:').join('|')}|`);
  for (const name of settings.impls) {
    const c = cells[name];
    const client = mode === 'same' ? name : settings.fixedClient;
    const label = `${mode === 'same' || client === name ? name : `${name} (client ${client})`}${c.remeasured ? ' ↻' : ''}${isNoisy(c) ? ' ⚠' : ''}`;
    if (c.error) {
      lines.push(`| ${label} | **error**: ${escapeCell(c.error)} | ${COLUMNS.slice(1).map(() => '—').join(' | ')} |`);
    } else {
      lines.push(`| ${label} | ${COLUMNS.map(([, render]) => render(c)).join(' | ')} |`);
    }
  }
  const ours = cells[OURS];
  if (ours) {
    for (const other of COMPARE_WITH) {
      const w = cells[other];
      if (!w) continue;
      const ok = !ours.error && !w.error;
      const values = COLUMNS.map(([, , f]) => (f === null ? '' : ok ? ratio(f(ours, w)) : 'n/a'));
      lines.push(`| **${OURS} vs ${other}** | ${values.join(' | ')} |`);
    }
  }
  for (const name of settings.impls) {
    const c = cells[name];
    if (!c.error && c.latencyCensored > 0) {
      lines.push('');
      lines.push(`${name}: ${int(c.latencyCensored)} message(s) sent in the window had no echo after the drain timeout; its latency percentiles leave them out and are too low.`);
    }
  }
  lines.push('');
  return lines.join('\n');
}

function noisyNames(cells, settings) {
  const names = settings.impls.filter((n) => isNoisy(cells[n]));
  return names.length ? `⚠ ${names.join(', ')}` : '';
}

function firstOk(cells) {
  return Object.values(cells).find((c) => !c.error);
}

function escapeCell(text) {
  return text.split('\n')[0].slice(0, 300).replace(/\|/g, '\\|');
}

function summaryTable(scenarios, settings, results) {
  if (!settings.impls.includes(OURS)) return '';
  const others = COMPARE_WITH.filter((o) => settings.impls.includes(o));
  if (!others.length) return '';
  const lines = [
    '## Summary',
    '',
    'Ratios are switchboard relative to the other implementation, **>1 means switchboard is better**: throughput is ours / theirs, latency is theirs / ours.',
    '',
    `| scenario | load generator | switchboard msgs/s | ${others.map((o) => `msgs/s vs ${o}`).join(' | ')} | ${others.map((o) => `p99 vs ${o}`).join(' | ')} | noisy rows |`,
    `|---|---|--:|${others.map(() => '--:').join('|')}|${others.map(() => '--:').join('|')}|---|`,
  ];
  for (const mode of settings.modes) {
    for (const scenario of scenarios) {
      const cells = results[mode][scenario.id];
      const ours = cells[OURS];
      const client = mode === 'same' ? 'same as server' : settings.fixedClient;
      const cmp = (o, f) => (ours.error || cells[o].error ? 'n/a' : ratio(f(ours, cells[o])));
      lines.push(
        `| ${scenario.title} | ${client} | ${ours.error ? 'error' : int(ours.msgsPerSec)} | ${others.map((o) => cmp(o, (a, b) => a.msgsPerSec / b.msgsPerSec)).join(' | ')} | ${others.map((o) => cmp(o, (a, b) => b.p99Ms / a.p99Ms)).join(' | ')} | ${noisyNames(cells, settings)} |`,
      );
    }
  }
  lines.push('');
  return lines.join('\n');
}

/** Every cell of the run, echo and fan-out, as [name, cell]. */
function allCells(results, fanout) {
  const out = [];
  for (const byScenario of Object.values(results)) {
    for (const byImpl of Object.values(byScenario)) out.push(...Object.entries(byImpl));
  }
  for (const byImpl of Object.values(fanout.results)) out.push(...Object.entries(byImpl));
  return out;
}

function nativeSummary(settings, cells) {
  const seen = {};
  for (const [name, c] of cells) {
    if (!c.error && seen[name] === undefined) seen[name] = c.serverNative;
  }
  return settings.impls.map((n) => `${n}: ${seen[n] === undefined ? 'n/a' : seen[n].length ? seen[n].join(', ') : 'none'}`).join('; ');
}

function noisyCells(settings, scenarios, results, fanout) {
  const noisy = [];
  for (const mode of settings.modes) {
    for (const scenario of scenarios) {
      for (const [name, c] of Object.entries(results[mode][scenario.id])) {
        if (isNoisy(c)) noisy.push(`${scenario.title} / ${name}${mode === 'same' ? '' : ` (client ${settings.fixedClient})`}`);
      }
    }
  }
  for (const scenario of fanout.scenarios) {
    for (const [name, c] of Object.entries(fanout.results[scenario.id])) {
      if (isNoisy(c)) noisy.push(`${scenario.title} / ${name}`);
    }
  }
  return noisy;
}

// ---------------------------------------------------------------- fan-out

/** Load generator CPU above this in the saturated phase: it may be what limits deliveries/s. */
const LOADGEN_BUSY_PCT = 90;

function deliveriesCell(c) {
  const base = int(c.sat.deliveriesPerSec);
  const all = c.deliveriesPerSecAll;
  if (!all || all.length < 2) return base;
  const spread = (Math.max(...all) - Math.min(...all)) / 2 / c.sat.deliveriesPerSec;
  return `${base} ±${(spread * 100).toFixed(1)}%`;
}

const FANOUT_COLUMNS = [
  // [header, render(cell), ratio(ours, other) with >1 = ours better, or null]
  ['deliveries/s', deliveriesCell, (o, w) => o.sat.deliveriesPerSec / w.sat.deliveriesPerSec],
  ['publishes/s', (c) => int(c.sat.publishesPerSec), null],
  ['server CPU µs/delivery', (c) => num(c.sat.serverCpuUsPerDelivery, 2), (o, w) => w.sat.serverCpuUsPerDelivery / o.sat.serverCpuUsPerDelivery],
  ['server / load gen CPU %', (c) => `${num(c.sat.serverCpuPct, 0)} / ${num(c.sat.clientCpuPct, 0)}${c.sat.clientCpuPct > LOADGEN_BUSY_PCT ? ' †' : ''}`, null],
  ['p99 ms saturated', (c) => ms(c.sat.p99Ms), (o, w) => w.sat.p99Ms / o.sat.p99Ms],
  ['p50 ms fixed rate', (c) => `${ms(c.fixed.p50Ms)}${c.fixed.behind ? ' ⏳' : ''}`, (o, w) => w.fixed.p50Ms / o.fixed.p50Ms],
  ['p99 ms fixed rate', (c) => `${ms(c.fixed.p99Ms)}${c.fixed.behind ? ' ⏳' : ''}`, (o, w) => w.fixed.p99Ms / o.fixed.p99Ms],
  ['server CPU µs/delivery fixed rate', (c) => num(c.fixed.serverCpuUsPerDelivery, 2), (o, w) => w.fixed.serverCpuUsPerDelivery / o.fixed.serverCpuUsPerDelivery],
  ['other / steal CPU %', (c) => `${num(Math.max(0, c.otherCpuPct), 0)} / ${num(c.stealPct, 0)}`, null],
  ['server peak RSS MB', (c) => num(c.serverMaxRssMB, 0), (o, w) => w.serverMaxRssMB / o.serverMaxRssMB],
  ['B/delivery', (c) => int(c.bytesPerDelivery), null],
  ['setup s', (c) => num(c.setupSeconds, 1), null],
];

function fanoutTable(scenario, settings, cells) {
  const subscribers = scenario.channels * scenario.perChannel;
  const rate = scenario.rate * settings.fanoutRateScale;
  const probes = firstOk(cells)?.probes;
  const lines = [];
  lines.push(`### ${scenario.title}`);
  lines.push('');
  lines.push(
    `1 publisher, ${int(subscribers)} subscribers ${scenario.channels === 1 ? 'on one channel' : `on ${int(scenario.channels)} channels (${int(scenario.perChannel)} each), publishes round-robin over the channels`}. ` +
      `Saturated: closed loop, ${int(scenario.window)} publishes in flight. Fixed rate: ${int(rate)} publishes/s (${int(rate * scenario.perChannel)} deliveries/s offered), open loop. ` +
      `${settings.seconds} s each after ${settings.warmupSeconds} s warm-up; latency from ${probes === undefined ? 'sampled' : int(probes)} probe subscribers${settings.runs > 1 ? `; median of ${settings.runs} runs by deliveries/s (± is half the min–max range)` : ''}.`,
  );
  lines.push('');
  lines.push(`| implementation | ${FANOUT_COLUMNS.map((c) => c[0]).join(' | ')} |`);
  lines.push(`|---|${FANOUT_COLUMNS.map(() => '--:').join('|')}|`);
  for (const name of settings.impls) {
    const c = cells[name];
    const label = `${name}${c.remeasured ? ' ↻' : ''}${isNoisy(c) ? ' ⚠' : ''}`;
    if (c.error) lines.push(`| ${label} | **error**: ${escapeCell(c.error)} | ${FANOUT_COLUMNS.slice(1).map(() => '—').join(' | ')} |`);
    else lines.push(`| ${label} | ${FANOUT_COLUMNS.map(([, render]) => render(c)).join(' | ')} |`);
  }
  const ours = cells[OURS];
  if (ours) {
    for (const other of COMPARE_WITH) {
      const w = cells[other];
      if (!w) continue;
      const ok = !ours.error && !w.error;
      lines.push(`| **${OURS} vs ${other}** | ${FANOUT_COLUMNS.map(([, , f]) => (f === null ? '' : ok ? ratio(f(ours, w)) : 'n/a')).join(' | ')} |`);
    }
  }
  for (const name of settings.impls) {
    const c = cells[name];
    if (c.error) continue;
    if (c.cpuSuspect) {
      lines.push('');
      lines.push(
        `${name} ⚠: server CPU above one CPU (${num(c.sat.serverCpuPct, 0)} % saturated, ${num(c.fixed.serverCpuPct, 0)} % fixed rate) although both servers are single-threaded: the CPU accounting of this row is off, so are its CPU columns.`,
      );
    }
    if (c.fixed.behind) {
      lines.push('');
      lines.push(
        `${name} ⏳: did not keep up with the fixed rate (${c.fixed.skippedPublishes ? `${int(c.fixed.skippedPublishes)} publishes not sent by the overload guard; ` : ''}${int(c.fixed.backlogAtEnd)} deliveries still queued at the end of the phase); its fixed-rate latency includes queueing.`,
      );
    }
  }
  lines.push('');
  return lines.join('\n');
}

function fanoutSummary(settings, fanout) {
  if (!settings.impls.includes(OURS)) return '';
  const others = COMPARE_WITH.filter((o) => settings.impls.includes(o));
  if (!others.length) return '';
  const lines = [
    `| scenario | switchboard deliveries/s | ${others.map((o) => `deliveries/s vs ${o}`).join(' | ')} | ${others.map((o) => `server µs/delivery vs ${o}`).join(' | ')} | ${others.map((o) => `p99 fixed rate vs ${o}`).join(' | ')} | noisy rows |`,
    `|---|--:|${others.map(() => '--:').join('|')}|${others.map(() => '--:').join('|')}|${others.map(() => '--:').join('|')}|---|`,
  ];
  for (const scenario of fanout.scenarios) {
    const cells = fanout.results[scenario.id];
    const ours = cells[OURS];
    const cmp = (o, f) => (ours.error || cells[o].error ? 'n/a' : ratio(f(ours, cells[o])));
    lines.push(
      `| ${scenario.title} | ${ours.error ? 'error' : int(ours.sat.deliveriesPerSec)} | ${others.map((o) => cmp(o, (a, b) => a.sat.deliveriesPerSec / b.sat.deliveriesPerSec)).join(' | ')} | ${others.map((o) => cmp(o, (a, b) => b.sat.serverCpuUsPerDelivery / a.sat.serverCpuUsPerDelivery)).join(' | ')} | ${others.map((o) => cmp(o, (a, b) => b.fixed.p99Ms / a.fixed.p99Ms)).join(' | ')} | ${noisyNames(cells, settings)} |`,
    );
  }
  lines.push('');
  // The issue's goal: at least 3x the deliveries/s of the ws loop at 1,000 subscribers.
  const k1 = fanout.results.fanout1k;
  if (k1 && k1[OURS] && !k1[OURS].error) {
    const parts = others
      .filter((o) => !k1[o].error)
      .map((o) => {
        const r = k1[OURS].sat.deliveriesPerSec / k1[o].sat.deliveriesPerSec;
        return `${ratio(r)} vs ${o} (${r >= 3 ? 'met' : 'not met'}${isNoisy(k1[OURS]) || isNoisy(k1[o]) ? ', noisy' : ''})`;
      });
    if (parts.length) lines.push(`Goal: at least 3× the deliveries/s of the \`ws\` loop at 1,000 subscribers: ${parts.join('; ')}.`, '');
  }
  return lines.join('\n');
}

function renderFanout(settings, fanout) {
  const out = [];
  out.push('## Fan-out');
  out.push('');
  out.push(
    'One publisher and many subscribers on raw-TCP WebSocket connections from one load-generator process (neither Switchboard nor `ws`). switchboard: `createRealtimeServer` (anonymous pub/sub, limits raised, no heartbeat); `ws` / `ws+native`: a `ws` WebSocketServer with a Map channel → Set of sockets that, on a publish, stringifies the `msg` once and calls `send(text)` for every subscriber. **deliveries/s**: messages received by all subscribers per second, saturated phase (closed loop). **server CPU µs/delivery**: server CPU time per delivery in that phase; compare this one when the load generator is near 100 % (†). **fixed rate**: open loop at the same publish rate for every implementation; latency from the publish\'s intended send time to its arrival at a probe subscriber. ⏳: the server did not keep up with the fixed rate. ↻: measured twice because the first measurement was noisy (the quieter one is shown); ⚠: noisy even so. Ratios: **>1 means switchboard is better**. See docs/benchmarks.md.',
  );
  out.push('');
  const summary = fanoutSummary(settings, fanout);
  if (summary) out.push(summary);
  for (const scenario of fanout.scenarios) out.push(fanoutTable(scenario, settings, fanout.results[scenario.id]));
  return out.join('\n');
}

// ---------------------------------------------------------------- report

export function renderReport({ meta, settings, scenarios, results, notes, fanout = { scenarios: [], results: {} } }) {
  const hasEcho = scenarios.length > 0;
  const hasFanout = fanout.scenarios.length > 0;
  const noisy = noisyCells(settings, scenarios, results, fanout);
  if (noisy.length) {
    notes = [
      ...notes,
      `${noisy.length} measurement(s), marked ⚠, ran while other programs used more than ${NOISY_OTHER_CPU_PCT}% of a CPU or the hypervisor stole more than ${NOISY_STEAL_PCT}% (column "other / steal CPU %")${fanout.scenarios.length ? ', or (fan-out) had a server CPU above one CPU' : ''}, ${settings.noisyRetries ? 'even after the allowed re-runs' : 'with re-runs disabled (BENCH_NOISY_RETRIES=0)'}. Their ratios are unreliable: re-run on a quiet machine.`,
    ];
  }
  const out = [];
  out.push(hasEcho && hasFanout ? '# Switchboard benchmarks: echo and fan-out' : hasFanout ? '# Switchboard fan-out benchmark' : '# Switchboard echo benchmark');
  out.push('');
  out.push('| | |');
  out.push('|---|---|');
  out.push(`| Date | ${meta.date} |`);
  out.push(`| Node | ${meta.node} (V8 ${meta.v8}) |`);
  out.push(`| CPU | ${meta.cpuModel} × ${meta.cpuCount} logical CPUs |`);
  out.push(`| OS | ${meta.platform}, ${meta.memoryGB.toFixed(1)} GiB RAM |`);
  out.push(`| Load average at start | ${meta.loadAvg.map((l) => l.toFixed(2)).join(' ')} |`);
  out.push(`| Commit | ${meta.git} |`);
  out.push(`| Versions | ${Object.entries(meta.versions).map(([k, v]) => `${k} ${v}`).join(', ')} |`);
  out.push(`| Native addons loaded by the server | ${nativeSummary(settings, allCells(results, fanout))} |`);
  if (hasEcho) {
    out.push(
      `| Settings | ${settings.seconds} s per measurement after ${settings.warmupSeconds} s warm-up, ${settings.connections} connections, ${settings.runs} run(s) per cell |`,
    );
  }
  if (hasFanout) {
    out.push(
      `| Fan-out settings | ${settings.seconds} s saturated + ${settings.seconds} s fixed rate after ${settings.warmupSeconds} s warm-up, ~${settings.fanoutProbes} probe subscribers, fixed rates × ${settings.fanoutRateScale}, ${settings.runs} run(s) per cell |`,
    );
  }
  out.push(`| CPU pinning | ${settings.pinNote} |`);
  out.push(`| Wall time | ${meta.elapsedSeconds.toFixed(0)} s |`);
  out.push('');
  if (notes.length) {
    for (const n of notes) out.push(`> **Note:** ${n}`);
    out.push('');
  }
  if (hasEcho) {
    out.push(
      '↻ marks a measurement that was taken twice because the first one was noisy; the quieter one is shown. Each row is one fresh server process and one fresh load-generator process. msgs/s counts echoes received per second; MB/s is echoed payload (10^6 bytes, one direction); p50/p99 are per-message round-trip times. In the comparison rows **>1 means switchboard is better**: throughput is switchboard / other; latency, server CPU per message and peak RSS are other / switchboard. See docs/benchmarks.md.',
    );
    out.push('');
    const summary = summaryTable(scenarios, settings, results);
    if (summary) out.push(summary);
    for (const mode of settings.modes) {
      out.push(`## ${modeTitle(mode, settings)[0].toUpperCase()}${modeTitle(mode, settings).slice(1)}`);
      out.push('');
      for (const scenario of scenarios) out.push(scenarioTable(scenario, mode, settings, results[mode][scenario.id]));
    }
  }
  if (hasFanout) out.push(renderFanout(settings, fanout));
  return out.join('\n').trimEnd();
}
