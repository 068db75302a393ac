import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { exportJWK, exportSPKI, generateKeyPair } from 'jose';
import {
  ConfigError,
  DEFAULT_NAMESPACE,
  defaultConfig,
  ENV_VARS,
  loadConfig,
  namespacesReachedBy,
  resolveNamespace,
  validateConfig,
  type DeepPartial,
  type NamespaceConfig,
  type RealtimeConfig,
} from '../../../src/server/config/index.js';
import { makePki, type Pki } from '../../support/tls.js';

const SECRET = 'a-test-secret-that-is-at-least-32-bytes-long';
const anon: DeepPartial<RealtimeConfig> = { auth: { anonymous: true } };

let dir: string;
/** Real certificates (tls is checked: the files must parse and the key match). */
let pki: Pki;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'sb-config-'));
  pki = makePki();
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
  pki?.dispose();
});
/** What validation fills into `tls` when only the files are given. */
const TLS_DEFAULTS = { minVersion: 'TLSv1.2', clientCertificates: 'off' } as const;

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** The error lines of a config that must fail. */
function errorsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'SB_ERR_CONFIG');
    assert.equal(err.message, `invalid configuration:\n  ${err.lines.join('\n  ')}`);
    return [...err.lines];
  }
  assert.fail('expected a ConfigError');
}

const load = (overrides: DeepPartial<RealtimeConfig>) => loadConfig({ env: {}, overrides: { ...anon, ...overrides } });
const failing = (overrides: DeepPartial<RealtimeConfig>) => errorsOf(() => load(overrides));

/** The namespace defaults, as docs/configuration.md lists them (written out: not built with the code under test). */
const NAMESPACE_DEFAULTS: NamespaceConfig = {
  prefix: '',
  history: { size: 0, ttlMs: 0 },
  presence: 'off',
  presenceBatchMs: 0,
  clientPublish: true,
  anonymousSubscribe: false,
  anonymousPublish: false,
};

/** Every default, as docs/configuration.md lists them. */
const DEFAULTS: RealtimeConfig = {
  host: '127.0.0.1',
  port: 8080,
  http2: { enabled: true, maxConcurrentStreams: 100, maxSessionMemory: 10, initialWindowSize: 65535, pingIntervalMs: 30000 },
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
  auth: { anonymous: false, authTimeoutMs: 5000, refreshGraceMs: 10000, cookieName: 'sb_token', ticketTtlMs: 30000 },
  namespaces: [NAMESPACE_DEFAULTS],
  limits: {
    maxConnections: 10000,
    maxConnectionsPerIp: 100,
    connectionRatePerIp: { perSecond: 10, burst: 20 },
    messageRate: { perSecond: 50, burst: 100 },
    byteRate: { perSecond: 1048576, burst: 2097152 },
    maxMessageSize: 65536,
    maxDataDepth: 32,
    maxSubscriptions: 100,
    sendHighWaterMark: 1048576,
    slowConsumer: 'disconnect',
  },
  heartbeat: { intervalMs: 25000, timeoutMs: 10000 },
  idleTimeoutMs: 0,
  workers: 1,
  shutdown: { timeoutMs: 10000, reconnectJitterMs: 5000 },
  broker: { type: 'memory', snapshotIntervalMs: 5000 },
  log: { level: 'info' },
  metrics: { enabled: true },
  fallbacks: {
    enabled: true,
    graceMs: 30000,
    pollTimeoutMs: 25000,
    sseKeepAliveMs: 15000,
    sseRetryMs: 2000,
    bufferMessages: 1000,
    bufferBytes: 1048576,
  },
  admin: { enabled: false, path: '/admin', allowInsecure: false, sessionTtlMs: 28800000, loginRatePerIp: { perSecond: 0.1, burst: 5 } },
};

describe('defaults', () => {
  it('has the documented defaults', () => {
    assert.deepEqual(defaultConfig(), DEFAULTS);
    assert.deepEqual(DEFAULT_NAMESPACE, NAMESPACE_DEFAULTS);
    // Loaded with nothing configured (but anonymous): the same, no tls and no apiKey.
    const c = load({});
    assert.deepEqual(c, { ...DEFAULTS, auth: { ...DEFAULTS.auth, anonymous: true } });
    assert.equal(c.tls, undefined);
    assert.equal(c.apiKey, undefined);
  });

  it('needs a way to authenticate unless anonymous', () => {
    assert.deepEqual(errorsOf(() => loadConfig({ env: {} })), [
      'auth: set hmacSecret, publicKey or jwksFile, or allow anonymous connections (anonymous: true)',
    ]);
    assert.equal(loadConfig({ env: {}, overrides: { auth: { hmacSecret: SECRET } } }).auth.hmacSecret, SECRET);
  });

  it('defaultConfig returns a fresh copy', () => {
    const a = defaultConfig();
    a.limits.messageRate.burst = 1;
    a.namespaces[0]!.history.size = 5;
    assert.equal(defaultConfig().limits.messageRate.burst, 100);
    assert.equal(defaultConfig().namespaces[0]!.history.size, 0);
    assert.equal(DEFAULT_NAMESPACE.history.size, 0);
  });
});

