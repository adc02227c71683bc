/**
 * The direct messages this user receives (and the copies of those it sent, from any of its devices), and the
 * invitations among them: fetched with `direct_since` (the whole inbox at start, what was missed after a reconnect),
 * taken live, opened and checked (inbound.ts), told to the user interface, and the invitations kept for accepting.
 * Part of the session; knows nothing of sockets or terminals.
 *
 * @module
 */

import { sameBytes } from "../bytes.ts";
import { DirectError, type Invitation, parseInvitation } from "../direct.ts";
import { foldName } from "../names.ts";
import type { ClientMessage, ServerMessageOf } from "../protocol.ts";
import { JoinError } from "./errors.ts";
import type { DirectShown, InvitationShown, SessionEvent, Trust } from "./events.ts";
import type { Home, SeenIds } from "./home.ts";
import { type InboundContext, openDirectItem, seqOf } from "./inbound.ts";

/** Direct messages of the inbox as it was before this run shown at start (older ones are only noted as seen). */
export const DIRECT_HISTORY = 100;

/** Inviters whose latest invitation to one room is kept. */
export const INVITERS_KEPT = 8;

/** The order in which invitations from inviters of each trust are tried. */
const TRUST_ORDER: readonly Trust[] = ["verified", "pinned", "new", "unsigned", "changed"];

/**
 * Orders invitations to one room as accepting tries them: the most trusted inviter first (verified, pinned, new; a
 * changed key last), then the newest.
 *
 * @example
 * ```ts
 * invitations.sort(compareInvitations)[0]; // the one /accept tries first
 * ```
 * @param a an invitation
 * @param b another
 * @returns negative when `a` comes first
 */
export function compareInvitations(a: InvitationShown, b: InvitationShown): number {
  return TRUST_ORDER.indexOf(a.trust) - TRUST_ORDER.indexOf(b.trust) || b.ts - a.ts;
}

/** An invitation received, with what accepting it needs. */
export interface Received {
  /** The room's secrets. */
  invitation: Invitation;
  /** What the user was shown. */
  shown: InvitationShown;
}

/** What the inbox needs from the session. */
export interface InboxOptions {
  /** The user's home (the newest inbox seq seen is kept there). */
  home: Home;
  /** The server's key. */
  serverPub: Uint8Array;
  /** The direct ids shown before (keyed by sender key and id). */
  seen: SeenIds;
  /** Asks the server for a page of the inbox. */
  request(message: ClientMessage): Promise<ServerMessageOf<"direct_since">>;
  /** Runs a job in the session's order of arrival. */
  inOrder<T>(job: () => Promise<T>): Promise<T>;
  /** The receiving context (peers, identity, forgery reports). */
  context(): InboundContext;
  /** Receives the events. */
  onEvent(event: SessionEvent): void;
  /** Most pages followed in one fetch. */
  pages: number;
  /** The ids shown changed: save them soon. */
  changed(): void;
}

/**
 * The inbox of one session.
 *
 * @example
 * ```ts
 * const inbox = new Inbox({ home, serverPub, seen, request, inOrder, context, onEvent, pages: 1000, changed });
 * await inbox.fetch({ first: true });
 * ```
 */
export class Inbox {
  #options: InboxOptions;
  /** The newest inbox seq seen in this run. */
  #seq = 0;
  /** Invitations received per room (folded): the latest of each inviter, oldest first. */
  #invitations = new Map<string, Received[]>();

  /** @param options what the inbox needs from the session */
  constructor(options: InboxOptions) {
    this.#options = options;
  }

