/**
 * A malicious server against the client session, at the level of replies: a `server` message that does not prove
 * the key, limits of the wrong type or range, a welcome for another nick, a challenge that weakens the room or names
 * another, replies of the wrong shape, endless catch-up pages, a flood of live junk while catching up, a flood of
 * envelopes that fail authentication, and a nick refused for good. Each must end in a clear refusal or a bounded,
 * quiet recovery. (Attacks on keys, pins and order are in session_attacks_test.ts.)
 *
 * @module
 */

import assert from "node:assert/strict";
import { sealEnvelope } from "../lib/crypto.ts";
import { JoinError, SessionError, type SessionOptions } from "../lib/client/session.ts";
import { EvilServer } from "./support/evil_server.ts";
import { passphraseHooks, poll, roomKeysOf, TEST_ITERATIONS, TestHomes } from "./support/session_clients.ts";

const PASSPHRASE = "lying server test passphrase";
const hooks = passphraseHooks(PASSPHRASE);
const SALT = new Uint8Array(16).fill(7);

/** Puts #general on the double, made with PASSPHRASE, as if someone had created it. */
async function withRoom(server: EvilServer): Promise<void> {
  const keys = await roomKeysOf(PASSPHRASE, { salt: SALT, iterations: TEST_ITERATIONS });
  server.rooms.set("general", {
    name: "general",
    salt: SALT.toBase64(),
    iterations: TEST_ITERATIONS,
    access_pub: keys.accessPub.toBase64(),
    epoch: 0,
    messages: [],
    pruned_through: 0,
  });
}

async function setUp(options: Partial<SessionOptions> = {}) {
  const server = await EvilServer.start();
  await withRoom(server);
  const homes = new TestHomes();
  return { server, homes, connect: () => homes.connect(server.dial, "alice", options) };
}

/** Rewrites the messages of one type the double sends. */
function rewrite(server: EvilServer, type: string, change: (msg: Record<string, unknown>) => Record<string, unknown>) {
  server.outgoing = (msg) => msg.type === type ? [change(msg)] : undefined;
}

Deno.test("a server that cannot prove its key, or speaks another version, is refused before the login", async () => {
  const cases: [(msg: Record<string, unknown>) => Record<string, unknown>, RegExp][] = [
    [(m) => ({ ...m, signature: new Uint8Array(64).toBase64() }), /cannot prove it holds its key/],
    [(m) => ({ ...m, nonce: new Uint8Array(32).toBase64() }), /cannot prove it holds its key/],
    [(m) => ({ ...m, key: "AAAA" }), /server.key is not a 32-byte key/],
    [(m) => ({ ...m, version: 3 }), /protocol version 3/],
  ];
  for (const [change, message] of cases) {
    const { server, homes, connect } = await setUp();
    rewrite(server, "server", change);
    try {
      const err = await connect().then(() => undefined, (e) => e);
      assert.ok(err instanceof SessionError, String(err));
      assert.equal(err.kind, "connect");
      assert.match(err.message, message);
      assert.ok(!server.received.some((m) => m.type === "login"), "no login signed for it");
      assert.ok(server.link.closed);
    } finally {
      await homes.cleanup();
    }
  }
});

Deno.test("a welcome whose limits are of the wrong type or range is refused with the field named", async () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ idle_timeout_ms: "soon" }, /idle_timeout_ms must be an integer from 50 to 86400000/],
    [{ idle_timeout_ms: null }, /idle_timeout_ms/],
    [{ idle_timeout_ms: -1 }, /idle_timeout_ms/],
    [{ idle_timeout_ms: 1e12 }, /idle_timeout_ms/],
    [{ idle_timeout_ms: 1000.5 }, /idle_timeout_ms/],
    [{ max_frame: 0 }, /max_frame must be an integer from 1024/],
    [{ max_frame: 2 ** 40 }, /max_frame/],
    [{ max_body: "16384" }, /max_body/],
    [{ history_page: 0 }, /history_page must be an integer from 1 to 500/],
    [{ history_page: 1e6 }, /history_page/],
    [{ rate: "fast" }, /rate must be a number/],
    [{ max_rooms: 0 }, /max_rooms/],
  ];
  for (const [change, message] of cases) {
    const { server, homes, connect } = await setUp();
    server.limits = { ...server.limits, ...change };
    try {
      const err = await connect().then(() => undefined, (e) => e);
      assert.ok(err instanceof SessionError, JSON.stringify(change));
      assert.equal(err.kind, "connect");
      assert.match(err.message, /^refusing the server: welcome\.limits\./);
      assert.match(err.message, message);
      assert.ok(server.link.closed, "the connection is closed");
    } finally {
      await homes.cleanup();
    }
  }
});

