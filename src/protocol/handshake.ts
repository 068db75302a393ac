/**
 * The HTTP/1.1 opening handshake as pure functions: key and accept values,
 * checks on the client's request (server side) and the server's response
 * (client side), and the response heads a server writes.
 *
 * Nothing here touches a socket. Failures are thrown as `HandshakeError`s
 * with a stable `code` and the HTTP `statusCode` a server answers with
 * (see {@link buildErrorResponse}):
 *
 *   HandshakeError       request line (method, HTTP version), unexpected status
 *   InvalidHeaderError   a missing or malformed header field
 *   NegotiationError     subprotocol or extension negotiation (client side)
 *
 * Extensions are parsed here but negotiated by each extension's module
 * (e.g. `extensions/permessage-deflate.ts`).
 *
 * @see https://www.rfc-editor.org/rfc/rfc6455#section-4
 */
import * as nodeCrypto from 'node:crypto';
import { HandshakeError, InvalidHeaderError, NegotiationError } from './errors.js';
import { type ExtensionOffer, isToken, parseExtensions } from './extensions/header.js';

/**
 * The GUID appended to the client's key to compute `Sec-WebSocket-Accept`.
 * @see https://www.rfc-editor.org/rfc/rfc6455#section-1.3
 */
export const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/**
 * The only protocol version this implementation speaks.
 * @see https://www.rfc-editor.org/rfc/rfc6455#section-4.4
 */
export const WEBSOCKET_VERSION = '13';

/** A header value as Node's `IncomingHttpHeaders` holds it. */
export type HeaderValue = string | readonly string[] | undefined;

/** Request or response headers keyed by lower-case name (Node's `IncomingHttpHeaders` fits). */
export type HandshakeHeaders = Readonly<Record<string, HeaderValue>>;

/** The parts of an HTTP request the server-side checks need. */
export interface UpgradeRequest {
  /** Request method, e.g. `GET` (case-sensitive). */
  readonly method: string;
  /** `major.minor`, e.g. `1.1`, as in Node's `IncomingMessage#httpVersion`. */
  readonly httpVersion: string;
  /** Header fields, names in lower case. Repeated fields may be arrays. */
  readonly headers: HandshakeHeaders;
}

/** What a valid opening handshake request carries. */
export interface ValidatedUpgradeRequest {
  /** The `Sec-WebSocket-Key`, to compute the accept value from. */
  readonly key: string;
  /** Subprotocols offered by the client, in its order of preference; empty if none. */
  readonly protocols: string[];
  /** Extension offers from `Sec-WebSocket-Extensions`, in order; empty if none. */
  readonly extensions: ExtensionOffer[];
}

/** The parts of an HTTP response the client-side checks need. */
export interface UpgradeResponse {
  /** The response status, e.g. `101`. */
  readonly statusCode: number;
  /** Header fields, names in lower case. Repeated fields may be arrays. */
  readonly headers: HandshakeHeaders;
}

/** What the client sent in its request, to check the response against. */
export interface ClientHandshakeRequest {
  /** The `Sec-WebSocket-Key` the client sent. */
  readonly key: string;
  /** The subprotocols the client offered; empty if it sent no `Sec-WebSocket-Protocol`. */
  readonly protocols: readonly string[];
  /** Whether the client sent a `Sec-WebSocket-Extensions` header. */
  readonly extensionsOffered: boolean;
}

/** What a valid opening handshake response settles. */
export interface ValidatedUpgradeResponse {
  /** The subprotocol the server selected, or `''` if it selected none. */
  readonly protocol: string;
  /**
   * The extensions the server accepted, parsed, in order; empty if none.
   * Each extension's module must still check them against the offer.
   */
  readonly extensions: ExtensionOffer[];
}

