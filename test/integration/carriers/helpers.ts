/**
 * Helpers of the fallback-transport tests: plain `fetch` against a real
 * server, a small Server-Sent Events parser over a fetch body (WHATWG HTML
 * §9.2.6 "Interpreting an event stream": lines split on CR, LF or CRLF;
 * `field: value` with one leading space removed; `:` starts a comment; a
 * blank line dispatches), and a test client for SSE and long-polling
 * sessions: a `QueueClient` like the WebSocket `RtClient`, with the same
 * `request`/`next` interface. Every wait is bounded; every stream, poll loop
 * and session is stopped after the test.
 */
import type { TestContext } from 'node:test';
import { QueueClient, startServer as startRealtimeServer, WAIT, Wakeup, within, type Message, type TestServer } from '../realtime/helpers.js';

export * from '../realtime/helpers.js';

/** Cleanups that must run before the server closes (t.after hooks run in the order registered). */
const early = new WeakMap<TestContext, Array<() => unknown>>();

function cleanup(t: TestContext, fn: () => unknown): void {
  const list = early.get(t);
  if (list) list.push(fn);
  else t.after(fn);
}

/**
 * `startServer` of the realtime helpers, plus a hook that runs first after
 * the test: it stops the fallback clients and ends their sessions, so the
 * server's close does not wait for sessions nobody polls.
 */
export async function startServer(t: TestContext, options: Parameters<typeof startRealtimeServer>[1] = {}): Promise<TestServer> {
  const list: Array<() => unknown> = [];
  early.set(t, list);
  t.after(async () => {
    for (const fn of list.reverse()) await Promise.resolve().then(fn).catch(() => {});
  });
  return startRealtimeServer(t, options);
}

export type Kind = 'sse' | 'poll';

export interface FetchResult {
  status: number;
  headers: Headers;
  text: string;
  json(): any;
}

/** One request with a bounded wait; the body is read completely. */
export async function request(url: string, init: RequestInit & { ms?: number } = {}): Promise<FetchResult> {
  const { ms = WAIT, ...rest } = init;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ms);
  try {
    const res = await fetch(url, { ...rest, signal: controller.signal });
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) };
  } finally {
    clearTimeout(timer);
  }
}

/** `POST <base>/rt/session{query}` with `{"transport": kind}` (or `body` as given). */
export function openRaw(base: string, kind: Kind, options: { headers?: Record<string, string>; query?: string; body?: string } = {}): Promise<FetchResult> {
  return request(`${base}/rt/session${options.query ?? ''}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...options.headers },
    body: options.body ?? JSON.stringify({ transport: kind }),
  });
}

/** Open a session; fails unless 201. Returns the session id. Ended with DELETE after the test. */
export async function openSession(t: TestContext, base: string, kind: Kind, options: { headers?: Record<string, string>; query?: string } = {}): Promise<string> {
  const res = await openRaw(base, kind, options);
  if (res.status !== 201) throw new Error(`opening a ${kind} session: HTTP ${res.status} ${res.text}`);
  const id = res.json().session as string;
  cleanup(t, () => request(`${base}/rt/session/${id}`, { method: 'DELETE' }).catch(() => {}));
  return id;
}

/** `POST <base>/rt/session/<id>` with a JSON array of messages (or a raw body). */
export function post(base: string, id: string, messages: unknown, headers: Record<string, string> = {}): Promise<FetchResult> {
  return request(`${base}/rt/session/${id}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof messages === 'string' ? messages : JSON.stringify(messages),
  });
}

/** One poll: `GET <base>/rt/session/<id>/poll?ack=<ack>`. */
export function poll(base: string, id: string, ack: number, ms = WAIT): Promise<FetchResult> {
  return request(`${base}/rt/session/${id}/poll?ack=${ack}`, { ms });
}

// ---------------------------------------------------------------------------
// Server-Sent Events over fetch

export interface SseEvent {
  id: string;
  data: string;
  event: string;
}

/**
 * An event stream read by hand: events, `retry` values and comments are
 * queued; `next()` takes events with a bounded wait. `end` resolves when the
 * server ends the stream.
 */
