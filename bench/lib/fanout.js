// Fan-out benchmark: one publisher, many subscribers; Switchboard's realtime
// server against the same pub/sub written with `ws` (a naive send loop).
// Method and knobs: docs/benchmarks.md ("Fan-out").
//
// For every (scenario, implementation) cell run.js calls runFanoutCell: a
// fresh server child (bench/fanout-server.js) and a fresh load-generator
// child (bench/fanout-client.js); the numbers come back over IPC.

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Child } from './child.js';
import { childEnv, ROOT } from './impls.js';
import { cpuBetween, sampleCpu } from './sysload.js';

const SERVER_SCRIPT = path.join(ROOT, 'bench', 'fanout-server.js');
const CLIENT_SCRIPT = path.join(ROOT, 'bench', 'fanout-client.js');
export const REALTIME_ENTRY = path.join(ROOT, 'dist', 'server', 'realtime-server.js');

/**
 * Fan-out scenarios in run order.
 * - `channels` × `perChannel` subscribers; publish k goes to channel k mod `channels`.
 * - `window`: publishes in flight in the saturated (closed-loop) phase.
 * - `rate`: publishes/s in the fixed-rate (open-loop) phase, the same for
 *   every implementation; chosen so that the `ws` loop keeps up on a 2-vCPU
 *   VM (BENCH_FANOUT_RATE_SCALE scales it).
 */
export const FANOUT_SCENARIOS = [
  { id: 'fanout1k', title: 'Fan-out: 1 channel × 1,000 subscribers', channels: 1, perChannel: 1000, window: 32, rate: 20 },
  { id: 'fanout10k', title: 'Fan-out: 1 channel × 10,000 subscribers', channels: 1, perChannel: 10_000, window: 4, rate: 2 },
  { id: 'channels', title: 'Many channels: 1,000 channels × 5 subscribers', channels: 1000, perChannel: 5, window: 2000, rate: 1000 },
];

/** The realtime server's limits in the fan-out benchmarks, raised so that neither rate limits nor connection caps shape the result. */
export const FANOUT_RAISED_LIMITS = {
  maxConnections: 20_000,
  maxConnectionsPerIp: 20_000,
  connectionRatePerIp: { perSecond: 1_000_000, burst: 1_000_000 },
  messageRate: { perSecond: 10_000_000, burst: 10_000_000 },
  byteRate: { perSecond: 1e10, burst: 1e10 },
  // A closed loop bounds what is queued; this only keeps a slow-consumer
  // disconnect from hiding a problem as a number.
  sendHighWaterMark: 64 * 1024 * 1024,
};

export const FANOUT_AA_NOTE =
  'Fan-out: with BENCH_SWITCHBOARD_MODULE set, the "switchboard" slot runs the naive pub/sub loop of bench/fanout-server.js on that module, not the realtime server: the fan-out ratios are an A/A check of the harness.';

const SERVER_START_TIMEOUT_MS = 15_000;
const STATS_TIMEOUT_MS = 5_000;
const DRAIN_TIMEOUT_MS = 10_000;
const CLOSE_TIMEOUT_MS = 5_000;
/** Server CPU % above which a row's CPU accounting is not believed (the servers are single-threaded). */
const SERVER_CPU_SUSPECT_PCT = 115;
/** Handshakes + subscribes outstanding at once while connecting (well under the listen backlog of 511). */
const SETUP_CONCURRENCY = 200;

/** Soft limit on open files of this process (children inherit it), or Infinity when unknown. */
function openFilesLimit() {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m && m[1] !== 'unlimited' ? Number(m[1]) : Infinity;
  } catch {
    return Infinity;
  }
}

/** Setup must finish in this time: generous, bounded. */
function setupTimeoutMs(subscribers) {
  return 10_000 + 3 * subscribers;
}

/** Which server a fan-out cell runs for an implementation. */
export function fanoutServerKind(impl, env = process.env) {
  return impl.name === 'switchboard' && !env.BENCH_SWITCHBOARD_MODULE ? 'realtime' : 'naive';
}

