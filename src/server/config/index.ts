/**
 * Configuration of the realtime server (`switchboard serve`,
 * `createRealtimeServer()`): the {@link RealtimeConfig} type, its defaults,
 * loading from a file, the environment and overrides, and validation.
 *
 * Precedence, lowest first: defaults < config file (JSON or YAML) <
 * environment variables ({@link ENV_VARS}) < overrides (CLI flags, code).
 * Objects merge key by key; arrays and scalars replace; `null` at any layer
 * resets a key to its default (or unsets an optional one). `broker` is
 * replaced as a whole when a layer names a different `type`.
 *
 * Validation collects every problem and throws one {@link ConfigError} whose
 * lines read `path: message`, e.g.
 * `limits.maxConection: unknown key (did you mean maxConnections?)`.
 */
import { accessSync, constants as fsConstants, readFileSync, statSync } from 'node:fs';
import { dirname, extname, isAbsolute, resolve as resolvePath } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { loadJwks, loadPublicKey, MIN_HMAC_SECRET_BYTES, type AuthConfig, type NamespacePolicy } from '../../realtime/auth.js';
import { isValidChannel } from '../../wire/channel.js';
import { DEFAULT_BYTE_RATE, DEFAULT_MESSAGE_RATE } from '../../wire/messages.js';
import { DEFAULT_MAX_DATA_DEPTH, MAX_DATA_DEPTH_LIMIT } from '../../wire/data.js';
import type { FallbackSessionOptions } from '../../fallbacks/router.js';
import { parseProxyEntry } from '../client-address.js';

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
  | { type: 'redis'; /** `redis://` or `rediss://` URL. */ url: string }
  | { type: 'nats'; /** Server URLs (`nats://host:port`). */ servers: string[] };

/** pino levels. */
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface RealtimeConfig {
  /** Interface to listen on. Default `'127.0.0.1'` (loopback only; `'0.0.0.0'` or `'::'` for all). */
  host: string;
  /** TCP port, 0-65535 (0: any free port). Default 8080. */
  port: number;
  /**
   * Serve HTTPS/WSS with this certificate chain and key (PEM file paths;
   * relative paths in a config file are relative to that file). TLS 1.2 or
   * newer. Default: none (plain HTTP).
   */
  tls?: { cert: string; key: string };
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
  /** Log level. Default `'info'`. */
  log: { level: LogLevel };
  /** Prometheus metrics at `/metrics`. Default enabled. */
  metrics: { enabled: boolean };
  /** SSE and long-polling sessions (see FallbacksConfig for every field and default). */
  fallbacks: FallbacksConfig;
}

/** Every key optional, recursively; arrays hold partial elements. */
export type DeepPartial<T> = T extends readonly (infer U)[]
  ? DeepPartial<U>[]
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> | null }
    : T;

// ---- defaults ------------------------------------------------------------------

const KiB = 1024;
const MiB = 1024 * KiB;

const DEFAULT_SNAPSHOT_INTERVAL_MS = 5000;

/** The default namespace's rules; also the base of every configured namespace. */
export const DEFAULT_NAMESPACE: Readonly<NamespaceConfig> = Object.freeze({
  prefix: '',
  history: Object.freeze({ size: 0, ttlMs: 0 }),
  presence: 'off',
  presenceBatchMs: 0,
  clientPublish: true,
  anonymousSubscribe: false,
  anonymousPublish: false,
}) as Readonly<NamespaceConfig>;

/** A fresh copy of the defaults. */
export function defaultConfig(): RealtimeConfig {
  return {
    host: '127.0.0.1',
    port: 8080,
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
    },
    auth: {
      anonymous: false,
      authTimeoutMs: 5000,
      refreshGraceMs: 10000,
      cookieName: 'sb_token',
      ticketTtlMs: 30000,
    },
    namespaces: [cloneNamespace(DEFAULT_NAMESPACE)],
    limits: {
      maxConnections: 10000,
      maxConnectionsPerIp: 100,
      connectionRatePerIp: { perSecond: 10, burst: 20 },
      messageRate: { ...DEFAULT_MESSAGE_RATE },
      byteRate: { ...DEFAULT_BYTE_RATE },
      maxMessageSize: 64 * KiB,
      maxDataDepth: DEFAULT_MAX_DATA_DEPTH,
      maxSubscriptions: 100,
      sendHighWaterMark: 1 * MiB,
      slowConsumer: 'disconnect',
    },
    heartbeat: { intervalMs: 25000, timeoutMs: 10000 },
    idleTimeoutMs: 0,
    shutdown: { timeoutMs: 10000, reconnectJitterMs: 5000 },
    broker: { type: 'memory', snapshotIntervalMs: DEFAULT_SNAPSHOT_INTERVAL_MS },
    log: { level: 'info' },
    metrics: { enabled: true },
    fallbacks: {
      enabled: true,
      graceMs: 30000,
      pollTimeoutMs: 25000,
      sseKeepAliveMs: 15000,
      sseRetryMs: 2000,
      bufferMessages: 1000,
      bufferBytes: 1 * MiB,
    },
  };
}

function cloneNamespace(ns: Readonly<NamespaceConfig>): NamespaceConfig {
  return { ...ns, history: { ...ns.history } };
}

// ---- errors --------------------------------------------------------------------

export interface ConfigIssue {
  /** Where: `limits.maxConnections`, `namespaces[1].prefix`, an env var name, or the config file. */
  path: string;
  message: string;
}

