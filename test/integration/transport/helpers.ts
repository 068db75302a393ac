/**
 * Helpers of the WebSocket-layer integration tests: loopback servers on port
 * 0, a raw TCP client for crafted bytes, and a per-test harness that closes
 * everything it opened. The frames, waits and the leak check (imported here:
 * the test process must exit by itself) come from test/support/.
 *
 * Nothing here adds an 'error' listener to a WebSocket unless asked: whether
 * one is attached changes behaviour (errors are only emitted to listeners).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { TestContext } from 'node:test';
import { WebSocket, WebSocketServer, type ClientOptions, type ServerOptions } from '../../../src/index.js';
import { acceptKey, decodeFrame, encodeFrame, upgradeRequest, type DecodedFrame, type FrameSpec } from '../../support/frames.js';
import { sleep, until, WAIT, waitEvent, within } from '../../support/wait.js';
import '../../support/leak-check.js';

export { sleep, until, WAIT, waitEvent, within };
export { acceptKey, closePayload, upgradeRequest } from '../../support/frames.js';

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

/** A frame as a client sends it: masked (with a random key) unless `mask: false`. */
export function buildFrame(spec: Omit<FrameSpec, 'mask'> & { mask?: boolean }): Buffer {
  return encodeFrame({ ...spec, mask: spec.mask ?? true });
}

export type ReadFrame = DecodedFrame;

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
        const got = decodeFrame(buf);
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

// ---------------------------------------------------------------------------
// Per-test harness

export interface Harness {
  /** A `WebSocketServer` on 127.0.0.1, port 0, listening. */
  server(options?: Omit<ServerOptions, 'port' | 'server' | 'noServer'>): Promise<{ wss: WebSocketServer; port: number; url: string }>;
  /** A server and one open client, with the server's side of the connection. */
  pair(
    options?: Omit<ServerOptions, 'port' | 'server' | 'noServer'>,
    clientOptions?: ClientOptions,
  ): Promise<{ wss: WebSocketServer; port: number; url: string; client: WebSocket; server: WebSocket }>;
  /** A server and one raw client past the opening handshake, with the server's side of the connection. */
  rawPair(options?: Omit<ServerOptions, 'port' | 'server' | 'noServer'>): Promise<{ wss: WebSocketServer; port: number; raw: RawClient; server: WebSocket }>;
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
    async pair(options = {}, clientOptions) {
      const { wss, port, url } = await h.server(options);
      const conn = waitEvent<[WebSocket]>(wss, 'connection');
      const client = await h.open(url, clientOptions);
      const [server] = await conn;
      return { wss, port, url, client, server };
    },
    async rawPair(options = {}) {
      const { wss, port } = await h.server(options);
      const conn = waitEvent<[WebSocket]>(wss, 'connection');
      const { raw } = await h.rawWebSocket(port);
      const [server] = await conn;
      return { wss, port, raw, server };
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
