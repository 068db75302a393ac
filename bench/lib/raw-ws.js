// A minimal WebSocket client over raw TCP, for the fan-out load generator.
//
// It is neither Switchboard nor `ws`, so the subscriber side favours neither
// server. It does only what a subscriber that counts messages needs:
//
//   - the opening handshake (RFC 6455 §4.1): GET with a random key, then
//     "HTTP/1.1 101" and a matching Sec-WebSocket-Accept; no subprotocol and
//     no extension is offered, so none may come back;
//   - a frame parser for server frames (unmasked, §5.1) that counts frames
//     and, only on connections with `collect` set, hands out the payload;
//   - masked client frames (§5.3) for the few messages a client sends
//     (subscribe, publish, pong).
//
// Cheap on purpose: sockets use `onread` with one shared read buffer (no
// stream machinery and no Buffer allocation per read), the parser is a
// numeric state machine with its fields set up in the constructor, and a
// connection that does not collect never touches its payload bytes.

import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import net from 'node:net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const MAX_HANDSHAKE_BYTES = 16 * 1024;
const MAX_PAYLOAD = 1024 * 1024;

/**
 * Every socket reads into this buffer. Safe because the onread callback
 * parses a chunk completely before the next read; anything kept past the
 * callback (a payload split over reads) is copied out.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

// Parser states.
const HANDSHAKE = 0;
const HEADER = 1;
const PAYLOAD = 2;
const CLOSED = 3;

// Opcodes (RFC 6455 §5.2).
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;

// Mask keys come from a pool refilled in one call.
const MASK_POOL = Buffer.allocUnsafe(8 * 1024);
let maskOffset = MASK_POOL.length;

function nextMask() {
  if (maskOffset + 4 > MASK_POOL.length) {
    randomFillSync(MASK_POOL);
    maskOffset = 0;
  }
  maskOffset += 4;
  return maskOffset - 4;
}

/**
 * Frame `payload` as one masked client frame, written into `out` at `at`.
 * @returns {number} the offset after the frame
 */
function writeMaskedFrame(out, at, opcode, payload) {
  const len = payload.length;
  out[at++] = 0x80 | opcode; // FIN
  if (len < 126) {
    out[at++] = 0x80 | len;
  } else if (len < 65536) {
    out[at++] = 0x80 | 126;
    out.writeUInt16BE(len, at);
    at += 2;
  } else {
    out[at++] = 0x80 | 127;
    out.writeUInt32BE(0, at);
    out.writeUInt32BE(len, at + 4);
    at += 8;
  }
  const m = nextMask();
  MASK_POOL.copy(out, at, m, m + 4);
  at += 4;
  for (let i = 0; i < len; i++) out[at + i] = payload[i] ^ MASK_POOL[m + (i & 3)];
  return at + len;
}

function maskedFrameSize(len) {
  return len + 4 + (len < 126 ? 2 : len < 65536 ? 4 : 10);
}

/** One or more masked frames in one Buffer (one write, one syscall). */
export function maskedFrames(opcode, payloads) {
  let size = 0;
  for (const p of payloads) size += maskedFrameSize(p.length);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const p of payloads) at = writeMaskedFrame(out, at, opcode, p);
  return out;
}

/**
 * The handler is the seam between this parser and the load generator; one
 * handler object serves every connection (no closure per message).
 *
 * @typedef {object} RawHandler
 * @property {(conn: RawWebSocket) => void} onOpen       handshake done
 * @property {(conn: RawWebSocket, payload: Buffer|null, length: number) => void} onMessage
 *   a complete text or binary frame; `payload` is a view valid only during
 *   the call, or null when the connection does not collect
 * @property {(conn: RawWebSocket, reason: string) => void} onClose  the connection ended, for any reason
 */

