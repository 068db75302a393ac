/**
 * Loading the configuration from its layers, lowest first: defaults < config
 * file (JSON or YAML) < environment variables ({@link ENV_VARS}) < overrides
 * (CLI flags, code). Objects merge key by key; arrays and scalars replace;
 * `null` at any layer resets a key to its default (or unsets an optional
 * one). `broker` is replaced as a whole when a layer names a different `type`.
 */
import { readFileSync } from 'node:fs';
import { dirname, extname, isAbsolute, resolve as resolvePath } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { DeepPartial, RealtimeConfig } from './defaults.js';
import { ConfigError, describe, isPlainObject, put, validateConfig, type ConfigIssue } from './validate.js';

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
 * `\n` sequences become newlines) or a file path. `SWITCHBOARD_REDIS_URL` (or
 * `SWITCHBOARD_REDIS_CLUSTER`, `SWITCHBOARD_REDIS_SENTINELS`) / `SWITCHBOARD_NATS_SERVERS`
 * also select that broker unless `SWITCHBOARD_BROKER` says otherwise.
 * `SWITCHBOARD_CONFIG` names the config file when none is passed.
 */
export const ENV_VARS: readonly EnvVar[] = [
  { name: 'SWITCHBOARD_HOST', key: 'host', kind: 'string' },
  { name: 'SWITCHBOARD_PORT', key: 'port', kind: 'int' },
  { name: 'SWITCHBOARD_PATH', key: 'path', kind: 'string' },
  { name: 'SWITCHBOARD_TLS_CERT', key: 'tls.cert', kind: 'string' },
  { name: 'SWITCHBOARD_TLS_KEY', key: 'tls.key', kind: 'string' },
  { name: 'SWITCHBOARD_TLS_CA', key: 'tls.ca', kind: 'string' },
  { name: 'SWITCHBOARD_TLS_PASSPHRASE', key: 'tls.passphrase', kind: 'string' },
  { name: 'SWITCHBOARD_TLS_MIN_VERSION', key: 'tls.minVersion', kind: 'string' },
  { name: 'SWITCHBOARD_TLS_CLIENT_CERTIFICATES', key: 'tls.clientCertificates', kind: 'string' },
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
  { name: 'SWITCHBOARD_REDIS_CLUSTER', key: 'broker.cluster', kind: 'list' },
  { name: 'SWITCHBOARD_REDIS_SENTINELS', key: 'broker.sentinels', kind: 'list' },
  { name: 'SWITCHBOARD_REDIS_SENTINEL_NAME', key: 'broker.name', kind: 'string' },
  { name: 'SWITCHBOARD_NATS_SERVERS', key: 'broker.servers', kind: 'list' },
  { name: 'SWITCHBOARD_SNAPSHOT_FILE', key: 'broker.snapshotFile', kind: 'string' },
  { name: 'SWITCHBOARD_LOG_LEVEL', key: 'log.level', kind: 'string' },
  { name: 'SWITCHBOARD_METRICS', key: 'metrics.enabled', kind: 'bool' },
  { name: 'SWITCHBOARD_FALLBACKS', key: 'fallbacks.enabled', kind: 'bool' },
  { name: 'SWITCHBOARD_ADMIN', key: 'admin.enabled', kind: 'bool' },
  { name: 'SWITCHBOARD_ADMIN_PASSWORD', key: 'admin.password', kind: 'string' },
  { name: 'SWITCHBOARD_ADMIN_PATH', key: 'admin.path', kind: 'string' },
  { name: 'SWITCHBOARD_WORKERS', key: 'workers', kind: 'int' },
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
    if (broker['url'] !== undefined || broker['cluster'] !== undefined || broker['sentinels'] !== undefined) broker['type'] = 'redis';
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
    // YAML's message has a code frame (`at line 3, column 5:`, the lines, a caret): kept, with secrets
    // masked, indented under the issue's line (ConfigError prints `  path: message`).
    const message = ext === '.json' ? (err as Error).message.split('\n')[0] : indentFrame(maskSecrets((err as Error).message.trimEnd()));
    issues.push({ path: file, message: `invalid ${ext === '.json' ? 'JSON' : 'YAML'}: ${message}` });
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
  rebase(data['tls'], 'ca');
  rebase(data['auth'], 'publicKey', true);
  rebase(data['auth'], 'jwksFile');
  rebase(data['broker'], 'snapshotFile');
  return data;
}
/**
 * A YAML error's code frame quotes lines of the file: the value of a secret
 * key on a quoted line (`hmacSecret`, `apiKey`, `password`, a PEM `publicKey`) becomes
 * `*`s of the same length, so the caret still points where it did.
 */
function maskSecrets(message: string): string {
  return message.replace(/^(\s*-?\s*["']?(?:hmacSecret|apiKey|publicKey|password|passphrase)["']?\s*:[ \t]*)(.+)$/gm, (_, key: string, value: string) => key + '*'.repeat(value.length));
}

function indentFrame(message: string): string {
  return message.split('\n').map((line, i) => (i === 0 || line === '' ? line : `    ${line}`)).join('\n');
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
