/**
 * The request-head parser of the standalone server (transport/upgrade-parser.ts):
 * bytes in any split give the same head; bad heads get the status the server
 * answers with; limits hold; random bytes never throw.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { HandshakeError } from '../../../src/protocol/errors.js';
import { UpgradeRequestParser, type ParsedHead } from '../../../src/transport/upgrade-parser.js';

const HEAD =
  'GET /chat?room=1 HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Multi: a\r\nX-Multi: b\r\n' +
  'Set-Cookie: c=1\r\nSet-Cookie: d=2\r\nUser-Agent: first\r\nUser-Agent: second\r\nX-Spaces:   padded value \t\r\n\r\n';

function parse(text: string | Buffer, limits = {}): ParsedHead | HandshakeError | null {
  return new UpgradeRequestParser(limits).write(typeof text === 'string' ? Buffer.from(text, 'latin1') : text);
}

function statusOf(text: string, limits = {}): number | string {
  const r = parse(text, limits);
  if (r instanceof HandshakeError) return r.statusCode;
  return r === null ? 'incomplete' : 'ok';
}

test('a valid head: request line, lower-cased names, repeated fields as node:http joins them, the bytes after the head', () => {
  const frame = Buffer.from([0x81, 0x80, 1, 2, 3, 4]);
  const r = parse(Buffer.concat([Buffer.from(HEAD), frame]));
  assert.ok(r && !(r instanceof HandshakeError));
  const { head, rest } = r;
  assert.equal(head.method, 'GET');
  assert.equal(head.url, '/chat?room=1');
  assert.equal(head.httpVersionMajor, 1);
  assert.equal(head.httpVersionMinor, 1);
  assert.equal(head.headers['host'], 'example.com:8080');
  assert.equal(head.headers['connection'], 'keep-alive, Upgrade');
  assert.equal(head.headers['x-multi'], 'a, b');
  assert.deepEqual(head.headers['set-cookie'], ['c=1', 'd=2']);
  assert.equal(head.headers['user-agent'], 'first');
  assert.equal(head.headers['x-spaces'], 'padded value');
  assert.deepEqual(head.rawHeaders.slice(0, 4), ['Host', 'example.com:8080', 'Upgrade', 'websocket']);
  assert.deepEqual([...rest], [...frame]);
});

test('any split of the bytes gives the same head (and null until it is complete)', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: HEAD.length - 1 }), { maxLength: 6 }), (cuts) => {
      const points = [...new Set(cuts)].sort((a, b) => a - b);
      const parser = new UpgradeRequestParser();
      const bytes = Buffer.from(HEAD);
      let from = 0;
      let result: ParsedHead | HandshakeError | null = null;
      for (const p of [...points, bytes.length]) {
        assert.equal(result, null, 'a result only after the last byte');
        result = parser.write(bytes.subarray(from, p));
        from = p;
      }
      assert.ok(result && !(result instanceof HandshakeError));
      assert.equal(result.head.headers['sec-websocket-key'], 'dGhlIHNhbXBsZSBub25jZQ==');
      assert.equal(result.rest.length, 0);
    }),
  );
});

test('bad request lines and fields: 400', () => {
  const cases: Record<string, string> = {
    'no version': 'GET /\r\nHost: a\r\n\r\n',
    'two spaces': 'GET  / HTTP/1.1\r\nHost: a\r\n\r\n',
    'method not a token': 'G(T / HTTP/1.1\r\nHost: a\r\n\r\n',
    'control character in the target': 'GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n',
    'lower-case http': 'GET / http/1.1\r\nHost: a\r\n\r\n',
    'bare LF between fields': 'GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n',
    'bare CR': 'GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n',
    'obs-fold': 'GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n  c\r\n\r\n',
    'space before the colon': 'GET / HTTP/1.1\r\nHost : a\r\n\r\n',
    'no colon': 'GET / HTTP/1.1\r\nHost a\r\n\r\n',
    'empty name': 'GET / HTTP/1.1\r\n: a\r\n\r\n',
    'NUL in a value': 'GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n',
    'two Host fields': 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
    'Transfer-Encoding on an upgrade': 'GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n',
    'a body on an upgrade': 'GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\n',
  };
  for (const [name, text] of Object.entries(cases)) assert.equal(statusOf(text), 400, name);
  // Content-Length: 0 announces no body: harmless.
  assert.equal(statusOf('GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n'), 'ok');
  // Header values may carry obs-text (bytes 0x80-0xFF).
  assert.equal(statusOf('GET / HTTP/1.1\r\nHost: a\r\nX: caf\xe9\r\n\r\n'), 'ok');
});

test('HTTP/2.0 in the request line: 505; HTTP/1.0 parses (the handshake answers it 400 later)', () => {
  assert.equal(statusOf('GET / HTTP/2.0\r\nHost: a\r\n\r\n'), 505);
  assert.equal(statusOf('GET / HTTP/1.0\r\nHost: a\r\n\r\n'), 'ok');
});

test('limits: a head over maxHeaderSize (complete or not) and too many fields get 431, a long target 414', () => {
  const big = 'GET / HTTP/1.1\r\nHost: a\r\nX: ' + 'v'.repeat(20_000) + '\r\n\r\n';
  assert.equal(statusOf(big), 431);
  // Never completed: refused as soon as the limit is passed, not at the end.
  const parser = new UpgradeRequestParser({ maxHeaderSize: 1024 });
  assert.equal(parser.write(Buffer.from('GET / HTTP/1.1\r\nX: ' + 'v'.repeat(900))), null);
  const r = parser.write(Buffer.from('v'.repeat(200)));
  assert.ok(r instanceof HandshakeError);
  assert.equal(r.statusCode, 431);
  assert.equal(r.code, 'WS_ERR_HEADERS_TOO_LARGE');
  const many = 'GET / HTTP/1.1\r\n' + Array.from({ length: 101 }, (_, i) => `X-${i}: v`).join('\r\n') + '\r\n\r\n';
  assert.equal(statusOf(many), 431);
  assert.equal(statusOf(many, { maxHeaders: 200 }), 'ok');
  assert.equal(statusOf(`GET /${'a'.repeat(9000)} HTTP/1.1\r\nHost: a\r\n\r\n`), 414);
});

test('after a result, more bytes are an error, not a second head', () => {
  const parser = new UpgradeRequestParser();
  assert.ok(parser.write(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n')));
  assert.ok(parser.write(Buffer.from('GET / HTTP/1.1\r\n\r\n')) instanceof HandshakeError);
});

test('random bytes never throw: null, a head or a HandshakeError with a 4xx/5xx status', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 5 }), fc.boolean(), (chunks, withEnd) => {
      const parser = new UpgradeRequestParser({ maxHeaderSize: 512 });
      if (withEnd) chunks.push(Buffer.from('\r\n\r\n'));
      for (const c of chunks) {
        const r = parser.write(Buffer.from(c));
        if (r instanceof HandshakeError) {
          assert.ok(r.statusCode >= 400 && r.statusCode <= 505);
          return;
        }
        if (r !== null) return;
      }
    }),
    { numRuns: 500 },
  );
});
