/**
 * The chat core: the opening of each connection (server key, login, nick registry), rooms behind join proofs with
 * several rooms per connection, fan-out, the batched ciphertext log, history and presence. It knows nothing about
 * sockets: a connection hands it parsed messages and a {@link Peer} to send frames to.
 *
 * @module
 */

import { canonicalBase64Length, decodeBase64 } from "../base64.ts";
import { checkIterations, importEd25519Seed, NONCE_BYTES, verifyJoinProof } from "../crypto.ts";
import { type DirectEnvelope, serializeDirectEnvelope } from "../direct.ts";
import { type Envelope, serializeEnvelope } from "../envelope.ts";
import { encodeFrame, encodeMessage } from "../frame.ts";
import { foldName, NameError, validateNick, validateRoom } from "../names.ts";
import {
  type ClientMessage,
  type ClientMessageOf,
  type ErrorCode,
  HISTORY_PAGE,
  type MemberInfo,
  ProtocolError,
  type ServerLimits,
} from "../protocol.ts";
import type { Backpressure } from "./backpressure.ts";
import { hostOf, limitKeyOf } from "./addresses.ts";
import { answerHello, type Nonces, type ServerKey, verifyLogin } from "./handshake.ts";
import { type DirectPair, type DirectResult, Inboxes } from "./inbox.ts";
import type { Logger } from "./log.ts";
import { TokenBucket } from "./rate_limit.ts";
import { RegistrationError, Registry, type RegistryOptions } from "./registry.ts";
import {
  type AppendResult,
  type MessageRow,
  type Retention,
  type RoomRecord,
  type Store,
  type StoredMessage,
  StoreError,
} from "./store.ts";

export { SERVER_NAME } from "./handshake.ts";

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
  /** Limits announced in the welcome and enforced here (history, rooms per connection). */
  limits: ServerLimits;
  /** Server version, for the `server` message. */
  version: string;
  /** Event log. */
  log: Logger;
  /** Clock in ms since the epoch (for tests). */
  now?: () => number;
  /** Told of the fan-out accepted but not yet queued (the turn's batch), so that senders wait while it is large. */
  backpressure?: Pick<Backpressure, "pending">;
  /** Limits on rooms (server flags); none when left out. */
  rooms?: RoomLimits;
  /** The nick registry's rules (server flags); the defaults when left out. */
  registry?: RegistryOptions;
  /** Direct messages: --direct-inbox and the retention that applies to inboxes. */
  direct?: { capacity?: number; retention?: Retention };
}

/** Limits on creating rooms and on what one room may store. */
export interface RoomLimits {
  /** --max-rooms: most rooms the database may hold. */
  maxRooms: number;
  /**
   * --room-create-rate: rooms per hour one connection, or one address (an IPv6 /64 counting as one, see
   * `limitKeyOf`), may create after its burst (0: no limit).
   */
  createPerHour: number;
  /** --room-create-burst: rooms one connection, or one address, may create at once. */
  createBurst: number;
  /** --room-quota: most bytes of envelopes one room may store. */
  quotaBytes: number;
  /** Addresses exempt from the per-address creation limit (asked with the connection's own address). */
  exempt?: (host: string) => boolean;
}

/** Address buckets kept before the full (idle) ones are dropped. */
const ADDRESS_BUCKETS_KEPT = 10_000;

/** Bytes a relayed message frame adds to the envelope text (header, type, seq, sent_at). */
const MESSAGE_FRAME_OVERHEAD = 80;

interface PendingJoin {
  /** The canonical name (the stored one, or the one asked for when the room is new). */
  room: string;
  nonce: Uint8Array;
  record: RoomRecord | undefined;
}

/** Where a connection is in its opening. */
type Stage = "new" | "greeting" | "greeted" | "checking" | "ready";

