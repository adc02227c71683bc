/**
 * Specification of lib/client/sequence.ts: a receiver detects a message withheld, delivered late or replayed as new,
 * and raises no alarm for a refused send, a storage retry, a second device or a sender's restart.
 *
 * @module
 */

import assert from "node:assert/strict";
import { SenderTracker, SendSequence } from "../lib/client/sequence.ts";
import { MAX_VOID_RANGES, type Sequence } from "../lib/message.ts";

const KEY = "a".repeat(43) + "=";
const device = (byte: number) => new Uint8Array(16).fill(byte);

/** A sender device and the receiver's tracker, with a counter for server seqs. */
function setup() {
  const sender = new SendSequence(device(1));
  const tracker = new SenderTracker();
  let seq = 0;
  const deliver = (sequence: Sequence, key = KEY) => tracker.observe({ key, sequence, seq: ++seq });
  return { sender, tracker, deliver };
}

Deno.test("messages delivered in order raise nothing", () => {
  const { sender, tracker, deliver } = setup();
  for (let i = 0; i < 10; i++) {
    const s = sender.take();
    assert.deepEqual(deliver(s), { kind: "ok" });
    sender.settle(s.n, "stored");
  }
  assert.deepEqual(tracker.withheld(), []);
});

Deno.test("a message withheld by the server is reported once a later message says it was stored", () => {
  const { sender, tracker, deliver } = setup();
  const [m1, m2, m3] = [sender.take(), sender.take(), sender.take()];
  for (const m of [m1, m2, m3]) sender.settle(m.n, "stored");
  deliver(m1);
  deliver(m3); // m2 withheld
  // m3 was sealed before m2's ack: its acked does not cover 2 yet, so nothing can be concluded.
  assert.deepEqual(tracker.withheld(), []);
  const m4 = sender.take();
  assert.equal(m4.acked, 3);
  deliver(m4);
  const holes = tracker.withheld();
  assert.equal(holes.length, 1);
  assert.deepEqual([holes[0].first, holes[0].last, holes[0].afterSeq], [2, 2, 1]);
  tracker.dismiss(holes[0]);
  assert.deepEqual(tracker.withheld(), []);
});

Deno.test("a send the server refused is declared void and raises no alarm", () => {
  const { sender, tracker, deliver } = setup();
  const [m1, m2, m3] = [sender.take(), sender.take(), sender.take()];
  sender.settle(m1.n, "stored");
  sender.settle(m2.n, "refused");
  sender.settle(m3.n, "stored");
  deliver(m1);
  deliver(m3);
  const m4 = sender.take();
  assert.deepEqual(m4.void, [[2, 2]]);
  assert.deepEqual(deliver(m4), { kind: "ok" });
  assert.deepEqual(tracker.withheld(), []);
  // Once m4 is stored, the void has been announced and later messages do not repeat it.
  sender.settle(m4.n, "stored");
  assert.deepEqual(sender.take().void, []);
});

Deno.test("an old message replayed as new is reported, whether seen before or older than anything seen", () => {
  const { sender, deliver } = setup();
  // Each acknowledged before the next is sealed, so no earlier number can honestly arrive after a later one.
  const ms = Array.from({ length: 4 }, () => {
    const m = sender.take();
    sender.settle(m.n, "stored");
    return m;
  });
  for (const m of ms.slice(1)) assert.deepEqual(deliver(m), { kind: "ok" });
  assert.deepEqual(deliver(ms[2]), { kind: "replayed" });
  assert.deepEqual(deliver(ms[0]), { kind: "replayed" });
});

Deno.test("a second device of the same identity is tracked on its own", () => {
  const tracker = new SenderTracker();
  const phone = new SendSequence(device(1));
  const laptop = new SendSequence(device(2));
  let seq = 0;
  for (let i = 0; i < 5; i++) {
    for (const s of [phone.take(), laptop.take()]) {
      assert.deepEqual(tracker.observe({ key: KEY, sequence: s, seq: ++seq }), { kind: "ok" });
    }
  }
  assert.deepEqual(tracker.withheld(), []);
});

Deno.test("a sender restart is a new device: its numbers start again at 1 without any alarm", () => {
  const { sender, tracker, deliver } = setup();
  for (const m of [sender.take(), sender.take()]) {
    deliver(m);
    sender.settle(m.n, "stored");
  }
  const restarted = new SendSequence(device(3));
  assert.deepEqual(deliver(restarted.take()), { kind: "ok" });
  assert.deepEqual(tracker.withheld(), []);
});

Deno.test("more refusals than fit in one message: acked stops where the listed voids end", () => {
  const { sender } = setup();
  const taken = Array.from({ length: 2 * MAX_VOID_RANGES + 2 }, () => sender.take());
  // Refuse every other number: each refusal is its own range.
  taken.forEach((m, i) => sender.settle(m.n, i % 2 === 0 ? "refused" : "stored"));
  const next = sender.take();
  assert.equal(next.void.length, MAX_VOID_RANGES);
  assert.equal(next.acked, next.void[MAX_VOID_RANGES - 1][1]);
});

