/**
 * `switchboard doctor URL`: what stands between this machine and a
 * WebSocket at URL, one step at a time — DNS, TCP, TLS (trust, expiry,
 * name, version, ALPN), the HTTP/1.1 Upgrade (and a proxy that strips it),
 * HTTP/2 with RFC 8441 (is SETTINGS_ENABLE_CONNECT_PROTOCOL advertised,
 * does an extended CONNECT open a stream), permessage-deflate, ping RTT.
 * Each line is ✓ (fine), ! (works, but worth knowing) or ✗ (broken), with
 * what to do. Exit 0 when a WebSocket opens (over HTTP/1.1 or HTTP/2) on a
 * connection this machine trusts, else 1.
 */
import dns from 'node:dns/promises';
import type { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { CloseCode } from '../protocol/close-code.js';
import { HandshakeError } from '../protocol/errors.js';
import { WebSocket } from '../transport/websocket.js';
import { HELP, parseCommandArgs, UsageError } from './args.js';
import { parseTimeout } from './realtime.js';

/** ✓ fine, ! works but worth knowing, ✗ broken, - not checked. */
export type Mark = '✓' | '!' | '✗' | '-';

export interface DoctorLine {
  mark: Mark;
  /** What was checked: `DNS`, `TCP`, `TLS certificate`, `HTTP/1.1 Upgrade`, … */
  check: string;
  /** What was found. */
  found: string;
  /** What to do about it (for ! and ✗). */
  advice?: string;
}

export interface DoctorReport {
  url: string;
  lines: DoctorLine[];
  /** A WebSocket opened over HTTP/1.1. */
  http1: boolean;
  /** A WebSocket stream opened over HTTP/2 (RFC 8441). */
  http2: boolean;
  /** The TLS certificate is trusted here (or the URL is ws://, or --insecure). */
  trusted: boolean;
  /** The verdict: exit 0. */
  ok: boolean;
}

interface Options {
  timeoutMs: number;
  insecure: boolean;
  ca?: Buffer;
  protocols: string[];
  origin?: string;
}

/** Response headers that proxies and CDNs add: their presence on a refused upgrade points at one in between. */
const PROXY_HEADERS = ['via', 'x-cache', 'x-served-by', 'x-varnish', 'cf-ray', 'x-amz-cf-id', 'x-azure-ref', 'x-forwarded-for', 'x-proxy-id', 'proxy-connection'];
const PROXY_SERVERS = /nginx|haproxy|envoy|apache|squid|varnish|traefik|caddy|cloudflare|cloudfront|akamai|istio|openresty|iis/i;

/** What a proxy in front must do for WebSockets. */
const PROXY_FIX =
  'pass the Upgrade and Connection headers (nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; ' +
  'proxy_set_header Connection "upgrade"; HAProxy and most CDNs do it by default; see deploy/nginx/switchboard.conf)';

export async function doctor(args: string[]): Promise<number> {
  const parsed = parseCommandArgs('doctor', {
    args,
    allowPositionals: true,
    options: {
      ...HELP,
      insecure: { type: 'boolean', short: 'k', default: false },
      ca: { type: 'string' },
      protocol: { type: 'string', multiple: true },
      origin: { type: 'string' },
      timeout: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  if (!parsed) return 0;
  const { values, positionals } = parsed;
  if (!positionals[0]) throw new UsageError('a URL is required, e.g. switchboard doctor wss://example.com/rt');
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}' (one URL)`);
  const url = targetUrl(positionals[0]);
  let ca: Buffer | undefined;
  if (values.ca !== undefined) {
    try {
      ca = readFileSync(values.ca);
    } catch (err) {
      throw new UsageError(`--ca ${values.ca}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  const options: Options = { timeoutMs: parseTimeout(values.timeout, 5), insecure: values.insecure, ca, protocols: values.protocol ?? [], origin: values.origin };
  const report = await diagnose(url, options, values.json ? () => {} : (line) => process.stdout.write(`${formatLine(line)}\n`));
  if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else process.stdout.write(`\n${verdict(report)}\n`);
  return report.ok ? 0 : 1;
}

/** ws(s):// as given; http(s):// is taken as the same origin's ws(s)://. */
function targetUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`invalid URL '${text}' (e.g. wss://example.com/rt)`);
  }
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new UsageError(`the URL must be ws://, wss://, http:// or https:// (got ${url.protocol}//)`);
  return url;
}

export function formatLine(l: DoctorLine): string {
  return `${l.mark} ${l.check}: ${l.found}${l.advice ? `\n    → ${l.advice}` : ''}`;
}

function verdict(r: DoctorReport): string {
  if (r.ok) {
    const over = r.http1 && r.http2 ? 'HTTP/1.1 and HTTP/2' : r.http2 ? 'HTTP/2 (RFC 8441)' : 'HTTP/1.1';
    const notes = r.lines.filter((l) => l.mark === '!' || l.mark === '✗').length;
    return `WebSocket works over ${over}${notes ? ` (see the ${notes} line${notes > 1 ? 's' : ''} marked ! or ✗ above)` : ''}.`;
  }
  if ((r.http1 || r.http2) && !r.trusted) return 'A WebSocket opens, but only because the certificate check was skipped: clients that check it will fail (see ✗ above).';
  return 'No WebSocket could be opened: fix the first ✗ above.';
}

const ms = (t0: number): string => `${(performance.now() - t0).toFixed(1)} ms`;

/** Run every check against `url`; `onLine` is called as each line is known (the report is printed as it goes). */
export async function diagnose(url: URL, options: Options, onLine: (line: DoctorLine) => void = () => {}): Promise<DoctorReport> {
  const lines: DoctorLine[] = [];
  const add = (line: DoctorLine): void => {
    lines.push(line);
    onLine(line);
  };
  const report = (http1: boolean, h2: boolean, trusted: boolean): DoctorReport => ({
    url: url.href,
    lines,
    http1,
    http2: h2,
    trusted,
    ok: (http1 || h2) && trusted,
  });
  const secure = url.protocol === 'wss:';
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = Number(url.port || (secure ? 443 : 80));

  // DNS.
  let address = host;
  if (net.isIP(host)) {
    add({ mark: '✓', check: 'DNS', found: `${host} is an address (no lookup)` });
  } else {
    const t0 = performance.now();
    try {
      const found = await dns.lookup(host, { all: true });
      address = found[0]!.address;
      add({ mark: '✓', check: 'DNS', found: `${host} → ${found.map((a) => a.address).join(', ')} (${ms(t0)})` });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      add({ mark: '✗', check: 'DNS', found: `${host} does not resolve (${code})`, advice: 'check the spelling of the host, and this machine\'s resolver (/etc/resolv.conf, VPN)' });
      return report(false, false, false);
    }
  }

  // TCP.
  {
    const t0 = performance.now();
    const error = await tcpConnect(address, port, options.timeoutMs);
    if (error) {
      const advice =
        error === 'ECONNREFUSED'
          ? `nothing listens on ${address}:${port}: is the server running, on this port and this interface (--host)?`
          : error === 'ETIMEDOUT'
            ? 'no answer at all: a firewall or security group drops the packets, or the host is down'
            : 'check the network path to the host';
      add({ mark: '✗', check: 'TCP', found: `cannot connect to ${address}:${port} (${error})`, advice });
      return report(false, false, false);
    }
    add({ mark: '✓', check: 'TCP', found: `connected to ${address}:${port} in ${ms(t0)}` });
  }

  // TLS.
  let trusted = true;
  let h2Offered = false;
  if (secure) {
    const tlsResult = await checkTls(address, host, port, options, add);
    if (!tlsResult) return report(false, false, false);
    trusted = tlsResult.trusted;
    h2Offered = tlsResult.alpn === 'h2';
  } else {
    add({ mark: '-', check: 'TLS', found: 'not used (ws://)', advice: 'fine on loopback and inside a private network; over the internet use wss:// (proxies meddle with cleartext WebSockets, and browsers block ws:// from https:// pages)' });
  }

  // HTTP/1.1 Upgrade, compression, ping.
  const http1 = await checkHttp1(url, options, add);

  // HTTP/2 and RFC 8441.
  let h2 = false;
  if (!secure) {
    add({ mark: '-', check: 'HTTP/2', found: 'not checked over cleartext (browsers speak HTTP/2, and so RFC 8441, only over TLS)' });
  } else if (!h2Offered) {
    add({
      mark: '!',
      check: 'HTTP/2',
      found: 'the server does not offer h2 in ALPN: no RFC 8441, so every WebSocket takes a TCP connection of its own',
      advice: 'fine; to share the page\'s HTTP/2 connection, serve h2 with SETTINGS_ENABLE_CONNECT_PROTOCOL (switchboard serve with TLS does)',
    });
  } else {
    h2 = await checkHttp2(url, options, add);
  }
  return report(http1, h2, trusted || options.insecure);
}

/**
 * The arguments of `event`'s first emission, or an Error: the emitter's
 * 'error', a 'close' first (when `onClose` says what that means), or no
 * event within `timeoutMs`.
 */
function firstEvent<A extends unknown[]>(
  emitter: EventEmitter,
  event: string,
  timeoutMs: number,
  timeoutMessage: string,
  onClose?: () => Error,
): Promise<A | Error> {
  return new Promise((resolve) => {
    const done = (result: A | Error): void => {
      clearTimeout(timer);
      emitter.removeListener(event, onEvent);
      emitter.removeListener('error', done);
      if (onClose) emitter.removeListener('close', closed);
      resolve(result);
    };
    const onEvent = (...args: unknown[]): void => done(args as A);
    const closed = (): void => done(onClose!());
    const timer = setTimeout(() => done(new Error(timeoutMessage)), timeoutMs);
    emitter.once(event, onEvent);
    emitter.once('error', done);
    if (onClose) emitter.once('close', closed);
  });
}

function tcpConnect(host: string, port: number, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (error: string | null): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(error);
    };
    const timer = setTimeout(() => done('ETIMEDOUT'), timeoutMs);
    socket.once('connect', () => done(null));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
  });
}

/** The TLS lines; null when no TLS session could be made at all. */
async function checkTls(address: string, host: string, port: number, options: Options, add: (l: DoctorLine) => void): Promise<{ trusted: boolean; alpn: string | false | null } | null> {
  const t0 = performance.now();
  const s = tls.connect({
    host: address,
    port,
    servername: net.isIP(host) ? undefined : host,
    ALPNProtocols: ['h2', 'http/1.1'],
    ca: options.ca,
    // Checked below, in words: a failure here would say nothing about the rest.
    rejectUnauthorized: false,
  });
  const connected = await firstEvent<[]>(s, 'secureConnect', options.timeoutMs, 'no TLS handshake within the timeout');
  const socket = connected instanceof Error ? connected : s;
  if (connected instanceof Error) s.destroy();
  if (socket instanceof Error) {
    add({
      mark: '✗',
      check: 'TLS',
      found: `handshake failed: ${socket.message}`,
      advice: 'is this port TLS at all? (ws:// for a cleartext server); else the server\'s TLS configuration (protocols, ciphers, certificate) is broken',
    });
    return null;
  }
  const elapsed = ms(t0);
  const cert = socket.getPeerCertificate(true);
  const version = socket.getProtocol() ?? '?';
  const alpn = socket.alpnProtocol;
  const authError = socket.authorizationError ? String(socket.authorizationError) : null;
  socket.destroy();

  add({
    mark: version === 'TLSv1' || version === 'TLSv1.1' ? '!' : '✓',
    check: 'TLS',
    found: `${version} in ${elapsed}`,
    ...(version === 'TLSv1' || version === 'TLSv1.1' ? { advice: 'TLS 1.0/1.1 are deprecated (browsers refuse them): offer TLS 1.2 or 1.3' } : {}),
  });
  let trusted = true;
  const subject = cert.subject?.CN ?? JSON.stringify(cert.subject ?? {});
  const issuer = cert.issuer?.CN ?? cert.issuer?.O ?? '?';
  const chain = chainOf(cert);
  if (authError === null) {
    add({ mark: '✓', check: 'TLS certificate', found: `trusted: ${subject}, issued by ${issuer} (chain of ${chain.length})` });
  } else {
    trusted = false;
    const selfSigned = /SELF_SIGNED/.test(authError);
    add({
      mark: '✗',
      check: 'TLS certificate',
      found: `not trusted here: ${authError} (${subject}, issued by ${issuer}, chain of ${chain.length})`,
      advice: selfSigned
        ? 'a self-signed (development) certificate: trust it with --ca FILE here and in your OS/browser store, or use one from a public CA (e.g. Let\'s Encrypt) in production'
        : authError === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'
          ? 'the server does not send its intermediate certificates: configure the full chain (fullchain.pem), not the leaf alone'
          : 'use a certificate from a CA the clients trust, with its full chain; --ca FILE adds a CA for this check',
    });
  }
  const nameError = tls.checkServerIdentity(host, cert);
  if (nameError) {
    trusted = false;
    add({ mark: '✗', check: 'TLS name', found: `the certificate does not cover ${host}: ${nameError.message}`, advice: `get a certificate whose subjectAltName lists ${host}` });
  }
  const expires = Date.parse(cert.valid_to);
  const days = Math.floor((expires - Date.now()) / 86_400_000);
  if (Number.isNaN(expires)) {
    add({ mark: '!', check: 'TLS expiry', found: `unreadable (${cert.valid_to})` });
  } else if (expires < Date.now()) {
    trusted = false;
    add({ mark: '✗', check: 'TLS expiry', found: `expired on ${new Date(expires).toISOString()}`, advice: 'renew the certificate (and automate it: certbot, acme.sh)' });
  } else {
    add({
      mark: days < 14 ? '!' : '✓',
      check: 'TLS expiry',
      found: `valid until ${new Date(expires).toISOString()} (${days} days)`,
      ...(days < 14 ? { advice: 'renew it now; switchboard serve reloads a renewed certificate without dropping connections' } : {}),
    });
  }
  add({
    mark: alpn === 'h2' ? '✓' : '!',
    check: 'ALPN',
    found: alpn ? `the server chose ${alpn} (offered h2, http/1.1)` : 'no protocol chosen (the server ignores ALPN)',
    ...(alpn === 'h2' ? {} : { advice: 'HTTP/1.1 only: WebSockets work, each on its own connection; offer h2 for RFC 8441' }),
  });
  return { trusted, alpn };
}

function chainOf(cert: tls.DetailedPeerCertificate): tls.DetailedPeerCertificate[] {
  const chain: tls.DetailedPeerCertificate[] = [];
  let c: tls.DetailedPeerCertificate | undefined = cert;
  while (c && Object.keys(c).length > 0 && !chain.includes(c)) {
    chain.push(c);
    c = c.issuerCertificate;
  }
  return chain;
}

/** TLS options for the connections that follow the checks: trust as configured, but go on to learn the rest. */
function tlsOptions(options: Options): { rejectUnauthorized: false; ca?: Buffer } {
  return { rejectUnauthorized: false, ...(options.ca ? { ca: options.ca } : {}) };
}

/** The HTTP/1.1 Upgrade, then compression and ping RTT on the open WebSocket. Whether it opened. */
async function checkHttp1(url: URL, options: Options, add: (l: DoctorLine) => void): Promise<boolean> {
  const t0 = performance.now();
  const ws = new WebSocket(url, options.protocols, {
    perMessageDeflate: true,
    handshakeTimeout: options.timeoutMs,
    ...(options.origin ? { origin: options.origin } : {}),
    ...tlsOptions(options),
  });
  type Outcome = { open: true; extensions: string; protocol: string } | { open: false; status?: number; headers?: http.IncomingHttpHeaders; body?: string; error?: Error };
  const outcome = await new Promise<Outcome>((resolve) => {
    ws.on('unexpected-response', (_req: http.ClientRequest, res: http.IncomingMessage) => {
      // Read (a bounded start of) the body: servers say why there.
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (body.length < 1024) body += chunk;
      });
      const done = (): void => resolve({ open: false, status: res.statusCode, headers: res.headers, body: body.slice(0, 1024) });
      res.once('end', done);
      res.once('error', done);
      setTimeout(done, 1000).unref();
    });
    ws.once('open', () => resolve({ open: true, extensions: ws.extensions, protocol: ws.protocol }));
    ws.once('error', (error: Error) => resolve({ open: false, error }));
  });
  if (!outcome.open) {
    ws.terminate();
    reportRefusedUpgrade(outcome, add);
    return false;
  }
  add({ mark: '✓', check: 'HTTP/1.1 Upgrade', found: `101 Switching Protocols in ${ms(t0)}${outcome.protocol ? `, subprotocol ${outcome.protocol}` : ''}` });
  add({ mark: '✓', check: 'Proxy', found: 'nothing between here and the server strips Upgrade (the 101 came through)' });
  add(
    outcome.extensions.includes('permessage-deflate')
      ? { mark: '✓', check: 'Compression', found: `permessage-deflate negotiated (${outcome.extensions})` }
      : {
          mark: '!',
          check: 'Compression',
          found: 'permessage-deflate not negotiated (offered, the server declined)',
          advice: 'fine for small or binary messages; for large JSON enable it on the server (ws-style servers: perMessageDeflate; switchboard serve: compression.enabled, SWITCHBOARD_COMPRESSION=true)',
        },
  );
  const answered = await pingLine(ws, options.timeoutMs, 'Ping (HTTP/1.1)', add);
  ws.close(CloseCode.NormalClosure);
  return answered;
}

/** Words for an Upgrade the server (or something before it) did not take. */
function reportRefusedUpgrade(
  o: { status?: number; headers?: http.IncomingHttpHeaders; body?: string; error?: Error },
  add: (l: DoctorLine) => void,
): void {
  if (o.status === undefined) {
    const err = o.error!;
    const code = (err as HandshakeError).code;
    add({
      mark: '✗',
      check: 'HTTP/1.1 Upgrade',
      found: `failed: ${err.message}${code ? ` (${code})` : ''}`,
      advice:
        code === 'WS_ERR_HANDSHAKE_TIMEOUT'
          ? 'the server took the request but never answered: a proxy that buffers, or the wrong port'
          : 'the server answered 101 but the answer is not a valid WebSocket handshake (a wrong Sec-WebSocket-Accept, an extension or subprotocol not offered)',
    });
    return;
  }
  const status = o.status;
  const headers = o.headers ?? {};
  const body = (o.body ?? '').trim().split(/\r?\n/)[0]?.slice(0, 200) ?? '';
  const said = `HTTP ${status} ${http.STATUS_CODES[status] ?? ''}`.trim() + (body ? ` ("${body}")` : '');
  const proxyHints = PROXY_HEADERS.filter((h) => headers[h] !== undefined).map((h) => `${h}: ${String(headers[h]).slice(0, 60)}`);
  const server = typeof headers.server === 'string' ? headers.server : undefined;
  if (server && PROXY_SERVERS.test(server)) proxyHints.push(`server: ${server}`);
  const upgradeIgnored = status === 200 || status === 400 || status === 426 || (status >= 300 && status < 400);

  let advice: string;
  if (status === 403 && /ALPN/i.test(body)) advice = 'an HTTP/2-only server: HTTP/1.1 clients (and browsers when RFC 8441 is not used) cannot reach it; accept HTTP/1.1 too (Node: allowHTTP1)';
  else if (status === 401 || status === 403) advice = 'the WebSocket endpoint is there and refused this client: a token or cookie (401), or the Origin (403: --origin, the server\'s allowedOrigins)';
  else if (status === 404) advice = 'no WebSocket endpoint at this path: check the path (switchboard serve: /rt)';
  else if (status === 429 || status === 503) advice = `the server is limiting connections (Retry-After: ${String(headers['retry-after'] ?? '-')}); try again later or raise its limits`;
  else if (status >= 300 && status < 400) advice = `a redirect to ${String(headers.location ?? '?')}: WebSocket clients do not follow it; use the final URL`;
  else if (upgradeIgnored) advice = `the Upgrade was answered as a plain HTTP request: the path is not a WebSocket endpoint, or a proxy in front does not ${PROXY_FIX}`;
  else advice = 'the server failed the request: see its logs';
  add({ mark: '✗', check: 'HTTP/1.1 Upgrade', found: `no 101: the server answered ${said}`, advice });

  if (upgradeIgnored) {
    add(
      proxyHints.length > 0
        ? { mark: '✗', check: 'Proxy', found: `a proxy seems to be in between (${proxyHints.join('; ')}) and the Upgrade did not get through: Upgrade missing`, advice: `the proxy must ${PROXY_FIX}` }
        : {
            mark: '!',
            check: 'Proxy',
            found: `Upgrade missing: the request got a ${status} instead of 101, with no header that names a proxy`,
            advice: `if a proxy or load balancer is in front, it must ${PROXY_FIX}; else this is not a WebSocket endpoint`,
          },
    );
  }
}

/** Five pings on an open WebSocket: RTT min/avg/max, or ✗ when no pong comes. Whether every ping was answered. */
async function pingLine(ws: WebSocket, timeoutMs: number, check: string, add: (l: DoctorLine) => void): Promise<boolean> {
  const rtts: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const got = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        ws.removeListener('pong', onPong);
        resolve(false);
      }, timeoutMs);
      const onPong = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      ws.once('pong', onPong);
      try {
        ws.ping(Buffer.from(String(i)));
      } catch {
        clearTimeout(timer);
        ws.removeListener('pong', onPong);
        resolve(false);
      }
    });
    if (!got) {
      add({
        mark: '✗',
        check,
        found: `no pong within ${timeoutMs / 1000} s${rtts.length ? ` (after ${rtts.length} answered)` : ''}`,
        advice: 'the peer does not answer WebSocket pings (RFC 6455 §5.5.2 requires it), or something in between swallows control frames',
      });
      return false;
    }
    rtts.push(performance.now() - t0);
  }
  const avg = rtts.reduce((a, b) => a + b, 0) / rtts.length;
  add({ mark: '✓', check, found: `RTT min ${Math.min(...rtts).toFixed(2)} / avg ${avg.toFixed(2)} / max ${Math.max(...rtts).toFixed(2)} ms (5 pings)` });
  return true;
}

