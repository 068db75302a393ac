/**
 * The fuzzing peer of the conformance suite: a deliberately simple WebSocket
 * endpoint over node:net that shares no code with src/. It speaks either
 * role of RFC 6455:
 *
 * - as a client (`connectPeer`) it performs the opening handshake against our
 *   `WebSocketServer` and sends hand-built, masked frames;
 * - as a server (`FuzzServer`) it accepts the handshake of our `WebSocket`
 *   client and sends hand-built, unmasked frames.
 *
 * Everything it sends is written as given (any opcode, RSV bits, length,
 * fragmentation), optionally in chops with a turn of the event loop between
 * them, so the implementation reads each chop on its own. Everything it
 * receives is decoded, checked against the RFC (masking, control frame
 * rules, UTF-8, close payloads: the implementation must never send anything
 * wrong) and recorded in order, together with when each side ended the TCP
 * connection. permessage-deflate (RFC 7692) is supported with its own zlib
 * streams, inflating with exactly the negotiated window and, when the
 * implementation must not take over its context, with a fresh inflater per
 * message, so a violation of either shows up as an inflate error.
 */
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import zlib from 'node:zlib';

export const Op = {
  Continuation: 0x0,
  Text: 0x1,
  Binary: 0x2,
  Close: 0x8,
  Ping: 0x9,
  Pong: 0xa,
} as const;

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const EMPTY = Buffer.alloc(0);
const TRAILER = Buffer.from([0x00, 0x00, 0xff, 0xff]);

/** One frame to send, exactly as it should appear on the wire. */
export interface FrameSpec {
  opcode: number;
  payload?: Buffer;
  /** Default true. */
  fin?: boolean;
  /** The three RSV bits as a number 0..7, as Autobahn numbers them: 4 = RSV1, 2 = RSV2, 1 = RSV3. */
  rsv?: number;
  /** Send the frame with the mask bit of the other role (server frames masked, client frames not). */
  wrongMask?: boolean;
}

/** Encode a frame; `masked` frames get a random key. The payload is never modified. */
export function encodeFrame(spec: FrameSpec, masked: boolean): { bytes: Buffer; headerLength: number } {
  const payload = spec.payload ?? EMPTY;
  const len = payload.length;
  const b0 = (spec.fin === false ? 0 : 0x80) | (((spec.rsv ?? 0) & 7) << 4) | (spec.opcode & 0x0f);
  const lengthBytes = len < 126 ? 0 : len < 0x10000 ? 2 : 8;
  const headerLength = 2 + lengthBytes + (masked ? 4 : 0);
  const out = Buffer.allocUnsafe(headerLength + len);
  out[0] = b0;
  out[1] = (masked ? 0x80 : 0) | (len < 126 ? len : len < 0x10000 ? 126 : 127);
  if (lengthBytes === 2) out.writeUInt16BE(len, 2);
  else if (lengthBytes === 8) out.writeBigUInt64BE(BigInt(len), 2);
  if (!masked) {
    payload.copy(out, headerLength);
  } else {
    const key = randomBytes(4);
    key.copy(out, 2 + lengthBytes);
    for (let i = 0; i < len; i++) out[headerLength + i] = payload[i]! ^ key[i & 3]!;
  }
  return { bytes: out, headerLength };
}

/** The payload of a close frame: a 2-byte code and a reason. */
export function closePayload(code: number, reason: string | Buffer = ''): Buffer {
  const r = typeof reason === 'string' ? Buffer.from(reason) : reason;
  const out = Buffer.alloc(2 + r.length);
  out.writeUInt16BE(code, 0);
  r.copy(out, 2);
  return out;
}

/** Close codes that may appear on the wire (RFC 6455 §7.4, IANA registry). */
function isSendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

function isUtf8(bytes: Buffer): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}

function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

// ---------------------------------------------------------------------------
// permessage-deflate, the peer's side

