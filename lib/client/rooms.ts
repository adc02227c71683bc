/**
 * One room as the session holds it (keys, room instance, catch-up position, sequence state, ids shown, the server's
 * member list), and the checks a challenge must pass before anything is derived or proved: the canonical name folds
 * to what was asked, the parameters are well-formed and within range, they equal the room's pin (a pinned room that
 * now looks new is refused too), and a room seen for the first time is not weaker than `--min-iterations`.
 *
 * @module
 */

import { canonicalBase64Length, decodeBase64 } from "../base64.ts";
import { checkIterations, NONCE_BYTES, type RoomKeys, SALT_BYTES } from "../crypto.ts";
import { KEY_BYTES } from "../identity.ts";
import type { RoomContext } from "../message.ts";
import { foldName } from "../names.ts";
import type { MemberInfo, ServerMessageOf } from "../protocol.ts";
import { JoinError } from "./errors.ts";
import type { RoomPin, SeenIds } from "./home.ts";
import { SenderTracker, SendSequence } from "./sequence.ts";

/** Largest room key epoch (u32). */
const MAX_EPOCH = 0xffff_ffff;

/** A checked challenge. */
export interface Challenge {
  /** The room's canonical name. */
  room: string;
  /** The 32-byte nonce to sign. */
  nonce: Uint8Array<ArrayBuffer>;
  /** The room's parameters, when it exists (undefined: this join creates it). */
  existing?: Omit<RoomPin, "name">;
}

/**
 * Checks a challenge against the name asked for, the room's pin and the iteration floor. Nothing has been derived or
 * sent when it throws.
 *
 * @example
 * ```ts
 * const challenge = checkChallenge(reply, { asked: "Ops", pin: home.roomPin(server, "Ops"), minIterations: 600000 });
 * ```
 * @param reply the server's challenge
 * @param options.asked the room name the user asked for
 * @param options.pin the room's pin, if it has one
 * @param options.minIterations the lowest count accepted for a room without a pin
 * @returns the challenge, decoded
 * @throws {JoinError} "bad_reply" (malformed, another room), "changed" (differs from the pin, or a pinned room that
 *   now looks new), "weak" (below the floor)
 */
export function checkChallenge(
  reply: ServerMessageOf<"challenge">,
  options: { asked: string; pin?: RoomPin; minIterations: number },
): Challenge {
  const { asked, pin } = options;
  if (foldName(reply.room) !== foldName(asked)) {
    throw new JoinError("bad_reply", `refusing to join #${asked}: the server answered for another room`);
  }
  const room = reply.room;
  const bad = (why: string) => new JoinError("bad_reply", `refusing to join #${room}: bad challenge: ${why}`);
  if (canonicalBase64Length(reply.nonce) !== NONCE_BYTES) throw bad("the nonce is not 32 bytes");
  if (reply.salt === undefined) {
    if (pin) {
      throw new JoinError(
        "changed",
        `refusing to join #${room}: you joined it before, and the server now says it does not exist (deleted and ` +
          `re-created, or a server lying about it); if that is expected: /forget ${room} (or deno task client ` +
          `forget-room ${room}), then join again`,
      );
    }
    return { room, nonce: decodeBase64(reply.nonce) };
  }
  if (canonicalBase64Length(reply.salt) !== SALT_BYTES) throw bad("the salt is not 16 bytes");
  if (reply.access_pub === undefined || canonicalBase64Length(reply.access_pub) !== KEY_BYTES) {
    throw bad("access_pub is not a 32-byte key");
  }
  try {
    checkIterations(reply.iterations);
  } catch (err) {
    throw bad((err as Error).message);
  }
  const epoch = reply.epoch ?? 0;
  if (!Number.isSafeInteger(epoch) || epoch < 0 || epoch > MAX_EPOCH) throw bad("the epoch is out of range");
  const existing = {
    salt: decodeBase64(reply.salt),
    iterations: reply.iterations!,
    accessPub: decodeBase64(reply.access_pub),
    epoch,
  };
  if (pin) {
    const changed = pinDifferences(pin, existing);
    if (changed.length > 0) {
      throw new JoinError(
        "changed",
        `refusing to join #${room}: its ${changed.join(", ")} changed since you first joined it (a server ` +
          `weakening it, or an operator who re-created it); if that is expected: /forget ${room} (or deno task ` +
          `client forget-room ${room}), then join again`,
      );
    }
  } else if (existing.iterations < options.minIterations) {
    throw new JoinError(
      "weak",
      `refusing to join #${room}: its passphrase is stretched with ${existing.iterations} PBKDF2 iterations, below ` +
        `your floor of ${options.minIterations}; to accept it: --min-iterations ${existing.iterations}`,
    );
  }
  return { room, nonce: decodeBase64(reply.nonce), existing };
}

