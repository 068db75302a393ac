/**
 * `switchboard connect`, flag by flag: the real binary (through tsx, see
 * test/support/cli.ts) against a real WebSocketServer on a free loopback
 * port whose hooks record what arrives (request headers, messages, pings,
 * pongs, close codes); a real HTTPS server with a certificate made by
 * openssl; a real HTTP CONNECT proxy (node:http, in the test); a real HTTP
 * server answering 301/302; the realtime server for --token; a
 * pseudo-terminal (util-linux `script`) where a terminal changes what
 * happens (prompt, colours, slash commands by default).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { WebSocketServer, type WebSocket } from '../../../src/index.js';
import { COMMANDS } from '../../../src/cli/args.js';
import { CONNECT_OPTIONS } from '../../../src/cli/connect.js';
import { makeTestCertificate } from '../../support/certs.js';
import { runCli, startServe, type CliProcess, type SpawnOptions } from '../../support/cli.js';
import { httpConnectProxy } from '../../support/forward-proxies.js';
import { CHILD_WAIT } from '../../support/wait.js';

/** Waits that include a CLI's start through tsx: generous, the machine may be loaded (other test runs). */
const CLI_WAIT = 3 * CHILD_WAIT;
import { harness, listen, until, within, type Harness } from '../transport/helpers.js';
import { startServer } from '../realtime/helpers.js';
import { signToken } from '../../support/tokens.js';

let dir: string;
let serverCert: Buffer;
let serverKey: Buffer;
let clientCert: Buffer;
let clientKey: Buffer;

before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'switchboard-connect-'));
  const openssl = (args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe', timeout: 30_000 });
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server-key.pem', '-out', 'server.pem', '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost']);
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'client-key.pem', '-out', 'client.pem', '-days', '2', '-subj', '/CN=cli-client']);
  serverCert = readFileSync(path.join(dir, 'server.pem'));
  serverKey = readFileSync(path.join(dir, 'server-key.pem'));
  clientCert = readFileSync(path.join(dir, 'client.pem'));
  clientKey = readFileSync(path.join(dir, 'client-key.pem'));
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** What a test server saw. */
interface Observed {
  wss: WebSocketServer;
  port: number;
  url: string;
  requests: http.IncomingMessage[];
  sockets: WebSocket[];
  messages: Array<{ data: Buffer; isBinary: boolean }>;
  pongs: string[];
  closes: Array<{ code: number; reason: string }>;
}

/**
 * A WebSocketServer on 127.0.0.1 (on `server` if given) recording what
 * arrives; it echoes each message unless `echo: false`; `onConnection`
 * runs for each connection (its index from 0).
 */
async function observedServer(
  h: Harness,
  options: ConstructorParameters<typeof WebSocketServer>[0] = {},
  hooks: { echo?: boolean; onConnection?: (ws: WebSocket, index: number, req: http.IncomingMessage) => void } = {},
): Promise<Observed> {
  let wss: WebSocketServer;
  let port: number;
  let url: string;
  if (options.server) {
    wss = new WebSocketServer(options);
    h.track(wss);
    h.trackServer(options.server);
    port = await listen(options.server);
    url = `${options.server instanceof https.Server ? 'wss' : 'ws'}://localhost:${port}/`;
  } else {
    ({ wss, port } = await h.server(options));
    url = `ws://localhost:${port}/`;
  }
  const seen: Observed = { wss, port, url, requests: [], sockets: [], messages: [], pongs: [], closes: [] };
  wss.on('connection', (ws, req) => {
    const index = seen.sockets.length;
    seen.sockets.push(ws);
    seen.requests.push(req);
    ws.on('message', (data, isBinary) => {
      seen.messages.push({ data: data as Buffer, isBinary });
      if (hooks.echo !== false) ws.send(data as Buffer, { binary: isBinary });
    });
    ws.on('pong', (data: Buffer) => seen.pongs.push(String(data)));
    ws.on('close', (code: number, reason: Buffer) => seen.closes.push({ code, reason: String(reason) }));
    hooks.onConnection?.(ws, index, req);
  });
  return seen;
}

/** `switchboard connect ...args`, stdin piped (or on a pty), killed after the test. */
function connect(t: { after(fn: () => unknown): void }, args: string[], options: SpawnOptions = {}): CliProcess {
  return runCli(t, ['connect', ...args], { stdin: 'pipe', ...options });
}

async function exitOf(cli: CliProcess): Promise<number | null> {
  const { code } = await within(cli.exited, CLI_WAIT, `the CLI to exit (stderr: ${cli.stderr.join(' | ')})`);
  // 'exit' can come before the last lines are read: wait for the output to end too.
  await new Promise<void>((resolve) => (cli.child.stdout!.readableEnded ? resolve() : cli.child.stdout!.once('close', () => resolve())));
  return code;
}

function connected(cli: CliProcess, what = 'connected'): Promise<void> {
  return until(() => cli.stderr.some((l) => l.startsWith(what)), CLI_WAIT, `'${what}' on stderr (stderr: ${cli.stderr.join(' | ')})`);
}

const texts = (seen: Observed): string[] => seen.messages.map((m) => String(m.data));

