import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { HandshakeError, InvalidHeaderError, NegotiationError } from '../../../src/protocol/errors.js';
import {
  buildErrorResponse,
  buildUpgradeResponse,
  computeAcceptKey,
  generateKey,
  validateUpgradeRequest,
  validateUpgradeResponse,
  type HandshakeHeaders,
  type UpgradeRequest,
} from '../../../src/protocol/handshake.js';

// The example of RFC 6455 §1.3 / §4.2.2.
const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';

interface ExpectedError {
  type: typeof HandshakeError;
  code: string;
  statusCode: number;
  headers?: Record<string, string>;
}

function assertHandshakeError(fn: () => unknown, expected: ExpectedError, label?: string): void {
  assert.throws(
    fn,
    (err: unknown) => {
      assert.ok(err instanceof expected.type, `${label}: expected ${expected.type.name}, got ${String(err)}`);
      assert.equal(err.constructor, expected.type, `${label}: exact class`);
      assert.equal(err.code, expected.code, label);
      assert.equal(err.statusCode, expected.statusCode, label);
      assert.deepEqual(err.headers, expected.headers ?? {}, label);
      assert.ok(err.message.length > 0, `${label}: has a message`);
      return true;
    },
    label,
  );
}

function request(headers: HandshakeHeaders = {}, overrides: Partial<UpgradeRequest> = {}): UpgradeRequest {
  const base: Record<string, string | readonly string[] | undefined> = {
    host: 'example.com',
    upgrade: 'websocket',
    connection: 'Upgrade',
    'sec-websocket-key': KEY,
    'sec-websocket-version': '13',
  };
  return { method: 'GET', httpVersion: '1.1', headers: { ...base, ...headers }, ...overrides };
}

/** Split a response head into status line, header lines (in order) and body. */
function parseResponse(text: string): { statusLine: string; headers: [string, string][]; body: string } {
  const end = text.indexOf('\r\n\r\n');
  assert.notEqual(end, -1, 'head ends with an empty line');
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const headers = lines.map((line): [string, string] => {
    const colon = line.indexOf(': ');
    assert.ok(colon > 0, `header line ${JSON.stringify(line)}`);
    return [line.slice(0, colon), line.slice(colon + 2)];
  });
  return { statusLine: statusLine!, headers, body: text.slice(end + 4) };
}

describe('computeAcceptKey', () => {
  it('gives the RFC 6455 example value', () => {
    assert.equal(computeAcceptKey(KEY), ACCEPT);
  });

  it('depends on the key', () => {
    assert.notEqual(computeAcceptKey('AAAAAAAAAAAAAAAAAAAAAA=='), ACCEPT);
  });
});

describe('generateKey', () => {
  it('returns 16 random bytes in canonical base64, accepted by the server check', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const key = generateKey();
      assert.match(key, /^[A-Za-z0-9+/]{22}==$/);
      assert.equal(Buffer.from(key, 'base64').length, 16);
      assert.equal(validateUpgradeRequest(request({ 'sec-websocket-key': key })).key, key);
      seen.add(key);
    }
    assert.equal(seen.size, 50);
  });
});

