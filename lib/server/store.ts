/**
 * The server's ciphertext-only log in SQLite (node:sqlite): schema and migrations, the server's own key seed, room
 * verifiers, and the append-only message table with per-room history queries. The nick registry and the direct
 * message inboxes keep their tables in the same file (registry.ts, inbox.ts). Nothing here ever sees a user's key or
 * a plaintext.
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { foldName, utf8Length } from "../names.ts";

/** Schema version this code writes (PRAGMA user_version). Versions 1 and 2 were written by protocol v1 servers. */
export const SCHEMA_VERSION = 3;
/** Bytes of the server key's Ed25519 seed. */
export const SERVER_SEED_BYTES = 32;

/**
 * Why the store failed: lets the server's edge pick an exit code and a clear line. "locked": another process (another
 * server) holds the database.
 */
export type StoreErrorKind = "open" | "locked" | "corrupt" | "newer" | "write" | "read";

/** Raised for every database failure, saying what was being done. */
export class StoreError extends Error {
  /** What kind of failure this is. */
  readonly kind: StoreErrorKind;
  /**
   * @param kind the kind of failure
   * @param message what was being done, and SQLite's reason
   */
  constructor(kind: StoreErrorKind, message: string) {
    super(message);
    this.name = "StoreError";
    this.kind = kind;
  }
}

/** A room's public parameters and verifier. */
export interface RoomRecord {
  /** The room's canonical name (the spelling it was created with). */
  name: string;
  /** 16-byte PBKDF2 salt. */
  salt: Uint8Array;
  /** PBKDF2 iteration count. */
  iterations: number;
  /** 32-byte Ed25519 public key that join proofs must verify against. */
  accessPub: Uint8Array;
  /** Key epoch: 0 until rooms can be re-keyed. */
  epoch: number;
  /** When it was created, ms since the epoch. */
  createdAt: number;
}

/** A room's totals, as `admin rooms` shows them and the storage cap counts them. */
export interface RoomStats {
  /** Room name. */
  name: string;
  /** Messages stored. */
  messages: number;
  /** Bytes of stored envelopes (UTF-8). */
  bytes: number;
  /** When its last message was stored (ms since the epoch), or undefined if it has none. */
  lastAt: number | undefined;
  /** When it was created. */
  createdAt: number;
  /** The highest seq removed from this room by the retention (0 if none). */
  prunedThrough: number;
  /**
   * For a room migrated from a v1 database whose name folds to the same key as an older room's: that room's name.
   * Such a room is kept but no client can reach it (see PROTOCOL.md, Storage contract).
   */
  shadowedBy?: string;
}

/** What to keep: everything, the last `count` messages of each room, or messages younger than `ageMs`. */
export type Retention = { kind: "all" } | { kind: "count"; count: number } | { kind: "age"; ageMs: number };

/** One row to append. */
export interface MessageRow {
  /** Server-wide sequence number, assigned by the caller. */
  seq: number;
  /** Room name. */
  room: string;
  /** Sender nick (the envelope's `from`). */
  sender: string;
  /** The 16-byte message id. */
  msgId: Uint8Array;
  /** Server clock, ms since the epoch. */
  sentAt: number;
  /** The envelope JSON exactly as relayed. */
  envelope: string;
}

/**
 * What became of one appended row: stored; a duplicate (this room already stores that id); or failed (nothing was
 * written and the id is not stored: it must not be acknowledged).
 */
export type AppendResult = "stored" | "duplicate" | "failed";

/** A stored message as read back: the envelope is left as text so it can be relayed without re-serializing. */
export interface StoredMessage {
  /** Server-wide sequence number. */
  seq: number;
  /** Server clock when stored. */
  sentAt: number;
  /** The envelope JSON exactly as stored. */
  envelope: string;
}

const SHADOW_MARK = "\u0001";

/**
 * The fold given to a shadowed room: the name's fold, U+0001 (a control character, which no name contains, so no
 * name ever folds to this), and the name. (Not NUL: node:sqlite reads a TEXT value only up to its first NUL.)
 */
function shadowFold(name: string): string {
  return `${foldName(name)}${SHADOW_MARK}${name}`;
}

/** One schema step: SQL, or a function for a step that needs code (folding names). */
type Migration = string | ((db: DatabaseSync) => void);

