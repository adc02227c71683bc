/**
 * The seam between the interactive terminal and the session: {@link ChatSession} is everything terminal.ts and
 * commands.ts ask of a session, and {@link ChatEvent} everything they take from one. The protocol v2
 * {@link Session} (several rooms per connection, topics, direct conversations, identities and pins) is adapted by
 * {@link adaptSession}; tests drive the terminal with a scripted session behind the same interface. The terminal needs
 * nothing else from it.
 *
 * @module
 */

import type { Dial } from "./link.ts";
import type { OutboxItem } from "./outbox.ts";
import {
  type DirectShown,
  type InvitationShown,
  type Joined,
  type JoinHooks,
  type PeerInfo,
  Session,
  type SessionEvent,
  type SessionOptions,
  type ShownMessage,
  type Trust,
} from "./session.ts";

/** Plaintext types the terminal sends: a message, an action (/me), a room topic (/topic). */
export type ChatMessageType = "text" | "action" | "topic";

/** Where a message goes: a room this connection is in, or a person (a direct message). */
export type ChatTarget = { room: string } | { peer: string };

/** A message to show: a room message, or a direct one. */
export type ChatMessage = ShownMessage | DirectShown;

/** What the terminal takes from a session: the session's events. */
export type ChatEvent = SessionEvent;

/** A member of a room, as /who shows it. */
export interface ChatMember {
  /** Canonical nick. */
  nick: string;
  /** Their key against the pin, when the session knows it. */
  trust?: Exclude<Trust, "unsigned">;
}

/** Everything the interactive terminal asks of a session. */
export interface ChatSession {
  /** The current nick. */
  readonly nick: string;
  /** Whether the connection is up right now. */
  readonly online: boolean;
  /** Messages said but not yet stored by the server. */
  readonly unsent: number;
  /** The largest message body the server takes, in UTF-8 bytes. */
  readonly maxBody: number;
  /** The rooms this connection is in, by canonical name, in the order joined. */
  readonly rooms: readonly string[];
  /**
   * The canonical name of the joined room that `name` means, comparing names as the server does.
   *
   * @param name a room name as typed (no leading #)
   * @returns the joined room's name, or undefined when not in it
   */
  joinedRoom(name: string): string | undefined;
  /**
   * A nick in the spelling the session knows it by (the canonical one of its pinned key), or as given.
   *
   * @param nick a nick as typed
   * @returns the nick to name a direct conversation by
   */
  peerName(nick: string): string;
  /** This client's messages not yet stored, oldest first. */
  pending(): OutboxItem[];
  /** Joins a room (creating it when new); the other rooms stay. History comes as "message" events first. */
  join(room: string, hooks: JoinHooks, options?: { remember?: boolean }): Promise<Joined>;
  /** Leaves one room, the others stay; a "parted" event says so. */
  part(room: string): Promise<void>;
  /** Queues a message (in order with everything said before) and returns it; its progress comes as "outbox" events. */
  say(target: ChatTarget, text: string, options: { type: ChatMessageType }): OutboxItem;
  /** The members of a joined room. */
  who(room: string): Promise<ChatMember[]>;
  /** The rooms this connection is in, with their member counts. */
  listRooms(): Promise<{ name: string; members: number }[]>;
  /** Changes the nick, in queue order with what is said before and after. */
  changeNick(nick: string): Promise<void>;
  /** Fetches older messages of a joined room, delivered as an "older" event. */
  older(room: string, limit: number): Promise<{ shown: number; more: boolean }>;
  /** Sends a person a room's secret over the direct channel. */
  invite(nick: string, room: string): OutboxItem;
  /** Accepts an invitation (the latest, or to a room) and joins without a passphrase. */
  accept(room?: string): Promise<Joined>;
  /** The invitations received. */
  invitations(): InvitationShown[];
  /** A nick's key as the server shows it, against the pin. */
  whois(nick: string): Promise<PeerInfo>;
  /** The safety number of this user and a peer. */
  safetyNumber(nick: string): Promise<{ nick: string; number: string }>;
  /** Marks a peer verified (after comparing safety numbers). */
  verify(nick: string): boolean;
  /** Trusts the key a peer now shows (the fingerprint the user was shown). */
  trust(nick: string, options: { fingerprint?: string }): Promise<string | undefined>;
  /** Forgets a room's pinned parameters and kept secret. */
  forgetRoom(room: string): Promise<boolean>;
  /** Waits until every message said is stored (or given up). */
  drain(options?: { timeoutMs?: number }): Promise<void>;
  /** Says goodbye and closes. */
  close(reason?: string): Promise<void>;
}

/** How the terminal opens a session: the session's options, with the terminal's event handler. */
export type ConnectChat = (
  options: Omit<SessionOptions, "onEvent"> & {
    onEvent: (event: ChatEvent) => void;
  },
) => Promise<ChatSession>;

/**
 * A {@link Session} behind the terminal's interface.
 *
 * @example
 * ```ts
 * const chat = adaptSession(await Session.connect(dial, { nick: "alice", home, address, onEvent }));
 * ```
 * @param session the session
 * @returns the same session behind the terminal's interface
 */
export function adaptSession(session: Session): ChatSession {
  return {
    get nick() {
      return session.nick;
    },
    get online() {
      return session.online;
    },
    get unsent() {
      return session.unsent;
    },
    get maxBody() {
      return session.maxBody;
    },
    get rooms() {
      return session.rooms;
    },
    joinedRoom: (name) => session.joinedRoom(name),
    peerName: (nick) => session.peerName(nick),
    pending: () => session.pending(),
    join: (room, hooks, options) => session.join(room, hooks, options),
    part: (room) => session.part(room),
    say(target, text, { type }) {
      if ("peer" in target) return session.msg(target.peer, text, { action: type === "action" });
      return session.say(text, { room: target.room, type });
    },
    who: (room) => session.who(room),
    listRooms: async () => (await session.roomList()).map((r) => ({ name: r.name, members: r.count })),
    changeNick: (nick) => session.changeNick(nick),
    older: (room, limit) => session.older(limit, { room }),
    invite: (nick, room) => session.invite(nick, { room }),
    accept: (room) => session.accept(room),
    invitations: () => session.invitations(),
    whois: (nick) => session.whois(nick),
    safetyNumber: (nick) => session.safetyNumber(nick),
    verify: (nick) => session.verify(nick),
    trust: (nick, options) => session.trust(nick, options),
    forgetRoom: (room) => session.forgetRoom(room),
    drain: (options) => session.drain(options),
    close: (reason) => session.close(reason),
  };
}

/**
 * Connects a session over `dial` and adapts it (the terminal's way to connect).
 *
 * @param dial opens the connection
 * @returns a {@link ConnectChat}
 */
export function connectSession(dial: Dial): ConnectChat {
  return async (options) => adaptSession(await Session.connect(dial, options));
}
