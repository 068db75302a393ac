/**
 * `switchboard bench`, the real binary (through tsx), small runs against
 * real servers started here: the JSON output's shape and that its counts
 * add up (everything opened, nothing lost or duplicated against a healthy
 * server). No assertion on speed.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { WebSocketServer } from '../../../src/index.js';
import { runCli, type CliProcess } from '../../support/cli.js';
import { addresses, createTestServer } from '../../support/realtime-server.js';
import { signToken } from '../../support/tokens.js';
import { CHILD_WAIT, within } from '../../support/wait.js';

type T = { after(fn: () => unknown): void };

/** An echo WebSocket server in this process; closed after the test. */
async function echoServer(t: T): Promise<{ url: string; wss: WebSocketServer }> {
  const server = http.createServer();
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  t.after(() => new Promise<void>((resolve) => wss.close(() => server.close(() => resolve()))));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/`, wss };
}

/** Run `switchboard bench ...args --json`: exit code and the parsed result. */
async function bench<R>(t: T, args: string[]): Promise<{ code: number | null; result: R; cli: CliProcess }> {
  const cli = runCli(t, ['bench', ...args, '--json']);
  const { code } = await within(cli.exited, CHILD_WAIT * 3, `bench ${args[0]} to finish (stderr: ${cli.stderr.join(' | ')})`);
  let result: R;
  try {
    result = JSON.parse(cli.stdout.join('\n')) as R;
  } catch {
    throw new Error(`bench ${args[0]}: no JSON on stdout (exit ${code}); stdout: ${cli.stdout.join('\n')}; stderr: ${cli.stderr.join('\n')}`);
  }
  return { code, result, cli };
}

const latencyShape = (l: Record<string, unknown>): void => {
  for (const k of ['count', 'meanMs', 'p50Ms', 'p90Ms', 'p99Ms', 'p999Ms', 'maxMs']) assert.equal(typeof l[k], 'number', `latency.${k}`);
  assert.ok((l.p50Ms as number) <= (l.p99Ms as number) && (l.p99Ms as number) <= (l.p999Ms as number) && (l.p999Ms as number) <= (l.maxMs as number), JSON.stringify(l));
};

test('bench connect: 20 connections held 1 s, every one opened and counted; --pid reads the server\'s RSS', async (t) => {
  const { url, wss } = await echoServer(t);
  let peak = 0;
  wss.on('connection', () => (peak = Math.max(peak, wss.clients.size)));
  // The server is this test process: its RSS is what --pid reads.
  const { code, result } = await bench<Record<string, any>>(t, ['connect', url, '--connections', '20', '--concurrency', '5', '--hold', '1', '--pid', String(process.pid)]);
  assert.equal(code, 0, JSON.stringify(result));
  assert.equal(result.kind, 'connect');
  assert.deepEqual([result.connections, result.attempted, result.opened, result.failed], [20, 20, 20, 0]);
  assert.deepEqual(result.failures, {});
  assert.deepEqual(result.droppedWhileHeld, {});
  assert.equal(result.handshake.count, 20);
  latencyShape(result.handshake);
  assert.ok(result.handshakesPerSec > 0);
  assert.ok(result.heldMs >= 900, `held ${result.heldMs} ms`);
  assert.equal(result.server.pid, process.pid);
  assert.ok(result.server.rssBeforeKiB > 0 && result.server.rssPeakKiB >= result.server.rssBeforeKiB);
  assert.equal(peak, 20, 'the server saw all 20 at once (held together)');
  assert.equal(wss.clients.size, 0, 'all closed at the end');
});

test('bench connect: connections the server refuses are failures with their reason, and exit 1', async (t) => {
  const { url } = await echoServer(t);
  const dead = url.replace(/:\d+\//, ':1/');
  const { code, result } = await bench<Record<string, any>>(t, ['connect', dead, '--connections', '3', '--hold', '0']);
  assert.equal(code, 1);
  assert.deepEqual([result.opened, result.failed], [0, 3]);
  assert.deepEqual(Object.values(result.failures), [3]);
  assert.match(Object.keys(result.failures)[0]!, /ECONNREFUSED/);
});

test('bench echo: 4 connections × 64 B for 1 s; with --workers 2 the counts add up over the threads', async (t) => {
  const { url } = await echoServer(t);
  for (const workers of ['1', '2']) {
    const { code, result } = await bench<Record<string, any>>(t, ['echo', url, '--connections', '4', '--size', '64', '--inflight', '2', '--duration', '1', '--warmup', '0.2', '--workers', workers]);
    assert.equal(code, 0, JSON.stringify(result));
    assert.equal(result.kind, 'echo');
    assert.deepEqual([result.connections, result.opened, result.size, result.inflight, result.workers], [4, 4, 64, 2, Number(workers)]);
    assert.deepEqual([result.mismatched, result.closedEarly], [0, 0]);
    assert.ok(result.messages > 0);
    // Every echo of the window is timed (plus those sent in the window and echoed during the drain).
    assert.ok(result.latency.count >= result.messages - 4 * 2, `${result.latency.count} timings for ${result.messages} echoes`);
    assert.equal(result.latency.censored, 0);
    latencyShape(result.latency);
    assert.ok(Math.abs(result.mbPerSec - (result.messagesPerSec * 64) / 1e6) < 1e-6);
  }
});

test('bench fanout: 20 subscribers × 100 publications through the realtime protocol: all delivered once, lost 0, duplicated 0 (in one thread and over 2 workers)', async (t) => {
  const { server } = createTestServer({ config: { limits: { connectionRatePerIp: { perSecond: 1000, burst: 1000 } } } });
  t.after(() => server.close());
  const { port } = await server.listen();
  const { url } = addresses(server, port);
  const token = await signToken('bench');
  for (const workers of [1, 2]) {
    const channel = `load/w${workers}`;
    const { code, result } = await bench<Record<string, any>>(t, ['fanout', url, '--token', token, '--subscribers', '20', '--publications', '100', '--rate', '200', '--channel', channel, '--workers', String(workers)]);
    assert.equal(code, 0, JSON.stringify(result));
    assert.equal(result.kind, 'fanout');
    assert.equal(result.workers, workers);
    assert.equal(result.channel, channel);
    assert.equal(result.subscribers, 20);
    assert.deepEqual(result.failures, {});
    assert.ok(result.publishers >= 1, 'publishers sized from the announced budget (50/s each by default)');
    assert.ok(result.publishers >= Math.ceil(200 / 50), `${result.publishers} publishers for 200/s at 50/s each`);
    assert.deepEqual(result.publications, { requested: 100, sent: 100, acked: 100, refused: 0 });
    assert.deepEqual(result.deliveries.expected, 2000);
    assert.deepEqual(result.deliveries.received, 2000);
    assert.deepEqual([result.lost, result.duplicated, result.unexpected], [0, 0, 0]);
    assert.deepEqual(result.dropped, {});
    assert.equal(result.latency.count, 2000);
    latencyShape(result.latency);
  }
});

test('bench fanout: publications the server refuses are counted with its words, and exit 1', async (t) => {
  const { server } = createTestServer({ config: { limits: { connectionRatePerIp: { perSecond: 1000, burst: 1000 } } } });
  t.after(() => server.close());
  const { port } = await server.listen();
  const readOnly = await signToken('viewer', { channels: { subscribe: ['load/#'], publish: [] } });
  const { code, result } = await bench<Record<string, any>>(t, ['fanout', addresses(server, port).url, '--token', readOnly, '--subscribers', '2', '--publications', '5', '--rate', '50', '--channel', 'load/ro', '--drain', '1']);
  assert.equal(code, 1);
  assert.deepEqual([result.publications.acked, result.publications.refused], [0, 5]);
  assert.match(result.publications.firstRefusal, /^403 .*not allowed to publish load\/ro/);
  assert.deepEqual([result.lost, result.duplicated], [0, 0]);
});

test('bench: the summary table without --json; usage errors exit 2', async (t) => {
  const { url } = await echoServer(t);
  const cli = runCli(t, ['bench', 'echo', url, '--connections', '2', '--duration', '0.5', '--warmup', '0']);
  const { code } = await within(cli.exited, CHILD_WAIT * 2, 'bench echo');
  assert.equal(code, 0, cli.stderr.join('\n'));
  const out = cli.stdout.join('\n');
  assert.match(out, /^bench echo ws:\/\/127\.0\.0\.1:\d+\/: 2 connections × 32 B, 1 in flight each, [\d.]+ s$/m);
  for (const label of ['messages/s', 'MB/s', 'round trip p50', 'round trip p99', 'round trip p99.9', 'bench CPU']) assert.match(out, new RegExp(`^  ${label.replace(/[/.]/g, '\\$&')} +\\S`, 'm'), label);
  assert.deepEqual(cli.stderr, [], 'no progress line when stderr is not a terminal');

  const bad = runCli(t, ['bench', 'echo', url, '--size', 'big']);
  assert.equal((await within(bad.exited, CHILD_WAIT, 'bench with a bad option')).code, 2);
  assert.match(bad.stderr.join('\n'), /invalid --size 'big'/);
  const kind = runCli(t, ['bench', 'storm', url]);
  assert.equal((await within(kind.exited, CHILD_WAIT, 'bench with an unknown kind')).code, 2);
  assert.match(kind.stderr.join('\n'), /unknown kind 'storm': connect, echo or fanout/);
});

test('bench on a terminal: the progress line is drawn and redrawn in place (\\r, erase line), cleared, then the summary table; piped: no progress bytes at all', async (t) => {
  const { url } = await echoServer(t);
  const args = ['bench', 'echo', url, '--connections', '2', '--duration', '1.5', '--warmup', '0'];
  // On a pseudo-terminal (util-linux `script`): stdout and stderr are the TTY, their bytes arrive mixed, as a user sees them.
  const tty = runCli(t, args, { tty: true });
  const { code } = await within(tty.exited, CHILD_WAIT * 2, 'bench echo on a terminal');
  assert.equal(code, 0, tty.stdout.join('\n'));
  await new Promise<void>((resolve) => (tty.child.stdout!.readableEnded ? resolve() : tty.child.stdout!.once('close', () => resolve())));
  const screen = Buffer.concat(tty.raw).toString();
  // Each redraw: carriage return, erase the line (CSI 2K), the line; every 250 ms, so several in 1.5 s.
  const draws = [...screen.matchAll(/\r\x1b\[2K(echo [^\r\n]*)/g)].map((m) => m[1]!);
  assert.ok(draws.length >= 3, `at least 3 redraws of the progress line, saw ${draws.length}: ${JSON.stringify(screen.slice(0, 400))}`);
  for (const line of draws) assert.match(line, /^echo \[[#.]{20}\] \d+%/, line);
  assert.ok(new Set(draws).size >= 2, `the line changes between redraws: ${JSON.stringify(draws)}`);
  // stop(): the line is erased (\r CSI 2K with nothing after it) before the table, which starts on a clean line.
  const table = screen.search(/bench echo ws:\/\/127\.0\.0\.1:\d+\/: 2 connections/);
  assert.ok(table > 0, `the summary table: ${JSON.stringify(screen.slice(-600))}`);
  const cleared = screen.lastIndexOf('\r\x1b[2K');
  assert.ok(cleared < table, 'the progress line is cleared before the table');
  assert.equal(screen.slice(cleared + '\r\x1b[2K'.length, table).trim(), '', 'nothing between the clearing and the table');
  for (const label of ['messages/s', 'round trip p99', 'bench CPU']) assert.match(screen.slice(table), new RegExp(`\\r?\\n  ${label} +\\S`), label);

  // Piped (not a terminal): stdout is the table only, stderr empty; no carriage return or escape anywhere.
  const piped = runCli(t, args);
  assert.equal((await within(piped.exited, CHILD_WAIT * 2, 'bench echo piped')).code, 0, piped.stderr.join('\n'));
  await new Promise<void>((resolve) => (piped.child.stdout!.readableEnded ? resolve() : piped.child.stdout!.once('close', () => resolve())));
  const out = Buffer.concat(piped.raw).toString();
  assert.match(out, /^bench echo ws:\/\/127\.0\.0\.1:\d+\/: 2 connections/);
  assert.doesNotMatch(out, /[\r\x1b]/, 'no progress noise on stdout');
  assert.deepEqual(piped.stderr, []);
});
