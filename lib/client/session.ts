/**
 * One client's conversation with a server: hello, join with a proof, say sealed messages through the outbox, open
 * and show what others say, and reconnect without losing or repeating anything. The session is handed a dial
 * function (link.ts) and knows nothing of sockets or terminals: a user interface gets {@link SessionEvent}s and
 * answers {@link JoinHooks}. Keys live only in this object's memory.
 *
 * State is kept per room (keys, catch-up position, ids already shown) in a map, and request/reply waiters are
 * generic, so that one connection in several rooms (protocol v2) can grow from here.
 *
 * @module
 */

import { decodeBase64 } from "../base64.ts";
import {
  checkIterations,
  DEFAULT_ITERATIONS,
  deriveRoomKeys,
  KeyDerivationError,
  makeSalt,
  NONCE_BYTES,
  openEnvelope,
  OpenError,
  type RoomKeys,
  SALT_BYTES,
  sealEnvelope,
  signJoinProof,
} from "../crypto.ts";
import { MAX_BODY_BYTES } from "../envelope.ts";
import { encodeMessage } from "../frame.ts";
import { utf8Length } from "../names.ts";
import {
  type ClientMessage,
  helloMessage,
  HISTORY_PAGE,
  parseLimits,
  parseNames,
  parseRelayedMessage,
  parseRoomList,
  parseServerMessage,
  pongFrame,
  PROTOCOL_VERSION,
  ProtocolError,
  proveMessage,
  sendFrame,
  type ServerLimits,
  type ServerMessage,
  type ServerMessageOf,
} from "../protocol.ts";
import type { Dial, Link, LinkError } from "./link.ts";
import { ForgeryReports } from "./forgeries.ts";
import { Outbox, type OutboxItem } from "./outbox.ts";
import { Replies } from "./replies.ts";

/** How long a request waits for its reply before the connection is considered dead. */
const REPLY_TIMEOUT_MS = 30_000;
/** Reconnect delays: the first, doubled after every failure up to the largest, each with ±50% jitter. */
const RECONNECT_FIRST_DELAY_MS = 250;
const RECONNECT_MAX_DELAY_MS = 30_000;
/** Message ids remembered per room, to show a message delivered twice only once. */
const SEEN_IDS = 100_000;
/** Bytes of live messages held back while a reconnect catches up; beyond it they are dropped and fetched again. */
const HELD_BYTES = 8 * 1024 * 1024;
/** `since` pages followed in one catch-up. */
const CATCH_UP_PAGES = 1_000;
/** Failed-authentication warnings: one per claimed sender per interval, then a count. */
const FORGED_INTERVAL_MS = 10_000;
/** Claimed senders tracked at once; the rest are counted together. */
const FORGED_SENDERS = 64;
/** How long joining another room waits for this room's messages to be stored. */
const LEAVE_DRAIN_MS = 10_000;

/** Why the session stopped for good; the client maps it to an exit code. */
export type CloseKind = "connect" | "denied" | "nick" | "closed" | "quit";

/** Raised when the server cannot be used (unreachable, refused, gone for good); `kind` picks the exit code. */
export class SessionError extends Error {
  /** The failure class. */
  readonly kind: CloseKind;
  /** The server's error code, when it sent one. */
  readonly code?: string;
  /**
   * @param kind the failure class
   * @param message one line for the user
   * @param options.code the server's error code
   */
  constructor(kind: CloseKind, message: string, options: { code?: string } = {}) {
    super(message);
    this.name = "SessionError";
    this.kind = kind;
    if (options.code !== undefined) this.code = options.code;
  }
}

/** Raised when a request fails (wrong passphrase, bad room name, cancelled, offline); the session carries on. */
export class JoinError extends Error {
  /** The server's error code, "cancelled" when the user gave no passphrase, "offline", or "bad_reply". */
  readonly code: string;
  /**
   * @param code the error code
   * @param message one line for the user
   */
  constructor(code: string, message: string) {
    super(message);
    this.name = "JoinError";
    this.code = code;
  }
}

/** Raised when a message cannot be sent at all (too long, not in a room). */
export class SendError extends Error {
  /** @param message one line for the user */
  constructor(message: string) {
    super(message);
    this.name = "SendError";
  }
}

/** A decrypted message, ready to show. */
export interface ShownMessage {
  /** Room it was said in. */
  room: string;
  /** Server sequence number. */
  seq: number;
  /** Sender nick (authenticated). */
  from: string;
  /** Sender's clock, ms since the epoch (authenticated). */
  ts: number;
  /** Message id, base64. */
  id: string;
  /** "text", or "action" for /me. */
  type: "text" | "action";
  /** What was said. */
  text: string;
  /** Replayed history rather than live. */
  history: boolean;
}

