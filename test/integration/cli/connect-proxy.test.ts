/**
 * `switchboard connect --proxy` beyond plain HTTP CONNECT, the real binary
 * (through tsx) against real proxies on free loopback ports:
 *
 * - SOCKS5 (RFC 1928/1929): Debian's `microsocks`, without and with
 *   username/password; its log tells which name reached it (socks5h://
 *   sends the name, socks5:// the address resolved here); `ALL_PROXY`;
 *   a refused target, a name the proxy cannot resolve, the proxy down.
 * - A SOCKS5 peer scripted in the test (test/support/forward-proxies.ts) for
 *   the answers a real proxy gives only misconfigured: "not allowed by
 *   ruleset", an unassigned reply code, a wrong version, a method not
 *   offered, a reply cut short. Each is one precise error line and exit 1,
 *   never a crash.
 * - An `https://` proxy (node:https in the test): TLS to the proxy, CONNECT
 *   inside it; the proxy's certificate trusted with --proxy-ca (or
 *   --proxy-insecure), separately from the server's (-k, --ca); wss:// is
 *   TLS inside TLS.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type net from 'node:net';
import { after, before, test } from 'node:test';
import { WebSocketServer } from '../../../src/index.js';
import { makeTestCertificate, type TestCertificate } from '../../support/certs.js';
import { runCli, type CliProcess, type SpawnOptions } from '../../support/cli.js';
import { httpConnectProxy, MicroSocks, scriptedSocks5 } from '../../support/forward-proxies.js';
import { freePort } from '../../support/child-server.js';
import { CHILD_WAIT, within } from '../../support/wait.js';

type T = { after(fn: () => unknown): void };

/** Waits that include a CLI's start through tsx: generous, the machine may be loaded. */
const CLI_WAIT = 3 * CHILD_WAIT;

let serverCert: TestCertificate;
let proxyCert: TestCertificate;

before(() => {
  serverCert = makeTestCertificate();
  proxyCert = makeTestCertificate();
});

after(() => {
  serverCert?.remove();
  proxyCert?.remove();
});

/**
 * An echo WebSocket server on 127.0.0.1, addressed as localhost; records each message. `ws://`
 * by default; `'tls'`: wss:// over HTTP/1.1; `'h2'`: wss:// on node:http2 (RFC 8441, HTTP/1.1 too),
 * counting the h2 sessions made to it.
 */
async function echoServer(t: T, kind: 'plain' | 'tls' | 'h2' = 'plain'): Promise<{ url: string; port: number; messages: string[]; sessions: () => number }> {
  const tls = { cert: serverCert.cert, key: serverCert.key };
  const server = kind === 'h2' ? http2.createSecureServer({ allowHTTP1: true, ...tls }) : kind === 'tls' ? https.createServer(tls) : http.createServer();
  const sessions: http2.ServerHttp2Session[] = [];
  server.on('session', (s: http2.ServerHttp2Session) => sessions.push(s));
  const wss = new WebSocketServer({ server });
  const messages: string[] = [];
  wss.on('connection', (ws) =>
    ws.on('message', (data) => {
      messages.push(String(data));
      ws.send(String(data));
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const ws of wss.clients) ws.terminate();
        for (const s of sessions) s.destroy();
        wss.close(() => server.close(() => resolve()));
      }),
  );
  const port = (server.address() as net.AddressInfo).port;
  return { url: `${kind === 'plain' ? 'ws' : 'wss'}://localhost:${port}/`, port, messages, sessions: () => sessions.length };
}

/** `switchboard connect ...args` with stdin piped; resolves with its exit code once its output ended. */
async function connect(t: T, args: string[], options: SpawnOptions = {}): Promise<{ code: number | null; cli: CliProcess }> {
  const cli = runCli(t, ['connect', ...args], { stdin: 'pipe', ...options });
  cli.child.stdin!.end();
  const { code } = await within(cli.exited, CLI_WAIT, `connect to exit (stderr: ${cli.stderr.join(' | ')})`);
  await new Promise<void>((resolve) => (cli.child.stdout!.readableEnded ? resolve() : cli.child.stdout!.once('close', () => resolve())));
  return { code, cli };
}

async function microsocks(t: T, options: { user?: string; password?: string } = {}): Promise<MicroSocks> {
  const server = await MicroSocks.start(options);
  t.after(() => server.dispose());
  return server;
}

