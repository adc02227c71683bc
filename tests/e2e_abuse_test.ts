/**
 * Abuse of the real server process: garbage senders, a flooder above --rate, more than --max-connections, and
 * replayed envelopes (slow readers are in e2e_backpressure_test.ts). In each test a conversation between two other clients runs at
 * the same time and must lose nothing, with every message arriving within a generous bound.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { dirname } from "node:path";
import { openEnvelope } from "../lib/crypto.ts";
import { encodeFrame, encodeMessage } from "../lib/frame.ts";
import { startServer } from "./support/programs.ts";
import { Rng } from "./support/fuzz.ts";
import { closeAll, WireClient } from "./support/wire.ts";
import { converse } from "./support/conversation.ts";
import { concat } from "./support/bytes.ts";

const PASSPHRASE = "abuse test passphrase 7f3c";
const NONCE = new Uint8Array(32).fill(7).toBase64();
const SIG = new Uint8Array(64).fill(7).toBase64();

const member = (port: number, nick: string, room = "general") =>
  WireClient.member(port, nick, { passphrase: PASSPHRASE, room });

async function removeServerDir(db: string): Promise<void> {
  await Deno.remove(dirname(db), { recursive: true }).catch(() => {});
}

/** Sends raw bytes on a fresh connection, expects one error frame with `code`, then the server closing. */
async function expectRefused(
  port: number,
  options: { bytes: Uint8Array; code: string; hello?: string; label: string },
): Promise<void> {
  const client = await WireClient.connect(port);
  try {
    if (options.hello) await client.hello(options.hello);
    await client.writeRaw(options.bytes).catch(() => {});
    const error = await client.next("error", { timeoutMs: 10_000 }).catch((err) => {
      throw new Error(`${options.label}: ${err.message}`);
    });
    assert.equal(error.code, options.code, `${options.label}: error code`);
    const closed = await Promise.race([
      client.ended.then(() => true),
      new Promise((resolve) => setTimeout(() => resolve(false), 10_000)),
    ]);
    assert.ok(closed, `${options.label}: the server did not close the connection`);
  } finally {
    client.close();
    await client.ended;
  }
}

function rawFrame(body: Uint8Array | string): Uint8Array {
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  const out = new Uint8Array(4 + bytes.length);
  new DataView(out.buffer).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

/** Garbage a scanner, a broken client or an attacker might send, and the error code each must get. */
function garbage(seed: number): { label: string; bytes: Uint8Array; code: string; hello?: string }[] {
  const rng = new Rng(seed, 21);
  const random = rng.bytes(200);
  random[0] = 0x80 | random[0]; // a length far above --max-frame
  const deepType = `{"type":{"\u2ee3":${"[".repeat(10000)}${"]".repeat(10000)}}}`;
  return [
    {
      label: "HTTP request",
      bytes: new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
      code: "frame_too_large",
    },
    {
      label: "TLS ClientHello",
      bytes: Uint8Array.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0, 0]),
      code: "frame_too_large",
    },
    { label: "SSH banner", bytes: new TextEncoder().encode("SSH-2.0-OpenSSH_9.6\r\n"), code: "frame_too_large" },
    { label: `random bytes (seed ${seed})`, bytes: random, code: "frame_too_large" },
    { label: "length 0", bytes: new Uint8Array(4), code: "bad_frame" },
    { label: "length max_frame + 1", bytes: Uint8Array.from([0, 1, 0, 1]), code: "frame_too_large" },
    { label: "invalid UTF-8", bytes: rawFrame(Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d])), code: "bad_frame" },
    { label: "not JSON", bytes: rawFrame("hello?"), code: "bad_json" },
    { label: "JSON array", bytes: rawFrame('[{"type":"hello"}]'), code: "bad_json" },
    { label: "unknown type", bytes: rawFrame('{"type":"admin","cmd":"drop"}'), code: "bad_message" },
    { label: "deeply nested type", bytes: rawFrame(deepType), code: "bad_message" },
    {
      label: "hello with an extra field",
      bytes: rawFrame(`{"type":"hello","version":2,"nonce":"${NONCE}","admin":true}`),
      code: "bad_message",
    },
    {
      label: "a v1 client's hello",
      bytes: encodeMessage({ type: "hello", version: 1, nick: "zed" }),
      code: "version_unsupported",
    },
    {
      label: "hello version 3",
      bytes: encodeMessage({ type: "hello", version: 3, nonce: NONCE }),
      code: "version_unsupported",
    },
    {
      label: "hello with a 31-byte nonce",
      bytes: encodeMessage({ type: "hello", version: 2, nonce: new Uint8Array(31).toBase64() }),
      code: "bad_message",
    },
    {
      label: "login before hello",
      bytes: encodeMessage({
        type: "login",
        nick: "zed",
        key: NONCE,
        kx: NONCE,
        kx_sig: SIG,
        signature: SIG,
      }),
      code: "bad_message",
    },
    { label: "send before login", bytes: encodeMessage({ type: "who", room: "general" }), code: "not_ready" },
    { label: "garbage after login", bytes: rawFrame("{]"), code: "bad_json", hello: "greta" },
    {
      label: "huge number after login",
      bytes: rawFrame('{"type":"history","room":"general","before_seq":1e400,"limit":1}'),
      code: "bad_message",
      hello: "gus",
    },
  ];
}

