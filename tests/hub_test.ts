/**
 * The chat core in-process: a Hub over an in-memory Store, driven with parsed messages from fake peers that record
 * every frame they are sent. No sockets: this is where the room, proof, fan-out, history and presence rules are
 * checked message by message.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { deriveRoomKeys, makeSalt, openEnvelope, type RoomKeys, sealEnvelope, signJoinProof } from "../lib/crypto.ts";
import { type Envelope, serializeEnvelope } from "../lib/envelope.ts";
import { FrameReader } from "../lib/frame.ts";
import {
  type ClientMessage,
  parseServerMessage,
  proveMessage,
  type ServerLimits,
  type ServerMessage,
  type ServerMessageOf as Msg,
} from "../lib/protocol.ts";
import { Hub, MAX_DENIED, type Member, type Peer, REPLY_BUDGET, type RoomLimits } from "../lib/server/hub.ts";
import { Logger } from "../lib/server/log.ts";
import { type MessageRow, Store } from "../lib/server/store.ts";

const LIMITS: ServerLimits = {
  max_frame: 65536,
  max_body: 16384,
  history: 50,
  history_page: 500,
  rate: 20,
  burst: 40,
  send_queue: 1048576,
  idle_timeout_ms: 120000,
};
const PASSPHRASE = "hub test passphrase";
const ITERATIONS = 100_000;
const CLOCK = 1_700_000_123_456;

/** A peer that parses and keeps every frame, as a client would receive it. */
class FakePeer implements Peer {
  /** Received and not yet taken. */
  inbox: ServerMessage[] = [];
  /** Every message ever received. */
  all: ServerMessage[] = [];
  /** Set once the hub closed the connection. */
  closed: { reason: string; message?: string } | undefined;

  send(frame: Uint8Array): void {
    const bodies = new FrameReader({ maxFrame: 64 * 1024 * 1024 }).push(frame);
    assert.equal(bodies.length, 1, "one send is exactly one frame");
    assert.equal(bodies[0].length + 4, frame.length, "the frame has no trailing bytes");
    const msg = parseServerMessage(bodies[0]);
    this.inbox.push(msg);
    this.all.push(msg);
  }

  close(reason: string, message?: string): void {
    this.closed ??= { reason, message };
  }

  /** The close reason, if closed (a method, so that earlier assertions do not narrow it away). */
  closedReason(): string | undefined {
    return this.closed?.reason;
  }

  /** Takes the first message of a type; fails if there is none. */
  take<T extends ServerMessage["type"]>(type: T): Msg<T> {
    const i = this.inbox.findIndex((m) => m.type === type);
    assert.ok(i >= 0, `no ${type} in ${JSON.stringify(this.inbox).slice(0, 400)}`);
    return this.inbox.splice(i, 1)[0] as Msg<T>;
  }

  /** Takes every message of a type. */
  takeAll<T extends ServerMessage["type"]>(type: T): Msg<T>[] {
    const got = this.inbox.filter((m) => m.type === type) as Msg<T>[];
    this.inbox = this.inbox.filter((m) => m.type !== type);
    return got;
  }

  /** Takes the only message left, asserting there is exactly one. */
  only(): ServerMessage {
    assert.equal(this.inbox.length, 1, `expected one message, got ${JSON.stringify(this.inbox).slice(0, 400)}`);
    return this.inbox.pop()!;
  }
}

/** One connected test client. */
interface Client {
  member: Member;
  peer: FakePeer;
  nick: string;
  keys?: RoomKeys;
  room?: string;
}

interface TestHub {
  hub: Hub;
  store: Store;
  logs: string[];
  hello(nick: string, host?: string): Promise<Client>;
  handle(client: Client, msg: ClientMessage): Promise<void>;
}

const keyCache = new Map<string, Promise<RoomKeys>>();
function keysFor(passphrase: string, salt: Uint8Array, iterations: number): Promise<RoomKeys> {
  const id = `${passphrase}/${salt.toHex()}/${iterations}`;
  if (!keyCache.has(id)) keyCache.set(id, deriveRoomKeys(passphrase, { salt, iterations }));
  return keyCache.get(id)!;
}

/** Lets the hub's end-of-turn flush run (it is scheduled with setTimeout 0). */
function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Runs a test against a fresh hub and in-memory store, closing the store afterwards. */
async function withHub(
  fn: (t: TestHub) => Promise<void>,
  options: { history?: number; store?: Store; rooms?: RoomLimits } = {},
): Promise<void> {
  const store = options.store ?? Store.open(":memory:");
  const logs: string[] = [];
  const hub = new Hub(store, {
    limits: { ...LIMITS, history: options.history ?? LIMITS.history },
    version: "9.9.9",
    log: new Logger({ level: "debug", sink: (line) => logs.push(line) }),
    now: () => CLOCK,
    rooms: options.rooms,
  });
  let port = 40000;
  const t: TestHub = {
    hub,
    store,
    logs,
    async handle(client, msg) {
      await hub.handle(client.member, msg);
    },
    async hello(nick, host = "127.0.0.1") {
      const peer = new FakePeer();
      const member = hub.attach(peer, `${host}:${port++}`);
      await hub.handle(member, { type: "hello", version: 1, nick });
      assert.equal(peer.take("welcome").nick, nick);
      return { member, peer, nick };
    },
  };
  try {
    await fn(t);
    await tick();
  } finally {
    store.close();
  }
}

