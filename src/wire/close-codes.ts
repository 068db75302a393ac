/**
 * The close codes of the realtime layer (4000-4999, docs/close-codes.md):
 * name, meaning and what a client should do, in one table for the server
 * (metrics, the dashboard), the SDK (`disconnected` events) and the CLI
 * (`switchboard connect`). Browser-safe: no Node.js imports.
 */
import { closeCodeMeaning } from '../protocol/close-code.js';
import { RealtimeCloseCode } from './messages.js';

export interface RealtimeCloseCodeInfo {
  /** The `RealtimeCloseCode` key, e.g. `AuthTimeout`. */
  name: keyof typeof RealtimeCloseCode;
  /** What happened, lower case, e.g. `no auth message in time`. */
  meaning: string;
  /** What a client should do (4000-4499: reconnect, 4500-4999: do not). */
  advice: string;
}

/** Every realtime close code (a missing or extra one is a compile error). */
export const REALTIME_CLOSE_CODES: Readonly<Record<RealtimeCloseCode, Readonly<RealtimeCloseCodeInfo>>> = Object.freeze({
  [RealtimeCloseCode.AuthTimeout]: { name: 'AuthTimeout', meaning: 'no auth message in time', advice: 'reconnect' },
  [RealtimeCloseCode.TokenExpired]: { name: 'TokenExpired', meaning: 'the token expired', advice: 'reconnect with a new token' },
  [RealtimeCloseCode.SlowConsumer]: { name: 'SlowConsumer', meaning: 'slow consumer: the client could not keep up', advice: 'reconnect' },
  [RealtimeCloseCode.RateLimited]: { name: 'RateLimited', meaning: 'rate limit exceeded repeatedly', advice: 'reconnect later' },
  [RealtimeCloseCode.IdleTimeout]: { name: 'IdleTimeout', meaning: 'idle timeout', advice: 'reconnect' },
  [RealtimeCloseCode.Unauthorized]: { name: 'Unauthorized', meaning: 'unauthorized: the token is invalid', advice: 'do not reconnect' },
  [RealtimeCloseCode.BadRequest]: { name: 'BadRequest', meaning: 'bad request: a message that is not JSON / MessagePack', advice: 'do not reconnect' },
  [RealtimeCloseCode.Forbidden]: { name: 'Forbidden', meaning: 'forbidden', advice: 'do not reconnect' },
  [RealtimeCloseCode.Kicked]: { name: 'Kicked', meaning: 'kicked by the server', advice: 'do not reconnect' },
  [RealtimeCloseCode.UnsupportedProtocol]: { name: 'UnsupportedProtocol', meaning: 'unsupported protocol', advice: 'do not reconnect' },
});

/** The table's entry for `code`, or undefined when it is not a realtime close code. */
export function realtimeCloseCode(code: number): Readonly<RealtimeCloseCodeInfo> | undefined {
  return Object.prototype.hasOwnProperty.call(REALTIME_CLOSE_CODES, code) ? REALTIME_CLOSE_CODES[code as RealtimeCloseCode] : undefined;
}

/**
 * A short human-readable meaning of a close code on a realtime connection,
 * with what the client does next for the 4000-4999 range, e.g. `bad request:
 * a message that is not JSON / MessagePack (do not reconnect)`. Codes of
 * RFC 6455 get their meaning from src/protocol/close-code.ts.
 */
export function closeMeaning(code: number): string {
  const rt = realtimeCloseCode(code);
  if (rt) return `${rt.meaning} (${rt.advice})`;
  if (code >= 4000 && code <= 4499) return 'application-defined code (reconnect)';
  if (code >= 4500 && code <= 4999) return 'application-defined code (do not reconnect)';
  return closeCodeMeaning(code);
}
