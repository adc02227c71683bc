/**
 * Identities against the real server process, written as the attacks they must stop: a second identity taking a
 * registered nick in any spelling or lookalike (also after a restart), registration races from many connections at
 * once, a login signature replayed from an earlier connection or made for another server's key, a v1 client; and
 * what must keep working: the server key made once and kept, one identity on two connections.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { decodeBase64 } from "../lib/base64.ts";
import { signEd25519 } from "../lib/crypto.ts";
import { encodeMessage } from "../lib/frame.ts";
import { generateIdentitySecrets, importIdentity } from "../lib/identity.ts";
import { removeServer, startServer } from "./support/programs.ts";
import { closeAll, type Msg, testIdentity, WireClient } from "./support/wire.ts";

const PASSPHRASE = "identity test passphrase 5e1b";

/** Opens a connection and logs in; returns the client and the welcome or the refusal. */
async function logIn(
  port: number,
  nick: string,
  options: Parameters<WireClient["login"]>[1] = {},
): Promise<{ client: WireClient; reply: Msg<"welcome"> | Msg<"error"> }> {
  const client = await WireClient.connect(port);
  const reply = await client.login(nick, options);
  return { client, reply };
}

/** Asserts a refused login: the error code, then bye and a closed connection. */
async function assertRefused(
  attempt: { client: WireClient; reply: Msg<"welcome"> | Msg<"error"> },
  code: string,
  label: string,
): Promise<void> {
  assert.deepEqual([attempt.reply.type, attempt.reply.type === "error" && attempt.reply.code], ["error", code], label);
  await attempt.client.ended;
  assert.equal(attempt.client.inbox.find((m) => m.type === "bye")?.type, "bye", `${label}: bye before closing`);
}

