/**
 * Helpers of the realtime integration tests (channels*.test.ts included):
 * everything in ./helpers-core.ts (waits, tokens, servers, the protocol
 * client), plus the helpers that take a `TestContext` and close what they
 * open after the test, and plain HTTP requests (API calls, refused
 * upgrades). Every wait is bounded: a broken behaviour fails the test
 * instead of hanging it.
 *
 * Importing this module also imports test/support/leak-check.ts, whose `after` hook fails
 * the file when sockets, servers or timers are left open. A child process
 * (channels-leak-child.ts) imports ./helpers-core.ts instead.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import '../../support/leak-check.js';
import {
  API_KEY,
  createRealtime,
  launchServer,
  RtClient,
  WAIT,
  within,
  type ConnectOptions,
  type Namespace,
  type Realtime,
  type ServerOptions,
  type TestServer,
  type TokenOptions,
} from './helpers-core.js';
import type { MemoryBroker } from '../../../src/brokers/memory/memory-broker.js';
import type { DeepPartial, RealtimeConfig } from '../../../src/server/config/index.js';

export * from './helpers-core.js';

// ---------------------------------------------------------------------------
// Servers and clients closed after the test

/**
 * A realtime server on 127.0.0.1, port 0, listening (see `launchServer`);
 * closed after the test.
 */
export function startServer(t: TestContext, options: ServerOptions = {}): Promise<TestServer> {
  return launchServer(options, (server) => t.after(() => within(server.close(), 5000, 'RealtimeServer#close in cleanup')));
}

/** A server for the channel tests (see `createRealtime`); closed with every client it connected after the test. */
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

/**
 * Open a realtime connection (our `WebSocket`); rejects when the upgrade is
 * refused. Terminated after the test.
 */
export function connect(t: TestContext, url: string, options: ConnectOptions = {}): Promise<RtClient> {
  const client = RtClient.create(url, options);
  t.after(() => client.terminate());
  return client.opened();
}

/** {@link connect}, then `auth` with a token for `user`. */
export async function connectAs(t: TestContext, url: string, user: string, token?: TokenOptions, options: ConnectOptions = {}): Promise<RtClient> {
  const client = await connect(t, url, options);
  await client.auth(user, token);
  return client;
}

/** Listen on 127.0.0.1 port 0 with an app's own HTTP server (a realtime server attached to it); closed after the test. Resolves with `http://127.0.0.1:<port>`. */
export async function listenApp(t: TestContext, server: http.Server): Promise<string> {
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
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

/** Read a response's body completely. */
function readResponse(res: http.IncomingMessage, resolve: (result: HttpResult) => void, reject: (err: Error) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => {
    const text = Buffer.concat(chunks).toString();
    resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) });
  });
  res.on('error', reject);
}

/** One HTTP request on a fresh connection (no keep-alive). A JSON `body` object is sent with Content-Type application/json. */
export function httpRequest(
  base: string,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: unknown; ms?: number; /** CA of an https `base`. */ ca?: Buffer } = {},
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
      const url = new URL(path, base);
      const req =
        url.protocol === 'https:'
          ? https.request(url, { method, headers, agent: false, ca: options.ca }, (res) => readResponse(res, resolve, reject))
          : http.request(url, { method, headers, agent: false }, (res) => readResponse(res, resolve, reject));
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
export function upgrade(base: string, path: string, headers: Record<string, string> = {}, options: { localAddress?: string } = {}): Promise<HttpResult> {
  return within(
    new Promise<HttpResult>((resolve, reject) => {
      const req = http.request(new URL(path, base), {
        agent: false,
        localAddress: options.localAddress,
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
      req.on('response', (res) => readResponse(res, resolve, reject));
      req.on('error', reject);
      req.end();
    }),
    WAIT,
    `the upgrade of ${path}`,
  );
}
