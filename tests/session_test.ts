/**
 * The client session in-process against the real chat core: a Hub over a Store on a temporary file, reached through
 * the session's dial seam (tests/support/hub_link.ts). Ordering under concurrent sends, a nick change in the middle
 * of a burst, reconnect with resend, duplicate suppression, storage failures, and never giving up, each checked
 * against what the store holds and what a second member sees. The lying-server tests are in session_lies_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { openEnvelope, type RoomKeys } from "../lib/crypto.ts";
import { parseEnvelope } from "../lib/envelope.ts";
import type { Dial } from "../lib/client/link.ts";
import type { OutboxItem } from "../lib/client/outbox.ts";
import { JoinError, Session, type SessionEvent, type SessionOptions } from "../lib/client/session.ts";
import { HubServer } from "./support/hub_link.ts";
import { cachedKeys } from "./support/wire.ts";

const PASSPHRASE = "session test passphrase 91c2";
const ITERATIONS = 100_000;
/** Reconnect delays short enough for tests. */
const FAST_RECONNECT = { firstDelayMs: 10, maxDelayMs: 80 };

/** A session and everything it reported. */
interface Client {
  session: Session;
  events: SessionEvent[];
  messages(): { from: string; text: string; type: string; history: boolean }[];
  outbox(state: OutboxItem["state"]): OutboxItem[];
}

async function connect(dial: Dial, nick: string, options: Partial<SessionOptions> = {}): Promise<Client> {
  const events: SessionEvent[] = [];
  const session = await Session.connect(dial, {
    nick,
    iterations: ITERATIONS,
    reconnect: FAST_RECONNECT,
    ...options,
    onEvent: (event) => events.push(event),
  });
  return {
    session,
    events,
    messages: () =>
      events.flatMap((e) =>
        e.kind === "message"
          ? [{ from: e.message.from, text: e.message.text, type: e.message.type, history: e.message.history }]
          : []
      ),
    // The last state each item reached, in the order they were said.
    outbox: (state) => {
      const items = new Map<string, OutboxItem>();
      for (const e of events) if (e.kind === "outbox") items.set(e.item.id, e.item);
      return [...items.values()].filter((i) => i.state === state);
    },
  };
}

async function member(server: HubServer, nick: string, options: Partial<SessionOptions> = {}): Promise<Client> {
  const client = await connect(server.dial, nick, options);
  await client.session.join("general", { passphrase: () => Promise.resolve(PASSPHRASE) });
  return client;
}

async function poll(test: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!test()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function roomKeys(server: HubServer): Promise<RoomKeys> {
  const room = server.store.getRoom("general")!;
  return await cachedKeys(PASSPHRASE, { salt: room.salt, iterations: room.iterations });
}

/** What the server stored in #general, opened: "from: text" (actions as "* from text"). */
async function storedLines(server: HubServer): Promise<string[]> {
  const keys = await roomKeys(server);
  const out: string[] = [];
  for (const row of server.stored()) {
    const opened = await openEnvelope(keys, { envelope: parseEnvelope(JSON.parse(row.envelope)), room: "general" });
    const { type, body } = opened.plaintext;
    out.push(type === "action" ? `* ${opened.from} ${body}` : `${opened.from}: ${body}`);
  }
  return out;
}

async function closeAll(server: HubServer, ...clients: Client[]): Promise<void> {
  for (const c of clients) await c.session.close();
  await server.close();
}

Deno.test("say() called many times at once is stored, and seen by others, in the order it was called", async () => {
  const server = await HubServer.start();
  const alice = await member(server, "alice");
  const bob = await member(server, "bob");
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
    assert.deepEqual(
      bob.messages().map((m) => m.type === "action" ? `* ${m.from} ${m.text}` : `${m.from}: ${m.text}`),
      expected,
    );
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
    await closeAll(server, alice, bob);
  }
});

Deno.test("a nick change in the middle of a burst loses nothing and keeps the order", async () => {
  const server = await HubServer.start();
  const alice = await member(server, "alice");
  const carol = await member(server, "carol");
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
    await closeAll(server, alice, carol);
  }
});

Deno.test("after a dropped connection the session reconnects, catches up, and resends in order once", async () => {
  const server = await HubServer.start();
  const alice = await member(server, "alice");
  const bob = await member(server, "bob");
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
    await closeAll(server, alice, bob);
  }
});

Deno.test("a lost ack: the resend is answered duplicate_id, counts as stored, and is stored once", async () => {
  const server = await HubServer.start();
  const alice = await member(server, "alice");
  try {
    let lost = 0;
    // Withhold the acks of the first three messages, then drop the connection: their resends are duplicates.
    server.withhold = (frame) => {
      const text = new TextDecoder().decode(frame.subarray(4));
      if (text.startsWith('{"type":"ack"') && lost < 3) {
        lost++;
        return true;
      }
      return false;
    };
    for (let i = 0; i < 5; i++) alice.session.say(`m${i}`);
    await poll(() => lost === 3 && alice.outbox("acked").length === 2, "two acks, three lost");
    server.withhold = undefined;
    server.dropAll();
    await alice.session.drain({ timeoutMs: 20_000 });
    assert.deepEqual(await storedLines(server), [0, 1, 2, 3, 4].map((i) => `alice: m${i}`));
    assert.equal(alice.outbox("acked").length, 5);
  } finally {
    await closeAll(server, alice);
  }
});

