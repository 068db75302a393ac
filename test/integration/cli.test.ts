/**
 * The `switchboard` CLI as a child process (through tsx, so dist/ is not
 * needed): `echo` logs JSON lines, echoes, and on SIGTERM closes clients with
 * 1001 and exits 0; `connect` sends stdin lines and prints what arrives.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { closeOf, harness, waitEvent, within } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = new URL('../../src/cli/main.ts', import.meta.url).href;
/** tsx compiles on start; give the child time. */
const START = 20_000;

interface Cli {
  child: ChildProcess;
  /** Every JSON line logged so far. */
  lines: Array<Record<string, unknown>>;
  stdout: string[];
  stderr: string[];
  /** Resolves with the first logged line with this `event`. */
  event(name: string, ms?: number): Promise<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function runCli(t: TestContext, args: string[]): Cli {
  const code = `import(${JSON.stringify(MAIN)}).then(async (m) => { process.exitCode = await m.main(${JSON.stringify(args)}); })`;
  const child = spawn(process.execPath, ['--import', 'tsx', '-e', code], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: Array<Record<string, unknown>> = [];
  const stdout: string[] = [];
  const stderr: string[] = [];
  const waiters: Array<() => void> = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    stdout.push(line);
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not JSON (the connect command prints plain text)
    }
    for (const w of waiters.splice(0)) w();
  });
  createInterface({ input: child.stderr! }).on('line', (line) => {
    stderr.push(line);
    for (const w of waiters.splice(0)) w();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return {
    child,
    lines,
    stdout,
    stderr,
    exited,
    event(name, ms = START) {
      return within(
        new Promise<Record<string, unknown>>((resolve) => {
          const check = (): void => {
            const found = lines.find((l) => l.event === name);
            if (found) resolve(found);
            else waiters.push(check);
          };
          check();
        }),
        ms,
        `the '${name}' log line (stderr: ${stderr.join(' | ')})`,
      );
    },
  };
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
  assert.ok(cli.lines.some((l) => l.event === 'shutdown' && l.signal === 'SIGTERM'));
  const closeLine = cli.lines.find((l) => l.event === 'close');
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
  assert.ok(cli.lines.some((l) => l.event === 'error' && l.code === 'WS_ERR_MESSAGE_TOO_BIG'));

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
    START,
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
  assert.deepEqual(cli.stdout.slice(0, 2), ['< echo: first line', '< echo: second line']);
  cli.child.stdin!.end();
  assert.deepEqual(await within(cli.exited, 10_000, 'exit'), { code: 0, signal: null });
  assert.ok(cli.stderr.some((l) => l.startsWith('closed: 1000')));
});

test('unknown command → exit 2; help → exit 0', async (t) => {
  const bad = runCli(t, ['frobnicate']);
  assert.equal((await within(bad.exited, START, 'exit')).code, 2);
  assert.ok(bad.stderr.some((l) => l.includes("unknown command 'frobnicate'")));
  const help = runCli(t, ['help']);
  assert.equal((await within(help.exited, START, 'exit')).code, 0);
  assert.ok(help.stdout.some((l) => l.startsWith('Usage: switchboard')));
});

test('echo without --port → exit 2 with a message', async (t) => {
  const cli = runCli(t, ['echo']);
  assert.equal((await within(cli.exited, START, 'exit')).code, 2);
  assert.ok(cli.stderr.some((l) => l.includes('--port is required')));
});
