/**
 * `switchboard bench connect|echo|fanout URL`: a load generator for users.
 * The kinds live in ./bench/; this module parses their options, shows the
 * progress line (on a terminal), and prints the summary table or, with
 * `--json`, the result object.
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { HELP, parseCommandArgs, UsageError } from './args.js';
import { limitAdvice, Progress } from './bench/common.js';
import { runConnectBench, type ConnectBenchResult } from './bench/connect.js';
import { runEchoBench, type EchoBenchResult } from './bench/echo.js';
import { runFanoutBench, type FanoutBenchResult } from './bench/fanout.js';
import type { LatencySummary } from './bench/histogram.js';
import { describeClientError, resolveCredentials } from './realtime.js';

const KINDS = {
  connect: {
    synopsis: 'URL [--connections 100] [--concurrency 50] [--hold 5] [--pid P] [--protocol P]... [--deflate]',
    description: [
      'open --connections WebSockets, at most --concurrency handshakes at a time, hold them',
      '--hold seconds, close them: handshakes/s, handshake latency, failures by reason,',
      'connections dropped while held; --pid: the server\'s RSS (before, peak, after, per connection)',
    ],
  },
  echo: {
    synopsis: 'URL [--connections 10] [--size 32] [--inflight 1] [--warmup 0.5] [--text] [--deflate] [--workers 1]',
    description: [
      'each connection keeps --inflight messages of --size bytes outstanding against an echo',
      'server (switchboard echo) for --duration s (default 5): msgs/s, MB/s, round-trip',
      'p50/p99/p99.9 (the run is measured after --warmup s); --workers W spreads',
      'the connections over W threads when one core is not enough to load the server',
    ],
  },
  fanout: {
    synopsis: 'URL [--subscribers 100] [--publications 1000] [--rate 200] [--publishers auto] [--channel C] [--token T] [--drain 5] [--workers 1]',
    description: [
      'realtime protocol: --subscribers on one channel (default a fresh bench/<random>),',
      '--publications at --rate per second over enough publisher connections for the server\'s',
      'announced rate budget: deliveries/s, publish-to-delivery p50/p99/p99.9, lost and',
      'duplicated counted by offset; token: --token, SWITCHBOARD_TOKEN or POST /dev/token;',
      '--workers W spreads the subscribers over W threads (receiving costs more than sending)',
    ],
  },
} as const;
type Kind = keyof typeof KINDS;

const COMMON = { ...HELP, json: { type: 'boolean', default: false }, duration: { type: 'string' }, timeout: { type: 'string' } } as const;

function kindUsage(kind: Kind): string {
  return `Usage: switchboard bench ${kind} ${KINDS[kind].synopsis} [--duration S] [--timeout S] [--json]\n\n${KINDS[kind].description.map((d) => `  ${d}\n`).join('')}`;
}

/** A number option: finite, within [min, max]. */
function num(values: Record<string, unknown>, name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER, integer = true): number {
  const text = values[name];
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    throw new UsageError(`invalid --${name} '${String(text)}' (${integer ? 'an integer' : 'a number'} from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ''})`);
  }
  return n;
}

