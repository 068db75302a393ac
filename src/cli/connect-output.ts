/**
 * What `switchboard connect` prints and how it reads binary input: JSON
 * pretty-printing (coloured on a terminal), binary payloads as hex or
 * base64, and the `-v` trace of each handshake request (headers, TLS,
 * certificate, timings), observed through Node's `http.client.request.start`
 * diagnostics channel and, for `--http2`, the RFC 8441 client's own
 * (`HTTP2_CLIENT_CHANNELS`), so the WebSocket client needs no hook for it.
 */
import dc from 'node:diagnostics_channel';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import type http2 from 'node:http2';
import { performance } from 'node:perf_hooks';
import type net from 'node:net';
import type tls from 'node:tls';
import {
  HTTP2_CLIENT_CHANNELS,
  type Http2ConnectSent,
  type Http2FallbackTaken,
  type Http2SessionOpened,
} from '../transport/http2-client.js';
import { tunnelOf, type TunnelInfo } from './proxy.js';

export type BinaryEncoding = 'hex' | 'base64';

/** ANSI colours, or none. */
export interface Palette {
  dim(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  blue(s: string): string;
  magenta(s: string): string;
  cyan(s: string): string;
}

const sgr =
  (code: number) =>
  (s: string): string =>
    `\x1b[${code}m${s}\x1b[0m`;
export const COLOURS: Palette = { dim: sgr(2), red: sgr(31), green: sgr(32), yellow: sgr(33), blue: sgr(34), magenta: sgr(35), cyan: sgr(36) };
const same = (s: string): string => s;
export const NO_COLOURS: Palette = { dim: same, red: same, green: same, yellow: same, blue: same, magenta: same, cyan: same };

/** JSON text, its strings, keys, numbers and literals in one pass (a number inside a string is part of the string). */
const JSON_TOKEN = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

/** `value` as `JSON.stringify(value, null, 2)`, coloured by `palette` (keys blue, strings green, numbers yellow, literals magenta). */
export function prettyJson(value: unknown, palette: Palette): string {
  const text = JSON.stringify(value, null, 2) ?? 'undefined';
  if (palette === NO_COLOURS) return text;
  return text.replace(JSON_TOKEN, (token: string, str?: string, colon?: string, literal?: string) => {
    if (str !== undefined) return colon !== undefined ? `${palette.blue(str)}${colon}` : palette.green(str);
    if (literal !== undefined) return palette.magenta(literal);
    return palette.yellow(token);
  });
}

/** JSON.parse, or the parser's message. */
export function parseJson(text: string): { ok: true; value: unknown } | { ok: false; error: string } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

const HEX = /^(?:[0-9a-fA-F]{2})+$/;
const BASE64 = /^(?:[A-Za-z0-9+/_-]{4})*(?:[A-Za-z0-9+/_-]{2}(?:==)?|[A-Za-z0-9+/_-]{3}=?)?$/;

/**
 * Bytes written as hex (spaces allowed: `01 02 ff`) or base64 (or
 * base64url); `encoding` says which, else hex when it reads as hex, else
 * base64. `@path` is the file's bytes. Throws with what is wrong.
 */
export function decodeBinary(text: string, encoding: BinaryEncoding | null): Buffer {
  const input = text.trim();
  if (input.startsWith('@')) return readFileArg(input.slice(1));
  const hex = input.replace(/\s+/g, '');
  if (encoding !== 'base64' && HEX.test(hex)) return Buffer.from(hex, 'hex');
  if (encoding === 'hex') throw new Error(`not hex: '${shorten(input)}' (two digits per byte, e.g. 0102ff)`);
  if (input.length > 0 && BASE64.test(input)) return Buffer.from(input, input.includes('-') || input.includes('_') ? 'base64url' : 'base64');
  throw new Error(`neither hex nor base64: '${shorten(input)}'`);
}

/** A file's bytes (for `@path`); throws with the path and the reason. */
export function readFileArg(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

function shorten(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

/** A binary payload as one line: whole in `encoding`, else a hex preview of its first 32 bytes. */
export function binaryLine(data: Buffer, encoding: BinaryEncoding | null): string {
  if (encoding) return data.toString(encoding);
  return `${data.subarray(0, 32).toString('hex')}${data.length > 32 ? '…' : ''}`;
}

// ---- -v: the trace of each handshake request -------------------------------------

/** Header values that must not land in a terminal's scrollback or a pasted log. */
function redact(name: string, value: string): string {
  if (/^(authorization|proxy-authorization)$/i.test(name)) {
    const scheme = value.split(' ')[0];
    return `${scheme} <redacted>`;
  }
  if (/^cookie$/i.test(name)) return '<redacted>';
  return value;
}

/** `ms` with one decimal. */
function ms(n: number): string {
  return `${n.toFixed(1)} ms`;
}

/** A certificate's distinguished name as `CN=…, O=…`. */
function dn(name: Record<string, unknown> | undefined): string {
  if (!name) return '?';
  return Object.entries(name)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : String(v)}`)
    .join(', ');
}

/** What `-v` prints about the TLS session of `socket` (nothing for plain TCP). */
function tlsLines(socket: net.Socket | undefined): string[] {
  const s = socket as tls.TLSSocket | undefined;
  if (!s || typeof s.getPeerCertificate !== 'function') return [];
  const cipher = s.getCipher?.();
  const lines = [`TLS: ${s.getProtocol?.() ?? '?'}, cipher ${cipher?.name ?? '?'}, ALPN ${s.alpnProtocol || 'none'}`];
  const cert = s.getPeerCertificate();
  if (cert && Object.keys(cert).length > 0) {
    const expires = new Date(cert.valid_to);
    const hours = Math.floor((expires.getTime() - Date.now()) / 3_600_000);
    const days = Math.floor(hours / 24);
    const left = hours < 0 ? 'EXPIRED' : days >= 1 ? `in ${days} day${days === 1 ? '' : 's'}` : `in ${hours} hour${hours === 1 ? '' : 's'}`;
    lines.push(`certificate: subject ${dn(cert.subject as unknown as Record<string, unknown>)}; issuer ${dn(cert.issuer as unknown as Record<string, unknown>)}`);
    lines.push(
      `certificate: expires ${expires.toISOString()} (${left})` +
        `${cert.subjectaltname ? `; ${cert.subjectaltname}` : ''}; ` +
        `${s.authorized ? 'verified' : `NOT verified (${String(s.authorizationError ?? 'unknown')})`}`,
    );
  }
  return lines;
}

/** What `-v` prints about the proxy a tunnel goes through (the timings apart). */
function tunnelLines(tunnel: TunnelInfo): string[] {
  const lines: string[] = [];
  if (tunnel.scheme === 'socks5' || tunnel.scheme === 'socks5h') {
    const resolved = tunnel.remoteDns ? 'the proxy resolves the name' : 'the address resolved here';
    lines.push(`proxy: ${tunnel.scheme}://${tunnel.proxy}, SOCKS5 CONNECT ${tunnel.target} (${resolved}); the proxy connects from ${tunnel.bound ?? '?'}`);
  } else {
    lines.push(`proxy: ${tunnel.scheme}://${tunnel.proxy}, HTTP CONNECT ${tunnel.target}`);
  }
  if (tunnel.proxyTls) for (const line of tlsLines(tunnel.proxyTls)) lines.push(`proxy ${line}`);
  return lines;
}

/**
 * Trace every handshake request of this process (the first, each redirect,
 * each reconnect) to `write`, one line at a time: `>` what was sent, `<` what
 * came back, `*` TLS, certificate, tunnel and timings. Returns the
 * unsubscribe function.
 */
export function traceRequests(write: (line: string) => void): () => void {
  const onStart = (message: unknown): void => {
    const request = (message as { request: http.ClientRequest }).request;
    // The proxy's CONNECT is reported with the tunnel (see proxy.ts), not as a handshake.
    if (request.method === 'CONNECT') return;
    const started = performance.now();
    const times: { dns?: number; tcp?: number; tls?: number } = {};
    const watch = (socket: net.Socket): void => {
      if (socket.connecting) {
        socket.once('lookup', () => (times.dns = performance.now()));
        socket.once('connect', () => (times.tcp = performance.now()));
      }
      // TLS over a proxy's tunnel starts on a connected socket: its handshake is still to come.
      if ((socket as tls.TLSSocket).encrypted) socket.once('secureConnect', () => (times.tls = performance.now()));
    };
    if (request.socket) watch(request.socket);
    else request.once('socket', watch);
    let sent = false;
    const printRequest = (): void => {
      if (sent) return;
      sent = true;
      write(`> ${request.method} ${request.path} HTTP/1.1`);
      for (const name of request.getRawHeaderNames()) {
        const value = request.getHeader(name);
        for (const v of Array.isArray(value) ? value : [value]) write(`> ${name}: ${redact(name, String(v))}`);
      }
    };
    request.once('finish', printRequest);
    const printResponse = (res: http.IncomingMessage): void => {
      const done = performance.now();
      printRequest();
      write(`< HTTP/${res.httpVersion} ${res.statusCode} ${res.statusMessage ?? ''}`.trimEnd());
      for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) write(`< ${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}`);
      const socket = res.socket as net.Socket | undefined;
      for (const line of tlsLines(socket)) write(`* ${line}`);
      const tunnel = tunnelOf(socket);
      const phases: string[] = [];
      let begin = started;
      let last = started;
      if (tunnel) {
        for (const line of tunnelLines(tunnel)) write(`* ${line}`);
        // The dialer starts the tunnel as the request is made, just before the trace hears of it.
        begin = Math.min(started, tunnel.startedAt);
        phases.push(`proxy ${tunnel.proxy} TCP ${ms(tunnel.proxyConnectedAt - begin)}`);
        let before = tunnel.proxyConnectedAt;
        if (tunnel.proxyTlsAt !== undefined) {
          phases.push(`proxy TLS ${ms(tunnel.proxyTlsAt - before)}`);
          before = tunnel.proxyTlsAt;
        }
        phases.push(`${tunnel.scheme.startsWith('socks') ? 'SOCKS5 ' : ''}CONNECT ${tunnel.target} ${ms(tunnel.tunnelAt - before)}`);
        last = tunnel.tunnelAt;
      } else {
        phases.push(times.dns !== undefined ? `DNS ${ms(times.dns - started)}` : 'DNS none (an address or a reused socket)');
        if (times.dns !== undefined) last = times.dns;
        if (times.tcp !== undefined) {
          phases.push(`TCP ${ms(times.tcp - last)}`);
          last = times.tcp;
        }
      }
      if (times.tls !== undefined) {
        phases.push(`TLS ${ms(times.tls - last)}`);
        last = times.tls;
      }
      phases.push(`HTTP ${ms(done - last)}`);
      write(`* timings: ${phases.join(', ')}; total ${ms(done - begin)}`);
    };
    // Before the handshake's own listeners: the answer prints before 'connected' or the refusal.
    request.prependOnceListener('upgrade', printResponse);
    request.prependOnceListener('response', printResponse);
  };
  dc.subscribe('http.client.request.start', onStart);
  const untraceHttp2 = traceHttp2(write);
  return () => {
    dc.unsubscribe('http.client.request.start', onStart);
    untraceHttp2();
  };
}

