/**
 * The realtime server's configuration: its type ({@link RealtimeConfig}) and
 * its defaults. {@link CONFIG_DEFAULTS} names every key, an optional key
 * (one with no default) as `undefined`, so the unknown-key checks of
 * validate.ts read the known keys off it instead of restating them.
 */
import type { AuthConfig, NamespacePolicy } from '../../realtime/auth.js';
import { DEFAULT_BYTE_RATE, DEFAULT_MESSAGE_RATE } from '../../wire/messages.js';
import { DEFAULT_MAX_DATA_DEPTH } from '../../wire/data.js';
import type { FallbackSessionOptions } from '../../carriers/fallback-router.js';

export type { AuthConfig };

// ---- types ---------------------------------------------------------------------

/** A token bucket. */
export interface RateConfig {
  /** Refill rate, in tokens (connections, messages, bytes) per second; may be fractional. */
  perSecond: number;
  /** Bucket size: how many may come at once after a quiet period. At least 1. */
  burst: number;
}

/**
 * Rules for the channels under a prefix. A channel belongs to the namespace
 * with the longest prefix that is a whole-segment prefix of its name:
 * prefix `chat` holds `chat`, `chat/a` and `chat/a/b`, but not `chatroom`.
 * The namespace with prefix `''` holds every other channel.
 */
export interface NamespaceConfig extends NamespacePolicy {
  /**
   * Leading segments of the channel names (`'chat'`, `'game/state'`), or
   * `''` for the default namespace. A trailing `/` is ignored. Segments are
   * separated by `/` (not `:`); no wildcards. Required (except for the default).
   */
  prefix: string;
  /** Messages kept per channel for history and resume: `size` messages (0: none, default), at most `ttlMs` ms old (0: no age limit, default). */
  history: { size: number; ttlMs: number };
  /** Presence: `'full'` (who is there), `'counts'` (how many), `'off'` (default). */
  presence: 'off' | 'full' | 'counts';
  /** Join/leave (or count) pushes are batched per channel over this many ms. Default 0 (next tick). */
  presenceBatchMs: number;
  /** Clients may publish (else only the server API). Default true. */
  clientPublish: boolean;
  /** Anonymous connections may subscribe and read presence and history. Default false. */
  anonymousSubscribe: boolean;
  /** Anonymous connections may publish (also needs `clientPublish`). Default false. */
  anonymousPublish: boolean;
}

export interface LimitsConfig {
  /** Open realtime connections on this node (all transports). Default 10000. */
  maxConnections: number;
  /** Open connections per client IP address. Default 100. */
  maxConnectionsPerIp: number;
  /** New connections per IP address: default 10 per second, bursts of 20. */
  connectionRatePerIp: RateConfig;
  /** Incoming messages per connection: default 50 per second, bursts of 100. Over the limit: close 4004. */
  messageRate: RateConfig;
  /** Incoming bytes per connection: default 1 MiB per second, bursts of 2 MiB. Burst must be ≥ `maxMessageSize`. */
  byteRate: RateConfig;
  /** Largest incoming message, in bytes. Default 64 KiB (65536). Larger: close 1009. */
  maxMessageSize: number;
  /** Arrays and objects nested at most this deep in publication and rpc data and in a client's info. Default 32, at most 64. Deeper: error 400. */
  maxDataDepth: number;
  /** Subscriptions per connection. Default 100. */
  maxSubscriptions: number;
  /** Bytes queued for a connection above which it is a slow consumer. Default 1 MiB. */
  sendHighWaterMark: number;
  /**
   * A slow consumer is closed with 4003 (`'disconnect'`, default), or loses
   * volatile messages first and is closed only when a non-volatile one would
   * be queued (`'drop-volatile'`).
   */
  slowConsumer: 'disconnect' | 'drop-volatile';
}

/**
 * The fallback transports (docs/protocol.md, "Fallback transports"): SSE and
 * HTTP long-polling sessions under `<path>/session`, for networks where
 * WebSocket does not get through. Same auth, limits and channels as
 * WebSocket; sessions count toward `limits.maxConnections`.
 */
export interface FallbacksConfig extends FallbackSessionOptions {
  /** Serve SSE and long-polling sessions. Default true. */
  enabled: boolean;
}