export class RawWebSocket {
  /**
   * @param {{ host: string, port: number, path: string, localAddress?: string, extraHeaders?: string }} target
   *   `extraHeaders`: more request header lines, each ending in CRLF (a credential)
   * @param {RawHandler} handler
   * @param {number} index  the caller's number for this connection
   */
  constructor(target, handler, index) {
    this.handler = handler;
    this.index = index;
    /** Hand payloads to onMessage (else only their length). */
    this.collect = true;
    /** Hand payloads of frames up to this many bytes even when not collecting (Engine.IO's 1-byte pings). */
    this.collectUpTo = 0;
    /** Answer the server's pings (false: a peer that went silent, for heartbeat tests). */
    this.answerPings = true;
    /** Counters the load generator keeps per connection. */
    this.ready = false;
    this.received = 0;
    this.probe = false;
    this.checked = false;
    this.channel = 0;
    this.state = HANDSHAKE;
    this.closeReason = null;
    // handshake
    this.key = randomBytes(16).toString('base64');
    this.response = '';
    // frame parser
    this.header = Buffer.alloc(14);
    this.headerHave = 0;
    this.opcode = 0;
    this.remaining = 0;
    this.frameLength = 0;
    /** Payload of a collected frame split across reads (a copy). */
    this.partial = null;
    this.partialHave = 0;

    this.socket = net.connect({
      host: target.host,
      port: target.port,
      localAddress: target.localAddress,
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: this.onRead.bind(this) },
    });
    this.socket.on('connect', this.onConnect.bind(this, target));
    this.socket.on('error', this.onSocketError.bind(this));
    this.socket.on('close', this.onSocketClose.bind(this));
  }

  onConnect(target) {
    this.socket.write(
      `GET ${target.path} HTTP/1.1\r\nHost: ${target.host}:${target.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${this.key}\r\nSec-WebSocket-Version: 13\r\n${target.extraHeaders ?? ''}\r\n`,
    );
  }

  onSocketError(err) {
    this.fail(`socket error: ${err.message}`);
  }

  onSocketClose() {
    this.fail('connection closed');
  }

  /** Send text messages, masked, in one write. */
  sendText(...messages) {
    if (this.state === CLOSED) return;
    this.socket.write(maskedFrames(OP_TEXT, messages.map((m) => Buffer.from(m))));
  }

  /** Send pre-encoded payloads (Buffers) as text frames in one write. */
  sendTextBuffers(payloads) {
    if (this.state === CLOSED) return;
    this.socket.write(maskedFrames(OP_TEXT, payloads));
  }

  /** Drop the connection without a closing handshake (the run is over). */
  destroy() {
    this.state = CLOSED;
    this.socket.destroy();
  }

  fail(reason) {
    if (this.state === CLOSED) return;
    this.state = CLOSED;
    this.closeReason = reason;
    this.socket.destroy();
    this.handler.onClose(this, reason);
  }

  onRead(nread, buf) {
    if (this.state === CLOSED) return false;
    let i = 0;
    if (this.state === HANDSHAKE) {
      i = this.readHandshake(buf, nread);
      if (i < 0) return this.state !== CLOSED;
    }
    this.parse(buf, i, nread);
    return this.state !== CLOSED;
  }

  /** @returns {number} offset of the first frame byte, or -1 when the response is incomplete */
  readHandshake(buf, end) {
    // Responses are ASCII; latin1 keeps byte offsets equal to string offsets.
    this.response += buf.toString('latin1', 0, end);
    const headEnd = this.response.indexOf('\r\n\r\n');
    if (headEnd === -1) {
      if (this.response.length > MAX_HANDSHAKE_BYTES) this.fail('handshake response too large');
      return -1;
    }
    const head = this.response.slice(0, headEnd);
    const lines = head.split('\r\n');
    if (!/^HTTP\/1\.1 101 /.test(lines[0])) {
      this.fail(`handshake refused: ${lines[0]}`);
      return -1;
    }
    const headers = new Map();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const expected = createHash('sha1').update(this.key + GUID).digest('base64');
    if (headers.get('sec-websocket-accept') !== expected) {
      this.fail('handshake: wrong Sec-WebSocket-Accept');
      return -1;
    }
    if (headers.has('sec-websocket-extensions') || headers.has('sec-websocket-protocol')) {
      this.fail('handshake: the server chose an extension or subprotocol that was not offered');
      return -1;
    }
    const consumed = headEnd + 4 - (this.response.length - end);
    this.response = '';
    this.state = HEADER;
    this.handler.onOpen(this);
    return consumed;
  }

  parse(buf, i, end) {
    while (i < end && this.state !== CLOSED) {
      if (this.state === PAYLOAD) {
        const take = Math.min(this.remaining, end - i);
        if (this.partial !== null) {
          buf.copy(this.partial, this.partialHave, i, i + take);
          this.partialHave += take;
        }
        i += take;
        this.remaining -= take;
        if (this.remaining === 0) {
          const payload = this.partial;
          this.partial = null;
          this.state = HEADER;
          this.frame(payload);
        }
        continue;
      }
      // HEADER. Fast path: the whole header (and often the frame) is in this chunk.
      let b0;
      let b1;
      let len;
      let at;
      if (this.headerHave === 0 && end - i >= 2) {
        b0 = buf[i];
        b1 = buf[i + 1];
        len = b1 & 0x7f;
        const size = len < 126 ? 2 : len === 126 ? 4 : 10;
        if (end - i < size) {
          this.headerHave = end - i;
          buf.copy(this.header, 0, i, end);
          return;
        }
        if (len === 126) len = buf.readUInt16BE(i + 2);
        else if (len === 127) len = buf.readUInt32BE(i + 2) === 0 ? buf.readUInt32BE(i + 6) : Infinity;
        at = i + size;
      } else {
        // Slow path: gather header bytes across reads.
        const need0 = this.headerHave < 2 ? 2 : 0;
        if (need0) {
          const take = Math.min(2 - this.headerHave, end - i);
          buf.copy(this.header, this.headerHave, i, i + take);
          this.headerHave += take;
          i += take;
          if (this.headerHave < 2) return;
        }
        const l7 = this.header[1] & 0x7f;
        const size = l7 < 126 ? 2 : l7 === 126 ? 4 : 10;
        if (this.headerHave < size) {
          const take = Math.min(size - this.headerHave, end - i);
          buf.copy(this.header, this.headerHave, i, i + take);
          this.headerHave += take;
          i += take;
          if (this.headerHave < size) return;
        }
        b0 = this.header[0];
        b1 = this.header[1];
        len = l7 === 126 ? this.header.readUInt16BE(2) : l7 === 127 ? (this.header.readUInt32BE(2) === 0 ? this.header.readUInt32BE(6) : Infinity) : l7;
        this.headerHave = 0;
        at = i;
      }
      if (b1 & 0x80) return this.fail('protocol error: masked frame from the server');
      if ((b0 & 0x80) === 0 || (b0 & 0x0f) === 0) return this.fail('protocol error: fragmented message (not expected in this benchmark)');
      if (b0 & 0x70) return this.fail('protocol error: RSV bits set without an extension');
      if (len > MAX_PAYLOAD) return this.fail(`frame of ${len} bytes is larger than this client accepts`);
      this.opcode = b0 & 0x0f;
      this.frameLength = len;
      const wantPayload = this.collect || this.opcode >= OP_CLOSE || len <= this.collectUpTo;
      if (end - at >= len) {
        // Whole payload in this chunk: a view, no copy.
        i = at + len;
        this.frame(wantPayload ? buf.subarray(at, i) : null);
      } else {
        i = at;
        this.remaining = len;
        this.partial = wantPayload ? Buffer.allocUnsafe(len) : null;
        this.partialHave = 0;
        this.state = PAYLOAD;
      }
    }
  }

  frame(payload) {
    const op = this.opcode;
    if (op === OP_TEXT || op === OP_BINARY) {
      this.handler.onMessage(this, payload, this.frameLength);
    } else if (op === OP_PING) {
      if (this.answerPings) this.socket.write(maskedFrames(0xa, [Buffer.from(payload)]));
    } else if (op === OP_CLOSE) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      const reason = payload.length > 2 ? payload.toString('utf8', 2) : '';
      this.fail(`closed by the server: ${code}${reason ? ` ${reason}` : ''}`);
    } else if (op !== 0xa) {
      this.fail(`protocol error: unexpected opcode ${op}`);
    }
  }
}