/** Options for {@link buildUpgradeResponse}. */
export interface UpgradeResponseOptions {
  /** The client's `Sec-WebSocket-Key`. */
  readonly key: string;
  /** The selected subprotocol (a token, one of the client's); omitted if empty or undefined. */
  readonly protocol?: string;
  /** The `Sec-WebSocket-Extensions` value of the accepted extensions; omitted if empty or undefined. */
  readonly extensions?: string;
  /**
   * More header fields (e.g. `Set-Cookie`). An array value writes one line per
   * element. Names the handshake writes itself are refused.
   */
  readonly headers?: Readonly<Record<string, string | readonly string[]>>;
}

/**
 * The `Sec-WebSocket-Accept` value for a key: base64 of the SHA-1 of the key
 * followed by the GUID.
 *
 * @example computeAcceptKey('dGhlIHNhbXBsZSBub25jZQ==') === 's3pPLMBiTxaQ9kYGzzhZRbK+xOo='
 * @see https://www.rfc-editor.org/rfc/rfc6455#section-4.2.2
 */
export function computeAcceptKey(key: string): string {
  const input = key + WEBSOCKET_GUID;
  return oneShotHash ? oneShotHash('sha1', input, 'base64') : nodeCrypto.createHash('sha1').update(input).digest('base64');
}

/**
 * `crypto.hash` (Node 20.12 and later): a one-shot digest with no `Hash`
 * object, about a third of `createHash`'s CPU for an accept key, paid once
 * per handshake. Older Node 20 releases take `createHash`.
 */
const oneShotHash = (nodeCrypto as { hash?: (algorithm: string, data: string, encoding: 'base64') => string }).hash;

/**
 * A fresh `Sec-WebSocket-Key`: 16 random bytes, base64-encoded (24 characters).
 * @see https://www.rfc-editor.org/rfc/rfc6455#section-4.1
 */
export function generateKey(): string {
  return nodeCrypto.randomBytes(16).toString('base64');
}

/**
 * Check a client's opening handshake request (server side).
 *
 * Checks run in this order; the first failure is thrown:
 *
 * | check                                  | code                                | status |
 * |----------------------------------------|-------------------------------------|--------|
 * | method is `GET`                        | `WS_ERR_INVALID_METHOD`             | 405 (+ `Allow: GET`) |
 * | HTTP version is 1.1 or higher          | `WS_ERR_INVALID_HTTP_VERSION`       | 400 |
 * | one non-empty `Host`                   | `WS_ERR_MISSING_HOST`, `WS_ERR_INVALID_HOST_HEADER` | 400 |
 * | `Upgrade` lists `websocket`            | `WS_ERR_INVALID_UPGRADE_HEADER`     | 400 |
 * | `Connection` lists `upgrade`           | `WS_ERR_INVALID_CONNECTION_HEADER`  | 400 |
 * | `Sec-WebSocket-Version` is `13`        | `WS_ERR_UNSUPPORTED_VERSION`        | 426 (+ `Sec-WebSocket-Version: 13`) |
 * | `Sec-WebSocket-Key` is 16 bytes base64 | `WS_ERR_INVALID_KEY`                | 400 |
 * | `Sec-WebSocket-Protocol` tokens, no duplicates | `WS_ERR_INVALID_PROTOCOL_HEADER` | 400 |
 * | `Sec-WebSocket-Extensions` syntax      | `WS_ERR_INVALID_EXTENSION_HEADER`   | 400 |
 *
 * The version is checked before the key so that a client of another protocol
 * version (which may not send a key of this form) learns which version to
 * use. `Origin` is not checked here: it is a policy decision for the server.
 *
 * @throws HandshakeError for the request line, InvalidHeaderError for headers.
 * @see https://www.rfc-editor.org/rfc/rfc6455#section-4.2.1
 */