/** The configuration is invalid; `lines` holds every problem as `path: message`. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'SB_ERR_CONFIG';
  readonly lines: readonly string[];
  constructor(readonly issues: readonly ConfigIssue[]) {
    const lines = issues.map((i) => `${i.path}: ${i.message}`);
    super(`invalid configuration:\n  ${lines.join('\n  ')}`);
    this.lines = lines;
  }
}

// ---- environment -----------------------------------------------------------------

type EnvKind = 'string' | 'pem' | 'int' | 'bool' | 'list';

/** One environment variable and the config key it sets. */
export interface EnvVar {
  name: string;
  /** Config key, dotted. */
  key: string;
  kind: EnvKind;
}

/**
 * The environment variables {@link loadConfig} reads (empty values count as
 * unset). Booleans: `true/false`, `1/0`, `yes/no`, `on/off`. Lists: comma
 * separated, blanks trimmed. `SWITCHBOARD_JWT_PUBLIC_KEY` is PEM text (literal
 * `\n` sequences become newlines) or a file path. `SWITCHBOARD_REDIS_URL` / `SWITCHBOARD_NATS_SERVERS`
 * also select that broker unless `SWITCHBOARD_BROKER` says otherwise.
 * `SWITCHBOARD_CONFIG` names the config file when none is passed.
 */
export const ENV_VARS: readonly EnvVar[] = [
  { name: 'SWITCHBOARD_HOST', key: 'host', kind: 'string' },
  { name: 'SWITCHBOARD_PORT', key: 'port', kind: 'int' },
  { name: 'SWITCHBOARD_PATH', key: 'path', kind: 'string' },
  { name: 'SWITCHBOARD_TLS_CERT', key: 'tls.cert', kind: 'string' },
  { name: 'SWITCHBOARD_TLS_KEY', key: 'tls.key', kind: 'string' },
  { name: 'SWITCHBOARD_ALLOWED_ORIGINS', key: 'allowedOrigins', kind: 'list' },
  { name: 'SWITCHBOARD_TRUSTED_PROXIES', key: 'trustedProxies', kind: 'list' },
  { name: 'SWITCHBOARD_COMPRESSION', key: 'compression.enabled', kind: 'bool' },
  { name: 'SWITCHBOARD_ANONYMOUS', key: 'auth.anonymous', kind: 'bool' },
  { name: 'SWITCHBOARD_JWT_SECRET', key: 'auth.hmacSecret', kind: 'string' },
  { name: 'SWITCHBOARD_JWT_PUBLIC_KEY', key: 'auth.publicKey', kind: 'pem' },
  { name: 'SWITCHBOARD_JWKS_FILE', key: 'auth.jwksFile', kind: 'string' },
  { name: 'SWITCHBOARD_JWT_ISSUER', key: 'auth.issuer', kind: 'string' },
  { name: 'SWITCHBOARD_JWT_AUDIENCE', key: 'auth.audience', kind: 'string' },
  { name: 'SWITCHBOARD_AUTH_COOKIE', key: 'auth.cookieName', kind: 'string' },
  { name: 'SWITCHBOARD_API_KEY', key: 'apiKey', kind: 'string' },
  { name: 'SWITCHBOARD_MAX_CONNECTIONS', key: 'limits.maxConnections', kind: 'int' },
  { name: 'SWITCHBOARD_MAX_CONNECTIONS_PER_IP', key: 'limits.maxConnectionsPerIp', kind: 'int' },
  { name: 'SWITCHBOARD_MAX_MESSAGE_SIZE', key: 'limits.maxMessageSize', kind: 'int' },
  { name: 'SWITCHBOARD_BROKER', key: 'broker.type', kind: 'string' },
  { name: 'SWITCHBOARD_REDIS_URL', key: 'broker.url', kind: 'string' },
  { name: 'SWITCHBOARD_NATS_SERVERS', key: 'broker.servers', kind: 'list' },
  { name: 'SWITCHBOARD_SNAPSHOT_FILE', key: 'broker.snapshotFile', kind: 'string' },
  { name: 'SWITCHBOARD_LOG_LEVEL', key: 'log.level', kind: 'string' },
  { name: 'SWITCHBOARD_METRICS', key: 'metrics.enabled', kind: 'bool' },
  { name: 'SWITCHBOARD_FALLBACKS', key: 'fallbacks.enabled', kind: 'bool' },
];

function parseEnv(env: NodeJS.ProcessEnv, issues: ConfigIssue[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { name, key, kind } of ENV_VARS) {
    const raw = env[name];
    if (raw === undefined || raw.trim() === '') continue;
    let value: unknown;
    const text = raw.trim();
    switch (kind) {
      case 'string':
        value = text;
        break;
      case 'pem':
        // PEM text with its newlines written as `\n` (one-line env files) gets them back
        value = text.includes('-----BEGIN') ? text.replace(/\\n/g, '\n') : text;
        break;
      case 'int':
        if (!/^[0-9]+$/.test(text)) {
          issues.push({ path: name, message: `expected an integer, got ${JSON.stringify(text)}` });
          continue;
        }
        value = Number(text);
        break;
      case 'bool': {
        const t = text.toLowerCase();
        if (['true', '1', 'yes', 'on'].includes(t)) value = true;
        else if (['false', '0', 'no', 'off'].includes(t)) value = false;
        else {
          issues.push({ path: name, message: `expected true or false, got ${JSON.stringify(text)}` });
          continue;
        }
        break;
      }
      case 'list':
        value = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
        break;
    }
    setPath(out, key.split('.'), value);
  }
  const broker = out['broker'] as Record<string, unknown> | undefined;
  if (broker && broker['type'] === undefined) {
    if (broker['url'] !== undefined) broker['type'] = 'redis';
    else if (broker['servers'] !== undefined) broker['type'] = 'nats';
  }
  return out;
}

