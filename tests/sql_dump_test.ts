/**
 * tests/support/sql_dump.ts, which keeps database fixtures as SQL text: a dump loads back into the same schema, rows
 * (each value with its type) and user_version.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { dumpDatabase, loadDatabase } from "./support/sql_dump.ts";

function snapshot(path: string): unknown {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const read = (sql: string) => {
      const statement = db.prepare(sql);
      statement.setReadBigInts(true);
      return statement.all();
    };
    return {
      version: read("PRAGMA user_version"),
      schema: read("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"),
      rows: read("SELECT rowid, a, typeof(a) AS ta, b, typeof(b) AS tb FROM t ORDER BY rowid"),
    };
  } finally {
    db.close();
  }
}

Deno.test("dumpDatabase and loadDatabase keep the schema, every value with its type, and user_version", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-sql-" });
  try {
    const original = new DatabaseSync(`${dir}/a.db`);
    original.exec(`
      PRAGMA user_version = 7;
      CREATE TABLE t (a, "b ""quoted""" BLOB);
      CREATE INDEX t_a ON t (a);
      CREATE VIEW v AS SELECT a FROM t;
    `);
    original.exec(`ALTER TABLE t RENAME COLUMN "b ""quoted""" TO b`);
    const insert = original.prepare("INSERT INTO t (rowid, a, b) VALUES (?, ?, ?)");
    insert.run(3, 9007199254740993n, new Uint8Array([0, 1, 0xfe, 0xff]));
    insert.run(1, "it's 'quoted'\nand ünïcode \u{1f600}", null);
    insert.run(2, 2.0, 0.5);
    insert.run(5, -1.25e-7, new Uint8Array(0));
    original.close();
    const sql = dumpDatabase(`${dir}/a.db`);
    loadDatabase(sql, { path: `${dir}/b.db` });
    assert.deepEqual(snapshot(`${dir}/b.db`), snapshot(`${dir}/a.db`));
    assert.throws(() => loadDatabase(sql, { path: `${dir}/b.db` }), /not empty/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
