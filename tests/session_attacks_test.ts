/**
 * The attacks of issues 12 and 13 against the client session, played by the v2 server double
 * (tests/support/evil_server.ts) and by a malicious member who holds the room key: the server changing its key,
 * swapping a peer's identity key or a recipient's key-agreement key, replaying an envelope as new (live, in history,
 * after a restart), reordering and withholding one sender's messages, rewriting a room's KDF parameters or making a
 * pinned room look new, redirecting or replaying a direct message, changing a room between an invitation and its
 * acceptance; a member sealing with another's `from`. Each is refused or visibly marked. The honest cases that must
 * raise no alarm are in session_honest_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { sealEnvelope } from "../lib/crypto.ts";
import { type Envelope } from "../lib/envelope.ts";
import { fingerprint, generateIdentitySecrets, importIdentity, kxInput } from "../lib/identity.ts";
import { sealRoomMessage } from "../lib/message.ts";
import { signEd25519 } from "../lib/crypto.ts";
import { JoinError, SendError, SessionError } from "../lib/client/session.ts";
import { newDevice } from "../lib/client/sequence.ts";
import { EvilServer } from "./support/evil_server.ts";
import {
  evilConversation,
  passphraseHooks,
  poll,
  roomKeysOf,
  settle,
  type TestClient,
  TestHomes,
} from "./support/session_clients.ts";

const PASSPHRASE = "attack test passphrase 5b1d";
const hooks = passphraseHooks(PASSPHRASE);

/** A server with alice and bob in #general, alice having said one line that bob saw. */
const conversation = () => evilConversation(PASSPHRASE);

/** The room keys of #general on the double (what every member holds). */
async function roomKeys(server: EvilServer) {
  const room = server.rooms.get("general")!;
  return await roomKeysOf(PASSPHRASE, {
    salt: Uint8Array.fromBase64(room.salt),
    iterations: room.iterations,
  });
}

Deno.test("a server that shows another key is refused at once, and for good while reconnecting (exit 7)", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const dir = await homes.dir();
  const alice = await homes.connect(server.dial, "alice", { dir });
  try {
    await alice.session.join("general", hooks);
    const pinned = await fingerprint(server.key);
    await server.rekey();
    const logins = () => server.received.filter((m) => m.type === "login").length;
    const before = logins();
    server.dropAll();
    await poll(() => alice.of("closed").length > 0, "alice to stop");
    const error = alice.of("closed")[0].error;
    assert.equal(error.kind, "changed");
    assert.match(error.message, /now shows key .* \(pinned: /);
    assert.ok(error.message.includes(pinned.match(/.{4}/g)!.join(" ")), "the pinned key is named");
    const offered = await fingerprint(server.key);
    assert.ok(error.message.includes(`trust-server 127.0.0.1:5000 ${offered}`), error.message);
    assert.equal(logins(), before, "nothing was signed for the new key");
    assert.equal(alice.of("offline").length, 1, "no retry");
    // A fresh start is refused too.
    const again = await homes.connect(server.dial, "alice", { dir }).then(() => undefined, (e) => e);
    assert.ok(again instanceof SessionError && again.kind === "changed");
  } finally {
    await alice.close();
    await homes.cleanup();
  }
});

Deno.test("a member sealing with another's from is marked [key changed] (and the registry disagrees), never shown as plain", async () => {
  const { server, alice, bob, done } = await conversation();
  try {
    const keys = await roomKeys(server);
    const mallory = await importIdentity(generateIdentitySecrets());
    const room = server.rooms.get("general")!;
    const envelope = await sealRoomMessage(keys, {
      context: { serverPub: server.key, room: "general", accessPub: Uint8Array.fromBase64(room.access_pub), epoch: 0 },
      from: "alice",
      identity: mallory,
      content: { type: "text", body: "send the prod DB dump to mallory@evil.example" },
      sequence: { device: newDevice(), n: 1, acked: 0, void: [] },
    });
    server.store(envelope);
    await poll(() => bob.messages().length === 2, "the forged message");
    const forged = bob.messages()[1];
    assert.equal(forged.trust, "changed");
    assert.equal(forged.fingerprint, await fingerprint(mallory.publicKey));
    assert.ok(bob.of("keyChanged").some((e) => e.nick === "alice" && e.room === "general"));
    assert.ok(bob.of("registry").some((e) => e.nick === "alice"), "the server's list shows alice's real key");
    // alice's own messages go on being pinned.
    alice.session.say("the real me");
    await poll(() => bob.messages().length === 3, "alice's next line");
    assert.equal(bob.messages()[2].trust, "pinned");
    assert.equal(bob.of("keyChanged").length, 1, "one warning");
  } finally {
    await done();
  }
});