export function validateUpgradeRequest(req: UpgradeRequest): ValidatedUpgradeRequest {
  const { headers } = req;

  // §4.2.1 step 1: "An HTTP/1.1 or higher GET request". Another method gets
  // 405, which must list the allowed methods (RFC 9110 §15.5.6).
  if (req.method !== 'GET') {
    throw new HandshakeError(
      'WS_ERR_INVALID_METHOD',
      `Invalid HTTP method ${JSON.stringify(req.method)}: the opening handshake must be a GET request`,
      405,
      { Allow: 'GET' },
    );
  }
  if (!isHttp11OrHigher(req.httpVersion)) {
    throw new HandshakeError(
      'WS_ERR_INVALID_HTTP_VERSION',
      `Invalid HTTP version ${JSON.stringify(req.httpVersion)}: the opening handshake requires HTTP/1.1 or higher`,
    );
  }

  // Step 2: a |Host| header field containing the server's authority.
  // RFC 7230 §5.4: a request with more than one Host field is invalid.
  const host = headers['host'];
  if (typeof host === 'object' && host.length > 1) {
    throw new InvalidHeaderError('WS_ERR_INVALID_HOST_HEADER', 'Invalid Host header: it appears more than once');
  }
  if (!(typeof host === 'string' ? host : host?.[0])) {
    throw new InvalidHeaderError('WS_ERR_MISSING_HOST', 'Missing Host header');
  }

  // Step 3: an |Upgrade| header field containing "websocket" (case-insensitive).
  const upgrade = headerValue(headers, 'upgrade');
  if (upgrade === undefined || !listHasToken(upgrade, 'websocket')) {
    throw new InvalidHeaderError(
      'WS_ERR_INVALID_UPGRADE_HEADER',
      upgrade === undefined ? 'Missing Upgrade header' : `Invalid Upgrade header ${JSON.stringify(upgrade)}: expected "websocket"`,
    );
  }

  // Step 4: a |Connection| header field that includes the token "Upgrade".
  const connection = headerValue(headers, 'connection');
  if (connection === undefined || !listHasToken(connection, 'upgrade')) {
    throw new InvalidHeaderError(
      'WS_ERR_INVALID_CONNECTION_HEADER',
      connection === undefined
        ? 'Missing Connection header'
        : `Invalid Connection header ${JSON.stringify(connection)}: expected the token "Upgrade"`,
    );
  }

  // Step 6: |Sec-WebSocket-Version| must be 13. §4.2.2 / §4.4: otherwise answer
  // 426 with the versions the server understands.
  checkVersion(headerValue(headers, 'sec-websocket-version'), 'Sec-WebSocket-Version');

  // Step 5: |Sec-WebSocket-Key|, base64 that decodes to 16 bytes (§11.3.1:
  // it must not appear more than once; Node joins duplicates with ", ").
  const key = headerValue(headers, 'sec-websocket-key');
  if (key === undefined || !isValidKey(key)) {
    throw new InvalidHeaderError(
      'WS_ERR_INVALID_KEY',
      key === undefined
        ? 'Missing Sec-WebSocket-Key header'
        : `Invalid Sec-WebSocket-Key header ${JSON.stringify(key)}: expected 16 bytes in base64`,
    );
  }

  // Step 8 (optional): |Sec-WebSocket-Protocol|, a list of tokens (§4.1).
  const protocolHeader = headerValue(headers, 'sec-websocket-protocol');
  const protocols = protocolHeader === undefined ? [] : parseProtocols(protocolHeader);

  // Step 9 (optional): |Sec-WebSocket-Extensions| (§9.1 syntax).
  const extensionHeader = headerValue(headers, 'sec-websocket-extensions');
  const extensions = extensionHeader === undefined ? [] : parseExtensions(extensionHeader);

  return { key, protocols, extensions };
}

/**
 * The version check of both handshakes (RFC 6455 §4.2.2 / §4.4, RFC 8441 §5):
 * anything but `13` (or none) throws `WS_ERR_UNSUPPORTED_VERSION`, answered
 * with 426 and the field naming the version we speak. `field` is the field's
 * name as the answer spells it (`Sec-WebSocket-Version`, lower case on h2).
 * @throws InvalidHeaderError
 */
