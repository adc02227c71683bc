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
  const ms = [sender.take(), sender.take(), sender.take(), sender.take()];
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