export class SseReader {
  readonly status: number;
  readonly headers: Headers;
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  readonly retries: number[] = [];
  /** Every chunk as received (for format checks). */
  raw = '';
  /** The last event id seen (what EventSource would send as Last-Event-ID). */
  lastEventId = '';
  readonly end: Promise<void>;
  private ended = false;
  private readonly controller: AbortController;
  private inbox: SseEvent[] = [];
  private readonly wakeup = new Wakeup();
  private buffer = '';
  private data: string[] = [];
  private eventType = '';
  private eventId: string | null = null;

  private constructor(res: Response, controller: AbortController) {
    this.status = res.status;
    this.headers = res.headers;
    this.controller = controller;
    this.end = this.pump(res).finally(() => {
      this.ended = true;
      this.wakeup.wake();
    });
  }

  /** `GET <url>` as an event stream; rejects unless the answer is 200. */
  static async open(t: TestContext, url: string, headers: Record<string, string> = {}): Promise<SseReader> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), WAIT);
    let res: Response;
    try {
      res = await fetch(url, { headers: { Accept: 'text/event-stream', ...headers }, signal: controller.signal });
    } finally {
      clearTimeout(timer);
    }
    if (res.status !== 200) {
      const text = await res.text();
      throw Object.assign(new Error(`event stream: HTTP ${res.status} ${text}`), { status: res.status, text });
    }
    const reader = new SseReader(res, controller);
    cleanup(t, () => reader.close());
    return reader;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** Drop the stream from the client side. */
  async close(): Promise<void> {
    await this.reader?.cancel().catch(() => {});
    this.controller.abort();
    await within(this.end, WAIT, 'the event stream to end after close()');
  }

  private reader: ReadableStreamDefaultReader<Uint8Array> | null = null;

  private async pump(res: Response): Promise<void> {
    const decoder = new TextDecoder();
    const reader = res.body!.getReader();
    this.reader = reader;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        const text = decoder.decode(value, { stream: true });
        this.raw += text;
        this.feed(text);
      }
    } catch {
      // aborted by close(), or the connection dropped
    }
  }

  private feed(text: string): void {
    this.buffer += text;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      // A lone CR at the end may be the first half of CRLF: wait for more.
      if (!m || (m[0] === '\r' && m.index === this.buffer.length - 1)) return;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === '') {
      if (this.eventId !== null) this.lastEventId = this.eventId;
      if (this.data.length > 0) {
        const event = { id: this.lastEventId, data: this.data.join('\n'), event: this.eventType || 'message' };
        this.events.push(event);
        this.inbox.push(event);
        this.wakeup.wake();
      }
      this.data = [];
      this.eventType = '';
      this.eventId = null;
      return;
    }
    if (line.startsWith(':')) {
      this.comments.push(line.slice(1).trim());
      this.wakeup.wake();
      return;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'id') this.eventId = value;
    else if (field === 'event') this.eventType = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retries.push(Number(value));
  }

  /** Wait until `predicate()` holds (re-checked on each event, comment and the end). */
  async waitFor(predicate: () => boolean, ms = WAIT, what = 'a condition'): Promise<void> {
    const tail = (): string => `; raw stream: ${JSON.stringify(this.raw.slice(-400))}`;
    const ended = (): Error | null => (this.ended ? new Error(`stream ended while waiting for ${what}${tail()}`) : null);
    await this.wakeup.until(() => (predicate() ? true : undefined), ms, what, ended, tail);
  }

  /** Take the next queued event. */
  async next(ms = WAIT): Promise<SseEvent> {
    await this.waitFor(() => this.inbox.length > 0, ms, 'an event');
    return this.inbox.shift()!;
  }
}

// ---------------------------------------------------------------------------
// A realtime client over a fallback session

/**
 * The realtime protocol over SSE or long-polling, for tests: messages are
 * sent with POST (one request each call), received through an `SseReader`
 * or a poll loop, and queued like `RtClient`'s. A `close` message resolves
 * `closed`.
 */
