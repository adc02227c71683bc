/**
 * Receiving (PROTOCOL.md "What a client does", Receiving): one relayed room item or direct item at a time, opened,
 * its signature and signer checked against the pins and the server's registry, its sender's sequence values fed to
 * the tracker, its id compared with the ids already shown, and its times compared with the server's; the result is a
 * message to show with its trust and marks, or nothing (a duplicate delivery, or a forgery, which is reported).
 *
 * @module
 */

import { decodeBase64 } from "../base64.ts";
import { sameBytes } from "../bytes.ts";
import { OpenError } from "../crypto.ts";
import { type DirectMessage, openDirect } from "../direct.ts";
import { fingerprint, type Identity } from "../identity.ts";
import { openRoomMessage, type RoomMessage, SignatureError } from "../message.ts";
import { foldName, isRegistrableNick } from "../names.ts";
import { parseDirectItem, parseRelayedMessage, type RelayedMessage } from "../protocol.ts";
import type { DirectShown, Mark, SessionEvent, ShownMessage, Trust } from "./events.ts";
import type { SeenIds } from "./home.ts";
import type { Peers } from "./peers.ts";
import type { RoomState } from "./rooms.ts";

/** A message whose `ts` is older than the server's `sent_at` by more than this was typed offline and sent later. */
export const DELAYED_MS = 2 * 60_000;
/** A message whose `ts` is ahead of the server's `sent_at` by more than this is marked as from the future. */
export const FUTURE_MS = 60_000;

/**
 * How an item arrived: with the join ("join", history shown on joining), live, by a catch-up after a reconnect,
 * by a re-check of a hole, or paged back with /history ("older": not fed to the order checks).
 */
export type Arrived = "join" | "live" | "catchUp" | "recheck" | "older";

/** What opening needs from the session. */
export interface InboundContext {
  /** The peer book (pins, rotations, key-change events). */
  peers: Peers;
  /** This user's identity. */
  identity: Identity;
  /** This run's device id: its own messages are not fed to the order checks. */
  device: Uint8Array;
  /** The server's key. */
  serverPub: Uint8Array;
  /** Counts a message that failed authentication (room undefined for a direct message). */
  forged(room: string | undefined, from: string, seq?: number): void;
  /** Receives warnings (the registry disagreeing with a signer). */
  onEvent(event: SessionEvent): void;
  /** A pending message of this client seen stored (its ack was lost): acknowledge it. */
  storedOwn(id: string, seq: number): void;
}

/** Registry disagreements already reported, by room, nick and key. */
const reportedRegistry = new WeakMap<RoomState, Set<string>>();

/**
 * Opens one relayed room item.
 *
 * @example
 * ```ts
 * const shown = await openRoomItem(room, raw, { context, arrived: "live" });
 * if (shown) onEvent({ kind: "message", message: shown });
 * ```
 * @param room the room it was delivered for
 * @param raw the untrusted item
 * @param options.context the session's part
 * @param options.arrived how it arrived
 * @returns the message to show, or undefined (a duplicate delivery, or not authentic: reported)
 */
export async function openRoomItem(
  room: RoomState,
  raw: unknown,
  options: { context: InboundContext; arrived: Arrived },
): Promise<ShownMessage | undefined> {
  const { context: ctx, arrived } = options;
  let item: RelayedMessage;
  try {
    item = parseRelayedMessage(raw);
  } catch {
    const claimed = (raw as { envelope?: { from?: unknown } })?.envelope?.from;
    ctx.forged(room.name, typeof claimed === "string" ? claimed : "(unknown sender)", seqOf(raw));
    return undefined;
  }
  const id = item.envelope.id;
  if (arrived !== "older") ctx.storedOwn(id, item.seq);
  const known = room.seen.get(id);
  const shownBefore = known === item.seq;
  // The same delivery twice (a catch-up overlapping live messages): dropped. History is shown again, as history.
  if (shownBefore && arrived !== "join" && arrived !== "older") return undefined;
  let message: RoomMessage;
  try {
    message = await openRoomMessage(room.keys, { envelope: item.envelope, context: room.context });
  } catch (err) {
    if (!(err instanceof OpenError) && !(err instanceof SignatureError)) throw err;
    ctx.forged(room.name, item.envelope.from, item.seq);
    return undefined;
  }
  const marks = new Set<Mark>();
  let trust: Trust;
  let print: string | null = null;
  if (!message.signer) {
    // Unsigned (v1) messages exist only below every signed one, in a database migrated from v1: never live.
    if (arrived === "live" || item.seq >= room.lowestSigned) {
      ctx.forged(room.name, message.from, item.seq);
      return undefined;
    }
    trust = "unsigned";
  } else {
    if (!isRegistrableNick(message.from)) {
      // A name no server admits (invisible characters, spaces, mixed scripts) drawn like a real nick: a lie.
      ctx.forged(room.name, message.from, item.seq);
      return undefined;
    }
    room.lowestSigned = Math.min(room.lowestSigned, item.seq);
    const key = message.signer.key;
    trust = await ctx.peers.check(message.from, key, { room: room.name });
    print = await fingerprint(key);
    await checkRegistry(room, { nick: message.from, key, print, ctx });
    room.senders.set(key.toBase64(), message.from);
    const own = sameBytes(key, ctx.identity.publicKey) && sameBytes(message.signer.sequence.device, ctx.device);
    if (arrived !== "older" && !own && !shownBefore) {
      const arrival = room.tracker.observe({ key: key.toBase64(), sequence: message.signer.sequence, seq: item.seq });
      if (arrival.kind !== "ok") marks.add(arrival.kind);
    }
  }
  if (known !== undefined && !shownBefore) marks.add("replayed");
  timeMarks(marks, { ts: message.ts, sentAt: item.sent_at });
  if (known === undefined) room.seen.add(id, item.seq);
  if (arrived !== "older") room.lastSeq = Math.max(room.lastSeq, item.seq);
  room.oldestSeq = Math.min(room.oldestSeq, item.seq);
  return {
    room: room.name,
    seq: item.seq,
    sent_at: item.sent_at,
    from: message.from,
    ts: message.ts,
    id,
    type: message.type,
    text: message.body,
    history: arrived === "join" || arrived === "older",
    fingerprint: print,
    trust,
    marks: [...marks],
  };
}

