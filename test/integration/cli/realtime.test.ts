/**
 * `switchboard sub` and `switchboard pub`, the real binary (through tsx)
 * against real servers: a `switchboard serve` in development mode (tokens
 * from POST /dev/token, as the pages get them) and in-process realtime
 * servers with the test secret. sub resumes after a server restart and says
 * it recovered; pub prints the ack, and a refusal exits 1 with the server's
 * words.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryBroker } from '../../../src/brokers/memory/memory-broker.js';
import type { RealtimeServer } from '../../../src/server/realtime-server.js';
import { runCli, startServe, type CliProcess } from '../../support/cli.js';
import { addresses, API_KEY, createTestServer } from '../../support/realtime-server.js';
import { signToken } from '../../support/tokens.js';
import { CHILD_WAIT, within } from '../../support/wait.js';

const NAMESPACES = [{ prefix: 'chat', history: { size: 100, ttlMs: 0 } }];

/** A realtime server with the test config on 127.0.0.1 (`port` 0: any), listening, closed after the test. */
async function listening(t: { after(fn: () => unknown): void }, port: number, broker?: MemoryBroker): Promise<{ server: RealtimeServer; url: string; port: number; base: string }> {
  const { server } = createTestServer({ broker, config: { port, namespaces: NAMESPACES, shutdown: { timeoutMs: 2000, reconnectJitterMs: 100 } } });
  t.after(() => server.close());
  const address = await server.listen();
  return { server, port: address.port, ...addresses(server, address.port) };
}

/** The exit of a CLI child (bounded), with its stderr in the failure message. */
async function exitOf(cli: CliProcess): Promise<number | null> {
  const { code } = await within(cli.exited, CHILD_WAIT, `the CLI to exit (stderr: ${cli.stderr.join(' | ')})`);
  return code;
}

/** Resolves with the first stderr line matching `re`. */
function stderrLine(cli: CliProcess, re: RegExp, what: string): Promise<string> {
  return cli.stderrLine(re, what);
}

test('dev server: sub prints what pub publishes (tokens from POST /dev/token); pub prints offset and epoch', async (t) => {
  const serve = await startServe();
  t.after(() => serve.stop());
  const url = `ws://127.0.0.1:${serve.port}/rt`;
  const sub = runCli(t, ['sub', 'chat/cli', '--url', url, '--json', '--count', '2']);
  await stderrLine(sub, /^subscribed to chat\/cli at offset 0 \(epoch \S+\)$/, 'the subscribed line');

  const first = runCli(t, ['pub', 'chat/cli', '{"text":"hello"}', '--url', url]);
  assert.equal(await exitOf(first), 0, first.stderr.join('\n'));
  assert.match(first.stdout.join('\n'), /^published to chat\/cli: offset 1, epoch \S+$/);
  // SWITCHBOARD_URL instead of --url; DATA that is not JSON goes as a string; --json prints the ack as JSON.
  const second = runCli(t, ['pub', 'chat/cli', 'plain words', '--json'], { env: { SWITCHBOARD_URL: url } });
  assert.equal(await exitOf(second), 0, second.stderr.join('\n'));
  const ack = JSON.parse(second.stdout[0]!) as { channel: string; offset: number; epoch: string; duplicate: boolean };
  assert.deepEqual({ ...ack, epoch: typeof ack.epoch }, { channel: 'chat/cli', offset: 2, epoch: 'string', duplicate: false });

  assert.equal(await exitOf(sub), 0, 'sub exits 0 after --count publications');
  const lines = sub.stdout.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(
    lines.map((l) => [l.channel, l.offset, l.epoch, l.data]),
    [
      ['chat/cli', 1, ack.epoch, { text: 'hello' }],
      ['chat/cli', 2, ack.epoch, 'plain words'],
    ],
  );
  assert.deepEqual((lines[0]!.from as { user?: string }).user, 'cli', 'the dev token is for the user cli');
});

test('sub resumes after the server restarts, prints what it missed once, and says it recovered', async (t) => {
  const broker = new MemoryBroker();
  t.after(() => broker.close());
  const a = await listening(t, 0, broker);
  const token = await signToken('reader');
  const sub = runCli(t, ['sub', 'chat/resume', '--url', a.url, '-v'], { env: { SWITCHBOARD_TOKEN: token } });
  await stderrLine(sub, /^subscribed to chat\/resume/, 'the subscribed line');
  await a.server.publish('chat/resume', { n: 1 });
  await sub.log((l) => typeof l.text === 'string' && l.text.includes('{"n":1}'), 'publication 1');

  // The server goes away (1001); while it is down, publication 2 is made on the same history.
  await a.server.close();
  await stderrLine(sub, /^connection lost: 1001 .*; reconnecting$/, 'the connection lost line');
  const { server: b } = createTestServer({ broker, config: { port: a.port, namespaces: NAMESPACES } });
  t.after(() => b.close());
  await b.publish('chat/resume', { n: 2 });
  await b.listen();

  const recovered = await stderrLine(sub, /^recovered: /, 'the recovered line');
  assert.match(recovered, /^recovered: resumed chat\/resume after offset 1 \(epoch \S+\), nothing missed$/);
  await sub.log((l) => typeof l.text === 'string' && l.text.includes('{"n":2}'), 'publication 2');
  await b.publish('chat/resume', { n: 3 });
  await sub.log((l) => typeof l.text === 'string' && l.text.includes('{"n":3}'), 'publication 3');
  // -v: channel, offset, epoch; each publication once, in order.
  assert.deepEqual(
    sub.stdout.map((l) => l.replace(/\(epoch \S+\)/, '(epoch E)')),
    ['chat/resume #1 (epoch E): {"n":1}', 'chat/resume #2 (epoch E): {"n":2}', 'chat/resume #3 (epoch E): {"n":3}'],
  );
  sub.child.kill('SIGINT');
  assert.equal(await exitOf(sub), 0, 'SIGINT ends sub with 0');
});