Deno.test("a welcome for another nick is refused", async () => {
  const { server, homes, connect } = await setUp();
  rewrite(server, "welcome", (m) => ({ ...m, nick: "mallory" }));
  try {
    await assert.rejects(connect(), /welcome.nick/);
  } finally {
    await homes.cleanup();
  }
});

Deno.test("a challenge that weakens the room or is malformed is refused before any key is derived", async () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ iterations: 1 }, /refusing to join #general: .*iterations/],
    [{ iterations: 10_000_001 }, /iterations/],
    [{ nonce: "AAAA" }, /bad challenge/],
    [{ salt: "AAAA" }, /bad challenge/],
    [{ access_pub: "AAAA" }, /bad challenge/],
    [{ epoch: 2 ** 33 }, /bad challenge/],
    [{ room: "elsewhere" }, /answered for another room/],
  ];
  for (const [change, message] of cases) {
    const { server, homes, connect } = await setUp();
    rewrite(server, "challenge", (m) => ({ ...m, ...change }));
    const { session } = await connect();
    try {
      let asked = false;
      const err = await session.join("general", {
        passphrase: () => {
          asked = true;
          return Promise.resolve(PASSPHRASE);
        },
        deriving: () => {
          throw new Error("derived keys for a refused challenge");
        },
      }).then(() => undefined, (e) => e);
      assert.ok(err instanceof JoinError, JSON.stringify(change));
      assert.match(err.message, message);
      assert.equal(session.room, undefined);
      assert.ok(!asked, "no passphrase asked");
      assert.ok(!server.received.some((m) => m.type === "prove"), "no proof sent");
    } finally {
      await session.close();
      await homes.cleanup();
    }
  }
});

Deno.test("who and rooms replies of the wrong shape are refusals, not crashes", async () => {
  const { server, homes, connect } = await setUp();
  server.outgoing = (msg) => {
    if (msg.type === "who") return [{ ...msg, members: [1, { nick: "x" }] }];
    if (msg.type === "rooms") return [{ ...msg, rooms: [{ name: 5, count: "many" }] }];
    return undefined;
  };
  const { session } = await connect();
  try {
    await session.join("general", hooks);
    await assert.rejects(session.who(), /who.members items must be \{nick, key\}/);
    await assert.rejects(session.roomList(), /rooms.rooms items/);
  } finally {
    await session.close();
    await homes.cleanup();
  }
});

/** An envelope sealed with keys of another passphrase: the right shape, the wrong tag. */
async function junkEnvelope(from: string, id: number) {
  const keys = await roomKeysOf("not the room's passphrase", { salt: SALT, iterations: TEST_ITERATIONS });
  return await sealEnvelope(keys, {
    room: "general",
    from,
    plaintext: { type: "text", body: "forged" },
    id: new Uint8Array(16).fill(id % 256),
    v: 2,
  });
}

