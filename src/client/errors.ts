/**
 * Errors of the client SDK. Every error has a stable, greppable `code`:
 *
 * | code | when |
 * |---|---|
 * | `RT_CLIENT_QUEUE_FULL` | `publish()` while disconnected with `queueLimit` publications already waiting |
 * | `RT_CLIENT_DISCONNECTED` | an `rpc` in flight when the connection dropped; a request that waited `requestTimeoutMs` for a connection; the client gave up reconnecting |
 * | `RT_CLIENT_CLOSED` | `close()` was called while the request or publication was pending |
 * | `RT_CLIENT_TIMEOUT` | no reply within `requestTimeoutMs` (for `publish`: after `publishRetries` retries) |
 * | `RT_CLIENT_PUBLISH_UNCERTAIN` | a publication sent but never acked would be resent after the server forgot its key (`idempotencyTtlMs`, 5 min): not resent, it may or may not have been published |
 * | `RT_CLIENT_SERVER_ERROR` | the server answered `error`; `serverCode` holds its code (403, 404, 429, …) |
 * | `RT_CLIENT_ALREADY_SUBSCRIBED` | `subscribe()` twice to the same channel on one client |
 * | `RT_CLIENT_CONNECT_FAILED` | `connect()` ended without a connection (a close that says not to reconnect, `maxAttempts`, or `getToken()` with no token) |
 * | `RT_CLIENT_UNAUTHORIZED` | the server refused this client's authentication and the client stopped: it closed with 4001 (no `auth` in time) and this client has no token at all, or with 4500 (the token is invalid); the message says what to do (pass `token` or `getToken`); `closeCode` says which |
 * | `RT_CLIENT_TOKEN` | `getToken()` failed, did not answer in time, or answered no token; the server refused a refreshed token; or the server asked for a new token and there is no `getToken` |
 * | `RT_CLIENT_BAD_MESSAGE` | the server sent something that is not a protocol message |
 * | `RT_CLIENT_NO_TRANSPORT` | none of the configured transports can run here (no WebSocket, EventSource or fetch) |
 * | `RT_CLIENT_INVALID_ARGUMENT` | a bad option or argument |
 */
export type ClientErrorCode =
  | 'RT_CLIENT_QUEUE_FULL'
  | 'RT_CLIENT_DISCONNECTED'
  | 'RT_CLIENT_CLOSED'
  | 'RT_CLIENT_TIMEOUT'
  | 'RT_CLIENT_PUBLISH_UNCERTAIN'
  | 'RT_CLIENT_SERVER_ERROR'
  | 'RT_CLIENT_ALREADY_SUBSCRIBED'
  | 'RT_CLIENT_CONNECT_FAILED'
  | 'RT_CLIENT_UNAUTHORIZED'
  | 'RT_CLIENT_TOKEN'
  | 'RT_CLIENT_BAD_MESSAGE'
  | 'RT_CLIENT_NO_TRANSPORT'
  | 'RT_CLIENT_INVALID_ARGUMENT';

export class ClientError extends Error {
  override readonly name = 'ClientError';
  /** Stable error code (see the table above). */
  readonly code: ClientErrorCode;
  /** The server's error code (`error` replies: 400, 401, 403, 404, 409, 413, 429, 430, 500, 503, 504). */
  readonly serverCode?: number;
  /** The close code, for `RT_CLIENT_CONNECT_FAILED` and `RT_CLIENT_DISCONNECTED` after a close. */
  readonly closeCode?: number;

  constructor(code: ClientErrorCode, message: string, details: { serverCode?: number; closeCode?: number; cause?: unknown } = {}) {
    super(message);
    this.code = code;
    if (details.serverCode !== undefined) this.serverCode = details.serverCode;
    if (details.closeCode !== undefined) this.closeCode = details.closeCode;
    if (details.cause !== undefined) (this as { cause?: unknown }).cause = details.cause;
  }
}

/** Server error codes worth a retry (of a publication, same key; of a `sub` or `unsub`): rate limited, temporarily unavailable, timeout. */
const RETRYABLE = new Set([429, 500, 503, 504]);

/** Whether a refusal by the server (`RT_CLIENT_SERVER_ERROR`) is worth another try after a pause. */
export function isRetryable(error: ClientError): boolean {
  return RETRYABLE.has(error.serverCode ?? 0);
}