Deno.test("a client sending garbage gets an error frame and is disconnected, while a conversation goes on", async () => {
  const server = await startServer();
  let alice: WireClient | undefined;
  let bob: WireClient | undefined;
  let chat: Promise<{ checked: number }> | undefined;
  try {
    alice = await member(server.port, "alice");
    bob = await member(server.port, "bob");
    const seed = crypto.getRandomValues(new Uint32Array(1))[0];
    const cases = garbage(seed);
    chat = converse(alice, bob, { count: 25, intervalMs: 60 });
    chat.catch(() => {}); // awaited below; a failure elsewhere must not leave it unhandled
    // Garbage senders arrive in waves during the conversation.
    for (let wave = 0; wave < 3; wave++) {
      await Promise.all(cases.map((c) => expectRefused(server.port, { ...c, hello: c.hello && `${c.hello}${wave}` })));
    }
    const { checked } = await chat;
    assert.equal(checked, 50);
    assert.ok(!alice.closed && !bob.closed, "the conversation's connections stay open");
    // Every refusal is logged with its code; nothing crashed a connection handler.
    assert.doesNotMatch(server.program.stderr, /connection_failed|internal/, "a handler failed on garbage");
    assert.match(server.program.stderr, /refused .*code=frame_too_large/);
  } finally {
    await closeAll([alice, bob]);
    await chat?.catch(() => {});
    await server.program.stop();
    await removeServerDir(server.db);
  }
});