/** Joins (creating if needed) a room; returns the joined message or the error. */
async function join(
  t: TestHub,
  client: Client,
  room: string,
  passphrase = PASSPHRASE,
): Promise<Msg<"joined"> | Msg<"error">> {
  await t.handle(client, { type: "join", room });
  const challenge = client.peer.take("challenge");
  assert.equal(challenge.room, room);
  const nonce = Uint8Array.fromBase64(challenge.nonce);
  assert.equal(nonce.length, 32);
  let keys: RoomKeys;
  let create: Parameters<typeof proveMessage>[2];
  if (challenge.salt !== undefined) {
    keys = await keysFor(passphrase, Uint8Array.fromBase64(challenge.salt), challenge.iterations!);
  } else {
    const salt = makeSalt();
    keys = await keysFor(passphrase, salt, ITERATIONS);
    create = { salt, iterations: ITERATIONS, accessPub: keys.accessPub };
  }
  const proof = await signJoinProof(keys, { nonce, room, nick: client.nick });
  await t.handle(client, proveMessage(room, proof, create));
  const i = client.peer.inbox.findIndex((m) => m.type === "joined" || m.type === "error");
  assert.ok(i >= 0, `no answer to prove: ${JSON.stringify(client.peer.inbox)}`);
  const reply = client.peer.inbox.splice(i, 1)[0] as Msg<"joined"> | Msg<"error">;
  if (reply.type === "joined") {
    client.keys = keys;
    client.room = room;
  }
  return reply;
}

/** Connects and joins; asserts the join succeeded. */
async function member(t: TestHub, nick: string, room = "general"): Promise<Client> {
  const client = await t.hello(nick);
  const reply = await join(t, client, room);
  assert.equal(reply.type, "joined", JSON.stringify(reply));
  return client;
}

function seal(client: Client, body: string, options: { room?: string; from?: string; id?: Uint8Array } = {}) {
  return sealEnvelope(client.keys!, {
    room: options.room ?? client.room!,
    from: options.from ?? client.nick,
    plaintext: { type: "text", body },
    id: options.id,
  });
}

async function say(t: TestHub, client: Client, body: string): Promise<{ envelope: Envelope; seq: number }> {
  const envelope = await seal(client, body);
  await t.handle(client, { type: "send", envelope });
  await tick();
  const ack = client.peer.take("ack");
  assert.equal(ack.id, envelope.id);
  return { envelope, seq: ack.seq };
}

function storedIds(store: Store, room: string): string[] {
  return store.after(room, { afterSeq: 0, limit: 10_000 }).map((m) => JSON.parse(m.envelope).id);
}

Deno.test("hub welcomes a hello with its name, version and limits, and refuses a second hello", () =>
  withHub(async (t) => {
    const peer = new FakePeer();
    const m = t.hub.attach(peer, "127.0.0.1:1");
    await t.hub.handle(m, { type: "hello", version: 1, nick: "alice" });
    assert.deepEqual(peer.only(), {
      type: "welcome",
      server: "aeschat",
      version: 1,
      server_version: "9.9.9",
      nick: "alice",
      limits: LIMITS,
    });
    await t.hub.handle(m, { type: "hello", version: 1, nick: "alice2" });
    assert.equal((peer.only() as Msg<"error">).code, "bad_message");
    assert.equal(peer.closed?.reason, "bad_message");
  }));

Deno.test("hub refuses anything before hello, a bad version and a bad nick, and closes the connection", () =>
  withHub(async (t) => {
    const cases: [ClientMessage, string][] = [
      [{ type: "who" }, "not_ready"],
      [{ type: "join", room: "general" }, "not_ready"],
      [{ type: "hello", version: 2, nick: "alice" }, "version_unsupported"],
      [{ type: "hello", version: 1, nick: "a b" }, "nick_invalid"],
      [{ type: "hello", version: 1, nick: "" }, "nick_invalid"],
      [{ type: "hello", version: 1, nick: "x".repeat(33) }, "nick_invalid"],
      [{ type: "hello", version: 1, nick: "e\u0301" }, "nick_invalid"],
    ];
    for (const [msg, code] of cases) {
      const peer = new FakePeer();
      const m = t.hub.attach(peer, "127.0.0.1:1");
      await t.hub.handle(m, msg);
      const error = peer.only() as Msg<"error">;
      assert.deepEqual([error.type, error.code], ["error", code], JSON.stringify(msg));
      assert.equal(peer.closed?.reason, code, JSON.stringify(msg));
      t.hub.detach(m);
    }
    assert.equal(t.hub.size, 0);
  }));

Deno.test("hub nicks are unique case-insensitively, at hello and on nick change, and freed on detach", () =>
  withHub(async (t) => {
    const alice = await t.hello("alice");
    const peer = new FakePeer();
    const m = t.hub.attach(peer, "127.0.0.1:2");
    await t.hub.handle(m, { type: "hello", version: 1, nick: "ALICE" });
    assert.equal((peer.only() as Msg<"error">).code, "nick_in_use");
    assert.equal(peer.closed?.reason, "nick_in_use");
    t.hub.detach(m);

    const bob = await t.hello("bob");
    await t.handle(bob, { type: "nick", new: "Alice" });
    assert.equal((bob.peer.only() as Msg<"error">).code, "nick_in_use");
    await t.handle(bob, { type: "nick", new: "bad nick" });
    assert.equal((bob.peer.only() as Msg<"error">).code, "nick_invalid");
    assert.equal(bob.peer.closed, undefined, "a refused nick change keeps the connection");
    // Changing the case of one's own nick is allowed.
    await t.handle(bob, { type: "nick", new: "Bob" });
    assert.deepEqual(bob.peer.only(), { type: "nick", old: "bob", new: "Bob" });
    // The old nick is free again; the new one is taken.
    const other = await t.hello("BOB2");
    await t.handle(other, { type: "nick", new: "bOB" });
    assert.equal((other.peer.only() as Msg<"error">).code, "nick_in_use");

    t.hub.detach(alice.member);
    const again = await t.hello("Alice");
    assert.equal(again.nick, "Alice");
  }));