/** The SETTINGS of RFC 9113 §6.5.2 and RFC 8441 §3, Node's names → the RFCs'. */
const SETTING_NAMES: Array<[keyof http2.Settings, string]> = [
  ['maxConcurrentStreams', 'MAX_CONCURRENT_STREAMS'],
  ['initialWindowSize', 'INITIAL_WINDOW_SIZE'],
  ['maxFrameSize', 'MAX_FRAME_SIZE'],
  ['maxHeaderListSize', 'MAX_HEADER_LIST_SIZE'],
  ['headerTableSize', 'HEADER_TABLE_SIZE'],
];

/** What the trace knows of an h2 session: when it started and what it took, and whether a stream used it yet. */
interface SessionTrace {
  startedAt: number;
  connectedAt?: number;
  settingsAt?: number;
  streams: number;
}

/**
 * The `-v` trace of the RFC 8441 path (`--http2`), from the client's
 * diagnostics channels (transport/http2-client.ts): the session's TLS and
 * ALPN, the server's SETTINGS (ENABLE_CONNECT_PROTOCOL or not), the
 * extended CONNECT's pseudo-headers and headers, the answer's `:status` and
 * headers, the timings; or the fallback to HTTP/1.1 and why (whose request
 * the HTTP/1.1 trace then shows).
 */
