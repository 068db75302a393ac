/**
 * WebSocket bytes built and read by hand, for tests that send what a correct
 * peer would not: frames (valid or not), close payloads, the accept key and
 * upgrade requests. Written from RFC 6455 independently of src/protocol, so
 * that it checks it. (The conformance peer, test/conformance/peer.ts, keeps
 * its own copy on purpose: it must not share code with anything under test.)
 */
import { createHash, randomBytes } from 'node:crypto';

export interface FrameSpec {
  opcode: number;
  payload?: Uint8Array | string;
  /** Default true. */
  fin?: boolean;
  rsv1?: boolean;
  rsv2?: boolean;
  rsv3?: boolean;
  /** `true` for a random key, or the key itself. Default: not masked. */
  mask?: boolean | Uint8Array;
  /** Declared length, when it should differ from the payload's. */
  length?: number;
  /** Force a length encoding (a non-minimal one, say). */
  lengthBits?: 7 | 16 | 64;
}

/** Encode one frame, valid or not. */
export function encodeFrame(spec: FrameSpec): Buffer {
  const payload = typeof spec.payload === 'string' ? Buffer.from(spec.payload) : Buffer.from(spec.payload ?? []);
  const length = spec.length ?? payload.length;
  const bits = spec.lengthBits ?? (length < 126 ? 7 : length < 0x10000 ? 16 : 64);
  const key = spec.mask === true ? randomBytes(4) : spec.mask instanceof Uint8Array ? spec.mask : null;
  const head = [(spec.fin === false ? 0 : 0x80) | (spec.rsv1 ? 0x40 : 0) | (spec.rsv2 ? 0x20 : 0) | (spec.rsv3 ? 0x10 : 0) | spec.opcode];
  const maskBit = key ? 0x80 : 0;
  if (bits === 7) {
    head.push(maskBit | length);
  } else if (bits === 16) {
    head.push(maskBit | 126, length >> 8, length & 0xff);
  } else {
    head.push(maskBit | 127);
    const big = BigInt(length);
    for (let shift = 56n; shift >= 0n; shift -= 8n) head.push(Number((big >> shift) & 0xffn));
  }
  if (key) head.push(...key);
  if (key) for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
  return Buffer.concat([Buffer.from(head), payload]);
}

export interface DecodedFrame {
  fin: boolean;
  rsv1: boolean;
  rsv2: boolean;
  rsv3: boolean;
  opcode: number;
  masked: boolean;
  maskKey: Buffer | null;
  /** Unmasked. */
  payload: Buffer;
}

/** Decode the frame at the start of `buf` and its size in bytes; null when it is incomplete. */
export function decodeFrame(buf: Buffer): { frame: DecodedFrame; size: number } | null {
  if (buf.length < 2) return null;
  const b0 = buf[0]!;
  const b1 = buf[1]!;
  let at = 2;
  let length = b1 & 0x7f;
  if (length === 126) {
    if (buf.length < 4) return null;
    length = buf.readUInt16BE(2);
    at = 4;
  } else if (length === 127) {
    if (buf.length < 10) return null;
    length = Number(buf.readBigUInt64BE(2));
    at = 10;
  }
  const masked = (b1 & 0x80) !== 0;
  let maskKey: Buffer | null = null;
  if (masked) {
    if (buf.length < at + 4) return null;
    maskKey = Buffer.from(buf.subarray(at, at + 4));
    at += 4;
  }
  if (buf.length < at + length) return null;
  const payload = Buffer.from(buf.subarray(at, at + length));
  if (maskKey) for (let i = 0; i < payload.length; i++) payload[i]! ^= maskKey[i & 3]!;
  return {
    frame: {
      fin: (b0 & 0x80) !== 0,
      rsv1: (b0 & 0x40) !== 0,
      rsv2: (b0 & 0x20) !== 0,
      rsv3: (b0 & 0x10) !== 0,
      opcode: b0 & 0x0f,
      masked,
      maskKey,
      payload,
    },
    size: at + length,
  };
}

/** The payload of a close frame: the code, then the reason in UTF-8. */
export function closePayload(code: number, reason = ''): Buffer {
  const out = Buffer.alloc(2 + Buffer.byteLength(reason));
  out.writeUInt16BE(code, 0);
  out.write(reason, 2);
  return out;
}

/** Code and reason of a close frame payload (code 1005 when it is empty). */
export function decodeClose(payload: Buffer): { code: number; reason: string } {
  if (payload.length === 0) return { code: 1005, reason: '' };
  return { code: payload.readUInt16BE(0), reason: payload.subarray(2).toString() };
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2). */
export function acceptKey(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

/** The lines of an upgrade request; `headers` are added or override (null removes). */
export function upgradeRequest(
  options: { path?: string; method?: string; version?: string; key?: string; headers?: Record<string, string | null> } = {},
): string {
  const headers: Record<string, string | null> = {
    Host: 'localhost',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': options.key ?? randomBytes(16).toString('base64'),
    'Sec-WebSocket-Version': '13',
    ...options.headers,
  };
  const lines = [`${options.method ?? 'GET'} ${options.path ?? '/'} HTTP/${options.version ?? '1.1'}`];
  for (const [name, value] of Object.entries(headers)) if (value !== null) lines.push(`${name}: ${value}`);
  return lines.join('\r\n') + '\r\n\r\n';
}
