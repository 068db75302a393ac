/**
 * Proxies for `switchboard connect`: which proxy a URL goes through
 * (`--proxy`, else the `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` variables,
 * unless `NO_PROXY` covers the host), and a `createConnection` for
 * `http(s).request` that opens a tunnel through it:
 *
 * - `http://` — an HTTP CONNECT (RFC 9110 §9.3.6) on TCP to the proxy;
 * - `https://` — the same CONNECT inside TLS to the proxy. The proxy's
 *   certificate is checked against Node's CAs plus `--proxy-ca`
 *   (`--proxy-insecure` skips the check); `-k` and `--ca` are about the
 *   WebSocket server only, as curl's `--proxy-cacert` / `--proxy-insecure`;
 * - `socks5://` and `socks5h://` — SOCKS5 (RFC 1928, with RFC 1929
 *   username/password from the URL; socks5.ts): `socks5://` resolves the
 *   host name here and sends the address, `socks5h://` sends the name for
 *   the proxy to resolve.
 *
 * TLS to the WebSocket server (wss://) runs inside the tunnel, so the
 * proxy sees only the host and port.
 */
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { socks5Connect } from './socks5.js';

/** The kinds of proxy, by URL scheme. */
export type ProxyScheme = 'http' | 'https' | 'socks5' | 'socks5h';

/** Each scheme's port when the URL has none (curl's: 1080 for SOCKS). */
const DEFAULT_PORT: Record<ProxyScheme, number> = { http: 80, https: 443, socks5: 1080, socks5h: 1080 };

/** What a tunnel took, for `connect -v`. */
export interface TunnelInfo {
  /** The proxy's kind. */
  scheme: ProxyScheme;
  /** The proxy, as host:port. */
  proxy: string;
  /** What the CONNECT asked for (host:port; for socks5://, the address resolved here). */
  target: string;
  /** When the dialer started (`performance.now()`, ms). */
  startedAt: number;
  /** When the TCP connection with the proxy was up. */
  proxyConnectedAt: number;
  /** For an https:// proxy: when TLS with it was up, and its socket (TLS version, certificate). */
  proxyTlsAt?: number;
  proxyTls?: tls.TLSSocket;
  /** When the proxy's 2xx answer to CONNECT (or SOCKS5 "succeeded") arrived. */
  tunnelAt: number;
  /** SOCKS5: the proxy's bound address, and whether it resolved the name. */
  bound?: string;
  remoteDns?: boolean;
}

/** How to trust an https:// proxy (`--proxy-ca`, `--proxy-insecure`). */
export interface ProxyTlsOptions {
  ca?: Buffer;
  /** Default true. */
  rejectUnauthorized?: boolean;
}

/** The tunnel behind each socket a {@link proxyDialer} made. */
const tunnels = new WeakMap<object, TunnelInfo>();

/** The tunnel a socket runs through (undefined for a direct connection). */
export function tunnelOf(socket: object | null | undefined): TunnelInfo | undefined {
  return socket ? tunnels.get(socket) : undefined;
}

/** The proxy variables that apply to a scheme, first set wins (lower case first, as curl). */
function proxyVariable(secure: boolean, env: NodeJS.ProcessEnv): string | undefined {
  const names = secure ? ['https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'] : ['http_proxy', 'HTTP_PROXY', 'all_proxy', 'ALL_PROXY'];
  for (const name of names) {
    const value = env[name];
    if (value) return value;
  }
  return undefined;
}

/**
 * A proxy URL as given (`http://`, `https://`, `socks5://` or `socks5h://`,
 * with `user:password@` if needed; a bare `host:port` is taken as
 * http://); throws with what is wrong otherwise.
 */
export function parseProxyUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`);
  } catch {
    throw new Error(`invalid proxy URL '${text}' (expected http://host:port, https://, socks5:// or socks5h://)`);
  }
  const scheme = url.protocol.slice(0, -1);
  if (/^socks(4a?)?$/.test(scheme)) throw new Error(`proxy '${text}': SOCKS4 is not supported: socks5:// or socks5h://`);
  if (!(scheme in DEFAULT_PORT)) throw new Error(`proxy '${text}': ${url.protocol}// is not a proxy kind (http://, https://, socks5://, socks5h://)`);
  if (!url.hostname) throw new Error(`proxy '${text}' has no host`);
  if (scheme.startsWith('socks') && url.username) {
    // RFC 1929: the username 1-255 bytes, the password at most 255.
    const user = Buffer.byteLength(decodeURIComponent(url.username));
    const pass = Buffer.byteLength(decodeURIComponent(url.password));
    if (user > 255 || pass > 255) throw new Error(`proxy '${url.host}': a SOCKS5 username or password is at most 255 bytes`);
  }
  return url;
}

