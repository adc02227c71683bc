/**
 * The client session on protocol v2 against an honest v2 server double (tests/support/evil_server.ts): the
 * handshake and the server key pinned at first contact, several rooms on one connection with room-scoped requests,
 * canonical names, signed messages with trust and fingerprints, the room parameters pinned, and no false alarm for
 * the honest cases of PROTOCOL.md "Sequence" (a second device, a refused send, a nick change, retention, paging).
 *
 * @module
 */

import assert from "node:assert/strict";
import { sealEnvelope } from "../lib/crypto.ts";
import { fingerprint } from "../lib/identity.ts";
import { EvilServer } from "./support/evil_server.ts";
import { passphraseHooks, poll, roomKeysOf, settle, TestHomes } from "./support/session_clients.ts";

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

Deno.test("each room keeps its keys and catch-up position across a reconnect: what was said in both while away arrives", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  const bob = await homes.connect(server.dial, "bob");
  try {
    for (const c of [alice, bob]) {
      await c.session.join("general", hooks);
      await c.session.join("ops", hooks);
    }
    alice.session.say("before", { room: "general" });
    await poll(() => bob.messages().length === 1, "the first line");
    const joins = () => server.received.filter((m) => m.type === "join").length;
    const joinsBefore = joins();
    server.down = true;
    for (const link of server.open) if (link.nick === "bob") link.drop();
    alice.session.say("missed in general", { room: "general" });
    alice.session.say("missed in ops", { room: "ops" });
    await alice.session.drain();
    bob.session.say("typed offline", { room: "ops" });
    server.down = false;
    await poll(() => bob.of("reconnected").length === 1, "bob back");
    await poll(() => bob.messages().length === 3, "both missed lines");
    await bob.session.drain();
    await poll(() => alice.messages().length === 1, "alice gets bob's line");
    assert.deepEqual(bob.messages().map((m) => [m.room, m.text, m.history]), [
      ["general", "before", false],
      ["general", "missed in general", false],
      ["ops", "missed in ops", false],
    ]);
    assert.deepEqual(alice.messages().map((m) => [m.room, m.text]), [["ops", "typed offline"]]);
    assert.equal(joins() - joinsBefore, 2, "each of bob's rooms rejoined once, without a passphrase");
  } finally {
    await alice.close();
    await bob.close();
    await homes.cleanup();
  }
});

Deno.test("/verify: both see the same safety number; once confirmed the peer's messages are 'verified'", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  const bob = await homes.connect(server.dial, "bob");
  try {
    await alice.session.join("general", hooks);
    await bob.session.join("general", hooks);
    await poll(() => alice.of("presence").length === 1, "alice sees bob join (and pins his key)");
    const fromAlice = await alice.session.safetyNumber("bob");
    const fromBob = await bob.session.safetyNumber("ALICE");
    assert.equal(fromAlice.number, fromBob.number);
    assert.match(fromAlice.number, /^(\d{5} ){15}\d{5}$/);
    assert.equal(fromBob.nick, "alice");
    assert.equal(bob.session.verify("alice"), true);
    assert.equal((await bob.session.whois("alice")).trust, "verified");
    alice.session.say("verified me");
    await poll(() => bob.messages().length === 1, "the line");
    assert.equal(bob.messages()[0].trust, "verified");
    await assert.rejects(bob.session.safetyNumber("nobody"), /no key pinned for nobody/);
  } finally {
    await alice.close();
    await bob.close();
    await homes.cleanup();
  }
});

Deno.test("times: a message typed long before it was stored is delayed, one ahead of the server is from the future", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  const bob = await homes.connect(server.dial, "bob");
  try {
    await alice.session.join("general", hooks);
    await bob.session.join("general", hooks);
    // The server's clock: 10 minutes after alice's for the first line, 10 minutes before for the second.
    let shift = 10 * 60_000;
    server.outgoing = (msg) => {
      if (msg.type !== "message") return undefined;
      const out = { ...msg, sent_at: (msg.sent_at as number) + shift };
      shift = -shift;
      return [out];
    };
    alice.session.say("typed offline");
    alice.session.say("from the future");
    alice.session.say("on time");
    await poll(() => bob.messages().length === 3, "three lines");
    assert.deepEqual(bob.messages().map((m) => m.marks), [["delayed"], ["future"], ["delayed"]]);
  } finally {
    await alice.close();
    await bob.close();
    await homes.cleanup();
  }
});

Deno.test("an unsigned v1 message is shown as 'unsigned' in history below every signed one, and refused anywhere else", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  try {
    await alice.session.join("general", hooks);
    alice.session.say("signed");
    await alice.session.drain();
    const room = server.rooms.get("general")!;
    const keys = await roomKeysOf(PASSPHRASE, { salt: Uint8Array.fromBase64(room.salt), iterations: room.iterations });
    const v1 = (body: string) =>
      sealEnvelope(keys, { room: "general", from: "old-timer", plaintext: { type: "text", body }, v: 1 });
    // A migrated database: v1 rows come before every v2 row.
    room.messages.unshift({ seq: 0, sent_at: 1, envelope: await v1("from before v2") });
    room.messages.push({ seq: server.nextSeq(), sent_at: Date.now(), envelope: await v1("v1 after a signed one") });
    const bob = await homes.connect(server.dial, "bob");
    try {
      await bob.session.join("general", hooks);
      await poll(() => bob.messages().length === 2 && bob.of("forged").length === 1, "history and one warning");
      assert.deepEqual(bob.messages().map((m) => [m.text, m.trust, m.fingerprint]), [
        ["from before v2", "unsigned", null],
        ["signed", "pinned", await fingerprint(alice.home.identity.publicKey)],
      ]);
      assert.equal(bob.of("forged")[0].from, "old-timer");
      server.store(await v1("v1 live"));
      await poll(() => bob.of("forged").length === 2, "a live v1 message refused");
      assert.equal(bob.messages().length, 2);
    } finally {
      await bob.close();
    }
  } finally {
    await alice.close();
    await homes.cleanup();
  }
});

Deno.test("plain TCP to an address that is not loopback is warned about; loopback and TLS are not", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  try {
    for (
      const [address, tls, warned] of [
        ["chat.example.com:5000", false, true],
        ["10.1.2.3:5000", false, true],
        ["chat.example.com:5000", true, false],
        ["127.0.0.1:5000", false, false],
        ["localhost:5000", false, false],
        ["::1:5000", false, false],
      ] as const
    ) {
      const client = await homes.connect(server.dial, `u${server.links.length}`, { address, tls });
      assert.equal(client.of("insecure").length, warned ? 1 : 0, address);
      await client.close();
    }
  } finally {
    await homes.cleanup();
  }
});

Deno.test("joinedRoom answers in the server's spelling for any spelling of a joined room; maxBody follows the limits", async () => {
  const server = await EvilServer.start();
  server.limits = { ...server.limits, max_body: 1000 };
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  try {
    await alice.session.join("Ops", hooks);
    assert.equal(alice.session.joinedRoom("OPS"), "Ops");
    assert.equal(alice.session.joinedRoom("0ps"), "Ops", "a lookalike folds to the same room");
    assert.equal(alice.session.joinedRoom("dev"), undefined);
    assert.equal(alice.session.maxBody, 1000);
    assert.throws(() => alice.session.say("x".repeat(1001)), /the limit is 1000/);
  } finally {
    await alice.close();
    await homes.cleanup();
  }
});