describe('validateUpgradeRequest: valid requests', () => {
  const cases: { name: string; req: UpgradeRequest; protocols?: string[]; extensions?: unknown }[] = [
    { name: 'the minimal request', req: request() },
    { name: 'HTTP/1.2', req: request({}, { httpVersion: '1.2' }) },
    { name: 'HTTP/2.0 version string', req: request({}, { httpVersion: '2.0' }) },
    { name: 'Upgrade in another case', req: request({ upgrade: 'WebSocket' }) },
    { name: 'Upgrade as a list', req: request({ upgrade: 'h2c, websocket' }) },
    { name: 'Upgrade repeated', req: request({ upgrade: ['h2c', 'websocket'] }) },
    { name: 'Connection: keep-alive, Upgrade', req: request({ connection: 'keep-alive, Upgrade' }) },
    { name: 'Connection with tabs and lower case', req: request({ connection: 'keep-alive,\tupgrade' }) },
    { name: 'Connection repeated', req: request({ connection: ['keep-alive', 'Upgrade'] }) },
    { name: 'Host as a one-element array', req: request({ host: ['example.com:8080'] }) },
    { name: 'one subprotocol', req: request({ 'sec-websocket-protocol': 'chat' }), protocols: ['chat'] },
    {
      name: 'subprotocols in order, with spaces',
      req: request({ 'sec-websocket-protocol': 'switchboard.v1.json ,  switchboard.v1.msgpack' }),
      protocols: ['switchboard.v1.json', 'switchboard.v1.msgpack'],
    },
    {
      name: 'subprotocol header repeated',
      req: request({ 'sec-websocket-protocol': ['a', 'b, c'] }),
      protocols: ['a', 'b', 'c'],
    },
    {
      name: 'empty subprotocol list elements are ignored (RFC 7230 §7)',
      req: request({ 'sec-websocket-protocol': ', a,, b ,' }),
      protocols: ['a', 'b'],
    },
    { name: 'subprotocols differing in case are distinct', req: request({ 'sec-websocket-protocol': 'Chat, chat' }), protocols: ['Chat', 'chat'] },
    {
      name: 'extensions parsed in order',
      req: request({ 'sec-websocket-extensions': 'permessage-deflate; client_max_window_bits, x-foo' }),
      extensions: [
        { name: 'permessage-deflate', params: [{ name: 'client_max_window_bits', value: true }] },
        { name: 'x-foo', params: [] },
      ],
    },
    {
      name: 'extension header repeated',
      req: request({ 'sec-websocket-extensions': ['permessage-deflate; server_max_window_bits=10', 'permessage-deflate'] }),
      extensions: [
        { name: 'permessage-deflate', params: [{ name: 'server_max_window_bits', value: '10' }] },
        { name: 'permessage-deflate', params: [] },
      ],
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const result = validateUpgradeRequest(c.req);
      assert.deepEqual(result, { key: KEY, protocols: c.protocols ?? [], extensions: c.extensions ?? [] });
    });
  }

  it("takes Node's IncomingHttpHeaders as they are", () => {
    const headers: IncomingHttpHeaders = {
      host: 'localhost:3000',
      upgrade: 'websocket',
      connection: 'Upgrade',
      'sec-websocket-key': KEY,
      'sec-websocket-version': '13',
      'set-cookie': ['a=1', 'b=2'],
    };
    assert.equal(validateUpgradeRequest({ method: 'GET', httpVersion: '1.1', headers }).key, KEY);
  });
});