Deno.test("hub acks a message only after it is committed, then fans it out to the others but not the sender", () =>
  withHub(async (t) => {
    const alice = await member(t, "alice");
    const bob = await member(t, "bob");
    const carol = await member(t, "carol");
    for (const c of [alice, bob, carol]) c.peer.takeAll("presence");

    const envelope = await seal(alice, "hello, room");
    await t.handle(alice, { type: "send", envelope });
    // Same turn: nothing stored, nothing acked, nothing relayed yet.
    assert.equal(t.store.lastSeq, 0);
    assert.deepEqual([alice.peer.inbox, bob.peer.inbox, carol.peer.inbox], [[], [], []]);
    await tick();
    assert.deepEqual(storedIds(t.store, "general"), [envelope.id]);
    const stored = t.store.recent("general", 1)[0];
    assert.equal(stored.envelope, serializeEnvelope(envelope), "the envelope is stored exactly as relayed");
    assert.deepEqual(alice.peer.only(), { type: "ack", id: envelope.id, seq: 1 });
    for (const c of [bob, carol]) {
      const msg = c.peer.only() as Msg<"message">;
      assert.deepEqual(msg, { type: "message", seq: 1, sent_at: CLOCK, envelope });
      const opened = await openEnvelope(c.keys!, { envelope: msg.envelope, room: "general", from: "alice" });
      assert.equal(opened.plaintext.body, "hello, room");
    }

    // Several messages in one turn are committed together, in order, with increasing seq.
    const batch = [await seal(bob, "one"), await seal(carol, "two"), await seal(bob, "three")];
    await t.handle(bob, { type: "send", envelope: batch[0] });
    await t.handle(carol, { type: "send", envelope: batch[1] });
    await t.handle(bob, { type: "send", envelope: batch[2] });
    await tick();
    assert.deepEqual(bob.peer.takeAll("ack"), [
      { type: "ack", id: batch[0].id, seq: 2 },
      { type: "ack", id: batch[2].id, seq: 4 },
    ]);
    assert.deepEqual(carol.peer.takeAll("ack"), [{ type: "ack", id: batch[1].id, seq: 3 }]);
    assert.deepEqual(alice.peer.takeAll("message").map((m) => [m.seq, m.envelope.id]), [
      [2, batch[0].id],
      [3, batch[1].id],
      [4, batch[2].id],
    ]);
    assert.deepEqual(bob.peer.takeAll("message").map((m) => m.seq), [3], "bob gets carol's, not his own");
    assert.deepEqual(carol.peer.takeAll("message").map((m) => m.seq), [2, 4]);
    assert.deepEqual([alice.peer.inbox, bob.peer.inbox, carol.peer.inbox], [[], [], []]);
    assert.equal(t.store.lastSeq, 4);
    // The log holds metadata only.
    const logs = t.logs.join("\n");
    for (const e of [envelope, ...batch]) assert.ok(!logs.includes(e.ct) && !logs.includes(e.id), "envelope logged");
  }));

Deno.test("hub relays nothing of a room to members of another room", () =>
  withHub(async (t) => {
    const alice = await member(t, "alice");
    const dave = await member(t, "dave", "dev");
    await say(t, alice, "general only");
    await say(t, dave, "dev only");
    assert.deepEqual(alice.peer.inbox, []);
    assert.deepEqual(dave.peer.inbox, []);
  }));

Deno.test("hub denies a wrong proof and the peer gets no history, messages, member list or presence", () =>
  withHub(async (t) => {
    const alice = await member(t, "alice");
    await say(t, alice, "before mallory");
    const mallory = await t.hello("mallory");
    const denied = await join(t, mallory, "general", "a wrong guess");
    assert.deepEqual([denied.type, denied.type === "error" && denied.code], ["error", "access_denied"]);
    assert.equal(mallory.peer.closed, undefined, "one denial does not close the connection");
    assert.ok(t.logs.some((l) => /WARN {2}denied .*nick=mallory room=general/.test(l)), "the denial is logged");
    // A proof that is not even base64 of 64 bytes is denied the same way.
    await t.handle(mallory, { type: "join", room: "general" });
    mallory.peer.take("challenge");
    await t.handle(mallory, { type: "prove", room: "general", proof: "not base64!" });
    assert.equal((mallory.peer.only() as Msg<"error">).code, "access_denied");

    const bob = await member(t, "bob");
    await say(t, alice, "after mallory");
    await say(t, bob, "bob too");
    for (
      const msg of [{ type: "who" }, { type: "history", before_seq: 100, limit: 500 }, { type: "since", after_seq: 0 }]
    ) {
      await t.handle(mallory, msg as ClientMessage);
      assert.equal((mallory.peer.only() as Msg<"error">).code, "not_ready", msg.type);
    }
    const forged = { ...(await seal(alice, "forged")), from: "mallory" };
    await t.handle(mallory, { type: "send", envelope: forged });
    await tick();
    assert.deepEqual(mallory.peer.only(), {
      type: "error",
      code: "not_ready",
      message: "join a room before sending",
      id: forged.id,
    });
    assert.equal(storedIds(t.store, "general").includes(forged.id), false);
    assert.deepEqual(
      mallory.peer.all.map((m) => m.type).filter((type) => type !== "error" && type !== "challenge"),
      ["welcome"],
      "mallory received nothing of the room",
    );
    // The fifth denial closes the connection.
    for (let i = 2; i < MAX_DENIED; i++) {
      const again = await join(t, mallory, "general", `guess ${i}`);
      assert.equal(again.type === "error" && again.code, "access_denied");
      if (i < MAX_DENIED - 1) assert.equal(mallory.peer.closed, undefined, `closed after ${i + 1} denials`);
    }
    assert.equal(mallory.peer.closedReason(), "access_denied", `closed after ${MAX_DENIED} denials`);
  }));

