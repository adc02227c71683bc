/**
 * Direct messages and invitations through the client session (issue 13), against the honest v2 server double:
 * messages waiting in an inbox while the recipient is away, each person's own copies after a restart, `delivered`,
 * a recipient nobody registered, trusting a recipient's new key, and an invitation accepted without the passphrase
 * whose secret is kept in the home for the next run (and `--remember` for a room joined by passphrase).
 *
 * @module
 */

import assert from "node:assert/strict";
import { fingerprint } from "../lib/identity.ts";
import { type JoinHooks, SendError } from "../lib/client/session.ts";
import { EvilServer } from "./support/evil_server.ts";
import { passphraseHooks, poll, settle, TestHomes } from "./support/session_clients.ts";

const PASSPHRASE = "direct test passphrase 3e9a";
const hooks = passphraseHooks(PASSPHRASE);
/** Hooks that fail the test if a passphrase is asked for. */
const NO_PASSPHRASE: JoinHooks = {
  passphrase: () => Promise.reject(new Error("a passphrase was asked for")),
};

Deno.test("three direct messages to someone away arrive when they connect; the sender sees its copies after a restart", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const bobDir = await homes.dir();
  // bob has been here once (so his nick is registered), then left.
  const bobFirst = await homes.connect(server.dial, "bob", { dir: bobDir });
  await bobFirst.close();
  const aliceDir = await homes.dir();
  const alice = await homes.connect(server.dial, "alice", { dir: aliceDir });
  const carol = await homes.connect(server.dial, "carol");
  try {
    const sent = ["one", "two", "three"].map((text) => alice.session.msg("bob", text));
    await alice.session.drain();
    assert.equal(alice.outbox("acked").length, 3);
    assert.ok(sent.every((item) => item.to === "bob"));
    const bob = await homes.connect(server.dial, "bob", { dir: bobDir });
    try {
      await poll(() => bob.directs().length === 3, "bob's three messages");
      const aliceKey = await fingerprint(alice.home.identity.publicKey);
      assert.deepEqual(
        bob.directs().map((d) => [d.from, d.to, d.text, d.own, d.history, d.fingerprint, d.trust, d.marks]),
        ["one", "two", "three"].map((
          t,
          i,
        ) => ["alice", "bob", t, false, false, aliceKey, i === 0 ? "new" : "pinned", []]),
      );
      // The server handed them over: alice is told, once each.
      await poll(() => alice.of("delivered").length === 3, "delivered");
      assert.deepEqual(alice.of("delivered").map((d) => d.id), sent.map((s) => s.id));
      assert.equal(carol.directs().length, 0, "carol gets nothing");
      assert.equal(carol.of("forged").length, 0);
      // bob answers; alice restarts and sees the whole conversation, her copies included.
      bob.session.msg("alice", "got them");
      await poll(() => alice.directs().length === 1, "bob's answer");
      await alice.close();
      const again = await homes.connect(server.dial, "alice", { dir: aliceDir });
      try {
        await poll(() => again.directs().length === 4, "the conversation after a restart");
        const shown = again.directs().map((d) => [d.from, d.to, d.text, d.own, d.history]);
        assert.deepEqual(shown, [
          ["alice", "bob", "one", true, true],
          ["alice", "bob", "two", true, true],
          ["alice", "bob", "three", true, true],
          ["bob", "alice", "got them", false, true],
        ]);
        assert.ok(again.directs().every((d) => d.marks.length === 0 && d.trust !== "changed"));
        assert.ok(again.directs().slice(0, 3).every((d) => d.delivered === true));
      } finally {
        await again.close();
      }
      // bob, restarted too, sees them as history: already shown before.
      await bob.close();
      const bobAgain = await homes.connect(server.dial, "bob", { dir: bobDir });
      try {
        await poll(() => bobAgain.directs().length === 4, "bob's conversation");
        assert.ok(bobAgain.directs().every((d) => d.history && d.marks.length === 0));
      } finally {
        await bobAgain.close();
      }
    } finally {
      await bob.close();
    }
  } finally {
    await alice.close();
    await carol.close();
    await homes.cleanup();
  }
});

Deno.test("direct messages sent while the recipient is connected arrive live; a reconnect fetches what was missed", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  const bob = await homes.connect(server.dial, "bob");
  try {
    alice.session.msg("bob", "live one", { action: true });
    await poll(() => bob.directs().length === 1, "the live message");
    assert.equal(bob.directs()[0].type, "action");
    server.down = true;
    for (const link of server.open) if (link.nick === "bob") link.drop();
    alice.session.msg("BOB", "while you were away");
    await alice.session.drain();
    server.down = false;
    await poll(() => bob.directs().length === 2, "the missed message");
    assert.deepEqual(bob.directs().map((d) => [d.text, d.history]), [["live one", false], [
      "while you were away",
      false,
    ]]);
    await settle();
    assert.equal(bob.directs().length, 2, "nothing twice");
  } finally {
    await alice.close();
    await bob.close();
    await homes.cleanup();
  }
});

Deno.test("a recipient nobody registered, oneself, or a text too long: refused with a reason", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  try {
    alice.session.msg("nobody", "hello?");
    await poll(() => alice.outbox("failed").length === 1, "the refusal");
    assert.match(alice.outbox("failed")[0].reason!, /nobody is registered as nobody/);
    assert.throws(() => alice.session.msg("ALICE", "me"), SendError);
    assert.throws(() => alice.session.msg("bob", "x".repeat(16385)), /16385 bytes; the limit is 16384/);
    assert.throws(() => alice.session.msg("b o b", "x"), SendError);
  } finally {
    await alice.close();
    await homes.cleanup();
  }
});

