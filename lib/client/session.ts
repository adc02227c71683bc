/**
 * One client's conversation with a server (protocol v2): the handshake (handshake.ts), several rooms at once
 * (joining.ts), each with its own keys, pin, catch-up position and sequence state (rooms.ts), messages signed and
 * sealed in order through the outbox (sealing.ts, outbox.ts), messages received (receiving.ts) and checked
 * (inbound.ts) against the pins (peers.ts), direct messages and invitations (inbox.ts), and reconnecting without
 * losing or repeating anything (reconnecting.ts). The session holds the connection, answers the user interface, and
 * wires those parts together; each gets what it needs of the others as functions. The session is handed a dial
 * function (link.ts) and the user's home, and knows nothing of sockets or terminals: a user interface gets
 * {@link SessionEvent}s and answers {@link JoinHooks}. Room keys live only in memory, unless the user asked the home
 * to keep a room's secret.
 *
 * @module
 */

import { encodeInvitation } from "../direct.ts";
import { MAX_BODY_BYTES } from "../envelope.ts";
import { encodeMessage } from "../frame.ts";
import { fingerprint, safetyNumber } from "../identity.ts";
import { foldName, utf8Length, validateNick } from "../names.ts";
import {
  type ClientMessage,
  parseServerMessage,
  pongFrame,
  type ServerLimits,
  type ServerMessage,
  type ServerMessageOf,
} from "../protocol.ts";
import { JoinError, SendError, SessionError } from "./errors.ts";
import type { InvitationShown, PeerInfo, SessionEvent } from "./events.ts";
import { ForgeryReports } from "./forgeries.ts";
import { type Greeting, handshake, isLoopback } from "./handshake.ts";
import type { Home } from "./home.ts";
import { Inbox, type Received } from "./inbox.ts";
import { type Joined, type JoinHooks, Joining, type Member } from "./joining.ts";
import { Receiving } from "./receiving.ts";
import { Reconnecting, type ReconnectPolicy } from "./reconnecting.ts";
import type { InboundContext } from "./inbound.ts";
import type { Dial, Link, LinkError } from "./link.ts";
import { Outbox, type OutboxItem, type OutgoingText } from "./outbox.ts";
import { type PeerKeys, Peers } from "./peers.ts";
import { Replies } from "./replies.ts";
import { recipientChanged, Sealing } from "./sealing.ts";
import { pinDifferences } from "./rooms.ts";
import { newDevice } from "./sequence.ts";

export { JoinError, SendError, SessionError };
export type { Joined, JoinHooks, Member } from "./joining.ts";
export type { CloseKind } from "./errors.ts";
export type { ReconnectPolicy } from "./reconnecting.ts";
export type { DirectShown, InvitationShown, Mark, PeerInfo, SessionEvent, ShownMessage, Trust } from "./events.ts";

/** How long a request waits for its reply before the connection is considered dead. */
const REPLY_TIMEOUT_MS = 30_000;
/** Bytes of live messages held back while a reconnect catches up; beyond it they are dropped and fetched again. */
const HELD_BYTES = 8 * 1024 * 1024;
/** `since` and `direct_since` pages followed in one catch-up. */
const CATCH_UP_PAGES = 1_000;
/** Failed-authentication warnings: one per claimed sender per interval, then a count. */
const FORGED_INTERVAL_MS = 10_000;
/** Claimed senders tracked at once; the rest are counted together. */
const FORGED_SENDERS = 64;
/** Ids shown are written to the home at most this often. */
const FLUSH_MS = 1_000;

/** Session settings. */
export interface SessionOptions {
  /** The nick to use. */
  nick: string;
  /** The user's home: identity, pins, ids shown, kept room secrets. */
  home: Home;
  /** "host:port" of the server, as its key is pinned. */
  address: string;
  /** Whether the connection uses TLS (plain TCP to an address that is not loopback is warned about). */
  tls?: boolean;
  /** Receives every event. */
  onEvent: (event: SessionEvent) => void;
  /** PBKDF2 count for rooms this client creates (default 600000). */
  iterations?: number;
  /** Lowest PBKDF2 count accepted for a room seen for the first time (default 600000). */
  minIterations?: number;
  /** Keep the secret of every room joined by passphrase in the home (default false). */
  remember?: boolean;
  /** Reconnect delays and when to give up (default: never). */
  reconnect?: Partial<ReconnectPolicy>;
  /** Retries of a message refused with `storage_failed`: the delay (default 1 s) and how many (default 5). */
  retry?: { delayMs?: number; retries?: number };
  /** Bounds against a lying server (defaults: 8 MiB held, 1000 pages, one warning per sender per 10 s). */
  bounds?: { heldBytes?: number; catchUpPages?: number; forgedIntervalMs?: number };
  /** How long a request waits for its reply (default 30 s). */
  replyTimeoutMs?: number;
}