Deno.test("flooding above --rate is throttled with rate_limited while the others are unaffected", async () => {
  const server = await startServer({ args: ["--rate", "5", "--burst", "5"] });
  let alice: WireClient | undefined;
  let bob: WireClient | undefined;
  let flooder: WireClient | undefined;
  let chat: Promise<unknown> | undefined;
  try {
    alice = await member(server.port, "alice");
    bob = await member(server.port, "bob");
    flooder = await member(server.port, "flooder");
    await new Promise((resolve) => setTimeout(resolve, 1200)); // let the join's tokens refill
    chat = converse(alice, bob, { count: 10, intervalMs: 300 });
    chat.catch(() => {}); // awaited below; a failure elsewhere must not leave it unhandled
    const envelopes = await Promise.all(Array.from({ length: 20 }, (_, i) => flooder!.seal(`flood ${i}`)));
    const start = performance.now();
    await flooder.writeRaw(concat(envelopes.map((envelope) => encodeMessage({ type: "send", envelope }))));
    const limited = await flooder.next("error", { where: (e) => e.code === "rate_limited" });
    assert.ok((limited.retry_after_ms ?? 0) > 0, "rate_limited says when to retry");
    const ackTimes: number[] = [];
    for (const e of envelopes) {
      const ack = await flooder.awaitAck(e.id, { timeoutMs: 20_000 });
      assert.equal(ack.type, "ack", `flood message refused: ${JSON.stringify(ack)}`);
      ackTimes.push(performance.now() - start);
    }
    // 20 messages at 5/s with a burst of 5 cannot all be accepted in under 3 s (allow for timer slack).
    assert.ok(ackTimes[19] >= 2400, `20 messages acked after ${Math.round(ackTimes[19])} ms: not throttled`);
    // The notice is repeated at most once a second while the flood lasts, not once per message.
    const notices = flooder.inbox.filter((m) => m.type === "error" && m.code === "rate_limited").length;
    assert.ok(notices <= Math.ceil(ackTimes[19] / 1000), `${notices + 1} rate_limited notices`);
    await chat;
    // Throttled, not disconnected: the flooder can still talk.
    await flooder.send({ type: "who", room: "general" });
    const who = await flooder.next("who");
    assert.deepEqual(who.members.map((m) => m.nick).sort(), ["alice", "bob", "flooder"]);
    assert.match(server.program.stderr, /limit remote=\S+ nick=flooder limit=rate/);
  } finally {
    await closeAll([alice, bob, flooder]);
    await chat?.catch(() => {});
    await server.program.stop();
    await removeServerDir(server.db);
  }
});

