/**
 * The outbox: publications from `publish()` until the server acks them.
 * Each has one random idempotency key, reused by every send of it (after a
 * timeout, a retryable error, a reconnect), so the server stores it once
 * within its key window; one sent but not acked for longer than that window
 * is not sent again (`RT_CLIENT_PUBLISH_UNCERTAIN`). While disconnected they
 * wait, up to `queueLimit`, and go out in order once connected; the link
 * paces them within the server's rate budget.
 */
import type { ClientMessage, OkReply, RequestId } from '../wire/messages.js';
import { ClientError, isRetryable } from './errors.js';
import { setTimer, type Timer } from './timer.js';
import type { PublishResult } from './types.js';

/** What the outbox sends through: the link. */
export interface OutboxLink {
  /** Whether a connection is up (auth answered). */
  readonly connected: boolean;
  /** How long the server remembers publish keys, in ms (its `auth` reply says). */
  readonly idempotencyTtlMs: number;
  /** A request id whose reply goes to `onReply` (unless the connection ends first). */
  expect(onReply: (reply: OkReply, error: ClientError | null) => void): RequestId;
  /** A reply to `id` is ignored from now on. */
  forget(id: RequestId): void;
  /** Send on the current connection, within the server's rate budget. */
  send(message: ClientMessage): void;
}

export interface OutboxOptions {
  /** One send's wait for its ack, in ms. */
  requestTimeoutMs: number;
  /** Sends again after a timeout or a retryable error. */
  publishRetries: number;
  /** Publications that may wait while disconnected. */
  queueLimit: number;
}

interface PendingPublish {
  channel: string;
  data: unknown;
  volatile: boolean;
  /** One idempotency key for every send of this publication. */
  key: string;
  /** Sends after a timeout or a retryable error so far. */
  retries: number;
  /** Sent on the current connection and not answered. */
  sent: boolean;
  /** When it was first sent (0: not yet): the server's duplicate check lasts from then. */
  firstSentAt: number;
  /** Request ids of its sends on the current connection (a late reply to any of them settles it). */
  ids: RequestId[];
  timer: Timer | null;
  resolve(result: PublishResult): void;
  reject(err: ClientError): void;
}

/** Resend only while the key is surely still remembered: allow for clock drift and the time in flight. */
const IDEMPOTENCY_MARGIN_MS = 10_000;

/** A random idempotency key (crypto.getRandomValues where available). */
function randomKey(): string {
  const bytes = new Uint8Array(16);
  const crypto = (globalThis as { crypto?: { getRandomValues?(a: Uint8Array): Uint8Array } }).crypto;
  if (crypto?.getRandomValues) crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  let out = '';
  for (const b of bytes) out += b.toString(16).padStart(2, '0');
  return out;
}

export class Outbox {
  readonly #link: OutboxLink;
  readonly #options: OutboxOptions;
  readonly #pauseMs: (n: number) => number;
  /** Publications not yet acknowledged, in order (queued or sent). */
  readonly #entries: PendingPublish[] = [];

  /** `pauseMs(n)`: the pause before retry `n` after a retryable refusal (it grows like the reconnect backoff). */
  constructor(link: OutboxLink, options: OutboxOptions, pauseMs: (n: number) => number) {
    this.#link = link;
    this.#options = options;
    this.#pauseMs = pauseMs;
  }

  /** Publications waiting to be sent or acknowledged. */
  get size(): number {
    return this.#entries.length;
  }

