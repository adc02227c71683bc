/**
 * Direct-message inboxes (protocol v2) in the store's database: one inbox per identity key, holding the direct
 * envelopes sent to it and the copies of those it sent, as ciphertext. A direct message is two rows written in one
 * transaction (the recipient's and the sender's copy), each numbered by the inbox sequence and carrying the sender's
 * key; a row is marked delivered the first time the recipient's row is handed to one of its connections. The cap per
 * inbox (what it keeps, and what may wait in it undelivered, from all and from one sender), the retention and what a
 * rotation does to an inbox are applied here.
 *
 * @module
 */

import type { StatementSync } from "node:sqlite";
import { sameBytes } from "../bytes.ts";
import { ageCutoff, PRUNE_BATCH, type Retention, type Store, StoreError } from "./store.ts";

/** Messages an inbox keeps by default, and may have waiting undelivered (--direct-inbox). */
export const DEFAULT_DIRECT_INBOX = 10_000;
/** One sender may have at most this fraction (1/n) of an inbox's capacity waiting undelivered in it (at least one). */
export const SENDER_SHARE_DIVISOR = 10;

/**
 * How many undelivered messages one sender may have waiting in one inbox of this capacity.
 *
 * @example
 * ```ts
 * senderShare(10_000); // 1000
 * senderShare(4); // 1
 * ```
 * @param capacity --direct-inbox
 * @returns the share
 */
export function senderShare(capacity: number): number {
  return Math.max(1, Math.floor(capacity / SENDER_SHARE_DIVISOR));
}

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

/**
 * What became of one pair: stored (with both rows' seqs), a duplicate id, refused because the recipient's inbox has
 * too many messages waiting (`all`: its capacity, from everyone; `share`: this sender's share of it), or a failure.
 */
