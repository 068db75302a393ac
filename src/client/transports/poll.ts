/**
 * The long-polling transport: server → client with `GET
 * <path>/session/<id>/poll?ack=<seq>` in a loop (each answer `{"messages":
 * [{"id": 18, "msg": {...}}]}`, the next poll acknowledges the last id),
 * client → server with POST (see http-session.ts). docs/protocol.md,
 * "Server → client by long-polling".
 */
import { closeCodeForStatus, HttpSessionTransport, type SessionInfo } from './http-session.js';

/** Added to the server's `pollTimeoutMs` before a poll counts as lost, in ms. */
const POLL_MARGIN_MS = 10000;
/** Consecutive failed polls (network errors, 5xx) before the transport gives up. */
const MAX_POLL_FAILURES = 2;
/** Upper bound of the pause after a failed poll, in ms. */
const MAX_RETRY_PAUSE_MS = 1000;

export class PollTransport extends HttpSessionTransport {
  readonly name = 'poll' as const;
  #ack = 0;
  #failures = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #pollController: AbortController | null = null;

  protected startReceiving(_session: SessionInfo): void {
    // The session exists and buffers what the server sends: the client may talk now.
    this.markOpen();
    this.#poll();
  }

  protected stopReceiving(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#pollController?.abort();
    this.#pollController = null;
  }

  /** The last sequence number received (what the next poll acknowledges). */
  get ack(): number {
    return this.#ack;
  }

  #poll(): void {
    if (this.done || !this.session) return;
    const session = this.session;
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    this.#pollController = controller;
    // A poll that outlives the server's wait by a margin is lost (a proxy holding it, a dead link).
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#failed('a poll got no answer in time');
      controller?.abort();
    }, session.pollTimeoutMs + POLL_MARGIN_MS);
    this.#pollOnce(controller).catch((err: unknown) => {
      if (this.done || this.#pollController !== controller) return;
      this.#clearTimer();
      this.#failed(`poll failed: ${(err as Error)?.message ?? String(err)}`);
    });
  }

  async #pollOnce(controller: AbortController | null): Promise<void> {
    const res = await this.fetch!(this.sessionUrl(`/poll?ack=${this.#ack}`), {
      method: 'GET',
      headers: { Accept: 'application/json' },
      signal: controller?.signal,
    });
    if (this.done || this.#pollController !== controller) return;
    if (res.status === 404) {
      this.#clearTimer();
      this.session = null;
      this.fail(1006, 'the session expired');
      return;
    }
    if (!res.ok) {
      this.#clearTimer();
      if (res.status >= 500 || res.status === 429) this.#failed(`poll failed: HTTP ${res.status}`);
      else this.fail(closeCodeForStatus(res.status), `poll failed: HTTP ${res.status}`);
      return;
    }
    const body = (await res.json()) as { messages?: Array<{ id?: unknown; msg?: unknown }> } | null;
    if (this.done || this.#pollController !== controller) return;
    this.#clearTimer();
    this.#failures = 0;
    const messages = Array.isArray(body?.messages) ? body.messages : [];
    for (const entry of messages) {
      if (this.done) return;
      const id = entry?.id;
      if (typeof id !== 'number' || !Number.isSafeInteger(id)) {
        this.fail(1006, 'malformed poll answer: a message without a numeric id');
        return;
      }
      // Sequence numbers only grow; one at or below the ack is a repeat.
      if (id <= this.#ack) continue;
      this.#ack = id;
      this.deliver(entry.msg);
    }
    this.#poll();
  }

  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** A lost or failed poll: try again after a short pause; give up after a few in a row. */
  #failed(reason: string): void {
    if (this.done) return;
    this.#pollController = null;
    this.#failures++;
    if (this.#failures >= MAX_POLL_FAILURES) {
      this.fail(1006, reason);
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#poll();
    }, Math.min(this.session?.retryMs ?? MAX_RETRY_PAUSE_MS, MAX_RETRY_PAUSE_MS));
  }
}