/** One connected client, as the hub sees it. */
export class Member {
  /** The connection's remote address, for logs. */
  readonly remote: string;
  /** Where frames go. */
  readonly peer: Peer;
  /** Where the opening stands: hello, then login. */
  stage: Stage = "new";
  /** The nonces of the opening, between hello and login. */
  nonces: Nonces | undefined;
  /** Canonical nick, once the login succeeded. */
  nick: string | undefined;
  /** The identity key the connection logged in with. */
  key: Uint8Array | undefined;
  /** The identity key in base64, as member lists and presence show it. */
  keyText = "";
  /** The rooms this connection is in, by canonical name. */
  readonly rooms: Set<string> = new Set();
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

/** A direct message accepted this turn, waiting for its commit. */
interface OutgoingDirect {
  member: Member;
  id: string;
  /** The sender's and recipient's keys, base64 (the hub's identity map is keyed so). */
  senderKey: string;
  recipientKey: string;
  /** The recipient's canonical nick (for an error about its inbox). */
  to: string;
  pair: DirectPair;
}

/** Bytes a direct frame adds to the envelope text. */
const DIRECT_FRAME_OVERHEAD = 100;

/** The fields a direct envelope and its copy must share. */
const SHARED_FIELDS = ["from", "to", "id", "ts", "key", "tokey", "kx"] as const;

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

/** A direct message being handed to its recipient: its rows, and whom to tell (the sender's key, base64) of what id. */
interface Handover {
  pair: Pick<DirectPair, "recipient" | "sender" | "msgId">;
  sender: string;
  id: string;
}

function errorFrame(code: ErrorCode, message: string, id?: string): Uint8Array {
  return encodeMessage(id === undefined ? { type: "error", code, message } : { type: "error", code, message, id });
}

/** The members of a room as lists show them: each nick once (two devices of one identity are one entry). */
function memberList(members: Iterable<Member>): MemberInfo[] {
  const seen = new Map<string, MemberInfo>();
  for (const m of members) seen.set(`${m.nick}\u0000${m.keyText}`, { nick: m.nick!, key: m.keyText });
  return [...seen.values()];
}

/** Whether any of `members` other than `except` uses this nick. */
function holds(members: Iterable<Member>, nick: string, except: Member): boolean {
  for (const m of members) if (m !== except && m.nick === nick) return true;
  return false;
}

/**
 * The chat core. Feed it members and their messages; it answers through each member's {@link Peer}.
 *
 * @example
 * ```ts
 * const hub = new Hub(Store.open(":memory:"), { limits, version: "0.1.0", log: new Logger() });
 * const alice = hub.attach(peer, "127.0.0.1:50000");
 * await hub.handle(alice, { type: "hello", version: 2, nonce });
 * ```
 */
export class Hub {
  #store: Store;
  #options: HubOptions;
  #now: () => number;
  #serverKey: Promise<ServerKey>;
  #registry: Registry;
  #inboxes: Inboxes;
  /** Connections that logged in, by identity key (base64): where direct messages and `delivered` go. */
  #identities = new Map<string, Set<Member>>();
  #directBatch: OutgoingDirect[] = [];
  /** Connections that logged in, by folded nick. */
  #nicks = new Map<string, Set<Member>>();
  #rooms = new Map<string, Set<Member>>();
  #members = new Set<Member>();
  /** Attached members that have not proved any room yet. */
  #unproven = 0;
  #batch: Outgoing[] = [];
  /** Fan-out bytes of the batch, as told to the backpressure. */
  #batchFanout = 0;
  /** Envelope bytes of the batch per room, for the storage cap. */
  #batchRoomBytes = new Map<string, number>();
  /** Room creation budgets per address key (`limitKeyOf`: an IPv6 /64 is one). */
  #addressCreations = new Map<string, TokenBucket>();
  #flushScheduled = false;
  #stopping = false;