test('sub --since OFFSET replays from the history first; a history that was lost says NOT recovered', async (t) => {
  const s = await listening(t, 0);
  for (let n = 1; n <= 3; n++) await s.server.publish('chat/since', { n });
  const token = await signToken('reader');
  const sub = runCli(t, ['sub', 'chat/since', '--url', s.url, '--token', token, '--since', '1', '--count', '2']);
  assert.equal(await exitOf(sub), 0, sub.stderr.join('\n'));
  assert.deepEqual(sub.stdout, ['{"n":2}', '{"n":3}']);
  assert.ok(sub.stderr.some((l) => /^recovered: resumed chat\/since after offset 1 /.test(l)), sub.stderr.join('\n'));

  const lost = runCli(t, ['sub', 'chat/since', '--url', s.url, '--token', token, '--since', '1', '--epoch', 'gone', '--count', '1']);
  await stderrLine(lost, /^NOT recovered: publications on chat\/since after offset 1 \(epoch gone\) may be lost/, 'the NOT recovered line');
  await s.server.publish('chat/since', { n: 4 });
  assert.equal(await exitOf(lost), 0);
  assert.deepEqual(lost.stdout, ['{"n":4}']);
});

test('pub refused (no permission) exits 1 with the server\'s words; sub refused too', async (t) => {
  const s = await listening(t, 0);
  const readOnly = await signToken('viewer', { channels: { subscribe: ['chat/#'], publish: [] } });
  const pub = runCli(t, ['pub', 'chat/locked', '{"x":1}', '--url', s.url, '--token', readOnly]);
  assert.equal(await exitOf(pub), 1);
  assert.deepEqual(pub.stdout, []);
  assert.match(pub.stderr.join('\n'), /^switchboard pub: refused: .*not allowed to publish chat\/locked.*403/);

  const sub = runCli(t, ['sub', 'news/x', '--url', s.url, '--token', readOnly]);
  assert.equal(await exitOf(sub), 1);
  assert.match(sub.stderr.join('\n'), /subscription to news\/x refused: .*403/);

  // An invalid token: the server says so and pub gives up.
  const bad = runCli(t, ['pub', 'chat/x', '1', '--url', s.url, '--token', 'not-a-jwt', '--timeout', '5']);
  assert.equal(await exitOf(bad), 1);
  assert.match(bad.stderr.join('\n'), /^switchboard pub: cannot connect to .*: /);
});

test('pub --api-key publishes through POST /api/publish; a wrong key exits 1 with the status', async (t) => {
  const s = await listening(t, 0);
  const ok = runCli(t, ['pub', 'chat/api', '{"via":"api"}', '--url', s.url, '--api-key', API_KEY]);
  assert.equal(await exitOf(ok), 0, ok.stderr.join('\n'));
  assert.match(ok.stdout[0]!, /^published to chat\/api: offset 1, epoch \S+$/);
  const reader = runCli(t, ['sub', 'chat/api', '--url', s.url, '--token', await signToken('reader'), '--since', '0', '--count', '1']);
  assert.equal(await exitOf(reader), 0, reader.stderr.join('\n'));
  assert.deepEqual(reader.stdout, ['{"via":"api"}']);

  const wrong = runCli(t, ['pub', 'chat/api', '1', '--url', s.url], { env: { SWITCHBOARD_API_KEY: 'wrong-key-0123456789' } });
  assert.equal(await exitOf(wrong), 1);
  assert.match(wrong.stderr.join('\n'), /^switchboard pub: refused: HTTP 401/);
});

test('pub CHANNEL - publishes each stdin line (blank lines skipped) and prints each ack', async (t) => {
  const s = await listening(t, 0);
  const pub = runCli(t, ['pub', 'chat/lines', '-', '--url', s.url, '--json'], { stdin: 'pipe', env: { SWITCHBOARD_TOKEN: await signToken('writer') } });
  pub.child.stdin!.end('first line\n\n{"n":2}\n');
  assert.equal(await exitOf(pub), 0, pub.stderr.join('\n'));
  assert.deepEqual(
    pub.stdout.map((l) => (JSON.parse(l) as { offset: number }).offset),
    [1, 2],
  );
  const reader = runCli(t, ['sub', 'chat/lines', '--url', s.url, '--token', await signToken('reader'), '--since', '0', '--count', '2']);
  assert.equal(await exitOf(reader), 0, reader.stderr.join('\n'));
  assert.deepEqual(reader.stdout, ['"first line"', '{"n":2}']);
});

test('sub and pub: usage errors exit 2 with the command\'s usage', async (t) => {
  const noChannel = runCli(t, ['sub']);
  assert.equal(await exitOf(noChannel), 2);
  assert.match(noChannel.stderr.join('\n'), /a CHANNEL is required[\s\S]*Usage: switchboard sub CHANNEL/);
  const badUrl = runCli(t, ['pub', 'chat/x', '1', '--url', 'http://127.0.0.1:1/rt']);
  assert.equal(await exitOf(badUrl), 2);
  assert.match(badUrl.stderr.join('\n'), /--url must be ws:\/\/ or wss:\/\//);
});
