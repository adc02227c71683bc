/**
 * The client session's ordering and reconnect guarantees (issue 11) on protocol v2, against the real chat core
 * in-process (the Hub over a Store on a temporary file) and against the v2 server double playing an honest server:
 * ordering under concurrent sends, a nick change in the middle of a burst, reconnect with resend, duplicate
 * suppression, storage failures, and never giving up, each checked against what the server stores and what a second
 * member sees. The lying-server tests are in session_lies_test.ts and session_attacks_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { openRoomMessage } from "../lib/message.ts";
import { JoinError, type SessionOptions } from "../lib/client/session.ts";
import { passphraseHooks, poll, roomKeysOf, type TestClient, TestHomes } from "./support/session_clients.ts";
import { startTestServer, type TestServer } from "./support/test_servers.ts";

const PASSPHRASE = "session test passphrase 91c2";
const hooks = passphraseHooks(PASSPHRASE);
const KINDS = ["hub", "double"] as const;

/** Registers a test to run against the real hub and against the double. */
function both(name: string, fn: (kind: "hub" | "double") => Promise<void>): void {
  for (const kind of KINDS) Deno.test(`${name} (${kind})`, () => fn(kind));
}

/** A server, and homes for its clients. */
async function start(kind: "hub" | "double"): Promise<{ server: TestServer; homes: TestHomes }> {
  return { server: await startTestServer(kind), homes: new TestHomes() };
}

async function member(
  env: { server: TestServer; homes: TestHomes },
  nick: string,
  options: Partial<SessionOptions> = {},
): Promise<TestClient> {
  const client = await env.homes.connect(env.server.dial, nick, options);
  await client.session.join("general", hooks);
  return client;
}

/** What the server stored in #general, opened: "from: text" (actions as "* from text"). */
async function storedLines(server: TestServer): Promise<string[]> {
  const room = server.room("general")!;
  const keys = await roomKeysOf(PASSPHRASE, { salt: room.salt, iterations: room.iterations });
  const context = { serverPub: server.serverKey(), room: room.name, accessPub: room.accessPub, epoch: 0 };
  const out: string[] = [];
  for (const envelope of server.stored("general")) {
    const m = await openRoomMessage(keys, { envelope, context });
    out.push(m.type === "action" ? `* ${m.from} ${m.body}` : `${m.from}: ${m.body}`);
  }
  return out;
}

/** Room messages a client showed, as "from: text" (actions as "* from text"). */
function lines(client: TestClient): string[] {
  return client.messages().map((m) => m.type === "action" ? `* ${m.from} ${m.text}` : `${m.from}: ${m.text}`);
}

async function closeAll(env: { server: TestServer; homes: TestHomes }, ...clients: TestClient[]): Promise<void> {
  for (const c of clients) await c.close();
  await env.server.close();
  await env.homes.cleanup();
}

both("say() called many times at once is stored, and seen by others, in the order it was called", async (kind) => {
  const env = await start(kind);
  const { server } = env;
  const alice = await member(env, "alice");
  const bob = await member(env, "bob");
  try {
    const expected: string[] = [];
    // One burst, no awaits: sealing is asynchronous, and a later line must never overtake an earlier one.
    for (let i = 0; i < 300; i++) {
      const action = i % 7 === 3;
      alice.session.say(`line ${i}`, { action });
      expected.push(action ? `* alice line ${i}` : `alice: line ${i}`);
    }
    assert.equal(alice.session.unsent, 300, "all pending until acknowledged");
    await alice.session.drain({ timeoutMs: 20_000 });
    assert.deepEqual(await storedLines(server), expected);
    await poll(() => bob.messages().length === 300, "bob's 300 messages");
    assert.deepEqual(lines(bob), expected);
    const acked = alice.outbox("acked");
    assert.equal(acked.length, 300);
    assert.deepEqual(acked.map((i) => i.seq), [...acked.map((i) => i.seq!)].sort((a, b) => a - b), "acked in order");
    // Every item went queued -> sent -> acked, never anything else.
    const states = new Map<string, string[]>();
    for (const e of alice.events) {
      if (e.kind === "outbox") states.set(e.item.id, [...states.get(e.item.id) ?? [], e.item.state]);
    }
    for (const s of states.values()) assert.deepEqual(s, ["queued", "sent", "acked"]);
  } finally {
    await closeAll(env, alice, bob);
  }
});