test('socks5h:// through microsocks: the name goes to the proxy; socks5:// sends the address resolved here; ALL_PROXY is honoured; -v tells which', async (t) => {
  const target = await echoServer(t);
  const socks = await microsocks(t);
  const proxy = `socks5h://127.0.0.1:${socks.port}`;

  const remote = await connect(t, [target.url, '--proxy', proxy, '-x', 'via socks5h', '-w', '0.3', '-v']);
  assert.equal(remote.code, 0, remote.cli.stderr.join('\n'));
  assert.deepEqual(remote.cli.stdout, ['via socks5h'], 'the echo came back through the tunnel');
  assert.deepEqual(socks.tunnels, [`localhost:${target.port}`], `microsocks saw the name (log: ${socks.log})`);
  const err = remote.cli.stderr;
  assert.ok(err.includes(`* proxy: ${proxy}, SOCKS5 CONNECT localhost:${target.port} (the proxy resolves the name); the proxy connects from 0.0.0.0:0`), err.join('\n'));
  assert.ok(err.some((l) => new RegExp(`^\\* timings: proxy 127\\.0\\.0\\.1:${socks.port} TCP \\d+\\.\\d ms, SOCKS5 CONNECT localhost:${target.port} \\d+\\.\\d ms, HTTP `).test(l)), err.join('\n'));

  const local = await connect(t, [target.url, '--proxy', `socks5://127.0.0.1:${socks.port}`, '-x', 'via socks5', '-w', '0.3']);
  assert.equal(local.code, 0, local.cli.stderr.join('\n'));
  assert.match(socks.tunnels[1]!, new RegExp(`^(127\\.0\\.0\\.1|\\[::1\\]):${target.port}$`), 'socks5://: an address, resolved by the client');

  // ALL_PROXY (the conventional variable for SOCKS, as curl): used for ws:// and wss:// alike.
  const viaEnv = await connect(t, [target.url, '-x', 'via ALL_PROXY', '-w', '0.3'], { env: { ALL_PROXY: proxy } });
  assert.equal(viaEnv.code, 0, viaEnv.cli.stderr.join('\n'));
  assert.equal(socks.tunnels.length, 3);
  assert.deepEqual(target.messages, ['via socks5h', 'via socks5', 'via ALL_PROXY']);
  // NO_PROXY still bypasses it.
  const bypassed = await connect(t, [target.url, '-x', 'direct', '-w', '0.3'], { env: { ALL_PROXY: proxy, NO_PROXY: 'localhost' } });
  assert.equal(bypassed.code, 0, bypassed.cli.stderr.join('\n'));
  assert.equal(socks.tunnels.length, 3, 'NO_PROXY: no tunnel');
});

test('wss:// through socks5h://: TLS to the server inside the SOCKS5 tunnel (the server certificate checked as usual)', async (t) => {
  const target = await echoServer(t, 'tls');
  const socks = await microsocks(t);
  const { code, cli } = await connect(t, [target.url, '--proxy', `socks5h://127.0.0.1:${socks.port}`, '--ca', serverCert.certFile, '-x', 'tls in socks', '-w', '0.3', '-v']);
  assert.equal(code, 0, cli.stderr.join('\n'));
  assert.deepEqual(target.messages, ['tls in socks']);
  assert.ok(cli.stderr.some((l) => /^\* TLS: TLSv1\.[23], cipher \S+, ALPN none$/.test(l)), cli.stderr.join('\n'));
  assert.ok(cli.stderr.some((l) => /^\* timings: proxy \S+ TCP [\d.]+ ms, SOCKS5 CONNECT localhost:\d+ [\d.]+ ms, TLS [\d.]+ ms, HTTP /.test(l)), cli.stderr.join('\n'));
});

test('SOCKS5 username/password (RFC 1929) from the URL: accepted; a wrong password and missing credentials are refused with the reason', async (t) => {
  const target = await echoServer(t);
  const socks = await microsocks(t, { user: 'bob', password: 's3cret' });
  const ok = await connect(t, [target.url, '--proxy', `socks5h://bob:s3cret@127.0.0.1:${socks.port}`, '-x', 'authenticated', '-w', '0.3']);
  assert.equal(ok.code, 0, ok.cli.stderr.join('\n'));
  assert.deepEqual(target.messages, ['authenticated']);

  const wrong = await connect(t, [target.url, '--proxy', `socks5h://bob:nope@127.0.0.1:${socks.port}`]);
  assert.equal(wrong.code, 1);
  assert.match(wrong.cli.stderr[0]!, new RegExp(`^error: SOCKS5 proxy 127\\.0\\.0\\.1:${socks.port} refused the username/password of 'bob' \\(RFC 1929 status 0x[0-9a-f]{2}\\)$`));

  const none = await connect(t, [target.url, '--proxy', `socks5h://127.0.0.1:${socks.port}`]);
  assert.equal(none.code, 1);
  assert.equal(
    none.cli.stderr[0],
    `error: SOCKS5 proxy 127.0.0.1:${socks.port} requires authentication (it accepts no method offered: no authentication; reply 0xff): put the credentials in the URL, socks5://USER:PASSWORD@host:port`,
  );
  assert.equal(target.messages.length, 1, 'nothing got through unauthenticated');
});