/** The proxy's scheme. */
export function proxyScheme(proxy: URL): ProxyScheme {
  return proxy.protocol.slice(0, -1) as ProxyScheme;
}

/**
 * Whether `NO_PROXY` (comma- or space-separated) covers host:port: `*`
 * covers everything; `example.com` and `.example.com` cover the domain and
 * its subdomains; an IP address covers itself; `:port` limits an entry to
 * that port (IPv6 in brackets: `[::1]:8080`).
 */
export function noProxyCovers(host: string, port: number, noProxy: string | undefined): boolean {
  if (!noProxy) return false;
  const name = host.replace(/^\[|\]$/g, '').toLowerCase();
  for (const raw of noProxy.split(/[\s,]+/)) {
    if (!raw) continue;
    if (raw === '*') return true;
    let entry = raw.toLowerCase();
    let entryPort: number | undefined;
    const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
    if (bracketed) {
      entry = bracketed[1]!;
      entryPort = bracketed[2] ? Number(bracketed[2]) : undefined;
    } else if (entry.split(':').length === 2) {
      const colon = entry.indexOf(':');
      entryPort = Number(entry.slice(colon + 1));
      entry = entry.slice(0, colon);
    }
    if (entryPort !== undefined && entryPort !== port) continue;
    entry = entry.replace(/^\*?\./, '');
    if (name === entry || (net.isIP(name) === 0 && name.endsWith(`.${entry}`))) return true;
  }
  return false;
}

/**
 * The proxy for a WebSocket URL: `explicit` (`--proxy`) if given, else the
 * environment's; null when there is none or `NO_PROXY` covers the host
 * (for both, as curl).
 */
export function proxyFor(target: URL, explicit: string | undefined, env: NodeJS.ProcessEnv): URL | null {
  const secure = target.protocol === 'wss:' || target.protocol === 'https:';
  const text = explicit ?? proxyVariable(secure, env);
  if (!text) return null;
  const port = Number(target.port || (secure ? 443 : 80));
  if (noProxyCovers(target.hostname, port, env.no_proxy ?? env.NO_PROXY)) return null;
  return parseProxyUrl(text);
}

type Callback = (err: Error | null, socket?: Duplex) => void;
type DialOptions = http.ClientRequestArgs & tls.ConnectionOptions & { _defaultAgent?: { protocol?: string } };

/** The TLS errors about a peer's certificate (Node's codes), answered with how to trust it (the server's in connect.ts, a proxy's here). */
export const CERTIFICATE_ERRORS: ReadonlySet<string> = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** An error on the way to the proxy, named as the proxy's (with how to trust an https:// proxy's certificate). */
function proxyError(proxy: URL, err: Error): Error {
  const code = String((err as NodeJS.ErrnoException).code ?? '');
  if (CERTIFICATE_ERRORS.has(code)) {
    return new Error(
      `proxy ${proxy.protocol}//${proxy.host}: its certificate: ${err.message} (${code}): --proxy-ca FILE trusts the proxy's CA, ` +
        '--proxy-insecure skips the check (-k and --ca are for the WebSocket server)',
    );
  }
  return new Error(`proxy ${proxy.protocol}//${proxy.host}: ${err.message}`);
}

