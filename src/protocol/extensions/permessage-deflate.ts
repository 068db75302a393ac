/**
 * permessage-deflate (RFC 7692): parameter negotiation only. Compression
 * itself lives in the transport's deflate codec, which is configured from the
 * {@link NegotiatedDeflate} these functions return.
 *
 * Parameters (RFC 7692 §7.1), all at most once per offer or response:
 *
 * | parameter                    | in an offer (client)                         | in a response (server) |
 * |------------------------------|----------------------------------------------|------------------------|
 * | `server_no_context_takeover` | asks the server to reset its context per message | confirms it (required if asked), or imposes it |
 * | `client_no_context_takeover` | hint: the client will reset its context      | tells the client to reset its context |
 * | `server_max_window_bits=N`   | asks the server for a window of at most 2^N  | the server's window, ≤ the asked value |
 * | `client_max_window_bits[=N]` | the client can limit its window (to N)       | limits the client's window; only if offered |
 *
 * ## A window of 8 bits
 *
 * RFC 7692 allows 8..15, but zlib's deflate cannot produce a 256-byte window:
 * zlib ≥ 1.2.9 refuses `windowBits` 8 for raw deflate, and Node's zlib
 * binding raises it to 9 instead. That is safe to send to a peer that asked
 * for 8: zlib never emits a match distance above 2^windowBits − 262, which is
 * 250 for 9 bits, so the stream decodes with a 256-byte window (verified with
 * Node 20: `deflateRawSync(…, { windowBits: 8 })` output inflates with
 * `inflateRawSync(…, { windowBits: 8 })`). So this module accepts 8 in both
 * directions and reports it as 8; the codec may pass 8 to
 * `zlib.createDeflateRaw` (or 9, which is equivalent), and inflates with the
 * negotiated value (zlib's inflate supports 8). `ws` and python-websockets
 * also accept 8.
 *
 * @see https://www.rfc-editor.org/rfc/rfc7692#section-7
 */
import { NegotiationError } from '../errors.js';
import { type ExtensionOffer, type ExtensionParam, formatExtensions } from './header.js';

/** The extension's registered name. */
export const PERMESSAGE_DEFLATE = 'permessage-deflate';

/**
 * permessage-deflate settings, named as in the `ws` package's
 * `perMessageDeflate` option. Negotiated parameters mean slightly different
 * things on each side, as noted per option.
 */
export interface PerMessageDeflateOptions {
  /**
   * Client: ask the server not to keep its compression context between
   * messages. Server: never keep it, even if the client did not ask. A server
   * always honours a client's request for it. Default `false`.
   */
  serverNoContextTakeover?: boolean;
  /**
   * Client: announce that it will not keep its compression context between
   * messages. Server: tell the client not to keep it (saves the server's
   * inflate memory between messages). A server also confirms it when the
   * client announced it. Default `false`.
   */
  clientNoContextTakeover?: boolean;
  /**
   * Base-2 logarithm of the largest LZ77 window the server may compress with,
   * 8..15. Client: ask the server for at most this. Server: use at most this;
   * a smaller request from the client wins. Default: no limit (15, 32 KiB).
   */
  serverMaxWindowBits?: number;
  /**
   * Base-2 logarithm of the largest LZ77 window the client may compress with,
   * 8..15. Client: `true` (default) offers the parameter without a value,
   * meaning the client accepts any limit the server sets; a number also
   * limits the client itself; `false` leaves the parameter out, so the server
   * cannot set a limit. Server: a number sets the limit when the client offered
   * the parameter (a client that did not is accepted with a 15-bit window);
   * otherwise the client's own value, if any, is echoed. Default `true`.
   */
  clientMaxWindowBits?: number | boolean;
  /**
   * Messages smaller than this many bytes are sent uncompressed. Not
   * negotiated; read by the transport. Default 1024 bytes.
   */
  threshold?: number;
  /**
   * Largest number of zlib operations running at once, across all
   * connections of the process. Not negotiated; read by the transport.
   * Default 10.
   */
  concurrencyLimit?: number;
  /**
   * Release our compression context after this many ms without a message
   * (allowed by RFC 7692 whatever was negotiated: the next message starts a
   * fresh context). Not negotiated; read by the transport. Default 10000; 0 keeps it.
   */
  idleReleaseMs?: number;
  /**
   * zlib compression level, 0 (none) to 9 (best), or -1 for zlib's default
   * (6). Not negotiated; read by the transport. Default 3: on realtime-style
   * JSON about 2.3x faster than 6 for about 15% larger output.
   */
  level?: number;
  /**
   * zlib memory level, 1 (least memory, slowest) to 9. Not negotiated; read
   * by the transport. Default 8.
   */
  memLevel?: number;
}

