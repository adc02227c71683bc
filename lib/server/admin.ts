/**
 * The operator's commands on a server's database (`aeschat-server admin ...`): list the rooms with their totals, and
 * delete a room with every message in it. They open the database the way a server does, so they refuse to run while
 * a server holds it: one program at a time works on a database.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { flagHelp, type FlagSpec, UsageError } from "../flags.ts";
import { type RoomStats, Store, StoreError } from "./store.ts";

/** Raised when the room named does not exist. */
export class NoSuchRoomError extends Error {
  /** @param room the room */
  constructor(room: string) {
    super(`no room ${room} in the database`);
    this.name = "NoSuchRoomError";
  }
}

interface AdminConfig {
  db: string;
  help: boolean;
}

const ADMIN_FLAGS: FlagSpec<keyof AdminConfig>[] = [
  { name: "db", key: "db", kind: "string", default: "./aeschat.db", help: "the server's SQLite database file" },
  { name: "help", key: "help", kind: "boolean", default: false, help: "show this help and exit" },
];

/**
 * The help of the admin command.
 *
 * @returns the text
 */
export function adminHelp(): string {
  return [
    "Usage: aeschat-server admin COMMAND [options]     (from source: deno task server admin COMMAND [options])",
    "",
    "Commands (the server must be stopped: while it runs it holds the database, and these refuse):",
    "  rooms               list every room: messages, bytes stored, last activity, creation time",
    "  delete-room NAME    delete the room NAME and every message in it (its members can create it anew)",
    "",
    "Options:",
    ...flagHelp(ADMIN_FLAGS),
    "",
    "Exit codes: 0 ok, 2 bad command or flag, 4 cannot open the database (or a server holds it),",
    "            5 database corrupt or from a newer version, 7 no such room.",
  ].join("\n");
}

function when(ms: number | undefined): string {
  return ms === undefined ? "never" : new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/**
 * The `admin rooms` table: a header and one line per room, columns aligned.
 *
 * @example
 * ```ts
 * roomTable([{ name: "general", messages: 2, bytes: 700, lastAt: 0, createdAt: 0 }]);
 * ```
 * @param rooms the rooms' totals
 * @returns the lines
 */
export function roomTable(rooms: RoomStats[]): string[] {
  const rows = [["room", "messages", "bytes", "last activity", "created"]];
  for (const r of rooms) rows.push([r.name, String(r.messages), String(r.bytes), when(r.lastAt), when(r.createdAt)]);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  return rows.map((row) =>
    row.map((cell, i) => (i === 1 || i === 2 ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))).join("  ").trimEnd()
  );
}

/**
 * Runs one admin command.
 *
 * @example
 * ```ts
 * for (const line of runAdmin(["rooms", "--db", "aeschat.db"])) console.log(line);
 * ```
 * @param args the arguments after `admin`
 * @returns the lines to print
 * @throws {UsageError} for an unknown command or flag, or a missing room name
 * @throws {StoreError} when the database cannot be opened (kind "locked" while a server holds it) or written
 * @throws {NoSuchRoomError} when deleting a room that does not exist
 */
export function runAdmin(args: string[]): string[] {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: { db: { type: "string", default: "./aeschat.db" }, help: { type: "boolean", default: false } },
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message.split("\n")[0]);
  }
  const [command, ...positional] = parsed.positionals;
  const config: AdminConfig = { db: parsed.values.db!, help: parsed.values.help! };
  if (config.help || command === undefined || command === "help") return [adminHelp()];
  if (config.db === "") throw new UsageError("--db must not be empty");
  if (command === "rooms") {
    if (positional.length > 0) throw new UsageError(`admin rooms takes no argument, got ${positional[0]}`);
    return withStore(config.db, (store) => {
      const rooms = store.rooms();
      return rooms.length === 0 ? [`no rooms in ${config.db}`] : roomTable(rooms);
    });
  }
  if (command === "delete-room") {
    if (positional.length !== 1) throw new UsageError("admin delete-room takes one room name");
    const room = positional[0];
    return withStore(config.db, (store) => {
      const deleted = store.deleteRoom(room);
      if (deleted === undefined) throw new NoSuchRoomError(room);
      return [`deleted room ${room}: ${deleted.messages} messages, ${deleted.bytes} bytes`];
    });
  }
  throw new UsageError(`unknown admin command ${JSON.stringify(command)}: use rooms or delete-room`);
}

function withStore<T>(db: string, fn: (store: Store) => T): T {
  let store: Store;
  try {
    store = Store.open(db, { create: false });
  } catch (err) {
    if (err instanceof StoreError && err.kind === "locked") {
      throw new StoreError(
        "locked",
        `${err.message}: stop that server first (admin works only on a database no server is using)`,
      );
    }
    throw err;
  }
  try {
    return fn(store);
  } finally {
    store.close();
  }
}
