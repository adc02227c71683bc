/**
 * The outbox on its own, with a sealing step that takes a random time: order of writes, barriers, retries in
 * stop-and-wait, rewinding after a lost connection, and waiting for it to empty.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Outbox, type OutboxItem, type OutboxOptions } from "../lib/client/outbox.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** An outbox whose frames are the item bodies, sealed after a random delay of up to `jitterMs`. */
function harness(options: Partial<OutboxOptions> & { jitterMs?: number } = {}) {
  const written: string[] = [];
  const changes: OutboxItem[] = [];
  let online = true;
  const outbox = new Outbox({
    frame: async (item) => {
      await sleep(Math.random() * (options.jitterMs ?? 3));
      if (item.text.body.startsWith("unsealable")) throw new Error("cannot seal this one");
      return new TextEncoder().encode(item.text.body);
    },
    write: (frame) => written.push(new TextDecoder().decode(frame)),
    ready: () => online,
    changed: (item) => changes.push(item),
    retryDelayMs: 5,
    ...options,
  });
  return {
    outbox,
    written,
    changes,
    setOnline(value: boolean) {
      online = value;
      if (value) outbox.kick();
    },
  };
}

async function until(test: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!test()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(1);
  }
}

Deno.test("items are written in the order added, though sealing takes a random time", async () => {
  const { outbox, written } = harness({ jitterMs: 5 });
  const bodies = Array.from({ length: 100 }, (_, i) => `m${i}`);
  for (const b of bodies) outbox.add("general", { type: "text", body: b });
  await until(() => written.length === 100, "every write");
  assert.deepEqual(written, bodies);
  assert.equal(outbox.unsent, 100, "pending until acknowledged");
});

Deno.test("an item that cannot be sealed fails with the reason; the rest go on in order", async () => {
  const { outbox, written, changes } = harness();
  outbox.add("general", { type: "text", body: "a" });
  const bad = outbox.add("general", { type: "text", body: "unsealable b" });
  outbox.add("general", { type: "text", body: "c" });
  await until(() => written.length === 2, "two writes");
  assert.deepEqual(written, ["a", "c"]);
  const failed = changes.find((c) => c.id === bad.id && c.state === "failed");
  assert.equal(failed?.reason, "cannot seal this one");
});

Deno.test("a barrier runs after every earlier item is written and before any later one", async () => {
  const { outbox, written } = harness({ jitterMs: 4 });
  const log: string[] = [];
  for (let i = 0; i < 10; i++) outbox.add("general", { type: "text", body: `before ${i}` });
  const result = outbox.barrier(async () => {
    log.push(`barrier after ${written.length} writes`);
    await sleep(10);
    return 42;
  });
  for (let i = 0; i < 10; i++) outbox.add("general", { type: "text", body: `after ${i}` });
  assert.equal(await result, 42);
  await until(() => written.length === 20, "every write");
  assert.deepEqual(log, ["barrier after 10 writes"]);
  assert.deepEqual(written.slice(10), Array.from({ length: 10 }, (_, i) => `after ${i}`));
});

Deno.test("while offline nothing is written and barriers wait; cancelBarriers rejects them; back online all goes in order", async () => {
  const h = harness();
  h.setOnline(false);
  h.outbox.add("general", { type: "text", body: "one" });
  const barrier = h.outbox.barrier(() => Promise.resolve("ran"));
  h.outbox.add("general", { type: "text", body: "two" });
  await sleep(20);
  assert.deepEqual(h.written, []);
  h.outbox.cancelBarriers(new Error("offline"));
  await assert.rejects(barrier, /offline/);
  h.setOnline(true);
  await until(() => h.written.length === 2, "both writes");
  assert.deepEqual(h.written, ["one", "two"]);
});

Deno.test("rewind writes every unacknowledged item again, in order; acknowledged ones are not", async () => {
  const { outbox, written } = harness();
  const items = ["a", "b", "c", "d"].map((b) => outbox.add("general", { type: "text", body: b }));
  await until(() => written.length === 4, "first writes");
  outbox.ack(items[1].id, 2);
  outbox.rewind();
  outbox.kick();
  await until(() => written.length === 7, "the resends");
  assert.deepEqual(written.slice(4), ["a", "c", "d"]);
  assert.equal(outbox.unsent, 3);
});