/** The parameters both sides agreed on, as the codec needs them. */
export interface NegotiatedDeflate {
  /** The server resets its compression context after each message. */
  serverNoContextTakeover: boolean;
  /** The client resets its compression context after each message. */
  clientNoContextTakeover: boolean;
  /** Base-2 logarithm of the server's maximum LZ77 window, 8..15 (15 if not negotiated). */
  serverMaxWindowBits: number;
  /** Base-2 logarithm of the client's maximum LZ77 window, 8..15 (15 if not negotiated). */
  clientMaxWindowBits: number;
}

/** An offer the server accepted. */
export interface AcceptedDeflateOffer {
  /** The agreed parameters. */
  params: NegotiatedDeflate;
  /** The `Sec-WebSocket-Extensions` element to answer with, e.g. `permessage-deflate; server_no_context_takeover`. */
  responseHeader: string;
}

/** Parameters of one offer or response, validated; absent ones are `undefined`/`false`. */
interface DeflateParams {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits: number | undefined;
  /** `true`: present without a value (only valid in an offer). */
  clientMaxWindowBits: number | true | undefined;
}

const DEFAULT_WINDOW_BITS = 15;

/** Window bits are written as 8..15 in decimal, nothing else (no "08", no "8.0"). */
function parseWindowBits(value: string | true): number | undefined {
  return value !== true && /^(?:[89]|1[0-5])$/.test(value) ? Number(value) : undefined;
}

/**
 * Validate the parameters of one offer (`inOffer`) or response. Returns the
 * reason as a string when they are invalid (RFC 7692 §7.1: an unknown or
 * repeated parameter, or a bad value, makes the offer or response invalid).
 */
function readParams(params: readonly ExtensionParam[], inOffer: boolean): DeflateParams | string {
  const result: DeflateParams = {
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: undefined,
    clientMaxWindowBits: undefined,
  };
  const seen = new Set<string>();
  for (const { name, value } of params) {
    if (seen.has(name)) return `parameter ${name} appears more than once`;
    seen.add(name);
    switch (name) {
      // §7.1.1.1 / §7.1.1.2: these parameters have no value.
      case 'server_no_context_takeover':
      case 'client_no_context_takeover':
        if (value !== true) return `parameter ${name} must not have a value`;
        if (name === 'server_no_context_takeover') result.serverNoContextTakeover = true;
        else result.clientNoContextTakeover = true;
        break;
      // §7.1.2.1: server_max_window_bits always has a value, 8..15.
      case 'server_max_window_bits': {
        const bits = parseWindowBits(value);
        if (bits === undefined) return `parameter ${name} must be an integer from 8 to 15`;
        result.serverMaxWindowBits = bits;
        break;
      }
      // §7.1.2.2: client_max_window_bits may lack a value in an offer only.
      case 'client_max_window_bits': {
        if (value === true && inOffer) {
          result.clientMaxWindowBits = true;
          break;
        }
        const bits = parseWindowBits(value);
        if (bits === undefined) return `parameter ${name} must be an integer from 8 to 15`;
        result.clientMaxWindowBits = bits;
        break;
      }
      default:
        return `unknown parameter ${name}`;
    }
  }
  return result;
}

function checkWindowBitsOption(name: string, value: unknown): void {
  if (typeof value === 'number' && !(Number.isInteger(value) && value >= 8 && value <= 15)) {
    throw new RangeError(`perMessageDeflate.${name} must be an integer from 8 to 15, got ${value}`);
  }
}

function checkOptions(options: PerMessageDeflateOptions): void {
  checkWindowBitsOption('serverMaxWindowBits', options.serverMaxWindowBits);
  checkWindowBitsOption('clientMaxWindowBits', options.clientMaxWindowBits);
}

/** The canonical parameter list: no_context_takeover flags first, then window sizes. */
function toParams(p: DeflateParams): ExtensionParam[] {
  const params: ExtensionParam[] = [];
  if (p.serverNoContextTakeover) params.push({ name: 'server_no_context_takeover', value: true });
  if (p.clientNoContextTakeover) params.push({ name: 'client_no_context_takeover', value: true });
  if (p.serverMaxWindowBits !== undefined) params.push({ name: 'server_max_window_bits', value: String(p.serverMaxWindowBits) });
  if (p.clientMaxWindowBits === true) params.push({ name: 'client_max_window_bits', value: true });
  else if (p.clientMaxWindowBits !== undefined) params.push({ name: 'client_max_window_bits', value: String(p.clientMaxWindowBits) });
  return params;
}

