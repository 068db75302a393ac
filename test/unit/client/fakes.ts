/**
 * Fakes for the client SDK's unit tests: a WebSocket, an EventSource and a
 * fetch that the test drives by hand (open, deliver, fail), a network
 * monitor, and a harness that connects a `Client` through them. Used with
 * `mock.timers` (setTimeout and Date) so backoff, timeouts and dead-link
 * detection run on a fake clock.
 *
 * The server side speaks the real wire protocol (src/realtime/wire), so the
 * fakes cannot drift from the server unnoticed:
 * - what the server sends is typed as the wire's `ServerMessage` and encoded
 *   with the wire codec of the negotiated subprotocol (JSON text, or
 *   MessagePack in binary frames), the replies built by {@link reply} (whose
 *   shapes test/integration/client/scenarios.test.ts compares with the real
 *   server's), poll answers and session openings by {@link pollAnswer} and
 *   {@link sessionOpened};
 * - what the client sends is decoded with that codec and checked with the
 *   server's own `validateClientMessage` (and the subprotocols and HTTP
 *   bodies the server accepts): anything the real server would refuse is a
 *   protocol violation, and any violation fails the test file (an `after`
 *   hook registered here).
 */
import assert from 'node:assert/strict';
import { after, type TestContext } from 'node:test';
import { Client, type ClientOptions, type NetworkMonitor } from '../../../src/client/index.js';
import type { FetchInit, ResponseLike } from '../../../src/client/transports/transport.js';
import { codecFor, jsonCodec, type WireCodec } from '../../../src/wire/codec.js';
import {
  IDEMPOTENCY_TTL_MS,
  SUBPROTOCOLS,
  type ClientInfo,
  type ErrorReply,
  type OkReply,
  type Publication,
  type RequestId,
  type ServerMessage,
  type StreamPosition,
} from '../../../src/wire/messages.js';
import { validateClientMessage } from '../../../src/wire/validate.js';
import { defaultConfig } from '../../../src/server/config/index.js';

export type Msg = Record<string, any>;

// ---- protocol violations -----------------------------------------------------------

/** What the client sent that the real server would refuse, in order. */
export const protocolViolations: string[] = [];

function violation(what: string): void {
  protocolViolations.push(what);
}

after(() => {
  assert.deepEqual(protocolViolations, [], 'the client sent what the real server refuses');
});

/** Decode one client message as the server does, record it if the server would refuse it. */
function decodeClientMessage(codec: WireCodec, payload: string | Uint8Array): Msg {
  if (codec.binary !== (typeof payload !== 'string')) violation(`${codec.subprotocol} travels in ${codec.binary ? 'binary' : 'text'} frames`);
  let message: unknown;
  try {
    message = codec.decode(payload);
  } catch (err) {
    violation(`undecodable ${codec.subprotocol} message: ${(err as Error).message}`);
    return {};
  }
  const checked = validateClientMessage(message);
  if (!checked.ok) violation(`${JSON.stringify(message)}: ${checked.error}`);
  return message as Msg;
}

// ---- server replies, as the real server builds them ------------------------------------

/** The server's `limits` in the auth reply (src/realtime/session.ts `auth`): the default configuration's. */
export interface AnnouncedLimits {
  messageRate: { perSecond: number; burst: number };
  byteRate: { perSecond: number; burst: number };
  maxMessageSize: number;
  idempotencyTtlMs: number;
}
// The fields of each `ok` reply, without `op` and `id` (the wire's OkReply has an index signature, so
// `Omit<…, 'op' | 'id'>` of a reply type would keep none of them).
export interface AuthOkFields {
  client: string;
  user: string;
  expiresIn: number | null;
  limits: AnnouncedLimits;
  /** What carries the connection, as the server saw it (newer servers). */
  http?: '2' | '1.1';
}
export interface SubscribeOkFields {
  channel: string;
  /** Not for patterns. */
  position?: StreamPosition;
  /** Only with `since`. */
  recovered?: boolean;
}
export interface UnsubscribeOkFields {
  channel: string;
}
export interface PublishOkFields {
  offset: number;
  epoch: string;
  /** Only when the key was known. */
  duplicate?: true;
}
export interface RefreshOkFields {
  expiresIn: number | null;
}
export interface RpcOkFields {
  data: unknown;
}
export interface HistoryOkFields {
  channel: string;
  publications: Publication[];
  position: StreamPosition;
  /** Only with `since`. */
  recovered?: boolean;
}
export interface PresenceOkFields {
  channel: string;
  /** Full presence: connection id → who; counts presence: a number (and `users`). */
  clients: Record<string, ClientInfo> | number;
  users?: number;
}
type Ok<F> = OkReply & F;

