/**
 * The pure parts of `switchboard connect`: NO_PROXY matching and proxy
 * choice, the reconnect backoff, binary input decoding and the JSON colouring.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { reconnectDelay } from '../../../src/cli/connect.js';
import { COLOURS, decodeBinary, NO_COLOURS, prettyJson } from '../../../src/cli/connect-output.js';
import net from 'node:net';
import { once } from 'node:events';
import { noProxyCovers, parseProxyUrl, proxyFor } from '../../../src/cli/proxy.js';
import { socks5Connect } from '../../../src/cli/socks5.js';
import { scriptedSocks5 } from '../../support/forward-proxies.js';

test('NO_PROXY: *, domains and their subdomains, leading dots, IPs, ports, IPv6 in brackets', () => {
  const cases: Array<[string, number, string, boolean]> = [
    ['example.com', 443, '*', true],
    ['example.com', 443, 'example.com', true],
    ['api.example.com', 443, 'example.com', true],
    ['api.example.com', 443, '.example.com', true],
    ['api.example.com', 443, '*.example.com', true],
    ['badexample.com', 443, 'example.com', false],
    ['example.com', 443, 'example.com:8443', false],
    ['example.com', 8443, 'example.com:8443', true],
    ['10.0.0.1', 80, 'foo, 10.0.0.1', true],
    ['10.0.0.10', 80, '10.0.0.1', false],
    ['::1', 80, '[::1]:80', true],
    ['[::1]', 80, '::1', true],
    ['EXAMPLE.com', 80, 'example.COM', true],
    ['example.com', 80, '', false],
  ];
  for (const [host, port, list, covered] of cases) assert.equal(noProxyCovers(host, port, list), covered, `${host}:${port} in '${list}'`);
});

test('proxyFor: --proxy first, then https_proxy/HTTPS_PROXY for wss and http_proxy/HTTP_PROXY for ws, ALL_PROXY last; NO_PROXY for both', () => {
  const wss = new URL('wss://rt.example.com/rt');
  const ws = new URL('ws://rt.example.com/rt');
  assert.equal(proxyFor(wss, undefined, {}), null);
  assert.equal(proxyFor(wss, undefined, { HTTPS_PROXY: 'http://p:3128', HTTP_PROXY: 'http://q:3128' })?.host, 'p:3128');
  assert.equal(proxyFor(ws, undefined, { HTTPS_PROXY: 'http://p:3128', HTTP_PROXY: 'http://q:3128' })?.host, 'q:3128');
  assert.equal(proxyFor(ws, undefined, { http_proxy: 'http://lower:1', HTTP_PROXY: 'http://upper:2' })?.host, 'lower:1');
  assert.equal(proxyFor(wss, undefined, { ALL_PROXY: 'all:9' })?.host, 'all:9');
  assert.equal(proxyFor(wss, 'http://flag:1', { HTTPS_PROXY: 'http://p:3128' })?.host, 'flag:1');
  assert.equal(proxyFor(wss, 'http://flag:1', { NO_PROXY: '.example.com' }), null);
  for (const kind of ['http', 'https', 'socks5', 'socks5h']) assert.equal(parseProxyUrl(`${kind}://u:p@proxy:1`).protocol, `${kind}:`);
  assert.equal(proxyFor(wss, undefined, { ALL_PROXY: 'socks5h://s:1080' })?.protocol, 'socks5h:');
  assert.throws(() => parseProxyUrl('socks4://p:1080'), /SOCKS4 is not supported/);
  assert.throws(() => parseProxyUrl('socks://p:1080'), /SOCKS4 is not supported/);
  assert.throws(() => parseProxyUrl('ftp://p:21'), /not a proxy kind/);
  assert.throws(() => parseProxyUrl('http://'), /invalid proxy URL/);
  assert.equal(parseProxyUrl('proxy.local:3128').href, 'http://proxy.local:3128/');
});

test('reconnectDelay: doubles from 500 ms up to 30 s, with half of it random', () => {
  assert.equal(reconnectDelay(0, () => 0), 250);
  assert.equal(reconnectDelay(0, () => 1), 500);
  assert.equal(reconnectDelay(3, () => 0), 2000);
  assert.equal(reconnectDelay(10, () => 1), 30_000);
  assert.equal(reconnectDelay(1000, () => 0), 15_000);
  fc.assert(
    fc.property(fc.nat(100), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, r) => {
      const d = reconnectDelay(attempt, () => r);
      const ceiling = Math.min(30_000, 500 * 2 ** attempt);
      return d >= ceiling / 2 && d <= ceiling;
    }),
  );
});

test('decodeBinary: hex (spaces allowed), base64 and base64url, by --hex/--base64 or by guess; errors say what was expected', () => {
  assert.deepEqual(decodeBinary('01 02 ff', null), Buffer.from([1, 2, 255]));
  assert.deepEqual(decodeBinary('AQID', null), Buffer.from([1, 2, 3]));
  assert.deepEqual(decodeBinary('_-8', 'base64'), Buffer.from([0xff, 0xef]));
  assert.deepEqual(decodeBinary('abcd', 'base64'), Buffer.from('abcd', 'base64'), '--base64 reads hex-looking text as base64');
  assert.throws(() => decodeBinary('AQID', 'hex'), /^Error: not hex: 'AQID'/);
  assert.throws(() => decodeBinary('not base64!', null), /neither hex nor base64/);
  assert.throws(() => decodeBinary('@/nonexistent/file', null), /cannot read \/nonexistent\/file \(ENOENT\)/);
  fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (bytes) => decodeBinary(Buffer.from(bytes).toString('hex'), 'hex').equals(Buffer.from(bytes))));
  fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (bytes) => decodeBinary(Buffer.from(bytes).toString('base64'), 'base64').equals(Buffer.from(bytes))));
});

test('prettyJson: without colour it is JSON.stringify(v, null, 2); coloured, the escape codes are all it adds', () => {
  const strip = (s: string): string => s.replace(/\x1b\[\d+m/g, '');
  fc.assert(
    fc.property(fc.jsonValue(), (value) => {
      const plain = JSON.stringify(value, null, 2);
      return prettyJson(value, NO_COLOURS) === plain && strip(prettyJson(value, COLOURS)) === plain;
    }),
  );
  assert.equal(prettyJson({ 'k"1': 'v: 2', n: -1.5e3, t: true }, COLOURS), '{\n  \x1b[34m"k\\"1"\x1b[0m: \x1b[32m"v: 2"\x1b[0m,\n  \x1b[34m"n"\x1b[0m: \x1b[33m-1500\x1b[0m,\n  \x1b[34m"t"\x1b[0m: \x1b[35mtrue\x1b[0m\n}');
});

test('socks5Connect: IPv4, IPv6 and name destinations as RFC 1928 §4 encodes them (ATYP 1, 4, 3)', async (t) => {
  const peer = await scriptedSocks5({ reply: 0x00 });
  t.after(() => peer.close());
  const port = Number(new URL(peer.url).port);
  for (const [host, remoteDns] of [['10.1.2.3', false], ['::1', false], ['2001:db8::ff:1', true], ['example.com', true]] as const) {
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    const tunnel = await socks5Connect(socket, { proxy: `127.0.0.1:${port}`, host, port: 443, remoteDns });
    assert.equal(tunnel.bound, '0.0.0.0:0');
    socket.destroy();
  }
  assert.deepEqual(peer.requests, [
    { atyp: 1, host: '10.1.2.3', port: 443 },
    { atyp: 4, host: '00000000000000000000000000000001', port: 443 },
    { atyp: 4, host: '20010db8000000000000000000ff0001', port: 443 },
    { atyp: 3, host: 'example.com', port: 443 },
  ]);
});
