/**
 * The opening handshake of a WebSocket over HTTP/2 (RFC 8441, "Bootstrapping
 * WebSockets with HTTP/2") as pure functions: the checks on an extended
 * CONNECT request (server side) and on its response (client side), and the
 * request's header fields.
 *
 * Only the handshake differs from RFC 6455: the request is a `CONNECT` with
 * the `:protocol` pseudo-header `websocket` on one HTTP/2 stream instead of a
 * `GET` with `Upgrade`; `Sec-WebSocket-Key` / `Sec-WebSocket-Accept` are not
 * used (§5: "superseded by the :protocol pseudo-header field"); success is a
 * 2xx status (we send 200) instead of 101. After that the stream's DATA
 * frames carry ordinary RFC 6455 frames (masking included), so subprotocol
 * and permessage-deflate negotiation, limits and the closing handshake are
 * the HTTP/1.1 ones. END_STREAM plays the TCP FIN, RST_STREAM (CANCEL) the
 * TCP RST (§6).
 *
 * Failures are thrown as `HandshakeError`s with the `:status` the server
 * answers with on the stream.
 *
 * @see https://www.rfc-editor.org/rfc/rfc8441
 */
import { HandshakeError, InvalidHeaderError, NegotiationError } from './errors.js';
import { type ExtensionOffer, parseExtensions } from './extensions/header.js';
import { checkVersion, type HandshakeHeaders, parseProtocols, WEBSOCKET_VERSION } from './handshake.js';

/** The `:protocol` value that asks for a WebSocket (RFC 8441 §5, registered in the HTTP Upgrade Token Registry). */
export const WEBSOCKET_PROTOCOL_TOKEN = 'websocket';

/** What a valid extended CONNECT request carries (no key: RFC 8441 has none). */
export interface ValidatedConnectRequest {
  /** Subprotocols offered by the client, in its order of preference; empty if none. */
  readonly protocols: string[];
  /** Extension offers from `sec-websocket-extensions`, in order; empty if none. */
  readonly extensions: ExtensionOffer[];
}

/**
 * Check an HTTP/2 request for a WebSocket (server side). `headers` are the
 * stream's header fields as node:http2 hands them over (pseudo-headers
 * included, names in lower case).
 *
 * | check                                        | code                              | status |
 * |----------------------------------------------|-----------------------------------|--------|
 * | `:method` is `CONNECT` with a `:protocol`    | `WS_ERR_INVALID_METHOD`           | 405 (+ `Allow: CONNECT`) when the method is another, 400 for a classic CONNECT |
 * | `:protocol` is `websocket`                   | `WS_ERR_UNSUPPORTED_PROTOCOL`     | 501 |
 * | `:scheme`, `:path`, `:authority` present      | `WS_ERR_MISSING_PSEUDO_HEADER`    | 400 |
 * | `sec-websocket-version` is `13`              | `WS_ERR_UNSUPPORTED_VERSION`      | 426 (+ `sec-websocket-version: 13`) |
 * | `sec-websocket-protocol` tokens, no duplicates | `WS_ERR_INVALID_PROTOCOL_HEADER` | 400 |
 * | `sec-websocket-extensions` syntax            | `WS_ERR_INVALID_EXTENSION_HEADER` | 400 |
 *
 * A `sec-websocket-key` is ignored, not refused: a proxy translating an
 * HTTP/1.1 Upgrade may pass it along (RFC 8441 §5 only says it is not used).
 * `Origin` is not checked here: it is the server's policy.
 *
 * @throws HandshakeError for the method and `:protocol`, InvalidHeaderError for header fields.
 * @see https://www.rfc-editor.org/rfc/rfc8441#section-5
 */
