/**
 * Switchboard's public API. `WebSocket` and `WebSocketServer` follow the
 * `ws` package's API, so switching is a change of import.
 */
export { WebSocket, type BinaryType, type HeartbeatOptions, type SendCallback } from './transport/websocket.js';
export { WebSocketServer, type ServerOptions, type VerifyClientInfo } from './transport/websocket-server.js';
export type { ClientOptions } from './transport/websocket.js';
export type { PerMessageDeflateOptions } from './protocol/extensions/permessage-deflate.js';
export { CloseCode, closeCodeMeaning, isValidCloseCode } from './protocol/close-code.js';
export * from './protocol/errors.js';
export { WebSocket as default } from './transport/websocket.js';
export { Http2SessionPool, Http2UpgradeResponse, defaultHttp2Pool, type Http2ClientOptions, type Http2SessionPoolOptions } from './transport/http2-client.js';
export { Http2UpgradeRequest } from './transport/http2.js';
