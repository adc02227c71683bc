/**
 * The server's outbound memory and who waits for whom. Every connection's queue of frames not yet written is counted
 * here, per connection and in total. Instead of cutting a reader the moment a burst is queued for it, the server
 * stops reading from the connections that produce the load (senders) while the readers catch up, and cuts only the
 * readers that do not keep up:
 *
 * - A reader whose queue is above half of --send-queue is *congested*: it holds the senders back, but for at most
 *   {@link CONGESTION_HOLD_MS}. A reader still congested after that is *slow*: it no longer holds anyone back, so one
 *   slow reader never stalls a room, nor the other rooms of its senders.
 * - Senders are also held back while the queues of the readers that are not slow, plus the fan-out the hub has
 *   accepted but not yet queued, exceed half of --max-queued. When that has lasted {@link CONGESTION_HOLD_MS}, the
 *   readers with bytes waiting that took none in that time are slow too (stalled readers cannot hold a room either).
 * - A reader whose queue stays above --send-queue for --send-grace is cut off.
 * - When all queues together exceed --max-queued, slow readers are cut, the one congested longest first (then the
 *   largest queue first), until they do not. So the bytes queued stay within --max-queued, plus at most one message's
 *   fan-out per connection being read.
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

/** How long one congested reader may hold the senders back before it counts as slow. */
export const CONGESTION_HOLD_MS = 500;
/** Most "backpressure" log lines per second. */
const LOG_EVERY_MS = 1000;

/** What the backpressure needs from a connection it may have to cut off. */
export interface Reader {
  /**
   * Cuts the connection off because it does not keep up.
   *
   * @param why "grace" (its queue stayed above --send-queue for --send-grace) or "memory" (cut to keep the total
   *   within --max-queued)
   * @param behindMs how long its queue has been above --send-queue (or congested, for "memory")
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
  /** --max-queued: bytes queued for all readers together. */
  maxQueued: number;
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
  /** When the queue went above half of --send-queue, while it is. */
  congestedSince: number | undefined;
  /** When the queue went above --send-queue, while it is. */
  behindSince: number | undefined;
  /** Whether this reader is slow (see the module): it holds nobody back. */
  slow = false;
  /** A reader that was slow stays so until then, even if it drains meanwhile. */
  slowUntil = 0;
  /** When bytes last left the queue (or it last became non-empty). */
  drainedAt = 0;
  readonly #owner: Backpressure;
  readonly reader: Reader;
  #closed = false;