function setPath(target: Record<string, unknown>, keys: string[], value: unknown): void {
  let node = target;
  for (let i = 0; i < keys.length - 1; i++) {
    const k = keys[i]!;
    if (!isPlainObject(node[k])) node[k] = {};
    node = node[k] as Record<string, unknown>;
  }
  node[keys[keys.length - 1]!] = value;
}

// ---- loading -----------------------------------------------------------------------

export interface LoadConfigOptions {
  /**
   * Config file, `.json`, `.yaml` or `.yml`. Default: `env.SWITCHBOARD_CONFIG`
   * when set, else none.
   */
  file?: string;
  /** Environment variables to read ({@link ENV_VARS}). Default `process.env`; pass `{}` to ignore the environment. */
  env?: NodeJS.ProcessEnv;
  /** Highest-precedence values (CLI flags, options given in code). */
  overrides?: DeepPartial<RealtimeConfig>;
}

/**
 * Defaults, then the file, then the environment, then `overrides`, merged
 * and validated (see the module comment). Throws a {@link ConfigError}
 * listing every problem. Reads key files (`tls.*`, `auth.publicKey`,
 * `auth.jwksFile`) to check them.
 */
export function loadConfig(options: LoadConfigOptions = {}): RealtimeConfig {
  return validateConfig(mergeConfigLayers(options));
}

/**
 * The file, the environment and `overrides` merged, before defaults and
 * validation (what {@link loadConfig} validates). Throws a {@link ConfigError}
 * when a layer cannot be read (the file, an environment variable).
 */
export function mergeConfigLayers(options: LoadConfigOptions = {}): Record<string, unknown> {
  const env = options.env ?? process.env;
  const issues: ConfigIssue[] = [];
  const file = options.file ?? (env['SWITCHBOARD_CONFIG']?.trim() || undefined);
  const layers: unknown[] = [];
  if (file !== undefined) {
    const fromFile = readConfigFile(file, issues);
    if (fromFile !== undefined) layers.push(fromFile);
  }
  layers.push(parseEnv(env, issues));
  if (options.overrides !== undefined) layers.push(options.overrides);
  if (issues.length > 0) throw new ConfigError(issues);
  let merged: unknown = {};
  for (const layer of layers) merged = mergeLayer(merged, layer);
  return merged as Record<string, unknown>;
}

/** Parse a config file; its relative key-file paths become relative to the file. */
function readConfigFile(file: string, issues: ConfigIssue[]): unknown {
  const ext = extname(file).toLowerCase();
  if (ext !== '.json' && ext !== '.yaml' && ext !== '.yml') {
    issues.push({ path: file, message: 'unsupported config file type (use .json, .yaml or .yml)' });
    return undefined;
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    issues.push({ path: file, message: `cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` });
    return undefined;
  }
  let data: unknown;
  try {
    data = ext === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    const what = ext === '.json' ? 'JSON' : 'YAML';
    issues.push({ path: file, message: `invalid ${what}: ${(err as Error).message.split('\n')[0]}` });
    return undefined;
  }
  if (data === null || data === undefined) return {};
  if (!isPlainObject(data)) {
    issues.push({ path: file, message: `expected an object at the top level, got ${describe(data)}` });
    return undefined;
  }
  const base = dirname(resolvePath(file));
  const rebase = (obj: unknown, key: string, skipPem = false) => {
    if (!isPlainObject(obj)) return;
    const v = obj[key];
    if (typeof v !== 'string' || v === '' || isAbsolute(v) || (skipPem && v.includes('-----BEGIN'))) return;
    obj[key] = resolvePath(base, v);
  };
  rebase(data['tls'], 'cert');
  rebase(data['tls'], 'key');
  rebase(data['auth'], 'publicKey', true);
  rebase(data['auth'], 'jwksFile');
  rebase(data['broker'], 'snapshotFile');
  return data;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Define a key without invoking setters (a JSON key `__proto__` stays a plain key). */
function put(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/** `over` on top of `base`: objects key by key, the rest replaced; `undefined` keeps `base`, `null` is kept (reset marker). */
function mergeLayer(base: unknown, over: unknown, path = ''): unknown {
  if (over === undefined) return base;
  if (!isPlainObject(over) || !isPlainObject(base)) return over;
  if (path === 'broker' && over['type'] !== undefined && over['type'] !== base['type']) return over;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(base)) put(out, key, base[key]);
  for (const key of Object.keys(over)) put(out, key, mergeLayer(out[key], over[key], path === '' ? key : `${path}.${key}`));
  return out;
}

/** Fill in defaults: `null`/`undefined` take the default; keys the defaults lack stay (for the unknown-key check). */
function withDefaults(def: unknown, value: unknown, path = ''): unknown {
  if (value === undefined || value === null) return def === undefined ? undefined : structuredClone(def);
  if (!isPlainObject(def) || !isPlainObject(value)) return value;
  // As in mergeLayer: the defaults of one broker type are not another's (a redis broker has no snapshot interval).
  if (path === 'broker' && value['type'] !== undefined && value['type'] !== def['type']) return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(def)) {
    const v = withDefaults(def[key], value[key], path === '' ? key : `${path}.${key}`);
    if (v !== undefined) put(out, key, v);
  }
  for (const key of Object.keys(value)) {
    if (key in def && Object.prototype.hasOwnProperty.call(def, key)) continue;
    if (value[key] !== null && value[key] !== undefined) put(out, key, value[key]);
  }
  return out;
}

