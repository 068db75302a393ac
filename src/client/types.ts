/**
 * What the client hands to the application: its states, its events and the
 * results of its calls.
 */
import type { ClientInfo, Publication, StreamPosition } from '../wire/messages.js';
import type { ClientError } from './errors.js';
import type { SubscribedEvent } from './subscription.js';
import type { HttpProtocol, TransportName } from './transports/transport.js';
import type { HttpProtocolSource } from './warmup.js';

export type ClientState = 'disconnected' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** What carries the connection. */
export interface TransportInfo {
  transport: TransportName;
  /** The HTTP version under it: `'h2'` (a WebSocket on an HTTP/2 stream, RFC 8441), `'http/1.1'`, or null when unknown. */
  httpProtocol: HttpProtocol | null;
  /** Who said so (null when unknown); see {@link HttpProtocolSource}. */
  httpProtocolSource: HttpProtocolSource | null;
}

export interface ConnectedEvent extends TransportInfo {
  /** Connection id the server assigned (null for anonymous connections, which send no `auth`). */
  client: string | null;
  /** User id from the token (null for anonymous connections). */
  user: string | null;
  /** The server URL in use. */
  url: string;
}

export interface DisconnectedEvent {
  /** Close code (1006 for a connection lost without a close, including dead-link detection). */
  code: number;
  reason: string;
  /** What the code means (the SDK's close-code table). */
  meaning: string;
  willReconnect: boolean;
}

export interface ReconnectingEvent {
  /** Delay before the attempt, in ms. */
  inMs: number;
  /** Attempt number since the last stable connection (1, 2, …). */
  attempt: number;
  /** The URL and transport of the attempt. */
  url: string;
  transport: TransportName;
  /** Close code and reason of the failure before it. */
  code: number;
  reason: string;
}

export interface ClientEvents {
  state: ClientState;
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  reconnecting: ReconnectingEvent;
  /** Any subscription was confirmed (see `Subscription` for per-channel events). */
  subscribed: SubscribedEvent;
  /** Any resubscription with `since` was answered. */
  recovered: SubscribedEvent;
  /** The client moved to another transport. */
  transport: { from: TransportName; to: TransportName; reason: string };
  error: ClientError;
}

/** The server's ack of a publication. */
export interface PublishResult {
  offset: number;
  epoch: string;
  /** The server had this idempotency key already (a retry of a publication it stored). */
  duplicate: boolean;
}

export interface PublishOptions {
  /** May be dropped for slow subscribers; not kept in history. Default false. */
  volatile?: boolean;
}

export interface HistoryOptions {
  /** Publications after this position. */
  since?: StreamPosition;
  /** At most this many (the server caps it at 1000). */
  limit?: number;
}

export interface HistoryResult {
  channel: string;
  publications: Publication[];
  position: StreamPosition;
  /** With `since`: whether the history reaches back to it. */
  recovered?: boolean;
}

export interface PresenceResult {
  channel: string;
  /** Full presence: connection id → who. */
  clients?: Record<string, ClientInfo> | number;
  /** Counts presence: distinct users. */
  users?: number;
}
