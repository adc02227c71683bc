/**
 * Several rooms per connection against the real server process: join adds a room and part leaves one, each room's
 * messages reach that room's members only, the cap per connection holds, a room has one canonical spelling whatever
 * spelling is typed, and a member cannot reach a room it is not in through any room-scoped message.
 *
 * @module
 */

import assert from "node:assert/strict";
import { openEnvelope } from "../lib/crypto.ts";
import { removeServer, startServer } from "./support/programs.ts";
import { closeAll, type Msg, WireClient } from "./support/wire.ts";

const PASSPHRASES: Record<string, string> = {
  general: "general passphrase 8a1c",
  ops: "ops passphrase 77e0",
  dev: "dev passphrase c3d4",
  secret: "secret passphrase 0b9f",
};

async function joinOk(client: WireClient, room: string, passphrase = PASSPHRASES[room.toLowerCase()]) {
  const reply = await client.join(room, passphrase);
  assert.equal(reply.type, "joined", `${client.nick} joining ${room}: ${JSON.stringify(reply)}`);
  return reply as Msg<"joined">;
}

async function sendOk(client: WireClient, room: string, body: string): Promise<string> {
  const envelope = await client.seal(body, { room });
  await client.send({ type: "send", envelope });
  const ack = await client.awaitAck(envelope.id);
  assert.equal(ack.type, "ack", `${client.nick} in ${room}: ${JSON.stringify(ack)}`);
  return envelope.id;
}