// ---- validation ----------------------------------------------------------------------

/**
 * Fill defaults into a (merged) configuration object and check it. Throws a
 * {@link ConfigError} with every problem; returns a complete config otherwise.
 */
export function validateConfig(input: unknown): RealtimeConfig {
  const c = new Checker();
  if (input !== undefined && input !== null && !isPlainObject(input)) {
    throw new ConfigError([{ path: '(config)', message: `expected an object, got ${describe(input)}` }]);
  }
  const defaults = defaultConfig();
  const { namespaces: defaultNamespaces, ...rest } = defaults;
  void defaultNamespaces;
  const value = withDefaults(rest, input ?? {}) as Record<string, unknown>;
  // namespaces: each entry over the namespace defaults; the default namespace added when missing
  const rawNamespaces = (input as Record<string, unknown> | undefined)?.['namespaces'];
  let namespaces: unknown = rawNamespaces === undefined || rawNamespaces === null ? [] : rawNamespaces;
  if (Array.isArray(namespaces)) {
    const { prefix: _prefix, ...nsDefaults } = DEFAULT_NAMESPACE;
    void _prefix;
    namespaces = namespaces.map((ns) => {
      if (!isPlainObject(ns)) return ns;
      const filled = withDefaults(nsDefaults, ns) as Record<string, unknown>;
      if (typeof filled['prefix'] === 'string' && filled['prefix'].length > 1 && filled['prefix'].endsWith('/')) {
        filled['prefix'] = filled['prefix'].slice(0, -1);
      }
      return filled;
    });
  }
  value['namespaces'] = namespaces;

  checkConfig(c, value);
  if (c.issues.length > 0) throw new ConfigError(c.issues);
  const config = value as unknown as RealtimeConfig;
  if (!config.namespaces.some((ns) => ns.prefix === '')) config.namespaces.unshift(cloneNamespace(DEFAULT_NAMESPACE));
  return config;
}

const TOP_KEYS = [
  'host', 'port', 'tls', 'path', 'allowedOrigins', 'trustedProxies', 'compression', 'auth', 'apiKey', 'namespaces', 'limits',
  'heartbeat', 'idleTimeoutMs', 'shutdown', 'broker', 'log', 'metrics', 'fallbacks',
] as const;
const COMPRESSION_KEYS = [
  'enabled', 'threshold', 'level', 'serverNoContextTakeover', 'clientNoContextTakeover', 'serverMaxWindowBits',
  'idleReleaseMs', 'concurrencyLimit',
] as const;
const AUTH_KEYS = [
  'anonymous', 'hmacSecret', 'publicKey', 'jwksFile', 'issuer', 'audience', 'authTimeoutMs',
  'refreshGraceMs', 'cookieName', 'ticketTtlMs',
] as const;
const NAMESPACE_KEYS = [
  'prefix', 'history', 'presence', 'presenceBatchMs', 'clientPublish', 'anonymousSubscribe', 'anonymousPublish',
] as const;
const LIMIT_KEYS = [
  'maxConnections', 'maxConnectionsPerIp', 'connectionRatePerIp', 'messageRate', 'byteRate', 'maxMessageSize',
  'maxDataDepth', 'maxSubscriptions', 'sendHighWaterMark', 'slowConsumer',
] as const;
const FALLBACK_KEYS = [
  'enabled', 'graceMs', 'pollTimeoutMs', 'sseKeepAliveMs', 'sseRetryMs', 'bufferMessages', 'bufferBytes',
] as const;
/** Upper bound of `fallbacks.pollTimeoutMs`: proxies commonly cut idle requests after 60-120 s. */
const MAX_POLL_TIMEOUT_MS = 120_000;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** RFC 6265 §4.1.1 cookie-name: an RFC 7230 token. */
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Minimum length of `apiKey`, in characters. */
export const MIN_API_KEY_LENGTH = 16;

