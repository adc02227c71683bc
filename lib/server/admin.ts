/**
 * The operator's commands on a server's database (`aeschat-server admin ...`): list the rooms with their totals and
 * delete a room with every message in it; list, release and reserve nicks; print the server key's fingerprint. They
 * open the database the way a server does, so they refuse to run while a server holds it: one program at a time works
 * on a database.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { decodeBase64 } from "../base64.ts";
import { importEd25519Seed } from "../crypto.ts";
import { flagHelp, type FlagSpec, UsageError } from "../flags.ts";
import { fingerprint, formatFingerprint, KEY_BYTES } from "../identity.ts";
import { NameError, validateNick } from "../names.ts";
import { type NickRecord, Registry } from "./registry.ts";
import { type RoomStats, Store, StoreError } from "./store.ts";

/** Raised when the room or nick named does not exist. */
export class NotFoundError extends Error {
  /** @param message what was not found */
  constructor(message: string) {
    super(message);
    this.name = "NotFoundError";
  }
}

interface AdminConfig {
  db: string;
  nickExpiry: number;
  help: boolean;
}

const ADMIN_FLAGS: FlagSpec<keyof AdminConfig>[] = [
  { name: "db", key: "db", kind: "string", default: "./aeschat.db", help: "the server's SQLite database file" },
  {
    name: "nick-expiry",
    key: "nickExpiry",
    kind: "number",
    default: 365,
    arg: "DAYS",
    help: "admin nicks: the server's --nick-expiry, to show when each nick expires (0 = never)",
  },
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
    "  rooms                      list every room: messages, bytes stored, last activity, creation time, and the",
    "                             rooms a migration from a v1 database left unreachable (shadowed by another)",
    "  delete-room NAME           delete the room NAME and every message in it (its members can create it anew)",
    "  nicks                      list every registered nick: its key's fingerprint, when it was registered and last",
    "                             used, and when it expires (reserved nicks never do)",
    "  release-nick NICK          forget NICK's registration: the next identity key to use it registers it",
    "  reserve-nick NICK KEY      give NICK to the identity key KEY (32 bytes, base64 or hex) for good, whoever held it",
    "  server-key                 print the server key's fingerprint (and the key), for users to compare",
    "",
    "Options:",
    ...flagHelp(ADMIN_FLAGS),
    "",
    "Exit codes: 0 ok, 2 bad command, flag, nick or key, 4 cannot open the database (or a server holds it),",
    "            5 database corrupt or from a newer version, 7 no such room or nick.",
  ].join("\n");
}

function when(ms: number | undefined): string {
  return ms === undefined ? "never" : new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/** Lines of a table with a header, columns aligned; the numeric columns right-aligned. */
function table(rows: string[][], numeric: number[] = []): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  return rows.map((row) =>
    row.map((cell, i) => (numeric.includes(i) ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))).join("  ")
      .trimEnd()
  );
}

/**
 * The `admin rooms` table: a header and one line per room, columns aligned.
 *
 * @example
 * ```ts
 * roomTable([{ name: "general", messages: 2, bytes: 700, lastAt: 0, createdAt: 0, prunedThrough: 0 }]);
 * ```
 * @param rooms the rooms' totals
 * @returns the lines
 */
export function roomTable(rooms: RoomStats[]): string[] {
  const rows = [["room", "messages", "bytes", "last activity", "created", ""]];
  for (const r of rooms) {
    const note = r.shadowedBy === undefined ? "" : `shadowed by ${r.shadowedBy}: unreachable, delete-room removes it`;
    rows.push([r.name, String(r.messages), String(r.bytes), when(r.lastAt), when(r.createdAt), note]);
  }
  return table(rows, [1, 2]);
}

/**
 * The `admin nicks` table: a header and one line per registered nick.
 *
 * @param nicks the registrations with their key's fingerprint and expiry
 * @returns the lines
 */
export function nickTable(nicks: (NickRecord & { fingerprint: string; expiresAt: number | undefined })[]): string[] {
  const rows = [["nick", "key fingerprint", "registered", "last used", "expires"]];
  for (const n of nicks) {
    const expires = n.reserved ? "never (reserved)" : when(n.expiresAt);
    rows.push([n.nick, n.fingerprint, when(n.registeredAt), when(n.usedAt), expires]);
  }
  return table(rows);
}

function parseKey(text: string): Uint8Array {
  for (const decode of [(t: string) => decodeBase64(t), (t: string) => Uint8Array.fromHex(t)]) {
    try {
      const key = decode(text);
      if (key.length === KEY_BYTES) return key;
    } catch {
      // try the other spelling
    }
  }
  throw new UsageError(`the key must be ${KEY_BYTES} bytes in base64 or hex, got ${JSON.stringify(text.slice(0, 80))}`);
}

function checkNick(nick: string): void {
  try {
    validateNick(nick);
  } catch (err) {
    if (err instanceof NameError) throw new UsageError(`${JSON.stringify(nick)} is not a valid nick: ${err.message}`);
    throw err;
  }
}