/** What the session tells its user interface. */
export type SessionEvent =
  /** A message to show (live, caught up after a reconnect, or history on join). */
  | { kind: "message"; message: ShownMessage }
  /** Older messages fetched with {@link Session.older}. */
  | { kind: "older"; room: string; messages: ShownMessage[]; more: boolean }
  /**
   * Messages claiming to be from `from` failed authentication and were not shown: the first at once (with its
   * seq), then one event per interval with the `count` since.
   */
  | { kind: "forged"; room: string; from: string; count: number; seq?: number; intervalMs: number }
  | { kind: "presence"; event: "join" | "leave" | "nick"; room: string; nick: string; old?: string }
  | { kind: "nick"; old: string; new: string }
  /** One of this client's messages changed state: queued, sent, acked (stored) or failed. */
  | { kind: "outbox"; item: OutboxItem }
  | { kind: "status"; text: string }
  /** The connection is down: the next attempt comes in `retryInMs`. Sent before every attempt. */
  | { kind: "offline"; reason: string; retryInMs: number; attempt: number }
  | { kind: "reconnected"; room?: string; missed: number; resent: number }
  | { kind: "closed"; error: SessionError };

/** What a join may need from the user. */
export interface JoinHooks {
  /**
   * Asks for the room's passphrase; `creating` says the room does not exist yet (the hook may warn about weak
   * passphrases, ask for confirmation, or generate one). Returning undefined cancels the join.
   */
  passphrase(room: string, options: { creating: boolean }): Promise<string | undefined>;
  /** Called while the room key is being derived; the returned function is called when it is done. */
  deriving?(room: string, options: { iterations: number }): () => void;
}

/** The result of a join. */
export interface Joined {
  /** The room. */
  room: string;
  /** Members present, including this client. */
  members: string[];
  /** Whether this client created the room. */
  created: boolean;
  /** History replayed (already delivered as message events). */
  history: number;
}

/** How the session reconnects. */
export interface ReconnectPolicy {
  /** First delay (default 250 ms); doubled after every failure. */
  firstDelayMs: number;
  /** Largest delay (default 30 s). */
  maxDelayMs: number;
  /** Give up after this long (script mode's --reconnect-for); undefined: never, as long as the program runs. */
  giveUpAfterMs?: number;
}

/** Session settings. */
export interface SessionOptions {
  /** The nick to use. */
  nick: string;
  /** Receives every event. */
  onEvent: (event: SessionEvent) => void;
  /** PBKDF2 count for rooms this client creates (default 600000). */
  iterations?: number;
  /** Reconnect delays and when to give up (default: never). */
  reconnect?: Partial<ReconnectPolicy>;
  /** Retries of a message refused with `storage_failed`: the delay (default 1 s) and how many (default 5). */
  retry?: { delayMs?: number; retries?: number };
  /** Bounds against a lying server (defaults: 8 MiB held, 1000 pages, one warning per sender per 10 s). */
  bounds?: { heldBytes?: number; catchUpPages?: number; forgedIntervalMs?: number };
  /** How long a request waits for its reply (default 30 s). */
  replyTimeoutMs?: number;
}

interface RoomState {
  name: string;
  keys: RoomKeys;
  salt: Uint8Array;
  iterations: number;
  /** Highest seq seen in this room (or the server's latest seq at join): where a catch-up starts. */
  lastSeq: number;
  /** Lowest seq shown, for paging back with /history. */
  oldestSeq: number;
  /** Ids already shown (or sent by this client), the newest SEEN_IDS of them. */
  seen: Set<string>;
  seenOrder: string[];
  /** Live messages held back while catching up (undefined when live), with their bytes. */
  held?: { items: unknown[]; bytes: number; overflowed: boolean };
}

/**
 * A chat session with one server. Create it with {@link Session.connect}, then {@link Session.join} a room.
 *
 * @example
 * ```ts
 * const session = await Session.connect(dialServer({ host: "127.0.0.1", port: 5000 }), {
 *   nick: "alice",
 *   onEvent: console.log,
 * });
 * await session.join("general", { passphrase: () => Promise.resolve("a long shared passphrase") });
 * session.say("hello");
 * await session.drain();
 * await session.close();
 * ```
 */
export class Session {
  #dial: Dial;
  #nick: string;
  #onEvent: (event: SessionEvent) => void;
  #iterations: number;
  #reconnect: ReconnectPolicy;
  #bounds: { heldBytes: number; catchUpPages: number; forgedIntervalMs: number };
  #link: Link | undefined;
  /** Which link is current: events of an older one are ignored. */
  #generation = 0;
  #limits: ServerLimits | undefined;
  /** Whether the current link has been welcomed. */
  #welcomed = false;
  #replies: Replies<ServerMessage>;
  #rooms = new Map<string, RoomState>();
  #current: string | undefined;
  /** A room being joined (not rejoined): its live messages wait until its state exists. */
  #joining: { room: string; early: unknown[]; bytes: number } | undefined;
  /** Derived keys by room, salt and iterations: memory only, never written anywhere. */
  #keys = new Map<string, RoomKeys>();
  #outbox: Outbox;
  /** Each outgoing message's frame, and the nick it was sealed under. */
  #sealed = new WeakMap<OutboxItem, { from: string; frame: Uint8Array }>();
  /** Serializes the opening of relayed messages, so they are shown in arrival order. */
  #inbound: Promise<unknown> = Promise.resolve();
  #state: "connecting" | "online" | "offline" | "closed" = "connecting";
  #keepalive: ReturnType<typeof setInterval> | undefined;
  #lastHeard = performance.now();
  #forged: ForgeryReports;
  /** Ends the wait between reconnect attempts early (on close). */
  #wake: (() => void) | undefined;

