/**
 * Configuration of the realtime server (`switchboard serve`,
 * `createRealtimeServer()`): the {@link RealtimeConfig} type and its defaults
 * (defaults.ts), loading from a file, the environment and overrides
 * (load.ts), validation (validate.ts), and the namespace of a channel
 * (namespaces.ts).
 *
 * Precedence, lowest first: defaults < config file (JSON or YAML) <
 * environment variables ({@link ENV_VARS}) < overrides (CLI flags, code).
 * Validation collects every problem and throws one {@link ConfigError}.
 */
export {
  DEFAULT_NAMESPACE,
  defaultConfig,
  type AdminConfig,
  type AuthConfig,
  type BrokerConfig,
  type BrokerProbeConfig,
  type CompressionConfig,
  type DeepPartial,
  type FallbacksConfig,
  type Http2Config,
  type LimitsConfig,
  type LogLevel,
  type NamespaceConfig,
  type RateConfig,
  type RealtimeConfig,
  type TlsConfig,
} from './defaults.js';
export { ENV_VARS, loadConfig, mergeConfigLayers, type EnvVar, type LoadConfigOptions } from './load.js';
export { ConfigError, MIN_ADMIN_PASSWORD_LENGTH, MIN_API_KEY_LENGTH, MISSING_AUTH_KEY, validateConfig, type ConfigIssue } from './validate.js';
export { namespacesReachedBy, resolveNamespace } from './namespaces.js';
