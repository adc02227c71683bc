/**
 * Attacks on the direct-message inboxes (`--direct-inbox`), as the people who will break it: a stranger who fills a
 * victim's inbox so that friends can no longer reach it, two people who simply talk until their inboxes are full, and
 * one person who rotates keys to get a fresh inbox each time (disk without bound from one registration).
 *
 * The rule they hold the server to (PROTOCOL.md, "Direct messages"): `--direct-inbox N` bounds what an inbox keeps,
 * not what it accepts (delivered rows and one's own copies roll out, oldest first); only undelivered messages can make
 * it refuse, and one sender (across its rotations) may have at most a tenth of N waiting in one inbox; a rotation
 * drops the old key's inbox (the new key cannot open it).
 *
 * @module
 */

import assert from "node:assert/strict";
import { generateIdentitySecrets, type Identity, importIdentity, signRotation } from "../lib/identity.ts";
import { disconnected, removeServer, type ServerProcess, startServer } from "./support/programs.ts";
import { closeAll, WireClient } from "./support/wire.ts";
import { DatabaseSync } from "node:sqlite";

function freshIdentity(): Promise<Identity> {
  return importIdentity(generateIdentitySecrets());
}

async function loggedIn(server: ServerProcess, nick: string, clients: WireClient[], options = {}): Promise<WireClient> {
  const c = await WireClient.connect(server.port);
  clients.push(c);
  await c.hello(nick, options);
  return c;
}

/** Registers a nick and leaves: from then on what is sent to it waits, undelivered. */
async function registeredAway(server: ServerProcess, nick: string): Promise<void> {
  const c = await WireClient.connect(server.port);
  await c.hello(nick);
  c.close();
  await disconnected(server, nick);
}

async function replyCode(client: WireClient, to: string, body: string): Promise<string> {
  const { reply } = await client.direct(to, body);
  return reply.type === "ack" ? "ack" : reply.code;
}

// Any registered stranger (no shared room needed) used to fill an offline user's inbox with --direct-inbox messages,
// and from then on nobody could write to that user, and the user could not write to anyone ("your own inbox ... is
// full"), for good. Now one sender may have a tenth of the inbox waiting; beyond it only that sender is refused.
Deno.test("one stranger filling a user's inbox does not cut the user off from the people they talk to", async () => {
  const server = await startServer({ args: ["--direct-inbox", "20"] });
  const clients: WireClient[] = [];
  try {
    await registeredAway(server, "bob");
    const alice = await loggedIn(server, "alice", clients);
    const mallory = await loggedIn(server, "mallory", clients);
    // Mallory writes open-loop until the server refuses her: her share of bob's 20 is 2.
    const spam = [];
    for (let i = 0; i < 6; i++) spam.push(await replyCode(mallory, "bob", `spam ${i}`));
    assert.deepEqual(spam, ["ack", "ack", "inbox_full", "inbox_full", "inbox_full", "inbox_full"], "mallory's share");
    // Alice, who never wrote to bob before, still reaches him; bob comes back, gets both, and answers her.
    assert.equal(await replyCode(alice, "bob", "lunch?"), "ack", "alice cannot reach bob after mallory's spam");
    const bob = await loggedIn(server, "bob", clients);
    await bob.send({ type: "direct_since", after_seq: 0 });
    assert.equal((await bob.next("direct_since")).messages.length, 3);
    assert.equal(await replyCode(bob, "alice", "yes"), "ack", "bob cannot write after mallory's spam");
    // Once bob was handed them, mallory's share is free again (she is refused only while hers wait).
    assert.equal(await replyCode(mallory, "bob", "again"), "ack");
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});

// --direct-inbox used to count every row ever stored in an inbox, delivered messages and one's own sent copies
// included, and the default retention keeps them all: two people who simply talked reached the cap and from then on
// neither could send or receive a direct message. Now delivered rows and copies roll out, oldest first.
Deno.test("two people who simply talk never reach a point where direct messages stop", async () => {
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
    await closeAll(clients.splice(0));
    await server.program.stop();
    // Each inbox keeps the newest 4 of its 8 rows.
    assert.deepEqual(inboxSizes(server.db), [4, 4]);
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});

/** Rows per inbox in a stopped server's database, largest first. */
function inboxSizes(db: string): number[] {
  const sqlite = new DatabaseSync(db, { readOnly: true });
  try {
    const rows = sqlite.prepare("SELECT count(*) AS n FROM direct GROUP BY recipient").all() as { n: number }[];
    return rows.map((r) => Number(r.n)).sort((a, b) => b - a);
  } finally {
    sqlite.close();
  }
}

// An inbox belongs to an identity key and a rotation used to give the new key an empty one, without any new
// registration (a rotation moves nicks, it does not register them): one person holding two registered keys filled both
// inboxes, rotated both keys, and filled two fresh inboxes again, as often as they liked (rows of up to 64 KiB each).
// The new key cannot open what was sealed to the old one (home.ts rotate() keeps no old secret), so a rotation drops
// the old key's inbox: what two people hold stays within their two current inboxes.
Deno.test("rotating keys does not give one person a fresh --direct-inbox each time", async () => {
  const server = await startServer({ args: ["--direct-inbox", "3"] });
  const clients: WireClient[] = [];
  try {
    let sender = await freshIdentity();
    let receiver = await freshIdentity();
    let from = await loggedIn(server, "sink1", clients, { identity: sender });
    await loggedIn(server, "sink2", clients, { identity: receiver });
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 4; i++) await replyCode(from, "sink2", `filler ${round}.${i}`);
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
    assert.equal(await replyCode(from, "sink2", "after the last rotation"), "ack");
    await closeAll(clients.splice(0));
    await server.program.stop();
    // Only the two current keys' inboxes are left: one row each.
    assert.deepEqual(inboxSizes(server.db), [1, 1], "the rotated keys' inboxes are still stored");
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});

// A sender's share of an inbox is counted by key: a stranger who rotates after filling it would get a fresh one each
// time (rotations are free), and ten rotations would fill the victim's inbox. The waiting rows move to the new key.
Deno.test("a stranger who rotates keys does not get a fresh share of a user's inbox", async () => {
  const server = await startServer({ args: ["--direct-inbox", "20"] });
  const clients: WireClient[] = [];
  try {
    await registeredAway(server, "bob");
    let key = await freshIdentity();
    let mallory = await loggedIn(server, "mallory", clients, { identity: key });
    const codes = [];
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 3; i++) codes.push(await replyCode(mallory, "bob", `spam ${round}.${i}`));
      const next = await freshIdentity();
      mallory = await loggedIn(server, "mallory", clients, {
        identity: next,
        rotation: await signRotation(key, { newKey: next.publicKey, ts: Date.now() }),
      });
      key = next;
    }
    assert.equal(codes.filter((c) => c === "ack").length, 2, `mallory's share grew by rotating: ${codes}`);
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});
