/** Token bucket: `rate` tokens per second, at most `burst` saved up. */
export class TokenBucket {
  private tokens: number;
  private last: number;
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /** Take `n` tokens if there are enough; false (and nothing taken) otherwise. */
  take(n = 1): boolean {
    const t = this.now();
    const elapsed = t - this.last;
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.rate) / 1000);
      this.last = t;
    }
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  /** Whether the bucket is full at time `t` (forgetting it then changes nothing). */
  isFullAt(t: number): boolean {
    return this.tokens + ((t - this.last) * this.rate) / 1000 >= this.burst;
  }
}

/**
 * Token buckets per key (an IP address) that forget idle keys: a key whose
 * bucket would be full again is dropped at the next sweep, so memory stays
 * bounded by the keys active within one refill period.
 */
export class KeyedRateLimiter {
  private readonly buckets = new Map<string, TokenBucket>();
  private lastSweep: number;
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    this.lastSweep = now();
  }

  take(key: string, n = 1): boolean {
    const t = this.now();
    const refillMs = (this.burst / this.rate) * 1000;
    if (t - this.lastSweep > refillMs) {
      // Only full buckets: forgetting a key that is still spending would hand it a fresh burst.
      for (const [k, b] of this.buckets) if (b.isFullAt(t)) this.buckets.delete(k);
      this.lastSweep = t;
    }
    let bucket = this.buckets.get(key);
    if (!bucket) {
      bucket = new TokenBucket(this.rate, this.burst, this.now);
      this.buckets.set(key, bucket);
    }
    return bucket.take(n);
  }

  get size(): number {
    return this.buckets.size;
  }
}
