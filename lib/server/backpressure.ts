/**
 * The server's outbound memory and who waits for whom. Every connection's queue of frames not yet written is counted
 * here, per connection and in total. Instead of cutting a reader the moment a burst is queued for it, the server
 * stops reading from the connections that produce the load (senders) while the readers catch up, and cuts only the
 * readers that do not keep up:
 *
 * - A reader whose queue is above half of --send-queue is *congested*: it holds the senders back while it takes at
 *   least --min-read-rate bytes a second (measured over {@link HOLD_WINDOW_MS}). One that takes less is *slow*: it no
 *   longer holds the senders back by itself, so one slow reader never stalls a room, nor the other rooms of its
 *   senders; it costs them one pause of HOLD_WINDOW_MS at most.
 * - Senders are also held back while the queues of the readers that are not slow, plus the fan-out the hub has
 *   accepted but not yet queued, exceed a quarter of --max-queued (while that lasts, every HOLD_WINDOW_MS the readers
 *   with bytes waiting that took less than --min-read-rate are found slow too); and while all queues, but those of
 *   the readers *confirmed* slow, exceed half of it. A slow reader is confirmed once it has stayed congested for
 *   {@link CONFIRM_MS}: a reader that only fell behind for a while (its process busy, say) catches up before that,
 *   and the senders wait for it meanwhile rather than have it cut; a reader that does not read is confirmed and no
 *   longer holds anyone back.
 * - A reader whose queue stays above --send-queue for --send-grace is cut off.
 * - When all queues together exceed --max-queued, confirmed slow readers are cut until they do not: those behind
 *   --send-queue first, behind longest first, then the largest queues. So the bytes queued stay within --max-queued,
 *   plus at most one message's fan-out per connection being read; readers that keep up are never cut.
 *
 * A slow reader becomes an ordinary one again once its queue is down to a quarter of --send-queue, but not before
 * --send-grace has passed since it was found slow, so that a reader cannot hold the senders back again and again.
 *
 * Nothing here knows about rooms or sockets: a connection reports its queue through its {@link QueueGauge}, and asks
 * {@link Backpressure.holding} before it handles a message that makes work for others.
 *
 * @module
 */

import type { Logger } from "./log.ts";

/** The window over which a congested or waiting reader's read rate is measured, and the longest pause it causes. */
export const HOLD_WINDOW_MS = 500;
/** How long a slow reader must stay congested to be confirmed slow (see the module). */
export const CONFIRM_MS = 5000;
/** Most "backpressure" log lines per second. */
const LOG_EVERY_MS = 1000;

/** What the backpressure needs from a connection it may have to cut off. */
export interface Reader {
  /**
   * Cuts the connection off because it does not keep up.
   *
   * @param why "grace" (its queue stayed above --send-queue for --send-grace) or "memory" (cut to keep the total
   *   within --max-queued)
   * @param behindMs how long its queue has been above --send-queue (or congested, or waiting)
   */
  cut(why: "grace" | "memory", behindMs: number): void;
  /** Told when the reader is found slow (for the log). */
  slowed?(): void;
}

/** Settings, from the server's flags. */
export interface BackpressureOptions {
  /** --send-queue: bytes queued for one reader above which it is behind (half of it: congested). */
  sendQueue: number;
  /** --send-grace in ms: how long a reader may stay behind before it is cut. */
  graceMs: number;
  /** --max-queued: most bytes queued for all readers together. */
  maxQueued: number;
  /** --min-read-rate: bytes a second a reader must take to hold the senders back. */
  minReadRate: number;
  /** Event log (one "backpressure" line a second at most while senders are held). */
  log?: Logger;
  /** Clock in ms (for tests). */
  now?: () => number;
}

/**
 * The queue of one connection as the backpressure sees it. The connection calls {@link QueueGauge.add} for every
 * frame it queues and {@link QueueGauge.remove} once bytes are written, and {@link QueueGauge.close} when it is gone.
 */
