/**
 * The process-wide limit on zlib operations running at once, shared by every
 * permessage-deflate codec (deflate.ts). Thousands of connections compressing
 * at the same moment would otherwise queue unbounded work and memory on the
 * libuv thread pool; `ws` bounds it the same way.
 */

/** Default process-wide number of zlib operations allowed to run at once. */
export const DEFAULT_ZLIB_CONCURRENCY = 10;

/** A unit of work the limiter can start. */
export interface ZlibJob {
  /** Start one zlib operation; false if there was nothing to do (no slot used). */
  startZlibJob(): boolean;
}

/**
 * FIFO queue of jobs with at most `limit` running at once. Intentionally one
 * per process: the thread pool and the allocator are shared by all connections.
 */
class ZlibLimiter {
  limit = DEFAULT_ZLIB_CONCURRENCY;
  active = 0;
  peakActive = 0;
  private queue: (ZlibJob | undefined)[] = [];
  private head = 0;
  private draining = false;

  get queued(): number {
    return this.queue.length - this.head;
  }

  add(job: ZlibJob): void {
    this.queue.push(job);
    this.drain();
  }

  /** A started job finished: free its slot and start the next one. */
  release(): void {
    this.active--;
    this.drain();
  }

  drain(): void {
    if (this.draining) return; // a job released its slot synchronously; the loop below continues
    this.draining = true;
    try {
      while (this.active < this.limit && this.head < this.queue.length) {
        const job = this.queue[this.head]!;
        this.queue[this.head++] = undefined;
        if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
          this.queue = this.queue.slice(this.head);
          this.head = 0;
        }
        this.active++;
        if (job.startZlibJob()) {
          if (this.active > this.peakActive) this.peakActive = this.active;
        } else {
          this.active--;
        }
      }
      if (this.head === this.queue.length && this.head > 0) {
        this.queue = [];
        this.head = 0;
      }
    } finally {
      this.draining = false;
    }
  }
}

/** The one limiter of the process, shared by every codec. */
export const limiter = new ZlibLimiter();

/**
 * Set the largest number of zlib operations (one `inflate` or `deflate` call
 * each) that may run at once across all codecs of the process. Operations
 * beyond it wait in one FIFO queue. Default {@link DEFAULT_ZLIB_CONCURRENCY}.
 *
 * @param limit a positive integer, or `Infinity` for no limit
 */
export function setZlibConcurrencyLimit(limit: number): void {
  if (!(limit === Infinity || (Number.isInteger(limit) && limit >= 1))) {
    throw new RangeError(`zlib concurrency limit must be a positive integer or Infinity, got ${limit}`);
  }
  limiter.limit = limit;
  limiter.drain();
}

/** A snapshot of the process-wide zlib limiter, for metrics and tests. */
export interface ZlibConcurrencyStats {
  /** The current limit. */
  limit: number;
  /** Operations running now. */
  active: number;
  /** Operations waiting for a slot. Codecs closed while waiting still count until their turn comes. */
  queued: number;
  /** Highest `active` seen since the process started or the last reset. */
  peakActive: number;
}

/**
 * Read the process-wide zlib limiter's counters.
 *
 * @param resetPeak set `peakActive` back to the current `active` after reading
 */
export function getZlibConcurrencyStats(resetPeak = false): ZlibConcurrencyStats {
  const stats = {
    limit: limiter.limit,
    active: limiter.active,
    queued: limiter.queued,
    peakActive: limiter.peakActive,
  };
  if (resetPeak) limiter.peakActive = limiter.active;
  return stats;
}
