/**
 * The nick registry's rules against the real server process: new registrations per address and hour (loopback exempt
 * by default), --max-nicks-per-key, --nick-expiry, --registration closed with a nick reserved by the operator, and an
 * identity rotation that moves nicks (refused when its signature is wrong), kept across a restart.
 *
 * @module
 */

import assert from "node:assert/strict";
import { generateIdentitySecrets, importIdentity, signRotation } from "../lib/identity.ts";
import { removeServer, runAdminCommand, startServer } from "./support/programs.ts";
import { closeAll, type Msg, testIdentity, WireClient } from "./support/wire.ts";

/** Logs in on a new connection; returns the reply (the connection is kept in `clients`). */
async function logIn(
  port: number,
  nick: string,
  clients: WireClient[],
  options: Parameters<WireClient["login"]>[1] = {},
): Promise<Msg<"welcome"> | Msg<"error">> {
  const client = await WireClient.connect(port);
  clients.push(client);
  return await client.login(nick, options);
}

function code(reply: Msg<"welcome"> | Msg<"error">): string {
  return reply.type === "error" ? reply.code : "welcome";
}

Deno.test("new registrations are limited per address and hour, loopback exempt unless told otherwise", async () => {
  const strict = await startServer({ args: ["--registrations-per-hour", "2", "--exempt-addresses", "none"] });
  const loose = await startServer({ args: ["--registrations-per-hour", "1"] });
  const clients: WireClient[] = [];
  try {
    const fresh = () => importIdentity(generateIdentitySecrets());
    assert.equal(code(await logIn(strict.port, "one", clients)), "welcome");
    assert.equal(code(await logIn(strict.port, "two", clients, { identity: await fresh() })), "welcome");
    const third = await logIn(strict.port, "three", clients, { identity: await fresh() });
    assert.equal(code(third), "registration_limited");
    assert.match((third as Msg<"error">).message, /--registrations-per-hour 2/);
    // A registered nick still logs in; a change to a new nick is a registration and is refused, the connection kept.
    assert.equal(code(await logIn(strict.port, "one", clients)), "welcome");
    const one = clients.at(-1)!;
    await one.send({ type: "nick", new: "uno" });
    assert.equal((await one.next("error")).code, "registration_limited");
    assert.ok(!one.closed);
    assert.match(strict.program.stderr, /login_refused .*code=registration_limited/);
    // By default loopback is exempt: the tests' and the benchmark's hundreds of local clients are not limited.
    for (let i = 0; i < 8; i++) assert.equal(code(await logIn(loose.port, `local${i}`, clients)), "welcome");
  } finally {
    await closeAll(clients);
    await removeServer(strict);
    await removeServer(loose);
  }
});