export class QueueGauge {
  /** Bytes queued and not yet written. */
  queued = 0;
  /** Bytes written so far. */
  written = 0;
  /** When the queue went above half of --send-queue, while it is. */
  congestedSince: number | undefined;
  /** When the queue went above --send-queue, while it is. */
  behindSince: number | undefined;
  /** Whether this reader is slow (see the module): it holds nobody back by itself. */
  slow = false;
  /** Whether it is confirmed slow: its bytes no longer hold the senders back, and it may be cut for memory. */
  confirmed = false;
  /** A reader that was slow stays so until then, even if it drains meanwhile. */
  slowUntil = 0;
  /** Start of the window over which its read rate is being measured, and `written` then. */
  windowAt = 0;
  windowWritten = 0;
  /** The connection, to cut it off. */
  readonly reader: Reader;
  readonly #owner: Backpressure;
  #closed = false;

  /**
   * @param owner the server's backpressure
   * @param reader the connection, to cut it off
   * @param now the clock's time
   */
  constructor(owner: Backpressure, reader: Reader, now: number) {
    this.#owner = owner;
    this.reader = reader;
    this.windowAt = now;
  }

  /**
   * Counts bytes just queued.
   *
   * @param bytes the frame length
   */
  add(bytes: number): void {
    if (this.#closed) return;
    this.#owner.changed(this, this.queued, this.queued += bytes);
  }

  /**
   * Counts bytes written.
   *
   * @param bytes how many
   */
  remove(bytes: number): void {
    if (this.#closed) return;
    this.written += bytes;
    this.#owner.changed(this, this.queued, this.queued -= bytes);
  }

  /** The connection is gone: its bytes no longer count. */
  close(): void {
    if (this.#closed) return;
    this.#owner.changed(this, this.queued, 0);
    this.queued = 0;
    this.#closed = true;
    this.#owner.forget(this);
  }

  /**
   * Bytes a second written since the window began, and a new window from now.
   *
   * @param now the clock's time
   * @returns the rate, or Infinity when the window is empty
   */
  rollWindow(now: number): number {
    const elapsed = now - this.windowAt;
    const rate = elapsed > 0 ? ((this.written - this.windowWritten) * 1000) / elapsed : Infinity;
    this.windowAt = now;
    this.windowWritten = this.written;
    return rate;
  }
}

/**
 * The server-wide outbound budget. One per server; see the module for the rules.
 *
 * @example
 * ```ts
 * const backpressure = new Backpressure({ sendQueue: 1 << 20, graceMs: 30_000, maxQueued: 128 << 20, minReadRate: 65536 });
 * const gauge = backpressure.track({ cut: () => connection.close() });
 * gauge.add(frame.length);
 * if (backpressure.holding) await backpressure.released();
 * ```
 */
export class Backpressure {
  #half: number;
  #sendQueue: number;
  #graceMs: number;
  #maxQueued: number;
  #holdAt: number;
  #minReadRate: number;
  #log: Logger | undefined;
  #now: () => number;
  /** Bytes queued on every connection. */
  #total = 0;
  /** Bytes queued on connections that are not slow. */
  #fast = 0;
  /** Fan-out the hub has accepted and not yet queued. */
  #pending = 0;
  /** Congested readers that are not slow, in the order their current window began (a Set keeps insertion order). */
  #congested = new Set<QueueGauge>();
  /** Readers above --send-queue. */
  #behind = new Set<QueueGauge>();
  /** Slow readers. */
  #slow = new Set<QueueGauge>();
  /** Bytes queued on readers confirmed slow. */
  #confirmedBytes = 0;
  #confirmCheckAt = -Infinity;
  /** Every gauge, for the read-rate check while senders wait. */
  #gauges = new Set<QueueGauge>();
  /** Since when the queues of the readers that are not slow have held the senders back (or the last check). */
  #fullSince: number | undefined;
  #waiters: (() => void)[] = [];
  #wakeTimer: ReturnType<typeof setTimeout> | undefined;
  #cutting = false;
  #loggedAt = -Infinity;

  /** @param options the limits */
  constructor(options: BackpressureOptions) {
    this.#sendQueue = options.sendQueue;
    this.#half = options.sendQueue / 2;
    this.#graceMs = options.graceMs;
    this.#maxQueued = options.maxQueued;
    this.#holdAt = options.maxQueued / 4;
    this.#minReadRate = options.minReadRate;
    this.#log = options.log;
    this.#now = options.now ?? performance.now.bind(performance);
  }

  /** Bytes queued on every connection. */
  get queued(): number {
    return this.#total;
  }

  /**
   * Starts counting a connection's queue.
   *
   * @param reader the connection
   * @returns its gauge
   */
  track(reader: Reader): QueueGauge {
    const gauge = new QueueGauge(this, reader, this.#now());
    this.#gauges.add(gauge);
    return gauge;
  }

  /**
   * Counts fan-out the hub has accepted but not yet queued (`bytes` is negative once it is queued).
   *
   * @param bytes the change
   */
  pending(bytes: number): void {
    this.#pending += bytes;
    if (bytes < 0) this.#wake();
  }

  /**
   * Whether senders must wait: a reader is congested (and not slow), or the queues of the readers that are not slow,
   * with the pending fan-out, are above a quarter of --max-queued, or all but the confirmed slow ones above half.
   */
  get holding(): boolean {
    if (
      this.#congested.size === 0 && this.#fast + this.#pending <= this.#holdAt &&
      this.#total - this.#confirmedBytes + this.#pending <= 2 * this.#holdAt
    ) {
      this.#fullSince = undefined;
      return false;
    }
    const now = this.#now();
    if (this.#congested.size > 0) this.#checkCongested(now);
    if (this.#slow.size > 0 && now - this.#confirmCheckAt >= HOLD_WINDOW_MS / 5) this.#confirm(now);
    if (this.#fast + this.#pending > this.#holdAt) {
      this.#fullSince ??= now;
      if (now - this.#fullSince >= HOLD_WINDOW_MS) {
        this.#checkWaiting(now);
        this.#fullSince = now;
      }
    } else {
      this.#fullSince = undefined;
    }
    const holding = this.#congested.size > 0 || this.#fast + this.#pending > this.#holdAt ||
      this.#total - this.#confirmedBytes + this.#pending > 2 * this.#holdAt;
    if (holding && this.#log !== undefined && now - this.#loggedAt >= LOG_EVERY_MS) {
      this.#loggedAt = now;
      this.#log.info("backpressure", {
        queued: this.#total,
        pending: this.#pending,
        congested: this.#congested.size,
        slow: this.#slow.size,
      });
    }
    return holding;
  }

  /** Resolves once {@link Backpressure.holding} is false. */
  async released(): Promise<void> {
    while (this.holding) {
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        this.#scheduleWake();
      });
    }
  }

  /**
   * Cuts every reader whose queue has stayed above --send-queue for longer than --send-grace. Call it every second
   * or so.
   */
  sweep(): void {
    const now = this.#now();
    for (const gauge of [...this.#behind]) {
      const behindMs = now - gauge.behindSince!;
      if (behindMs > this.#graceMs) gauge.reader.cut("grace", behindMs);
    }
  }

  /**
   * Called by a gauge whose queue went from `before` to `after` bytes.
   *
   * @param gauge the gauge
   * @param before bytes queued before
   * @param after bytes queued now
   */
  changed(gauge: QueueGauge, before: number, after: number): void {
    this.#total += after - before;
    if (!gauge.slow) this.#fast += after - before;
    else if (gauge.confirmed) this.#confirmedBytes += after - before;
    const half = this.#half;
    if (before <= half && after > half) {
      const now = this.#now();
      gauge.congestedSince = now;
      if (!gauge.slow) {
        if (gauge.slowUntil > now) this.#markSlow(gauge);
        else {
          gauge.rollWindow(now);
          this.#congested.add(gauge);
        }
      }
    } else if (before > half && after <= half) {
      gauge.congestedSince = undefined;
      this.#congested.delete(gauge);
      if (gauge.confirmed) {
        // It caught up after all: its bytes count again.
        gauge.confirmed = false;
        this.#confirmedBytes -= after;
      }
    }
    if (before <= this.#sendQueue && after > this.#sendQueue) {
      gauge.behindSince = this.#now();
      this.#behind.add(gauge);
    } else if (before > this.#sendQueue && after <= this.#sendQueue) {
      gauge.behindSince = undefined;
      this.#behind.delete(gauge);
    }
    if (gauge.slow && after <= half / 2 && this.#now() >= gauge.slowUntil) {
      gauge.slow = false;
      this.#slow.delete(gauge);
      this.#fast += after;
    }
    if (after < before) this.#wake();
    else if (this.#total > this.#maxQueued && this.#slow.size > 0 && !this.#cutting) {
      this.#cutting = true;
      // Not in the middle of the caller's fan-out loop.
      queueMicrotask(() => this.#cutSlowest());
    }
  }

  /**
   * Called by a gauge that is closed.
   *
   * @param gauge the gauge
   */
  forget(gauge: QueueGauge): void {
    if (gauge.confirmed) {
      gauge.confirmed = false;
      this.#confirmedBytes -= gauge.queued;
    }
    this.#gauges.delete(gauge);
    this.#congested.delete(gauge);
    this.#behind.delete(gauge);
    this.#slow.delete(gauge);
    this.#wake();
  }

  #markSlow(gauge: QueueGauge): void {
    this.#congested.delete(gauge);
    if (gauge.slow) return;
    gauge.slow = true;
    gauge.slowUntil = this.#now() + this.#graceMs;
    this.#slow.add(gauge);
    this.#fast -= gauge.queued;
    gauge.reader.slowed?.();
  }

  /** Confirms the slow readers that have stayed congested for CONFIRM_MS. */
  #confirm(now: number): void {
    this.#confirmCheckAt = now;
    for (const gauge of this.#slow) {
      if (gauge.confirmed || gauge.congestedSince === undefined || now - gauge.congestedSince < CONFIRM_MS) continue;
      gauge.confirmed = true;
      this.#confirmedBytes += gauge.queued;
    }
  }

  /** Congested readers whose window is over: slow if they took less than --min-read-rate, else a new window. */
  #checkCongested(now: number): void {
    for (const gauge of this.#congested) {
      if (now - gauge.windowAt < HOLD_WINDOW_MS) break;
      if (gauge.rollWindow(now) < this.#minReadRate) {
        this.#markSlow(gauge);
      } else {
        // To the end of the line: its new window began now.
        this.#congested.delete(gauge);
        this.#congested.add(gauge);
      }
    }
  }

  /** While senders wait on the total: readers with bytes waiting that took less than --min-read-rate are slow. */
  #checkWaiting(now: number): void {
    for (const gauge of this.#gauges) {
      if (gauge.slow || this.#congested.has(gauge)) continue;
      const measured = now - gauge.windowAt >= HOLD_WINDOW_MS;
      const rate = gauge.rollWindow(now);
      if (measured && gauge.queued > 0 && rate < this.#minReadRate) this.#markSlow(gauge);
    }
  }

  /** Above --max-queued, cuts confirmed slow readers: behind longest first, then the largest, until all fit again. */
  #cutSlowest(): void {
    this.#cutting = false;
    if (this.#total <= this.#maxQueued) return;
    const now = this.#now();
    this.#confirm(now);
    const order = (g: QueueGauge) => g.behindSince ?? Infinity;
    const candidates = [...this.#slow].filter((g) => g.confirmed && g.queued > 0)
      .sort((a, b) => order(a) - order(b) || b.queued - a.queued);
    for (const gauge of candidates) {
      if (this.#total <= this.#maxQueued) return;
      gauge.reader.cut("memory", now - (gauge.behindSince ?? gauge.congestedSince ?? gauge.windowAt));
    }
  }

  #wake(): void {
    if (this.#waiters.length === 0 || this.holding) return;
    const waiters = this.#waiters;
    this.#waiters = [];
    clearTimeout(this.#wakeTimer);
    this.#wakeTimer = undefined;
    for (const resolve of waiters) resolve();
  }

  /**
   * While senders wait, wake them when a window ends (a congested reader's, or the waiting readers' check) even if
   * no byte is written meanwhile.
   */
  #scheduleWake(): void {
    if (this.#wakeTimer !== undefined) return;
    const first = this.#congested.values().next().value;
    let deadline = Math.min(
      first === undefined ? Infinity : first.windowAt + HOLD_WINDOW_MS,
      this.#fullSince === undefined ? Infinity : this.#fullSince + HOLD_WINDOW_MS,
    );
    // Waiting on the slow readers' bytes: wake when the first of them would be confirmed.
    for (const gauge of this.#slow) {
      if (!gauge.confirmed && gauge.congestedSince !== undefined) {
        deadline = Math.min(deadline, gauge.congestedSince + CONFIRM_MS);
      }
    }
    if (deadline === Infinity) return;
    this.#wakeTimer = setTimeout(() => {
      this.#wakeTimer = undefined;
      this.#wake();
      if (this.#waiters.length > 0) this.#scheduleWake();
    }, Math.max(1, deadline - this.#now()));
  }
}
