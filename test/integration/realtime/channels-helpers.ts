/**
 * Helpers of the channel tests (channels*.test.ts): a realtime server on
 * 127.0.0.1 port 0 with its memory broker and presence store in reach, HS256
 * tokens signed with jose, and `RtClient`, our `WebSocket` speaking the
 * realtime protocol (JSON or MessagePack) that records every message it gets.
 *
 * Every wait is bounded; `startRealtime(t, ...)` closes the server and every
 * client it made when the test ends.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { SignJWT } from 'jose';
import { encode as pack, decode as unpack } from '@msgpack/msgpack';
import { MemoryBroker, MemoryPresenceStore } from '../../../src/brokers/memory/memory-broker.js';
import { WebSocket } from '../../../src/index.js';
import type { DeepPartial, NamespaceConfig, RealtimeConfig } from '../../../src/server/config.js';
import { createRealtimeServer, type RealtimeServer } from '../../../src/server/realtime-server.js';

/** Default bound on every wait, in ms. */
export const WAIT = 3000;

export const SECRET = 'channels-test-secret-0123456789abcdef';

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Poll `predicate` every 5 ms; reject after `ms`. */
export async function until(predicate: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** A token for `user`, valid one hour unless `expSeconds` says otherwise. */
export function signToken(user: string, claims: Record<string, unknown> = {}, expSeconds = 3600): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(user)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + expSeconds)
    .sign(new TextEncoder().encode(SECRET));
}

/**
 * A memory broker whose `history` answers late: it waits a few ms before
 * reading (publications meanwhile are both in history and delivered live)
 * and again before answering (publications meanwhile are only delivered
 * live), like a broker across the network. Exercises the resume race.
 */
export class SlowHistoryBroker extends MemoryBroker {
  /** `randomMs`: up to this many ms before and after the read; `fixedMs`: this many ms more before it. */
  constructor(private readonly delays: { randomMs?: number; fixedMs?: number }) {
    super();
  }

  override async history(...args: Parameters<MemoryBroker['history']>): ReturnType<MemoryBroker['history']> {
    const { randomMs = 0, fixedMs = 0 } = this.delays;
    await sleep(fixedMs + Math.random() * randomMs);
    const result = await super.history(...args);
    await sleep(Math.random() * randomMs);
    return result;
  }
}

export type Namespace = Partial<NamespaceConfig> & { prefix: string };

export interface Realtime {
  server: RealtimeServer;
  broker: MemoryBroker;
  presence: MemoryPresenceStore;
  url: string;
  port: number;
  /** Connect a client (authenticated with a token for `user` unless `user` is null). */
  connect(user?: string | null, options?: ConnectOptions): Promise<RtClient>;
  /** Clients connected and not closed yet. */
  clients: Set<RtClient>;
  /** Terminate every client, close the server. */
  close(): Promise<void>;
}

export interface ConnectOptions {
  protocol?: 'switchboard.v1.json' | 'switchboard.v1.msgpack';
  /** Extra token claims (`info`, `channels`). */
  claims?: Record<string, unknown>;
  /** Offer permessage-deflate. Default false. */
  deflate?: boolean;
}

/**
 * A server with HS256 auth (anonymous connections allowed too), heartbeats
 * off, limits raised far above what the tests send, and `namespaces`.
 * Closed with every client it connected when the test ends.
 */
export async function startRealtime(
  t: TestContext,
  namespaces: Namespace[],
  overrides: DeepPartial<RealtimeConfig> = {},
  extra: { broker?: MemoryBroker } = {},
): Promise<Realtime> {
  const rt = await createRealtime(namespaces, overrides, extra);
  t.after(() => rt.close());
  return rt;
}