/** Warns (once per room, nick and key) when the server's member list shows another key than the signer's. */
async function checkRegistry(
  room: RoomState,
  signer: { nick: string; key: Uint8Array; print: string; ctx: InboundContext },
): Promise<void> {
  const listed = room.members.get(foldName(signer.nick));
  if (!listed || listed.key === signer.key.toBase64()) return;
  const reported = reportedRegistry.get(room) ?? new Set<string>();
  reportedRegistry.set(room, reported);
  const id = `${foldName(signer.nick)}/${listed.key}/${signer.key.toBase64()}`;
  if (reported.has(id)) return;
  reported.add(id);
  signer.ctx.onEvent({
    kind: "registry",
    room: room.name,
    nick: signer.nick,
    fingerprint: await fingerprint(decodeBase64(listed.key)),
    pinned: signer.print,
  });
}

function timeMarks(marks: Set<Mark>, times: { ts: number; sentAt: number }): void {
  if (times.sentAt - times.ts > DELAYED_MS) marks.add("delayed");
  if (times.ts - times.sentAt > FUTURE_MS) marks.add("future");
}

/** The seq of an untrusted relayed item, when it has a numeric one. */
export function seqOf(raw: unknown): number | undefined {
  const seq = (raw as { seq?: unknown } | undefined)?.seq;
  return typeof seq === "number" ? seq : undefined;
}

/** An opened direct item: the message to show, and the opened content (an invitation's body is in `message`). */
export interface OpenedDirect {
  /** What to show. */
  shown: DirectShown;
  /** The opened message. */
  message: DirectMessage;
}

/**
 * Opens one direct item (live `direct`, or an item of `direct_since`).
 *
 * @example
 * ```ts
 * const opened = await openDirectItem(raw, { context, seen, history: false });
 * ```
 * @param raw the untrusted item
 * @param options.context the session's part
 * @param options.seen the direct ids shown before (keyed by sender key and id)
 * @param options.history from the inbox as it was before this run
 * @returns the message, or undefined (a duplicate delivery, or not for this user or not authentic: reported)
 */
export async function openDirectItem(
  raw: unknown,
  options: { context: InboundContext; seen: SeenIds; history: boolean },
): Promise<OpenedDirect | undefined> {
  const { context: ctx, seen } = options;
  let seq: number, sentAt: number, delivered: boolean, message: DirectMessage;
  try {
    const item = parseDirectItem(raw);
    ({ seq, sent_at: sentAt, delivered } = item);
    message = await openDirect(ctx.identity, { envelope: item.envelope, serverPub: ctx.serverPub });
    if (!isRegistrableNick(message.from) || !isRegistrableNick(message.to)) throw new OpenError();
  } catch {
    const claimed = (raw as { envelope?: { from?: unknown } })?.envelope?.from;
    ctx.forged(undefined, typeof claimed === "string" ? claimed : "(unknown sender)", seqOf(raw));
    return undefined;
  }
  const seenId = `${message.fromKey.toBase64()}/${message.id}`;
  const known = seen.get(seenId);
  if (known === seq && !options.history) return undefined;
  const marks = new Set<Mark>();
  if (known !== undefined && known !== seq) marks.add("replayed");
  timeMarks(marks, { ts: message.ts, sentAt });
  // Our own copy: the recipient's key is compared with its pin; otherwise the sender's.
  const trust = message.copy
    ? await ctx.peers.check(message.to, message.toKey)
    : await ctx.peers.check(message.from, message.fromKey);
  if (known === undefined) seen.add(seenId, seq);
  const shown: DirectShown = {
    room: null,
    from: message.from,
    to: message.to,
    peer: message.copy ? message.to : message.from,
    seq,
    sent_at: sentAt,
    ts: message.ts,
    id: message.id,
    type: message.type,
    text: message.body,
    own: message.copy,
    history: options.history,
    fingerprint: await fingerprint(message.fromKey),
    trust,
    marks: [...marks],
    ...(message.copy ? { delivered } : {}),
  };
  return { shown, message };
}
