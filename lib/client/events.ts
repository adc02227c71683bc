/**
 * What the client session tells its user interface: the messages it shows (room and direct), with who signed them
 * and how far that is trusted, and every other event (presence, key changes, warnings, the connection). A terminal,
 * a script printer or a GUI renders these; none of them is terminal code.
 *
 * @module
 */

import type { SessionError } from "./errors.ts";
import type { OutboxItem } from "./outbox.ts";

/**
 * How far a message's sender is trusted (the `trust` of `--json`): "verified" (the user compared safety numbers),
 * "pinned" (the key first seen for this nick), "new" (first sight: now pinned), "changed" (another key than the
 * pinned one: shown with a key-change mark until the user trusts it), "unsigned" (a v1 message from before protocol
 * v2, in history only).
 */
export type Trust = "verified" | "pinned" | "new" | "changed" | "unsigned";

/**
 * Something the receiver noticed about one message: "replayed" (an envelope already shown, delivered again as new),
 * "late" (one sender's message delivered after a later one of the same sender), "delayed" (its `ts` is much older
 * than when the server stored it: typed offline, sent later), "future" (its `ts` is ahead of the server's clock).
 */
export type Mark = "replayed" | "late" | "delayed" | "future";

/** A room message, decrypted and checked, ready to show. */
export interface ShownMessage {
  /** The room's canonical name. */
  room: string;
  /** Server sequence number. */
  seq: number;
  /** The server's clock when it stored the message. */
  sent_at: number;
  /** Sender nick (as signed). */
  from: string;
  /** Sender's clock, ms since the epoch (as signed). */
  ts: number;
  /** Message id, base64. */
  id: string;
  /** "text", "action" (/me), "topic", or another type this client does not know (shown as unsupported). */
  type: string;
  /** What was said. */
  text: string;
  /** Shown from history (on join, or paged back) rather than live. */
  history: boolean;
  /** The signer's identity key fingerprint (40 hex digits), or null for an unsigned v1 message. */
  fingerprint: string | null;
  /** How far the signer is trusted. */
  trust: Trust;
  /** What the receiver noticed (empty for an ordinary message). */
  marks: Mark[];
}

/** A direct message (or this user's own copy of one they sent), decrypted and checked. */
export interface DirectShown {
  /** Always null: a direct message belongs to no room. */
  room: null;
  /** Sender nick. */
  from: string;
  /** Recipient nick. */
  to: string;
  /** The other person of the conversation (`from`, or `to` for this user's own copy). */
  peer: string;
  /** Inbox sequence number. */
  seq: number;
  /** The server's clock when it stored the message. */
  sent_at: number;
  /** Sender's clock. */
  ts: number;
  /** Message id, base64 (the same in both copies). */
  id: string;
  /** "text" or "action". */
  type: string;
  /** What was said. */
  text: string;
  /** Whether this is this user's own copy (sent from this or another device). */
  own: boolean;
  /** From the inbox as it was before this run (already seen) rather than new. */
  history: boolean;
  /** The sender's fingerprint. */
  fingerprint: string;
  /** How far the sender is trusted (for an own copy: the recipient's key against its pin). */
  trust: Trust;
  /** What the receiver noticed. */
  marks: Mark[];
  /** For an own copy: whether the server has handed it to the recipient. */
  delivered?: boolean;
}

/** An invitation to a room, received over the direct channel (accept it with Session.accept). */
export interface InvitationShown {
  /** The room's canonical name. */
  room: string;
  /** Who invited. */
  from: string;
  /** Who is invited (this user). */
  to: string;
  /** The inviter's fingerprint. */
  fingerprint: string;
  /** How far the inviter is trusted. */
  trust: Trust;
  /** The direct message's id. */
  id: string;
  /** The inviter's clock. */
  ts: number;
  /** From the inbox as it was before this run. */
  history: boolean;
}

/** A peer's key as the client knows it (/whois). */
export interface PeerInfo {
  /** Canonical nick. */
  nick: string;
  /** Fingerprint of the key the server's registry shows for the nick now (undefined when not looked up). */
  fingerprint?: string;
  /** Fingerprint of the pinned key (undefined before first sight). */
  pinned?: string;
  /** Pin state of the key the server shows: verified, pinned, new (just pinned) or changed. */
  trust: Exclude<Trust, "unsigned">;
}

/** What the session tells its user interface. */
export type SessionEvent =
  /** A room message to show (live, caught up after a reconnect, or history on join). */
  | { kind: "message"; message: ShownMessage }
  /** Older messages of a room fetched with Session.older (not checked for order, which only runs forward). */
  | { kind: "older"; room: string; messages: ShownMessage[]; more: boolean }
  /** A direct message to show, or this user's own copy of one. */
  | { kind: "direct"; message: DirectShown }
  /** The server handed one of this user's direct messages to its recipient (a server-reported state). */
  | { kind: "delivered"; id: string }
  /** An invitation to a room arrived. */
  | { kind: "invitation"; invitation: InvitationShown }
  /**
   * Messages claiming to be from `from` failed authentication and were not shown: the first at once (with its
   * seq), then one event per interval with the `count` since. `room` is undefined for direct messages.
   */
  | { kind: "forged"; room?: string; from: string; count: number; seq?: number; intervalMs: number }
  /** The server was met for the first time: its key is now pinned (first contact is trusted: compare it). */
  | { kind: "server"; address: string; fingerprint: string; first: boolean }
  /** Plain TCP to an address that is not loopback: anyone on the path reads who talks to whom, and can relay. */
  | { kind: "insecure"; address: string }
  /**
   * A nick now shows another identity key than the pinned one (in a message, the server's registry, or a lookup):
   * its messages carry the key-change mark until the user trusts the new key.
   */
  | { kind: "keyChanged"; nick: string; room?: string; fingerprint: string; pinned: string }
  /** A nick replaced its key and the old key signed the change: the new key is pinned (verification reset). */
  | { kind: "rotated"; nick: string; fingerprint: string; previous: string }
  /** The server's member list disagrees with the key that signed the nick's messages (or with the pin). */
  | { kind: "registry"; room: string; nick: string; fingerprint: string; pinned: string }
  /** A sender's messages were withheld: later messages prove they were stored, and catching up did not bring them. */
  | { kind: "withheld"; room: string; from: string; count: number }
  /** The server says it removed messages of the room (retention): missing ones prove nothing. */
  | { kind: "pruned"; room: string; through: number }
  | { kind: "presence"; event: "join" | "leave" | "nick"; room: string; nick: string; old?: string; trust?: Trust }
  /** This connection is in a room (joined, or rejoined after a reconnect). */
  | { kind: "joined"; room: string; members: string[]; created: boolean }
  /** This connection left a room (with why, when it was not the user's /part). */
  | { kind: "parted"; room: string; reason?: string }
  | { kind: "nick"; old: string; new: string }
  /** One of this client's messages (room or direct) changed state: queued, sent, acked (stored) or failed. */
  | { kind: "outbox"; item: OutboxItem }
  | { kind: "status"; text: string }
  /** The connection is down: the next attempt comes in `retryInMs`. Sent before every attempt. */
  | { kind: "offline"; reason: string; retryInMs: number; attempt: number }
  | { kind: "reconnected"; room?: string; missed: number; resent: number }
  | { kind: "closed"; error: SessionError };
