/**
 * Attacks on the client session that the suite's first attack tests (session_attacks_test.ts) do not try: a server
 * (or a member it helps) speaking as the user's own nick with another key, and a stranger's invitation to a room the
 * victim was also invited to for real. Played by the v2 server double (tests/support/evil_server.ts).
 *
 * @module
 */

import assert from "node:assert/strict";
import { roomKeysFromMaster } from "../lib/crypto.ts";
import { encodeInvitation, sealDirect } from "../lib/direct.ts";
import { fingerprint, generateIdentitySecrets, importIdentity } from "../lib/identity.ts";
import { sealRoomMessage } from "../lib/message.ts";
import { Home } from "../lib/client/home.ts";
import { JoinError } from "../lib/client/session.ts";
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

const PASSPHRASE = "attack client passphrase 7c2e";
const hooks = passphraseHooks(PASSPHRASE);

/** A server with alice and bob in #general, alice having said one line that bob saw. */
const conversation = () => evilConversation(PASSPHRASE);

Deno.test("a message in the user's own nick signed by another key is marked [key changed], never taken as new", async () => {
  const { server, alice, bob, done } = await conversation();
  try {
    const room = server.rooms.get("general")!;
    const keys = await roomKeysOf(PASSPHRASE, {
      salt: Uint8Array.fromBase64(room.salt),
      iterations: room.iterations,
    });
    const mallory = await importIdentity(generateIdentitySecrets());
    // The server (or a member it lets through) relays a line "from bob" signed by mallory's key, to bob himself:
    // bob knows his own key, so no first sight can make mallory's the key of his nick.
    const envelope = await sealRoomMessage(keys, {
      context: { serverPub: server.key, room: "general", accessPub: Uint8Array.fromBase64(room.access_pub), epoch: 0 },
      from: "bob",
      identity: mallory,
      content: { type: "text", body: "I approve the transfer" },
      sequence: { device: newDevice(), n: 1, acked: 0, void: [] },
    });
    server.store(envelope);
    await poll(() => bob.messages().length === 2 && alice.messages().length === 1, "the forged line at both");
    const atBob = bob.messages()[1];
    assert.equal(atBob.from, "bob");
    assert.equal(atBob.fingerprint, await fingerprint(mallory.publicKey));
    assert.equal(atBob.trust, "changed", "bob's own nick with a key that is not bob's");
    assert.ok(bob.of("keyChanged").some((e) => e.nick === "bob"), "bob is warned");
    assert.equal(bob.home.peerPin(server.key, "bob"), undefined, "nothing pinned for bob's own nick");
    // alice pinned bob's real key from the member list: there it was always [key changed].
    assert.equal(alice.messages()[0].trust, "changed");
    // A presence in bob's own nick with mallory's key pins nothing either, and bob's own lines stay his.
    for (const link of server.open) {
      if (link.nick === "bob") {
        link.send({ type: "presence", room: "general", event: "join", nick: "BOB", key: mallory.publicKey.toBase64() });
      }
    }
    await settle();
    assert.equal(bob.home.peerPin(server.key, "bob"), undefined);
    bob.session.say("really me");
    await poll(() => alice.messages().length === 2, "bob's own line at alice's");
    assert.equal(alice.messages()[1].trust, "pinned");
  } finally {
    await done();
  }
});

Deno.test("the user's own lines signed by the key it rotated away from are its own, with no alarm", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  await alice.session.join("general", hooks);
  alice.session.say("before the rotation");
  await poll(() => server.stored().length === 1, "stored");
  const dir = alice.home.dir;
  await alice.close();
  const home = await Home.open(dir);
  await home.rotate();
  const rotated = await homes.connect(server.dial, "alice", { dir });
  try {
    await rotated.session.join("general", hooks);
    await poll(() => rotated.messages().length === 1, "history");
    assert.equal(rotated.messages()[0].trust, "pinned");
    assert.equal(rotated.of("keyChanged").length, 0);
  } finally {
    await rotated.close();
    await homes.cleanup();
  }
});