test('SOCKS5 failures, each one line: a refused target, a name the proxy cannot resolve, a name this side cannot resolve, the proxy down', async (t) => {
  const socks = await microsocks(t);
  const proxy = `socks5h://127.0.0.1:${socks.port}`;
  const closedPort = await freePort();

  const refused = await connect(t, [`ws://localhost:${closedPort}/`, '--proxy', proxy]);
  assert.equal(refused.code, 1);
  assert.equal(refused.cli.stderr[0], `error: SOCKS5 proxy 127.0.0.1:${socks.port} refused CONNECT localhost:${closedPort}: connection refused (reply 0x05)`);

  // microsocks answers a failed lookup with "general failure" (RFC 1928 has no code for it).
  const unresolvable = await connect(t, ['ws://no-such-host.invalid/', '--proxy', proxy]);
  assert.equal(unresolvable.code, 1);
  assert.equal(unresolvable.cli.stderr[0], `error: SOCKS5 proxy 127.0.0.1:${socks.port} refused CONNECT no-such-host.invalid:80: general SOCKS server failure (reply 0x01)`);

  const localLookup = await connect(t, ['ws://no-such-host.invalid/', '--proxy', `socks5://127.0.0.1:${socks.port}`]);
  assert.equal(localLookup.code, 1);
  assert.match(localLookup.cli.stderr[0]!, /^error: cannot resolve no-such-host\.invalid \((ENOTFOUND|EAI_AGAIN)\): socks5:\/\/ resolves names here; socks5h:\/\/ has the proxy resolve them$/);

  const downPort = await freePort();
  const down = await connect(t, ['ws://localhost:1/', '--proxy', `socks5h://127.0.0.1:${downPort}`]);
  assert.equal(down.code, 1);
  assert.equal(down.cli.stderr[0], `error: proxy socks5h://127.0.0.1:${downPort}: connect ECONNREFUSED 127.0.0.1:${downPort}`);
  assert.equal(socks.tunnels.length, 0);
});

test('a SOCKS5 peer answering badly: ruleset refusal, unassigned code, not SOCKS5, a method not offered, a reply cut short — precise errors, exit 1, no crash', async (t) => {
  const cases: Array<{ script: Parameters<typeof scriptedSocks5>[0]; expect: (proxy: string) => RegExp | string }> = [
    { script: { reply: 0x02 }, expect: (p) => `error: SOCKS5 proxy ${p} refused CONNECT localhost:9: connection not allowed by ruleset (reply 0x02)` },
    { script: { reply: 0x04 }, expect: (p) => `error: SOCKS5 proxy ${p} refused CONNECT localhost:9: host unreachable (reply 0x04)` },
    { script: { reply: 0x2a }, expect: (p) => `error: SOCKS5 proxy ${p} refused CONNECT localhost:9: unassigned reply code (reply 0x2a)` },
    { script: { greeting: 'HTTP/1.1 400 Bad Request\r\n\r\n' }, expect: (p) => `error: proxy ${p} does not speak SOCKS5: it answered the greeting with version 0x48 ('HT'…: an HTTP proxy? use http://)` },
    { script: { greeting: [0x04, 0x5a] }, expect: (p) => `error: proxy ${p} does not speak SOCKS5: it answered the greeting with version 0x04` },
    { script: { greeting: [0x05, 0x02] }, expect: (p) => `error: SOCKS5 proxy ${p} chose authentication method 0x02, which was not offered (a protocol error)` },
    { script: { reply: 0x00, cutReplyAfter: 6 }, expect: (p) => `error: SOCKS5 proxy ${p} closed the connection in the middle of its answer to the CONNECT (its bound address)` },
    { script: { reply: 0x00, cutReplyAfter: 0 }, expect: (p) => `error: SOCKS5 proxy ${p} closed the connection before answering the CONNECT localhost:9` },
  ];
  for (const { script, expect } of cases) {
    const peer = await scriptedSocks5(script);
    t.after(() => peer.close());
    const hostPort = peer.url.slice('socks5://'.length);
    const { code, cli } = await connect(t, ['ws://localhost:9/', '--proxy', peer.url.replace('socks5:', 'socks5h:')]);
    assert.equal(code, 1, JSON.stringify(script));
    assert.equal(cli.stderr[0], expect(hostPort), JSON.stringify(script));
    assert.equal(cli.stderr.length, 2, `the error and the close line only: ${cli.stderr.join(' | ')}`);
  }
  // What went on the wire: socks5h:// sends the name (ATYP 3), socks5:// the address (ATYP 1).
  const peer = await scriptedSocks5({ reply: 0x02 });
  t.after(() => peer.close());
  await connect(t, ['ws://localhost:9/', '--proxy', peer.url.replace('socks5:', 'socks5h:')]);
  await connect(t, ['ws://localhost:9/', '--proxy', peer.url]);
  assert.deepEqual(peer.requests, [
    { atyp: 3, host: 'localhost', port: 9 },
    { atyp: 1, host: '127.0.0.1', port: 9 },
  ]);
});

