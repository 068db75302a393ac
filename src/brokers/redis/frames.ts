/**
 * What the Redis broker stores and sends, as bytes. Publication data may hold
 * Uint8Array, so the application part is MessagePack; the Lua scripts only
 * glue a short ASCII header in front of it (Lua cannot re-encode MessagePack
 * without knowing the data), so every frame is `<header fields>:` + body.
 *
 *   history entry:   <offset>:<time>:<payload>
 *   pub/sub frames:  p<nonce>:<offset>:<epoch>:<time>:<payload>   a publication
 *                    v<nonce>:<offset>:<epoch>:<time>:<payload>   a volatile one (the current position)
 *                    j<nonce>:<info> / l<nonce>:<info>            a presence join / leave
 *
 * `payload` is MessagePack `[data]` or `[data, from]`, `info` a ClientInfo.
 * The nonce (unique per frame sent: node id + counter) lets a node drop the
 * second copy Redis sends when several of its subscriptions match (a name and
 * a pattern, two patterns): those copies arrive one after another.
 * Epochs and nonces are base36, offsets and times decimal: none holds `:`.
 */
import { packMsgpack, unpackMsgpack } from '../../wire/msgpack.js';
import type { ClientInfo, Publication } from '../broker.js';

const COLON = 0x3a;

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function encodePayload(data: unknown, from: ClientInfo | undefined): Buffer {
  return toBuffer(packMsgpack(from === undefined ? [data] : [data, from]));
}

export function encodeInfo(info: ClientInfo): Buffer {
  return toBuffer(packMsgpack(info));
}

/**
 * MessagePack from a received Buffer. Decoded bytes are views into the
 * input: a plain Uint8Array copy of just this part (not a Buffer, not the
 * socket's chunk) is what the data had when it was published.
 */
function unpack(bytes: Uint8Array): unknown {
  return unpackMsgpack(new Uint8Array(bytes));
}

export function decodeInfo(bytes: Uint8Array): ClientInfo {
  return unpack(bytes) as ClientInfo;
}

/** Split `count` `:`-terminated ASCII fields off the front of `buf`; the rest is the body. */
function fields(buf: Buffer, start: number, count: number): { fields: string[]; body: Buffer } | undefined {
  const out: string[] = [];
  let at = start;
  for (let i = 0; i < count; i++) {
    const end = buf.indexOf(COLON, at);
    if (end < 0) return undefined;
    out.push(buf.toString('latin1', at, end));
    at = end + 1;
  }
  return { fields: out, body: buf.subarray(at) };
}

function publication(channel: string, offset: string, epoch: string, time: string, payload: Buffer): Publication {
  const [data, from] = unpack(payload) as [unknown, ClientInfo | undefined];
  const pub: Publication = { channel, offset: Number(offset), epoch, data, time: Number(time) };
  if (from !== undefined) pub.from = from;
  return pub;
}

/** A history entry (see the module comment) as a publication of `channel` in `epoch`. */
export function decodeEntry(channel: string, epoch: string, entry: Buffer): Publication {
  const f = fields(entry, 0, 2);
  if (f === undefined) throw new Error('switchboard redis broker: malformed history entry');
  return publication(channel, f.fields[0]!, epoch, f.fields[1]!, f.body);
}

export type Frame =
  | { kind: 'pub'; nonce: string; pub: Publication }
  | { kind: 'join' | 'leave'; nonce: string; info: ClientInfo };

/** A pub/sub frame received on `channel`'s pub/sub channel, or undefined when it is not one of ours. */
export function decodeFrame(channel: string, frame: Buffer): Frame | undefined {
  const kind = frame[0];
  if (kind === 0x70 /* p */ || kind === 0x76 /* v */) {
    const f = fields(frame, 1, 4);
    if (f === undefined) return undefined;
    const [nonce, offset, epoch, time] = f.fields as [string, string, string, string];
    const pub = publication(channel, offset, epoch, time, f.body);
    if (kind === 0x76) pub.volatile = true;
    return { kind: 'pub', nonce, pub };
  }
  if (kind === 0x6a /* j */ || kind === 0x6c /* l */) {
    const f = fields(frame, 1, 1);
    if (f === undefined) return undefined;
    return { kind: kind === 0x6a ? 'join' : 'leave', nonce: f.fields[0]!, info: decodeInfo(f.body) };
  }
  return undefined;
}

/** A presence frame (built here: presence needs no script). */
export function presenceFrame(kind: 'join' | 'leave', nonce: string, info: ClientInfo): Buffer {
  return Buffer.concat([Buffer.from(`${kind === 'join' ? 'j' : 'l'}${nonce}:`, 'latin1'), encodeInfo(info)]);
}
