/**
 * The part of the realtime test helpers that needs no test context: the
 * waits, tokens and servers of test/support/ (re-exported), and the
 * protocol clients — `RtClient` (our `WebSocket`, JSON or MessagePack) and
 * `QueueClient`, what it shares with the fallback-session client of
 * ../carriers/helpers.ts.
 *
 * This module must not import `node:test` nor anything that does (such as
 * test/support/leak-check.ts, which registers an `after` hook): channels-leak-child.ts
 * runs it in a plain child process. The helpers that take a `TestContext`
 * and close what they open after the test are in ./helpers.ts, which
 * re-exports everything here.
 */
import assert from 'node:assert/strict';
import { encode as pack, decode as unpack } from '@msgpack/msgpack';
import { MemoryBroker, MemoryPresenceStore } from '../../../src/brokers/memory/memory-broker.js';
import { WebSocket, type ClientOptions } from '../../../src/index.js';
import type { DeepPartial, NamespaceConfig, RealtimeConfig } from '../../../src/server/config/index.js';
import { launchServer, type TestServer } from '../../support/realtime-server.js';
import { SECRET, signToken, type TokenOptions } from '../../support/tokens.js';
import { sleep, WAIT, Wakeup, within } from '../../support/wait.js';

export { sleep, until, WAIT, Wakeup, within } from '../../support/wait.js';
export { SECRET, signToken, type TokenOptions } from '../../support/tokens.js';
export {
  API_KEY,
  captureLogger,
  launchServer,
  testConfig,
  type CapturedLogger,
  type ServerOptions,
  type TestServer,
} from '../../support/realtime-server.js';

// ---------------------------------------------------------------------------
// Protocol clients

export type Message = Record<string, any>;

export interface CloseInfo {
  code: number;
  reason: string;
}

/**
 * A realtime protocol client for tests, whatever carries it: received
 * messages are queued, taken by predicate with a bounded wait, and requests
 * get fresh ids and wait for their reply. A subclass sends (`transmit`),
 * queues what it receives (`deliver`) and reports the end (`finish`).
 */
export abstract class QueueClient {
  /** Resolves with the close code and reason. */
  readonly closed: Promise<CloseInfo>;
  protected readonly wakeup = new Wakeup();
  private closeInfo: CloseInfo | null = null;
  private resolveClosed!: (info: CloseInfo) => void;
  private inbox: Message[] = [];
  private nextId = 1;

  /** `closing`: what `closeOf()` waits for, in its timeout message ("the connection to close"). */
  constructor(private readonly closing: string) {
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
  }

  /** Send one message. */
  protected abstract transmit(message: object): void | Promise<void>;

  /** Queue a received message. */
  protected deliver(message: Message): void {
    this.inbox.push(message);
    this.wakeup.wake();
  }

  /** The connection or session ended. */
  protected finish(info: CloseInfo): void {
    this.closeInfo = info;
    this.wakeup.wake();
    this.resolveClosed(info);
  }

  get isClosed(): boolean {
    return this.closeInfo !== null;
  }

  /** The close code, or null while open. */
  get closeCode(): number | null {
    return this.closeInfo?.code ?? null;
  }

  /** Why a wait for `what` cannot succeed any more, if it cannot. */
  protected interrupted(what: string): Error | null {
    const info = this.closeInfo;
    return info && new Error(`closed (${info.code} ${info.reason}) while waiting for ${what}${this.queued()}`);
  }

  private queued(): string {
    return `; got ${JSON.stringify(this.inbox).slice(0, 300)}`;
  }

  /** Take the first queued message matching `match` (default: any), waiting up to `ms`. */
  next(match: (m: Message) => boolean = () => true, ms = WAIT, what = 'a matching message'): Promise<Message> {
    const take = (): Message | undefined => {
      const i = this.inbox.findIndex(match);
      return i === -1 ? undefined : this.inbox.splice(i, 1)[0];
    };
    return this.wakeup.until(take, ms, what, () => this.interrupted(what), () => this.queued());
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
    await this.transmit({ op, id, ...fields });
    return this.next((m) => (m.op === 'ok' || m.op === 'error') && m.id === id, ms, `the reply to ${op} #${id}`);
  }

  /** A request that must succeed; resolves with the `ok` reply. */
  async ok(op: string, fields: object = {}, ms = WAIT): Promise<Message> {
    const reply = await this.request(op, fields, ms);
    assert.equal(reply.op, 'ok', `${op} ${JSON.stringify(fields)} failed: ${JSON.stringify(reply)}`);
    return reply;
  }