test('--help lists every flag of connect, one line each, and the exit codes', async (t) => {
  const cli = connect(t, ['--help']);
  assert.equal(await exitOf(cli), 0);
  const help = cli.stdout.join('\n');
  for (const [name, spec] of Object.entries(CONNECT_OPTIONS)) {
    // Its own line, starting with it (and its short form).
    const line = cli.stdout.find((l) => new RegExp(`^  (-\\w, |    )--${name}\\b`).test(l));
    assert.ok(line, `--${name} has its line in connect --help`);
    if ('short' in spec) assert.ok(line.startsWith(`  -${spec.short}, --${name}`), `-${spec.short} is on the line of --${name}`);
  }
  assert.match(help, /exit 0\s+on a normal close, 1 otherwise .* 2 usage/s);
  assert.equal(COMMANDS.connect.options.length + 6, cli.stdout.length - 1, 'usage, blank, 3 description lines, blank, Options:, one line per entry');
});

test('-H/--header, -o/--origin and --no-deflate shape the request', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h, { perMessageDeflate: true });
  const cli = connect(t, [seen.url, '-H', 'X-One: 1', '--header', 'X-Two: two words', '-o', 'https://app.example', '--no-deflate']);
  cli.child.stdin!.end();
  assert.equal(await exitOf(cli), 0);
  const req = seen.requests[0]!;
  assert.equal(req.headers['x-one'], '1');
  assert.equal(req.headers['x-two'], 'two words');
  assert.equal(req.headers.origin, 'https://app.example');
  assert.equal(req.headers['sec-websocket-extensions'], undefined);
  const deflated = connect(t, [seen.url]);
  deflated.child.stdin!.end();
  assert.equal(await exitOf(deflated), 0);
  assert.match(String(seen.requests[1]!.headers['sec-websocket-extensions']), /permessage-deflate/);
  assert.ok(deflated.stderr.some((l) => /extensions: permessage-deflate/.test(l)));
});

test('-s/--subprotocol offers subprotocols in order (--protocol is an alias); the selected one is shown', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h, { handleProtocols: (offered) => (offered.has('chat.v2') ? 'chat.v2' : false) });
  const cli = connect(t, [seen.url, '-s', 'chat.v1', '--subprotocol', 'chat.v2', '--protocol', 'chat.v3']);
  cli.child.stdin!.end();
  assert.equal(await exitOf(cli), 0);
  assert.equal(seen.requests[0]!.headers['sec-websocket-protocol'], 'chat.v1, chat.v2, chat.v3');
  assert.match(cli.stderr[0]!, /^connected \(protocol: chat\.v2,/);
});

test('-k/--insecure, --ca, --cert/--key against an HTTPS server with a self-signed certificate', async (t) => {
  const h = harness(t);
  const server = https.createServer({ cert: serverCert, key: serverKey, requestCert: true, rejectUnauthorized: false, ca: clientCert });
  const peers: Array<string | null> = [];
  const seen = await observedServer(h, { server }, { onConnection: (_ws, _i, req) => {
      const cn = (req.socket as TLSSocket).getPeerCertificate().subject?.CN;
      peers.push(cn === undefined ? null : String(cn));
    },
  });

  const refused = connect(t, [seen.url]);
  assert.equal(await exitOf(refused), 1);
  assert.match(refused.stderr[0]!, /^error: self-signed certificate \(DEPTH_ZERO_SELF_SIGNED_CERT\): --ca FILE trusts a CA, -k skips the check$/);

  const insecure = connect(t, [seen.url, '-k', '-x', 'over tls', '--count', '1']);
  assert.equal(await exitOf(insecure), 0, insecure.stderr.join(' | '));
  assert.deepEqual(insecure.stdout, ['over tls']);

  const withCa = connect(t, [seen.url, '--insecure', '--ca', path.join(dir, 'server.pem'), '--cert', path.join(dir, 'client.pem'), '--key', path.join(dir, 'client-key.pem'), '-x', 'mutual', '-w', '0.3']);
  assert.equal(await exitOf(withCa), 0, withCa.stderr.join(' | '));
  const trusted = connect(t, [seen.url, '--ca', path.join(dir, 'server.pem'), '-x', 'trusted', '-w', '0.3']);
  assert.equal(await exitOf(trusted), 0, trusted.stderr.join(' | '));
  assert.deepEqual(texts(seen), ['over tls', 'mutual', 'trusted']);
  assert.deepEqual(peers, [null, 'cli-client', null], 'the client certificate is presented only with --cert/--key');

  const missing = connect(t, [seen.url, '--ca', path.join(dir, 'nope.pem')]);
  assert.equal(await exitOf(missing), 2);
  assert.match(missing.stderr[0]!, /--ca: cannot read .*nope\.pem \(ENOENT\)/);
  const half = connect(t, [seen.url, '--cert', path.join(dir, 'client.pem')]);
  assert.equal(await exitOf(half), 2);
  assert.match(half.stderr[0]!, /--cert and --key go together/);
});

test('--auth sends HTTP Basic credentials', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h);
  const cli = connect(t, [seen.url, '--auth', 'alice:s3cret:with-colon']);
  cli.child.stdin!.end();
  assert.equal(await exitOf(cli), 0);
  assert.equal(seen.requests[0]!.headers.authorization, `Basic ${Buffer.from('alice:s3cret:with-colon').toString('base64')}`);
  const bad = connect(t, [seen.url, '--auth', 'nocolon']);
  assert.equal(await exitOf(bad), 2);
  const both = connect(t, [seen.url, '--auth', 'a:b', '--token', 'x']);
  assert.equal(await exitOf(both), 2);
  assert.match(both.stderr[0]!, /--auth and --token both set the Authorization header/);
});

