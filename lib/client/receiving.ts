/**
 * The room messages one session receives, from the relayed item to the "message" event: live messages shown at
 * once, or held back (within a byte bound) while their room is being joined or catches up after a reconnect; the
 * catch-up itself, page by page; holes in a sender's numbers asked again and reported as withheld once; history
 * paged back. Every item is opened (inbound.ts) in the one order of arrival this module keeps for the session. Part
 * of the session; knows nothing of sockets or terminals.
 *
 * @module
 */

import {
  type ClientMessage,
  HISTORY_PAGE,
  type ServerLimits,
  type ServerMessage,
  type ServerMessageOf,
} from "../protocol.ts";
import type { SessionEvent, ShownMessage } from "./events.ts";
import { type Arrived, type InboundContext, openRoomItem, seqOf } from "./inbound.ts";
import type { Early } from "./joining.ts";
import type { RoomState } from "./rooms.ts";

/** What receiving needs from the session. */
export interface ReceivingOptions {
  /** A joined room by name (any spelling). */
  room(name: string): RoomState | undefined;
  /** Where live messages of a room being joined wait, by its canonical name (undefined: not being joined). */
  early(name: string): Early | undefined;
  /** Writes a request and waits for its reply. */
  request<T extends ServerMessage["type"]>(message: ClientMessage, replyType: T): Promise<ServerMessageOf<T>>;
  /** The receiving context (peers, identity, forgery reports). */
  context(): InboundContext;
  /** Counts a live message for a room this connection is not in, like a forgery. */
  forged(room: string, from: string, seq?: number): void;
  /** The limits the server announced (the history page). */
  limits(): ServerLimits | undefined;
  /** Receives the events. */
  onEvent(event: SessionEvent): void;
  /** The ids shown changed: save them soon. */
  changed(): void;
  /** Bytes of live messages held back at most, per room being joined or catching up. */
  heldBytes: number;
  /** Most `since` pages followed in one catch-up. */
  catchUpPages: number;
}

/**
 * The receiving of one session's room messages.
 *
 * @example
 * ```ts
 * const receiving = new Receiving({
 *   room, early, request, context, forged, limits, onEvent, changed, heldBytes: 8 << 20, catchUpPages: 1000,
 * });
 * // for every relayed message:
 * receiving.relayed(msg, body.length);
 * ```
 */
export class Receiving {
  #options: ReceivingOptions;
  /** Serializes the opening of relayed messages, so they are shown in arrival order. */
  #inbound: Promise<unknown> = Promise.resolve();

  /** @param options what receiving needs from the session */
  constructor(options: ReceivingOptions) {
    this.#options = options;
  }

  /**
   * Runs `job` after every message still being opened, so events keep the order things arrived in.
   *
   * @param job the job
   * @returns what the job returns
   */
  inOrder<T>(job: () => Promise<T> | T): Promise<T> {
    const run = this.#inbound.then(job);
    this.#inbound = run.catch(() => {});
    return run;
  }

  /**
   * Settles when every job queued so far has run (whether it failed or not).
   *
   * @returns the promise
   */
  settled(): Promise<unknown> {
    return this.#inbound;
  }

  /**
   * A live message: shown now, or held back (within a byte bound) while its room catches up, or while the room it
   * names is being joined (it can arrive in the same read as `joined`, before the room's state exists).
   *
   * @param msg the relayed message, untrusted
   * @param bytes its frame's size
   */
  relayed(msg: ServerMessageOf<"message">, bytes: number): void {
    const named = (msg.envelope as { room?: unknown } | undefined)?.room;
    const roomName = typeof named === "string" ? named : "";
    const joining = this.#options.early(roomName);
    if (joining) {
      if (joining.bytes + bytes <= this.#options.heldBytes) {
        joining.early.push(msg);
        joining.bytes += bytes;
      }
      return;
    }
    const room = this.#options.room(roomName);
    if (!room) {
      // A room this connection is not in: nothing the server may send. Counted like a forgery, never shown.
      const from = (msg.envelope as { from?: unknown } | undefined)?.from;
      this.#options.forged(roomName || "(no room)", typeof from === "string" ? from : "(unknown sender)", msg.seq);
      return;
    }
    const held = room.held;
    if (!held) {
      void this.show(room, [msg], "live");
      return;
    }
    if (held.bytes + bytes > this.#options.heldBytes) {
      // Everything live is also stored: drop what is held and let the catch-up fetch it again.
      held.items = [];
      held.bytes = 0;
      held.overflowed = true;
      return;
    }
    held.items.push(msg);
    held.bytes += bytes;
  }

