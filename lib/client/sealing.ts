/**
 * Turning outbox items into frames, and what follows from the server's answers: a room message is signed and
 * sealed under the room's next sequence number, a direct message for the recipient's checked keys; a frame is kept
 * until its item is stored or given up (a resend is byte for byte), a number is settled as stored or void, and a
 * refusal is turned into the right retry (sealed again under a new number after `storage_failed`, again under the
 * new nick after `sender_mismatch`, for freshly looked-up keys after `bad_direct`) or a failure. Part of the session.
 *
 * @module
 */

import { decodeBase64 } from "../base64.ts";
import { DirectError, sealDirect } from "../direct.ts";
import type { Identity } from "../identity.ts";
import { sealRoomMessage } from "../message.ts";
import { foldName } from "../names.ts";
import { directFrame, sendFrame, type ServerMessageOf } from "../protocol.ts";
import { JoinError, SendError } from "./errors.ts";
import type { Outbox, OutboxItem } from "./outbox.ts";
import type { PeerKeys } from "./peers.ts";
import type { RoomState } from "./rooms.ts";
import type { SendSequence } from "./sequence.ts";

/** An outgoing message's frame: the nick it was sealed under, and the room number it took. */
interface Sealed {
  from: string;
  frame: Uint8Array;
  /** For a room message: its room (folded) and sequence number. */
  room?: string;
  n?: number;
  /** Whether this frame was written once (then it keeps its number: its first copy may be stored). */
  written?: boolean;
}

/** What sealing needs from the session. */
export interface SealingOptions {
  /** The user's identity. */
  identity: Identity;
  /** The current nick. */
  nick(): string;
  /** The server's key. */
  serverPub(): Uint8Array;
  /** The server's frame limit. */
  maxFrame(): number;
  /** A joined room by name (any spelling). */
  room(name: string): RoomState | undefined;
  /** A room's numbering for this run, by folded name. */
  numbering(fold: string): SendSequence | undefined;
  /** A recipient's checked keys (looked up once per connection). */
  recipient(nick: string): Promise<PeerKeys>;
  /** Drops a recipient's looked-up keys (the server refused them). */
  forgetRecipient(nick: string): void;
  /** The outbox the items are in. */
  outbox(): Outbox;
}

/**
 * The sealing of one session's outgoing messages.
 *
 * @example
 * ```ts
 * const sealing = new Sealing(options);
 * const outbox = new Outbox({ frame: (i) => sealing.frame(i), discard: (i) => sealing.discard(i), … });
 * ```
 */
export class Sealing {
  #options: SealingOptions;
  /** Each outgoing message's frame, by id, until it is stored or given up. */
  #sealed = new Map<string, Sealed>();
  /** Direct messages sealed again once after the server refused their recipient's keys. */
  #relooked = new Set<string>();

  /** @param options what sealing needs from the session */
  constructor(options: SealingOptions) {
    this.#options = options;
  }

  /**
   * The frame of an item: the one sealed before, or a new one (when none was, or the nick changed since).
   *
   * @param item the outbox item
   * @returns the frame
   * @throws {SendError} when it cannot be sent (not in the room, too long, recipient unknown or changed)
   */
  async frame(item: OutboxItem): Promise<Uint8Array> {
    const cached = this.#sealed.get(item.id);
    if (cached && cached.from === this.#options.nick()) return cached.frame;
    if (cached) this.#void(cached);
    const sealed = item.to === undefined ? await this.#sealRoom(item) : await this.#sealDirect(item, item.to);
    const maxFrame = this.#options.maxFrame();
    if (sealed.frame.length - 4 > maxFrame) {
      this.#void(sealed);
      throw new SendError(`message is too long for this server (frame limit ${maxFrame} bytes)`);
    }
    this.#sealed.set(item.id, sealed);
    return sealed.frame;
  }

  async #sealRoom(item: OutboxItem): Promise<Sealed> {
    const room = this.#options.room(item.room);
    if (!room) throw new SendError(`not in #${item.room} any more`);
    const from = this.#options.nick();
    const sequence = room.sending.take();
    const envelope = await sealRoomMessage(room.keys, {
      context: room.context,
      from,
      identity: this.#options.identity,
      content: item.text,
      sequence,
      id: decodeBase64(item.id),
      ts: item.ts,
    });
    return { from, frame: sendFrame(envelope), room: foldName(room.name), n: sequence.n };
  }

