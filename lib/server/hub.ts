/**
 * The chat core: members, rooms behind join proofs, fan-out, the batched ciphertext log, history and presence.
 * It knows nothing about sockets: a connection hands it parsed messages and a {@link Peer} to send frames to.
 *
 * @module
 */

import { canonicalBase64Length, decodeBase64 } from "../base64.ts";
import { checkIterations, NONCE_BYTES, verifyJoinProof } from "../crypto.ts";
import { type Envelope, serializeEnvelope } from "../envelope.ts";
import { encodeFrame, encodeMessage } from "../frame.ts";
import { NameError, nickKey, validateNick, validateRoom } from "../names.ts";
import { type ClientMessage, type ErrorCode, HISTORY_PAGE, PROTOCOL_VERSION, type ServerLimits } from "../protocol.ts";
import type { Backpressure } from "./backpressure.ts";
import { hostOf } from "./addresses.ts";
import type { Logger } from "./log.ts";
import { TokenBucket } from "./rate_limit.ts";
import {
  type AppendResult,
  type MessageRow,
  type RoomRecord,
  type Store,
  type StoredMessage,
  StoreError,
} from "./store.ts";

/** Server software name sent in the welcome. */
export const SERVER_NAME = "aeschat";
/** Failed join proofs after which a connection is closed. */
export const MAX_DENIED = 5;
/**
 * Most bytes of envelopes in one joined, history or since reply: older (or, for since, newer) messages beyond it
 * are left for the next page, so a reply frame stays far below any send queue.
 */
export const REPLY_BUDGET = 512 * 1024;

/** Where the hub sends one connection's frames. Implementations must never block. */
export interface Peer {
  /** Queues a complete frame for this connection. */
  send(frame: Uint8Array): void;
  /** Sends bye with this reason after what is queued, then closes. */
  close(reason: string, message?: string): void;
}

/** Hub settings. */
export interface HubOptions {
  /** Limits announced in the welcome and enforced here (history). */
  limits: ServerLimits;
  /** Server version, for the welcome. */
  version: string;
  /** Event log. */
  log: Logger;
  /** Clock in ms since the epoch (for tests). */
  now?: () => number;
  /** Told of the fan-out accepted but not yet queued (the turn's batch), so that senders wait while it is large. */
  backpressure?: Pick<Backpressure, "pending">;
  /** Limits on rooms (server flags); none when left out. */
  rooms?: RoomLimits;
}

/** Limits on creating rooms and on what one room may store. */
export interface RoomLimits {
  /** --max-rooms: most rooms the database may hold. */
  maxRooms: number;
  /** --room-create-rate: rooms per hour one connection, or one address, may create after its burst (0: no limit). */
  createPerHour: number;
  /** --room-create-burst: rooms one connection, or one address, may create at once. */
  createBurst: number;
  /** --room-quota: most bytes of envelopes one room may store. */
  quotaBytes: number;
  /** Addresses exempt from the per-address creation limit. */
  exempt?: (host: string) => boolean;
}

/** Address buckets kept before the full (idle) ones are dropped. */
const ADDRESS_BUCKETS_KEPT = 10_000;

/** Bytes a relayed message frame adds to the envelope text (header, type, seq, sent_at). */
const MESSAGE_FRAME_OVERHEAD = 80;

interface PendingJoin {
  room: string;
  nonce: Uint8Array;
  record: RoomRecord | undefined;
}

/** One connected client, as the hub sees it. */
export class Member {
  /** The connection's remote address, for logs. */
  readonly remote: string;
  /** Where frames go. */
  readonly peer: Peer;
  /** Nick, once hello succeeded. */
  nick: string | undefined;
  /** Current room, once a join proof succeeded. */
  room: string | undefined;
  /** An outstanding challenge. */
  pending: PendingJoin | undefined;
  /** Failed join proofs so far. */
  denied = 0;
  /** Rooms whose passphrase this connection has proved (it may have left some of them since). */
  readonly proved: Set<string> = new Set();
  /** This connection's budget for creating rooms (see {@link RoomLimits}). */
  creations: TokenBucket | undefined;
  /** Whether the hub has dropped this member. */
  gone = false;

  /**
   * @param peer where frames go
   * @param remote remote address for logs
   */
  constructor(peer: Peer, remote: string) {
    this.peer = peer;
    this.remote = remote;
  }
}