Deno.test("a connection above --max-connections gets server_full and is closed; a freed slot is reused", async () => {
  const server = await startServer({ args: ["--max-connections", "3"] });
  const clients: WireClient[] = [];
  try {
    clients.push(await member(server.port, "alice"), await member(server.port, "bob"));
    // A connection that never says hello holds a slot too.
    clients.push(await WireClient.connect(server.port));
    await new Promise((resolve) => setTimeout(resolve, 200));
    for (let i = 0; i < 3; i++) {
      const extra = await WireClient.connect(server.port);
      clients.push(extra);
      const error = await extra.next("error");
      assert.equal(error.code, "server_full");
      await extra.ended;
      assert.ok(extra.closed, "the extra connection is closed");
    }
    assert.match(server.program.stderr, /limit remote=\S+ limit=max_connections/);
    // The conversation on the admitted connections is unaffected.
    await converse(clients[0], clients[1], { count: 5, intervalMs: 20 });
    // Once a slot is freed, a new client gets in.
    clients[2].close();
    await clients[2].ended;
    let welcomed = false;
    for (let attempt = 0; attempt < 50 && !welcomed; attempt++) {
      const c = await WireClient.connect(server.port);
      clients.push(c);
      const reply = await c.login("carol").catch(() => undefined);
      welcomed = reply?.type === "welcome";
      if (!welcomed) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(welcomed, "no client was admitted after a slot was freed");
  } finally {
    await closeAll(clients);
    await server.program.stop();
    await removeServerDir(server.db);
  }
});

Deno.test("a replayed envelope is refused with duplicate_id and stored and relayed once", async () => {
  const server = await startServer();
  let alice: WireClient | undefined;
  let bob: WireClient | undefined;
  let db: DatabaseSync | undefined;
  try {
    alice = await member(server.port, "alice");
    bob = await member(server.port, "bob");
    const first = await alice.seal("say it once");
    await alice.send({ type: "send", envelope: first });
    assert.equal((await alice.awaitAck(first.id, { timeoutMs: 20_000 })).type, "ack");
    // The same envelope again, later.
    await alice.send({ type: "send", envelope: first });
    const again = await alice.awaitAck(first.id, { timeoutMs: 20_000 });
    assert.deepEqual([again.type, again.type === "error" && again.code], ["error", "duplicate_id"]);
    // Twice in one write: both land in the same batch.
    const twin = await alice.seal("twins");
    await alice.writeRaw(concat([
      encodeMessage({ type: "send", envelope: twin }),
      encodeFrame(
        JSON.stringify({ type: "send", envelope: twin }),
      ),
    ]));
    const answers = [
      await alice.awaitAck(twin.id, { timeoutMs: 20_000 }),
      await alice.awaitAck(twin.id, { timeoutMs: 20_000 }),
    ];
    assert.deepEqual(answers.map((a) => a.type === "ack" ? "ack" : a.code).sort(), ["ack", "duplicate_id"]);
    // Bob replays alice's envelope as his own: refused for its sender.
    await bob.send({ type: "send", envelope: first });
    const forged = await bob.awaitAck(first.id, { timeoutMs: 20_000 });
    assert.deepEqual([forged.type, forged.type === "error" && forged.code], ["error", "sender_mismatch"]);
    // After a reconnect, alice resends what she is unsure of: refused again.
    alice.close();
    await alice.ended;
    alice = await member(server.port, "alice");
    await alice.send({ type: "send", envelope: first });
    const resent = await alice.awaitAck(first.id, { timeoutMs: 20_000 });
    assert.deepEqual([resent.type, resent.type === "error" && resent.code], ["error", "duplicate_id"]);
    // A marker, so that bob's inbox is known to hold everything relayed before it.
    const marker = await alice.seal("marker");
    await alice.send({ type: "send", envelope: marker });
    await alice.awaitAck(marker.id, { timeoutMs: 20_000 });
    await bob.next("message", { where: (m) => m.envelope.id === marker.id });
    const relayed = bob.inbox.filter((m) => m.type === "message").map((m) => m.type === "message" && m.envelope.id);
    assert.deepEqual(relayed, [first.id, twin.id], "bob received each envelope exactly once");
    // The server holds its database exclusively: read it once the server is stopped.
    await server.program.stop();
    db = new DatabaseSync(server.db, { readOnly: true });
    const count = db.prepare("SELECT count(*) AS n FROM messages WHERE msg_id = ?");
    for (const id of [first.id, twin.id, marker.id]) {
      assert.equal(Number((count.get(Uint8Array.fromBase64(id)) as { n: number }).n), 1, `rows for ${id}`);
    }
    assert.equal(Number((db.prepare("SELECT count(*) AS n FROM messages").get() as { n: number }).n), 3);
  } finally {
    db?.close();
    await closeAll([alice, bob]);
    await server.program.stop();
    await removeServerDir(server.db);
  }
});

Deno.test("a good message written together with a bad frame header is stored and relayed before the sender is cut off", async () => {
  const server = await startServer();
  let alice: WireClient | undefined;
  let mallory: WireClient | undefined;
  try {
    alice = await member(server.port, "alice");
    mallory = await member(server.port, "mallory");
    const envelope = await mallory.seal("last words");
    // One write: a valid send, then a header announcing a zero-length frame.
    await mallory.writeRaw(new Uint8Array([...encodeMessage({ type: "send", envelope }), 0, 0, 0, 0]));
    const error = await mallory.nextOf(["error"]);
    assert.equal(error.type === "error" && error.code, "bad_frame");
    await mallory.ended;
    const relayed = await alice.nextOf(["message"]);
    assert.ok(relayed.type === "message");
    assert.equal(relayed.envelope.id, envelope.id);
    const opened = await openEnvelope(alice.keys!, { envelope: relayed.envelope, room: "general", from: "mallory" });
    assert.equal(opened.plaintext.body, "last words");
    await server.program.stop();
    const db = new DatabaseSync(server.db, { readOnly: true });
    try {
      assert.equal(Number((db.prepare("SELECT count(*) AS n FROM messages").get() as { n: number }).n), 1);
    } finally {
      db.close();
    }
  } finally {
    await closeAll([alice, mallory]);
    await server.program.stop();
    await removeServerDir(server.db);
  }
});