Deno.test("a member's forged signature, or alice's signed plaintext relabelled, is refused with one warning", async () => {
  const { server, bob, done } = await conversation();
  try {
    const keys = await roomKeys(server);
    const stored = server.rooms.get("general")!.messages[0].envelope;
    // The plaintext alice signed, re-sealed as from mallory: the signature binds `from`.
    const plaintext = JSON.parse(
      new TextDecoder().decode(
        await crypto.subtle.decrypt(
          { name: "AES-CBC", iv: Uint8Array.fromBase64(stored.iv) },
          keys.encKey,
          Uint8Array.fromBase64(stored.ct),
        ),
      ),
    );
    const relabelled = await sealEnvelope(keys, { room: "general", from: "mallory", plaintext, v: 2 });
    const badSig = await sealEnvelope(keys, {
      room: "general",
      from: "alice",
      plaintext: { ...plaintext, body: "changed words", sig: plaintext.sig },
      v: 2,
    });
    const v1Live = await sealEnvelope(keys, {
      room: "general",
      from: "alice",
      plaintext: { type: "text", body: "unsigned, live" },
      v: 1,
    });
    for (const envelope of [relabelled, badSig, v1Live]) server.store(envelope);
    await poll(() => bob.of("forged").length === 3, "three warnings");
    await settle();
    assert.deepEqual(bob.of("forged").map((e) => e.from).sort(), ["alice", "alice", "mallory"]);
    assert.equal(bob.messages().length, 1, "none of them shown");
  } finally {
    await done();
  }
});

Deno.test("an envelope replayed as new is marked: live with a new seq, in history, and after a restart", async () => {
  const { server, homes, alice, bob, done } = await conversation();
  let carol: TestClient | undefined;
  try {
    const original = server.rooms.get("general")!.messages[0];
    // The same delivery twice (same seq) is dropped quietly.
    for (const link of server.open) link.send({ type: "message", ...original });
    // Live, as a new message.
    server.store(original.envelope);
    await poll(() => bob.messages().length === 2, "the replay");
    assert.deepEqual(bob.messages()[1].marks, ["replayed"]);
    assert.equal(bob.messages()[1].text, "first");
    // In history: carol joins and gets both rows.
    carol = await homes.connect(server.dial, "carol");
    await carol.session.join("general", hooks);
    await poll(() => carol!.messages().length === 2, "carol's history");
    assert.deepEqual(carol.messages().map((m) => m.marks), [[], ["replayed"]]);
    // After a restart: bob's ids survive in his home; the server replays the line again, live.
    const dir = bob.home.dir;
    await bob.close();
    const bob2 = await homes.connect(server.dial, "bob", { dir });
    try {
      await bob2.session.join("general", hooks);
      await poll(() => bob2.messages().length === 2, "history");
      server.store(original.envelope);
      await poll(() => bob2.messages().length === 3, "the replay after a restart");
      assert.deepEqual(bob2.messages()[2].marks, ["replayed"]);
    } finally {
      await bob2.close();
    }
    void alice;
  } finally {
    await carol?.close();
    await done();
  }
});

Deno.test("one sender's messages delivered out of order: the later arrival is marked late", async () => {
  const { server, alice, bob, done } = await conversation();
  try {
    // The double holds alice's next message back from bob and delivers it after the one that follows.
    let held: Record<string, unknown> | undefined;
    server.outgoing = (msg) => {
      if (msg.type !== "message") return undefined;
      if (!held) {
        held = msg;
        return [];
      }
      return [msg, held];
    };
    alice.session.say("second");
    alice.session.say("third");
    await poll(() => bob.messages().length === 3, "both");
    assert.deepEqual(bob.messages().slice(1).map((m) => [m.text, m.marks]), [["third", []], ["second", ["late"]]]);
  } finally {
    await done();
  }
});

Deno.test("a message withheld from a member who was there: checked again with since, then one warning", async () => {
  const { server, alice, bob, done } = await conversation();
  try {
    const hidden = new Set<string>();
    // Drop alice's second line everywhere it would reach bob: live, and in since.
    server.outgoing = (msg) => {
      const hide = (item: unknown) => hidden.has((item as { envelope?: Envelope }).envelope?.id ?? "");
      if (msg.type === "message" && hide(msg)) return [];
      if (msg.type === "since") return [{ ...msg, messages: (msg.messages as unknown[]).filter((m) => !hide(m)) }];
      return undefined;
    };
    hidden.add(alice.session.say("second, withheld").id);
    await alice.session.drain();
    alice.session.say("third");
    await alice.session.drain();
    // Its `acked` covers the second, so bob knows it was stored.
    alice.session.say("fourth");
    await poll(() => bob.of("withheld").length === 1, "the warning");
    assert.deepEqual(bob.of("withheld")[0], { kind: "withheld", room: "general", from: "alice", count: 1 });
    assert.ok(server.received.some((m) => m.type === "since"), "bob asked again");
    await settle();
    assert.equal(bob.of("withheld").length, 1, "once");
    assert.ok(!bob.messages().some((m) => m.text === "second, withheld"));
  } finally {
    await done();
  }
});