test('--token: the realtime server accepts a valid token (Authorization: Bearer) and refuses a bad one with 401; --reconnect does not retry a 401', async (t) => {
  const rt = await startServer(t);
  const token = await signToken('alice');
  const ok = connect(t, [rt.url, '--token', token, '-s', 'switchboard.v1.json', '-w', '0.3']);
  assert.equal(await exitOf(ok), 0, ok.stderr.join(' | '));
  assert.match(ok.stderr[0]!, /^connected \(protocol: switchboard\.v1\.json/);

  const bad = connect(t, [rt.url, '--token', 'not.a.token', '-s', 'switchboard.v1.json', '--reconnect']);
  assert.equal(await exitOf(bad), 1);
  assert.match(bad.stderr[0]!, /^error: the server refused the WebSocket upgrade: HTTP 401 Unauthorized/);
  assert.ok(bad.stderr.includes('not reconnecting: the server refused with HTTP 401'), bad.stderr.join(' | '));
});

test('-x (repeatable) sends once open, -w closes after the wait with 1000, exit 0; stdin EOF does not cut the wait short', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h, {}, { echo: false });
  const cli = connect(t, [seen.url, '-x', 'first', '--execute', 'second', '-w', '0.5']);
  cli.child.stdin!.end();
  assert.equal(await exitOf(cli), 0);
  assert.deepEqual(texts(seen), ['first', 'second']);
  await until(() => seen.closes.length === 1, 5000, 'the close');
  assert.deepEqual(seen.closes, [{ code: 1000, reason: '' }]);

  // -w alone: stays open for the wait even though stdin is at EOF, sending what was piped.
  const waited = connect(t, [seen.url, '-w', '0.4']);
  waited.child.stdin!.end('piped\n');
  assert.equal(await exitOf(waited), 0);
  assert.deepEqual(texts(seen), ['first', 'second', 'piped']);
});

test('--count N: exit 0 after N messages, printing exactly N', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h, {}, { onConnection: (ws) => ['one', 'two', 'three', 'four'].forEach((m) => ws.send(m)) });
  const cli = connect(t, [seen.url, '--count', '2']);
  assert.equal(await exitOf(cli), 0);
  assert.deepEqual(cli.stdout, ['one', 'two']);
  await until(() => seen.closes.length === 1, 5000, 'the close');
  assert.equal(seen.closes[0]!.code, 1000);
  const bad = connect(t, [seen.url, '--count', '0']);
  assert.equal(await exitOf(bad), 2);
});

test('binary: --hex and --base64 show binary messages and decode stdin lines; -x @file sends a file; raw bytes when piped without them', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h);
  const hex = connect(t, [seen.url, '--hex']);
  hex.child.stdin!.end('0102ff\nde ad be ef\nnot hex\n');
  assert.equal(await exitOf(hex), 0);
  assert.deepEqual(hex.stdout, ['0102ff', 'deadbeef']);
  assert.ok(hex.stderr.some((l) => l.startsWith("not hex: 'not hex'")), hex.stderr.join(' | '));
  assert.deepEqual(seen.messages.map((m) => [m.data.toString('hex'), m.isBinary]), [['0102ff', true], ['deadbeef', true]]);

  const b64 = connect(t, [seen.url, '--base64']);
  b64.child.stdin!.end('AQID\n');
  assert.equal(await exitOf(b64), 0);
  assert.deepEqual(b64.stdout, ['AQID']);
  assert.deepEqual(seen.messages[2]!.data, Buffer.from([1, 2, 3]));

  const file = path.join(dir, 'payload.bin');
  writeFileSync(file, Buffer.from('RAW BYTES\n'));
  const raw = connect(t, [seen.url, '-x', `@${file}`, '-x', '@@at sign', '--count', '2']);
  assert.equal(await exitOf(raw), 0);
  assert.deepEqual(seen.messages.slice(3).map((m) => [String(m.data), m.isBinary]), [['RAW BYTES\n', true], ['@at sign', false]]);
  // Piped stdout: the binary echo as its bytes (no prefix, no separator), the text with a newline.
  assert.deepEqual(raw.stdout, ['RAW BYTES', '@at sign']);

  const both = connect(t, [seen.url, '--hex', '--base64']);
  assert.equal(await exitOf(both), 2);
});

test('-P/--show-ping-pong with --ping-interval: pongs with their round-trip time; the server\'s pings are shown', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h, {}, { onConnection: (ws) => ws.ping('from-server') });
  const cli = connect(t, [seen.url, '-P', '--ping-interval', '0.2', '-w', '5']);
  assert.equal(await exitOf(cli), 0);
  assert.ok(cli.stderr.includes('< ping from-server'), cli.stderr.join(' | '));
  assert.ok(cli.stderr.some((l) => /^< pong 1 \(rtt \d+\.\d ms\)$/.test(l)), cli.stderr.join(' | '));
  assert.deepEqual(seen.pongs, ['from-server'], 'the client answered the server\'s ping');
  // Without -P, the automatic pings stay quiet.
  const quiet = connect(t, [seen.url, '--ping-interval', '0.2', '-w', '0.7']);
  assert.equal(await exitOf(quiet), 0);
  assert.ok(!quiet.stderr.some((l) => l.startsWith('< p')), quiet.stderr.join(' | '));
});

