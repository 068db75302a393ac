/**
 * Keeps the client's own traffic under the server's rate limits. The server
 * answers a message over its `messageRate`/`byteRate` with error 429, and
 * closes the connection (4004) after 20 of those in a row; a client that
 * reconnects with a hundred subscriptions and a full offline queue sends all
 * of it at once, and would be closed again on every reconnect. So messages
 * beyond the server's budget wait here, in order, and leave as it refills.
 *
 * The budget is what the server announces in its `auth` reply (`limits`),
 * else the server's defaults; with a small margin for timing jitter.
 */

import { DEFAULT_BYTE_RATE, DEFAULT_MESSAGE_RATE, type ClientMessage } from '../wire/messages.js';
import { setTimer, type Timer } from './timer.js';

/** A rate and a burst, as the server configures `limits.messageRate` and `limits.byteRate`. */
export interface Rate {
  perSecond: number;
  burst: number;
}

class Bucket {
  #tokens: number;
  #last: number;
  readonly #rate: number;
  readonly #burst: number;

  constructor(rate: Rate, now: number) {
    // The margin: the server's bucket started a little earlier, and timers fire a little late or early.
    this.#rate = Math.max(0.001, rate.perSecond * 0.9);
    this.#burst = Math.max(1, rate.burst - 2);
    this.#tokens = this.#burst;
    this.#last = now;
  }

  #refill(now: number): void {
    if (now > this.#last) {
      this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) * this.#rate) / 1000);
      this.#last = now;
    }
  }

  /** Milliseconds until `n` tokens are there (0: now). More than the burst waits for a full bucket. */
  waitMs(n: number, now: number): number {
    this.#refill(now);
    const need = Math.min(n, this.#burst) - this.#tokens;
    return need <= 0 ? 0 : Math.ceil((need * 1000) / this.#rate);
  }

  take(n: number, now: number): void {
    this.#refill(now);
    this.#tokens -= Math.min(n, this.#burst);
  }
}

/** Bytes of `text` in UTF-8 (what the server counts), without encoding it. */
export function utf8Length(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      n += 2; // a surrogate pair: two code units, four bytes
      i++;
    } else n += 2;
  }
  return n;
}

export class SendPacer {
  #messages: Bucket;
  #bytes: Bucket;

  constructor(messageRate: Rate = DEFAULT_MESSAGE_RATE, byteRate: Rate = DEFAULT_BYTE_RATE, now = Date.now()) {
    this.#messages = new Bucket(messageRate, now);
    this.#bytes = new Bucket(byteRate, now);
  }

  /** Milliseconds until a message of `size` bytes may go (0: now). */
  waitMs(size: number, now = Date.now()): number {
    return Math.max(this.#messages.waitMs(1, now), this.#bytes.waitMs(size, now));
  }

  /** Count a message that goes now. */
  take(size: number, now = Date.now()): void {
    this.#messages.take(1, now);
    this.#bytes.take(size, now);
  }
}

/** What the server counts for a message, in bytes: its JSON in UTF-8 (MessagePack is about as long or shorter). */
function messageSize(message: ClientMessage): number {
  // Only publications and rpc calls (with or without a reply) carry application data; the rest are a few dozen bytes.
  return message.op === 'pub' || message.op === 'rpc' || message.op === 'send' ? utf8Length(JSON.stringify(message)) : 64;
}

/** Whether `value` is a rate as the server announces it (`limits.messageRate`, `limits.byteRate`). */
export function isRate(value: unknown): value is Rate {
  const r = value as Rate | undefined;
  return typeof r?.perSecond === 'number' && r.perSecond > 0 && typeof r.burst === 'number' && r.burst >= 1;
}

/**
 * The send path of a connection: messages go to `target()` within the
 * budget, and wait in order when it is spent (a `pong` goes first).
 */
export class PacedSender {
  readonly #target: () => { send(message: ClientMessage): void } | null;
  /** The server's rate budget for this connection, and the messages waiting for it, in order. */
  #pacer = new SendPacer();
  #queue: Array<{ message: ClientMessage; size: number }> = [];
  #timer: Timer | null = null;

  /** `target` is the current connection's transport (null: none, nothing is sent). */
  constructor(target: () => { send(message: ClientMessage): void } | null) {
    this.#target = target;
  }

  /** Send now, or queue for the budget; false when it was dropped (no connection, or a `send` that would wait). */
  send(message: ClientMessage): boolean {
    const target = this.#target();
    if (!target) return false;
    const size = messageSize(message);
    if (this.#queue.length === 0 && this.#pacer.waitMs(size) === 0) {
      this.#pacer.take(size);
      target.send(message);
      return true;
    }
    // A `send` is stale once the next one goes: an application sending faster than its budget would
    // otherwise grow this queue without end.
    if (message.op === 'send') return false;
    // A pong answers the server's liveness check: ahead of what waits.
    if (message.op === 'pong') this.#queue.unshift({ message, size });
    else this.#queue.push({ message, size });
    this.#schedule();
    return true;
  }

  /** A new budget, full but for `spent` bytes of one message (a new connection, or the server announced its own). */
  setBudget(messageRate?: Rate, byteRate?: Rate, spent = 0): void {
    this.#pacer = new SendPacer(messageRate, byteRate);
    if (spent > 0) this.#pacer.take(spent);
  }

  /** The connection is gone: what waited for it is gone with it. */
  drop(): void {
    this.#queue.length = 0;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #schedule(): void {
    if (this.#timer || this.#queue.length === 0) return;
    this.#timer = setTimer(() => {
      this.#timer = null;
      this.#flush();
    }, this.#pacer.waitMs(this.#queue[0]!.size));
  }

  #flush(): void {
    let target = this.#target();
    while (target && this.#queue.length > 0) {
      const { message, size } = this.#queue[0]!;
      if (this.#pacer.waitMs(size) > 0) break;
      this.#pacer.take(size);
      this.#queue.shift();
      target.send(message);
      target = this.#target();
    }
    this.#schedule();
  }
}
