/**
 * Direct messages against the real server process: kept for an offline recipient and handed over when it comes back
 * (the sender told `delivered` once), the sender's copies on its other devices and after a restart, nothing of them
 * for anyone else, no plaintext on the wire or in the database; and the attacks the server must refuse: a direct
 * whose tokey is not the registered key of `to` (a redirect), whose copy differs, to an unregistered nick, a resend,
 * and one sender flooding an offline user's inbox past its share of --direct-inbox (refused for that sender only).
 *
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { type DirectEnvelope, openDirect } from "../lib/direct.ts";
import { directFrame } from "../lib/protocol.ts";
import { concat } from "./support/bytes.ts";
import { TcpProxy } from "./support/proxy.ts";
import { disconnected, removeServer, startServer } from "./support/programs.ts";
import { closeAll, type Msg, WireClient } from "./support/wire.ts";

const encoder = new TextEncoder();

function contains(haystack: Uint8Array, needle: string): boolean {
  const n = encoder.encode(needle);
  outer: for (let i = 0; i + n.length <= haystack.length; i++) {
    for (let j = 0; j < n.length; j++) if (haystack[i + j] !== n[j]) continue outer;
    return true;
  }
  return false;
}

Deno.test("direct messages to an offline recipient are kept, handed over when it connects, and marked delivered once", async () => {
  let server = await startServer();
  const proxy = TcpProxy.start(server.port);
  const clients: WireClient[] = [];
  try {
    const texts = [`secret one ${crypto.randomUUID()}`, `secret two ${crypto.randomUUID()}`, "secret three"];
    const alice = await WireClient.connect(proxy.port);
    const alicePhone = await WireClient.connect(server.port);
    const carol = await WireClient.connect(server.port);
    clients.push(alice, alicePhone, carol);
    await alice.hello("alice");
    await alicePhone.hello("alice");
    await carol.hello("carol");
    // Bob registers, then goes away.
    const bobFirst = await WireClient.connect(server.port);
    await bobFirst.hello("bob");
    bobFirst.close();
    await bobFirst.ended;
    const sent: { envelope: DirectEnvelope; reply: Msg<"ack"> | Msg<"error"> }[] = [];
    for (const text of texts) sent.push(await alice.direct("bob", text));
    for (const s of sent) assert.equal(s.reply.type, "ack", JSON.stringify(s.reply));
    // Alice's phone gets her copies at once, not delivered yet; carol gets nothing.
    for (const s of sent) {
      const copy = await alicePhone.next("direct", { where: (m) => m.envelope.id === s.envelope.id });
      assert.equal(copy.delivered, false);
      const opened = await openDirect(alicePhone.identity!, { envelope: copy.envelope, serverPub: alice.serverPub });
      assert.deepEqual([opened.copy, opened.to, opened.body], [true, "bob", texts[sent.indexOf(s)]]);
    }
    assert.deepEqual(alice.inbox.filter((m) => m.type === "delivered"), []);

    const bob = await WireClient.connect(server.port);
    clients.push(bob);
    const welcome = await bob.hello("bob");
    assert.ok(welcome.direct_seq > 0, "welcome names the newest seq of bob's inbox");
    await bob.send({ type: "direct_since", after_seq: 0 });
    const since = await bob.next("direct_since");
    assert.deepEqual(since.messages.map((m) => m.envelope.id), sent.map((s) => s.envelope.id));
    const bodies = [];
    for (const m of since.messages) {
      const opened = await openDirect(bob.identity!, { envelope: m.envelope, serverPub: bob.serverPub });
      assert.deepEqual([opened.from, opened.copy], ["alice", false]);
      bodies.push(opened.body);
    }
    assert.deepEqual(bodies, texts, "exactly those, in order, and they verify");
    for (const device of [alice, alicePhone]) {
      for (const s of sent) await device.next("delivered", { where: (d) => d.id === s.envelope.id });
    }
    // Asking again delivers nothing twice.
    await bob.send({ type: "direct_since", after_seq: 0 });
    await bob.next("direct_since");
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(alice.inbox.filter((m) => m.type === "delivered"), [], "delivered once");
    assert.deepEqual(carol.inbox.filter((m) => m.type === "direct" || m.type === "delivered"), []);
    // Carol asks for her own inbox: empty.
    await carol.send({ type: "direct_since", after_seq: 0 });
    assert.deepEqual((await carol.next("direct_since")).messages, []);

    // After a restart alice sees her copies, delivered.
    await closeAll(clients.splice(0));
    await server.program.stop();
    const wire = proxy.connections.flatMap((c) => [concat(c.toServer), concat(c.fromServer)]);
    server = await startServer({ db: server.db });
    const again = await WireClient.connect(server.port);
    clients.push(again);
    await again.hello("alice");
    await again.send({ type: "direct_since", after_seq: 0 });
    const copies = (await again.next("direct_since")).messages;
    assert.deepEqual(copies.map((m) => [m.envelope.id, m.delivered]), sent.map((s) => [s.envelope.id, true]));
    await closeAll(clients.splice(0));
    await server.program.stop();
    // Neither the wire nor the database holds any of the texts.
    const db = await Deno.readFile(server.db);
    for (const text of texts) {
      assert.ok(!contains(db, text), `the database holds ${text}`);
      for (const chunk of wire) assert.ok(!contains(chunk, text), `the wire carried ${text}`);
    }
    const sqlite = new DatabaseSync(server.db, { readOnly: true });
    try {
      assert.equal(Number((sqlite.prepare("SELECT count(*) AS n FROM direct").get() as { n: number }).n), 6);
    } finally {
      sqlite.close();
    }
  } finally {
    await closeAll(clients);
    await proxy.close();
    await removeServer(server);
  }
});

Deno.test("the server refuses a redirected direct, a copy that differs, an unknown recipient, a resend and a flood", async () => {
  const server = await startServer({ args: ["--direct-inbox", "20"] });
  const clients: WireClient[] = [];
  try {
    const [alice, bob, carol, mallory] = await Promise.all(
      ["alice", "bob", "carol", "mallory"].map(async (nick) => {
        const c = await WireClient.connect(server.port);
        await c.hello(nick);
        return c;
      }),
    );
    clients.push(alice, bob, carol, mallory);
    const code = async (client: WireClient, frame: Uint8Array, id: string) => {
      await client.writeRaw(frame);
      const reply = await client.awaitAck(id);
      return reply.type === "ack" ? "ack" : reply.code;
    };
    // Mallory seals for carol but addresses it to bob: the tokey is not bob's registered key.
    const forCarol = await mallory.sealDirectTo("carol", "meant for carol");
    const redirected = {
      envelope: { ...forCarol.envelope, to: "bob" },
      copy: { ...forCarol.copy, to: "bob" },
    };
    assert.equal(await code(mallory, directFrame("bob", redirected), forCarol.envelope.id), "bad_direct");
    // A copy that says something else than the envelope.
    const good = await alice.sealDirectTo("bob", "hello bob");
    const other = await alice.sealDirectTo("bob", "another text");
    const mixed = { envelope: good.envelope, copy: { ...other.copy, id: good.envelope.id } };
    assert.equal(await code(alice, directFrame("bob", mixed), good.envelope.id), "bad_direct");
    // To a nick nobody registered.
    const ghost = { envelope: { ...good.envelope, to: "ghost" }, copy: { ...good.copy, to: "ghost" } };
    assert.equal(await code(alice, directFrame("ghost", ghost), good.envelope.id), "unknown_nick");
    assert.equal((await alice.lookup("ghost")).type, "error");
    // Nothing of those reached anyone.
    await new Promise((resolve) => setTimeout(resolve, 200));
    for (const c of [bob, carol]) assert.deepEqual(c.inbox.filter((m) => m.type === "direct"), []);
    // The good one, then its resend (a lost ack): stored once.
    assert.equal(await code(alice, directFrame("bob", good), good.envelope.id), "ack");
    assert.equal(await code(alice, directFrame("bob", good), good.envelope.id), "duplicate_id");
    assert.equal((await bob.next("direct")).envelope.id, good.envelope.id);
    // Bob goes away; mallory floods his inbox open-loop: past her share (2 of 20 waiting) she alone is refused,
    // nothing is cut off, and carol still gets through.
    bob.close();
    await disconnected(server, "bob");
    const replies = [];
    for (let i = 0; i < 4; i++) replies.push((await mallory.direct("bob", `spam ${i}`)).reply);
    assert.deepEqual(replies.map((r) => r.type === "ack" ? "ack" : r.code), ["ack", "ack", "inbox_full", "inbox_full"]);
    assert.equal((await carol.direct("bob", "still there?")).reply.type, "ack");
    assert.ok(!mallory.closed && !carol.closed);
    assert.match(server.program.stderr, /limit remote=\S+ limit=direct_inbox waiting=share/);
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});