test('--ping-timeout: a server that never answers pings is dropped (1006, exit 1)', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h, { autoPong: false });
  const cli = connect(t, [seen.url, '--ping-interval', '0.2', '--ping-timeout', '0.4']);
  // stdin stays open: only the timeout ends it.
  assert.equal(await exitOf(cli), 1);
  assert.ok(cli.stderr.includes('no pong within 0.4 s (--ping-timeout): dropping the connection'), cli.stderr.join(' | '));
  assert.match(cli.stderr.at(-1)!, /^closed: 1006 /);
  assert.equal(seen.sockets.length, 1);
  const bad = connect(t, [seen.url, '--ping-timeout', '1']);
  assert.equal(await exitOf(bad), 2);
  assert.match(bad.stderr[0]!, /--ping-timeout needs --ping-interval/);
});

test('slash commands on piped stdin with --slash: /ping /pong /binary /json // /help, unknown ones, /close CODE REASON', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h, {}, { echo: false });
  const cli = connect(t, [seen.url, '--slash']);
  await connected(cli);
  cli.child.stdin!.write(['/ping abc', '/pong xyz', '/binary 0102ff', '/binary AQID', '/json {"a": [1, 2]}', '/json nope', '//not a command', '/bogus', '/help', 'plain'].join('\n') + '\n');
  await until(() => seen.messages.length === 5 && cli.stderr.some((l) => l.startsWith('< pong')), CLI_WAIT, 'the messages and the pong');
  cli.child.stdin!.write('/close 4001 all done\n');
  assert.equal(await exitOf(cli), 0, cli.stderr.join(' | '));
  assert.deepEqual(seen.messages.map((m) => [m.isBinary ? m.data.toString('hex') : String(m.data), m.isBinary]), [
    ['0102ff', true],
    ['010203', true],
    ['{"a":[1,2]}', false],
    ['/not a command', false],
    ['plain', false],
  ]);
  assert.deepEqual(seen.pongs, ['xyz']);
  assert.ok(cli.stderr.some((l) => /^< pong abc \(rtt \d+\.\d ms\)$/.test(l)), cli.stderr.join(' | '));
  assert.ok(cli.stderr.some((l) => l.startsWith('/json: not JSON (')));
  assert.ok(cli.stderr.includes('unknown command /bogus (/help lists them; start the line with // to send it as text)'));
  assert.ok(cli.stderr.some((l) => l.startsWith('/close [CODE [REASON]]')));
  await until(() => seen.closes.length === 1, 5000, 'the close');
  assert.deepEqual(seen.closes, [{ code: 4001, reason: 'all done' }]);

  // Without --slash (and not on a terminal), a line starting with / is text.
  const plain = connect(t, [seen.url]);
  plain.child.stdin!.end('/ping abc\n');
  assert.equal(await exitOf(plain), 0);
  assert.equal(String(seen.messages.at(-1)!.data), '/ping abc');
});

test('/quit closes with --close-code; /close with a code that cannot be sent is refused', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h);
  const cli = connect(t, [seen.url, '--slash', '--close-code', '4100', '--close-reason', 'quitting']);
  await connected(cli);
  cli.child.stdin!.write('/close 1006\n/quit\n');
  assert.equal(await exitOf(cli), 0);
  assert.ok(cli.stderr.includes('/close: 1006 cannot be sent (1000-1003, 1007-1014 or 3000-4999)'), cli.stderr.join(' | '));
  await until(() => seen.closes.length === 1, 5000, 'the close');
  assert.deepEqual(seen.closes, [{ code: 4100, reason: 'quitting' }]);
});

test('--json: incoming JSON pretty-printed (uncoloured when piped), outgoing lines checked before sending', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h);
  const cli = connect(t, [seen.url, '--json']);
  cli.child.stdin!.end('{"op":"sub","n":[1,true,null]}\nnot json\n"a string"\n');
  assert.equal(await exitOf(cli), 0);
  assert.deepEqual(texts(seen), ['{"op":"sub","n":[1,true,null]}', '"a string"']);
  assert.deepEqual(cli.stdout, ['{', '  "op": "sub",', '  "n": [', '    1,', '    true,', '    null', '  ]', '}', '"a string"']);
  assert.ok(cli.stderr.some((l) => /^not JSON \(Unexpected token .*\): not sent$/.test(l)), cli.stderr.join(' | '));
});