export function checkVersion(version: string | undefined, field: string): void {
  if (version === WEBSOCKET_VERSION) return;
  throw new InvalidHeaderError(
    'WS_ERR_UNSUPPORTED_VERSION',
    version === undefined
      ? `Missing ${field} header`
      : `Unsupported WebSocket version ${JSON.stringify(version)}: this server speaks version ${WEBSOCKET_VERSION}`,
    426,
    { [field]: WEBSOCKET_VERSION },
  );
}

/**
 * The head of a `101 Switching Protocols` response, ending with the empty
 * line. Write it as ASCII/latin1; every byte is ASCII.
 *
 * @throws TypeError if `protocol` is not a token, or an extra header has an
 *   invalid name or value (CR, LF and other controls are refused), or its name
 *   is one the handshake writes (`Upgrade`, `Connection`, `Sec-WebSocket-*`).
 * @see https://www.rfc-editor.org/rfc/rfc6455#section-4.2.2
 */
export function buildUpgradeResponse(options: UpgradeResponseOptions): string {
  // One string built in place (no array of lines to join): this runs once per handshake.
  let head = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${computeAcceptKey(options.key)}\r\n`;
  if (options.protocol !== undefined && options.protocol !== '') {
    if (!isToken(options.protocol)) {
      throw new TypeError(`Subprotocol is not a token: ${JSON.stringify(options.protocol)}`);
    }
    head += `Sec-WebSocket-Protocol: ${options.protocol}\r\n`;
  }
  if (options.extensions !== undefined && options.extensions !== '') {
    assertHeaderValue('Sec-WebSocket-Extensions', options.extensions);
    head += `Sec-WebSocket-Extensions: ${options.extensions}\r\n`;
  }
  const headers = options.headers;
  if (headers !== undefined) {
    for (const [name, value] of Object.entries(headers)) {
      if (!isToken(name)) throw new TypeError(`Invalid header name: ${JSON.stringify(name)}`);
      const lower = name.toLowerCase();
      if (lower === 'upgrade' || lower === 'connection' || lower.startsWith('sec-websocket-')) {
        throw new TypeError(`Header ${name} is written by the handshake and cannot be set`);
      }
      for (const v of typeof value === 'string' ? [value] : value) {
        assertHeaderValue(name, v);
        head += `${name}: ${v}\r\n`;
      }
    }
  }
  return head + '\r\n';
}

/**
 * A complete HTTP/1.1 error response for a failed handshake: status line,
 * `Connection: close`, a `text/plain` body holding `err.message`, and
 * `err.headers` (so a 426 carries `Sec-WebSocket-Version: 13`, a 405 `Allow`,
 * a 503 `Retry-After`). Encode it as UTF-8 (`Content-Length` counts UTF-8
 * bytes), then close the connection.
 *
 * This is an error path, so it never throws: a header in `err.headers` with an
 * invalid name or value, or one that would contradict the framing
 * (`Connection`, `Content-Type`, `Content-Length`, `Transfer-Encoding`), is
 * left out, and a status outside 400-599 is sent as 400.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6455#section-4.2.2
 */
export function buildErrorResponse(err: HandshakeError): string {
  const status = Number.isInteger(err.statusCode) && err.statusCode >= 400 && err.statusCode <= 599 ? err.statusCode : 400;
  const body = err.message;
  const lines = [
    `HTTP/1.1 ${status} ${REASON_PHRASES[status] ?? 'Error'}`,
    'Connection: close',
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body, 'utf8')}`,
  ];
  for (const [name, value] of Object.entries(err.headers)) {
    if (!isToken(name) || !isHeaderValue(value) || FRAMING_HEADERS.has(name.toLowerCase())) continue;
    lines.push(`${name}: ${value}`);
  }
  return lines.join('\r\n') + '\r\n\r\n' + body;
}