export class HttpClient extends QueueClient {
  readonly kind: Kind;
  readonly base: string;
  readonly id: string;
  /** Everything received, in order, with its sequence number. */
  readonly received: Array<{ seq: number; msg: Message }> = [];
  stream: SseReader | null = null;
  /** The last sequence number received (the next poll's ack). */
  ack = 0;
  private polling = false;
  private pollController: AbortController | null = null;
  private pollLoop: Promise<void> | null = null;
  /** Set when the session answered 404 (ended). */
  gone = false;
  /** A poll that failed (not 200/404). */
  failure: Error | null = null;

  constructor(kind: Kind, base: string, id: string) {
    super('the session to close');
    this.kind = kind;
    this.base = base;
    this.id = id;
  }

  /** Open a session and start receiving (SSE stream or poll loop). Stopped after the test. */
  static async open(t: TestContext, base: string, kind: Kind, options: { headers?: Record<string, string>; query?: string } = {}): Promise<HttpClient> {
    const id = await openSession(t, base, kind, options);
    const client = new HttpClient(kind, base, id);
    cleanup(t, () => client.stop());
    await client.start(t);
    return client;
  }

  /** Start receiving: open the event stream (with Last-Event-ID after a drop) or start polling. */
  async start(t: TestContext, headers: Record<string, string> = {}): Promise<void> {
    if (this.kind === 'sse') {
      const h: Record<string, string> = { ...headers };
      if (this.ack > 0) h['Last-Event-ID'] = String(this.ack);
      const stream = await SseReader.open(t, `${this.base}/rt/session/${this.id}/events`, h);
      this.stream = stream;
      void this.consume(stream);
    } else {
      this.polling = true;
      this.pollLoop = this.loop().catch((err: unknown) => {
        this.failure = err as Error;
        this.wakeup.wake();
      });
    }
  }

  /** Stop receiving without ending the session (a dropped stream / a client that stops polling). */
  async stop(): Promise<void> {
    if (this.stream) {
      const s = this.stream;
      this.stream = null;
      await s.close();
    }
    this.polling = false;
    this.pollController?.abort();
    await this.pollLoop?.catch(() => {});
    this.pollLoop = null;
  }

  private async consume(stream: SseReader): Promise<void> {
    for (;;) {
      let event: SseEvent;
      try {
        await stream.waitFor(() => stream.events.length > 0 || stream.isEnded, 60_000, 'events');
        if (stream.events.length === 0) return;
        event = stream.events.shift()!;
      } catch {
        return;
      }
      this.receive(Number(event.id), JSON.parse(event.data) as Message);
    }
  }

  private async loop(): Promise<void> {
    while (this.polling && !this.isClosed) {
      const controller = new AbortController();
      this.pollController = controller;
      let res: Response;
      let body: { messages: Array<{ id: number; msg: Message }> };
      try {
        res = await fetch(`${this.base}/rt/session/${this.id}/poll?ack=${this.ack}`, { signal: controller.signal });
        if (res.status === 404) {
          await res.text();
          this.gone = true;
          this.wakeup.wake();
          return;
        }
        if (res.status !== 200) throw new Error(`poll: HTTP ${res.status} ${await res.text()}`);
        body = (await res.json()) as typeof body;
      } catch (err) {
        if (!this.polling) return;
        throw err;
      }
      for (const { id, msg } of body.messages) if (id > this.ack) this.receive(id, msg);
    }
  }

  private receive(seq: number, msg: Message): void {
    if (seq <= this.ack && this.kind === 'poll') return;
    this.ack = Math.max(this.ack, seq);
    this.received.push({ seq, msg });
    if (msg.op === 'close') this.finish({ code: msg.code, reason: msg.reason });
    else this.deliver(msg);
  }

  protected override interrupted(what: string): Error | null {
    return super.interrupted(what) ?? (this.gone ? new Error(`session gone (404) while waiting for ${what}`) : this.failure);
  }

  /** POST messages (a batch); the answer's status must be 204. */
  async send(...messages: object[]): Promise<void> {
    const res = await post(this.base, this.id, messages);
    if (res.status !== 204) throw new Error(`POST messages: HTTP ${res.status} ${res.text}`);
  }