test('on a terminal: a prompt, "< " and colours, --json coloured, slash commands without --slash, binary shown as hex; /quit exits 0', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h, {}, { onConnection: (ws) => ws.send(Buffer.from([0xca, 0xfe])) });
  const cli = connect(t, [seen.url, '--json'], { tty: true });
  await until(() => cli.stdout.some((l) => l.includes('connected (protocol: none')), CLI_WAIT, `connected (output: ${cli.stdout.join(' | ')})`);
  cli.child.stdin!.write('{"hello":"world","n":42}\n');
  await until(() => seen.messages.length === 1 && cli.stdout.some((l) => l.includes('"world"')), CLI_WAIT, `the echo (output: ${cli.stdout.join(' | ')})`);
  cli.child.stdin!.write('/ping tty\n');
  await until(() => cli.stdout.some((l) => l.includes('< pong')), CLI_WAIT, `the pong (output: ${cli.stdout.join(' | ')})`);
  cli.child.stdin!.write('/quit\n');
  assert.equal(await exitOf(cli), 0, cli.stdout.join(' | '));
  const screen = cli.stdout.join('\n');
  assert.ok(screen.includes('> '), 'a prompt');
  assert.ok(screen.includes('\x1b[36m<\x1b[0m \x1b[2m[binary 2 bytes]\x1b[0m cafe'), 'binary as a hex line, prefixed and coloured');
  assert.ok(screen.includes('\x1b[36m<\x1b[0m {'), 'the pretty JSON starts after the coloured prefix');
  assert.ok(screen.includes('\x1b[34m"hello"\x1b[0m: \x1b[32m"world"\x1b[0m'), 'key blue, string green');
  assert.ok(screen.includes('\x1b[34m"n"\x1b[0m: \x1b[33m42\x1b[0m'), 'number yellow');
  assert.match(screen, /\x1b\[35m< pong\x1b\[0m tty \(rtt \d+\.\d ms\)/);
  assert.deepEqual(texts(seen), ['{"hello":"world","n":42}'], '/ping and /quit are commands on a terminal, not text');
  await until(() => seen.closes.length === 1, 5000, 'the close');
  assert.equal(seen.closes[0]!.code, 1000);

  // --no-color on a terminal: the same prefix, no escape codes around it. Ctrl-C closes with 1000 and exits 0.
  const plain = connect(t, [seen.url, '--no-color'], { tty: true });
  await until(() => plain.stdout.some((l) => l.includes('< [binary 2 bytes] cafe')), CLI_WAIT, `the binary message (output: ${plain.stdout.join(' | ')})`);
  plain.child.stdin!.write('\x03');
  assert.equal(await exitOf(plain), 0, plain.stdout.join(' | '));
  assert.doesNotMatch(plain.stdout.join('\n'), /\x1b\[\d+m/, 'no colour codes');
  await until(() => seen.closes.length === 2, 5000, 'the close after Ctrl-C');
  assert.equal(seen.closes[1]!.code, 1000);
});

test('--close-code/--close-reason are used at the end of input; exit 0 after the clean close this side started', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h);
  const cli = connect(t, [seen.url, '--close-code', '4000', '--close-reason', 'bye now']);
  cli.child.stdin!.end('last words\n');
  assert.equal(await exitOf(cli), 0, cli.stderr.join(' | '));
  await until(() => seen.closes.length === 1, 5000, 'the close');
  assert.deepEqual(seen.closes, [{ code: 4000, reason: 'bye now' }]);
  assert.deepEqual(cli.stdout, ['last words']);
  for (const bad of [['--close-code', '1006'], ['--close-code', 'x'], ['--close-reason', 'r'.repeat(124)]]) {
    const usage = connect(t, [seen.url, ...bad]);
    assert.equal(await exitOf(usage), 2, bad.join(' '));
  }
});

test('exit codes: a server close other than 1000 → 1 with the code named; usage errors → 2', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h, {}, { onConnection: (ws) => ws.close(1011, 'boom') });
  const cli = connect(t, [seen.url]);
  assert.equal(await exitOf(cli), 1);
  assert.equal(cli.stderr.at(-1), 'closed: 1011 (internal server error) reason: boom');
  for (const args of [['ftp://example.com/'], [seen.url, '-s', 'bad protocol'], [seen.url, '--proxy', 'socks4://proxy:1080'], [seen.url, '-w', '-1'], []]) {
    const usage = connect(t, args);
    assert.equal(await exitOf(usage), 2, args.join(' '));
    assert.match(usage.stderr.find((l) => l.startsWith('Usage:')) ?? '', /^Usage: switchboard connect URL/);
  }
});

/** An HTTP server that answers each path in `routes` with a redirect to the URL it returns. */
async function redirector(h: Harness, routes: Record<string, { status: number; to: () => string }>) {
  const hits: string[] = [];
  const server = http.createServer((req, res) => {
    hits.push(req.url ?? '');
    const route = routes[req.url ?? ''];
    if (!route) {
      res.writeHead(404).end('no route');
      return;
    }
    res.writeHead(route.status, { Location: route.to() }).end();
  });
  h.trackServer(server);
  const port = await listen(server);
  return { port, hits };
}

test('-L/--location follows 301 and 302 to the WebSocket server; without -L the 3xx is shown with its Location; --max-redirects bounds it', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h);
  const r = await redirector(h, {
    '/old': { status: 301, to: () => '/older' },
    '/older': { status: 302, to: () => `ws://127.0.0.1:${seen.port}/final` },
  });
  const followed = connect(t, [`ws://127.0.0.1:${r.port}/old`, '-L', '-x', 'made it', '-w', '0.3']);
  assert.equal(await exitOf(followed), 0, followed.stderr.join(' | '));
  assert.deepEqual(r.hits, ['/old', '/older']);
  assert.equal(seen.requests[0]!.url, '/final');
  assert.deepEqual(texts(seen), ['made it']);
  assert.ok(followed.stderr.includes(`redirected to ws://127.0.0.1:${r.port}/older`));
  assert.ok(followed.stderr.includes(`connected at ws://127.0.0.1:${seen.port}/final (protocol: none, extensions: none)`), followed.stderr.join(' | '));

  const notFollowed = connect(t, [`ws://127.0.0.1:${r.port}/old`]);
  assert.equal(await exitOf(notFollowed), 1);
  assert.deepEqual(notFollowed.stderr.slice(0, 2), ['error: the server refused the WebSocket upgrade: HTTP 301 Moved Permanently', '  Location: /older (-L follows redirects)']);

  const bounded = connect(t, [`ws://127.0.0.1:${r.port}/old`, '--max-redirects', '1']);
  assert.equal(await exitOf(bounded), 1);
  assert.equal(bounded.stderr[1], 'error: Maximum redirects exceeded (1): more redirects than --max-redirects allows', bounded.stderr.join(' | '));
});