const defaults = defaultConfig();

/** The limits a server with the default configuration announces. */
export const DEFAULT_LIMITS: AnnouncedLimits = {
  messageRate: { ...defaults.limits.messageRate },
  byteRate: { ...defaults.limits.byteRate },
  maxMessageSize: defaults.limits.maxMessageSize,
  idempotencyTtlMs: IDEMPOTENCY_TTL_MS,
};

/**
 * Server replies and pushes with the fields the real server sends (see
 * src/realtime/session.ts; scenarios.test.ts checks the shapes against a
 * running server). Optional fields are left out, not set to undefined.
 */
export const reply = {
  auth(id: RequestId, fields: Partial<AuthOkFields> = {}): Ok<AuthOkFields> {
    return { op: 'ok', id, client: 'conn-1', user: 'alice', expiresIn: null, limits: DEFAULT_LIMITS, http: '1.1', ...fields };
  },
  /** A channel subscribed (with `since`: `recovered` as given); a pattern: `position: null`. */
  sub(id: RequestId, channel: string, position: StreamPosition | null = { offset: 0, epoch: 'e1' }, recovered?: boolean): Ok<SubscribeOkFields> {
    if (position === null) return { op: 'ok', id, channel };
    return recovered === undefined ? { op: 'ok', id, channel, position } : { op: 'ok', id, channel, position, recovered };
  },
  unsub(id: RequestId, channel: string): Ok<UnsubscribeOkFields> {
    return { op: 'ok', id, channel };
  },
  pub(id: RequestId, offset: number, epoch: string, duplicate = false): Ok<PublishOkFields> {
    return duplicate ? { op: 'ok', id, offset, epoch, duplicate: true } : { op: 'ok', id, offset, epoch };
  },
  refresh(id: RequestId, expiresIn: number | null): Ok<RefreshOkFields> {
    return { op: 'ok', id, expiresIn };
  },
  rpc(id: RequestId, data: unknown): Ok<RpcOkFields> {
    return { op: 'ok', id, data: data === undefined ? null : data };
  },
  history(id: RequestId, channel: string, publications: Publication[], position: StreamPosition, recovered?: boolean): Ok<HistoryOkFields> {
    return recovered === undefined ? { op: 'ok', id, channel, publications, position } : { op: 'ok', id, channel, publications, position, recovered };
  },
  presence(id: RequestId, channel: string, clients: Record<string, ClientInfo>): Ok<PresenceOkFields> {
    return { op: 'ok', id, channel, clients };
  },
  presenceCounts(id: RequestId, channel: string, clients: number, users: number): Ok<PresenceOkFields> {
    return { op: 'ok', id, channel, clients, users };
  },
  error(id: RequestId | undefined, code: number, message: string): ErrorReply {
    return id === undefined ? { op: 'error', code, message } : { op: 'error', id, code, message };
  },
};

/** The answer to `POST <path>/session` (src/fallbacks/router.ts), with the default configuration's timings. */
export interface SessionOpened {
  session: string;
  transport: 'sse' | 'poll';
  pollTimeoutMs: number;
  retryMs: number;
}

export function sessionOpened(session: string, transport: 'sse' | 'poll', fields: Partial<Pick<SessionOpened, 'pollTimeoutMs' | 'retryMs'>> = {}): SessionOpened {
  return { session, transport, pollTimeoutMs: defaults.fallbacks.pollTimeoutMs, retryMs: defaults.fallbacks.sseRetryMs, ...fields };
}

