/**
 * Direct-message inboxes (protocol v2) in the store's database: one inbox per identity key, holding the direct
 * envelopes sent to it and the copies of those it sent, as ciphertext. A direct message is two rows written in one
 * transaction (the recipient's and the sender's copy), each numbered by the inbox sequence; a row is marked delivered
 * the first time the recipient's row is handed to one of its connections. The cap per inbox and the retention are
 * applied here.
 *
 * @module
 */

import type { StatementSync } from "node:sqlite";
import { sameBytes } from "../bytes.ts";
import { ageCutoff, PRUNE_BATCH, type Retention, type Store, StoreError } from "./store.ts";

/** Messages an inbox may hold by default (--direct-inbox). */
export const DEFAULT_DIRECT_INBOX = 10_000;

/** Runs a read, turning a database failure into a StoreError that says what was being done. */
function read<T>(fn: () => T, what: string): T {
  try {
    return fn();
  } catch (err) {
    throw new StoreError("read", `${what}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** One direct message to store: the recipient's envelope and the sender's copy, serialized. */
export interface DirectPair {
  /** The recipient's identity key (whose inbox gets `envelope`). */
  recipient: Uint8Array;
  /** The sender's identity key (whose inbox gets `copy`). */
  sender: Uint8Array;
  /** The 16-byte message id (the same in both). */
  msgId: Uint8Array;
  /** The recipient's envelope, canonical JSON. */
  envelope: string;
  /** The sender's copy, canonical JSON. */
  copy: string;
}

/** What became of one pair: stored (with both rows' seqs), a duplicate id, a full inbox, or a failure. */
export type DirectResult =
  | { result: "stored"; seq: number; copySeq: number }
  | { result: "duplicate" | "failed" }
  | { result: "full"; whose: "recipient" | "sender" };

/** A stored row as handed out. */
export interface DirectRow {
  /** Inbox seq. */
  seq: number;
  /** Server clock at commit. */
  sentAt: number;
  /** The envelope text as stored. */
  envelope: string;
  /** When the recipient was first handed the message (for a copy: the recipient's row), if it was. */
  deliveredAt: number | undefined;
}

/**
 * The inboxes over a {@link Store}'s database.
 *
 * @example
 * ```ts
 * const inboxes = new Inboxes(store, { capacity: 10_000 });
 * const [outcome] = inboxes.appendBatch([pair], Date.now());
 * ```
 */
export class Inboxes {
  #store: Store;
  #capacity: number;
  #retention: Retention;
  /** Rows per inbox (by hex key), counted once when first needed and kept in step. */
  #counts = new Map<string, number>();
  #insert: StatementSync;
  #has: StatementSync;
  #count: StatementSync;
  #latest: StatementSync;
  #after: StatementSync;
  #markDelivered: StatementSync;
  #nthNewest: StatementSync;
  #deleteUpTo: StatementSync;
  #oldest: StatementSync;
  #deleteOldUpTo: StatementSync;

  /**
   * @param store the open store whose database holds the `direct` table
   * @param options.capacity --direct-inbox: rows one inbox may hold
   * @param options.retention what to keep (the server's --retention)
   */
  constructor(store: Store, options: { capacity?: number; retention?: Retention } = {}) {
    this.#store = store;
    this.#capacity = options.capacity ?? DEFAULT_DIRECT_INBOX;
    this.#retention = options.retention ?? { kind: "all" };
    const db = store.database;
    this.#insert = db.prepare(
      "INSERT INTO direct (recipient, msg_id, sent_at, envelope) VALUES (?, ?, ?, ?) " +
        "ON CONFLICT (recipient, msg_id) DO NOTHING RETURNING seq",
    );
    this.#has = db.prepare("SELECT 1 AS found FROM direct WHERE recipient = ? AND msg_id = ?");
    this.#count = db.prepare("SELECT count(*) AS n FROM direct WHERE recipient = ?");
    this.#latest = db.prepare("SELECT coalesce(max(seq), 0) AS seq FROM direct WHERE recipient = ?");
    this.#after = db.prepare(
      "SELECT seq, sent_at, envelope, delivered_at FROM direct WHERE recipient = ? AND seq > ? ORDER BY seq LIMIT ?",
    );
    this.#markDelivered = db.prepare(
      "UPDATE direct SET delivered_at = ? WHERE recipient = ? AND msg_id = ? AND delivered_at IS NULL",
    );
    this.#nthNewest = db.prepare("SELECT seq FROM direct WHERE recipient = ? ORDER BY seq DESC LIMIT 1 OFFSET ?");
    this.#deleteUpTo = db.prepare("DELETE FROM direct WHERE recipient = ? AND seq <= ?");
    this.#oldest = db.prepare("SELECT seq, sent_at FROM direct ORDER BY seq LIMIT ?");
    this.#deleteOldUpTo = db.prepare("DELETE FROM direct WHERE seq <= ? RETURNING recipient");
  }

  #countOf(key: Uint8Array): number {
    const hex = key.toHex();
    let n = this.#counts.get(hex);
    if (n === undefined) {
      n = read(() => Number((this.#count.get(key) as { n: number }).n), "counting an inbox");
      this.#counts.set(hex, n);
    }
    return n;
  }

  #add(key: Uint8Array, delta: number): void {
    const hex = key.toHex();
    if (this.#counts.has(hex)) this.#counts.set(hex, this.#counts.get(hex)! + delta);
  }

  /**
   * Stores direct messages, each as two rows (recipient's inbox, sender's copy) in one transaction for the batch: a
   * pair is stored whole or not at all. A pair whose id one of the two inboxes already holds is a duplicate; a pair
   * that would take an inbox past its capacity is refused.
   *
   * @param pairs the messages, in order
   * @param sentAt the server clock
   * @returns for each pair, what became of it
   * @throws {StoreError} when the transaction fails (nothing of the batch is stored)
   */
  appendBatch(pairs: DirectPair[], sentAt: number): DirectResult[] {
    const added = new Map<string, { key: Uint8Array; n: number }>();
    const count = (key: Uint8Array) => this.#countOf(key) + (added.get(key.toHex())?.n ?? 0);
    const results = this.#store.transaction(() =>
      pairs.map((p): DirectResult => {
        if (count(p.recipient) + 1 > this.#capacity) return { result: "full", whose: "recipient" };
        if (count(p.sender) + 1 > this.#capacity) return { result: "full", whose: "sender" };
        this.#store.database.exec("SAVEPOINT pair");
        const row = this.#insert.get(p.recipient, p.msgId, sentAt, p.envelope) as { seq: number } | undefined;
        const copy = row && this.#insert.get(p.sender, p.msgId, sentAt, p.copy) as { seq: number } | undefined;
        if (row === undefined || copy === undefined) {
          this.#store.database.exec("ROLLBACK TO pair");
          this.#store.database.exec("RELEASE pair");
          const known = this.#has.get(p.recipient, p.msgId) !== undefined ||
            this.#has.get(p.sender, p.msgId) !== undefined;
          return { result: known ? "duplicate" : "failed" };
        }
        this.#store.database.exec("RELEASE pair");
        for (const key of [p.recipient, p.sender]) {
          const hex = key.toHex();
          added.set(hex, { key, n: (added.get(hex)?.n ?? 0) + 1 });
        }
        return { result: "stored", seq: Number(row.seq), copySeq: Number(copy.seq) };
      }), "cannot store direct messages");
    for (const { key, n } of added.values()) this.#add(key, n);
    const retention = this.#retention;
    if (retention.kind === "count") {
      for (const { key } of added.values()) if (this.#countOf(key) > retention.count) this.#trim(key, retention.count);
    }
    return results;
  }

  /**
   * The newest seq of an inbox (0 when empty): `welcome.direct_seq`.
   *
   * @param key the identity key
   * @returns the seq
   */
  latestSeq(key: Uint8Array): number {
    return read(() => Number((this.#latest.get(key) as { seq: number }).seq), "reading an inbox");
  }

  /**
   * Up to `limit` rows of an inbox after `afterSeq`, oldest first.
   *
   * @param key the identity key
   * @param options.afterSeq exclusive lower bound
   * @param options.limit how many at most
   * @returns the rows
   */
  after(key: Uint8Array, options: { afterSeq: number; limit: number }): DirectRow[] {
    const rows = read(() => this.#after.all(key, options.afterSeq, options.limit), "reading an inbox") as {
      seq: number;
      sent_at: number;
      envelope: string;
      delivered_at: number | null;
    }[];
    return rows.map((r) => ({
      seq: Number(r.seq),
      sentAt: Number(r.sent_at),
      envelope: r.envelope,
      deliveredAt: r.delivered_at === null ? undefined : Number(r.delivered_at),
    }));
  }

  /**
   * Marks a message delivered (the recipient's row and the sender's copy), unless it already was.
   *
   * @param message.recipient the recipient's key
   * @param message.sender the sender's key
   * @param message.msgId the id
   * @param now the server clock
   * @returns whether this was the first delivery (then the sender is told)
   * @throws {StoreError} when the database refuses
   */
  markDelivered(message: { recipient: Uint8Array; sender: Uint8Array; msgId: Uint8Array }, now: number): boolean {
    if (sameBytes(message.recipient, message.sender)) return false;
    return this.#store.transaction(() => {
      const first = Number(this.#markDelivered.run(now, message.recipient, message.msgId).changes) === 1;
      if (first) this.#markDelivered.run(now, message.sender, message.msgId);
      return first;
    }, "cannot mark a direct message delivered");
  }

  /**
   * Applies an age retention to what is stored (a count is applied as messages come, and by {@link Inboxes.trimAll}).
   *
   * @param now the clock
   * @returns how many rows were deleted
   * @throws {StoreError} when the database refuses
   */
  prune(now: number): number {
    const retention = this.#retention;
    if (retention.kind === "count") return this.trimAll();
    if (retention.kind !== "age") return 0;
    let deleted = 0;
    while (true) {
      const upTo = ageCutoff(
        this.#oldest.all(PRUNE_BATCH) as { seq: number; sent_at: number }[],
        now - retention.ageMs,
      );
      if (upTo < 0) return deleted;
      const rows = this.#store.transaction(
        () => this.#deleteOldUpTo.all(upTo) as { recipient: Uint8Array }[],
        "cannot apply the retention to direct messages",
      );
      for (const r of rows) this.#add(new Uint8Array(r.recipient), -1);
      deleted += rows.length;
    }
  }

  /**
   * Applies a count retention to every inbox.
   *
   * @returns how many rows were deleted
   */
  trimAll(): number {
    const retention = this.#retention;
    if (retention.kind !== "count") return 0;
    const full = this.#store.database.prepare(
      "SELECT recipient FROM direct GROUP BY recipient HAVING count(*) > ?",
    ).all(retention.count) as { recipient: Uint8Array }[];
    let deleted = 0;
    for (const r of full) deleted += this.#trim(new Uint8Array(r.recipient), retention.count);
    return deleted;
  }

  #trim(key: Uint8Array, keep: number): number {
    const cutoff = this.#nthNewest.get(key, keep) as { seq: number } | undefined;
    if (cutoff === undefined) return 0;
    const n = this.#store.transaction(
      () => Number(this.#deleteUpTo.run(key, cutoff.seq).changes),
      "cannot apply the retention to direct messages",
    );
    this.#add(key, -n);
    return n;
  }
}