Deno.test("hub creates a room only with valid parameters and a proof, once, and a challenge serves one prove", () =>
  withHub(async (t) => {
    const alice = await t.hello("alice");
    const salt = makeSalt();
    const keys = await keysFor(PASSPHRASE, salt, ITERATIONS);
    const fresh = async (room: string) => {
      await t.handle(alice, { type: "join", room });
      const challenge = alice.peer.take("challenge");
      assert.equal(challenge.salt, undefined, "a new room's challenge has no salt");
      const proof = await signJoinProof(keys, { nonce: Uint8Array.fromBase64(challenge.nonce), room, nick: "alice" });
      return proof.toBase64();
    };
    const good = { salt: salt.toBase64(), iterations: ITERATIONS, access_pub: keys.accessPub.toBase64() };
    const bad: [Record<string, unknown>, RegExp][] = [
      [{}, /is new: send salt, iterations and access_pub/],
      [{ ...good, salt: new Uint8Array(8).toBase64() }, /salt must be 16 bytes/],
      [{ ...good, iterations: 99_999 }, /iterations must be an integer from 100000 to 10000000/],
      [{ ...good, iterations: 10_000_001 }, /iterations must be/],
      [{ ...good, access_pub: new Uint8Array(31).toBase64() }, /access_pub must be 32 bytes/],
      [{ ...good, access_pub: undefined }, /access_pub must be 32 bytes/],
    ];
    for (const [fields, message] of bad) {
      const proof = await fresh("newroom");
      await t.handle(alice, { type: "prove", room: "newroom", proof, ...fields } as ClientMessage);
      const error = alice.peer.only() as Msg<"error">;
      assert.equal(error.code, "bad_create", JSON.stringify(fields));
      assert.match(error.message, message);
      assert.equal(t.store.getRoom("newroom"), undefined);
    }
    // A proof made with another key than access_pub does not create the room.
    const otherKeys = await keysFor("another passphrase", salt, ITERATIONS);
    await t.handle(alice, {
      type: "prove",
      room: "newroom",
      proof: await fresh("newroom"),
      ...good,
      access_pub: otherKeys.accessPub.toBase64(),
    });
    assert.equal((alice.peer.only() as Msg<"error">).code, "access_denied");
    assert.equal(t.store.getRoom("newroom"), undefined);
    // Prove without a challenge, or for another room than the challenge.
    await t.handle(alice, { type: "prove", room: "newroom", proof: "x" });
    assert.equal((alice.peer.only() as Msg<"error">).code, "no_challenge");
    const proof = await fresh("newroom");
    await t.handle(alice, { type: "prove", room: "otherroom", proof, ...good });
    assert.equal((alice.peer.only() as Msg<"error">).code, "no_challenge");
    // The good creation, then the same proof again: the challenge was used up.
    const proof2 = await fresh("newroom");
    await t.handle(alice, { type: "prove", room: "newroom", proof: proof2, ...good });
    const joined = alice.peer.only() as Msg<"joined">;
    assert.deepEqual(joined, { type: "joined", room: "newroom", members: ["alice"], history: [], latest_seq: 0 });
    assert.deepEqual(t.store.getRoom("newroom"), {
      name: "newroom",
      salt,
      iterations: ITERATIONS,
      accessPub: keys.accessPub,
      createdAt: CLOCK,
    });
    await t.handle(alice, { type: "prove", room: "newroom", proof: proof2 });
    assert.equal((alice.peer.only() as Msg<"error">).code, "no_challenge");
    // Sending creation parameters for a room that exists is refused.
    await t.handle(alice, { type: "join", room: "newroom" });
    const challenge = alice.peer.take("challenge");
    assert.deepEqual([challenge.salt, challenge.iterations], [salt.toBase64(), ITERATIONS]);
    await t.handle(alice, { type: "prove", room: "newroom", proof: proof2, ...good });
    assert.match((alice.peer.only() as Msg<"error">).message, /already exists/);
    // An invalid room name.
    await t.handle(alice, { type: "join", room: "two words" });
    assert.equal((alice.peer.only() as Msg<"error">).code, "room_invalid");
    assert.equal(alice.peer.closed, undefined);
  }));

Deno.test("hub answers room_changed when a room was created by someone else between challenge and prove", () =>
  withHub(async (t) => {
    const alice = await t.hello("alice");
    const bob = await t.hello("bob");
    await t.handle(alice, { type: "join", room: "race" });
    await t.handle(bob, { type: "join", room: "race" });
    const create = async (client: Client, passphrase: string) => {
      const challenge = client.peer.take("challenge");
      const salt = makeSalt();
      const keys = await keysFor(passphrase, salt, ITERATIONS);
      const nonce = Uint8Array.fromBase64(challenge.nonce);
      await t.handle(client, {
        type: "prove",
        room: "race",
        proof: (await signJoinProof(keys, { nonce, room: "race", nick: client.nick })).toBase64(),
        salt: salt.toBase64(),
        iterations: ITERATIONS,
        access_pub: keys.accessPub.toBase64(),
      });
      return keys;
    };
    const aliceKeys = await create(alice, "alice's passphrase");
    assert.equal(alice.peer.take("joined").room, "race");
    await create(bob, "bob's passphrase");
    assert.equal((bob.peer.only() as Msg<"error">).code, "room_changed");
    assert.deepEqual(t.store.getRoom("race")?.accessPub, aliceKeys.accessPub, "the first creation stands");
  }));