/** A poll's answer (src/fallbacks/long-polling.ts): `{"messages": [{"id": seq, "msg": …}]}`, each message through the JSON codec. */
export function pollAnswer(messages: Array<[seq: number, message: ServerMessage]>): { messages: Array<{ id: number; msg: unknown }> } {
  return { messages: messages.map(([id, msg]) => ({ id, msg: jsonCodec.decode(jsonCodec.encode(msg)) })) };
}

/** Let pending promise callbacks run (setImmediate is not mocked). */
/** Fake setTimeout and Date for the test (from t = 1 000 000 ms); `tick` advances them and lets promises settle. */
export function fakeClock(t: TestContext): { tick(ms: number): Promise<void> } {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  return {
    async tick(ms: number) {
      t.mock.timers.tick(ms);
      await flush();
    },
  };
}

export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

type Listener = (event: any) => void;

class FakeTarget {
  private listeners = new Map<string, Listener[]>();
  addEventListener(type: string, fn: Listener): void {
    const list = this.listeners.get(type) ?? [];
    list.push(fn);
    this.listeners.set(type, list);
  }
  removeEventListener(type: string, fn: Listener): void {
    const list = this.listeners.get(type) ?? [];
    const i = list.indexOf(fn);
    if (i !== -1) list.splice(i, 1);
  }
  protected dispatch(type: string, event: object): void {
    for (const fn of [...(this.listeners.get(type) ?? [])]) fn({ type, ...event });
  }
}

// ---- WebSocket -----------------------------------------------------------------

export interface FakeWebSocket {
  readonly url: string;
  readonly protocols: string[];
  readyState: number;
  protocol: string;
  binaryType: string;
  /** Messages the client sent, decoded with the negotiated subprotocol's codec. */
  readonly sent: Msg[];
  /** What the client passed to close(), if it did. */
  closedWith: { code?: number; reason?: string } | null;
  send(data: string | ArrayBufferView | ArrayBuffer): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, fn: Listener): void;
  /** The handshake succeeds; the server selects `protocol` (default: as the real server does). */
  open(protocol?: string): void;
  /** A server message arrives, encoded with the negotiated subprotocol's codec. */
  receive(message: ServerMessage): void;
  /** Raw data arrives (what no real server sends: malformed or unknown messages). */
  receiveRaw(data: unknown): void;
  /** The connection ends (error + close, as a browser reports a failure). */
  drop(code?: number, reason?: string): void;
  /** Messages sent with this op. */
  sentOps(op: string): Msg[];
}

export interface FakeWebSocketClass {
  new (url: string, protocols?: string | string[]): FakeWebSocket;
  /** Every socket created, in order. */
  instances: FakeWebSocket[];
  /** The newest socket. */
  readonly last: FakeWebSocket;
}

