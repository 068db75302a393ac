/**
 * Wire codecs: how a message object becomes a frame's payload and back.
 * JSON travels in text frames, MessagePack in binary frames. Browser-safe.
 */
import { packMsgpack, unpackMsgpack } from './msgpack.js';
import type { Subprotocol } from './messages.js';

export interface WireCodec {
  readonly subprotocol: Subprotocol;
  /** Binary frames (MessagePack) or text frames (JSON). */
  readonly binary: boolean;
  encode(message: object): string | Uint8Array;
  /** Throws on malformed input; the caller answers with an error, never crashes. */
  decode(payload: string | Uint8Array): unknown;
}

const textDecoder = new TextDecoder('utf-8', { fatal: true });

export const jsonCodec: WireCodec = {
  subprotocol: 'switchboard.v1.json',
  binary: false,
  encode(message) {
    return JSON.stringify(message);
  },
  decode(payload) {
    return JSON.parse(typeof payload === 'string' ? payload : textDecoder.decode(payload));
  },
};

// Plain maps on the wire (any MessagePack library reads them); undefined
// fields are left out, as JSON.stringify does.
const ENCODE_OPTIONS = { ignoreUndefined: true } as const;

export const msgpackCodec: WireCodec = {
  subprotocol: 'switchboard.v1.msgpack',
  binary: true,
  encode(message) {
    return packMsgpack(message, ENCODE_OPTIONS);
  },
  decode(payload) {
    if (typeof payload === 'string') throw new TypeError('MessagePack messages travel in binary frames');
    return unpackMsgpack(payload);
  },
};

export function codecFor(subprotocol: string): WireCodec | null {
  if (subprotocol === jsonCodec.subprotocol) return jsonCodec;
  if (subprotocol === msgpackCodec.subprotocol) return msgpackCodec;
  return null;
}