  /** A request that must fail with `code`; resolves with the `error` reply. */
  async fails(op: string, fields: object, code: number, ms = WAIT): Promise<Message> {
    const reply = await this.request(op, fields, ms);
    assert.equal(reply.op, 'error', `${op} ${JSON.stringify(fields)} should fail with ${code}, got ${JSON.stringify(reply)}`);
    assert.equal(reply.code, code, `${op} ${JSON.stringify(fields)}: ${JSON.stringify(reply)}`);
    assert.equal(typeof reply.message, 'string');
    return reply;
  }

  /** Wait for the close; returns code and reason. */
  closeOf(ms = WAIT): Promise<CloseInfo> {
    return within(this.closed, ms, this.closing);
  }
}

export interface ConnectOptions extends ClientOptions {
  /** Subprotocols offered. Default `['switchboard.v1.json']`; `[]` offers none. */
  protocols?: string[];
  /**
   * Attach a no-op 'error' listener to the socket. Default false: an
   * 'error' event then throws, and fails the test.
   */
  /**
   * Answer the server's app-level `ping` with a `pong`, as the SDK does (the
   * ping is still recorded). Default false: a test of the heartbeat sees a
   * client that does not answer.
   */
  answerPings?: boolean;
  ignoreErrors?: boolean;
}

/**
 * A realtime client on our `WebSocket`: decodes each message by its frame
 * (MessagePack in binary frames, else JSON), records it with its bytes, and
 * queues it. Sends MessagePack when that subprotocol was negotiated.
 */
export class RtClient extends QueueClient {
  readonly ws: WebSocket;
  /** Everything received, decoded, in order (taken or not). */
  readonly received: Message[] = [];
  /** The payload of every message received, as bytes, in order. */
  readonly raw: Buffer[] = [];
  /** Whether each message came in a binary frame, in order. */
  readonly frameBinary: boolean[] = [];
  /** Set by {@link auth}. */
  clientId = '';
  /** Set by {@link auth}. */
  user = '';

  constructor(ws: WebSocket, options: { ignoreErrors?: boolean; answerPings?: boolean } = {}) {
    super('the connection to close');
    this.ws = ws;
    if (options.ignoreErrors) ws.on('error', () => {});
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const bytes = Buffer.from(data);
      let msg: Message;
      try {
        msg = isBinary ? (unpack(bytes) as Message) : (JSON.parse(bytes.toString()) as Message);
      } catch {
        msg = { op: '<undecodable>', raw: bytes.toString('hex').slice(0, 200) };
      }
      this.received.push(msg);
      this.raw.push(bytes);
      this.frameBinary.push(isBinary);
      this.deliver(msg);
      if (options.answerPings && msg.op === 'ping' && ws.readyState === WebSocket.OPEN) this.send({ op: 'pong' });
    });
    ws.on('close', (code: number, reason: Buffer) => this.finish({ code, reason: reason.toString() }));
  }

  /** A client connecting to `url` (not open yet: see {@link opened}). */
  static create(url: string, options: ConnectOptions = {}): RtClient {
    const { protocols = ['switchboard.v1.json'], ignoreErrors, answerPings, ...clientOptions } = options;
    const ws = new WebSocket(url, protocols, { perMessageDeflate: false, handshakeTimeout: WAIT, ...clientOptions });
    return new RtClient(ws, { ignoreErrors, answerPings });
  }

  /** Resolves once open; rejects when the upgrade is refused, or (terminating the socket) after `ms`. */
  async opened(ms = WAIT): Promise<this> {
    const open = new Promise<void>((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('close', (code: number) => reject(new Error(`closed with ${code} before 'open'`)));
    });
    await within(open, ms, `the connection to ${this.ws.url} to open`).catch((err: unknown) => {
      this.ws.terminate();
      throw err;
    });
    return this;
  }

  /** `auth` with a token for `user`; sets `clientId` and `user`; resolves with the `ok` reply. */
  async auth(user: string, token?: TokenOptions): Promise<Message> {
    const reply = await this.ok('auth', { token: await signToken(user, token) });
    this.clientId = reply.client as string;
    this.user = reply.user as string;
    return reply;
  }

  /** Send one message, encoded for the negotiated subprotocol. */
  send(message: object): void {
    if (this.ws.protocol === 'switchboard.v1.msgpack') this.ws.send(pack(message), { binary: true });
    else this.ws.send(JSON.stringify(message));
  }

  protected transmit(message: object): void {
    this.send(message);
  }

  /** The first message received at index >= `from` matching `predicate` (taken or not), waiting up to `ms`. */
  waitFor(predicate: (m: Message) => boolean, ms: number, what: string, from = 0): Promise<Message> {
    let scanned = from;
    const find = (): Message | undefined => {
      for (; scanned < this.received.length; scanned++) if (predicate(this.received[scanned]!)) return this.received[scanned];
      return undefined;
    };
    const last = (): string => `; got ${JSON.stringify(this.received.slice(from).slice(-5))}`;
    return this.wakeup.until(find, ms, what, () => this.interrupted(what), last);
  }

  /** Wait until `predicate()` holds (re-checked on each message and the close), up to `ms`. */
  async waitUntil(predicate: () => boolean, ms: number, what: string): Promise<void> {
    await this.wakeup.until(() => (predicate() ? true : undefined), ms, what);
  }

  /** `msg` pushes received (on `channel`, if given). */
  messages(channel?: string): Message[] {
    return this.pushes('msg', channel);
  }

  /** Wait until at least `n` `msg` pushes on `channel` arrived; resolve with them. */
  async waitMessages(channel: string | undefined, n: number, ms = WAIT): Promise<Message[]> {
    await this.waitUntil(() => this.messages(channel).length >= n, ms, `${n} messages on ${channel ?? 'any channel'} (have ${this.messages(channel).length})`);
    return this.messages(channel);
  }

  /** Pushes of kind `op` received (on `channel`, if given). */
  pushes(op: string, channel?: string): Message[] {
    return this.received.filter((m) => m.op === op && (channel === undefined || m.channel === channel));
  }

  /** Close cleanly and wait for the close (bounded). */
  async close(code = 1000): Promise<void> {
    this.ws.close(code);
    await this.closeOf();
  }

  terminate(): void {
    this.ws.terminate();
  }
}

