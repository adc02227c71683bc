/**
 * The SQLite log: the schema contract outside tools rely on, WAL mode, migration on start, reopening, refusing
 * files that are not ours (left unchanged), and the append and history queries the hub uses.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { type MessageRow, SCHEMA_VERSION, Store, StoreError } from "../lib/server/store.ts";

async function withTempDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-store-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function withDb<T>(path: string, fn: (db: DatabaseSync) => T, options: { readOnly?: boolean } = {}): T {
  const db = new DatabaseSync(path, { readOnly: options.readOnly ?? true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

function msgId(n: number): Uint8Array {
  const id = new Uint8Array(16);
  id[15] = n;
  return id;
}

function row(seq: number, options: { room?: string; id?: number; sender?: string } = {}): MessageRow {
  const room = options.room ?? "general";
  return {
    seq,
    room,
    sender: options.sender ?? "alice",
    msgId: msgId(options.id ?? seq),
    sentAt: 1_700_000_000_000 + seq,
    envelope: `{"v":1,"room":${JSON.stringify(room)},"n":${seq}}`,
  };
}

const ROOM = {
  name: "general",
  salt: new Uint8Array(16).fill(7),
  iterations: 123_456,
  accessPub: new Uint8Array(32).fill(9),
  epoch: 0,
  createdAt: 1_700_000_000_000,
};

function assertStoreError(fn: () => unknown, kind: StoreError["kind"], message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${err}`);
    assert.equal(err.kind, kind, err.message);
    assert.match(err.message, message);
    return true;
  });
}

async function assertUnchanged(path: string, before: Uint8Array): Promise<void> {
  const after = await Deno.readFile(path);
  assert.deepEqual(after, before, `${path} was modified`);
  for (const suffix of ["-wal", "-shm", "-journal"]) {
    const exists = await Deno.stat(path + suffix).then(() => true, () => false);
    assert.ok(!exists, `${path}${suffix} was created`);
  }
}

Deno.test("a new database has exactly the documented tables, columns, unique key, index and user_version", () =>
  withTempDir((dir) => {
    const path = `${dir}/a.db`;
    Store.open(path).close();
    withDb(path, (db) => {
      const columns = (table: string) =>
        (db.prepare(`PRAGMA table_info(${table})`).all() as {
          name: string;
          type: string;
          notnull: number;
          pk: number;
        }[]).map((c) => [c.name, c.type, Number(c.notnull), Number(c.pk)]);
      assert.deepEqual(columns("meta"), [["key", "TEXT", 0, 1], ["value", "BLOB", 1, 0]]);
      assert.deepEqual(columns("rooms"), [
        ["name", "TEXT", 0, 1],
        ["fold", "TEXT", 1, 0],
        ["salt", "BLOB", 1, 0],
        ["iterations", "INTEGER", 1, 0],
        ["access_pub", "BLOB", 1, 0],
        ["epoch", "INTEGER", 1, 0],
        ["created_at", "INTEGER", 1, 0],
        ["pruned_through", "INTEGER", 1, 0],
        ["messages", "INTEGER", 1, 0],
        ["bytes", "INTEGER", 1, 0],
        ["last_at", "INTEGER", 0, 0],
      ]);
      assert.deepEqual(columns("nicks"), [
        ["fold", "TEXT", 0, 1],
        ["nick", "TEXT", 1, 0],
        ["identity", "BLOB", 1, 0],
        ["registered_at", "INTEGER", 1, 0],
        ["used_at", "INTEGER", 1, 0],
        ["reserved", "INTEGER", 1, 0],
      ]);
      assert.deepEqual(columns("identities"), [
        ["identity", "BLOB", 0, 1],
        ["kx", "BLOB", 1, 0],
        ["kx_sig", "BLOB", 1, 0],
        ["updated_at", "INTEGER", 1, 0],
      ]);
      assert.deepEqual(columns("rotations"), [
        ["old", "BLOB", 0, 1],
        ["new", "BLOB", 1, 0],
        ["ts", "INTEGER", 1, 0],
        ["signature", "BLOB", 1, 0],
      ]);
      assert.deepEqual(columns("direct"), [
        ["seq", "INTEGER", 0, 1],
        ["recipient", "BLOB", 1, 0],
        ["sender", "BLOB", 1, 0],
        ["msg_id", "BLOB", 1, 0],
        ["sent_at", "INTEGER", 1, 0],
        ["envelope", "TEXT", 1, 0],
        ["delivered_at", "INTEGER", 0, 0],
      ]);
      assert.deepEqual(columns("messages"), [
        ["seq", "INTEGER", 0, 1],
        ["room", "TEXT", 1, 0],
        ["sender", "TEXT", 1, 0],
        ["msg_id", "BLOB", 1, 0],
        ["sent_at", "INTEGER", 1, 0],
        ["envelope", "TEXT", 1, 0],
      ]);
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all()
        .map((r) => (r as { name: string }).name);
      assert.deepEqual(tables, ["direct", "identities", "messages", "meta", "nicks", "rooms", "rotations"]);
      const indexes = (table: string) =>
        (db.prepare(`PRAGMA index_list(${table})`).all() as { name: string; unique: number; partial: number }[])
          .map((i) => {
            const cols = (db.prepare(`PRAGMA index_info(${JSON.stringify(i.name)})`).all() as { name: string }[])
              .map((c) => c.name);
            return Number(i.partial)
              ? [Number(i.unique), cols.join(","), "partial"]
              : [Number(i.unique), cols.join(",")];
          }).sort();
      assert.deepEqual(indexes("messages"), [[0, "room,seq"], [1, "room,msg_id"]]);
      assert.deepEqual(indexes("rooms"), [[1, "fold"], [1, "name"]]);
      assert.deepEqual(indexes("nicks"), [[0, "identity"], [1, "fold"]]);
      assert.deepEqual(indexes("rotations"), [[0, "new"], [1, "old"]]);
      assert.deepEqual(indexes("direct"), [
        [0, "recipient,sender", "partial"],
        [0, "recipient,seq"],
        [0, "sender", "partial"],
        [1, "recipient,msg_id"],
      ]);
      const waiting = db.prepare("SELECT sql FROM sqlite_master WHERE name LIKE 'direct_waiting%' ORDER BY name").all()
        .map((r) => (r as { sql: string }).sql.replace(/^.* WHERE /, ""));
      assert.deepEqual(waiting, ["delivered_at IS NULL", "delivered_at IS NULL"]);
      assert.equal((db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version, 3);
      assert.equal(SCHEMA_VERSION, 3);
      const seed = db.prepare("SELECT value FROM meta WHERE key = 'server_seed'").get() as { value: Uint8Array };
      assert.equal(seed.value.length, 32, "the server key's seed is made with the database");
    });
  }));

Deno.test("the database file is in WAL journal mode", () =>
  withTempDir((dir) => {
    const path = `${dir}/a.db`;
    Store.open(path).close();
    const mode = withDb(path, (db) => db.prepare("PRAGMA journal_mode").get()) as { journal_mode: string };
    assert.equal(mode.journal_mode, "wal");
  }));

Deno.test("an open store holds the database: a second store, or any reader, is refused with kind locked until it closes", () =>
  withTempDir((dir) => {
    const path = `${dir}/a.db`;
    const first = Store.open(path);
    try {
      first.appendBatch([row(1)]);
      assertStoreError(() => Store.open(path), "locked", /^cannot open database .*a\.db: another server holds it$/);
      assert.throws(() =>
        withDb(path, (db) => {
          db.exec("PRAGMA busy_timeout = 0");
          return db.prepare("SELECT count(*) FROM messages").get();
        }), /locked/);
      assert.deepEqual(first.appendBatch([row(2)]), ["stored"], "the holder is not disturbed");
    } finally {
      first.close();
    }
    const second = Store.open(path);
    try {
      assert.equal(second.lastSeq, 2);
    } finally {
      second.close();
    }
  }));

Deno.test({
  name:
    "a new database is created 0600, and its -wal file too; an existing file's mode is kept but a loose one is warned about",
  ignore: Deno.build.os === "windows",
  fn: () =>
    withTempDir((dir) => {
      const path = `${dir}/a.db`;
      const store = Store.open(path);
      try {
        store.appendBatch([row(1)]);
        assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
        assert.equal(Deno.statSync(`${path}-wal`).mode! & 0o777, 0o600);
        assert.deepEqual(store.warnings, []);
      } finally {
        store.close();
      }
      Deno.chmodSync(path, 0o640);
      const loose = Store.open(path);
      loose.close();
      assert.equal(Deno.statSync(path).mode! & 0o777, 0o640, "the operator's choice is left alone");
      assert.equal(loose.warnings.length, 1);
      assert.match(loose.warnings[0], /a\.db is readable by its group \(mode 0640\).*chmod 600/);
      Deno.chmodSync(path, 0o604);
      const open = Store.open(path);
      open.close();
      assert.match(open.warnings[0], /readable by others \(mode 0604\)/);
    }),
});

Deno.test("an empty SQLite file at user_version 0 is migrated on start", () =>
  withTempDir((dir) => {
    const path = `${dir}/empty.db`;
    withDb(path, (db) => db.exec("PRAGMA user_version = 0"), { readOnly: false });
    const store = Store.open(path);
    try {
      assert.equal(store.lastSeq, 0);
      assert.deepEqual(store.appendBatch([row(1)]), ["stored"]);
    } finally {
      store.close();
    }
    withDb(path, (db) => {
      assert.equal((db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version, 3);
      assert.equal(Number((db.prepare("SELECT count(*) AS n FROM messages").get() as { n: number }).n), 1);
    });
  }));

Deno.test("reopening a database keeps its rooms, messages and last seq", () =>
  withTempDir((dir) => {
    const path = `${dir}/a.db`;
    const first = Store.open(path);
    assert.equal(first.createRoom(ROOM), true);
    assert.deepEqual(first.appendBatch([row(1), row(2, { room: "other" }), row(5)]), ["stored", "stored", "stored"]);
    first.close();
    const second = Store.open(path);
    try {
      assert.equal(second.lastSeq, 5);
      assert.deepEqual(second.getRoom("general"), ROOM);
      assert.deepEqual(second.recent("general", 10).map((m) => m.seq), [1, 5]);
      assert.deepEqual(second.recent("general", 10)[1], { seq: 5, sentAt: row(5).sentAt, envelope: row(5).envelope });
      // Ids stored before the restart are still duplicates after it.
      assert.deepEqual(second.appendBatch([row(6, { id: 5 }), row(7)]), ["duplicate", "stored"]);
      assert.equal(second.lastSeq, 7);
    } finally {
      second.close();
    }
  }));

Deno.test("a newer schema version is refused with kind newer and the file is left unchanged", () =>
  withTempDir(async (dir) => {
    const path = `${dir}/newer.db`;
    withDb(path, (db) => db.exec("CREATE TABLE messages (seq INTEGER PRIMARY KEY); PRAGMA user_version = 4"), {
      readOnly: false,
    });
    const before = await Deno.readFile(path);
    assertStoreError(() => Store.open(path), "newer", /schema version 4; this aeschat understands up to 3/);
    await assertUnchanged(path, before);
  }));

Deno.test("a file that is not SQLite is refused with kind corrupt and left unchanged", () =>
  withTempDir(async (dir) => {
    const path = `${dir}/notes.db`;
    await Deno.writeTextFile(path, "these are my notes, not a database\n".repeat(200));
    const before = await Deno.readFile(path);
    assertStoreError(() => Store.open(path), "corrupt", /is not a valid SQLite database/);
    await assertUnchanged(path, before);
  }));

Deno.test("another program's SQLite database (tables, no schema version) is refused and left unchanged", () =>
  withTempDir(async (dir) => {
    const path = `${dir}/foreign.db`;
    withDb(path, (db) => db.exec("CREATE TABLE contacts (name TEXT); INSERT INTO contacts VALUES ('x')"), {
      readOnly: false,
    });
    const before = await Deno.readFile(path);
    assertStoreError(() => Store.open(path), "corrupt", /holds other tables and no aeschat schema version/);
    await assertUnchanged(path, before);
  }));

Deno.test("a database in a missing directory is refused with kind open, naming the path", () =>
  withTempDir((dir) => {
    assertStoreError(() => Store.open(`${dir}/missing/a.db`), "open", /missing\/a\.db/);
  }));

Deno.test("createRoom stores a room once under any spelling that folds the same, and getRoom finds it by any", () => {
  const store = Store.open(":memory:");
  try {
    assert.equal(store.getRoom("general"), undefined);
    assert.equal(store.createRoom({ ...ROOM, name: "General" }), true);
    for (const other of ["General", "general", "GENERAL", "Gеneral", /* Cyrillic е */ "ｇｅｎｅｒａｌ"]) {
      assert.equal(store.createRoom({ ...ROOM, name: other, salt: new Uint8Array(16) }), false, other);
      assert.deepEqual(store.getRoom(other), { ...ROOM, name: "General" }, `${other} finds the first creation`);
    }
    assert.equal(store.roomCount, 1);
    assert.deepEqual(store.rooms().map((r) => r.name), ["General"]);
    assert.equal(store.getRoom("genera1x"), undefined);
  } finally {
    store.close();
  }
});