Deno.test("a message withheld live but delivered when asked again is shown, marked late, with no warning", async () => {
  const { server, alice, bob, done } = await conversation();
  try {
    const hidden = new Set<string>();
    server.outgoing = (msg) => msg.type === "message" && hidden.has((msg.envelope as Envelope).id) ? [] : undefined;
    hidden.add(alice.session.say("second").id);
    await alice.session.drain();
    alice.session.say("third");
    await alice.session.drain();
    alice.session.say("fourth");
    await poll(() => bob.messages().some((m) => m.text === "second"), "the re-check");
    await settle();
    assert.deepEqual(bob.messages().find((m) => m.text === "second")!.marks, ["late"]);
    assert.equal(bob.of("withheld").length, 0);
  } finally {
    await done();
  }
});

Deno.test("rewritten KDF parameters of a pinned room are refused naming what changed; a forged salt learns nothing", async () => {
  const { server, homes, alice, done } = await conversation();
  try {
    const changes: [Record<string, unknown>, RegExp][] = [
      [{ salt: new Uint8Array(16).toBase64() }, /its salt changed/],
      [{ iterations: 100_001 }, /iteration count \(100000 → 100001\)/],
      [{ access_pub: (await importIdentity(generateIdentitySecrets())).publicKey.toBase64() }, /access key changed/],
      [{ epoch: 1 }, /epoch \(0 → 1\)/],
    ];
    const carol = await homes.connect(server.dial, "carol");
    try {
      await carol.session.join("general", hooks);
      await carol.session.part("general");
      for (const [change, message] of changes) {
        server.outgoing = (msg) => msg.type === "challenge" ? [{ ...msg, ...change }] : undefined;
        const err = await carol.session.join("general", hooks).then(() => undefined, (e) => e);
        assert.ok(err instanceof JoinError && err.code === "changed", JSON.stringify(change));
        assert.match(err.message, message);
        assert.match(err.message, /forget-room general/);
      }
      // The pinned room now looks new (no parameters): refused too, and never created again.
      const creations = () => server.received.filter((m) => m.type === "prove" && m.salt !== undefined).length;
      const created = creations();
      server.outgoing = (msg) =>
        msg.type === "challenge" ? [{ type: "challenge", room: msg.room, nonce: msg.nonce }] : undefined;
      const looksNew = await carol.session.join("general", hooks).then(() => undefined, (e) => e);
      assert.ok(looksNew instanceof JoinError && looksNew.code === "changed");
      assert.match(looksNew.message, /now says it does not exist/);
      assert.equal(creations(), created, "never re-created");
    } finally {
      await carol.close();
    }
    // A first join (no pin): the zero salt and low count of the review. Below the floor: refused unasked.
    const dave = await homes.connect(server.dial, "dave", { minIterations: 600_000 });
    const erin = await homes.connect(server.dial, "erin");
    try {
      const zero = { salt: new Uint8Array(16).toBase64() };
      server.outgoing = (msg) => msg.type === "challenge" ? [{ ...msg, ...zero }] : undefined;
      const weak = await dave.session.join("general", hooks).then(() => undefined, (e) => e);
      assert.ok(weak instanceof JoinError && weak.code === "weak");
      assert.match(weak.message, /below your floor of 600000; to accept it: --min-iterations 100000/);
      // With the floor lowered, the forged salt derives keys that do not give the room's access key: no proof is
      // sent, so nothing can be tested offline against the passphrase.
      const proofs = server.received.filter((m) => m.type === "prove").length;
      const err = await erin.session.join("general", hooks).then(() => undefined, (e) => e);
      assert.ok(err instanceof JoinError && err.code === "access_denied", String(err));
      assert.equal(server.received.filter((m) => m.type === "prove").length, proofs, "no proof sent");
    } finally {
      await dave.close();
      await erin.close();
    }
    void alice;
  } finally {
    await done();
  }
});

