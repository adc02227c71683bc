/**
 * The nick registry (protocol v2): which identity key holds which nick, each key's published key-agreement key, and
 * the rotation statements that moved nicks from one key to the next. A nick (by its folded key) belongs to the first
 * identity key that uses it; the rules on taking a new one (a cap per key, a rate per address, expiry of unused ones,
 * closed registration, nicks reserved by the operator) are enforced here, in the same SQLite file as the messages.
 *
 * @module
 */

import type { StatementSync } from "node:sqlite";
import { sameBytes } from "../bytes.ts";
import { type Rotation, verifyRotation } from "../identity.ts";
import { foldName } from "../names.ts";
import { MAX_ROTATIONS } from "../protocol.ts";
import { isLoopback, limitKeyOf } from "./addresses.ts";
import { type Store, StoreError } from "./store.ts";

/** Identity keys a nick may hold by default (--max-nicks-per-key). */
export const DEFAULT_MAX_NICKS_PER_KEY = 5;
/** Milliseconds in an hour: the window of --registrations-per-hour. */
const HOUR_MS = 3_600_000;
/** Addresses whose recent registrations are remembered before the idle ones are forgotten. */
const ADDRESSES_KEPT = 10_000;
/**
 * A nick's last use is written at most this often (and at most every tenth of --nick-expiry), so that a returning
 * user's login writes nothing, and costs no disk sync.
 */
const TOUCH_EVERY_MS = 3_600_000;

/** The registry's rules (server flags). */
export interface RegistryOptions {
  /** --max-nicks-per-key: nicks one identity key may hold (reserved ones not counted). */
  maxNicksPerKey?: number;
  /**
   * --registrations-per-hour: new registrations one address (an IPv6 /64 counting as one, see `limitKeyOf`) may make
   * in an hour (0: no limit).
   */
  registrationsPerHour?: number;
  /** --nick-expiry in ms: a registration unused for this long may be taken by another key (0: never). */
  nickExpiryMs?: number;
  /** --registration closed: only nicks already registered or reserved to the key may be used. */
  closed?: boolean;
  /** Addresses exempt from the per-address rate (loopback when left out). */
  exempt?: (host: string) => boolean;
  /** Clock, ms since the epoch (for tests). */
  now?: () => number;
  /**
   * Called inside the login's transaction whenever a login presents a valid rotation statement (again at later logins
   * that present it: it must be idempotent), so that what belongs to the old key moves or goes with the nicks.
   */
  rotated?: (oldKey: Uint8Array, newKey: Uint8Array) => void;
}

/** Why a nick cannot be had; `code` is the protocol's error code. */
export class RegistrationError extends Error {
  /** The stable error code to send. */
  readonly code: "nick_registered" | "registration_closed" | "too_many_nicks" | "registration_limited" | "bad_rotation";
  /**
   * @param code the error code
   * @param message one line for the user
   */
  constructor(code: RegistrationError["code"], message: string) {
    super(message);
    this.name = "RegistrationError";
    this.code = code;
  }
}

/** A nick had: its canonical spelling, and whether this call registered it. */
export interface Claim {
  /** The canonical spelling (the one it was registered with). */
  nick: string;
  /** Whether the nick was registered just now. */
  registered: boolean;
  /** The key a rotation statement in this login replaced (its connections no longer hold their nicks). */
  replaced?: Uint8Array;
}

/** What a login publishes besides its nick. */
export interface LoginIdentity {
  /** The 32-byte identity key (its signature has been verified). */
  key: Uint8Array;
  /** The 32-byte X25519 key-agreement key. */
  kx: Uint8Array;
  /** The identity key's signature of the kx key (verified). */
  kxSig: Uint8Array;
  /** A statement that `key` replaces an older key (not yet verified). */
  rotation?: Rotation;
}

