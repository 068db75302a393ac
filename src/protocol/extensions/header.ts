/**
 * The `Sec-WebSocket-Extensions` header: parsing and formatting.
 *
 * ```
 * Sec-WebSocket-Extensions = extension-list
 * extension-list  = 1#extension
 * extension       = extension-token *( ";" extension-param )
 * extension-param = token [ "=" ( token / quoted-string ) ]
 * ```
 *
 * A quoted value, once unescaped, must itself be a token (RFC 6455 §9.1).
 * List and whitespace rules come from RFC 7230: empty list elements are
 * ignored, optional whitespace (SP / HTAB) may surround `,` `;` and `=`.
 *
 * Names and values keep their case; the same extension may be offered several
 * times and a parameter may repeat. Both are kept in order, because deciding
 * what a repetition means is the extension's business (RFC 7692 declines an
 * offer with a repeated parameter, for instance).
 *
 * @see https://www.rfc-editor.org/rfc/rfc6455#section-9.1
 * @see https://www.rfc-editor.org/rfc/rfc7230#section-7
 * @see https://www.rfc-editor.org/rfc/rfc7230#section-3.2.6
 */
import { InvalidHeaderError } from '../errors.js';

/** One `name` or `name=value` parameter of an extension. */
export interface ExtensionParam {
  /** Parameter name, a token, as sent. */
  readonly name: string;
  /** The value, unquoted; `true` when the parameter has no value. */
  readonly value: string | true;
}

/**
 * One element of a `Sec-WebSocket-Extensions` list: an offer in a request, or
 * an accepted extension in a response.
 */
export interface ExtensionOffer {
  /** Extension name, a token, as sent (e.g. `permessage-deflate`). */
  readonly name: string;
  /** Parameters in the order they were sent, repetitions included. */
  readonly params: readonly ExtensionParam[];
}

// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
//         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA      (RFC 7230 §3.2.6)
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) {
  TCHAR[c] = 1;
  TCHAR[c + 0x20] = 1;
}

function isTchar(code: number): boolean {
  return code < 128 && TCHAR[code] === 1;
}

/**
 * Whether `value` is an RFC 7230 token (one or more tchar).
 * @see https://www.rfc-editor.org/rfc/rfc7230#section-3.2.6
 */
export function isToken(value: string): boolean {
  if (value.length === 0) return false;
  for (let i = 0; i < value.length; i++) {
    if (!isTchar(value.charCodeAt(i))) return false;
  }
  return true;
}

const SP = 0x20;
const HTAB = 0x09;
const COMMA = 0x2c;
const SEMICOLON = 0x3b;
const EQUALS = 0x3d;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;

/** A cursor over one header value; every method advances `pos`. */
class Scanner {
  pos = 0;
  constructor(readonly input: string) {}

  get done(): boolean {
    return this.pos >= this.input.length;
  }

  peek(): number {
    return this.input.charCodeAt(this.pos);
  }

  skipOws(): void {
    while (!this.done && (this.peek() === SP || this.peek() === HTAB)) this.pos++;
  }

  token(what: string): string {
    const start = this.pos;
    while (!this.done && isTchar(this.peek())) this.pos++;
    if (this.pos === start) throw this.fail(`expected ${what}`);
    return this.input.slice(start, this.pos);
  }

  // quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
  // qdtext        = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
  // quoted-pair   = "\" ( HTAB / SP / VCHAR / obs-text )
  quotedString(): string {
    const open = this.pos++;
    let out = '';
    while (!this.done) {
      const c = this.peek();
      if (c === DQUOTE) {
        this.pos++;
        return out;
      }
      if (c === BACKSLASH) {
        this.pos++;
        if (this.done) break;
        const escaped = this.peek();
        if (!isQuotedPairChar(escaped)) throw this.fail('invalid escaped character');
        out += this.input[this.pos++];
        continue;
      }
      if (!isQdtext(c)) throw this.fail('invalid character in quoted string');
      out += this.input[this.pos++];
    }
    this.pos = open;
    throw this.fail('unterminated quoted string');
  }

