/**
 * A malicious server against the client session: limits of the wrong type or range, a challenge that weakens the
 * room, replies of the wrong shape, endless catch-up pages, a flood of live junk while catching up, and a flood of
 * envelopes that fail authentication. Each must end in a clear refusal or a bounded, quiet recovery.
 *
 * @module
 */

import assert from "node:assert/strict";
import { sealEnvelope } from "../lib/crypto.ts";
import { JoinError, Session, SessionError, type SessionEvent, type SessionOptions } from "../lib/client/session.ts";
import { LYING_ROOM, LyingServer } from "./support/lying_server.ts";
import { cachedKeys } from "./support/wire.ts";

const PASSPHRASE = "lying server test passphrase";
const hooks = { passphrase: () => Promise.resolve(PASSPHRASE) };

async function connect(server: LyingServer, options: Partial<SessionOptions> = {}) {
  const events: SessionEvent[] = [];
  const session = await Session.connect(server.dial, {
    nick: "alice",
    reconnect: { firstDelayMs: 5, maxDelayMs: 20 },
    ...options,
    onEvent: (e) => events.push(e),
  });
  return { session, events };
}

async function poll(test: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!test()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

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
  ];
  for (const [change, message] of cases) {
    const server = new LyingServer();
    server.limits = { ...server.limits, ...change };
    const err = await Session.connect(server.dial, { nick: "alice", onEvent: () => {} }).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(err instanceof SessionError, JSON.stringify(change));
    assert.equal(err.kind, "connect");
    assert.match(err.message, /^refusing the server: welcome\.limits\./);
    assert.match(err.message, message);
    assert.ok(server.link.closed, "the connection is closed");
  }
  const server = new LyingServer();
  server.limits = "none" as unknown as Record<string, unknown>;
  await assert.rejects(
    Session.connect(server.dial, { nick: "alice", onEvent: () => {} }),
    /refusing the server: welcome: field limits must be an object/,
  );
});

Deno.test("a welcome for another nick or protocol version is refused", async () => {
  for (
    const [welcome, message] of [[{ nick: "mallory" }, /welcome.nick/], [{ version: 2 }, /welcome.version/]] as const
  ) {
    const server = new LyingServer();
    const answer = server.answer.bind(server);
    server.answer = (msg, link) => {
      if (msg.type !== "hello") return answer(msg, link);
      link.send({ type: "welcome", server: "liar", version: 1, nick: msg.nick, limits: server.limits, ...welcome });
    };
    await assert.rejects(Session.connect(server.dial, { nick: "alice", onEvent: () => {} }), message);
  }
});

Deno.test("a challenge that weakens the room or is malformed is refused before any key is derived", async () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ iterations: 1 }, /refusing to join #general: .*iterations/],
    [{ iterations: 10_000_001 }, /iterations/],
    [{ nonce: "AAAA" }, /bad challenge/],
    [{ salt: "AAAA" }, /bad challenge/],
    [{ room: "elsewhere" }, /answered for #elsewhere/],
  ];
  for (const [change, message] of cases) {
    const server = new LyingServer();
    const answer = server.answer.bind(server);
    server.answer = (msg, link) => {
      if (msg.type !== "join") return answer(msg, link);
      link.send({
        type: "challenge",
        room: msg.room,
        nonce: new Uint8Array(32).toBase64(),
        salt: LYING_ROOM.salt.toBase64(),
        iterations: LYING_ROOM.iterations,
        ...change,
      });
    };
    const { session } = await connect(server);
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
    assert.ok(!asked || !("iterations" in change), "no passphrase asked for a weakened room");
    await session.close();
  }
});

Deno.test("who and joined replies of the wrong shape are refusals, not crashes", async () => {
  const server = new LyingServer();
  const answer = server.answer.bind(server);
  server.answer = (msg, link) => {
    if (msg.type === "who") return link.send({ type: "who", room: "general", members: [1, { nick: "x" }] });
    if (msg.type === "rooms") return link.send({ type: "rooms", rooms: [{ name: 5, members: "many" }] });
    return answer(msg, link);
  };
  const { session } = await connect(server);
  await session.join("general", hooks);
  await assert.rejects(session.who(), /who.members must be an array of strings/);
  await assert.rejects(session.rooms(), /rooms.rooms items/);
  await session.close();
});

/** A server that, after the first connection, makes every catch-up endless or floods it; returns what it saw. */
async function junkEnvelope(from: string, id: number) {
  // Sealed with keys of another passphrase: the right shape, the wrong tag.
  const keys = await cachedKeys("not the room's passphrase", LYING_ROOM);
  const envelope = await sealEnvelope(keys, {
    room: "general",
    from,
    plaintext: { type: "text", body: "forged" },
    id: new Uint8Array(16).fill(id % 256),
  });
  return envelope;
}