Deno.test("the server key's seed is made once with the database and kept; another database has another", () =>
  withTempDir((dir) => {
    const first = Store.open(`${dir}/a.db`);
    const seed = first.serverSeed;
    first.close();
    const again = Store.open(`${dir}/a.db`);
    const other = Store.open(`${dir}/b.db`);
    try {
      assert.equal(seed.length, 32);
      assert.deepEqual(again.serverSeed, seed);
      assert.notDeepEqual(other.serverSeed, seed);
    } finally {
      again.close();
      other.close();
    }
  }));

Deno.test("appendBatch skips an id already stored in that room, but not the same id in another room", () => {
  const store = Store.open(":memory:");
  try {
    assert.deepEqual(store.appendBatch([row(1), row(2)]), ["stored", "stored"]);
    assert.deepEqual(
      store.appendBatch([row(3, { id: 1 }), row(4, { id: 1, room: "other" }), row(5, { id: 5 }), row(6, { id: 5 })]),
      ["duplicate", "stored", "stored", "duplicate"],
    );
    assert.equal(store.lastSeq, 5, "lastSeq is the highest inserted seq, not the highest attempted");
    assert.deepEqual(store.recent("general", 10).map((m) => m.seq), [1, 2, 5]);
    assert.deepEqual(store.recent("other", 10).map((m) => m.seq), [4]);
  } finally {
    store.close();
  }
});