/**
 * Check the server's opening handshake response (client side).
 *
 * | check                                               | code                               | error class |
 * |-----------------------------------------------------|------------------------------------|-------------|
 * | status is 101                                       | `WS_ERR_UNEXPECTED_STATUS`         | HandshakeError, `statusCode` = the received status |
 * | `Upgrade` is `websocket` (case-insensitive)         | `WS_ERR_INVALID_UPGRADE_HEADER`    | InvalidHeaderError |
 * | `Connection` lists `upgrade`                        | `WS_ERR_INVALID_CONNECTION_HEADER` | InvalidHeaderError |
 * | `Sec-WebSocket-Accept` matches the key              | `WS_ERR_INVALID_ACCEPT`            | InvalidHeaderError |
 * | no `Sec-WebSocket-Extensions` unless some were offered | `WS_ERR_UNEXPECTED_EXTENSION`   | NegotiationError |
 * | `Sec-WebSocket-Extensions` syntax                   | `WS_ERR_INVALID_EXTENSION_HEADER`  | InvalidHeaderError |
 * | `Sec-WebSocket-Protocol` is one offered value       | `WS_ERR_UNEXPECTED_PROTOCOL`       | NegotiationError |
 *
 * If the client offered subprotocols and the server selected none, the
 * handshake still succeeds with `protocol: ''`, as RFC 6455 and browsers do;
 * the caller may refuse that.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6455#section-4.1
 */
export function validateUpgradeResponse(res: UpgradeResponse, req: ClientHandshakeRequest): ValidatedUpgradeResponse {
  const { headers } = res;

  // §4.1 step 1: a status other than 101 is handled per HTTP; for us the
  // handshake failed. The received status is kept for the application.
  if (res.statusCode !== 101) {
    throw new HandshakeError('WS_ERR_UNEXPECTED_STATUS', `Unexpected server response: ${res.statusCode}`, res.statusCode);
  }

  // Step 2: |Upgrade| must be an ASCII case-insensitive match for "websocket".
  const upgrade = headerValue(headers, 'upgrade');
  if (upgrade === undefined || upgrade.toLowerCase() !== 'websocket') {
    throw new InvalidHeaderError(
      'WS_ERR_INVALID_UPGRADE_HEADER',
      upgrade === undefined ? 'Missing Upgrade header in the response' : `Invalid Upgrade header in the response: ${JSON.stringify(upgrade)}`,
    );
  }

  // Step 3: |Connection| must contain the token "Upgrade".
  const connection = headerValue(headers, 'connection');
  if (connection === undefined || !listHasToken(connection, 'upgrade')) {
    throw new InvalidHeaderError(
      'WS_ERR_INVALID_CONNECTION_HEADER',
      connection === undefined
        ? 'Missing Connection header in the response'
        : `Invalid Connection header in the response: ${JSON.stringify(connection)}`,
    );
  }

  // Step 4: |Sec-WebSocket-Accept| must be base64(SHA-1(key + GUID)).
  const accept = headerValue(headers, 'sec-websocket-accept');
  if (accept !== computeAcceptKey(req.key)) {
    throw new InvalidHeaderError(
      'WS_ERR_INVALID_ACCEPT',
      accept === undefined ? 'Missing Sec-WebSocket-Accept header' : 'Invalid Sec-WebSocket-Accept header: it does not match the key',
    );
  }

  // Step 5: extensions that were not in the client's handshake fail the
  // connection. Which ones were offered is checked by each extension's module.
  const extensionHeader = headerValue(headers, 'sec-websocket-extensions');
  let extensions: ExtensionOffer[] = [];
  if (extensionHeader !== undefined) {
    if (!req.extensionsOffered) {
      throw new NegotiationError(
        'WS_ERR_UNEXPECTED_EXTENSION',
        `Server accepted extensions that were not offered: ${JSON.stringify(extensionHeader)}`,
      );
    }
    extensions = parseExtensions(extensionHeader);
  }

  // Step 6: a subprotocol that was not in the client's handshake fails the
  // connection; so does more than one value (§4.2.2: the server selects one).
  const protocol = headerValue(headers, 'sec-websocket-protocol');
  if (protocol !== undefined && !req.protocols.includes(protocol)) {
    throw new NegotiationError(
      'WS_ERR_UNEXPECTED_PROTOCOL',
      req.protocols.length === 0
        ? `Server selected a subprotocol although none was offered: ${JSON.stringify(protocol)}`
        : `Server selected a subprotocol that was not offered: ${JSON.stringify(protocol)}`,
    );
  }

  return { protocol: protocol ?? '', extensions };
}

