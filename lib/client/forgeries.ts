/**
 * Reports of messages that failed authentication, limited so that a flood of forgeries cannot flood the user: the
 * first from a claimed sender is reported at once, then at most one report per sender per interval, with the count
 * since. At most a fixed number of senders is tracked; forgeries claiming any other sender are counted together.
 *
 * @module
 */

/** One report: `count` forgeries claiming `from` in `room` (the first comes alone, with its seq). */
export interface ForgeryReport {
  /** The room. */
  room: string;
  /** The sender the forgeries claim, or "other senders". */
  from: string;
  /** How many since the last report. */
  count: number;
  /** The seq of the first one, when it is reported alone. */
  seq?: number;
}

interface Tracked {
  count: number;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * The limiter.
 *
 * @example
 * ```ts
 * const reports = new ForgeryReports({ intervalMs: 10_000, senders: 64, report: (r) => warn(r) });
 * reports.add("general", "alice", 12); // reported at once
 * reports.add("general", "alice", 13); // counted, reported with the others after 10 s
 * ```
 */
export class ForgeryReports {
  #options: { intervalMs: number; senders: number; report: (report: ForgeryReport) => void };
  #tracked = new Map<string, Tracked & { room: string; from: string }>();

  /**
   * @param options.intervalMs the shortest time between two reports for one sender
   * @param options.senders how many claimed senders are tracked at once
   * @param options.report receives each report
   */
  constructor(options: { intervalMs: number; senders: number; report: (report: ForgeryReport) => void }) {
    this.#options = options;
  }

  /**
   * Counts one forgery.
   *
   * @param room the room it came in
   * @param from the sender it claims
   * @param seq its seq, when known
   */
  add(room: string, from: string, seq?: number): void {
    let key = `${room}\u0000${from}`;
    if (!this.#tracked.has(key) && this.#tracked.size >= this.#options.senders) {
      key = `${room}\u0000`;
      from = "other senders";
    }
    const tracked = this.#tracked.get(key);
    if (tracked) {
      tracked.count++;
      return;
    }
    this.#options.report({ room, from, count: 1, ...(seq === undefined ? {} : { seq }) });
    const tick = () => {
      const entry = this.#tracked.get(key)!;
      if (entry.count === 0) {
        this.#tracked.delete(key);
        return;
      }
      this.#options.report({ room, from, count: entry.count });
      entry.count = 0;
      entry.timer = setTimeout(tick, this.#options.intervalMs);
    };
    this.#tracked.set(key, { room, from, count: 0, timer: setTimeout(tick, this.#options.intervalMs) });
  }

  /** Reports every count not yet reported, now, and stops the timers. */
  flush(): void {
    for (const { room, from, count, timer } of this.#tracked.values()) {
      clearTimeout(timer);
      if (count > 0) this.#options.report({ room, from, count });
    }
    this.#tracked.clear();
  }
}