/**
 * Server side: pick the first acceptable permessage-deflate offer, in the
 * client's order (RFC 7692 §5: offers are in preference order), and build the
 * response. Offers of other extensions are ignored. An invalid offer (unknown
 * or repeated parameter, window bits not an integer 8..15, a value on a
 * `*_no_context_takeover` parameter, `server_max_window_bits` without a value)
 * is declined and the next one tried.
 *
 * Decisions on a valid offer:
 * - `server_no_context_takeover`: included if the client asked (§7.1.1.1:
 *   the server accepts by including it) or `serverNoContextTakeover` is set.
 * - `client_no_context_takeover`: included if `clientNoContextTakeover` is
 *   set or the client announced it (§7.1.1.2 allows confirming the hint).
 * - `server_max_window_bits`: the smaller of the asked value and
 *   `serverMaxWindowBits` (§7.1.2.1: same or smaller value); if the client did
 *   not ask, `serverMaxWindowBits` when it is below 15.
 * - `client_max_window_bits`: only if the client offered it (§7.1.2.2: the
 *   server MUST NOT include it otherwise); the smaller of the client's value
 *   and a numeric `clientMaxWindowBits`, omitted when neither side set a number.
 *
 * @returns the agreed parameters and the response element, or `null` if no
 *   offer is acceptable (then answer without permessage-deflate).
 * @throws RangeError if a window-bits option is not an integer 8..15.
 * @see https://www.rfc-editor.org/rfc/rfc7692#section-7.1
 */
export function acceptDeflateOffer(
  offers: readonly ExtensionOffer[],
  options: PerMessageDeflateOptions = {},
): AcceptedDeflateOffer | null {
  checkOptions(options);
  for (const offer of offers) {
    if (offer.name !== PERMESSAGE_DEFLATE) continue;
    const asked = readParams(offer.params, true);
    if (typeof asked === 'string') continue; // §7.1: decline an invalid offer, try the next.

    const serverLimit = options.serverMaxWindowBits ?? DEFAULT_WINDOW_BITS;
    let serverMaxWindowBits: number | undefined;
    if (asked.serverMaxWindowBits !== undefined) serverMaxWindowBits = Math.min(asked.serverMaxWindowBits, serverLimit);
    else if (serverLimit < DEFAULT_WINDOW_BITS) serverMaxWindowBits = serverLimit;

    let clientMaxWindowBits: number | undefined;
    if (asked.clientMaxWindowBits !== undefined) {
      const clientLimit = typeof options.clientMaxWindowBits === 'number' ? options.clientMaxWindowBits : undefined;
      const clientOwn = asked.clientMaxWindowBits === true ? undefined : asked.clientMaxWindowBits;
      if (clientLimit !== undefined || clientOwn !== undefined) {
        clientMaxWindowBits = Math.min(clientLimit ?? DEFAULT_WINDOW_BITS, clientOwn ?? DEFAULT_WINDOW_BITS);
      }
    }

    const response: DeflateParams = {
      serverNoContextTakeover: asked.serverNoContextTakeover || options.serverNoContextTakeover === true,
      clientNoContextTakeover: asked.clientNoContextTakeover || options.clientNoContextTakeover === true,
      serverMaxWindowBits,
      clientMaxWindowBits,
    };
    return {
      params: {
        serverNoContextTakeover: response.serverNoContextTakeover,
        clientNoContextTakeover: response.clientNoContextTakeover,
        serverMaxWindowBits: serverMaxWindowBits ?? DEFAULT_WINDOW_BITS,
        clientMaxWindowBits: clientMaxWindowBits ?? DEFAULT_WINDOW_BITS,
      },
      responseHeader: formatExtensions([{ name: PERMESSAGE_DEFLATE, params: toParams(response) }]),
    };
  }
  return null;
}

/**
 * Client side: the `Sec-WebSocket-Extensions` value offering
 * permessage-deflate with these options, e.g.
 * `permessage-deflate; client_max_window_bits` for the defaults.
 *
 * @throws RangeError if a window-bits option is not an integer 8..15.
 * @see https://www.rfc-editor.org/rfc/rfc7692#section-7.1
 */
