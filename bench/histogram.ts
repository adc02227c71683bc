/**
 * A latency histogram with logarithmic buckets (about 1% wide), in the spirit of HdrHistogram: fixed memory, cheap
 * to record into, and mergeable across processes.
 *
 * @module
 */

/** Buckets per factor e of the value: 100 gives about 1% resolution. */
const PER_E = 100;
/** Values are in microseconds; this covers up to about e^20 µs (8 minutes). */
const BUCKETS = 20 * PER_E;

/** A histogram of durations in microseconds. */
export class Histogram {
  /** Count per bucket. */
  readonly counts: Float64Array = new Float64Array(BUCKETS);
  /** Values recorded. */
  total = 0;
  /** Largest value recorded, exactly. */
  max = 0;

  /**
   * Records one value.
   *
   * @param us a duration in microseconds (negative values, from clock skew, count as 0)
   */
  record(us: number): void {
    const v = us > 0 ? us : 0;
    let b = Math.floor(Math.log1p(v) * PER_E);
    if (b >= BUCKETS) b = BUCKETS - 1;
    this.counts[b]++;
    this.total++;
    if (v > this.max) this.max = v;
  }

  /**
   * Adds another histogram's counts (from its {@link Histogram.toJSON} form).
   *
   * @param other the other histogram
   */
  merge(other: { buckets: [number, number][]; total: number; max: number }): void {
    for (const [b, n] of other.buckets) this.counts[b] += n;
    this.total += other.total;
    this.max = Math.max(this.max, other.max);
  }

  /**
   * The value at a quantile, in microseconds (the bucket's middle; the exact max for q = 1).
   *
   * @param q a quantile in 0..1
   * @returns the value, or NaN when empty
   */
  quantile(q: number): number {
    if (this.total === 0) return NaN;
    if (q >= 1) return this.max;
    const rank = Math.ceil(q * this.total);
    let seen = 0;
    for (let b = 0; b < BUCKETS; b++) {
      seen += this.counts[b];
      if (seen >= rank && this.counts[b] > 0) {
        const low = Math.expm1(b / PER_E);
        const high = Math.expm1((b + 1) / PER_E);
        return Math.min((low + high) / 2, this.max);
      }
    }
    return this.max;
  }

  /** The sparse form sent between processes. */
  toJSON(): { buckets: [number, number][]; total: number; max: number } {
    const buckets: [number, number][] = [];
    for (let b = 0; b < BUCKETS; b++) if (this.counts[b] > 0) buckets.push([b, this.counts[b]]);
    return { buckets, total: this.total, max: this.max };
  }
}