  /**
   * Fetches the inbox: at the first connection from the start (what an earlier run showed is history, and only the
   * newest {@link DIRECT_HISTORY} of it is shown), after a reconnect from the last inbox seq seen (all new).
   *
   * @param options.first whether this is the session's first connection
   * @returns how many messages were shown
   * @throws {JoinError} when offline, or the server's answer is not a list
   */
  async fetch(options: { first: boolean }): Promise<number> {
    const { home, serverPub, seen } = this.#options;
    const seenBefore = options.first ? home.directSeq(serverPub) : this.#seq;
    const items = await this.#pages(options.first ? 0 : this.#seq);
    // History: its id is among the ids shown with this seq, or it is not newer than the inbox seq saved.
    const history = items.map((raw) => {
      const seq = seqOf(raw) ?? 0;
      const envelope = (raw as { envelope?: { key?: unknown; id?: unknown } }).envelope;
      return seq <= seenBefore || seen.get(`${envelope?.key}/${envelope?.id}`) === seq;
    });
    const quietUpTo = history.filter((h) => h).length - DIRECT_HISTORY;
    let shown = 0;
    let older = 0;
    await this.#options.inOrder(async () => {
      for (const [i, raw] of items.entries()) {
        const quiet = history[i] && older++ < quietUpTo;
        if (await this.#show(raw, { history: history[i], quiet })) shown++;
      }
    });
    return shown;
  }

  async #pages(from: number): Promise<unknown[]> {
    const items: unknown[] = [];
    let after = from;
    for (let page = 0; page < this.#options.pages; page++) {
      const reply = await this.#options.request({ type: "direct_since", after_seq: after });
      if (!Array.isArray(reply.messages)) throw new JoinError("bad_reply", "direct_since.messages is not a list");
      items.push(...reply.messages);
      const last = reply.messages.reduce((max: number, raw) => Math.max(max, seqOf(raw) ?? 0), after);
      if (!reply.more || last <= after) break;
      after = last;
    }
    return items;
  }

  /**
   * Notes the inbox seq of this user's own copy of a message it sent (from the `ack`), so that when the copy comes
   * back in a later fetch it is known.
   *
   * @param id the sender key and id, as the ids shown are keyed
   * @param seq the copy's inbox seq
   */
  sent(id: string, seq: number): void {
    this.#options.seen.add(id, seq);
    this.#options.changed();
  }

  /**
   * A `direct` that arrived live: shown in the order of arrival.
   *
   * @param raw the untrusted item
   */
  live(raw: unknown): void {
    void this.#options.inOrder(() => this.#show(raw, { history: false }));
  }

  /** Opens one item and tells the user interface (an invitation is remembered for accepting). */
  async #show(raw: unknown, options: { history: boolean; quiet?: boolean }): Promise<boolean> {
    const seq = seqOf(raw);
    if (seq !== undefined && Number.isSafeInteger(seq)) {
      this.#seq = Math.max(this.#seq, seq);
      if (!options.history) this.#options.home.saveDirectSeq(this.#options.serverPub, this.#seq);
    }
    const opened = await openDirectItem(raw, {
      context: this.#options.context(),
      seen: this.#options.seen,
      history: options.history,
    });
    this.#options.changed();
    if (!opened) return false;
    const { shown, message } = opened;
    if (message.type === "invite") return await this.#invitation(shown, options);
    if (!options.quiet) this.#options.onEvent({ kind: "direct", message: shown });
    return true;
  }

  async #invitation(shown: DirectShown, options: { quiet?: boolean }): Promise<boolean> {
    let invitation: Invitation;
    try {
      invitation = await parseInvitation(shown.text);
      if (!sameBytes(invitation.serverPub, this.#options.serverPub)) throw new DirectError("for another server");
    } catch (err) {
      this.#options.onEvent({
        kind: "status",
        text: `ignored an invitation from ${shown.from} that does not hold together (${(err as Error).message})`,
      });
      return false;
    }
    if (shown.own) {
      // Our own copy: shown as a direct message saying where we invited them.
      if (!options.quiet) this.#options.onEvent({ kind: "direct", message: { ...shown, text: invitation.room } });
      return true;
    }
    const { from, to, fingerprint, trust, id, ts, history } = shown;
    const invitationShown: InvitationShown = { room: invitation.room, from, to, fingerprint, trust, id, ts, history };
    // Each inviter's latest only, and every inviter's kept: a stranger's invitation to the same room must not
    // displace a member's (the server's challenge tells at /accept which one is the room it holds).
    const fold = foldName(invitation.room);
    const others = (this.#invitations.get(fold) ?? []).filter((r) => r.shown.fingerprint !== fingerprint);
    this.#invitations.set(fold, [...others, { invitation, shown: invitationShown }].slice(-INVITERS_KEPT));
    if (!options.quiet) this.#options.onEvent({ kind: "invitation", invitation: invitationShown });
    return true;
  }

  /**
   * The invitations received (each inviter's latest per room), oldest first.
   *
   * @returns what each offers
   */
  invitations(): InvitationShown[] {
    return [...this.#invitations.values()].flat().map((r) => r.shown).sort((a, b) => a.ts - b.ts);
  }

  /**
   * The invitations to a room (default: the room of the latest invitation), the one to try first first: from the
   * most trusted inviter (verified, pinned, new; a changed key last), then the newest.
   *
   * @param room the room (default: the latest invitation's)
   * @returns them (empty when there is none)
   */
  candidates(room?: string): Received[] {
    const name = room ?? this.invitations().at(-1)?.room;
    if (name === undefined) return [];
    return [...(this.#invitations.get(foldName(name)) ?? [])].sort((a, b) => compareInvitations(a.shown, b.shown));
  }
}