/** {@link httpConnectProxy}, closed after the test. */
async function connectProxy(h: Harness, refuse?: number) {
  const proxy = await httpConnectProxy({ refuse });
  h.defer(() => proxy.close());
  return proxy;
}

test('--proxy tunnels through HTTP CONNECT (with Proxy-Authorization from the URL); HTTP_PROXY and HTTPS_PROXY are honoured, NO_PROXY bypasses', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h);
  const proxy = await connectProxy(h);
  const viaFlag = connect(t, [seen.url, '--proxy', proxy.url.replace('http://', 'http://bob:pw@'), '-x', 'through the tunnel', '-w', '0.3']);
  assert.equal(await exitOf(viaFlag), 0, viaFlag.stderr.join(' | '));
  assert.deepEqual(proxy.targets, [`localhost:${seen.port}`]);
  assert.deepEqual(proxy.auth, [`Basic ${Buffer.from('bob:pw').toString('base64')}`]);
  assert.deepEqual(texts(seen), ['through the tunnel']);

  const viaEnv = connect(t, [seen.url, '-x', 'env', '-w', '0.3'], { env: { HTTP_PROXY: proxy.url } });
  assert.equal(await exitOf(viaEnv), 0, viaEnv.stderr.join(' | '));
  assert.equal(proxy.targets.length, 2);

  const bypassed = connect(t, [seen.url, '-x', 'direct', '-w', '0.3'], { env: { HTTP_PROXY: proxy.url, NO_PROXY: 'example.com,localhost' } });
  assert.equal(await exitOf(bypassed), 0, bypassed.stderr.join(' | '));
  assert.equal(proxy.targets.length, 2, 'NO_PROXY: no CONNECT');

  // wss:// through HTTPS_PROXY: TLS inside the tunnel (the proxy sees host:port only).
  const server = https.createServer({ cert: serverCert, key: serverKey });
  const secure = await observedServer(h, { server });
  const tls = connect(t, [secure.url, '--ca', path.join(dir, 'server.pem'), '-x', 'tls in tunnel', '-w', '0.3', '-v'], { env: { HTTPS_PROXY: proxy.url } });
  assert.equal(await exitOf(tls), 0, tls.stderr.join(' | '));
  assert.equal(proxy.targets[2], `localhost:${secure.port}`);
  assert.deepEqual(texts(secure), ['tls in tunnel']);
  assert.ok(tls.stderr.some((l) => /^\* timings: proxy 127\.0\.0\.1:\d+ TCP \d+\.\d ms, CONNECT localhost:\d+ \d+\.\d ms, TLS /.test(l)), tls.stderr.join(' | '));

  const refusing = await connectProxy(h, 407);
  const refused = connect(t, [seen.url, '--proxy', refusing.url]);
  assert.equal(await exitOf(refused), 1);
  assert.match(refused.stderr[0]!, /^error: proxy 127\.0\.0\.1:\d+ refused CONNECT localhost:\d+: HTTP 407 Proxy Authentication Required$/);
});

test('--reconnect: a dropped connection is reopened after a backoff and the -x messages are sent again', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h, {}, {
    echo: false,
    onConnection: (ws, index) =>
      ws.on('message', () => {
        if (index === 0) ws.terminate();
        else ws.send('welcome back');
      }),
  });
  const cli = connect(t, [seen.url, '--reconnect', '-x', 'hello', '--count', '1']);
  assert.equal(await exitOf(cli), 0, cli.stderr.join(' | '));
  assert.deepEqual(texts(seen), ['hello', 'hello']);
  assert.equal(seen.sockets.length, 2);
  assert.deepEqual(cli.stdout, ['welcome back']);
  assert.ok(cli.stderr.some((l) => /^reconnecting in 0\.[2-5] s \(attempt 1\)$/.test(l)), cli.stderr.join(' | '));
  assert.equal(cli.stderr.filter((l) => l.startsWith('connected')).length, 2);
});