/** A tunnel to `host:port` through `proxy`: the socket (the target's bytes from now on) and what it took. */
function openTunnel(proxy: URL, host: string, port: number, proxyTls: ProxyTlsOptions): Promise<{ socket: net.Socket; info: TunnelInfo }> {
  const scheme = proxyScheme(proxy);
  const proxyHost = proxy.hostname.replace(/^\[|\]$/g, '');
  const proxyPort = Number(proxy.port || DEFAULT_PORT[scheme]);
  const target = `${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
  const info: TunnelInfo = { scheme, proxy: proxy.host, target, startedAt: performance.now(), proxyConnectedAt: 0, tunnelAt: 0 };
  const username = proxy.username ? decodeURIComponent(proxy.username) : undefined;
  const password = proxy.username ? decodeURIComponent(proxy.password) : undefined;

  if (scheme === 'socks5' || scheme === 'socks5h') {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: proxyHost, port: proxyPort });
      const fail = (err: Error): void => {
        socket.destroy();
        reject(err);
      };
      // Until the tunnel is handed over, an error of the socket fails the dial (then the HTTP client listens).
      const onError = (err: Error): void => fail(proxyError(proxy, err));
      socket.on('error', onError);
      socket.once('connect', () => {
        info.proxyConnectedAt = performance.now();
        socks5Connect(socket, { proxy: proxy.host, host, port, remoteDns: scheme === 'socks5h', username, password }).then((tunnel) => {
          Object.assign(info, { target: tunnel.requested, bound: tunnel.bound, remoteDns: tunnel.remoteDns, tunnelAt: performance.now() });
          socket.removeListener('error', onError);
          resolve({ socket, info });
        }, fail);
      });
    });
  }

  // http:// and https://: an HTTP CONNECT, in TLS with the proxy for https://.
  const headers: Record<string, string> = { Host: target };
  if (username !== undefined) headers['Proxy-Authorization'] = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  return new Promise((resolve, reject) => {
    let toProxy: net.Socket;
    if (scheme === 'https') {
      const secure = tls.connect({
        host: proxyHost,
        port: proxyPort,
        servername: net.isIP(proxyHost) ? undefined : proxyHost,
        ALPNProtocols: ['http/1.1'],
        ca: proxyTls.ca,
        rejectUnauthorized: proxyTls.rejectUnauthorized ?? true,
      });
      secure.once('connect', () => (info.proxyConnectedAt = performance.now()));
      secure.once('secureConnect', () => {
        info.proxyTlsAt = performance.now();
        info.proxyTls = secure;
      });
      toProxy = secure;
    } else {
      toProxy = net.connect({ host: proxyHost, port: proxyPort });
      toProxy.once('connect', () => (info.proxyConnectedAt = performance.now()));
    }
    const connectRequest = http.request({ method: 'CONNECT', path: target, headers, createConnection: () => toProxy });
    const refused = (res: http.IncomingMessage): Error =>
      new Error(`proxy ${proxy.host} refused CONNECT ${target}: HTTP ${res.statusCode} ${res.statusMessage ?? ''}`.trim());
    connectRequest.on('error', (err) => {
      toProxy.destroy();
      reject(proxyError(proxy, err));
    });
    connectRequest.on('response', (res) => {
      // Anything but a 2xx to CONNECT is a refusal; its head was all there is to read.
      res.resume();
      connectRequest.destroy();
      reject(refused(res));
    });
    connectRequest.on('connect', (res, socket, head) => {
      if ((res.statusCode ?? 0) < 200 || (res.statusCode ?? 0) > 299) {
        socket.destroy();
        reject(refused(res));
        return;
      }
      if (head.length > 0) socket.unshift(head);
      info.tunnelAt = performance.now();
      resolve({ socket, info });
    });
    connectRequest.end();
  });
}

/**
 * A `createConnection` for `http.request` / `https.request`: each request's
 * host goes through the proxy {@link proxyFor} picks for it (a followed
 * redirect may lead to a host `NO_PROXY` covers), over a tunnel
 * ({@link openTunnel}); https requests get TLS inside the tunnel with the
 * request's TLS options. `proxyTls` is how to trust an https:// proxy.
 */
export function proxyDialer(explicit: string | undefined, env: NodeJS.ProcessEnv, proxyTls: ProxyTlsOptions = {}) {
  return (options: DialOptions, callback: Callback): undefined => {
    // https.request marks its requests with its agent (the default one: ours has none of its own).
    const secure = options._defaultAgent?.protocol === 'https:';
    const host = String(options.host ?? 'localhost');
    const port = Number(options.port ?? (secure ? 443 : 80));
    const target = new URL(`${secure ? 'wss' : 'ws'}://${net.isIPv6(host) ? `[${host}]` : host}:${port}/`);
    let proxy: URL | null;
    try {
      proxy = proxyFor(target, explicit, env);
    } catch (err) {
      callback(err as Error);
      return undefined;
    }
    const { path: _path, createConnection: _c, agent: _a, headers: _h, method: _m, _defaultAgent: _d, ...connectOptions } = options;
    if (!proxy) {
      callback(null, secure ? tls.connect({ ...connectOptions, host, port }) : net.connect({ host, port }));
      return undefined;
    }
    openTunnel(proxy, host, port, proxyTls).then(
      ({ socket, info }) => {
        const stream = secure ? tls.connect({ ...connectOptions, host, socket }) : socket;
        tunnels.set(stream, info);
        callback(null, stream);
      },
      (err: Error) => callback(err),
    );
    return undefined;
  };
}