/** A fresh fake WebSocket class (its own list of instances). */
export function fakeWebSocketClass(): FakeWebSocketClass {
  const instances: FakeWebSocket[] = [];
  class WS extends FakeTarget implements FakeWebSocket {
    static instances = instances;
    static get last(): FakeWebSocket {
      const ws = instances[instances.length - 1];
      if (!ws) throw new Error('no WebSocket was created');
      return ws;
    }
    readonly url: string;
    readonly protocols: string[];
    readyState = 0;
    protocol = '';
    binaryType = 'blob';
    readonly sent: Msg[] = [];
    closedWith: { code?: number; reason?: string } | null = null;
    constructor(url: string, protocols?: string | string[]) {
      super();
      this.url = url;
      this.protocols = protocols === undefined ? [] : Array.isArray(protocols) ? protocols : [protocols];
      // The real server refuses (400) an offer of only subprotocols it does not speak.
      if (this.protocols.length > 0 && !this.protocols.some((p) => (SUBPROTOCOLS as readonly string[]).includes(p))) {
        violation(`subprotocols ${JSON.stringify(this.protocols)}: the server speaks ${SUBPROTOCOLS.join(', ')}`);
      }
      instances.push(this);
    }
    /** The codec of the selected subprotocol (none selected: JSON, as the server then speaks). */
    private get codec(): WireCodec {
      return codecFor(this.protocol) ?? jsonCodec;
    }
    send(data: string | ArrayBufferView | ArrayBuffer): void {
      if (this.readyState !== 1) throw new Error(`send in readyState ${this.readyState}`);
      const payload =
        typeof data === 'string'
          ? data
          : data instanceof ArrayBuffer
            ? new Uint8Array(data)
            : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      this.sent.push(decodeClientMessage(this.codec, payload));
    }
    close(code?: number, reason?: string): void {
      if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999)) throw new Error(`InvalidAccessError: close code ${code}`);
      this.closedWith = { code, reason };
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.dispatch('close', { code: code ?? 1005, reason: reason ?? '', wasClean: true });
    }
    // The server's choice: the best subprotocol both sides know; none offered, none selected.
    open(protocol = SUBPROTOCOLS.find((p) => this.protocols.includes(p)) ?? ''): void {
      this.readyState = 1;
      this.protocol = protocol;
      this.dispatch('open', {});
    }
    receive(message: ServerMessage): void {
      const encoded = this.codec.encode(message);
      // Binary frames arrive as an ArrayBuffer (the client sets binaryType 'arraybuffer').
      const data = typeof encoded === 'string' ? encoded : encoded.buffer.slice(encoded.byteOffset, encoded.byteOffset + encoded.byteLength);
      this.dispatch('message', { data });
    }
    receiveRaw(data: unknown): void {
      this.dispatch('message', { data });
    }
    drop(code = 1006, reason = ''): void {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.dispatch('error', {});
      this.dispatch('close', { code, reason, wasClean: false });
    }
    sentOps(op: string): Msg[] {
      return this.sent.filter((m) => m.op === op);
    }
  }
  return WS as unknown as FakeWebSocketClass;
}

// ---- network -------------------------------------------------------------------

export class FakeNetwork implements NetworkMonitor {
  online = true;
  private handlers: Array<{ onOnline: () => void; onOffline: () => void }> = [];
  isOnline(): boolean {
    return this.online;
  }
  subscribe(onOnline: () => void, onOffline: () => void): () => void {
    const h = { onOnline, onOffline };
    this.handlers.push(h);
    return () => {
      this.handlers = this.handlers.filter((x) => x !== h);
    };
  }
  get subscribers(): number {
    return this.handlers.length;
  }
  goOffline(): void {
    this.online = false;
    for (const h of [...this.handlers]) h.onOffline();
  }
  goOnline(): void {
    this.online = true;
    for (const h of [...this.handlers]) h.onOnline();
  }
}

// ---- harness -------------------------------------------------------------------

export interface Harness {
  client: Client;
  WS: FakeWebSocketClass;
  /** Errors the client emitted. */
  errors: Error[];
}

/** A client over a fake WebSocket (no network monitor unless given). */
export function makeClient(url: string | string[] = 'ws://rt.test/rt', options: ClientOptions = {}): Harness {
  const WS = fakeWebSocketClass();
  const client = new Client(url, { WebSocket: WS, network: null, transports: ['websocket'], ...options });
  const errors: Error[] = [];
  client.on('error', (e) => errors.push(e));
  return { client, WS, errors };
}

type AuthFields = Partial<AuthOkFields>;

/** Answer the newest `auth` on `ws` with ok ({@link reply}.auth, with `fields` changed). */
export function acceptAuth(ws: FakeWebSocket, fields: AuthFields = {}): void {
  const auth = ws.sentOps('auth').at(-1);
  if (!auth) throw new Error(`no auth sent; sent: ${JSON.stringify(ws.sent)}`);
  ws.receive(reply.auth(auth.id, fields));
}

/** Open the newest socket and accept its auth (with a token) or just open it (anonymous). */
export async function accept(h: Harness, fields: AuthFields = {}): Promise<FakeWebSocket> {
  await flush();
  const ws = h.WS.last;
  ws.open();
  if (ws.sentOps('auth').length > 0) acceptAuth(ws, fields);
  await flush();
  return ws;
}