both("a nick change in the middle of a burst loses nothing and keeps the order", async (kind) => {
  const env = await start(kind);
  const { server } = env;
  const alice = await member(env, "alice");
  const carol = await member(env, "carol");
  try {
    const expected: string[] = [];
    const changes: Promise<void>[] = [];
    let nick = "alice";
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 20; i++) {
        alice.session.say(`r${round} m${i}`);
        expected.push(`${nick}: r${round} m${i}`);
      }
      nick = round % 2 === 0 ? "bobby" : "alice";
      // Not awaited: the lines said after it must still go out under the new nick, after it.
      changes.push(alice.session.changeNick(nick));
    }
    alice.session.say("the last line");
    expected.push(`${nick}: the last line`);
    await Promise.all(changes);
    await alice.session.drain({ timeoutMs: 20_000 });
    assert.deepEqual(await storedLines(server), expected);
    assert.equal(alice.outbox("failed").length, 0);
    await poll(() => carol.messages().length === expected.length, "carol's messages");
    assert.deepEqual(carol.messages().map((m) => `${m.from}: ${m.text}`), expected);
  } finally {
    await closeAll(env, alice, carol);
  }
});

both("after a dropped connection the session reconnects, catches up, and resends in order once", async (kind) => {
  const env = await start(kind);
  const { server } = env;
  const alice = await member(env, "alice");
  const bob = await member(env, "bob");
  try {
    const expected: string[] = [];
    for (let i = 0; i < 40; i++) {
      alice.session.say(`before ${i}`);
      expected.push(`alice: before ${i}`);
    }
    // Some are stored, some in flight, some not yet written: drop everything now.
    await poll(() => alice.outbox("acked").length >= 5, "a few acks");
    server.dropAll();
    for (let i = 0; i < 10; i++) {
      alice.session.say(`offline ${i}`);
      expected.push(`alice: offline ${i}`);
    }
    await alice.session.drain({ timeoutMs: 20_000 });
    assert.deepEqual(await storedLines(server), expected, "each stored once, in order");
    await poll(() => bob.messages().length >= expected.length, "bob caught up");
    await new Promise((resolve) => setTimeout(resolve, 100)); // a duplicate would arrive now
    assert.deepEqual(bob.messages().map((m) => `${m.from}: ${m.text}`), expected, "bob saw each once, in order");
    assert.ok(alice.events.some((e) => e.kind === "reconnected"));
    assert.ok(bob.events.some((e) => e.kind === "reconnected"));
  } finally {
    await closeAll(env, alice, bob);
  }
});

both("a lost ack: the resend is answered duplicate_id, counts as stored, and is stored once", async (kind) => {
  const env = await start(kind);
  const { server } = env;
  const alice = await member(env, "alice");
  try {
    let lost = 0;
    // Withhold the acks of the first three messages, then drop the connection: their resends are duplicates.
    server.rewrite((msg) => {
      if (msg.type !== "ack" || lost >= 3) return undefined;
      lost++;
      return [];
    });
    for (let i = 0; i < 5; i++) alice.session.say(`m${i}`);
    await poll(() => lost === 3 && alice.outbox("acked").length === 2, "two acks, three lost");
    server.rewrite(undefined);
    server.dropAll();
    await alice.session.drain({ timeoutMs: 20_000 });
    assert.deepEqual(await storedLines(server), [0, 1, 2, 3, 4].map((i) => `alice: m${i}`));
    assert.equal(alice.outbox("acked").length, 5);
  } finally {
    await closeAll(env, alice);
  }
});

