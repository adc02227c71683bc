/**
 * The client's home ($AESCHAT_HOME): the user's identity keys, what the client has pinned (server keys by address;
 * room parameters and peer keys by server key), the ids it has shown, and room secrets the user asked it to keep.
 * Directory 0700, files 0600 written atomically (a temporary file renamed over the old one) under an advisory lock,
 * so two clients sharing a home do not lose each other's pins. On POSIX a secret file readable by group or others is
 * refused, as ssh does; on Windows the profile directory's ACL is relied on.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { decodeBase64 } from "../base64.ts";
import { sameBytes } from "../bytes.ts";
import {
  generateIdentitySecrets,
  type Identity,
  type IdentitySecrets,
  importIdentity,
  KEY_BYTES,
  type Rotation,
  signRotation,
} from "../identity.ts";
import { isLocked, lockSecret, unlockSecret } from "../keyfile.ts";
import { foldName } from "../names.ts";

/** The environment variable naming the home. */
export const HOME_ENV = "AESCHAT_HOME";
/** Ids remembered per room (and for direct messages), most recent first kept. */
export const SEEN_IDS_PER_SCOPE = 5000;

const IDENTITY_FILE = "identity.json";
const TRUST_FILE = "trust.json";
const SECRETS_FILE = "rooms.json";
const SEEN_DIR = "seen";
const LOCK_FILE = ".lock";
const IS_WINDOWS = Deno.build.os === "windows";

/** Why the home cannot be used; the message is one line for the user. */
export class HomeError extends Error {
  /**
   * "permissions", "locked" (wrong or missing identity passphrase), "exists", "missing", "corrupt", "io", or "stale"
   * (another program changed the identity since this one opened the home: open it again).
   */
  readonly kind: "permissions" | "locked" | "exists" | "missing" | "corrupt" | "io" | "stale";
  /**
   * @param kind what kind of failure
   * @param message what to do about it
   */
  constructor(kind: HomeError["kind"], message: string) {
    super(message);
    this.name = "HomeError";
    this.kind = kind;
  }
}

/**
 * Where the home is: $AESCHAT_HOME, else $XDG_CONFIG_HOME/aeschat, else ~/.config/aeschat (%APPDATA%\aeschat on
 * Windows).
 *
 * @example
 * ```ts
 * homePath((name) => Deno.env.get(name)); // "/home/alice/.config/aeschat"
 * ```
 * @param env reads an environment variable
 * @param options.os the platform (default this one)
 * @returns the directory
 * @throws {HomeError} "missing" when no variable says where a home could be
 */
export function homePath(env: (name: string) => string | undefined, options: { os?: string } = {}): string {
  const os = options.os ?? Deno.build.os;
  const explicit = env(HOME_ENV);
  if (explicit) return explicit;
  if (os === "windows") {
    const appData = env("APPDATA");
    if (appData) return join(appData, "aeschat");
  } else {
    const xdg = env("XDG_CONFIG_HOME");
    if (xdg) return join(xdg, "aeschat");
    const home = env("HOME");
    if (home) return join(home, ".config", "aeschat");
  }
  throw new HomeError("missing", `cannot tell where to keep your keys: set ${HOME_ENV}`);
}

/** A room's parameters as first seen on a server. */
export interface RoomPin {
  /** Canonical room name. */
  name: string;
  /** 16-byte salt. */
  salt: Uint8Array<ArrayBuffer>;
  /** PBKDF2 count. */
  iterations: number;
  /** 32-byte access key. */
  accessPub: Uint8Array<ArrayBuffer>;
  /** Key epoch. */
  epoch: number;
}

/** A peer's identity key as pinned on a server. */
export interface PeerPin {
  /** Canonical nick. */
  nick: string;
  /** 32-byte identity key. */
  key: Uint8Array<ArrayBuffer>;
  /** Whether the user compared safety numbers and confirmed. */
  verified: boolean;
  /** A different key seen for this nick since, waiting for the user's `/trust`. */
  offered?: Uint8Array<ArrayBuffer>;
}

/** A room secret kept in the home (an accepted invitation, or a room joined with --remember). */
export interface RoomSecret extends RoomPin {
  /** 32-byte master secret. */
  master: Uint8Array<ArrayBuffer>;
  /** How it was obtained. */
  source: "invite" | "remember";
}

interface IdentityFile {
  version: 1;
  public_key: string;
  kx_public: string;
  created: number;
  /** base64(seed || kx secret), or the same bytes locked under the identity passphrase. */
  secrets: string | unknown;
  /** Statements this identity made when it replaced older keys, newest last (presented at login). */
  rotations: { old: string; new: string; ts: number; signature: string }[];
}