/** What {@link acceptSubs} answers a `sub` with: its position (`null`: a pattern, which has none) and `recovered`. */
export interface SubAnswer {
  position?: StreamPosition | null;
  recovered?: boolean;
}

/**
 * Answer every unanswered `sub` on `ws` with {@link reply}.sub: at offset 0
 * of epoch `e1` and, when it had `since`, `recovered: true`, unless
 * `answer(sub)` says otherwise.
 */
export function acceptSubs(ws: FakeWebSocket, answer: (sub: Msg) => SubAnswer = () => ({})): void {
  for (const sub of ws.sentOps('sub')) {
    if ((sub as { answered?: boolean }).answered) continue;
    (sub as { answered?: boolean }).answered = true;
    const a = answer(sub);
    const position = a.position === undefined ? { offset: 0, epoch: 'e1' } : a.position;
    const recovered = 'recovered' in a ? a.recovered : sub.since ? true : undefined;
    ws.receive(reply.sub(sub.id, sub.channel, position, position === null ? undefined : recovered));
  }
}

// ---- EventSource and fetch -------------------------------------------------------

export interface FakeEventSource {
  readonly url: string;
  readyState: number;
  closed: boolean;
  close(): void;
  addEventListener(type: string, fn: Listener): void;
  open(): void;
  /** An event with `data` = `message` through the JSON codec, and an id. */
  receive(message: ServerMessage, id?: number): void;
  receiveRaw(data: string): void;
  /** A network error: EventSource goes to CONNECTING (it retries) or, with `fatal`, CLOSED. */
  error(fatal?: boolean): void;
}

export interface FakeEventSourceClass {
  new (url: string, init?: { withCredentials?: boolean }): FakeEventSource;
  instances: FakeEventSource[];
  readonly last: FakeEventSource;
}

export function fakeEventSourceClass(): FakeEventSourceClass {
  const instances: FakeEventSource[] = [];
  class ES extends FakeTarget implements FakeEventSource {
    static instances = instances;
    static get last(): FakeEventSource {
      const es = instances[instances.length - 1];
      if (!es) throw new Error('no EventSource was created');
      return es;
    }
    readonly url: string;
    readyState = 0;
    closed = false;
    /** The EventSource init the client passed. */
    readonly init: { withCredentials?: boolean } | undefined;
    constructor(url: string, init?: { withCredentials?: boolean }) {
      super();
      this.url = url;
      this.init = init;
      instances.push(this);
    }
    close(): void {
      this.closed = true;
      this.readyState = 2;
    }
    open(): void {
      this.readyState = 1;
      this.dispatch('open', {});
    }
    receive(message: ServerMessage, id?: number): void {
      this.dispatch('message', { data: jsonCodec.encode(message), lastEventId: id === undefined ? '' : String(id) });
    }
    receiveRaw(data: string): void {
      this.dispatch('message', { data });
    }
    error(fatal = false): void {
      this.readyState = fatal ? 2 : 0;
      this.dispatch('error', {});
    }
  }
  return ES as unknown as FakeEventSourceClass;
}

export interface FetchCall {
  url: string;
  method: string;
  body: unknown;
  headers: Record<string, string>;
  signal?: AbortSignal;
  credentials?: string;
  /** Answer it (a poll: build `body` with {@link pollAnswer}; a session opening: with {@link sessionOpened}). */
  respond(status: number, body?: unknown): void;
  /** Fail it (a network error). */
  fail(message?: string): void;
  settled: boolean;
}

/** Check a request body as the server's routes would (src/fallbacks/router.ts), recording what it would refuse. */
function checkRequestBody(method: string, url: string, body: unknown): void {
  const path = new URL(url).pathname;
  if (method === 'POST' && /\/session$/.test(path)) {
    const ok = typeof body === 'object' && body !== null && Object.keys(body).length === 1 && ['sse', 'poll'].includes((body as Msg).transport);
    if (!ok) violation(`POST ${path} ${JSON.stringify(body)}: the server wants {"transport": "sse" | "poll"}`);
  } else if (method === 'POST' && /\/session\/[^/]+$/.test(path)) {
    if (!Array.isArray(body) || body.length < 1 || body.length > 100) violation(`POST ${path} ${JSON.stringify(body)}: the server wants an array of 1-100 messages`);
    else for (const message of body) decodeClientMessage(jsonCodec, jsonCodec.encode(message) as string);
  }
}