Deno.test("hub gives a new member the last --history messages oldest first, with members and latest_seq", () =>
  withHub(async (t) => {
    const alice = await member(t, "alice");
    const sent: { envelope: Envelope; seq: number }[] = [];
    for (let i = 0; i < 5; i++) sent.push(await say(t, alice, `line ${i}`));
    const other = await member(t, "olga", "other");
    await say(t, other, "elsewhere");
    const bob = await t.hello("bob");
    const joined = await join(t, bob, "general") as Msg<"joined">;
    assert.equal(joined.type, "joined");
    assert.deepEqual(joined.members, ["alice", "bob"]);
    assert.equal(joined.latest_seq, 6, "latest_seq is the server's highest seq, of any room");
    assert.deepEqual(
      joined.history,
      sent.slice(2).map((s) => ({ seq: s.seq, sent_at: CLOCK, envelope: s.envelope })),
    );
    const bodies = [];
    for (const item of joined.history) {
      bodies.push(
        (await openEnvelope(bob.keys!, { envelope: item.envelope, room: "general", from: "alice" }))
          .plaintext.body,
      );
    }
    assert.deepEqual(bodies, ["line 2", "line 3", "line 4"]);
  }, { history: 3 }));

Deno.test("hub with --history 0 replays nothing on join", () =>
  withHub(async (t) => {
    const alice = await member(t, "alice");
    await say(t, alice, "not replayed");
    const bob = await t.hello("bob");
    const joined = await join(t, bob, "general") as Msg<"joined">;
    assert.deepEqual([joined.history, joined.latest_seq], [[], 1]);
  }, { history: 0 }));

Deno.test("hub refuses an envelope whose room or from does not match, or whose id repeats, and stores none", () =>
  withHub(async (t) => {
    const alice = await member(t, "alice");
    const bob = await member(t, "bob");
    await member(t, "dave", "dev");
    alice.peer.takeAll("presence");
    const first = await say(t, alice, "the original");
    bob.peer.take("message");
    const cases: [Envelope, string][] = [
      [await seal(alice, "for dev", { room: "dev" }), "room_mismatch"],
      [await seal(alice, "as bob", { from: "bob" }), "sender_mismatch"],
      [await seal(alice, "as nobody", { from: "nobody" }), "sender_mismatch"],
      [first.envelope, "duplicate_id"],
      [await seal(alice, "same id, new text", { id: Uint8Array.fromBase64(first.envelope.id) }), "duplicate_id"],
    ];
    for (const [envelope, code] of cases) {
      await t.handle(alice, { type: "send", envelope });
      await tick();
      const error = alice.peer.only() as Msg<"error">;
      assert.deepEqual([error.type, error.code, error.id], ["error", code, envelope.id], code);
      assert.equal(alice.peer.closed, undefined, `${code} keeps the connection`);
    }
    // The same new envelope twice in one turn: one ack, one duplicate, one relay.
    const twin = await seal(alice, "twin");
    await t.handle(alice, { type: "send", envelope: twin });
    await t.handle(alice, { type: "send", envelope: twin });
    await tick();
    assert.deepEqual(alice.peer.takeAll("ack").map((a) => a.id), [twin.id]);
    assert.deepEqual(alice.peer.takeAll("error").map((e) => [e.code, e.id]), [["duplicate_id", twin.id]]);
    assert.deepEqual(bob.peer.takeAll("message").map((m) => m.envelope.id), [twin.id]);
    assert.deepEqual(storedIds(t.store, "general"), [first.envelope.id, twin.id]);
    assert.deepEqual(storedIds(t.store, "dev"), []);
    assert.equal(
      t.store.recent("general", 10)[0].envelope,
      serializeEnvelope(first.envelope),
      "the original is not overwritten",
    );
  }));

Deno.test("hub answers storage_failed when the database refuses a write, and neither acks nor relays", () =>
  withHub(async (t) => {
    const alice = await member(t, "alice");
    const bob = await member(t, "bob");
    alice.peer.takeAll("presence");
    const envelope = await seal(alice, "will not be stored");
    t.store.close();
    await t.handle(alice, { type: "send", envelope });
    await tick();
    const error = alice.peer.only() as Msg<"error">;
    assert.deepEqual([error.code, error.id], ["storage_failed", envelope.id]);
    assert.deepEqual(bob.peer.inbox, []);
    assert.ok(t.logs.some((l) => l.includes("storage_failed")));
  }));

Deno.test("hub answers storage_failed, never duplicate_id, for a message whose insert changed nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-hub-" });
  try {
    Store.open(`${dir}/a.db`).close();
    const db = new DatabaseSync(`${dir}/a.db`);
    db.exec(
      `CREATE TRIGGER drop_bob BEFORE INSERT ON messages WHEN NEW.sender = 'bob' BEGIN SELECT RAISE(IGNORE); END`,
    );
    db.close();
    await withHub(async (t) => {
      const alice = await member(t, "alice");
      const bob = await member(t, "bob");
      alice.peer.takeAll("presence");
      const lost = await seal(bob, "dropped by the database");
      const kept = await seal(alice, "stored");
      await t.handle(bob, { type: "send", envelope: lost });
      await t.handle(alice, { type: "send", envelope: kept });
      await tick();
      const error = bob.peer.take("error");
      assert.deepEqual([error.code, error.id], ["storage_failed", lost.id]);
      assert.deepEqual(bob.peer.takeAll("ack"), [], "bob's message is not acked");
      assert.deepEqual(alice.peer.takeAll("message"), [], "nothing of bob's is relayed");
      assert.equal(alice.peer.take("ack").id, kept.id);
      assert.deepEqual(bob.peer.takeAll("message").map((m) => m.envelope.id), [kept.id]);
      assert.deepEqual(storedIds(t.store, "general"), [kept.id]);
      assert.ok(t.logs.some((l) => /storage_failed messages=1/.test(l)));
    }, { store: Store.open(`${dir}/a.db`) });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hub sends presence for join, leave and nick to the others in the room only", () =>
  withHub(async (t) => {
    const alice = await member(t, "alice");
    const dave = await member(t, "dave", "dev");
    const bob = await member(t, "bob");
    assert.deepEqual(alice.peer.only(), { type: "presence", event: "join", room: "general", nick: "bob" });
    assert.deepEqual(bob.peer.inbox, [], "no presence about oneself");
    await t.handle(bob, { type: "nick", new: "bobby" });
    assert.deepEqual(bob.peer.only(), { type: "nick", old: "bob", new: "bobby" });
    assert.deepEqual(alice.peer.only(), {
      type: "presence",
      event: "nick",
      room: "general",
      nick: "bobby",
      old: "bob",
    });
    t.hub.detach(bob.member);
    assert.deepEqual(alice.peer.only(), { type: "presence", event: "leave", room: "general", nick: "bobby" });
    assert.deepEqual(dave.peer.inbox, [], "another room hears nothing");
    // A nick change outside any room is answered but announced nowhere.
    const eve = await t.hello("eve");
    await t.handle(eve, { type: "nick", new: "eve2" });
    assert.deepEqual(eve.peer.only(), { type: "nick", old: "eve", new: "eve2" });
    assert.deepEqual([alice.peer.inbox, dave.peer.inbox], [[], []]);
  }));