/**
 * A chat session with one server. Create it with {@link Session.connect}, then {@link Session.join} rooms.
 *
 * @example
 * ```ts
 * const session = await Session.connect(dialServer({ host: "127.0.0.1", port: 5000 }), {
 *   nick: "alice",
 *   home,
 *   address: "127.0.0.1:5000",
 *   onEvent: console.log,
 * });
 * await session.join("general", { passphrase: () => Promise.resolve("a long shared passphrase") });
 * session.say("hello", { room: "general" });
 * await session.drain();
 * await session.close();
 * ```
 */
export class Session {
  #dial: Dial;
  #home: Home;
  #address: string;
  #nick: string;
  #onEvent: (event: SessionEvent) => void;
  #options: SessionOptions;
  /** Coming back after the connection was lost. */
  #reconnecting: Reconnecting;
  #bounds: { heldBytes: number; catchUpPages: number; forgedIntervalMs: number };
  #link: Link | undefined;
  /** Which link is current: events of an older one are ignored. */
  #generation = 0;
  #greeting: Greeting | undefined;
  #peers: Peers | undefined;
  /** This run's device id (a fresh one each run: see PROTOCOL.md "Sequence"). */
  #device = newDevice();
  /** Whether the current link has been welcomed. */
  #welcomed = false;
  #replies: Replies<ServerMessage>;
  /** Requests go out one at a time, so that an error reply cannot be taken for another request's. */
  #requests: Promise<unknown> = Promise.resolve();
  /** The rooms this connection is in, and joining them. */
  #joining: Joining;
  #outbox: Outbox;
  #sealing: Sealing;
  /** The room messages received, in the order of arrival. */
  #receiving: Receiving;
  #state: "connecting" | "online" | "offline" | "closed" = "connecting";
  #keepalive: ReturnType<typeof setInterval> | undefined;
  #lastHeard = performance.now();
  #forged: ForgeryReports;
  /** The direct messages received, and the invitations among them. */
  #inbox: Inbox | undefined;
  /** Recipients' checked keys, per connection. */
  #recipients = new Map<string, Promise<PeerKeys>>();
  #flushTimer: ReturnType<typeof setTimeout> | undefined;

