/**
 * Attacks on several rooms per connection and on nick changes (PROTOCOL.md, "Rooms" and "Login and nicks"), as the
 * people who will break them: join/part interleavings around `--max-rooms-per-connection`, and a nick change racing
 * sends across rooms on one device while a second device of the same identity keeps the old nick. What an observer
 * sees (presence, `who`) must agree, and every acked message is relayed under the nick it was sealed with.
 *
 * @module
 */

import assert from "node:assert/strict";
import { removeServer, startServer } from "./support/programs.ts";
import { closeAll, encodeFrame, type Msg, serializeEnvelope, WireClient } from "./support/wire.ts";

const PASS = "correct horse battery staple";

async function code(reply: Promise<{ type: string; code?: string }>): Promise<string> {
  const r = await reply;
  return r.type === "error" ? r.code! : r.type;
}

Deno.test("join and part around --max-rooms-per-connection: the cap is exact, a part frees a place at once", async () => {
  const server = await startServer({ args: ["--max-rooms-per-connection", "3"] });
  const clients: WireClient[] = [];
  try {
    const c = await WireClient.connect(server.port);
    clients.push(c);
    await c.hello("alice");
    for (const room of ["r1", "r2", "r3"]) assert.equal(await code(c.join(room, PASS)), "joined", room);
    assert.equal((await c.say("before the part")).type, "ack");
    assert.equal(await code(c.join("r4", PASS)), "too_many_rooms");
    // Part, and join again without waiting for anything in between.
    await c.send({ type: "part", room: "r3" });
    assert.equal(await code(c.join("r4", PASS)), "joined");
    assert.equal((await c.next("parted")).room, "r3");
    // Parting a room never joined, or one already parted: not_in_room, the connection kept, nothing changes.
    await c.send({ type: "part", room: "never" });
    assert.equal((await c.next("error")).code, "not_in_room");
    await c.send({ type: "part", room: "R3" });
    assert.equal((await c.next("error")).code, "not_in_room");
    assert.equal(await code(c.join("r3", PASS)), "too_many_rooms", "the cap counts after the extra parts");
    // A challenge outstanding when the cap fills: the later join replaced it, so its proof is refused and the room
    // it would have created does not exist.
    await c.send({ type: "part", room: "r4" });
    await c.next("parted");
    await c.send({ type: "join", room: "r5" });
    const r5 = await c.next("challenge");
    assert.equal(await code(c.join("r3", PASS)), "joined", "rejoin of a parted room");
    await c.send({ type: "prove", room: r5.room, proof: new Uint8Array(64).toBase64() });
    assert.equal((await c.next("error")).code, "no_challenge");
    await c.send({ type: "rooms" });
    assert.deepEqual((await c.next("rooms")).rooms.map((r) => r.name).sort(), ["r1", "r2", "r3"]);
    // The rejoined room's history is there (r3 holds the message sent before the part).
    const other = await WireClient.member(server.port, "bob", { passphrase: PASS, room: "r3" });
    clients.push(other);
    await other.send({ type: "join", room: "r5" });
    const fresh = await other.next("challenge");
    assert.equal(fresh.salt, undefined, "r5 was created by a refused proof");
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});

// Alice's laptop changes nick to `al` while sending open-loop in three rooms; her phone (same identity) stays
// `alice` in two of them. Carol watches every room. Each room's presence must add up to what `who` says, with no
// ghost: `al` joins (alice stays, through the phone); once the phone changes too, `alice` leaves. Every message is
// acked and relayed under the nick it was sealed with.
Deno.test("a nick change racing sends across rooms, with a second device: presence adds up to who, no ghost", async () => {
  const server = await startServer({ args: ["--rate", "0"] });
  const clients: WireClient[] = [];
  const rooms = ["r1", "r2", "r3"];
  try {
    const carol = await WireClient.connect(server.port);
    const laptop = await WireClient.connect(server.port);
    const phone = await WireClient.connect(server.port);
    clients.push(carol, laptop, phone);
    await carol.hello("carol");
    await laptop.hello("alice");
    await phone.hello("alice");
    for (const room of rooms) {
      assert.equal(await code(carol.join(room, PASS)), "joined");
      assert.equal(await code(laptop.join(room, PASS)), "joined");
    }
    for (const room of rooms.slice(0, 2)) assert.equal(await code(phone.join(room, PASS)), "joined");
    // Everything before this point is settled: drop what carol saw of the joins.
    carol.inbox.length = 0;
    const sent: { id: string; from: string; room: string }[] = [];
    const frames: Uint8Array[] = [];
    const queue = async (client: WireClient, room: string, body: string) => {
      const envelope = await client.seal(body, { room });
      sent.push({ id: envelope.id, from: envelope.from, room });
      frames.push(encodeFrame(`{"type":"send","envelope":${serializeEnvelope(envelope)}}`));
    };
    for (const room of rooms) await queue(laptop, room, `as alice in ${room}`);
    frames.push(encodeFrame(JSON.stringify({ type: "nick", new: "al" })));
    laptop.nick = "al";
    for (const room of rooms) await queue(laptop, room, `as al in ${room}`);
    // All of it in one write: the server sees the sends and the nick change in one read.
    const all = new Uint8Array(frames.reduce((n, b) => n + b.length, 0));
    frames.reduce((at, b) => (all.set(b, at), at + b.length), 0);
    await laptop.writeRaw(all);
    for (const s of sent) assert.equal((await laptop.awaitAck(s.id)).type, "ack", `${s.from} in ${s.room}`);
    assert.equal((await laptop.next("nick")).new, "al");
    // The phone changes too, racing a send of its own sealed under the new nick.
    phone.nick = "al";
    const late = await phone.seal("phone as al", { room: "r1" });
    sent.push({ id: late.id, from: "al", room: "r1" });
    await phone.send({ type: "nick", new: "al" });
    await phone.send({ type: "send", envelope: late });
    assert.equal((await phone.awaitAck(late.id)).type, "ack");
    for (const room of rooms) {
      await carol.send({ type: "who", room });
      const who = await carol.next("who", { where: (m) => m.room === room });
      const listed = who.members.map((m) => m.nick).sort();
      assert.deepEqual(listed, ["al", "carol"], `who in ${room}`);
      // Presence, replayed from before the change: alice and carol were there.
      const present = new Set(["alice", "carol"]);
      for (const m of carol.inbox.filter((m): m is Msg<"presence"> => m.type === "presence" && m.room === room)) {
        if (m.event === "join") {
          assert.ok(!present.has(m.nick), `${room}: ${m.nick} joined twice`);
          present.add(m.nick);
        } else if (m.event === "leave") {
          assert.ok(present.delete(m.nick), `${room}: ${m.nick} left without being there`);
        } else {
          assert.ok(present.delete(m.old!), `${room}: ${m.old} renamed without being there`);
          assert.ok(!present.has(m.nick), `${room}: renamed onto ${m.nick}, who was there`);
          present.add(m.nick);
        }
      }
      assert.deepEqual([...present].sort(), listed, `presence in ${room} disagrees with who`);
    }
    // Every message reached carol under the nick it was sealed with.
    for (const s of sent) {
      const m = await carol.next("message", { where: (m) => m.envelope.id === s.id });
      assert.equal(m.envelope.from, s.from);
      assert.equal(m.envelope.room, s.room);
    }
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});