test('an https:// proxy: TLS to the proxy then CONNECT inside it; its certificate trusted by --proxy-ca or skipped by --proxy-insecure, never by -k or --ca', async (t) => {
  const target = await echoServer(t);
  const proxy = await httpConnectProxy({ tls: { cert: proxyCert.cert, key: proxyCert.key } });
  t.after(() => proxy.close());

  const ok = await connect(t, [target.url, '--proxy', proxy.url.replace('https://', 'https://ann:pw@'), '--proxy-ca', proxyCert.certFile, '-x', 'via https proxy', '-w', '0.3', '-v']);
  assert.equal(ok.code, 0, ok.cli.stderr.join('\n'));
  assert.deepEqual(proxy.targets, [`localhost:${target.port}`]);
  assert.deepEqual(proxy.auth, [`Basic ${Buffer.from('ann:pw').toString('base64')}`]);
  const err = ok.cli.stderr;
  assert.ok(err.includes(`* proxy: https://localhost:${proxy.port}, HTTP CONNECT localhost:${target.port}`), err.join('\n'));
  assert.ok(err.some((l) => /^\* proxy TLS: TLSv1\.[23], cipher \S+, ALPN http\/1\.1$/.test(l)), err.join('\n'));
  assert.ok(err.some((l) => /^\* proxy certificate: expires \S+ \(in \d+ (day|hour)s?\); DNS:localhost.*; verified$/.test(l)), err.join('\n'));
  assert.ok(err.some((l) => /^\* timings: proxy localhost:\d+ TCP [\d.]+ ms, proxy TLS [\d.]+ ms, CONNECT localhost:\d+ [\d.]+ ms, HTTP /.test(l)), err.join('\n'));

  // The proxy's certificate is not the server's business: -k and --ca do not make it trusted.
  for (const extra of [[], ['-k'], ['--ca', proxyCert.certFile]]) {
    const untrusted = await connect(t, [target.url, '--proxy', proxy.url, ...extra]);
    assert.equal(untrusted.code, 1, extra.join(' '));
    assert.match(
      untrusted.cli.stderr[0]!,
      /^error: proxy https:\/\/localhost:\d+: its certificate: self[- ]signed certificate \(DEPTH_ZERO_SELF_SIGNED_CERT\): --proxy-ca FILE trusts the proxy's CA, --proxy-insecure skips the check \(-k and --ca are for the WebSocket server\)$/,
    );
  }
  assert.equal(proxy.targets.length, 1, 'no CONNECT over an untrusted TLS session');
  const insecure = await connect(t, [target.url, '--proxy', proxy.url, '--proxy-insecure', '-x', 'insecure proxy', '-w', '0.3']);
  assert.equal(insecure.code, 0, insecure.cli.stderr.join('\n'));

  // wss:// through it from HTTPS_PROXY: TLS to the server inside TLS to the proxy, each with its own CA.
  const secure = await echoServer(t, 'tls');
  const nested = await connect(t, [secure.url, '--ca', serverCert.certFile, '--proxy-ca', proxyCert.certFile, '-x', 'tls in tls', '-w', '0.3', '-v'], { env: { HTTPS_PROXY: proxy.url } });
  assert.equal(nested.code, 0, nested.cli.stderr.join('\n'));
  assert.deepEqual(secure.messages, ['tls in tls']);
  assert.equal(proxy.targets.at(-1), `localhost:${secure.port}`);
  assert.ok(nested.cli.stderr.some((l) => /^\* timings: proxy localhost:\d+ TCP [\d.]+ ms, proxy TLS [\d.]+ ms, CONNECT localhost:\d+ [\d.]+ ms, TLS [\d.]+ ms, HTTP /.test(l)), nested.cli.stderr.join('\n'));
  // The server's CA does not vouch for the proxy, nor the proxy's for the server.
  const swapped = await connect(t, [secure.url, '--ca', proxyCert.certFile, '--proxy-ca', proxyCert.certFile], { env: { HTTPS_PROXY: proxy.url } });
  assert.equal(swapped.code, 1);
  assert.match(swapped.cli.stderr[0]!, /^error: self[- ]signed certificate \(DEPTH_ZERO_SELF_SIGNED_CERT\): --ca FILE trusts a CA, -k skips the check$/);
});