/**
 * A fetch whose calls wait until the test answers them. `auto` answers
 * some calls at once (return undefined to leave a call pending). Request
 * bodies are checked as the real server would (see {@link protocolViolations}).
 */
export function fakeFetch(auto?: (call: FetchCall) => { status: number; body?: unknown } | undefined) {
  const calls: FetchCall[] = [];
  const fetch = (url: string, init: FetchInit = {}): Promise<ResponseLike> =>
    new Promise<ResponseLike>((resolve, reject) => {
      const call: FetchCall = {
        url,
        method: init.method ?? 'GET',
        body: init.body === undefined ? undefined : jsonCodec.decode(init.body),
        headers: init.headers ?? {},
        signal: init.signal,
        credentials: init.credentials,
        settled: false,
        respond(status, body) {
          if (call.settled) return;
          call.settled = true;
          const text = body === undefined ? '' : JSON.stringify(body);
          resolve({
            status,
            ok: status >= 200 && status < 300,
            json: async () => JSON.parse(text),
            text: async () => text,
          });
        },
        fail(message = 'network error') {
          if (call.settled) return;
          call.settled = true;
          reject(new TypeError(message));
        },
      };
      init.signal?.addEventListener('abort', () => call.fail('aborted'));
      checkRequestBody(call.method, url, call.body);
      calls.push(call);
      const answer = auto?.(call);
      if (answer) call.respond(answer.status, answer.body);
    });
  return {
    fetch,
    calls,
    /** Calls not answered yet, optionally by method and URL part. */
    pending(method?: string, urlPart?: string): FetchCall[] {
      return calls.filter((c) => !c.settled && (!method || c.method === method) && (!urlPart || c.url.includes(urlPart)));
    },
    /** Every message the client POSTed to the session, in order. */
    posted(): Msg[] {
      return calls.filter((c) => c.method === 'POST' && /\/session\/[^/]+$/.test(c.url)).flatMap((c) => c.body as Msg[]);
    },
  };
}

// ---- promises and timers ---------------------------------------------------------

/** Follow a promise's outcome without awaiting it. */
export function track<T>(p: Promise<T>): { value?: T; error?: Error & { code?: string; closeCode?: number; serverCode?: number }; settled: boolean } {
  const out: { value?: T; error?: Error & { code?: string }; settled: boolean } = { settled: false };
  p.then(
    (v) => Object.assign(out, { value: v, settled: true }),
    (e) => Object.assign(out, { error: e, settled: true }),
  );
  return out;
}

/**
 * Count the timers that are set and neither fired nor cleared: wraps the
 * global setTimeout/clearTimeout (call it after `mock.timers.enable`, and
 * `restore()` before the test ends, so the mock's own reset finds its
 * functions in place).
 */
export function trackTimers(): { readonly pending: number; restore(): void } {
  const realSet = globalThis.setTimeout;
  const realClear = globalThis.clearTimeout;
  const live = new Set<unknown>();
  const set = ((fn: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const id: unknown = realSet(
      (...a: unknown[]) => {
        live.delete(id);
        fn(...a);
      },
      ms,
      ...args,
    );
    live.add(id);
    return id;
  }) as unknown as typeof setTimeout;
  const clear = ((id: unknown) => {
    live.delete(id);
    realClear(id as Parameters<typeof clearTimeout>[0]);
  }) as typeof clearTimeout;
  globalThis.setTimeout = set;
  globalThis.clearTimeout = clear;
  return {
    get pending() {
      return live.size;
    },
    restore() {
      if (globalThis.setTimeout === set) globalThis.setTimeout = realSet;
      if (globalThis.clearTimeout === clear) globalThis.clearTimeout = realClear;
    },
  };
}
