/**
 * Validation of a merged configuration: {@link validateConfig} fills in the
 * defaults and collects every problem into one {@link ConfigError} whose
 * lines read `path: message`, e.g.
 * `limits.maxConection: unknown key (did you mean maxConnections?)`.
 */
import { accessSync, constants as fsConstants, readFileSync, statSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { loadJwks, loadPublicKey, MIN_HMAC_SECRET_BYTES } from '../../realtime/auth.js';
import { isValidChannel } from '../../wire/channel.js';
import { MAX_DATA_DEPTH_LIMIT } from '../../wire/data.js';
import { isLoopback, parseProxyEntry } from '../client-address.js';
import { readTlsMaterial, TlsMaterialError } from '../tls.js';
import { originEntryError } from '../../transport/origin.js';
import {
  cloneNamespace,
  CONFIG_DEFAULTS,
  DEFAULT_NAMESPACE,
  defaultConfig,
  KEYS_WITHOUT_DEFAULTS,
  keysOf,
  type BrokerConfig,
  type RealtimeConfig,
} from './defaults.js';

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

// ---- objects -------------------------------------------------------------------

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Define a key without invoking setters (a JSON key `__proto__` stays a plain key). */
export function put(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Fill in defaults: `null`/`undefined` take the default; keys the defaults lack stay (for the unknown-key check). */
function withDefaults(def: unknown, value: unknown, path = ''): unknown {
  if (value === undefined || value === null) return def === undefined ? undefined : structuredClone(def);
  if (!isPlainObject(def) || !isPlainObject(value)) return value;
  // As in mergeLayer (load.ts): the defaults of one broker type are not another's (a redis broker has no snapshot interval).
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
  // `http2: false` / `true` is short for `{ enabled: ... }`.
  const h2 = (input as Record<string, unknown> | undefined)?.['http2'];
  if (typeof h2 === 'boolean') input = { ...(input as Record<string, unknown>), http2: { enabled: h2 } };
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

// The known keys of each object, read off the defaults (where optional keys stand as `undefined`).
const TOP_KEYS = keysOf(CONFIG_DEFAULTS);
const COMPRESSION_KEYS = keysOf(CONFIG_DEFAULTS.compression);
const AUTH_KEYS = keysOf(CONFIG_DEFAULTS.auth);
const NAMESPACE_KEYS = keysOf(DEFAULT_NAMESPACE);
const HISTORY_KEYS = keysOf(DEFAULT_NAMESPACE.history);
const LIMIT_KEYS = keysOf(CONFIG_DEFAULTS.limits);
const RATE_KEYS = keysOf(CONFIG_DEFAULTS.limits.connectionRatePerIp);
const HEARTBEAT_KEYS = keysOf(CONFIG_DEFAULTS.heartbeat);
const SHUTDOWN_KEYS = keysOf(CONFIG_DEFAULTS.shutdown);
const LOG_KEYS = keysOf(CONFIG_DEFAULTS.log);
const METRICS_KEYS = keysOf(CONFIG_DEFAULTS.metrics);
const FALLBACK_KEYS = keysOf(CONFIG_DEFAULTS.fallbacks);
const ADMIN_KEYS = keysOf(CONFIG_DEFAULTS.admin);
const TLS_KEYS = KEYS_WITHOUT_DEFAULTS.tls;
const HTTP2_KEYS = keysOf(CONFIG_DEFAULTS.http2);
const BROKER_KEYS: Readonly<Record<BrokerConfig['type'], readonly string[]>> = {
  memory: keysOf(CONFIG_DEFAULTS.broker),
  redis: KEYS_WITHOUT_DEFAULTS.redis,
  nats: KEYS_WITHOUT_DEFAULTS.nats,
};
/** Keys that belong to some broker type, if not to the one configured. */
const ANY_BROKER_KEYS: ReadonlySet<string> = new Set(Object.values(BROKER_KEYS).flat().filter((k) => k !== 'type'));
/** Upper bound of `fallbacks.pollTimeoutMs`: proxies commonly cut idle requests after 60-120 s. */
const MAX_POLL_TIMEOUT_MS = 120_000;
const TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
const CLIENT_CERTIFICATE_MODES = ['off', 'request', 'require'] as const;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** RFC 6265 §4.1.1 cookie-name: an RFC 7230 token. */
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Minimum length of `apiKey`, in characters. */
export const MIN_API_KEY_LENGTH = 16;
/** Minimum length of `admin.password`, in characters. */
export const MIN_ADMIN_PASSWORD_LENGTH = 12;
/** Paths the server serves itself, which `admin.path` must not take. */
const RESERVED_PATHS = ['/api', '/dev', '/metrics', '/healthz', '/readyz'];

/**
 * `tls`: the files exist and make a usable pair (readTlsMaterial: parseable,
 * the key belongs to the certificate), the version and client-certificate
 * policy are known values; fills in `minVersion` and `clientCertificates`.
 */
function checkTls(c: Checker, tls: Record<string, unknown>): void {
  tls['minVersion'] ??= 'TLSv1.2';
  tls['clientCertificates'] ??= 'off';
  let files = true;
  for (const k of ['cert', 'key'] as const) {
    if (tls[k] === undefined) {
      c.add(`tls.${k}`, k === 'cert' ? 'required (the certificate chain, PEM)' : 'required (the private key, PEM)');
      files = false;
    } else files = c.string(`tls.${k}`, tls[k], { nonEmpty: true }) && files;
  }
  if (tls['ca'] !== undefined) files = c.string('tls.ca', tls['ca'], { nonEmpty: true }) && files;
  if (tls['passphrase'] !== undefined) files = c.string('tls.passphrase', tls['passphrase'], { secret: true }) && files;
  c.oneOf('tls.minVersion', tls['minVersion'], TLS_VERSIONS);
  if (c.oneOf('tls.clientCertificates', tls['clientCertificates'], CLIENT_CERTIFICATE_MODES) && tls['clientCertificates'] === 'require' && tls['ca'] === undefined) {
    c.add('tls.clientCertificates', '"require" needs tls.ca: the CA bundle (PEM) that client certificates are verified against');
  }
  if (!files) return;
  try {
    readTlsMaterial(tls as { cert: string; key: string; ca?: string; passphrase?: string });
  } catch (err) {
    if (!(err instanceof TlsMaterialError)) throw err;
    c.add(`tls.${err.key}`, err.message);
  }
}

function checkConfig(c: Checker, v: Record<string, unknown>): void {
  c.keys('', v, TOP_KEYS);
  c.string('host', v['host'], { nonEmpty: true });
  c.int('port', v['port'], 0, 65535);
  if (v['tls'] !== undefined && c.keys('tls', v['tls'], TLS_KEYS)) {
    // A copy: the defaults filled in must not land in the caller's object.
    v['tls'] = { ...(v['tls'] as Record<string, unknown>) };
    checkTls(c, v['tls'] as Record<string, unknown>);
  }
  if (c.keys('http2', v['http2'], HTTP2_KEYS)) {
    const h = v['http2'] as Record<string, unknown>;
    c.bool('http2.enabled', h['enabled']);
    // RFC 9113 §6.5.2: windows up to 2^31-1; below 1 KiB every WebSocket frame would wait for WINDOW_UPDATEs.
    c.int('http2.maxConcurrentStreams', h['maxConcurrentStreams'], 1, 2 ** 31 - 1);
    c.int('http2.maxSessionMemory', h['maxSessionMemory'], 1, 4096);
    c.int('http2.initialWindowSize', h['initialWindowSize'], 1024, 2 ** 31 - 1);
    c.int('http2.pingIntervalMs', h['pingIntervalMs'], 0);
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
  if (c.keys('heartbeat', v['heartbeat'], HEARTBEAT_KEYS)) {
    const h = v['heartbeat'] as Record<string, unknown>;
    c.int('heartbeat.intervalMs', h['intervalMs'], 0);
    c.int('heartbeat.timeoutMs', h['timeoutMs'], 1);
  }
  if (c.int('idleTimeoutMs', v['idleTimeoutMs'], 0) && (v['idleTimeoutMs'] as number) > 0) {
    // Idle connections are found on heartbeat ticks: without them the timeout would never fire.
    const interval = (v['heartbeat'] as Record<string, unknown> | undefined)?.['intervalMs'];
    if (interval === 0) c.add('idleTimeoutMs', 'needs heartbeat.intervalMs > 0 (idle connections are checked at each heartbeat)');
  }
  if (c.keys('shutdown', v['shutdown'], SHUTDOWN_KEYS)) {
    const s = v['shutdown'] as Record<string, unknown>;
    c.int('shutdown.timeoutMs', s['timeoutMs'], 0);
    c.int('shutdown.reconnectJitterMs', s['reconnectJitterMs'], 0);
  }
  checkBroker(c, v['broker']);
  if (c.int('workers', v['workers'], 1, 256) && (v['workers'] as number) > 1) {
    const type = (v['broker'] as Record<string, unknown> | undefined)?.['type'] ?? 'memory';
    if (type === 'memory') {
      c.add('workers', `${v['workers'] as number} workers need a broker they share (broker.type "redis" or "nats"): with the memory broker each worker would be an island, its clients never seeing what is published on another`);
    }
  }
  if (c.keys('log', v['log'], LOG_KEYS)) c.oneOf('log.level', (v['log'] as Record<string, unknown>)['level'], LOG_LEVELS);
  if (c.keys('metrics', v['metrics'], METRICS_KEYS)) c.bool('metrics.enabled', (v['metrics'] as Record<string, unknown>)['enabled']);
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
  checkAdmin(c, v);
}

function checkAdmin(c: Checker, v: Record<string, unknown>): void {
  if (!c.keys('admin', v['admin'], ADMIN_KEYS)) return;
  const a = v['admin'] as Record<string, unknown>;
  c.bool('admin.enabled', a['enabled']);
  c.bool('admin.allowInsecure', a['allowInsecure']);
  if (a['password'] !== undefined && c.string('admin.password', a['password'], { secret: true })) {
    if ((a['password'] as string).length < MIN_ADMIN_PASSWORD_LENGTH) c.add('admin.password', `must be at least ${MIN_ADMIN_PASSWORD_LENGTH} characters`);
  }
  if (c.string('admin.path', a['path'])) {
    const p = a['path'] as string;
    const under = (base: string) => p === base || p.startsWith(`${base}/`);
    if (!p.startsWith('/') || p === '/') c.add('admin.path', `must start with "/" and name a path below it, got ${JSON.stringify(p)}`);
    else if (/[?#%\s]/.test(p) || p.endsWith('/') || p.includes('//')) c.add('admin.path', `must not contain "?", "#", "%", whitespace or empty segments, got ${JSON.stringify(p)}`);
    else if (typeof v['path'] === 'string' && (under(v['path']) || v['path'].startsWith(`${p}/`))) {
      c.add('admin.path', `must not overlap the realtime endpoint path (${v['path']})`);
    }
    else if (RESERVED_PATHS.some(under)) c.add('admin.path', `${p} is one of the server's own routes (${RESERVED_PATHS.join(', ')})`);
  }
  c.int('admin.sessionTtlMs', a['sessionTtlMs'], 1000);
  if (c.keys('admin.loginRatePerIp', a['loginRatePerIp'], RATE_KEYS)) {
    const r = a['loginRatePerIp'] as Record<string, unknown>;
    c.positive('admin.loginRatePerIp.perSecond', r['perSecond']);
    c.number('admin.loginRatePerIp.burst', r['burst'], 1);
  }
  if (a['enabled'] !== true) return;
  if (a['password'] === undefined && v['apiKey'] === undefined) {
    c.add('admin', `enabled without a password: set admin.password (SWITCHBOARD_ADMIN_PASSWORD, at least ${MIN_ADMIN_PASSWORD_LENGTH} characters) or apiKey (the HTTP API key also logs in)`);
  }
  const host = v['host'];
  if (typeof host === 'string' && !isLoopback(host) && v['tls'] === undefined && a['allowInsecure'] !== true) {
    c.add(
      'admin',
      `enabled on host ${host} without TLS: the password and the session cookie would cross the network in clear text. ` +
        'Configure tls (cert and key), listen on loopback, or, when a proxy in front of the server terminates TLS, set admin.allowInsecure: true',
    );
  }
}

/** One policy for origins (transport/origin.ts): its entry rules and messages, under the config path. */
function checkOrigin(c: Checker, path: string, o: unknown): void {
  if (!c.string(path, o)) return;
  const problem = originEntryError(o);
  if (problem !== null) c.add(path, problem);
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
    if (c.keys(`${at}.history`, n['history'], HISTORY_KEYS)) {
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
    if (!c.keys(at, limits[k], RATE_KEYS)) continue;
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
  if (!c.oneOf('broker.type', b['type'], keysOf(BROKER_KEYS))) return;
  const type = b['type'] as BrokerConfig['type'];
  const allowed = BROKER_KEYS[type];
  for (const key of Object.keys(b)) {
    if (!allowed.includes(key)) {
      const other = ANY_BROKER_KEYS.has(key);
      c.add(`broker.${key}`, other ? `unknown key for broker type "${type}"` : unknownKey(key, allowed));
    }
  }
  if (type === 'memory') {
    c.int('broker.snapshotIntervalMs', b['snapshotIntervalMs'], 0);
    if (b['snapshotFile'] !== undefined && c.string('broker.snapshotFile', b['snapshotFile'], { nonEmpty: true })) {
      c.writableFile('broker.snapshotFile', b['snapshotFile'] as string);
    }
  } else if (type === 'redis') {
    checkRedis(c, b);
  } else if (type === 'nats') {
    if (b['servers'] === undefined) c.add('broker.servers', 'required');
    else if (c.array('broker.servers', b['servers'])) {
      const servers = b['servers'] as unknown[];
      if (servers.length === 0) c.add('broker.servers', 'must not be empty');
      servers.forEach((s, i) => c.string(`broker.servers[${i}]`, s, { nonEmpty: true }));
    }
  }
  if (type !== 'memory') {
    if (b['probeIntervalMs'] !== undefined) c.int('broker.probeIntervalMs', b['probeIntervalMs'], 0);
    if (b['probeTimeoutMs'] !== undefined) c.int('broker.probeTimeoutMs', b['probeTimeoutMs'], 1);
  }
}

/** Where Redis is: exactly one of `url`, `cluster`, `sentinels` (+ `name`; `url` may give the master's credentials). */
function checkRedis(c: Checker, b: Record<string, unknown>): void {
  const { url, cluster, sentinels, name } = b;
  const redisUrl = (path: string, v: unknown): void => {
    if (c.string(path, v) && !/^rediss?:\/\/./.test(v as string)) c.add(path, 'expected a redis:// or rediss:// URL');
  };
  const list = (path: string, v: unknown, check: (path: string, item: unknown) => void): void => {
    if (!c.array(path, v)) return;
    const items = v as unknown[];
    if (items.length === 0) c.add(path, 'must not be empty');
    items.forEach((item, i) => check(`${path}[${i}]`, item));
  };
  if (cluster !== undefined) {
    if (url !== undefined) c.add('broker.url', 'not with broker.cluster (the cluster URLs say where Redis is)');
    if (sentinels !== undefined) c.add('broker.sentinels', 'not with broker.cluster: a Redis Cluster fails over by itself');
    list('broker.cluster', cluster, redisUrl);
  } else if (sentinels !== undefined) {
    list('broker.sentinels', sentinels, (path, v) => {
      if (c.string(path, v, { nonEmpty: true }) && !/^(rediss?:\/\/)?[^/\s]+:[0-9]+\/?$/.test(v as string)) {
        c.add(path, 'expected host:port or redis://[[user]:password@]host:port');
      }
    });
    if (name === undefined) c.add('broker.name', 'required with broker.sentinels (the master set the sentinels watch)');
    if (url !== undefined) redisUrl('broker.url', url);
  } else if (url === undefined) {
    c.add('broker.url', 'required (or broker.cluster, or broker.sentinels with broker.name)');
  } else {
    redisUrl('broker.url', url);
  }
  if (name !== undefined) {
    if (sentinels === undefined) c.add('broker.name', 'only with broker.sentinels');
    else c.string('broker.name', name, { nonEmpty: true });
  }
}

// ---- checker -----------------------------------------------------------------------------

export function describe(v: unknown, secret = false): string {
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
