/**
 * The client session on protocol v2 against an honest v2 server double (tests/support/evil_server.ts): the
 * handshake and the server key pinned at first contact, several rooms on one connection with room-scoped requests,
 * canonical names, signed messages with trust and fingerprints, the room parameters pinned, and no false alarm for
 * the honest cases of PROTOCOL.md "Sequence" (a second device, a refused send, a nick change, retention, paging).
 *
 * @module
 */

import assert from "node:assert/strict";
import { fingerprint } from "../lib/identity.ts";
import { EvilServer } from "./support/evil_server.ts";
import { passphraseHooks, poll, settle, TestHomes } from "./support/session_clients.ts";

const PASSPHRASE = "rooms test passphrase 71e0";
const hooks = passphraseHooks(PASSPHRASE);

Deno.test("two sessions converse in two rooms on one connection; every message is signed and pinned", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  const bob = await homes.connect(server.dial, "bob");
  try {
    assert.deepEqual(alice.of("server").map((e) => [e.first, e.fingerprint]), [[true, await fingerprint(server.key)]]);
    await alice.session.join("general", hooks);
    await alice.session.join("Ops", hooks);
    await bob.session.join("#general".slice(1), hooks);
    // Room names fold: bob asks for OPS, the server's spelling (Ops) is the one used from then on.
    const joined = await bob.session.join("OPS", hooks);
    assert.equal(joined.room, "Ops");
    assert.deepEqual(bob.session.rooms, ["general", "Ops"]);
    alice.session.say("hello general", { room: "general" });
    alice.session.say("hello ops", { room: "ops" });
    alice.session.say("waves", { room: "Ops", action: true });
    await alice.session.drain({ timeoutMs: 20_000 });
    await poll(() => bob.messages().length === 3, "bob's three messages");
    const shown = bob.messages().map((m) => [m.room, m.from, m.type, m.text, m.trust]);
    assert.deepEqual(shown, [
      ["general", "alice", "text", "hello general", "pinned"],
      ["Ops", "alice", "text", "hello ops", "pinned"],
      ["Ops", "alice", "action", "waves", "pinned"],
    ], "alice's key was pinned from the member list before her first message");
    const aliceFingerprint = await fingerprint(alice.home.identity.publicKey);
    assert.ok(bob.messages().every((m) => m.fingerprint === aliceFingerprint && m.marks.length === 0));
    assert.deepEqual((await bob.session.who("ops")).map((m) => m.nick).sort(), ["alice", "bob"]);
    await bob.session.part("general");
    assert.deepEqual(bob.session.rooms, ["Ops"]);
    alice.session.say("after bob left", { room: "general" });
    alice.session.say("still here", { room: "Ops" });
    await poll(() => bob.messages().length === 4, "the Ops message");
    await settle();
    assert.equal(bob.messages().at(-1)!.text, "still here");
    assert.equal(bob.messages().filter((m) => m.room === "general").length, 1, "nothing of a room left");
  } finally {
    await alice.close();
    await bob.close();
    await homes.cleanup();
  }
});