  /**
   * A publication: sent now when connected, else kept for the next
   * connection (rejects at once with `RT_CLIENT_QUEUE_FULL` past
   * `queueLimit`). Settles with the server's ack.
   */
  publish(channel: string, data: unknown, volatile: boolean): Promise<PublishResult> {
    if (!this.#link.connected && this.#entries.length >= this.#options.queueLimit) {
      return Promise.reject(
        new ClientError('RT_CLIENT_QUEUE_FULL', `not connected and ${this.#entries.length} publications are waiting already (queueLimit ${this.#options.queueLimit})`),
      );
    }
    return new Promise<PublishResult>((resolve, reject) => {
      const entry: PendingPublish = {
        channel,
        data,
        volatile,
        key: randomKey(),
        retries: 0,
        sent: false,
        firstSentAt: 0,
        ids: [],
        timer: null,
        resolve,
        reject,
      };
      this.#entries.push(entry);
      if (this.#link.connected) this.#send(entry);
    });
  }

  /** Connected: send what waited, in order. */
  flush(): void {
    for (const entry of [...this.#entries]) if (!entry.sent && this.#entries.includes(entry)) this.#send(entry);
  }

  /** The connection is gone (its replies with it): publications go again after the reconnect, with the same key. */
  connectionLost(): void {
    for (const entry of this.#entries) {
      entry.sent = false;
      entry.ids = [];
      if (entry.timer) clearTimeout(entry.timer);
      entry.timer = null;
    }
  }

  /** Reject every publication (the client gave up or was closed). */
  rejectAll(err: ClientError): void {
    for (const entry of this.#entries.splice(0)) {
      if (entry.timer) clearTimeout(entry.timer);
      entry.reject(err);
    }
  }

  #send(entry: PendingPublish): void {
    const now = Date.now();
    const ttlMs = this.#link.idempotencyTtlMs;
    if (entry.firstSentAt === 0) entry.firstSentAt = now;
    else if (now - entry.firstSentAt > ttlMs - IDEMPOTENCY_MARGIN_MS) {
      // The server may have stored the first send and forgotten its key by now: sending again could
      // publish it twice. The application decides (it may look at the channel's history).
      this.#settle(entry);
      entry.reject(
        new ClientError(
          'RT_CLIENT_PUBLISH_UNCERTAIN',
          `the publication to ${entry.channel} was sent ${Math.round((now - entry.firstSentAt) / 1000)} s ago without an ack, longer than the server remembers publish keys (${Math.round(ttlMs / 1000)} s): not sent again; it may or may not have been published`,
        ),
      );
      return;
    }
    const id = this.#link.expect((reply, error) => this.#onReply(entry, reply, error));
    entry.ids.push(id);
    entry.sent = true;
    const message: ClientMessage = { op: 'pub', id, channel: entry.channel, data: entry.data, key: entry.key };
    if (entry.volatile) message.volatile = true;
    this.#link.send(message);
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = setTimer(() => {
      entry.timer = null;
      // The reply to this id may still come (the link keeps expecting it); a retry has a new id and the same key.
      this.#retry(entry, new ClientError('RT_CLIENT_TIMEOUT', `no ack for the publication to ${entry.channel} within ${this.#options.requestTimeoutMs} ms`));
    }, this.#options.requestTimeoutMs);
  }

  #retry(entry: PendingPublish, failure: ClientError): void {
    if (!this.#entries.includes(entry)) return;
    if (entry.retries >= this.#options.publishRetries) {
      this.#settle(entry);
      entry.reject(
        failure.code === 'RT_CLIENT_TIMEOUT'
          ? new ClientError('RT_CLIENT_TIMEOUT', `${failure.message} (after ${entry.retries} retries)`)
          : failure,
      );
      return;
    }
    entry.retries++;
    if (this.#link.connected) this.#send(entry);
    else entry.sent = false; // sent after the reconnect
  }

  #onReply(entry: PendingPublish, reply: OkReply, error: ClientError | null): void {
    if (!this.#entries.includes(entry)) return; // settled by an earlier reply (a retry's or the first's)
    if (error) {
      if (isRetryable(error) && entry.retries < this.#options.publishRetries) {
        // Rate limited or unavailable: retry (same key) after a pause that grows like the reconnect backoff.
        if (entry.timer) clearTimeout(entry.timer);
        entry.sent = false;
        entry.timer = setTimer(() => {
          entry.timer = null;
          this.#retry(entry, error);
        }, this.#pauseMs(entry.retries + 1));
        return;
      }
      this.#settle(entry);
      entry.reject(error);
      return;
    }
    this.#settle(entry);
    entry.resolve({
      offset: typeof reply.offset === 'number' ? reply.offset : 0,
      epoch: typeof reply.epoch === 'string' ? reply.epoch : '',
      duplicate: reply.duplicate === true,
    });
  }

  #settle(entry: PendingPublish): void {
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = null;
    const i = this.#entries.indexOf(entry);
    if (i !== -1) this.#entries.splice(i, 1);
    // Replies to the other sends of it are ignored from now on.
    for (const id of entry.ids) this.#link.forget(id);
    entry.ids = [];
  }
}
