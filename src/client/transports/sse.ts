/**
 * The SSE transport: server → client over `GET <path>/session/<id>/events`
 * (an EventSource; each event's data is one server message, its `id` the
 * session's sequence number, which EventSource sends back as
 * `Last-Event-ID` when it reconnects by itself), client → server with POST
 * (see http-session.ts). docs/protocol.md, "Server → client over SSE".
 */
import { HttpSessionTransport, type SessionInfo } from './http-session.js';
import type { EventSourceLike } from './transport.js';

const CLOSED = 2;

export class SseTransport extends HttpSessionTransport {
  readonly name = 'sse' as const;
  #source: EventSourceLike | null = null;
  #everOpen = false;
  /** Running while EventSource reconnects on its own after the stream dropped. */
  #reopenTimer: ReturnType<typeof setTimeout> | null = null;

  protected startReceiving(_session: SessionInfo): void {
    const Ctor = this.context.EventSource;
    if (!Ctor) {
      this.fail(1006, 'no EventSource implementation');
      return;
    }
    let source: EventSourceLike;
    try {
      source = new Ctor(this.sessionUrl('/events'), this.context.withCredentials ? { withCredentials: true } : undefined);
    } catch (err) {
      this.fail(1006, `cannot open the event stream: ${(err as Error).message}`);
      return;
    }
    this.#source = source;
    source.addEventListener('open', () => {
      if (this.done) return;
      this.#clearReopenTimer();
      this.#everOpen = true;
      this.markOpen();
    });
    source.addEventListener('message', (event: { data: unknown }) => {
      if (this.done) return;
      let message: unknown;
      try {
        message = JSON.parse(String(event.data));
      } catch {
        this.fail(1006, 'malformed message from the server: not JSON');
        return;
      }
      this.deliver(message);
    });
    source.addEventListener('error', () => {
      if (this.done) return;
      // CLOSED: EventSource gave up (an HTTP error such as 404 for a session that is gone).
      if (source.readyState === CLOSED) {
        this.fail(1006, 'the event stream failed');
        return;
      }
      // Never opened: the stream cannot get through (a proxy that buffers or blocks it).
      if (!this.#everOpen) {
        this.fail(1006, 'the event stream failed before it opened');
        return;
      }
      // Dropped after it was open: EventSource reconnects with Last-Event-ID by itself; give it a bounded time.
      if (!this.#reopenTimer) {
        this.#reopenTimer = setTimeout(() => {
          this.#reopenTimer = null;
          this.fail(1006, 'the event stream did not reconnect in time');
        }, this.context.connectTimeoutMs);
      }
    });
  }

  protected stopReceiving(): void {
    this.#clearReopenTimer();
    this.#source?.close();
    this.#source = null;
  }

  #clearReopenTimer(): void {
    if (this.#reopenTimer) clearTimeout(this.#reopenTimer);
    this.#reopenTimer = null;
  }
}
