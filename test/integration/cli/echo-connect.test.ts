/**
 * The `switchboard` CLI as a child process (through tsx, so dist/ is not
 * needed): `echo` logs JSON lines, echoes, and on SIGTERM closes clients with
 * 1001 and exits 0; `connect` sends stdin lines and prints what arrives.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import net from 'node:net';
import { runCli as runChild, type CliProcess } from '../../support/cli.js';
import { CHILD_WAIT } from '../../support/wait.js';
import { closeOf, harness, listen, until, waitEvent, within } from '../transport/helpers.js';
import { startServer } from '../realtime/helpers.js';

/** A CLI command with its stdin piped (`connect` reads it), killed after the test. */
function runCli(t: { after(fn: () => unknown): void }, args: string[]): CliProcess {
  return runChild(t, args, { stdin: 'pipe' });
}

test('echo: logs listening with the URL, echoes, and on SIGTERM closes clients with 1001 and exits 0', async (t) => {
  const h = harness(t);
  const cli = runCli(t, ['echo', '--port', '0', '--host', '127.0.0.1']);
  const listening = await cli.event('listening');
  const url = String(listening.url);
  assert.match(url, /^ws:\/\/127\.0\.0\.1:\d+\/$/);
  assert.equal(listening.deflate, false);

  const ws = await h.open(url, ['chat']);
  const got = waitEvent<[Buffer, boolean]>(ws, 'message');
  ws.send('hello cli');
  const [data, isBinary] = await got;
  assert.equal(String(data), 'hello cli');
  assert.equal(isBinary, false);
  const bin = waitEvent<[Buffer, boolean]>(ws, 'message');
  ws.send(Buffer.from([1, 2, 3]));
  assert.deepEqual(await bin, [Buffer.from([1, 2, 3]), true]);

  const open = await cli.event('open');
  assert.equal(open.protocol, 'chat');

  const closed = closeOf(ws, 10_000);
  cli.child.kill('SIGTERM');
  const [code] = await closed;
  assert.equal(code, 1001);
  const exit = await within(cli.exited, 10_000, 'the CLI to exit');
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.ok(cli.logs.some((l) => l.event === 'shutdown' && l.signal === 'SIGTERM'));
  const closeLine = cli.logs.find((l) => l.event === 'close');
  assert.equal(closeLine?.code, 1001);
});

test('echo --deflate negotiates permessage-deflate and logs close codes with their meaning', async (t) => {
  const h = harness(t);
  const cli = runCli(t, ['echo', '--port', '0', '--host', '127.0.0.1', '--deflate', '--max-payload', '1000']);
  const listening = await cli.event('listening');
  assert.equal(listening.deflate, true);
  const ws = await h.open(String(listening.url));
  assert.match(ws.extensions, /permessage-deflate/);
  const text = 'squeeze me '.repeat(80);
  const got = waitEvent<[Buffer]>(ws, 'message');
  ws.send(text);
  assert.equal(String((await got)[0]), text);

  // Over --max-payload: the server closes with 1009 and logs it.
  const closed = closeOf(ws);
  ws.send(Buffer.alloc(2000));
  assert.equal((await closed)[0], 1009);
  const closeLine = await cli.event('close');
  assert.equal(closeLine.code, 1009, 'the server reports the code it sent when it failed the connection');
  assert.match(String(closeLine.meaning), /too big/);
  assert.ok(cli.logs.some((l) => l.event === 'error' && l.code === 'WS_ERR_MESSAGE_TOO_BIG'));

  cli.child.kill('SIGTERM');
  assert.deepEqual(await within(cli.exited, 10_000, 'exit'), { code: 0, signal: null });
});