both("a server restart in the middle of a burst: nothing lost, nothing shown twice", async (kind) => {
  const env = await start(kind);
  const { server } = env;
  const alice = await member(env, "alice");
  const bob = await member(env, "bob");
  try {
    const expected: string[] = [];
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 15; i++) {
        alice.session.say(`r${round} ${i}`);
        expected.push(`alice: r${round} ${i}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
      server.restart();
    }
    await alice.session.drain({ timeoutMs: 20_000 });
    assert.deepEqual(await storedLines(server), expected);
    await poll(() => bob.messages().length >= expected.length, "bob caught up");
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(bob.messages().map((m) => `${m.from}: ${m.text}`), expected);
  } finally {
    await closeAll(env, alice, bob);
  }
});

both("storage_failed: while the store fails, messages are written again in order until it recovers", async (kind) => {
  const env = await start(kind);
  const { server } = env;
  const alice = await member(env, "alice", { retry: { delayMs: 10, retries: 50 } });
  try {
    server.failStores(1_000_000);
    for (let i = 0; i < 10; i++) alice.session.say(`kept ${i}`);
    await poll(() => server.failedStores >= 12, "a few failed rounds");
    assert.equal(server.stored("general").length, 0);
    server.failStores(0);
    await alice.session.drain({ timeoutMs: 20_000 });
    assert.deepEqual(await storedLines(server), Array.from({ length: 10 }, (_, i) => `alice: kept ${i}`));
    assert.equal(alice.outbox("failed").length, 0);
  } finally {
    await closeAll(env, alice);
  }
});

both(
  "storage_failed once: the refused message is written again and every message is stored exactly once",
  async (kind) => {
    const env = await start(kind);
    const { server } = env;
    const alice = await member(env, "alice", { retry: { delayMs: 10, retries: 3 } });
    try {
      server.failStores(1);
      for (let i = 0; i < 10; i++) alice.session.say(`once ${i}`);
      await alice.session.drain({ timeoutMs: 20_000 });
      // Messages written behind the refused one before its refusal came back may be stored ahead of it (the server
      // acknowledged them); none is lost or stored twice.
      assert.deepEqual(
        (await storedLines(server)).sort(),
        Array.from({ length: 10 }, (_, i) => `alice: once ${i}`).sort(),
      );
      assert.equal(alice.outbox("acked").length, 10);
    } finally {
      await closeAll(env, alice);
    }
  },
);

both("storage_failed every time: after the last retry the message is marked failed with the reason", async (kind) => {
  const env = await start(kind);
  const { server } = env;
  const alice = await member(env, "alice", { retry: { delayMs: 10, retries: 3 } });
  try {
    server.failStores(4);
    const doomed = alice.session.say("never stored");
    await poll(() => alice.outbox("failed").length === 1, "the failure");
    const failed = alice.outbox("failed")[0];
    assert.equal(failed.id, doomed.id);
    assert.equal(failed.text.body, "never stored");
    assert.match(failed.reason!, /could not store it/);
    alice.session.say("stored after");
    await alice.session.drain({ timeoutMs: 20_000 });
    assert.deepEqual(await storedLines(server), ["alice: stored after"]);
  } finally {
    await closeAll(env, alice);
  }
});

both(
  "with no give-up time the session retries for as long as it lives, with capped delays, and sends when back",
  async (kind) => {
    const env = await start(kind);
    const { server } = env;
    const alice = await member(env, "alice", { reconnect: { firstDelayMs: 5, maxDelayMs: 40 } });
    try {
      alice.session.say("before");
      await alice.session.drain({ timeoutMs: 20_000 });
      server.down = true;
      server.dropAll();
      alice.session.say("offline 1");
      alice.session.say("offline 2");
      await poll(() => alice.events.filter((e) => e.kind === "offline").length >= 30, "30 attempts");
      const offline = alice.events.flatMap((e) => e.kind === "offline" ? [e] : []);
      assert.ok(offline.every((e) => e.retryInMs <= 40 * 1.5), "delays capped (with jitter)");
      assert.ok(offline.slice(10).every((e) => e.retryInMs >= 40 * 0.5), "and grown to the cap");
      assert.equal(alice.session.unsent, 2);
      assert.ok(!alice.events.some((e) => e.kind === "closed"), "never gave up");
      await assert.rejects(alice.session.changeNick("ally"), JoinError, "commands say offline at once");
      server.down = false;
      await alice.session.drain({ timeoutMs: 20_000 });
      assert.deepEqual(await storedLines(server), ["alice: before", "alice: offline 1", "alice: offline 2"]);
    } finally {
      await closeAll(env, alice);
    }
  },
);

both("with a give-up time (script mode) the session closes, and says which messages were not stored", async (kind) => {
  const env = await start(kind);
  const { server } = env;
  const alice = await member(env, "alice", { reconnect: { firstDelayMs: 5, maxDelayMs: 20, giveUpAfterMs: 200 } });
  try {
    server.down = true;
    server.dropAll();
    alice.session.say("lost 1");
    alice.session.say("lost 2");
    await poll(() => alice.events.some((e) => e.kind === "closed"), "the session to give up");
    const closed = alice.events.find((e) => e.kind === "closed")!;
    assert.equal(closed.kind === "closed" && closed.error.kind, "closed");
    assert.match(closed.kind === "closed" ? closed.error.message : "", /did not come back within 0\.2 s/);
    assert.deepEqual(alice.session.pending().map((i) => i.text.body), ["lost 1", "lost 2"]);
    await assert.rejects(alice.session.drain(), /did not come back/);
  } finally {
    await closeAll(env, alice);
  }
});

both("a room re-created with another passphrase stops the reconnect: its parameters changed (exit 7)", async (kind) => {
  const env = await start(kind);
  const { server } = env;
  const alice = await member(env, "alice");
  try {
    alice.session.say("in the old room");
    await alice.session.drain({ timeoutMs: 20_000 });
    // The server loses its database; someone else creates #general again with another passphrase.
    server.dropAll();
    server.down = true;
    server.deleteRoom("general");
    server.down = false;
    const mallory = await env.homes.connect(server.dial, "mallory");
    await mallory.session.join("general", passphraseHooks("another passphrase entirely"));
    await poll(() => alice.of("closed").length > 0, "alice to stop");
    const error = alice.of("closed")[0].error;
    assert.equal(error.kind, "changed");
    // Whichever alice meets first: the room gone (it looks new), or re-created with other parameters.
    assert.match(error.message, /rejoining #general: .*(salt, access key changed|now says it does not exist)/);
    await mallory.close();
  } finally {
    await closeAll(env, alice);
  }
});

both("history on join, live messages, and an id delivered twice is shown once", async (kind) => {
  const env = await start(kind);
  const { server } = env;
  const alice = await member(env, "alice");
  try {
    alice.session.say("history one");
    alice.session.say("history two");
    await alice.session.drain({ timeoutMs: 20_000 });
    // The server relays every message twice to bob.
    const bob = await member(env, "bob");
    try {
      server.rewrite((msg) => msg.type === "message" ? [msg, msg] : undefined);
      alice.session.say("live one");
      await alice.session.drain({ timeoutMs: 20_000 });
      alice.session.say("live two");
      await alice.session.drain({ timeoutMs: 20_000 });
      await poll(() => bob.messages().length >= 4, "bob's messages");
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(bob.of("forged").length, 0);
      assert.deepEqual(bob.messages().map((m) => `${m.text} ${m.history}`), [
        "history one true",
        "history two true",
        "live one false",
        "live two false",
      ]);
    } finally {
      server.rewrite(undefined);
      await bob.close();
    }
  } finally {
    await closeAll(env, alice);
  }
});
