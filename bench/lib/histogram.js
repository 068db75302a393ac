// Latency histogram with bounded memory: log-linear buckets over integer
// microseconds (HdrHistogram-like, 7 bits of sub-bucket precision).
//
//   values 0..255 µs       -> one bucket per µs (exact)
//   values >= 256 µs       -> 128 buckets per power of two (relative error < 0.8 %)
//
// 3,456 buckets cover 0 µs .. ~36 min; larger values are clamped to the top
// bucket. Recording is O(1) and allocation-free, so it can sit on the hot
// path of the load generator.

const LINEAR = 256;
const SUB_BITS = 7;
const SUB = 1 << SUB_BITS; // 128
const SIZE = LINEAR + 25 * SUB; // exponents 1..25
const MAX_US = 2 ** 31 - 1;

function indexOf(us) {
  if (us < LINEAR) return us;
  // e >= 1 such that (us >> e) lands in [128, 256)
  const e = 31 - Math.clz32(us) - SUB_BITS;
  return LINEAR + (e - 1) * SUB + ((us >>> e) - SUB);
}

/** Midpoint of a bucket, in µs. */
function valueOf(index) {
  if (index < LINEAR) return index;
  const k = index - LINEAR;
  const e = (k >>> SUB_BITS) + 1;
  const sub = (k & (SUB - 1)) + SUB;
  const lower = sub * 2 ** e;
  return lower + (2 ** e - 1) / 2;
}

export class LatencyHistogram {
  constructor() {
    this.counts = new Float64Array(SIZE);
    this.count = 0;
    this.sumUs = 0;
    this.maxUs = 0;
  }

  /** @param {number} ms latency in milliseconds (e.g. a performance.now() delta) */
  recordMs(ms) {
    let us = Math.round(ms * 1000);
    if (us < 0) us = 0;
    else if (us > MAX_US) us = MAX_US;
    this.counts[indexOf(us)]++;
    this.count++;
    this.sumUs += us;
    if (us > this.maxUs) this.maxUs = us;
  }

  reset() {
    this.counts.fill(0);
    this.count = 0;
    this.sumUs = 0;
    this.maxUs = 0;
  }

  /** @param {number} p percentile in (0, 100]; returns milliseconds, or NaN when empty */
  percentileMs(p) {
    if (this.count === 0) return NaN;
    const target = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < SIZE; i++) {
      seen += this.counts[i];
      if (seen >= target) return Math.min(valueOf(i), this.maxUs) / 1000;
    }
    return this.maxUs / 1000;
  }

  summary() {
    return {
      count: this.count,
      meanMs: this.count ? this.sumUs / this.count / 1000 : NaN,
      p50Ms: this.percentileMs(50),
      p90Ms: this.percentileMs(90),
      p99Ms: this.percentileMs(99),
      p999Ms: this.percentileMs(99.9),
      maxMs: this.maxUs / 1000,
    };
  }
}