Deno.test("--max-nicks-per-key caps the nicks of one key, at login and on nick change", async () => {
  const server = await startServer({ args: ["--max-nicks-per-key", "2"] });
  const clients: WireClient[] = [];
  try {
    const alice = await testIdentity("alice");
    assert.equal(code(await logIn(server.port, "alice", clients, { identity: alice })), "welcome");
    const c = clients[0];
    await c.send({ type: "nick", new: "ali" });
    assert.deepEqual(await c.next("nick"), { type: "nick", old: "alice", new: "ali" });
    await c.send({ type: "nick", new: "al" });
    const refused = await c.next("error");
    assert.deepEqual([refused.code, c.closed], ["too_many_nicks", false]);
    assert.equal(code(await logIn(server.port, "alicia", clients, { identity: alice })), "too_many_nicks");
    assert.equal(code(await logIn(server.port, "ALI", clients, { identity: alice })), "welcome");
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});

Deno.test("a nick unused for --nick-expiry goes to the next key that asks; one in use does not", async () => {
  // 0.00003 days is 2.6 s.
  const server = await startServer({ args: ["--nick-expiry", "0.00003"] });
  const clients: WireClient[] = [];
  try {
    const mallory = await importIdentity(generateIdentitySecrets());
    assert.equal(code(await logIn(server.port, "alice", clients)), "welcome");
    assert.equal(code(await logIn(server.port, "bob", clients)), "welcome");
    const bob = clients[1];
    const alice = clients[0];
    alice.close();
    await alice.ended;
    assert.equal(code(await logIn(server.port, "alice", clients, { identity: mallory })), "nick_registered");
    await new Promise((resolve) => setTimeout(resolve, 3000));
    // Bob has been connected all along: his nick is in use and stays his.
    assert.equal(code(await logIn(server.port, "bob", clients, { identity: mallory })), "nick_registered");
    assert.ok(!bob.closed);
    const taken = await logIn(server.port, "Alice", clients, { identity: mallory });
    assert.deepEqual(taken.type === "welcome" && [taken.nick, taken.registered], ["Alice", true]);
    assert.equal(code(await logIn(server.port, "alice", clients)), "nick_registered", "the old key lost it");
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});

Deno.test("--registration closed admits registered and reserved nicks only", async () => {
  let server = await startServer();
  const clients: WireClient[] = [];
  try {
    assert.equal(code(await logIn(server.port, "alice", clients)), "welcome");
    await closeAll(clients.splice(0));
    await server.program.stop();
    const carol = await testIdentity("carol");
    const reserved = await runAdminCommand(["reserve-nick", "Carol", carol.publicKey.toBase64(), "--db", server.db]);
    assert.equal(reserved.code, 0, reserved.stderr);
    server = await startServer({ db: server.db, args: ["--registration", "closed"] });
    assert.equal(code(await logIn(server.port, "alice", clients)), "welcome");
    const alice = clients[0];
    await alice.send({ type: "nick", new: "alice2" });
    assert.equal((await alice.next("error")).code, "registration_closed");
    assert.equal(code(await logIn(server.port, "bob", clients)), "registration_closed");
    const welcome = await logIn(server.port, "carol", clients, { identity: carol });
    assert.deepEqual(welcome.type === "welcome" && [welcome.nick, welcome.registered], ["Carol", false]);
    assert.equal(code(await logIn(server.port, "CAROL", clients)), "nick_registered", "another key, a reserved nick");
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});

Deno.test("a rotation signed by the old key moves its nicks to the new key, for good; a forged one is refused", async () => {
  let server = await startServer();
  const clients: WireClient[] = [];
  try {
    const old = await importIdentity(generateIdentitySecrets());
    const next = await importIdentity(generateIdentitySecrets());
    assert.equal(code(await logIn(server.port, "rose", clients, { identity: old })), "welcome");
    const rose = clients[0];
    await rose.send({ type: "nick", new: "rosa" });
    await rose.next("nick");
    // Mallory makes a statement with her own key, naming rose's key as the old one.
    const mallory = await importIdentity(generateIdentitySecrets());
    const forged = { ...(await signRotation(mallory, { newKey: mallory.publicKey, ts: 1 })), oldKey: old.publicKey };
    assert.equal(
      code(await logIn(server.port, "rose", clients, { identity: mallory, rotation: forged })),
      "bad_rotation",
    );
    assert.equal(code(await logIn(server.port, "rosa", clients, { identity: mallory })), "nick_registered");
    // The real statement, then a restart: the nicks are the new key's.
    const rotation = await signRotation(old, { newKey: next.publicKey, ts: Date.now() });
    const moved = await logIn(server.port, "rose", clients, { identity: next, rotation });
    assert.deepEqual(moved.type === "welcome" && [moved.nick, moved.registered], ["rose", false]);
    await closeAll(clients.splice(0));
    await server.program.stop();
    server = await startServer({ db: server.db });
    assert.equal(code(await logIn(server.port, "rosa", clients, { identity: old })), "nick_registered");
    assert.equal(code(await logIn(server.port, "rosa", clients, { identity: next })), "welcome");
    const asker = clients.at(-1)!;
    await asker.send({ type: "lookup", nick: "ROSE" });
    const identity = await asker.next("identity");
    assert.deepEqual(identity, {
      type: "identity",
      nick: "rose",
      key: next.publicKey.toBase64(),
      kx: next.kxPublic.toBase64(),
      kx_sig: next.kxSignature.toBase64(),
      rotations: [{
        old: old.publicKey.toBase64(),
        new: next.publicKey.toBase64(),
        ts: rotation.ts,
        signature: rotation.signature.toBase64(),
      }],
    });
  } finally {
    await closeAll(clients);
    await removeServer(server);
  }
});