  private constructor(dial: Dial, options: SessionOptions) {
    this.#dial = dial;
    this.#options = options;
    this.#home = options.home;
    this.#address = options.address;
    this.#nick = options.nick;
    this.#onEvent = options.onEvent;
    this.#reconnecting = new Reconnecting(options.reconnect, {
      offline: () => this.#state === "offline",
      open: () => this.#open(),
      rejoin: async () => {
        const { missed, resent } = await this.#rejoin();
        this.#onEvent({ kind: "reconnected", room: this.#joining.last, missed, resent });
      },
      drop: () => this.#link?.close(),
      onEvent: (event) => this.#onEvent(event),
    });
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
      report: (report) =>
        this.#onEvent({
          kind: "forged",
          ...report,
          room: report.room === "" ? undefined : report.room,
          intervalMs,
        }),
    });
    this.#sealing = new Sealing({
      identity: options.home.identity,
      nick: () => this.#nick,
      serverPub: () => this.#greeting!.serverPub,
      maxFrame: () => this.limits?.max_frame ?? Infinity,
      room: (name) => this.#joining.room(name),
      numbering: (fold) => this.#joining.numbering(fold),
      recipient: (nick) => this.recipient(nick),
      forgetRecipient: (nick) => this.#recipients.delete(foldName(nick)),
      outbox: () => this.#outbox,
    });
    this.#outbox = new Outbox({
      frame: (item) => this.#sealing.frame(item),
      write: (frame) => this.#link?.write(frame),
      ready: (item) => this.#ready(item),
      changed: (item) => this.#onOutbox(item),
      discard: (item) => this.#sealing.discard(item),
      retryDelayMs: options.retry?.delayMs,
      retries: options.retry?.retries,
    });
    this.#receiving = new Receiving({
      room: (name) => this.#joining.room(name),
      early: (name) => this.#joining.early(name),
      request: (message, replyType) => this.#request(message, replyType),
      context: () => this.#inboundContext(),
      forged: (room, from, seq) => this.#forged.add(room, from, seq),
      limits: () => this.limits,
      onEvent: (event) => this.#onEvent(event),
      changed: () => this.#scheduleFlush(),
      heldBytes: this.#bounds.heldBytes,
      catchUpPages: this.#bounds.catchUpPages,
    });
    this.#joining = new Joining({
      home: options.home,
      device: this.#device,
      iterations: options.iterations,
      minIterations: options.minIterations,
      remember: options.remember,
      online: () => this.#state === "online",
      nick: () => this.#nick,
      serverPub: () => this.#greeting!.serverPub,
      peers: () => this.#peers!,
      request: (message, replyType) => this.#request(message, replyType),
      inOrder: (job) => this.#receiving.inOrder(job),
      show: (room, items, arrived) => this.#receiving.show(room, items, arrived),
      outbox: this.#outbox,
      onEvent: (event) => this.#onEvent(event),
    });
  }

  /**
   * Connects, checks the server, logs in, and fetches the direct messages waiting.
   *
   * @param dial opens the connection (link.ts `dialServer`, or an in-process server in tests)
   * @param options nick, home, address, events, and the policies
   * @returns the connected session
   * @throws {SessionError} "connect" when unreachable or unusable, "changed" when the server's key differs from the
   *   pin, "nick" when the nick is refused
   */
  static async connect(dial: Dial, options: SessionOptions): Promise<Session> {
    const session = new Session(dial, options);
    try {
      await session.#open();
      await session.#inbox!.fetch({ first: true });
    } catch (err) {
      session.#link?.close();
      session.#stop(err instanceof SessionError ? err : new SessionError("connect", (err as Error).message));
      if (err instanceof JoinError) throw new SessionError("connect", err.message, { code: err.code });
      throw err;
    }
    session.#state = "online";
    return session;
  }

  /** The current (canonical) nick. */
  get nick(): string {
    return this.#nick;
  }

  /** The room joined last, if any: the default room of {@link Session.say}. */
  get room(): string | undefined {
    return this.#joining.last;
  }

  /** The rooms this connection is in, in the order joined (canonical names). */
  get rooms(): string[] {
    return this.#joining.joined.map((r) => r.name);
  }

  /**
   * The canonical name of the joined room that `name` means, comparing names as the server does (folded).
   *
   * @param name a room name in any spelling
   * @returns the joined room's name, or undefined when this connection is not in it
   */
  joinedRoom(name: string): string | undefined {
    return this.#joining.room(name)?.name;
  }

  /**
   * A nick in the spelling of its pinned key (the canonical one), or as given when no key is pinned for it.
   *
   * @param nick a nick in any spelling
   * @returns the nick
   */
  peerName(nick: string): string {
    return (this.#greeting && this.#home.peerPin(this.#greeting.serverPub, nick)?.nick) ?? nick;
  }

  /** The largest message body the server takes, in UTF-8 bytes. */
  get maxBody(): number {
    return Math.min(MAX_BODY_BYTES, this.limits?.max_body ?? MAX_BODY_BYTES);
  }

  /** The limits the server announced (checked). */
  get limits(): ServerLimits | undefined {
    return this.#greeting?.limits;
  }

  /** The server's key fingerprint (40 hex digits). */
  get serverFingerprint(): string {
    return this.#greeting!.serverFingerprint;
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
    for (const room of this.#joining.joined) bytes += room.held?.bytes ?? 0;
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

  // ---- the connection -----------------------------------------------------------------------------------------

  /** Dials, says hello, checks the server and logs in; on success the new link is current. */
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
    this.#recipients.clear();
    let greeting: Greeting;
    try {
      greeting = await handshake({
        write: (message) => link.write(encodeMessage(message)),
        // A link lost before the waiter is in place would leave it waiting for the reply timeout: refuse at once.
        expect: (test) =>
          link.closed ? Promise.reject(new Error("the connection was lost")) : this.#replies.expect(test),
        meetServer: (key) => this.#home.meetServer(this.#address, key),
        pinnedKey: () => this.#home.serverPin(this.#address)?.key,
      }, {
        address: this.#address,
        nick: this.#nick,
        identity: this.#home.identity,
        rotations: this.#home.rotations,
      });
    } catch (err) {
      link.close();
      throw err;
    }
    this.#welcomed = true;
    this.#nick = greeting.nick;
    const first = this.#greeting === undefined;
    this.#greeting = greeting;
    if (first) await this.#firstContact(greeting);
    this.#startKeepalive(greeting.limits.idle_timeout_ms);
  }

  /** What happens once, at the first welcome: the peer book, the inbox, the notices. */
  async #firstContact(greeting: Greeting): Promise<void> {
    this.#inbox = new Inbox({
      home: this.#home,
      serverPub: greeting.serverPub,
      seen: await this.#home.seenDirectIds(greeting.serverPub),
      request: (message) => this.#request(message, "direct_since"),
      inOrder: (job) => this.#receiving.inOrder(job),
      context: () => this.#inboundContext(),
      onEvent: (event) => this.#onEvent(event),
      pages: this.#bounds.catchUpPages,
      changed: () => this.#scheduleFlush(),
    });
    this.#peers = new Peers({
      home: this.#home,
      serverPub: greeting.serverPub,
      self: () => ({ nick: this.#nick, key: this.#home.identity.publicKey }),
      lookup: (nick) => this.#request({ type: "lookup", nick }, "identity"),
      onEvent: (event) => {
        if (event.kind === "keyChanged") this.#recipients.delete(foldName(event.nick));
        this.#onEvent(event);
      },
    });
    this.#onEvent({
      kind: "server",
      address: this.#address,
      fingerprint: greeting.serverFingerprint,
      first: greeting.firstContact,
    });
    const host = this.#address.slice(0, this.#address.lastIndexOf(":"));
    if (!this.#options.tls && !isLoopback(host)) this.#onEvent({ kind: "insecure", address: this.#address });
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

  /** Writes a request and waits for its reply (or an error about it); one request at a time. */
  #request<T extends ServerMessage["type"]>(message: ClientMessage, replyType: T): Promise<ServerMessageOf<T>> {
    const run = this.#requests.then(() => this.#requestNow(message, replyType));
    this.#requests = run.catch(() => {});
    return run;
  }

  async #requestNow<T extends ServerMessage["type"]>(
    message: ClientMessage,
    replyType: T,
  ): Promise<ServerMessageOf<T>> {
    if (!this.#link || this.#link.closed || this.#state === "closed" || !this.#welcomed) {
      throw new JoinError("offline", "not connected to the server right now");
    }
    const isError = (m: ServerMessage) => m.type === "error" && m.id === undefined && m.code !== "rate_limited";
    this.#link.write(encodeMessage(message));
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
        return this.#receiving.relayed(msg, bytes);
      case "ack":
        return this.#onAck(msg.id, msg.seq);
      case "error":
        return this.#onError(msg);
      case "presence":
        return void this.#receiving.inOrder(() => this.#joining.presence(msg));
      case "direct":
        return this.#inbox?.live(msg);
      case "delivered":
        if (typeof msg.id === "string") this.#onEvent({ kind: "delivered", id: msg.id });
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

  // ---- rooms (joining.ts) -------------------------------------------------------------------------------------

  /**
   * Joins a room (adding it to the rooms this connection is in), creating it when it does not exist. The room's
   * keys come from memory, a secret kept in the home (an invitation, or --remember), or a passphrase from the hooks;
   * the challenge is checked against the room's pin first.
   *
   * @param room the room name
   * @param hooks asks for the passphrase and shows key derivation
   * @param options.remember keep the room's secret in the home (default: the session's setting)
   * @returns what the join found
   * @throws {JoinError} for a wrong passphrase, a bad room name, a cancelled prompt, when offline, or "changed" /
   *   "weak" for a room whose parameters differ from its pin or are below the floor
   */
  join(room: string, hooks: JoinHooks, options: { remember?: boolean } = {}): Promise<Joined> {
    return this.#joining.join(room, hooks, options);
  }

  /**
   * Leaves a room: waits a moment for its messages on their way to be stored (those that are not are given up).
   *
   * @param room the room
   * @throws {JoinError} when not in it, or offline
   */
  part(room: string): Promise<void> {
    return this.#joining.part(room);
  }

  /**
   * Lists the members of a room, each key compared with the pin.
   *
   * @param room the room (default: the room joined last)
   * @returns the members
   * @throws {JoinError} when offline or refused; {@link SendError} when not in the room
   */
  who(room?: string): Promise<Member[]> {
    return this.#joining.who(room);
  }

  /**
   * Lists the rooms this connection is in, with their member counts.
   *
   * @returns the rooms
   * @throws {JoinError} when offline or refused
   */
  roomList(): Promise<{ name: string; count: number }[]> {
    return this.#joining.roomList();
  }

  /**
   * Changes the nick, in queue order: messages said before are written under the old nick first, messages said
   * after are sealed under the new one. The server registers the new nick to this identity.
   *
   * @param nick the new nick
   * @throws {JoinError} with the server's code when refused (registered to another key, invalid), or "offline"
   */
  changeNick(nick: string): Promise<void> {
    if (this.#state !== "online") {
      return Promise.reject(new JoinError("offline", "not connected to the server right now"));
    }
    return this.#outbox.barrier(async () => {
      const answer = await this.#request({ type: "nick", new: nick }, "nick");
      if (typeof answer.new !== "string" || foldName(answer.new) !== foldName(nick)) {
        throw new JoinError("bad_reply", `the server answered a change to another nick`);
      }
      this.#nick = answer.new;
      this.#onEvent({ kind: "nick", old: answer.old, new: answer.new });
    });
  }

  /**
   * Fetches up to `limit` messages of a room older than the oldest one shown, and delivers them as an "older" event.
   *
   * @param limit how many (at most the server's page size)
   * @param options.room the room (default: the room joined last)
   * @returns how many were shown, and whether there are more
   * @throws {SendError} when not in the room; {@link JoinError} when offline
   */
  async older(limit: number, options: { room?: string } = {}): Promise<{ shown: number; more: boolean }> {
    return await this.#receiving.older(this.#joining.roomOf(options.room), limit);
  }

  // ---- receiving room messages (receiving.ts) ------------------------------------------------------------

  /** What opening a relayed item needs from the session. */
  #inboundContext(): InboundContext {
    return {
      peers: this.#peers!,
      identity: this.#home.identity,
      device: this.#device,
      serverPub: this.#greeting!.serverPub,
      forged: (room, from, seq) => this.#forged.add(room ?? "", from, seq),
      onEvent: (event) => this.#onEvent(event),
      storedOwn: (id, seq) => this.#onAck(id, seq),
    };
  }

  // ---- sending ------------------------------------------------------------------------------------------------

  /**
   * Says something in a room. The message is queued at once (state "queued") and written when everything said
   * before it is written; it stays pending until the server acknowledges that it is stored, across reconnects and
   * nick changes. Its progress arrives as "outbox" events.
   *
   * @param text what to say
   * @param options.room the room (default: the room joined last)
   * @param options.action say it as an action (/me)
   * @param options.type the message type (default "text"; "action" with `action`; "topic" sets the room topic)
   * @returns the queued message
   * @throws {SendError} when not in the room, or the text is not well-formed or too long
   */
  say(text: string, options: { room?: string; action?: boolean; type?: OutgoingText["type"] } = {}): OutboxItem {
    const room = this.#joining.roomOf(options.room);
    this.#checkText(text);
    const type = options.type ?? (options.action ? "action" : "text");
    return this.#outbox.add(room.name, { type, body: text });
  }

  /**
   * Sends a direct message, sealed for the recipient's key (looked up and checked against the pin when it is
   * written). A recipient whose key differs from the pin is refused until the user trusts the new key.
   *
   * @param nick the recipient
   * @param text what to say
   * @param options.action say it as an action
   * @returns the queued message
   * @throws {SendError} for a bad nick or text, or ("changed") a recipient whose key changed
   */
  msg(nick: string, text: string, options: { action?: boolean } = {}): OutboxItem {
    this.#checkRecipient(nick);
    this.#checkText(text);
    return this.#outbox.add({ to: this.peerName(nick) }, { type: options.action ? "action" : "text", body: text });
  }

  /**
   * Invites a nick to a room this connection is in: the room's secret (never the passphrase), signed and sealed for
   * the recipient over the direct channel. It gives everything the passphrase gives and cannot be taken back.
   *
   * @param nick who to invite
   * @param options.room the room (default: the room joined last)
   * @returns the queued invitation
   * @throws {SendError} when not in the room, or for a recipient whose key changed
   */
  invite(nick: string, options: { room?: string } = {}): OutboxItem {
    const room = this.#joining.roomOf(options.room);
    this.#checkRecipient(nick);
    const body = encodeInvitation({
      room: room.name,
      serverPub: this.#greeting!.serverPub as Uint8Array<ArrayBuffer>,
      master: room.keys.master,
      salt: room.pin.salt,
      iterations: room.pin.iterations,
      accessPub: room.pin.accessPub,
      epoch: room.pin.epoch,
    });
    return this.#outbox.add({ to: this.peerName(nick) }, { type: "invite", body });
  }

  #checkText(text: string): void {
    if (this.#state === "closed") throw new SendError("the session is closed");
    if (!text.isWellFormed()) throw new SendError("the text is not well-formed Unicode");
    const bytes = utf8Length(text);
    const max = this.maxBody;
    if (bytes > max) throw new SendError(`message is ${bytes} bytes; the limit is ${max}`);
  }

  #checkRecipient(nick: string): void {
    if (this.#state === "closed") throw new SendError("the session is closed");
    try {
      validateNick(nick);
    } catch (err) {
      throw new SendError((err as Error).message);
    }
    if (foldName(nick) === foldName(this.#nick)) throw new SendError("a direct message needs another person");
    const pin = this.#home.peerPin(this.#greeting!.serverPub, nick);
    if (pin?.offered) throw recipientChanged(pin.nick);
  }

  #ready(item: OutboxItem): boolean {
    if (this.#state !== "online") return false;
    if (item.to !== undefined) return true;
    const room = this.#joining.room(item.room);
    return room !== undefined && !room.held;
  }

  /**
   * A recipient's keys, looked up once per connection and checked (kx signature, pin, rotations).
   *
   * @param nick the nick
   * @returns the keys and their trust
   * @throws {JoinError} "unknown_nick", "offline", "bad_reply"
   */
  recipient(nick: string): Promise<PeerKeys> {
    const fold = foldName(nick);
    let keys = this.#recipients.get(fold);
    if (!keys) {
      keys = this.#peers!.keys(nick);
      this.#recipients.set(fold, keys);
      keys.catch(() => this.#recipients.delete(fold));
    }
    return keys;
  }

  /** Every outbox change: numbers settled, then the user interface told. */
  #onOutbox(item: OutboxItem): void {
    this.#sealing.changed(item);
    this.#onEvent({ kind: "outbox", item });
  }

  #onAck(id: string, seq: number): void {
    const item = this.#outbox.get(id);
    if (!item) return;
    if (item.to !== undefined) {
      // The inbox seq of our own copy: when it comes back in a later direct_since, it is known.
      this.#inbox?.sent(`${this.#home.identity.publicKey.toBase64()}/${id}`, seq);
      this.#scheduleFlush();
    } else {
      const room = this.#joining.room(item.room);
      if (room) {
        room.lastSeq = Math.max(room.lastSeq, seq);
        room.seen.add(id, seq);
        this.#scheduleFlush();
      }
    }
    this.#outbox.ack(id, seq);
  }

  #onError(msg: ServerMessageOf<"error">): void {
    const item = msg.id === undefined ? undefined : this.#outbox.get(msg.id);
    if (item) return this.#sealing.refused(item, msg);
    if (msg.code === "rate_limited") {
      this.#onEvent({ kind: "status", text: "sending too fast: the server is holding your messages back" });
      return;
    }
    this.#onEvent({ kind: "status", text: `server error (${msg.code}): ${msg.message}` });
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

  // ---- direct messages and invitations ------------------------------------------------------------------------

  /**
   * The invitations received (each inviter's latest per room), oldest first.
   *
   * @returns what each invitation offers
   */
  invitations(): InvitationShown[] {
    return this.#inbox?.invitations() ?? [];
  }

  /**
   * Accepts an invitation: checks the inviter's key against the pin, pins the room's parameters exactly as a first
   * join does (a room pinned with other parameters is refused), keeps the secret in the home (so the room is
   * rejoined after a restart), and joins: a challenge that differs from the invitation is refused. When several
   * people invited the user to the room, their invitations are tried in turn (the most trusted inviter, then the
   * newest first) until the server's challenge agrees with one: a stranger's invitation cannot displace a member's.
   *
   * @param room the room (default: the latest invitation's)
   * @returns the join
   * @throws {JoinError} "no_invitation", "changed" (the inviter's key, or the room's parameters), or as join: the
   *   refusal of the first invitation tried
   */
  async accept(room?: string): Promise<Joined> {
    const candidates = this.#inbox?.candidates(room) ?? [];
    if (candidates.length === 0) {
      throw new JoinError(
        "no_invitation",
        room === undefined ? "no invitation to accept" : `no invitation to #${room}`,
      );
    }
    let first: unknown;
    for (const received of candidates) {
      try {
        return await this.#acceptOne(received);
      } catch (err) {
        first ??= err;
        // Only a disagreement with this invitation moves on to the next one; anything else (offline, the server's
        // refusal) would be the same for all.
        if (!(err instanceof JoinError && err.code === "changed")) throw err;
      }
    }
    throw first;
  }

  async #acceptOne({ invitation, shown }: Received): Promise<Joined> {
    if (shown.trust === "changed") {
      throw new JoinError(
        "changed",
        `the invitation to #${invitation.room} is signed by a key of ${shown.from} that differs from the one you ` +
          `pinned: check it (/whois ${shown.from}), /trust ${shown.from} if it is right, then /accept again`,
      );
    }
    const serverPub = this.#greeting!.serverPub;
    const pin = {
      name: invitation.room,
      salt: invitation.salt,
      iterations: invitation.iterations,
      accessPub: invitation.accessPub,
      epoch: invitation.epoch,
    };
    const pinned = this.#home.roomPin(serverPub, invitation.room);
    if (pinned && pinDifferences(pinned, pin).length > 0) {
      throw new JoinError(
        "changed",
        `refusing the invitation to #${invitation.room}: you pinned that room with other parameters; if it was ` +
          `re-created: /forget ${invitation.room}, then /accept again`,
      );
    }
    // Nothing is pinned or kept before the server's challenge agrees with the invitation: an invitation the server
    // refuses (a stranger's, for a room that is not what it says) must not stand in the way of the real room.
    const joined = await this.#joining.joinInvited(pin, invitation.master);
    await this.#home.keepRoomSecret(serverPub, {
      ...pin,
      name: joined.room,
      master: invitation.master,
      source: "invite",
    });
    return { ...joined, invitedBy: shown.from };
  }

  // ---- peers --------------------------------------------------------------------------------------------------

  /**
   * What the client knows of a nick's key: the key the server shows now (looked up, its key-agreement key's
   * signature checked) against the pin.
   *
   * @param nick the nick
   * @returns fingerprints and pin state
   * @throws {JoinError} "unknown_nick", "offline", "bad_reply"
   */
  whois(nick: string): Promise<PeerInfo> {
    return this.#peers!.info(nick);
  }

  /**
   * The safety number of this user and a peer (the peer's pinned key): both compare it out of band.
   *
   * @param nick the peer
   * @returns the 80-digit number in groups of 5, and the peer's canonical nick
   * @throws {JoinError} "unknown_peer" when no key is pinned for the nick yet
   */
  async safetyNumber(nick: string): Promise<{ nick: string; number: string }> {
    const pin = this.#home.peerPin(this.#greeting!.serverPub, nick);
    if (!pin) throw new JoinError("unknown_peer", `no key pinned for ${nick} yet: /whois ${nick} first`);
    return { nick: pin.nick, number: await safetyNumber(this.#home.identity.publicKey, pin.key) };
  }

  /**
   * Marks a peer's pinned key verified (the user compared safety numbers and confirmed).
   *
   * @param nick the peer
   * @returns whether a key was pinned
   */
  verify(nick: string): boolean {
    return this.#home.verifyPeer(this.#greeting!.serverPub, nick);
  }

  /**
   * Trusts the key a peer now shows instead of the pinned one (the user checked it).
   *
   * @param nick the peer
   * @param options.fingerprint the fingerprint the user was shown (refused when another key is offered)
   * @returns the fingerprint now pinned, or undefined when no other key was offered
   */
  async trust(nick: string, options: { fingerprint?: string } = {}): Promise<string | undefined> {
    const serverPub = this.#greeting!.serverPub;
    const pin = this.#home.peerPin(serverPub, nick);
    if (!pin?.offered) return undefined;
    const offered = await fingerprint(pin.offered);
    if (options.fingerprint !== undefined && options.fingerprint !== offered) return undefined;
    this.#home.trustPeer(serverPub, { nick: pin.nick, key: pin.offered });
    this.#recipients.delete(foldName(nick));
    return offered;
  }

  /**
   * Forgets a room's pinned parameters and kept secret (after an operator re-created it), so the next join pins
   * afresh.
   *
   * @param room the room
   * @returns whether anything was pinned or kept
   */
  async forgetRoom(room: string): Promise<boolean> {
    const found = await this.#home.forgetRoom(this.#greeting!.serverPub, room);
    this.#joining.forgetKeys(room);
    return found;
  }

  // ---- losing the connection and coming back ------------------------------------------------------------------

  #onLost(generation: number, error: LinkError): void {
    if (generation !== this.#generation) return;
    this.#replies.failAll(error.message);
    clearInterval(this.#keepalive);
    if (this.#state !== "online") return; // connecting: #open reports it; offline: the reconnect loop does
    this.#state = "offline";
    this.#outbox.rewind();
    this.#outbox.cancelBarriers(new JoinError("offline", "the connection was lost"));
    this.#reconnecting.run(error.message).catch((err) =>
      this.#finish(err instanceof SessionError ? err : new SessionError("closed", String(err)))
    );
  }

  /** After a reconnect: rejoin every room, catch up (live messages held meanwhile), the inbox, then resend. */
  async #rejoin(): Promise<{ missed: number; resent: number }> {
    let missed = 0;
    for (const room of this.#joining.joined) {
      room.held = { items: [], bytes: 0, overflowed: false };
      try {
        await this.#joining.rejoin(room);
        missed += await this.#receiving.catchUp(room);
        // Live again from here: what was held is queued for showing before anything that arrives next.
        const held = room.held.items;
        room.held = undefined;
        missed += await this.#receiving.show(room, held, "live");
      } catch (err) {
        if (err instanceof JoinError && (err.code === "changed" || err.code === "access_denied")) {
          throw new SessionError(
            err.code === "changed" ? "changed" : "denied",
            `rejoining #${room.name}: ${err.message}`,
            { code: err.code },
          );
        }
        throw err;
      } finally {
        room.held = undefined;
      }
    }
    missed += await this.#inbox!.fetch({ first: false });
    const resent = this.#outbox.unsent;
    this.#state = "online";
    this.#startKeepalive(this.limits!.idle_timeout_ms);
    this.#outbox.kick();
    return { missed, resent };
  }

  #scheduleFlush(): void {
    if (this.#flushTimer !== undefined) return;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      this.#flush();
    }, FLUSH_MS);
  }

  #flush(): void {
    try {
      this.#home.flush();
    } catch (err) {
      this.#onEvent({ kind: "status", text: `could not save the ids shown: ${(err as Error).message}` });
    }
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
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    // Counts not yet reported are reported now rather than lost.
    this.#forged.flush();
    this.#reconnecting.wake();
    this.#outbox.close(error);
    this.#replies.failAll(error.message);
    if (this.#greeting) this.#flush();
  }

  /**
   * Says goodbye and closes the connection. Messages not yet stored are not waited for: call {@link drain} first.
   *
   * @param reason sent in the bye
   */
  async close(reason = "quit"): Promise<void> {
    const wasOnline = this.#state === "online";
    // Messages still being opened are given a moment, so that the ids they show are saved.
    let wait: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.#receiving.settled(), new Promise((resolve) => wait = setTimeout(resolve, 1_000))]);
    clearTimeout(wait);
    if (this.#state !== "closed") this.#stop(new SessionError("quit", "the session was closed"));
    const link = this.#link;
    if (link && !link.closed && wasOnline) {
      link.write(encodeMessage({ type: "bye", reason }));
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([link.flushed(), new Promise((resolve) => timer = setTimeout(resolve, 1_000))]);
      clearTimeout(timer);
    }
    link?.close();
    this.#joining.clearKeys();
  }
}