/** permessage-deflate on `/rt`; every field is one of the WebSocketServer's `perMessageDeflate` options. */
export interface CompressionConfig {
  /** Accept permessage-deflate when the client offers it. Default false. */
  enabled: boolean;
  /** Messages smaller than this many bytes (encoded) go uncompressed; they are framed once for every subscriber. Default 1024. */
  threshold: number;
  /** zlib level, 0-9 (-1: zlib's default, 6). Default 3. */
  level: number;
  /** Never keep our compression context between messages (less memory, lower ratio on similar messages). Default false. */
  serverNoContextTakeover: boolean;
  /** Ask clients not to keep theirs, so the server need not keep an inflate context (~40 KB) per connection. Default true. */
  clientNoContextTakeover: boolean;
  /** Largest LZ77 window we compress with, 8-15. Default 15. */
  serverMaxWindowBits: number;
  /** Release a connection's compression context after this many ms without a message (0: keep it). Default 10000. */
  idleReleaseMs: number;
  /** zlib operations running at once across all connections. Default 10. */
  concurrencyLimit: number;
}

/**
 * HTTP/2 on the TLS port (docs/configuration.md#http2): WebSockets over h2
 * extended CONNECT (RFC 8441) and h2 for the HTTP routes, beside HTTP/1.1
 * (ALPN `h2,http/1.1`). Used only when `tls` is set.
 */
export interface Http2Config {
  /** Offer h2 (ALPN) when `tls` is set. `http2: false` is short for `{ enabled: false }`. Default true. */
  enabled: boolean;
  /** Streams (WebSockets and requests together) one h2 connection may have open at once; more are refused by the protocol. Default 100. */
  maxConcurrentStreams: number;
  /** node:http2's `maxSessionMemory`, in MB: a connection that buffers more gets new streams refused. Default 10. */
  maxSessionMemory: number;
  /** The per-stream flow-control window we advertise, in bytes (what one slow WebSocket may have in flight towards us). Default 65535. */
  initialWindowSize: number;
  /** PING each h2 connection this often, in ms; one that has not answered by the next PING is closed. 0: off. Default 30000. */
  pingIntervalMs: number;
}

/** Where publications, history and presence live. Only `memory` is implemented yet. */
export type BrokerConfig =
  | {
      type: 'memory';
      /**
       * Keep history across restarts in this file (see
       * brokers/memory/snapshot-file.ts): read at start, written at a
       * graceful stop (clients then resume with `recovered: true`) and every
       * `snapshotIntervalMs` while publications come in. Unset: history is
       * lost with the process.
       */
      snapshotFile?: string;
      /** Save the snapshot this often while the broker changes, in ms; 0: only at a graceful stop. Default 5000. */
      snapshotIntervalMs: number;
    }
  | ({ type: 'redis' } & RedisBrokerConfig & BrokerProbeConfig)
  | ({ type: 'nats'; /** Server URLs (`nats://host:port`). */ servers: string[] } & BrokerProbeConfig);

/**
 * Where Redis is: one of `url` (a single Redis), `cluster` (Redis Cluster,
 * sharded pub/sub) or `sentinels` + `name` (the master a Sentinel names;
 * `url` then only gives the master's credentials, db and TLS).
 */
export interface RedisBrokerConfig {
  /** `redis://` or `rediss://` URL. */
  url?: string;
  /** Redis Cluster: some of its nodes, `redis://host:port` URLs (the rest is discovered; the first URL's credentials apply to all). */
  cluster?: string[];
  /** Sentinel: the sentinels, `host:port` or `redis://[[user]:password@]host:port` (the sentinels' own credentials). */
  sentinels?: string[];
  /** Sentinel: the name of the master set the sentinels watch. Required with `sentinels`. */
  name?: string;
}

/** How a networked broker's fan-out is probed (a message to this node through the broker, `Broker#probe`). */
export interface BrokerProbeConfig {
  /** Probe this often, in ms; 0: never. Default 10000. */
  probeIntervalMs?: number;
  /** A probe not back within this many ms failed: the subscription connection is made again. Default 5000. */
  probeTimeoutMs?: number;
}

/**
 * The admin UI at `path` (src/server/admin.ts): live metrics, connections,
 * channels, presence and history, and actions (publish, disconnect a user,
 * close a connection), behind a login with `password` or the HTTP API key
 * (`apiKey`) and a signed session cookie. See docs/configuration.md#admin.
 */
