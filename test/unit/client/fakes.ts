/**
 * Fakes for the client SDK's unit tests: a WebSocket, an EventSource and a
 * fetch that the test drives by hand (open, deliver, fail), a network
 * monitor, and a harness that connects a `Client` through them. Used with
 * `mock.timers` (setTimeout and Date) so backoff, timeouts and dead-link
 * detection run on a fake clock.
 */
import type { TestContext } from 'node:test';
import { Client, type ClientOptions, type NetworkMonitor } from '../../../src/client/index.js';
import type { FetchInit, ResponseLike } from '../../../src/client/transports/transport.js';

export type Msg = Record<string, any>;

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
  /** Messages the client sent, decoded (JSON). */
  readonly sent: Msg[];
  /** What the client passed to close(), if it did. */
  closedWith: { code?: number; reason?: string } | null;
  send(data: string | ArrayBufferView | ArrayBuffer): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, fn: Listener): void;
  /** The handshake succeeds. */
  open(protocol?: string): void;
  /** A server message arrives. */
  receive(message: Msg): void;
  /** Raw data arrives. */
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
      instances.push(this);
    }
    send(data: string | ArrayBufferView | ArrayBuffer): void {
      if (this.readyState !== 1) throw new Error(`send in readyState ${this.readyState}`);
      this.sent.push(JSON.parse(String(data)));
    }
    close(code?: number, reason?: string): void {
      if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999)) throw new Error(`InvalidAccessError: close code ${code}`);
      this.closedWith = { code, reason };
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.dispatch('close', { code: code ?? 1005, reason: reason ?? '', wasClean: true });
    }
    open(protocol = this.protocols[0] ?? ''): void {
      this.readyState = 1;
      this.protocol = protocol;
      this.dispatch('open', {});
    }
    receive(message: Msg): void {
      this.dispatch('message', { data: JSON.stringify(message) });
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

/** Answer the newest `auth` on `ws` with ok. */
export function acceptAuth(ws: FakeWebSocket, reply: Msg = {}): void {
  const auth = ws.sentOps('auth').at(-1);
  if (!auth) throw new Error(`no auth sent; sent: ${JSON.stringify(ws.sent)}`);
  ws.receive({ op: 'ok', id: auth.id, client: 'conn-1', user: 'alice', expiresIn: null, ...reply });
}

/** Open the newest socket and accept its auth (with a token) or just open it (anonymous). */
export async function accept(h: Harness, reply: Msg = {}): Promise<FakeWebSocket> {
  await flush();
  const ws = h.WS.last;
  ws.open();
  if (ws.sentOps('auth').length > 0) acceptAuth(ws, reply);
  await flush();
  return ws;
}

/** Answer every unanswered `sub` on `ws` with ok at `position` (and `recovered` when it had `since`). */
export function acceptSubs(ws: FakeWebSocket, extra: (sub: Msg) => Msg = () => ({})): void {
  for (const sub of ws.sentOps('sub')) {
    if ((sub as { answered?: boolean }).answered) continue;
    (sub as { answered?: boolean }).answered = true;
    const base: Msg = { op: 'ok', id: sub.id, channel: sub.channel, position: { offset: 0, epoch: 'e1' } };
    if (sub.since) base.recovered = true;
    ws.receive({ ...base, ...extra(sub) });
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
  /** An event with `data` = JSON of `message`, and an id. */
  receive(message: Msg, id?: number): void;
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
    receive(message: Msg, id?: number): void {
      this.dispatch('message', { data: JSON.stringify(message), lastEventId: id === undefined ? '' : String(id) });
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
  /** Answer it. */
  respond(status: number, body?: unknown): void;
  /** Fail it (a network error). */
  fail(message?: string): void;
  settled: boolean;
}

/**
 * A fetch whose calls wait until the test answers them. `auto` answers
 * some calls at once (return undefined to leave a call pending).
 */
export function fakeFetch(auto?: (call: FetchCall) => { status: number; body?: unknown } | undefined) {
  const calls: FetchCall[] = [];
  const fetch = (url: string, init: FetchInit = {}): Promise<ResponseLike> =>
    new Promise<ResponseLike>((resolve, reject) => {
      const call: FetchCall = {
        url,
        method: init.method ?? 'GET',
        body: init.body === undefined ? undefined : JSON.parse(init.body),
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
