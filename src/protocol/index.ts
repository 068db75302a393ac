/** The sans-I/O core: bytes in, events and bytes out. See docs/sans-io.md. */
export { Connection, type ConnectionHandler, type ConnectionOptions, DEFAULT_MAX_PAYLOAD, encodeClosePayload } from './connection.js';
export { FrameParser, type FrameHandler, type FrameParserOptions } from './frame-parser.js';
export { encodeFrame, encodeFrameHeader, encodeServerFrame } from './frame-writer.js';
export { maskInPlace, randomMaskKey } from './mask.js';
export { Utf8Validator, isUtf8 } from './utf8.js';
export { Opcode, isControlOpcode } from './opcode.js';
export { CloseCode, closeCodeMeaning, isValidCloseCode, MAX_CLOSE_REASON_BYTES } from './close-code.js';
export type { Inflater, Deflater } from './extension.js';
export * from './errors.js';
export * from './handshake.js';
export * from './extensions/header.js';
export * from './extensions/permessage-deflate.js';
export * from './extended-connect.js';
