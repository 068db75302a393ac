/**
 * A minimal, strict HTTP/1.1 request-head parser for the opening handshake
 * (RFC 6455 §4.2.1 over RFC 9112 §2-§5), so the standalone `WebSocketServer`
 * can answer upgrades on a plain `net.Server` without `node:http`: no
 * `IncomingMessage`, no HTTP parser object and no per-connection closures
 * live on after the upgrade, and a handshake costs less CPU.
 *
 * Bytes in through `write`; out comes nothing yet (`null`), the parsed head
 * with the bytes that followed it, or a `HandshakeError` whose status is the
 * answer to send:
 *
 * | input                                                    | status |
 * |----------------------------------------------------------|--------|
 * | head over `maxHeaderSize` bytes, or over `maxHeaders` fields | 431 |
 * | request-target over `maxUrlSize` bytes                   | 414 |
 * | malformed request line, bare CR or LF, control characters, obs-fold, whitespace before a colon, a field name that is not a token | 400 |
 * | HTTP major version other than 1                          | 505 |
 * | more than one Host; Transfer-Encoding; Content-Length other than 0 on an upgrade | 400 |
 *
 * It does no I/O and keeps at most `maxHeaderSize` bytes.
 */
import { HandshakeError } from '../protocol/errors.js';

export interface UpgradeParserLimits {
  /** Max bytes of the request head (request line, fields, the empty line). Default 16 KiB (Node's default). */
  maxHeaderSize?: number;
  /** Max number of header fields. Default 100. */
  maxHeaders?: number;
  /** Max bytes of the request-target. Default 8 KiB. */
  maxUrlSize?: number;
}

/** Header fields of which a repeated one is dropped, as Node's `IncomingMessage` does. */
const SINGLE_VALUE = new Set([
  'age',
  'authorization',
  'content-length',
  'content-type',
  'etag',
  'expires',
  'from',
  'if-modified-since',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'referer',
  'retry-after',
  'server',
  'user-agent',
]);

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP\/(\d)\.(\d)$/;
/** field-value: VCHAR, obs-text, SP and HTAB (RFC 9110 §5.5); no other control character. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const HEAD_END = Buffer.from('\r\n\r\n');

/** A complete request head, with the fields of `http.IncomingMessage` they become. */
export interface RequestHead {
  method: string;
  url: string;
  httpVersionMajor: number;
  httpVersionMinor: number;
  /** Field names in lower case; repeated fields joined with ", " (`set-cookie`: an array; a few single-valued ones: the first kept), as Node does. */
  headers: Record<string, string | string[]>;
  /** Names and values as received, alternating. */
  rawHeaders: string[];
}

/** A complete request head and the bytes that came after it (the first WebSocket frames, if any). */
export interface ParsedHead {
  head: RequestHead;
  rest: Buffer;
}

const CODES: Readonly<Record<number, string>> = {
  400: 'WS_ERR_BAD_REQUEST',
  414: 'WS_ERR_URI_TOO_LONG',
  431: 'WS_ERR_HEADERS_TOO_LARGE',
  505: 'WS_ERR_HTTP_VERSION_NOT_SUPPORTED',
};

function bad(message: string, status = 400): HandshakeError {
  return new HandshakeError(CODES[status]!, message, status);
}

export class UpgradeRequestParser {
  private readonly maxHeaderSize: number;
  private readonly maxHeaders: number;
  private readonly maxUrlSize: number;
  /** What arrived so far, when the head came in more than one chunk. */
  private buffered: Buffer | null = null;
  private done = false;

  constructor(limits: UpgradeParserLimits = {}) {
    this.maxHeaderSize = limits.maxHeaderSize ?? 16 * 1024;
    this.maxHeaders = limits.maxHeaders ?? 100;
    this.maxUrlSize = limits.maxUrlSize ?? 8 * 1024;
  }

