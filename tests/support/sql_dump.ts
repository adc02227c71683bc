/**
 * A SQLite database as SQL text, and back, with node:sqlite alone (no `sqlite3` program needed): binary database
 * files stay out of git, and a fixture's content can be read and diffed. The dump holds the schema (tables, then
 * rows, then indexes, views and triggers, as `sqlite3 .dump` orders them), every row with its rowid, blobs as `X'..'`
 * literals and integers exact, and `PRAGMA user_version`, which the store's migrations read.
 *
 * @module
 */

import { DatabaseSync, type SQLInputValue } from "node:sqlite";

interface SchemaRow {
  type: string;
  name: string;
  sql: string | null;
}

function quoteName(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function literal(value: SQLInputValue): string {
  if (value === null) return "NULL";
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error(`Cannot dump the number ${value}: SQL text has no literal for it`);
    // A REAL stays a REAL when read back (1.0, not 1).
    return Number.isInteger(value) ? value.toFixed(1) : String(value);
  }
  if (typeof value === "string") return `'${value.replaceAll("'", "''")}'`;
  if (value instanceof Uint8Array) return `X'${value.toHex()}'`;
  throw new Error(`Cannot dump a value of type ${typeof value}`);
}

/**
 * Whether a table's rowid must be written out to be kept: a rowid table without an INTEGER PRIMARY KEY column (which
 * would be the rowid under its own name).
 */
function hiddenRowid(db: DatabaseSync, table: SchemaRow): boolean {
  if (/\bWITHOUT\s+ROWID\b/i.test(table.sql ?? "")) return false;
  const columns = db.prepare(`PRAGMA table_info(${quoteName(table.name)})`).all() as { type: string; pk: number }[];
  const keys = columns.filter((c) => c.pk > 0);
  return !(keys.length === 1 && keys[0].type.toUpperCase() === "INTEGER");
}

/**
 * Writes a database as SQL text that {@link loadDatabase} (or `sqlite3`) turns back into the same tables and rows.
 *
 * @example
 * ```ts
 * const sql = dumpDatabase("tests/fixtures/old.db");
 * ```
 * @param path the database file (opened read-only)
 * @returns the SQL text, one statement per line, in one transaction
 */
export function dumpDatabase(path: string): string {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const objects = db.prepare(
      "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' " +
        "ORDER BY rowid",
    ).all() as unknown as SchemaRow[];
    const version = Number((db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version);
    const lines = [`PRAGMA user_version = ${version};`, "BEGIN;"];
    for (const table of objects.filter((o) => o.type === "table")) {
      lines.push(`${table.sql};`);
      const rows = db.prepare(`SELECT ${hiddenRowid(db, table) ? "rowid, " : ""}* FROM ${quoteName(table.name)}`);
      rows.setReadBigInts(true);
      for (const row of rows.iterate() as Iterable<Record<string, SQLInputValue>>) {
        const columns = Object.keys(row).map(quoteName).join(", ");
        const values = Object.values(row).map(literal).join(", ");
        lines.push(`INSERT INTO ${quoteName(table.name)} (${columns}) VALUES (${values});`);
      }
    }
    for (const other of objects.filter((o) => o.type !== "table")) lines.push(`${other.sql};`);
    lines.push("COMMIT;");
    return lines.join("\n") + "\n";
  } finally {
    db.close();
  }
}

/**
 * Builds a database file from SQL text made by {@link dumpDatabase}.
 *
 * @example
 * ```ts
 * loadDatabase(await Deno.readTextFile("tests/fixtures/old.sql"), { path: "/tmp/old.db" });
 * ```
 * @param sql the SQL text
 * @param options.path the new database file (it must not exist)
 */
export function loadDatabase(sql: string, options: { path: string }): void {
  const db = new DatabaseSync(options.path);
  try {
    if ((db.prepare("SELECT count(*) AS n FROM sqlite_master").get() as { n: number }).n > 0) {
      throw new Error(`Cannot load SQL into ${options.path}: the database is not empty`);
    }
    db.exec(sql);
  } finally {
    db.close();
  }
}