test('connect: sends stdin lines as text, prints what arrives, exits 0 when stdin ends', async (t) => {
  const h = harness(t);
  const { wss, url } = await h.server();
  const received: string[] = [];
  wss.on('connection', (ws) => {
    ws.on('message', (d) => {
      received.push(String(d));
      ws.send(`echo: ${String(d)}`);
    });
  });
  const cli = runCli(t, ['connect', url]);
  await within(
    new Promise<void>((resolve) => {
      const check = (): void => {
        if (cli.stderr.some((l) => l.startsWith('connected'))) resolve();
        else setTimeout(check, 20);
      };
      check();
    }),
    CHILD_WAIT,
    'connected on stderr',
  );
  cli.child.stdin!.write('first line\nsecond line\n');
  await within(
    new Promise<void>((resolve) => {
      const check = (): void => {
        if (cli.stdout.length >= 2) resolve();
        else setTimeout(check, 20);
      };
      check();
    }),
    5000,
    'two echoed lines on stdout',
  );
  assert.deepEqual(received, ['first line', 'second line']);
  assert.deepEqual(cli.stdout.slice(0, 2), ['echo: first line', 'echo: second line'], 'piped stdout: the payloads only');
  cli.child.stdin!.end();
  assert.deepEqual(await within(cli.exited, 10_000, 'exit'), { code: 0, signal: null });
  assert.ok(cli.stderr.some((l) => l.startsWith('closed: 1000')));
});

test('unknown command → exit 2; help → exit 0', async (t) => {
  const bad = runCli(t, ['frobnicate']);
  assert.equal((await within(bad.exited, CHILD_WAIT, 'exit')).code, 2);
  assert.ok(bad.stderr.some((l) => l.includes("unknown command 'frobnicate'")));
  const help = runCli(t, ['help']);
  assert.equal((await within(help.exited, CHILD_WAIT, 'exit')).code, 0);
  assert.ok(help.stdout.some((l) => l.startsWith('Usage: switchboard')));
});

test('echo without --port → exit 2 with a message', async (t) => {
  const cli = runCli(t, ['echo']);
  assert.equal((await within(cli.exited, CHILD_WAIT, 'exit')).code, 2);
  assert.ok(cli.stderr.some((l) => l.includes('--port is required')));
});

/** An echo server whose handshake waits `delayMs`: input and EOF piped at spawn arrive before the socket opens. */
async function slowEchoServer(h: ReturnType<typeof harness>, delayMs: number) {
  const { wss, url } = await h.server({
    verifyClient: (_info: unknown, cb: (ok: boolean) => void) => void setTimeout(() => cb(true), delayMs),
  });
  const received: string[] = [];
  const closes: number[] = [];
  wss.on('connection', (ws) => {
    ws.on('message', (d, isBinary) => {
      received.push(String(d));
      ws.send(d, { binary: isBinary });
    });
    ws.on('close', (code: number) => closes.push(code));
  });
  return { url, received, closes };
}

test("connect: lines and EOF piped before the socket opens (printf 'hello\\nsecond\\n' | connect) are sent once open, in order; then close 1000 and exit 0", async (t) => {
  const h = harness(t);
  const server = await slowEchoServer(h, 500);
  const cli = runCli(t, ['connect', server.url]);
  cli.child.stdin!.end('hello\nsecond\n');
  const exit = await within(cli.exited, CHILD_WAIT, `the CLI to exit (stderr: ${cli.stderr.join(' | ')})`);
  assert.deepEqual(exit, { code: 0, signal: null }, cli.stderr.join(' | '));
  assert.deepEqual(server.received, ['hello', 'second']);
  assert.deepEqual(cli.stdout, ['hello', 'second']);
  assert.deepEqual(cli.stderr, ['connected (protocol: none, extensions: none)', 'closed: 1000 (normal closure)']);
  await until(() => server.closes.length === 1, 5000, 'the server to see the close');
  assert.deepEqual(server.closes, [1000]);
});

test('connect </dev/null: EOF before the socket opens → opens, closes with 1000, exits 0', async (t) => {
  const h = harness(t);
  const server = await slowEchoServer(h, 300);
  const cli = runCli(t, ['connect', server.url]);
  cli.child.stdin!.end();
  assert.deepEqual(await within(cli.exited, CHILD_WAIT, 'the CLI to exit'), { code: 0, signal: null }, cli.stderr.join(' | '));
  assert.deepEqual(cli.stderr, ['connected (protocol: none, extensions: none)', 'closed: 1000 (normal closure)']);
  await until(() => server.closes.length === 1, 5000, 'the server to see the close');
  assert.deepEqual(server.closes, [1000]);
  assert.deepEqual(server.received, []);
});