const MIGRATIONS: Migration[] = [
  // 0 -> 1
  `CREATE TABLE rooms (
     name TEXT PRIMARY KEY,
     salt BLOB NOT NULL,
     iterations INTEGER NOT NULL,
     access_pub BLOB NOT NULL,
     created_at INTEGER NOT NULL
   );
   CREATE TABLE messages (
     seq INTEGER PRIMARY KEY,
     room TEXT NOT NULL,
     sender TEXT NOT NULL,
     msg_id BLOB NOT NULL,
     sent_at INTEGER NOT NULL,
     envelope TEXT NOT NULL,
     UNIQUE (room, msg_id)
   );
   CREATE INDEX messages_room_seq ON messages (room, seq);`,
  // 1 -> 2: per-room totals, kept with every write, for the storage cap, retention and `admin rooms`.
  `ALTER TABLE rooms ADD COLUMN messages INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE rooms ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE rooms ADD COLUMN last_at INTEGER;
   UPDATE rooms SET
     messages = (SELECT count(*) FROM messages m WHERE m.room = rooms.name),
     bytes = (SELECT coalesce(sum(length(CAST(m.envelope AS BLOB))), 0) FROM messages m WHERE m.room = rooms.name),
     last_at = (SELECT max(m.sent_at) FROM messages m WHERE m.room = rooms.name);`,
  // 2 -> 3 (protocol v2): the server key, rooms by folded name with an epoch and what retention removed, the nick
  // registry, and direct messages.
  migrateToV2,
];