export function validateConnectRequest(headers: HandshakeHeaders): ValidatedConnectRequest {
  const method = single(headers[':method']);
  const protocol = single(headers[':protocol']);
  // §4: "A CONNECT request that includes a :protocol pseudo-header field" is an extended CONNECT.
  if (method !== 'CONNECT') {
    throw new HandshakeError(
      'WS_ERR_INVALID_METHOD',
      `Invalid method ${JSON.stringify(method ?? '')}: a WebSocket over HTTP/2 is opened with an extended CONNECT (RFC 8441)`,
      405,
      { Allow: 'CONNECT' },
    );
  }
  if (protocol === undefined) {
    throw new HandshakeError('WS_ERR_INVALID_METHOD', 'A CONNECT without :protocol is a tunnel request, not a WebSocket (RFC 8441)', 400);
  }
  // §4: a server that does not support the requested protocol answers as for
  // an unknown method: 501 Not Implemented.
  if (protocol.toLowerCase() !== WEBSOCKET_PROTOCOL_TOKEN) {
    throw new HandshakeError('WS_ERR_UNSUPPORTED_PROTOCOL', `Unsupported :protocol ${JSON.stringify(protocol)}: this endpoint speaks "websocket"`, 501);
  }
  // §4: ":scheme and :path pseudo-header fields MUST be included"; :authority as in RFC 7540 §8.1.2.3.
  for (const name of [':scheme', ':path', ':authority']) {
    if (!single(headers[name])) {
      throw new InvalidHeaderError('WS_ERR_MISSING_PSEUDO_HEADER', `Missing ${name} pseudo-header in the extended CONNECT`);
    }
  }
  // §5: "The request MUST include a header field with the name |Sec-WebSocket-Version| ... 13".
  checkVersion(joined(headers['sec-websocket-version']), 'sec-websocket-version');
  const protocolHeader = joined(headers['sec-websocket-protocol']);
  const extensionHeader = joined(headers['sec-websocket-extensions']);
  return {
    protocols: protocolHeader === undefined ? [] : parseProtocols(protocolHeader),
    extensions: extensionHeader === undefined ? [] : parseExtensions(extensionHeader),
  };
}

/** What the client offers in its extended CONNECT. */
export interface ConnectRequestOptions {
  /** The request target: path and query (`/chat?room=1`). */
  readonly path: string;
  /** `host[:port]` of the URL. */
  readonly authority: string;
  /** `https` (or `http` over cleartext HTTP/2). */
  readonly scheme: 'https' | 'http';
  /** Subprotocols offered, in order of preference. */
  readonly protocols?: readonly string[];
  /** The `sec-websocket-extensions` offer, if any. */
  readonly extensions?: string;
  /** The `origin` header, if any. */
  readonly origin?: string;
}

/**
 * The header fields of an extended CONNECT for a WebSocket (client side),
 * pseudo-headers first. No key, no `upgrade`/`connection` (connection-specific
 * fields are forbidden in HTTP/2).
 * @see https://www.rfc-editor.org/rfc/rfc8441#section-5
 */
export function buildConnectRequestHeaders(options: ConnectRequestOptions): Record<string, string> {
  const headers: Record<string, string> = {
    ':method': 'CONNECT',
    ':protocol': WEBSOCKET_PROTOCOL_TOKEN,
    ':scheme': options.scheme,
    ':path': options.path || '/',
    ':authority': options.authority,
    'sec-websocket-version': WEBSOCKET_VERSION,
  };
  if (options.protocols && options.protocols.length > 0) headers['sec-websocket-protocol'] = options.protocols.join(', ');
  if (options.extensions) headers['sec-websocket-extensions'] = options.extensions;
  if (options.origin) headers['origin'] = options.origin;
  return headers;
}

/** What the client offered, to check the response against. */
export interface ConnectOffer {
  readonly protocols: readonly string[];
  readonly extensionsOffered: boolean;
}

/**
 * Check the server's answer to an extended CONNECT (client side): a 2xx
 * status (§5: "a 2xx (Successful) status code" opens the tunnel), a
 * subprotocol the client offered, extensions only when offered.
 *
 * @throws HandshakeError (`WS_ERR_UNEXPECTED_STATUS`, `statusCode` = the received status) or NegotiationError.
 * @see https://www.rfc-editor.org/rfc/rfc8441#section-5
 */
export function validateConnectResponse(
  status: number,
  headers: HandshakeHeaders,
  offer: ConnectOffer,
): { protocol: string; extensions: ExtensionOffer[] } {
  if (!(status >= 200 && status <= 299)) {
    throw new HandshakeError('WS_ERR_UNEXPECTED_STATUS', `Unexpected server response: ${status}`, status);
  }
  const extensionHeader = joined(headers['sec-websocket-extensions']);
  let extensions: ExtensionOffer[] = [];
  if (extensionHeader !== undefined) {
    if (!offer.extensionsOffered) {
      throw new NegotiationError('WS_ERR_UNEXPECTED_EXTENSION', `Server accepted extensions that were not offered: ${JSON.stringify(extensionHeader)}`);
    }
    extensions = parseExtensions(extensionHeader);
  }
  const protocol = joined(headers['sec-websocket-protocol']);
  if (protocol !== undefined && !offer.protocols.includes(protocol)) {
    throw new NegotiationError('WS_ERR_UNEXPECTED_PROTOCOL', `Server selected a subprotocol that was not offered: ${JSON.stringify(protocol)}`);
  }
  return { protocol: protocol ?? '', extensions };
}

function single(value: string | readonly string[] | undefined): string | undefined {
  return value === undefined || typeof value === 'string' ? value : value[0];
}

function joined(value: string | readonly string[] | undefined): string | undefined {
  return value === undefined || typeof value === 'string' ? value : value.join(', ');
}