export interface AdminConfig {
  /** Serve the admin UI. Default false. */
  enabled: boolean;
  /** The admin password, at least 12 characters. The HTTP API key (`apiKey`) logs in as well. Default: none (then `apiKey` is required). */
  password?: string;
  /** URL path of the admin UI. Default `'/admin'`. */
  path: string;
  /**
   * Allow the admin UI on a non-loopback host without `tls` (a proxy in front
   * terminates TLS). Without it such a configuration is refused: the password
   * and the session cookie would cross the network in clear text. Default false.
   */
  allowInsecure: boolean;
  /** How long a login lasts, in ms (the cookie's Max-Age). Default 28800000 (8 hours). */
  sessionTtlMs: number;
  /** Login attempts per client IP address: default one every 10 s, bursts of 5. Over the limit: 429. */
  loginRatePerIp: RateConfig;
}

/** pino levels. */
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** `tls`: the server's certificate, key and client-certificate policy (src/server/tls.ts). */
export interface TlsConfig {
  /** PEM file of the certificate chain, leaf first. Reloaded on SIGHUP and when its directory changes. */
  cert: string;
  /** PEM file of the private key of the leaf (PKCS#8, PKCS#1 or SEC1; encrypted needs `passphrase`). */
  key: string;
  /** PEM file of the CAs that verify client certificates (`clientCertificates`). Default: none (Node's root CAs). */
  ca?: string;
  /** Lowest TLS version accepted: `'TLSv1.2'` (default) or `'TLSv1.3'`. Older versions are never accepted. */
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  /**
   * Client certificates: `'off'` (default, none asked for); `'request'`
   * (asked for and verified against `ca`; a connection without one, or with
   * one that does not verify, is still admitted, and auth sees
   * `identity.clientCertificate.authorized`); `'require'` (the TLS handshake
   * fails without one that verifies against `ca`).
   */
  clientCertificates: 'off' | 'request' | 'require';
  /** Passphrase of an encrypted key. */
  passphrase?: string;
}

export interface RealtimeConfig {
  /** Interface to listen on. Default `'127.0.0.1'` (loopback only; `'0.0.0.0'` or `'::'` for all). */
  host: string;
  /** TCP port, 0-65535 (0: any free port). Default 8080. */
  port: number;
  /**
   * Serve HTTPS/WSS with this certificate chain and key (PEM file paths;
   * relative paths in a config file are relative to that file). Default:
   * none (plain HTTP). Only when the server creates its own HTTP server.
   * See {@link TlsConfig} and docs/configuration.md ("TLS").
   */
  tls?: TlsConfig;
  /** HTTP/2 beside HTTP/1.1 on the TLS port (see Http2Config). */
  http2: Http2Config;
  /** URL path of the WebSocket endpoint. Default `'/rt'`. */
  path: string;
  /**
   * Origins whose pages may connect (the `Origin` header of a browser
   * handshake), as exact origins (`'https://app.example.com'`), or `'*'` for
   * all. Default `[]`: only pages of the server's own origin (same host:port
   * as the `Host` header). Requests without `Origin` (not browsers) pass.
   *
   * Why: a browser attaches cookies to a WebSocket handshake to any site and
   * lets the page read the socket, so without this check any website could
   * open a socket as a logged-in visitor (cross-site WebSocket hijacking,
   * CSWSH). Use `'*'` only when no ambient credential (cookie) is accepted.
   */
  allowedOrigins: string[];
  /**
   * Reverse proxies whose `X-Forwarded-For` is believed: IP addresses or
   * CIDR ranges (`10.0.0.0/8`, `::1`). A connection from one of them is
   * counted (per-IP limits) and logged under the rightmost forwarded
   * address that is not itself a trusted proxy. Default `[]`: the socket's
   * peer is the client, whatever the headers say.
   */
  trustedProxies: string[];
  /**
   * permessage-deflate (RFC 7692) on the WebSocket endpoint. Off by default:
   * it costs CPU per message and zlib memory per connection (see
   * docs/configuration.md#compression).
   */
  compression: CompressionConfig;
  /** How connections authenticate (see AuthConfig for every field and default). */
  auth: AuthConfig;
  /** Key for the HTTP API (`/api`, as `Authorization: Bearer <key>`), at least 16 characters. Default: none, and `/api` is disabled. */
  apiKey?: string;
  /**
   * Namespaces by channel prefix. The default namespace (prefix `''`: no
   * history, presence off, client publish on, no anonymous access) is added
   * when missing. Each entry is merged over those defaults.
   */
  namespaces: NamespaceConfig[];
  /** Connection and traffic limits. */
  limits: LimitsConfig;
  /**
   * Keep-alive: every `intervalMs` (default 25000; 0: off) the server sends a
   * WebSocket ping and an app-level `ping`; no answer within `timeoutMs`
   * (default 10000) and the connection is closed.
   */
  heartbeat: { intervalMs: number; timeoutMs: number };
  /** Close a connection that sent nothing but pongs for this long, in ms. Default 0 (off). */
  idleTimeoutMs: number;
  /**
   * Graceful shutdown: connections get `closing` and 1001, each told to
   * reconnect after a random delay up to `reconnectJitterMs` (default 5000)
   * so they do not all come back at once; after `timeoutMs` (default 10000)
   * the rest are terminated.
   */
  shutdown: { timeoutMs: number; reconnectJitterMs: number };
  /** Broker. Default `{ type: 'memory' }`. */
  broker: BrokerConfig;
  /**
   * `switchboard serve` only: processes that share the port (`node:cluster`),
   * each a full node on the broker (which must then be Redis or NATS: the
   * memory broker is one process's). Limits (`limits.maxConnections`, …)
   * and `/metrics` are per worker. Default 1 (no cluster). At most 256.
   */
  workers: number;
  /** Log level. Default `'info'`. */
  log: { level: LogLevel };
  /** Prometheus metrics at `/metrics`. Default enabled. */
  metrics: { enabled: boolean };
  /** SSE and long-polling sessions (see FallbacksConfig for every field and default). */
  fallbacks: FallbacksConfig;
  /** The admin UI (see AdminConfig for every field and default). Off by default. */
  admin: AdminConfig;
}

