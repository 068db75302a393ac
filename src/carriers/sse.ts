/**
 * Server → client over Server-Sent Events: `GET <path>/session/<id>/events`
 * (docs/protocol.md, "Server → client over SSE"; WHATWG HTML §9.2
 * "Server-sent events").
 *
 * The stream starts with `retry: <ms>` (the EventSource reconnect delay),
 * then carries one event per server message: `id: <seq>` and `data: <json>`
 * (JSON never contains a raw line break, so one `data:` line suffices). An
 * EventSource that reconnects sends the last id it saw as `Last-Event-ID`
 * ("the last event ID string of the event source"); the session then drops
 * what the client has and replays the rest. A comment line (`: keep-alive`)
 * goes out every `sseKeepAliveMs` so proxies keep an idle stream open.
 *
 * Backpressure: the stream writes only while its socket takes data; what it
 * cannot write stays in the session's buffer (and counts as the session's
 * `bufferedAmount`), and goes out on 'drain'.
 */
import type { HttpSessionCarrier, Receiver } from './http-session.js';
import type { ResponseLike } from './http-json.js';

export interface SseStreamOptions {
  /** Keep-alive comment interval, in ms. */
  keepAliveMs: number;
  /** EventSource reconnect delay (`retry:`), in ms. */
  retryMs: number;
  /** Extra response headers (CORS). */
  headers?: Record<string, string>;
}

function keepAlive(stream: SseStream): void {
  stream._keepAlive();
}

export class SseStream implements Receiver {
  private readonly transport: HttpSessionCarrier;
  private readonly res: ResponseLike;
  private readonly timer: NodeJS.Timeout;
  private released = false;
  private draining = false;

  constructor(transport: HttpSessionCarrier, res: ResponseLike, options: SseStreamOptions) {
    this.transport = transport;
    this.res = res;
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      // nginx: do not buffer this response (it would hold events back).
      'X-Accel-Buffering': 'no',
      ...options.headers,
    });
    res.write(`retry: ${options.retryMs}\n\n`);
    this.timer = setInterval(keepAlive, options.keepAliveMs, this);
    this.timer.unref();
    // A socket error ends the response ('close' follows); it is the client's, never the process's.
    res.on('error', () => {});
    res.on('drain', () => {
      this.draining = false;
      this.flush();
    });
    res.on('close', () => {
      this.stop();
      transport.detach(this);
    });
  }

  get backlog(): number {
    return this.released ? 0 : this.res.writableLength;
  }

  /** Write every message not handed out yet, as one chunk; stop while the socket is full. */
  flush(): void {
    if (this.released || this.draining) return;
    const messages = this.transport.unsent();
    if (messages.length === 0) return;
    let chunk = '';
    for (const m of messages) chunk += `id: ${m.seq}\ndata: ${m.text}\n\n`;
    const more = this.res.write(chunk);
    if (!more) this.draining = true;
    // May end the session (the close message went out): then release() ends the stream.
    this.transport.markSent(messages[messages.length - 1]!.seq);
  }

  /** Replaced by a newer stream, or the session ended: end the response (EventSource may reconnect; it then gets 404). */
  release(): void {
    if (this.released) return;
    this.stop();
    this.res.end();
  }

  /** @internal */
  _keepAlive(): void {
    if (!this.released && !this.draining) this.res.write(': keep-alive\n\n');
  }

  private stop(): void {
    this.released = true;
    clearInterval(this.timer);
  }
}