interface Outgoing {
  member: Member;
  envelope: Envelope;
  text: string;
  msgId: Uint8Array;
}

function relayedJson(m: StoredMessage): string {
  return `{"seq":${m.seq},"sent_at":${m.sentAt},"envelope":${m.envelope}}`;
}

/** How many of `rows`, counted from the end (`fromEnd`) or the start, fit in REPLY_BUDGET (at least one). */
function fitting(rows: StoredMessage[], options: { fromEnd: boolean }): number {
  let bytes = 0;
  for (let k = 0; k < rows.length; k++) {
    bytes += rows[options.fromEnd ? rows.length - 1 - k : k].envelope.length + 40;
    if (bytes > REPLY_BUDGET && k > 0) return k;
  }
  return rows.length;
}

function errorFrame(code: ErrorCode, message: string, id?: string): Uint8Array {
  return encodeMessage(id === undefined ? { type: "error", code, message } : { type: "error", code, message, id });
}

/**
 * The chat core. Feed it members and their messages; it answers through each member's {@link Peer}.
 *
 * @example
 * ```ts
 * const hub = new Hub(Store.open(":memory:"), { limits, version: "0.1.0", log: new Logger() });
 * const alice = hub.attach(peer, "127.0.0.1:50000");
 * await hub.handle(alice, { type: "hello", version: 1, nick: "alice" });
 * ```
 */
export class Hub {
  #store: Store;
  #options: HubOptions;
  #now: () => number;
  #nicks = new Map<string, Member>();
  #rooms = new Map<string, Set<Member>>();
  #members = new Set<Member>();
  /** Attached members that have not proved any room yet. */
  #unproven = 0;
  #batch: Outgoing[] = [];
  /** Fan-out bytes of the batch, as told to the backpressure. */
  #batchFanout = 0;
  /** Envelope bytes of the batch per room, for the storage cap. */
  #batchRoomBytes = new Map<string, number>();
  /** Room creation budgets per address. */
  #addressCreations = new Map<string, TokenBucket>();
  #flushScheduled = false;
  #stopping = false;