Deno.test("appendBatch stores all of a batch or none of it", () => {
  const store = Store.open(":memory:");
  try {
    store.appendBatch([row(1)]);
    // The third row cannot be bound: the whole transaction is rolled back.
    const bad = { ...row(4), envelope: undefined as unknown as string };
    assertStoreError(() => store.appendBatch([row(2), row(3), bad]), "write", /cannot append messages/);
    assert.deepEqual(store.recent("general", 10).map((m) => m.seq), [1]);
    assert.equal(store.lastSeq, 1);
    assert.deepEqual(store.appendBatch([row(2), row(3)]), ["stored", "stored"], "the batch can be sent again");
  } finally {
    store.close();
  }
});

Deno.test("appendBatch reports an insert that changed nothing as failed, not duplicate, unless the room stores that id", () =>
  withTempDir((dir) => {
    const path = `${dir}/a.db`;
    Store.open(path).close();
    // Something silently drops inserts of one sender: the row is not there, so it must not be called a duplicate.
    withDb(path, (db) => {
      db.exec(`CREATE TRIGGER drop_mallory BEFORE INSERT ON messages WHEN NEW.sender = 'mallory'
               BEGIN SELECT RAISE(IGNORE); END`);
    }, { readOnly: false });
    const store = Store.open(path);
    try {
      assert.deepEqual(
        store.appendBatch([row(1), row(2, { sender: "mallory" }), row(3, { id: 1 }), row(4)]),
        ["stored", "failed", "duplicate", "stored"],
      );
      assert.deepEqual(store.recent("general", 10).map((m) => m.seq), [1, 4]);
      assert.equal(store.lastSeq, 4);
    } finally {
      store.close();
    }
  }));