describe('validateUpgradeRequest: invalid requests', () => {
  const badRequestLine = { type: HandshakeError, statusCode: 400 };
  const badHeader = { type: InvalidHeaderError, statusCode: 400 };
  const badVersion = {
    type: InvalidHeaderError,
    code: 'WS_ERR_UNSUPPORTED_VERSION',
    statusCode: 426,
    headers: { 'Sec-WebSocket-Version': '13' },
  };
  const method = { type: HandshakeError, code: 'WS_ERR_INVALID_METHOD', statusCode: 405, headers: { Allow: 'GET' } };

  const cases: { name: string; req: UpgradeRequest; error: ExpectedError }[] = [
    { name: 'POST', req: request({}, { method: 'POST' }), error: method },
    { name: 'HEAD', req: request({}, { method: 'HEAD' }), error: method },
    { name: 'lower-case get (methods are case-sensitive)', req: request({}, { method: 'get' }), error: method },
    { name: 'CONNECT', req: request({}, { method: 'CONNECT' }), error: method },

    { name: 'HTTP/1.0', req: request({}, { httpVersion: '1.0' }), error: { ...badRequestLine, code: 'WS_ERR_INVALID_HTTP_VERSION' } },
    { name: 'HTTP/0.9', req: request({}, { httpVersion: '0.9' }), error: { ...badRequestLine, code: 'WS_ERR_INVALID_HTTP_VERSION' } },
    { name: 'garbage version', req: request({}, { httpVersion: '1.x' }), error: { ...badRequestLine, code: 'WS_ERR_INVALID_HTTP_VERSION' } },

    { name: 'no Host', req: request({ host: undefined }), error: { ...badHeader, code: 'WS_ERR_MISSING_HOST' } },
    { name: 'empty Host', req: request({ host: '' }), error: { ...badHeader, code: 'WS_ERR_MISSING_HOST' } },
    { name: 'empty Host array', req: request({ host: [] }), error: { ...badHeader, code: 'WS_ERR_MISSING_HOST' } },
    { name: 'two Hosts', req: request({ host: ['a', 'b'] }), error: { ...badHeader, code: 'WS_ERR_INVALID_HOST_HEADER' } },

    { name: 'no Upgrade', req: request({ upgrade: undefined }), error: { ...badHeader, code: 'WS_ERR_INVALID_UPGRADE_HEADER' } },
    { name: 'Upgrade: h2c', req: request({ upgrade: 'h2c' }), error: { ...badHeader, code: 'WS_ERR_INVALID_UPGRADE_HEADER' } },
    { name: 'Upgrade: websockets', req: request({ upgrade: 'websockets' }), error: { ...badHeader, code: 'WS_ERR_INVALID_UPGRADE_HEADER' } },
    { name: 'Upgrade: web socket', req: request({ upgrade: 'web socket' }), error: { ...badHeader, code: 'WS_ERR_INVALID_UPGRADE_HEADER' } },

    { name: 'no Connection', req: request({ connection: undefined }), error: { ...badHeader, code: 'WS_ERR_INVALID_CONNECTION_HEADER' } },
    { name: 'Connection: keep-alive', req: request({ connection: 'keep-alive' }), error: { ...badHeader, code: 'WS_ERR_INVALID_CONNECTION_HEADER' } },
    { name: 'Connection: upgrades', req: request({ connection: 'upgrades' }), error: { ...badHeader, code: 'WS_ERR_INVALID_CONNECTION_HEADER' } },
    { name: 'Connection: keep-alive upgrade', req: request({ connection: 'keep-alive upgrade' }), error: { ...badHeader, code: 'WS_ERR_INVALID_CONNECTION_HEADER' } },

    { name: 'no Sec-WebSocket-Version', req: request({ 'sec-websocket-version': undefined }), error: badVersion },
    { name: 'version 8', req: request({ 'sec-websocket-version': '8' }), error: badVersion },
    { name: 'version 14', req: request({ 'sec-websocket-version': '14' }), error: badVersion },
    { name: 'version list', req: request({ 'sec-websocket-version': '13, 8' }), error: badVersion },
    { name: 'version repeated', req: request({ 'sec-websocket-version': ['13', '13'] }), error: badVersion },
    {
      name: 'version is checked before the key (a hixie-76 client sends neither)',
      req: request({ 'sec-websocket-version': undefined, 'sec-websocket-key': undefined }),
      error: badVersion,
    },

    { name: 'no key', req: request({ 'sec-websocket-key': undefined }), error: { ...badHeader, code: 'WS_ERR_INVALID_KEY' } },
    { name: 'empty key', req: request({ 'sec-websocket-key': '' }), error: { ...badHeader, code: 'WS_ERR_INVALID_KEY' } },
    { name: 'key without padding', req: request({ 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ' }), error: { ...badHeader, code: 'WS_ERR_INVALID_KEY' } },
    { name: 'key of 15 bytes', req: request({ 'sec-websocket-key': Buffer.alloc(15, 1).toString('base64') }), error: { ...badHeader, code: 'WS_ERR_INVALID_KEY' } },
    { name: 'key of 17 bytes', req: request({ 'sec-websocket-key': Buffer.alloc(17, 1).toString('base64') }), error: { ...badHeader, code: 'WS_ERR_INVALID_KEY' } },
    { name: 'key of 32 bytes', req: request({ 'sec-websocket-key': Buffer.alloc(32, 1).toString('base64') }), error: { ...badHeader, code: 'WS_ERR_INVALID_KEY' } },
    { name: 'key with a non-base64 character', req: request({ 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25j*Q==' }), error: { ...badHeader, code: 'WS_ERR_INVALID_KEY' } },
    { name: 'URL-safe base64 key', req: request({ 'sec-websocket-key': '-_hlIHNhbXBsZSBub25jZQ==' }), error: { ...badHeader, code: 'WS_ERR_INVALID_KEY' } },
    { name: 'key with non-zero padding bits', req: request({ 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZR==' }), error: { ...badHeader, code: 'WS_ERR_INVALID_KEY' } },
    { name: 'key with inner space', req: request({ 'sec-websocket-key': 'dGhlIHNhbXBs ZSBub25jZQ==' }), error: { ...badHeader, code: 'WS_ERR_INVALID_KEY' } },
    { name: 'key repeated', req: request({ 'sec-websocket-key': [KEY, KEY] }), error: { ...badHeader, code: 'WS_ERR_INVALID_KEY' } },

    { name: 'subprotocol with a space', req: request({ 'sec-websocket-protocol': 'a b' }), error: { ...badHeader, code: 'WS_ERR_INVALID_PROTOCOL_HEADER' } },
    { name: 'subprotocol with a slash', req: request({ 'sec-websocket-protocol': 'chat/1' }), error: { ...badHeader, code: 'WS_ERR_INVALID_PROTOCOL_HEADER' } },
    { name: 'quoted subprotocol', req: request({ 'sec-websocket-protocol': '"chat"' }), error: { ...badHeader, code: 'WS_ERR_INVALID_PROTOCOL_HEADER' } },
    { name: 'non-ASCII subprotocol', req: request({ 'sec-websocket-protocol': 'chät' }), error: { ...badHeader, code: 'WS_ERR_INVALID_PROTOCOL_HEADER' } },
    { name: 'duplicate subprotocol', req: request({ 'sec-websocket-protocol': 'chat, json, chat' }), error: { ...badHeader, code: 'WS_ERR_INVALID_PROTOCOL_HEADER' } },
    { name: 'duplicate across repeated headers', req: request({ 'sec-websocket-protocol': ['chat', 'chat'] }), error: { ...badHeader, code: 'WS_ERR_INVALID_PROTOCOL_HEADER' } },
    { name: 'empty subprotocol header', req: request({ 'sec-websocket-protocol': '' }), error: { ...badHeader, code: 'WS_ERR_INVALID_PROTOCOL_HEADER' } },
    { name: 'subprotocol header of commas', req: request({ 'sec-websocket-protocol': ' , ,' }), error: { ...badHeader, code: 'WS_ERR_INVALID_PROTOCOL_HEADER' } },

    { name: 'extension with a trailing ";"', req: request({ 'sec-websocket-extensions': 'permessage-deflate;' }), error: { ...badHeader, code: 'WS_ERR_INVALID_EXTENSION_HEADER' } },
    { name: 'extension value with a space', req: request({ 'sec-websocket-extensions': 'x; a="b c"' }), error: { ...badHeader, code: 'WS_ERR_INVALID_EXTENSION_HEADER' } },
    { name: 'empty extension header', req: request({ 'sec-websocket-extensions': '' }), error: { ...badHeader, code: 'WS_ERR_INVALID_EXTENSION_HEADER' } },
  ];

  for (const c of cases) {
    it(c.name, () => assertHandshakeError(() => validateUpgradeRequest(c.req), c.error, c.name));
  }
});

describe('buildUpgradeResponse', () => {
  it('writes the RFC 6455 example response', () => {
    assert.equal(
      buildUpgradeResponse({ key: KEY }),
      'HTTP/1.1 101 Switching Protocols\r\n' +
        'Upgrade: websocket\r\n' +
        'Connection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${ACCEPT}\r\n` +
        '\r\n',
    );
  });

  it('adds the subprotocol, the extensions and extra headers, one line per array element', () => {
    const head = buildUpgradeResponse({
      key: KEY,
      protocol: 'switchboard.v1.json',
      extensions: 'permessage-deflate; server_no_context_takeover',
      headers: { 'Set-Cookie': ['a=1', 'b=2; Path=/'], 'X-Node': 'n1' },
    });
    const { statusLine, headers, body } = parseResponse(head);
    assert.equal(statusLine, 'HTTP/1.1 101 Switching Protocols');
    assert.deepEqual(headers, [
      ['Upgrade', 'websocket'],
      ['Connection', 'Upgrade'],
      ['Sec-WebSocket-Accept', ACCEPT],
      ['Sec-WebSocket-Protocol', 'switchboard.v1.json'],
      ['Sec-WebSocket-Extensions', 'permessage-deflate; server_no_context_takeover'],
      ['Set-Cookie', 'a=1'],
      ['Set-Cookie', 'b=2; Path=/'],
      ['X-Node', 'n1'],
    ]);
    assert.equal(body, '');
  });

  it('leaves out an empty subprotocol and empty extensions', () => {
    assert.equal(buildUpgradeResponse({ key: KEY, protocol: '', extensions: '' }), buildUpgradeResponse({ key: KEY }));
  });

  const refused: { name: string; options: Parameters<typeof buildUpgradeResponse>[0] }[] = [
    { name: 'a subprotocol that is not a token', options: { key: KEY, protocol: 'a b' } },
    { name: 'a subprotocol with CRLF', options: { key: KEY, protocol: 'a\r\nX-Evil: 1' } },
    { name: 'extensions with CRLF', options: { key: KEY, extensions: 'x\r\nX-Evil: 1' } },
    { name: 'a header value with LF', options: { key: KEY, headers: { 'X-A': 'a\nb' } } },
    { name: 'a header value with NUL', options: { key: KEY, headers: { 'X-A': 'a\0b' } } },
    { name: 'a header value with CR in an array', options: { key: KEY, headers: { 'Set-Cookie': ['ok', 'bad\r'] } } },
    { name: 'a header name with a colon', options: { key: KEY, headers: { 'X-A:': 'v' } } },
    { name: 'an empty header name', options: { key: KEY, headers: { '': 'v' } } },
    { name: 'Upgrade in extra headers', options: { key: KEY, headers: { upgrade: 'h2c' } } },
    { name: 'Connection in extra headers', options: { key: KEY, headers: { Connection: 'close' } } },
    { name: 'Sec-WebSocket-Accept in extra headers', options: { key: KEY, headers: { 'Sec-WebSocket-Accept': 'x' } } },
  ];
  for (const c of refused) {
    it(`refuses ${c.name}`, () => assert.throws(() => buildUpgradeResponse(c.options), TypeError));
  }
});

describe('buildErrorResponse', () => {
  it('answers an unsupported version with 426 and Sec-WebSocket-Version: 13', () => {
    const err = new InvalidHeaderError('WS_ERR_UNSUPPORTED_VERSION', 'Unsupported WebSocket version', 426, {
      'Sec-WebSocket-Version': '13',
    });
    assert.equal(
      buildErrorResponse(err),
      'HTTP/1.1 426 Upgrade Required\r\n' +
        'Connection: close\r\n' +
        'Content-Type: text/plain; charset=utf-8\r\n' +
        'Content-Length: 29\r\n' +
        'Sec-WebSocket-Version: 13\r\n' +
        '\r\n' +
        'Unsupported WebSocket version',
    );
  });

  it('carries the headers of errors thrown by validateUpgradeRequest', () => {
    const cases: { req: UpgradeRequest; statusLine: string; header: [string, string] | null }[] = [
      { req: request({}, { method: 'POST' }), statusLine: 'HTTP/1.1 405 Method Not Allowed', header: ['Allow', 'GET'] },
      { req: request({ 'sec-websocket-version': '8' }), statusLine: 'HTTP/1.1 426 Upgrade Required', header: ['Sec-WebSocket-Version', '13'] },
      { req: request({ upgrade: undefined }), statusLine: 'HTTP/1.1 400 Bad Request', header: null },
    ];
    for (const c of cases) {
      let err: unknown;
      try {
        validateUpgradeRequest(c.req);
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof HandshakeError);
      const { statusLine, headers, body } = parseResponse(buildErrorResponse(err));
      assert.equal(statusLine, c.statusLine);
      assert.deepEqual(headers.slice(0, 2), [
        ['Connection', 'close'],
        ['Content-Type', 'text/plain; charset=utf-8'],
      ]);
      assert.deepEqual(headers.slice(3), c.header === null ? [] : [c.header]);
      assert.equal(body, err.message);
    }
  });

  it('counts Content-Length in UTF-8 bytes', () => {
    const message = 'Service indisponible — réessayez';
    const text = buildErrorResponse(new HandshakeError('RT_ERR_BUSY', message, 503, { 'Retry-After': '5' }));
    const { statusLine, headers, body } = parseResponse(text);
    assert.equal(statusLine, 'HTTP/1.1 503 Service Unavailable');
    assert.deepEqual(headers[2], ['Content-Length', String(Buffer.byteLength(message))]);
    assert.notEqual(Buffer.byteLength(message), message.length);
    assert.deepEqual(headers[3], ['Retry-After', '5']);
    assert.equal(body, message);
  });

  it('uses a generic reason phrase for an unlisted status', () => {
    assert.equal(parseResponse(buildErrorResponse(new HandshakeError('X', 'teapot', 418))).statusLine, 'HTTP/1.1 418 Error');
  });

  it('sends a status outside 400-599 as 400', () => {
    for (const status of [101, 200, 302, 600, 40.5]) {
      const { statusLine } = parseResponse(buildErrorResponse(new HandshakeError('X', 'odd', status)));
      assert.equal(statusLine, 'HTTP/1.1 400 Bad Request', String(status));
    }
  });

  it('never throws: leaves out invalid headers and ones that contradict the framing', () => {
    const err = new HandshakeError('X', 'no', 403, {
      'X-Ok': 'yes',
      'X-Bad': 'a\r\nSet-Cookie: evil=1',
      'Bad Name': 'v',
      'content-length': '999',
      Connection: 'keep-alive',
      'Transfer-Encoding': 'chunked',
      'Content-Type': 'text/html',
    });
    const { statusLine, headers, body } = parseResponse(buildErrorResponse(err));
    assert.equal(statusLine, 'HTTP/1.1 403 Forbidden');
    assert.deepEqual(headers, [
      ['Connection', 'close'],
      ['Content-Type', 'text/plain; charset=utf-8'],
      ['Content-Length', '2'],
      ['X-Ok', 'yes'],
    ]);
    assert.equal(body, 'no');
  });
});

describe('validateUpgradeResponse', () => {
  const goodHeaders = { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-accept': ACCEPT };
  const respond = (headers: HandshakeHeaders = {}, statusCode = 101) => ({ statusCode, headers: { ...goodHeaders, ...headers } });
  const offer = { key: KEY, protocols: ['chat', 'superchat'], extensionsOffered: true };

  const valid: { name: string; headers: HandshakeHeaders; protocols?: string[]; extensionsOffered?: boolean; result: unknown }[] = [
    { name: 'no subprotocol, no extension', headers: {}, result: { protocol: '', extensions: [] } },
    { name: 'Upgrade and Connection in other cases', headers: { upgrade: 'WEBSOCKET', connection: 'keep-alive, upgrade' }, result: { protocol: '', extensions: [] } },
    { name: 'one offered subprotocol', headers: { 'sec-websocket-protocol': 'superchat' }, result: { protocol: 'superchat', extensions: [] } },
    { name: 'no subprotocol although some were offered', headers: {}, result: { protocol: '', extensions: [] } },
    {
      name: 'accepted extensions, parsed',
      headers: { 'sec-websocket-extensions': 'permessage-deflate; client_max_window_bits=10' },
      result: { protocol: '', extensions: [{ name: 'permessage-deflate', params: [{ name: 'client_max_window_bits', value: '10' }] }] },
    },
  ];
  for (const c of valid) {
    it(`accepts ${c.name}`, () => {
      assert.deepEqual(validateUpgradeResponse(respond(c.headers), offer), c.result);
    });
  }

  const invalid: {
    name: string;
    res: ReturnType<typeof respond>;
    req?: Partial<typeof offer>;
    error: ExpectedError;
  }[] = [
    { name: 'status 200', res: respond({}, 200), error: { type: HandshakeError, code: 'WS_ERR_UNEXPECTED_STATUS', statusCode: 200 } },
    { name: 'status 401', res: respond({}, 401), error: { type: HandshakeError, code: 'WS_ERR_UNEXPECTED_STATUS', statusCode: 401 } },
    { name: 'status 426', res: respond({}, 426), error: { type: HandshakeError, code: 'WS_ERR_UNEXPECTED_STATUS', statusCode: 426 } },
    { name: 'no Upgrade', res: respond({ upgrade: undefined }), error: { type: InvalidHeaderError, code: 'WS_ERR_INVALID_UPGRADE_HEADER', statusCode: 400 } },
    { name: 'Upgrade: h2c', res: respond({ upgrade: 'h2c' }), error: { type: InvalidHeaderError, code: 'WS_ERR_INVALID_UPGRADE_HEADER', statusCode: 400 } },
    { name: 'Upgrade as a list', res: respond({ upgrade: 'websocket, h2c' }), error: { type: InvalidHeaderError, code: 'WS_ERR_INVALID_UPGRADE_HEADER', statusCode: 400 } },
    { name: 'no Connection', res: respond({ connection: undefined }), error: { type: InvalidHeaderError, code: 'WS_ERR_INVALID_CONNECTION_HEADER', statusCode: 400 } },
    { name: 'Connection: close', res: respond({ connection: 'close' }), error: { type: InvalidHeaderError, code: 'WS_ERR_INVALID_CONNECTION_HEADER', statusCode: 400 } },
    { name: 'no Sec-WebSocket-Accept', res: respond({ 'sec-websocket-accept': undefined }), error: { type: InvalidHeaderError, code: 'WS_ERR_INVALID_ACCEPT', statusCode: 400 } },
    { name: 'a wrong accept value', res: respond({ 'sec-websocket-accept': computeAcceptKey(generateKey()) }), error: { type: InvalidHeaderError, code: 'WS_ERR_INVALID_ACCEPT', statusCode: 400 } },
    { name: 'the key echoed as accept', res: respond({ 'sec-websocket-accept': KEY }), error: { type: InvalidHeaderError, code: 'WS_ERR_INVALID_ACCEPT', statusCode: 400 } },
    { name: 'accept repeated', res: respond({ 'sec-websocket-accept': [ACCEPT, ACCEPT] }), error: { type: InvalidHeaderError, code: 'WS_ERR_INVALID_ACCEPT', statusCode: 400 } },
    {
      name: 'extensions when none were offered',
      res: respond({ 'sec-websocket-extensions': 'permessage-deflate' }),
      req: { extensionsOffered: false },
      error: { type: NegotiationError, code: 'WS_ERR_UNEXPECTED_EXTENSION', statusCode: 400 },
    },
    {
      name: 'an invalid extension header',
      res: respond({ 'sec-websocket-extensions': 'permessage-deflate; client_max_window_bits=' }),
      error: { type: InvalidHeaderError, code: 'WS_ERR_INVALID_EXTENSION_HEADER', statusCode: 400 },
    },
    {
      name: 'a subprotocol that was not offered',
      res: respond({ 'sec-websocket-protocol': 'other' }),
      error: { type: NegotiationError, code: 'WS_ERR_UNEXPECTED_PROTOCOL', statusCode: 400 },
    },
    {
      name: 'a subprotocol differing in case',
      res: respond({ 'sec-websocket-protocol': 'Chat' }),
      error: { type: NegotiationError, code: 'WS_ERR_UNEXPECTED_PROTOCOL', statusCode: 400 },
    },
    {
      name: 'a subprotocol when none was offered',
      res: respond({ 'sec-websocket-protocol': 'chat' }),
      req: { protocols: [] },
      error: { type: NegotiationError, code: 'WS_ERR_UNEXPECTED_PROTOCOL', statusCode: 400 },
    },
    {
      name: 'two subprotocols in one header',
      res: respond({ 'sec-websocket-protocol': 'chat, superchat' }),
      error: { type: NegotiationError, code: 'WS_ERR_UNEXPECTED_PROTOCOL', statusCode: 400 },
    },
    {
      name: 'the subprotocol header repeated',
      res: respond({ 'sec-websocket-protocol': ['chat', 'chat'] }),
      error: { type: NegotiationError, code: 'WS_ERR_UNEXPECTED_PROTOCOL', statusCode: 400 },
    },
    {
      name: 'an empty subprotocol header',
      res: respond({ 'sec-websocket-protocol': '' }),
      error: { type: NegotiationError, code: 'WS_ERR_UNEXPECTED_PROTOCOL', statusCode: 400 },
    },
  ];
  for (const c of invalid) {
    it(`rejects ${c.name}`, () => {
      assertHandshakeError(() => validateUpgradeResponse(c.res, { ...offer, ...c.req }), c.error, c.name);
    });
  }

  it('accepts what buildUpgradeResponse writes for the same key', () => {
    const key = generateKey();
    const { statusLine, headers } = parseResponse(buildUpgradeResponse({ key, protocol: 'chat', extensions: 'permessage-deflate' }));
    assert.equal(statusLine.split(' ')[1], '101');
    const lowerCased = Object.fromEntries(headers.map(([name, value]) => [name.toLowerCase(), value]));
    assert.deepEqual(validateUpgradeResponse({ statusCode: 101, headers: lowerCased }, { key, protocols: ['chat'], extensionsOffered: true }), {
      protocol: 'chat',
      extensions: [{ name: 'permessage-deflate', params: [] }],
    });
  });
});