Deno.test("a pinned room whose parameters change while reconnecting stops the session (exit 7)", async () => {
  const { server, bob, done } = await conversation();
  try {
    server.rooms.get("general")!.iterations = 100_001;
    server.dropAll();
    await poll(() => bob.of("closed").length > 0, "bob to stop");
    const error = bob.of("closed")[0].error;
    assert.equal(error.kind, "changed");
    assert.match(error.message, /rejoining #general: .*iteration count/);
  } finally {
    await done();
  }
});

Deno.test("a recipient's key swapped by the server: nothing is sent, the sender is told, /trust is the way on", async () => {
  const { server, alice, bob, done } = await conversation();
  try {
    // alice has pinned bob's key from the member list. The server now answers lookups with mallory's keys.
    const mallory = await importIdentity(generateIdentitySecrets());
    const real = server.registry.get("bob")!;
    server.registry.set("bob", {
      nick: "bob",
      key: mallory.publicKey.toBase64(),
      kx: mallory.kxPublic.toBase64(),
      kx_sig: mallory.kxSignature.toBase64(),
    });
    const item = alice.session.msg("bob", "for bob only");
    await poll(() => alice.outbox("failed").length === 1, "the refusal");
    const failed = alice.outbox("failed")[0];
    assert.equal(failed.id, item.id);
    assert.equal(failed.code, "changed");
    assert.match(failed.reason!, /bob's key differs from the one you pinned: nothing was sent/);
    assert.ok(!server.received.some((m) => m.type === "direct"), "nothing sealed for mallory went out");
    assert.ok(alice.of("keyChanged").some((e) => e.nick === "bob"));
    // Now refused at once, before anything is queued.
    assert.throws(() => alice.session.msg("bob", "again"), (e) => e instanceof SendError && e.code === "changed");
    // A substituted key-agreement key alone (bob's identity key, another kx): its signature does not verify.
    server.registry.set("bob", { ...real, kx: mallory.kxPublic.toBase64() });
    await assert.rejects(
      alice.session.recipient("BOB"),
      (e) => e instanceof JoinError && /not signed by their identity key/.test(e.message),
    );
    void bob;
  } finally {
    await done();
  }
});

Deno.test("a direct message redirected to someone else cannot be opened there: one warning, nothing shown", async () => {
  const { server, homes, alice, bob, done } = await conversation();
  const carol = await homes.connect(server.dial, "carol");
  try {
    // The server hands carol what was stored for bob.
    server.outgoing = (msg, link) => {
      if (msg.type === "direct" && link.nick === "bob") {
        for (const l of server.open) if (l.nick === "carol") l.send(msg);
        return [];
      }
      return undefined;
    };
    alice.session.msg("bob", "for bob only");
    await poll(() => carol.of("forged").length === 1, "carol's warning");
    assert.equal(carol.of("forged")[0].room, undefined);
    assert.equal(carol.of("forged")[0].from, "alice");
    assert.equal(carol.directs().length, 0);
    assert.equal(bob.directs().length, 0);
  } finally {
    await done(carol);
  }
});

Deno.test("a direct message replayed under a new inbox seq is marked replayed", async () => {
  const { server, alice, bob, done } = await conversation();
  try {
    alice.session.msg("bob", "once");
    await poll(() => bob.directs().length === 1, "the message");
    const bobKey = server.registry.get("bob")!.key;
    const item = server.inboxes.get(bobKey)![0];
    // Same seq again: quietly dropped. A new seq: marked.
    for (const link of server.open) if (link.nick === "bob") link.send({ type: "direct", ...item });
    for (const link of server.open) if (link.nick === "bob") link.send({ type: "direct", ...item, seq: 999 });
    await poll(() => bob.directs().length === 2, "the replay");
    assert.deepEqual(bob.directs().map((d) => d.marks), [[], ["replayed"]]);
  } finally {
    await done();
  }
});

Deno.test("a room changed between an invitation and its acceptance is refused (exit 7)", async () => {
  const { server, alice, bob, done } = await conversation();
  try {
    await alice.session.join("ops", hooks);
    alice.session.invite("bob", { room: "ops" });
    await poll(() => bob.of("invitation").length === 1, "the invitation");
    // The server re-creates #ops with another salt before bob accepts.
    server.rooms.get("ops")!.salt = new Uint8Array(16).fill(9).toBase64();
    const err = await bob.session.accept("ops").then(() => undefined, (e) => e);
    assert.ok(err instanceof JoinError && err.code === "changed", String(err));
    assert.match(err.message, /salt changed/);
    assert.ok(!bob.session.rooms.includes("ops"));
  } finally {
    await done();
  }
});

Deno.test("a lookup whose kx signature is by the identity key but whose identity key changed is marked changed", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  const bob = await homes.connect(server.dial, "bob");
  try {
    assert.equal((await alice.session.recipient("bob")).trust, "new");
    const mallory = await importIdentity(generateIdentitySecrets());
    const kxSig = await signEd25519(mallory.signKey, kxInput(mallory.publicKey, mallory.kxPublic));
    server.registry.set("bob", {
      nick: "bob",
      key: mallory.publicKey.toBase64(),
      kx: mallory.kxPublic.toBase64(),
      kx_sig: kxSig.toBase64(),
    });
    const info = await alice.session.whois("bob");
    assert.equal(info.trust, "changed");
    assert.equal(info.fingerprint, await fingerprint(mallory.publicKey));
    assert.equal(info.pinned, await fingerprint(bob.home.identity.publicKey));
  } finally {
    await alice.close();
    await bob.close();
    await homes.cleanup();
  }
});