// ---------------------------------------------------------------------------
// Servers

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

export interface Realtime extends TestServer {
  broker: MemoryBroker;
  presence: MemoryPresenceStore;
  /** Connect a client (authenticated with a token for `user` unless `user` is null). */
  connect(user?: string | null, options?: ConnectOptions & { token?: TokenOptions }): Promise<RtClient>;
  /** Clients connected and not closed yet. */
  clients: Set<RtClient>;
  /** Terminate every client, close the server. */
  close(): Promise<void>;
}

/**
 * A server for the channel tests: HS256 auth (anonymous connections allowed
 * too), heartbeats and metrics off, limits raised far above what the tests
 * send, `namespaces`, and its memory broker and presence store in reach.
 * No log is kept (the leak check reads the heap). Call `close()` yourself
 * (helpers.ts' `startRealtime` does after the test).
 */
export async function createRealtime(
  namespaces: Namespace[],
  overrides: DeepPartial<RealtimeConfig> = {},
  extra: { broker?: MemoryBroker } = {},
): Promise<Realtime> {
  const broker = extra.broker ?? new MemoryBroker();
  const presence = new MemoryPresenceStore();
  const { limits, auth, ...rest } = overrides;
  const launched = await launchServer({
    broker,
    presence,
    captureLogs: false,
    config: {
      metrics: { enabled: false },
      shutdown: { timeoutMs: 500, reconnectJitterMs: 0 },
      auth: { anonymous: true, hmacSecret: SECRET, ...auth },
      namespaces,
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
  const clients = new Set<RtClient>();
  const rt: Realtime = {
    ...launched,
    broker,
    presence,
    clients,
    async connect(user = 'alice', options = {}) {
      const { token, ...connectOptions } = options;
      const client = await RtClient.create(rt.url, { ignoreErrors: true, ...connectOptions }).opened();
      clients.add(client);
      void client.closed.then(() => clients.delete(client));
      if (user !== null) await client.auth(user, token);
      return client;
    },
    async close() {
      for (const c of clients) c.terminate();
      await launched.server.close();
    },
  };
  return rt;
}

/** Offsets of `msg` pushes, in arrival order. */
export function offsets(messages: Message[]): number[] {
  return messages.map((m) => m.offset as number);
}

/** [from, from+1, ..., to]. */
export function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i <= to; i++) out.push(i);
  return out;
}