function checkConfig(c: Checker, v: Record<string, unknown>): void {
  c.keys('', v, TOP_KEYS);
  c.string('host', v['host'], { nonEmpty: true });
  c.int('port', v['port'], 0, 65535);
  if (v['tls'] !== undefined && c.keys('tls', v['tls'], ['cert', 'key'])) {
    const tls = v['tls'] as Record<string, unknown>;
    for (const k of ['cert', 'key']) {
      if (tls[k] === undefined) c.add(`tls.${k}`, 'required');
      else if (c.string(`tls.${k}`, tls[k], { nonEmpty: true })) c.readable(`tls.${k}`, tls[k] as string);
    }
  }
  if (c.string('path', v['path'])) {
    const p = v['path'] as string;
    if (!p.startsWith('/')) c.add('path', `must start with "/", got ${JSON.stringify(p)}`);
    else if (/[?#\s]/.test(p)) c.add('path', 'must not contain "?", "#" or whitespace');
  }
  if (c.array('allowedOrigins', v['allowedOrigins'])) {
    (v['allowedOrigins'] as unknown[]).forEach((o, i) => checkOrigin(c, `allowedOrigins[${i}]`, o));
  }
  if (c.array('trustedProxies', v['trustedProxies'])) {
    (v['trustedProxies'] as unknown[]).forEach((p, i) => {
      if (c.string(`trustedProxies[${i}]`, p, { nonEmpty: true }) && parseProxyEntry(p as string) === null) {
        c.add(`trustedProxies[${i}]`, `expected an IP address or a CIDR range (like "10.0.0.0/8"), got ${JSON.stringify(p)}`);
      }
    });
  }
  if (c.keys('compression', v['compression'], COMPRESSION_KEYS)) {
    const z = v['compression'] as Record<string, unknown>;
    c.bool('compression.enabled', z['enabled']);
    c.int('compression.threshold', z['threshold'], 0);
    c.int('compression.level', z['level'], -1, 9);
    c.bool('compression.serverNoContextTakeover', z['serverNoContextTakeover']);
    c.bool('compression.clientNoContextTakeover', z['clientNoContextTakeover']);
    c.int('compression.serverMaxWindowBits', z['serverMaxWindowBits'], 8, 15);
    c.int('compression.idleReleaseMs', z['idleReleaseMs'], 0);
    c.int('compression.concurrencyLimit', z['concurrencyLimit'], 1);
  }
  checkAuth(c, v['auth']);
  if (v['apiKey'] !== undefined && c.string('apiKey', v['apiKey'], { secret: true })) {
    if ((v['apiKey'] as string).length < MIN_API_KEY_LENGTH) c.add('apiKey', `must be at least ${MIN_API_KEY_LENGTH} characters`);
  }
  checkNamespaces(c, v['namespaces']);
  checkLimits(c, v['limits']);
  if (c.keys('heartbeat', v['heartbeat'], ['intervalMs', 'timeoutMs'])) {
    const h = v['heartbeat'] as Record<string, unknown>;
    c.int('heartbeat.intervalMs', h['intervalMs'], 0);
    c.int('heartbeat.timeoutMs', h['timeoutMs'], 1);
  }
  if (c.int('idleTimeoutMs', v['idleTimeoutMs'], 0) && (v['idleTimeoutMs'] as number) > 0) {
    // Idle connections are found on heartbeat ticks: without them the timeout would never fire.
    const interval = (v['heartbeat'] as Record<string, unknown> | undefined)?.['intervalMs'];
    if (interval === 0) c.add('idleTimeoutMs', 'needs heartbeat.intervalMs > 0 (idle connections are checked at each heartbeat)');
  }
  if (c.keys('shutdown', v['shutdown'], ['timeoutMs', 'reconnectJitterMs'])) {
    const s = v['shutdown'] as Record<string, unknown>;
    c.int('shutdown.timeoutMs', s['timeoutMs'], 0);
    c.int('shutdown.reconnectJitterMs', s['reconnectJitterMs'], 0);
  }
  checkBroker(c, v['broker']);
  if (c.keys('log', v['log'], ['level'])) c.oneOf('log.level', (v['log'] as Record<string, unknown>)['level'], LOG_LEVELS);
  if (c.keys('metrics', v['metrics'], ['enabled'])) c.bool('metrics.enabled', (v['metrics'] as Record<string, unknown>)['enabled']);
  if (c.keys('fallbacks', v['fallbacks'], FALLBACK_KEYS)) {
    const f = v['fallbacks'] as Record<string, unknown>;
    c.bool('fallbacks.enabled', f['enabled']);
    c.int('fallbacks.graceMs', f['graceMs'], 1);
    c.int('fallbacks.pollTimeoutMs', f['pollTimeoutMs'], 1, MAX_POLL_TIMEOUT_MS);
    c.int('fallbacks.sseKeepAliveMs', f['sseKeepAliveMs'], 1);
    c.int('fallbacks.sseRetryMs', f['sseRetryMs'], 0);
    c.int('fallbacks.bufferMessages', f['bufferMessages'], 1);
    c.int('fallbacks.bufferBytes', f['bufferBytes'], 1);
  }
}

function checkOrigin(c: Checker, path: string, o: unknown): void {
  if (!c.string(path, o)) return;
  const s = o as string;
  if (s === '*') return;
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    c.add(path, `not an origin (expected scheme://host[:port], like "https://example.com"), got ${JSON.stringify(s)}`);
    return;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    c.add(path, `only http: and https: origins (or "*"), got ${JSON.stringify(s)}`);
  } else if (url.pathname !== '/' || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '' || s.endsWith('/')) {
    c.add(path, `an origin has no path, query or credentials (did you mean ${JSON.stringify(url.origin)}?)`);
  }
}

/** The message of the `auth` issue of a configuration that names no key (and does not allow anonymous connections). */
export const MISSING_AUTH_KEY = 'set hmacSecret, publicKey or jwksFile, or allow anonymous connections (anonymous: true)';

function checkAuth(c: Checker, a: unknown): void {
  if (!c.keys('auth', a, AUTH_KEYS)) return;
  const auth = a as Record<string, unknown>;
  c.bool('auth.anonymous', auth['anonymous']);
  let keys = 0;
  if (auth['hmacSecret'] !== undefined) {
    keys++;
    if (c.string('auth.hmacSecret', auth['hmacSecret'], { secret: true })) {
      if (Buffer.byteLength(auth['hmacSecret'] as string) < MIN_HMAC_SECRET_BYTES) {
        c.add('auth.hmacSecret', `must be at least ${MIN_HMAC_SECRET_BYTES} bytes (RFC 7518 §3.2)`);
      }
    }
  }
  if (auth['publicKey'] !== undefined) {
    keys++;
    if (c.string('auth.publicKey', auth['publicKey'], { nonEmpty: true })) {
      try {
        loadPublicKey(auth['publicKey'] as string);
      } catch (err) {
        c.add('auth.publicKey', (err as Error).message);
      }
    }
  }
  if (auth['jwksFile'] !== undefined) {
    keys++;
    if (c.string('auth.jwksFile', auth['jwksFile'], { nonEmpty: true })) {
      try {
        loadJwks(auth['jwksFile'] as string);
      } catch (err) {
        c.add('auth.jwksFile', (err as Error).message);
      }
    }
  }
  if (auth['issuer'] !== undefined) c.string('auth.issuer', auth['issuer'], { nonEmpty: true });
  if (auth['audience'] !== undefined) c.string('auth.audience', auth['audience'], { nonEmpty: true });
  c.int('auth.authTimeoutMs', auth['authTimeoutMs'], 1);
  c.int('auth.refreshGraceMs', auth['refreshGraceMs'], 0);
  if (c.string('auth.cookieName', auth['cookieName']) && !COOKIE_NAME.test(auth['cookieName'] as string)) {
    c.add('auth.cookieName', `not a valid cookie name: ${JSON.stringify(auth['cookieName'])}`);
  }
  c.int('auth.ticketTtlMs', auth['ticketTtlMs'], 1);
  if (keys === 0 && auth['anonymous'] !== true) {
    c.add('auth', MISSING_AUTH_KEY);
  }
}

function checkNamespaces(c: Checker, value: unknown): void {
  if (!Array.isArray(value)) {
    c.add('namespaces', `expected an array, got ${describe(value)}`);
    return;
  }
  const seen = new Map<string, number>();
  value.forEach((ns, i) => {
    const at = `namespaces[${i}]`;
    if (!c.keys(at, ns, NAMESPACE_KEYS)) return;
    const n = ns as Record<string, unknown>;
    if (n['prefix'] === undefined) c.add(`${at}.prefix`, 'required');
    else if (c.string(`${at}.prefix`, n['prefix'])) {
      const prefix = n['prefix'] as string;
      if (prefix !== '' && !isValidChannel(prefix)) {
        c.add(
          `${at}.prefix`,
          /[+#]/.test(prefix)
            ? `must not contain wildcards, got ${JSON.stringify(prefix)}`
            : `not a channel name prefix (segments separated by "/"), got ${JSON.stringify(prefix)}`,
        );
      } else if (seen.has(prefix)) {
        c.add(`${at}.prefix`, `duplicate of namespaces[${seen.get(prefix)}]`);
      } else {
        seen.set(prefix, i);
      }
    }
    if (c.keys(`${at}.history`, n['history'], ['size', 'ttlMs'])) {
      const h = n['history'] as Record<string, unknown>;
      c.int(`${at}.history.size`, h['size'], 0);
      c.int(`${at}.history.ttlMs`, h['ttlMs'], 0);
    }
    c.oneOf(`${at}.presence`, n['presence'], ['off', 'full', 'counts']);
    c.int(`${at}.presenceBatchMs`, n['presenceBatchMs'], 0);
    c.bool(`${at}.clientPublish`, n['clientPublish']);
    c.bool(`${at}.anonymousSubscribe`, n['anonymousSubscribe']);
    c.bool(`${at}.anonymousPublish`, n['anonymousPublish']);
  });
}

function checkLimits(c: Checker, l: unknown): void {
  if (!c.keys('limits', l, LIMIT_KEYS)) return;
  const limits = l as Record<string, unknown>;
  c.int('limits.maxConnections', limits['maxConnections'], 1);
  c.int('limits.maxConnectionsPerIp', limits['maxConnectionsPerIp'], 1);
  for (const k of ['connectionRatePerIp', 'messageRate', 'byteRate']) {
    const at = `limits.${k}`;
    if (!c.keys(at, limits[k], ['perSecond', 'burst'])) continue;
    const r = limits[k] as Record<string, unknown>;
    c.positive(`${at}.perSecond`, r['perSecond']);
    c.number(`${at}.burst`, r['burst'], 1);
  }
  const sizeOk = c.int('limits.maxMessageSize', limits['maxMessageSize'], 1);
  c.int('limits.maxDataDepth', limits['maxDataDepth'], 1, MAX_DATA_DEPTH_LIMIT);
  c.int('limits.maxSubscriptions', limits['maxSubscriptions'], 1);
  c.int('limits.sendHighWaterMark', limits['sendHighWaterMark'], 1);
  c.oneOf('limits.slowConsumer', limits['slowConsumer'], ['disconnect', 'drop-volatile']);
  const burst = (limits['byteRate'] as Record<string, unknown> | undefined)?.['burst'];
  if (sizeOk && typeof burst === 'number' && burst >= 1 && burst < (limits['maxMessageSize'] as number)) {
    c.add('limits.byteRate.burst', `must be at least limits.maxMessageSize (${limits['maxMessageSize']}), got ${burst}`);
  }
}

function checkBroker(c: Checker, b: unknown): void {
  if (!isPlainObject(b)) {
    c.add('broker', `expected an object, got ${describe(b)}`);
    return;
  }
  if (!c.oneOf('broker.type', b['type'], ['memory', 'redis', 'nats'])) return;
  const type = b['type'] as BrokerConfig['type'];
  const allowed = type === 'memory' ? ['type', 'snapshotFile', 'snapshotIntervalMs'] : type === 'redis' ? ['type', 'url'] : ['type', 'servers'];
  for (const key of Object.keys(b)) {
    if (!allowed.includes(key)) {
      const other = ['url', 'servers', 'snapshotFile', 'snapshotIntervalMs'].includes(key);
      c.add(`broker.${key}`, other ? `unknown key for broker type "${type}"` : unknownKey(key, allowed));
    }
  }
  if (type === 'memory') {
    c.int('broker.snapshotIntervalMs', b['snapshotIntervalMs'], 0);
    if (b['snapshotFile'] !== undefined && c.string('broker.snapshotFile', b['snapshotFile'], { nonEmpty: true })) {
      c.writableFile('broker.snapshotFile', b['snapshotFile'] as string);
    }
  } else if (type === 'redis') {
    if (b['url'] === undefined) c.add('broker.url', 'required');
    else if (c.string('broker.url', b['url']) && !/^rediss?:\/\/./.test(b['url'] as string)) {
      c.add('broker.url', 'expected a redis:// or rediss:// URL');
    }
  } else if (type === 'nats') {
    if (b['servers'] === undefined) c.add('broker.servers', 'required');
    else if (c.array('broker.servers', b['servers'])) {
      const servers = b['servers'] as unknown[];
      if (servers.length === 0) c.add('broker.servers', 'must not be empty');
      servers.forEach((s, i) => c.string(`broker.servers[${i}]`, s, { nonEmpty: true }));
    }
  }
}

// ---- checker -----------------------------------------------------------------------------

function describe(v: unknown, secret = false): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') {
    if (secret) return 'a string';
    return `string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`;
  }
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

function unknownKey(key: string, known: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = k.toLowerCase() === key.toLowerCase() ? 0 : distance(key, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  const limit = key.length <= 3 ? 1 : key.length <= 6 ? 2 : 3;
  return best !== undefined && bestDistance <= limit ? `unknown key (did you mean ${best}?)` : 'unknown key';
}

class Checker {
  readonly issues: ConfigIssue[] = [];

  add(path: string, message: string): void {
    this.issues.push({ path, message });
  }

  /** An object whose keys are all in `known`; reports unknown ones. False if not an object. */
  keys(path: string, value: unknown, known: readonly string[]): boolean {
    if (!isPlainObject(value)) {
      this.add(path || '(config)', `expected an object, got ${describe(value)}`);
      return false;
    }
    for (const key of Object.keys(value)) {
      if (!known.includes(key)) this.add(path ? `${path}.${key}` : key, unknownKey(key, known));
    }
    return true;
  }

  string(path: string, value: unknown, options: { nonEmpty?: boolean; secret?: boolean } = {}): boolean {
    if (typeof value !== 'string') {
      this.add(path, `expected a string, got ${describe(value, options.secret)}`);
      return false;
    }
    if ((options.nonEmpty || options.secret) && value === '') {
      this.add(path, 'must not be empty');
      return false;
    }
    return true;
  }

  bool(path: string, value: unknown): boolean {
    if (typeof value === 'boolean') return true;
    this.add(path, `expected a boolean, got ${describe(value)}`);
    return false;
  }

  int(path: string, value: unknown, min: number, max?: number): boolean {
    if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
      this.add(path, `expected an integer, got ${describe(value)}`);
      return false;
    }
    return this.range(path, value, min, max);
  }

  number(path: string, value: unknown, min: number, max?: number): boolean {
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      this.add(path, `expected a number, got ${describe(value)}`);
      return false;
    }
    return this.range(path, value, min, max);
  }

  positive(path: string, value: unknown): boolean {
    if (!this.number(path, value, -Infinity)) return false;
    if ((value as number) > 0) return true;
    this.add(path, `must be greater than 0, got ${value}`);
    return false;
  }

  private range(path: string, value: number, min: number, max?: number): boolean {
    if (max !== undefined && (value < min || value > max)) {
      this.add(path, `must be between ${min} and ${max}, got ${value}`);
      return false;
    }
    if (value < min) {
      this.add(path, `must be at least ${min}, got ${value}`);
      return false;
    }
    return true;
  }

  oneOf(path: string, value: unknown, values: readonly string[]): boolean {
    if (typeof value === 'string' && values.includes(value)) return true;
    this.add(path, `expected one of ${values.map((v) => JSON.stringify(v)).join(', ')}, got ${describe(value)}`);
    return false;
  }

  array(path: string, value: unknown): boolean {
    if (Array.isArray(value)) return true;
    this.add(path, `expected an array, got ${describe(value)}`);
    return false;
  }

  /** `file` can be created or replaced by rename: its directory exists and is writable, and it is not a directory. */
  writableFile(path: string, file: string): void {
    const dir = dirname(resolvePath(file));
    try {
      accessSync(dir, fsConstants.W_OK | fsConstants.X_OK);
    } catch (err) {
      this.add(path, `cannot write in directory ${JSON.stringify(dir)} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      return;
    }
    try {
      if (statSync(file).isDirectory()) this.add(path, `${JSON.stringify(file)} is a directory`);
    } catch {
      // Not there yet: created at the first save.
    }
  }

  readable(path: string, file: string): void {
    try {
      readFileSync(file);
    } catch (err) {
      this.add(path, `cannot read file ${JSON.stringify(file)} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
}

// ---- namespaces ------------------------------------------------------------------------

interface NamespaceNode {
  children: Map<string, NamespaceNode>;
  ns: NamespaceConfig | undefined;
}

const indexes = new WeakMap<readonly NamespaceConfig[], NamespaceNode>();

/** A trie of the namespaces by prefix segment; built once per namespaces array (treat it as immutable). */
function namespaceIndex(namespaces: readonly NamespaceConfig[]): NamespaceNode {
  let root = indexes.get(namespaces);
  if (root) return root;
  root = { children: new Map(), ns: undefined };
  for (const ns of namespaces) {
    let node = root;
    const prefix = ns.prefix.endsWith('/') ? ns.prefix.slice(0, -1) : ns.prefix;
    if (prefix !== '') {
      for (const segment of prefix.split('/')) {
        let child = node.children.get(segment);
        if (!child) node.children.set(segment, (child = { children: new Map(), ns: undefined }));
        node = child;
      }
    }
    node.ns ??= ns;
  }
  root.ns ??= DEFAULT_NAMESPACE as NamespaceConfig;
  indexes.set(namespaces, root);
  return root;
}

/**
 * Every namespace that a channel matched by `pattern` can belong to (for a
 * plain channel, exactly its namespace). Exact: `chat/+` with namespaces
 * `chat` and `chat/vip` reaches both; `chat/public/#` with `chat` and
 * `chat/public` reaches only `chat/public`.
 */
export function namespacesReachedBy(config: Pick<RealtimeConfig, 'namespaces'>, pattern: string): NamespaceConfig[] {
  const root = namespaceIndex(config.namespaces);
  const out = new Set<NamespaceConfig>();
  const segments = pattern.split('/');
  const addSubtree = (node: NamespaceNode) => {
    for (const child of node.children.values()) {
      if (child.ns) out.add(child.ns);
      addSubtree(child);
    }
  };
  // Walk the trie along the pattern; `best` is the deepest namespace on the path so far.
  const walk = (node: NamespaceNode, i: number, best: NamespaceConfig): void => {
    if (i === segments.length) {
      out.add(best);
      return;
    }
    const segment = segments[i]!;
    if (segment === '#') {
      out.add(best); // no more segments, or ones that leave the trie
      addSubtree(node); // or exactly the path of any namespace below
      return;
    }
    if (segment === '+') {
      out.add(best); // a segment no namespace names
      for (const child of node.children.values()) walk(child, i + 1, child.ns ?? best);
      return;
    }
    const child = node.children.get(segment);
    if (!child) out.add(best);
    else walk(child, i + 1, child.ns ?? best);
  };
  walk(root, 0, root.ns!);
  return [...out];
}

const PRESENCE_ORDER = ['off', 'counts', 'full'] as const;

/**
 * The namespace of a channel: the one whose prefix is the longest
 * whole-segment prefix of the name (`''` when none is).
 *
 * For a pattern (a subscription with `+`/`#`), the rules every channel it
 * can match satisfies: if it reaches one namespace, that one; else a
 * combination of all it reaches ({@link namespacesReachedBy}) in which each
 * permission holds only if it holds in all of them (`clientPublish`,
 * `anonymous*` AND-ed, the least presence, the longest batch), with the
 * longest common prefix. Without this, an anonymous `#` in a namespace that
 * allows anonymous readers would also receive channels of one that does not.
 */
export function resolveNamespace(config: Pick<RealtimeConfig, 'namespaces'>, channel: string): NamespaceConfig {
  const root = namespaceIndex(config.namespaces);
  if (!channel.includes('+') && !channel.includes('#')) {
    let node = root;
    let best = root.ns!;
    for (const segment of channel.split('/')) {
      const child = node.children.get(segment);
      if (!child) break;
      node = child;
      if (child.ns) best = child.ns;
    }
    return best;
  }
  const reached = namespacesReachedBy(config, channel);
  if (reached.length === 1) return reached[0]!;
  return combineNamespaces(reached);
}

function combineNamespaces(list: NamespaceConfig[]): NamespaceConfig {
  let prefix = list[0]!.prefix.split('/');
  for (const ns of list) {
    const segments = ns.prefix.split('/');
    let n = 0;
    while (n < prefix.length && n < segments.length && prefix[n] === segments[n]) n++;
    prefix = prefix.slice(0, n);
  }
  const smallest = list.reduce((a, b) => (b.history.size < a.history.size ? b : a));
  return {
    prefix: prefix.join('/'),
    history: { ...smallest.history },
    presence: PRESENCE_ORDER[Math.min(...list.map((ns) => PRESENCE_ORDER.indexOf(ns.presence)))]!,
    presenceBatchMs: Math.max(...list.map((ns) => ns.presenceBatchMs)),
    clientPublish: list.every((ns) => ns.clientPublish),
    anonymousSubscribe: list.every((ns) => ns.anonymousSubscribe),
    anonymousPublish: list.every((ns) => ns.anonymousPublish),
  };
}
