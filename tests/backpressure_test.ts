/**
 * The outbound budget's rules, driven with a fake clock and fake readers: who holds the senders back and for how
 * long, who is found slow, who is cut off and in which order, and that a burst alone never cuts anyone.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Backpressure, CONFIRM_MS, HOLD_WINDOW_MS, type QueueGauge } from "../lib/server/backpressure.ts";

const KiB = 1024;
const SEND_QUEUE = 64 * KiB;
const GRACE_MS = 30_000;
const MAX_QUEUED = 2048 * KiB;
const MIN_READ_RATE = 64 * KiB;
/** Bytes a reader at the least rate takes in one window. */
const WINDOW_BYTES = (MIN_READ_RATE * HOLD_WINDOW_MS) / 1000;

/** A reader that records being cut off and found slow. */
class FakeReader {
  cuts: { why: string; behindMs: number }[] = [];
  slowed = 0;
  gauge!: QueueGauge;
  cut(why: "grace" | "memory", behindMs: number): void {
    this.cuts.push({ why, behindMs });
    this.gauge.close();
  }
  slowedNow(): void {
    this.slowed++;
  }
}

function setup(options: { maxQueued?: number } = {}) {
  let clock = 1_000;
  const backpressure = new Backpressure({
    sendQueue: SEND_QUEUE,
    graceMs: GRACE_MS,
    maxQueued: options.maxQueued ?? MAX_QUEUED,
    minReadRate: MIN_READ_RATE,
    now: () => clock,
  });
  const reader = () => {
    const r = new FakeReader();
    r.gauge = backpressure.track({ cut: (why, ms) => r.cut(why, ms), slowed: () => r.slowedNow() });
    return r;
  };
  return {
    backpressure,
    reader,
    advance(ms: number) {
      clock += ms;
    },
  };
}

Deno.test("a reader above half of --send-queue holds the senders back while it reads at least --min-read-rate", () => {
  const t = setup();
  const a = t.reader();
  const b = t.reader();
  a.gauge.add(SEND_QUEUE / 2);
  b.gauge.add(4 * SEND_QUEUE);
  assert.equal(t.backpressure.holding, true, "b is congested");
  // Window after window, b reads a little more than the least rate: the senders keep waiting for it.
  for (let w = 0; w < 6; w++) {
    t.advance(HOLD_WINDOW_MS / 2);
    b.gauge.remove(WINDOW_BYTES + 100);
    t.advance(HOLD_WINDOW_MS / 2);
    b.gauge.add(WINDOW_BYTES + 100);
    assert.equal(t.backpressure.holding, true, `window ${w}`);
  }
  assert.equal(b.slowed, 0);
  // Draining below half ends the hold at once.
  b.gauge.remove(b.gauge.queued - SEND_QUEUE / 2);
  assert.equal(t.backpressure.holding, false);
  // Congested again and reading less than the least rate: after one window it is slow, and holds nobody back.
  b.gauge.add(4 * SEND_QUEUE);
  t.advance(HOLD_WINDOW_MS - 1);
  b.gauge.remove(WINDOW_BYTES / 2);
  b.gauge.add(WINDOW_BYTES / 2);
  assert.equal(t.backpressure.holding, true);
  t.advance(1);
  assert.equal(t.backpressure.holding, false);
  assert.equal(b.slowed, 1);
  assert.deepEqual([a.cuts, b.cuts], [[], []], "nobody is cut for being congested or slow");
});

Deno.test("when every reader is behind the senders but keeps reading, nobody is found slow or cut: the senders wait", () => {
  const t = setup();
  const readers = Array.from({ length: 50 }, () => t.reader());
  for (let w = 0; w < 20; w++) {
    for (const r of readers) r.gauge.add(SEND_QUEUE);
    assert.equal(t.backpressure.holding, true);
    t.advance(HOLD_WINDOW_MS);
    for (const r of readers) r.gauge.remove(WINDOW_BYTES + 1);
    t.backpressure.sweep();
    // Nothing more is queued while the senders wait; the readers work through their backlog.
    for (let k = 0; k < 8 && t.backpressure.holding; k++) {
      t.advance(HOLD_WINDOW_MS);
      for (const r of readers) r.gauge.remove(Math.min(r.gauge.queued, WINDOW_BYTES * 2));
    }
    assert.equal(t.backpressure.holding, false, `round ${w}`);
  }
  assert.equal(readers.reduce((n, r) => n + r.slowed + r.cuts.length, 0), 0);
});