  /**
   * Feed bytes. Returns null while the head is incomplete, then (once) the
   * head or the error to answer with. Never throws.
   */
  write(chunk: Buffer): ParsedHead | HandshakeError | null {
    if (this.done) return bad('data after the request head');
    const searchFrom = this.buffered === null ? 0 : Math.max(0, this.buffered.length - 3);
    const data = this.buffered === null ? chunk : Buffer.concat([this.buffered, chunk]);
    const end = data.indexOf(HEAD_END, searchFrom);
    if (end === -1) {
      if (data.length > this.maxHeaderSize) return this.finish(bad('request head too large', 431));
      // Copied: the socket's chunk is not ours to keep.
      this.buffered = this.buffered === null ? Buffer.from(data) : data;
      return null;
    }
    if (end + 4 > this.maxHeaderSize) return this.finish(bad('request head too large', 431));
    const rest = data.subarray(end + 4);
    this.buffered = null;
    const parsed = this.parseHead(data.toString('latin1', 0, end));
    if (parsed instanceof HandshakeError) return this.finish(parsed);
    this.done = true;
    return { head: parsed, rest };
  }

  private finish(err: HandshakeError): HandshakeError {
    this.done = true;
    this.buffered = null;
    return err;
  }

  private parseHead(head: string): RequestHead | HandshakeError {
    const lines = head.split('\r\n');
    // RFC 9112 §2.2: a bare CR is invalid; we do not accept bare LF as a line end either.
    for (const line of lines) if (line.includes('\n') || line.includes('\r')) return bad('bare CR or LF in the request head');
    const requestLine = lines[0]!;
    const m = REQUEST_LINE.exec(requestLine);
    if (!m) {
      const target = requestLine.split(' ')[1];
      if (target !== undefined && target.length > this.maxUrlSize) return bad('request-target too long', 414);
      return bad('malformed request line');
    }
    const [, method, url, major, minor] = m;
    if (url!.length > this.maxUrlSize) return bad('request-target too long', 414);
    if (major !== '1') return bad(`HTTP/${major}.${minor} is not supported`, 505);
    if (lines.length - 1 > this.maxHeaders) return bad('too many header fields', 431);

    const headers: Record<string, string | string[]> = {};
    const rawHeaders: string[] = [];
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i]!;
      const first = line.charCodeAt(0);
      // RFC 9112 §5.2: obs-fold is rejected with 400 outside message/http.
      if (first === 0x20 || first === 0x09) return bad('obsolete line folding in a header field');
      const colon = line.indexOf(':');
      if (colon <= 0) return bad('header field without a name or a colon');
      const name = line.slice(0, colon);
      // RFC 9112 §5.1: no whitespace between the field name and the colon (400).
      if (!TOKEN.test(name)) return bad(`invalid header field name ${JSON.stringify(name.slice(0, 64))}`);
      const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
      if (!FIELD_VALUE.test(value)) return bad(`invalid characters in the ${name} header field`);
      rawHeaders.push(name, value);
      const key = name.toLowerCase();
      const existing = headers[key];
      if (existing === undefined) {
        headers[key] = key === 'set-cookie' ? [value] : value;
      } else if (key === 'host') {
        // RFC 9112 §3.2: more than one Host field is a 400.
        return bad('more than one Host header field');
      } else if (key === 'set-cookie') {
        (existing as string[]).push(value);
      } else if (!SINGLE_VALUE.has(key)) {
        headers[key] = `${existing as string}, ${value}`;
      }
    }
    const request: RequestHead = { method: method!, url: url!, httpVersionMajor: Number(major), httpVersionMinor: Number(minor), headers, rawHeaders };
    // An upgrade carries no body: the bytes after the head are WebSocket frames. A body
    // announced anyway (or a transfer coding) makes the framing ambiguous.
    if (headers['upgrade'] !== undefined) {
      if (headers['transfer-encoding'] !== undefined) return bad('Transfer-Encoding on an upgrade request');
      const length = headers['content-length'];
      if (length !== undefined && length !== '0') return bad('a body on an upgrade request');
    }
    return request;
  }
}