export function buildDeflateOffer(options: PerMessageDeflateOptions = {}): string {
  checkOptions(options);
  const client = options.clientMaxWindowBits ?? true;
  return formatExtensions([
    {
      name: PERMESSAGE_DEFLATE,
      params: toParams({
        serverNoContextTakeover: options.serverNoContextTakeover === true,
        clientNoContextTakeover: options.clientNoContextTakeover === true,
        serverMaxWindowBits: options.serverMaxWindowBits,
        clientMaxWindowBits: client === false ? undefined : client,
      }),
    },
  ]);
}

function invalid(reason: string): NegotiationError {
  return new NegotiationError('WS_ERR_INVALID_EXTENSION', `Invalid Sec-WebSocket-Extensions response: ${reason}`);
}

/**
 * Client side: check the server's accepted extensions against the offer
 * built by {@link buildDeflateOffer} with the same options, and return the
 * agreed parameters. The client offered permessage-deflate only, so any other
 * extension, or permessage-deflate twice, fails the connection (RFC 6455
 * §4.1, RFC 7692 §5). Call it only when the response lists extensions: an
 * empty list means the server declined and there is nothing to check.
 *
 * Rules on the response's parameters (RFC 7692 §7.1):
 * - unknown or repeated parameters, and values out of 8..15, are invalid;
 *   `client_max_window_bits` must have a value.
 * - `server_no_context_takeover` must be present if it was offered
 *   (§7.1.1.1); it may also be present unasked.
 * - `client_no_context_takeover` may always be present; the client then
 *   resets its context. The client also does so if it announced it.
 * - `server_max_window_bits` must be present and ≤ the offered value if one
 *   was offered (§7.1.2.1); unasked, any value 8..15 is accepted.
 * - `client_max_window_bits` must be absent unless offered (§7.1.2.2), and ≤
 *   the client's own limit if it set one; when absent, the client's own
 *   limit (or 15) applies.
 *
 * @param response the parsed extensions from the response.
 * @returns the agreed parameters.
 * @throws NegotiationError `WS_ERR_INVALID_EXTENSION` (status 400) on an
 *   invalid response, including one without permessage-deflate.
 * @throws RangeError if a window-bits option is not an integer 8..15.
 * @see https://www.rfc-editor.org/rfc/rfc7692#section-7.1
 */
export function acceptDeflateResponse(
  response: readonly ExtensionOffer[],
  options: PerMessageDeflateOptions = {},
): NegotiatedDeflate {
  checkOptions(options);
  let accepted: ExtensionOffer | undefined;
  for (const extension of response) {
    if (extension.name !== PERMESSAGE_DEFLATE) throw invalid(`extension ${extension.name} was not offered`);
    if (accepted !== undefined) throw invalid(`${PERMESSAGE_DEFLATE} accepted more than once`);
    accepted = extension;
  }
  if (accepted === undefined) throw invalid(`${PERMESSAGE_DEFLATE} is not in the response`);

  const got = readParams(accepted.params, false);
  if (typeof got === 'string') throw invalid(got);

  if (options.serverNoContextTakeover === true && !got.serverNoContextTakeover) {
    throw invalid('server_no_context_takeover was requested but not confirmed');
  }

  let serverMaxWindowBits = got.serverMaxWindowBits ?? DEFAULT_WINDOW_BITS;
  if (options.serverMaxWindowBits !== undefined) {
    if (got.serverMaxWindowBits === undefined) throw invalid('server_max_window_bits was requested but not confirmed');
    if (got.serverMaxWindowBits > options.serverMaxWindowBits) {
      throw invalid(`server_max_window_bits=${got.serverMaxWindowBits} is above the requested ${options.serverMaxWindowBits}`);
    }
    serverMaxWindowBits = got.serverMaxWindowBits;
  }

  const offered = options.clientMaxWindowBits ?? true;
  let clientMaxWindowBits = typeof offered === 'number' ? offered : DEFAULT_WINDOW_BITS;
  // In a response, readParams only lets a number through (never a bare parameter).
  const bits = got.clientMaxWindowBits;
  if (typeof bits === 'number') {
    if (offered === false) throw invalid('client_max_window_bits was not offered');
    if (bits > clientMaxWindowBits) {
      throw invalid(`client_max_window_bits=${bits} is above the offered ${clientMaxWindowBits}`);
    }
    clientMaxWindowBits = bits;
  }

  return {
    serverNoContextTakeover: got.serverNoContextTakeover,
    clientNoContextTakeover: got.clientNoContextTakeover || options.clientNoContextTakeover === true,
    serverMaxWindowBits,
    clientMaxWindowBits,
  };
}