test('-v/--verbose: request and response headers (credentials redacted), TLS version, certificate, timings', async (t) => {
  const h = harness(t);
  const server = https.createServer({ cert: serverCert, key: serverKey });
  const seen = await observedServer(h, { server });
  const cli = connect(t, [seen.url, '-v', '--ca', path.join(dir, 'server.pem'), '--auth', 'u:p', '-H', 'X-Trace: 1']);
  cli.child.stdin!.end();
  assert.equal(await exitOf(cli), 0, cli.stderr.join(' | '));
  const err = cli.stderr;
  assert.equal(err[0], '> GET / HTTP/1.1');
  assert.ok(err.includes('> Authorization: Basic <redacted>'), err.join('\n'));
  assert.ok(err.includes('> X-Trace: 1'));
  assert.ok(err.includes(`> Host: localhost:${seen.port}`));
  assert.ok(err.includes('< HTTP/1.1 101 Switching Protocols'));
  assert.ok(err.some((l) => /^< Sec-WebSocket-Accept: /i.test(l)));
  assert.ok(err.some((l) => /^\* TLS: TLSv1\.[23], cipher \S+, ALPN none$/.test(l)), err.join('\n'));
  assert.ok(err.includes('* certificate: subject CN=localhost; issuer CN=localhost'), err.join('\n'));
  assert.ok(err.some((l) => /^\* certificate: expires \S+ \(in \d+ (day|hour)s?\); DNS:localhost; verified$/.test(l)), err.join('\n'));
  assert.ok(err.some((l) => /^\* timings: DNS \d+\.\d ms, TCP \d+\.\d ms, TLS \d+\.\d ms, HTTP \d+\.\d ms; total \d+\.\d ms$/.test(l)), err.join('\n'));
  assert.ok(err.indexOf('< HTTP/1.1 101 Switching Protocols') < err.findIndex((l) => l.startsWith('connected')), 'the answer prints before connected');
});

test('--http2 is accepted and passes http2: true to the client; a server without RFC 8441 is reached over HTTP/1.1', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h);
  const cli = connect(t, [seen.url, '--http2', '-x', 'h2 asked', '-w', '0.3']);
  assert.equal(await exitOf(cli), 0, cli.stderr.join(' | '));
  assert.deepEqual(texts(seen), ['h2 asked']);
  assert.equal(seen.requests[0]!.httpVersion, '1.1');
});

/** `switchboard serve` over TLS (h2 and HTTP/1.1 on one port, ALPN) with a fresh certificate; `config` as JSON (`{ "http2": false }`...). */
async function tlsServe(t: { after(fn: () => unknown): void }, config?: object): Promise<{ port: number; ca: string }> {
  const cert = makeTestCertificate();
  t.after(() => cert.remove());
  const args = ['--tls-cert', cert.certFile, '--tls-key', cert.keyFile];
  if (config) {
    const file = path.join(cert.dir, 'config.json');
    writeFileSync(file, JSON.stringify(config));
    args.push('--config', file);
  }
  const serve = await startServe(0, args);
  t.after(() => serve.stop());
  return { port: serve.port, ca: cert.certFile };
}

test('--http2 -v against serve over TLS: ALPN h2, the server\'s SETTINGS (ENABLE_CONNECT_PROTOCOL), the CONNECT pseudo-headers, :status and headers, timings; a refusal on the stream', async (t) => {
  const { port, ca } = await tlsServe(t);
  const cli = connect(t, [`wss://localhost:${port}/rt`, '--http2', '-v', '--ca', ca, '--auth', 'u:p', '-H', 'X-Trace: 1']);
  await connected(cli);
  cli.child.stdin!.end();
  assert.equal(await exitOf(cli), 0, cli.stderr.join('\n'));
  const err = cli.stderr;
  const at = (line: string | RegExp): number => err.findIndex((l) => (typeof line === 'string' ? l === line : line.test(l)));
  const expectLine = (line: string | RegExp): number => {
    const i = at(line);
    assert.ok(i !== -1, `${line} in:\n${err.join('\n')}`);
    return i;
  };
  const order = [
    expectLine(`* HTTP/2: new session to https://localhost:${port} (ALPN h2)`),
    expectLine(/^\* TLS: TLSv1\.[23], cipher \S+, ALPN h2$/),
    expectLine(/^\* certificate: expires \S+ \(in \d+ (day|hour)s?\); DNS:localhost.*; verified$/),
    expectLine(/^\* HTTP\/2 SETTINGS from the server: ENABLE_CONNECT_PROTOCOL=1 \(WebSockets over HTTP\/2 allowed, RFC 8441\), MAX_CONCURRENT_STREAMS=\d+, INITIAL_WINDOW_SIZE=\d+/),
    expectLine('> :method: CONNECT'),
    expectLine('> :protocol: websocket'),
    expectLine('> :scheme: https'),
    expectLine('> :path: /rt'),
    expectLine(`> :authority: localhost:${port}`),
    expectLine('> sec-websocket-version: 13'),
    expectLine('< :status: 200'),
    expectLine(/^\* timings: TCP\+TLS \d+\.\d ms, SETTINGS \d+\.\d ms, CONNECT \d+\.\d ms; total \d+\.\d ms; stream 1$/),
    expectLine(/^connected \(protocol: none, extensions: \S.*, over HTTP\/2\)$/),
  ];
  assert.deepEqual(order, [...order].sort((a, b) => a - b), `in this order:\n${err.join('\n')}`);
  // Credentials redacted on h2 too; the header passed through (lower case, as h2 wants); no HTTP/1.1 request at all.
  expectLine('> authorization: Basic <redacted>');
  expectLine('> x-trace: 1');
  assert.equal(at(/^> GET /), -1, 'no HTTP/1.1 request');
  assert.equal(at(/falling back/), -1);

  // A refusal is an ordinary answer on the stream: its :status and headers, then the error.
  const refused = connect(t, [`wss://localhost:${port}/no-such-path`, '--http2', '-v', '--ca', ca]);
  assert.equal(await exitOf(refused), 1);
  assert.ok(refused.stderr.includes('< :status: 404'), refused.stderr.join('\n'));
  assert.ok(refused.stderr.includes('> :path: /no-such-path'));
  assert.ok(refused.stderr.some((l) => /^error: the server refused the WebSocket upgrade: HTTP 404 Not Found$/.test(l)), refused.stderr.join('\n'));
});