test('connect: a connection that fails exits 1 with the reason, even with stdin still open', async (t) => {
  const probe = net.createServer();
  const port = await listen(probe);
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const cli = runCli(t, ['connect', `ws://127.0.0.1:${port}/`]);
  cli.child.stdin!.write('typed early\n'); // and stdin stays open
  assert.deepEqual(await within(cli.exited, CHILD_WAIT, 'the CLI to exit'), { code: 1, signal: null });
  assert.deepEqual(cli.stderr, [`error: connect ECONNREFUSED 127.0.0.1:${port}`, 'closed: 1006 (abnormal closure: the connection dropped without a close frame)']);
});

test('connect to the realtime server: a 4xxx close is named from the realtime table; a refused upgrade shows the HTTP status and the body', async (t) => {
  const rt = await startServer(t);
  // 4501: not JSON. stdin stays open: the server's close ends the CLI (exit 1, not a normal closure).
  const bad = runCli(t, ['connect', rt.url, '--protocol', 'switchboard.v1.json']);
  await until(() => bad.stderr.some((l) => l.startsWith('connected')), CHILD_WAIT, 'connected');
  bad.child.stdin!.write('not json\n');
  assert.deepEqual(await within(bad.exited, 10_000, 'the CLI to exit'), { code: 1, signal: null });
  assert.equal(bad.stderr.length, 2, bad.stderr.join(' | '));
  assert.match(bad.stderr[0]!, /^connected \(protocol: switchboard\.v1\.json, /);
  assert.equal(
    bad.stderr[1],
    'closed: 4501 (bad request: a message that is not JSON / MessagePack; do not reconnect) (switchboard realtime protocol: BadRequest) reason: malformed JSON',
  );

  // A subprotocol the server does not speak: HTTP 400 before the upgrade, with its explanation.
  const refused = runCli(t, ['connect', rt.url, '--protocol', 'chat.v9']);
  refused.child.stdin!.end();
  assert.deepEqual(await within(refused.exited, CHILD_WAIT, 'the CLI to exit'), { code: 1, signal: null });
  assert.deepEqual(refused.stderr, [
    'error: the server refused the WebSocket upgrade: HTTP 400 Bad Request',
    '  unsupported subprotocol; this server speaks switchboard.v1.json, switchboard.v1.msgpack',
    'closed: 1006 (abnormal closure: the connection dropped without a close frame)',
  ]);
});

test('echo on a busy port: one line with the error, no stack trace, exit 2 (as serve)', async (t) => {
  const busy = net.createServer();
  const port = await listen(busy);
  t.after(() => new Promise<void>((resolve) => busy.close(() => resolve())));
  const cli = runCli(t, ['echo', '--port', String(port), '--host', '127.0.0.1']);
  assert.deepEqual(await within(cli.exited, CHILD_WAIT, 'the CLI to exit'), { code: 2, signal: null });
  assert.deepEqual(cli.stderr, [`switchboard echo: listen EADDRINUSE: address already in use 127.0.0.1:${port}`]);
  assert.deepEqual(cli.stdout, []);
});

test('<command> --help prints that command\'s usage and exits 0; an unknown option prints the error, then the usage, exit 2', async (t) => {
  for (const command of ['serve', 'echo', 'connect']) {
    for (const flag of ['--help', '-h']) {
      const cli = runCli(t, [command, flag]);
      assert.deepEqual(await within(cli.exited, CHILD_WAIT, `${command} ${flag} to exit`), { code: 0, signal: null }, cli.stderr.join(' | '));
      assert.match(cli.stdout[0] ?? '', new RegExp(`^Usage: switchboard ${command} `), `${command} ${flag}`);
      assert.deepEqual(cli.stderr, []);
    }
    const bad = runCli(t, [command, '--bogus']);
    assert.equal((await within(bad.exited, CHILD_WAIT, `${command} --bogus to exit`)).code, 2);
    assert.match(bad.stderr[0] ?? '', new RegExp(`^switchboard ${command}: Unknown option '--bogus'`));
    assert.equal(bad.stderr[1], '');
    assert.match(bad.stderr[2] ?? '', new RegExp(`^Usage: switchboard ${command} `));
  }
});