/** The negotiated parameters, seen from the peer: `own*` govern what it sends, `impl*` what it receives. */
export interface PeerDeflateParams {
  ownNoContextTakeover: boolean;
  ownWindowBits: number;
  implNoContextTakeover: boolean;
  implWindowBits: number;
}

/** Parse one `permessage-deflate; a; b=9` element (the only extension either side of the suite uses). */
export function parseDeflateHeader(value: string): Map<string, string | true> | null {
  const parts = value.split(';').map((s) => s.trim());
  if (parts[0] !== 'permessage-deflate') return null;
  const params = new Map<string, string | true>();
  for (const p of parts.slice(1)) {
    if (p === '') continue;
    const eq = p.indexOf('=');
    if (eq === -1) params.set(p, true);
    else params.set(p.slice(0, eq).trim(), p.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1'));
  }
  return params;
}

/** Turn a response's parameters into the peer's view, for the peer acting as `peerRole`. */
export function deflateParamsFor(peerRole: 'client' | 'server', params: Map<string, string | true>): PeerDeflateParams {
  const bits = (name: string): number => {
    const v = params.get(name);
    return typeof v === 'string' ? Number(v) : 15;
  };
  const server = { nct: params.has('server_no_context_takeover'), bits: bits('server_max_window_bits') };
  const client = { nct: params.has('client_no_context_takeover'), bits: bits('client_max_window_bits') };
  const own = peerRole === 'client' ? client : server;
  const impl = peerRole === 'client' ? server : client;
  return {
    ownNoContextTakeover: own.nct,
    ownWindowBits: own.bits,
    implNoContextTakeover: impl.nct,
    implWindowBits: impl.bits,
  };
}

/** Write `data` to a zlib stream and collect what a sync flush gives back. */
function flushThrough(stream: zlib.Inflate | zlib.InflateRaw | zlib.DeflateRaw, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const onData = (chunk: Buffer): void => {
      out.push(chunk);
    };
    const onError = (err: Error): void => {
      stream.removeListener('data', onData);
      reject(err);
    };
    stream.on('data', onData);
    stream.once('error', onError);
    if (data.length > 0) stream.write(data);
    stream.flush(zlib.constants.Z_SYNC_FLUSH, () => {
      stream.removeListener('data', onData);
      stream.removeListener('error', onError);
      resolve(Buffer.concat(out));
    });
  });
}

class PeerDeflate {
  private deflater: zlib.DeflateRaw | null = null;
  private inflater: zlib.InflateRaw | null = null;
  /** One zlib operation at a time per direction: output chunks must not mix. */
  private deflating: Promise<unknown> = Promise.resolve();
  private inflating: Promise<unknown> = Promise.resolve();

  constructor(readonly params: PeerDeflateParams) {}

  compress(data: Buffer): Promise<Buffer> {
    const p = this.deflating.then(() => this.compressNow(data));
    this.deflating = p.catch(() => {});
    return p;
  }

  decompress(payload: Buffer): Promise<Buffer> {
    const p = this.inflating.then(() => this.decompressNow(payload));
    this.inflating = p.catch(() => {});
    return p;
  }

  /** Compress one whole message (RFC 7692 §7.2.1), trailer removed. */
  private async compressNow(data: Buffer): Promise<Buffer> {
    if (this.deflater === null) {
      this.deflater = zlib.createDeflateRaw({ windowBits: this.params.ownWindowBits });
    }
    let out = await flushThrough(this.deflater, data);
    if (this.params.ownNoContextTakeover) this.releaseDeflater();
    if (out.length >= 4 && out.subarray(out.length - 4).equals(TRAILER)) out = out.subarray(0, out.length - 4);
    return out.length === 0 ? Buffer.from([0x00]) : out;
  }

