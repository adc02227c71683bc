/**
 * One client's conversation with a server: connect, hello, join with a proof, send and receive sealed messages,
 * and reconnect without loss. No terminal code: the user interface gets {@link SessionEvent}s and answers
 * {@link JoinHooks}; keys live only in this object's memory.
 *
 * @module
 */

import { decodeBase64 } from "../base64.ts";
import {
  deriveRoomKeys,
  makeSalt,
  openEnvelope,
  OpenError,
  type RoomKeys,
  sealEnvelope,
  signJoinProof,
} from "../crypto.ts";
import { type Envelope, MAX_BODY_BYTES, serializeEnvelope } from "../envelope.ts";
import { encodeFrame, encodeMessage, FrameReader } from "../frame.ts";
import { utf8Length } from "../names.ts";
import {
  type ClientMessage,
  parseRelayedMessage,
  parseServerMessage,
  PROTOCOL_VERSION,
  type RelayedMessage,
  type ServerLimits,
  type ServerMessage,
} from "../protocol.ts";

/** Largest frame the client reads (servers may be configured above the 64 KiB default). */
export const CLIENT_MAX_FRAME = 16 * 1024 * 1024;
/** How long a request waits for its reply before the connection is considered dead. */
const REPLY_TIMEOUT_MS = 30_000;
/** First reconnect delay; doubled on every failure up to {@link RECONNECT_MAX_DELAY_MS}, with ±50% jitter. */
const RECONNECT_FIRST_DELAY_MS = 250;
const RECONNECT_MAX_DELAY_MS = 8_000;
/** How long to keep trying to reconnect before giving up, by default. */
const RECONNECT_GIVE_UP_MS = 60_000;
/** A message refused with storage_failed is sent again after this delay, at most this many times. */
const STORAGE_RETRY_MS = 1_000;
const STORAGE_RETRIES = 5;
/** Message ids remembered per room to show a message delivered twice only once. */
const SEEN_IDS = 100_000;

/** Why the session stopped for good; the client maps it to an exit code. */
export type CloseKind = "connect" | "denied" | "nick" | "closed" | "quit";

/** Raised when the server cannot be reached or refuses the connection; `kind` picks the exit code. */
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

