/**
 * Attacks on `direct_since` (PROTOCOL.md, "Direct messages"), as the people who will break it: absurd `after_seq`
 * values, a full page of 500 waiting messages handed over at once (what it costs the disk), and two devices of the
 * recipient asking for the same rows at the same moment (`delivered` must reach the sender once per message).
 *
 * @module
 */

import assert from "node:assert/strict";
import { sealDirect } from "../lib/direct.ts";
import { decodeBase64 } from "../lib/base64.ts";
import { directFrame } from "../lib/protocol.ts";
import { removeServer, type ServerProcess, startServer } from "./support/programs.ts";
import { closeAll, encodeFrame, WireClient } from "./support/wire.ts";

async function loggedIn(server: ServerProcess, nick: string, clients: WireClient[]): Promise<WireClient> {
  const c = await WireClient.connect(server.port);
  clients.push(c);
  await c.hello(nick);
  return c;
}

/** Sends `count` direct messages open-loop (no wait between them), then waits for every ack; returns their ids. */
async function flood(from: WireClient, to: string, count: number): Promise<string[]> {
  const found = await from.lookup(to);
  if (found.type !== "identity") throw new Error(`lookup ${to}: ${found.code}`);
  const recipient = { nick: found.nick, key: decodeBase64(found.key), kx: decodeBase64(found.kx) };
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const sealed = await sealDirect(from.identity!, {
      serverPub: from.serverPub,
      from: from.nick,
      to: recipient,
      content: { type: "text", body: `m${i}` },
    });
    await from.writeRaw(directFrame(sealed.envelope.to, sealed));
    ids.push(sealed.envelope.id);
  }
  for (const id of ids) {
    const reply = await from.awaitAck(id, { timeoutMs: 120_000 });
    assert.equal(reply.type, "ack", `message ${id} was not stored`);
  }
  return ids;
}

async function fileSize(path: string): Promise<number> {
  return await Deno.stat(path).then((s) => s.size, () => 0);
}

// Absurd positions are a clear refusal or an empty page; never a crash, never another identity's rows.
Deno.test("direct_since with a negative, fractional, huge or non-numeric after_seq is refused or empty", async () => {
  const server = await startServer();
  const clients: WireClient[] = [];
  try {
    const alice = await loggedIn(server, "alice", clients);
    await loggedIn(server, "bob", clients);
    assert.equal((await alice.direct("bob", "hello")).reply.type, "ack");
    // The largest integer a JSON reader keeps exactly: an empty page, the connection kept.
    const bobAgain = await loggedIn(server, "bob", clients);
    await bobAgain.send({ type: "direct_since", after_seq: Number.MAX_SAFE_INTEGER });
    const empty = await bobAgain.next("direct_since");
    assert.deepEqual([empty.messages.length, empty.more], [0, false]);
    // Each bad one closes its own connection with bad_message; the server goes on for everyone else.
    for (const after of ["-1", "1.5", "1e400", "9007199254740993", '"0"', "null"]) {
      const c = await loggedIn(server, `m${clients.length}`, clients);
      await c.writeRaw(encodeFrame(`{"type":"direct_since","after_seq":${after}}`));
      const reply = await c.nextOf(["error", "direct_since"]);
      assert.equal(reply.type, "error", `after_seq ${after} was answered with a page`);
      assert.equal((reply as { code: string }).code, "bad_message", `after_seq ${after}`);
      await c.ended;
    }
    // Everyone else is untouched: bob (who never asked from 0) still gets alice's message.
    await bobAgain.send({ type: "direct_since", after_seq: 0 });
    assert.equal((await bobAgain.next("direct_since")).messages.length, 1);
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});

// Two devices of bob come back at once and both ask for the same 20 waiting messages in the same moment: alice's
// devices must hear `delivered` exactly once per message (PROTOCOL.md: "`delivered` is sent once per message"), and
// both of bob's devices get every message.
Deno.test("two devices fetching the same waiting rows at once: delivered reaches the sender once per message", async () => {
  const server = await startServer({ args: ["--rate", "0"] });
  const clients: WireClient[] = [];
  try {
    const bobFirst = await loggedIn(server, "bob", clients);
    bobFirst.close();
    await server.program.waitFor(() => /disconnect remote=\S+ nick=bob/.test(server.program.stderr));
    const alice = await loggedIn(server, "alice", clients);
    const ids = await flood(alice, "bob", 20);
    const phone = await loggedIn(server, "bob", clients);
    const laptop = await loggedIn(server, "bob", clients);
    await Promise.all([
      phone.send({ type: "direct_since", after_seq: 0 }),
      laptop.send({ type: "direct_since", after_seq: 0 }),
    ]);
    const [a, b] = await Promise.all([phone.next("direct_since"), laptop.next("direct_since")]);
    assert.equal(a.messages.length, 20);
    assert.equal(b.messages.length, 20);
    assert.ok([...a.messages, ...b.messages].every((m) => m.delivered), "a handed-over row not marked delivered");
    // A marker after everything: once alice hears its pong, every delivered she will get has arrived.
    await alice.send({ type: "ping" });
    await alice.next("pong");
    const delivered = alice.inbox.filter((m) => m.type === "delivered").map((m) => (m as { id: string }).id);
    assert.deepEqual(delivered.toSorted(), ids.toSorted(), "delivered not sent exactly once per message");
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});

// A page of 500 waiting messages used to be marked delivered in one transaction per row: 500 commits, each a WAL
// frame set and (with --synchronous full, the default) an fsync, so one returning user's catch-up cost 500 disk
// syncs and megabytes of WAL. The rows of one page are one transaction now. Observable from outside: after a clean
// restart the WAL starts empty, a returning login writes nothing, so the WAL's size afterwards is what marking the page
// wrote (a commit writes every page it changed, again).
Deno.test("handing over a page of 500 waiting direct messages is one transaction, not one per row", async () => {
  let server = await startServer({ args: ["--rate", "0"] });
  const clients: WireClient[] = [];
  try {
    const bob = await loggedIn(server, "bob", clients);
    bob.close();
    const alice = await loggedIn(server, "alice", clients);
    await flood(alice, "bob", 500);
    await closeAll(clients);
    clients.length = 0;
    await server.program.stop();
    server = await startServer({ db: server.db, args: ["--rate", "0"] });
    const before = await fileSize(`${server.db}-wal`);
    const back = await loggedIn(server, "bob", clients);
    await back.send({ type: "direct_since", after_seq: 0 });
    const page = await back.next("direct_since", { timeoutMs: 60_000 });
    assert.equal(page.messages.length, 500, "the page should hold all 500");
    assert.ok(page.messages.every((m) => m.delivered));
    // Marked for good: a second device sees them delivered without marking anything again.
    await back.send({ type: "ping" });
    await back.next("pong");
    const wrote = await fileSize(`${server.db}-wal`) - before;
    // One transaction writes each page it touches once (the 1000 rows' pages and the indexes': about 0.8 MB); one per
    // row rewrites those pages at every commit (8.8 MB when measured).
    assert.ok(wrote < 3 * 1024 * 1024, `marking one page of 500 wrote ${wrote} bytes of WAL (one commit per row?)`);
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});
