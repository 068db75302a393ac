/**
 * The close-code table of the SDK: what a close code means and whether the
 * client reconnects after it. One table for the project (docs/close-codes.md):
 * the RFC 6455 meanings come from src/protocol/close-code.ts, the realtime
 * codes (4000-4999) from src/wire/close-codes.ts (shared with the
 * server and the CLI), both browser-safe.
 */
export { closeMeaning } from '../wire/close-codes.js';
export { shouldReconnect } from '../wire/messages.js';