/** {@link startRealtime} without a test context: call `close()` yourself. */
export async function createRealtime(
  namespaces: Namespace[],
  overrides: DeepPartial<RealtimeConfig> = {},
  extra: { broker?: MemoryBroker } = {},
): Promise<Realtime> {
  const broker = extra.broker ?? new MemoryBroker();
  const presence = new MemoryPresenceStore();
  const { limits, auth, ...rest } = overrides;
  const server = createRealtimeServer({
    broker,
    presence,
    config: {
      host: '127.0.0.1',
      port: 0,
      log: { level: 'silent' },
      metrics: { enabled: false },
      heartbeat: { intervalMs: 0, timeoutMs: 1000 },
      shutdown: { timeoutMs: 500, reconnectJitterMs: 0 },
      auth: { anonymous: true, hmacSecret: SECRET, ...auth },
      namespaces: namespaces as DeepPartial<NamespaceConfig>[],
      limits: {
        maxConnectionsPerIp: 10_000,
        connectionRatePerIp: { perSecond: 100_000, burst: 100_000 },
        messageRate: { perSecond: 100_000, burst: 100_000 },
        byteRate: { perSecond: 1 << 30, burst: 1 << 30 },
        ...limits,
      },
      ...rest,
    },
  });
  const { port } = await server.listen();
  const clients = new Set<RtClient>();
  const rt: Realtime = {
    server,
    broker,
    presence,
    port,
    url: `ws://127.0.0.1:${port}/rt`,
    clients,
    async connect(user = 'alice', options = {}) {
      const token = user === null ? null : await signToken(user, options.claims);
      const client = await RtClient.connect(rt.url, options.protocol ?? 'switchboard.v1.json', options.deflate ?? false);
      clients.add(client);
      void client.closed.then(() => clients.delete(client));
      if (token !== null) {
        const reply = await client.ok('auth', { token });
        client.clientId = reply.client as string;
        client.user = reply.user as string;
      }
      return client;
    },
    async close() {
      for (const c of clients) c.terminate();
      await server.close();
    },
  };
  return rt;
}

export interface RtMessage {
  op: string;
  [field: string]: any;
}

