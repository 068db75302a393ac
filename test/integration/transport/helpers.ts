/**
 * Shared helpers of the integration tests: loopback servers on port 0, waits
 * that fail instead of hanging, a raw TCP client for crafted bytes, and a
 * per-test harness that closes everything it opened (no leaked handles: the
 * test process must exit by itself).
 *
 * Nothing here adds an 'error' listener to a WebSocket unless asked: whether
 * one is attached changes behaviour (errors are only emitted to listeners).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import net from 'node:net';
import { after, type TestContext } from 'node:test';
import { WebSocket, WebSocketServer, type ClientOptions, type ServerOptions } from '../../../src/index.js';
import { sleep, until, within } from '../../support/wait.js';

export { sleep, until, within };

/** Default bound on every wait, in ms. Generous: loopback events take milliseconds. */
export const WAIT = 3000;

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export function acceptKey(key: string): string {
  return createHash('sha1').update(key + GUID).digest('base64');
}

/**
 * Resolve with the arguments of the next `event` on `emitter`, or reject
 * after `ms`. Unlike `events.once`, it attaches no 'error' listener.
 */
export function waitEvent<T extends unknown[] = any[]>(emitter: EventEmitter, event: string, ms = WAIT): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const listener = (...args: unknown[]): void => {
      clearTimeout(timer);
      resolve(args as T);
    };
    const timer = setTimeout(() => {
      emitter.removeListener(event, listener);
      reject(new Error(`timed out after ${ms} ms waiting for '${event}'`));
    }, ms);
    emitter.once(event, listener);
  });
}

/** Collect the next `n` 'message' events (data as received, isBinary). */
export function collectMessages(ws: WebSocket, n: number, ms = WAIT): Promise<Array<[unknown, boolean]>> {
  return new Promise((resolve, reject) => {
    const got: Array<[unknown, boolean]> = [];
    const listener = (data: unknown, isBinary: boolean): void => {
      got.push([data, isBinary]);
      if (got.length === n) {
        clearTimeout(timer);
        ws.removeListener('message', listener);
        resolve(got);
      }
    };
    const timer = setTimeout(() => {
      ws.removeListener('message', listener);
      reject(new Error(`timed out after ${ms} ms: ${got.length} of ${n} messages arrived`));
    }, ms);
    ws.on('message', listener);
  });
}

// ---------------------------------------------------------------------------
// Frames, built and read by hand (independent of src/protocol)

export interface RawFrameSpec {
  opcode: number;
  payload?: Uint8Array | string;
  fin?: boolean;
  rsv1?: boolean;
  rsv2?: boolean;
  rsv3?: boolean;
  /** Default true (a client's frames are masked). */
  mask?: boolean;
}