Deno.test("appendBatch fails the whole batch on a seq that is already used, and the next batch starts after it", () => {
  const store = Store.open(":memory:");
  try {
    store.appendBatch([row(1), row(2)]);
    assertStoreError(() => store.appendBatch([row(3), row(2, { id: 9 })]), "write", /cannot append messages/);
    assert.deepEqual(store.recent("general", 10).map((m) => m.seq), [1, 2], "nothing of the failed batch is stored");
    assert.equal(store.lastSeq, 2);
  } finally {
    store.close();
  }
});

Deno.test("a closed store refuses writes with kind write", () => {
  const store = Store.open(":memory:");
  store.close();
  assertStoreError(() => store.appendBatch([row(1)]), "write", /cannot append messages/);
  assertStoreError(() => store.createRoom(ROOM), "write", /cannot create room/);
});

Deno.test("recent, before and after page one room's messages oldest first", () => {
  const store = Store.open(":memory:");
  try {
    const rows: MessageRow[] = [];
    for (let seq = 1; seq <= 12; seq++) rows.push(row(seq, { room: seq % 3 === 0 ? "other" : "general" }));
    store.appendBatch(rows);
    const seqs = (list: { seq: number }[]) => list.map((m) => m.seq);
    // general holds 1 2 4 5 7 8 10 11.
    assert.deepEqual(seqs(store.recent("general", 3)), [8, 10, 11]);
    assert.deepEqual(seqs(store.recent("general", 100)), [1, 2, 4, 5, 7, 8, 10, 11]);
    assert.deepEqual(seqs(store.recent("general", 0)), []);
    assert.deepEqual(seqs(store.before("general", { beforeSeq: 8, limit: 3 })), [4, 5, 7]);
    assert.deepEqual(seqs(store.before("general", { beforeSeq: 3, limit: 10 })), [1, 2]);
    assert.deepEqual(seqs(store.before("general", { beforeSeq: 1, limit: 10 })), []);
    assert.deepEqual(seqs(store.after("general", { afterSeq: 4, limit: 3 })), [5, 7, 8]);
    assert.deepEqual(seqs(store.after("general", { afterSeq: 11, limit: 3 })), []);
    assert.deepEqual(seqs(store.after("other", { afterSeq: 0, limit: 10 })), [3, 6, 9, 12]);
    assert.deepEqual(seqs(store.recent("nobody", 10)), []);
    const [m] = store.after("other", { afterSeq: 8, limit: 1 });
    assert.deepEqual(m, { seq: 9, sentAt: 1_700_000_000_009, envelope: '{"v":1,"room":"other","n":9}' });
  } finally {
    store.close();
  }
});

