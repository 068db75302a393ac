/**
 * RFC 8441's handshake checks, sans I/O (src/protocol/extended-connect.ts):
 * each refusal with its code and status, what is ignored, and the client's
 * checks of the answer.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  buildConnectRequestHeaders,
  HandshakeError,
  validateConnectRequest,
  validateConnectResponse,
} from '../../../src/protocol/index.js';

const BASE = {
  ':method': 'CONNECT',
  ':protocol': 'websocket',
  ':scheme': 'https',
  ':path': '/chat',
  ':authority': 'example.com',
  'sec-websocket-version': '13',
};

function refusal(headers: Record<string, string | undefined>): { code: string; status: number; headers: Record<string, string> } {
  try {
    validateConnectRequest(headers);
  } catch (err) {
    assert.ok(err instanceof HandshakeError);
    return { code: err.code, status: err.statusCode, headers: err.headers };
  }
  assert.fail('accepted');
}

test('a valid extended CONNECT: subprotocols and extensions parsed; a proxy\'s sec-websocket-key ignored', () => {
  const offer = validateConnectRequest({
    ...BASE,
    'sec-websocket-protocol': 'v2, v1',
    'sec-websocket-extensions': 'permessage-deflate; client_max_window_bits',
    'sec-websocket-key': 'not even base64',
  });
  assert.deepEqual(offer.protocols, ['v2', 'v1']);
  assert.equal(offer.extensions[0]?.name, 'permessage-deflate');
  assert.deepEqual(validateConnectRequest(BASE), { protocols: [], extensions: [] });
});

test('refusals: method 405, tunnel CONNECT 400, other :protocol 501, missing pseudo-headers 400, version 426', () => {
  assert.deepEqual(refusal({ ...BASE, ':method': 'GET' }), { code: 'WS_ERR_INVALID_METHOD', status: 405, headers: { Allow: 'CONNECT' } });
  assert.equal(refusal({ ...BASE, ':protocol': undefined }).status, 400);
  assert.deepEqual(refusal({ ...BASE, ':protocol': 'webtransport' }), { code: 'WS_ERR_UNSUPPORTED_PROTOCOL', status: 501, headers: {} });
  // Token comparison is case-insensitive.
  assert.deepEqual(validateConnectRequest({ ...BASE, ':protocol': 'WebSocket' }).protocols, []);
  for (const name of [':scheme', ':path', ':authority']) {
    assert.equal(refusal({ ...BASE, [name]: undefined }).code, 'WS_ERR_MISSING_PSEUDO_HEADER', name);
  }
  assert.deepEqual(refusal({ ...BASE, 'sec-websocket-version': '8' }), {
    code: 'WS_ERR_UNSUPPORTED_VERSION',
    status: 426,
    headers: { 'sec-websocket-version': '13' },
  });
  assert.equal(refusal({ ...BASE, 'sec-websocket-version': undefined }).status, 426);
  assert.equal(refusal({ ...BASE, 'sec-websocket-protocol': 'a, a' }).code, 'WS_ERR_INVALID_PROTOCOL_HEADER');
  assert.equal(refusal({ ...BASE, 'sec-websocket-extensions': 'permessage-deflate; =' }).code, 'WS_ERR_INVALID_EXTENSION_HEADER');
});

test('the client\'s request headers and its checks of the answer', () => {
  assert.deepEqual(
    buildConnectRequestHeaders({ path: '/rt?x=1', authority: 'h:8443', scheme: 'https', protocols: ['a', 'b'], extensions: 'permessage-deflate', origin: 'https://app' }),
    {
      ':method': 'CONNECT',
      ':protocol': 'websocket',
      ':scheme': 'https',
      ':path': '/rt?x=1',
      ':authority': 'h:8443',
      'sec-websocket-version': '13',
      'sec-websocket-protocol': 'a, b',
      'sec-websocket-extensions': 'permessage-deflate',
      origin: 'https://app',
    },
  );
  assert.deepEqual(validateConnectResponse(200, { 'sec-websocket-protocol': 'b' }, { protocols: ['a', 'b'], extensionsOffered: false }), {
    protocol: 'b',
    extensions: [],
  });
  // Any 2xx opens the tunnel (§5); 101 is not an h2 answer.
  assert.equal(validateConnectResponse(204, {}, { protocols: [], extensionsOffered: false }).protocol, '');
  assert.throws(() => validateConnectResponse(101, {}, { protocols: [], extensionsOffered: false }), { code: 'WS_ERR_UNEXPECTED_STATUS', statusCode: 101 });
  assert.throws(() => validateConnectResponse(200, { 'sec-websocket-protocol': 'c' }, { protocols: ['a'], extensionsOffered: false }), { code: 'WS_ERR_UNEXPECTED_PROTOCOL' });
  assert.throws(() => validateConnectResponse(200, { 'sec-websocket-extensions': 'permessage-deflate' }, { protocols: [], extensionsOffered: false }), {
    code: 'WS_ERR_UNEXPECTED_EXTENSION',
  });
});
