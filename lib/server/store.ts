/**
 * The server's ciphertext-only log in SQLite (node:sqlite): schema and migrations, room verifiers, and the
 * append-only message table with per-room history queries. Nothing here ever sees a key or a plaintext.
 *
 * @module
 */

import { DatabaseSync, type StatementSync } from "node:sqlite";

/** Schema version this code writes (PRAGMA user_version). */
export const SCHEMA_VERSION = 1;

/** Why the store failed: lets the server's edge pick an exit code and a clear line. */
export type StoreErrorKind = "open" | "corrupt" | "newer" | "write" | "read";

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
  /** Room name. */
  name: string;
  /** 16-byte PBKDF2 salt. */
  salt: Uint8Array;
  /** PBKDF2 iteration count. */
  iterations: number;
  /** 32-byte Ed25519 public key that join proofs must verify against. */
  accessPub: Uint8Array;
  /** When it was created, ms since the epoch. */
  createdAt: number;
}

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

/** A stored message as read back: the envelope is left as text so it can be relayed without re-serializing. */
export interface StoredMessage {
  /** Server-wide sequence number. */
  seq: number;
  /** Server clock when stored. */
  sentAt: number;
  /** The envelope JSON exactly as stored. */
  envelope: string;
}

const MIGRATIONS: string[] = [
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
];

/**
 * Pages the WAL may hold before SQLite copies them back into the database (its default is 1000). Each message
 * lands on a random page of the (room, msg_id) index, so a checkpoint mostly rewrites pages that later commits dirty
 * again; checkpointing every 4000 pages (16 MB of WAL) writes such a page once instead of up to four times.
 */
const WAL_CHECKPOINT_PAGES = 4000;

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
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
  #recent: StatementSync;
  #before: StatementSync;
  #after: StatementSync;

  private constructor(db: DatabaseSync) {
    this.#db = db;
    this.#getRoom = db.prepare("SELECT name, salt, iterations, access_pub, created_at FROM rooms WHERE name = ?");
    this.#insertRoom = db.prepare(
      "INSERT OR IGNORE INTO rooms (name, salt, iterations, access_pub, created_at) VALUES (?, ?, ?, ?, ?)",
    );
    this.#insertMessage = db.prepare(
      "INSERT OR IGNORE INTO messages (seq, room, sender, msg_id, sent_at, envelope) VALUES (?, ?, ?, ?, ?, ?)",
    );
    this.#recent = db.prepare(
      "SELECT seq, sent_at, envelope FROM messages WHERE room = ? ORDER BY seq DESC LIMIT ?",
    );
    this.#before = db.prepare(
      "SELECT seq, sent_at, envelope FROM messages WHERE room = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
    );
    this.#after = db.prepare(
      "SELECT seq, sent_at, envelope FROM messages WHERE room = ? AND seq > ? ORDER BY seq ASC LIMIT ?",
    );
    const row = db.prepare("SELECT coalesce(max(seq), 0) AS last FROM messages").get() as { last: number };
    this.#lastSeq = Number(row.last);
  }

  /**
   * Opens (creating if needed) the database file, sets WAL mode and migrates the schema.
   *
   * @example
   * ```ts
   * const store = Store.open(":memory:");
   * ```
   * @param path file path, or ":memory:" for tests
   * @param options.synchronous "full" (survives power loss) or "normal" (survives a process crash); default full
   * @returns the open store
   * @throws {StoreError} "open" when the file cannot be opened or created, "corrupt" when it is not an aeschat
   *   SQLite database, "newer" when a newer aeschat wrote it
   */
  static open(path: string, options: { synchronous?: "full" | "normal" } = {}): Store {
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path);
    } catch (err) {
      throw new StoreError("open", `cannot open database ${path}: ${reason(err)}`);
    }
    try {
      // Reading the schema first fails on a file that is not SQLite, before anything could write to it.
      db.prepare("SELECT count(*) FROM sqlite_master").get();
    } catch (err) {
      db.close();
      const why = reason(err);
      if (/not a database|malformed|corrupt/i.test(why)) {
        throw new StoreError("corrupt", `database ${path} is not a valid SQLite database (${why})`);
      }
      throw new StoreError("open", `cannot read database ${path}: ${why}`);
    }
    try {
      db.exec("PRAGMA busy_timeout = 5000");
      // Refuse a file that is not ours before writing anything to it: even journal_mode=WAL rewrites the header.
      Store.#checkSchema(db, path);
      const mode = db.prepare("PRAGMA journal_mode = WAL").get() as { journal_mode: string };
      if (path !== ":memory:" && mode.journal_mode !== "wal") {
        throw new Error(`journal_mode is ${mode.journal_mode}, not wal`);
      }
      db.exec(`PRAGMA synchronous = ${options.synchronous === "normal" ? "NORMAL" : "FULL"}`);
      db.exec(`PRAGMA wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`);
      Store.#migrate(db);
      return new Store(db);
    } catch (err) {
      db.close();
      if (err instanceof StoreError) throw err;
      const why = reason(err);
      if (/not a database|malformed|corrupt/i.test(why)) {
        throw new StoreError("corrupt", `database ${path} is not a valid SQLite database (${why})`);
      }
      throw new StoreError("open", `cannot prepare database ${path}: ${why}`);
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
        db.exec(MIGRATIONS[v]);
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

  /**
   * Looks up a room.
   *
   * @param name the room name
   * @returns the room, or undefined when it does not exist
   */
  getRoom(name: string): RoomRecord | undefined {
    const row = this.#read(() => this.#getRoom.get(name), "reading a room") as
      | { name: string; salt: Uint8Array; iterations: number; access_pub: Uint8Array; created_at: number }
      | undefined;
    if (!row) return undefined;
    return {
      name: row.name,
      salt: new Uint8Array(row.salt),
      iterations: Number(row.iterations),
      accessPub: new Uint8Array(row.access_pub),
      createdAt: Number(row.created_at),
    };
  }

  /**
   * Creates a room unless one of that name exists.
   *
   * @param room the room to create
   * @returns true when created, false when the name was already taken
   * @throws {StoreError} "write" when the database refuses
   */
  createRoom(room: RoomRecord): boolean {
    try {
      const result = this.#insertRoom.run(room.name, room.salt, room.iterations, room.accessPub, room.createdAt);
      return Number(result.changes) === 1;
    } catch (err) {
      throw new StoreError("write", `cannot create room: ${reason(err)}`);
    }
  }

  /**
   * Appends rows in one transaction. A row whose (room, msg_id) is already stored is skipped, not an error.
   *
   * @param rows rows with increasing seq
   * @returns for each row, whether it was inserted (false: a duplicate id)
   * @throws {StoreError} "write" when the transaction fails; nothing of the batch is then stored
   */
  appendBatch(rows: MessageRow[]): boolean[] {
    const inserted: boolean[] = new Array(rows.length);
    try {
      this.#db.exec("BEGIN");
      try {
        for (let i = 0; i < rows.length; i++) {
          const r = rows[i];
          const result = this.#insertMessage.run(r.seq, r.room, r.sender, r.msgId, r.sentAt, r.envelope);
          inserted[i] = Number(result.changes) === 1;
        }
        this.#db.exec("COMMIT");
      } catch (err) {
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
        throw err;
      }
    } catch (err) {
      throw new StoreError("write", `cannot append messages: ${reason(err)}`);
    }
    for (let i = rows.length - 1; i >= 0; i--) {
      if (inserted[i]) {
        this.#lastSeq = Math.max(this.#lastSeq, rows[i].seq);
        break;
      }
    }
    return inserted;
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