function wsUrl(text: string | undefined, kind: Kind): string {
  if (!text) throw new UsageError(`a URL is required: switchboard bench ${kind} ws://127.0.0.1:9001/`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`invalid URL '${text}'`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new UsageError(`the URL must be ws:// or wss:// (got ${url.protocol}//)`);
  return url.href;
}

export async function bench(args: string[]): Promise<number> {
  const kind = args[0];
  if (kind === undefined || kind === '--help' || kind === '-h') {
    parseCommandArgs('bench', { args: ['--help'], options: HELP });
    process.stdout.write(`\n${(Object.keys(KINDS) as Kind[]).map(kindUsage).join('\n')}`);
    return kind === undefined ? 2 : 0;
  }
  if (!(kind in KINDS)) throw new UsageError(`unknown kind '${kind}': connect, echo or fanout`);
  const k = kind as Kind;
  const rest = args.slice(1);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(kindUsage(k));
    return 0;
  }
  const progress = new Progress();
  let result: ConnectBenchResult | EchoBenchResult | FanoutBenchResult;
  let json: boolean;
  try {
    if (k === 'connect') {
      const { values, positionals } = parse(rest, {
        connections: { type: 'string' },
        concurrency: { type: 'string' },
        hold: { type: 'string' },
        pid: { type: 'string' },
        protocol: { type: 'string', multiple: true },
        deflate: { type: 'boolean', default: false },
      });
      json = values.json === true;
      result = await runConnectBench(
        {
          url: wsUrl(positionals[0], k),
          connections: num(values, 'connections', 100, 1),
          concurrency: num(values, 'concurrency', 50, 1),
          holdMs: num(values, 'hold', 5, 0, 86_400, false) * 1000,
          durationMs: num(values, 'duration', 600, 0.1, 86_400, false) * 1000,
          pid: values.pid === undefined ? undefined : num(values, 'pid', 0, 1),
          protocols: (values.protocol as string[] | undefined) ?? [],
          deflate: values.deflate === true,
          timeoutMs: num(values, 'timeout', 10, 0.1, 3600, false) * 1000,
        },
        progress,
      );
    } else if (k === 'echo') {
      const { values, positionals } = parse(rest, {
        connections: { type: 'string' },
        size: { type: 'string' },
        inflight: { type: 'string' },
        warmup: { type: 'string' },
        workers: { type: 'string' },
        protocol: { type: 'string', multiple: true },
        text: { type: 'boolean', default: false },
        deflate: { type: 'boolean', default: false },
      });
      json = values.json === true;
      result = await runEchoBench(
        {
          url: wsUrl(positionals[0], k),
          connections: num(values, 'connections', 10, 1),
          size: num(values, 'size', 32, 0, 64 * 1024 * 1024),
          inflight: num(values, 'inflight', 1, 1, 100_000),
          durationMs: num(values, 'duration', 5, 0.1, 86_400, false) * 1000,
          warmupMs: num(values, 'warmup', 0.5, 0, 3600, false) * 1000,
          workers: num(values, 'workers', 1, 1, 256),
          text: values.text === true,
          deflate: values.deflate === true,
          protocols: (values.protocol as string[] | undefined) ?? [],
          timeoutMs: num(values, 'timeout', 10, 0.1, 3600, false) * 1000,
        },
        progress,
      );
    } else {
      const { values, positionals } = parse(rest, {
        subscribers: { type: 'string' },
        publications: { type: 'string' },
        rate: { type: 'string' },
        publishers: { type: 'string' },
        channel: { type: 'string' },
        token: { type: 'string' },
        user: { type: 'string' },
        drain: { type: 'string' },
        workers: { type: 'string' },
      });
      json = values.json === true;
      const url = wsUrl(positionals[0], k);
      const timeoutMs = num(values, 'timeout', 10, 0.1, 3600, false) * 1000;
      const credentials = await resolveCredentials(url, values.token as string | undefined, (values.user as string | undefined) ?? 'bench');
      let token = credentials.token;
      if (token === undefined && credentials.getToken) token = await credentials.getToken();
      result = await runFanoutBench(
        {
          url,
          channel: (values.channel as string | undefined) ?? `bench/${randomBytes(4).toString('hex')}`,
          subscribers: num(values, 'subscribers', 100, 1),
          publications: num(values, 'publications', 1000, 1, 10_000_000),
          rate: num(values, 'rate', 200, 0.1, 10_000_000, false),
          publishers: num(values, 'publishers', 0, 0, 10_000),
          durationMs: num(values, 'duration', 600, 0.1, 86_400, false) * 1000,
          drainMs: num(values, 'drain', 5, 0, 3600, false) * 1000,
          setupMs: Math.max(30_000, timeoutMs),
          workers: num(values, 'workers', 1, 1, 256),
          token,
          timeoutMs,
        },
        progress,
      );
    }
  } catch (err) {
    progress.stop();
    if (err instanceof UsageError) throw err;
    process.stderr.write(`switchboard bench ${k}: ${describeClientError(err)}\n`);
    return 1;
  }
  process.stdout.write(json ? `${JSON.stringify(result, null, 2)}\n` : `${table(result)}\n`);
  return healthy(result) ? 0 : 1;
}

function parse(args: string[], options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; default?: boolean }>): { values: Record<string, unknown>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { ...COMMON, ...options } });
    if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}' (one URL)`);
    return { values, positionals };
  } catch (err) {
    if (String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS_')) throw new UsageError((err as Error).message);
    throw err;
  }
}

/** Whether the run went as it should: everything connected, nothing lost, duplicated or cut. Exit 0, else 1. */
function healthy(r: ConnectBenchResult | EchoBenchResult | FanoutBenchResult): boolean {
  if (r.kind === 'connect') return r.failed === 0 && r.opened > 0;
  if (r.kind === 'echo') return r.opened === r.connections && r.mismatched === 0 && r.closedEarly === 0 && r.messages > 0;
  return r.subscribers > 0 && r.lost === 0 && r.duplicated === 0 && r.publications.refused === 0 && r.publications.acked > 0 && Object.keys(r.failures).length === 0;
}

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const fixed = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : '-');

function latencyRows(l: LatencySummary, what: string): Array<[string, string]> {
  return [
    [`${what} p50`, `${fixed(l.p50Ms, 3)} ms`],
    [`${what} p99`, `${fixed(l.p99Ms, 3)} ms`],
    [`${what} p99.9`, `${fixed(l.p999Ms, 3)} ms`],
    [`${what} max`, `${fixed(l.maxMs, 3)} ms (${int(l.count)} samples)`],
  ];
}

function failureRows(failures: Record<string, number>): Array<[string, string]> {
  return Object.entries(failures)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 5)
    .map(([reason, n]) => ['  failed with', `${int(n)} × ${reason}`]);
}