  async #sealDirect(item: OutboxItem, to: string): Promise<Sealed> {
    const recipient = await this.#options.recipient(to).catch((err) => {
      throw err instanceof JoinError && err.code === "unknown_nick"
        ? new SendError(`nobody is registered as ${to} on this server`)
        : err;
    });
    if (recipient.trust === "changed") throw recipientChanged(recipient.nick);
    const from = this.#options.nick();
    try {
      const sealed = await sealDirect(this.#options.identity, {
        serverPub: this.#options.serverPub(),
        from,
        to: { nick: recipient.nick, key: recipient.key, kx: recipient.kx },
        content: item.text,
        id: decodeBase64(item.id),
        ts: item.ts,
      });
      return { from, frame: directFrame(recipient.nick, sealed) };
    } catch (err) {
      if (err instanceof DirectError) throw new SendError(`cannot send to ${to}: ${err.message}`);
      throw err;
    }
  }

  /** A room number whose message will never be stored as sealed: void, so receivers do not wait for it. */
  #void(sealed: Sealed): void {
    if (sealed.room === undefined || sealed.n === undefined) return;
    this.#options.numbering(sealed.room)?.settle(sealed.n, "refused");
  }

  /**
   * A frame made and not written (an earlier item was put back meanwhile): it is sealed again when its turn comes,
   * under a new number.
   *
   * @param item the item
   */
  discard(item: OutboxItem): void {
    const sealed = this.#sealed.get(item.id);
    if (sealed && !sealed.written) {
      this.#void(sealed);
      this.#sealed.delete(item.id);
    }
  }

  /**
   * An item changed state: a written frame keeps its number; a stored item's number is settled, a given-up one's
   * is void.
   *
   * @param item the item as it is now
   */
  changed(item: OutboxItem): void {
    const sealed = this.#sealed.get(item.id);
    if (!sealed) return;
    if (item.state === "sent") sealed.written = true;
    if (item.state !== "acked" && item.state !== "failed") return;
    this.#sealed.delete(item.id);
    this.#relooked.delete(item.id);
    if (sealed.room !== undefined && sealed.n !== undefined) {
      this.#options.numbering(sealed.room)?.settle(sealed.n, item.state === "acked" ? "stored" : "refused");
    }
  }

  /**
   * The server refused an item: retried (sealed again where that helps) or given up.
   *
   * @param item the item
   * @param msg the server's error about it
   */
  refused(item: OutboxItem, msg: ServerMessageOf<"error">): void {
    const outbox = this.#options.outbox();
    switch (msg.code) {
      case "duplicate_id":
        // Already stored (its ack was lost): as good as an ack.
        outbox.ack(item.id);
        return;
      case "storage_failed": {
        // Not stored: its number becomes void, and the same text is sealed again under a new number.
        const sealed = this.#sealed.get(item.id);
        if (sealed) this.#void(sealed);
        this.#sealed.delete(item.id);
        outbox.retry(item.id, `the server could not store it: ${msg.message}`);
        return;
      }
      case "bad_direct":
      case "unknown_nick":
        // The recipient's keys changed on the server since they were looked up: look them up again, once.
        if (item.to !== undefined && !this.#relooked.has(item.id)) {
          this.#relooked.add(item.id);
          this.#options.forgetRecipient(item.to);
          this.#sealed.delete(item.id);
          outbox.retry(item.id, msg.message, { now: true });
          return;
        }
        break;
      case "sender_mismatch":
        // Sealed under a nick that is not this connection's any more (a nick change, a reconnect): seal it again.
        if (this.#sealed.get(item.id)?.from !== this.#options.nick()) {
          outbox.retry(item.id, msg.message, { now: true });
          return;
        }
        break;
    }
    outbox.fail(item.id, `the server refused it: ${msg.message}`);
  }
}

/**
 * The refusal of a direct message to someone whose key differs from the pin (code "changed": exit 7 in scripts).
 *
 * @example
 * ```ts
 * throw recipientChanged("bob");
 * ```
 * @param nick the recipient
 * @returns the error
 */
export function recipientChanged(nick: string): SendError {
  return new SendError(
    `${nick}'s key differs from the one you pinned: nothing was sent. Check it (/whois ${nick}, or compare ` +
      `/verify ${nick} with them), then /trust ${nick} (deno task client trust ${nick})`,
    { code: "changed" },
  );
}
