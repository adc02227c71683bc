/**
 * A lying server relaying messages whose sender is a name no server registers, made to look exactly like a pinned
 * nick on screen: `alice` with a zero-width space, a trailing space or a no-break space. Such a name folds to another
 * key than `alice`, so it would be "new" (first sight, no mark), while the terminal shows it as `alice`. The client
 * must never show one as an unmarked line of a nick that looks like a pinned one. Played by the v2 server double.
 *
 * @module
 */

import assert from "node:assert/strict";
import { sealDirect } from "../lib/direct.ts";
import { generateIdentitySecrets, importIdentity } from "../lib/identity.ts";
import { sealRoomMessage } from "../lib/message.ts";
import { displayNick } from "../lib/client/render.ts";
import { newDevice } from "../lib/client/sequence.ts";
import { EvilServer } from "./support/evil_server.ts";
import { passphraseHooks, poll, roomKeysOf, settle, TestHomes } from "./support/session_clients.ts";

const PASSPHRASE = "attack names passphrase 4e1a";
const hooks = passphraseHooks(PASSPHRASE);
/** Names no server admits (validateNick refuses them) that the terminal draws exactly like "alice". */
const LOOKALIKES = ["alice\u200b", "alice ", "alice\u00a0", "\u2060alice"];

/** What the terminal draws for a nick, with the characters that draw nothing taken out. */
function drawn(nick: string): string {
  return displayNick(nick).replace(/[\p{Cf}\p{Default_Ignorable_Code_Point}]/gu, "");
}

Deno.test("a line from an invisible-character or padded copy of a pinned nick is never shown unmarked as that nick", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  const bob = await homes.connect(server.dial, "bob");
  try {
    await alice.session.join("general", hooks);
    await bob.session.join("general", hooks);
    alice.session.say("the real alice");
    await poll(() => bob.messages().length === 1, "alice's line");
    const room = server.rooms.get("general")!;
    const keys = await roomKeysOf(PASSPHRASE, { salt: Uint8Array.fromBase64(room.salt), iterations: room.iterations });
    const mallory = await importIdentity(generateIdentitySecrets());
    const bobReg = server.registry.get("bob")!;
    const bobLink = server.open.find((l) => l.nick === "bob")!;
    for (const [i, from] of LOOKALIKES.entries()) {
      // A member (mallory) seals and signs under the lookalike name; the server relays it as stored.
      server.store(
        await sealRoomMessage(keys, {
          context: {
            serverPub: server.key,
            room: "general",
            accessPub: Uint8Array.fromBase64(room.access_pub),
            epoch: 0,
          },
          from,
          identity: mallory,
          content: { type: "text", body: `send the prod DB dump to mallory@evil.example (${i})` },
          sequence: { device: newDevice(), n: 1, acked: 0, void: [] },
        }),
      );
      // And as a direct message to bob.
      const { envelope } = await sealDirect(mallory, {
        serverPub: server.key,
        from,
        to: { nick: "bob", key: Uint8Array.fromBase64(bobReg.key), kx: Uint8Array.fromBase64(bobReg.kx) },
        content: { type: "text", body: `it is me, alice (${i})` },
      });
      bobLink.send({ type: "direct", seq: 100 + i, sent_at: Date.now(), envelope, delivered: false });
    }
    const handled = () =>
      bob.messages().length + bob.directs().length + bob.of("forged").reduce((n, e) => n + e.count, 0);
    await poll(() => handled() >= 1 + 2 * LOOKALIKES.length, "every lookalike handled");
    await settle();
    for (const m of [...bob.messages(), ...bob.directs()]) {
      if (drawn(m.from) !== "alice") continue;
      assert.ok(
        m.from === "alice" || m.trust === "changed",
        `${JSON.stringify(m.from)} is shown as "alice" with trust ${m.trust}: "${m.text}"`,
      );
    }
  } finally {
    await alice.close();
    await bob.close();
    await homes.cleanup();
  }
});

Deno.test("a presence or member list naming an invisible-character copy of a pinned nick shows no second 'alice' and pins nothing", async () => {
  const server = await EvilServer.start();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice");
  const bob = await homes.connect(server.dial, "bob");
  try {
    await alice.session.join("general", hooks);
    await bob.session.join("general", hooks);
    const mallory = await importIdentity(generateIdentitySecrets());
    const malloryKey = mallory.publicKey.toBase64();
    const bobLink = server.open.find((l) => l.nick === "bob")!;
    for (const nick of LOOKALIKES) {
      bobLink.send({ type: "presence", room: "general", event: "join", nick, key: malloryKey });
    }
    // A presence the client takes, in the same order of arrival: when it is shown, the lookalikes were handled.
    bobLink.send({
      type: "presence",
      room: "general",
      event: "leave",
      nick: "alice",
      key: server.registry.get("alice")!.key,
    });
    await poll(() => bob.of("presence").some((p) => p.event === "leave" && p.nick === "alice"), "alice's leave");
    await settle();
    const drawnAlice = bob.of("presence").filter((p) => drawn(p.nick) === "alice" && p.nick !== "alice");
    assert.deepEqual(drawnAlice, [], "a presence line of a name no server registers, drawn as alice");
    // And the member list: /who answered with the lookalikes beside the real members.
    server.outgoing = (msg) =>
      msg.type === "who"
        ? [{
          ...msg,
          members: [...(msg.members as unknown[]), ...LOOKALIKES.map((nick) => ({ nick, key: malloryKey }))],
        }]
        : undefined;
    const members = await bob.session.who("general");
    const listed = members.filter((m) => drawn(m.nick) === "alice" && m.nick !== "alice");
    assert.deepEqual(listed, [], "/who lists a lookalike of alice");
    for (const nick of LOOKALIKES) {
      assert.equal(bob.home.peerPin(server.key, nick), undefined, `${JSON.stringify(nick)} was pinned`);
    }
  } finally {
    await alice.close();
    await bob.close();
    await homes.cleanup();
  }
});
