/**
 * The outbound budget's rules, driven with a fake clock and fake readers: who holds the senders back and for how
 * long, who is found slow, who is cut off and in which order, and that a burst alone never cuts anyone.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Backpressure, CONGESTION_HOLD_MS, type QueueGauge } from "../lib/server/backpressure.ts";

const KiB = 1024;
const SEND_QUEUE = 64 * KiB;
const GRACE_MS = 10_000;
const MAX_QUEUED = 1024 * KiB;

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

Deno.test("a reader above half of --send-queue holds the senders back, for at most CONGESTION_HOLD_MS", () => {
  const t = setup();
  const a = t.reader();
  const b = t.reader();
  a.gauge.add(SEND_QUEUE / 2);
  b.gauge.add(SEND_QUEUE);
  assert.equal(t.backpressure.holding, true, "b is congested");
  t.advance(CONGESTION_HOLD_MS - 1);
  assert.equal(t.backpressure.holding, true);
  // Draining below half ends the hold at once.
  b.gauge.remove(SEND_QUEUE / 2 + 1);
  assert.equal(t.backpressure.holding, false);
  assert.equal(b.slowed, 0);
  // Congested again and not draining: after the hold time it is slow, and holds nobody back any more.
  b.gauge.add(10 * KiB);
  t.advance(CONGESTION_HOLD_MS);
  assert.equal(t.backpressure.holding, false);
  assert.equal(b.slowed, 1);
  assert.deepEqual([a.cuts, b.cuts], [[], []], "nobody is cut for being congested");
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

Deno.test("senders wait while the queues of readers that are not slow, with the pending fan-out, exceed half of --max-queued", () => {
  const t = setup();
  const readers = Array.from({ length: 20 }, () => t.reader());
  for (const r of readers) r.gauge.add(SEND_QUEUE / 4);
  assert.equal(t.backpressure.queued, 20 * SEND_QUEUE / 4);
  assert.equal(t.backpressure.holding, false, "320 KiB of 512 KiB");
  t.backpressure.pending(200 * KiB);
  assert.equal(t.backpressure.holding, true, "with the batch the hub has not queued yet");
  t.backpressure.pending(-200 * KiB);
  assert.equal(t.backpressure.holding, false);
  for (const r of readers) r.gauge.add(SEND_QUEUE / 4);
  assert.equal(t.backpressure.holding, true);
  // Readers that keep draining are never found slow, however long the wait.
  for (let i = 0; i < 10; i++) {
    t.advance(CONGESTION_HOLD_MS / 2);
    for (const r of readers) r.gauge.remove(1);
    assert.equal(t.backpressure.holding, true);
  }
  assert.equal(readers.reduce((n, r) => n + r.slowed + r.cuts.length, 0), 0);
  for (const r of readers) r.gauge.remove(SEND_QUEUE / 4);
  assert.equal(t.backpressure.holding, false);
});

Deno.test("while senders wait, readers that took nothing for CONGESTION_HOLD_MS are found slow and stop the wait", () => {
  const t = setup();
  const stalled = Array.from({ length: 20 }, () => t.reader());
  const healthy = t.reader();
  // Each below half of --send-queue, so none is congested: together they hold the senders back.
  for (const r of stalled) r.gauge.add(SEND_QUEUE / 2 - 1);
  healthy.gauge.add(SEND_QUEUE / 4);
  assert.equal(t.backpressure.holding, true);
  t.advance(CONGESTION_HOLD_MS / 2);
  healthy.gauge.remove(1);
  assert.equal(t.backpressure.holding, true);
  t.advance(CONGESTION_HOLD_MS / 2);
  healthy.gauge.remove(1);
  assert.equal(t.backpressure.holding, false, "the stalled readers no longer count");
  assert.deepEqual(stalled.map((r) => r.slowed), stalled.map(() => 1));
  assert.equal(healthy.slowed, 0);
});

Deno.test("above --max-queued the slow readers are cut, congested longest first, and only as many as needed", () => {
  const t = setup();
  const healthy = Array.from({ length: 4 }, () => t.reader());
  for (const r of healthy) r.gauge.add(100 * KiB);
  const first = t.reader();
  first.gauge.add(SEND_QUEUE);
  t.advance(100);
  const second = t.reader();
  second.gauge.add(SEND_QUEUE);
  t.advance(CONGESTION_HOLD_MS);
  assert.equal(t.backpressure.holding, false, "both found slow");
  // The slow readers keep receiving; when everything queued passes 1 MiB, the slowest goes first.
  first.gauge.add(300 * KiB);
  second.gauge.add(300 * KiB);
  assert.ok(t.backpressure.queued > MAX_QUEUED);
  return Promise.resolve().then(() => {
    assert.equal(first.cuts.length, 1, "the reader congested longest is cut");
    assert.equal(first.cuts[0].why, "memory");
    assert.deepEqual(second.cuts, [], "one cut was enough");
    assert.ok(t.backpressure.queued <= MAX_QUEUED);
    assert.deepEqual(healthy.map((r) => r.cuts.length), [0, 0, 0, 0], "readers that keep up are never cut");
  });
});

Deno.test("a reader found slow cannot hold the senders back again until --send-grace has passed and it has drained", () => {
  const t = setup();
  const r = t.reader();
  r.gauge.add(SEND_QUEUE);
  t.advance(CONGESTION_HOLD_MS);
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
  const backpressure = new Backpressure({ sendQueue: SEND_QUEUE, graceMs: GRACE_MS, maxQueued: MAX_QUEUED });
  const gauge = backpressure.track({ cut: () => {} });
  gauge.add(SEND_QUEUE);
  const started = performance.now();
  assert.equal(backpressure.holding, true);
  await backpressure.released();
  assert.ok(performance.now() - started >= CONGESTION_HOLD_MS - 5);
  gauge.close();
  assert.equal(backpressure.queued, 0);
});
