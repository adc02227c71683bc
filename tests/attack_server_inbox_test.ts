/**
 * Attacks on the direct-message inboxes (`--direct-inbox`), as the people who will break it: a stranger who fills a
 * victim's inbox so that friends can no longer reach it, two people who simply talk until their inboxes are full, and
 * one person who rotates keys to get a fresh inbox each time (disk without bound from one registration).
 *
 * These tests fail on today's server and are ignored: each one needs a design decision (see the comment on each).
 *
 * @module
 */

import assert from "node:assert/strict";
import { generateIdentitySecrets, type Identity, importIdentity, signRotation } from "../lib/identity.ts";
import { removeServer, type ServerProcess, startServer } from "./support/programs.ts";
import { closeAll, WireClient } from "./support/wire.ts";

function freshIdentity(): Promise<Identity> {
  return importIdentity(generateIdentitySecrets());
}

async function loggedIn(server: ServerProcess, nick: string, clients: WireClient[], options = {}): Promise<WireClient> {
  const c = await WireClient.connect(server.port);
  clients.push(c);
  await c.hello(nick, options);
  return c;
}

async function replyCode(client: WireClient, to: string, body: string): Promise<string> {
  const { reply } = await client.direct(to, body);
  return reply.type === "ack" ? "ack" : reply.code;
}

// BREAKS today: any registered stranger (no shared room needed) fills a user's inbox with --direct-inbox messages, and
// from then on nobody can write to that user, and the user cannot write to anyone ("your own inbox ... is full"),
// for good: the default retention keeps everything and a user has no way to empty an inbox. A per-recipient count
// alone lets one sender take all of it. A fix needs a design decision (a share per sender in each inbox, counting
// only undelivered rows, or making room by dropping the oldest delivered rows), and a sender column or index.
Deno.test({
  name: "one stranger filling a user's inbox does not cut the user off from the people they talk to",
  ignore: true,
  fn: async () => {
    const server = await startServer({ args: ["--direct-inbox", "4"] });
    const clients: WireClient[] = [];
    try {
      const bob = await loggedIn(server, "bob", clients);
      const alice = await loggedIn(server, "alice", clients);
      const mallory = await loggedIn(server, "mallory", clients);
      // Mallory writes open-loop until the server refuses her.
      const spam = [];
      for (let i = 0; i < 6; i++) spam.push(await replyCode(mallory, "bob", `spam ${i}`));
      assert.ok(spam.includes("inbox_full"), "mallory was never stopped");
      // Alice, who never wrote to bob before, still reaches him; bob still answers her.
      assert.equal(await replyCode(alice, "bob", "lunch?"), "ack", "alice cannot reach bob after mallory's spam");
      assert.equal(await replyCode(bob, "alice", "yes"), "ack", "bob cannot write after mallory's spam");
    } finally {
      await closeAll(clients);
      await removeServer(server);
    }
  },
});

// BREAKS today: --direct-inbox counts every row ever stored in an inbox, delivered messages and one's own sent copies
// included, and the default retention keeps them all: two people who simply talk reach the cap (10000 rows by default)
// and from then on neither can send or receive a direct message, with nothing lost or abused. Same design decision
// as above.
Deno.test({
  name: "two people who simply talk never reach a point where direct messages stop",
  ignore: true,
  fn: async () => {
    const server = await startServer({ args: ["--direct-inbox", "4"] });
    const clients: WireClient[] = [];
    try {
      const alice = await loggedIn(server, "alice", clients);
      const bob = await loggedIn(server, "bob", clients);
      const codes = [];
      for (let i = 0; i < 4; i++) {
        codes.push(await replyCode(alice, "bob", `question ${i}`));
        codes.push(await replyCode(bob, "alice", `answer ${i}`));
      }
      assert.deepEqual(codes, Array(8).fill("ack"), "a delivered conversation filled the inboxes");
    } finally {
      await closeAll(clients);
      await removeServer(server);
    }
  },
});

// BREAKS today: an inbox belongs to an identity key and a rotation gives the new key an empty one, without any new
// registration (a rotation moves nicks, it does not register them). One person holding two registered keys fills
// both inboxes, rotates both keys, and fills two fresh inboxes again, as often as they like: rows (each up to the
// frame size, 64 KiB by default) grow without bound from one address with two registrations, and --registrations-per-
// hour never sees it. A fix needs a decision on what an inbox is after a rotation (move the old key's rows to the new
// key, or count them against it).
Deno.test({
  name: "rotating keys does not give one person a fresh --direct-inbox each time",
  ignore: true,
  fn: async () => {
    const server = await startServer({ args: ["--direct-inbox", "3"] });
    const clients: WireClient[] = [];
    try {
      let sender = await freshIdentity();
      let receiver = await freshIdentity();
      let from = await loggedIn(server, "sink1", clients, { identity: sender });
      await loggedIn(server, "sink2", clients, { identity: receiver });
      let acked = 0;
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 4; i++) if (await replyCode(from, "sink2", `filler ${round}.${i}`) === "ack") acked++;
        // Both keys rotate: the nicks move, no registration is made.
        const nextSender = await freshIdentity();
        const nextReceiver = await freshIdentity();
        await loggedIn(server, "sink2", clients, {
          identity: nextReceiver,
          rotation: await signRotation(receiver, { newKey: nextReceiver.publicKey, ts: Date.now() }),
        });
        from = await loggedIn(server, "sink1", clients, {
          identity: nextSender,
          rotation: await signRotation(sender, { newKey: nextSender.publicKey, ts: Date.now() }),
        });
        [sender, receiver] = [nextSender, nextReceiver];
      }
      // Each stored message is two rows (the receiver's and the sender's copy): two inboxes of 3 rows hold 3 messages.
      assert.ok(acked <= 3, `two registrations stored ${acked} direct messages (${2 * acked} rows) by rotating keys`);
    } finally {
      await closeAll(clients);
      await removeServer(server);
    }
  },
});