  protected transmit(message: object): Promise<void> {
    return this.send(message);
  }
}

// ---------------------------------------------------------------------------
// EventSource for Node (the client SDK takes one; Node 20 has none)

type Listener = (event: any) => void;

/**
 * The part of WHATWG `EventSource` the client SDK uses, over fetch and
 * {@link SseReader}'s parsing: `open`/`message`/`error` events, `readyState`
 * (0 connecting, 1 open, 2 closed), and the reconnect after a dropped stream
 * (after `retry` ms, with `Last-Event-ID`). A non-200 answer closes it for
 * good (readyState 2), as the spec says (§9.2.3 "fail the connection").
 */
export class FetchEventSource {
  static readonly instances = new Set<FetchEventSource>();
  readyState = 0;
  readonly url: string;
  /** Streams opened (1 + reconnects). */
  connections = 0;
  private readonly listeners = new Map<string, Listener[]>();
  private controller: AbortController | null = null;
  private reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  private lastEventId = '';
  private retryMs = 1000;
  private timer: NodeJS.Timeout | null = null;

  constructor(url: string) {
    this.url = url;
    FetchEventSource.instances.add(this);
    void this.connect();
  }

  addEventListener(type: string, listener: Listener): void {
    const list = this.listeners.get(type) ?? [];
    list.push(listener);
    this.listeners.set(type, list);
  }

  close(): void {
    this.readyState = 2;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    void this.reader?.cancel().catch(() => {});
    this.controller?.abort();
    FetchEventSource.instances.delete(this);
  }

  /** Drop the current stream as a network failure would (the source reconnects by itself). */
  drop(): void {
    void this.reader?.cancel().catch(() => {});
    this.controller?.abort();
  }

  private emit(type: string, event: object): void {
    for (const l of this.listeners.get(type) ?? []) l(event);
  }

  private async connect(): Promise<void> {
    if (this.readyState === 2) return;
    this.connections++;
    const controller = new AbortController();
    this.controller = controller;
    let res: Response;
    try {
      const headers: Record<string, string> = { Accept: 'text/event-stream' };
      if (this.lastEventId) headers['Last-Event-ID'] = this.lastEventId;
      res = await fetch(this.url, { headers, signal: controller.signal });
    } catch {
      this.reconnect();
      return;
    }
    if (this.readyState === 2) {
      await res.body?.cancel().catch(() => {});
      return;
    }
    if (res.status !== 200 || !/^text\/event-stream/.test(res.headers.get('content-type') ?? '')) {
      await res.body?.cancel().catch(() => {});
      this.readyState = 2;
      FetchEventSource.instances.delete(this);
      this.emit('error', {});
      return;
    }
    this.readyState = 1;
    this.emit('open', {});
    const reader = res.body!.getReader();
    this.reader = reader;
    const decoder = new TextDecoder();
    let buffer = '';
    let data: string[] = [];
    let id: string | null = null;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let nl: number;
        while ((nl = buffer.indexOf('\n')) !== -1) {
          const line = buffer.slice(0, nl).replace(/\r$/, '');
          buffer = buffer.slice(nl + 1);
          if (line === '') {
            if (id !== null) this.lastEventId = id;
            if (data.length > 0 && this.readyState === 1) this.emit('message', { data: data.join('\n'), lastEventId: this.lastEventId });
            data = [];
            id = null;
            continue;
          }
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon === -1 ? line : line.slice(0, colon);
          let v = colon === -1 ? '' : line.slice(colon + 1);
          if (v.startsWith(' ')) v = v.slice(1);
          if (field === 'data') data.push(v);
          else if (field === 'id') id = v;
          else if (field === 'retry' && /^\d+$/.test(v)) this.retryMs = Number(v);
        }
      }
    } catch {
      // dropped
    }
    this.reconnect();
  }

  private reconnect(): void {
    if (this.readyState === 2) return;
    this.readyState = 0;
    this.emit('error', {});
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.connect();
    }, this.retryMs);
  }
}
