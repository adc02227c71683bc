/**
 * Whom the client believes: each nick's identity key on this server, pinned at first sight (from a signed message,
 * a direct message, the server's registry in member lists and presence, or a lookup), compared at every later
 * sight, and moved to a new key without a warning only when a chain of rotation statements signed by the pinned
 * key leads to it. A lookup's key-agreement key must carry the identity key's signature, so a server that
 * substitutes one is caught. Everything is stored through the home; the session asks the server through `lookup`.
 *
 * @module
 */

import { canonicalBase64Length, decodeBase64 } from "../base64.ts";
import { sameBytes } from "../bytes.ts";
import { verifyEd25519 } from "../crypto.ts";
import { fingerprint, followRotations, KEY_BYTES, kxInput, type Rotation } from "../identity.ts";
import { foldName } from "../names.ts";
import { parseRotations, type ServerMessageOf } from "../protocol.ts";
import { JoinError } from "./errors.ts";
import type { PeerInfo, SessionEvent, Trust } from "./events.ts";
import type { Home } from "./home.ts";

/** A nick's keys as a checked lookup gives them. */
export interface PeerKeys {
  /** Canonical nick. */
  nick: string;
  /** Identity key. */
  key: Uint8Array<ArrayBuffer>;
  /** Key-agreement key (its signature by `key` verified). */
  kx: Uint8Array<ArrayBuffer>;
  /** The identity key's pin state. */
  trust: Exclude<Trust, "unsigned">;
  /** The identity key's fingerprint. */
  fingerprint: string;
}

/** What the peer book needs from the session. */
export interface PeersOptions {
  /** The user's home, which keeps the pins. */
  home: Home;
  /** The server's key: every pin is kept under it. */
  serverPub: Uint8Array;
  /** This user's nick and identity key now (seeing oneself pins and changes nothing). */
  self(): { nick: string; key: Uint8Array };
  /** Asks the server for a nick's identity (rejects with JoinError "unknown_nick", "offline", …). */
  lookup(nick: string): Promise<ServerMessageOf<"identity">>;
  /** Receives key-change and rotation events. */
  onEvent(event: SessionEvent): void;
}

/**
 * The peer book of one session.
 *
 * @example
 * ```ts
 * const peers = new Peers({ home, serverPub, lookup, onEvent });
 * const trust = await peers.check("alice", signerKey); // "new", "pinned", "verified" or "changed"
 * ```
 */
export class Peers {
  #options: PeersOptions;
  /** Key changes already reported, by folded nick and key, so a flood of messages gives one event. */
  #reported = new Set<string>();
  /** Rotation checks done or under way, by folded nick and key. */
  #rotations = new Map<string, Promise<boolean>>();

  /** @param options the home, server key, lookup and event sink */
  constructor(options: PeersOptions) {
    this.#options = options;
  }

  /**
   * Compares a key seen for a nick with its pin (pinning it at first sight). A different key is looked up once:
   * when the server's rotation statements lead from the pin to it, it is pinned (a "rotated" event) and counts as
   * "pinned"; otherwise it is "changed" (one "keyChanged" event per nick and key).
   *
   * @param nick the canonical nick
   * @param key the identity key seen
   * @param options.room the room it was seen in, for the event
   * @param options.rotations statements already at hand (from a lookup), instead of looking up
   * @returns the key's trust
   */
  async check(
    nick: string,
    key: Uint8Array,
    options: { room?: string; rotations?: Rotation[] } = {},
  ): Promise<Exclude<Trust, "unsigned">> {
    const { home, serverPub } = this.#options;
    const self = this.#options.self();
    if (foldName(nick) === foldName(self.nick)) {
      // The user's own nick: its key is known (this one, or one it rotated away from), never learnt by first sight.
      if (sameBytes(key, self.key) || home.rotations.some((r) => sameBytes(r.oldKey, key))) return "pinned";
      await this.#reportChange(`${foldName(nick)}/${key.toBase64()}`, { nick, key, room: options.room }, self.key);
      return "changed";
    }
    const met = home.meetPeer(serverPub, { nick, key });
    if (met !== "changed") return met;
    const id = `${foldName(nick)}/${key.toBase64()}`;
    let rotated = this.#rotations.get(id);
    if (!rotated) {
      rotated = this.#followRotation(nick, key, options.rotations);
      this.#rotations.set(id, rotated);
      // A failed lookup (offline) is tried again at the next sight.
      rotated.then((ok) => {
        if (!ok && options.rotations === undefined) this.#rotations.delete(id);
      });
    }
    if (await rotated) return home.meetPeer(serverPub, { nick, key }) === "changed" ? "changed" : "pinned";
    await this.#reportChange(id, { nick, key, room: options.room });
    return "changed";
  }