/** HTTP/2: is RFC 8441 advertised, and does an extended CONNECT open a WebSocket stream. Whether one did. */
async function checkHttp2(url: URL, options: Options, add: (l: DoctorLine) => void): Promise<boolean> {
  const origin = `https://${url.host}`;
  const t0 = performance.now();
  const session = http2.connect(origin, { ...tlsOptions(options), servername: net.isIP(url.hostname) ? undefined : url.hostname });
  session.on('error', () => {});
  try {
    const got = await firstEvent<[http2.Settings]>(session, 'remoteSettings', options.timeoutMs, 'no SETTINGS from the server within the timeout');
    const settings = got instanceof Error ? got : got[0];
    if (settings instanceof Error) {
      add({ mark: '✗', check: 'HTTP/2', found: `no HTTP/2 session: ${settings.message}`, advice: 'the server chose h2 in ALPN but does not speak it: check the TLS terminator' });
      return false;
    }
    if (!settings.enableConnectProtocol) {
      add({
        mark: '!',
        check: 'RFC 8441',
        found: `HTTP/2 session in ${ms(t0)}, but SETTINGS_ENABLE_CONNECT_PROTOCOL is not advertised: no WebSocket over HTTP/2`,
        advice: 'browsers then open WebSockets over a separate HTTP/1.1 connection (works, one more connection); to carry them on the h2 connection, enable extended CONNECT (Node: settings.enableConnectProtocol; nginx cannot yet; HAProxy does)',
      });
      return false;
    }
    add({ mark: '✓', check: 'RFC 8441', found: `advertised (SETTINGS_ENABLE_CONNECT_PROTOCOL = 1, session in ${ms(t0)})` });

    const t1 = performance.now();
    const stream = session.request(
      {
        ':method': 'CONNECT',
        ':protocol': 'websocket',
        ':scheme': 'https',
        ':path': `${url.pathname}${url.search}`,
        ':authority': url.host,
        'sec-websocket-version': '13',
        'sec-websocket-extensions': 'permessage-deflate; client_max_window_bits',
        ...(options.protocols.length ? { 'sec-websocket-protocol': options.protocols.join(', ') } : {}),
        ...(options.origin ? { origin: options.origin } : {}),
      },
      { endStream: false },
    );
    stream.on('error', () => {});
    const answer = await firstEvent<[http2.IncomingHttpHeaders]>(stream, 'response', options.timeoutMs, 'no answer to the CONNECT within the timeout', () =>
      new Error(`the stream was closed without an answer (RST_STREAM ${stream.rstCode ?? '?'})`),
    );
    const response = answer instanceof Error ? answer : answer[0];
    if (response instanceof Error || Number(response[':status']) !== 200) {
      const found = response instanceof Error ? response.message : `answered :status ${response[':status']}`;
      add({
        mark: '✗',
        check: 'HTTP/2 CONNECT',
        found: `extended CONNECT :protocol websocket failed: ${found}`,
        advice: 'the server advertises RFC 8441 but does not accept the WebSocket here (path, auth, origin; a 405 is Node\'s compatibility layer answering CONNECT without a handler)',
      });
      stream.destroy();
      return false;
    }
    const ext = typeof response['sec-websocket-extensions'] === 'string' ? response['sec-websocket-extensions'] : '';
    add({ mark: '✓', check: 'HTTP/2 CONNECT', found: `200 in ${ms(t1)}: a WebSocket stream on the h2 session${ext ? `, ${ext}` : ', no compression'}` });
    // The stream is a WebSocket (client side, masked frames): ping it.
    const ws = new WebSocket(null);
    ws.setSocket(stream, Buffer.alloc(0), { role: 'client', closeTimeout: 1000 });
    ws.on('error', () => {});
    const answered = await pingLine(ws, options.timeoutMs, 'Ping (HTTP/2)', add);
    ws.terminate();
    stream.destroy();
    return answered;
  } finally {
    session.destroy();
  }
}