Deno.test("endless catch-up pages stop at the page bound, and the session goes on live", async () => {
  const server = new LyingServer();
  const answer = server.answer.bind(server);
  let seq = 0;
  let sinceRequests = 0;
  server.answer = (msg, link) => {
    if (msg.type !== "since") return answer(msg, link);
    sinceRequests++;
    // Always one more page, always a newer seq, never an end.
    const messages = [{ seq: ++seq, sent_at: 1, envelope: { junk: true } }];
    link.send({ type: "since", room: "general", after_seq: msg.after_seq, messages, more: true });
  };
  const { session, events } = await connect(server, { bounds: { catchUpPages: 25, forgedIntervalMs: 50 } });
  await session.join("general", hooks);
  server.link.drop();
  await poll(() => events.some((e) => e.kind === "reconnected"), "the reconnect");
  assert.equal(sinceRequests, 25);
  assert.ok(events.some((e) => e.kind === "status" && /stopped catching up #general after 25 pages/.test(e.text)));
  assert.ok(session.online);
  await session.close();
});

Deno.test("live junk flooding in during a catch-up is held only up to the byte bound, then fetched again", async () => {
  const server = new LyingServer();
  const answer = server.answer.bind(server);
  const bound = 256 * 1024;
  let maxHeld = 0;
  let flooded = 0;
  let sinceRequests = 0;
  const big = { seq: 1, sent_at: 1, envelope: { junk: "x".repeat(60_000) } };
  server.answer = (msg, link) => {
    if (msg.type !== "since") return answer(msg, link);
    sinceRequests++;
    // 2 MB of live frames before each of the first three replies; every frame a new, bigger seq.
    const frames = sinceRequests <= 3 ? 35 : 0;
    for (let i = 0; i < frames; i++) {
      flooded++;
      link.send({ type: "message", ...big, seq: 1000 + flooded });
    }
    setTimeout(() => {
      link.send({ type: "since", room: "general", after_seq: msg.after_seq, messages: [], more: false });
    }, 0);
  };
  const { session, events } = await connect(server, { bounds: { heldBytes: bound, forgedIntervalMs: 50 } });
  await session.join("general", hooks);
  const sampler = setInterval(() => maxHeld = Math.max(maxHeld, session.heldBytes), 0);
  try {
    server.link.drop();
    await poll(() => events.some((e) => e.kind === "reconnected"), "the reconnect");
  } finally {
    clearInterval(sampler);
  }
  assert.ok(flooded >= 100, `${flooded} frames flooded`);
  assert.ok(maxHeld <= bound, `held at most ${maxHeld} bytes`);
  assert.ok(sinceRequests >= 2, "an overflow asks again");
  assert.equal(session.heldBytes, 0);
  await session.close();
});

Deno.test("a flood of envelopes failing authentication gives one warning per claimed sender per interval, with counts", async () => {
  const server = new LyingServer();
  const { session, events } = await connect(server, { bounds: { forgedIntervalMs: 150 } });
  await session.join("general", hooks);
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
  const forged = () => events.flatMap((e) => e.kind === "forged" ? [e] : []);
  const total = () => forged().reduce((n, e) => n + e.count, 0);
  await poll(() => total() === 1100, "every forgery counted");
  // At most one warning per sender per interval (and the first at once), however slow the machine is today.
  const intervals = Math.ceil((performance.now() - started) / 150) + 1;
  const of = (from: string) => forged().filter((e) => e.from === from);
  assert.equal(of("alice")[0].count, 1, "the first one at once");
  assert.equal(of("alice")[0].seq, 1);
  assert.equal(of("alice").reduce((n, e) => n + e.count, 0), 500);
  assert.ok(of("alice").length <= 1 + intervals, `${of("alice").length} warnings for alice in ${intervals} intervals`);
  assert.equal(of("mallory").reduce((n, e) => n + e.count, 0), 500);
  assert.ok(forged().length <= 65 * (1 + intervals), `${forged().length} warnings in all`);
  assert.ok(forged().length < 200, `${forged().length} warnings for 1100 forgeries`);
  assert.ok(of("other senders").length >= 1, "senders beyond the bound are counted together");
  await session.close();
});

function idOf(i: number): string {
  const id = new Uint8Array(16);
  new DataView(id.buffer).setUint32(0, i + 1);
  return id.toBase64();
}

Deno.test("a live message in the same read as joined is shown after the history, not lost or taken for a forgery", async () => {
  const server = new LyingServer();
  const keys = await cachedKeys(PASSPHRASE, LYING_ROOM);
  const seal = (body: string) =>
    sealEnvelope(keys, { room: "general", from: "bob", plaintext: { type: "text", body } });
  const old = await seal("from the history");
  const live = await seal("right behind joined");
  const answer = server.answer.bind(server);
  server.answer = (msg, link) => {
    if (msg.type !== "prove") return answer(msg, link);
    const history = [{ seq: 1, sent_at: 1, envelope: old }];
    // Both frames are delivered in one go, as when they arrive in one read.
    link.send({ type: "joined", room: msg.room, members: ["alice", "bob"], history, latest_seq: 1 });
    link.send({ type: "message", seq: 2, sent_at: 2, envelope: live });
  };
  const { session, events } = await connect(server);
  await session.join("general", hooks);
  await poll(() => events.filter((e) => e.kind === "message").length === 2, "both messages");
  assert.deepEqual(
    events.flatMap((e) => e.kind === "message" ? [`${e.message.text} ${e.message.history}`] : []),
    ["from the history true", "right behind joined false"],
  );
  assert.ok(!events.some((e) => e.kind === "forged"));
  await session.close();
});

Deno.test("a server that will never take the nick stops the reconnect, saying why", async () => {
  const server = new LyingServer();
  const answer = server.answer.bind(server);
  const { session, events } = await connect(server);
  await session.join("general", hooks);
  server.answer = (msg, link) => {
    if (msg.type !== "hello") return answer(msg, link);
    link.send({ type: "error", code: "nick_invalid", message: "nick alice breaks the rules here" });
  };
  server.link.drop();
  await poll(() => events.some((e) => e.kind === "closed"), "the session to stop");
  const closed = events.find((e) => e.kind === "closed");
  assert.equal(closed?.kind === "closed" && closed.error.kind, "nick");
  assert.match(closed?.kind === "closed" ? closed.error.message : "", /breaks the rules here/);
  assert.equal(events.filter((e) => e.kind === "offline").length, 1, "no second attempt");
  await session.close();
});