Deno.test("a connection in several rooms gets each room's messages and only those; part leaves one; the cap holds", async () => {
  const server = await startServer({ args: ["--max-rooms-per-connection", "3"] });
  const clients: WireClient[] = [];
  try {
    const alice = await WireClient.connect(server.port);
    const bob = await WireClient.connect(server.port);
    const carol = await WireClient.connect(server.port);
    clients.push(alice, bob, carol);
    const welcome = await alice.hello("alice");
    assert.equal(welcome.limits.max_rooms, 3);
    await bob.hello("bob");
    await carol.hello("carol");
    for (const room of ["general", "ops", "dev"]) await joinOk(alice, room);
    await joinOk(bob, "general");
    await joinOk(carol, "ops");
    // One more room than the cap: refused before any key is derived, and nothing is created.
    await alice.send({ type: "join", room: "secret" });
    const refused = await alice.next("error");
    assert.equal(refused.code, "too_many_rooms");
    await alice.send({ type: "rooms" });
    assert.deepEqual((await alice.next("rooms")).rooms.map((r) => r.name).sort(), ["dev", "general", "ops"]);

    const ids = {
      general: await sendOk(alice, "general", "to general"),
      ops: await sendOk(alice, "ops", "to ops"),
      dev: await sendOk(alice, "dev", "to dev"),
    };
    const fromBob = await sendOk(bob, "general", "bob in general");
    const fromCarol = await sendOk(carol, "ops", "carol in ops");
    const heard = await Promise.all([alice.next("message"), alice.next("message")]);
    assert.deepEqual(
      heard.map((m) => [m.envelope.room, m.envelope.id]).sort(),
      [
        ["general", fromBob],
        ["ops", fromCarol],
      ].sort(),
    );
    assert.equal((await bob.next("message")).envelope.id, ids.general);
    assert.equal((await carol.next("message")).envelope.id, ids.ops);
    const opened = await openEnvelope(carol.rooms.get("ops")!.keys, {
      envelope: await alice.seal("check", { room: "ops" }),
      room: "ops",
    });
    assert.equal(opened.plaintext.body, "check", "each room has its own keys");
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual([bob.inbox, carol.inbox].map((i) => i.filter((m) => m.type === "message")), [[], []]);

    // Part one room: its messages stop, the others go on, and now a new room fits under the cap.
    await alice.send({ type: "part", room: "DEV" });
    assert.deepEqual(await alice.next("parted"), { type: "parted", room: "dev" });
    const stale = await alice.seal("after part", { room: "dev" });
    await alice.send({ type: "send", envelope: stale });
    assert.equal((await alice.awaitAck(stale.id) as Msg<"error">).code, "not_in_room");
    await joinOk(alice, "secret");
    await sendOk(bob, "general", "still heard");
    assert.equal((await alice.next("message")).envelope.room, "general");
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});

Deno.test("a room has one canonical spelling: any spelling or lookalike that folds to it joins it, and only it is signed", async () => {
  const server = await startServer();
  const clients: WireClient[] = [];
  try {
    const alice = await WireClient.connect(server.port);
    const bob = await WireClient.connect(server.port);
    clients.push(alice, bob);
    await alice.hello("alice");
    await bob.hello("bob");
    assert.equal((await joinOk(alice, "Ops", PASSPHRASES.ops)).room, "Ops");
    for (const spelling of ["ops", "OPS", "0ps", "Оps", /* Cyrillic О */ "ｏｐｓ"]) {
      await bob.send({ type: "join", room: spelling });
      const challenge = await bob.next("challenge");
      assert.deepEqual([challenge.room, challenge.epoch], ["Ops", 0], spelling);
      assert.ok(challenge.salt && challenge.access_pub, `${spelling}: the existing room's parameters`);
    }
    // Joining under another spelling joins the one room; a wrong passphrase for it is still refused.
    assert.equal((await bob.join("OPS", "a guess")).type, "error");
    assert.equal((await joinOk(bob, "0PS", PASSPHRASES.ops)).room, "Ops");
    // An envelope must name the room as it is spelled canonically (that is what the MAC covers).
    const misspelt = await alice.seal("misspelt", { room: "Ops" });
    await alice.send({ type: "send", envelope: { ...misspelt, room: "ops" } });
    assert.equal((await alice.awaitAck(misspelt.id) as Msg<"error">).code, "not_in_room");
    const id = await sendOk(alice, "Ops", "spelled right");
    assert.equal((await bob.next("message")).envelope.id, id);
    // Room-scoped requests take any spelling and answer with the canonical one.
    await bob.send({ type: "who", room: "oPs" });
    const who = await bob.next("who");
    assert.deepEqual([who.room, who.members.map((m) => m.nick).sort()], ["Ops", ["alice", "bob"]]);
    await bob.send({ type: "since", room: "OPS", after_seq: 0 });
    const since = await bob.next("since");
    assert.deepEqual([since.room, since.messages.map((m) => m.envelope.id), since.pruned_through], ["Ops", [id], 0]);
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});

Deno.test("a member reaches nothing of a room it is not in, whatever room-scoped message it sends", async () => {
  const server = await startServer();
  const clients: WireClient[] = [];
  try {
    const alice = await WireClient.connect(server.port);
    const mallory = await WireClient.connect(server.port);
    clients.push(alice, mallory);
    await alice.hello("alice");
    await mallory.hello("mallory");
    await joinOk(alice, "general");
    await joinOk(alice, "secret");
    await joinOk(mallory, "general");
    const secretId = await sendOk(alice, "secret", "for the secret room only");
    mallory.inbox = mallory.inbox.filter((m) => m.type !== "presence");
    const forged = await mallory.seal("into secret", { room: "general" });
    const probes: object[] = [
      { type: "who", room: "secret" },
      { type: "history", room: "SECRET", before_seq: 2 ** 53 - 1, limit: 500 },
      { type: "since", room: "secret", after_seq: 0 },
      { type: "part", room: "secret" },
      { type: "send", envelope: { ...forged, room: "secret" } },
    ];
    for (const probe of probes) {
      await mallory.send(probe);
      const error = await mallory.next("error");
      assert.equal(error.code, "not_in_room", JSON.stringify(probe).slice(0, 60));
    }
    // A probe that is allowed: the room list names only mallory's own rooms.
    await mallory.send({ type: "rooms" });
    assert.deepEqual((await mallory.next("rooms")).rooms, [{ name: "general", count: 2 }]);
    await sendOk(alice, "general", "marker");
    await mallory.next("message");
    const seen = JSON.stringify(mallory.inbox);
    assert.ok(!seen.includes(secretId) && !seen.includes("secret"), `mallory saw: ${seen.slice(0, 300)}`);
    assert.ok(!mallory.closed, "not_in_room keeps the connection");
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});
