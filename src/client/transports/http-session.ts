/**
 * What the SSE and long-polling transports share (docs/protocol.md,
 * "Fallback transports"): a session opened with `POST <path>/session`,
 * client messages sent as JSON arrays with `POST <path>/session/<id>` (one
 * request at a time, so they arrive in order), the end with `DELETE`, and
 * the mapping of HTTP failures to close codes. JSON only.
 */
import type { ClientMessage, ServerMessage } from '../../wire/messages.js';
import {
  httpEndpoint,
  isServerMessage,
  later,
  type ClientTransport,
  type FetchLike,
  type TransportContext,
  type TransportHandler,
  type TransportName,
} from './transport.js';

/** Messages per `POST /rt/session/<id>` (the server takes 1-100). */
const MAX_BATCH = 100;

/** The server's answer to `POST /rt/session`. */
export interface SessionInfo {
  session: string;
  transport: 'sse' | 'poll';
  /** How long a poll waits for messages, in ms (about 25000). */
  pollTimeoutMs: number;
  /** The EventSource reconnect delay the server suggests, in ms (about 2000). */
  retryMs: number;
}

/**
 * A failed HTTP exchange as a close code, so the client decides about
 * reconnecting the same way as for a WebSocket close: 401 → 4500 (do not
 * reconnect: the credentials are wrong), 403 → 4502 (origin refused: do not),
 * 413 → 1009, 429/503 → 1013 (try again later), anything else (404: no such
 * endpoint or session, 5xx, network errors) → 1006.
 */
export function closeCodeForStatus(status: number): number {
  if (status === 401) return 4500;
  if (status === 403) return 4502;
  if (status === 413) return 1009;
  if (status === 429 || status === 503) return 1013;
  return 1006;
}

export abstract class HttpSessionTransport implements ClientTransport {
  abstract readonly name: TransportName;
  protected readonly context: TransportContext;
  protected readonly handler: TransportHandler;
  protected readonly fetch: FetchLike | undefined;
  protected readonly base: string;
  private readonly query: string;
  /** The session id, once opened. */
  protected session: SessionInfo | null = null;
  /** Set when the handler must hear nothing more. */
  protected done = false;
  private opened = false;
  private readonly controller: AbortController | null = typeof AbortController === 'function' ? new AbortController() : null;
  private outbox: ClientMessage[] = [];
  private posting = false;
  private flushScheduled = false;

  constructor(context: TransportContext, handler: TransportHandler) {
    this.context = context;
    this.handler = handler;
    const fetch = context.fetch;
    this.fetch = fetch && context.withCredentials ? (url, init) => fetch(url, { ...init, credentials: 'include' }) : fetch;
    const { base, query } = httpEndpoint(context.url);
    this.base = base;
    this.query = query;
  }

  /** Start receiving once the session exists; call `markOpen()` when messages can flow. */
  protected abstract startReceiving(session: SessionInfo): void;
  /** Stop receiving (close the stream, abort the poll). */
  protected abstract stopReceiving(): void;

  protected get signal(): AbortSignal | undefined {
    return this.controller?.signal;
  }

  protected sessionUrl(suffix = ''): string {
    return `${this.base}/session/${encodeURIComponent(this.session!.session)}${suffix}`;
  }

  open(): void {
    if (!this.fetch) {
      later(() => this.fail(1006, 'no fetch implementation'));
      return;
    }
    this.#openSession().catch((err: unknown) => this.fail(1006, `opening a ${this.name} session failed: ${(err as Error)?.message ?? String(err)}`));
  }

