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

import { DEFAULT_BYTE_RATE, DEFAULT_MESSAGE_RATE } from '../wire/messages.js';

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