/** A stranger's invitation to `room`: a master of its own (the access key matches it), sent through the server. */
async function strangersInvitation(server: EvilServer, mallory: TestClient, room: string) {
  const master = crypto.getRandomValues(new Uint8Array(32));
  const body = encodeInvitation({
    room,
    serverPub: server.key as Uint8Array<ArrayBuffer>,
    master,
    salt: crypto.getRandomValues(new Uint8Array(16)),
    iterations: 100_000,
    accessPub: (await roomKeysFromMaster(master)).accessPub,
    epoch: 0,
  });
  const bob = server.registry.get("bob")!;
  const { envelope, copy } = await sealDirect(mallory.home.identity, {
    serverPub: server.key,
    from: "mallory",
    to: { nick: "bob", key: Uint8Array.fromBase64(bob.key), kx: Uint8Array.fromBase64(bob.kx) },
    content: { type: "invite", body },
  });
  const link = server.open.find((l) => l.nick === "mallory")!;
  await server.handle({ type: "direct", to: "bob", envelope, copy } as never, link);
}

Deno.test("a stranger's invitation to a room the server holds with other parameters leaves no pin and no secret", async () => {
  const { server, homes, bob, done } = await conversation();
  const mallory = await homes.connect(server.dial, "mallory");
  try {
    await strangersInvitation(server, mallory, "general-2");
    await poll(() => bob.of("invitation").length === 1, "mallory's invitation");
    // #general-2 is a room bob has never joined, held by the server with its real parameters (#general's here).
    server.rooms.set("general-2", { ...server.rooms.get("general")!, name: "general-2", messages: [] });
    const err = await bob.session.accept("general-2").then(() => undefined, (e) => e);
    assert.ok(err instanceof JoinError && err.code === "changed", String(err));
    // Refused: and nothing of mallory's stays behind to refuse the real room later.
    assert.equal(bob.home.roomPin(server.key, "general-2"), undefined, "no pin left by a refused invitation");
    assert.equal(await bob.home.roomSecret(server.key, "general-2"), undefined, "no secret kept");
    // So bob can still join it with the passphrase alice gives him.
    const joined = await bob.session.join("general-2", hooks);
    assert.equal(joined.room, "general-2");
  } finally {
    await done(mallory);
  }
});

Deno.test({
  name: "a stranger's invitation does not displace a genuine one to the same room",
  // The inbox kept one invitation per room (the latest), so mallory, who needs nothing but a registered nick,
  // replaced alice's genuine invitation to #ops with one of her own; `/accept ops` then took mallory's, which the
  // server's challenge refuses (exit 7), and alice's could not be accepted at all. Now every inviter's latest is kept
  // and tried in turn until the challenge agrees.
  fn: async () => {
    const { server, homes, alice, bob, done } = await conversation();
    const mallory = await homes.connect(server.dial, "mallory");
    try {
      await alice.session.join("ops", hooks);
      alice.session.invite("bob", { room: "ops" });
      await poll(() => bob.of("invitation").length === 1, "alice's invitation");
      await strangersInvitation(server, mallory, "ops");
      await poll(() => bob.of("invitation").length === 2, "mallory's invitation");
      const joined = await bob.session.accept("ops");
      assert.equal(joined.room, "ops");
    } finally {
      await done(mallory);
    }
  },
});

Deno.test("a direct message replayed after the recipient restarts is marked replayed, in the inbox fetch and live", async () => {
  const { server, homes, alice, bob, done } = await conversation();
  let bob2: TestClient | undefined;
  try {
    alice.session.msg("bob", "meet at noon");
    await poll(() => bob.directs().length === 1, "the message");
    const bobKey = server.registry.get("bob")!.key;
    const item = server.inboxes.get(bobKey)![0];
    const dir = bob.home.dir;
    await bob.close();
    // While bob is away, the server stores the same envelope again under a new inbox seq.
    server.inboxes.set(bobKey, [...server.inboxes.get(bobKey)!, { ...item, seq: 500 }]);
    bob2 = await homes.connect(server.dial, "bob", { dir });
    await poll(() => bob2!.directs().some((d) => d.seq === 500), "the replay in the inbox fetch");
    assert.deepEqual(bob2.directs().find((d) => d.seq === 500)!.marks, ["replayed"]);
    // And live, under yet another seq.
    for (const link of server.open) if (link.nick === "bob") link.send({ type: "direct", ...item, seq: 501 });
    await poll(() => bob2!.directs().some((d) => d.seq === 501), "the live replay");
    assert.deepEqual(bob2.directs().find((d) => d.seq === 501)!.marks, ["replayed"]);
  } finally {
    await bob2?.close();
    await done();
  }
});