/** Writes the schema a protocol v1 server wrote at version 1 (rooms and messages, no totals). */
function createV1Schema(db: DatabaseSync): void {
  db.exec(`CREATE TABLE rooms (name TEXT PRIMARY KEY, salt BLOB NOT NULL, iterations INTEGER NOT NULL,
                               access_pub BLOB NOT NULL, created_at INTEGER NOT NULL);
           CREATE TABLE messages (seq INTEGER PRIMARY KEY, room TEXT NOT NULL, sender TEXT NOT NULL,
                                  msg_id BLOB NOT NULL, sent_at INTEGER NOT NULL, envelope TEXT NOT NULL,
                                  UNIQUE (room, msg_id));
           CREATE INDEX messages_room_seq ON messages (room, seq);
           PRAGMA user_version = 1;`);
}

Deno.test("a version 1 or 2 database migrated to 3 has the same direct table and indexes as a new one", () =>
  withTempDir((dir) => {
    const directSchema = (path: string) =>
      withDb(
        path,
        (db) =>
          db.prepare("SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'direct' ORDER BY name").all()
            .map((r) => ({ ...r })),
      );
    Store.open(`${dir}/new.db`).close();
    const fresh = directSchema(`${dir}/new.db`);
    assert.ok(JSON.stringify(fresh).includes("sender BLOB NOT NULL"));
    for (const version of [1, 2]) {
      const path = `${dir}/v${version}.db`;
      withDb(path, (db) => {
        createV1Schema(db);
        if (version === 2) {
          db.exec(`ALTER TABLE rooms ADD COLUMN messages INTEGER NOT NULL DEFAULT 0;
                   ALTER TABLE rooms ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
                   ALTER TABLE rooms ADD COLUMN last_at INTEGER;
                   PRAGMA user_version = 2;`);
        }
      }, { readOnly: false });
      Store.open(path).close();
      assert.deepEqual(directSchema(path), fresh, `migrated from version ${version}`);
      const version3 = withDb(path, (db) => db.prepare("PRAGMA user_version").get() as { user_version: number });
      assert.equal(version3.user_version, 3);
    }
  }));

