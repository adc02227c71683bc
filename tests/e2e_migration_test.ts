/**
 * A database written by the protocol v1 programs (kept as SQL text, tests/fixtures/v1_server.sql, made by
 * tools/v1_fixture.ts, and built into a temporary database file with node:sqlite before each test) opened by
 * the v2 server: every room and message is kept, a room keeps its passphrase (v2 members join with it and read its v1
 * history), rooms whose names fold together leave the oldest reachable and the others shadowed (logged at start,
 * listed by admin rooms, deleted by their exact name), and the file is schema 3 with a server key.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { openEnvelope } from "../lib/crypto.ts";
import { runAdminCommand, type ServerProcess, startServer } from "./support/programs.ts";
import { loadDatabase } from "./support/sql_dump.ts";
import { closeAll, type Msg, WireClient } from "./support/wire.ts";

const FIXTURE = JSON.parse(await Deno.readTextFile(new URL("./fixtures/v1_server.json", import.meta.url))) as {
  rooms: { room: string; passphrase: string; lines: [string, string][] }[];
};
const passphraseOf = (room: string) => FIXTURE.rooms.find((r) => r.room === room)!.passphrase;

/** A new database file holding the v1 fixture: the v1 programs' database, rebuilt from its SQL text. */
async function copyFixture(): Promise<{ dir: string; db: string }> {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-v1-" });
  const db = `${dir}/aeschat.db`;
  loadDatabase(await Deno.readTextFile(new URL("./fixtures/v1_server.sql", import.meta.url)), { path: db });
  await Deno.chmod(db, 0o600);
  return { dir, db };
}

async function bodies(client: WireClient, room: string, history: Msg<"joined">["history"]): Promise<string[]> {
  const out = [];
  for (const item of history) {
    const opened = await openEnvelope(client.rooms.get(room)!.keys, { envelope: item.envelope, room });
    out.push(`${item.envelope.v} ${item.envelope.from}: ${opened.plaintext.body}`);
  }
  return out;
}

Deno.test("a v1 database is migrated: rooms, messages and passphrases kept, names folded, shadowed rooms listed", async () => {
  const { dir, db } = await copyFixture();
  const clients: WireClient[] = [];
  let server: ServerProcess | undefined;
  try {
    server = await startServer({ db });
    for (const shadowed of ["ops", "0PS"]) {
      assert.match(server.program.stderr, new RegExp(`WARN {2}room_shadowed room=${shadowed} by=Ops `));
    }
    // The oldest of Ops/ops/0PS keeps the folded name: any spelling reaches it, with its v1 passphrase.
    const alice = await WireClient.connect(server.port);
    clients.push(alice);
    await alice.hello("alice");
    const joined = await alice.join("OPS", passphraseOf("Ops")) as Msg<"joined">;
    assert.equal(joined.type, "joined", JSON.stringify(joined));
    assert.equal(joined.room, "Ops");
    assert.deepEqual(await bodies(alice, "Ops", joined.history), ["1 alice: deploy at noon", "1 bob: ok"]);
    // The shadowed rooms' passphrases open nothing: their names lead to Ops now.
    for (const room of ["ops", "0PS"]) {
      const denied = await alice.join(room, passphraseOf(room));
      assert.equal(denied.type === "error" && denied.code, "access_denied", room);
    }
    const general = await alice.join("general", passphraseOf("general")) as Msg<"joined">;
    assert.deepEqual(await bodies(alice, "general", general.history), ["1 bob: hello v1", "1 alice: hi bob"]);
    // A v2 message goes on after the v1 ones, with a higher seq.
    const envelope = await alice.seal("first v2 message", { room: "Ops" });
    await alice.send({ type: "send", envelope });
    const ack = await alice.awaitAck(envelope.id) as Msg<"ack">;
    assert.ok(ack.seq > Math.max(...joined.history.map((m) => m.seq)));
    await closeAll(clients.splice(0));
    await server.program.stop();

    const rooms = await runAdminCommand(["rooms", "--db", db]);
    assert.equal(rooms.code, 0, rooms.stderr);
    assert.match(rooms.stdout, /^0PS\s+1\s+.*shadowed by Ops: unreachable, delete-room removes it$/m);
    assert.match(rooms.stdout, /^ops\s+1\s+.*shadowed by Ops: unreachable, delete-room removes it$/m);
    assert.match(rooms.stdout, /^Ops\s+3\s+\d+\s+\S+ \S+\s+\S+ \S+$/m);
    const deleted = await runAdminCommand(["delete-room", "ops", "--db", db]);
    assert.match(deleted.stdout, /^deleted room ops: 1 messages/);
    const sqlite = new DatabaseSync(db, { readOnly: true });
    try {
      assert.equal((sqlite.prepare("PRAGMA user_version").get() as { user_version: number }).user_version, 3);
      assert.deepEqual(
        sqlite.prepare("SELECT name FROM rooms ORDER BY name").all().map((r) => (r as { name: string }).name),
        ["0PS", "Ops", "general"],
      );
      assert.equal(Number((sqlite.prepare("SELECT count(*) AS n FROM messages").get() as { n: number }).n), 6);
    } finally {
      sqlite.close();
    }
    // Started again, the server still names the one shadowed room left.
    server = await startServer({ db });
    assert.match(server.program.stderr, /room_shadowed room=0PS by=Ops/);
    assert.doesNotMatch(server.program.stderr, /room_shadowed room=ops /);
  } finally {
    await closeAll(clients);
    await server?.program.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