export function buildFrame(spec: RawFrameSpec): Buffer {
  const payload = typeof spec.payload === 'string' ? Buffer.from(spec.payload) : Buffer.from(spec.payload ?? []);
  const mask = spec.mask ?? true;
  const b0 = (spec.fin === false ? 0 : 0x80) | (spec.rsv1 ? 0x40 : 0) | (spec.rsv2 ? 0x20 : 0) | (spec.rsv3 ? 0x10 : 0) | spec.opcode;
  const len = payload.length;
  let head: Buffer;
  if (len < 126) {
    head = Buffer.from([b0, len]);
  } else if (len < 0x10000) {
    head = Buffer.alloc(4);
    head[0] = b0;
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  if (!mask) return Buffer.concat([head, payload]);
  head[1]! |= 0x80;
  const key = randomBytes(4);
  for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
  return Buffer.concat([head, key, payload]);
}

export function closePayload(code: number, reason = ''): Buffer {
  const out = Buffer.alloc(2 + Buffer.byteLength(reason));
  out.writeUInt16BE(code, 0);
  out.write(reason, 2);
  return out;
}

export interface ReadFrame {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  masked: boolean;
  /** Unmasked. */
  payload: Buffer;
}

/** Parse one frame at the start of `buf`; null when it is incomplete. */
export function parseFrame(buf: Buffer): { frame: ReadFrame; size: number } | null {
  if (buf.length < 2) return null;
  let at = 2;
  let len = buf[1]! & 0x7f;
  if (len === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    at = 4;
  } else if (len === 127) {
    if (buf.length < 10) return null;
    len = Number(buf.readBigUInt64BE(2));
    at = 10;
  }
  const masked = (buf[1]! & 0x80) !== 0;
  const key = masked ? buf.subarray(at, at + 4) : null;
  if (masked) at += 4;
  if (buf.length < at + len) return null;
  const payload = Buffer.from(buf.subarray(at, at + len));
  if (key) for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
  return {
    frame: { fin: (buf[0]! & 0x80) !== 0, rsv1: (buf[0]! & 0x40) !== 0, opcode: buf[0]! & 0x0f, masked, payload },
    size: at + len,
  };
}

// ---------------------------------------------------------------------------
// Raw TCP client

export interface HttpHead {
  status: number;
  statusLine: string;
  /** Lower-case names; repeated headers joined with ', '. */
  headers: Record<string, string>;
}

/** A TCP connection that buffers what it receives, for crafted requests and frames. */
export class RawClient {
  readonly socket: net.Socket;
  private buffer: Buffer = Buffer.alloc(0);
  private ended = false;
  private closedFlag = false;
  private waiters: Array<() => void> = [];
  readonly closed: Promise<void>;

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      this.wake();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
    // A reset from the server is a way of closing; tests look at `closed`.
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.closedFlag = true;
        this.ended = true;
        this.wake();
        resolve();
      }),
    );
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, host);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.removeListener('error', reject);
        resolve(new RawClient(socket));
      });
    });
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  /** Whether the peer ended or closed the stream. */
  get isEnded(): boolean {
    return this.ended;
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Wait until `take(buffer)` returns a value, then consume what it reports as used. */
  private async read<T>(take: (buf: Buffer) => { value: T; size: number } | null, ms: number, what: string): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const got = take(this.buffer);
      if (got) {
        this.buffer = this.buffer.subarray(got.size);
        return got.value;
      }
      if (this.ended) throw new Error(`connection ended while waiting for ${what} (${this.buffer.length} bytes buffered)`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Read an HTTP response head (status line and headers). */
  readHead(ms = WAIT): Promise<HttpHead> {
    return this.read(
      (buf) => {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return null;
        const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
        const statusLine = lines[0]!;
        const headers: Record<string, string> = {};
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(':');
          const name = line.slice(0, colon).trim().toLowerCase();
          const value = line.slice(colon + 1).trim();
          headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
        }
        return { value: { status: Number(statusLine.split(' ')[1]), statusLine, headers }, size: end + 4 };
      },
      ms,
      'an HTTP response head',
    );
  }

  /** Read one WebSocket frame. */
  readFrame(ms = WAIT): Promise<ReadFrame> {
    return this.read(
      (buf) => {
        const got = parseFrame(buf);
        return got && { value: got.frame, size: got.size };
      },
      ms,
      'a frame',
    );
  }

  /** Read `n` bytes (an HTTP body of known length, say). */
  readBytes(n: number, ms = WAIT): Promise<Buffer> {
    return this.read((buf) => (buf.length >= n ? { value: Buffer.from(buf.subarray(0, n)), size: n } : null), ms, `${n} bytes`);
  }

  /** Bytes received and not read yet. */
  get pending(): number {
    return this.buffer.length;
  }

  /** Resolve once the connection is closed; reject after `ms`. */
  waitClosed(ms = WAIT): Promise<void> {
    return within(this.closed, ms, 'the TCP connection to close');
  }

  /** Resolve once the peer ended the stream (FIN or close); reject after `ms`. */
  waitEnded(ms = WAIT): Promise<void> {
    return this.read((buf) => (this.ended && buf.length === 0 ? { value: undefined, size: 0 } : null), ms, 'the end of the stream').catch(
      (err: Error) => {
        if (this.ended) return;
        throw err;
      },
    );
  }
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

// ---------------------------------------------------------------------------
// Per-test harness

export interface Harness {
  /** A `WebSocketServer` on 127.0.0.1, port 0, listening. */
  server(options?: Omit<ServerOptions, 'port' | 'server' | 'noServer'>): Promise<{ wss: WebSocketServer; port: number; url: string }>;
  /** A client, not yet open. */
  client(url: string | URL, protocols?: string | string[] | ClientOptions, options?: ClientOptions): WebSocket;
  /** A client, open. */
  open(url: string | URL, protocols?: string | string[] | ClientOptions, options?: ClientOptions): Promise<WebSocket>;
  /** A raw TCP client. */
  raw(port: number): Promise<RawClient>;
  /** A raw client that completed a valid opening handshake (masked frames are up to the test). */
  rawWebSocket(port: number, options?: { path?: string; headers?: Record<string, string | null> }): Promise<{ raw: RawClient; head: HttpHead }>;
  /** Register a cleanup step (run before servers are closed). */
  defer(fn: () => unknown): void;
  /** Register a `WebSocketServer` created by the test itself, for cleanup. */
  track(wss: WebSocketServer): void;
  /** Register a net/http server created by the test itself, for cleanup. */
  trackServer(server: net.Server): void;
}

/**
 * Everything opened through the harness is closed after the test: raw
 * sockets destroyed, clients terminated, servers' clients terminated and
 * servers closed, in that order.
 */
export function harness(t: TestContext): Harness {
  const raws: RawClient[] = [];
  const clients: WebSocket[] = [];
  const servers: WebSocketServer[] = [];
  const netServers: net.Server[] = [];
  const deferred: Array<() => unknown> = [];

  t.after(async () => {
    for (const fn of deferred) await fn();
    for (const r of raws) r.destroy();
    for (const c of clients) c.terminate();
    for (const wss of servers) {
      for (const ws of wss.clients) ws.terminate();
      await within(
        new Promise<void>((resolve) => wss.close(() => resolve())),
        WAIT,
        'WebSocketServer#close in cleanup',
      ).catch(() => {});
    }
    for (const s of netServers) {
      (s as net.Server & { closeAllConnections?(): void }).closeAllConnections?.();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  });

  const h: Harness = {
    async server(options = {}) {
      const wss = new WebSocketServer({ host: '127.0.0.1', ...options, port: 0 });
      servers.push(wss);
      await waitEvent(wss, 'listening');
      const port = (wss.address() as net.AddressInfo).port;
      return { wss, port, url: `ws://127.0.0.1:${port}` };
    },
    client(url, protocols, options) {
      const ws = new WebSocket(url, protocols as string[], options);
      clients.push(ws);
      return ws;
    },
    async open(url, protocols, options) {
      const ws = h.client(url, protocols, options);
      const failed = new Promise<never>((_, reject) =>
        ws.once('close', (code: number) => reject(new Error(`client closed with ${code} before 'open'`))),
      );
      await Promise.race([waitEvent(ws, 'open'), failed]);
      return ws;
    },
    async raw(port) {
      const r = await RawClient.connect(port);
      raws.push(r);
      return r;
    },
    async rawWebSocket(port, options = {}) {
      const raw = await h.raw(port);
      const key = randomBytes(16).toString('base64');
      raw.write(upgradeRequest({ key, path: options.path, headers: options.headers }));
      const head = await raw.readHead();
      assert.equal(head.status, 101, `upgrade refused: ${head.statusLine}`);
      assert.equal(head.headers['sec-websocket-accept'], acceptKey(key));
      return { raw, head };
    },
    defer(fn) {
      deferred.push(fn);
    },
    track(wss) {
      servers.push(wss);
    },
    trackServer(server) {
      netServers.push(server);
    },
  };
  return h;
}

/** Listen on 127.0.0.1 port 0 and return the port. */
export async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  return (server.address() as net.AddressInfo).port;
}

/** The client's close event as `[code, reason string]`. */
export async function closeOf(ws: WebSocket, ms = WAIT): Promise<[number, string]> {
  if (ws.readyState === WebSocket.CLOSED) throw new Error('already closed; wait for close before it happens');
  const [code, reason] = await waitEvent<[number, Buffer]>(ws, 'close', ms);
  return [code, reason.toString()];
}

// ---------------------------------------------------------------------------
// Leak check (centrifuge-style): after the last test of each file, no socket,
// server or timer opened by the tests may remain.

after(async () => {
  const leaks = (): string[] =>
    process.getActiveResourcesInfo().filter((r) => r === 'TCPWRAP' || r === 'TCPServerWrap' || r === 'TLSWrap' || r === 'Timeout' || r === 'ProcessWrap');
  const deadline = Date.now() + WAIT;
  while (leaks().length > 0 && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(leaks(), [], 'handles left open after the tests');
});