function migrateToV2(db: DatabaseSync): void {
  db.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE rooms_v3 (
      name TEXT PRIMARY KEY,
      fold TEXT NOT NULL UNIQUE,
      salt BLOB NOT NULL,
      iterations INTEGER NOT NULL,
      access_pub BLOB NOT NULL,
      epoch INTEGER NOT NULL DEFAULT 0,
      created_at INTEGER NOT NULL,
      pruned_through INTEGER NOT NULL DEFAULT 0,
      messages INTEGER NOT NULL DEFAULT 0,
      bytes INTEGER NOT NULL DEFAULT 0,
      last_at INTEGER
    );
    CREATE TABLE nicks (
      fold TEXT PRIMARY KEY,
      nick TEXT NOT NULL,
      identity BLOB NOT NULL,
      registered_at INTEGER NOT NULL,
      used_at INTEGER NOT NULL,
      reserved INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX nicks_identity ON nicks (identity);
    CREATE TABLE identities (
      identity BLOB PRIMARY KEY,
      kx BLOB NOT NULL,
      kx_sig BLOB NOT NULL,
      updated_at INTEGER NOT NULL
    );
    CREATE TABLE rotations (
      old BLOB PRIMARY KEY,
      new BLOB NOT NULL,
      ts INTEGER NOT NULL,
      signature BLOB NOT NULL
    );
    CREATE INDEX rotations_new ON rotations (new);
    CREATE TABLE direct (
      seq INTEGER PRIMARY KEY,
      recipient BLOB NOT NULL,
      sender BLOB NOT NULL,
      msg_id BLOB NOT NULL,
      sent_at INTEGER NOT NULL,
      envelope TEXT NOT NULL,
      delivered_at INTEGER,
      UNIQUE (recipient, msg_id)
    );
    CREATE INDEX direct_recipient_seq ON direct (recipient, seq);
    CREATE INDEX direct_waiting ON direct (recipient, sender) WHERE delivered_at IS NULL;
    CREATE INDEX direct_waiting_sender ON direct (sender) WHERE delivered_at IS NULL;`);
  // The oldest room keeps a folded name; a younger one that folds the same is kept under a fold no name can match.
  const rooms = db.prepare("SELECT * FROM rooms ORDER BY created_at, name").all() as Record<string, unknown>[];
  const insert = db.prepare(
    `INSERT INTO rooms_v3 (name, fold, salt, iterations, access_pub, epoch, created_at, pruned_through, messages,
       bytes, last_at) VALUES (?, ?, ?, ?, ?, 0, ?, 0, ?, ?, ?)`,
  );
  const holders = new Map<string, string>();
  for (const r of rooms) {
    const name = r.name as string;
    const fold = foldName(name);
    const holder = holders.get(fold);
    if (holder === undefined) holders.set(fold, name);
    insert.run(
      name,
      holder === undefined ? fold : shadowFold(name),
      r.salt as Uint8Array,
      r.iterations as number,
      r.access_pub as Uint8Array,
      r.created_at as number,
      r.messages as number,
      r.bytes as number,
      r.last_at as number | null,
    );
  }
  db.exec("DROP TABLE rooms; ALTER TABLE rooms_v3 RENAME TO rooms;");
  db.prepare("INSERT INTO meta (key, value) VALUES ('server_seed', ?)").run(
    crypto.getRandomValues(new Uint8Array(SERVER_SEED_BYTES)),
  );
}

/** What a retention pass removed from one room: messages, bytes, and the highest seq removed. */
interface Trim {
  room: string;
  messages: number;
  bytes: number;
  through: number;
}

/**
 * Pages the WAL may hold before SQLite copies them back into the database (its default is 1000). Each message
 * lands on a random page of the (room, msg_id) index, so a checkpoint mostly rewrites pages that later commits dirty
 * again; checkpointing every 4000 pages (16 MB of WAL) writes such a page once instead of up to four times.
 */
const WAL_CHECKPOINT_PAGES = 4000;

/**
 * How long opening waits for a lock held by someone else (two servers starting at once on a new file both read it
 * first; one of them must then give way). A server that holds the database never lets go, so waiting longer would
 * only delay the refusal.
 */
const LOCK_WAIT_MS = 1000;
/** Rows looked at, and at most deleted, per transaction when old ones are pruned by age. */
export const PRUNE_BATCH = 5000;

/**
 * Where an age retention cuts a run of the oldest rows: the seq of the last row stored before `oldestKept`.
 *
 * @example
 * ```ts
 * ageCutoff([{ seq: 1, sent_at: 10 }, { seq: 2, sent_at: 50 }], 20); // 1
 * ```
 * @param oldest rows in seq order (the oldest first)
 * @param oldestKept the earliest sent_at kept
 * @returns the highest seq to delete, or -1 when none is that old
 */
export function ageCutoff(oldest: { seq: number; sent_at: number }[], oldestKept: number): number {
  let upTo = -1;
  for (const row of oldest) {
    if (Number(row.sent_at) >= oldestKept) break;
    upTo = Number(row.seq);
  }
  return upTo;
}
/** Mode of a database file the server creates: readable and writable by its owner only (SQLite gives -wal the same). */
const NEW_FILE_MODE = 0o600;

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether node:sqlite raised this (a database that failed), rather than code of ours. */
function isDatabaseError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code.startsWith("ERR_SQLITE") || code === "ERR_INVALID_STATE");
}

function isLocked(err: unknown): boolean {
  return /database is locked|database table is locked|SQLITE_BUSY/i.test(reason(err));
}

/** Creates the file with mode 0600 when it does not exist; returns whether it did. */
function createPrivate(path: string): boolean {
  try {
    Deno.openSync(path, { write: true, createNew: true, mode: NEW_FILE_MODE }).close();
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) return false;
    throw new StoreError("open", `cannot create database ${path}: ${reason(err).split("\n")[0]}`);
  }
}

/** Warnings for the database and its -wal file when group or others may read them. */
function looseModes(path: string): string[] {
  if (Deno.build.os === "windows") return [];
  const warnings: string[] = [];
  for (const file of [path, `${path}-wal`]) {
    let mode: number | null;
    try {
      mode = Deno.statSync(file).mode;
    } catch {
      continue;
    }
    if (mode !== null && (mode & 0o044) !== 0) {
      warnings.push(
        `${file} is readable by ${(mode & 0o004) !== 0 ? "others" : "its group"} (mode ${
          (mode & 0o777).toString(8).padStart(4, "0")
        }): it holds the ciphertext log and room verifiers; chmod 600 it`,
      );
    }
  }
  return warnings;
}

/**
 * The message log. Open it with {@link Store.open}; every method is synchronous and short.
 *
 * @example
 * ```ts
 * const store = Store.open("aeschat.db");
 * store.appendBatch([{ seq: 1, room: "general", sender: "alice", msgId, sentAt: Date.now(), envelope }]);
 * store.close();
 * ```
 */
export class Store {
  #db: DatabaseSync;
  #lastSeq: number;
  #getRoom: StatementSync;
  #insertRoom: StatementSync;
  #insertMessage: StatementSync;
  #hasMessage: StatementSync;
  #maxSeq: StatementSync;
  #addStats: StatementSync;
  #trimStats: StatementSync;
  #nthNewest: StatementSync;
  #deleteUpTo: StatementSync;
  #oldest: StatementSync;
  #deleteOldUpTo: StatementSync;
  /** Every room's totals, kept in step with the database. */
  #stats = new Map<string, RoomStats>();
  #retention: Retention;
  #recent: StatementSync;
  #before: StatementSync;
  #after: StatementSync;
  #serverSeed: Uint8Array;

  /** Things an operator should know about the files, found while opening (for example loose permissions). */
  readonly warnings: readonly string[];

  private constructor(
    db: DatabaseSync,
    options: { warnings: string[]; retention: Retention },
  ) {
    this.#db = db;
    this.warnings = options.warnings;
    this.#retention = options.retention;
    this.#getRoom = db.prepare(
      "SELECT name, salt, iterations, access_pub, epoch, created_at FROM rooms WHERE fold = ?",
    );
    // A name or a fold already taken is passed over (and reported as not created).
    this.#insertRoom = db.prepare(
      "INSERT OR IGNORE INTO rooms (name, fold, salt, iterations, access_pub, epoch, created_at) " +
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    // Only a repeated (room, msg_id) is passed over; any other conflict (a seq already used) fails the batch.
    this.#insertMessage = db.prepare(
      "INSERT INTO messages (seq, room, sender, msg_id, sent_at, envelope) VALUES (?, ?, ?, ?, ?, ?) " +
        "ON CONFLICT (room, msg_id) DO NOTHING",
    );
    this.#hasMessage = db.prepare("SELECT 1 AS found FROM messages WHERE room = ? AND msg_id = ?");
    this.#maxSeq = db.prepare("SELECT coalesce(max(seq), 0) AS last FROM messages");
    this.#recent = db.prepare(
      "SELECT seq, sent_at, envelope FROM messages WHERE room = ? ORDER BY seq DESC LIMIT ?",
    );
    this.#before = db.prepare(
      "SELECT seq, sent_at, envelope FROM messages WHERE room = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
    );
    this.#after = db.prepare(
      "SELECT seq, sent_at, envelope FROM messages WHERE room = ? AND seq > ? ORDER BY seq ASC LIMIT ?",
    );
    this.#addStats = db.prepare(
      "UPDATE rooms SET messages = messages + ?, bytes = bytes + ?, last_at = max(coalesce(last_at, 0), ?) WHERE name = ?",
    );
    this.#trimStats = db.prepare(
      "UPDATE rooms SET messages = messages - ?, bytes = bytes - ?, pruned_through = max(pruned_through, ?) " +
        "WHERE name = ?",
    );
    this.#nthNewest = db.prepare("SELECT seq FROM messages WHERE room = ? ORDER BY seq DESC LIMIT 1 OFFSET ?");
    this.#deleteUpTo = db.prepare(
      "DELETE FROM messages WHERE room = ? AND seq <= ? RETURNING seq, length(CAST(envelope AS BLOB)) AS bytes",
    );
    this.#oldest = db.prepare("SELECT seq, sent_at FROM messages ORDER BY seq LIMIT ?");
    this.#deleteOldUpTo = db.prepare(
      "DELETE FROM messages WHERE seq <= ? RETURNING room, seq, length(CAST(envelope AS BLOB)) AS bytes",
    );
    this.#lastSeq = Number((this.#maxSeq.get() as { last: number }).last);
    const rooms = db.prepare(
      "SELECT name, fold, messages, bytes, last_at, created_at, pruned_through FROM rooms",
    ).all() as {
      name: string;
      fold: string;
      messages: number;
      bytes: number;
      last_at: number | null;
      created_at: number;
      pruned_through: number;
    }[];
    const byFold = new Map(rooms.map((r) => [r.fold, r.name]));
    for (const r of rooms) {
      const stats: RoomStats = {
        name: r.name,
        messages: Number(r.messages),
        bytes: Number(r.bytes),
        lastAt: r.last_at === null ? undefined : Number(r.last_at),
        createdAt: Number(r.created_at),
        prunedThrough: Number(r.pruned_through),
      };
      const cut = r.fold.indexOf(SHADOW_MARK);
      if (cut >= 0) stats.shadowedBy = byFold.get(r.fold.slice(0, cut)) ?? "?";
      this.#stats.set(r.name, stats);
    }
    const seed = db.prepare("SELECT value FROM meta WHERE key = 'server_seed'").get() as
      | { value: Uint8Array }
      | undefined;
    if (seed === undefined || seed.value.length !== SERVER_SEED_BYTES) {
      throw new StoreError("corrupt", "the database has no valid server key (meta server_seed)");
    }
    this.#serverSeed = new Uint8Array(seed.value);
  }

  /**
   * Opens (creating if needed, with mode 0600) the database file, takes SQLite's exclusive lock on it for as long as
   * the store is open, sets WAL mode and migrates the schema. The lock is SQLite's own (`locking_mode=EXCLUSIVE`
   * and a write transaction): the operating system drops it when the process ends, even by SIGKILL, so it never goes
   * stale, and while it is held no other server, and no other program, can read or write the file.
   *
   * @example
   * ```ts
   * const store = Store.open(":memory:");
   * ```
   * @param path file path, or ":memory:" for tests
   * @param options.synchronous "full" (survives power loss) or "normal" (survives a process crash); default full
   * @param options.create create the file when it does not exist (default true)
   * @param options.retention what to keep (default everything); a count is applied as messages are appended, an
   *   age by {@link Store.prune}
   * @returns the open store
   * @throws {StoreError} "open" when the file cannot be opened or created, "locked" when another process holds it,
   *   "corrupt" when it is not an aeschat SQLite database, "newer" when a newer aeschat wrote it
   */
  static open(
    path: string,
    options: { synchronous?: "full" | "normal"; create?: boolean; retention?: Retention } = {},
  ): Store {
    const memory = path === ":memory:";
    let created = false;
    if (!memory) {
      if (options.create ?? true) {
        created = createPrivate(path);
      } else if (!exists(path)) {
        throw new StoreError("open", `cannot open database ${path}: no such file`);
      }
    }
    const warnings = memory || created ? [] : looseModes(path);
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path);
    } catch (err) {
      throw new StoreError("open", `cannot open database ${path}: ${reason(err)}`);
    }
    const fail = (err: unknown, doing: string): never => {
      db.close();
      if (err instanceof StoreError) throw err;
      const why = reason(err);
      if (isLocked(err)) throw new StoreError("locked", `cannot open database ${path}: another server holds it`);
      if (/not a database|malformed|corrupt/i.test(why)) {
        throw new StoreError("corrupt", `database ${path} is not a valid SQLite database (${why})`);
      }
      throw new StoreError("open", `cannot ${doing} database ${path}: ${why}`);
    };
    try {
      // Before the first access: from then on this connection keeps every lock it takes.
      db.exec("PRAGMA locking_mode = EXCLUSIVE");
      db.exec(`PRAGMA busy_timeout = ${LOCK_WAIT_MS}`);
      // Reading the schema first fails on a file that is not SQLite, before anything could write to it.
      db.prepare("SELECT count(*) FROM sqlite_master").get();
    } catch (err) {
      fail(err, "read");
    }
    try {
      // Refuse a file that is not ours before writing anything to it: even journal_mode=WAL rewrites the header.
      Store.#checkSchema(db, path);
      const mode = db.prepare("PRAGMA journal_mode = WAL").get() as { journal_mode: string };
      if (!memory && mode.journal_mode !== "wal") throw new Error(`journal_mode is ${mode.journal_mode}, not wal`);
      db.exec(`PRAGMA synchronous = ${options.synchronous === "normal" ? "NORMAL" : "FULL"}`);
      db.exec(`PRAGMA wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`);
      Store.#migrate(db);
      // A write transaction takes the exclusive lock even when nothing above had to write.
      db.exec("BEGIN IMMEDIATE");
      db.exec("COMMIT");
      return new Store(db, { warnings, retention: options.retention ?? { kind: "all" } });
    } catch (err) {
      return fail(err, "prepare");
    }
  }

  static #checkSchema(db: DatabaseSync, path: string): void {
    const { user_version: version } = db.prepare("PRAGMA user_version").get() as { user_version: number };
    if (version > SCHEMA_VERSION) {
      throw new StoreError(
        "newer",
        `database ${path} has schema version ${version}; this aeschat understands up to ${SCHEMA_VERSION}`,
      );
    }
    if (version === 0) {
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all();
      if (tables.length > 0) {
        throw new StoreError("corrupt", `database ${path} holds other tables and no aeschat schema version`);
      }
    }
  }

  static #migrate(db: DatabaseSync): void {
    const { user_version: version } = db.prepare("PRAGMA user_version").get() as { user_version: number };
    for (let v = version; v < SCHEMA_VERSION; v++) {
      db.exec("BEGIN IMMEDIATE");
      try {
        const step = MIGRATIONS[v];
        if (typeof step === "string") db.exec(step);
        else step(db);
        db.exec(`PRAGMA user_version = ${v + 1}`);
        db.exec("COMMIT");
      } catch (err) {
        db.exec("ROLLBACK");
        throw err;
      }
    }
  }

  /** The highest seq stored so far (0 when empty). */
  get lastSeq(): number {
    return this.#lastSeq;
  }

  /** The server key's 32-byte Ed25519 seed (made when the database was created or migrated; never logged). */
  get serverSeed(): Uint8Array {
    return this.#serverSeed.slice();
  }

  /**
   * The database, for the modules that keep their own tables in this file (registry.ts, inbox.ts): they prepare
   * their statements once and write through {@link Store.transaction}.
   */
  get database(): DatabaseSync {
    return this.#db;
  }

  /**
   * Looks up the room a name stands for: the one whose name folds to the same key (`Ops` finds `ops`).
   *
   * @param name any spelling of the room name
   * @returns the room under its canonical name, or undefined when it does not exist
   */
  getRoom(name: string): RoomRecord | undefined {
    const row = this.#read(() => this.#getRoom.get(foldName(name)), "reading a room") as
      | {
        name: string;
        salt: Uint8Array;
        iterations: number;
        access_pub: Uint8Array;
        epoch: number;
        created_at: number;
      }
      | undefined;
    if (!row) return undefined;
    return {
      name: row.name,
      salt: new Uint8Array(row.salt),
      iterations: Number(row.iterations),
      accessPub: new Uint8Array(row.access_pub),
      epoch: Number(row.epoch),
      createdAt: Number(row.created_at),
    };
  }

  /**
   * Creates a room unless one whose name folds to the same key exists; its name as given becomes canonical.
   *
   * @param room the room to create
   * @returns true when created, false when the name (in any spelling that folds the same) was already taken
   * @throws {StoreError} "write" when the database refuses
   */
  createRoom(room: RoomRecord): boolean {
    try {
      const result = this.#insertRoom.run(
        room.name,
        foldName(room.name),
        room.salt,
        room.iterations,
        room.accessPub,
        room.epoch,
        room.createdAt,
      );
      if (Number(result.changes) !== 1) return false;
    } catch (err) {
      throw new StoreError("write", `cannot create room: ${reason(err)}`);
    }
    this.#stats.set(room.name, {
      name: room.name,
      messages: 0,
      bytes: 0,
      lastAt: undefined,
      createdAt: room.createdAt,
      prunedThrough: 0,
    });
    return true;
  }

  /** How many rooms exist. */
  get roomCount(): number {
    return this.#stats.size;
  }

  /**
   * A room's totals.
   *
   * @param name the room
   * @returns its totals, or undefined when it does not exist
   */
  roomStats(name: string): RoomStats | undefined {
    const stats = this.#stats.get(name);
    return stats && { ...stats };
  }

  /**
   * Bytes of envelopes a room stores (0 for an unknown room): cheap, for the storage cap on every message.
   *
   * @param name the room
   * @returns the bytes
   */
  roomBytes(name: string): number {
    return this.#stats.get(name)?.bytes ?? 0;
  }

  /**
   * Every room's totals, by name.
   *
   * @returns the rooms
   */
  rooms(): RoomStats[] {
    return [...this.#stats.values()].map((r) => ({ ...r })).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0
    );
  }

  /**
   * Deletes a room and every message of it, in one transaction.
   *
   * @param name the room
   * @returns its totals before, or undefined when there was no such room
   * @throws {StoreError} "write" when the database refuses
   */
  deleteRoom(name: string): RoomStats | undefined {
    // The exact name first (a shadowed room can be named only so), else the room the name folds to.
    const stats = this.#stats.get(name) ?? this.#stats.get(this.getRoom(name)?.name ?? "");
    if (stats === undefined) return undefined;
    name = stats.name;
    this.#transaction(() => {
      this.#db.prepare("DELETE FROM messages WHERE room = ?").run(name);
      this.#db.prepare("DELETE FROM rooms WHERE name = ?").run(name);
    }, "cannot delete room");
    this.#stats.delete(name);
    return { ...stats };
  }

  /**
   * Applies the retention to what is already stored: the messages older than the age (oldest first, a few thousand
   * at a time), or each room's messages beyond the count. Messages appended later are trimmed to a count as they come.
   *
   * @param now the clock, ms since the epoch
   * @returns how many messages were deleted
   * @throws {StoreError} "write" when the database refuses
   */
  prune(now: number): number {
    const retention = this.#retention;
    if (retention.kind === "count") {
      let deleted = 0;
      const rooms = [...this.#stats.values()].filter((r) => r.messages > retention.count).map((r) => r.name);
      for (const room of rooms) {
        const trimmed = this.#transaction(() => this.#trim(room, retention.count), "cannot apply the retention");
        this.#applyTrims(trimmed);
        deleted += trimmed.reduce((n, t) => n + t.messages, 0);
      }
      return deleted;
    }
    if (retention.kind !== "age") return 0;
    let deleted = 0;
    while (true) {
      const upTo = ageCutoff(
        this.#oldest.all(PRUNE_BATCH) as { seq: number; sent_at: number }[],
        now - retention.ageMs,
      );
      if (upTo < 0) return deleted;
      const trims = this.#transaction(() => {
        const byRoom = new Map<string, Trim>();
        for (const r of this.#deleteOldUpTo.all(upTo) as { room: string; seq: number; bytes: number }[]) {
          const t = byRoom.get(r.room) ?? { room: r.room, messages: 0, bytes: 0, through: 0 };
          t.messages++;
          t.bytes += Number(r.bytes);
          t.through = Math.max(t.through, Number(r.seq));
          byRoom.set(r.room, t);
        }
        const trims = [...byRoom.values()];
        for (const t of trims) this.#trimStats.run(t.messages, t.bytes, t.through, t.room);
        return trims;
      }, "cannot apply the retention");
      this.#applyTrims(trims);
      deleted += trims.reduce((n, t) => n + t.messages, 0);
    }
  }

  /** Deletes a room's messages beyond the newest `keep` (inside a transaction); returns what was deleted. */
  #trim(room: string, keep: number): Trim[] {
    const cutoff = this.#nthNewest.get(room, keep) as { seq: number } | undefined;
    if (cutoff === undefined) return [];
    const rows = this.#deleteUpTo.all(room, cutoff.seq) as { seq: number; bytes: number }[];
    const bytes = rows.reduce((n, r) => n + Number(r.bytes), 0);
    const through = Number(cutoff.seq);
    this.#trimStats.run(rows.length, bytes, through, room);
    return [{ room, messages: rows.length, bytes, through }];
  }

  #applyTrims(trims: Trim[]): void {
    for (const t of trims) {
      const stats = this.#stats.get(t.room);
      if (stats === undefined) continue;
      stats.messages -= t.messages;
      stats.bytes -= t.bytes;
      stats.prunedThrough = Math.max(stats.prunedThrough, t.through);
    }
  }

  /**
   * Runs `fn` in one write transaction: all of it is committed, or none of it. An error `fn` throws on purpose (a
   * rule it enforces) is rolled back and rethrown as it is; a database error becomes a StoreError.
   *
   * @param fn the writes
   * @param what what is being done, for the error
   * @returns what `fn` returned
   * @throws {StoreError} "write" when the database fails (the transaction is rolled back)
   */
  transaction<T>(fn: () => T, what: string): T {
    let thrown: unknown;
    try {
      return this.#transaction(() => {
        try {
          return fn();
        } catch (err) {
          if (!isDatabaseError(err)) thrown = err;
          throw err;
        }
      }, what);
    } catch (err) {
      throw thrown ?? err;
    }
  }

  #transaction<T>(fn: () => T, what: string): T {
    try {
      this.#db.exec("BEGIN");
      try {
        const result = fn();
        this.#db.exec("COMMIT");
        return result;
      } catch (err) {
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
        throw err;
      }
    } catch (err) {
      throw new StoreError("write", `${what}: ${reason(err)}`);
    }
  }

  /**
   * Appends rows in one transaction. A row whose (room, msg_id) is already stored is passed over, not an error; a row
   * whose insert changed nothing for any other reason (a trigger, say) is reported as failed, never as a duplicate, so
   * that nobody is told a message is stored when its row is not there.
   *
   * @param rows rows with increasing seq
   * @returns for each row, what became of it
   * @throws {StoreError} "write" when the transaction fails; nothing of the batch is then stored
   */
  appendBatch(rows: MessageRow[]): AppendResult[] {
    const results: AppendResult[] = new Array(rows.length);
    const added = new Map<string, { messages: number; bytes: number; lastAt: number }>();
    let trims: Trim[] = [];
    try {
      this.#db.exec("BEGIN");
      try {
        for (let i = 0; i < rows.length; i++) {
          const r = rows[i];
          const result = this.#insertMessage.run(r.seq, r.room, r.sender, r.msgId, r.sentAt, r.envelope);
          results[i] = Number(result.changes) === 1
            ? "stored"
            : this.#hasMessage.get(r.room, r.msgId) !== undefined
            ? "duplicate"
            : "failed";
          if (results[i] !== "stored") continue;
          const a = added.get(r.room) ?? { messages: 0, bytes: 0, lastAt: 0 };
          a.messages++;
          a.bytes += utf8Length(r.envelope);
          a.lastAt = Math.max(a.lastAt, r.sentAt);
          added.set(r.room, a);
        }
        for (const [room, a] of added) this.#addStats.run(a.messages, a.bytes, a.lastAt, room);
        const retention = this.#retention;
        if (retention.kind === "count") {
          for (const [room, a] of added) {
            if ((this.#stats.get(room)?.messages ?? 0) + a.messages > retention.count) {
              trims = trims.concat(this.#trim(room, retention.count));
            }
          }
        }
        this.#db.exec("COMMIT");
      } catch (err) {
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
        throw err;
      }
    } catch (err) {
      // A seq may have been taken behind our back: start again from what the database holds.
      this.#resyncLastSeq();
      throw new StoreError("write", `cannot append messages: ${reason(err)}`);
    }
    for (let i = rows.length - 1; i >= 0; i--) {
      if (results[i] === "stored") {
        this.#lastSeq = Math.max(this.#lastSeq, rows[i].seq);
        break;
      }
    }
    for (const [room, a] of added) {
      const stats = this.#stats.get(room);
      if (stats === undefined) continue;
      stats.messages += a.messages;
      stats.bytes += a.bytes;
      stats.lastAt = Math.max(stats.lastAt ?? 0, a.lastAt);
    }
    this.#applyTrims(trims);
    return results;
  }

  #resyncLastSeq(): void {
    try {
      this.#lastSeq = Math.max(this.#lastSeq, Number((this.#maxSeq.get() as { last: number }).last));
    } catch {
      // The database is unusable; the next append reports it.
    }
  }

  /**
   * The last `limit` messages of a room, oldest first.
   *
   * @param room the room
   * @param limit how many at most
   * @returns the messages
   */
  recent(room: string, limit: number): StoredMessage[] {
    return this.#rows(() => this.#recent.all(room, limit), "reading history").reverse();
  }

  /**
   * Up to `limit` messages of a room with seq below `beforeSeq`, oldest first.
   *
   * @param room the room
   * @param options.beforeSeq exclusive upper bound
   * @param options.limit how many at most
   * @returns the messages
   */
  before(room: string, options: { beforeSeq: number; limit: number }): StoredMessage[] {
    return this.#rows(() => this.#before.all(room, options.beforeSeq, options.limit), "reading history")
      .reverse();
  }

  /**
   * Up to `limit` messages of a room with seq above `afterSeq`, oldest first.
   *
   * @param room the room
   * @param options.afterSeq exclusive lower bound
   * @param options.limit how many at most
   * @returns the messages
   */
  after(room: string, options: { afterSeq: number; limit: number }): StoredMessage[] {
    return this.#rows(() => this.#after.all(room, options.afterSeq, options.limit), "reading new messages");
  }

  /** Closes the database; a clean close also checkpoints the WAL. */
  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }

  #read<T>(fn: () => T, what: string): T {
    try {
      return fn();
    } catch (err) {
      throw new StoreError("read", `${what}: ${reason(err)}`);
    }
  }

  #rows(fn: () => unknown[], what: string): StoredMessage[] {
    const rows = this.#read(fn, what) as { seq: number; sent_at: number; envelope: string }[];
    return rows.map((r) => ({ seq: Number(r.seq), sentAt: Number(r.sent_at), envelope: r.envelope }));
  }
}