  /** Decompress one whole message (RFC 7692 §7.2.2) with exactly the negotiated window. */
  private async decompressNow(payload: Buffer): Promise<Buffer> {
    if (this.inflater === null) {
      this.inflater = zlib.createInflateRaw({ windowBits: this.params.implWindowBits });
      this.inflater.on('error', () => {}); // reported through flushThrough
    }
    try {
      return await flushThrough(this.inflater, Buffer.concat([payload, TRAILER]));
    } finally {
      if (this.params.implNoContextTakeover || this.inflater.destroyed) this.releaseInflater();
    }
  }

  close(): void {
    this.releaseDeflater();
    this.releaseInflater();
  }

  private releaseDeflater(): void {
    this.deflater?.close();
    this.deflater = null;
  }

  private releaseInflater(): void {
    this.inflater?.close();
    this.inflater = null;
  }
}

// ---------------------------------------------------------------------------
// What the peer records

/** A data or control frame from the implementation (its close frame is kept apart, in `closeFrame`). */
export type PeerEvent =
  | { type: 'message'; data: Buffer; binary: boolean; compressed: boolean }
  | { type: 'ping' | 'pong'; data: Buffer };

interface DecodedFrame {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** Incremental frame decoder: chunks in, whole frames out (copies; simplicity over speed). */
class FrameReader {
  private chunks: Buffer[] = [];
  private length = 0;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  next(): DecodedFrame | null {
    if (this.length < 2) return null;
    const head = this.peek(Math.min(this.length, 14));
    const masked = (head[1]! & 0x80) !== 0;
    let len = head[1]! & 0x7f;
    let at = 2;
    if (len === 126) {
      if (head.length < 4) return null;
      len = head.readUInt16BE(2);
      at = 4;
    } else if (len === 127) {
      if (head.length < 10) return null;
      len = Number(head.readBigUInt64BE(2));
      at = 10;
    }
    const keyAt = at;
    if (masked) at += 4;
    if (this.length < at + len) return null;
    const frameBytes = this.take(at + len);
    const payload = Buffer.from(frameBytes.subarray(at));
    if (masked) {
      const key = frameBytes.subarray(keyAt, keyAt + 4);
      for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
    }
    return { fin: (head[0]! & 0x80) !== 0, rsv: (head[0]! >> 4) & 7, opcode: head[0]! & 0x0f, masked, payload };
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!.subarray(0, n);
    return Buffer.concat(this.chunks).subarray(0, n);
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.length = rest.length;
    return all.subarray(0, n);
  }
}

// ---------------------------------------------------------------------------
// The peer

export interface SendOptions {
  /** Write in pieces of this many bytes, with a turn of the event loop between pieces. */
  chop?: number;
}

export class FuzzPeer {
  /** Data and control events from the implementation before its close frame, in order. */
  readonly events: PeerEvent[] = [];
  /** The implementation's close frame, once it arrived. */
  closeFrame: { code: number; reason: Buffer } | null = null;
  /** Whether the implementation's close frame came before the peer had sent one (it started the closing handshake). */
  implClosedFirst = false;
  /** Breaches of RFC 6455/7692 by the implementation, seen on the wire. */
  readonly violations: string[] = [];
  closeSent = false;
  /** The implementation sent FIN (or the connection was reset). */
  remoteEnded = false;
  localEnded = false;
  socketClosed = false;
  socketError: Error | null = null;

  private readonly reader = new FrameReader();
  private readonly masked: boolean;
  private readonly deflate: PeerDeflate | null;
  private fragmentOpcode = 0;
  private fragmentCompressed = false;
  private fragments: Buffer[] = [];
  /** Set once a close frame is decoded, before its (possibly queued) event is recorded. */
  private closeQueued = false;
  /** Events go through this chain so an inflated message keeps its place. */
  private chain: Promise<void> = Promise.resolve();
  private waiters = new Set<() => void>();
  private partial: { bytes: Buffer; headerLength: number; sent: number } | null = null;