/** Every key optional, recursively; arrays hold partial elements. */
export type DeepPartial<T> = T extends readonly (infer U)[]
  ? DeepPartial<U>[]
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> | null }
    : T;

// ---- defaults ------------------------------------------------------------------

/** The keys of `T` that may be left out. */
type OptionalKeys<T> = { [K in keyof T]-?: {} extends Pick<T, K> ? K : never }[keyof T];

/**
 * Every key of `T`: a required key with its default, an optional key with
 * `undefined` (it has none). Leaving a key out, or giving an optional key a
 * default, does not compile, so a key added to a config type cannot be
 * missed by the unknown-key check.
 */
// Mapped over Required<T>, not with `-?`, which would strip the `undefined` of an optional key's type.
export type Defaults<T> = { [K in keyof Required<T>]: K extends OptionalKeys<T> ? undefined : T[K] };

const KiB = 1024;
const MiB = 1024 * KiB;

const DEFAULT_SNAPSHOT_INTERVAL_MS = 5000;

/** The default namespace's rules; also the base of every configured namespace. */
export const DEFAULT_NAMESPACE: Readonly<NamespaceConfig> = Object.freeze({
  prefix: '',
  history: Object.freeze({ size: 0, ttlMs: 0 } satisfies Defaults<NamespaceConfig['history']>),
  presence: 'off',
  presenceBatchMs: 0,
  clientPublish: true,
  anonymousSubscribe: false,
  anonymousPublish: false,
} satisfies Defaults<NamespaceConfig>) as Readonly<NamespaceConfig>;

/**
 * Every key of the configuration with its default (`undefined`: optional, no
 * default). The order of the keys is the order in which "did you mean" tries
 * them, so a typo equally close to two keys keeps getting the same answer.
 * Frozen; {@link defaultConfig} gives a copy to change.
 */