Deno.test("a reader behind --send-queue for longer than --send-grace is cut off; a burst that drains in time is not", () => {
  const t = setup();
  const burst = t.reader();
  const stuck = t.reader();
  burst.gauge.add(4 * SEND_QUEUE);
  stuck.gauge.add(4 * SEND_QUEUE);
  t.advance(GRACE_MS - 1);
  burst.gauge.remove(3 * SEND_QUEUE);
  t.backpressure.sweep();
  assert.deepEqual([burst.cuts, stuck.cuts], [[], []], "nobody within the grace");
  t.advance(2);
  t.backpressure.sweep();
  assert.deepEqual(burst.cuts, [], "the burst was read in time");
  assert.deepEqual(stuck.cuts, [{ why: "grace", behindMs: GRACE_MS + 1 }]);
});

Deno.test("senders wait while the queues of readers that are not slow, with the pending fan-out, exceed a quarter of --max-queued", () => {
  const t = setup();
  const readers = Array.from({ length: 20 }, () => t.reader());
  for (const r of readers) r.gauge.add(SEND_QUEUE / 4);
  assert.equal(t.backpressure.queued, 20 * SEND_QUEUE / 4);
  assert.equal(t.backpressure.holding, false, "320 KiB, a quarter is 512 KiB");
  t.backpressure.pending(200 * KiB);
  assert.equal(t.backpressure.holding, true, "with the batch the hub has not queued yet");
  t.backpressure.pending(-200 * KiB);
  assert.equal(t.backpressure.holding, false);
  for (const r of readers) r.gauge.add(SEND_QUEUE / 4);
  assert.equal(t.backpressure.holding, true);
  // Readers that keep reading at the least rate are never found slow, however long the wait (here the hub queues
  // as much again as they read).
  for (let i = 0; i < 10; i++) {
    t.advance(HOLD_WINDOW_MS / 2);
    for (const r of readers) {
      r.gauge.remove(WINDOW_BYTES / 2 + 1);
      r.gauge.add(WINDOW_BYTES / 2 + 1);
    }
    assert.equal(t.backpressure.holding, true);
  }
  assert.equal(readers.reduce((n, r) => n + r.slowed + r.cuts.length, 0), 0);
  for (const r of readers) r.gauge.remove(SEND_QUEUE / 4);
  assert.equal(t.backpressure.holding, false);
});

Deno.test("while senders wait on the total, readers that read less than --min-read-rate are found slow", () => {
  const t = setup();
  const stalled = Array.from({ length: 20 }, () => t.reader());
  const healthy = t.reader();
  // Each below half of --send-queue, so none is congested: together they hold the senders back.
  for (const r of stalled) r.gauge.add(SEND_QUEUE / 2 - 1);
  healthy.gauge.add(SEND_QUEUE / 2 - 1);
  assert.equal(t.backpressure.holding, true);
  t.advance(HOLD_WINDOW_MS / 2);
  healthy.gauge.remove(WINDOW_BYTES);
  healthy.gauge.add(WINDOW_BYTES);
  for (const r of stalled) r.gauge.remove(10);
  assert.equal(t.backpressure.holding, true);
  t.advance(HOLD_WINDOW_MS / 2);
  assert.equal(t.backpressure.holding, false, "the stalled readers no longer count");
  assert.deepEqual(stalled.map((r) => r.slowed), stalled.map(() => 1));
  assert.equal(healthy.slowed, 0);
});