/**
 * What differs between a pin and a room's parameters, in words: "salt", "iteration count (600000 → 100000)",
 * "access key", "epoch".
 *
 * @example
 * ```ts
 * pinDifferences(pin, { ...pin, iterations: 100000 }); // ["iteration count (600000 → 100000)"]
 * ```
 * @param pin the pinned parameters
 * @param now the parameters seen now
 * @returns the differences (empty when equal)
 */
export function pinDifferences(pin: Omit<RoomPin, "name">, now: Omit<RoomPin, "name">): string[] {
  const changed: string[] = [];
  if (pin.salt.toBase64() !== now.salt.toBase64()) changed.push("salt");
  if (pin.iterations !== now.iterations) changed.push(`iteration count (${pin.iterations} → ${now.iterations})`);
  if (pin.accessPub.toBase64() !== now.accessPub.toBase64()) changed.push("access key");
  if (pin.epoch !== now.epoch) changed.push(`epoch (${pin.epoch} → ${now.epoch})`);
  return changed;
}

/** Live messages held back while a room catches up after a reconnect. */
export interface Held {
  /** The raw relayed items, in arrival order. */
  items: unknown[];
  /** Their bytes. */
  bytes: number;
  /** Whether some were dropped for the bound (and must be fetched again). */
  overflowed: boolean;
}

/** One joined room. */
export class RoomState {
  /** Canonical name. */
  readonly name: string;
  /** The room keys (memory only). */
  keys: RoomKeys;
  /** The room instance messages are signed for. */
  readonly context: RoomContext;
  /** The parameters pinned for it. */
  readonly pin: RoomPin;
  /** Highest seq seen in this room (or the server's latest at join): where a catch-up starts. */
  lastSeq: number;
  /** Lowest seq shown, for paging back. */
  oldestSeq: number;
  /** Lowest seq of a signed (v2) message seen: unsigned v1 messages are accepted only below it. */
  lowestSigned = Infinity;
  /** This device's numbering of its messages in this room. */
  readonly sending: SendSequence;
  /** Every sender device's numbering, as received. */
  readonly tracker = new SenderTracker();
  /** Ids already shown (kept in the home across runs). */
  readonly seen: SeenIds;
  /** The server's registry for the room: folded nick → identity key (base64) and canonical nick. */
  readonly members = new Map<string, MemberInfo>();
  /** Live messages held back while catching up (undefined when live). */
  held?: Held;
  /** The nick each sender key (base64) last signed with here, to name it in a warning. */
  readonly senders = new Map<string, string>();
  /** Holes being checked again with `since` (by "key/device/first"). */
  readonly rechecking = new Set<string>();

  /**
   * @param init.keys the room keys
   * @param init.context the room instance
   * @param init.pin the room's parameters
   * @param init.latestSeq the server's latest seq at join
   * @param init.sending this device's numbering
   * @param init.seen the ids shown before
   */
  constructor(
    init: {
      keys: RoomKeys;
      context: RoomContext;
      pin: RoomPin;
      latestSeq: number;
      sending: SendSequence;
      seen: SeenIds;
    },
  ) {
    this.name = init.context.room;
    this.keys = init.keys;
    this.context = init.context;
    this.pin = init.pin;
    this.lastSeq = init.latestSeq;
    this.oldestSeq = init.latestSeq + 1;
    this.sending = init.sending;
    this.seen = init.seen;
  }

  /**
   * Replaces the server's member list (joined, who).
   *
   * @param members the members
   */
  setMembers(members: MemberInfo[]): void {
    this.members.clear();
    for (const m of members) this.members.set(foldName(m.nick), m);
  }
}