  /**
   * @param store the message log (its database also holds the server key and the registry)
   * @param options limits, version and log
   */
  constructor(store: Store, options: HubOptions) {
    this.#store = store;
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#serverKey = importEd25519Seed(store.serverSeed);
    this.#inboxes = new Inboxes(store, options.direct);
    this.#registry = new Registry(store, {
      now: this.#now,
      ...options.registry,
      rotated: (oldKey, newKey) => this.#inboxes.rotate(oldKey, newKey),
    });
  }

  /** Number of attached members (connections). */
  get size(): number {
    return this.#members.size;
  }

  /** Number of attached members that have not proved any room yet (strangers, and members still joining). */
  get unproven(): number {
    return this.#unproven;
  }

  /** The nick registry (for tests and the admin side). */
  get registry(): Registry {
    return this.#registry;
  }

  /** The direct-message inboxes (the listener applies the retention to them). */
  get inboxes(): Inboxes {
    return this.#inboxes;
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
   * Removes a member whose connection is gone: leaves its rooms and frees its nick.
   *
   * @param member the member
   */
  detach(member: Member): void {
    if (member.gone) return;
    member.gone = true;
    if (member.proved.size === 0) this.#unproven--;
    for (const room of [...member.rooms]) this.#leaveRoom(member, room);
    if (member.nick !== undefined) this.#forgetNick(member, member.nick);
    const devices = this.#identities.get(member.keyText);
    devices?.delete(member);
    if (devices?.size === 0) this.#identities.delete(member.keyText);
    this.#members.delete(member);
  }

  /**
   * Handles one parsed message. Returns a promise for the steps that await crypto (hello, login, prove); the
   * connection awaits it so that a member's messages are handled in order.
   *
   * @param member who sent it
   * @param msg the message
   */
  handle(member: Member, msg: ClientMessage): void | Promise<void> {
    if (member.gone) return;
    if (member.stage !== "ready") return this.#opening(member, msg);
    switch (msg.type) {
      case "hello":
      case "login":
        return this.#fail(member, "bad_message", `${msg.type} was already accepted`, { fatal: true });
      case "send":
        return this.#send(member, msg.envelope);
      case "join":
        return this.#join(member, msg.room);
      case "prove":
        return this.#prove(member, msg);
      case "part":
        return this.#part(member, msg.room);
      case "who":
        return this.#who(member, msg.room);
      case "rooms":
        return this.#roomList(member);
      case "nick":
        return this.#nick(member, msg.new);
      case "history":
        return this.#history(member, msg);
      case "since":
        return this.#since(member, msg);
      case "lookup":
        return this.#lookup(member, msg.nick);
      case "direct":
        return this.#direct(member, msg);
      case "direct_since":
        return this.#directSince(member, msg);
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
    const fanout = this.#batchFanout;
    this.#batchFanout = 0;
    this.#flushRooms();
    this.#flushDirect();
    // Queued now (or refused): the bytes are counted on the connections' queues instead.
    if (fanout > 0) this.#options.backpressure?.pending(-fanout);
  }

  #flushRooms(): void {
    const batch = this.#batch;
    if (batch.length === 0) return;
    this.#batch = [];
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
      // Every connection in the room but the sending one: the sender's other devices see it too.
      const frame = encodeFrame(`{"type":"message","seq":${seq},"sent_at":${sentAt},"envelope":${o.text}}`);
      for (const m of members) if (m !== o.member) m.peer.send(frame);
    }
    if (failed > 0 && !threw) {
      this.#options.log.error("storage_failed", { messages: failed, reason: "an insert changed nothing" });
    }
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

  /** hello, then login: anything else, or either out of turn, closes the connection. */
  async #opening(member: Member, msg: ClientMessage): Promise<void> {
    const expected = member.stage === "new" ? "hello" : member.stage === "greeted" ? "login" : undefined;
    if (msg.type !== expected) {
      const [code, why] = msg.type === "hello" || msg.type === "login"
        ? ["bad_message" as const, `${msg.type} out of order: hello, then login`]
        : ["not_ready" as const, "log in first: hello, then login"];
      return this.#fail(member, code, why, { fatal: true });
    }
    member.stage = msg.type === "hello" ? "greeting" : "checking";
    try {
      if (msg.type === "hello") await this.#hello(member, msg);
      else await this.#login(member, msg);
    } catch (err) {
      if (!(err instanceof ProtocolError || err instanceof RegistrationError || err instanceof StoreError)) throw err;
      if (member.gone) return;
      const code = err instanceof StoreError ? "storage_failed" : err.code;
      this.#options.log.warn("login_refused", { remote: member.remote, code });
      this.#fail(member, code, err.message, { fatal: true });
    }
  }

  async #hello(member: Member, msg: ClientMessageOf<"hello">): Promise<void> {
    const { reply, nonces } = await answerHello(msg, { key: await this.#serverKey, version: this.#options.version });
    if (member.gone) return;
    member.nonces = nonces;
    member.stage = "greeted";
    member.peer.send(encodeMessage(reply));
  }

  async #login(member: Member, msg: ClientMessageOf<"login">): Promise<void> {
    const serverPub = (await this.#serverKey).publicKey;
    const login = await verifyLogin(msg, { serverPub, nonces: member.nonces! });
    if (member.gone) return;
    const claim = await this.#registry.login(login.nick, login, {
      host: hostOf(member.remote),
      inUse: (fold) => (this.#nicks.get(fold)?.size ?? 0) > 0,
    });
    if (claim.replaced !== undefined) this.#cutReplaced(claim.replaced, claim.nick);
    if (member.gone || this.#stopping) return;
    member.nonces = undefined;
    member.key = login.key;
    member.keyText = login.key.toBase64();
    member.nick = claim.nick;
    member.stage = "ready";
    this.#holdNick(member, claim.nick);
    let devices = this.#identities.get(member.keyText);
    if (devices === undefined) this.#identities.set(member.keyText, devices = new Set());
    devices.add(member);
    this.#options.log.info("login", { remote: member.remote, nick: claim.nick, registered: claim.registered });
    member.peer.send(encodeMessage({
      type: "welcome",
      nick: claim.nick,
      registered: claim.registered,
      limits: this.#options.limits,
      direct_seq: this.#inboxes.latestSeq(login.key),
    }));
  }

  /**
   * Closes the connections logged in with a key that a rotation statement replaced: the nicks they use now belong to
   * the new key, so a thief holding a leaked old key does not go on speaking as its owner.
   */
  #cutReplaced(oldKey: Uint8Array, nick: string): void {
    const connections = [...this.#identities.get(oldKey.toBase64()) ?? []];
    if (connections.length === 0) return;
    const why = "your identity key was replaced by a rotation: your nicks are registered to the new key";
    for (const m of connections) this.#fail(m, "nick_registered", why, { fatal: true });
    this.#options.log.warn("key_rotated", { nick, closed: connections.length });
  }

  #holdNick(member: Member, nick: string): void {
    const fold = foldName(nick);
    let holders = this.#nicks.get(fold);
    if (holders === undefined) this.#nicks.set(fold, holders = new Set());
    holders.add(member);
  }

  #forgetNick(member: Member, nick: string): void {
    const fold = foldName(nick);
    const holders = this.#nicks.get(fold);
    holders?.delete(member);
    if (holders?.size === 0) this.#nicks.delete(fold);
  }

  /** The canonical name of the room this connection is in that `name` stands for (any spelling), if any. */
  #roomOf(member: Member, name: string): string | undefined {
    if (member.rooms.has(name)) return name;
    const fold = foldName(name);
    for (const room of member.rooms) if (foldName(room) === fold) return room;
    return undefined;
  }

  /** Answers not_in_room and returns undefined, or returns the canonical name of a room the member is in. */
  #inRoom(member: Member, name: string, what: string): string | undefined {
    const room = this.#roomOf(member, name);
    if (room === undefined) this.#fail(member, "not_in_room", `${what}: you are not in room ${name}; join it first`);
    return room;
  }

  /** Refuses (and answers) a join that would take the member past --max-rooms-per-connection. */
  #tooManyRooms(member: Member, room: string): boolean {
    const max = this.#options.limits.max_rooms;
    if (member.rooms.has(room) || member.rooms.size < max) return false;
    this.#fail(member, "too_many_rooms", `you are in ${max} rooms already (the most per connection): part one first`);
    return true;
  }

  #join(member: Member, name: string): void {
    try {
      validateRoom(name);
    } catch (err) {
      if (!(err instanceof NameError)) throw err;
      return this.#fail(member, "room_invalid", err.message);
    }
    const record = this.#store.getRoom(name);
    const room = record?.name ?? name;
    if (this.#tooManyRooms(member, room)) return;
    // A room that would be created: say now if it cannot be, before the client derives its keys for nothing.
    if (!record && this.#refuseCreation(member, room)) return;
    const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
    member.pending = { room, nonce, record };
    const challenge: Record<string, unknown> = { type: "challenge", room, nonce: nonce.toBase64() };
    if (record) {
      challenge.salt = record.salt.toBase64();
      challenge.iterations = record.iterations;
      challenge.access_pub = record.accessPub.toBase64();
      challenge.epoch = record.epoch;
    }
    member.peer.send(encodeMessage(challenge));
  }

  async #prove(member: Member, msg: ClientMessageOf<"prove">): Promise<void> {
    const pending = member.pending;
    if (!pending || pending.room !== msg.room) {
      return this.#fail(member, "no_challenge", `no outstanding challenge for room ${msg.room}; send join first`);
    }
    member.pending = undefined;
    if (this.#tooManyRooms(member, msg.room)) return;
    const creating = msg.salt !== undefined || msg.iterations !== undefined || msg.access_pub !== undefined;
    let record: RoomRecord;
    let created = false;
    if (pending.record) {
      if (creating) return this.#fail(member, "bad_create", `room ${msg.room} already exists; send only the proof`);
      record = pending.record;
    } else {
      if (!creating) {
        return this.#fail(member, "bad_create", `room ${msg.room} is new: send salt, iterations and access_pub`);
      }
      const problem = this.#createProblem(msg);
      if (problem) return this.#fail(member, "bad_create", problem);
      if (this.#refuseCreation(member, msg.room)) return;
      created = true;
      record = {
        name: msg.room,
        salt: decodeBase64(msg.salt!),
        iterations: msg.iterations!,
        accessPub: decodeBase64(msg.access_pub!),
        epoch: 0,
        createdAt: this.#now(),
      };
    }
    let proof: Uint8Array | undefined;
    try {
      proof = decodeBase64(msg.proof, { length: 64 });
    } catch {
      proof = undefined;
    }
    const bind = { serverPub: (await this.#serverKey).publicKey, identityPub: member.key! };
    const ok = proof !== undefined &&
      await verifyJoinProof(record.accessPub, {
        proof,
        nonce: pending.nonce,
        room: msg.room,
        nick: member.nick!,
        bind,
      });
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
      if (!this.#store.createRoom(record)) {
        return this.#fail(member, "room_changed", `room ${msg.room} was just created by someone else; join again`);
      }
      member.creations?.take();
      this.#addressBucket(member)?.take();
      this.#options.log.info("room_created", { remote: member.remote, nick: member.nick, room: msg.room });
    }
    if (this.#tooManyRooms(member, msg.room)) return;
    this.#enterRoom(member, record);
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
    // The connection's own budget is named when it is spent (the address's is then spent too, its refill a few
    // milliseconds apart by the clock): the more specific cause, whichever wait is longer.
    const from = byConnection > 0 ? "this connection" : "your address";
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

  /** The room creation budget of a member's address key, its /64 for IPv6 (none when exempt or unlimited). */
  #addressBucket(member: Member): TokenBucket | undefined {
    const limits = this.#options.rooms;
    if (limits === undefined || limits.createPerHour <= 0) return undefined;
    const host = hostOf(member.remote);
    if (limits.exempt?.(host)) return undefined;
    const key = limitKeyOf(host);
    let bucket = this.#addressCreations.get(key);
    if (bucket === undefined) {
      if (this.#addressCreations.size >= ADDRESS_BUCKETS_KEPT) {
        for (const [h, b] of this.#addressCreations) if (b.full) this.#addressCreations.delete(h);
      }
      bucket = new TokenBucket({ rate: limits.createPerHour / 3600, burst: limits.createBurst });
      this.#addressCreations.set(key, bucket);
    }
    return bucket;
  }

  #createProblem(msg: ClientMessageOf<"prove">): string | undefined {
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

  #enterRoom(member: Member, record: RoomRecord): void {
    const room = record.name;
    // Pending messages are stored first, so the history read below and later fan-out never overlap or miss.
    this.flush();
    let members = this.#rooms.get(room);
    if (!members) {
      members = new Set();
      this.#rooms.set(room, members);
    }
    if (!member.rooms.has(room)) {
      // A nick already present through another connection of the same identity is not announced again.
      if (!holds(members, member.nick!, member)) {
        const presence = encodeMessage({
          type: "presence",
          event: "join",
          room,
          nick: member.nick,
          key: member.keyText,
        });
        for (const m of members) m.peer.send(presence);
      }
      members.add(member);
      member.rooms.add(room);
    }
    if (member.proved.size === 0) this.#unproven--;
    member.proved.add(room);
    const recent = this.#store.recent(room, this.#options.limits.history);
    const history = recent.slice(recent.length - fitting(recent, { fromEnd: true }));
    member.peer.send(encodeFrame(
      `{"type":"joined","room":${JSON.stringify(room)},"epoch":${record.epoch},"members":${
        JSON.stringify(memberList(members))
      },"history":[${history.map(relayedJson).join(",")}],"latest_seq":${this.#store.lastSeq}}`,
    ));
    this.#options.log.info("join", { remote: member.remote, nick: member.nick, room });
  }

  #leaveRoom(member: Member, room: string): void {
    if (!member.rooms.delete(room)) return;
    const members = this.#rooms.get(room);
    if (!members) return;
    members.delete(member);
    if (members.size === 0) {
      this.#rooms.delete(room);
    } else if (!holds(members, member.nick!, member)) {
      const presence = encodeMessage({
        type: "presence",
        event: "leave",
        room,
        nick: member.nick,
        key: member.keyText,
      });
      for (const m of members) m.peer.send(presence);
    }
    this.#options.log.info("leave", { remote: member.remote, nick: member.nick, room });
  }

  #part(member: Member, name: string): void {
    const room = this.#inRoom(member, name, "part");
    if (room === undefined) return;
    this.#leaveRoom(member, room);
    member.peer.send(encodeMessage({ type: "parted", room }));
  }

  #send(member: Member, envelope: Envelope): void {
    const id = envelope.id;
    const room = envelope.room;
    if (!member.rooms.has(room)) {
      const hint = this.#roomOf(member, room);
      return this.#fail(
        member,
        "not_in_room",
        hint === undefined
          ? `envelope.room: you are not in room ${room}`
          : `envelope.room must be the room's canonical name ${hint}, not ${room}`,
        { id },
      );
    }
    if (envelope.from !== member.nick) {
      return this.#fail(member, "sender_mismatch", `envelope.from must be your nick ${member.nick}`, { id });
    }
    const text = serializeEnvelope(envelope);
    const quota = this.#options.rooms?.quotaBytes;
    if (quota !== undefined) {
      const batched = this.#batchRoomBytes.get(room) ?? 0;
      if (this.#store.roomBytes(room) + batched + text.length > quota) {
        this.#options.log.warn("limit", { remote: member.remote, nick: member.nick, limit: "room_quota" });
        return this.#fail(
          member,
          "room_full",
          `room ${room} holds its ${quota} bytes (--room-quota): the message was not stored; an operator ` +
            `can raise the cap, set --retention, or delete the room`,
          { id },
        );
      }
      this.#batchRoomBytes.set(room, batched + text.length);
    }
    this.#batch.push({ member, envelope, text, msgId: Uint8Array.fromBase64(id) });
    const backpressure = this.#options.backpressure;
    if (backpressure !== undefined) {
      const fanout = (text.length + MESSAGE_FRAME_OVERHEAD) * Math.max(0, (this.#rooms.get(room)?.size ?? 1) - 1);
      this.#batchFanout += fanout;
      backpressure.pending(fanout);
    }
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    // setImmediate runs after the I/O callbacks of this event-loop turn (a setTimeout of 0 costs 1-4 ms).
    setImmediate(() => this.flush());
  }

  #who(member: Member, name: string): void {
    const room = this.#inRoom(member, name, "who");
    if (room === undefined) return;
    member.peer.send(encodeMessage({ type: "who", room, members: memberList(this.#rooms.get(room) ?? []) }));
  }

  #roomList(member: Member): void {
    // Only this connection's rooms: a stranger learns nothing of which rooms exist or who is in them.
    const rooms = [...member.rooms].map((name) => ({ name, count: memberList(this.#rooms.get(name) ?? []).length }));
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
    let canonical: string;
    try {
      canonical = this.#registry.claim(member.key!, nick, {
        host: hostOf(member.remote),
        inUse: (fold) => (this.#nicks.get(fold)?.size ?? 0) > 0,
      }).nick;
    } catch (err) {
      if (err instanceof RegistrationError) return this.#fail(member, err.code, err.message);
      if (err instanceof StoreError) return this.#fail(member, "storage_failed", err.message);
      throw err;
    }
    this.#forgetNick(member, old);
    this.#holdNick(member, canonical);
    member.nick = canonical;
    member.peer.send(encodeMessage({ type: "nick", old, new: canonical }));
    this.#options.log.info("nick", { remote: member.remote, nick: canonical, old });
    if (canonical === old) return;
    for (const room of member.rooms) this.#announceNick(member, room, old);
  }

  /**
   * Tells a room's other connections what a nick change did to its member list: the old nick became the new one,
   * or (when another connection of the same identity keeps the old one, or already had the new one) one joined or
   * left.
   */
  #announceNick(member: Member, room: string, old: string): void {
    const members = this.#rooms.get(room) ?? new Set<Member>();
    const nick = member.nick!;
    const oldStays = holds(members, old, member);
    const newWasThere = holds(members, nick, member);
    const key = member.keyText;
    let presence: Record<string, unknown> | undefined;
    if (!oldStays && !newWasThere) presence = { type: "presence", event: "nick", room, nick, key, old };
    else if (!oldStays) presence = { type: "presence", event: "leave", room, nick: old, key };
    else if (!newWasThere) presence = { type: "presence", event: "join", room, nick, key };
    if (presence === undefined) return;
    const frame = encodeMessage(presence);
    for (const m of members) if (m !== member) m.peer.send(frame);
  }

  #history(member: Member, msg: ClientMessageOf<"history">): void {
    const room = this.#inRoom(member, msg.room, "history");
    if (room === undefined) return;
    // Like since: messages of this turn are stored first, so a page never misses one that was already acked.
    this.flush();
    const n = Math.min(Math.max(msg.limit ?? HISTORY_PAGE, 1), HISTORY_PAGE);
    const rows = this.#store.before(room, { beforeSeq: msg.before_seq, limit: n + 1 });
    const all = rows.length > n ? rows.slice(1) : rows;
    const page = all.slice(all.length - fitting(all, { fromEnd: true }));
    const more = rows.length > page.length;
    member.peer.send(encodeFrame(
      `{"type":"history","room":${JSON.stringify(room)},"before_seq":${msg.before_seq},"messages":[${
        page.map(relayedJson).join(",")
      }],"more":${more}}`,
    ));
  }

  #since(member: Member, msg: ClientMessageOf<"since">): void {
    const room = this.#inRoom(member, msg.room, "since");
    if (room === undefined) return;
    this.flush();
    const n = Math.min(Math.max(msg.limit ?? HISTORY_PAGE, 1), HISTORY_PAGE);
    const rows = this.#store.after(room, { afterSeq: msg.after_seq, limit: n + 1 });
    const page = rows.slice(0, Math.min(n, fitting(rows, { fromEnd: false })));
    const more = rows.length > page.length;
    const prunedThrough = this.#store.roomStats(room)?.prunedThrough ?? 0;
    member.peer.send(encodeFrame(
      `{"type":"since","room":${JSON.stringify(room)},"after_seq":${msg.after_seq},"messages":[${
        page.map(relayedJson).join(",")
      }],"more":${more},"pruned_through":${prunedThrough}}`,
    ));
  }

  /** Checks a direct message against the sender and the registry (PROTOCOL.md "direct checks"), then batches it. */
  #direct(member: Member, msg: ClientMessageOf<"direct">): void {
    const envelope = msg.envelope as unknown as DirectEnvelope;
    const copy = msg.copy as unknown as DirectEnvelope;
    const id = envelope.id;
    const refuse = (why: string) => this.#fail(member, "bad_direct", why, { id });
    const differs = SHARED_FIELDS.find((field) => envelope[field] !== copy[field]);
    if (differs !== undefined) return refuse(`the envelope and the copy differ in ${differs}`);
    if (envelope.to !== msg.to) return refuse(`envelope.to must be the recipient ${msg.to}`);
    if (envelope.from !== member.nick) return refuse(`envelope.from must be your nick ${member.nick}`);
    if (envelope.key !== member.keyText) return refuse("envelope.key must be the identity key you logged in with");
    const published = this.#registry.kxOf(member.key!);
    if (published === undefined || envelope.kx !== published.toBase64()) {
      return refuse("envelope.kx must be the key-agreement key your identity published");
    }
    const recipient = this.#registry.find(msg.to);
    if (recipient === undefined) return this.#fail(member, "unknown_nick", `nobody has registered ${msg.to}`, { id });
    if (recipient.nick !== msg.to) return refuse(`to must be the nick's canonical spelling ${recipient.nick}`);
    const recipientKey = recipient.key.toBase64();
    if (envelope.tokey !== recipientKey) {
      return refuse(`envelope.tokey is not the key ${recipient.nick} is registered to`);
    }
    if (recipientKey === member.keyText) return refuse("a direct message to yourself is not sent: keep a note instead");
    const pair: DirectPair = {
      recipient: recipient.key,
      sender: member.key!,
      msgId: decodeBase64(id),
      envelope: serializeDirectEnvelope(envelope),
      copy: serializeDirectEnvelope(copy),
    };
    this.#directBatch.push({ member, id, senderKey: member.keyText, recipientKey, to: recipient.nick, pair });
    const backpressure = this.#options.backpressure;
    if (backpressure !== undefined) {
      const readers = (this.#identities.get(recipientKey)?.size ?? 0) +
        (this.#identities.get(member.keyText)?.size ?? 1);
      const fanout = (pair.envelope.length + DIRECT_FRAME_OVERHEAD) * readers;
      this.#batchFanout += fanout;
      backpressure.pending(fanout);
    }
    this.#scheduleFlush();
  }

  /** Stores the turn's direct messages, then acks them and hands them over (see PROTOCOL.md, Direct messages). */
  #flushDirect(): void {
    const batch = this.#directBatch;
    if (batch.length === 0) return;
    this.#directBatch = [];
    const sentAt = this.#now();
    let results: DirectResult[];
    try {
      results = this.#inboxes.appendBatch(batch.map((d) => d.pair), sentAt);
    } catch (err) {
      const why = err instanceof StoreError ? err.message : String(err);
      this.#options.log.error("storage_failed", { direct: batch.length, reason: why });
      results = batch.map(() => ({ result: "failed" }));
    }
    // What is handed over live is marked delivered first, all in one transaction (the frames below say so).
    const live = batch.map((d, i) =>
      results[i].result === "stored" && (this.#identities.get(d.recipientKey)?.size ?? 0) > 0
    );
    const marked = this.#delivered(
      batch.filter((_, i) => live[i]).map((d) => ({ pair: d.pair, sender: d.senderKey, id: d.id })),
      { notify: false },
    );
    const handedAt = new Map(batch.filter((_, i) => live[i]).map((d, k) => [d, marked[k]]));
    for (let i = 0; i < batch.length; i++) {
      const d = batch[i];
      const r = results[i];
      if (r.result !== "stored") {
        const [code, message]: [ErrorCode, string] = r.result === "duplicate"
          ? ["duplicate_id", "a direct message with this id is already stored"]
          : r.result === "full"
          ? [
            "inbox_full",
            r.waiting === "share"
              ? `${r.limit} of your messages already wait for ${d.to} to come online (your share of ${d.to}'s ` +
                `--direct-inbox): this one was not stored; send it again once they are delivered`
              : `${d.to} has ${r.limit} messages waiting undelivered (--direct-inbox): this one was not stored; ` +
                `send it again once they are delivered`,
          ]
          : ["storage_failed", "the message was not stored; send it again"];
        if (r.result === "full") {
          this.#options.log.warn("limit", { remote: d.member.remote, limit: "direct_inbox", waiting: r.waiting });
        }
        d.member.peer.send(errorFrame(code, message, d.id));
        continue;
      }
      if (!d.member.gone) d.member.peer.send(encodeFrame(`{"type":"ack","id":"${d.id}","seq":${r.copySeq}}`));
      const recipients = this.#identities.get(d.recipientKey) ?? new Set<Member>();
      const frameOf = (seq: number, text: string, delivered: boolean) =>
        encodeFrame(`{"type":"direct","seq":${seq},"sent_at":${sentAt},"envelope":${text},"delivered":${delivered}}`);
      if (recipients.size > 0) {
        const frame = frameOf(r.seq, d.pair.envelope, true);
        for (const m of recipients) m.peer.send(frame);
      }
      const handed = handedAt.get(d) ?? false;
      const copy = frameOf(r.copySeq, d.pair.copy, handed);
      for (const m of this.#identities.get(d.senderKey) ?? []) if (m !== d.member) m.peer.send(copy);
      if (handed) this.#notifyDelivered(d.senderKey, d.id);
    }
  }

  /**
   * Marks direct messages delivered (the first time only), in one transaction, and, when asked, tells each one's
   * sender's connections.
   *
   * @returns for each message, whether this was its first delivery (all false when the database refused)
   */
  #delivered(
    messages: Handover[],
    options: { notify: boolean },
  ): boolean[] {
    if (messages.length === 0) return [];
    let first: boolean[];
    try {
      first = this.#inboxes.markDelivered(messages.map((m) => m.pair), this.#now());
    } catch (err) {
      this.#options.log.error("storage_failed", { reason: (err as Error).message });
      return messages.map(() => false);
    }
    if (options.notify) {
      messages.forEach((m, i) => {
        if (first[i]) this.#notifyDelivered(m.sender, m.id);
      });
    }
    return first;
  }

  #notifyDelivered(senderKey: string, id: string): void {
    const frame = encodeFrame(`{"type":"delivered","id":"${id}"}`);
    for (const m of this.#identities.get(senderKey) ?? []) m.peer.send(frame);
  }

  #directSince(member: Member, msg: ClientMessageOf<"direct_since">): void {
    // Direct messages of this turn are stored first, so a page never misses one that was already acked.
    this.flush();
    const n = Math.min(Math.max(msg.limit ?? HISTORY_PAGE, 1), HISTORY_PAGE);
    let rows;
    try {
      rows = this.#inboxes.after(member.key!, { afterSeq: msg.after_seq, limit: n + 1 });
    } catch (err) {
      return this.#fail(member, "storage_failed", (err as Error).message);
    }
    const stored = rows.map((r) => ({ seq: r.seq, sentAt: r.sentAt, envelope: r.envelope }));
    const page = rows.slice(0, Math.min(n, fitting(stored, { fromEnd: false })));
    const more = rows.length > page.length;
    const handing: Handover[] = [];
    const items = page.map((row) => {
      const envelope = JSON.parse(row.envelope) as DirectEnvelope;
      let delivered = row.deliveredAt !== undefined;
      if (envelope.key !== member.keyText) {
        // A message to this identity, handed over now (the whole page is marked in one transaction below).
        const pair = { recipient: member.key!, sender: decodeBase64(envelope.key), msgId: decodeBase64(envelope.id) };
        handing.push({ pair, sender: envelope.key, id: envelope.id });
        delivered = true;
      }
      return `{"seq":${row.seq},"sent_at":${row.sentAt},"envelope":${row.envelope},"delivered":${delivered}}`;
    });
    this.#delivered(handing, { notify: true });
    member.peer.send(encodeFrame(
      `{"type":"direct_since","after_seq":${msg.after_seq},"messages":[${items.join(",")}],"more":${more}}`,
    ));
  }

  #lookup(member: Member, nick: string): void {
    const found = this.#registry.lookup(nick);
    if (found === undefined) {
      return this.#fail(member, "unknown_nick", `nobody has registered the nick ${nick}`);
    }
    member.peer.send(encodeMessage({
      type: "identity",
      nick: found.nick,
      key: found.key.toBase64(),
      kx: found.kx.toBase64(),
      kx_sig: found.kxSig.toBase64(),
      rotations: found.rotations.map((r) => ({
        old: r.oldKey.toBase64(),
        new: r.newKey.toBase64(),
        ts: r.ts,
        signature: r.signature.toBase64(),
      })),
    }));
  }
}