  /**
   * @param store the message log
   * @param options limits, version and log
   */
  constructor(store: Store, options: HubOptions) {
    this.#store = store;
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Number of attached members (connections). */
  get size(): number {
    return this.#members.size;
  }

  /** Number of attached members that have not proved any room yet (strangers, and members still joining). */
  get unproven(): number {
    return this.#unproven;
  }

  /**
   * Registers a new connection, before its hello.
   *
   * @param peer where its frames go
   * @param remote its address, for logs
   * @returns its member handle
   */
  attach(peer: Peer, remote: string): Member {
    const member = new Member(peer, remote);
    const limits = this.#options.rooms;
    if (limits !== undefined && limits.createPerHour > 0) {
      member.creations = new TokenBucket({ rate: limits.createPerHour / 3600, burst: limits.createBurst });
    }
    this.#members.add(member);
    this.#unproven++;
    return member;
  }

  /**
   * Removes a member whose connection is gone: leaves its room and frees its nick.
   *
   * @param member the member
   */
  detach(member: Member): void {
    if (member.gone) return;
    member.gone = true;
    if (member.proved.size === 0) this.#unproven--;
    this.#leaveRoom(member);
    if (member.nick !== undefined && this.#nicks.get(nickKey(member.nick)) === member) {
      this.#nicks.delete(nickKey(member.nick));
    }
    this.#members.delete(member);
  }

  /**
   * Handles one parsed message. Returns a promise only for the steps that await crypto (prove); the connection
   * awaits it so that a member's messages are handled in order.
   *
   * @param member who sent it
   * @param msg the message
   */
  handle(member: Member, msg: ClientMessage): void | Promise<void> {
    if (member.gone) return;
    if (member.nick === undefined) {
      if (msg.type !== "hello") return this.#fail(member, "not_ready", "say hello first", { fatal: true });
      return this.#hello(member, msg.version, msg.nick);
    }
    switch (msg.type) {
      case "hello":
        return this.#fail(member, "bad_message", "hello was already accepted", { fatal: true });
      case "send":
        return this.#send(member, msg.envelope);
      case "join":
        return this.#join(member, msg.room);
      case "prove":
        return this.#prove(member, msg);
      case "who":
        return this.#who(member);
      case "rooms":
        return this.#roomList(member);
      case "nick":
        return this.#nick(member, msg.new);
      case "history":
        return this.#history(member, msg.before_seq, msg.limit ?? HISTORY_PAGE);
      case "since":
        return this.#since(member, msg.after_seq, msg.limit ?? HISTORY_PAGE);
      case "ping":
        return member.peer.send(
          encodeMessage(msg.data === undefined ? { type: "pong" } : { type: "pong", data: msg.data }),
        );
      case "pong":
        return;
      case "bye":
        this.#options.log.info("quit", { remote: member.remote, nick: member.nick });
        return member.peer.close("quit", "goodbye");
    }
  }

  /**
   * Stores and relays everything received so far, now. Normally called once per event-loop turn by itself.
   */
  flush(): void {
    this.#flushScheduled = false;
    const batch = this.#batch;
    if (batch.length === 0) return;
    this.#batch = [];
    const fanout = this.#batchFanout;
    this.#batchFanout = 0;
    this.#batchRoomBytes.clear();
    const sentAt = this.#now();
    const first = this.#store.lastSeq + 1;
    const rows: MessageRow[] = batch.map((o, i) => ({
      seq: first + i,
      room: o.envelope.room,
      sender: o.envelope.from,
      msgId: o.msgId,
      sentAt,
      envelope: o.text,
    }));
    let results: AppendResult[];
    let threw = false;
    try {
      results = this.#store.appendBatch(rows);
    } catch (err) {
      threw = true;
      const why = err instanceof StoreError ? err.message : String(err);
      this.#options.log.error("storage_failed", { messages: batch.length, reason: why });
      results = batch.map(() => "failed");
    }
    let failed = 0;
    for (let i = 0; i < batch.length; i++) {
      const o = batch[i];
      if (results[i] !== "stored") {
        const [code, message] = results[i] === "duplicate"
          ? ["duplicate_id" as const, "a message with this id is already stored in this room"]
          : ["storage_failed" as const, "the message was not stored; send it again"];
        if (code === "storage_failed") failed++;
        o.member.peer.send(errorFrame(code, message, o.envelope.id));
        continue;
      }
      const seq = rows[i].seq;
      if (!o.member.gone) o.member.peer.send(encodeFrame(`{"type":"ack","id":"${o.envelope.id}","seq":${seq}}`));
      const members = this.#rooms.get(o.envelope.room);
      if (!members) continue;
      const frame = encodeFrame(`{"type":"message","seq":${seq},"sent_at":${sentAt},"envelope":${o.text}}`);
      for (const m of members) if (m !== o.member) m.peer.send(frame);
    }
    if (failed > 0 && !threw) {
      this.#options.log.error("storage_failed", { messages: failed, reason: "an insert changed nothing" });
    }
    // Queued now (or refused): the bytes are counted on the connections' queues instead.
    if (fanout > 0) this.#options.backpressure?.pending(-fanout);
  }

  /**
   * Begins a shutdown: stores what is pending, then says bye to every member.
   */
  shutdown(): void {
    this.#stopping = true;
    this.flush();
    for (const m of this.#members) m.peer.close("shutting_down", "the server is shutting down");
  }

  #fail(member: Member, code: ErrorCode, message: string, options: { fatal?: boolean; id?: string } = {}): void {
    member.peer.send(errorFrame(code, message, options.id));
    if (options.fatal) member.peer.close(code, message);
  }

  #hello(member: Member, version: number, nick: string): void {
    if (version !== PROTOCOL_VERSION) {
      return this.#fail(member, "version_unsupported", `protocol version ${version} is not supported; use 1`, {
        fatal: true,
      });
    }
    try {
      validateNick(nick);
    } catch (err) {
      if (!(err instanceof NameError)) throw err;
      this.#options.log.warn("hello_refused", { remote: member.remote, code: "nick_invalid" });
      return this.#fail(member, "nick_invalid", err.message, { fatal: true });
    }
    if (this.#nicks.has(nickKey(nick))) {
      this.#options.log.warn("hello_refused", { remote: member.remote, nick, code: "nick_in_use" });
      return this.#fail(member, "nick_in_use", `the nick ${nick} is in use`, { fatal: true });
    }
    member.nick = nick;
    this.#nicks.set(nickKey(nick), member);
    this.#options.log.info("hello", { remote: member.remote, nick });
    member.peer.send(encodeMessage({
      type: "welcome",
      server: SERVER_NAME,
      version: PROTOCOL_VERSION,
      server_version: this.#options.version,
      nick,
      limits: this.#options.limits,
    }));
  }

  #join(member: Member, room: string): void {
    try {
      validateRoom(room);
    } catch (err) {
      if (!(err instanceof NameError)) throw err;
      return this.#fail(member, "room_invalid", err.message);
    }
    const record = this.#store.getRoom(room);
    // A room that would be created: say now if it cannot be, before the client derives its keys for nothing.
    if (!record && this.#refuseCreation(member, room)) return;
    const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
    member.pending = { room, nonce, record };
    const challenge: Record<string, unknown> = { type: "challenge", room, nonce: nonce.toBase64() };
    if (record) {
      challenge.salt = record.salt.toBase64();
      challenge.iterations = record.iterations;
    }
    member.peer.send(encodeMessage(challenge));
  }

  async #prove(member: Member, msg: Extract<ClientMessage, { type: "prove" }>): Promise<void> {
    const pending = member.pending;
    if (!pending || pending.room !== msg.room) {
      return this.#fail(member, "no_challenge", `no outstanding challenge for room ${msg.room}; send join first`);
    }
    member.pending = undefined;
    const creating = msg.salt !== undefined || msg.iterations !== undefined || msg.access_pub !== undefined;
    let accessPub: Uint8Array;
    let created: RoomRecord | undefined;
    if (pending.record) {
      if (creating) return this.#fail(member, "bad_create", `room ${msg.room} already exists; send only the proof`);
      accessPub = pending.record.accessPub;
    } else {
      if (!creating) {
        return this.#fail(member, "bad_create", `room ${msg.room} is new: send salt, iterations and access_pub`);
      }
      const problem = this.#createProblem(msg);
      if (problem) return this.#fail(member, "bad_create", problem);
      if (this.#refuseCreation(member, msg.room)) return;
      accessPub = decodeBase64(msg.access_pub!);
      created = {
        name: msg.room,
        salt: decodeBase64(msg.salt!),
        iterations: msg.iterations!,
        accessPub,
        createdAt: this.#now(),
      };
    }
    let proof: Uint8Array | undefined;
    try {
      proof = decodeBase64(msg.proof, { length: 64 });
    } catch {
      proof = undefined;
    }
    const ok = proof !== undefined &&
      await verifyJoinProof(accessPub, { proof, nonce: pending.nonce, room: msg.room, nick: member.nick! });
    if (member.gone || this.#stopping) return;
    if (!ok) {
      member.denied++;
      this.#options.log.warn("denied", { remote: member.remote, nick: member.nick, room: msg.room });
      return this.#fail(member, "access_denied", `access to room ${msg.room} denied: wrong passphrase`, {
        fatal: member.denied >= MAX_DENIED,
      });
    }
    if (created) {
      if (this.#refuseCreation(member, msg.room)) return;
      if (!this.#store.createRoom(created)) {
        return this.#fail(member, "room_changed", `room ${msg.room} was just created by someone else; join again`);
      }
      member.creations?.take();
      this.#addressBucket(member)?.take();
      this.#options.log.info("room_created", { remote: member.remote, nick: member.nick, room: msg.room });
    }
    this.#enterRoom(member, msg.room);
  }

  /** Refuses (and answers) the creation of a room over --max-rooms or the creation budgets; returns whether it did. */
  #refuseCreation(member: Member, room: string): boolean {
    const limits = this.#options.rooms;
    if (limits === undefined) return false;
    if (this.#store.roomCount >= limits.maxRooms) {
      this.#options.log.warn("limit", { remote: member.remote, nick: member.nick, limit: "max_rooms", room });
      this.#fail(
        member,
        "room_limit",
        `room ${room} cannot be created: the server already holds its ${limits.maxRooms} rooms (--max-rooms)`,
      );
      return true;
    }
    const byConnection = member.creations?.peek() ?? 0;
    const byAddress = this.#addressBucket(member)?.peek() ?? 0;
    const wait = Math.max(byConnection, byAddress);
    if (wait === 0) return false;
    const from = byConnection >= byAddress ? "this connection" : "your address";
    this.#options.log.warn("limit", { remote: member.remote, nick: member.nick, limit: "room_create_rate", room });
    member.peer.send(encodeMessage({
      type: "error",
      code: "create_limited",
      message: `room ${room} cannot be created now: too many rooms were created from ${from} ` +
        `(--room-create-burst ${limits.createBurst}, --room-create-rate ${limits.createPerHour} an hour); ` +
        `try again in ${Math.ceil(wait / 1000)} s`,
      retry_after_ms: wait,
    }));
    return true;
  }

  /** The room creation budget of a member's address (none when exempt or unlimited). */
  #addressBucket(member: Member): TokenBucket | undefined {
    const limits = this.#options.rooms;
    if (limits === undefined || limits.createPerHour <= 0) return undefined;
    const host = hostOf(member.remote);
    if (limits.exempt?.(host)) return undefined;
    let bucket = this.#addressCreations.get(host);
    if (bucket === undefined) {
      if (this.#addressCreations.size >= ADDRESS_BUCKETS_KEPT) {
        for (const [h, b] of this.#addressCreations) if (b.full) this.#addressCreations.delete(h);
      }
      bucket = new TokenBucket({ rate: limits.createPerHour / 3600, burst: limits.createBurst });
      this.#addressCreations.set(host, bucket);
    }
    return bucket;
  }

  #createProblem(msg: Extract<ClientMessage, { type: "prove" }>): string | undefined {
    if (msg.salt === undefined || canonicalBase64Length(msg.salt) !== 16) return "salt must be 16 bytes of base64";
    try {
      checkIterations(msg.iterations);
    } catch (err) {
      return (err as Error).message;
    }
    if (msg.access_pub === undefined || canonicalBase64Length(msg.access_pub) !== 32) {
      return "access_pub must be 32 bytes of base64";
    }
    return undefined;
  }

  #enterRoom(member: Member, room: string): void {
    this.#leaveRoom(member);
    // Pending messages are stored first, so the history read below and later fan-out never overlap or miss.
    this.flush();
    let members = this.#rooms.get(room);
    if (!members) {
      members = new Set();
      this.#rooms.set(room, members);
    }
    const presence = encodeMessage({ type: "presence", event: "join", room, nick: member.nick });
    for (const m of members) m.peer.send(presence);
    members.add(member);
    member.room = room;
    if (member.proved.size === 0) this.#unproven--;
    member.proved.add(room);
    const recent = this.#store.recent(room, this.#options.limits.history);
    const history = recent.slice(recent.length - fitting(recent, { fromEnd: true }));
    const names = [...members].map((m) => m.nick!);
    member.peer.send(encodeFrame(
      `{"type":"joined","room":${JSON.stringify(room)},"members":${JSON.stringify(names)},"history":[${
        history.map(relayedJson).join(",")
      }],"latest_seq":${this.#store.lastSeq}}`,
    ));
    this.#options.log.info("join", { remote: member.remote, nick: member.nick, room });
  }

  #leaveRoom(member: Member): void {
    const room = member.room;
    if (room === undefined) return;
    member.room = undefined;
    const members = this.#rooms.get(room);
    if (!members) return;
    members.delete(member);
    if (members.size === 0) {
      this.#rooms.delete(room);
    } else {
      const presence = encodeMessage({ type: "presence", event: "leave", room, nick: member.nick });
      for (const m of members) m.peer.send(presence);
    }
    this.#options.log.info("leave", { remote: member.remote, nick: member.nick, room });
  }

  #send(member: Member, envelope: Envelope): void {
    const id = envelope.id;
    if (member.room === undefined) return this.#fail(member, "not_ready", "join a room before sending", { id });
    if (envelope.room !== member.room) {
      return this.#fail(member, "room_mismatch", `envelope.room must be your current room ${member.room}`, { id });
    }
    if (envelope.from !== member.nick) {
      return this.#fail(member, "sender_mismatch", `envelope.from must be your nick ${member.nick}`, { id });
    }
    const text = serializeEnvelope(envelope);
    const quota = this.#options.rooms?.quotaBytes;
    if (quota !== undefined) {
      const batched = this.#batchRoomBytes.get(member.room) ?? 0;
      if (this.#store.roomBytes(member.room) + batched + text.length > quota) {
        this.#options.log.warn("limit", { remote: member.remote, nick: member.nick, limit: "room_quota" });
        return this.#fail(
          member,
          "room_full",
          `room ${member.room} holds its ${quota} bytes (--room-quota): the message was not stored; an operator ` +
            `can raise the cap, set --retention, or delete the room`,
          { id },
        );
      }
      this.#batchRoomBytes.set(member.room, batched + text.length);
    }
    this.#batch.push({ member, envelope, text, msgId: Uint8Array.fromBase64(id) });
    const backpressure = this.#options.backpressure;
    if (backpressure !== undefined) {
      const fanout = (text.length + MESSAGE_FRAME_OVERHEAD) *
        Math.max(0, (this.#rooms.get(member.room)?.size ?? 1) - 1);
      this.#batchFanout += fanout;
      backpressure.pending(fanout);
    }
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      // setImmediate runs after the I/O callbacks of this event-loop turn (a setTimeout of 0 costs 1-4 ms).
      setImmediate(() => this.flush());
    }
  }

  #who(member: Member): void {
    if (member.room === undefined) return this.#fail(member, "not_ready", "join a room first");
    const names = [...this.#rooms.get(member.room) ?? []].map((m) => m.nick!);
    member.peer.send(encodeMessage({ type: "who", room: member.room, members: names }));
  }

  #roomList(member: Member): void {
    // Only rooms this connection has proved: a stranger learns nothing of which rooms exist or who is in them.
    const rooms = [];
    for (const name of member.proved) {
      const members = this.#rooms.get(name)?.size ?? 0;
      if (members > 0) rooms.push({ name, members });
    }
    member.peer.send(encodeMessage({ type: "rooms", rooms }));
  }

  #nick(member: Member, nick: string): void {
    const old = member.nick!;
    try {
      validateNick(nick);
    } catch (err) {
      if (!(err instanceof NameError)) throw err;
      return this.#fail(member, "nick_invalid", err.message);
    }
    const holder = this.#nicks.get(nickKey(nick));
    if (holder && holder !== member) return this.#fail(member, "nick_in_use", `the nick ${nick} is in use`);
    this.#nicks.delete(nickKey(old));
    this.#nicks.set(nickKey(nick), member);
    member.nick = nick;
    member.peer.send(encodeMessage({ type: "nick", old, new: nick }));
    this.#options.log.info("nick", { remote: member.remote, nick, old });
    if (member.room === undefined) return;
    const presence = encodeMessage({ type: "presence", event: "nick", room: member.room, nick, old });
    for (const m of this.#rooms.get(member.room) ?? []) if (m !== member) m.peer.send(presence);
  }

  #history(member: Member, beforeSeq: number, limit: number): void {
    if (member.room === undefined) return this.#fail(member, "not_ready", "join a room first");
    // Like since: messages of this turn are stored first, so a page never misses one that was already acked.
    this.flush();
    const n = Math.min(Math.max(limit, 1), HISTORY_PAGE);
    const rows = this.#store.before(member.room, { beforeSeq, limit: n + 1 });
    const all = rows.length > n ? rows.slice(1) : rows;
    const page = all.slice(all.length - fitting(all, { fromEnd: true }));
    const more = rows.length > page.length;
    member.peer.send(encodeFrame(
      `{"type":"history","room":${JSON.stringify(member.room)},"before_seq":${beforeSeq},"messages":[${
        page.map(relayedJson).join(",")
      }],"more":${more}}`,
    ));
  }

  #since(member: Member, afterSeq: number, limit: number): void {
    if (member.room === undefined) return this.#fail(member, "not_ready", "join a room first");
    this.flush();
    const n = Math.min(Math.max(limit, 1), HISTORY_PAGE);
    const rows = this.#store.after(member.room, { afterSeq, limit: n + 1 });
    const page = rows.slice(0, Math.min(n, fitting(rows, { fromEnd: false })));
    const more = rows.length > page.length;
    member.peer.send(encodeFrame(
      `{"type":"since","room":${JSON.stringify(member.room)},"after_seq":${afterSeq},"messages":[${
        page.map(relayedJson).join(",")
      }],"more":${more}}`,
    ));
  }
}