Deno.test("after a recipient's key changed, /trust with the fingerprint shown lets messages go again", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  const bobDir = await homes.dir();
  const bob = await homes.connect(server.dial, "bob", { dir: bobDir });
  try {
    alice.session.msg("bob", "before");
    await poll(() => bob.directs().length === 1, "the first message");
    await bob.close();
    // bob lost his key and made a new one; the operator released his nick.
    const newDir = await homes.dir();
    server.registry.delete("bob");
    const newBob = await homes.connect(server.dial, "bob", { dir: newDir });
    try {
      alice.session.msg("bob", "to whom?");
      await poll(() => alice.outbox("failed").length === 1, "the refusal");
      const offered = await fingerprint(newBob.home.identity.publicKey);
      assert.equal(await alice.session.trust("bob", { fingerprint: "0".repeat(40) }), undefined, "another key: no");
      assert.equal(await alice.session.trust("bob", { fingerprint: offered }), offered);
      alice.session.msg("bob", "after /trust");
      await poll(() => newBob.directs().length === 1, "the message after /trust");
      assert.equal(newBob.directs()[0].text, "after /trust");
    } finally {
      await newBob.close();
    }
  } finally {
    await alice.close();
    await bob.close();
    await homes.cleanup();
  }
});

Deno.test("an invitation lets bob join without the passphrase, read the history, and rejoin after a restart", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  const carol = await homes.connect(server.dial, "carol");
  const bobDir = await homes.dir();
  const bob = await homes.connect(server.dial, "bob", { dir: bobDir });
  try {
    await alice.session.join("ops", hooks);
    await carol.session.join("ops", hooks);
    alice.session.say("the history bob will read", { room: "ops" });
    await alice.session.drain();
    alice.session.invite("bob", { room: "ops" });
    await poll(() => bob.of("invitation").length === 1, "the invitation");
    const invitation = bob.of("invitation")[0].invitation;
    assert.deepEqual(
      [invitation.room, invitation.from, invitation.to, invitation.trust],
      ["ops", "alice", "bob", "new"],
    );
    assert.equal(invitation.fingerprint, await fingerprint(alice.home.identity.publicKey));
    assert.deepEqual(bob.session.invitations().map((i) => i.room), ["ops"]);
    const joined = await bob.session.accept();
    assert.equal(joined.room, "ops");
    await poll(() => bob.messages().length === 1, "the history");
    assert.equal(bob.messages()[0].text, "the history bob will read");
    bob.session.say("hello from bob", { room: "ops" });
    await poll(() => carol.messages().some((m) => m.text === "hello from bob"), "carol sees bob");
    const fromBob = carol.messages().find((m) => m.text === "hello from bob")!;
    assert.equal(fromBob.trust, "pinned");
    assert.equal(fromBob.fingerprint, await fingerprint(bob.home.identity.publicKey));
    // Restart: the kept secret opens the room, no passphrase asked.
    await bob.close();
    const again = await homes.connect(server.dial, "bob", { dir: bobDir });
    try {
      await again.session.join("ops", NO_PASSPHRASE);
      again.session.say("back", { room: "ops" });
      await poll(() => carol.messages().some((m) => m.text === "back"), "carol sees bob again");
      const secret = await again.home.roomSecret(server.key, "ops");
      assert.equal(secret?.source, "invite");
      assert.ok(!Deno.readTextFileSync(`${bobDir}/rooms.json`).includes(PASSPHRASE), "the passphrase is never kept");
    } finally {
      await again.close();
    }
  } finally {
    await alice.close();
    await carol.close();
    await bob.close();
    await homes.cleanup();
  }
});

Deno.test("--remember keeps a room's secret (never its passphrase) so the next run joins without it", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const dir = await homes.dir();
  const alice = await homes.connect(server.dial, "alice", { dir, remember: true });
  try {
    await alice.session.join("vault", hooks);
    await alice.close();
    const text = Deno.readTextFileSync(`${dir}/rooms.json`);
    assert.ok(!text.includes(PASSPHRASE));
    assert.equal(Deno.statSync(`${dir}/rooms.json`).mode! & 0o777, 0o600);
    const again = await homes.connect(server.dial, "alice", { dir });
    try {
      assert.equal((await again.session.join("vault", NO_PASSPHRASE)).room, "vault");
      // forget-room drops the kept secret too: the next join needs the passphrase again.
      assert.equal(await again.session.forgetRoom("vault"), true);
      assert.equal(await again.home.roomSecret(server.key, "vault"), undefined);
    } finally {
      await again.close();
    }
  } finally {
    await alice.close();
    await homes.cleanup();
  }
});

Deno.test("an invitation for a room pinned with other parameters is refused; no invitation is a clear error", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  const bob = await homes.connect(server.dial, "bob");
  try {
    await assert.rejects(bob.session.accept("ops"), /no invitation to #ops/);
    await alice.session.join("ops", hooks);
    await bob.session.join("ops", hooks);
    await bob.session.part("ops");
    // The room is deleted and re-created with another passphrase; alice (who forgot it) invites bob.
    server.rooms.delete("ops");
    await alice.session.part("ops");
    await alice.session.forgetRoom("ops");
    await alice.session.join("ops", passphraseHooks("another passphrase entirely"));
    alice.session.invite("bob", { room: "ops" });
    await poll(() => bob.of("invitation").length === 1, "the invitation");
    await assert.rejects(bob.session.accept("ops"), /you pinned that room with other parameters/);
    assert.equal(await bob.home.roomSecret(server.key, "ops"), undefined, "nothing kept");
  } finally {
    await alice.close();
    await bob.close();
    await homes.cleanup();
  }
});