Deno.test("a second identity cannot take a registered nick in any spelling or lookalike, before or after a restart", async () => {
  let server = await startServer();
  const clients: WireClient[] = [];
  try {
    const alice = await WireClient.member(server.port, "Alice", { passphrase: PASSPHRASE });
    clients.push(alice);
    const mallory = await importIdentity(generateIdentitySecrets());
    const spellings = ["Alice", "alice", "ALICE", "a1ice", "аӏісе", /* Cyrillic */ "ＡＬＩＣＥ", "Aｌice"];
    for (const nick of spellings) {
      await assertRefused(await logIn(server.port, nick, { identity: mallory }), "nick_registered", nick);
    }
    // Nor by changing nick once logged in under another name.
    const m = await logIn(server.port, "mallory", { identity: mallory });
    clients.push(m.client);
    for (const nick of spellings) {
      await m.client.send({ type: "nick", new: nick });
      const refused = await m.client.next("error");
      assert.ok(["nick_registered", "nick_invalid"].includes(refused.code), `${nick}: ${refused.code}`);
    }
    assert.ok(!m.client.closed, "a refused nick change keeps the connection");
    // Alice's conversation is untouched, and nobody else's message ever came from "Alice".
    const bob = await WireClient.member(server.port, "bob", { passphrase: PASSPHRASE });
    clients.push(bob);
    const envelope = await alice.seal("still me");
    await alice.send({ type: "send", envelope });
    await alice.awaitAck(envelope.id);
    assert.equal((await bob.next("message")).envelope.from, "Alice");

    // The registration is in the database: after a restart the nick is still alice's key's alone.
    await closeAll(clients.splice(0));
    await server.program.stop();
    server = await startServer({ db: server.db });
    for (const nick of ["alice", "ALICE"]) {
      await assertRefused(
        await logIn(server.port, nick, { identity: mallory }),
        "nick_registered",
        `${nick} after restart`,
      );
    }
    const back = await logIn(server.port, "alice", { identity: await testIdentity("Alice") });
    clients.push(back.client);
    assert.deepEqual(back.reply.type === "welcome" && [back.reply.nick, back.reply.registered], ["Alice", false]);
    assert.doesNotMatch(server.program.stderr, /internal|connection_failed/);
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});

Deno.test("many connections with different keys racing for one nick: one registers it, the others are refused", async () => {
  const server = await startServer();
  const clients: WireClient[] = [];
  let db: DatabaseSync | undefined;
  try {
    const keys = await Promise.all(Array.from({ length: 12 }, () => importIdentity(generateIdentitySecrets())));
    const attempts = await Promise.all(
      keys.map((identity, i) => logIn(server.port, ["carol", "Carol", "CAROL", "caro1"][i % 4], { identity })),
    );
    clients.push(...attempts.map((a) => a.client));
    const welcomed = attempts.filter((a) => a.reply.type === "welcome");
    assert.equal(welcomed.length, 1, attempts.map((a) => a.reply.type).join(" "));
    for (const a of attempts.filter((a) => a.reply.type === "error")) {
      await assertRefused(a, "nick_registered", "racer");
    }
    // The winner keeps it; the database holds one registration, to the winner's key.
    const winner = keys[attempts.indexOf(welcomed[0])];
    await closeAll(clients);
    await server.program.stop();
    db = new DatabaseSync(server.db, { readOnly: true });
    const rows = db.prepare("SELECT fold, identity FROM nicks").all() as { fold: string; identity: Uint8Array }[];
    assert.deepEqual(rows.map((r) => [r.fold, new Uint8Array(r.identity)]), [["carol", winner.publicKey]]);
  } finally {
    db?.close();
    await closeAll(clients);
    await removeServer(server);
  }
});

Deno.test("a login signature replayed from an earlier connection, or made for another server's key, is refused", async () => {
  const server = await startServer();
  const rogue = await startServer();
  const clients: WireClient[] = [];
  try {
    const alice = await testIdentity("alice");
    // Alice logs in once; an eavesdropper records her hello nonce and login signature.
    let recorded: Uint8Array | undefined;
    const clientNonce = crypto.getRandomValues(new Uint8Array(32));
    const first = await logIn(server.port, "alice", {
      clientNonce,
      sign: async (input) => recorded = await signEd25519(alice.signKey, input),
    });
    clients.push(first.client);
    assert.equal(first.reply.type, "welcome");
    first.client.close();
    await first.client.ended;
    // Replayed byte for byte on a new connection (same hello nonce, same signature): the server's nonce is new.
    await assertRefused(
      await logIn(server.port, "alice", { identity: alice, clientNonce, sign: () => Promise.resolve(recorded!) }),
      "bad_signature",
      "replayed login",
    );
    // A rogue server shows alice its own key with the real server's nonce, and forwards her hello nonce to the real
    // server: what alice signs is the real login input with the rogue's key in it, which the real server refuses.
    const probe = await WireClient.connect(rogue.port);
    clients.push(probe);
    await probe.send({ type: "hello", version: 2, nonce: new Uint8Array(32).toBase64() });
    const rogueKey = decodeBase64((await probe.next("server")).key);
    const serverKeyAt = new TextEncoder().encode("aeschat v2 login\0").length;
    await assertRefused(
      await logIn(server.port, "alice", {
        identity: alice,
        sign: (input) => {
          const shown = input.slice();
          shown.set(rogueKey, serverKeyAt);
          return signEd25519(alice.signKey, shown);
        },
      }),
      "bad_signature",
      "a signature for another server",
    );
    assert.match(server.program.stderr, /login_refused .*code=bad_signature/);
  } finally {
    await closeAll(clients);
    await removeServer(server);
    await removeServer(rogue);
  }
});

Deno.test("a v1 client is told its version is unsupported and closed; a v2 client gets the same server key every time", async () => {
  let server = await startServer();
  const clients: WireClient[] = [];
  try {
    const v1 = await WireClient.connect(server.port);
    clients.push(v1);
    await v1.writeRaw(encodeMessage({ type: "hello", version: 1, nick: "oldtimer" }));
    const error = await v1.next("error");
    assert.deepEqual([error.code, (await v1.next("bye")).reason], ["version_unsupported", "version_unsupported"]);
    assert.match(error.message, /version 2/);
    await v1.ended;

    const keyOf = async (port: number) => {
      const c = await WireClient.connect(port);
      clients.push(c);
      await c.hello(`k${clients.length}`);
      return c.serverPub.toBase64();
    };
    const key = await keyOf(server.port);
    assert.equal(await keyOf(server.port), key, "one key for every connection");
    await closeAll(clients.splice(0));
    await server.program.stop();
    server = await startServer({ db: server.db });
    assert.equal(await keyOf(server.port), key, "the key is kept in the database across restarts");
    const other = await startServer();
    try {
      assert.notEqual(await keyOf(other.port), key, "another database, another key");
    } finally {
      await closeAll(clients.splice(0));
      await removeServer(other);
    }
    const seed = () => {
      const db = new DatabaseSync(server.db, { readOnly: true });
      try {
        return (db.prepare("SELECT value FROM meta WHERE key = 'server_seed'").get() as { value: Uint8Array }).value;
      } finally {
        db.close();
      }
    };
    await server.program.stop();
    const bytes = new Uint8Array(seed());
    for (const form of [bytes.toHex(), bytes.toBase64(), key]) {
      assert.ok(!server.program.stderr.includes(form) && !server.program.stdout.includes(form), "key material logged");
    }
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});

Deno.test("one identity on two connections: one nick, listed once, each device gets the other's messages", async () => {
  const server = await startServer();
  const clients: WireClient[] = [];
  try {
    const bob = await WireClient.member(server.port, "bob", { passphrase: PASSPHRASE });
    const laptop = await WireClient.member(server.port, "alice", { passphrase: PASSPHRASE });
    clients.push(bob, laptop);
    assert.equal((await bob.next("presence")).nick, "alice");
    const phone = await WireClient.connect(server.port);
    clients.push(phone);
    const welcome = await phone.hello("ALICE", { identity: laptop.identity });
    assert.deepEqual([welcome.nick, welcome.registered], ["alice", false]);
    const joined = await phone.join("general", PASSPHRASE) as Msg<"joined">;
    assert.deepEqual(joined.members.map((m) => m.nick).sort(), ["alice", "bob"], "alice is listed once");
    for (const from of [laptop, phone]) {
      const envelope = await from.seal(`from ${from === laptop ? "the laptop" : "the phone"}`);
      await from.send({ type: "send", envelope });
      assert.equal((await from.awaitAck(envelope.id)).type, "ack");
      const other = from === laptop ? phone : laptop;
      assert.equal(
        (await other.next("message", { where: (m) => m.envelope.id === envelope.id })).envelope.from,
        "alice",
      );
      assert.equal((await bob.next("message", { where: (m) => m.envelope.id === envelope.id })).envelope.from, "alice");
    }
    // The phone leaving is not announced (the laptop still holds the nick); the laptop leaving is.
    phone.close();
    await phone.ended;
    laptop.close();
    await laptop.ended;
    const left = await bob.next("presence");
    assert.deepEqual([left.event, left.nick], ["leave", "alice"]);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(bob.inbox.filter((m) => m.type === "presence").length, 0, "one leave, not two");
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});