  constructor(
    /** A TCP socket, or an HTTP/2 stream opened by an extended CONNECT (RFC 8441; the suite replayed over h2). */
    readonly socket: net.Socket | Duplex,
    /** The role the peer plays; the implementation under test plays the other one. */
    readonly role: 'client' | 'server',
    head: Buffer,
    deflate: PeerDeflateParams | null,
  ) {
    this.masked = role === 'client';
    this.deflate = deflate ? new PeerDeflate(deflate) : null;
    (socket as Partial<net.Socket>).setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('end', () => {
      this.remoteEnded = true;
      this.notify();
    });
    socket.on('error', (err) => {
      this.socketError = err;
      this.notify();
    });
    socket.on('close', () => {
      this.socketClosed = true;
      this.remoteEnded = true;
      this.deflate?.close();
      this.notify();
    });
    if (head.length > 0) this.receive(head);
  }

  /** Resolves once every frame received so far has been recorded (compressed messages inflate asynchronously). */
  drained(): Promise<void> {
    return this.chain;
  }

  get negotiatedDeflate(): PeerDeflateParams | null {
    return this.deflate ? this.deflate.params : null;
  }

  // ---- sending ----------------------------------------------------------------

  /** Write bytes, in chops if asked. Writing on a closed socket is a no-op (the implementation may have gone). */
  async write(bytes: Buffer, options: SendOptions = {}): Promise<void> {
    const chop = options.chop ?? 0;
    if (chop <= 0 || chop >= bytes.length) {
      if (!this.socket.destroyed && !this.localEnded) this.socket.write(bytes);
      await turn();
      return;
    }
    for (let i = 0; i < bytes.length; i += chop) {
      if (this.socket.destroyed || this.localEnded) return;
      this.socket.write(bytes.subarray(i, i + chop));
      await turn();
    }
  }

  async sendFrame(spec: FrameSpec, options: SendOptions = {}): Promise<void> {
    if (spec.opcode === Op.Close) this.closeSent = true;
    const masked = spec.wrongMask ? !this.masked : this.masked;
    await this.write(encodeFrame(spec, masked).bytes, options);
  }

  /** Send several frames in one write (one "chop"), or in chops of `options.chop` bytes. */
  async sendFrames(specs: FrameSpec[], options: SendOptions = {}): Promise<void> {
    const bytes: Buffer[] = [];
    for (const spec of specs) {
      if (spec.opcode === Op.Close) this.closeSent = true;
      bytes.push(encodeFrame(spec, spec.wrongMask ? !this.masked : this.masked).bytes);
    }
    await this.write(Buffer.concat(bytes), options);
  }

  /** Send the header of a frame only; `sendFramePayload` sends its payload in pieces. */
  async beginFrame(spec: FrameSpec): Promise<void> {
    const { bytes, headerLength } = encodeFrame(spec, this.masked);
    this.partial = { bytes, headerLength, sent: headerLength };
    await this.write(bytes.subarray(0, headerLength));
  }

  /** Send the begun frame's payload up to payload offset `end` (default: all of it). */
  async sendFramePayload(end?: number): Promise<void> {
    const p = this.partial;
    if (p === null) throw new Error('sendFramePayload without beginFrame');
    const to = end === undefined ? p.bytes.length : p.headerLength + end;
    const piece = p.bytes.subarray(p.sent, to);
    p.sent = to;
    if (p.sent >= p.bytes.length) this.partial = null;
    await this.write(piece);
  }

