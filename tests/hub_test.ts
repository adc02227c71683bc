/**
 * The chat core in-process: a Hub over an in-memory Store, driven with parsed messages from fake peers that record
 * every frame they are sent. No sockets: this is where the opening (server key, login, registry), the room, proof,
 * fan-out, history and presence rules, and several rooms per connection are checked message by message.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { decodeBase64 } from "../lib/base64.ts";
import {
  deriveRoomKeys,
  makeSalt,
  openEnvelope,
  type RoomKeys,
  sealEnvelope,
  signEd25519,
  signJoinProof,
  verifyEd25519,
} from "../lib/crypto.ts";
import { type DirectEnvelope, openDirect, sealDirect } from "../lib/direct.ts";
import { type Envelope, serializeEnvelope } from "../lib/envelope.ts";
import { generateIdentitySecrets, importIdentity, loginInput, serverInput, signRotation } from "../lib/identity.ts";
import {
  type ClientMessage,
  helloMessage,
  proveMessage,
  type ServerLimits,
  type ServerMessageOf as Msg,
} from "../lib/protocol.ts";
import { Hub, type HubOptions, MAX_DENIED, REPLY_BUDGET, type RoomLimits } from "../lib/server/hub.ts";
import { Logger } from "../lib/server/log.ts";
import type { RegistryOptions } from "../lib/server/registry.ts";
import { type MessageRow, Store } from "../lib/server/store.ts";
import { deliver, FakePeer, type HubClient, joinHub, openHubClient } from "./support/hub_peer.ts";
import { testIdentity } from "./support/wire.ts";

const LIMITS: ServerLimits = {
  max_frame: 65536,
  max_body: 16384,
  history: 50,
  history_page: 500,
  rate: 20,
  burst: 40,
  send_queue: 1048576,
  idle_timeout_ms: 120000,
  max_rooms: 4,
};
const PASSPHRASE = "hub test passphrase";
const ITERATIONS = 100_000;
const CLOCK = 1_700_000_123_456;

/** One connected test client. */
type Client = HubClient;

interface TestHub {
  hub: Hub;
  store: Store;
  logs: string[];
  /** Logs in (asserting the welcome). */
  hello(nick: string, host?: string): Promise<Client>;
  handle(client: Client, msg: ClientMessage): Promise<void>;
}

const keyCache = new Map<string, Promise<RoomKeys>>();
function keysFor(passphrase: string, salt: Uint8Array, iterations: number): Promise<RoomKeys> {
  const id = `${passphrase}/${salt.toHex()}/${iterations}`;
  if (!keyCache.has(id)) keyCache.set(id, deriveRoomKeys(passphrase, { salt, iterations }));
  return keyCache.get(id)!;
}

