/**
 * Attacks on the client's receiving that the first rounds did not try: a server that withholds a message (live, and
 * again when the client asks for the hole) and delivers it later, pages back newer messages, or repeats a seq with
 * another envelope. Played by the v2 server double (tests/support/evil_server.ts) against the real session.
 *
 * @module
 */

import assert from "node:assert/strict";
import { EvilServer } from "./support/evil_server.ts";
import { passphraseHooks, poll, settle, TestHomes } from "./support/session_clients.ts";

const hooks = passphraseHooks("attack client2 passphrase 41d9");

/** Alice says three lines in #general; the server withholds the second from bob until he reports it withheld. */
async function withheldThenDelivered() {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  const bob = await homes.connect(server.dial, "bob");
  await alice.session.join("general", hooks);
  await bob.session.join("general", hooks);
  const room = server.rooms.get("general")!;
  let hidden: number | undefined;
  let relayed = 0;
  // Bob never gets the second message: not live, and not in any `since` page when he asks for the hole.
  server.outgoing = (msg, link) => {
    if (link.nick !== "bob") return undefined;
    if (msg.type === "message" && ++relayed === 2) hidden = msg.seq as number;
    if (msg.type === "message" && msg.seq === hidden) return [];
    if (msg.type === "since") {
      return [{ ...msg, messages: (msg.messages as { seq: number }[]).filter((m) => m.seq !== hidden) }];
    }
    return undefined;
  };
  alice.session.say("one");
  await poll(() => bob.messages().length === 1, "bob sees the first line");
  alice.session.say("two");
  await poll(() => room.messages.length === 2, "the second line stored");
  // Stored, and acked to alice before she seals the third: its `acked` covers the second.
  await settle();
  alice.session.say("three");
  await poll(() => bob.of("withheld").length === 1, "bob is told a message of alice was withheld");
  return { server, homes, alice, bob, room, hidden };
}

Deno.test("a withheld message the server delivers after the warning is marked late, not replayed", async () => {
  const { server, homes, alice, bob, room, hidden } = await withheldThenDelivered();
  try {
    assert.deepEqual(bob.messages().map((m) => m.text), ["one", "three"]);
    // Now the server lets it through, live, as if just relayed: bob has never seen it.
    const item = room.messages.find((m) => m.seq === hidden)!;
    server.outgoing = undefined;
    server.open.find((l) => l.nick === "bob")!.send({ type: "message", ...item });
    await poll(() => bob.messages().length === 3, "the withheld line arrives");
    const late = bob.messages()[2];
    assert.equal(late.text, "two");
    // It was missing (and reported withheld): delivered after a later one of the same sender, it is late. A
    // "replayed" mark would tell bob he saw it before, which he never did.
    assert.deepEqual(late.marks, ["late"]);
  } finally {
    await alice.close();
    await bob.close();
    await homes.cleanup();
  }
});

Deno.test({
  name: "a page back (/history) that holds a message newer than the oldest shown is not shown as older history",
  // An honest server returns only seq < before_seq; a server that withheld a message live could slip it in among
  // the old ones, where it would show above lines it was sent after, unmarked and never fed to the order checks
  // (and a message already shown could be shown again as if older).
  fn: async () => {
    const server = await EvilServer.start();
    const homes = new TestHomes();
    const alice = await homes.connect(server.dial, "alice");
    const bob = await homes.connect(server.dial, "bob");
    try {
      await alice.session.join("general", hooks);
      alice.session.say("old");
      await poll(() => server.rooms.get("general")!.messages.length === 1, "stored");
      await bob.session.join("general", hooks);
      await poll(() => bob.messages().length === 1, "bob's join history");
      const room = server.rooms.get("general")!;
      let relayed = 0;
      server.outgoing = (msg, link) => {
        if (link.nick !== "bob") return undefined;
        // The second live line is withheld, then served in the page back, beside an old one shown before.
        if (msg.type === "message" && ++relayed === 1) return [];
        if (msg.type === "history") return [{ ...msg, messages: room.messages.slice(0, 2), more: false }];
        return undefined;
      };
      alice.session.say("withheld live, then paged back");
      await poll(() => room.messages.length === 2, "stored");
      await settle();
      await bob.session.older(10, { room: "general" });
      await settle();
      const paged = bob.messages().filter((m) => m.text === "withheld live, then paged back");
      // Never shown as a message older than the oldest one the user had.
      assert.ok(paged.every((m) => !m.history || m.marks.includes("late")), JSON.stringify(paged));
      assert.equal(bob.messages().filter((m) => m.text === "old").length, 1, "the old line is not shown twice");
    } finally {
      await alice.close();
      await bob.close();
      await homes.cleanup();
    }
  },
});
