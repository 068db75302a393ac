/**
 * The pure parts of `switchboard connect`: NO_PROXY matching and proxy
 * choice, the reconnect backoff, binary input decoding and the JSON colouring.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { reconnectDelay } from '../../../src/cli/connect.js';
import { COLOURS, decodeBinary, NO_COLOURS, prettyJson } from '../../../src/cli/connect-output.js';
import { noProxyCovers, parseProxyUrl, proxyFor } from '../../../src/cli/proxy.js';

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
  assert.throws(() => parseProxyUrl('socks5://p:1080'), /only http:\/\/ proxies/);
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