Deno.test("hub answers who with the current room's members, and rooms with the occupied rooms this connection proved", () =>
  withHub(async (t) => {
    const eve = await t.hello("eve");
    await t.handle(eve, { type: "who" });
    assert.equal((eve.peer.only() as Msg<"error">).code, "not_ready");
    assert.equal(eve.peer.closed, undefined);
    await t.handle(eve, { type: "rooms" });
    assert.deepEqual(eve.peer.only(), { type: "rooms", rooms: [] });

    const alice = await member(t, "alice");
    await member(t, "bob");
    const dave = await member(t, "dave", "dev");
    await member(t, "olga", "secret");
    alice.peer.takeAll("presence");
    await t.handle(alice, { type: "who" });
    assert.deepEqual(alice.peer.only(), { type: "who", room: "general", members: ["alice", "bob"] });
    // A stranger learns nothing of the rooms, even after a failed proof.
    assert.equal((await join(t, eve, "general", "a guess")).type, "error");
    await t.handle(eve, { type: "rooms" });
    assert.deepEqual(eve.peer.only(), { type: "rooms", rooms: [] });
    await t.handle(alice, { type: "rooms" });
    assert.deepEqual(alice.peer.only(), { type: "rooms", rooms: [{ name: "general", members: 2 }] });
    // Proved rooms stay listed after leaving them (while they have people in them).
    await member(t, "dora", "dev");
    await join(t, dave, "general");
    await t.handle(dave, { type: "rooms" });
    const rooms = (dave.peer.take("rooms") as Msg<"rooms">).rooms;
    assert.deepEqual(rooms.sort((a, b) => a.name.localeCompare(b.name)), [
      { name: "dev", members: 1 },
      { name: "general", members: 3 },
    ]);
    assert.equal(t.hub.unproven, 1, "eve is the only member that proved no room");
  }));

Deno.test("hub: joining another room leaves the first", () =>
  withHub(async (t) => {
    const alice = await member(t, "alice");
    const bob = await member(t, "bob");
    const dave = await member(t, "dave", "dev");
    alice.peer.takeAll("presence");
    const joined = await join(t, alice, "dev") as Msg<"joined">;
    assert.deepEqual(joined.members, ["dave", "alice"]);
    assert.deepEqual(bob.peer.only(), { type: "presence", event: "leave", room: "general", nick: "alice" });
    assert.deepEqual(dave.peer.only(), { type: "presence", event: "join", room: "dev", nick: "alice" });
    await say(t, bob, "general after alice left");
    assert.deepEqual(alice.peer.inbox, []);
    await say(t, alice, "hello dev");
    assert.equal(dave.peer.take("message").envelope.from, "alice");
    assert.deepEqual(bob.peer.inbox, []);
    // An envelope for the old room is now a mismatch.
    const stale = await seal(alice, "old room", { room: "general" });
    await t.handle(alice, { type: "send", envelope: stale });
    assert.equal((alice.peer.only() as Msg<"error">).code, "room_mismatch");
    await t.handle(bob, { type: "who" });
    assert.deepEqual(bob.peer.only(), { type: "who", room: "general", members: ["bob"] });
    // The last member leaving a room removes it from the room list.
    await join(t, bob, "dev");
    await t.handle(bob, { type: "rooms" });
    assert.deepEqual(bob.peer.take("rooms").rooms, [{ name: "dev", members: 3 }]);
  }));

function fakeRows(count: number, options: { room?: string; ctBytes?: number; firstSeq?: number } = {}): MessageRow[] {
  const room = options.room ?? "general";
  const rows: MessageRow[] = [];
  for (let i = 0; i < count; i++) {
    const seq = (options.firstSeq ?? 1) + i;
    const id = new Uint8Array(16);
    new DataView(id.buffer).setUint32(12, seq);
    const envelope: Envelope = {
      v: 1,
      room,
      from: "alice",
      id: id.toBase64(),
      ts: seq,
      iv: new Uint8Array(16).toBase64(),
      ct: new Uint8Array(options.ctBytes ?? 16).toBase64(),
      tag: new Uint8Array(32).toBase64(),
    };
    rows.push({ seq, room, sender: "alice", msgId: id, sentAt: seq, envelope: serializeEnvelope(envelope) });
  }
  return rows;
}