interface TrustFile {
  servers: Record<string, { key: string; offered?: string }>;
  rooms: Record<
    string,
    Record<string, { name: string; salt: string; iterations: number; access_pub: string; epoch: number }>
  >;
  peers: Record<string, Record<string, { nick: string; key: string; verified: boolean; offered?: string }>>;
  direct_seq: Record<string, number>;
}

const EMPTY_TRUST: TrustFile = { servers: {}, rooms: {}, peers: {}, direct_seq: {} };

function b64(bytes: Uint8Array): string {
  return bytes.toBase64();
}

function mode(path: string): number | undefined {
  try {
    return Deno.statSync(path).mode ?? undefined;
  } catch {
    return undefined;
  }
}

/**
 * Refuses (POSIX) a path whose mode gives group or others any of `bits`: a secret file they can read or write (0o077),
 * or a home directory they can write, where they could replace the files (0o022). ssh's rules.
 */
function checkMode(path: string, rule: { bits: number; fix: string; what: string }): void {
  if (IS_WINDOWS) return;
  const m = mode(path);
  if (m !== undefined && (m & rule.bits) !== 0) {
    throw new HomeError(
      "permissions",
      `${path} is ${rule.what} by others (mode ${(m & 0o777).toString(8)}): run chmod ${rule.fix} ${path}`,
    );
  }
}

function checkPrivate(path: string): void {
  checkMode(path, { bits: 0o077, fix: "600", what: "readable" });
}

function checkDirectory(dir: string): void {
  checkMode(dir, { bits: 0o022, fix: "700", what: "writable" });
}

/** A file's text, or undefined when there is none. */
function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw new HomeError("io", `cannot read ${path}: ${(err as Error).message.split("\n")[0]}`);
  }
}

function parseJson<T>(path: string, text: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new HomeError("corrupt", `${path} is not valid JSON: move it away and start again`);
  }
}

function readJson<T>(path: string, fallback: T): T {
  const text = readText(path);
  return text === undefined ? structuredClone(fallback) : parseJson<T>(path, text);
}

/**
 * Writes a file atomically with mode 0600: a new temporary file in the same directory (never an existing one, nor
 * what a link points to), flushed to the disk, renamed over the old one, and the directory flushed, so that a crash
 * or a power cut leaves the old file or the new one, never an empty or partial one.
 */
function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    const file = Deno.openSync(tmp, { write: true, createNew: true, mode: 0o600 });
    try {
      const bytes = new TextEncoder().encode(text);
      for (let at = 0; at < bytes.length;) at += file.writeSync(bytes.subarray(at));
      file.syncSync();
    } finally {
      file.close();
    }
    Deno.renameSync(tmp, path);
    syncDirectory(path);
  } catch (err) {
    try {
      Deno.removeSync(tmp);
    } catch {
      // never created
    }
    throw new HomeError("io", `cannot write ${path}: ${(err as Error).message.split("\n")[0]}`);
  }
}

/** What {@link writeAtomic} names its temporary files: the file's name, a random UUID, `.tmp`. */
const TEMPORARY_FILE = /\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.tmp$/;
/** A temporary file older than this was left by a program that died mid-write (a write takes milliseconds). */
const STALE_TEMPORARY_MS = 60_000;

/**
 * Removes the temporary files of {@link writeAtomic} that a program killed mid-write left in `dir` (not below it),
 * leaving any a running program may be writing now.
 */
function removeStaleTemporaries(dir: string): void {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return;
  }
  for (const entry of entries) {
    if (!entry.isFile || !TEMPORARY_FILE.test(entry.name)) continue;
    const path = join(dir, entry.name);
    try {
      const modified = Deno.statSync(path).mtime?.getTime() ?? Date.now();
      if (Date.now() - modified > STALE_TEMPORARY_MS) Deno.removeSync(path);
    } catch {
      // gone meanwhile, or not ours to remove: harmless either way
    }
  }
}

/** Flushes the directory holding `path`, so that a rename in it survives a crash (POSIX; Windows has no need). */
function syncDirectory(path: string): void {
  if (IS_WINDOWS) return;
  let dir: Deno.FsFile | undefined;
  try {
    dir = Deno.openSync(dirname(path), { read: true });
    dir.syncSync();
  } catch {
    // A file system that cannot flush a directory: the rename is still atomic.
  } finally {
    dir?.close();
  }
}

/**
 * Under the home's lock, replaces a file with `text` only if it still holds `before` (undefined: there was none), so
 * that work done outside the lock (a passphrase KDF takes a while) never overwrites what another program wrote
 * meanwhile.
 *
 * @returns whether it was written
 */
function replaceIfUnchanged(dir: string, path: string, change: { before: string | undefined; text: string }): boolean {
  return withLock(dir, () => {
    if (readText(path) !== change.before) return false;
    writeAtomic(path, change.text);
    return true;
  });
}