// --- helpers -----------------------------------------------------------------

/** A header's value; repeated fields are joined with ", " (RFC 7230 §3.2.2). */
function headerValue(headers: HandshakeHeaders, name: string): string | undefined {
  const value = headers[name];
  if (value === undefined || typeof value === 'string') return value;
  return value.join(', ');
}

/** Strip optional whitespace (SP / HTAB) at both ends. */
function trimOws(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && (value[start] === ' ' || value[start] === '\t')) start++;
  while (end > start && (value[end - 1] === ' ' || value[end - 1] === '\t')) end--;
  return value.slice(start, end);
}

/** Whether a comma-separated list contains `token` (lower case), ignoring case. */
function listHasToken(list: string, token: string): boolean {
  return list.split(',').some((element) => trimOws(element).toLowerCase() === token);
}

function isHttp11OrHigher(version: string): boolean {
  const match = /^(\d+)\.(\d+)$/.exec(version);
  if (match === null) return false;
  const major = Number(match[1]);
  return major > 1 || (major === 1 && Number(match[2]) >= 1);
}

// 16 bytes are 22 base64 digits and "==". The 22nd digit carries 2 data bits
// and 4 padding bits; requiring a canonical encoding (decode then re-encode
// gives the same text) rejects non-zero padding bits.
const KEY_SYNTAX = /^[A-Za-z0-9+/]{22}==$/;

function isValidKey(key: string): boolean {
  return KEY_SYNTAX.test(key) && Buffer.from(key, 'base64').toString('base64') === key;
}

/** `Sec-WebSocket-Protocol = 1#token` with no value twice (the HTTP/1.1 and the HTTP/2 handshake). @throws InvalidHeaderError */
export function parseProtocols(value: string): string[] {
  const protocols: string[] = [];
  for (const element of value.split(',')) {
    const protocol = trimOws(element);
    // RFC 7230 §7: empty list elements are ignored.
    if (protocol === '') continue;
    if (!isToken(protocol)) {
      throw new InvalidHeaderError(
        'WS_ERR_INVALID_PROTOCOL_HEADER',
        `Invalid Sec-WebSocket-Protocol header: ${JSON.stringify(protocol)} is not a token`,
      );
    }
    if (protocols.includes(protocol)) {
      throw new InvalidHeaderError(
        'WS_ERR_INVALID_PROTOCOL_HEADER',
        `Invalid Sec-WebSocket-Protocol header: ${JSON.stringify(protocol)} is offered twice`,
      );
    }
    protocols.push(protocol);
  }
  if (protocols.length === 0) {
    throw new InvalidHeaderError('WS_ERR_INVALID_PROTOCOL_HEADER', 'Invalid Sec-WebSocket-Protocol header: no subprotocol in the list');
  }
  return protocols;
}

// field-value: visible ASCII, SP and HTAB only. Refusing CR and LF prevents
// header injection; refusing obs-text keeps the head pure ASCII.
const HEADER_VALUE = /^[\t\x20-\x7e]*$/;

function isHeaderValue(value: string): boolean {
  return HEADER_VALUE.test(value);
}

function assertHeaderValue(name: string, value: string): void {
  if (!isHeaderValue(value)) throw new TypeError(`Invalid value for header ${name}: ${JSON.stringify(value)}`);
}

const FRAMING_HEADERS = new Set(['connection', 'content-type', 'content-length', 'transfer-encoding']);

const REASON_PHRASES: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  409: 'Conflict',
  410: 'Gone',
  413: 'Content Too Large',
  414: 'URI Too Long',
  421: 'Misdirected Request',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};