  /** Opens relayed messages in order (after any still being opened) and returns those that pass. */
  #openMessages(room: RoomState, items: unknown[], arrived: Arrived): Promise<ShownMessage[]> {
    return this.inOrder(async () => {
      const shown: ShownMessage[] = [];
      const context = this.#options.context();
      for (const raw of items) {
        const message = await openRoomItem(room, raw, { context, arrived });
        if (message) shown.push(message);
      }
      this.#options.changed();
      return shown;
    });
  }

  /**
   * Opens relayed messages of a room in order and delivers each that passes as a "message" event; then, unless they
   * were paged back or the room is catching up, asks again for the holes they prove.
   *
   * @param room the room they were delivered for
   * @param items the untrusted items
   * @param arrived how they arrived
   * @returns how many were shown
   */
  async show(room: RoomState, items: unknown[], arrived: Arrived): Promise<number> {
    const shown = await this.#openMessages(room, items, arrived);
    for (const message of shown) this.#options.onEvent({ kind: "message", message });
    if (arrived !== "older" && arrived !== "recheck" && !room.held) this.#checkHoles(room);
    return shown.length;
  }

  /**
   * Holes in a sender's numbers that a later message proves were stored: asked again with `since` from the message
   * before the hole, once; what is still missing then was withheld, and is reported once.
   */
  #checkHoles(room: RoomState): void {
    for (const hole of room.tracker.withheld()) {
      const id = `${hole.key}/${hole.device}/${hole.first}`;
      if (room.rechecking.has(id)) continue;
      room.rechecking.add(id);
      void (async () => {
        try {
          const reply = await this.#options.request(
            { type: "since", room: room.name, after_seq: hole.afterSeq },
            "since",
          );
          if (this.#options.room(room.name) !== room) return;
          if (reply.pruned_through > hole.afterSeq) return this.#pruned(room, reply.pruned_through);
          await this.show(room, reply.messages, "recheck");
          await this.inOrder(() => {
            for (const still of room.tracker.withheld()) {
              if (still.key !== hole.key || still.device !== hole.device || still.last < hole.first) continue;
              room.tracker.dismiss(still);
              this.#options.onEvent({
                kind: "withheld",
                room: room.name,
                from: room.senders.get(hole.key) ?? "a member",
                count: still.last - still.first + 1,
              });
            }
          });
        } catch {
          // Offline: the catch-up after the reconnect checks again.
          room.rechecking.delete(id);
        }
      })();
    }
  }

  #pruned(room: RoomState, through: number): void {
    room.tracker.forgetHoles();
    room.rechecking.clear();
    this.#options.onEvent({ kind: "pruned", room: room.name, through });
  }

  /**
   * Fetches everything after the room's last seen seq, page by page (at most `catchUpPages`), and shows it. Live
   * messages held meanwhile that overflowed their bound are fetched by another round. The room must be holding its
   * live messages (`room.held` set) while this runs.
   *
   * @param room the room, rejoined
   * @returns how many messages were shown
   * @throws {JoinError} when offline or refused
   */
  async catchUp(room: RoomState): Promise<number> {
    let missed = 0;
    const stood = room.lastSeq;
    let pruned = stood;
    for (let page = 0;; page++) {
      if (page >= this.#options.catchUpPages) {
        this.#options.onEvent({
          kind: "status",
          text: `stopped catching up #${room.name} after ${page} pages: the server kept sending more`,
        });
        return missed;
      }
      const reply = await this.#options.request({ type: "since", room: room.name, after_seq: room.lastSeq }, "since");
      const before = room.lastSeq;
      missed += await this.show(room, reply.messages, "catchUp");
      // Removed by retention while this client was away: the holes they leave prove nothing (said once).
      if (reply.pruned_through > pruned) {
        if (pruned === stood) this.#pruned(room, reply.pruned_through);
        else room.tracker.forgetHoles();
        pruned = reply.pruned_through;
      }
      for (const raw of reply.messages) room.lastSeq = Math.max(room.lastSeq, seqOf(raw) ?? 0);
      const overflowed = room.held!.overflowed;
      room.held!.overflowed = false;
      if (overflowed || (reply.more && room.lastSeq > before)) continue;
      return missed;
    }
  }

  /**
   * Fetches up to `limit` messages of a room older than the oldest one shown, and delivers them as an "older" event.
   *
   * @param room the room
   * @param limit how many (at most the server's page size)
   * @returns how many were shown, and whether there are more
   * @throws {JoinError} when offline or refused
   */
  async older(room: RoomState, limit: number): Promise<{ shown: number; more: boolean }> {
    const page = Math.max(1, Math.min(limit, this.#options.limits()?.history_page ?? HISTORY_PAGE));
    const reply = await this.#options.request(
      { type: "history", room: room.name, before_seq: room.oldestSeq, limit: page },
      "history",
    );
    // An item at or after before_seq is not older (an honest server never sends one): it is opened as a forward
    // delivery, where one already shown is dropped and a new one is checked for order, never shown as history.
    const before = room.oldestSeq;
    const back = reply.messages.filter((raw) => !((seqOf(raw) ?? -1) >= before));
    const forward = reply.messages.filter((raw) => (seqOf(raw) ?? -1) >= before);
    // Paging back must reach further even past messages already seen.
    for (const raw of back) room.oldestSeq = Math.min(room.oldestSeq, seqOf(raw) ?? Infinity);
    const messages = await this.#openMessages(room, back, "older");
    this.#options.onEvent({ kind: "older", room: room.name, messages, more: reply.more });
    if (forward.length > 0) await this.show(room, forward, "recheck");
    return { shown: messages.length, more: reply.more };
  }
}