/** Where a claim comes from, and what the hub knows that the database does not. */
export interface ClaimContext {
  /** The connection's own address, as `hostOf` gives it (exemption is by it, the rate by its `limitKeyOf` key). */
  host: string;
  /** Whether a connection is using this folded nick right now (a nick in use never expires). */
  inUse?: (fold: string) => boolean;
}

/** A registered nick, as `lookup` answers and `admin nicks` lists it. */
export interface NickRecord {
  /** Canonical spelling. */
  nick: string;
  /** The identity key it is registered to. */
  key: Uint8Array;
  /** When it was registered, ms since the epoch. */
  registeredAt: number;
  /** When it was last used (login or nick change). */
  usedAt: number;
  /** Whether the operator reserved it (never expires, not counted against the cap). */
  reserved: boolean;
}

/** A nick's identity for `lookup`: its key, the key-agreement key with its signature, and the rotations to it. */
export interface IdentityRecord extends NickRecord {
  /** The 32-byte X25519 key published at the key's latest login. */
  kx: Uint8Array;
  /** Its signature by the identity key. */
  kxSig: Uint8Array;
  /** Rotation statements that lead to `key`, oldest first (at most MAX_ROTATIONS). */
  rotations: Rotation[];
}

interface NickRow {
  fold: string;
  nick: string;
  identity: Uint8Array;
  registered_at: number;
  used_at: number;
  reserved: number;
}

function toRecord(row: NickRow): NickRecord {
  return {
    nick: row.nick,
    key: new Uint8Array(row.identity),
    registeredAt: Number(row.registered_at),
    usedAt: Number(row.used_at),
    reserved: Number(row.reserved) !== 0,
  };
}

/**
 * The nick registry over a {@link Store}'s database.
 *
 * @example
 * ```ts
 * const registry = new Registry(store, { maxNicksPerKey: 5 });
 * const { nick, registered } = await registry.login("alice", { key, kx, kxSig }, { host: "192.0.2.7" });
 * ```
 */
export class Registry {
  #store: Store;
  #maxNicks: number;
  #perHour: number;
  #expiryMs: number;
  #touchEveryMs: number;
  #closed: boolean;
  #exempt: (host: string) => boolean;
  #now: () => number;
  /** Times of recent registrations per address key (`limitKeyOf`), oldest first. */
  #recent = new Map<string, number[]>();
  #byFold: StatementSync;
  #insert: StatementSync;
  #replace: StatementSync;
  #touch: StatementSync;
  #countLive: StatementSync;
  #publish: StatementSync;
  #identity: StatementSync;
  #moveNicks: StatementSync;
  #addRotation: StatementSync;
  #rotationTo: StatementSync;
  #rotated: RegistryOptions["rotated"];