/**
 * Run one fan-out measurement.
 * @returns {Promise<object>} metrics, or { error }
 */
export async function runFanoutCell(settings, scenario, impl) {
  if (impl.unavailable) return { error: impl.unavailable };
  const kind = fanoutServerKind(impl);
  if (kind === 'realtime' && !existsSync(REALTIME_ENTRY)) {
    return { error: `${path.relative(ROOT, REALTIME_ENTRY)} not found: build first with \`npm run build\`` };
  }
  const subscribers = scenario.channels * scenario.perChannel;
  // One socket per subscriber in the load generator and one in the server, plus a few.
  const files = openFilesLimit();
  if (files < subscribers + 64) {
    return { error: `needs ${subscribers + 64} open files per process, the limit is ${files}: raise it (\`ulimit -n 20000\`) and run again` };
  }
  const rate = scenario.rate * settings.fanoutRateScale;
  const warmupMs = Math.round(settings.warmupSeconds * 1000);
  const durationMs = Math.round(settings.seconds * 1000);
  const setupMs = setupTimeoutMs(subscribers);
  const [serverCpu, clientCpu] = settings.pin ? [0, 1] : [null, null];
  const server = new Child(
    `fan-out server ${impl.name}`,
    SERVER_SCRIPT,
    {
      impl: { name: impl.name, specifier: impl.specifier, native: impl.native },
      kind,
      realtimeSpecifier: pathToFileURL(REALTIME_ENTRY).href,
    },
    childEnv(impl),
    serverCpu,
  );
  let loader = null;
  const serverStats = async () => {
    server.send({ type: 'stats' });
    return (await server.next('stats', STATS_TIMEOUT_MS, 'stats')).stats;
  };
  try {
    const ready = await server.next('ready', SERVER_START_TIMEOUT_MS, 'the server to listen');
    loader = new Child(
      'fan-out load generator',
      CLIENT_SCRIPT,
      {
        host: '127.0.0.1',
        port: ready.port,
        path: ready.path,
        scenario: { channels: scenario.channels, perChannel: scenario.perChannel, window: scenario.window, rate },
        warmupMs,
        durationMs,
        drainTimeoutMs: DRAIN_TIMEOUT_MS,
        setupTimeoutMs: setupMs,
        concurrency: SETUP_CONCURRENCY,
        probes: settings.fanoutProbes,
      },
      childEnv({ env: {} }),
      clientCpu,
    );
    const setup = await loader.next('setup-done', setupMs + 5_000, `${subscribers} subscribers to connect and subscribe`);
    await loader.next('sat-start', warmupMs + 10_000, 'the warm-up');
    const sys0 = sampleCpu();
    const s0 = await serverStats();
    await loader.next('sat-end', durationMs + 10_000, 'the saturated phase');
    const sys1 = sampleCpu();
    const s1 = await serverStats();
    await loader.next('rate-start', DRAIN_TIMEOUT_MS + 10_000, 'the deliveries still in flight');
    const sys2 = sampleCpu();
    const s2 = await serverStats();
    await loader.next('rate-end', durationMs + 10_000, 'the fixed-rate phase');
    const sys3 = sampleCpu();
    const s3 = await serverStats();
    const { result: r } = await loader.next('result', DRAIN_TIMEOUT_MS + 10_000, 'the deliveries still in flight');

    const problems = [];
    if (r.closedEarly) problems.push(`${r.closedEarly} connection(s) closed early`);
    if (r.pubErrors) problems.push(`${r.pubErrors} publish(es) answered with an error (first: ${r.firstPubError})`);
    if (r.mismatched) problems.push(`${r.mismatched} message(s) not as published`);
    if (r.unexpected) problems.push(`${r.unexpected} unsolicited message(s)`);
    if (r.missing > 0) problems.push(`${r.missing} of ${(r.published * scenario.perChannel).toLocaleString('en-US')} deliveries missing ${DRAIN_TIMEOUT_MS / 1000} s after the last publish`);
    if (r.wrongCounts) problems.push(`${r.wrongCounts} subscriber(s) got a different number of messages than were published to their channel`);
    if (r.acked !== r.published && !r.missing) problems.push(`${r.published - r.acked} publish(es) not acknowledged`);
    if (s3.errors) problems.push(`${s3.errors} server error event(s): ${s3.firstError}`);
    if (r.sat.deliveries === 0) problems.push('no delivery during the saturated phase');
    if (problems.length) return { error: `${problems.join('; ')}${r.firstError ? ` (first: ${r.firstError})` : ''}` };

    const phase = (a, b, sysA, sysB, w) => {
      const serverMs = b.t - a.t;
      const serverCpuUs = b.cpu.user - a.cpu.user + (b.cpu.system - a.cpu.system);
      const serverCpuPct = (serverCpuUs / 1000 / serverMs) * 100;
      const sys = cpuBetween(sysA, sysB);
      const seconds = w.measureMs / 1000;
      const deliveriesPerSec = w.deliveries / seconds;
      return {
        deliveriesPerSec,
        publishesPerSec: w.publishes / seconds,
        // Server CPU per second over deliveries per second: the two windows
        // (server stats vs. load generator) differ by an IPC round trip.
        serverCpuUsPerDelivery: deliveriesPerSec > 0 ? (serverCpuUs / serverMs) * 1000 / deliveriesPerSec : NaN,
        serverCpuPct,
        clientCpuPct: w.cpuPct,
        otherCpuPct: sys.busyPct - serverCpuPct - w.cpuPct,
        stealPct: sys.stealPct,
        p50Ms: w.latency.p50Ms,
        p99Ms: w.latency.p99Ms,
        p999Ms: w.latency.p999Ms,
        maxMs: w.latency.maxMs,
        latencySamples: w.latency.count,
      };
    };
    const sat = phase(s0, s1, sys0, sys1, r.sat);
    const fixed = phase(s2, s3, sys2, sys3, r.rate);
    const offeredDeliveriesPerSec = rate * scenario.perChannel;
    return {
      // Headline numbers: throughput from the saturated phase, latency from the fixed rate.
      deliveriesPerSec: sat.deliveriesPerSec,
      sat,
      fixed: {
        ...fixed,
        offeredPublishesPerSec: rate,
        offeredDeliveriesPerSec,
        skippedPublishes: r.rate.skippedPublishes,
        // Behind: publishes not sent (overload guard), or still queued when the
        // phase ended: more than 100 ms of offered deliveries and more than
        // two publishes' worth (one fan-out to 10,000 takes a while by itself).
        behind: r.rate.skippedPublishes > 0 || r.rate.backlogAtEnd > Math.max(0.1 * offeredDeliveriesPerSec, 2 * scenario.perChannel),
        backlogAtEnd: r.rate.backlogAtEnd,
      },
      // Noise flag (run.js, report.js): the noisier of the two phases.
      otherCpuPct: Math.max(sat.otherCpuPct, fixed.otherCpuPct),
      stealPct: Math.max(sat.stealPct, fixed.stealPct),
      // Both servers do their work on one thread (V8's helper threads measured
      // about 1 % here), so well above 100 % means the CPU accounting of this
      // row is off (seen on a busy VM with steal); it counts as noisy.
      cpuSuspect: sat.serverCpuPct > SERVER_CPU_SUSPECT_PCT || fixed.serverCpuPct > SERVER_CPU_SUSPECT_PCT,
      serverMaxRssMB: s3.maxRssKB / 1024,
      serverConnections: s1.connections,
      bytesPerDelivery: r.bytesPerDelivery,
      setupSeconds: setup.setupMs / 1000,
      subscribers,
      probes: r.probes,
      verifiedProbes: r.verified,
      serverKind: kind,
      serverNative: ready.native,
    };
  } catch (err) {
    return { error: err.message };
  } finally {
    if (loader) {
      const exited = await Promise.race([loader.exited.then(() => true), sleep(CLOSE_TIMEOUT_MS).then(() => false)]);
      if (!exited) loader.kill();
      await loader.exited;
    }
    await server.stop(CLOSE_TIMEOUT_MS);
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