/** Lets the hub's end-of-turn flush run (it is scheduled with setImmediate). */
function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Runs a test against a fresh hub and in-memory store, closing the store afterwards. */
async function withHub(
  fn: (t: TestHub) => Promise<void>,
  options: {
    history?: number;
    store?: Store;
    rooms?: RoomLimits;
    registry?: RegistryOptions;
    direct?: HubOptions["direct"];
    now?: () => number;
  } = {},
): Promise<void> {
  const store = options.store ?? Store.open(":memory:");
  const logs: string[] = [];
  const hub = new Hub(store, {
    limits: { ...LIMITS, history: options.history ?? LIMITS.history },
    version: "9.9.9",
    log: new Logger({ level: "debug", sink: (line) => logs.push(line) }),
    now: options.now ?? (() => CLOCK),
    rooms: options.rooms,
    registry: options.registry,
    direct: options.direct,
  });
  const t: TestHub = {
    hub,
    store,
    logs,
    async handle(client, msg) {
      await hub.handle(client.member, msg);
    },
    async hello(nick, host = "127.0.0.1") {
      const { client, reply } = await openHubClient(hub, nick, { remote: `${host}:${40000 + logs.length}` });
      assert.equal(reply.type, "welcome", JSON.stringify(reply));
      client.peer.drain();
      return client;
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
function join(
  t: TestHub,
  client: Client,
  room: string,
  passphrase = PASSPHRASE,
): Promise<Msg<"joined"> | Msg<"error">> {
  return joinHub(t.hub, client, room, passphrase);
}

/** Connects and joins; asserts the join succeeded. */
async function member(t: TestHub, nick: string, room = "general"): Promise<Client> {
  const client = await t.hello(nick);
  const reply = await join(t, client, room);
  assert.equal(reply.type, "joined", JSON.stringify(reply));
  return client;
}

/** The one room a client joined last (most tests use one room). */
function roomOf(client: Client): string {
  return [...client.rooms.keys()].at(-1)!;
}

function seal(client: Client, body: string, options: { room?: string; from?: string; id?: Uint8Array } = {}) {
  const room = options.room ?? roomOf(client);
  return sealEnvelope(client.rooms.get(room) ?? client.rooms.get(roomOf(client))!, {
    room,
    from: options.from ?? client.nick,
    plaintext: { type: "text", body },
    id: options.id,
    v: 2,
  });
}

async function say(
  t: TestHub,
  client: Client,
  body: string,
  options: { room?: string } = {},
): Promise<{ envelope: Envelope; seq: number }> {
  const envelope = await seal(client, body, options);
  await t.handle(client, { type: "send", envelope });
  await tick();
  const ack = client.peer.take("ack");
  assert.equal(ack.id, envelope.id);
  return { envelope, seq: ack.seq };
}

function storedIds(store: Store, room: string): string[] {
  return store.after(room, { afterSeq: 0, limit: 10_000 }).map((m) => JSON.parse(m.envelope).id);
}

function keyOf(client: Client): string {
  return client.identity.publicKey.toBase64();
}

function errorCode(client: Client): string | undefined {
  const reply = client.peer.only();
  return reply.type === "error" ? reply.code : `not an error: ${JSON.stringify(reply)}`;
}

// ---------------------------------------------------------------------------------------------------------------
// The opening: server key, login, registry.

Deno.test("hub answers hello with its key and a signature over both nonces, then welcomes a login", () =>
  withHub(async (t) => {
    const peer = new FakePeer();
    const m = t.hub.attach(peer, "127.0.0.1:1");
    const clientNonce = crypto.getRandomValues(new Uint8Array(32));
    await t.hub.handle(m, helloMessage(clientNonce));
    const server = peer.only() as Msg<"server">;
    assert.deepEqual([server.type, server.server, server.server_version, server.version], [
      "server",
      "aeschat",
      "9.9.9",
      2,
    ]);
    const serverPub = decodeBase64(server.key, { length: 32 });
    const serverNonce = decodeBase64(server.nonce, { length: 32 });
    const signature = decodeBase64(server.signature, { length: 64 });
    assert.ok(await verifyEd25519(serverPub, { input: serverInput({ clientNonce, serverNonce }), signature }));
    // The server key is the one kept in the database, the same for every connection; the nonce is fresh.
    const again = new FakePeer();
    await t.hub.handle(t.hub.attach(again, "127.0.0.1:2"), helloMessage(clientNonce));
    const second = again.only() as Msg<"server">;
    assert.equal(second.key, server.key);
    assert.notEqual(second.nonce, server.nonce);

    const alice = await testIdentity("alice");
    const input = loginInput({ serverPub, serverNonce, clientNonce, identityPub: alice.publicKey, nick: "alice" });
    await deliver(t.hub, m, {
      type: "login",
      nick: "alice",
      key: alice.publicKey.toBase64(),
      kx: alice.kxPublic.toBase64(),
      kx_sig: alice.kxSignature.toBase64(),
      signature: (await signEd25519(alice.signKey, input)).toBase64(),
    });
    assert.deepEqual(peer.only(), { type: "welcome", nick: "alice", registered: true, limits: LIMITS, direct_seq: 0 });
    for (
      const msg of [helloMessage(clientNonce), { type: "login", nick: "x", key: "", kx: "", kx_sig: "", signature: "" }]
    ) {
      await t.hub.handle(m, msg as ClientMessage);
      assert.equal(errorCode({ peer } as Client), "bad_message", `a second ${msg.type}`);
    }
    assert.equal(peer.closedReason(), "bad_message");
    assert.ok(t.logs.every((l) => !l.includes(server.key)), "the server key is not logged");
  }));

Deno.test("hub refuses anything before login, an opening out of order, another version, malformed fields", () =>
  withHub(async (t) => {
    const b64 = (n: number) => new Uint8Array(n).fill(9).toBase64();
    const login = { type: "login", nick: "alice", key: b64(32), kx: b64(32), kx_sig: b64(64), signature: b64(64) };
    const cases: [object[], string][] = [
      [[{ type: "who", room: "general" }], "not_ready"],
      [[{ type: "join", room: "general" }], "not_ready"],
      [[{ type: "rooms" }], "not_ready"],
      [[login], "bad_message"],
      [[{ type: "hello", version: 3, nonce: b64(32) }], "version_unsupported"],
      [[{ type: "hello", version: 2, nonce: b64(31) }], "bad_message"],
      [[helloMessage(new Uint8Array(32)), helloMessage(new Uint8Array(32))], "bad_message"],
      [[helloMessage(new Uint8Array(32)), { type: "join", room: "general" }], "not_ready"],
      [[helloMessage(new Uint8Array(32)), { ...login, key: b64(31) }], "bad_message"],
      [[helloMessage(new Uint8Array(32)), { ...login, signature: "not base64" }], "bad_message"],
      [[helloMessage(new Uint8Array(32)), { ...login, nick: "a b" }], "nick_invalid"],
      [[helloMessage(new Uint8Array(32)), { ...login, nick: "x".repeat(33) }], "nick_invalid"],
      [[helloMessage(new Uint8Array(32)), { ...login, nick: "e\u0301" }], "nick_invalid"],
      [[helloMessage(new Uint8Array(32)), { ...login, nick: "pаypal" /* Cyrillic а */ }], "nick_invalid"],
      [[helloMessage(new Uint8Array(32)), login], "bad_signature"],
    ];
    for (const [msgs, code] of cases) {
      const peer = new FakePeer();
      const m = t.hub.attach(peer, "127.0.0.1:1");
      for (const msg of msgs) {
        await deliver(t.hub, m, msg).catch((err) => {
          // A message the parser refuses is answered by the connection, as the wire would.
          peer.inbox.push({ type: "error", code: err.code, message: err.message });
          peer.close(err.code);
        });
      }
      const error = peer.inbox.at(-1) as Msg<"error">;
      assert.deepEqual([error.type, error.code], ["error", code], JSON.stringify(msgs));
      assert.equal(peer.closed?.reason, code, JSON.stringify(msgs));
      t.hub.detach(m);
    }
    assert.equal(t.hub.size, 0);
    assert.equal(t.hub.registry.find("alice"), undefined, "nothing was registered");
  }));

Deno.test("hub refuses a login signature made for another connection, another server, another nick, or a bad kx_sig", () =>
  withHub(async (t) => {
    const alice = await testIdentity("alice");
    const other = await importIdentity(generateIdentitySecrets());
    // Each case signs something else than this connection's login input.
    const wrong: [string, (input: Uint8Array, server: Msg<"server">) => Promise<Uint8Array>][] = [
      ["stale nonces", async (input) => {
        const stale = input.slice();
        stale.fill(7, 17 + 32, 17 + 64); // the server nonce of another connection
        return await signEd25519(alice.signKey, stale);
      }],
      ["another server key", async (input) => {
        const forged = input.slice();
        forged.set(other.publicKey, 17);
        return await signEd25519(alice.signKey, forged);
      }],
      [
        "another nick",
        (input) =>
          signEd25519(alice.signKey, new Uint8Array([...input.slice(0, -5), ...new TextEncoder().encode("bobby")])),
      ],
      ["another identity key", (input) => signEd25519(other.signKey, input)],
      ["a good signature, but the kx key signed by another identity", (input) => signEd25519(alice.signKey, input)],
    ];
    for (const [label, sign] of wrong) {
      const peer = new FakePeer();
      const m = t.hub.attach(peer, "127.0.0.1:3");
      const identity = label.startsWith("a good") ? { ...alice, kxSignature: other.kxSignature } : alice;
      const nonce = crypto.getRandomValues(new Uint8Array(32));
      await t.hub.handle(m, helloMessage(nonce));
      const server = peer.take("server");
      const input = loginInput({
        serverPub: decodeBase64(server.key),
        serverNonce: decodeBase64(server.nonce),
        clientNonce: nonce,
        identityPub: identity.publicKey,
        nick: "alice",
      });
      await deliver(t.hub, m, {
        type: "login",
        nick: "alice",
        key: identity.publicKey.toBase64(),
        kx: identity.kxPublic.toBase64(),
        kx_sig: identity.kxSignature.toBase64(),
        signature: (await sign(input, server)).toBase64(),
      });
      assert.equal(errorCode({ peer } as Client), "bad_signature", label);
      assert.equal(peer.closedReason(), "bad_signature", label);
      t.hub.detach(m);
    }
    assert.equal(t.hub.registry.find("alice"), undefined, "no refused login registered anything");
    // The right signature on a fresh connection is welcome.
    assert.equal((await t.hello("alice")).nick, "alice");
  }));

Deno.test("hub binds a nick to the first key, by fold: another key is refused in any spelling or lookalike", () =>
  withHub(async (t) => {
    const alice = await t.hello("Alice");
    const mallory = await testIdentity("mallory");
    for (const nick of ["Alice", "alice", "ALICE", "a1ice", "аӏісе", /* all Cyrillic */ "ａｌｉｃｅ"]) {
      const { client, reply } = await openHubClient(t.hub, nick, { identity: mallory });
      assert.deepEqual([reply.type, reply.type === "error" && reply.code], ["error", "nick_registered"], nick);
      assert.match((reply as Msg<"error">).message, /registered to another identity key/);
      assert.equal(client.peer.closedReason(), "nick_registered", nick);
    }
    // The same key, from a second connection and in another spelling: welcome, under the canonical spelling.
    const { client: second, reply } = await openHubClient(t.hub, "ALICE", { identity: alice.identity });
    assert.deepEqual(reply, { type: "welcome", nick: "Alice", registered: false, limits: LIMITS, direct_seq: 0 });
    assert.equal(second.nick, "Alice");
    // After both leave, the nick stays registered to the key.
    t.hub.detach(alice.member);
    t.hub.detach(second.member);
    const later = await openHubClient(t.hub, "alice", { identity: mallory });
    assert.equal(later.reply.type === "error" && later.reply.code, "nick_registered");
    assert.deepEqual(t.hub.registry.find("aLiCe")?.key, alice.identity.publicKey);
    assert.ok(t.logs.some((l) => /login_refused .*code=nick_registered/.test(l)));
  }));

Deno.test("hub: a nick change is a registration: another key's nick is refused, a new one is registered", () =>
  withHub(async (t) => {
    await t.hello("alice");
    const bob = await t.hello("bob");
    for (const nick of ["Alice", "аlice" /* Cyrillic а */]) {
      await t.handle(bob, { type: "nick", new: nick });
      assert.equal(errorCode(bob), nick === "Alice" ? "nick_registered" : "nick_invalid", nick);
    }
    await t.handle(bob, { type: "nick", new: "bad nick" });
    assert.equal(errorCode(bob), "nick_invalid");
    assert.equal(bob.peer.closed, undefined, "a refused nick change keeps the connection");
    // A new nick is registered to bob's key; his old one stays his.
    await t.handle(bob, { type: "nick", new: "Bobby" });
    assert.deepEqual(bob.peer.only(), { type: "nick", old: "bob", new: "Bobby" });
    assert.deepEqual(t.hub.registry.find("bobby")?.key, bob.identity.publicKey);
    assert.deepEqual(t.hub.registry.find("bob")?.key, bob.identity.publicKey);
    // Back to the old nick in another spelling: the canonical one is used.
    await t.handle(bob, { type: "nick", new: "BOB" });
    assert.deepEqual(bob.peer.only(), { type: "nick", old: "Bobby", new: "bob" });
    const carol = await t.hello("carol");
    await t.handle(carol, { type: "nick", new: "BOBBY" });
    assert.equal(errorCode(carol), "nick_registered");
  }));

Deno.test("hub: two logins of different keys racing for one nick: exactly one is welcome", () =>
  withHub(async (t) => {
    const keys = await Promise.all(Array.from({ length: 6 }, () => importIdentity(generateIdentitySecrets())));
    const replies = await Promise.all(
      keys.map((identity, i) => openHubClient(t.hub, i % 2 === 0 ? "race" : "RACE", { identity })),
    );
    const welcomed = replies.filter((r) => r.reply.type === "welcome");
    assert.equal(welcomed.length, 1, JSON.stringify(replies.map((r) => r.reply.type)));
    assert.deepEqual(
      replies.filter((r) => r.reply.type === "error").map((r) => (r.reply as Msg<"error">).code),
      Array(5).fill("nick_registered"),
    );
    assert.deepEqual(t.hub.registry.find("race")?.key, welcomed[0].client.identity.publicKey);
  }));

Deno.test("hub: a rotation signed by the old key moves its nicks to the new key; a bad one changes nothing", () =>
  withHub(async (t) => {
    const old = await importIdentity(generateIdentitySecrets());
    const next = await importIdentity(generateIdentitySecrets());
    const first = await openHubClient(t.hub, "rose", { identity: old });
    assert.equal(first.reply.type, "welcome");
    await t.handle(first.client, { type: "nick", new: "rosa" });
    t.hub.detach(first.client.member);
    // A statement not signed by the old key (here: by the new one) is refused, and the nick stays the old key's.
    const forged = { ...(await signRotation(next, { newKey: next.publicKey, ts: 5 })), oldKey: old.publicKey };
    const bad = await openHubClient(t.hub, "rose", { identity: next, rotation: forged });
    assert.equal(bad.reply.type === "error" && bad.reply.code, "bad_rotation");
    assert.equal(bad.client.peer.closedReason(), "bad_rotation");
    assert.deepEqual(t.hub.registry.find("rose")?.key, old.publicKey);
    // The real statement moves both nicks.
    const rotation = await signRotation(old, { newKey: next.publicKey, ts: 1_700_000_002_000 });
    const good = await openHubClient(t.hub, "rose", { identity: next, rotation });
    assert.deepEqual(good.reply, { type: "welcome", nick: "rose", registered: false, limits: LIMITS, direct_seq: 0 });
    assert.deepEqual(t.hub.registry.find("rosa")?.key, next.publicKey);
    // The old key can no longer use them; lookup shows the new key and the statement that leads to it.
    const stale = await openHubClient(t.hub, "rosa", { identity: old });
    assert.equal(stale.reply.type === "error" && stale.reply.code, "nick_registered");
    await t.handle(good.client, { type: "lookup", nick: "ROSA" });
    assert.deepEqual(good.client.peer.take("identity"), {
      type: "identity",
      nick: "rosa",
      key: next.publicKey.toBase64(),
      kx: next.kxPublic.toBase64(),
      kx_sig: next.kxSignature.toBase64(),
      rotations: [{
        old: old.publicKey.toBase64(),
        new: next.publicKey.toBase64(),
        ts: 1_700_000_002_000,
        signature: rotation.signature.toBase64(),
      }],
    });
    await t.handle(good.client, { type: "lookup", nick: "nobody" });
    assert.equal(errorCode(good.client), "unknown_nick");
  }));

Deno.test("hub keeps no rotation statement from a key it never saw: a stranger cannot grow the rotations table at every login", () =>
  withHub(async (t) => {
    const mallory = await importIdentity(generateIdentitySecrets());
    const rotations = () =>
      Number((t.store.database.prepare("SELECT count(*) AS n FROM rotations").get() as { n: number }).n);
    for (let i = 0; i < 5; i++) {
      // Each login presents a statement from a brand-new key (made for the purpose, so it verifies).
      const stranger = await importIdentity(generateIdentitySecrets());
      const rotation = await signRotation(stranger, { newKey: mallory.publicKey, ts: 1_700_000_000_000 + i });
      const { client, reply } = await openHubClient(t.hub, "mallory", { identity: mallory, rotation });
      assert.equal(reply.type, "welcome");
      t.hub.detach(client.member);
    }
    assert.equal(rotations(), 0, "statements from keys this server never saw were kept");
    // A key the server knows (it logged in here), whose nick was released, still hands its statement on.
    const old = await importIdentity(generateIdentitySecrets());
    const first = await openHubClient(t.hub, "rose", { identity: old });
    t.hub.detach(first.client.member);
    t.hub.registry.release("rose");
    const next = await importIdentity(generateIdentitySecrets());
    const rotation = await signRotation(old, { newKey: next.publicKey, ts: 1_700_000_003_000 });
    const good = await openHubClient(t.hub, "rosa", { identity: next, rotation });
    assert.equal(good.reply.type, "welcome");
    assert.equal(rotations(), 1);
  }));

Deno.test("hub caps the nicks of one key at --max-nicks-per-key, at login and on nick change; reserved ones do not count", () =>
  withHub(async (t) => {
    const alice = await t.hello("alice");
    await t.handle(alice, { type: "nick", new: "ali" });
    assert.equal(alice.peer.only().type, "nick");
    await t.handle(alice, { type: "nick", new: "al" });
    const refused = alice.peer.only() as Msg<"error">;
    assert.equal(refused.code, "too_many_nicks");
    assert.match(refused.message, /holds 2 nicks \(--max-nicks-per-key 2\)/);
    assert.equal(alice.peer.closed, undefined);
    const { client, reply } = await openHubClient(t.hub, "alicia", { identity: alice.identity });
    assert.equal(reply.type === "error" && reply.code, "too_many_nicks");
    assert.equal(client.peer.closedReason(), "too_many_nicks");
    // Nicks it holds stay usable, in any spelling; a nick the operator reserved for it is extra.
    assert.equal((await openHubClient(t.hub, "ALICE", { identity: alice.identity })).reply.type, "welcome");
    t.hub.registry.reserve("alice_ops", alice.identity.publicKey);
    assert.equal((await openHubClient(t.hub, "alice_ops", { identity: alice.identity })).reply.type, "welcome");
  }, { registry: { maxNicksPerKey: 2 } }));

Deno.test("hub limits new registrations per address and hour; exempt addresses and known nicks are not limited", () => {
  let now = CLOCK;
  return withHub(async (t) => {
    const from = (host: string, nick: string) => openHubClient(t.hub, nick, { remote: `${host}:1234` });
    assert.equal((await from("192.0.2.9", "one")).reply.type, "welcome");
    assert.equal((await from("192.0.2.9", "two")).reply.type, "welcome");
    const third = await from("192.0.2.9", "three");
    assert.equal(third.reply.type === "error" && third.reply.code, "registration_limited");
    assert.match((third.reply as Msg<"error">).message, /--registrations-per-hour 2.*try again in 60 min/);
    // A nick change to a new nick is a registration too; logging in with a registered nick is not.
    const one = await from("192.0.2.9", "one");
    assert.equal(one.reply.type, "welcome");
    await t.handle(one.client, { type: "nick", new: "uno" });
    assert.equal(errorCode(one.client), "registration_limited");
    assert.equal((await from("198.51.100.1", "four")).reply.type, "welcome", "another address has its own budget");
    for (let i = 0; i < 5; i++) assert.equal((await from("127.0.0.1", `local${i}`)).reply.type, "welcome");
    now += 3_600_001;
    assert.equal((await from("192.0.2.9", "three")).reply.type, "welcome", "an hour later");
  }, { registry: { registrationsPerHour: 2 }, now: () => now });
});

Deno.test("hub lets another key take a nick unused for --nick-expiry, never one in use or reserved", () => {
  let now = CLOCK;
  return withHub(async (t) => {
    const mallory = await importIdentity(generateIdentitySecrets());
    const alice = await t.hello("alice");
    await t.hello("bob");
    t.hub.registry.reserve("carol", (await testIdentity("carol")).publicKey);
    now += 10 * 86_400_000;
    // Alice is still connected: her nick is in use and does not expire.
    assert.equal((await openHubClient(t.hub, "alice", { identity: mallory })).reply.type, "error");
    t.hub.detach(alice.member);
    const taken = await openHubClient(t.hub, "Alice", { identity: mallory });
    assert.deepEqual(taken.reply.type === "welcome" && [taken.reply.nick, taken.reply.registered], ["Alice", true]);
    assert.deepEqual(t.hub.registry.find("alice")?.key, mallory.publicKey);
    const stillReserved = await openHubClient(t.hub, "carol", {
      identity: await importIdentity(generateIdentitySecrets()),
    });
    assert.equal(stillReserved.reply.type === "error" && stillReserved.reply.code, "nick_registered");
    // Used within the period, a nick stays: bob logs in again, and ten days later it is still his.
    const bob = await openHubClient(t.hub, "bob");
    t.hub.detach(bob.client.member);
    now += 5 * 86_400_000;
    assert.equal((await openHubClient(t.hub, "bob", { identity: mallory })).reply.type, "error");
  }, { registry: { nickExpiryMs: 7 * 86_400_000, maxNicksPerKey: 5 }, now: () => now });
});

Deno.test("hub: a returning login writes nothing within the hour, its use is recorded after it, a changed kx is published", () => {
  let now = CLOCK;
  return withHub(async (t) => {
    // Rows written by this store's connection since it opened (INSERT, UPDATE and DELETE all count).
    const writes = () => Number((t.store.database.prepare("SELECT total_changes() AS n").get() as { n: number }).n);
    const secrets = generateIdentitySecrets();
    const phone = await importIdentity(secrets);
    const login = async (identity: typeof phone) => {
      const { client, reply } = await openHubClient(t.hub, "dana", { identity });
      assert.equal(reply.type, "welcome", JSON.stringify(reply));
      t.hub.detach(client.member);
    };
    await login(phone);
    const registered = t.hub.registry.find("dana")!;
    assert.equal(registered.usedAt, CLOCK);
    const before = writes();
    now += 59 * 60_000;
    await login(phone);
    await login(phone);
    assert.equal(writes(), before, "a returning login within the hour wrote to the database");
    assert.equal(t.hub.registry.find("dana")!.usedAt, CLOCK);
    // An hour after the last recorded use, the login records it (so expiry still sees a nick in use).
    now += 60_000;
    await login(phone);
    assert.equal(t.hub.registry.find("dana")!.usedAt, now);
    assert.equal(writes(), before + 1, "only the nick's last use is written");
    // The same identity key with a new key-agreement key (a reinstalled device): lookup answers the new one.
    const reinstalled = await importIdentity({ ...secrets, kxSecret: generateIdentitySecrets().kxSecret });
    assert.notDeepEqual(reinstalled.kxPublic, phone.kxPublic);
    await login(reinstalled);
    const published = t.hub.registry.lookup("dana")!;
    assert.deepEqual([published.kx, published.kxSig], [reinstalled.kxPublic, reinstalled.kxSignature]);
    assert.equal(writes(), before + 2);
  }, { now: () => now });
});

Deno.test("hub with registration closed admits only nicks registered or reserved to the key", () =>
  withHub(async (t) => {
    t.hub.registry.reserve("carol", (await testIdentity("carol")).publicKey);
    const bob = await openHubClient(t.hub, "bob");
    assert.equal(bob.reply.type === "error" && bob.reply.code, "registration_closed");
    assert.equal(bob.client.peer.closedReason(), "registration_closed");
    const carol = await openHubClient(t.hub, "Carol", { identity: await testIdentity("carol") });
    assert.deepEqual(carol.reply.type === "welcome" && [carol.reply.nick, carol.reply.registered], ["carol", false]);
    await t.handle(carol.client, { type: "nick", new: "caroline" });
    assert.equal(errorCode(carol.client), "registration_closed");
    const other = await openHubClient(t.hub, "carol", { identity: await importIdentity(generateIdentitySecrets()) });
    assert.equal(other.reply.type === "error" && other.reply.code, "nick_registered");
  }, { registry: { closed: true } }));

// ---------------------------------------------------------------------------------------------------------------
// Rooms.

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
      const opened = await openEnvelope(c.rooms.get("general")!, { envelope: msg.envelope, room: "general" });
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
    assert.equal(errorCode(mallory), "access_denied");

    const bob = await member(t, "bob");
    await say(t, alice, "after mallory");
    await say(t, bob, "bob too");
    const probes: ClientMessage[] = [
      { type: "who", room: "general" },
      { type: "history", room: "general", before_seq: 100, limit: 500 },
      { type: "since", room: "general", after_seq: 0 },
      { type: "part", room: "general" },
    ];
    for (const msg of probes) {
      await t.handle(mallory, msg);
      assert.equal(errorCode(mallory), "not_in_room", msg.type);
    }
    const forged = { ...(await seal(alice, "forged")), from: "mallory" };
    await t.handle(mallory, { type: "send", envelope: forged });
    await tick();
    const refused = mallory.peer.only() as Msg<"error">;
    assert.deepEqual([refused.code, refused.id], ["not_in_room", forged.id]);
    assert.equal(storedIds(t.store, "general").includes(forged.id), false);
    assert.deepEqual(
      mallory.peer.all.map((m) => m.type).filter((type) => type !== "error" && type !== "challenge"),
      ["server", "welcome"],
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

Deno.test("hub denies a join proof bound to another identity, another nick or another server key", () =>
  withHub(async (t) => {
    await member(t, "alice");
    const bob = await t.hello("bob");
    const other = await importIdentity(generateIdentitySecrets());
    const wrongBindings = [
      { label: "another identity", nick: "bob", serverPub: bob.serverPub, identityPub: other.publicKey },
      { label: "another nick", nick: "alice", serverPub: bob.serverPub, identityPub: bob.identity.publicKey },
      { label: "another server", nick: "bob", serverPub: other.publicKey, identityPub: bob.identity.publicKey },
    ];
    for (const w of wrongBindings) {
      await t.handle(bob, { type: "join", room: "general" });
      const challenge = bob.peer.take("challenge");
      const keys = await keysFor(PASSPHRASE, decodeBase64(challenge.salt!), challenge.iterations!);
      const proof = await signJoinProof(keys, {
        nonce: decodeBase64(challenge.nonce),
        room: "general",
        nick: w.nick,
        bind: { serverPub: w.serverPub, identityPub: w.identityPub },
      });
      await t.handle(bob, proveMessage("general", proof));
      assert.equal(errorCode(bob), "access_denied", w.label);
    }
    assert.equal((await join(t, bob, "general")).type, "joined", "bound to this connection, it is accepted");
  }));

Deno.test("hub creates a room only with valid parameters and a proof, once, and a challenge serves one prove", () =>
  withHub(async (t) => {
    const alice = await t.hello("alice");
    const salt = makeSalt();
    const keys = await keysFor(PASSPHRASE, salt, ITERATIONS);
    const bind = { serverPub: alice.serverPub, identityPub: alice.identity.publicKey };
    const fresh = async (room: string) => {
      await t.handle(alice, { type: "join", room });
      const challenge = alice.peer.take("challenge");
      assert.deepEqual(Object.keys(challenge).sort(), ["nonce", "room", "type"], "a new room's challenge has no salt");
      const nonce = decodeBase64(challenge.nonce);
      return (await signJoinProof(keys, { nonce, room, nick: "alice", bind })).toBase64();
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
    assert.equal(errorCode(alice), "access_denied");
    assert.equal(t.store.getRoom("newroom"), undefined);
    // Prove without a challenge, or for another room than the challenge.
    await t.handle(alice, { type: "prove", room: "newroom", proof: "x" });
    assert.equal(errorCode(alice), "no_challenge");
    const proof = await fresh("newroom");
    await t.handle(alice, { type: "prove", room: "otherroom", proof, ...good });
    assert.equal(errorCode(alice), "no_challenge");
    // The good creation, then the same proof again: the challenge was used up.
    const proof2 = await fresh("NewRoom");
    await t.handle(alice, { type: "prove", room: "NewRoom", proof: proof2, ...good });
    const joined = alice.peer.only() as Msg<"joined">;
    assert.deepEqual(joined, {
      type: "joined",
      room: "NewRoom",
      epoch: 0,
      members: [{ nick: "alice", key: keyOf(alice) }],
      history: [],
      latest_seq: 0,
    });
    assert.deepEqual(t.store.getRoom("newroom"), {
      name: "NewRoom",
      salt,
      iterations: ITERATIONS,
      accessPub: keys.accessPub,
      epoch: 0,
      createdAt: CLOCK,
    });
    await t.handle(alice, { type: "prove", room: "NewRoom", proof: proof2 });
    assert.equal(errorCode(alice), "no_challenge");
    // The challenge of an existing room carries its parameters and its canonical name, whatever the spelling asked.
    await t.handle(alice, { type: "join", room: "NEWROOM" });
    const challenge = alice.peer.take("challenge");
    assert.deepEqual(
      [challenge.room, challenge.salt, challenge.iterations, challenge.access_pub, challenge.epoch],
      ["NewRoom", salt.toBase64(), ITERATIONS, keys.accessPub.toBase64(), 0],
    );
    // Sending creation parameters for a room that exists is refused.
    await t.handle(alice, { type: "prove", room: "NewRoom", proof: proof2, ...good });
    assert.match((alice.peer.only() as Msg<"error">).message, /already exists/);
    // An invalid room name.
    await t.handle(alice, { type: "join", room: "two words" });
    assert.equal(errorCode(alice), "room_invalid");
    assert.equal(alice.peer.closed, undefined);
  }));

Deno.test("hub answers room_changed when a room, in any spelling, was created by someone else between challenge and prove", () =>
  withHub(async (t) => {
    const alice = await t.hello("alice");
    const bob = await t.hello("bob");
    await t.handle(alice, { type: "join", room: "race" });
    await t.handle(bob, { type: "join", room: "Race" });
    const create = async (client: Client, passphrase: string) => {
      const challenge = client.peer.take("challenge");
      const salt = makeSalt();
      const keys = await keysFor(passphrase, salt, ITERATIONS);
      const nonce = decodeBase64(challenge.nonce);
      const bind = { serverPub: client.serverPub, identityPub: client.identity.publicKey };
      const proof = await signJoinProof(keys, { nonce, room: challenge.room, nick: client.nick, bind });
      await t.handle(
        client,
        proveMessage(challenge.room, proof, { salt, iterations: ITERATIONS, accessPub: keys.accessPub }),
      );
      return keys;
    };
    const aliceKeys = await create(alice, "alice's passphrase");
    assert.equal(alice.peer.take("joined").room, "race");
    await create(bob, "bob's passphrase");
    assert.equal(errorCode(bob), "room_changed");
    assert.deepEqual(t.store.getRoom("RACE")?.accessPub, aliceKeys.accessPub, "the first creation stands");
    assert.equal(t.store.roomCount, 1);
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
    assert.deepEqual(joined.members, [{ nick: "alice", key: keyOf(alice) }, { nick: "bob", key: keyOf(bob) }]);
    assert.equal(joined.latest_seq, 6, "latest_seq is the server's highest seq, of any room");
    assert.deepEqual(
      joined.history,
      sent.slice(2).map((s) => ({ seq: s.seq, sent_at: CLOCK, envelope: s.envelope })),
    );
    const bodies = [];
    for (const item of joined.history) {
      bodies.push(
        (await openEnvelope(bob.rooms.get("general")!, { envelope: item.envelope, room: "general", from: "alice" }))
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

Deno.test("hub refuses an envelope for a room it is not in (or misspelt), from another nick, or repeated; stores none", () =>
  withHub(async (t) => {
    const alice = await member(t, "alice");
    const bob = await member(t, "bob");
    const dave = await member(t, "dave", "dev");
    alice.peer.takeAll("presence");
    const first = await say(t, alice, "the original");
    bob.peer.take("message");
    const devKeys = dave.rooms.get("dev")!;
    const cases: [Envelope, string][] = [
      [
        await sealEnvelope(devKeys, { room: "dev", from: "alice", plaintext: { type: "text", body: "x" }, v: 2 }),
        "not_in_room",
      ],
      [await seal(alice, "misspelt", { room: "General" }), "not_in_room"],
      [await seal(alice, "as bob", { from: "bob" }), "sender_mismatch"],
      [await seal(alice, "as nobody", { from: "nobody" }), "sender_mismatch"],
      [first.envelope, "duplicate_id"],
      [await seal(alice, "same id, new text", { id: decodeBase64(first.envelope.id) }), "duplicate_id"],
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
    assert.deepEqual(dave.peer.inbox, []);
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

Deno.test("hub sends presence with the key for join, part, leave and nick to the others in the room only", () =>
  withHub(async (t) => {
    const alice = await member(t, "alice");
    const dave = await member(t, "dave", "dev");
    const bob = await member(t, "bob");
    const key = keyOf(bob);
    assert.deepEqual(alice.peer.only(), { type: "presence", event: "join", room: "general", nick: "bob", key });
    assert.deepEqual(bob.peer.inbox, [], "no presence about oneself");
    await t.handle(bob, { type: "nick", new: "bobby" });
    assert.deepEqual(bob.peer.only(), { type: "nick", old: "bob", new: "bobby" });
    bob.nick = "bobby";
    assert.deepEqual(alice.peer.only(), {
      type: "presence",
      event: "nick",
      room: "general",
      nick: "bobby",
      key,
      old: "bob",
    });
    await t.handle(bob, { type: "part", room: "GENERAL" });
    assert.deepEqual(bob.peer.only(), { type: "parted", room: "general" });
    assert.deepEqual(alice.peer.only(), { type: "presence", event: "leave", room: "general", nick: "bobby", key });
    assert.equal((await join(t, bob, "general")).type, "joined");
    alice.peer.take("presence");
    t.hub.detach(bob.member);
    assert.deepEqual(alice.peer.only(), { type: "presence", event: "leave", room: "general", nick: "bobby", key });
    assert.deepEqual(dave.peer.inbox, [], "another room hears nothing");
    // A nick change outside any room is answered but announced nowhere.
    const eve = await t.hello("eve");
    await t.handle(eve, { type: "nick", new: "eve2" });
    assert.deepEqual(eve.peer.only(), { type: "nick", old: "eve", new: "eve2" });
    assert.deepEqual([alice.peer.inbox, dave.peer.inbox], [[], []]);
  }));

Deno.test("hub answers who for a room this connection is in, and rooms with this connection's rooms and counts", () =>
  withHub(async (t) => {
    const eve = await t.hello("eve");
    await t.handle(eve, { type: "who", room: "general" });
    assert.equal(errorCode(eve), "not_in_room");
    assert.equal(eve.peer.closed, undefined);
    await t.handle(eve, { type: "rooms" });
    assert.deepEqual(eve.peer.only(), { type: "rooms", rooms: [] });

    const alice = await member(t, "alice");
    const bob = await member(t, "bob");
    const dave = await member(t, "dave", "dev");
    await member(t, "olga", "secret");
    alice.peer.takeAll("presence");
    await t.handle(alice, { type: "who", room: "GENERAL" });
    assert.deepEqual(alice.peer.only(), {
      type: "who",
      room: "general",
      members: [{ nick: "alice", key: keyOf(alice) }, { nick: "bob", key: keyOf(bob) }],
    });
    // A stranger learns nothing of the rooms, even after a failed proof.
    assert.equal((await join(t, eve, "general", "a guess")).type, "error");
    await t.handle(eve, { type: "rooms" });
    assert.deepEqual(eve.peer.only(), { type: "rooms", rooms: [] });
    await t.handle(alice, { type: "rooms" });
    assert.deepEqual(alice.peer.only(), { type: "rooms", rooms: [{ name: "general", count: 2 }] });
    await join(t, dave, "general");
    await t.handle(dave, { type: "rooms" });
    assert.deepEqual(dave.peer.take("rooms").rooms, [{ name: "dev", count: 1 }, { name: "general", count: 3 }]);
    await t.handle(dave, { type: "part", room: "dev" });
    await t.handle(dave, { type: "rooms" });
    assert.deepEqual(dave.peer.take("rooms").rooms, [{ name: "general", count: 3 }], "a room left is not listed");
    assert.equal(t.hub.unproven, 1, "eve is the only member that proved no room");
  }));

Deno.test("hub: a connection is in several rooms at once; join adds, part leaves, each room's messages stay in it", () =>
  withHub(async (t) => {
    const alice = await member(t, "alice");
    const bob = await member(t, "bob");
    const dave = await member(t, "dave", "dev");
    alice.peer.takeAll("presence");
    const joined = await join(t, alice, "dev") as Msg<"joined">;
    assert.deepEqual(joined.members.map((m) => m.nick), ["dave", "alice"]);
    assert.deepEqual(bob.peer.inbox, [], "joining dev does not leave general");
    assert.deepEqual(dave.peer.only(), {
      type: "presence",
      event: "join",
      room: "dev",
      nick: "alice",
      key: keyOf(alice),
    });
    await say(t, alice, "hello dev", { room: "dev" });
    assert.equal(dave.peer.take("message").envelope.room, "dev");
    assert.deepEqual(bob.peer.inbox, []);
    await say(t, alice, "hello general", { room: "general" });
    assert.equal(bob.peer.take("message").envelope.room, "general");
    assert.deepEqual(dave.peer.inbox, []);
    await say(t, bob, "to general");
    await say(t, dave, "to dev");
    assert.deepEqual(alice.peer.takeAll("message").map((m) => m.envelope.room), ["general", "dev"]);
    // Parting one room leaves the other; an envelope for the parted room is refused.
    await t.handle(alice, { type: "part", room: "dev" });
    assert.deepEqual(alice.peer.only(), { type: "parted", room: "dev" });
    assert.equal(dave.peer.take("presence").event, "leave");
    const stale = await seal(alice, "old room", { room: "dev" });
    await t.handle(alice, { type: "send", envelope: stale });
    assert.equal(errorCode(alice), "not_in_room");
    await t.handle(alice, { type: "part", room: "dev" });
    assert.equal(errorCode(alice), "not_in_room");
    await say(t, dave, "dev after alice left");
    assert.deepEqual(alice.peer.inbox, []);
    await say(t, alice, "still in general", { room: "general" });
    assert.equal(bob.peer.take("message").envelope.from, "alice");
  }));

Deno.test("hub caps the rooms of one connection at max_rooms (too_many_rooms at join and prove), and part frees one", () =>
  withHub(async (t) => {
    const alice = await t.hello("alice");
    for (const room of ["r1", "r2", "r3", "r4"]) assert.equal((await join(t, alice, room)).type, "joined", room);
    await t.handle(alice, { type: "join", room: "r5" });
    const refused = alice.peer.only() as Msg<"error">;
    assert.equal(refused.code, "too_many_rooms");
    assert.match(refused.message, /4 rooms already/);
    assert.equal(t.store.getRoom("r5"), undefined, "no room was created");
    assert.equal((await join(t, alice, "R2")).type, "joined", "a room it is in may be joined again");
    await t.handle(alice, { type: "part", room: "r1" });
    alice.peer.take("parted");
    assert.equal((await join(t, alice, "r5")).type, "joined");
    assert.equal(alice.peer.closed, undefined);
  }));

Deno.test("hub: two connections of one identity hold one nick: listed once, announced once, each sees the other's messages", () =>
  withHub(async (t) => {
    const bob = await member(t, "bob");
    const alice = await member(t, "alice");
    bob.peer.take("presence");
    const { client: phone, reply } = await openHubClient(t.hub, "alice", { identity: alice.identity });
    assert.equal(reply.type, "welcome");
    const joined = await join(t, phone, "general") as Msg<"joined">;
    assert.deepEqual(joined.members.map((m) => m.nick), ["bob", "alice"], "alice is listed once");
    assert.deepEqual([bob.peer.inbox, alice.peer.inbox], [[], []], "no second join presence");
    await t.handle(bob, { type: "rooms" });
    assert.deepEqual(bob.peer.take("rooms").rooms, [{ name: "general", count: 2 }]);
    // A message from one device reaches the other device (not the sending one) and bob.
    const sent = await say(t, alice, "from the laptop");
    assert.equal(phone.peer.take("message").envelope.id, sent.envelope.id);
    assert.equal(bob.peer.take("message").envelope.id, sent.envelope.id);
    assert.deepEqual(alice.peer.inbox, []);
    // The first device leaving announces nothing; the last one does.
    t.hub.detach(alice.member);
    assert.deepEqual(bob.peer.inbox, []);
    t.hub.detach(phone.member);
    assert.deepEqual(bob.peer.only(), {
      type: "presence",
      event: "leave",
      room: "general",
      nick: "alice",
      key: keyOf(alice),
    });
  }));

Deno.test("hub: a nick change by one of two devices shows as a join of the new nick, not a change", () =>
  withHub(async (t) => {
    const bob = await member(t, "bob");
    const alice = await member(t, "alice");
    const { client: phone } = await openHubClient(t.hub, "alice", { identity: alice.identity });
    await join(t, phone, "general");
    bob.peer.drain();
    const key = keyOf(alice);
    await t.handle(phone, { type: "nick", new: "ali" });
    assert.deepEqual(bob.peer.only(), { type: "presence", event: "join", room: "general", nick: "ali", key });
    await t.handle(alice, { type: "nick", new: "ali" });
    assert.deepEqual(bob.peer.only(), { type: "presence", event: "leave", room: "general", nick: "alice", key });
    await t.handle(bob, { type: "who", room: "general" });
    assert.deepEqual(bob.peer.take("who").members.map((m) => m.nick), ["bob", "ali"]);
  }));

function fakeRows(count: number, options: { room?: string; ctBytes?: number; firstSeq?: number } = {}): MessageRow[] {
  const room = options.room ?? "general";
  const rows: MessageRow[] = [];
  for (let i = 0; i < count; i++) {
    const seq = (options.firstSeq ?? 1) + i;
    const id = new Uint8Array(16);
    new DataView(id.buffer).setUint32(12, seq);
    const envelope: Envelope = {
      v: 2,
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
      await t.handle(alice, { type: "history", room: "general", before_seq, limit });
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
    await t.handle(alice, { type: "history", room: "General", before_seq: 2 ** 53 - 1 });
    const full = (alice.peer.only() as Msg<"history">).messages.map((m) => m.seq);
    assert.deepEqual([full.length, full[0], full[499]], [500, 121, 620]);
    // Items carry the stored envelope.
    await t.handle(alice, { type: "history", room: "general", before_seq: 2, limit: 1 });
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
      const room = "general";
      await t.handle(
        bob,
        limit === undefined ? { type: "since", room, after_seq } : { type: "since", room, after_seq, limit },
      );
      const reply = bob.peer.take("since");
      assert.deepEqual([reply.room, reply.after_seq, reply.pruned_through], ["general", after_seq, 0]);
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
    await t.handle(alice, { type: "history", room: "general", before_seq: 100, limit: 500 });
    const history = alice.peer.only() as Msg<"history">;
    assert.equal(history.messages.length, fit);
    assert.equal(history.messages.at(-1)!.seq, 8);
    assert.equal(history.more, true);
    await t.handle(alice, { type: "since", room: "general", after_seq: 0 });
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
      bind: { serverPub: bob.serverPub, identityPub: bob.identity.publicKey },
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
    assert.equal((await join(t, again, "M1")).type, "joined");
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

Deno.test("hub says in since how far retention removed a room's messages (pruned_through)", async () => {
  const store = Store.open(":memory:", { retention: { kind: "count", count: 3 } });
  await withHub(async (t) => {
    const alice = await member(t, "alice");
    store.appendBatch(fakeRows(10));
    await t.handle(alice, { type: "since", room: "general", after_seq: 0 });
    const since = alice.peer.take("since");
    assert.deepEqual([since.messages.map((m) => m.seq), since.pruned_through], [[8, 9, 10], 7]);
  }, { store, history: 0 });
});

// ---------------------------------------------------------------------------------------------------------------
// Direct messages.

/** Seals a direct message from one client to a nick, as the client would after a lookup. */
async function sealTo(
  t: TestHub,
  from: Client,
  to: string,
  body: string,
  options: { id?: Uint8Array } = {},
): Promise<{ envelope: DirectEnvelope; copy: DirectEnvelope }> {
  await t.handle(from, { type: "lookup", nick: to });
  const identity = from.peer.take("identity");
  return await sealDirect(from.identity, {
    serverPub: from.serverPub,
    from: from.nick,
    to: { nick: identity.nick, key: decodeBase64(identity.key), kx: decodeBase64(identity.kx) },
    content: { type: "text", body },
    id: options.id,
  });
}

function directMessage(to: string, sealed: { envelope: DirectEnvelope; copy: DirectEnvelope }): ClientMessage {
  return {
    type: "direct",
    to,
    envelope: sealed.envelope as unknown as Record<string, unknown>,
    copy: sealed.copy as unknown as Record<string, unknown>,
  };
}

Deno.test("hub stores a direct message as two rows, acks it, hands it to every recipient device and the copy to the sender's others", () =>
  withHub(async (t) => {
    const alice = await t.hello("alice");
    const alicePhone = (await openHubClient(t.hub, "alice", { identity: alice.identity })).client;
    const bob = await t.hello("bob");
    const bobPhone = (await openHubClient(t.hub, "bob", { identity: bob.identity })).client;
    const carol = await t.hello("carol");
    for (const c of [alicePhone, bobPhone]) c.peer.drain();
    const sealed = await sealTo(t, alice, "bob", "hi bob");
    await t.handle(alice, directMessage("bob", sealed));
    assert.deepEqual(alice.peer.inbox, [], "nothing before the commit");
    await tick();
    const ack = alice.peer.take("ack");
    assert.equal(ack.id, sealed.envelope.id);
    for (const device of [bob, bobPhone]) {
      const got = device.peer.take("direct");
      assert.deepEqual([got.envelope, got.sent_at, got.delivered], [sealed.envelope, CLOCK, true]);
      const opened = await openDirect(device.identity, { envelope: got.envelope, serverPub: device.serverPub });
      assert.deepEqual([opened.from, opened.body, opened.copy], ["alice", "hi bob", false]);
    }
    const copy = alicePhone.peer.take("direct");
    assert.deepEqual([copy.seq, copy.envelope, copy.delivered], [ack.seq, sealed.copy, true]);
    assert.equal(
      (await openDirect(alice.identity, { envelope: copy.envelope, serverPub: alice.serverPub })).copy,
      true,
    );
    for (const device of [alice, alicePhone]) assert.deepEqual(device.peer.only(), { type: "delivered", id: ack.id });
    assert.deepEqual([carol.peer.inbox, bob.peer.inbox, bobPhone.peer.inbox], [[], [], []], "nothing else, to anyone");
    const rows = t.store.database.prepare("SELECT recipient, envelope, delivered_at FROM direct ORDER BY seq")
      .all() as {
        recipient: Uint8Array;
        envelope: string;
        delivered_at: number;
      }[];
    assert.deepEqual(
      rows.map((r) => [new Uint8Array(r.recipient), JSON.parse(r.envelope), Number(r.delivered_at)]),
      [[bob.identity.publicKey, sealed.envelope, CLOCK], [alice.identity.publicKey, sealed.copy, CLOCK]],
    );
  }));

Deno.test("hub keeps a direct message for an offline recipient; direct_since hands it over and the sender hears delivered once", () =>
  withHub(async (t) => {
    const alice = await t.hello("alice");
    const bob = await t.hello("bob");
    t.hub.detach(bob.member);
    const ids: string[] = [];
    for (const body of ["one", "two", "three"]) {
      const sealed = await sealTo(t, alice, "bob", body);
      await t.handle(alice, directMessage("bob", sealed));
      ids.push(sealed.envelope.id);
    }
    await tick();
    assert.deepEqual(alice.peer.takeAll("ack").map((a) => a.id), ids);
    assert.deepEqual(alice.peer.inbox, [], "not delivered: nobody is there");
    const back = await openHubClient(t.hub, "bob");
    assert.equal(back.reply.type === "welcome" && back.reply.direct_seq, 5, "the newest seq of bob's inbox");
    await t.handle(back.client, { type: "direct_since", after_seq: 0, limit: 2 });
    const first = back.client.peer.take("direct_since");
    assert.deepEqual([first.messages.map((m) => m.envelope.id), first.messages.map((m) => m.delivered), first.more], [
      ids.slice(0, 2),
      [true, true],
      true,
    ]);
    assert.deepEqual(alice.peer.takeAll("delivered").map((d) => d.id), ids.slice(0, 2));
    await t.handle(back.client, { type: "direct_since", after_seq: 0 });
    const all = back.client.peer.take("direct_since");
    assert.deepEqual(all.messages.map((m) => m.envelope.id), ids);
    assert.deepEqual(alice.peer.takeAll("delivered").map((d) => d.id), [ids[2]], "delivered once per message");
    // The sender's inbox holds the copies, delivered now.
    await t.handle(alice, { type: "direct_since", after_seq: 0 });
    const copies = alice.peer.take("direct_since");
    assert.deepEqual(
      copies.messages.map((m) => [m.envelope.id, m.envelope.to, m.delivered]),
      ids.map((id) => [id, "bob", true]),
    );
  }));

Deno.test("hub refuses a direct that does not match its sender, recipient or copy, and stores nothing of it", () =>
  withHub(async (t) => {
    const alice = await t.hello("alice");
    const bob = await t.hello("bob");
    const carol = await t.hello("carol");
    const good = await sealTo(t, alice, "bob", "for bob");
    const toCarol = await sealTo(t, alice, "carol", "for carol");
    const other = await importIdentity(generateIdentitySecrets());
    const mallorys = await sealDirect(other, {
      serverPub: alice.serverPub,
      from: "alice",
      to: { nick: "bob", key: bob.identity.publicKey, kx: bob.identity.kxPublic },
      content: { type: "text", body: "as alice" },
    });
    const cases: [string, ClientMessage, string][] = [
      [
        "redirect: tokey is carol's key",
        directMessage("bob", { envelope: { ...toCarol.envelope, to: "bob" }, copy: { ...toCarol.copy, to: "bob" } }),
        "bad_direct",
      ],
      [
        "the copy differs",
        directMessage("bob", { envelope: good.envelope, copy: { ...good.copy, ts: good.copy.ts + 1 } }),
        "bad_direct",
      ],
      ["the copy is for carol", directMessage("bob", { envelope: good.envelope, copy: toCarol.copy }), "bad_direct"],
      ["to differs from envelope.to", directMessage("carol", good), "bad_direct"],
      [
        "to in another spelling",
        directMessage("BOB", { envelope: { ...good.envelope, to: "BOB" }, copy: { ...good.copy, to: "BOB" } }),
        "bad_direct",
      ],
      ["another identity's key as from", directMessage("bob", mallorys), "bad_direct"],
      [
        "another nick as from",
        directMessage("bob", { envelope: { ...good.envelope, from: "carol" }, copy: { ...good.copy, from: "carol" } }),
        "bad_direct",
      ],
      [
        "a kx that is not the published one",
        directMessage("bob", {
          envelope: { ...good.envelope, kx: other.kxPublic.toBase64() },
          copy: { ...good.copy, kx: other.kxPublic.toBase64() },
        }),
        "bad_direct",
      ],
      [
        "an unregistered recipient",
        directMessage("nobody", { envelope: { ...good.envelope, to: "nobody" }, copy: { ...good.copy, to: "nobody" } }),
        "unknown_nick",
      ],
      [
        "to oneself",
        directMessage("alice", {
          envelope: { ...good.envelope, to: "alice", tokey: keyOf(alice) },
          copy: { ...good.copy, to: "alice", tokey: keyOf(alice) },
        }),
        "bad_direct",
      ],
    ];
    for (const [label, msg, expected] of cases) {
      await t.handle(alice, msg);
      await tick();
      const error = alice.peer.only() as Msg<"error">;
      const id = (msg as unknown as { envelope: DirectEnvelope }).envelope.id;
      assert.deepEqual([error.code, error.id], [expected, id], label);
      assert.equal(alice.peer.closed, undefined, `${label}: the connection stays`);
    }
    assert.deepEqual([bob.peer.inbox, carol.peer.inbox], [[], []]);
    assert.equal(Number((t.store.database.prepare("SELECT count(*) AS n FROM direct").get() as { n: number }).n), 0);
    // The good one still goes through.
    await t.handle(alice, directMessage("bob", good));
    await tick();
    assert.equal(alice.peer.take("ack").id, good.envelope.id);
    assert.equal(bob.peer.take("direct").envelope.id, good.envelope.id);
  }));

Deno.test("hub refuses a direct past the sender's share, or past --direct-inbox waiting, with inbox_full; a repeated id with duplicate_id", () =>
  withHub(async (t) => {
    const alice = await t.hello("alice");
    const bob = await t.hello("bob");
    const carol = await t.hello("carol");
    const dave = await t.hello("dave");
    t.hub.detach(bob.member);
    const send = async (from: Client, body: string, options: { id?: Uint8Array } = {}) => {
      const sealed = await sealTo(t, from, "bob", body, options);
      await t.handle(from, directMessage("bob", sealed));
      await tick();
      const reply = from.peer.takeOf(["ack", "error"]);
      return reply.type === "ack" ? "ack" : `${(reply as Msg<"error">).code}: ${(reply as Msg<"error">).message}`;
    };
    // --direct-inbox 3: one sender's share is 1 (a tenth, at least one).
    assert.equal(await send(alice, "one"), "ack");
    assert.equal(
      await send(alice, "same id", { id: new Uint8Array(16).fill(1) }),
      "inbox_full: 1 of your messages " +
        "already wait for bob to come online (your share of bob's --direct-inbox): this one was not stored; send it " +
        "again once they are delivered",
    );
    assert.equal(await send(carol, "three", { id: new Uint8Array(16).fill(1) }), "ack");
    assert.match(await send(dave, "same id", { id: new Uint8Array(16).fill(1) }), /^duplicate_id/);
    assert.equal(await send(dave, "four"), "ack");
    const erin = await t.hello("erin");
    assert.equal(
      await send(erin, "five"),
      "inbox_full: bob has 3 messages waiting undelivered (--direct-inbox): " +
        "this one was not stored; send it again once they are delivered",
    );
    assert.ok(t.logs.some((l) => /limit .*limit=direct_inbox waiting=share/.test(l)));
    assert.ok(t.logs.some((l) => /limit .*limit=direct_inbox waiting=all/.test(l)));
    const count = t.store.database.prepare("SELECT count(*) AS n FROM direct WHERE recipient = ?");
    assert.equal(Number((count.get(bob.identity.publicKey) as { n: number }).n), 3);
    // Nobody else was cut off by it: alice, who waits in bob's inbox, still writes to carol.
    const sealed = await sealTo(t, alice, "carol", "hi carol");
    await t.handle(alice, directMessage("carol", sealed));
    await tick();
    assert.equal(alice.peer.takeOf(["ack", "error"]).type, "ack");
  }, { direct: { capacity: 3 } }));

Deno.test("hub keeps --direct-inbox rows per inbox by dropping the oldest delivered rows and own copies, never a waiting one", () =>
  withHub(async (t) => {
    const alice = await t.hello("alice");
    const bob = await t.hello("bob");
    const carol = await t.hello("carol");
    const rows = (client: Client) =>
      t.store.database.prepare(
        "SELECT sender = recipient AS copy, delivered_at IS NOT NULL AS delivered " +
          "FROM direct WHERE recipient = ? ORDER BY seq",
      ).all(client.identity.publicKey).map((r) => `${r.copy ? "copy" : "in"}${r.delivered ? "" : " waiting"}`);
    const send = async (from: Client, to: Client, body: string) => {
      const sealed = await sealTo(t, from, to.member.nick!, body);
      await t.handle(from, directMessage(to.member.nick!, sealed));
      await tick();
      const reply = from.peer.takeOf(["ack", "error"]);
      assert.equal(reply.type, "ack", JSON.stringify(reply));
      from.peer.drain();
      to.peer.drain();
    };
    // Alice and bob talk, both there: every row is delivered or a copy, so the oldest roll out.
    for (let i = 0; i < 3; i++) {
      await send(alice, bob, `q${i}`);
      await send(bob, alice, `a${i}`);
    }
    assert.deepEqual(rows(alice), ["in", "copy", "in"]);
    assert.deepEqual(rows(bob), ["copy", "in", "copy"]);
    // Carol writes to alice while she is away: what waits stays, the delivered rows go first.
    t.hub.detach(alice.member);
    await send(carol, alice, "c0");
    assert.deepEqual(rows(alice), ["copy", "in", "in waiting"]);
    await send(bob, alice, "b0");
    const dave = await t.hello("dave");
    await send(dave, alice, "d0");
    assert.deepEqual(rows(alice), ["in waiting", "in waiting", "in waiting"]);
    // Alice comes back and writes before she fetches: her copy is kept even so (a send never fails for it), and
    // her copies then roll among themselves.
    const back = await t.hello("alice");
    await send(back, carol, "x0");
    await send(back, carol, "x1");
    assert.deepEqual(rows(alice), ["in waiting", "in waiting", "in waiting", "copy"]);
    // Once she is handed them, they roll like the rest.
    await t.handle(back, { type: "direct_since", after_seq: 0 });
    assert.equal(back.peer.take("direct_since").messages.length, 4);
    await send(back, carol, "x2");
    assert.deepEqual(rows(alice), ["in", "copy", "copy"]);
  }, { direct: { capacity: 3 } }));

Deno.test("hub keeps each inbox to the newest N under a count retention", () =>
  withHub(async (t) => {
    const alice = await t.hello("alice");
    await t.hello("bob");
    const ids = [];
    for (let i = 0; i < 5; i++) {
      const sealed = await sealTo(t, alice, "bob", `m${i}`);
      await t.handle(alice, directMessage("bob", sealed));
      ids.push(sealed.envelope.id);
      await tick();
    }
    await t.handle(alice, { type: "direct_since", after_seq: 0 });
    assert.deepEqual(alice.peer.take("direct_since").messages.map((m) => m.envelope.id), ids.slice(3));
  }, { direct: { retention: { kind: "count", count: 2 } } }));