  /**
   * Send a data message: compressed (RSV1 on the first frame only) when asked
   * and negotiated, split into frames of `fragmentSize` payload bytes if given.
   * `continuationRsv` sets RSV bits on the continuation frames (to break the rules).
   */
  async sendMessage(
    data: Buffer,
    binary: boolean,
    options: SendOptions & { fragmentSize?: number; compress?: boolean; continuationRsv?: number; between?: FrameSpec } = {},
  ): Promise<void> {
    let payload = data;
    let rsv = 0;
    if (options.compress) {
      if (this.deflate === null) throw new Error('compression was not negotiated');
      payload = await this.deflate.compress(data);
      rsv = 4;
    }
    const size = options.fragmentSize && options.fragmentSize > 0 ? options.fragmentSize : Math.max(payload.length, 1);
    const frames: Buffer[] = [];
    let offset = 0;
    do {
      const piece = payload.subarray(offset, offset + size);
      const first = offset === 0;
      offset += size;
      frames.push(
        encodeFrame(
          {
            opcode: first ? (binary ? Op.Binary : Op.Text) : Op.Continuation,
            payload: piece,
            fin: offset >= payload.length,
            rsv: first ? rsv : (options.continuationRsv ?? 0),
          },
          this.masked,
        ).bytes,
      );
      if (first && options.between && offset < payload.length) frames.push(encodeFrame(options.between, this.masked).bytes);
    } while (offset < payload.length);
    if (options.chop) {
      for (const f of frames) await this.write(f, options);
    } else {
      await this.write(frames.length === 1 ? frames[0]! : Buffer.concat(frames));
    }
  }

  async sendClose(code?: number, reason: string | Buffer = ''): Promise<void> {
    await this.sendFrame({ opcode: Op.Close, payload: code === undefined ? EMPTY : closePayload(code, reason) });
  }

  /** Send FIN. */
  end(): void {
    if (this.localEnded) return;
    this.localEnded = true;
    if (!this.socket.destroyed) this.socket.end();
  }

  destroy(): void {
    this.deflate?.close();
    this.socket.destroy();
  }

  // ---- waiting ----------------------------------------------------------------

  /** Resolve true as soon as `predicate` holds, false after `ms`. */
  waitFor(predicate: () => boolean, ms: number): Promise<boolean> {
    if (predicate()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = (): void => {
        if (!predicate()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        resolve(predicate());
      }, ms);
      this.waiters.add(check);
    });
  }

