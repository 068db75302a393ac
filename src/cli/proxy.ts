/**
 * HTTP proxies for `switchboard connect`: which proxy a URL goes through
 * (`--proxy`, else the `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` variables,
 * unless `NO_PROXY` covers the host), and a `createConnection` for
 * `http(s).request` that opens an HTTP CONNECT tunnel (RFC 9110 §9.3.6)
 * through it — TLS to the WebSocket server runs inside the tunnel, so the
 * proxy sees only the host and port.
 */
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';

/** What a tunnel took, for `connect -v`. */
export interface TunnelInfo {
  /** The proxy, as host:port. */
  proxy: string;
  /** What the CONNECT asked for (host:port). */
  target: string;
  /** When the dialer started (`performance.now()`, ms). */
  startedAt: number;
  /** When the TCP connection with the proxy was up. */
  proxyConnectedAt: number;
  /** When the proxy's 2xx answer to CONNECT arrived. */
  tunnelAt: number;
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
 * A proxy URL as given (`http://[user:pass@]host[:port]`, a bare
 * `host:port` taken as http://); throws with what is wrong otherwise.
 */
export function parseProxyUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`);
  } catch {
    throw new Error(`invalid proxy URL '${text}' (expected http://host:port)`);
  }
  if (url.protocol !== 'http:') throw new Error(`proxy '${text}': only http:// proxies (HTTP CONNECT) are supported`);
  if (!url.hostname) throw new Error(`proxy '${text}' has no host`);
  return url;
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

/**
 * A `createConnection` for `http.request` / `https.request`: each request's
 * host goes through the proxy {@link proxyFor} picks for it (a followed
 * redirect may lead to a host `NO_PROXY` covers), over a CONNECT tunnel;
 * https requests get TLS inside the tunnel with the request's TLS options.
 * `onTunnel` hears about each tunnel once it is up.
 */
export function proxyDialer(explicit: string | undefined, env: NodeJS.ProcessEnv) {
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
    const authority = `${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
    const headers: Record<string, string> = { Host: authority };
    if (proxy.username) {
      const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
      headers['Proxy-Authorization'] = `Basic ${Buffer.from(credentials).toString('base64')}`;
    }
    const started = performance.now();
    let proxyConnectedAt = started;
    const proxyName = proxy.host;
    const connectRequest = http.request({
      host: proxy.hostname.replace(/^\[|\]$/g, ''),
      port: Number(proxy.port || 80),
      method: 'CONNECT',
      path: authority,
      headers,
      agent: false,
    });
    connectRequest.on('socket', (socket) => socket.once('connect', () => (proxyConnectedAt = performance.now())));
    connectRequest.on('error', (err) => callback(new Error(`proxy ${proxyName}: ${err.message}`)));
    connectRequest.on('response', (res) => {
      // Anything but a 2xx to CONNECT is a refusal; its head was all there is to read.
      res.resume();
      connectRequest.destroy();
      callback(new Error(`proxy ${proxyName} refused CONNECT ${authority}: HTTP ${res.statusCode} ${res.statusMessage ?? ''}`.trim()));
    });
    connectRequest.on('connect', (res, socket, head) => {
      if ((res.statusCode ?? 0) < 200 || (res.statusCode ?? 0) > 299) {
        socket.destroy();
        callback(new Error(`proxy ${proxyName} refused CONNECT ${authority}: HTTP ${res.statusCode} ${res.statusMessage ?? ''}`.trim()));
        return;
      }
      if (head.length > 0) socket.unshift(head);
      const info: TunnelInfo = { proxy: proxyName, target: authority, startedAt: started, proxyConnectedAt, tunnelAt: performance.now() };
      const stream = secure ? tls.connect({ ...connectOptions, host, socket }) : socket;
      tunnels.set(stream, info);
      callback(null, stream);
    });
    connectRequest.end();
    return undefined;
  };
}