Deno.test("forgetHoles drops holes (retention removed messages) but replays are still caught", () => {
  const { sender, tracker, deliver } = setup();
  const ms = Array.from({ length: 5 }, () => sender.take());
  for (const m of ms) sender.settle(m.n, "stored");
  deliver(ms[0]);
  deliver(ms[4]);
  deliver(sender.take());
  assert.equal(tracker.withheld().length, 1);
  tracker.forgetHoles();
  assert.deepEqual(tracker.withheld(), []);
  assert.deepEqual(deliver(ms[0]), { kind: "replayed" });
});

// ---- review: honest events that must raise no alarm, and server behaviour that must not escape -------------------

Deno.test("a storage retry is sealed again under a new number: no alarm, wherever the receiver first looked", () => {
  const { sender, tracker, deliver } = setup();
  const [m1, m2] = [sender.take(), sender.take()];
  sender.settle(m1.n, "refused"); // storage_failed: m1's number ends here
  sender.settle(m2.n, "stored");
  const retry = sender.take(); // m1's text again, number 3
  assert.deepEqual(retry.void, [[1, 1]]);
  deliver(m2);
  assert.deepEqual(deliver(retry), { kind: "ok" });
  assert.deepEqual(tracker.withheld(), []);
  // A receiver that first sees the retry (m2 was stored before its history window) has nothing missing either.
  const late = new SenderTracker();
  assert.deepEqual(late.observe({ key: KEY, sequence: retry, seq: 200 }), { kind: "ok" });
  assert.deepEqual(late.withheld(), []);
});

Deno.test("a server that reorders a pasted burst (all sealed before any ack) is caught: the held line is late", () => {
  const { sender, deliver } = setup();
  const burst = Array.from({ length: 5 }, () => sender.take()); // acked 0 for all: nothing was acked yet
  for (const m of burst) sender.settle(m.n, "stored");
  assert.deepEqual(deliver(burst[0]), { kind: "ok" });
  assert.deepEqual(deliver(burst[2]), { kind: "ok" }); // the third line relayed before the second
  assert.deepEqual(deliver(burst[1]), { kind: "late" });
});

Deno.test("a held-back message released after a later one is late, and then not withheld", () => {
  const { sender, tracker, deliver } = setup();
  const [b1, b2] = [sender.take(), sender.take()];
  sender.settle(b1.n, "stored");
  sender.settle(b2.n, "stored");
  const b3 = sender.take(); // acked = 2
  deliver(b1);
  deliver(b3);
  assert.equal(tracker.withheld().length, 1);
  assert.deepEqual(deliver(b2), { kind: "late" });
  assert.deepEqual(tracker.withheld(), []);
});

Deno.test("numbers forgotten after retention that arrive later are replays of old messages", () => {
  const { sender, tracker, deliver } = setup();
  const ms = Array.from({ length: 3 }, () => sender.take());
  deliver(ms[0]);
  deliver(ms[2]);
  tracker.forgetHoles();
  assert.deepEqual(deliver(ms[1]), { kind: "replayed" });
  assert.deepEqual(tracker.withheld(), []);
});

Deno.test("a member inventing device ids cannot grow the tracker without bound", () => {
  const tracker = new SenderTracker();
  for (let i = 0; i < 10_000; i++) {
    const sequence = {
      device: new Uint8Array(16).map((_, j) => (i >> (8 * (j % 2))) & 0xff),
      n: 1,
      acked: 0,
      void: [],
    };
    tracker.observe({ key: KEY + i, sequence, seq: i });
  }
  assert.equal(tracker.devices, 4096);
});

Deno.test("a hole reports the sender's key and device whole, though base64 holds '/', and dismiss clears it", () => {
  const key = "ab/cd+/" + "A".repeat(36) + "=";
  const dev = Uint8Array.fromBase64("/////w8PDw8PDw8PDw8PDw==");
  const sender = new SendSequence(dev);
  const tracker = new SenderTracker();
  let seq = 0;
  const [m1, m2, m3, m4] = [sender.take(), sender.take(), sender.take(), sender.take()];
  for (const m of [m1, m2, m3]) sender.settle(m.n, "stored");
  const m5 = sender.take();
  for (const m of [m1, m3, m4, m5]) tracker.observe({ key, sequence: m, seq: ++seq });
  const holes = tracker.withheld();
  assert.equal(holes.length, 1);
  assert.equal(holes[0].key, key);
  assert.equal(holes[0].device, dev.toBase64());
  tracker.dismiss(holes[0]);
  assert.deepEqual(tracker.withheld(), [], "dismissed");
  void m2;
});