  /** Data/control events received so far (the close frame not included). */
  get eventCount(): number {
    return this.events.length;
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  // ---- receiving --------------------------------------------------------------

  private receive(chunk: Buffer): void {
    this.reader.push(chunk);
    let frame: DecodedFrame | null;
    while ((frame = this.reader.next()) !== null) this.onFrame(frame);
  }

  private violation(what: string): void {
    this.violations.push(what);
    this.notify();
  }

  private onFrame(f: DecodedFrame): void {
    if (this.closeQueued) {
      this.violation(`frame with opcode ${f.opcode} after the close frame`);
      return;
    }
    // RFC 6455 §5.1: a server never masks, a client always does.
    if (f.masked !== (this.role === 'server')) {
      this.violation(f.masked ? 'masked frame from a server' : 'unmasked frame from a client');
    }
    const rsv1 = (f.rsv & 4) !== 0;
    if ((f.rsv & 3) !== 0) this.violation(`RSV2/RSV3 set (rsv=${f.rsv})`);
    if (rsv1 && this.deflate === null) this.violation('RSV1 set without permessage-deflate');
    if (f.opcode >= 0x8) {
      if (!f.fin) this.violation('fragmented control frame');
      if (f.payload.length > 125) this.violation('control frame payload over 125 bytes');
      if (rsv1) this.violation('RSV1 set on a control frame');
      this.onControl(f);
      return;
    }
    if (f.opcode !== Op.Continuation && f.opcode !== Op.Text && f.opcode !== Op.Binary) {
      this.violation(`reserved opcode ${f.opcode}`);
      return;
    }
    if (f.opcode === Op.Continuation) {
      if (this.fragmentOpcode === 0) {
        this.violation('continuation frame without a message');
        return;
      }
      if (rsv1) this.violation('RSV1 set on a continuation frame');
    } else {
      if (this.fragmentOpcode !== 0) this.violation('new data frame inside a fragmented message');
      this.fragmentOpcode = f.opcode;
      this.fragmentCompressed = rsv1;
      this.fragments = [];
    }
    this.fragments.push(f.payload);
    if (!f.fin) return;
    const binary = this.fragmentOpcode === Op.Binary;
    const compressed = this.fragmentCompressed;
    const payload = Buffer.concat(this.fragments);
    this.fragmentOpcode = 0;
    this.fragments = [];
    if (!compressed) {
      this.enqueue(() => this.onMessage(payload, binary, false));
      return;
    }
    const inflated = this.deflate!.decompress(payload).then(
      (data) => ({ data, err: null as Error | null }),
      (err: Error) => ({ data: EMPTY, err }),
    );
    this.enqueue(async () => {
      const { data, err } = await inflated;
      if (err) this.violation(`compressed message does not inflate with the negotiated parameters: ${err.message}`);
      this.onMessage(data, binary, true);
    });
  }

  private onMessage(data: Buffer, binary: boolean, compressed: boolean): void {
    if (!binary && !isUtf8(data)) this.violation('text message that is not valid UTF-8');
    this.events.push({ type: 'message', data, binary, compressed });
    this.notify();
  }

  private onControl(f: DecodedFrame): void {
    if (f.opcode === Op.Ping || f.opcode === Op.Pong) {
      const type = f.opcode === Op.Ping ? 'ping' : 'pong';
      this.enqueue(() => {
        this.events.push({ type, data: f.payload });
        this.notify();
      });
      return;
    }
    if (f.opcode !== Op.Close) {
      this.violation(`reserved control opcode ${f.opcode}`);
      return;
    }
    this.closeQueued = true;
    this.implClosedFirst = !this.closeSent;
    let code = 1005;
    let reason: Buffer = EMPTY;
    if (f.payload.length === 1) this.violation('close frame with a 1-byte payload');
    if (f.payload.length >= 2) {
      code = f.payload.readUInt16BE(0);
      reason = f.payload.subarray(2);
      if (!isSendableCloseCode(code)) this.violation(`close code ${code} may not be sent`);
      if (!isUtf8(reason)) this.violation('close reason is not valid UTF-8');
    }
    this.enqueue(() => {
      this.closeFrame = { code, reason };
      this.notify();
    });
  }

  private enqueue(fn: () => void | Promise<void>): void {
    this.chain = this.chain.then(fn);
  }
}

// ---------------------------------------------------------------------------
// Opening handshakes

/** Read an HTTP head (up to CRLFCRLF); resolves with the head and the bytes after it. */
function readHead(socket: net.Socket, ms: number): Promise<{ head: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = EMPTY;
    const done = (err: Error | null, value?: { head: string; rest: Buffer }): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('error', onEnd);
      if (err) reject(err);
      else resolve(value!);
    };
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      // Stop reading until the peer attaches its own 'data' listener.
      socket.pause();
      done(null, { head: buf.subarray(0, end).toString('latin1'), rest: buf.subarray(end + 4) });
    };
    const onEnd = (): void => done(new Error('connection closed during the opening handshake'));
    const timer = setTimeout(() => done(new Error('timed out waiting for the opening handshake')), ms);
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onEnd);
  });
}

function parseHeaders(lines: string[]): Map<string, string> {
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  return headers;
}

