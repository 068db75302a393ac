/**
 * Helpers of the client SDK's integration tests: a realtime server on
 * 127.0.0.1 (port 0, or a given port to restart on) with the SDK tests'
 * namespaces, and a `Client` over our own `WebSocket` (Node 20 has no global
 * one) that is closed after the test. Tokens, waits and the server's test
 * config come from test/support/.
 *
 * Importing test/support/leak-check.ts adds its `after` hook, which fails the file when
 * sockets, servers or timers are left open: the SDK must leave nothing
 * behind after `close()`.
 */
import type { TestContext } from 'node:test';
import { Client, type ClientOptions, type DisconnectedEvent, type Emitter, type SubscribedEvent, type Subscription } from '../../../src/client/index.js';
import { WebSocket } from '../../../src/index.js';
import type { RealtimeServer, RealtimeServerOptions } from '../../../src/server/realtime-server.js';
import { readSnapshotFile } from '../../../src/brokers/memory/snapshot-file.js';
import type { MemoryBrokerSnapshot } from '../../../src/brokers/memory/memory-broker.js';
import '../../support/leak-check.js';
import { addresses, createTestServer, silentLogger } from '../../support/realtime-server.js';
import { signToken } from '../../support/tokens.js';
import { sleep, WAIT, within } from '../../support/wait.js';

export { sleep, until, WAIT, within } from '../../support/wait.js';
export { SECRET, signToken } from '../../support/tokens.js';

/** Namespaces of the test servers: `chat/*` keeps history and has full presence; `arena/*` counts. */
export const NAMESPACES = [
  { prefix: 'chat', history: { size: 1000, ttlMs: 0 }, presence: 'full' as const },
  { prefix: 'arena', presence: 'counts' as const },
];

export interface ServerHandle {
  server: RealtimeServer;
  /** The port (known once listening, or the one asked for). */
  port: number;
  url: string;
  /** Start listening (`startServer` did already). */
  listen(): Promise<void>;
  /** Close the server (idempotent; also done after the test). */
  close(): Promise<void>;
}

export type ServerOptions = Omit<RealtimeServerOptions, 'config'> & { port?: number; config?: Record<string, any> };

/** A realtime server on 127.0.0.1, created but not listening yet (the hub works: `server.publish()`); closed after the test. */
export function createServer(t: TestContext, options: ServerOptions = {}): ServerHandle {
  const { port = 0, config = {}, ...rest } = options;
  const { server } = createTestServer({
    captureLogs: false,
    logger: silentLogger,
    ...rest,
    config: { port, shutdown: { timeoutMs: 2000, reconnectJitterMs: 100 }, namespaces: NAMESPACES, ...config },
  });
  let closing: Promise<void> | null = null;
  const handle: ServerHandle = {
    server,
    port,
    url: addresses(server, port).url,
    async listen() {
      const address = await server.listen();
      handle.port = address.port;
      handle.url = addresses(server, address.port).url;
    },
    close: () => (closing ??= within(server.close(), 5000, 'RealtimeServer#close')),
  };
  t.after(() => handle.close());
  return handle;
}

/** A realtime server on 127.0.0.1 (`port` 0: any free one), listening; closed after the test. */
export async function startServer(t: TestContext, options: ServerOptions = {}): Promise<ServerHandle> {
  const handle = createServer(t, options);
  await handle.listen();
  return handle;
}

/** A client over our `WebSocket`, closed after the test. Fast reconnects unless told otherwise. */
export function createClient(t: TestContext, url: string | string[], options: ClientOptions = {}): Client {
  const client = new Client(url, {
    WebSocket: WebSocket as unknown as NonNullable<ClientOptions['WebSocket']>,
    transports: ['websocket'],
    network: null,
    ...options,
    reconnect: { minDelayMs: 20, maxDelayMs: 200, ...options.reconnect },
  });
  t.after(() => client.close());
  return client;
}

/** Resolve with the next `event` of a client or subscription (bounded wait). */
export function nextEvent<E extends object, K extends keyof E>(target: Emitter<E>, event: K, ms = WAIT): Promise<E[K]> {
  let off: (() => void) | null = null;
  return within(
    new Promise<E[K]>((resolve) => {
      off = target.once(event, resolve);
    }),
    ms,
    `event '${String(event)}'`,
  ).finally(() => off?.());
}

/**
 * A client of alice's, connected with a token that expires in `ttl` s;
 * `getToken` gives tokens of `nextTtl` s and counts its calls. Every
 * 'disconnected' event is kept.
 */
export async function connectRefreshing(
  t: TestContext,
  url: string,
  options: { ttl: number; nextTtl: number; refreshBeforeMs: number },
): Promise<{ client: Client; calls: () => number; disconnects: DisconnectedEvent[] }> {
  let calls = 0;
  const client = createClient(t, url, {
    token: await signToken('alice', { ttl: options.ttl }),
    getToken: async () => {
      calls++;
      return signToken('alice', { ttl: options.nextTtl });
    },
    refreshBeforeMs: options.refreshBeforeMs,
  });
  const disconnects: DisconnectedEvent[] = [];
  client.on('disconnected', (e) => disconnects.push(e));
  await within(client.connect(), WAIT, 'connect');
  return { client, calls: () => calls, disconnects };
}

/**
 * Subscribe `client` to `channel`, recording the data of each message and
 * each 'subscribed' event; connect it (bounded by `ms`) and wait until the
 * subscription is live.
 */
export async function connectFollowing(client: Client, channel: string, ms = WAIT): Promise<{ sub: Subscription; got: unknown[]; events: SubscribedEvent[] }> {
  const got: unknown[] = [];
  const events: SubscribedEvent[] = [];
  const sub = client.subscribe(channel, { onMessage: (p) => got.push(p.data), onSubscribed: (e) => events.push(e) });
  const subscribed = nextEvent(sub, 'subscribed');
  await within(client.connect(), ms, 'connect');
  await subscribed;
  return { sub, got, events };
}

/**
 * Wait until the history file at `path` holds a snapshot that `done` accepts
 * (a save happened with what the test needs in it), polling the file every
 * 20 ms; resolves with that snapshot. A file caught mid-write cannot be seen:
 * saves write a temporary file and rename it.
 */
export async function waitForSnapshot(path: string, done: (snapshot: MemoryBrokerSnapshot) => boolean, ms = 10_000, what = 'a snapshot save'): Promise<MemoryBrokerSnapshot> {
  const deadline = Date.now() + ms;
  for (;;) {
    const snapshot = (await readSnapshotFile(path)) as MemoryBrokerSnapshot | undefined;
    if (snapshot !== undefined && done(snapshot)) return snapshot;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what} in ${path}`);
    await sleep(20);
  }
}

/** The offset a snapshot holds for `channel` (0 when it has no stream of it). */
export function snapshotOffset(snapshot: MemoryBrokerSnapshot, channel: string): number {
  return snapshot.streams.find((s) => s.channel === channel)?.offset ?? 0;
}

/**
 * A WebSocket class whose connections are refused (they go to a closed
 * port) until `unblock()`: the SDK falls back, then finds WebSocket again.
 */
export function blockableWebSocket(): { WebSocket: typeof WebSocket; unblock(): void } {
  let blocked = true;
  class MaybeBlockedWebSocket extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(blocked ? 'ws://127.0.0.1:1/rt' : url, protocols);
    }
  }
  return {
    WebSocket: MaybeBlockedWebSocket,
    unblock() {
      blocked = false;
    },
  };
}
