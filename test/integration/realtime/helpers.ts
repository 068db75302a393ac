/**
 * Helpers of the realtime integration tests: a `RealtimeServer` on
 * 127.0.0.1 port 0 that is closed after the test, a protocol client over our
 * own `WebSocket` (JSON or MessagePack), signed tokens, and plain HTTP
 * requests (API calls, refused upgrades). Every wait is bounded: a broken
 * behaviour fails the test instead of hanging it.
 *
 * Importing this module also imports ../helpers.ts, whose `after` hook fails
 * the file when sockets, servers or timers are left open.
 */
import http from 'node:http';
import type { TestContext } from 'node:test';
import { SignJWT } from 'jose';
import { encode as pack, decode as unpack } from '@msgpack/msgpack';
import { WebSocket, type ClientOptions } from '../../../src/index.js';
import { createRealtimeServer, type RealtimeServer, type RealtimeServerOptions } from '../../../src/server/realtime-server.js';
import type { Logger } from '../../../src/realtime/transport.js';
import { WAIT, within } from '../helpers.js';

export { sleep, until, WAIT, within } from '../helpers.js';

/** HMAC secret of the test servers (≥ 32 bytes, RFC 7518 §3.2). */
export const SECRET = 'switchboard-test-secret-0123456789abcdef';
/** API key of the test servers. */
export const API_KEY = 'test-api-key-0123456789';

// ---------------------------------------------------------------------------
// Tokens

export interface TokenOptions {
  /** Lifetime in seconds (may be negative for an expired token). Default 3600. */
  ttl?: number;
  channels?: Record<string, string[]>;
  info?: unknown;
  secret?: string;
}

/** An HS256 JWT for `sub`. */
export function signToken(sub: string, options: TokenOptions = {}): Promise<string> {
  const claims: Record<string, unknown> = {};
  if (options.channels !== undefined) claims.channels = options.channels;
  if (options.info !== undefined) claims.info = options.info;
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setIssuedAt(now)
    .setExpirationTime(now + (options.ttl ?? 3600))
    .sign(new TextEncoder().encode(options.secret ?? SECRET));
}

// ---------------------------------------------------------------------------
// Servers

/** A logger that keeps every line (level, message, bindings and fields). */
export interface CapturedLogger extends Logger {
  lines: Array<Record<string, unknown>>;
}

export function captureLogger(lines: Array<Record<string, unknown>> = [], bindings: object = {}): CapturedLogger {
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, msg, ...bindings, ...obj });
    };
  return {
    lines,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (more) => captureLogger(lines, { ...bindings, ...more }),
  };
}

