/**
 * Server → client by long-polling: `GET <path>/session/<id>/poll?ack=<seq>`
 * (docs/protocol.md, "Server → client by long-polling").
 *
 * A poll acknowledges every message up to `ack` (they leave the session's
 * buffer) and is answered with the messages after it — at once when there
 * are some, else as soon as one arrives, else empty after `pollTimeoutMs`:
 *
 * ```json
 * {"messages": [{"id": 18, "msg": {"op": "msg", ...}}, ...]}
 * ```
 *
 * The answer is built from the messages' encoded JSON text (a broadcast is
 * encoded once for every session), not re-serialized. One poll at a time: a
 * newer poll ends the waiting one with an empty answer. Between polls the
 * session has no receiver, so a client that stops polling is gone after the
 * grace period.
 */
import type { BufferedMessage, HttpSessionCarrier, Receiver } from './http-session.js';
import { writeJsonText, type ResponseLike } from './http-json.js';

export interface PollOptions {
  /** How long to wait for a message, in ms. */
  timeoutMs: number;
  /** Extra response headers (CORS). */
  headers?: Record<string, string>;
}

function pollTimedOut(poll: PendingPoll): void {
  poll._timedOut();
}

export class PendingPoll implements Receiver {
  private readonly transport: HttpSessionCarrier;
  private readonly res: ResponseLike;
  private readonly headers: Record<string, string> | undefined;
  private readonly timer: NodeJS.Timeout;
  private done = false;

  constructor(transport: HttpSessionCarrier, res: ResponseLike, options: PollOptions) {
    this.transport = transport;
    this.res = res;
    this.headers = options.headers;
    this.timer = setTimeout(pollTimedOut, options.timeoutMs, this);
    this.timer.unref();
    res.on('error', () => {});
    res.on('close', () => {
      // The client gave up on this poll (or it was answered): no receiver until the next one.
      this.finish();
      transport.detach(this);
    });
  }

  /** Nothing is written before the answer. */
  get backlog(): number {
    return 0;
  }

  /** Messages are waiting: answer with all of them. */
  flush(): void {
    if (this.done) return;
    const messages = this.transport.unsent();
    if (messages.length === 0) return;
    this.answer(messages);
    this.transport.detach(this);
    // May end the session (the close message went out).
    this.transport.markSent(messages[messages.length - 1]!.seq);
  }

  /** Replaced by a newer poll, or the session ended: answer empty. */
  release(): void {
    this.answer([]);
  }

  /** @internal */
  _timedOut(): void {
    if (this.done) return;
    this.answer([]);
    this.transport.detach(this);
  }

  private answer(messages: BufferedMessage[]): void {
    if (this.done) return;
    this.finish();
    if (this.res.destroyed || this.res.headersSent) return;
    let text = '{"messages":[';
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i]!;
      text += `${i === 0 ? '' : ','}{"id":${m.seq},"msg":${m.text}}`;
    }
    text += ']}';
    writeJsonText(this.res, 200, text, this.headers);
  }

  private finish(): void {
    this.done = true;
    clearTimeout(this.timer);
  }
}