Deno.test("endless catch-up pages stop at the page bound, and the session goes on live", async () => {
  const { server, homes, connect } = await setUp({ bounds: { catchUpPages: 25, forgedIntervalMs: 50 } });
  let seq = 0;
  let sinceRequests = 0;
  const client = await connect();
  try {
    await client.session.join("general", hooks);
    // Always one more page, always a newer seq, never an end.
    server.outgoing = (msg) => {
      if (msg.type !== "since") return undefined;
      sinceRequests++;
      return [{ ...msg, messages: [{ seq: ++seq + 1000, sent_at: 1, envelope: { junk: true } }], more: true }];
    };
    server.link.drop();
    await poll(() => client.of("reconnected").length > 0, "the reconnect");
    assert.equal(sinceRequests, 25);
    assert.ok(client.of("status").some((e) => /stopped catching up #general after 25 pages/.test(e.text)));
    assert.ok(client.session.online);
  } finally {
    await client.close();
    await homes.cleanup();
  }
});

Deno.test("live junk flooding in during a catch-up is held only up to the byte bound, then fetched again", async () => {
  const bound = 256 * 1024;
  const { server, homes, connect } = await setUp({ bounds: { heldBytes: bound, forgedIntervalMs: 50 } });
  const client = await connect();
  let maxHeld = 0;
  let flooded = 0;
  let sinceRequests = 0;
  const big = { seq: 1, sent_at: 1, envelope: { room: "general", junk: "x".repeat(60_000) } };
  try {
    await client.session.join("general", hooks);
    server.outgoing = (msg, link) => {
      if (msg.type !== "since") return undefined;
      sinceRequests++;
      // 2 MB of live frames before each of the first three replies; every frame a new, bigger seq.
      const frames = sinceRequests <= 3 ? 35 : 0;
      for (let i = 0; i < frames; i++) {
        flooded++;
        link.send({ type: "message", ...big, seq: 1000 + flooded });
      }
      return [msg];
    };
    const sampler = setInterval(() => maxHeld = Math.max(maxHeld, client.session.heldBytes), 0);
    try {
      server.link.drop();
      await poll(() => client.of("reconnected").length > 0, "the reconnect");
    } finally {
      clearInterval(sampler);
    }
    assert.ok(flooded >= 100, `${flooded} frames flooded`);
    assert.ok(maxHeld <= bound, `held at most ${maxHeld} bytes`);
    assert.ok(sinceRequests >= 2, "an overflow asks again");
    assert.equal(client.session.heldBytes, 0);
  } finally {
    await client.close();
    await homes.cleanup();
  }
});

function idOf(i: number): string {
  const id = new Uint8Array(16);
  new DataView(id.buffer).setUint32(0, i + 1);
  return id.toBase64();
}

Deno.test("a flood of envelopes failing authentication gives one warning per claimed sender per interval, with counts", async () => {
  const { server, homes, connect } = await setUp({ bounds: { forgedIntervalMs: 150 } });
  const client = await connect();
  try {
    await client.session.join("general", hooks);
    const alice = await junkEnvelope("alice", 1);
    const mallory = await junkEnvelope("mallory", 2);
    const started = performance.now();
    let seq = 0;
    for (let i = 0; i < 500; i++) {
      server.link.send({ type: "message", seq: ++seq, sent_at: 1, envelope: { ...alice, id: idOf(i) } });
      server.link.send({ type: "message", seq: ++seq, sent_at: 1, envelope: { ...mallory, id: idOf(i) } });
    }
    // 100 more senders, each once: the tracked senders are bounded, the rest counted together.
    for (let i = 0; i < 100; i++) {
      server.link.send({ type: "message", seq: ++seq, sent_at: 1, envelope: { ...alice, from: `x${i}`, id: idOf(i) } });
    }
    const forged = () => client.of("forged");
    const total = () => forged().reduce((n, e) => n + e.count, 0);
    await poll(() => total() === 1100, "every forgery counted");
    // At most one warning per sender per interval (and the first at once), however slow the machine is today.
    const intervals = Math.ceil((performance.now() - started) / 150) + 1;
    const of = (from: string) => forged().filter((e) => e.from === from);
    assert.equal(of("alice")[0].count, 1, "the first one at once");
    assert.equal(of("alice")[0].seq, 1);
    assert.equal(of("alice")[0].room, "general");
    assert.equal(of("alice").reduce((n, e) => n + e.count, 0), 500);
    assert.ok(
      of("alice").length <= 1 + intervals,
      `${of("alice").length} warnings for alice in ${intervals} intervals`,
    );
    assert.equal(of("mallory").reduce((n, e) => n + e.count, 0), 500);
    assert.ok(forged().length <= 65 * (1 + intervals), `${forged().length} warnings in all`);
    assert.ok(forged().length < 200, `${forged().length} warnings for 1100 forgeries`);
    assert.ok(of("other senders").length >= 1, "senders beyond the bound are counted together");
    assert.equal(client.messages().length, 0);
  } finally {
    await client.close();
    await homes.cleanup();
  }
});

Deno.test("a live message in the same read as joined is shown after the history, not lost or taken for a forgery", async () => {
  const { server, homes } = await setUp();
  const bob = await homes.connect(server.dial, "bob");
  const alice = await homes.connect(server.dial, "alice");
  try {
    await bob.session.join("general", hooks);
    bob.session.say("from the history");
    await bob.session.drain();
    // The double holds `joined` back until bob's next message is stored, then sends both in one go.
    let joined: Record<string, unknown> | undefined;
    server.outgoing = (msg, link) => {
      if (msg.type === "joined") {
        joined = msg;
        bob.session.say("right behind joined");
        return [];
      }
      if (msg.type === "message" && joined) {
        const both = [joined, msg];
        joined = undefined;
        for (const m of both) link.send(m);
        return [];
      }
      return undefined;
    };
    await alice.session.join("general", hooks);
    await poll(() => alice.messages().length === 2, "both messages");
    assert.deepEqual(alice.messages().map((m) => `${m.text} ${m.history}`), [
      "from the history true",
      "right behind joined false",
    ]);
    assert.equal(alice.of("forged").length, 0);
  } finally {
    await alice.close();
    await bob.close();
    await homes.cleanup();
  }
});

Deno.test("a server that will not take the nick any more stops the reconnect, saying why", async () => {
  const { server, homes, connect } = await setUp();
  const client = await connect();
  try {
    await client.session.join("general", hooks);
    server.outgoing = (msg) =>
      msg.type === "welcome"
        ? [{ type: "error", code: "nick_registered", message: "the nick alice is registered to another key" }]
        : undefined;
    server.link.drop();
    await poll(() => client.of("closed").length > 0, "the session to stop");
    const closed = client.of("closed")[0];
    assert.equal(closed.error.kind, "nick");
    assert.match(closed.error.message, /registered to another identity key/);
    assert.equal(client.of("offline").length, 1, "no second attempt");
  } finally {
    await client.close();
    await homes.cleanup();
  }
});