/** Raised when a join fails (wrong passphrase, bad room name, cancelled); the session stays in its old room. */
export class JoinError extends Error {
  /** The server's error code, or "cancelled" when the user gave no passphrase. */
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

/** Raised when a message cannot be sent (too long, not in a room). */
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
  | { kind: "message"; message: ShownMessage }
  | { kind: "older"; room: string; messages: ShownMessage[]; more: boolean }
  | { kind: "forged"; room: string; from: string; seq: number }
  | { kind: "presence"; event: "join" | "leave" | "nick"; room: string; nick: string; old?: string }
  | { kind: "nick"; old: string; new: string }
  | { kind: "unsent"; id: string; reason: string }
  | { kind: "status"; text: string }
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

/** How to reach the server. */
export interface ConnectOptions {
  /** Host name or address. */
  host: string;
  /** Port. */
  port: number;
  /** Connect with TLS. */
  tls?: boolean;
  /** PEM certificates to trust besides the system store. */
  caCerts?: string[];
}

interface Pending {
  envelope: Envelope;
  plaintext: { type: string; body: string };
  storageRetries: number;
}

interface Waiter {
  test: (m: ServerMessage) => boolean;
  resolve: (m: ServerMessage) => void;
  reject: (err: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface RoomState {
  name: string;
  keys: RoomKeys;
  salt: Uint8Array;
  iterations: number;
  /** Highest seq seen in this room (or the server's latest seq at join). */
  lastSeq: number;
  /** Lowest seq shown, for paging back with /history. */
  oldestSeq: number;
  seen: Set<string>;
  seenOrder: string[];
}

/** One socket to the server: framing, serialized writes, and a read loop. */
class Link {
  readonly conn: Deno.Conn;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  get closed(): boolean {
    return this.#closed;
  }

  write(frame: Uint8Array): void {
    if (this.#closed) return;
    this.#writing = this.#writing.then(async () => {
      let at = 0;
      while (at < frame.length && !this.#closed) at += await this.conn.write(frame.subarray(at));
    }).catch(() => this.close());
  }

  async flushed(): Promise<void> {
    await this.#writing;
  }

  async read(onBody: (body: Uint8Array) => void): Promise<string> {
    const reader = new FrameReader({ maxFrame: CLIENT_MAX_FRAME });
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await this.conn.read(buf);
        if (n === null) return "the server closed the connection";
        for (const body of reader.push(buf.subarray(0, n))) onBody(body);
        if (reader.error) throw reader.error;
      }
    } catch (err) {
      return this.#closed ? "closed" : `connection error: ${(err as Error).message.split("\n")[0]}`;
    } finally {
      this.close();
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

/**
 * A chat session with one server. Create it with {@link Session.connect}, then {@link Session.join} a room.
 *
 * @example
 * ```ts
 * const session = await Session.connect({ host: "127.0.0.1", port: 5000 }, { nick: "alice", onEvent: console.log });
 * await session.join("general", { passphrase: () => Promise.resolve("a long shared passphrase") });
 * await session.send("hello");
 * await session.drain();
 * await session.close();
 * ```
 */
export class Session {
  #target: ConnectOptions;
  #nick: string;
  #onEvent: (event: SessionEvent) => void;
  #iterations: number;
  #reconnectForMs: number;
  #link: Link | undefined;
  #limits: ServerLimits | undefined;
  #waiters: Waiter[] = [];
  #room: RoomState | undefined;
  /** Derived keys by room, salt and iterations: memory only, never written anywhere. */
  #keys = new Map<string, RoomKeys>();
  #pending = new Map<string, Pending>();
  #drainers: { resolve: () => void; reject: (err: Error) => void }[] = [];
  /** Serializes the handling of relayed messages, so they are shown in arrival order. */
  #inbound: Promise<void> = Promise.resolve();
  /** Live messages held back while a reconnect catches up with `since`. */
  #held: RelayedMessage[] | undefined;
  #state: "connected" | "reconnecting" | "closed" = "connected";
  #closedError: SessionError | undefined;
  #keepalive: ReturnType<typeof setInterval> | undefined;
  #lastHeard = performance.now();

  private constructor(
    target: ConnectOptions,
    options: { nick: string; onEvent: (event: SessionEvent) => void; iterations: number; reconnectForMs: number },
  ) {
    this.#target = target;
    this.#nick = options.nick;
    this.#onEvent = options.onEvent;
    this.#iterations = options.iterations;
    this.#reconnectForMs = options.reconnectForMs;
  }

  /**
   * Connects and says hello.
   *
   * @param target where the server is
   * @param options.nick the nick to use
   * @param options.onEvent receives every event
   * @param options.iterations PBKDF2 count for rooms this client creates (default 600000)
   * @param options.reconnectForMs how long to keep reconnecting after a loss (default 60 s)
   * @returns the connected session
   * @throws {SessionError} "connect" when unreachable, "nick" when the nick is refused
   */
  static async connect(
    target: ConnectOptions,
    options: {
      nick: string;
      onEvent: (event: SessionEvent) => void;
      iterations?: number;
      reconnectForMs?: number;
    },
  ): Promise<Session> {
    const session = new Session(target, {
      nick: options.nick,
      onEvent: options.onEvent,
      iterations: options.iterations ?? 600_000,
      reconnectForMs: options.reconnectForMs ?? RECONNECT_GIVE_UP_MS,
    });
    await session.#open();
    return session;
  }

  /** The current nick. */
  get nick(): string {
    return this.#nick;
  }

  /** The joined room, if any. */
  get room(): string | undefined {
    return this.#room?.name;
  }

  /** The limits the server announced. */
  get limits(): ServerLimits | undefined {
    return this.#limits;
  }

  /** Messages sent but not yet acknowledged (stored) by the server. */
  get unacked(): number {
    return this.#pending.size;
  }

  /** Whether the session is reconnecting right now. */
  get reconnecting(): boolean {
    return this.#state === "reconnecting";
  }

  async #open(): Promise<void> {
    let conn: Deno.Conn;
    const { host, port } = this.#target;
    try {
      if (this.#target.tls) {
        const tls = await Deno.connectTls({ hostname: host, port, caCerts: this.#target.caCerts });
        await tls.handshake();
        conn = tls;
      } else {
        conn = await Deno.connect({ hostname: host, port });
      }
    } catch (err) {
      const why = (err as Error).message.split("\n")[0];
      throw new SessionError("connect", `cannot connect to ${host}:${port}: ${why}`);
    }
    const link = new Link(conn);
    this.#link = link;
    this.#lastHeard = performance.now();
    link.read((body) => this.#onBody(link, body)).then((reason) => this.#onLost(link, reason));
    link.write(encodeMessage({ type: "hello", version: PROTOCOL_VERSION, nick: this.#nick }));
    let reply: ServerMessage;
    try {
      reply = await this.#expect((m) => m.type === "welcome" || m.type === "error");
    } catch (err) {
      link.close();
      throw new SessionError("connect", `no welcome from ${host}:${port}: ${(err as Error).message}`);
    }
    if (reply.type === "error") {
      link.close();
      const nickProblem = reply.code === "nick_in_use" || reply.code === "nick_invalid";
      throw new SessionError(nickProblem ? "nick" : "connect", `server refused: ${reply.message}`, {
        code: reply.code,
      });
    }
    const welcome = reply as Extract<ServerMessage, { type: "welcome" }>;
    this.#limits = welcome.limits;
    this.#startKeepalive();
  }

  #startKeepalive(): void {
    clearInterval(this.#keepalive);
    const idle = this.#limits?.idle_timeout_ms ?? 120_000;
    const every = Math.max(250, Math.min(30_000, Math.floor(idle / 3)));
    this.#keepalive = setInterval(() => {
      const link = this.#link;
      if (!link || link.closed) return;
      // A server silent for well over its own idle timeout (we ping it every third of it) is gone.
      if (performance.now() - this.#lastHeard > idle + every * 2) {
        link.close();
        return;
      }
      link.write(encodeMessage({ type: "ping" }));
    }, every);
  }

  #send(message: ClientMessage): void {
    this.#link?.write(encodeMessage(message));
  }

  /** Waits for the next message passing `test` (checked before normal handling, which then skips it). */
  #expect(test: (m: ServerMessage) => boolean, timeoutMs = REPLY_TIMEOUT_MS): Promise<ServerMessage> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        test,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          reject(new Error("the server did not answer in time"));
          this.#link?.close();
        }, timeoutMs),
      };
      this.#waiters.push(waiter);
    });
  }