/** Recursive merge of plain objects (arrays and scalars replace). */
function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] =
      v && b && typeof v === 'object' && typeof b === 'object' && !Array.isArray(v) && !Array.isArray(b)
        ? merge(b as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/** The config every test server starts from; a test's `config` is merged over it. */
export function testConfig(): RealtimeServerOptions['config'] {
  return {
    host: '127.0.0.1',
    port: 0,
    auth: { hmacSecret: SECRET },
    apiKey: API_KEY,
    heartbeat: { intervalMs: 0, timeoutMs: 1000 },
    shutdown: { timeoutMs: 2000, reconnectJitterMs: 1000 },
    log: { level: 'silent' },
  };
}

export interface TestServer {
  server: RealtimeServer;
  port: number;
  /** `ws://127.0.0.1:<port>/rt` (the configured path). */
  url: string;
  /** `http://127.0.0.1:<port>`. */
  base: string;
  /** Every log line of the server. */
  logs: Array<Record<string, unknown>>;
}

/**
 * A realtime server on 127.0.0.1, port 0, listening; closed after the test
 * (clients opened with {@link connect} are terminated first).
 */
export async function startServer(
  t: TestContext,
  options: Omit<RealtimeServerOptions, 'config'> & { config?: Record<string, unknown> } = {},
): Promise<TestServer> {
  const logger = captureLogger();
  const config = merge(testConfig() as Record<string, unknown>, (options.config ?? {}) as Record<string, unknown>);
  const server = createRealtimeServer({ logger, ...options, config });
  t.after(() => within(server.close(), 5000, 'RealtimeServer#close in cleanup'));
  const address = await server.listen();
  const base = `http://127.0.0.1:${address.port}`;
  return { server, port: address.port, url: `ws://127.0.0.1:${address.port}${server.config.path}`, base, logs: logger.lines };
}

// ---------------------------------------------------------------------------
// Protocol client

export type Message = Record<string, any>;

export interface ConnectOptions extends ClientOptions {
  /** Subprotocols offered. Default `['switchboard.v1.json']`; `[]` offers none. */
  protocols?: string[];
}

/**
 * A realtime client on our `WebSocket`: decodes each message by the
 * negotiated subprotocol (MessagePack in binary frames, else JSON), queues
 * it, and lets the test take messages by predicate with a bounded wait.
 */
export class RtClient {
  readonly ws: WebSocket;
  /** Everything received, in order (taken or not). */
  readonly received: Message[] = [];
  /** Frames received as binary, in order (true/false per message). */
  readonly binary: boolean[] = [];
  /** Resolves with the close code and reason. */
  readonly closed: Promise<{ code: number; reason: string }>;
  private inbox: Message[] = [];
  private waiters: Array<() => void> = [];
  private nextId = 1;
  private closeInfo: { code: number; reason: string } | null = null;

  constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      let msg: Message;
      try {
        msg = isBinary ? (unpack(data) as Message) : (JSON.parse(data.toString()) as Message);
      } catch {
        msg = { op: '<undecodable>', raw: data.toString('hex').slice(0, 200) };
      }
      this.received.push(msg);
      this.binary.push(isBinary);
      this.inbox.push(msg);
      this.wake();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code: number, reason: Buffer) => {
        this.closeInfo = { code, reason: reason.toString() };
        this.wake();
        resolve(this.closeInfo);
      });
    });
  }

  get isClosed(): boolean {
    return this.closeInfo !== null;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Send one message, encoded for the negotiated subprotocol. */
  send(message: object): void {
    if (this.ws.protocol === 'switchboard.v1.msgpack') this.ws.send(pack(message), { binary: true });
    else this.ws.send(JSON.stringify(message));
  }

  /** Take the first queued message matching `match` (default: any), waiting up to `ms`. */
  async next(match: (m: Message) => boolean = () => true, ms = WAIT, what = 'a matching message'): Promise<Message> {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.inbox.findIndex(match);
      if (i !== -1) return this.inbox.splice(i, 1)[0]!;
      if (this.closeInfo) throw new Error(`closed (${this.closeInfo.code} ${this.closeInfo.reason}) while waiting for ${what}; got ${JSON.stringify(this.inbox).slice(0, 300)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}; got ${JSON.stringify(this.inbox).slice(0, 300)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Take the next message with this `op`. */
  nextOp(op: string, ms = WAIT): Promise<Message> {
    return this.next((m) => m.op === op, ms, `op ${op}`);
  }

  /** Take `n` messages with this `op`, in order. */
  async take(op: string, n: number, ms = WAIT): Promise<Message[]> {
    const out: Message[] = [];
    const deadline = Date.now() + ms;
    while (out.length < n) out.push(await this.next((m) => m.op === op, Math.max(1, deadline - Date.now()), `${op} #${out.length + 1} of ${n}`));
    return out;
  }

  /** Messages queued and not taken yet. */
  pending(): Message[] {
    return [...this.inbox];
  }

  /** Send a request with a fresh id and take its reply (`ok` or `error`). */
  async request(op: string, fields: object = {}, ms = WAIT): Promise<Message> {
    const id = this.nextId++;
    this.send({ op, id, ...fields });
    return this.next((m) => (m.op === 'ok' || m.op === 'error') && m.id === id, ms, `the reply to ${op} #${id}`);
  }

  /** Like {@link request}, but the reply must be `ok`. */
  async ok(op: string, fields: object = {}, ms = WAIT): Promise<Message> {
    const reply = await this.request(op, fields, ms);
    if (reply.op !== 'ok') throw new Error(`${op} failed: ${JSON.stringify(reply)}`);
    return reply;
  }

  /** Wait for the close; returns code and reason. */
  closeOf(ms = WAIT): Promise<{ code: number; reason: string }> {
    return within(this.closed, ms, 'the connection to close');
  }
}

/**
 * Open a realtime connection (our `WebSocket`); rejects when the upgrade is
 * refused. Terminated after the test.
 */
export async function connect(t: TestContext, url: string, options: ConnectOptions = {}): Promise<RtClient> {
  const { protocols = ['switchboard.v1.json'], ...clientOptions } = options;
  const ws = new WebSocket(url, protocols, { perMessageDeflate: false, handshakeTimeout: WAIT, ...clientOptions });
  t.after(() => ws.terminate());
  const client = new RtClient(ws);
  await within(
    new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('close', (code: number) => reject(new Error(`closed with ${code} before 'open'`)));
    }),
    WAIT,
    `the connection to ${url} to open`,
  );
  return client;
}

/** {@link connect}, then `auth` with a token for `user`; returns the client and the `ok` reply. */
export async function connectAs(t: TestContext, url: string, user: string, token?: TokenOptions, options: ConnectOptions = {}): Promise<RtClient> {
  const client = await connect(t, url, options);
  await client.ok('auth', { token: await signToken(user, token) });
  return client;
}

// ---------------------------------------------------------------------------
// HTTP

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The body parsed as JSON (throws when it is not). */
  json(): any;
}

/** One HTTP request on a fresh connection (no keep-alive). A JSON `body` object is sent with Content-Type application/json. */
export function httpRequest(
  base: string,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: unknown; ms?: number } = {},
): Promise<HttpResult> {
  const { method = options.body === undefined ? 'GET' : 'POST', ms = WAIT } = options;
  const headers: Record<string, string> = { ...options.headers };
  let body: string | undefined;
  if (typeof options.body === 'string') body = options.body;
  else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['Content-Type'] ??= 'application/json';
  }
  return within(
    new Promise<HttpResult>((resolve, reject) => {
      const req = http.request(new URL(path, base), { method, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    }),
    ms,
    `${method} ${path}`,
  );
}

/** `httpRequest` with `Authorization: Bearer <API_KEY>`. */
export function api(base: string, path: string, body?: unknown, method?: string): Promise<HttpResult> {
  return httpRequest(base, path, { method, body, headers: { Authorization: `Bearer ${API_KEY}` } });
}

/**
 * A WebSocket upgrade request by plain `node:http`: the status, headers and
 * body of a refusal, or status 101 (the socket is then destroyed at once).
 */
export function upgrade(base: string, path: string, headers: Record<string, string> = {}): Promise<HttpResult> {
  return within(
    new Promise<HttpResult>((resolve, reject) => {
      const req = http.request(new URL(path, base), {
        agent: false,
        headers: {
          Connection: 'Upgrade',
          Upgrade: 'websocket',
          'Sec-WebSocket-Version': '13',
          'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
          ...headers,
        },
      });
      req.on('upgrade', (res, socket) => {
        socket.destroy();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text: '', json: () => undefined });
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    }),
    WAIT,
    `the upgrade of ${path}`,
  );
}