  /**
   * @param store the open store whose database holds the registry's tables
   * @param options the rules
   */
  constructor(store: Store, options: RegistryOptions = {}) {
    this.#store = store;
    this.#maxNicks = options.maxNicksPerKey ?? DEFAULT_MAX_NICKS_PER_KEY;
    this.#perHour = options.registrationsPerHour ?? 0;
    this.#expiryMs = options.nickExpiryMs ?? 0;
    this.#touchEveryMs = this.#expiryMs > 0 ? Math.min(TOUCH_EVERY_MS, this.#expiryMs / 10) : TOUCH_EVERY_MS;
    this.#closed = options.closed ?? false;
    this.#exempt = options.exempt ?? isLoopback;
    this.#now = options.now ?? Date.now;
    this.#rotated = options.rotated;
    const db = store.database;
    this.#byFold = db.prepare("SELECT * FROM nicks WHERE fold = ?");
    this.#insert = db.prepare(
      "INSERT INTO nicks (fold, nick, identity, registered_at, used_at, reserved) VALUES (?, ?, ?, ?, ?, ?) " +
        "ON CONFLICT (fold) DO NOTHING",
    );
    this.#replace = db.prepare(
      "UPDATE nicks SET nick = ?, identity = ?, registered_at = ?, used_at = ?, reserved = ? WHERE fold = ?",
    );
    this.#touch = db.prepare("UPDATE nicks SET used_at = ? WHERE fold = ?");
    this.#countLive = db.prepare(
      "SELECT count(*) AS n FROM nicks WHERE identity = ? AND reserved = 0 AND used_at >= ?",
    );
    this.#publish = db.prepare(
      "INSERT INTO identities (identity, kx, kx_sig, updated_at) VALUES (?, ?, ?, ?) " +
        "ON CONFLICT (identity) DO UPDATE SET kx = excluded.kx, kx_sig = excluded.kx_sig, updated_at = excluded.updated_at",
    );
    this.#identity = db.prepare("SELECT kx, kx_sig FROM identities WHERE identity = ?");
    this.#moveNicks = db.prepare("UPDATE nicks SET identity = ? WHERE identity = ?");
    this.#addRotation = db.prepare(
      "INSERT INTO rotations (old, new, ts, signature) VALUES (?, ?, ?, ?) ON CONFLICT (old) DO NOTHING",
    );
    this.#rotationTo = db.prepare(
      "SELECT old, new, ts, signature FROM rotations WHERE new = ? ORDER BY ts DESC LIMIT 1",
    );
  }

  /**
   * Admits a login: verifies and applies its rotation statement (moving every nick of the old key to the new one),
   * claims the nick for the key, and publishes the key-agreement key, all in one transaction (a refused login
   * changes nothing).
   *
   * @param nick the nick asked for (valid by the nick rules)
   * @param identity the verified keys, and a rotation statement to check
   * @param context the address and the nicks in use
   * @returns the canonical nick and whether it was registered now
   * @throws {RegistrationError} when the nick cannot be had or the rotation does not verify
   * @throws {StoreError} when the database refuses
   */
  async login(nick: string, identity: LoginIdentity, context: ClaimContext): Promise<Claim> {
    const { rotation } = identity;
    if (rotation !== undefined) {
      const valid = sameBytes(rotation.newKey, identity.key) && !sameBytes(rotation.oldKey, identity.key) &&
        await verifyRotation(rotation);
      if (!valid) {
        throw new RegistrationError("bad_rotation", "the rotation statement is not signed by the key it names as old");
      }
    }
    const now = this.#now();
    return this.#store.transaction(() => {
      if (rotation !== undefined) {
        const moved = Number(this.#moveNicks.run(identity.key, rotation.oldKey).changes);
        // Keys are free: merging several keys' nicks into one must not beat the cap that each key is held to.
        const held = moved > 0 ? this.#liveCount(identity.key, now) : 0;
        if (held > this.#maxNicks) {
          throw new RegistrationError(
            "too_many_nicks",
            `the rotation would give your key ${held} nicks (--max-nicks-per-key ${this.#maxNicks})`,
          );
        }
        // Kept only for a key this server has seen log in (a peer here can have pinned no other): a statement from
        // a key made for the purpose would otherwise add a row at every login.
        if (moved > 0 || this.#identity.get(rotation.oldKey) !== undefined) {
          this.#addRotation.run(rotation.oldKey, rotation.newKey, rotation.ts, rotation.signature);
          this.#rotated?.(rotation.oldKey, rotation.newKey);
        }
      }
      const claim = this.#claim(identity.key, nick, context, now);
      if (rotation !== undefined) claim.replaced = rotation.oldKey;
      const published = this.#identity.get(identity.key) as { kx: Uint8Array; kx_sig: Uint8Array } | undefined;
      const same = published !== undefined && sameBytes(new Uint8Array(published.kx), identity.kx) &&
        sameBytes(new Uint8Array(published.kx_sig), identity.kxSig);
      if (!same) this.#publish.run(identity.key, identity.kx, identity.kxSig, now);
      return claim;
    }, "cannot record the login");
  }

  /**
   * Claims a nick for a key (a nick change): the same rules as at login.
   *
   * @param key the identity key
   * @param nick the nick asked for (valid by the nick rules)
   * @param context the address and the nicks in use
   * @returns the canonical nick and whether it was registered now
   * @throws {RegistrationError} when the nick cannot be had
   * @throws {StoreError} when the database refuses
   */
  claim(key: Uint8Array, nick: string, context: ClaimContext): Claim {
    const now = this.#now();
    return this.#store.transaction(() => this.#claim(key, nick, context, now), "cannot register the nick");
  }

  #claim(key: Uint8Array, nick: string, context: ClaimContext, now: number): Claim {
    const fold = foldName(nick);
    const row = this.#byFold.get(fold) as NickRow | undefined;
    if (row !== undefined && sameBytes(new Uint8Array(row.identity), key)) {
      if (now - Number(row.used_at) >= this.#touchEveryMs) this.#touch.run(now, fold);
      return { nick: row.nick, registered: false };
    }
    if (row !== undefined && !this.#expired(row, now, context)) {
      const taken = row.nick === nick ? nick : `${nick} (as ${row.nick})`;
      throw new RegistrationError(
        "nick_registered",
        `the nick ${taken} is ${row.reserved ? "reserved" : "registered"} to another identity key`,
      );
    }
    if (this.#closed) {
      throw new RegistrationError(
        "registration_closed",
        `registration is closed: ${nick} is not registered to your key`,
      );
    }
    const held = this.#liveCount(key, now);
    if (held >= this.#maxNicks) {
      throw new RegistrationError(
        "too_many_nicks",
        `your key already holds ${held} nicks (--max-nicks-per-key ${this.#maxNicks})`,
      );
    }
    this.#countRegistration(context.host, now);
    if (row === undefined) {
      if (Number(this.#insert.run(fold, nick, key, now, now, 0).changes) !== 1) {
        throw new StoreError("write", "cannot register the nick: the row was not written");
      }
    } else {
      this.#replace.run(nick, key, now, now, 0, fold);
    }
    return { nick, registered: true };
  }

  /** The nicks a key holds that count against the cap: not reserved, not expired. */
  #liveCount(key: Uint8Array, now: number): number {
    return Number((this.#countLive.get(key, this.#liveSince(now)) as { n: number }).n);
  }

  /** The oldest used_at of a registration that has not expired (-Infinity when nothing expires). */
  #liveSince(now: number): number {
    return this.#expiryMs > 0 ? now - this.#expiryMs : Number.MIN_SAFE_INTEGER;
  }

  #expired(row: NickRow, now: number, context: ClaimContext): boolean {
    if (row.reserved || this.#expiryMs <= 0) return false;
    if (Number(row.used_at) >= this.#liveSince(now)) return false;
    return !(context.inUse?.(row.fold) ?? false);
  }

  /** Counts a new registration against the hourly budget of the address's key (its /64 for IPv6), or refuses it. */
  #countRegistration(host: string, now: number): void {
    if (this.#perHour <= 0 || this.#exempt(host)) return;
    const key = limitKeyOf(host);
    const times = (this.#recent.get(key) ?? []).filter((t) => t > now - HOUR_MS);
    if (times.length >= this.#perHour) {
      const wait = Math.ceil((times[0] + HOUR_MS - now) / 60_000);
      throw new RegistrationError(
        "registration_limited",
        `too many new nicks from your address (--registrations-per-hour ${this.#perHour}); try again in ${wait} min`,
      );
    }
    if (this.#recent.size >= ADDRESSES_KEPT) {
      for (const [h, t] of this.#recent) if (t.every((x) => x <= now - HOUR_MS)) this.#recent.delete(h);
    }
    times.push(now);
    this.#recent.set(key, times);
  }

  /**
   * Every registration, by canonical spelling (for `admin nicks`).
   *
   * @returns the records
   */
  list(): NickRecord[] {
    const rows = this.#store.database.prepare("SELECT * FROM nicks ORDER BY nick").all() as unknown as NickRow[];
    return rows.map(toRecord);
  }

  /**
   * When a registration may be taken by another key: its last use plus --nick-expiry; never for a reserved nick or
   * when nothing expires.
   *
   * @param record a registration
   * @returns ms since the epoch, or undefined for never
   */
  expiresAt(record: NickRecord): number | undefined {
    return record.reserved || this.#expiryMs <= 0 ? undefined : record.usedAt + this.#expiryMs;
  }

  /**
   * Releases a nick (any spelling): its registration is deleted, and the next key to use it registers it.
   *
   * @param nick the nick
   * @returns the registration that was released, or undefined when there was none
   * @throws {StoreError} when the database refuses
   */
  release(nick: string): NickRecord | undefined {
    const record = this.find(nick);
    if (record === undefined) return undefined;
    this.#store.transaction(
      () => this.#store.database.prepare("DELETE FROM nicks WHERE fold = ?").run(foldName(nick)),
      "cannot release the nick",
    );
    return record;
  }

  /**
   * Reserves a nick for a key, as the operator: the key holds it from now on (it never expires and does not count
   * against --max-nicks-per-key), whoever held it before.
   *
   * @param nick the nick, valid by the nick rules; a registration in another spelling keeps its canonical spelling
   * @param key the 32-byte identity key
   * @returns the registration it replaces, if any
   * @throws {StoreError} when the database refuses
   */
  reserve(nick: string, key: Uint8Array): NickRecord | undefined {
    const previous = this.find(nick);
    const now = this.#now();
    const fold = foldName(nick);
    this.#store.transaction(() => {
      if (previous === undefined) this.#insert.run(fold, nick, key, now, now, 1);
      else if (sameBytes(previous.key, key)) {
        this.#replace.run(previous.nick, key, previous.registeredAt, previous.usedAt, 1, fold);
      } else this.#replace.run(previous.nick, key, now, now, 1, fold);
    }, "cannot reserve the nick");
    return previous;
  }

  /**
   * The registration of a nick, in any spelling that folds the same.
   *
   * @param nick the nick
   * @returns the record, or undefined when nobody holds it
   */
  find(nick: string): NickRecord | undefined {
    const row = this.#byFold.get(foldName(nick)) as NickRow | undefined;
    return row && toRecord(row);
  }

  /**
   * The key-agreement key an identity key published at its latest login.
   *
   * @param key the identity key
   * @returns the 32-byte X25519 key, or undefined when the key never logged in
   */
  kxOf(key: Uint8Array): Uint8Array | undefined {
    const row = this.#identity.get(key) as { kx: Uint8Array } | undefined;
    return row && new Uint8Array(row.kx);
  }

  /**
   * What `lookup` answers: the nick's key, its latest key-agreement key, and the rotation statements leading to it.
   *
   * @param nick the nick, any spelling
   * @returns the identity, or undefined when the nick is not registered or its key never logged in
   */
  lookup(nick: string): IdentityRecord | undefined {
    const record = this.find(nick);
    if (record === undefined) return undefined;
    const published = this.#identity.get(record.key) as { kx: Uint8Array; kx_sig: Uint8Array } | undefined;
    if (published === undefined) return undefined;
    const rotations: Rotation[] = [];
    const seen = new Set<string>([record.key.toHex()]);
    let current: Uint8Array<ArrayBuffer> = new Uint8Array(record.key);
    while (rotations.length < MAX_ROTATIONS) {
      const r = this.#rotationTo.get(current) as
        | { old: Uint8Array; new: Uint8Array; ts: number; signature: Uint8Array }
        | undefined;
      if (r === undefined || seen.has(new Uint8Array(r.old).toHex())) break;
      current = new Uint8Array(r.old);
      seen.add(current.toHex());
      rotations.unshift({
        oldKey: current,
        newKey: new Uint8Array(r.new),
        ts: Number(r.ts),
        signature: new Uint8Array(r.signature),
      });
    }
    return { ...record, kx: new Uint8Array(published.kx), kxSig: new Uint8Array(published.kx_sig), rotations };
  }
}