  #failWaiters(reason: string): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.reject(new Error(reason));
    }
  }

  #onBody(link: Link, body: Uint8Array): void {
    if (link !== this.#link) return;
    this.#lastHeard = performance.now();
    let msg: ServerMessage;
    try {
      msg = parseServerMessage(body);
    } catch (err) {
      this.#onEvent({ kind: "status", text: `ignored an invalid message from the server: ${(err as Error).message}` });
      return;
    }
    const i = this.#waiters.findIndex((w) => w.test(msg));
    if (i >= 0) {
      const [waiter] = this.#waiters.splice(i, 1);
      clearTimeout(waiter.timer);
      waiter.resolve(msg);
      return;
    }
    this.#handle(msg);
  }

  #handle(msg: ServerMessage): void {
    switch (msg.type) {
      case "message":
        if (this.#held) this.#held.push(msg);
        else this.#showLive([msg], { history: false });
        return;
      case "ack":
        return this.#acked(msg.id, msg.seq);
      case "error":
        return this.#onError(msg);
      case "presence":
        if (msg.room === this.#room?.name) {
          this.#onEvent({ kind: "presence", event: msg.event, room: msg.room, nick: msg.nick, old: msg.old });
        }
        return;
      case "ping":
        this.#send(msg.data === undefined ? { type: "pong" } : { type: "pong", data: msg.data });
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

  #onError(msg: Extract<ServerMessage, { type: "error" }>): void {
    if (msg.id !== undefined && this.#pending.has(msg.id)) {
      const pending = this.#pending.get(msg.id)!;
      switch (msg.code) {
        case "duplicate_id":
          // Already stored (its ack was lost): as good as an ack.
          return this.#acked(msg.id, undefined);
        case "storage_failed":
          if (pending.storageRetries++ < STORAGE_RETRIES) {
            setTimeout(() => this.#resend(pending), STORAGE_RETRY_MS);
            return;
          }
          break;
        case "sender_mismatch":
          // The nick changed while the message was on its way: seal it again under the new nick, same id.
          if (pending.envelope.from !== this.#nick) {
            this.#reseal(pending).then(() => this.#resend(pending));
            return;
          }
          break;
      }
      this.#pending.delete(msg.id);
      this.#onEvent({ kind: "unsent", id: msg.id, reason: msg.message });
      this.#checkDrained();
      return;
    }
    if (msg.code === "rate_limited") {
      this.#onEvent({ kind: "status", text: "sending too fast: the server is holding your messages back" });
      return;
    }
    this.#onEvent({ kind: "status", text: `server error (${msg.code}): ${msg.message}` });
  }

  #acked(id: string, seq: number | undefined): void {
    if (!this.#pending.delete(id)) return;
    if (seq !== undefined && this.#room) this.#room.lastSeq = Math.max(this.#room.lastSeq, seq);
    this.#checkDrained();
  }

  #checkDrained(): void {
    if (this.#pending.size > 0) return;
    const drainers = this.#drainers;
    this.#drainers = [];
    for (const d of drainers) d.resolve();
  }

  /** Decrypts relayed messages in order and hands them to the user interface. */
  #deliver(items: unknown[], options: { history: boolean }): Promise<ShownMessage[]> {
    const room = this.#room;
    const job = this.#inbound.then(async () => {
      const shown: ShownMessage[] = [];
      if (!room) return shown;
      for (const raw of items) {
        const message = await this.#openRelayed(room, raw, options);
        if (message) shown.push(message);
      }
      return shown;
    });
    this.#inbound = job.then(() => {}, () => {});
    return job;
  }

  async #openRelayed(
    room: RoomState,
    raw: unknown,
    options: { history: boolean },
  ): Promise<ShownMessage | undefined> {
    let item: RelayedMessage;
    try {
      item = parseRelayedMessage(raw);
    } catch {
      const claimed = (raw as { envelope?: { from?: unknown } })?.envelope?.from;
      const seq = (raw as { seq?: unknown })?.seq;
      this.#onEvent({
        kind: "forged",
        room: room.name,
        from: typeof claimed === "string" ? claimed : "(unknown sender)",
        seq: typeof seq === "number" ? seq : 0,
      });
      return undefined;
    }
    const id = item.envelope.id;
    if (this.#pending.has(id)) this.#acked(id, item.seq); // our own, stored before its ack was lost
    if (room.seen.has(id)) return undefined;
    let opened;
    try {
      opened = await openEnvelope(room.keys, { envelope: item.envelope, room: room.name });
    } catch (err) {
      if (!(err instanceof OpenError)) throw err;
      this.#onEvent({ kind: "forged", room: room.name, from: item.envelope.from, seq: item.seq });
      return undefined;
    }
    this.#remember(room, id);
    room.lastSeq = Math.max(room.lastSeq, item.seq);
    room.oldestSeq = Math.min(room.oldestSeq, item.seq);
    const message: ShownMessage = {
      room: room.name,
      seq: item.seq,
      from: opened.from,
      ts: opened.ts,
      id,
      type: opened.plaintext.type === "action" ? "action" : "text",
      text: opened.plaintext.body,
      history: options.history,
    };
    return message;
  }

  #remember(room: RoomState, id: string): void {
    room.seen.add(id);
    room.seenOrder.push(id);
    if (room.seenOrder.length > SEEN_IDS) room.seen.delete(room.seenOrder.shift()!);
  }

  async #showLive(items: unknown[], options: { history: boolean }): Promise<number> {
    const shown = await this.#deliver(items, options);
    for (const message of shown) this.#onEvent({ kind: "message", message });
    return shown.length;
  }

  /**
   * Joins a room, creating it when it does not exist. On success the previous room is left; on failure the
   * session stays where it was.
   *
   * @param room the room name
   * @param hooks asks for the passphrase and shows key derivation
   * @returns what the join found
   * @throws {JoinError} for a wrong passphrase, a bad room name or a cancelled prompt
   */
  async join(room: string, hooks: JoinHooks): Promise<Joined> {
    if (this.#state !== "connected") throw new JoinError("offline", "not connected to the server right now");
    await this.drain({ timeoutMs: 5_000 }).catch(() => {});
    for (let attempt = 0;; attempt++) {
      try {
        return await this.#join(room, hooks, { rejoin: false });
      } catch (err) {
        if (err instanceof JoinError && err.code === "room_changed" && attempt < 2) continue;
        throw err;
      }
    }
  }

  async #join(room: string, hooks: JoinHooks | undefined, options: { rejoin: boolean }): Promise<Joined> {
    const isReply = (m: ServerMessage) => m.type === "error" && m.id === undefined && m.code !== "rate_limited";
    this.#send({ type: "join", room });
    const challenge = await this.#expect((m) => (m.type === "challenge" && m.room === room) || isReply(m))
      .catch((err) => {
        throw new JoinError("offline", `join ${room}: ${err.message}`);
      });
    if (challenge.type === "error") throw new JoinError(challenge.code, challenge.message);
    const { nonce, salt: saltText, iterations: roomIterations } = challenge as Extract<
      ServerMessage,
      { type: "challenge" }
    >;
    const creating = saltText === undefined;
    const previous = this.#room?.name === room ? this.#room : undefined;
    let salt: Uint8Array;
    let iterations: number;
    let keys: RoomKeys | undefined;
    if (!creating) {
      salt = decodeBase64(saltText, { length: 16 });
      iterations = roomIterations!;
      keys = this.#keys.get(keyName(room, salt, iterations));
    } else if (options.rejoin && previous) {
      // The server lost the room (a new database): create it again with the same secrets.
      ({ salt, iterations, keys } = previous);
    } else {
      salt = makeSalt();
      iterations = this.#iterations;
    }
    if (!keys) {
      if (!hooks) throw new JoinError("access_denied", `room ${room} changed on the server: join it again`);
      const passphrase = await hooks.passphrase(room, { creating });
      if (passphrase === undefined) throw new JoinError("cancelled", `join ${room} cancelled`);
      const done = hooks.deriving?.(room, { iterations });
      try {
        keys = await deriveRoomKeys(passphrase, { salt, iterations });
      } finally {
        done?.();
      }
    }
    const proof = await signJoinProof(keys, { nonce: decodeBase64(nonce, { length: 32 }), room, nick: this.#nick });
    const prove: ClientMessage = creating
      ? {
        type: "prove",
        room,
        proof: proof.toBase64(),
        salt: salt.toBase64(),
        iterations,
        access_pub: keys.accessPub.toBase64(),
      }
      : { type: "prove", room, proof: proof.toBase64() };
    this.#send(prove);
    const reply = await this.#expect((m) => (m.type === "joined" && m.room === room) || isReply(m)).catch((err) => {
      throw new JoinError("offline", `join ${room}: ${err.message}`);
    });
    if (reply.type === "error") {
      if (reply.code === "access_denied") this.#keys.delete(keyName(room, salt, iterations));
      throw new JoinError(reply.code, reply.message);
    }
    const joined = reply as Extract<ServerMessage, { type: "joined" }>;
    this.#keys.set(keyName(room, salt, iterations), keys);
    if (options.rejoin && previous) {
      // Keep what was seen; catch up from the last seq with `since` before showing live messages again.
      previous.keys = keys;
      this.#room = previous;
      return { room, members: joined.members, created: creating, history: 0 };
    }
    this.#room = {
      name: room,
      keys,
      salt,
      iterations,
      lastSeq: joined.latest_seq,
      oldestSeq: joined.latest_seq + 1,
      seen: new Set(),
      seenOrder: [],
    };
    const history = await this.#showLive(joined.history, { history: true });
    return { room, members: joined.members, created: creating, history };
  }

  /**
   * Seals and sends a message to the current room. It stays pending until the server acknowledges that it is
   * stored; across a reconnect it is sent again with the same id.
   *
   * @param text what to say
   * @param options.action send as an action (/me)
   * @returns the message as shown to others
   * @throws {SendError} when not in a room or the text is too long
   */
  async send(text: string, options: { action?: boolean } = {}): Promise<ShownMessage> {
    const room = this.#room;
    if (!room) throw new SendError("join a room first");
    if (!text.isWellFormed()) throw new SendError("the text is not well-formed Unicode");
    const bytes = utf8Length(text);
    const max = Math.min(MAX_BODY_BYTES, this.#limits?.max_body ?? MAX_BODY_BYTES);
    if (bytes > max) throw new SendError(`message is ${bytes} bytes; the limit is ${max}`);
    const plaintext = { type: options.action ? "action" : "text", body: text };
    const envelope = await sealEnvelope(room.keys, { room: room.name, from: this.#nick, plaintext });
    const frame = sendFrame(envelope);
    if (frame.length - 4 > (this.#limits?.max_frame ?? Infinity)) {
      throw new SendError(`message is too long for this server (frame limit ${this.#limits!.max_frame} bytes)`);
    }
    this.#remember(room, envelope.id);
    this.#pending.set(envelope.id, { envelope, plaintext, storageRetries: 0 });
    if (this.#state === "connected") this.#link?.write(frame);
    return {
      room: room.name,
      seq: 0,
      from: this.#nick,
      ts: envelope.ts,
      id: envelope.id,
      type: plaintext.type as "text" | "action",
      text,
      history: false,
    };
  }

  async #reseal(pending: Pending): Promise<void> {
    const room = this.#room;
    if (!room || room.name !== pending.envelope.room) return;
    pending.envelope = await sealEnvelope(room.keys, {
      room: room.name,
      from: this.#nick,
      plaintext: pending.plaintext,
      id: decodeBase64(pending.envelope.id),
      ts: pending.envelope.ts,
    });
  }

  #resend(pending: Pending): void {
    if (this.#state !== "connected" || !this.#pending.has(pending.envelope.id)) return;
    this.#link?.write(sendFrame(pending.envelope));
  }

  /**
   * Waits until every message sent has been acknowledged (stored) by the server, across reconnects.
   *
   * @param options.timeoutMs give up after this long (default: wait as long as the session lives)
   * @throws {SessionError} when the session closes first, or an Error on timeout
   */
  drain(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.#pending.size === 0) return Promise.resolve();
    if (this.#closedError) return Promise.reject(this.#closedError);
    return new Promise((resolve, reject) => {
      const drainer = { resolve, reject };
      this.#drainers.push(drainer);
      if (options.timeoutMs !== undefined) {
        const timer = setTimeout(() => {
          this.#drainers = this.#drainers.filter((d) => d !== drainer);
          reject(new Error(`${this.#pending.size} messages not acknowledged after ${options.timeoutMs} ms`));
        }, options.timeoutMs);
        const settle = drainer.resolve;
        drainer.resolve = () => {
          clearTimeout(timer);
          settle();
        };
      }
    });
  }

  /**
   * Lists the members of the current room.
   *
   * @returns their nicks
   */
  async who(): Promise<string[]> {
    const reply = await this.#request({ type: "who" }, "who");
    return (reply as Extract<ServerMessage, { type: "who" }>).members;
  }

  /**
   * Lists the rooms that have members right now.
   *
   * @returns the rooms and their member counts
   */
  async rooms(): Promise<{ name: string; members: number }[]> {
    const reply = await this.#request({ type: "rooms" }, "rooms");
    return (reply as Extract<ServerMessage, { type: "rooms" }>).rooms;
  }

  /**
   * Changes the nick.
   *
   * @param nick the new nick
   * @throws {JoinError} with the server's code when refused (in use, invalid)
   */
  async changeNick(nick: string): Promise<void> {
    const reply = await this.#request({ type: "nick", new: nick }, "nick");
    const answer = reply as Extract<ServerMessage, { type: "nick" }>;
    this.#nick = answer.new;
    this.#onEvent({ kind: "nick", old: answer.old, new: answer.new });
  }

  /**
   * Fetches up to `limit` messages older than the oldest one shown, and delivers them as an "older" event.
   *
   * @param limit how many (at most the server's page size)
   * @returns how many were shown, and whether there are more
   */
  async older(limit: number): Promise<{ shown: number; more: boolean }> {
    const room = this.#room;
    if (!room) throw new SendError("join a room first");
    const page = Math.max(1, Math.min(limit, this.#limits?.history_page ?? 500));
    const reply = await this.#request({ type: "history", before_seq: room.oldestSeq, limit: page }, "history");
    const h = reply as Extract<ServerMessage, { type: "history" }>;
    // Paging back must reach further even past messages already seen.
    for (const raw of h.messages) {
      const seq = (raw as { seq?: unknown }).seq;
      if (typeof seq === "number") room.oldestSeq = Math.min(room.oldestSeq, seq);
    }
    const messages = await this.#deliver(h.messages, { history: true });
    this.#onEvent({ kind: "older", room: room.name, messages, more: h.more });
    return { shown: messages.length, more: h.more };
  }

  async #request(message: ClientMessage, replyType: ServerMessage["type"]): Promise<ServerMessage> {
    if (!this.#link || this.#link.closed || this.#state === "closed") {
      throw new JoinError("offline", "not connected to the server right now");
    }
    const isError = (m: ServerMessage) => m.type === "error" && m.id === undefined && m.code !== "rate_limited";
    this.#send(message);
    const reply = await this.#expect((m) => m.type === replyType || isError(m)).catch((err) => {
      throw new JoinError("offline", err.message);
    });
    if (reply.type === "error") throw new JoinError(reply.code, reply.message);
    return reply;
  }

  /** Fetches everything after the last seen seq, page by page, and shows it. */
  async #catchUp(): Promise<number> {
    const room = this.#room;
    if (!room) return 0;
    let missed = 0;
    for (let page = 0; page < 10_000; page++) {
      const reply = await this.#request({ type: "since", after_seq: room.lastSeq }, "since");
      const s = reply as Extract<ServerMessage, { type: "since" }>;
      const before = room.lastSeq;
      missed += await this.#showLive(s.messages, { history: false });
      for (const raw of s.messages) {
        const seq = (raw as { seq?: unknown }).seq;
        if (typeof seq === "number") room.lastSeq = Math.max(room.lastSeq, seq);
      }
      if (!s.more || room.lastSeq === before) break;
    }
    return missed;
  }

  #onLost(link: Link, reason: string): void {
    if (link !== this.#link) return;
    this.#failWaiters(reason);
    if (this.#state !== "connected") return;
    if (!this.#limits) return; // never welcomed: #open reports it
    this.#state = "reconnecting";
    this.#onEvent({ kind: "status", text: `connection lost (${reason}); reconnecting…` });
    this.#reconnect().catch((err) =>
      this.#finish(err instanceof SessionError ? err : new SessionError("closed", String(err)))
    );
  }

  async #reconnect(): Promise<void> {
    const started = performance.now();
    let delay = RECONNECT_FIRST_DELAY_MS;
    let lastProblem = "";
    while (this.#state === "reconnecting") {
      const left = this.#reconnectForMs - (performance.now() - started);
      // The last try comes at the deadline rather than never.
      const jittered = Math.min(delay * (0.5 + Math.random()), Math.max(left, 0));
      if (left <= 0) {
        throw new SessionError(
          "closed",
          `the server closed the connection and reconnecting gave up after ${
            Math.round((performance.now() - started) / 1000)
          } s (${lastProblem})`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, jittered));
      delay = Math.min(delay * 2, RECONNECT_MAX_DELAY_MS);
      if (this.#state !== "reconnecting") return;
      try {
        await this.#open();
      } catch (err) {
        if (err instanceof SessionError && err.code === "nick_invalid") throw err;
        lastProblem = (err as Error).message;
        continue; // nick_in_use too: the old connection may not be gone yet
      }
      try {
        const room = this.#room;
        this.#held = [];
        if (room) {
          await this.#join(room.name, undefined, { rejoin: true });
        }
        const missed = await this.#catchUp();
        const held = this.#held;
        this.#held = undefined;
        await this.#showLive(held, { history: false });
        this.#state = "connected";
        let resent = 0;
        for (const pending of this.#pending.values()) {
          if (pending.envelope.room !== this.#room?.name) continue;
          if (pending.envelope.from !== this.#nick) await this.#reseal(pending);
          this.#resend(pending);
          resent++;
        }
        this.#onEvent({ kind: "reconnected", room: this.#room?.name, missed, resent });
        return;
      } catch (err) {
        this.#held = undefined;
        if (err instanceof JoinError && err.code === "access_denied") {
          throw new SessionError("denied", `rejoining ${this.#room?.name}: ${err.message}`, { code: err.code });
        }
        lastProblem = (err as Error).message;
        this.#link?.close();
      }
    }
  }

  #finish(error: SessionError): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#closedError = error;
    clearInterval(this.#keepalive);
    this.#link?.close();
    this.#failWaiters(error.message);
    const drainers = this.#drainers;
    this.#drainers = [];
    for (const d of drainers) d.reject(error);
    this.#onEvent({ kind: "closed", error });
  }

  /**
   * Says goodbye and closes the connection. Pending messages are not waited for: call {@link drain} first.
   *
   * @param reason sent in the bye
   */
  async close(reason = "quit"): Promise<void> {
    const wasConnected = this.#state === "connected";
    this.#state = "closed";
    this.#closedError ??= new SessionError("quit", "the session was closed");
    clearInterval(this.#keepalive);
    const link = this.#link;
    if (link && !link.closed && wasConnected) {
      link.write(encodeMessage({ type: "bye", reason }));
      await Promise.race([link.flushed(), new Promise((resolve) => setTimeout(resolve, 1_000))]);
    }
    link?.close();
    this.#failWaiters("the session was closed");
    this.#keys.clear();
  }
}

function keyName(room: string, salt: Uint8Array, iterations: number): string {
  return `${room}\u0000${salt.toBase64()}\u0000${iterations}`;
}

function sendFrame(envelope: Envelope): Uint8Array {
  return encodeFrame(`{"type":"send","envelope":${serializeEnvelope(envelope)}}`);
}
