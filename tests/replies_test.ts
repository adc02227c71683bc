/**
 * Reply waiters: the first matching message goes to the waiter, others pass on; a waiter gives up in time and says
 * so; a lost connection rejects them all.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Replies } from "../lib/client/replies.ts";

Deno.test("a waiter takes the first matching message; the others pass on to normal handling", async () => {
  const replies = new Replies<{ type: string }>({ timeoutMs: 1_000, timedOut: () => {} });
  const who = replies.expect((m) => m.type === "who");
  assert.equal(replies.offer({ type: "message" }), false);
  assert.equal(replies.offer({ type: "who" }), true);
  assert.equal(replies.offer({ type: "who" }), false, "taken once");
  assert.deepEqual(await who, { type: "who" });
});

Deno.test("a waiter gives up after its time and says the connection is dead; failAll rejects the rest", async () => {
  let timedOut = 0;
  const replies = new Replies<{ type: string }>({ timeoutMs: 10, timedOut: () => timedOut++ });
  await assert.rejects(replies.expect(() => false), /did not answer in time/);
  assert.equal(timedOut, 1);
  const pending = replies.expect(() => false);
  replies.failAll("the connection was lost");
  await assert.rejects(pending, /the connection was lost/);
});
