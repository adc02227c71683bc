/**
 * The operator's `admin` command on a real database, through the real server entry point: it refuses while a
 * server holds the database, lists the rooms with their totals, deletes a room with its messages, and each failure is
 * one line with its exit code. Also the age retention applied when the server starts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { runAdminCommand as admin, startServer } from "./support/programs.ts";
import { fingerprint, formatFingerprint } from "../lib/identity.ts";
import { closeAll, testIdentity, WireClient } from "./support/wire.ts";

const PASSPHRASE = "admin test passphrase 6a0d";

function oneLine(result: { stderr: string }, pattern: RegExp): void {
  const lines = result.stderr.split("\n").filter((l) => l !== "");
  assert.equal(lines.length, 1, result.stderr);
  assert.match(lines[0], pattern);
  assert.ok(!result.stderr.includes("    at "), "no stack trace");
}

Deno.test("admin lists and deletes rooms on a stopped server's database, and refuses while a server holds it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-admin-" });
  const db = `${dir}/aeschat.db`;
  const clients: WireClient[] = [];
  let server = await startServer({ db });
  try {
    const alice = await WireClient.member(server.port, "alice", { passphrase: PASSPHRASE });
    const bob = await WireClient.member(server.port, "bob", { passphrase: PASSPHRASE, room: "ops" });
    clients.push(alice, bob);
    for (const text of ["one", "two", "three"]) assert.equal((await alice.say(text)).type, "ack");
    assert.equal((await bob.say("deploy done")).type, "ack");

    const refused = await admin(["rooms", "--db", db]);
    assert.equal(refused.code, 4);
    oneLine(
      refused,
      /^aeschat server: admin: cannot open database .*aeschat\.db: another server holds it: stop that server first/,
    );
    assert.equal(refused.stdout, "");

    await closeAll(clients);
    await server.program.stop();
    const rooms = await admin(["rooms", "--db", db]);
    assert.equal(rooms.code, 0, rooms.stderr);
    const lines = rooms.stdout.trimEnd().split("\n");
    assert.match(lines[0], /^room\s+messages\s+bytes\s+last activity\s+created$/);
    assert.match(lines[1], /^general\s+3\s+\d+\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+\d{4}-/);
    assert.match(lines[2], /^ops\s+1\s+\d+\s+\d{4}-/);
    assert.equal(lines.length, 3);

    const deleted = await admin(["delete-room", "ops", "--db", db]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.match(deleted.stdout, /^deleted room ops: 1 messages, \d+ bytes\n$/);
    const again = await admin(["delete-room", "ops", "--db", db]);
    assert.equal(again.code, 7);
    oneLine(again, /^aeschat server: admin: no room ops in the database$/);
    assert.doesNotMatch((await admin(["rooms", "--db", db])).stdout, /^ops/m);

    // The room is gone for good: its name can be created anew, with a new passphrase.
    server = await startServer({ db });
    const carol = await WireClient.member(server.port, "carol", { passphrase: "a new passphrase", room: "ops" });
    clients.push(carol);
    assert.equal((await carol.say("fresh start")).type, "ack");
  } finally {
    await closeAll(clients);
    await server.program.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("admin failures are one line each with their exit code, and never create a database", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-admin-" });
  try {
    const missing = await admin(["rooms", "--db", `${dir}/missing.db`]);
    assert.equal(missing.code, 4);
    oneLine(missing, /missing\.db: no such file/);
    assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing was created");
    for (const args of [["nope"], ["delete-room"], ["rooms", "extra"], ["rooms", "--bogus"]]) {
      const result = await admin([...args, "--db", `${dir}/missing.db`]);
      assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
      oneLine(result, /^aeschat server: admin: .*\(see admin --help\)$/);
    }
    await Deno.writeTextFile(`${dir}/notes.db`, "not a database\n".repeat(100));
    const corrupt = await admin(["rooms", "--db", `${dir}/notes.db`]);
    assert.equal(corrupt.code, 5);
    oneLine(corrupt, /notes\.db is not a valid SQLite database/);
    const help = await admin(["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /delete-room NAME/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--retention 1d deletes the messages stored more than a day ago when the server starts, and keeps the rest", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-admin-" });
  const db = `${dir}/aeschat.db`;
  const clients: WireClient[] = [];
  let server = await startServer({ db });
  try {
    const alice = await WireClient.member(server.port, "alice", { passphrase: PASSPHRASE });
    clients.push(alice);
    for (const text of ["old one", "old two", "new"]) assert.equal((await alice.say(text)).type, "ack");
    await closeAll(clients);
    await server.program.stop();
    // Two of them were stored two days ago.
    const sqlite = new DatabaseSync(db);
    sqlite.prepare("UPDATE messages SET sent_at = sent_at - ? WHERE seq <= 2").run(2 * 86_400_000);
    sqlite.close();
    server = await startServer({ db, args: ["--retention", "1d"] });
    await server.program.waitFor(() => /INFO\s+retention deleted=2 direct=0 keep=1d/.test(server.program.stderr), {
      what: "the retention line",
    });
    const bob = await WireClient.connect(server.port);
    clients.push(bob);
    await bob.hello("bob");
    const joined = await bob.join("general", PASSPHRASE);
    assert.equal(joined.type === "joined" && joined.history.length, 1);
    await closeAll(clients);
    await server.program.stop();
    assert.match((await admin(["rooms", "--db", db])).stdout, /^general\s+1\s/m);
  } finally {
    await closeAll(clients);
    await server.program.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("admin lists, releases and reserves nicks, prints the server key, and refuses while a server holds the database", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-admin-" });
  const db = `${dir}/aeschat.db`;
  const clients: WireClient[] = [];
  let server = await startServer({ db });
  try {
    const alice = await WireClient.member(server.port, "Alice", { passphrase: PASSPHRASE });
    const bob = await WireClient.member(server.port, "bob", { passphrase: PASSPHRASE });
    clients.push(alice, bob);
    const serverKey = alice.serverPub;
    for (
      const args of [["nicks"], ["server-key"], ["release-nick", "bob"], ["reserve-nick", "x", "A".repeat(43) + "="]]
    ) {
      const refused = await admin([...args, "--db", db]);
      assert.equal(refused.code, 4, `${args[0]} while the server runs`);
      oneLine(refused, /another server holds it: stop that server first/);
    }
    await closeAll(clients.splice(0));
    await server.program.stop();

    const key = await admin(["server-key", "--db", db]);
    assert.equal(key.code, 0, key.stderr);
    const fp = await fingerprint(serverKey);
    assert.equal(key.stdout, `fingerprint ${formatFingerprint(fp)}\nkey         ${serverKey.toBase64()}\n`);

    const nicks = await admin(["nicks", "--db", db, "--nick-expiry", "30"]);
    assert.equal(nicks.code, 0, nicks.stderr);
    const lines = nicks.stdout.trimEnd().split("\n");
    assert.match(lines[0], /^nick\s+key fingerprint\s+registered\s+last used\s+expires$/);
    assert.match(lines[1], new RegExp(`^Alice\\s+${await fingerprint(alice.identity!.publicKey)}\\s+\\d{4}-`));
    assert.match(lines[2], /^bob\s+[0-9a-f]{40}\s+/);
    assert.equal(lines.length, 3);

    // Reserve carol for a key given in hex, and take alice from her key for mallory's (given in base64).
    const carol = await testIdentity("carol");
    const mallory = await testIdentity("mallory");
    const reserved = await admin(["reserve-nick", "carol", carol.publicKey.toHex(), "--db", db]);
    assert.equal(reserved.code, 0, reserved.stderr);
    assert.equal(reserved.stdout, `reserved carol for ${formatFingerprint(await fingerprint(carol.publicKey))}\n`);
    const moved = await admin(["reserve-nick", "ALICE", mallory.publicKey.toBase64(), "--db", db]);
    assert.match(moved.stdout, /^reserved Alice for [0-9a-f ]+ \(it was registered to [0-9a-f ]+\)\n$/);
    assert.match((await admin(["nicks", "--db", db])).stdout, /^carol\s+[0-9a-f]{40}\s+.*never \(reserved\)$/m);
    const released = await admin(["release-nick", "BOB", "--db", db]);
    assert.match(released.stdout, /^released bob \(it was registered to [0-9a-f ]+\)\n$/);
    const gone = await admin(["release-nick", "bob", "--db", db]);
    assert.equal(gone.code, 7);
    oneLine(gone, /^aeschat server: admin: no registered nick bob in the database$/);
    for (
      const args of [
        ["reserve-nick", "carol"],
        ["reserve-nick", "two words", carol.publicKey.toHex()],
        ["reserve-nick", "carol", "abcd"],
        ["release-nick"],
        ["server-key", "extra"],
      ]
    ) {
      const result = await admin([...args, "--db", db]);
      assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
      oneLine(result, /^aeschat server: admin: .*\(see admin --help\)$/);
    }

    // What admin did holds for the server: carol is carol's, alice is now mallory's, bob is free for anyone.
    server = await startServer({ db });
    const taken = await WireClient.connect(server.port);
    clients.push(taken);
    const refusedAlice = await taken.login("alice", { identity: alice.identity });
    assert.equal(refusedAlice.type === "error" && refusedAlice.code, "nick_registered");
    for (const [nick, identity] of [["carol", carol], ["alice", mallory], ["bob", mallory]] as const) {
      const c = await WireClient.connect(server.port);
      clients.push(c);
      const welcome = await c.hello(nick, { identity });
      assert.equal(welcome.nick, nick === "alice" ? "Alice" : nick);
    }
  } finally {
    await closeAll(clients);
    await server.program.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
