/**
 * Latency histogram with bounded memory: log-linear buckets over integer
 * microseconds (HdrHistogram-like, 7 bits of sub-bucket precision).
 *
 *   values 0..255 µs       -> one bucket per µs (exact)
 *   values >= 256 µs       -> 128 buckets per power of two (relative error < 0.8 %)
 *
 * 3,456 buckets cover 0 µs .. ~36 min; larger values are clamped to the top
 * bucket. Recording is O(1) and allocation-free, so it can sit on the hot
 * path of a load generator. Shared by `switchboard bench` and the
 * benchmarks in bench/ (bench/lib/histogram.js re-exports it from dist/).
 * Histograms of several workers add up with {@link LatencyHistogram.add}.
 */

const LINEAR = 256;
const SUB_BITS = 7;
const SUB = 1 << SUB_BITS; // 128
const SIZE = LINEAR + 25 * SUB; // exponents 1..25
const MAX_US = 2 ** 31 - 1;

function indexOf(us: number): number {
  if (us < LINEAR) return us;
  // e >= 1 such that (us >> e) lands in [128, 256)
  const e = 31 - Math.clz32(us) - SUB_BITS;
  return LINEAR + (e - 1) * SUB + ((us >>> e) - SUB);
}

/** Midpoint of a bucket, in µs. */
function valueOf(index: number): number {
  if (index < LINEAR) return index;
  const k = index - LINEAR;
  const e = (k >>> SUB_BITS) + 1;
  const sub = (k & (SUB - 1)) + SUB;
  const lower = sub * 2 ** e;
  return lower + (2 ** e - 1) / 2;
}

/** What {@link LatencyHistogram.summary} reports, in ms (NaN when empty). */
export interface LatencySummary {
  count: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

/** The plain-data form of a histogram (to move it between worker threads). */
export interface HistogramData {
  counts: Float64Array;
  count: number;
  sumUs: number;
  maxUs: number;
}

export class LatencyHistogram {
  counts = new Float64Array(SIZE);
  count = 0;
  sumUs = 0;
  maxUs = 0;

  /** Record a latency in milliseconds (e.g. a `performance.now()` delta). */
  recordMs(ms: number): void {
    let us = Math.round(ms * 1000);
    if (!(us >= 0)) us = 0;
    else if (us > MAX_US) us = MAX_US;
    this.counts[indexOf(us)]++;
    this.count++;
    this.sumUs += us;
    if (us > this.maxUs) this.maxUs = us;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.sumUs = 0;
    this.maxUs = 0;
  }

  /** Add another histogram's (or a worker's {@link HistogramData}) counts to this one. */
  add(other: HistogramData): void {
    for (let i = 0; i < SIZE; i++) this.counts[i]! += other.counts[i]!;
    this.count += other.count;
    this.sumUs += other.sumUs;
    if (other.maxUs > this.maxUs) this.maxUs = other.maxUs;
  }

  data(): HistogramData {
    return { counts: this.counts, count: this.count, sumUs: this.sumUs, maxUs: this.maxUs };
  }

  /** The `p`th percentile (0 < p <= 100) in milliseconds, or NaN when empty. */
  percentileMs(p: number): number {
    if (this.count === 0) return NaN;
    const target = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < SIZE; i++) {
      seen += this.counts[i]!;
      if (seen >= target) return Math.min(valueOf(i), this.maxUs) / 1000;
    }
    return this.maxUs / 1000;
  }

  summary(): LatencySummary {
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
