/** The realtime server as a library: `import { createRealtimeServer } from 'switchboard/server'`. */
export { createRealtimeServer, RealtimeServer, type RealtimeServerOptions } from './realtime-server.js';
export { loadConfig, validateConfig, defaultConfig, resolveNamespace, ConfigError, type RealtimeConfig, type NamespaceConfig, type LimitsConfig, type TlsConfig } from './config/index.js';
export type { ClientCertificate } from '../realtime/auth.js';
export type { ReloadResult } from './tls.js';
export { Metrics } from './metrics.js';
export { MemoryBroker, MemoryPresenceStore } from '../brokers/memory/memory-broker.js';
export type { Broker, PresenceStore, PresenceExpiryHandler, BrokerHandler, PublishOptions, PublishResult, HistoryFilter, HistoryResult } from '../brokers/broker.js';
export type { RpcHandler, Identity as HubIdentity } from '../realtime/hub.js';
export { NodeOpError, type ClusterDisconnectResult, type CloseConnectionResult, type DisconnectOptions } from '../realtime/cluster-ops.js';
export * from '../wire/messages.js';