  fail(reason: string): InvalidHeaderError {
    const at = this.done ? 'at end of input' : `at index ${this.pos} (${JSON.stringify(this.input[this.pos])})`;
    return new InvalidHeaderError(
      'WS_ERR_INVALID_EXTENSION_HEADER',
      `Invalid Sec-WebSocket-Extensions header: ${reason} ${at}`,
      400,
    );
  }
}

function isQdtext(c: number): boolean {
  return c === HTAB || c === SP || c === 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) || (c >= 0x80 && c <= 0xff);
}

function isQuotedPairChar(c: number): boolean {
  return c === HTAB || (c >= 0x20 && c <= 0x7e) || (c >= 0x80 && c <= 0xff);
}

/**
 * Parse a `Sec-WebSocket-Extensions` value into its offers, in order. When a
 * request carries the header several times, join the values with `", "`
 * first: the result is the same list (RFC 7230 §3.2.2).
 *
 * @throws InvalidHeaderError `WS_ERR_INVALID_EXTENSION_HEADER` (status 400)
 *   on any syntax error, on a quoted value that is not a token once
 *   unquoted, and on a list with no extension at all.
 * @see https://www.rfc-editor.org/rfc/rfc6455#section-9.1
 */
export function parseExtensions(value: string): ExtensionOffer[] {
  const s = new Scanner(value);
  const offers: ExtensionOffer[] = [];

  for (;;) {
    s.skipOws();
    if (s.done) break;
    // RFC 7230 §7: a recipient ignores empty list elements ("a, , b").
    if (s.peek() === COMMA) {
      s.pos++;
      continue;
    }

    const name = s.token('an extension name');
    const params: ExtensionParam[] = [];
    s.skipOws();
    while (!s.done && s.peek() === SEMICOLON) {
      s.pos++;
      s.skipOws();
      const paramName = s.token('a parameter name');
      let paramValue: string | true = true;
      s.skipOws();
      if (!s.done && s.peek() === EQUALS) {
        s.pos++;
        s.skipOws();
        if (!s.done && s.peek() === DQUOTE) {
          const start = s.pos;
          paramValue = s.quotedString();
          // RFC 6455 §9.1: the unescaped quoted-string must conform to token.
          if (!isToken(paramValue)) {
            s.pos = start;
            throw s.fail('quoted value is not a token');
          }
        } else {
          paramValue = s.token('a parameter value');
        }
        s.skipOws();
      }
      params.push({ name: paramName, value: paramValue });
    }
    offers.push({ name, params });

    if (s.done) break;
    if (s.peek() !== COMMA) throw s.fail('expected "," or ";"');
    s.pos++;
  }

  // extension-list = 1#extension: at least one non-empty element.
  if (offers.length === 0) {
    throw new InvalidHeaderError(
      'WS_ERR_INVALID_EXTENSION_HEADER',
      'Invalid Sec-WebSocket-Extensions header: no extension in the list',
      400,
    );
  }
  return offers;
}

/**
 * Format extensions as a `Sec-WebSocket-Extensions` value, e.g.
 * `permessage-deflate; client_max_window_bits=10, x-foo`. Values are written
 * as bare tokens (a quoted value would have to be a token anyway).
 *
 * @throws TypeError if a name or a value is not a token.
 * @see https://www.rfc-editor.org/rfc/rfc6455#section-9.1
 */
export function formatExtensions(extensions: readonly ExtensionOffer[]): string {
  return extensions
    .map((ext) => {
      if (!isToken(ext.name)) throw new TypeError(`Extension name is not a token: ${JSON.stringify(ext.name)}`);
      let out = ext.name;
      for (const param of ext.params) {
        if (!isToken(param.name)) throw new TypeError(`Extension parameter name is not a token: ${JSON.stringify(param.name)}`);
        if (param.value === true) {
          out += `; ${param.name}`;
        } else {
          if (!isToken(param.value)) {
            throw new TypeError(`Value of extension parameter ${param.name} is not a token: ${JSON.stringify(param.value)}`);
          }
          out += `; ${param.name}=${param.value}`;
        }
      }
      return out;
    })
    .join(', ');
}