export const CONFIG_DEFAULTS = deepFreeze({
  host: '127.0.0.1',
  port: 8080,
  tls: undefined,
  http2: {
    enabled: true,
    maxConcurrentStreams: 100,
    maxSessionMemory: 10,
    initialWindowSize: 65535,
    pingIntervalMs: 30000,
  } satisfies Defaults<Http2Config>,
  path: '/rt',
  allowedOrigins: [],
  trustedProxies: [],
  compression: {
    enabled: false,
    threshold: 1024,
    level: 3,
    serverNoContextTakeover: false,
    clientNoContextTakeover: true,
    serverMaxWindowBits: 15,
    idleReleaseMs: 10000,
    concurrencyLimit: 10,
  } satisfies Defaults<CompressionConfig>,
  auth: {
    anonymous: false,
    hmacSecret: undefined,
    publicKey: undefined,
    jwksFile: undefined,
    issuer: undefined,
    audience: undefined,
    authTimeoutMs: 5000,
    refreshGraceMs: 10000,
    cookieName: 'sb_token',
    ticketTtlMs: 30000,
  } satisfies Defaults<AuthConfig>,
  apiKey: undefined,
  namespaces: [DEFAULT_NAMESPACE as NamespaceConfig],
  limits: {
    maxConnections: 10000,
    maxConnectionsPerIp: 100,
    connectionRatePerIp: { perSecond: 10, burst: 20 } satisfies Defaults<RateConfig>,
    messageRate: { ...DEFAULT_MESSAGE_RATE },
    byteRate: { ...DEFAULT_BYTE_RATE },
    maxMessageSize: 64 * KiB,
    maxDataDepth: DEFAULT_MAX_DATA_DEPTH,
    maxSubscriptions: 100,
    sendHighWaterMark: 1 * MiB,
    slowConsumer: 'disconnect',
  } satisfies Defaults<LimitsConfig>,
  heartbeat: { intervalMs: 25000, timeoutMs: 10000 } satisfies Defaults<RealtimeConfig['heartbeat']>,
  idleTimeoutMs: 0,
  workers: 1,
  shutdown: { timeoutMs: 10000, reconnectJitterMs: 5000 } satisfies Defaults<RealtimeConfig['shutdown']>,
  broker: {
    type: 'memory',
    snapshotFile: undefined,
    snapshotIntervalMs: DEFAULT_SNAPSHOT_INTERVAL_MS,
  } satisfies Defaults<Extract<BrokerConfig, { type: 'memory' }>>,
  log: { level: 'info' } satisfies Defaults<RealtimeConfig['log']>,
  metrics: { enabled: true } satisfies Defaults<RealtimeConfig['metrics']>,
  fallbacks: {
    enabled: true,
    graceMs: 30000,
    pollTimeoutMs: 25000,
    sseKeepAliveMs: 15000,
    sseRetryMs: 2000,
    bufferMessages: 1000,
    bufferBytes: 1 * MiB,
  } satisfies Defaults<FallbacksConfig>,
  admin: {
    enabled: false,
    password: undefined,
    path: '/admin',
    allowInsecure: false,
    sessionTtlMs: 8 * 3600_000,
    loginRatePerIp: { perSecond: 0.1, burst: 5 } satisfies Defaults<RateConfig>,
  } satisfies Defaults<AdminConfig>,
} satisfies Defaults<RealtimeConfig>);

/**
 * The keys of the objects that have no defaults at all (`tls`, the redis and
 * nats brokers), for the unknown-key check; as with {@link Defaults}, a key
 * missing here does not compile.
 */
export const KEYS_WITHOUT_DEFAULTS = {
  tls: keysOf({ cert: true, key: true, ca: true, minVersion: true, clientCertificates: true, passphrase: true } satisfies Record<keyof TlsConfig, true>),
  redis: keysOf({ type: true, url: true, cluster: true, sentinels: true, name: true, probeIntervalMs: true, probeTimeoutMs: true } satisfies Record<keyof Extract<BrokerConfig, { type: 'redis' }>, true>),
  nats: keysOf({ type: true, servers: true, probeIntervalMs: true, probeTimeoutMs: true } satisfies Record<keyof Extract<BrokerConfig, { type: 'nats' }>, true>),
};

/** A fresh copy of the defaults. */
export function defaultConfig(): RealtimeConfig {
  return copyDefined(CONFIG_DEFAULTS) as RealtimeConfig;
}

export function cloneNamespace(ns: Readonly<NamespaceConfig>): NamespaceConfig {
  return { ...ns, history: { ...ns.history } };
}

/** The keys of an object, in order (a config object's known keys, when it is a defaults object). */
export function keysOf<T extends object>(shape: T): readonly (keyof T & string)[] {
  return Object.keys(shape) as (keyof T & string)[];
}

/** A deep copy of plain objects and arrays that leaves out the keys whose value is `undefined` (no default). */
function copyDefined(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(copyDefined);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) if (v !== undefined) out[key] = copyDefined(v);
  return out;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