/** One command: its arguments (checked before the database is opened) and what it does with the open store. */
interface Command {
  args: string[];
  check?(args: string[]): void;
  run(store: Store, args: string[], config: AdminConfig): string[] | Promise<string[]>;
}

const COMMANDS: Record<string, Command> = {
  rooms: {
    args: [],
    run(store, _args, config) {
      const rooms = store.rooms();
      return rooms.length === 0 ? [`no rooms in ${config.db}`] : roomTable(rooms);
    },
  },
  "delete-room": {
    args: ["NAME"],
    run(store, [name]) {
      const deleted = store.deleteRoom(name);
      if (deleted === undefined) throw new NotFoundError(`no room ${name} in the database`);
      return [`deleted room ${deleted.name}: ${deleted.messages} messages, ${deleted.bytes} bytes`];
    },
  },
  nicks: {
    args: [],
    async run(store, _args, config) {
      const registry = new Registry(store, { nickExpiryMs: config.nickExpiry * 86_400_000 });
      const nicks = registry.list();
      if (nicks.length === 0) return [`no registered nicks in ${config.db}`];
      const rows = [];
      for (const n of nicks) {
        rows.push({ ...n, fingerprint: await fingerprint(n.key), expiresAt: registry.expiresAt(n) });
      }
      return nickTable(rows);
    },
  },
  "release-nick": {
    args: ["NICK"],
    async run(store, [nick]) {
      const released = new Registry(store).release(nick);
      if (released === undefined) throw new NotFoundError(`no registered nick ${nick} in the database`);
      return [`released ${released.nick} (it was registered to ${formatFingerprint(await fingerprint(released.key))})`];
    },
  },
  "reserve-nick": {
    args: ["NICK", "PUBLIC_KEY"],
    check([nick, key]) {
      checkNick(nick);
      parseKey(key);
    },
    async run(store, [nick, text]) {
      const key = parseKey(text);
      const registry = new Registry(store);
      const previous = registry.reserve(nick, key);
      const canonical = registry.find(nick)!.nick;
      const to = formatFingerprint(await fingerprint(key));
      const from = previous && formatFingerprint(await fingerprint(previous.key));
      const before = from === undefined
        ? ""
        : from === to
        ? " (it was registered to that key)"
        : ` (it was registered to ${from})`;
      return [`reserved ${canonical} for ${to}${before}`];
    },
  },
  "server-key": {
    args: [],
    async run(store) {
      const { publicKey } = await importEd25519Seed(store.serverSeed);
      return [`fingerprint ${formatFingerprint(await fingerprint(publicKey))}`, `key         ${publicKey.toBase64()}`];
    },
  },
};

/**
 * Runs one admin command.
 *
 * @example
 * ```ts
 * for (const line of await runAdmin(["rooms", "--db", "aeschat.db"])) console.log(line);
 * ```
 * @param args the arguments after `admin`
 * @returns the lines to print
 * @throws {UsageError} for an unknown command or flag, a missing argument, or a bad nick or key
 * @throws {StoreError} when the database cannot be opened (kind "locked" while a server holds it) or written
 * @throws {NotFoundError} when deleting a room or releasing a nick that does not exist
 */
export async function runAdmin(args: string[]): Promise<string[]> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        db: { type: "string", default: "./aeschat.db" },
        "nick-expiry": { type: "string", default: "365" },
        help: { type: "boolean", default: false },
      },
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message.split("\n")[0]);
  }
  const [command, ...positional] = parsed.positionals;
  const nickExpiry = Number(parsed.values["nick-expiry"]);
  const config: AdminConfig = { db: parsed.values.db!, nickExpiry, help: parsed.values.help! };
  if (config.help || command === undefined || command === "help") return [adminHelp()];
  if (config.db === "") throw new UsageError("--db must not be empty");
  if (!Number.isFinite(nickExpiry) || nickExpiry < 0) throw new UsageError("--nick-expiry must be a number of days");
  const chosen = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (chosen === undefined) {
    throw new UsageError(`unknown admin command ${JSON.stringify(command)}: use ${Object.keys(COMMANDS).join(", ")}`);
  }
  if (positional.length !== chosen.args.length) {
    throw new UsageError(
      chosen.args.length === 0
        ? `admin ${command} takes no argument, got ${positional[0]}`
        : `admin ${command} takes ${chosen.args.join(" ")}`,
    );
  }
  chosen.check?.(positional);
  const store = openStore(config.db);
  try {
    return await chosen.run(store, positional, config);
  } finally {
    store.close();
  }
}

function openStore(db: string): Store {
  try {
    return Store.open(db, { create: false });
  } catch (err) {
    if (err instanceof StoreError && err.kind === "locked") {
      throw new StoreError(
        "locked",
        `${err.message}: stop that server first (admin works only on a database no server is using)`,
      );
    }
    throw err;
  }
}