Deno.test("a version 1 database is migrated with each room's totals counted from its messages", () =>
  withTempDir((dir) => {
    const path = `${dir}/v1.db`;
    withDb(path, (db) => {
      createV1Schema(db);
      const room = db.prepare("INSERT INTO rooms VALUES (?, ?, ?, ?, ?)");
      room.run("general", ROOM.salt, ROOM.iterations, ROOM.accessPub, 5);
      room.run("café", ROOM.salt, ROOM.iterations, ROOM.accessPub, 6);
      room.run("empty", ROOM.salt, ROOM.iterations, ROOM.accessPub, 7);
      const msg = db.prepare("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)");
      for (const r of [row(1), row(2), row(3, { room: "café" })]) {
        msg.run(r.seq, r.room, r.sender, r.msgId, r.sentAt, r.envelope);
      }
    }, { readOnly: false });
    const store = Store.open(path);
    try {
      const bytes = (r: MessageRow) => new TextEncoder().encode(r.envelope).length;
      const more = { prunedThrough: 0 };
      assert.deepEqual(store.rooms(), [
        {
          name: "café",
          messages: 1,
          bytes: bytes(row(3, { room: "café" })),
          lastAt: row(3).sentAt,
          createdAt: 6,
          ...more,
        },
        { name: "empty", messages: 0, bytes: 0, lastAt: undefined, createdAt: 7, ...more },
        {
          name: "general",
          messages: 2,
          bytes: bytes(row(1)) + bytes(row(2)),
          lastAt: row(2).sentAt,
          createdAt: 5,
          ...more,
        },
      ]);
      assert.equal(store.roomCount, 3);
    } finally {
      store.close();
    }
  }));

Deno.test("room totals follow appends, duplicates, deletions and a reopen", () =>
  withTempDir((dir) => {
    const path = `${dir}/a.db`;
    const store = Store.open(path);
    const bytes = (r: MessageRow) => new TextEncoder().encode(r.envelope).length;
    try {
      store.createRoom(ROOM);
      store.createRoom({ ...ROOM, name: "other" });
      assert.deepEqual(store.roomStats("general"), {
        name: "general",
        messages: 0,
        bytes: 0,
        lastAt: undefined,
        createdAt: ROOM.createdAt,
        prunedThrough: 0,
      });
      store.appendBatch([row(1), row(2), row(3, { id: 1 }), row(4, { room: "other" })]);
      assert.deepEqual(store.roomStats("general"), {
        name: "general",
        messages: 2,
        bytes: bytes(row(1)) + bytes(row(2)),
        lastAt: row(2).sentAt,
        createdAt: ROOM.createdAt,
        prunedThrough: 0,
      });
      assert.equal(store.roomBytes("other"), bytes(row(4, { room: "other" })));
      assert.equal(store.roomBytes("nowhere"), 0);
      const deleted = store.deleteRoom("other");
      assert.equal(deleted?.messages, 1);
      assert.equal(store.deleteRoom("other"), undefined, "already gone");
      assert.equal(store.getRoom("other"), undefined);
      assert.deepEqual(store.after("other", { afterSeq: 0, limit: 10 }), []);
    } finally {
      store.close();
    }
    const again = Store.open(path);
    try {
      assert.deepEqual(again.rooms().map((r) => [r.name, r.messages, r.bytes]), [
        ["general", 2, bytes(row(1)) + bytes(row(2))],
      ]);
    } finally {
      again.close();
    }
  }));