/** A server address as a pin key: a host name compares case-insensitively, and without a final dot, as DNS does. */
function addressKey(address: string): string {
  const colon = address.lastIndexOf(":");
  let host = (colon < 0 ? address : address.slice(0, colon)).toLowerCase();
  if (host.length > 1 && host.endsWith(".")) host = host.slice(0, -1);
  return colon < 0 ? host : host + address.slice(colon);
}

async function sha256Hex(text: string): Promise<string> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))).toHex().slice(0, 32);
}

/**
 * Ids already shown in one room (or among direct messages), with the seq they were shown at, most recent last;
 * bounded to {@link SEEN_IDS_PER_SCOPE}. Kept in memory, written by {@link Home.flush}.
 */
export class SeenIds {
  #map = new Map<string, number>();
  #dirty = false;

  /** @param entries saved [id, seq] pairs, oldest first */
  constructor(entries: [string, number][] = []) {
    for (const [id, seq] of entries) this.#map.set(id, seq);
  }

  /**
   * The seq an id was shown at, if it was.
   *
   * @param id the message id (base64)
   * @returns the seq, or undefined
   */
  get(id: string): number | undefined {
    return this.#map.get(id);
  }

  /**
   * Records an id as shown.
   *
   * @param id the message id
   * @param seq the seq it came with
   */
  add(id: string, seq: number): void {
    this.#map.delete(id);
    this.#map.set(id, seq);
    this.#dirty = true;
    if (this.#map.size > SEEN_IDS_PER_SCOPE) this.#map.delete(this.#map.keys().next().value!);
  }

  /** Whether anything changed since the last save. */
  get dirty(): boolean {
    return this.#dirty;
  }

  /** The entries to save (and marks them saved). */
  take(): [string, number][] {
    this.#dirty = false;
    return [...this.#map];
  }

  /** Merges entries another program saved meanwhile (theirs first, ours win). */
  merge(saved: [string, number][]): void {
    const ours = [...this.#map];
    this.#map = new Map(saved);
    for (const [id, seq] of ours) {
      this.#map.delete(id);
      this.#map.set(id, seq);
    }
    while (this.#map.size > SEEN_IDS_PER_SCOPE) this.#map.delete(this.#map.keys().next().value!);
  }
}

/**
 * An open home. Open it with {@link Home.open}; pins are read fresh and written at once on every change.
 *
 * @example
 * ```ts
 * const home = await Home.open(homePath((n) => Deno.env.get(n)), {});
 * home.identity.publicKey; // 32 bytes
 * ```
 */
export class Home {
  /** The directory. */
  readonly dir: string;
  /** The user's identity. */
  readonly identity: Identity;
  /** Whether this open made a new identity (first run). */
  readonly created: boolean;
  /** Whether the identity is locked under a passphrase. */
  get protected(): boolean {
    return this.#passphrase !== undefined;
  }
  /** Rotation statements this identity made, oldest first (presented at login). */
  readonly rotations: Rotation[];
  #passphrase: string | undefined;
  #seen = new Map<string, { file: string; ids: SeenIds }>();

  private constructor(
    dir: string,
    state: { identity: Identity; created: boolean; passphrase?: string; rotations: Rotation[] },
  ) {
    this.dir = dir;
    this.identity = state.identity;
    this.created = state.created;
    this.#passphrase = state.passphrase;
    this.rotations = state.rotations;
  }

  /**
   * Opens the home, creating it (and a new, unprotected identity) on first run.
   *
   * @param dir the directory
   * @param options.passphrase asked for when the identity is locked (undefined: cannot ask, refuse)
   * @returns the home
   * @throws {HomeError} for bad permissions, a wrong passphrase, a damaged file, or an unwritable directory
   */
  static async open(dir: string, options: { passphrase?: () => Promise<string | undefined> } = {}): Promise<Home> {
    ensureDir(dir);
    checkDirectory(dir);
    const path = join(dir, IDENTITY_FILE);
    let file = readJson<IdentityFile | undefined>(path, undefined);
    let created = false;
    if (file === undefined) {
      file = await identityFile(generateIdentitySecrets(), { rotations: [] });
      withLock(dir, () => {
        // Another client may have made one meanwhile: keep theirs.
        const again = readJson<IdentityFile | undefined>(path, undefined);
        if (again) file = again;
        else {
          writeAtomic(path, JSON.stringify(file, null, 2));
          created = true;
        }
      });
    }
    checkPrivate(path);
    withLock(dir, () => {
      removeStaleTemporaries(dir);
      removeStaleTemporaries(join(dir, SEEN_DIR));
    });
    const { secrets, passphrase } = await unlockIdentity(file!, { path, ask: options.passphrase });
    const identity = await importIdentity(secrets);
    secrets.signSeed.fill(0);
    secrets.kxSecret.fill(0);
    if (!sameBytes(identity.publicKey, decodeBase64(file!.public_key))) {
      throw new HomeError("corrupt", `${path} does not match its own public key: restore it from your export`);
    }
    const rotations = (file!.rotations ?? []).map((r) => ({
      oldKey: decodeBase64(r.old),
      newKey: decodeBase64(r.new),
      ts: r.ts,
      signature: decodeBase64(r.signature),
    }));
    return new Home(dir, { identity, created, passphrase, rotations });
  }

  // ---- server keys --------------------------------------------------------------------------------------------

  /**
   * The key pinned for a server address, and a different key it offered since (refused until trusted).
   *
   * @param address "host:port"
   * @returns the pin, or undefined on first contact
   */
  serverPin(address: string): { key: Uint8Array<ArrayBuffer>; offered?: Uint8Array<ArrayBuffer> } | undefined {
    const pin = this.#trust().servers[addressKey(address)];
    if (!pin) return undefined;
    return { key: decodeBase64(pin.key), offered: pin.offered ? decodeBase64(pin.offered) : undefined };
  }

  /**
   * Pins a server's key at first contact, or records a different key it now shows (to be accepted with
   * {@link Home.trustServer}).
   *
   * @param address "host:port"
   * @param key the key the server proved it holds
   * @returns "pinned" (first contact), "same", or "changed" (refuse the server)
   */
  meetServer(address: string, key: Uint8Array): "pinned" | "same" | "changed" {
    let result: "pinned" | "same" | "changed" = "same";
    this.#updateTrust((t) => {
      const pin = t.servers[addressKey(address)];
      if (!pin) {
        t.servers[addressKey(address)] = { key: b64(key) };
        result = "pinned";
      } else if (pin.key !== b64(key)) {
        pin.offered = b64(key);
        result = "changed";
      } else {
        delete pin.offered;
      }
    });
    return result;
  }

  /**
   * Accepts the key a server offered instead of its pinned one, and moves every pin of the old key (rooms, peers,
   * other addresses) to the new one. Pass the key the user was shown (its fingerprint): another connection may have
   * been offered another key since, and that one must not be trusted in its place.
   *
   * @param address "host:port"
   * @param options.key the offered key the user accepts (default: whatever was offered last)
   * @returns the old and new keys, or undefined when nothing (or another key) was offered
   */
  trustServer(address: string, options: { key?: Uint8Array } = {}): { old: Uint8Array; new: Uint8Array } | undefined {
    let moved: { old: Uint8Array; new: Uint8Array } | undefined;
    this.#updateTrust((t) => {
      const pin = t.servers[addressKey(address)];
      if (!pin?.offered) return;
      if (options.key !== undefined && pin.offered !== b64(options.key)) return;
      const [oldKey, newKey] = [pin.key, pin.offered];
      for (const server of Object.values(t.servers)) {
        if (server.key === oldKey) {
          server.key = newKey;
          delete server.offered;
        }
      }
      for (const table of [t.rooms, t.peers] as Record<string, unknown>[]) {
        if (table[oldKey] !== undefined) {
          table[newKey] = { ...(table[newKey] as object ?? {}), ...(table[oldKey] as object) };
          delete table[oldKey];
        }
      }
      if (t.direct_seq[oldKey] !== undefined) delete t.direct_seq[oldKey];
      moved = { old: decodeBase64(oldKey), new: decodeBase64(newKey) };
    });
    return moved;
  }