Deno.test("hub pages history back with before_seq and limit (clamped to 1..500), saying whether more exist", async () => {
  const store = Store.open(":memory:");
  store.appendBatch(fakeRows(620));
  store.appendBatch(fakeRows(5, { room: "other", firstSeq: 621 }));
  await withHub(async (t) => {
    const alice = await member(t, "alice");
    const page = async (before_seq: number, limit: number) => {
      await t.handle(alice, { type: "history", before_seq, limit });
      const reply = alice.peer.only() as Msg<"history">;
      assert.deepEqual([reply.type, reply.room, reply.before_seq], ["history", "general", before_seq]);
      return { seqs: reply.messages.map((m) => m.seq), more: reply.more };
    };
    const first = await page(2 ** 53 - 1, 5);
    assert.deepEqual(first, { seqs: [616, 617, 618, 619, 620], more: true });
    assert.deepEqual(await page(616, 3), { seqs: [613, 614, 615], more: true });
    assert.deepEqual(await page(4, 10), { seqs: [1, 2, 3], more: false });
    assert.deepEqual(await page(4, 3), { seqs: [1, 2, 3], more: false });
    assert.deepEqual(await page(1, 10), { seqs: [], more: false });
    const clamped = await page(2 ** 53 - 1, 501);
    assert.equal(clamped.seqs.length, 500);
    assert.deepEqual([clamped.seqs[0], clamped.seqs[499], clamped.more], [121, 620, true]);
    assert.deepEqual(await page(100, 0), { seqs: [99], more: true });
    // Without a limit, a page is as long as it can be.
    await t.handle(alice, { type: "history", before_seq: 2 ** 53 - 1 });
    const full = (alice.peer.only() as Msg<"history">).messages.map((m) => m.seq);
    assert.deepEqual([full.length, full[0], full[499]], [500, 121, 620]);
    // Items carry the stored envelope.
    await t.handle(alice, { type: "history", before_seq: 2, limit: 1 });
    const item = (alice.peer.only() as Msg<"history">).messages[0];
    assert.deepEqual(item, { seq: 1, sent_at: 1, envelope: JSON.parse(store.recent("general", 620)[0].envelope) });
  }, { store, history: 0 });
});

Deno.test("hub catches up with since after_seq, oldest first, including messages sent in the same turn", async () => {
  const store = Store.open(":memory:");
  store.appendBatch(fakeRows(600));
  await withHub(async (t) => {
    const alice = await member(t, "alice");
    const bob = await member(t, "bob");
    const since = async (after_seq: number, limit?: number) => {
      bob.peer.takeAll("message");
      await t.handle(bob, limit === undefined ? { type: "since", after_seq } : { type: "since", after_seq, limit });
      const reply = bob.peer.take("since");
      assert.deepEqual([reply.room, reply.after_seq], ["general", after_seq]);
      return { seqs: reply.messages.map((m) => m.seq), more: reply.more };
    };
    assert.deepEqual(await since(595), { seqs: [596, 597, 598, 599, 600], more: false });
    assert.deepEqual(await since(10, 3), { seqs: [11, 12, 13], more: true });
    const all = await since(0);
    assert.deepEqual([all.seqs.length, all.seqs[0], all.seqs[499], all.more], [500, 1, 500, true]);
    assert.deepEqual((await since(0, 9999)).seqs.length, 500, "the limit is at most 500");
    assert.deepEqual(await since(600), { seqs: [], more: false });
    // A message sent in this very turn is stored before since answers, so a reconnecting client misses nothing.
    const envelope = await seal(alice, "just now");
    await t.handle(alice, { type: "send", envelope });
    assert.deepEqual(await since(600), { seqs: [601], more: false });
    await tick();
    assert.deepEqual(alice.peer.take("ack"), { type: "ack", id: envelope.id, seq: 601 });
  }, { store, history: 0 });
});

Deno.test("hub keeps a joined, history or since reply within its byte budget and says more", async () => {
  const store = Store.open(":memory:");
  // Envelopes of about 130 KB: the budget fits 3 of them.
  store.appendBatch(fakeRows(8, { ctBytes: 97_536 }));
  const size = store.recent("general", 1)[0].envelope.length;
  const fit = Math.floor(REPLY_BUDGET / (size + 40));
  assert.ok(fit >= 2 && fit < 8, `fit ${fit}`);
  await withHub(async (t) => {
    const alice = await t.hello("alice");
    const joined = await join(t, alice, "general") as Msg<"joined">;
    assert.deepEqual(joined.history.map((m) => m.seq), Array.from({ length: fit }, (_, k) => 8 - fit + 1 + k));
    await t.handle(alice, { type: "history", before_seq: 100, limit: 500 });
    const history = alice.peer.only() as Msg<"history">;
    assert.equal(history.messages.length, fit);
    assert.equal(history.messages.at(-1)!.seq, 8);
    assert.equal(history.more, true);
    await t.handle(alice, { type: "since", after_seq: 0 });
    const since = alice.peer.only() as Msg<"since">;
    assert.deepEqual(since.messages.map((m) => m.seq), Array.from({ length: fit }, (_, k) => k + 1));
    assert.equal(since.more, true);
  }, { store, history: 50 });
});

Deno.test("hub answers ping with pong and bye by closing with quit", () =>
  withHub(async (t) => {
    const alice = await t.hello("alice");
    await t.handle(alice, { type: "ping", data: "42" });
    assert.deepEqual(alice.peer.only(), { type: "pong", data: "42" });
    await t.handle(alice, { type: "ping" });
    assert.deepEqual(alice.peer.only(), { type: "pong" });
    await t.handle(alice, { type: "pong" });
    assert.deepEqual(alice.peer.inbox, []);
    await t.handle(alice, { type: "bye", reason: "done" });
    assert.equal(alice.peer.closed?.reason, "quit");
  }));

Deno.test("hub shutdown stores what is pending, acks it, and closes every member with shutting_down", () =>
  withHub(async (t) => {
    const alice = await member(t, "alice");
    const bob = await member(t, "bob");
    const eve = await t.hello("eve");
    const envelope = await seal(alice, "last words");
    await t.handle(alice, { type: "send", envelope });
    t.hub.shutdown();
    assert.deepEqual(storedIds(t.store, "general"), [envelope.id]);
    assert.deepEqual(alice.peer.take("ack"), { type: "ack", id: envelope.id, seq: 1 });
    assert.equal(bob.peer.take("message").envelope.id, envelope.id);
    for (const c of [alice, bob, eve]) assert.equal(c.peer.closed?.reason, "shutting_down");
  }));

