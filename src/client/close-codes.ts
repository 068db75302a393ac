/**
 * The close-code table of the SDK: what a close code means and whether the
 * client reconnects after it. One table for the project (docs/close-codes.md):
 * the RFC 6455 meanings come from src/protocol/close-code.ts, the realtime
 * codes (4000-4999) from src/realtime/wire/messages.ts, both browser-safe.
 */
import { closeCodeMeaning as wsCloseCodeMeaning } from '../protocol/close-code.js';
import { shouldReconnect } from '../realtime/wire/messages.js';

export { shouldReconnect };

const realtimeMeanings: Record<number, string> = {
  4001: 'no auth message in time (reconnect)',
  4002: 'the token expired (reconnect with a new token)',
  4003: 'slow consumer: the client could not keep up (reconnect)',
  4004: 'rate limit exceeded repeatedly (reconnect later)',
  4005: 'idle timeout (reconnect)',
  4500: 'unauthorized: the token is invalid (do not reconnect)',
  4501: 'bad request: a message that is not JSON / MessagePack (do not reconnect)',
  4502: 'forbidden (do not reconnect)',
  4503: 'kicked by the server (do not reconnect)',
  4504: 'unsupported protocol (do not reconnect)',
};

/** A short human-readable meaning of a close code, for the `disconnected` event, logs and UIs. */
export function closeMeaning(code: number): string {
  const rt = realtimeMeanings[code];
  if (rt) return rt;
  if (code >= 4000 && code <= 4499) return 'application-defined code (reconnect)';
  if (code >= 4500 && code <= 4999) return 'application-defined code (do not reconnect)';
  return wsCloseCodeMeaning(code);
}