export type DirectResult =
  | { result: "stored"; seq: number; copySeq: number }
  | { result: "duplicate" | "failed" }
  | { result: "full"; waiting: "all" | "share"; limit: number };

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
  #share: number;
  #retention: Retention;
  /** Rows per inbox (by hex key), counted once when first needed and kept in step. */
  #counts = new Map<string, number>();
  #insert: StatementSync;
  #has: StatementSync;
  #waiting: StatementSync;
  #waitingFrom: StatementSync;
  #dropOldest: StatementSync;
  #dropInbox: StatementSync;
  #moveWaiting: StatementSync;
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
   * @param options.capacity --direct-inbox: rows one inbox keeps, and undelivered messages it may have waiting
   * @param options.retention what to keep (the server's --retention)
   */
  constructor(store: Store, options: { capacity?: number; retention?: Retention } = {}) {
    this.#store = store;
    this.#capacity = options.capacity ?? DEFAULT_DIRECT_INBOX;
    this.#share = senderShare(this.#capacity);
    this.#retention = options.retention ?? { kind: "all" };
    const db = store.database;
    this.#insert = db.prepare(
      "INSERT INTO direct (recipient, sender, msg_id, sent_at, envelope) VALUES (?, ?, ?, ?, ?) " +
        "ON CONFLICT (recipient, msg_id) DO NOTHING RETURNING seq",
    );
    this.#has = db.prepare("SELECT 1 AS found FROM direct WHERE recipient = ? AND msg_id = ?");
    // Messages waiting for the inbox's owner: not yet handed to any of its connections (its own copies are not).
    this.#waiting = db.prepare(
      "SELECT count(*) AS n FROM direct WHERE recipient = ?1 AND sender != ?1 AND delivered_at IS NULL",
    );
    this.#waitingFrom = db.prepare(
      "SELECT count(*) AS n FROM direct WHERE recipient = ? AND sender = ? AND delivered_at IS NULL",
    );
    // What may roll out of a full inbox: rows already handed to its owner, and the owner's own copies, oldest first;
    // never the row `?2` (the copy just stored).
    this.#dropOldest = db.prepare(
      `DELETE FROM direct WHERE seq IN (SELECT seq FROM direct WHERE recipient = ?1 AND seq != ?2
         AND (delivered_at IS NOT NULL OR sender = recipient) ORDER BY seq LIMIT ?3)`,
    );
    this.#dropInbox = db.prepare("DELETE FROM direct WHERE recipient = ?");
    this.#moveWaiting = db.prepare("UPDATE direct SET sender = ? WHERE sender = ? AND delivered_at IS NULL");
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
   * pair is stored whole or not at all. A pair whose id one of the two inboxes already holds is a duplicate. A pair is
   * refused only for what waits undelivered in the recipient's inbox: the capacity in all, or the sender's share (its
   * rows from this sender). An inbox past its capacity then drops its oldest delivered rows and own copies (never the
   * copy just stored), so that what it keeps stays within the capacity, and the sender's copy never fails a send.
   *
   * @param pairs the messages, in order
   * @param sentAt the server clock
   * @returns for each pair, what became of it
   * @throws {StoreError} when the transaction fails (nothing of the batch is stored)
   */
  appendBatch(pairs: DirectPair[], sentAt: number): DirectResult[] {
    const changed = new Map<string, { key: Uint8Array; n: number }>();
    const add = (key: Uint8Array, n: number) => {
      const hex = key.toHex();
      changed.set(hex, { key, n: (changed.get(hex)?.n ?? 0) + n });
    };
    const count = (key: Uint8Array) => this.#countOf(key) + (changed.get(key.toHex())?.n ?? 0);
    const db = this.#store.database;
    const results = this.#store.transaction(() =>
      pairs.map((p): DirectResult => {
        const refused = this.#refusal(p);
        if (refused !== undefined) return refused;
        // Counted before this pair's rows exist (a count read later would include them).
        count(p.recipient);
        count(p.sender);
        db.exec("SAVEPOINT pair");
        const row = this.#insert.get(p.recipient, p.sender, p.msgId, sentAt, p.envelope) as { seq: number } | undefined;
        const copy = row &&
          this.#insert.get(p.sender, p.sender, p.msgId, sentAt, p.copy) as { seq: number } | undefined;
        if (row === undefined || copy === undefined) {
          db.exec("ROLLBACK TO pair");
          db.exec("RELEASE pair");
          const known = this.#has.get(p.recipient, p.msgId) !== undefined ||
            this.#has.get(p.sender, p.msgId) !== undefined;
          return { result: known ? "duplicate" : "failed" };
        }
        db.exec("RELEASE pair");
        for (const [key, keep] of [[p.recipient, 0], [p.sender, Number(copy.seq)]] as const) {
          add(key, 1);
          const excess = count(key) - this.#capacity;
          if (excess > 0) add(key, -Number(this.#dropOldest.run(key, keep, excess).changes));
        }
        return { result: "stored", seq: Number(row.seq), copySeq: Number(copy.seq) };
      }), "cannot store direct messages");
    for (const { key, n } of changed.values()) this.#add(key, n);
    const retention = this.#retention;
    if (retention.kind === "count") {
      for (const { key } of changed.values()) {
        if (this.#countOf(key) > retention.count) this.#trim(key, retention.count);
      }
    }
    return results;
  }

  /** Why a pair is refused (what waits undelivered in the recipient's inbox), or undefined when it may be stored. */
  #refusal(p: DirectPair): DirectResult | undefined {
    const waiting = (this.#waiting.get(p.recipient) as { n: number }).n;
    if (Number(waiting) >= this.#capacity) return { result: "full", waiting: "all", limit: this.#capacity };
    const fromSender = (this.#waitingFrom.get(p.recipient, p.sender) as { n: number }).n;
    if (Number(fromSender) >= this.#share) return { result: "full", waiting: "share", limit: this.#share };
    return undefined;
  }

  /**
   * What a rotation does to the old key's direct messages: the old key's inbox is dropped (the rotated identity keeps no
   * old key-agreement secret, so the new key could not open it), and the messages the old key sent that still wait in
   * others' inboxes count against the new key's share. Idempotent; run inside the login's transaction.
   *
   * @param oldKey the key replaced
   * @param newKey the key that replaces it
   * @returns how many rows were dropped
   */
  rotate(oldKey: Uint8Array, newKey: Uint8Array): number {
    const dropped = Number(this.#dropInbox.run(oldKey).changes);
    this.#moveWaiting.run(newKey, oldKey);
    // Counted again when next needed (the transaction may yet be rolled back).
    this.#counts.delete(oldKey.toHex());
    return dropped;
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
   * Marks messages delivered (each recipient's row and its sender's copy), those not already marked, all in one
   * transaction: a page of `direct_since` or a turn's live messages costs one commit, not one per row.
   *
   * @param messages each message's recipient key, sender key and id
   * @param now the server clock
   * @returns for each message, whether this was its first delivery (then its sender is told)
   * @throws {StoreError} when the database refuses (then nothing is marked)
   */
  markDelivered(messages: { recipient: Uint8Array; sender: Uint8Array; msgId: Uint8Array }[], now: number): boolean[] {
    const toOthers = messages.map((m) => !sameBytes(m.recipient, m.sender));
    if (!toOthers.includes(true)) return toOthers;
    return this.#store.transaction(() =>
      messages.map((message, i) => {
        if (!toOthers[i]) return false;
        const first = Number(this.#markDelivered.run(now, message.recipient, message.msgId).changes) === 1;
        if (first) this.#markDelivered.run(now, message.sender, message.msgId);
        return first;
      }), "cannot mark direct messages delivered");
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