Deno.test("a count retention keeps each room's newest N as messages come, and prune applies it to what is stored", () =>
  withTempDir((dir) => {
    const path = `${dir}/a.db`;
    const all = Store.open(path);
    all.createRoom(ROOM);
    all.appendBatch(Array.from({ length: 8 }, (_, i) => row(i + 1)));
    all.close();
    const store = Store.open(path, { retention: { kind: "count", count: 3 } });
    try {
      assert.equal(store.prune(Date.now()), 5);
      assert.deepEqual(store.recent("general", 10).map((m) => m.seq), [6, 7, 8]);
      assert.equal(store.roomStats("general")?.prunedThrough, 5, "what was removed is said");
      store.appendBatch([row(9), row(10)]);
      assert.deepEqual(store.recent("general", 10).map((m) => m.seq), [8, 9, 10]);
      assert.equal(store.roomStats("general")?.prunedThrough, 7);
      assert.equal(store.roomStats("general")?.messages, 3);
      const bytes = [8, 9, 10].reduce((n, seq) => n + new TextEncoder().encode(row(seq).envelope).length, 0);
      assert.equal(store.roomBytes("general"), bytes);
      assert.equal(store.lastSeq, 10);
    } finally {
      store.close();
    }
  }));

Deno.test("an age retention deletes messages stored before the age, oldest first, and updates the totals", () =>
  withTempDir((dir) => {
    const path = `${dir}/a.db`;
    const store = Store.open(path, { retention: { kind: "age", ageMs: 1000 } });
    try {
      store.createRoom(ROOM);
      store.createRoom({ ...ROOM, name: "other" });
      const now = 1_800_000_000_000;
      const at = (seq: number, sentAt: number, room = "general") => ({ ...row(seq, { room }), sentAt });
      store.appendBatch([at(1, now - 5000), at(2, now - 4000, "other"), at(3, now - 1001), at(4, now - 999)]);
      store.appendBatch([at(5, now, "other")]);
      assert.equal(store.prune(now), 3);
      assert.deepEqual(store.recent("general", 10).map((m) => m.seq), [4]);
      assert.deepEqual(store.recent("other", 10).map((m) => m.seq), [5]);
      assert.deepEqual(store.rooms().map((r) => [r.name, r.messages, r.prunedThrough]), [
        ["general", 1, 3],
        ["other", 1, 2],
      ]);
      assert.equal(store.prune(now), 0);
    } finally {
      store.close();
    }
  }));

Deno.test("a v1 database's rooms whose names fold together: the oldest keeps the name, the others are shadowed", () =>
  withTempDir((dir) => {
    const path = `${dir}/v1.db`;
    withDb(path, (db) => {
      createV1Schema(db);
      const room = db.prepare("INSERT INTO rooms VALUES (?, ?, ?, ?, ?)");
      room.run("ops", ROOM.salt, ROOM.iterations, ROOM.accessPub, 20);
      room.run("Ops", new Uint8Array(16).fill(1), ROOM.iterations, ROOM.accessPub, 10);
      room.run("0PS", ROOM.salt, ROOM.iterations, ROOM.accessPub, 30);
      room.run("dev", ROOM.salt, ROOM.iterations, ROOM.accessPub, 40);
      const msg = db.prepare("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)");
      for (const r of [row(1, { room: "ops" }), row(2, { room: "Ops" }), row(3, { room: "dev" })]) {
        msg.run(r.seq, r.room, r.sender, r.msgId, r.sentAt, r.envelope);
      }
    }, { readOnly: false });
    const store = Store.open(path);
    try {
      assert.equal(store.getRoom("OPS")?.name, "Ops", "the oldest keeps the folded name");
      assert.deepEqual(store.getRoom("ops")?.salt, new Uint8Array(16).fill(1));
      assert.equal(store.getRoom("dev")?.name, "dev");
      assert.deepEqual(
        store.rooms().map((r) => [r.name, r.messages, r.shadowedBy]),
        [["0PS", 0, "Ops"], ["Ops", 1, undefined], ["dev", 1, undefined], ["ops", 1, "Ops"]],
        "every room and message is kept; the shadowed ones say by which room",
      );
      assert.deepEqual(store.recent("ops", 10).map((m) => m.seq), [1], "a shadowed room's messages are kept");
      assert.equal(store.deleteRoom("ops")?.name, "ops", "the exact name deletes a shadowed room");
      assert.equal(store.getRoom("ops")?.name, "Ops");
    } finally {
      store.close();
    }
    const again = Store.open(path);
    try {
      assert.deepEqual(again.rooms().map((r) => [r.name, r.shadowedBy]), [["0PS", "Ops"], ["Ops", undefined], [
        "dev",
        undefined,
      ]]);
    } finally {
      again.close();
    }
  }));