/** The summary table (and the warnings that go with it). */
export function table(r: ConnectBenchResult | EchoBenchResult | FanoutBenchResult): string {
  let title: string;
  let rows: Array<[string, string]>;
  const notes: string[] = [];
  if (r.kind === 'connect') {
    title = `bench connect ${r.url}: ${r.connections} connections, ${r.concurrency} at a time`;
    rows = [
      ['opened', `${int(r.opened)} of ${int(r.attempted)} attempted`],
      ['failed', int(r.failed)],
      ...failureRows(r.failures),
      ['handshakes/s', int(r.handshakesPerSec)],
      ['opening took', `${fixed(r.openingMs / 1000)} s`],
      ...latencyRows(r.handshake, 'handshake'),
      ['held', `${fixed(r.heldMs / 1000, 1)} s, dropped meanwhile: ${Object.entries(r.droppedWhileHeld).map(([c, n]) => `${n} × ${c}`).join(', ') || 'none'}`],
    ];
    if (r.server) {
      rows.push(
        ['server RSS before', `${fixed(r.server.rssBeforeKiB / 1024, 1)} MiB (pid ${r.server.pid})`],
        ['server RSS peak', `${fixed(r.server.rssPeakKiB / 1024, 1)} MiB`],
        ['server RSS after', `${fixed(r.server.rssAfterKiB / 1024, 1)} MiB`],
        ['per connection', `${fixed(r.server.perConnectionKiB, 1)} KiB (peak - before) / opened`],
      );
    }
    rows.push(['bench CPU', `${int(r.benchCpuPct)} % of one core while opening`]);
    const advice = limitAdvice(Object.keys(r.failures));
    if (advice) notes.push(advice);
  } else if (r.kind === 'echo') {
    title = `bench echo ${r.url}: ${r.opened} connections × ${r.size} B, ${r.inflight} in flight each, ${fixed(r.durationMs / 1000, 1)} s${r.workers > 1 ? `, ${r.workers} workers` : ''}`;
    rows = [
      ['messages/s', int(r.messagesPerSec)],
      ['MB/s', fixed(r.mbPerSec)],
      ['echoes', int(r.messages)],
      ...latencyRows(r.latency, 'round trip'),
      ['not echoed', `${int(r.latency.censored)} (sent in the window, no echo within the drain)`],
      ['wrong size', int(r.mismatched)],
      ['closed early', int(r.closedEarly)],
      ...(r.opened < r.connections ? ([['failed to connect', int(r.connections - r.opened)]] as Array<[string, string]>) : []),
      ...failureRows(r.failures),
      ['bench CPU', `${int(r.benchCpuPct)} % of one core`],
    ];
    if (r.benchCpuPct > 85 * r.workers) notes.push(`the load generator was CPU-bound (${int(r.benchCpuPct)} %): the server may be faster than this says; try --workers ${r.workers * 2}`);
    const advice = limitAdvice(Object.keys(r.failures));
    if (advice) notes.push(advice);
  } else {
    title = `bench fanout ${r.url}: ${r.subscribers} subscribers on ${r.channel}, ${r.publishers} publisher${r.publishers === 1 ? '' : 's'}${r.workers > 1 ? `, ${r.workers} workers` : ''}`;
    rows = [
      ['publications', `${int(r.publications.acked)} acked of ${int(r.publications.sent)} sent (${int(r.publications.requested)} asked)${r.publications.refused ? `, ${int(r.publications.refused)} refused: ${r.publications.firstRefusal}` : ''}`],
      ['publish rate', `${fixed(r.rate.achievedPerSec, 1)}/s (asked ${r.rate.requestedPerSec}/s)`],
      ['deliveries', `${int(r.deliveries.received)} of ${int(r.deliveries.expected)}`],
      ['deliveries/s', int(r.deliveries.perSec)],
      ...latencyRows(r.latency, 'publish→delivery'),
      ['lost', int(r.lost)],
      ['duplicated', int(r.duplicated)],
      ['unexpected', `${int(r.unexpected)} (offsets not published by this run, or another epoch)`],
      ['dropped', Object.entries(r.dropped).map(([c, n]) => `${n} × ${c}`).join(', ') || 'none'],
      ...(Object.keys(r.failures).length ? ([['failed to subscribe', int(Object.values(r.failures).reduce((a, b) => a + b, 0))]] as Array<[string, string]>) : []),
      ...failureRows(r.failures),
      ['setup', `${fixed(r.setupMs / 1000)} s`],
      ['bench CPU', `${int(r.benchCpuPct)} % of one core`],
    ];
    if (r.benchCpuPct > 85 * r.workers) notes.push(`the load generator was CPU-bound (${int(r.benchCpuPct)} %): latency includes its own queueing; try --workers ${r.workers * 2}`);
    const advice = limitAdvice(Object.keys(r.failures).map((f) => f.replace(/^publisher: /, '')));
    if (advice) notes.push(advice);
  }
  const width = Math.max(...rows.map(([label]) => label.length));
  return [title, ...rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`), ...notes.map((n) => `! ${n}`)].join('\n');
}