describe('loading', () => {
  it('reads JSON', () => {
    const f = file('c.json', JSON.stringify({ port: 9000, auth: { hmacSecret: SECRET }, limits: { messageRate: { burst: 7 } } }));
    const c = loadConfig({ file: f, env: {} });
    assert.equal(c.port, 9000);
    assert.equal(c.auth.hmacSecret, SECRET);
    assert.deepEqual(c.limits.messageRate, { perSecond: 50, burst: 7 });
  });

  it('reads YAML (.yaml and .yml)', () => {
    const yaml = `
port: 9001
allowedOrigins:
  - https://app.example.com
auth:
  anonymous: true
namespaces:
  - prefix: chat/
    history: { size: 100, ttlMs: 60000 }
    presence: full
`;
    for (const name of ['c.yaml', 'c.yml']) {
      const c = loadConfig({ file: file(name, yaml), env: {} });
      assert.equal(c.port, 9001);
      assert.deepEqual(c.allowedOrigins, ['https://app.example.com']);
      const chat = c.namespaces.find((ns) => ns.prefix === 'chat')!;
      assert.deepEqual(chat, {
        prefix: 'chat',
        history: { size: 100, ttlMs: 60000 },
        presence: 'full',
        presenceBatchMs: 0,
        clientPublish: true,
        anonymousSubscribe: false,
        anonymousPublish: false,
      });
      assert.ok(c.namespaces.some((ns) => ns.prefix === ''));
    }
  });

  it('treats an empty YAML file as {}', () => {
    assert.equal(loadConfig({ file: file('empty.yaml', ''), env: {}, overrides: anon }).port, 8080);
  });

  it('takes the file from SWITCHBOARD_CONFIG', () => {
    const f = file('env.json', JSON.stringify({ port: 9002, auth: { anonymous: true } }));
    assert.equal(loadConfig({ env: { SWITCHBOARD_CONFIG: f } }).port, 9002);
  });

  it('resolves key file paths relative to the config file', async () => {
    const sub = join(dir, 'conf');
    mkdirSync(sub, { recursive: true });
    const { publicKey } = await generateKeyPair('ES256', { extractable: true });
    writeFileSync(join(sub, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k' }] }));
    writeFileSync(join(sub, 'key.pem'), await exportSPKI(publicKey));
    copyFileSync(pki.serverA.cert, join(sub, 'cert.pem'));
    copyFileSync(pki.serverA.key, join(sub, 'tls.key'));
    const f = join(sub, 'c.json');
    writeFileSync(f, JSON.stringify({ tls: { cert: 'cert.pem', key: './tls.key' }, auth: { jwksFile: 'jwks.json', publicKey: 'key.pem' } }));
    const c = loadConfig({ file: f, env: {} });
    assert.deepEqual(c.tls, { cert: join(sub, 'cert.pem'), key: join(sub, 'tls.key'), ...TLS_DEFAULTS });
    assert.equal(c.auth.jwksFile, join(sub, 'jwks.json'));
    assert.equal(c.auth.publicKey, join(sub, 'key.pem'));
  });

  it('reports file problems', () => {
    assert.deepEqual(errorsOf(() => loadConfig({ file: join(dir, 'c.toml'), env: {} })), [
      `${join(dir, 'c.toml')}: unsupported config file type (use .json, .yaml or .yml)`,
    ]);
    assert.deepEqual(errorsOf(() => loadConfig({ file: join(dir, 'missing.json'), env: {} })), [`${join(dir, 'missing.json')}: cannot read (ENOENT)`]);
    const badJson = file('bad.json', '{"port": 1,}');
    assert.match(errorsOf(() => loadConfig({ file: badJson, env: {} }))[0]!, /^.*bad\.json: invalid JSON: /);
    const badYaml = file('bad.yaml', 'port: [1\n');
    assert.match(errorsOf(() => loadConfig({ file: badYaml, env: {} }))[0]!, /^.*bad\.yaml: invalid YAML: /);
    const dup = file('dup.yaml', 'port: 1\nport: 2\n');
    assert.match(errorsOf(() => loadConfig({ file: dup, env: {} }))[0]!, /dup\.yaml: invalid YAML: .*[Uu]nique/);
    const list = file('list.yaml', '- 1\n- 2\n');
    assert.deepEqual(errorsOf(() => loadConfig({ file: list, env: {} })), [`${list}: expected an object at the top level, got an array`]);
  });

  it('does not let __proto__ pollute anything', () => {
    const f = file('proto.json', '{"__proto__": {"polluted": true}, "auth": {"anonymous": true}, "limits": {"__proto__": {"x": 1}}}');
    assert.deepEqual(errorsOf(() => loadConfig({ file: f, env: {} })), ['__proto__: unknown key', 'limits.__proto__: unknown key']);
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  });
});

describe('environment', () => {
  it('maps every documented variable', () => {
    const pem = '-----BEGIN PUBLIC KEY-----'; // checked below, only the mapping matters here
    void pem;
    const c = loadConfig({
      env: {
        SWITCHBOARD_HOST: '0.0.0.0',
        SWITCHBOARD_PORT: '9100',
        SWITCHBOARD_PATH: '/ws',
        SWITCHBOARD_ALLOWED_ORIGINS: 'https://a.example, https://b.example,,',
        SWITCHBOARD_ANONYMOUS: 'yes',
        SWITCHBOARD_JWT_SECRET: SECRET,
        SWITCHBOARD_JWT_ISSUER: 'iss',
        SWITCHBOARD_JWT_AUDIENCE: 'aud',
        SWITCHBOARD_AUTH_COOKIE: 'tok',
        SWITCHBOARD_API_KEY: 'an-api-key-of-16+chars',
        SWITCHBOARD_MAX_CONNECTIONS: '5',
        SWITCHBOARD_MAX_CONNECTIONS_PER_IP: '2',
        SWITCHBOARD_MAX_MESSAGE_SIZE: '1024',
        SWITCHBOARD_LOG_LEVEL: 'debug',
        SWITCHBOARD_METRICS: 'off',
        SWITCHBOARD_UNRELATED: 'x',
      },
    });
    assert.equal(c.host, '0.0.0.0');
    assert.equal(c.port, 9100);
    assert.equal(c.path, '/ws');
    assert.deepEqual(c.allowedOrigins, ['https://a.example', 'https://b.example']);
    assert.equal(c.auth.anonymous, true);
    assert.equal(c.auth.hmacSecret, SECRET);
    assert.equal(c.auth.issuer, 'iss');
    assert.equal(c.auth.audience, 'aud');
    assert.equal(c.auth.cookieName, 'tok');
    assert.equal(c.apiKey, 'an-api-key-of-16+chars');
    assert.equal(c.limits.maxConnections, 5);
    assert.equal(c.limits.maxConnectionsPerIp, 2);
    assert.equal(c.limits.maxMessageSize, 1024);
    assert.equal(c.log.level, 'debug');
    assert.equal(c.metrics.enabled, false);
  });

  it('maps the key and TLS file variables', async () => {
    const { publicKey } = await generateKeyPair('RS256', { extractable: true });
    const pem = await exportSPKI(publicKey);
    const jwks = file('env-jwks.json', JSON.stringify({ keys: [await exportJWK(publicKey)] }));
    const cert = file('env-cert.pem', readFileSync(pki.serverA.cert, 'utf8'));
    const key = file('env-key.pem', readFileSync(pki.serverA.key, 'utf8'));
    const c = loadConfig({ env: { SWITCHBOARD_JWT_PUBLIC_KEY: pem, SWITCHBOARD_JWKS_FILE: jwks, SWITCHBOARD_TLS_CERT: cert, SWITCHBOARD_TLS_KEY: key } });
    assert.equal(c.auth.publicKey, pem.trim());
    const oneLine = pem.trim().replace(/\n/g, '\\n');
    assert.ok(!oneLine.includes('\n'));
    assert.equal(loadConfig({ env: { SWITCHBOARD_JWT_PUBLIC_KEY: oneLine } }).auth.publicKey, pem.trim());
    assert.equal(c.auth.jwksFile, jwks);
    assert.deepEqual(c.tls, { cert, key, ...TLS_DEFAULTS });
    const ca = pki.ca.cert;
    const all = loadConfig({
      env: { SWITCHBOARD_TLS_CERT: cert, SWITCHBOARD_TLS_KEY: key, SWITCHBOARD_TLS_CA: ca, SWITCHBOARD_TLS_MIN_VERSION: 'TLSv1.3', SWITCHBOARD_TLS_CLIENT_CERTIFICATES: 'require', SWITCHBOARD_ANONYMOUS: 'true' },
    });
    assert.deepEqual(all.tls, { cert, key, ca, minVersion: 'TLSv1.3', clientCertificates: 'require' });
  });

  it('selects the broker', () => {
    const env = (e: NodeJS.ProcessEnv) => loadConfig({ env: { SWITCHBOARD_ANONYMOUS: 'true', ...e } }).broker;
    assert.deepEqual(env({ SWITCHBOARD_REDIS_URL: 'redis://127.0.0.1:6379' }), { type: 'redis', url: 'redis://127.0.0.1:6379' });
    assert.deepEqual(env({ SWITCHBOARD_NATS_SERVERS: 'nats://a:4222, nats://b:4222' }), { type: 'nats', servers: ['nats://a:4222', 'nats://b:4222'] });
    assert.deepEqual(env({ SWITCHBOARD_REDIS_CLUSTER: 'redis://a:7001, redis://b:7002' }), { type: 'redis', cluster: ['redis://a:7001', 'redis://b:7002'] });
    assert.deepEqual(env({ SWITCHBOARD_REDIS_SENTINELS: 'a:26379,b:26379', SWITCHBOARD_REDIS_SENTINEL_NAME: 'mymaster' }), {
      type: 'redis',
      sentinels: ['a:26379', 'b:26379'],
      name: 'mymaster',
    });
    assert.deepEqual(env({ SWITCHBOARD_BROKER: 'memory' }), { type: 'memory', snapshotIntervalMs: 5000 });
    const dir = dirname(file('env-snapshot.keep', ''));
    assert.deepEqual(env({ SWITCHBOARD_SNAPSHOT_FILE: `${dir}/h.sb` }), { type: 'memory', snapshotIntervalMs: 5000, snapshotFile: `${dir}/h.sb` });
    assert.deepEqual(errorsOf(() => env({ SWITCHBOARD_SNAPSHOT_FILE: `${dir}/h.sb`, SWITCHBOARD_REDIS_URL: 'redis://x' })), [
      'broker.snapshotFile: unknown key for broker type "redis"',
    ]);
    assert.deepEqual(errorsOf(() => env({ SWITCHBOARD_BROKER: 'redis' })), ['broker.url: required (or broker.cluster, or broker.sentinels with broker.name)']);
    assert.deepEqual(errorsOf(() => env({ SWITCHBOARD_BROKER: 'kafka' })), ['broker.type: expected one of "memory", "redis", "nats", got string "kafka"']);
  });

  it('ignores empty variables', () => {
    assert.equal(loadConfig({ env: { SWITCHBOARD_ANONYMOUS: 'true', SWITCHBOARD_PORT: '', SWITCHBOARD_HOST: '  ' } }).port, 8080);
  });

  it('reports bad values by variable name', () => {
    assert.deepEqual(errorsOf(() => loadConfig({ env: { SWITCHBOARD_PORT: '80a', SWITCHBOARD_ANONYMOUS: 'maybe', SWITCHBOARD_MAX_CONNECTIONS: '-1' } })), [
      'SWITCHBOARD_PORT: expected an integer, got "80a"',
      'SWITCHBOARD_ANONYMOUS: expected true or false, got "maybe"',
      'SWITCHBOARD_MAX_CONNECTIONS: expected an integer, got "-1"',
    ]);
    assert.deepEqual(errorsOf(() => loadConfig({ env: { SWITCHBOARD_ANONYMOUS: '1', SWITCHBOARD_PORT: '70000' } })), ['port: must be between 0 and 65535, got 70000']);
  });

  it('lists only SWITCHBOARD_ variables', () => {
    for (const v of ENV_VARS) assert.match(v.name, /^SWITCHBOARD_[A-Z_]+$/);
  });

  it('defaults to process.env', () => {
    const saved = process.env['SWITCHBOARD_PORT'];
    process.env['SWITCHBOARD_PORT'] = '9555';
    try {
      assert.equal(loadConfig({ overrides: anon }).port, 9555);
    } finally {
      if (saved === undefined) delete process.env['SWITCHBOARD_PORT'];
      else process.env['SWITCHBOARD_PORT'] = saved;
    }
  });
});

describe('precedence', () => {
  it('defaults < file < env < overrides', () => {
    const f = file('p.json', JSON.stringify({ host: 'file-host', port: 1001, path: '/file', auth: { anonymous: true }, log: { level: 'warn' } }));
    const env = { SWITCHBOARD_PORT: '1002', SWITCHBOARD_PATH: '/env' };
    const c = loadConfig({ file: f, env, overrides: { path: '/flag' } });
    assert.equal(c.host, 'file-host');
    assert.equal(c.port, 1002);
    assert.equal(c.path, '/flag');
    assert.equal(c.log.level, 'warn');
    assert.equal(c.metrics.enabled, true);
  });

  it('merges objects deeply, replaces arrays, skips undefined', () => {
    const f = file('m.json', JSON.stringify({ auth: { anonymous: true }, allowedOrigins: ['https://a.example'], limits: { messageRate: { perSecond: 5 } } }));
    const c = loadConfig({ file: f, env: {}, overrides: { allowedOrigins: ['https://b.example'], limits: { messageRate: { burst: 9 } }, port: undefined } });
    assert.deepEqual(c.allowedOrigins, ['https://b.example']);
    assert.deepEqual(c.limits.messageRate, { perSecond: 5, burst: 9 });
    assert.equal(c.port, 8080);
  });

  it('null resets to the default or unsets', () => {
    const f = file('n.json', JSON.stringify({ port: 1001, apiKey: 'an-api-key-of-16+chars', auth: { anonymous: true } }));
    const c = loadConfig({ file: f, env: {}, overrides: { port: null, apiKey: null } });
    assert.equal(c.port, 8080);
    assert.equal('apiKey' in c, false);
  });

  it('replaces the broker when the type changes', () => {
    const f = file('b.json', JSON.stringify({ auth: { anonymous: true }, broker: { type: 'redis', url: 'redis://x' } }));
    assert.deepEqual(loadConfig({ file: f, env: {}, overrides: { broker: { type: 'memory' } } }).broker, { type: 'memory', snapshotIntervalMs: 5000 });
    assert.deepEqual(loadConfig({ file: f, env: { SWITCHBOARD_REDIS_URL: 'redis://y' } }).broker, { type: 'redis', url: 'redis://y' });
  });
});

describe('validation messages', () => {
  it('unknown keys, with a suggestion when one is close', () => {
    assert.deepEqual(failing({ limits: { maxConection: 5 } } as DeepPartial<RealtimeConfig>), ['limits.maxConection: unknown key (did you mean maxConnections?)']);
    assert.deepEqual(failing({ prot: 1 } as DeepPartial<RealtimeConfig>), ['prot: unknown key (did you mean port?)']);
    assert.deepEqual(failing({ PORT: 1 } as DeepPartial<RealtimeConfig>), ['PORT: unknown key (did you mean port?)']);
    assert.deepEqual(failing({ colour: 'red' } as DeepPartial<RealtimeConfig>), ['colour: unknown key']);
    assert.deepEqual(failing({ auth: { anonymous: true, hmacSecet: SECRET } } as DeepPartial<RealtimeConfig>), ['auth.hmacSecet: unknown key (did you mean hmacSecret?)']);
    assert.deepEqual(failing({ namespaces: [{ prefix: 'a', presense: 'full' }] } as unknown as DeepPartial<RealtimeConfig>), ['namespaces[0].presense: unknown key (did you mean presence?)']);
    assert.deepEqual(failing({ heartbeat: { interval: 1 } } as DeepPartial<RealtimeConfig>), ['heartbeat.interval: unknown key (did you mean intervalMs?)']);
    assert.deepEqual(failing({ heartbeat: { period: 1 } } as DeepPartial<RealtimeConfig>), ['heartbeat.period: unknown key']);
    const { cert, key } = pki.serverA;
    assert.deepEqual(failing({ tls: { cert, key, caFile: cert } } as DeepPartial<RealtimeConfig>), ['tls.caFile: unknown key']);
  });

  it('wrong types', () => {
    assert.deepEqual(failing({ port: '80' as unknown as number }), ['port: expected an integer, got string "80"']);
    assert.deepEqual(failing({ port: 1.5 }), ['port: expected an integer, got number 1.5']);
    assert.deepEqual(failing({ host: 5 as unknown as string }), ['host: expected a string, got number 5']);
    assert.deepEqual(failing({ auth: { anonymous: 'yes' as unknown as boolean } }), [
      'auth.anonymous: expected a boolean, got string "yes"',
      'auth: set hmacSecret, publicKey or jwksFile, or allow anonymous connections (anonymous: true)',
    ]);
    assert.deepEqual(failing({ limits: 5 as unknown as RealtimeConfig['limits'] }), ['limits: expected an object, got number 5']);
    assert.deepEqual(failing({ allowedOrigins: 'https://a.example' as unknown as string[] }), ['allowedOrigins: expected an array, got string "https://a.example"']);
    assert.deepEqual(failing({ allowedOrigins: [5 as unknown as string] }), ['allowedOrigins[0]: expected a string, got number 5']);
    assert.deepEqual(failing({ namespaces: {} as unknown as NamespaceConfig[] }), ['namespaces: expected an array, got an object']);
    assert.deepEqual(failing({ namespaces: ['chat' as unknown as NamespaceConfig] }), ['namespaces[0]: expected an object, got string "chat"']);
    assert.deepEqual(failing({ metrics: { enabled: 1 as unknown as boolean } }), ['metrics.enabled: expected a boolean, got number 1']);
    assert.deepEqual(failing({ limits: { messageRate: { perSecond: 'fast' as unknown as number } } }), ['limits.messageRate.perSecond: expected a number, got string "fast"']);
    assert.deepEqual(failing({ idleTimeoutMs: Infinity }), ['idleTimeoutMs: expected an integer, got number Infinity']);
  });

  it('secrets are not echoed', () => {
    const lines = failing({ apiKey: 'short' });
    assert.deepEqual(lines, ['apiKey: must be at least 16 characters']);
    assert.deepEqual(failing({ auth: { hmacSecret: 'tooshort' } }), ['auth.hmacSecret: must be at least 32 bytes (RFC 7518 §3.2)']);
    assert.deepEqual(failing({ apiKey: '' }), ['apiKey: must not be empty']);
  });

  it('ranges', () => {
    assert.deepEqual(failing({ port: 70000 }), ['port: must be between 0 and 65535, got 70000']);
    assert.deepEqual(failing({ port: -1 }), ['port: must be between 0 and 65535, got -1']);
    assert.equal(load({ port: 0 }).port, 0);
    assert.deepEqual(failing({ limits: { maxConnections: 0 } }), ['limits.maxConnections: must be at least 1, got 0']);
    assert.deepEqual(failing({ limits: { messageRate: { perSecond: 0 } } }), ['limits.messageRate.perSecond: must be greater than 0, got 0']);
    assert.equal(load({ limits: { messageRate: { perSecond: 0.5 } } }).limits.messageRate.perSecond, 0.5);
    assert.deepEqual(failing({ limits: { connectionRatePerIp: { burst: 0.5 } } }), ['limits.connectionRatePerIp.burst: must be at least 1, got 0.5']);
    assert.deepEqual(failing({ heartbeat: { timeoutMs: 0 } }), ['heartbeat.timeoutMs: must be at least 1, got 0']);
    assert.equal(load({ heartbeat: { intervalMs: 0 } }).heartbeat.intervalMs, 0);
    assert.deepEqual(failing({ auth: { anonymous: true, authTimeoutMs: 0 } }), ['auth.authTimeoutMs: must be at least 1, got 0']);
    assert.deepEqual(failing({ shutdown: { reconnectJitterMs: -5 } }), ['shutdown.reconnectJitterMs: must be at least 0, got -5']);
    assert.deepEqual(failing({ limits: { maxMessageSize: 4 * 1024 * 1024 } }), ['limits.byteRate.burst: must be at least limits.maxMessageSize (4194304), got 2097152']);
  });

  it('enumerations', () => {
    assert.deepEqual(failing({ limits: { slowConsumer: 'drop' as 'disconnect' } }), ['limits.slowConsumer: expected one of "disconnect", "drop-volatile", got string "drop"']);
    assert.deepEqual(failing({ log: { level: 'verbose' as 'info' } }), ['log.level: expected one of "fatal", "error", "warn", "info", "debug", "trace", "silent", got string "verbose"']);
    assert.deepEqual(failing({ namespaces: [{ prefix: 'a', presence: true as unknown as 'off' }] }), ['namespaces[0].presence: expected one of "off", "full", "counts", got boolean true']);
  });

  it('path, origins, cookie name', () => {
    assert.deepEqual(failing({ path: 'rt' }), ['path: must start with "/", got "rt"']);
    assert.deepEqual(failing({ path: '/rt?x' }), ['path: must not contain "?", "#" or whitespace']);
    assert.deepEqual(failing({ allowedOrigins: ['https://a.example/', 'https://a.example/app', 'example.com', 'ftp://a.example', '*', 'https://b.example:8443'] }), [
      'allowedOrigins[0]: an origin has no path, query or credentials (did you mean "https://a.example"?)',
      'allowedOrigins[1]: an origin has no path, query or credentials (did you mean "https://a.example"?)',
      'allowedOrigins[2]: not an origin (expected scheme://host[:port], like "https://example.com"), got "example.com"',
      'allowedOrigins[3]: only http: and https: origins (or "*"), got "ftp://a.example"',
    ]);
    assert.deepEqual(failing({ auth: { anonymous: true, cookieName: 'my token' } }), ['auth.cookieName: not a valid cookie name: "my token"']);
  });

  it('auth keys', async () => {
    const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
    const pem = await exportSPKI(publicKey);
    assert.equal(load({ auth: { anonymous: false, publicKey: pem } }).auth.publicKey, pem);
    const { exportPKCS8 } = await import('jose');
    assert.deepEqual(failing({ auth: { anonymous: false, publicKey: await exportPKCS8(privateKey) } }), ['auth.publicKey: is a private key: configure the public key']);
    assert.deepEqual(failing({ auth: { anonymous: false, publicKey: join(dir, 'none.pem') } }), [`auth.publicKey: cannot read file ${JSON.stringify(join(dir, 'none.pem'))} (ENOENT)`]);
    assert.deepEqual(failing({ auth: { anonymous: false, publicKey: file('notkey.pem', 'hello') } }), ['auth.publicKey: expected a PEM public key (-----BEGIN PUBLIC KEY-----)']);
    assert.deepEqual(failing({ auth: { anonymous: false, jwksFile: join(dir, 'none.json') } }), [`auth.jwksFile: cannot read file ${JSON.stringify(join(dir, 'none.json'))} (ENOENT)`]);
    assert.deepEqual(failing({ auth: { anonymous: false, jwksFile: file('nokeys.json', '{}') } }), [`auth.jwksFile: ${JSON.stringify(join(dir, 'nokeys.json'))} has no "keys" array`]);
    assert.deepEqual(failing({ auth: { anonymous: true, issuer: '' } }), ['auth.issuer: must not be empty']);
  });

  it('tls', () => {
    const { cert, key } = pki.serverA;
    assert.deepEqual(failing({ tls: { cert } as { cert: string; key: string } }), ['tls.key: required (the private key, PEM)']);
    assert.deepEqual(failing({ tls: { cert, key: join(dir, 'nokey.pem') } }), [`tls.key: cannot read file ${JSON.stringify(join(dir, 'nokey.pem'))} (ENOENT)`]);
    assert.deepEqual(load({ tls: { cert, key } }).tls, { cert, key, ...TLS_DEFAULTS });
    // More messages (a key of another certificate, versions, client certificates): test/integration/realtime/tls.test.ts.
  });

  it('namespaces', () => {
    const c = load({ namespaces: [{ prefix: 'chat/', clientPublish: false }, { prefix: '', anonymousSubscribe: true }] });
    assert.deepEqual(
      c.namespaces.map((ns) => [ns.prefix, ns.clientPublish, ns.anonymousSubscribe]),
      [['chat', false, false], ['', true, true]],
    );
    assert.deepEqual(failing({ namespaces: [{ history: { size: 1 } }] }), ['namespaces[0].prefix: required']);
    assert.deepEqual(failing({ namespaces: [{ prefix: 'a' }, { prefix: 'b' }, { prefix: 'a/' }] }), ['namespaces[2].prefix: duplicate of namespaces[0]']);
    assert.deepEqual(failing({ namespaces: [{ prefix: 'chat/+' }] }), ['namespaces[0].prefix: must not contain wildcards, got "chat/+"']);
    assert.deepEqual(failing({ namespaces: [{ prefix: 'a//b' }] }), ['namespaces[0].prefix: not a channel name prefix (segments separated by "/"), got "a//b"']);
    assert.deepEqual(failing({ namespaces: [{ prefix: 'a', history: { size: -1, ttlMs: 1.5 } }] }), [
      'namespaces[0].history.size: must be at least 0, got -1',
      'namespaces[0].history.ttlMs: expected an integer, got number 1.5',
    ]);
  });

  it('broker', () => {
    assert.deepEqual(load({ broker: { type: 'nats', servers: ['nats://127.0.0.1:4222'] } }).broker, { type: 'nats', servers: ['nats://127.0.0.1:4222'] });
    assert.deepEqual(failing({ broker: { type: 'redis', url: 'http://x' } }), ['broker.url: expected a redis:// or rediss:// URL']);
    assert.deepEqual(failing({ broker: { type: 'nats', servers: [] } }), ['broker.servers: must not be empty']);
    // Redis: one of url, cluster, sentinels (+ name)
    const redis = (b: Record<string, unknown>) => ({ broker: { type: 'redis', ...b } }) as Parameters<typeof load>[0];
    assert.deepEqual(load(redis({ cluster: ['redis://127.0.0.1:7001'] })).broker, { type: 'redis', cluster: ['redis://127.0.0.1:7001'] });
    assert.deepEqual(load(redis({ sentinels: ['127.0.0.1:26379'], name: 'm', url: 'redis://:pw@x/2' })).broker, {
      type: 'redis',
      sentinels: ['127.0.0.1:26379'],
      name: 'm',
      url: 'redis://:pw@x/2',
    });
    assert.deepEqual(failing(redis({})), ['broker.url: required (or broker.cluster, or broker.sentinels with broker.name)']);
    assert.deepEqual(failing(redis({ cluster: [] })), ['broker.cluster: must not be empty']);
    assert.deepEqual(failing(redis({ cluster: ['127.0.0.1:7001'], url: 'redis://x' })), [
      'broker.url: not with broker.cluster (the cluster URLs say where Redis is)',
      'broker.cluster[0]: expected a redis:// or rediss:// URL',
    ]);
    assert.deepEqual(failing(redis({ sentinels: ['127.0.0.1'] })), [
      'broker.sentinels[0]: expected host:port or redis://[[user]:password@]host:port',
      'broker.name: required with broker.sentinels (the master set the sentinels watch)',
    ]);
    assert.deepEqual(failing(redis({ url: 'redis://x', name: 'm' })), ['broker.name: only with broker.sentinels']);
    assert.deepEqual(failing({ broker: { type: 'nats' } }), ['broker.servers: required']);
    assert.deepEqual(failing({ broker: { url: 'redis://x' } as { type: 'redis'; url: string } }), ['broker.url: unknown key for broker type "memory"']);
    assert.deepEqual(failing({ broker: { type: 'memory', tpye: 'x' } as { type: 'memory' } }), ['broker.tpye: unknown key (did you mean type?)']);
    assert.deepEqual(failing({ broker: { type: 'redis', url: 'redis://x', snapshotIntervalMs: 5 } as { type: 'redis'; url: string } }), ['broker.snapshotIntervalMs: unknown key for broker type "redis"']);
    assert.deepEqual(failing({ broker: { snapshotIntervalMs: -1 } }), ['broker.snapshotIntervalMs: must be at least 0, got -1']);
    assert.deepEqual(failing({ broker: { snapshotFile: '/nonexistent-dir/h.sb' } }), ['broker.snapshotFile: cannot write in directory "/nonexistent-dir" (ENOENT)']);
    assert.deepEqual(failing({ broker: { snapshotFile: tmpdir() } }), [`broker.snapshotFile: ${JSON.stringify(tmpdir())} is a directory`]);
    assert.equal(load({ broker: { snapshotFile: join(tmpdir(), 'h.sb'), snapshotIntervalMs: 0 } }).broker.type, 'memory');
  });

  it('trustedProxies and compression', () => {
    assert.deepEqual(load({ trustedProxies: ['10.0.0.0/8', '::1'] }).trustedProxies, ['10.0.0.0/8', '::1']);
    assert.deepEqual(failing({ trustedProxies: ['nginx', '10.0.0.0/33'] }), [
      'trustedProxies[0]: expected an IP address or a CIDR range (like "10.0.0.0/8"), got "nginx"',
      'trustedProxies[1]: expected an IP address or a CIDR range (like "10.0.0.0/8"), got "10.0.0.0/33"',
    ]);
    // Only `enabled` changes: every other value as documented.
    assert.deepEqual(load({ compression: { enabled: true } }).compression, { ...DEFAULTS.compression, enabled: true });
    assert.deepEqual(failing({ compression: { treshold: 1 } as object }), ['compression.treshold: unknown key (did you mean threshold?)']);
    assert.deepEqual(failing({ compression: { level: 10, serverMaxWindowBits: 7 } }), [
      'compression.level: must be between -1 and 9, got 10',
      'compression.serverMaxWindowBits: must be between 8 and 15, got 7',
    ]);
    const env = loadConfig({ env: { SWITCHBOARD_ANONYMOUS: 'true', SWITCHBOARD_COMPRESSION: 'on', SWITCHBOARD_TRUSTED_PROXIES: '127.0.0.1, 10.0.0.0/8' } });
    assert.equal(env.compression.enabled, true);
    assert.deepEqual(env.trustedProxies, ['127.0.0.1', '10.0.0.0/8']);
  });

  it('http2: knobs with safe defaults, `http2: false` as a shorthand, bounds', () => {
    assert.deepEqual(load({ http2: { maxConcurrentStreams: 50 } }).http2, { ...DEFAULTS.http2, maxConcurrentStreams: 50 });
    assert.deepEqual(load({ http2: false as unknown as { enabled: boolean } }).http2, { ...DEFAULTS.http2, enabled: false });
    assert.deepEqual(failing({ http2: { maxConcurrentStreams: 0, initialWindowSize: 10, pingIntervalMs: -1, maxSesionMemory: 1 } as object }), [
      'http2.maxSesionMemory: unknown key (did you mean maxSessionMemory?)',
      'http2.maxConcurrentStreams: must be between 1 and 2147483647, got 0',
      'http2.initialWindowSize: must be between 1024 and 2147483647, got 10',
      'http2.pingIntervalMs: must be at least 0, got -1',
    ]);
  });

  it('idleTimeoutMs needs the heartbeat (idle connections are found on its ticks)', () => {
    assert.deepEqual(failing({ idleTimeoutMs: 60000, heartbeat: { intervalMs: 0 } }), [
      'idleTimeoutMs: needs heartbeat.intervalMs > 0 (idle connections are checked at each heartbeat)',
    ]);
    assert.equal(load({ idleTimeoutMs: 60000 }).idleTimeoutMs, 60000);
    assert.equal(load({ idleTimeoutMs: 0, heartbeat: { intervalMs: 0 } }).heartbeat.intervalMs, 0);
  });

  it('a relative broker.snapshotFile in a config file is relative to that file', () => {
    const f = file('snapshot-config.json', JSON.stringify({ auth: { anonymous: true }, broker: { snapshotFile: 'history.sb' } }));
    const c = loadConfig({ file: f, env: {} });
    assert.deepEqual(c.broker, { type: 'memory', snapshotIntervalMs: 5000, snapshotFile: join(dirname(f), 'history.sb') });
  });

  it('collects every problem into one error', () => {
    const lines = errorsOf(() =>
      loadConfig({
        env: {},
        overrides: { port: 'x' as unknown as number, limits: { maxConection: 1, maxSubscriptions: 0 }, log: { level: 'loud' as 'info' } } as DeepPartial<RealtimeConfig>,
      }),
    );
    assert.deepEqual(lines, [
      'port: expected an integer, got string "x"',
      'auth: set hmacSecret, publicKey or jwksFile, or allow anonymous connections (anonymous: true)',
      'limits.maxConection: unknown key (did you mean maxConnections?)',
      'limits.maxSubscriptions: must be at least 1, got 0',
      'log.level: expected one of "fatal", "error", "warn", "info", "debug", "trace", "silent", got string "loud"',
    ]);
  });

  it('validateConfig fills defaults into a partial object', () => {
    assert.equal(validateConfig({ auth: { anonymous: true } }).port, 8080);
    assert.deepEqual(errorsOf(() => validateConfig('x')), ['(config): expected an object, got string "x"']);
  });
});

describe('namespaces: resolution', () => {
  const ns = (prefix: string, extra: Partial<NamespaceConfig> = {}): NamespaceConfig => ({ ...DEFAULT_NAMESPACE, history: { size: 0, ttlMs: 0 }, prefix, ...extra });
  const config = {
    namespaces: [
      ns(''),
      ns('chat', { anonymousSubscribe: true, presence: 'full' }),
      ns('chat/vip', { clientPublish: false, presence: 'counts', presenceBatchMs: 50 }),
      ns('chat/public/news', { anonymousSubscribe: true }),
      ns('game/state', { history: { size: 10, ttlMs: 0 } }),
    ],
  };
  const prefixOf = (channel: string) => resolveNamespace(config, channel).prefix;

  it('picks the longest whole-segment prefix', () => {
    assert.equal(prefixOf('chat'), 'chat');
    assert.equal(prefixOf('chat/a'), 'chat');
    assert.equal(prefixOf('chat/vip'), 'chat/vip');
    assert.equal(prefixOf('chat/vip/1'), 'chat/vip');
    assert.equal(prefixOf('chat/vipx'), 'chat');
    assert.equal(prefixOf('chatroom'), '');
    assert.equal(prefixOf('chat/public'), 'chat');
    assert.equal(prefixOf('chat/public/news/today'), 'chat/public/news');
    assert.equal(prefixOf('game'), '');
    assert.equal(prefixOf('game/state/1'), 'game/state');
    assert.equal(prefixOf('other'), '');
  });

  it('works without a default namespace in the list', () => {
    assert.equal(resolveNamespace({ namespaces: [ns('a')] }, 'b').prefix, '');
  });

  it('finds every namespace a pattern can reach', () => {
    const reached = (p: string) => namespacesReachedBy(config, p).map((n) => n.prefix).sort();
    assert.deepEqual(reached('chat/a'), ['chat']);
    assert.deepEqual(reached('chat/+'), ['chat', 'chat/vip']);
    assert.deepEqual(reached('chat/#'), ['chat', 'chat/public/news', 'chat/vip']);
    assert.deepEqual(reached('chat/vip/#'), ['chat/vip']);
    assert.deepEqual(reached('chat/public/news/#'), ['chat/public/news']);
    assert.deepEqual(reached('chat/+/news'), ['chat', 'chat/public/news', 'chat/vip']); // chat/vip/news is in chat/vip
    assert.deepEqual(reached('#'), ['', 'chat', 'chat/public/news', 'chat/vip', 'game/state']);
    assert.deepEqual(reached('+/state'), ['', 'chat', 'game/state']); // chat/state is in chat
    assert.deepEqual(reached('+'), ['', 'chat']);
  });

  it('combines the rules of the namespaces a pattern reaches, most restrictive', () => {
    assert.equal(resolveNamespace(config, 'chat/vip/+'), config.namespaces[2]);
    const chatAll = resolveNamespace(config, 'chat/#');
    assert.deepEqual(chatAll, {
      prefix: 'chat',
      history: { size: 0, ttlMs: 0 },
      presence: 'off', // chat/public/news has none
      presenceBatchMs: 50,
      clientPublish: false, // chat/vip
      anonymousSubscribe: false, // chat/vip
      anonymousPublish: false,
    });
    const open = resolveNamespace(config, 'chat/+/news/#');
    assert.deepEqual([open.prefix, open.anonymousSubscribe, open.clientPublish], ['chat', false, false]);
    assert.equal(resolveNamespace(config, 'chat/public/x/+'), config.namespaces[1]);
    assert.equal(resolveNamespace(config, 'chat/public/+').presence, 'off'); // chat/public/news is one of them
    const everything = resolveNamespace(config, '#');
    assert.equal(everything.prefix, '');
    assert.equal(everything.anonymousSubscribe, false);
    assert.equal(everything.presence, 'off');
  });
});

describe('admin', () => {
  const PASSWORD = 'a-long-admin-password';
  it('is off by default and needs nothing then', () => {
    assert.equal(load({}).admin.enabled, false);
    assert.equal(load({ host: '0.0.0.0' }).admin.enabled, false);
  });

  it('takes a password, or the API key, on loopback', () => {
    assert.equal(load({ admin: { enabled: true, password: PASSWORD } }).admin.password, PASSWORD);
    assert.equal(load({ admin: { enabled: true }, apiKey: 'an-api-key-of-16+chars' }).admin.enabled, true);
  });

  it('refuses to be enabled without a password or an API key', () => {
    assert.deepEqual(failing({ admin: { enabled: true } }), [
      'admin: enabled without a password: set admin.password (SWITCHBOARD_ADMIN_PASSWORD, at least 12 characters) or apiKey (the HTTP API key also logs in)',
    ]);
  });

  it('refuses a non-loopback host without TLS unless allowInsecure', () => {
    const lines = failing({ host: '0.0.0.0', admin: { enabled: true, password: PASSWORD } });
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /^admin: enabled on host 0\.0\.0\.0 without TLS: the password and the session cookie would cross the network in clear text\. Configure tls/);
    assert.match(lines[0]!, /admin\.allowInsecure: true/);
    assert.equal(load({ host: '0.0.0.0', admin: { enabled: true, password: PASSWORD, allowInsecure: true } }).admin.allowInsecure, true);
    assert.equal(load({ host: '::1', admin: { enabled: true, password: PASSWORD } }).admin.enabled, true);
    assert.equal(load({ host: 'localhost', admin: { enabled: true, password: PASSWORD } }).admin.enabled, true);
  });

  it('checks every key', () => {
    assert.deepEqual(
      failing({
        admin: { enabled: 'yes', password: 'short', path: 'admin', sessionTtlMs: 5, loginRatePerIp: { perSecond: 0, burst: 0 }, pasword: 'x' } as never,
      }),
      [
        'admin.pasword: unknown key (did you mean password?)',
        'admin.enabled: expected a boolean, got string "yes"',
        'admin.password: must be at least 12 characters',
        'admin.path: must start with "/" and name a path below it, got "admin"',
        'admin.sessionTtlMs: must be at least 1000, got 5',
        'admin.loginRatePerIp.perSecond: must be greater than 0, got 0',
        'admin.loginRatePerIp.burst: must be at least 1, got 0',
      ],
    );
    assert.deepEqual(failing({ admin: { path: '/' } }), ['admin.path: must start with "/" and name a path below it, got "/"']);
    assert.deepEqual(failing({ admin: { path: '/ops/' } }), ['admin.path: must not contain "?", "#", "%", whitespace or empty segments, got "/ops/"']);
    assert.deepEqual(failing({ admin: { path: '/rt/admin' } }), ['admin.path: must not overlap the realtime endpoint path (/rt)']);
    assert.deepEqual(failing({ path: '/ops/rt', admin: { path: '/ops' } }), ['admin.path: must not overlap the realtime endpoint path (/ops/rt)']);
    assert.deepEqual(failing({ admin: { path: '/api/admin' } }), ["admin.path: /api/admin is one of the server's own routes (/api, /dev, /metrics, /healthz, /readyz)"]);
    // A secret is never quoted back.
    assert.deepEqual(failing({ admin: { password: 42 } } as never), ['admin.password: expected a string, got number 42']);
    assert.ok(!failing({ admin: { password: 'short-pass' } }).join('\n').includes('short-pass'));
    assert.equal(load({ admin: { path: '/ops/console' } }).admin.path, '/ops/console');
  });

  it('reads SWITCHBOARD_ADMIN, SWITCHBOARD_ADMIN_PASSWORD and SWITCHBOARD_ADMIN_PATH', () => {
    const c = loadConfig({ env: { SWITCHBOARD_ADMIN: 'true', SWITCHBOARD_ADMIN_PASSWORD: PASSWORD, SWITCHBOARD_ADMIN_PATH: '/ops' }, overrides: anon });
    assert.deepEqual([c.admin.enabled, c.admin.password, c.admin.path], [true, PASSWORD, '/ops']);
  });

  it('masks the password in a YAML error frame', () => {
    const f = file('admin-bad.yaml', `admin:\n  password: "secret-admin-pass\n  enabled: true\n`);
    const lines = errorsOf(() => loadConfig({ file: f, env: {} }));
    assert.ok(!lines.join('\n').includes('secret-admin-pass'), lines.join('\n'));
  });
});