  async #followRotation(nick: string, key: Uint8Array, given: Rotation[] | undefined): Promise<boolean> {
    const { home, serverPub } = this.#options;
    const pin = home.peerPin(serverPub, nick);
    if (!pin) return false;
    let chain = given;
    if (chain === undefined) {
      try {
        chain = rotationsOf(await this.#options.lookup(nick));
      } catch {
        return false;
      }
    }
    const end = await followRotations(pin.key, chain);
    if (!end || !sameBytes(end, key)) return false;
    home.trustPeer(serverPub, { nick: pin.nick, key });
    this.#options.onEvent({
      kind: "rotated",
      nick: pin.nick,
      fingerprint: await fingerprint(key),
      previous: await fingerprint(pin.key),
    });
    return true;
  }

  async #reportChange(
    id: string,
    seen: { nick: string; key: Uint8Array; room?: string },
    known: Uint8Array | undefined = this.#options.home.peerPin(this.#options.serverPub, seen.nick)?.key,
  ): Promise<void> {
    if (this.#reported.has(id)) return;
    this.#reported.add(id);
    this.#options.onEvent({
      kind: "keyChanged",
      nick: seen.nick,
      ...(seen.room === undefined ? {} : { room: seen.room }),
      fingerprint: await fingerprint(seen.key),
      pinned: known ? await fingerprint(known) : "",
    });
  }

  /**
   * Looks a nick up and checks the answer: the canonical nick folds to the one asked, the key-agreement key carries
   * the identity key's signature (a substituted one is refused), and the identity key is compared with the pin
   * (rotation statements in the answer are followed).
   *
   * @param nick the nick
   * @returns the checked keys
   * @throws {JoinError} "unknown_nick", "offline", or "bad_reply" when the server's answer does not hold together
   */
  async keys(nick: string): Promise<PeerKeys> {
    const reply = await this.#options.lookup(nick);
    if (typeof reply.nick !== "string" || foldName(reply.nick) !== foldName(nick)) {
      throw new JoinError("bad_reply", `the server answered a lookup of ${nick} with another nick`);
    }
    if (canonicalBase64Length(reply.key) !== KEY_BYTES || canonicalBase64Length(reply.kx) !== KEY_BYTES) {
      throw new JoinError("bad_reply", `the server's keys for ${nick} are malformed`);
    }
    const key = decodeBase64(reply.key);
    const kx = decodeBase64(reply.kx);
    const signature = canonicalBase64Length(reply.kx_sig) === 64 ? decodeBase64(reply.kx_sig) : new Uint8Array(0);
    if (!await verifyEd25519(key, { input: kxInput(key, kx), signature })) {
      throw new JoinError(
        "bad_reply",
        `the key-agreement key the server gives for ${reply.nick} is not signed by their identity key: refusing it`,
      );
    }
    let chain: Rotation[];
    try {
      chain = rotationsOf(reply);
    } catch {
      throw new JoinError("bad_reply", `the server's rotation statements for ${reply.nick} are malformed`);
    }
    const trust = await this.check(reply.nick, key, { rotations: chain });
    return { nick: reply.nick, key, kx, trust, fingerprint: await fingerprint(key) };
  }

  /**
   * A nick's key as /whois shows it: the key the server shows now against the pin.
   *
   * @param nick the nick
   * @returns fingerprints and pin state
   * @throws {JoinError} as {@link Peers.keys}
   */
  async info(nick: string): Promise<PeerInfo> {
    const keys = await this.keys(nick);
    const pin = this.#options.home.peerPin(this.#options.serverPub, keys.nick);
    return {
      nick: keys.nick,
      fingerprint: keys.fingerprint,
      pinned: pin ? await fingerprint(pin.key) : undefined,
      trust: keys.trust,
    };
  }
}

/** The rotation statements of a lookup, decoded. */
function rotationsOf(reply: ServerMessageOf<"identity">): Rotation[] {
  return parseRotations(reply.rotations).map((r) => ({
    oldKey: decodeBase64(r.old),
    newKey: decodeBase64(r.new),
    ts: r.ts,
    signature: decodeBase64(r.signature),
  }));
}
