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

Deno.test("a message delivered after a later one is late only if that later one had seen it stored", () => {
  const honest = setup();
  // Storage retry: 2 failed and was sent again after 3 was stored; 3 was sealed with 2 unsettled.
  const [a1, a2, a3] = [honest.sender.take(), honest.sender.take(), honest.sender.take()];
  honest.deliver(a1);
  honest.deliver(a3);
  assert.deepEqual(honest.deliver(a2), { kind: "ok" });

  const held = setup();
  const [b1, b2] = [held.sender.take(), held.sender.take()];
  held.sender.settle(b1.n, "stored");
  held.sender.settle(b2.n, "stored");
  const b3 = held.sender.take(); // acked = 2
  held.deliver(b1);
  held.deliver(b3); // the server held b2 back...
  assert.deepEqual(held.deliver(b2), { kind: "late" }); // ...and released it after b3
  assert.deepEqual(held.tracker.withheld(), []);
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

Deno.test("a storage retry stored after the receiver's first sight of the device is not a replay", () => {
  const { sender, tracker, deliver } = setup();
  const m1 = sender.take(); // storage_failed: sent again a second later
  const m2 = sender.take(); // stored at once (sealed with acked 0: m1 unsettled)
  sender.settle(m2.n, "stored");
  // The receiver joins between the two: m2 (in joined.history, or live) is the first it sees of this device.
  assert.deepEqual(deliver(m2), { kind: "ok" });
  assert.deepEqual(deliver(m1), { kind: "ok" }); // the retry, stored now
  sender.settle(m1.n, "stored");
  assert.deepEqual(deliver(sender.take()), { kind: "ok" });
  assert.deepEqual(tracker.withheld(), []);
  // A second delivery of m1 is still a replay.
  assert.deepEqual(deliver(m1), { kind: "replayed" });
  // A number the first message had already seen settled cannot come after it: a replay.
  const { sender: s2, deliver: d2 } = setup();
  const n1 = s2.take();
  s2.settle(n1.n, "stored");
  const n2 = s2.take(); // acked 1
  assert.deepEqual(d2(n2), { kind: "ok" });
  assert.deepEqual(d2(n1), { kind: "replayed" });
});

Deno.test("numbers forgotten after retention may still arrive (a storage retry) without being called replays", () => {
  const { sender, tracker, deliver } = setup();
  const [m1, m2, m3] = [sender.take(), sender.take(), sender.take()];
  deliver(m1);
  deliver(m3); // m2 is being retried
  tracker.forgetHoles(); // the receiver reconnected and `since` reported messages removed by retention
  assert.deepEqual(deliver(m2), { kind: "ok" });
  assert.deepEqual(deliver(m2), { kind: "replayed" });
  assert.deepEqual(tracker.withheld(), []);
});

Deno.test({
  name: "DESIGN: a server that reorders a pasted burst (all sealed before any ack) is detected",
  ignore: true, // Proposal in the review: storage_failed ends a number (void) and the text is sealed again with a new one.
  fn: () => {
    const { sender, deliver } = setup();
    const burst = Array.from({ length: 5 }, () => sender.take()); // acked 0 for all: nothing was acked yet
    for (const m of burst) sender.settle(m.n, "stored"); // the server stored them in order (seq 1..5)...
    assert.deepEqual(deliver(burst[0]), { kind: "ok" });
    assert.deepEqual(deliver(burst[2]), { kind: "ok" }); // ...and relays the third line before the second
    assert.notDeepEqual(deliver(burst[1]), { kind: "ok" }); // today: "ok", indistinguishable from a storage retry
  },
});

Deno.test({
  name: "DESIGN: a storage retry whose successor was stored before the receiver joined is not reported as withheld",
  ignore: true, // Same proposal: with no honest reordering, a missing number above the first one seen cannot predate it.
  fn: () => {
    const { sender, tracker } = setup();
    const m1 = sender.take(); // storage_failed, retried
    const m2 = sender.take(); // stored at seq 100, before the receiver joined, outside its history window
    sender.settle(m2.n, "stored");
    tracker.observe({ key: KEY, sequence: m1, seq: 200 }); // the retry: the first the receiver sees
    sender.settle(m1.n, "stored");
    tracker.observe({ key: KEY, sequence: sender.take(), seq: 201 }); // acked 2: "2 was stored"
    // The re-check asks `since` after seq 200 and cannot find m2 (seq 100): a false "withheld" warning follows.
    assert.deepEqual(tracker.withheld(), []);
  },
});