Deno.test("hub sends nothing to a member that left while its proof was being checked", () =>
  withHub(async (t) => {
    const alice = await member(t, "alice");
    const bob = await t.hello("bob");
    await t.handle(bob, { type: "join", room: "general" });
    const challenge = bob.peer.take("challenge");
    const keys = await keysFor(PASSPHRASE, Uint8Array.fromBase64(challenge.salt!), challenge.iterations!);
    const proof = await signJoinProof(keys, {
      nonce: Uint8Array.fromBase64(challenge.nonce),
      room: "general",
      nick: "bob",
    });
    const pending = t.hub.handle(bob.member, { type: "prove", room: "general", proof: proof.toBase64() });
    t.hub.detach(bob.member);
    await pending;
    assert.deepEqual(bob.peer.inbox, []);
    assert.deepEqual(alice.peer.inbox, [], "no presence for a member that is gone");
    assert.equal(t.hub.size, 1);
  }));

const UNLIMITED_ROOMS: RoomLimits = { maxRooms: 1000, createPerHour: 0, createBurst: 1, quotaBytes: 2 ** 40 };

Deno.test("hub refuses to create rooms beyond --max-rooms, at join already, and joining existing rooms still works", () =>
  withHub(async (t) => {
    const alice = await t.hello("alice");
    for (const room of ["one", "two"]) assert.equal((await join(t, alice, room)).type, "joined");
    await t.handle(alice, { type: "join", room: "three" });
    const refused = alice.peer.only() as Msg<"error">;
    assert.equal(refused.code, "room_limit");
    assert.match(refused.message, /room three cannot be created: the server already holds its 2 rooms \(--max-rooms\)/);
    assert.equal(t.store.getRoom("three"), undefined);
    assert.equal((await join(t, alice, "one")).type, "joined", "an existing room can still be joined");
    assert.equal(alice.peer.closed, undefined);
  }, { rooms: { ...UNLIMITED_ROOMS, maxRooms: 2 } }));

Deno.test("hub limits how many rooms one connection and one address create, and says when to try again", () =>
  withHub(async (t) => {
    const mallory = await t.hello("mallory", "192.0.2.66");
    for (const room of ["m1", "m2", "m3"]) assert.equal((await join(t, mallory, room)).type, "joined");
    await t.handle(mallory, { type: "join", room: "m4" });
    const limited = mallory.peer.only() as Msg<"error">;
    assert.equal(limited.code, "create_limited");
    assert.match(limited.message, /too many rooms were created from this connection/);
    assert.ok(limited.retry_after_ms! > 0 && limited.retry_after_ms! <= 3_600_000 / 60 + 1000);
    // Another connection from the same address: the address's budget is spent too.
    const again = await t.hello("mallory2", "192.0.2.66");
    await t.handle(again, { type: "join", room: "m5" });
    assert.match((again.peer.only() as Msg<"error">).message, /from your address/);
    // Another address, and an exempt one, are not affected; joining existing rooms never is.
    const bob = await t.hello("bob", "198.51.100.7");
    assert.equal((await join(t, bob, "b1")).type, "joined");
    assert.equal((await join(t, again, "m1")).type, "joined");
    const local = await t.hello("local", "127.0.0.1");
    const trusted = await t.hello("trusted", "127.0.0.1");
    for (const room of ["l1", "l2", "l3"]) assert.equal((await join(t, local, room)).type, "joined");
    for (const room of ["l4", "l5", "l6"]) assert.equal((await join(t, trusted, room)).type, "joined");
    assert.ok(t.logs.some((l) => /limit remote=192\.0\.2\.66:\d+ nick=mallory limit=room_create_rate room=m4/.test(l)));
  }, { rooms: { ...UNLIMITED_ROOMS, createPerHour: 60, createBurst: 3, exempt: (host) => host === "127.0.0.1" } }));

Deno.test("hub refuses a message that would take a room past --room-quota with room_full, and stores nothing of it", () =>
  withHub(async (t) => {
    const alice = await member(t, "alice");
    const bob = await member(t, "bob");
    alice.peer.takeAll("presence");
    const stored: string[] = [];
    let refused: Msg<"error"> | undefined;
    for (let i = 0; i < 20 && refused === undefined; i++) {
      const envelope = await seal(alice, `message ${i} ${"x".repeat(300)}`);
      await t.handle(alice, { type: "send", envelope });
      await tick();
      const reply = alice.peer.inbox.shift()!;
      if (reply.type === "ack") stored.push(envelope.id);
      else refused = reply as Msg<"error">;
    }
    assert.ok(refused, "the cap was never reached");
    assert.equal(refused.code, "room_full");
    assert.match(refused.message, /room general holds its 4000 bytes \(--room-quota\)/);
    assert.ok(stored.length >= 3 && stored.length < 20, `${stored.length} stored`);
    assert.ok(t.store.roomBytes("general") <= 4000);
    assert.deepEqual(storedIds(t.store, "general"), stored);
    assert.deepEqual(bob.peer.takeAll("message").map((m) => m.envelope.id), stored, "nothing refused is relayed");
    // Several in one turn are counted together: the cap holds within a batch too.
    const batch = await Promise.all(Array.from({ length: 5 }, (_, i) => seal(bob, `batch ${i}`)));
    for (const envelope of batch) await t.handle(bob, { type: "send", envelope });
    await tick();
    assert.ok(t.store.roomBytes("general") <= 4000);
  }, { rooms: { ...UNLIMITED_ROOMS, quotaBytes: 4000 } }));
