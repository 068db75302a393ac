/**
 * The realtime wire protocol, version 1 (docs/protocol.md). Browser-safe: no
 * `node:` imports, so the server and the client SDK share these definitions
 * and cannot drift apart.
 *
 * Every message is one object with an `op`. Requests from the client carry an
 * `id` and get exactly one `ok` or `error` with the same `id`.
 */

import { CloseCode } from '../protocol/close-code.js';

/** Subprotocol names, best first. The server picks the first one the client offers. */
export const SUBPROTOCOLS = ['switchboard.v1.json', 'switchboard.v1.msgpack'] as const;
export type Subprotocol = (typeof SUBPROTOCOLS)[number];
/** What a client that offers no subprotocol gets (a browser console, wscat). */
export const DEFAULT_SUBPROTOCOL: Subprotocol = 'switchboard.v1.json';
export const PROTOCOL_VERSION = 1;

/** A position in a channel's stream: offsets grow by one per message; the epoch changes when history is lost. */
export interface StreamPosition {
  offset: number;
  epoch: string;
}

/** Who is behind a connection, as others see it in presence and publications. */
export interface ClientInfo {
  /** Connection id (unique per connection, server-assigned). */
  client: string;
  /** User id from the token ('' for anonymous). */
  user: string;
  /** Optional application data from the token's `info` claim. */
  info?: unknown;
}

/** A message in a channel, as delivered and as stored in history. */
export interface Publication {
  channel: string;
  offset: number;
  epoch: string;
  data: unknown;
  /** Publisher, when published by a client. */
  from?: ClientInfo;
  /** Server time of publication, ms since the epoch. */
  time: number;
  /** May be dropped for slow subscribers; never kept in history. */
  volatile?: boolean;
}

export type RequestId = number | string;

// ---- client -> server ----------------------------------------------------

export interface AuthRequest { op: 'auth'; id: RequestId; token?: string }
export interface SubscribeRequest {
  op: 'sub';
  id: RequestId;
  /** A channel, or a pattern with `+` (one segment) and `#` (the rest, last segment only). */
  channel: string;
  /** Resume after this position: missed messages come first, then live ones. Not for patterns. */
  since?: StreamPosition;
  /** Receive join/leave (or counts) for this channel. */
  presence?: boolean;
}
export interface UnsubscribeRequest { op: 'unsub'; id: RequestId; channel: string }
export interface PublishRequest {
  op: 'pub';
  id: RequestId;
  channel: string;
  data: unknown;
  /** Idempotency key: a retry with the same key is answered with the first result, not published again. */
  key?: string;
  /** May be dropped for a subscriber that cannot keep up (cursor positions, typing indicators). Not kept in history. */
  volatile?: boolean;
}
export interface RpcRequest { op: 'rpc'; id: RequestId; method: string; data?: unknown }
/**
 * An rpc without a reply (a game's input, a typing indicator): the method's handler runs in its
 * turn and its result is dropped. No `id`; only a failure is answered, by an `error` without one.
 */
export interface SendMessage { op: 'send'; method: string; data?: unknown }
export interface PresenceRequest { op: 'presence'; id: RequestId; channel: string }
export interface HistoryRequest {
  op: 'history';
  id: RequestId;
  channel: string;
  /** Messages after this position. */
  since?: StreamPosition;
  /** At most this many (server caps it). */
  limit?: number;
}
export interface RefreshRequest { op: 'refresh'; id: RequestId; token: string }
/** App-level keep-alive: either side may send `ping`; the other answers `pong`. */
export interface PingMessage { op: 'ping' }
export interface PongMessage { op: 'pong' }

export type ClientMessage =
  | AuthRequest
  | SubscribeRequest
  | UnsubscribeRequest
  | PublishRequest
  | RpcRequest
  | SendMessage
  | PresenceRequest
  | HistoryRequest
  | RefreshRequest
  | PingMessage
  | PongMessage;

// ---- server -> client ----------------------------------------------------

export interface OkReply { op: 'ok'; id: RequestId; [field: string]: unknown }
export interface ErrorReply { op: 'error'; id?: RequestId; code: number; message: string }
export interface MessagePush extends Publication { op: 'msg' }
export interface JoinPush { op: 'join'; channel: string; clients: ClientInfo[] }
export interface LeavePush { op: 'leave'; channel: string; clients: ClientInfo[] }
export interface CountPush { op: 'count'; channel: string; clients: number; users: number }
export interface RefreshPush { op: 'refresh'; expiresIn: number }
export interface ClosingPush { op: 'closing'; reason: string; reconnectAfter: number }
/** The last message of a fallback (SSE, long-polling) session: what a WebSocket close frame says. */
export interface ClosePush { op: 'close'; code: number; reason: string }

export type ServerMessage =
  | OkReply
  | ErrorReply
  | MessagePush
  | JoinPush
  | LeavePush
  | CountPush
  | RefreshPush
  | ClosingPush
  | ClosePush
  | PingMessage
  | PongMessage;

/** Error codes in `error` replies. HTTP-like where the meaning matches. */
export const ErrorCode = {
  BadRequest: 400,
  Unauthorized: 401,
  Forbidden: 403,
  NotFound: 404,
  MessageTooBig: 413,
  TooManyRequests: 429,
  Internal: 500,
  Unavailable: 503,
  /** Subscribed already. */
  AlreadySubscribed: 409,
  /** Too many subscriptions on this connection. */
  SubscriptionLimit: 430,
  /** The server stopped waiting for the handler of an rpc. */
  Timeout: 504,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * Close codes of the realtime layer (docs/close-codes.md). 4000-4499: the
 * client should reconnect (with backoff); 4500-4999: it should not.
 */
export const RealtimeCloseCode = {
  AuthTimeout: 4001,
  TokenExpired: 4002,
  SlowConsumer: 4003,
  RateLimited: 4004,
  IdleTimeout: 4005,
  Unauthorized: 4500,
  BadRequest: 4501,
  Forbidden: 4502,
  Kicked: 4503,
  UnsupportedProtocol: 4504,
} as const;
export type RealtimeCloseCode = (typeof RealtimeCloseCode)[keyof typeof RealtimeCloseCode];

/**
 * The server's defaults for what its `auth` reply announces in `limits`: the
 * rate budget of a connection (`limits.messageRate`, `limits.byteRate` in the
 * configuration) and how long a publish key is remembered. A client that got
 * no `auth` reply (anonymous) paces itself to these.
 */
export const DEFAULT_MESSAGE_RATE: Readonly<{ perSecond: number; burst: number }> = Object.freeze({ perSecond: 50, burst: 100 });
export const DEFAULT_BYTE_RATE: Readonly<{ perSecond: number; burst: number }> = Object.freeze({ perSecond: 1024 * 1024, burst: 2 * 1024 * 1024 });
export const IDEMPOTENCY_TTL_MS = 5 * 60_000;

/**
 * The longest token an `auth` or `refresh` message may carry, in characters.
 * A longer one (like an empty one) is an invalid token, answered as such —
 * 401, and for `auth` close 4500 —, not a malformed message.
 */
export const MAX_TOKEN_LENGTH = 8192;

/** Whether a client should reconnect after a close with this code. */
export function shouldReconnect(code: number): boolean {
  if (code >= 4500 && code <= 4999) return false;
  switch (code) {
    case CloseCode.ProtocolError:
    case CloseCode.UnsupportedData:
    case CloseCode.InvalidFramePayloadData:
    case CloseCode.PolicyViolation:
    case CloseCode.MessageTooBig:
    case CloseCode.MandatoryExtension:
      return false;
  }
  return true;
}
