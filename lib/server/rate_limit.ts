/**
 * A token bucket: `rate` messages per second on average, with bursts of up to `burst`.
 *
 * @module
 */

/**
 * Per-connection message budget.
 *
 * @example
 * ```ts
 * const bucket = new TokenBucket({ rate: 20, burst: 40 });
 * const wait = bucket.take(); // 0 while within budget, else ms until the next token
 * ```
 */
export class TokenBucket {
  #rate: number;
  #burst: number;
  #tokens: number;
  #at: number;
  #now: () => number;

  /**
   * @param options.rate tokens per second; 0 means unlimited
   * @param options.burst bucket size
   * @param options.now clock in ms (for tests)
   */
  constructor(options: { rate: number; burst: number; now?: () => number }) {
    this.#rate = options.rate;
    this.#burst = Math.max(1, options.burst);
    this.#tokens = this.#burst;
    this.#now = options.now ?? performance.now.bind(performance);
    this.#at = this.#now();
  }

  /**
   * Takes one token if there is one.
   *
   * @returns 0 when a token was taken, otherwise how many ms until one is available (nothing is taken)
   */
  take(): number {
    const wait = this.peek();
    if (wait === 0 && this.#rate > 0) this.#tokens -= 1;
    return wait;
  }

  /**
   * Says whether a token is there, without taking it.
   *
   * @returns 0 when one is, otherwise how many ms until one is
   */
  peek(): number {
    if (this.#rate <= 0) return 0;
    const now = this.#now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#at) * this.#rate) / 1000);
    this.#at = now;
    if (this.#tokens >= 1) return 0;
    return Math.ceil(((1 - this.#tokens) * 1000) / this.#rate);
  }

  /** Whether the bucket is full again (it then holds nothing worth keeping). */
  get full(): boolean {
    return this.peek() === 0 && this.#tokens >= this.#burst;
  }
}
