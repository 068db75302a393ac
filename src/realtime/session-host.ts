/**
 * What a `Session` needs from the node it runs on, as one interface the hub
 * implements: the broker and presence store, auth and limits, the namespace
 * rules, rpc handlers, the observer, logger and clock, and the subscription
 * bookkeeping. A session sees nothing else of the hub, and this file imports
 * neither of them, so the two do not import each other.
 */
import type { Broker, PresenceStore } from '../brokers/broker.js';
import type { DataLimits } from '../wire/data.js';
import type { Disconnect } from '../wire/disconnect.js';
import type { Publication } from '../wire/messages.js';
import type { ClientCertificate } from './auth.js';
import type { HubObserver, Logger, SharedMessage } from './transport.js';

export interface NamespaceRules {
  /** History kept per channel (size 0: none). */
  history: { size: number; ttlMs: number };
  /** Presence tracking: 'full' (who), 'counts' (how many), 'off'. */
  presence: 'off' | 'full' | 'counts';
  /** Join/leave (or counts) are batched over this many ms per channel. */
  presenceBatchMs: number;
  /** Whether clients may publish (else only the server API). */
  clientPublish: boolean;
  /** Whether anonymous connections may subscribe. */
  anonymousSubscribe: boolean;
}

export interface Identity {
  user: string;
  info?: unknown;
  /** ms since the epoch; Infinity for none. */
  expiresAt: number;
  /** The TLS client certificate of the handshake that established this identity (see auth.ts). */
  clientCertificate?: ClientCertificate;
}

export type Action = 'subscribe' | 'publish' | 'presence' | 'history';

export interface HubAuth {
  /**
   * Verify a token. Rejects with an error whose `closeCode` says how a failed
   * `auth` closes (AuthError: 4500 invalid, 4002 expired); none means 4500.
   */
  verify(token: string): Promise<Identity>;
  can(identity: Identity | null, action: Action, channel: string, namespace: NamespaceRules): boolean;
  /** Connections may work without a token. */
  anonymous: boolean;
  /** Time to send `auth` after connecting, in ms. */
  authTimeoutMs: number;
  /** A `refresh` push goes out this long before the token expires, in ms. */
  refreshGraceMs: number;
}

export interface HubLimits {
  /** Max messages per second per connection (token bucket). */
  messageRate: { perSecond: number; burst: number };
  /** Max bytes per second per connection. */
  byteRate: { perSecond: number; burst: number };
  /** Max size of one incoming message in bytes. */
  maxMessageSize: number;
  /** Arrays and objects nested at most this deep in application data (see wire/data.ts). */
  maxDataDepth: number;
  maxSubscriptions: number;
  /** Send buffer size in bytes above which a connection is a slow consumer. */
  sendHighWaterMark: number;
  /** What to do with a slow consumer: disconnect it (4003), or drop volatile messages and disconnect on others. */
  slowConsumer: 'disconnect' | 'drop-volatile';
}

export type RpcHandler = (data: unknown, context: { client: string; user: string; identity: Identity | null }) => unknown;

/** What the hub's fan-out, presence and keep-alive loops need of a session. */
export interface Subscriber {
  readonly id: string;
  /**
   * A live publication; returns the bytes written (0: not written). The
   * caller counts the message and its bytes (HubObserver#messagesOut), once
   * per fan-out rather than once per subscriber.
   */
  deliver(sub: Subscription, pub: Publication, shared: SharedMessage, fanout: number): number;
  sendShared(shared: SharedMessage): void;
  close(disconnect: Disconnect): void;
  /** Drop the connection at once; never throws. */
  terminate(): void;
}

export interface Subscription {
  readonly session: Subscriber;
  readonly channel: string;
  /** Receives join/leave (or counts). */
  readonly presence: boolean;
  /** False while missed messages are being recovered: live ones are buffered meanwhile. */
  live: boolean;
  buffer: Publication[] | null;
  /** Offset of the last publication delivered (exact channels). */
  lastOffset: number;
  epoch: string;
  /** Presence entry added for this subscription. */
  inPresence: boolean;
}

export interface SessionHost {
  readonly broker: Broker;
  readonly presence: PresenceStore;
  readonly auth: HubAuth;
  readonly limits: HubLimits;
  namespaceOf(channel: string): NamespaceRules;
  readonly rpcHandlers: ReadonlyMap<string, RpcHandler>;
  /** The bounds of application data from a client or from the server (wire/data.ts). */
  dataLimits(from: 'client' | 'server'): DataLimits;
  readonly observer: HubObserver;
  readonly logger: Logger;
  readonly now: () => number;
  /** Track a subscription locally and at the broker. */
  addSubscription(sub: Subscription): Promise<void>;
  removeSubscription(sub: Subscription): Promise<void>;
  /** The session's transport closed: forget it. */
  removeSession(session: Subscriber): void;
}