function traceHttp2(write: (line: string) => void): () => void {
  const sessions = new WeakMap<http2.ClientHttp2Session, SessionTrace>();
  const onSession = (message: unknown): void => {
    const { origin, session } = message as Http2SessionOpened;
    const trace: SessionTrace = { startedAt: performance.now(), streams: 0 };
    sessions.set(session, trace);
    write(`* HTTP/2: new session to ${origin} (${origin.startsWith('https:') ? 'ALPN h2' : 'cleartext h2c, prior knowledge'})`);
    session.once('connect', () => {
      trace.connectedAt = performance.now();
      // The session's socket is a proxy that allows reading TLS state (not events).
      for (const line of tlsLines(session.socket as tls.TLSSocket)) write(`* ${line}`);
    });
    session.once('remoteSettings', (settings: http2.Settings) => {
      trace.settingsAt = performance.now();
      const rfc8441 =
        settings.enableConnectProtocol === true
          ? 'ENABLE_CONNECT_PROTOCOL=1 (WebSockets over HTTP/2 allowed, RFC 8441)'
          : 'no ENABLE_CONNECT_PROTOCOL (no WebSockets over HTTP/2)';
      // 2^32-1 is Node's stand-in for a limit the server did not set (RFC 9113: unlimited).
      const others = SETTING_NAMES.filter(([k]) => settings[k] !== undefined).map(([k, name]) => `${name}=${settings[k] === 2 ** 32 - 1 ? 'unlimited' : settings[k]}`);
      write(`* HTTP/2 SETTINGS from the server: ${[rfc8441, ...others].join(', ')}`);
    });
  };
  const onFallback = (message: unknown): void => {
    const { reason } = message as Http2FallbackTaken;
    write(`* HTTP/2: falling back to HTTP/1.1: ${reason}`);
  };
  const onConnect = (message: unknown): void => {
    const { session, stream, headers } = message as Http2ConnectSent;
    const trace = sessions.get(session);
    const sentAt = performance.now();
    const reused = trace !== undefined && trace.streams > 0;
    if (trace) trace.streams++;
    // Pseudo-headers first (as on the wire), then the rest in order.
    const names = Object.keys(headers).sort((a, b) => Number(!a.startsWith(':')) - Number(!b.startsWith(':')));
    for (const name of names) {
      const value = headers[name];
      for (const v of Array.isArray(value) ? value : [value]) write(`> ${name}: ${redact(name, String(v))}`);
    }
    stream.prependOnceListener('response', (answer: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader) => {
      const done = performance.now();
      write(`< :status: ${answer[':status']}`);
      for (const [name, value] of Object.entries(answer)) {
        if (name === ':status') continue;
        for (const v of Array.isArray(value) ? value : [value]) write(`< ${name}: ${v}`);
      }
      const phases: string[] = [];
      let begin = sentAt;
      if (trace && !reused && trace.connectedAt !== undefined && trace.settingsAt !== undefined) {
        begin = trace.startedAt;
        phases.push(`TCP+TLS ${ms(trace.connectedAt - trace.startedAt)}`, `SETTINGS ${ms(Math.max(0, trace.settingsAt - trace.connectedAt))}`);
      } else {
        phases.push('on an open h2 session (no new connection)');
      }
      phases.push(`CONNECT ${ms(done - sentAt)}`);
      write(`* timings: ${phases.join(', ')}; total ${ms(done - begin)}; stream ${stream.id ?? '?'}`);
    });
  };
  dc.subscribe(HTTP2_CLIENT_CHANNELS.session, onSession);
  dc.subscribe(HTTP2_CLIENT_CHANNELS.fallback, onFallback);
  dc.subscribe(HTTP2_CLIENT_CHANNELS.connect, onConnect);
  return () => {
    dc.unsubscribe(HTTP2_CLIENT_CHANNELS.session, onSession);
    dc.unsubscribe(HTTP2_CLIENT_CHANNELS.fallback, onFallback);
    dc.unsubscribe(HTTP2_CLIENT_CHANNELS.connect, onConnect);
  };
}
