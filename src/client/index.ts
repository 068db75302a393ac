/**
 * Switchboard's realtime client SDK (`switchboard/client`), browser-safe:
 * reconnect with backoff and jitter, failover across URLs, resume without
 * loss or duplicates, publish acks with idempotent retries, dead-link
 * detection, token refresh, and fallbacks to SSE and long-polling. Also runs
 * in Node 20 with a `WebSocket` passed in. See docs/client.md.
 *
 * ```js
 * import { Client } from 'switchboard/client';
 * const client = new Client('wss://rt.example.com/rt', { getToken: () => fetchToken() });
 * client.on('state', (s) => console.log(s));
 * const sub = client.subscribe('chat/lobby', { onMessage: (p) => render(p.data) });
 * await client.connect();
 * await client.publish('chat/lobby', { text: 'hi' });
 * ```
 */
export { Client } from './client.js';
export { browserNetworkMonitor, type NetworkMonitor } from './network.js';
export type { ClientOptions } from './options.js';
export type {
  ClientEvents,
  ClientState,
  ConnectedEvent,
  DisconnectedEvent,
  HistoryOptions,
  HistoryResult,
  PresenceResult,
  PublishOptions,
  PublishResult,
  ReconnectingEvent,
  TransportInfo,
} from './types.js';
export type { HttpProtocolSource } from './warmup.js';
export {
  Subscription,
  isNewPublication,
  MAX_GAPS_IN_A_ROW,
  type DeliveryResult,
  type PresenceCounts,
  type SubscribeOptions,
  type SubscribedEvent,
  type SubscriptionEvents,
  type SubscriptionState,
} from './subscription.js';
export { Backoff, DEFAULT_RECONNECT, type ReconnectOptions } from './backoff.js';
export { ClientError, type ClientErrorCode } from './errors.js';
export { closeMeaning, shouldReconnect } from './close-codes.js';
export { Emitter, type Listener } from './emitter.js';
export type {
  ClientTransport,
  EventSourceConstructor,
  EventSourceLike,
  FetchInit,
  FetchLike,
  HttpProtocol,
  ResponseLike,
  TransportName,
  WebSocketConstructor,
  WebSocketLike,
} from './transports/transport.js';
export type { ClientInfo, Publication, StreamPosition } from '../wire/messages.js';