/** A realtime protocol client over our WebSocket, recording everything it receives. */
export class RtClient {
  readonly ws: WebSocket;
  readonly binary: boolean;
  /** Every message received, decoded, in order. */
  readonly received: RtMessage[] = [];
  /** The payload of every message received, as bytes, in order. */
  readonly raw: Buffer[] = [];
  /** Whether each message came in a binary frame. */
  readonly frameBinary: boolean[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  closeCode: number | null = null;
  clientId = '';
  user = '';
  private nextId = 1;
  private readonly wakers = new Set<() => void>();

  private constructor(ws: WebSocket, binary: boolean) {
    this.ws = ws;
    this.binary = binary;
    ws.on('error', () => {});
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const bytes = Buffer.from(data);
      this.raw.push(bytes);
      this.frameBinary.push(isBinary);
      this.received.push((binary ? unpack(bytes) : JSON.parse(bytes.toString())) as RtMessage);
      for (const wake of this.wakers) wake();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code: number, reason: Buffer) => {
        this.closeCode = code;
        for (const wake of this.wakers) wake();
        resolve({ code, reason: reason.toString() });
      });
    });
  }

  static connect(url: string, protocol: string, deflate = false, ms = WAIT): Promise<RtClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, protocol, { perMessageDeflate: deflate });
      const client = new RtClient(ws, protocol.endsWith('msgpack'));
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new Error(`timed out after ${ms} ms connecting to ${url}`));
      }, ms);
      ws.once('open', () => {
        clearTimeout(timer);
        resolve(client);
      });
      ws.once('close', (code: number) => {
        clearTimeout(timer);
        reject(new Error(`closed (${code}) while connecting`));
      });
    });
  }

  send(message: object): void {
    if (this.binary) this.ws.send(pack(message), { binary: true });
    else this.ws.send(JSON.stringify(message));
  }

  /** Send a request with a fresh id; resolve with its reply (`ok` or `error`). */
  async request(op: string, fields: Record<string, unknown> = {}, ms = WAIT): Promise<RtMessage> {
    const id = this.nextId++;
    const from = this.received.length;
    this.send({ op, id, ...fields });
    return this.waitFor((m) => (m.op === 'ok' || m.op === 'error') && m.id === id, ms, `the reply to ${op} #${id}`, from);
  }

  /** A request that must succeed; resolves with the `ok` reply. */
  async ok(op: string, fields: Record<string, unknown> = {}, ms = WAIT): Promise<RtMessage> {
    const reply = await this.request(op, fields, ms);
    assert.equal(reply.op, 'ok', `${op} ${JSON.stringify(fields)} failed: ${JSON.stringify(reply)}`);
    return reply;
  }

  /** A request that must fail with `code`; resolves with the `error` reply. */
  async fails(op: string, fields: Record<string, unknown>, code: number, ms = WAIT): Promise<RtMessage> {
    const reply = await this.request(op, fields, ms);
    assert.equal(reply.op, 'error', `${op} ${JSON.stringify(fields)} should fail with ${code}, got ${JSON.stringify(reply)}`);
    assert.equal(reply.code, code, `${op} ${JSON.stringify(fields)}: ${JSON.stringify(reply)}`);
    assert.equal(typeof reply.message, 'string');
    return reply;
  }

  /** The first message at index >= `from` matching `predicate`, waiting up to `ms`. */
  waitFor(predicate: (m: RtMessage) => boolean, ms: number, what: string, from = 0): Promise<RtMessage> {
    return new Promise((resolve, reject) => {
      let scanned = from;
      const check = (): boolean => {
        for (; scanned < this.received.length; scanned++) {
          const m = this.received[scanned]!;
          if (predicate(m)) {
            done();
            resolve(m);
            return true;
          }
        }
        if (this.closeCode !== null) {
          done();
          reject(new Error(`connection closed (${this.closeCode}) while waiting for ${what}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; got ${JSON.stringify(this.received.slice(from).slice(-5))}`));
      }, ms);
      const done = (): void => {
        clearTimeout(timer);
        this.wakers.delete(wake);
      };
      const wake = (): void => {
        check();
      };
      if (check()) return;
      this.wakers.add(wake);
    });
  }

  /** Wait until `count()` reaches `n`. */
  async waitUntil(predicate: () => boolean, ms: number, what: string): Promise<void> {
    if (predicate()) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.wakers.delete(wake);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      const wake = (): void => {
        if (predicate()) {
          clearTimeout(timer);
          this.wakers.delete(wake);
          resolve();
        }
      };
      this.wakers.add(wake);
    });
  }

  /** `msg` pushes received (on `channel`, if given). */
  messages(channel?: string): RtMessage[] {
    return this.received.filter((m) => m.op === 'msg' && (channel === undefined || m.channel === channel));
  }

  /** Wait until at least `n` `msg` pushes on `channel` arrived; resolve with them. */
  async waitMessages(channel: string | undefined, n: number, ms = WAIT): Promise<RtMessage[]> {
    await this.waitUntil(() => this.messages(channel).length >= n, ms, `${n} messages on ${channel ?? 'any channel'} (have ${this.messages(channel).length})`);
    return this.messages(channel);
  }

  /** Pushes of kind `op` received (on `channel`, if given). */
  pushes(op: string, channel?: string): RtMessage[] {
    return this.received.filter((m) => m.op === op && (channel === undefined || m.channel === channel));
  }

  /** Close cleanly and wait for the close (bounded). */
  async close(code = 1000): Promise<void> {
    this.ws.close(code);
    await withTimeout(this.closed, WAIT, 'the close');
  }

  terminate(): void {
    this.ws.terminate();
  }
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Offsets of `msg` pushes, in arrival order. */
export function offsets(messages: RtMessage[]): number[] {
  return messages.map((m) => m.offset as number);
}

/** [from, from+1, ..., to]. */
export function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i <= to; i++) out.push(i);
  return out;
}
