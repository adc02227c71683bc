/**
 * The seam between the interactive terminal and the session: {@link ChatSession} is everything terminal.ts and
 * commands.ts ask of a session, and {@link ChatEvent} everything they take from one. Protocol v1's {@link Session}
 * (one room per connection) is adapted by {@link adaptV1Session}; a session with several rooms per connection,
 * room topics and direct conversations (protocol v2) implements the same interface with `multiRoom` true, and emits
 * the events marked "multi-room" below. The terminal needs nothing else from it.
 *
 * @module
 */

import { MAX_BODY_BYTES } from "../envelope.ts";
import type { Dial } from "./link.ts";
import type { OutboxItem } from "./outbox.ts";
import {
  type Joined,
  type JoinHooks,
  SendError,
  Session,
  type SessionEvent,
  type SessionOptions,
  type ShownMessage,
} from "./session.ts";

/** Plaintext types the terminal sends: a message, an action (/me), a room topic (/topic, multi-room only). */
export type ChatMessageType = "text" | "action" | "topic";

/** Where a message goes: a room this connection is in, or a person (a direct message, multi-room only). */
export type ChatTarget = { room: string } | { peer: string };

/** A message to show: v1's, with any plaintext type a newer session delivers ("topic"). */
export type ChatMessage = Omit<ShownMessage, "type"> & { type: string };

/** What the terminal takes from a session. */
export type ChatEvent =
  /** Everything v1's session reports ("message" events may carry `type: "topic"` from a multi-room session). */
  | Exclude<SessionEvent, { kind: "message" }>
  | { kind: "message"; message: ChatMessage }
  /** Multi-room: this connection is no longer in a room (left elsewhere, or the server let it go), with why. */
  | { kind: "parted"; room: string; reason?: string }
  /**
   * Multi-room: a direct message in the conversation with `peer` (from them, or this user's own from another
   * device). Outbox items of direct messages carry `peer` instead of a room the terminal knows.
   */
  | { kind: "direct"; peer: string; message: ChatMessage };

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
  /** Whether one connection can be in several rooms, leave one, and carry room topics and direct messages. */
  readonly multiRoom: boolean;
  /**
   * The canonical name of the joined room that `name` means, comparing names as the server does.
   *
   * @param name a room name as typed (no leading #)
   * @returns the joined room's name, or undefined when not in it
   */
  joinedRoom(name: string): string | undefined;
  /** This client's messages not yet stored, oldest first. */
  pending(): OutboxItem[];
  /**
   * Joins a room (creating it when new). Multi-room: the other rooms stay; one room only (v1): it replaces the room
   * this connection was in. History comes as "message" events before this resolves.
   */
  join(room: string, hooks: JoinHooks): Promise<Joined>;
  /** Multi-room: leaves one room, the others stay. */
  part(room: string): Promise<void>;
  /** Queues a message (in order with everything said before) and returns it; its progress comes as "outbox" events. */
  say(target: ChatTarget, text: string, options: { type: ChatMessageType }): OutboxItem;
  /** The members of a joined room. */
  who(room: string): Promise<string[]>;
  /** The rooms on the server that have members. */
  listRooms(): Promise<{ name: string; members: number }[]>;
  /** Changes the nick, in queue order with what is said before and after. */
  changeNick(nick: string): Promise<void>;
  /** Fetches older messages of a joined room, delivered as an "older" event. */
  older(room: string, limit: number): Promise<{ shown: number; more: boolean }>;
  /** Waits until every message said is stored (or given up). */
  drain(options?: { timeoutMs?: number }): Promise<void>;
  /** Says goodbye and closes. */
  close(reason?: string): Promise<void>;
}

/** How the terminal opens a session: nick, event handler and policies as for {@link Session.connect}. */
export type ConnectChat = (
  options: Omit<SessionOptions, "onEvent"> & {
    onEvent: (event: ChatEvent) => void;
  },
) => Promise<ChatSession>;

/** Said when a multi-room feature meets a server (and session) that has one room per connection. */
export const NEEDS_MULTI_ROOM = "this server has one room per connection (protocol v1)";

/**
 * A protocol v1 session as a {@link ChatSession}: one room at a time, no parting, no topics, no direct messages.
 *
 * @example
 * ```ts
 * const chat = adaptV1Session(await Session.connect(dial, { nick: "alice", onEvent }));
 * ```
 * @param session the v1 session
 * @returns the same session behind the terminal's interface
 */
export function adaptV1Session(session: Session): ChatSession {
  const inRoom = (room: string) => {
    if (room !== session.room) throw new SendError(`not in #${room}`);
  };
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
      return Math.min(MAX_BODY_BYTES, session.limits?.max_body ?? MAX_BODY_BYTES);
    },
    get rooms() {
      return session.room === undefined ? [] : [session.room];
    },
    multiRoom: false,
    joinedRoom: (name) => name === session.room ? name : undefined,
    pending: () => session.pending(),
    join: (room, hooks) => session.join(room, hooks),
    part: () => Promise.reject(new SendError(`cannot leave a room: ${NEEDS_MULTI_ROOM}`)),
    say(target, text, { type }) {
      if ("peer" in target) throw new SendError(`direct messages need a newer server: ${NEEDS_MULTI_ROOM}`);
      if (type === "topic") throw new SendError(`room topics need a newer server: ${NEEDS_MULTI_ROOM}`);
      inRoom(target.room);
      return session.say(text, { action: type === "action" });
    },
    who: (room) => {
      inRoom(room);
      return session.who();
    },
    listRooms: () => session.rooms(),
    changeNick: (nick) => session.changeNick(nick),
    older: (room, limit) => {
      inRoom(room);
      return session.older(limit);
    },
    drain: (options) => session.drain(options),
    close: (reason) => session.close(reason),
  };
}

/**
 * Connects a protocol v1 session over `dial` and adapts it (the terminal's default way to connect).
 *
 * @param dial opens the connection
 * @returns a {@link ConnectChat}
 */
export function connectV1(dial: Dial): ConnectChat {
  return async (options) => adaptV1Session(await Session.connect(dial, options));
}
