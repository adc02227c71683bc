/**
 * Attacks on the v1 -> v2 database migration (README, "A database from protocol v1"), as the operators who will break
 * it: two servers started on the same v1 database at the same moment, and a server killed (SIGKILL) while it migrates.
 * One database has one server; a migration is finished or not begun, never half done.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { spawnTask } from "./support/programs.ts";
import { loadDatabase } from "./support/sql_dump.ts";

const LISTENING = /aeschat server listening on [^:\s]+:(\d+) /;

/** A new v1 database (the fixture), with `extraRooms` more v1 rooms so that migrating it takes a while. */
async function v1Database(extraRooms: number): Promise<{ dir: string; db: string }> {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-attack-v1-" });
  const db = `${dir}/aeschat.db`;
  loadDatabase(await Deno.readTextFile(new URL("./fixtures/v1_server.sql", import.meta.url)), { path: db });
  await Deno.chmod(db, 0o600);
  if (extraRooms > 0) {
    const sql = new DatabaseSync(db);
    const insert = sql.prepare(
      "INSERT INTO rooms (name, salt, iterations, access_pub, created_at) VALUES (?, zeroblob(16), 100000, zeroblob(32), ?)",
    );
    sql.exec("BEGIN");
    for (let i = 0; i < extraRooms; i++) insert.run(`pad${i}`, 1_800_000_000_000 + i);
    sql.exec("COMMIT");
    sql.close();
  }
  return { dir, db };
}

/** What a database holds: schema version, rooms, messages, and whether it still has v1's shape. */
function inspect(db: string): { version: number; rooms: number; messages: number; v3Tables: string[] } {
  const sql = new DatabaseSync(db);
  try {
    const { user_version: version } = sql.prepare("PRAGMA user_version").get() as { user_version: number };
    const rooms = Number((sql.prepare("SELECT count(*) AS n FROM rooms").get() as { n: number }).n);
    const messages = Number((sql.prepare("SELECT count(*) AS n FROM messages").get() as { n: number }).n);
    const v3Tables = (sql.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('meta', 'nicks', 'rooms_v3', 'direct')",
    ).all() as { name: string }[]).map((r) => r.name).sort();
    return { version, rooms, messages, v3Tables };
  } finally {
    sql.close();
  }
}

// Two servers started on one v1 database in the same instant: one migrates it and listens, the other stops with exit
// 4 (another server holds it); nothing is migrated twice (one server key), no room or message lost.
Deno.test("two servers started at once on a v1 database: one migrates and serves, the other exits 4", async () => {
  const { dir, db } = await v1Database(2000);
  const before = inspect(db);
  const servers = [0, 1].map(() => spawnTask("server", { args: ["--port", "0", "--db", db] }));
  try {
    const outcome = await Promise.all(servers.map((s) =>
      Promise.race([
        s.waitFor(() => LISTENING.test(s.stdout), { timeoutMs: 60_000 }).then(() => "listening"),
        s.status.then((st) => `exit ${st.code}`),
      ])
    ));
    assert.deepEqual(outcome.toSorted(), ["exit 4", "listening"], `outcomes: ${outcome}`);
    const loser = servers[outcome.indexOf("exit 4")];
    assert.match(loser.stderr, /another server holds it/);
    await servers[outcome.indexOf("listening")].stop();
    const after = inspect(db);
    assert.equal(after.version, 3);
    assert.deepEqual([after.rooms, after.messages], [before.rooms, before.messages]);
    const sql = new DatabaseSync(db);
    const seeds = sql.prepare("SELECT count(*) AS n FROM meta WHERE key = 'server_seed'").get() as { n: number };
    sql.close();
    assert.equal(Number(seeds.n), 1);
  } finally {
    for (const s of servers) await s.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

// SIGKILL at every moment of a start on a v1 database (stepping the delay until a start gets to listen): after each
// kill the file is either still the v1 database, whole, or the migrated one, whole; never half-migrated. The next
// start then finishes the job and every room and message is there.
Deno.test("a server killed while it migrates a v1 database leaves it v1 or migrated, and the next start finishes", async () => {
  const { dir, db } = await v1Database(60_000);
  const before = inspect(db);
  let midway = 0;
  try {
    for (let delay = 100; delay < 30_000; delay += 150) {
      const server = spawnTask("server", { args: ["--port", "0", "--db", db] });
      await new Promise((r) => setTimeout(r, delay));
      const listening = LISTENING.test(server.stdout);
      const walBefore = await Deno.stat(`${db}-wal`).then((s) => s.size, () => 0);
      await server.stop("SIGKILL");
      if (listening) break;
      const state = inspect(db);
      if (state.version === 2) {
        assert.deepEqual(state.v3Tables, [], `killed after ${delay} ms: v1 database with v2 tables ${state.v3Tables}`);
        if (walBefore > 0) midway++;
      } else {
        assert.equal(state.version, 3, `killed after ${delay} ms: schema version ${state.version}`);
        assert.deepEqual(state.v3Tables, ["direct", "meta", "nicks"], `killed after ${delay} ms`);
      }
      assert.deepEqual([state.rooms, state.messages], [before.rooms, before.messages], `killed after ${delay} ms`);
    }
    // A kill that never landed while the migration ran proves nothing: the padding makes it take long enough.
    assert.ok(midway > 0, "no kill landed while the migration was running");
    const server = spawnTask("server", { args: ["--port", "0", "--db", db] });
    await server.waitFor(() => LISTENING.test(server.stdout), { timeoutMs: 60_000 });
    await server.stop();
    const after = inspect(db);
    assert.equal(after.version, 3);
    assert.deepEqual([after.rooms, after.messages], [before.rooms, before.messages]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