Deno.test("a retry writes the refused item alone, and the items behind it only once it is stored", async () => {
  const { outbox, written } = harness();
  const items = ["a", "b", "c"].map((b) => outbox.add("general", { type: "text", body: b }));
  await until(() => written.length === 3, "first writes");
  // a and b are refused (c was in flight and is refused too, later).
  assert.equal(outbox.retry(items[0].id, "storage failed"), true);
  assert.equal(outbox.retry(items[1].id, "storage failed"), true);
  await until(() => written.length === 4, "the retry of a");
  await sleep(20);
  assert.deepEqual(written.slice(3), ["a"], "b and c wait for a");
  outbox.ack(items[0].id, 10);
  await until(() => written.length === 6, "b and c");
  assert.deepEqual(written.slice(4), ["b", "c"]);
});

Deno.test("after its last retry an item fails; failRoom gives up a room's items; whenPendingAtMost settles", async () => {
  const { outbox, changes } = harness({ retries: 1 });
  const a = outbox.add("general", { type: "text", body: "a" });
  const b = outbox.add("other", { type: "text", body: "b" });
  const emptied = outbox.whenPendingAtMost(0);
  await until(() => changes.filter((c) => c.state === "sent").length === 2, "both sent");
  assert.equal(outbox.retry(a.id, "first"), true);
  assert.equal(outbox.retry(a.id, "second"), false);
  assert.equal(changes.at(-1)?.state, "failed");
  assert.equal(changes.at(-1)?.reason, "second");
  outbox.failRoom("other", "left the room");
  await emptied;
  assert.deepEqual(outbox.pending(), []);
  assert.equal(changes.find((c) => c.id === b.id && c.state === "failed")?.reason, "left the room");
  await assert.rejects(outbox.whenPendingAtMost(-1, { timeoutMs: 10 }), /not stored after 10 ms/);
});

Deno.test("one room that is not ready does not hold up another room's items", async () => {
  const written: string[] = [];
  const outbox = new Outbox({
    frame: (item) => Promise.resolve(new TextEncoder().encode(item.text.body)),
    write: (frame) => written.push(new TextDecoder().decode(frame)),
    ready: (item) => item.room === "open",
    changed: () => {},
  });
  outbox.add("closed", { type: "text", body: "waits" });
  outbox.add("open", { type: "text", body: "goes" });
  await until(() => written.length === 1, "the open room's item");
  assert.deepEqual(written, ["goes"]);
  outbox.close(new Error("done"));
  await assert.rejects(outbox.whenPendingAtMost(0), /done/);
});

Deno.test("a frame sealed while an earlier item was put back is discarded unwritten, so it is sealed again after it", async () => {
  const written: string[] = [];
  const discarded: string[] = [];
  let release: (() => void) | undefined;
  let seals = 0;
  const outbox = new Outbox({
    frame: async (item) => {
      seals++;
      // The second item's sealing is slow: the refusal of the first arrives meanwhile.
      if (item.text.body === "b" && seals === 2) await new Promise<void>((resolve) => release = resolve);
      return new TextEncoder().encode(`${item.text.body}#${seals}`);
    },
    write: (frame) => written.push(new TextDecoder().decode(frame)),
    ready: () => true,
    changed: () => {},
    discard: (item) => discarded.push(item.text.body),
    retryDelayMs: 1,
  });
  const a = outbox.add("general", { type: "text", body: "a" });
  outbox.add("general", { type: "text", body: "b" });
  await until(() => release !== undefined, "b being sealed");
  assert.deepEqual(written, ["a#1"]);
  outbox.retry(a.id, "storage failed");
  release!();
  await until(() => written.length === 2, "a again");
  assert.deepEqual(discarded, ["b"], "b's frame was dropped, not written");
  outbox.ack(a.id, 1);
  await until(() => written.length === 3, "b");
  assert.deepEqual(written, ["a#1", "a#3", "b#4"], "b sealed again after a's second sealing");
  outbox.close(new Error("done"));
});

Deno.test("a direct message is its own lane: a room that is not ready does not hold it up, and failRoom spares it", async () => {
  const written: string[] = [];
  const outbox = new Outbox({
    frame: (item) => Promise.resolve(new TextEncoder().encode(`${item.to ?? item.room}:${item.text.body}`)),
    write: (frame) => written.push(new TextDecoder().decode(frame)),
    ready: (item) => item.to !== undefined,
    changed: () => {},
  });
  outbox.add("general", { type: "text", body: "waits" });
  const dm = outbox.add({ to: "bob" }, { type: "text", body: "psst" });
  assert.equal(dm.to, "bob");
  assert.equal(dm.room, "");
  await until(() => written.length === 1, "the direct message");
  assert.deepEqual(written, ["bob:psst"]);
  outbox.failRoom("", "left");
  assert.equal(outbox.pending().length, 2, "a room named '' is not the direct lane");
  outbox.close(new Error("done"));
});