  // ---- room parameters ----------------------------------------------------------------------------------------

  /**
   * The parameters pinned for a room on a server.
   *
   * @param server the server key
   * @param room the room name (any spelling; compared folded)
   * @returns the pin, or undefined
   */
  roomPin(server: Uint8Array, room: string): RoomPin | undefined {
    const pin = this.#trust().rooms[b64(server)]?.[foldName(room)];
    if (!pin) return undefined;
    return {
      name: pin.name,
      salt: decodeBase64(pin.salt),
      iterations: pin.iterations,
      accessPub: decodeBase64(pin.access_pub),
      epoch: pin.epoch,
    };
  }

  /**
   * Pins a room's parameters (first join, or an accepted invitation). A different pin is never replaced: the caller
   * refuses the room (exit 7, naming what changed) until the user forgets it ({@link Home.forgetRoom}).
   *
   * @param server the server key
   * @param pin the parameters
   * @returns "pinned" (none before), "same", or "differs" (the old pin stays)
   */
  pinRoom(server: Uint8Array, pin: RoomPin): "pinned" | "same" | "differs" {
    let result: "pinned" | "same" | "differs" = "same";
    this.#updateTrust((t) => {
      const rooms = t.rooms[b64(server)] ??= {};
      const stored = {
        name: pin.name,
        salt: b64(pin.salt),
        iterations: pin.iterations,
        access_pub: b64(pin.accessPub),
        epoch: pin.epoch,
      };
      const old = rooms[foldName(pin.name)];
      if (!old) {
        rooms[foldName(pin.name)] = stored;
        result = "pinned";
      } else if (
        old.salt !== stored.salt || old.iterations !== stored.iterations || old.access_pub !== stored.access_pub ||
        old.epoch !== stored.epoch
      ) {
        result = "differs";
      }
    });
    return result;
  }

  /**
   * Forgets a room's pinned parameters and any kept secret for it, so the next join pins afresh.
   *
   * @param server the server key
   * @param room the room name
   * @returns whether anything was pinned or kept
   */
  async forgetRoom(server: Uint8Array, room: string): Promise<boolean> {
    let found = false;
    this.#updateTrust((t) => {
      const rooms = t.rooms[b64(server)];
      if (rooms && rooms[foldName(room)]) {
        delete rooms[foldName(room)];
        found = true;
      }
    });
    return await this.dropRoomSecret(server, room) || found;
  }

  // ---- peers --------------------------------------------------------------------------------------------------

  /**
   * The key pinned for a nick on a server.
   *
   * @param server the server key
   * @param nick the nick (any spelling; compared folded)
   * @returns the pin, or undefined before first sight
   */
  peerPin(server: Uint8Array, nick: string): PeerPin | undefined {
    const pin = this.#trust().peers[b64(server)]?.[foldName(nick)];
    if (!pin) return undefined;
    return {
      nick: pin.nick,
      key: decodeBase64(pin.key),
      verified: pin.verified,
      offered: pin.offered ? decodeBase64(pin.offered) : undefined,
    };
  }

  /**
   * Compares a key seen for a nick with the pin: pins it at first sight, records a different key as offered.
   *
   * @param server the server key
   * @param peer.nick the canonical nick
   * @param peer.key the identity key seen
   * @returns "new" (now pinned), "pinned" or "verified" (matches), or "changed"
   */
  meetPeer(server: Uint8Array, peer: { nick: string; key: Uint8Array }): "new" | "pinned" | "verified" | "changed" {
    let result: "new" | "pinned" | "verified" | "changed" = "pinned";
    const current = this.peerPin(server, peer.nick);
    if (current && sameBytes(current.key, peer.key)) return current.verified ? "verified" : "pinned";
    if (current?.offered && sameBytes(current.offered, peer.key)) return "changed";
    this.#updateTrust((t) => {
      const peers = t.peers[b64(server)] ??= {};
      const pin = peers[foldName(peer.nick)];
      if (!pin) {
        peers[foldName(peer.nick)] = { nick: peer.nick, key: b64(peer.key), verified: false };
        result = "new";
      } else if (pin.key === b64(peer.key)) {
        result = pin.verified ? "verified" : "pinned";
      } else {
        pin.offered = b64(peer.key);
        result = "changed";
      }
    });
    return result;
  }

  /**
   * Re-pins a nick to a new key: the user's `/trust`, or a verified rotation chain. Verification is reset.
   *
   * @param server the server key
   * @param peer.nick the nick
   * @param peer.key the key to trust (default: the one offered)
   * @returns the key now pinned, or undefined when there was nothing to trust
   */
  trustPeer(server: Uint8Array, peer: { nick: string; key?: Uint8Array }): Uint8Array | undefined {
    let trusted: Uint8Array | undefined;
    this.#updateTrust((t) => {
      const peers = t.peers[b64(server)] ??= {};
      const pin = peers[foldName(peer.nick)];
      const key = peer.key ? b64(peer.key) : pin?.offered;
      if (!key) return;
      peers[foldName(peer.nick)] = { nick: pin?.nick ?? peer.nick, key, verified: false };
      trusted = decodeBase64(key);
    });
    return trusted;
  }

  /**
   * Marks a peer's pinned key verified (the user compared safety numbers).
   *
   * @param server the server key
   * @param nick the nick
   * @returns whether a pin existed
   */
  verifyPeer(server: Uint8Array, nick: string): boolean {
    let found = false;
    this.#updateTrust((t) => {
      const pin = t.peers[b64(server)]?.[foldName(nick)];
      if (!pin) return;
      pin.verified = true;
      delete pin.offered;
      found = true;
    });
    return found;
  }

  // ---- positions ----------------------------------------------------------------------------------------------

  /**
   * The newest inbox seq this home has seen on a server.
   *
   * @param server the server key
   * @returns the seq (0 when none)
   */
  directSeq(server: Uint8Array): number {
    return this.#trust().direct_seq[b64(server)] ?? 0;
  }

  /**
   * Records the newest inbox seq seen (only ever moves forward).
   *
   * @param server the server key
   * @param seq the seq
   */
  saveDirectSeq(server: Uint8Array, seq: number): void {
    this.#updateTrust((t) => {
      t.direct_seq[b64(server)] = Math.max(t.direct_seq[b64(server)] ?? 0, seq);
    });
  }

  // ---- seen ids -----------------------------------------------------------------------------------------------

  /**
   * The ids shown in one room, loaded on first use.
   *
   * @param server the server key
   * @param room the room (any spelling; compared folded)
   * @returns the ids
   */
  seenIds(server: Uint8Array, room: string): Promise<SeenIds> {
    return this.#seenIds(`${b64(server)}\u0000room\u0000${foldName(room)}`);
  }

  /**
   * The direct messages shown (keyed as the caller chooses, for example sender key and id), loaded on first use.
   *
   * @param server the server key
   * @returns the ids
   */
  seenDirectIds(server: Uint8Array): Promise<SeenIds> {
    return this.#seenIds(`${b64(server)}\u0000direct`);
  }

  async #seenIds(name: string): Promise<SeenIds> {
    const cached = this.#seen.get(name);
    if (cached) return cached.ids;
    const file = join(this.dir, SEEN_DIR, `${await sha256Hex(name)}.json`);
    const saved = readJson<{ ids: [string, number][] }>(file, { ids: [] });
    const ids = new SeenIds(Array.isArray(saved.ids) ? saved.ids : []);
    this.#seen.set(name, { file, ids });
    return ids;
  }

  /** Writes the seen ids that changed (merged with what another program on this home saved). */
  flush(): void {
    for (const { file, ids } of this.#seen.values()) {
      if (!ids.dirty) continue;
      ensureDir(join(this.dir, SEEN_DIR));
      withLock(this.dir, () => {
        const saved = readJson<{ ids: [string, number][] }>(file, { ids: [] });
        ids.merge(Array.isArray(saved.ids) ? saved.ids : []);
        writeAtomic(file, JSON.stringify({ ids: ids.take() }));
      });
    }
  }

  // ---- room secrets -------------------------------------------------------------------------------------------

  /**
   * The secret kept for a room, if the user accepted an invitation to it or joined it with --remember.
   *
   * @param server the server key
   * @param room the room name
   * @returns the secret, or undefined
   */
  async roomSecret(server: Uint8Array, room: string): Promise<RoomSecret | undefined> {
    const all = await this.#readSecrets();
    const s = all[b64(server)]?.[foldName(room)];
    if (!s) return undefined;
    return {
      name: s.name,
      salt: decodeBase64(s.salt),
      iterations: s.iterations,
      accessPub: decodeBase64(s.access_pub),
      epoch: s.epoch,
      master: decodeBase64(s.master),
      source: s.source,
    };
  }

  /**
   * Keeps a room's secret (0600, and under the identity passphrase when there is one).
   *
   * @param server the server key
   * @param secret the room and its master secret
   */
  async keepRoomSecret(server: Uint8Array, secret: RoomSecret): Promise<void> {
    await this.#updateSecrets((all) => {
      (all[b64(server)] ??= {})[foldName(secret.name)] = {
        name: secret.name,
        salt: b64(secret.salt),
        iterations: secret.iterations,
        access_pub: b64(secret.accessPub),
        epoch: secret.epoch,
        master: b64(secret.master),
        source: secret.source,
      };
      return true;
    });
  }

  /**
   * Drops a kept room secret.
   *
   * @param server the server key
   * @param room the room name
   * @returns whether one was kept
   */
  async dropRoomSecret(server: Uint8Array, room: string): Promise<boolean> {
    let found = false;
    await this.#updateSecrets((all) => {
      found = all[b64(server)]?.[foldName(room)] !== undefined;
      if (found) delete all[b64(server)][foldName(room)];
      return found;
    });
    return found;
  }

  // ---- identity -----------------------------------------------------------------------------------------------

  /**
   * Replaces the identity with a new one and a statement, signed by the old key, that the new key replaces it
   * (presented at every later login; peers who pinned the old key then accept the new one). Takes effect when the
   * home is next opened. The identity passphrase, if any, protects the new key too.
   *
   * @returns the old and new public keys
   */
  async rotate(): Promise<{ old: Uint8Array; next: Uint8Array }> {
    const path = join(this.dir, IDENTITY_FILE);
    const before = this.#currentIdentityText();
    const secrets = generateIdentitySecrets();
    const next = await importIdentity(secrets);
    const statement = await signRotation(this.identity, { newKey: next.publicKey, ts: Date.now() });
    const rotations = [...this.rotations, statement].map((r) => ({
      old: b64(r.oldKey),
      new: b64(r.newKey),
      ts: r.ts,
      signature: b64(r.signature),
    }));
    const file = await identityFile(secrets, { passphrase: this.#passphrase, rotations });
    secrets.signSeed.fill(0);
    secrets.kxSecret.fill(0);
    if (!replaceIfUnchanged(this.dir, path, { before, text: JSON.stringify(file, null, 2) })) throw staleIdentity(path);
    return { old: this.identity.publicKey, next: next.publicKey };
  }

  /**
   * Protects the identity (and kept room secrets) with a passphrase, changes it, or removes it (undefined).
   *
   * @param next the new passphrase, or undefined for none
   */
  async setPassphrase(next: string | undefined): Promise<void> {
    const path = join(this.dir, IDENTITY_FILE);
    const before = this.#currentIdentityText();
    const stored = parseJson<IdentityFile>(path, before);
    const { secrets } = await unlockIdentity(stored, { path, ask: () => Promise.resolve(this.#passphrase) });
    const file = await identityFile(secrets, {
      passphrase: next,
      rotations: stored.rotations,
      created: stored.created,
    });
    secrets.signSeed.fill(0);
    secrets.kxSecret.fill(0);
    if (!replaceIfUnchanged(this.dir, path, { before, text: JSON.stringify(file, null, 2) })) throw staleIdentity(path);
    const previous = this.#passphrase;
    this.#passphrase = next;
    await this.#updateSecrets(() => true, { read: previous, write: next });
  }

  // ---- internals ----------------------------------------------------------------------------------------------

  #trust(): TrustFile {
    return { ...structuredClone(EMPTY_TRUST), ...readJson<TrustFile>(join(this.dir, TRUST_FILE), EMPTY_TRUST) };
  }

  #updateTrust(change: (trust: TrustFile) => void): void {
    withLock(this.dir, () => {
      const trust = this.#trust();
      change(trust);
      writeAtomic(join(this.dir, TRUST_FILE), JSON.stringify(trust, null, 2));
    });
  }

  /** The identity file's text, checked to still hold this home's key (another program may have rotated it). */
  #currentIdentityText(): string {
    const path = join(this.dir, IDENTITY_FILE);
    const text = readText(path);
    if (text === undefined) throw new HomeError("missing", `${path} disappeared`);
    if (parseJson<IdentityFile>(path, text).public_key !== b64(this.identity.publicKey)) throw staleIdentity(path);
    return text;
  }

  async #readSecrets(): Promise<Secrets> {
    const path = join(this.dir, SECRETS_FILE);
    checkPrivate(path);
    return await decodeSecrets(path, { text: readText(path), passphrase: this.#passphrase });
  }

  /**
   * Reads, changes and writes the kept secrets without losing what another program wrote meanwhile: the file is
   * replaced only if it did not change while the secrets were being decrypted and encrypted (a passphrase KDF), and
   * read again otherwise.
   */
  async #updateSecrets(
    change: (all: Secrets) => boolean,
    passphrases: { read?: string; write?: string } = { read: this.#passphrase, write: this.#passphrase },
  ): Promise<void> {
    const path = join(this.dir, SECRETS_FILE);
    for (let attempt = 0; attempt < 8; attempt++) {
      checkPrivate(path);
      const before = readText(path);
      const all = await decodeSecrets(path, { text: before, passphrase: passphrases.read });
      if (!change(all)) return;
      const rooms = passphrases.write === undefined
        ? all
        : await lockSecret(new TextEncoder().encode(JSON.stringify(all)), {
          passphrase: passphrases.write,
          purpose: "rooms",
        });
      if (replaceIfUnchanged(this.dir, path, { before, text: JSON.stringify({ rooms }, null, 2) })) return;
    }
    throw new HomeError("io", `${path} keeps changing under another program: try again`);
  }
}

type Secrets = Record<string, Record<string, SecretRecord>>;

async function decodeSecrets(
  path: string,
  stored: { text: string | undefined; passphrase: string | undefined },
): Promise<Secrets> {
  const { rooms } = stored.text === undefined ? { rooms: {} } : parseJson<{ rooms: unknown }>(path, stored.text);
  if (!isLocked(rooms)) return (rooms ?? {}) as Secrets;
  if (stored.passphrase === undefined) {
    throw new HomeError("locked", `${path} is protected by a passphrase this identity no longer has`);
  }
  const bytes = await unlockSecret(rooms, { passphrase: stored.passphrase, purpose: "rooms" }).catch(() => {
    throw new HomeError("locked", `${path} does not open with the identity passphrase`);
  });
  return JSON.parse(new TextDecoder().decode(bytes));
}

function staleIdentity(path: string): HomeError {
  return new HomeError("stale", `${path} was changed by another aeschat program: start again to use the new identity`);
}

interface SecretRecord {
  name: string;
  salt: string;
  iterations: number;
  access_pub: string;
  epoch: number;
  master: string;
  source: "invite" | "remember";
}

function ensureDir(dir: string): void {
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    if (!(err instanceof Deno.errors.AlreadyExists)) {
      throw new HomeError("io", `cannot create ${dir}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
}

/** Runs `fn` holding an exclusive advisory lock on the home (other aeschat clients wait). */
function withLock<T>(dir: string, fn: () => T): T {
  let lock: Deno.FsFile | undefined;
  try {
    lock = Deno.openSync(join(dir, LOCK_FILE), { create: true, write: true, mode: 0o600 });
    lock.lockSync(true);
  } catch {
    // A file system without locks: go on unlocked rather than not at all.
  }
  try {
    return fn();
  } finally {
    try {
      lock?.unlockSync();
      lock?.close();
    } catch {
      // already released
    }
  }
}

async function identityFile(
  secrets: IdentitySecrets,
  options: { passphrase?: string; rotations: IdentityFile["rotations"]; created?: number },
): Promise<IdentityFile> {
  const identity = await importIdentity(secrets);
  const raw = new Uint8Array(2 * KEY_BYTES);
  raw.set(secrets.signSeed, 0);
  raw.set(secrets.kxSecret, KEY_BYTES);
  const stored = options.passphrase === undefined
    ? raw.toBase64()
    : await lockSecret(raw, { passphrase: options.passphrase, purpose: "identity" });
  raw.fill(0);
  return {
    version: 1,
    public_key: identity.publicKey.toBase64(),
    kx_public: identity.kxPublic.toBase64(),
    created: options.created ?? Date.now(),
    secrets: stored,
    rotations: options.rotations,
  };
}

async function unlockIdentity(
  file: IdentityFile,
  options: { path: string; ask?: () => Promise<string | undefined> },
): Promise<{ secrets: IdentitySecrets; passphrase?: string }> {
  let raw: Uint8Array<ArrayBuffer>;
  let passphrase: string | undefined;
  if (isLocked(file.secrets)) {
    passphrase = await options.ask?.();
    if (passphrase === undefined) {
      throw new HomeError("locked", `your identity key is protected by a passphrase, and none was given`);
    }
    raw = await unlockSecret(file.secrets, { passphrase, purpose: "identity" }).catch(() => {
      throw new HomeError("locked", `wrong passphrase for your identity key (${options.path})`);
    });
  } else {
    try {
      raw = decodeBase64(file.secrets as string, { length: 2 * KEY_BYTES });
    } catch {
      throw new HomeError("corrupt", `${options.path} is damaged: restore it from your export`);
    }
  }
  return {
    secrets: { signSeed: raw.slice(0, KEY_BYTES), kxSecret: raw.slice(KEY_BYTES) },
    passphrase,
  };
}

/**
 * Reads the identity file of a home as it is stored (for export): the caller copies it elsewhere with mode 0600.
 *
 * @example
 * ```ts
 * Deno.writeTextFileSync("alice.aeschat-identity", exportIdentity(dir), { mode: 0o600 });
 * ```
 * @param dir the home
 * @returns the file's text (secrets locked or not, as stored)
 * @throws {HomeError} "missing" when the home has no identity
 */
export function exportIdentity(dir: string): string {
  const path = join(dir, IDENTITY_FILE);
  checkPrivate(path);
  const file = readJson<IdentityFile | undefined>(path, undefined);
  if (!file) throw new HomeError("missing", `${dir} has no identity yet: run the client once, or import one`);
  return JSON.stringify(file, null, 2);
}

/**
 * Imports an identity exported from another device into a home that has none (the key only: pins, seen ids and
 * kept room secrets stay with the first device).
 *
 * @example
 * ```ts
 * importIdentityFile(dir, Deno.readTextFileSync("alice.aeschat-identity"));
 * ```
 * @param dir the home
 * @param text the exported file's text
 * @throws {HomeError} "exists" when the home already has an identity, "corrupt" when the text is not one
 */
export function importIdentityFile(dir: string, text: string): void {
  let file: IdentityFile;
  try {
    file = JSON.parse(text);
    if (file.version !== 1 || typeof file.public_key !== "string") throw new Error();
    decodeBase64(file.public_key, { length: KEY_BYTES });
  } catch {
    throw new HomeError("corrupt", "that file is not an exported aeschat identity");
  }
  ensureDir(dir);
  withLock(dir, () => {
    const path = join(dir, IDENTITY_FILE);
    if (readJson<IdentityFile | undefined>(path, undefined)) {
      throw new HomeError("exists", `${dir} already has an identity: import into a new AESCHAT_HOME`);
    }
    writeAtomic(path, JSON.stringify(file, null, 2));
  });
}