  async #openSession(): Promise<void> {
    const res = await this.fetch!(`${this.base}/session${this.query}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ transport: this.name }),
      signal: this.signal,
    });
    if (this.done) return;
    if (res.status !== 201 && res.status !== 200) {
      this.fail(closeCodeForStatus(res.status), `opening a ${this.name} session failed: HTTP ${res.status}${await errorText(res)}`);
      return;
    }
    const body = (await res.json()) as Partial<SessionInfo> | null;
    if (this.done) {
      // Closed while the session was being created: end it rather than leave it to expire.
      if (typeof body?.session === 'string' && body.session) {
        this.session = { session: body.session, transport: this.name === 'sse' ? 'sse' : 'poll', pollTimeoutMs: 0, retryMs: 0 };
        this.deleteSession();
      }
      return;
    }
    if (typeof body?.session !== 'string' || body.session.length === 0) {
      this.fail(1006, 'opening a session failed: no session id in the answer');
      return;
    }
    this.session = {
      session: body.session,
      transport: this.name === 'sse' ? 'sse' : 'poll',
      pollTimeoutMs: typeof body.pollTimeoutMs === 'number' && body.pollTimeoutMs > 0 ? body.pollTimeoutMs : 25000,
      retryMs: typeof body.retryMs === 'number' && body.retryMs >= 0 ? body.retryMs : 2000,
    };
    this.startReceiving(this.session);
  }

  /** The receiving side is up: the client may send. */
  protected markOpen(): void {
    if (this.done || this.opened) return;
    this.opened = true;
    this.handler.onOpen();
    this.flush();
  }

  /** One server message (parsed JSON). A `close` message ends the session. */
  protected deliver(message: unknown): void {
    if (this.done) return;
    if (!isServerMessage(message)) {
      this.fail(1006, 'malformed message from the server: not an object with an op');
      return;
    }
    const m = message as ServerMessage;
    if (m.op === 'close') {
      // The server ended the session: what a WebSocket close frame says.
      this.session = null;
      this.fail(typeof m.code === 'number' ? m.code : 1006, typeof m.reason === 'string' ? m.reason : '');
      return;
    }
    this.handler.onMessage(m);
  }

  send(message: ClientMessage): void {
    if (this.done) return;
    this.outbox.push(message);
    // A microtask later: messages sent in the same tick travel in one request.
    if (this.opened && !this.flushScheduled) {
      this.flushScheduled = true;
      later(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  /** POST what is queued, one request at a time (order), at most 100 messages each. */
  private flush(): void {
    if (this.posting || this.done || !this.session || this.outbox.length === 0) return;
    const batch = this.outbox.splice(0, MAX_BATCH);
    this.posting = true;
    this.#post(batch).then(
      () => {
        this.posting = false;
        this.flush();
      },
      (err: unknown) => {
        this.posting = false;
        this.fail(1006, `sending failed: ${(err as Error)?.message ?? String(err)}`);
      },
    );
  }

  async #post(batch: ClientMessage[]): Promise<void> {
    const res = await this.fetch!(this.sessionUrl(), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(batch),
      signal: this.signal,
    });
    if (this.done) return;
    if (res.status === 404) {
      this.session = null;
      this.fail(1006, 'the session expired');
      return;
    }
    if (!res.ok) this.fail(closeCodeForStatus(res.status), `sending failed: HTTP ${res.status}${await errorText(res)}`);
  }

  close(_code = 1000, _reason = ''): void {
    if (this.done) return;
    this.done = true;
    this.stopReceiving();
    this.controller?.abort();
    this.deleteSession();
  }

  /** End the session on the server (best effort, fire and forget). */
  protected deleteSession(): void {
    const session = this.session;
    if (!session || !this.fetch) return;
    this.session = null;
    this.fetch(`${this.base}/session/${encodeURIComponent(session.session)}`, { method: 'DELETE', keepalive: true }).then(
      () => {},
      () => {},
    );
  }

  /** Report the close once; stop everything and end the session on the server if it may still be there. */
  protected fail(code: number, reason: string): void {
    if (this.done) return;
    this.done = true;
    this.stopReceiving();
    this.controller?.abort();
    this.deleteSession();
    this.handler.onClose(code, reason);
  }
}

async function errorText(res: { text(): Promise<string> }): Promise<string> {
  try {
    const text = (await res.text()).slice(0, 200);
    return text ? ` ${text}` : '';
  } catch {
    return '';
  }
}