  /**
   * @param owner the server's backpressure
   * @param reader the connection, to cut it off
   */
  constructor(owner: Backpressure, reader: Reader) {
    this.#owner = owner;
    this.reader = reader;
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
   * Counts bytes written (or dropped).
   *
   * @param bytes how many
   */
  remove(bytes: number): void {
    if (this.#closed) return;
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
}

/**
 * The server-wide outbound budget. One per server; see the module for the rules.
 *
 * @example
 * ```ts
 * const backpressure = new Backpressure({ sendQueue: 1 << 20, graceMs: 10_000, maxQueued: 64 << 20 });
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
  #log: Logger | undefined;
  #now: () => number;
  /** Bytes queued on every connection. */
  #total = 0;
  /** Bytes queued on connections that are not slow. */
  #fast = 0;
  /** Fan-out the hub has accepted and not yet queued. */
  #pending = 0;
  /** Congested readers that are not slow, oldest congestion first (a Set keeps insertion order). */
  #congested = new Set<QueueGauge>();
  /** Readers above --send-queue. */
  #behind = new Set<QueueGauge>();
  /** Slow readers. */
  #slow = new Set<QueueGauge>();
  /** Every gauge, for finding stalled readers. */
  #gauges = new Set<QueueGauge>();
  /** Since when the queues of the readers that are not slow have held the senders back, while they do. */
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
    this.#holdAt = options.maxQueued / 2;
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
    const gauge = new QueueGauge(this, reader);
    this.#gauges.add(gauge);
    return gauge;
  }

  /**
   * Counts fan-out the hub has accepted but not yet queued (`bytes` may be negative once it is queued).
   *
   * @param bytes the change
   */
  pending(bytes: number): void {
    this.#pending += bytes;
    if (bytes < 0) this.#wake();
  }

  /**
   * Whether senders must wait: a reader is congested (and not yet slow), or the queues of the readers that are not
   * slow, with the pending fan-out, are above half of --max-queued.
   */
  get holding(): boolean {
    if (this.#congested.size === 0 && this.#fast + this.#pending <= this.#holdAt) {
      this.#fullSince = undefined;
      return false;
    }
    const now = this.#now();
    if (this.#congested.size > 0) this.#expireCongestion(now);
    if (this.#fast + this.#pending > this.#holdAt) {
      this.#fullSince ??= now;
      if (now - this.#fullSince >= CONGESTION_HOLD_MS) {
        this.#markStalled(now);
        this.#fullSince = now;
      }
    } else {
      this.#fullSince = undefined;
    }
    const holding = this.#congested.size > 0 || this.#fast + this.#pending > this.#holdAt;
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

  /** @internal A gauge's queue went from `before` to `after` bytes. */
  changed(gauge: QueueGauge, before: number, after: number): void {
    this.#total += after - before;
    if (!gauge.slow) this.#fast += after - before;
    const half = this.#half;
    if (before <= half && after > half) {
      gauge.congestedSince = this.#now();
      if (!gauge.slow) {
        if (gauge.slowUntil > gauge.congestedSince) this.#markSlow(gauge);
        else this.#congested.add(gauge);
      }
    } else if (before > half && after <= half) {
      gauge.congestedSince = undefined;
      this.#congested.delete(gauge);
    }
    if (before <= this.#sendQueue && after > this.#sendQueue) {
      gauge.behindSince = this.#now();
      this.#behind.add(gauge);
    } else if (before > this.#sendQueue && after <= this.#sendQueue) {
      gauge.behindSince = undefined;
      this.#behind.delete(gauge);
    }
    if (after < before || before === 0) gauge.drainedAt = this.#now();
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

  /** @internal A gauge is closed. */
  forget(gauge: QueueGauge): void {
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

  /** Marks slow every reader with bytes waiting that took none for CONGESTION_HOLD_MS. */
  #markStalled(now: number): void {
    for (const gauge of this.#gauges) {
      if (!gauge.slow && gauge.queued > 0 && now - gauge.drainedAt >= CONGESTION_HOLD_MS) this.#markSlow(gauge);
    }
  }

  #expireCongestion(now: number): void {
    for (const gauge of this.#congested) {
      if (now - gauge.congestedSince! < CONGESTION_HOLD_MS) break;
      this.#markSlow(gauge);
    }
  }

  /** Cuts slow readers, congested longest first, then largest first, until all queues fit in --max-queued. */
  #cutSlowest(): void {
    this.#cutting = false;
    if (this.#total <= this.#maxQueued) return;
    const now = this.#now();
    const since = (g: QueueGauge) => g.congestedSince ?? Infinity;
    const candidates = [...this.#slow].filter((g) => g.queued > 0)
      .sort((a, b) => since(a) - since(b) || b.queued - a.queued);
    for (const gauge of candidates) {
      if (this.#total <= this.#maxQueued) break;
      gauge.reader.cut("memory", now - (gauge.congestedSince ?? gauge.drainedAt));
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
   * While senders wait, wake them when a hold runs out (a congested reader's, or the stalled readers' check) even if
   * no byte is written meanwhile.
   */
  #scheduleWake(): void {
    if (this.#wakeTimer !== undefined) return;
    const first = this.#congested.values().next().value;
    const deadline = Math.min(
      first === undefined ? Infinity : first.congestedSince! + CONGESTION_HOLD_MS,
      this.#fullSince === undefined ? Infinity : this.#fullSince + CONGESTION_HOLD_MS,
    );
    if (deadline === Infinity) return;
    const delay = Math.max(1, deadline - this.#now());
    this.#wakeTimer = setTimeout(() => {
      this.#wakeTimer = undefined;
      this.#wake();
      if (this.#waiters.length > 0) this.#scheduleWake();
    }, delay);
  }
}