  private constructor(dial: Dial, options: SessionOptions) {
    this.#dial = dial;
    this.#nick = options.nick;
    this.#onEvent = options.onEvent;
    this.#iterations = options.iterations ?? DEFAULT_ITERATIONS;
    this.#reconnect = {
      firstDelayMs: options.reconnect?.firstDelayMs ?? RECONNECT_FIRST_DELAY_MS,
      maxDelayMs: options.reconnect?.maxDelayMs ?? RECONNECT_MAX_DELAY_MS,
      giveUpAfterMs: options.reconnect?.giveUpAfterMs,
    };
    this.#bounds = {
      heldBytes: options.bounds?.heldBytes ?? HELD_BYTES,
      catchUpPages: options.bounds?.catchUpPages ?? CATCH_UP_PAGES,
      forgedIntervalMs: options.bounds?.forgedIntervalMs ?? FORGED_INTERVAL_MS,
    };
    this.#replies = new Replies({
      timeoutMs: options.replyTimeoutMs ?? REPLY_TIMEOUT_MS,
      // A server that does not answer in time is taken for gone.
      timedOut: () => this.#link?.close(),
    });
    const intervalMs = this.#bounds.forgedIntervalMs;
    this.#forged = new ForgeryReports({
      intervalMs,
      senders: FORGED_SENDERS,
      report: (report) => this.#onEvent({ kind: "forged", ...report, intervalMs }),
    });
    this.#outbox = new Outbox({
      frame: (item) => this.#frameOf(item),
      write: (frame) => this.#link?.write(frame),
      ready: (room) => this.#state === "online" && room === this.#current && !this.#rooms.get(room)?.held,
      changed: (item) => this.#onEvent({ kind: "outbox", item }),
      retryDelayMs: options.retry?.delayMs,
      retries: options.retry?.retries,
    });
  }

  /**
   * Connects and says hello.
   *
   * @param dial opens the connection (link.ts `dialServer`, or an in-process server in tests)
   * @param options nick, events, and the policies
   * @returns the connected session
   * @throws {SessionError} "connect" when unreachable or unusable, "nick" when the nick is refused
   */
  static async connect(dial: Dial, options: SessionOptions): Promise<Session> {
    const session = new Session(dial, options);
    await session.#open();
    session.#state = "online";
    return session;
  }

  /** The current nick. */
  get nick(): string {
    return this.#nick;
  }

  /** The joined room, if any. */
  get room(): string | undefined {
    return this.#current;
  }

  /** The limits the server announced (checked). */
  get limits(): ServerLimits | undefined {
    return this.#limits;
  }

  /** Messages said but not yet stored by the server (queued or sent). */
  get unsent(): number {
    return this.#outbox.unsent;
  }

  /** Whether the session is connected right now. */
  get online(): boolean {
    return this.#state === "online";
  }

  /** Bytes of live messages held back right now while catching up (for tests of the bound). */
  get heldBytes(): number {
    let bytes = 0;
    for (const room of this.#rooms.values()) bytes += room.held?.bytes ?? 0;
    return bytes;
  }

  /**
   * This client's messages not yet stored, oldest first.
   *
   * @returns the items
   */
  pending(): OutboxItem[] {
    return this.#outbox.pending();
  }

  /** Dials, says hello and checks the welcome; on success the new link is current. */
  async #open(): Promise<void> {
    const generation = ++this.#generation;
    let link: Link;
    try {
      link = await this.#dial({
        body: (body) => this.#onBody(generation, body),
        lost: (error) => this.#onLost(generation, error),
      });
    } catch (err) {
      throw new SessionError("connect", (err as Error).message);
    }
    this.#link = link;
    this.#welcomed = false;
    this.#lastHeard = performance.now();
    link.write(encodeMessage(helloMessage(this.#nick)));
    let reply: ServerMessage;
    try {
      reply = await this.#replies.expect((m) => m.type === "welcome" || m.type === "error");
    } catch (err) {
      link.close();
      throw new SessionError("connect", (err as Error).message);
    }
    if (reply.type === "error") {
      link.close();
      const nickProblem = reply.code === "nick_in_use" || reply.code === "nick_invalid";
      throw new SessionError(nickProblem ? "nick" : "connect", `server refused: ${reply.message}`, {
        code: reply.code,
      });
    }
    const welcome = reply as ServerMessageOf<"welcome">;
    try {
      if (welcome.version !== PROTOCOL_VERSION) {
        throw new ProtocolError("bad_message", `welcome.version is ${welcome.version}, not ${PROTOCOL_VERSION}`);
      }
      if (welcome.nick !== this.#nick) throw new ProtocolError("bad_message", "welcome.nick is not the nick asked for");
      this.#limits = parseLimits(welcome.limits);
      this.#welcomed = true;
    } catch (err) {
      link.close();
      throw new SessionError("connect", `refusing the server: ${(err as Error).message}`, { code: "bad_welcome" });
    }
    this.#startKeepalive(this.#limits.idle_timeout_ms);
  }

  #startKeepalive(idle: number): void {
    clearInterval(this.#keepalive);
    const every = Math.max(20, Math.min(30_000, Math.floor(idle / 3)));
    this.#keepalive = setInterval(() => {
      const link = this.#link;
      if (!link || link.closed) return;
      // A server silent for well over its own idle timeout (pinged every third of it) is gone.
      if (performance.now() - this.#lastHeard > idle + every * 2) {
        link.close();
        return;
      }
      link.write(encodeMessage({ type: "ping" }));
    }, every);
  }

  /** Writes one protocol message on the current link. */
  #write(message: ClientMessage): void {
    this.#link?.write(encodeMessage(message));
  }

  /** Writes a request and waits for its reply (or an error about it). */
  async #request<T extends ServerMessage["type"]>(message: ClientMessage, replyType: T): Promise<ServerMessageOf<T>> {
    if (!this.#link || this.#link.closed || this.#state === "closed") {
      throw new JoinError("offline", "not connected to the server right now");
    }
    const isError = (m: ServerMessage) => m.type === "error" && m.id === undefined && m.code !== "rate_limited";
    this.#write(message);
    const reply = await this.#replies.expect((m) => m.type === replyType || isError(m)).catch((err) => {
      throw new JoinError("offline", err.message);
    });
    if (reply.type === "error") throw new JoinError(reply.code, reply.message);
    return reply as ServerMessageOf<T>;
  }

  #onBody(generation: number, body: Uint8Array): void {
    if (generation !== this.#generation || this.#state === "closed") return;
    this.#lastHeard = performance.now();
    let msg: ServerMessage;
    try {
      msg = parseServerMessage(body);
    } catch (err) {
      if (!this.#welcomed) {
        // Not even welcomed yet: a server that starts with garbage is not one to use.
        this.#replies.failAll(`refusing the server: ${(err as Error).message}`);
        this.#link?.close();
        return;
      }
      this.#onEvent({ kind: "status", text: `ignored an invalid message from the server: ${(err as Error).message}` });
      return;
    }
    if (this.#replies.offer(msg)) return;
    this.#handle(msg, body.length);
  }

  #handle(msg: ServerMessage, bytes: number): void {
    switch (msg.type) {
      case "message":
        return this.#onRelayed(msg, bytes);
      case "ack":
        return this.#acked(msg.id, msg.seq);
      case "error":
        return this.#onError(msg);
      case "presence":
        if (msg.room !== this.#current) return;
        if (msg.event === "join" || msg.event === "leave" || (msg.event === "nick" && msg.old !== undefined)) {
          this.#onEvent({ kind: "presence", event: msg.event, room: msg.room, nick: msg.nick, old: msg.old });
        }
        return;
      case "ping":
        this.#link?.write(pongFrame(msg.data));
        return;
      case "bye":
        // The close that follows starts a reconnect; say why first.
        this.#onEvent({ kind: "status", text: `server said goodbye: ${msg.message ?? msg.reason}` });
        return;
      default:
        // pong, and replies nobody waits for any more
        return;
    }
  }

  /**
   * A live message: shown now, or held back (within a byte bound) while its room catches up, or while the room it
   * names is being joined (it can arrive in the same read as `joined`, before the room's state exists).
   */
  #onRelayed(msg: ServerMessageOf<"message">, bytes: number): void {
    const joining = this.#joining;
    if (joining && (msg.envelope as { room?: unknown } | undefined)?.room === joining.room) {
      if (joining.bytes + bytes <= this.#bounds.heldBytes) {
        joining.early.push(msg);
        joining.bytes += bytes;
      }
      return;
    }
    const room = this.#current === undefined ? undefined : this.#rooms.get(this.#current);
    if (!room) return;
    const held = room.held;
    if (!held) {
      void this.#showMessages(room, [msg], { history: false });
      return;
    }
    if (held.bytes + bytes > this.#bounds.heldBytes) {
      // Everything live is also stored: drop what is held and let the catch-up fetch it again.
      held.items = [];
      held.bytes = 0;
      held.overflowed = true;
      return;
    }
    held.items.push(msg);
    held.bytes += bytes;
  }

  #onError(msg: ServerMessageOf<"error">): void {
    const item = msg.id === undefined ? undefined : this.#outbox.get(msg.id);
    if (item) return this.#onRefused(item, msg);
    if (msg.code === "rate_limited") {
      this.#onEvent({ kind: "status", text: "sending too fast: the server is holding your messages back" });
      return;
    }
    this.#onEvent({ kind: "status", text: `server error (${msg.code}): ${msg.message}` });
  }

  /** The server refused one of this client's messages. */
  #onRefused(item: OutboxItem, msg: ServerMessageOf<"error">): void {
    switch (msg.code) {
      case "duplicate_id":
        // Already stored (its ack was lost): as good as an ack.
        this.#outbox.ack(item.id);
        return;
      case "storage_failed":
        this.#outbox.retry(item.id, `the server could not store it: ${msg.message}`);
        return;
      case "sender_mismatch":
        // Sealed under a nick that is not this connection's any more (a nick change, a reconnect): seal it again.
        if (this.#sealed.get(item)?.from !== this.#nick) {
          this.#outbox.retry(item.id, msg.message, { now: true });
          return;
        }
        break;
    }
    this.#outbox.fail(item.id, `the server refused it: ${msg.message}`);
  }

  #acked(id: string, seq: number): void {
    if (!this.#outbox.ack(id, seq)) return;
    const room = this.#current === undefined ? undefined : this.#rooms.get(this.#current);
    if (room) room.lastSeq = Math.max(room.lastSeq, seq);
  }

  /** Seals an outgoing message (again, when the nick changed since) into its `send` frame. */
  async #frameOf(item: OutboxItem): Promise<Uint8Array> {
    const cached = this.#sealed.get(item);
    if (cached && cached.from === this.#nick) return cached.frame;
    const room = this.#rooms.get(item.room);
    if (!room) throw new SendError(`not in #${item.room} any more`);
    const from = this.#nick;
    const envelope = await sealEnvelope(room.keys, {
      room: room.name,
      from,
      plaintext: { type: item.text.type, body: item.text.body },
      id: decodeBase64(item.id),
      ts: item.ts,
    });
    const frame = sendFrame(envelope);
    const maxFrame = this.#limits?.max_frame ?? Infinity;
    if (frame.length - 4 > maxFrame) {
      throw new SendError(`message is too long for this server (frame limit ${maxFrame} bytes)`);
    }
    this.#sealed.set(item, { from, frame });
    return frame;
  }

  /** Opens relayed messages in order (after any still being opened) and returns those that pass. */
  #openMessages(room: RoomState, items: unknown[], options: { history: boolean }): Promise<ShownMessage[]> {
    const job = this.#inbound.then(async () => {
      const shown: ShownMessage[] = [];
      for (const raw of items) {
        const message = await this.#openRelayed(room, raw, options);
        if (message) shown.push(message);
      }
      return shown;
    });
    this.#inbound = job.catch(() => {});
    return job;
  }

  /** Opens relayed messages in order and delivers each that passes as a "message" event (live or history). */
  async #showMessages(room: RoomState, items: unknown[], options: { history: boolean }): Promise<number> {
    const shown = await this.#openMessages(room, items, options);
    for (const message of shown) this.#onEvent({ kind: "message", message });
    return shown.length;
  }

  async #openRelayed(room: RoomState, raw: unknown, options: { history: boolean }): Promise<ShownMessage | undefined> {
    let item;
    try {
      item = parseRelayedMessage(raw);
    } catch {
      const claimed = (raw as { envelope?: { from?: unknown } })?.envelope?.from;
      this.#forged.add(room.name, typeof claimed === "string" ? claimed : "(unknown sender)", seqOf(raw));
      return undefined;
    }
    const id = item.envelope.id;
    this.#acked(id, item.seq); // our own, stored before its ack was lost
    if (room.seen.has(id)) return undefined;
    let opened;
    try {
      opened = await openEnvelope(room.keys, { envelope: item.envelope, room: room.name });
    } catch (err) {
      if (!(err instanceof OpenError)) throw err;
      this.#forged.add(room.name, item.envelope.from, item.seq);
      return undefined;
    }
    this.#remember(room, id);
    room.lastSeq = Math.max(room.lastSeq, item.seq);
    room.oldestSeq = Math.min(room.oldestSeq, item.seq);
    return {
      room: room.name,
      seq: item.seq,
      from: opened.from,
      ts: opened.ts,
      id,
      type: opened.plaintext.type === "action" ? "action" : "text",
      text: opened.plaintext.body,
      history: options.history,
    };
  }

  #remember(room: RoomState, id: string): void {
    room.seen.add(id);
    room.seenOrder.push(id);
    if (room.seenOrder.length > SEEN_IDS) room.seen.delete(room.seenOrder.shift()!);
  }

  /**
   * Says something in the current room. The message is queued at once (state "queued") and written when everything
   * said before it is written; it stays pending until the server acknowledges that it is stored, across reconnects
   * and nick changes. Its progress arrives as "outbox" events.
   *
   * @param text what to say
   * @param options.action say it as an action (/me)
   * @returns the queued message
   * @throws {SendError} when not in a room, or the text is not well-formed or too long
   */
  say(text: string, options: { action?: boolean } = {}): OutboxItem {
    const room = this.#current === undefined ? undefined : this.#rooms.get(this.#current);
    if (!room) throw new SendError("join a room first");
    if (this.#state === "closed") throw new SendError("the session is closed");
    if (!text.isWellFormed()) throw new SendError("the text is not well-formed Unicode");
    const bytes = utf8Length(text);
    const max = Math.min(MAX_BODY_BYTES, this.#limits?.max_body ?? MAX_BODY_BYTES);
    if (bytes > max) throw new SendError(`message is ${bytes} bytes; the limit is ${max}`);
    const item = this.#outbox.add(room.name, { type: options.action ? "action" : "text", body: text });
    this.#remember(room, item.id);
    return item;
  }

  /**
   * Waits until every message said has been stored (or given up), across reconnects.
   *
   * @param options.timeoutMs give up waiting after this long (default: as long as the session lives)
   * @throws {SessionError} when the session closes first, or an Error on timeout
   */
  drain(options: { timeoutMs?: number } = {}): Promise<void> {
    return this.#outbox.whenPendingAtMost(0, options);
  }

  /**
   * Waits until at most `count` messages are pending (script mode bounds its memory with it).
   *
   * @param count how many may stay pending
   */
  whenPendingAtMost(count: number): Promise<void> {
    return this.#outbox.whenPendingAtMost(count);
  }

  /**
   * Joins a room, creating it when it does not exist. On success the previous room is left (its messages not yet
   * stored after a short wait are given up); on failure the session stays where it was.
   *
   * @param room the room name
   * @param hooks asks for the passphrase and shows key derivation
   * @returns what the join found
   * @throws {JoinError} for a wrong passphrase, a bad room name, a cancelled prompt, or when offline
   */
  async join(room: string, hooks: JoinHooks): Promise<Joined> {
    if (this.#state !== "online") throw new JoinError("offline", "not connected to the server right now");
    const leaving = this.#current;
    if (leaving !== undefined && leaving !== room) {
      await this.#outbox.whenPendingAtMost(0, { room: leaving, timeoutMs: LEAVE_DRAIN_MS }).catch(() => {});
    }
    for (let attempt = 0;; attempt++) {
      try {
        const joined = await this.#join(room, hooks, { rejoin: false });
        if (leaving !== undefined && leaving !== room) {
          this.#outbox.failRoom(leaving, `you left #${leaving} before it was stored`);
        }
        return joined;
      } catch (err) {
        if (err instanceof JoinError && err.code === "room_changed" && attempt < 2) continue;
        throw err;
      }
    }
  }

  /** One join: the challenge, the room's keys, the proof, and (for a new join) entering the room. */
  async #join(room: string, hooks: JoinHooks | undefined, options: { rejoin: boolean }): Promise<Joined> {
    const challenge = await this.#request({ type: "join", room }, "challenge");
    if (challenge.room !== room) throw new JoinError("bad_reply", `the server answered for #${challenge.room}`);
    const previous = options.rejoin ? this.#rooms.get(room) : undefined;
    const secrets = await this.#roomSecrets(challenge, { hooks, previous });
    const { salt, iterations, keys, creating } = secrets;
    const proof = await signJoinProof(keys, { nonce: secrets.nonce, room, nick: this.#nick });
    // Live messages of a room being joined can come in the same read as `joined`: they wait for its state.
    const joining = options.rejoin ? undefined : { room, early: [], bytes: 0 };
    this.#joining = joining;
    const joined = await this.#request(
      proveMessage(room, proof, creating ? { salt, iterations, accessPub: keys.accessPub } : undefined),
      "joined",
    ).catch((err) => {
      if (err instanceof JoinError && err.code === "access_denied") this.#keys.delete(keyName(room, salt, iterations));
      throw err;
    }).finally(() => {
      if (this.#joining === joining) this.#joining = undefined;
    });
    if (joined.room !== room) throw new JoinError("bad_reply", `the server answered for #${joined.room}`);
    let members: string[];
    try {
      members = parseNames(joined.members, "joined.members");
    } catch (err) {
      throw new JoinError("bad_reply", (err as Error).message);
    }
    this.#keys.set(keyName(room, salt, iterations), keys);
    if (previous) {
      // Keep what was seen; the caller catches up from the last seq with `since` before showing live messages.
      previous.keys = keys;
      return { room, members, created: creating, history: 0 };
    }
    const history = await this.#enter(joined, { salt, iterations, keys, early: joining?.early ?? [] });
    return { room, members, created: creating, history };
  }

  /**
   * The salt, iterations and keys for a challenge: the cached keys, the previous room's secrets (the server lost the
   * room while this client was away), or keys derived from a passphrase the hooks give. Everything the server sent
   * is checked before a passphrase is asked for.
   */
  async #roomSecrets(
    challenge: ServerMessageOf<"challenge">,
    options: { hooks?: JoinHooks; previous?: RoomState },
  ): Promise<{ nonce: Uint8Array; salt: Uint8Array; iterations: number; keys: RoomKeys; creating: boolean }> {
    const { room } = challenge;
    const creating = challenge.salt === undefined;
    try {
      const nonce = decodeBase64(challenge.nonce, { length: NONCE_BYTES });
      if (creating && options.previous) {
        const { salt, iterations, keys } = options.previous;
        return { nonce, salt, iterations, keys, creating };
      }
      const salt = creating ? makeSalt() : decodeBase64(challenge.salt!, { length: SALT_BYTES });
      const iterations = creating ? this.#iterations : challenge.iterations ?? NaN;
      const cached = this.#keys.get(keyName(room, salt, iterations));
      if (cached) return { nonce, salt, iterations, keys: cached, creating };
      const hooks = options.hooks;
      if (!hooks) throw new JoinError("access_denied", `room ${room} changed on the server: join it again`);
      // Before any prompt: a server announcing a count outside the range would weaken the room.
      checkIterations(iterations);
      const passphrase = await hooks.passphrase(room, { creating });
      if (passphrase === undefined) throw new JoinError("cancelled", `join ${room} cancelled`);
      const done = hooks.deriving?.(room, { iterations });
      try {
        return { nonce, salt, iterations, keys: await deriveRoomKeys(passphrase, { salt, iterations }), creating };
      } finally {
        done?.();
      }
    } catch (err) {
      if (err instanceof JoinError) throw err;
      // A challenge with a bad nonce or salt, or an iteration count outside the allowed range (a weakened room).
      const why = err instanceof KeyDerivationError ? err.message : `bad challenge: ${(err as Error).message}`;
      throw new JoinError("bad_reply", `refusing to join #${room}: ${why}`);
    }
  }

  /** Enters a newly joined room (v1: it replaces the room before): its state, its history, what came with it. */
  async #enter(
    joined: ServerMessageOf<"joined">,
    secrets: { salt: Uint8Array; iterations: number; keys: RoomKeys; early: unknown[] },
  ): Promise<number> {
    const room = joined.room;
    for (const name of this.#rooms.keys()) if (name !== room) this.#rooms.delete(name);
    const state: RoomState = {
      name: room,
      keys: secrets.keys,
      salt: secrets.salt,
      iterations: secrets.iterations,
      lastSeq: joined.latest_seq,
      oldestSeq: joined.latest_seq + 1,
      seen: new Set(),
      seenOrder: [],
    };
    this.#rooms.set(room, state);
    this.#current = room;
    // Both queued at once, before any later live message: history, then what came with `joined`, then the rest.
    const shown = this.#showMessages(state, joined.history, { history: true });
    const earlyShown = this.#showMessages(state, secrets.early, { history: false });
    const history = await shown;
    await earlyShown;
    this.#outbox.kick();
    return history;
  }

  /**
   * Lists the members of the current room.
   *
   * @returns their nicks
   * @throws {JoinError} when offline or refused
   */
  async who(): Promise<string[]> {
    const reply = await this.#request({ type: "who" }, "who");
    try {
      return parseNames(reply.members, "who.members");
    } catch (err) {
      throw new JoinError("bad_reply", (err as Error).message);
    }
  }

  /**
   * Lists the rooms that have members right now.
   *
   * @returns the rooms and their member counts
   * @throws {JoinError} when offline or refused
   */
  async rooms(): Promise<{ name: string; members: number }[]> {
    const reply = await this.#request({ type: "rooms" }, "rooms");
    try {
      return parseRoomList(reply.rooms);
    } catch (err) {
      throw new JoinError("bad_reply", (err as Error).message);
    }
  }

  /**
   * Changes the nick, in queue order: messages said before are written under the old nick first, messages said
   * after are sealed under the new one.
   *
   * @param nick the new nick
   * @throws {JoinError} with the server's code when refused (in use, invalid), or "offline"
   */
  changeNick(nick: string): Promise<void> {
    if (this.#state !== "online") {
      return Promise.reject(new JoinError("offline", "not connected to the server right now"));
    }
    return this.#outbox.barrier(async () => {
      const answer = await this.#request({ type: "nick", new: nick }, "nick");
      if (answer.new !== nick) throw new JoinError("bad_reply", `the server answered a change to ${answer.new}`);
      this.#nick = answer.new;
      this.#onEvent({ kind: "nick", old: answer.old, new: answer.new });
    });
  }

  /**
   * Fetches up to `limit` messages older than the oldest one shown, and delivers them as an "older" event.
   *
   * @param limit how many (at most the server's page size)
   * @returns how many were shown, and whether there are more
   * @throws {SendError} when not in a room; {@link JoinError} when offline
   */
  async older(limit: number): Promise<{ shown: number; more: boolean }> {
    const room = this.#current === undefined ? undefined : this.#rooms.get(this.#current);
    if (!room) throw new SendError("join a room first");
    const page = Math.max(1, Math.min(limit, this.#limits?.history_page ?? HISTORY_PAGE));
    const reply = await this.#request({ type: "history", before_seq: room.oldestSeq, limit: page }, "history");
    // Paging back must reach further even past messages already seen.
    for (const raw of reply.messages) room.oldestSeq = Math.min(room.oldestSeq, seqOf(raw) ?? Infinity);
    const messages = await this.#openMessages(room, reply.messages, { history: true });
    this.#onEvent({ kind: "older", room: room.name, messages, more: reply.more });
    return { shown: messages.length, more: reply.more };
  }

  /**
   * Fetches everything after the room's last seen seq, page by page (at most `catchUpPages`), and shows it. Live
   * messages held meanwhile that overflowed their bound are fetched by another round.
   */
  async #catchUp(room: RoomState): Promise<number> {
    let missed = 0;
    for (let page = 0;; page++) {
      if (page >= this.#bounds.catchUpPages) {
        this.#onEvent({
          kind: "status",
          text: `stopped catching up #${room.name} after ${page} pages: the server kept sending more`,
        });
        return missed;
      }
      const reply = await this.#request({ type: "since", after_seq: room.lastSeq }, "since");
      const before = room.lastSeq;
      missed += await this.#showMessages(room, reply.messages, { history: false });
      for (const raw of reply.messages) room.lastSeq = Math.max(room.lastSeq, seqOf(raw) ?? 0);
      const overflowed = room.held!.overflowed;
      room.held!.overflowed = false;
      if (overflowed || (reply.more && room.lastSeq > before)) continue;
      return missed;
    }
  }

  #onLost(generation: number, error: LinkError): void {
    if (generation !== this.#generation) return;
    this.#replies.failAll(error.message);
    clearInterval(this.#keepalive);
    if (this.#state !== "online") return; // connecting: #open reports it; offline: the reconnect loop does
    this.#state = "offline";
    this.#outbox.rewind();
    this.#outbox.cancelBarriers(new JoinError("offline", "the connection was lost"));
    this.#reconnectLoop(error.message).catch((err) =>
      this.#finish(err instanceof SessionError ? err : new SessionError("closed", String(err)))
    );
  }

  /** Retries with growing delays until connected and caught up, the policy gives up, or a refusal is final. */
  async #reconnectLoop(firstReason: string): Promise<void> {
    const started = performance.now();
    const policy = this.#reconnect;
    let delay = policy.firstDelayMs;
    let reason = firstReason;
    for (let attempt = 1; this.#state === "offline"; attempt++) {
      let wait = delay * (0.5 + Math.random());
      if (policy.giveUpAfterMs !== undefined) {
        const left = policy.giveUpAfterMs - (performance.now() - started);
        if (left <= 0) {
          throw new SessionError(
            "closed",
            `the connection was lost and did not come back within ${seconds(policy.giveUpAfterMs)} (${reason})`,
          );
        }
        // The last try comes at the deadline rather than never.
        wait = Math.min(wait, left);
      }
      this.#onEvent({ kind: "offline", reason, retryInMs: Math.round(wait), attempt });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
      if (this.#state !== "offline") return;
      delay = Math.min(delay * 2, policy.maxDelayMs);
      try {
        await this.#open();
      } catch (err) {
        // A nick the server will never take, or a protocol it does not speak: retrying cannot fix that.
        if (err instanceof SessionError && (err.code === "nick_invalid" || err.code === "version_unsupported")) {
          throw err;
        }
        reason = (err as Error).message;
        continue;
      }
      try {
        const { missed, resent } = await this.#rejoin();
        this.#onEvent({ kind: "reconnected", room: this.#current, missed, resent });
        return;
      } catch (err) {
        if (err instanceof JoinError && err.code === "access_denied") {
          throw new SessionError("denied", `rejoining #${this.#current}: ${err.message}`, { code: err.code });
        }
        reason = (err as Error).message;
        this.#link?.close();
      }
    }
  }

  /** After a reconnect: rejoin, catch up (live messages held meanwhile), then go online and resend in order. */
  async #rejoin(): Promise<{ missed: number; resent: number }> {
    let missed = 0;
    const room = this.#current === undefined ? undefined : this.#rooms.get(this.#current);
    if (room) {
      room.held = { items: [], bytes: 0, overflowed: false };
      try {
        await this.#join(room.name, undefined, { rejoin: true });
        missed += await this.#catchUp(room);
        // Live again from here: what was held is queued for showing before anything that arrives next.
        const held = room.held.items;
        room.held = undefined;
        missed += await this.#showMessages(room, held, { history: false });
      } finally {
        room.held = undefined;
      }
    }
    const resent = this.#outbox.unsent;
    this.#state = "online";
    this.#startKeepalive(this.#limits!.idle_timeout_ms);
    this.#outbox.kick();
    return { missed, resent };
  }

  #finish(error: SessionError): void {
    if (this.#state === "closed") return;
    this.#stop(error);
    this.#link?.close();
    this.#onEvent({ kind: "closed", error });
  }

  #stop(error: SessionError): void {
    this.#state = "closed";
    clearInterval(this.#keepalive);
    // Counts not yet reported are reported now rather than lost.
    this.#forged.flush();
    this.#wake?.();
    this.#outbox.close(error);
    this.#replies.failAll(error.message);
  }

  /**
   * Says goodbye and closes the connection. Messages not yet stored are not waited for: call {@link drain} first.
   *
   * @param reason sent in the bye
   */
  async close(reason = "quit"): Promise<void> {
    const wasOnline = this.#state === "online";
    if (this.#state !== "closed") this.#stop(new SessionError("quit", "the session was closed"));
    const link = this.#link;
    if (link && !link.closed && wasOnline) {
      link.write(encodeMessage({ type: "bye", reason }));
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([link.flushed(), new Promise((resolve) => timer = setTimeout(resolve, 1_000))]);
      clearTimeout(timer);
    }
    link?.close();
    this.#keys.clear();
  }
}

function keyName(room: string, salt: Uint8Array, iterations: number): string {
  return `${room}\u0000${salt.toBase64()}\u0000${iterations}`;
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

/** The seq of an untrusted relayed item, when it has a numeric one. */
function seqOf(raw: unknown): number | undefined {
  const seq = (raw as { seq?: unknown } | undefined)?.seq;
  return typeof seq === "number" ? seq : undefined;
}