test('--proxy: a URL of no supported kind is a usage error (exit 2) that lists the kinds', async (t) => {
  for (const [url, words] of [
    ['socks4://127.0.0.1:1080', /SOCKS4 is not supported: socks5:\/\/ or socks5h:\/\//],
    ['ftp://127.0.0.1:21', /ftp:\/\/ is not a proxy kind \(http:\/\/, https:\/\/, socks5:\/\/, socks5h:\/\/\)/],
    [`socks5h://${'u'.repeat(256)}:p@127.0.0.1:1080`, /a SOCKS5 username or password is at most 255 bytes/],
  ] as const) {
    const { code, cli } = await connect(t, ['ws://localhost:9/', '--proxy', url]);
    assert.equal(code, 2, url);
    assert.match(cli.stderr.join('\n'), words);
  }
});

test('--http2 through a proxy: the h2 session runs in the tunnel (SOCKS5 and HTTP CONNECT), the WebSocket is a stream on it', async (t) => {
  const target = await echoServer(t, 'h2');
  const socks = await microsocks(t);
  const viaSocks = await connect(t, [target.url, '--http2', '--ca', serverCert.certFile, '--proxy', `socks5h://127.0.0.1:${socks.port}`, '-x', 'h2 in socks', '-w', '0.3', '-v']);
  assert.equal(viaSocks.code, 0, viaSocks.cli.stderr.join('\n'));
  assert.deepEqual(socks.tunnels, [`localhost:${target.port}`], 'one tunnel: the session');
  assert.ok(viaSocks.cli.stderr.some((l) => /^connected \(.*, over HTTP\/2\)$/.test(l)), viaSocks.cli.stderr.join('\n'));
  assert.ok(viaSocks.cli.stderr.includes('> :method: CONNECT'), viaSocks.cli.stderr.join('\n'));
  assert.deepEqual(viaSocks.cli.stdout, ['h2 in socks']);

  const proxy = await httpConnectProxy();
  t.after(() => proxy.close());
  const viaConnect = await connect(t, [target.url, '--http2', '--ca', serverCert.certFile, '-x', 'h2 in connect', '-w', '0.3', '-v'], { env: { HTTPS_PROXY: proxy.url } });
  assert.equal(viaConnect.code, 0, viaConnect.cli.stderr.join('\n'));
  assert.deepEqual(proxy.targets, [`localhost:${target.port}`]);
  assert.ok(viaConnect.cli.stderr.some((l) => /^connected \(.*, over HTTP\/2\)$/.test(l)), viaConnect.cli.stderr.join('\n'));
  assert.deepEqual(target.messages, ['h2 in socks', 'h2 in connect']);
  assert.equal(target.sessions(), 2, 'each run one h2 session, none around the proxy');
});

test('--http2 through a proxy to a server without h2: the fallback to HTTP/1.1 goes through the proxy too', async (t) => {
  const target = await echoServer(t);
  const socks = await microsocks(t);
  const { code, cli } = await connect(t, [target.url, '--http2', '--proxy', `socks5h://127.0.0.1:${socks.port}`, '-x', 'h2 asked, proxied', '-w', '0.3', '-v']);
  assert.equal(code, 0, cli.stderr.join('\n'));
  assert.ok(cli.stderr.some((l) => l.startsWith('* HTTP/2: falling back to HTTP/1.1')), cli.stderr.join('\n'));
  assert.ok(cli.stderr.some((l) => /^connected \(.*, over HTTP\/1\.1\)$/.test(l)), cli.stderr.join('\n'));
  assert.deepEqual(socks.tunnels, [`localhost:${target.port}`, `localhost:${target.port}`], 'the h2c attempt, then HTTP/1.1: both through the proxy');
  assert.deepEqual(target.messages, ['h2 asked, proxied']);
});