test('--http2 -v falls back to HTTP/1.1 and says why: no h2 in ALPN (serve with http2: false), SETTINGS without ENABLE_CONNECT_PROTOCOL, cleartext h2c refused', async (t) => {
  const noH2 = await tlsServe(t, { http2: false });
  const alpn = connect(t, [`wss://localhost:${noH2.port}/rt`, '--http2', '-v', '--ca', noH2.ca]);
  await connected(alpn);
  alpn.child.stdin!.end();
  assert.equal(await exitOf(alpn), 0, alpn.stderr.join('\n'));
  const a = alpn.stderr;
  const reason = a.indexOf('* HTTP/2: falling back to HTTP/1.1: the server does not offer h2 in ALPN (TLS alert no_application_protocol)');
  assert.ok(reason !== -1, a.join('\n'));
  assert.ok(a.indexOf('> GET /rt HTTP/1.1') > reason, 'then the HTTP/1.1 Upgrade');
  assert.ok(a.includes('< HTTP/1.1 101 Switching Protocols'));
  assert.ok(a.some((l) => /^\* TLS: TLSv1\.[23], cipher \S+, ALPN none$/.test(l)), a.join('\n'));
  assert.ok(a.some((l) => /^connected \(.*, over HTTP\/1\.1\)$/.test(l)), a.join('\n'));

  // An h2 server that does not advertise RFC 8441 (node:http2, allowHTTP1, Upgrade handled on HTTP/1.1).
  const h = harness(t);
  const cert = makeTestCertificate();
  t.after(() => cert.remove());
  const server = http2.createSecureServer({ allowHTTP1: true, cert: cert.cert, key: cert.key, settings: { enableConnectProtocol: false } });
  const wss = new WebSocketServer({ noServer: true });
  h.track(wss);
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (d) => ws.send(d))));
  h.trackServer(server as unknown as net.Server);
  const port = await listen(server as unknown as net.Server);
  const settings = connect(t, [`wss://localhost:${port}/`, '--http2', '-v', '--ca', cert.certFile, '-x', 'over 1.1', '-w', '0.3']);
  assert.equal(await exitOf(settings), 0, settings.stderr.join('\n'));
  const s = settings.stderr;
  const said = s.findIndex((l) => /^\* HTTP\/2 SETTINGS from the server: no ENABLE_CONNECT_PROTOCOL \(no WebSockets over HTTP\/2\), MAX_CONCURRENT_STREAMS=unlimited/.test(l));
  assert.ok(said !== -1, s.join('\n'));
  assert.ok(s.some((l) => /^\* TLS: TLSv1\.[23], cipher \S+, ALPN h2$/.test(l)), 'the h2 session was up');
  const fell = s.indexOf("* HTTP/2: falling back to HTTP/1.1: the server's SETTINGS do not enable extended CONNECT (no SETTINGS_ENABLE_CONNECT_PROTOCOL, RFC 8441 §3)");
  assert.ok(fell > said, s.join('\n'));
  assert.ok(s.indexOf('> GET / HTTP/1.1') > fell);
  assert.equal(s.findIndex((l) => l.startsWith('> :method')), -1, 'no CONNECT was sent');
  assert.deepEqual(settings.stdout, ['over 1.1']);

  // ws:// with --http2 is cleartext h2 with prior knowledge: an HTTP/1.1-only server answers it with garbage.
  const plain = await observedServer(h);
  const h2c = connect(t, [plain.url, '--http2', '-v', '-x', 'h2c', '-w', '0.3']);
  assert.equal(await exitOf(h2c), 0, h2c.stderr.join('\n'));
  assert.ok(h2c.stderr.includes(`* HTTP/2: new session to http://localhost:${plain.port} (cleartext h2c, prior knowledge)`), h2c.stderr.join('\n'));
  assert.ok(h2c.stderr.some((l) => l.startsWith('* HTTP/2: falling back to HTTP/1.1: the server does not speak cleartext HTTP/2 (h2c with prior knowledge)')), h2c.stderr.join('\n'));
});

test('stdout closed by its reader (connect … | head -1): EPIPE closes the connection normally, no crash', async (t) => {
  const h = harness(t);
  const seen = await observedServer(h, {}, { onConnection: (ws) => ws.send('one') });
  const cli = connect(t, [seen.url]);
  await until(() => cli.stdout.includes('one'), CLI_WAIT, `the first message (stderr: ${cli.stderr.join(' | ')})`);
  cli.child.stdout!.destroy();
  seen.sockets[0]!.send('two');
  const { code } = await within(cli.exited, CLI_WAIT, `the CLI to exit (stderr: ${cli.stderr.join(' | ')})`);
  assert.equal(code, 0, cli.stderr.join(' | '));
  assert.ok(cli.stderr.includes('stdout: EPIPE: closing'), cli.stderr.join(' | '));
  await until(() => seen.closes.length === 1, 5000, 'the close');
  assert.equal(seen.closes[0]!.code, 1000);
});