Deno.test("slow readers' bytes hold the senders back at half of --max-queued until CONFIRM_MS shows they do not read", () => {
  const t = setup();
  const healthy = t.reader();
  const slow = Array.from({ length: 2 }, () => t.reader());
  for (const r of slow) r.gauge.add(SEND_QUEUE);
  t.advance(HOLD_WINDOW_MS);
  assert.equal(t.backpressure.holding, false, "found slow: neither holds the senders back by itself");
  // They keep receiving, and reading nothing: together they pass half of --max-queued.
  for (const r of slow) r.gauge.add(MAX_QUEUED / 4);
  assert.equal(t.backpressure.holding, true, "the senders wait rather than see them cut");
  t.advance(CONFIRM_MS - HOLD_WINDOW_MS - 1);
  assert.equal(t.backpressure.holding, true);
  t.advance(HOLD_WINDOW_MS / 5);
  assert.equal(t.backpressure.holding, false, "confirmed slow: they no longer hold anyone back");
  // A reader that only fell behind for a while catches up before that, and counts again.
  const busy = t.reader();
  busy.gauge.add(SEND_QUEUE);
  t.advance(HOLD_WINDOW_MS);
  assert.equal(t.backpressure.holding, false);
  assert.equal(busy.slowed, 1);
  busy.gauge.add(MAX_QUEUED / 2);
  assert.equal(t.backpressure.holding, true);
  busy.gauge.remove(busy.gauge.queued);
  assert.equal(t.backpressure.holding, false);
  assert.deepEqual([healthy, ...slow, busy].map((r) => r.cuts.length), [0, 0, 0, 0], "nobody is cut");
});

Deno.test("above --max-queued the confirmed slow readers are cut, behind longest first, as few as needed", () => {
  const t = setup();
  const healthy = Array.from({ length: 4 }, () => t.reader());
  for (const r of healthy) r.gauge.add(30 * KiB);
  const first = t.reader();
  const second = t.reader();
  const unconfirmed = t.reader();
  first.gauge.add(SEND_QUEUE);
  second.gauge.add(SEND_QUEUE);
  t.advance(HOLD_WINDOW_MS);
  assert.equal(t.backpressure.holding, false, "both found slow");
  // The slow readers keep receiving: first falls behind, then second, and both are confirmed.
  first.gauge.add(400 * KiB);
  t.advance(100);
  second.gauge.add(400 * KiB);
  t.advance(CONFIRM_MS);
  assert.equal(t.backpressure.holding, false);
  // Another reader that was only just found slow is not cut, however large its queue.
  unconfirmed.gauge.add(SEND_QUEUE);
  t.advance(HOLD_WINDOW_MS);
  assert.equal(t.backpressure.holding, false);
  unconfirmed.gauge.add(600 * KiB);
  first.gauge.add(300 * KiB);
  second.gauge.add(300 * KiB);
  assert.ok(t.backpressure.queued > MAX_QUEUED);
  return Promise.resolve().then(() => {
    assert.equal(first.cuts.length, 1, "the reader behind longest is cut");
    assert.equal(first.cuts[0].why, "memory");
    assert.deepEqual([second.cuts, unconfirmed.cuts], [[], []], "one cut was enough");
    assert.ok(t.backpressure.queued <= MAX_QUEUED);
    assert.deepEqual(healthy.map((r) => r.cuts.length), [0, 0, 0, 0], "readers that keep up are never cut");
  });
});

Deno.test("a reader found slow cannot hold the senders back again until --send-grace has passed and it has drained", () => {
  const t = setup();
  const r = t.reader();
  r.gauge.add(SEND_QUEUE);
  t.advance(HOLD_WINDOW_MS);
  assert.equal(t.backpressure.holding, false);
  r.gauge.remove(SEND_QUEUE);
  r.gauge.add(SEND_QUEUE);
  assert.equal(t.backpressure.holding, false, "still slow: it drained, but within --send-grace");
  r.gauge.remove(SEND_QUEUE);
  t.advance(GRACE_MS);
  r.gauge.add(1);
  r.gauge.remove(1);
  r.gauge.add(SEND_QUEUE);
  assert.equal(t.backpressure.holding, true, "an ordinary reader again");
});

Deno.test("released() resolves when a congested reader's hold runs out, with nothing else happening", async () => {
  const backpressure = new Backpressure({
    sendQueue: SEND_QUEUE,
    graceMs: GRACE_MS,
    maxQueued: MAX_QUEUED,
    minReadRate: MIN_READ_RATE,
  });
  const gauge = backpressure.track({ cut: () => {} });
  gauge.add(SEND_QUEUE);
  const started = performance.now();
  assert.equal(backpressure.holding, true);
  await backpressure.released();
  assert.ok(performance.now() - started >= HOLD_WINDOW_MS - 5);
  gauge.close();
  assert.equal(backpressure.queued, 0);
});