Deno.test("a server restart on the same database: nothing lost, nothing shown twice", async () => {
  const server = await HubServer.start();
  const alice = await member(server, "alice");
  const bob = await member(server, "bob");
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
    await closeAll(server, alice, bob);
  }
});

Deno.test("storage_failed: while the store fails, messages are written again in order until it recovers", async () => {
  const server = await HubServer.start();
  const alice = await member(server, "alice", { retry: { delayMs: 10, retries: 50 } });
  try {
    server.failBatches(1_000_000);
    for (let i = 0; i < 10; i++) alice.session.say(`kept ${i}`);
    await poll(() => server.failedBatches >= 12, "a few failed rounds");
    assert.equal(server.stored().length, 0);
    server.failBatches(0);
    await alice.session.drain({ timeoutMs: 20_000 });
    assert.deepEqual(await storedLines(server), Array.from({ length: 10 }, (_, i) => `alice: kept ${i}`));
    assert.equal(alice.outbox("failed").length, 0);
  } finally {
    await closeAll(server, alice);
  }
});

Deno.test("storage_failed once: the refused message is written again and every message is stored exactly once", async () => {
  const server = await HubServer.start();
  const alice = await member(server, "alice", { retry: { delayMs: 10, retries: 3 } });
  try {
    server.failBatches(1);
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
    await closeAll(server, alice);
  }
});

Deno.test("storage_failed every time: after the last retry the message is marked failed with the reason", async () => {
  const server = await HubServer.start();
  const alice = await member(server, "alice", { retry: { delayMs: 10, retries: 3 } });
  try {
    server.failBatches(4);
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
    await closeAll(server, alice);
  }
});

Deno.test("with no give-up time the session retries for as long as it lives, with capped delays, and sends when back", async () => {
  const server = await HubServer.start();
  const alice = await member(server, "alice", { reconnect: { firstDelayMs: 5, maxDelayMs: 40 } });
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
    await closeAll(server, alice);
  }
});

Deno.test("with a give-up time (script mode) the session closes, and says which messages were not stored", async () => {
  const server = await HubServer.start();
  const alice = await member(server, "alice", { reconnect: { firstDelayMs: 5, maxDelayMs: 20, giveUpAfterMs: 200 } });
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
    await closeAll(server, alice);
  }
});

Deno.test("a room re-created with another passphrase stops the reconnect with the reason", async () => {
  const server = await HubServer.start();
  const alice = await member(server, "alice");
  try {
    alice.session.say("in the old room");
    await alice.session.drain({ timeoutMs: 20_000 });
    // The server loses its database; someone else creates #general again with another passphrase.
    server.dropAll();
    server.down = true;
    const fresh = await HubServer.start();
    const mallory = await connect(fresh.dial, "mallory");
    await mallory.session.join("general", { passphrase: () => Promise.resolve("another passphrase entirely") });
    server.hub = fresh.hub;
    server.down = false;
    await poll(() => alice.events.some((e) => e.kind === "closed"), "alice to stop");
    const closed = alice.events.find((e) => e.kind === "closed");
    assert.equal(closed?.kind === "closed" && closed.error.kind, "denied");
    assert.match(closed?.kind === "closed" ? closed.error.message : "", /rejoining #general: .*changed/);
    await mallory.session.close();
    await fresh.close();
  } finally {
    await closeAll(server, alice);
  }
});

Deno.test("history on join, live messages, and an id delivered twice is shown once", async () => {
  const server = await HubServer.start();
  const alice = await member(server, "alice");
  try {
    alice.session.say("history one");
    alice.session.say("history two");
    await alice.session.drain({ timeoutMs: 20_000 });
    // The server relays every frame twice to bob.
    server.withhold = undefined;
    const bob = await member(server, "bob");
    const original = server.intercept;
    try {
      const twice = new Set<string>();
      server.withhold = (frame) => {
        const text = new TextDecoder().decode(frame.subarray(4));
        if (!text.startsWith('{"type":"message"') || twice.has(text)) return false;
        twice.add(text);
        // Deliver a copy right away; the original follows.
        for (const link of server.links) link.send(frame);
        return false;
      };
      alice.session.say("live one");
      await alice.session.drain({ timeoutMs: 20_000 });
      alice.session.say("live two");
      await alice.session.drain({ timeoutMs: 20_000 });
      await poll(() => bob.messages().length >= 4, "bob's messages");
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.deepEqual(bob.messages().map((m) => `${m.text} ${m.history}`), [
        "history one true",
        "history two true",
        "live one false",
        "live two false",
      ]);
    } finally {
      server.intercept = original;
      await bob.session.close();
    }
  } finally {
    await closeAll(server, alice);
  }
});