function acceptFor(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

/**
 * The peer as a client: open a TCP connection to `port`, send the Upgrade
 * request (offering `offer` in Sec-WebSocket-Extensions when given) and
 * check the 101 answer.
 */
export async function connectPeer(port: number, offer?: string, ms = 2000): Promise<FuzzPeer> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const key = randomBytes(16).toString('base64');
  socket.write(
    'GET / HTTP/1.1\r\n' +
      `Host: 127.0.0.1:${port}\r\n` +
      'Upgrade: websocket\r\n' +
      'Connection: Upgrade\r\n' +
      `Sec-WebSocket-Key: ${key}\r\n` +
      'Sec-WebSocket-Version: 13\r\n' +
      (offer ? `Sec-WebSocket-Extensions: ${offer}\r\n` : '') +
      '\r\n',
  );
  const { head, rest } = await readHead(socket, ms);
  const [statusLine = '', ...lines] = head.split('\r\n');
  if (!/^HTTP\/1\.1 101 /.test(statusLine)) throw new Error(`expected 101, got: ${statusLine}`);
  const headers = parseHeaders(lines);
  if (headers.get('sec-websocket-accept') !== acceptFor(key)) throw new Error('wrong Sec-WebSocket-Accept');
  let deflate: PeerDeflateParams | null = null;
  const ext = headers.get('sec-websocket-extensions');
  if (ext) {
    const params = parseDeflateHeader(ext);
    if (params === null || offer === undefined) throw new Error(`unexpected extensions in the answer: ${ext}`);
    deflate = deflateParamsFor('client', params);
  }
  const peer = new FuzzPeer(socket, 'client', rest, deflate);
  socket.resume();
  return peer;
}

/** The frames a peer playing the server sends with its answer to the handshake (unmasked), as one buffer. */
export function earlyFrames(early: FrameSpec[]): Buffer {
  return Buffer.concat(early.map((f) => encodeFrame(f, false).bytes));
}

/** The peer playing the server on an accepted connection (a socket, or an h2 stream), with the extensions it answered. */
export function serverPeer(socket: net.Socket | Duplex, response: string | null, head: Buffer = EMPTY): FuzzPeer {
  const params = response ? parseDeflateHeader(response) : null;
  return new FuzzPeer(socket, 'server', head, params ? deflateParamsFor('server', params) : null);
}

/**
 * The peer as a server: a TCP listener on 127.0.0.1, port 0, that answers
 * one WebSocket handshake per `accept()` call, in order.
 */
export class FuzzServer {
  private readonly pending: net.Socket[] = [];
  private readonly waiting: Array<(socket: net.Socket) => void> = [];
  private readonly sockets = new Set<net.Socket>();

  private constructor(readonly server: net.Server) {
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      const waiter = this.waiting.shift();
      if (waiter) waiter(socket);
      else this.pending.push(socket);
    });
  }

  static async start(): Promise<FuzzServer> {
    const server = net.createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return new FuzzServer(server);
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}/`;
  }

  /**
   * Accept the next connection's handshake. `respond` sees the client's
   * Sec-WebSocket-Extensions offer and returns the value to answer with, or
   * null to decline every extension.
   */
  async accept(
    respond: (offer: string | undefined) => string | null,
    /** Frames to send in the same write as the 101 response (unmasked). */
    early: FrameSpec[] = [],
    ms = 2000,
  ): Promise<FuzzPeer> {
    const socket =
      this.pending.shift() ??
      (await new Promise<net.Socket>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no client connected')), ms);
        this.waiting.push((s) => {
          clearTimeout(timer);
          resolve(s);
        });
      }));
    const { head, rest } = await readHead(socket, ms);
    const [requestLine = '', ...lines] = head.split('\r\n');
    const headers = parseHeaders(lines);
    const key = headers.get('sec-websocket-key');
    if (!/^GET \S+ HTTP\/1\.1$/.test(requestLine) || !key || headers.get('upgrade')?.toLowerCase() !== 'websocket') {
      socket.destroy();
      throw new Error(`not a WebSocket upgrade request: ${requestLine}`);
    }
    const response = respond(headers.get('sec-websocket-extensions'));
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\n' +
        'Upgrade: websocket\r\n' +
        'Connection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${acceptFor(key)}\r\n` +
        (response ? `Sec-WebSocket-Extensions: ${response}\r\n` : '') +
        '\r\n' +
        earlyFrames(early).toString('latin1'),
      'latin1',
    );
    const peer = serverPeer(socket, response, rest);
    socket.resume();
    return peer;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
