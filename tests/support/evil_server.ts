/**
 * A protocol v2 server double for the client's tests, in-process (a Dial, no socket): by default it behaves as an
 * honest server (server key and signature, login and nick registration, rooms with proofs, history, since, presence
 * with keys, lookup, direct messages with inboxes and `delivered`), written from PROTOCOL.md, so sessions can talk to
 * each other through it. Then it lies on demand: a test rewrites any message it sends to one connection
 * ({@link EvilServer.outgoing}), sees every client message first ({@link EvilServer.incoming}), injects anything
 * ({@link EvilLink.send}), changes its own key ({@link EvilServer.rekey}), or edits its state (rooms, registry,
 * inboxes) directly. Frames really are encoded and parsed, and delivered on later turns of the event loop.
 *
 * @module
 */

import { canonicalBase64Length, decodeBase64 } from "../../lib/base64.ts";
import { signEd25519, verifyEd25519, verifyJoinProof } from "../../lib/crypto.ts";
import type { DirectEnvelope } from "../../lib/direct.ts";
import type { Envelope } from "../../lib/envelope.ts";
import { encodeMessage, FrameReader } from "../../lib/frame.ts";
import {
  generateIdentitySecrets,
  type Identity,
  importIdentity,
  kxInput,
  loginInput,
  serverInput,
} from "../../lib/identity.ts";
import { foldName } from "../../lib/names.ts";
import {
  type ClientMessage,
  type ClientMessageOf,
  type DirectItem,
  parseClientMessage,
  ProtocolError,
  type RelayedMessage,
  type ServerLimits,
} from "../../lib/protocol.ts";
import { type Dial, type Link, LinkError, type LinkEvents } from "../../lib/client/link.ts";

/** The limits of a default server. */
export const EVIL_LIMITS: ServerLimits = {
  max_frame: 65536,
  max_body: 16384,
  history: 50,
  history_page: 500,
  rate: 0,
  burst: 40,
  send_queue: 1048576,
  idle_timeout_ms: 120000,
  max_rooms: 20,
};

/** A room as the double stores it. */
export interface EvilRoom {
  /** Canonical name. */
  name: string;
  /** base64 salt. */
  salt: string;
  /** PBKDF2 count. */
  iterations: number;
  /** base64 access key. */
  access_pub: string;
  /** Key epoch. */
  epoch: number;
  /** Stored messages, oldest first. */
  messages: RelayedMessage[];
  /** Highest seq removed by retention. */
  pruned_through: number;
}

/** A registered nick. */
export interface EvilRegistration {
  /** Canonical nick. */
  nick: string;
  /** base64 identity key. */
  key: string;
  /** base64 key-agreement key. */
  kx: string;
  /** base64 signature of the kx key. */
  kx_sig: string;
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

/** One connection to the double. */
export class EvilLink implements Link {
  #server: EvilServer;
  #events: LinkEvents;
  #closed = false;
  #dropped = false;
  #queue: Uint8Array[] = [];
  #scheduled = false;
  #handling: Promise<void> = Promise.resolve();
  /** The client's hello nonce. */
  clientNonce?: Uint8Array;
  /** This server's nonce in its `server` message. */
  serverNonce?: Uint8Array;
  /** The nick once logged in. */
  nick?: string;
  /** The identity key once logged in (base64). */
  key?: string;
  /** The rooms joined (folded name → canonical). */
  readonly rooms = new Map<string, string>();
  /** Outstanding challenges: folded room → nonce. */
  readonly challenges = new Map<string, Uint8Array>();

  constructor(server: EvilServer, events: LinkEvents) {
    this.#server = server;
    this.#events = events;
  }

  get closed(): boolean {
    return this.#closed;
  }

  write(frame: Uint8Array): void {
    if (this.#closed) return;
    const bodies = new FrameReader({ maxFrame: 1 << 24 }).push(frame);
    this.#handling = this.#handling.then(async () => {
      await tick();
      for (const body of bodies) {
        if (this.#closed) return;
        let msg: ClientMessage;
        try {
          msg = parseClientMessage(body);
        } catch (err) {
          if (!(err instanceof ProtocolError)) throw err;
          this.reply({ type: "error", code: err.code, message: err.message, ...(err.id ? { id: err.id } : {}) });
          if (err.fatal) this.close();
          continue;
        }
        this.#server.received.push(msg);
        if (this.#server.incoming?.(msg, this) === false) continue;
        await this.#server.handle(msg, this);
      }
    });
  }

  flushed(): Promise<void> {
    return this.#handling;
  }

  /**
   * Sends a message as the honest server would: through {@link EvilServer.outgoing}, which may rewrite it.
   *
   * @param message the server message
   */
  reply(message: Record<string, unknown>): void {
    const out = this.#server.outgoing?.(message, this) ?? [message];
    for (const m of out) this.send(m);
  }

  /**
   * Sends a message object, JSON text or a raw body to the client as is (delivered on a later turn, in order).
   *
   * @param message what to send
   */
  send(message: object | string): void {
    if (this.#closed) return;
    this.#queue.push(
      typeof message === "string" ? new TextEncoder().encode(message) : encodeMessage(message).subarray(4),
    );
    if (this.#scheduled) return;
    this.#scheduled = true;
    setTimeout(() => {
      this.#scheduled = false;
      const bodies = this.#queue;
      this.#queue = [];
      // Frames queued before a close are delivered, then the close (as a real server writes its error, then closes).
      for (const body of bodies) if (!this.#dropped) this.#events.body(body);
    }, 0);
  }

  /** Drops the connection as a network failure would (frames still queued are lost). */
  drop(): void {
    this.#dropped = true;
    this.#end(new LinkError("lost", "connection error: reset by the test"));
  }

  close(): void {
    this.#end(new LinkError("closed", "closed"));
  }

  #end(error: LinkError): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.detach(this);
    setTimeout(() => this.#events.lost(error), 0);
  }
}

/** The double. */
export class EvilServer {
  /** Limits in the welcome. */
  limits: Record<string, unknown> = { ...EVIL_LIMITS };
  /** Every client message received. */
  readonly received: ClientMessage[] = [];
  /** Every connection made. */
  readonly links: EvilLink[] = [];
  /** Rooms by folded name. */
  readonly rooms = new Map<string, EvilRoom>();
  /** Registered nicks by folded nick. */
  readonly registry = new Map<string, EvilRegistration>();
  /** Rotation statements by new key (base64): what lookup returns. */
  readonly rotations = new Map<string, { old: string; new: string; ts: number; signature: string }[]>();
  /** Inboxes by identity key (base64). */
  readonly inboxes = new Map<string, DirectItem[]>();
  /** Sees every client message first; returning false drops it. */
  incoming?: (msg: ClientMessage, link: EvilLink) => boolean | void;
  /** Rewrites every message to a client: return the messages to send instead (empty: withhold it). */
  outgoing?: (msg: Record<string, unknown>, link: EvilLink) => Record<string, unknown>[] | undefined;
  /** While true, dials fail as if the server were down. */
  down = false;
  /** Check login signatures (a test may turn it off to let anything in). */
  checkLogin = true;
  /** Sends refused with `storage_failed` so far by {@link EvilServer.failSends}. */
  failedSends = 0;
  #failing = 0;
  #identity!: Identity;
  #seq = 0;
  #inboxSeq = 0;

  private constructor() {}

  /**
   * Starts a double with a fresh server key.
   *
   * @returns the server
   */
  static async start(): Promise<EvilServer> {
    const server = new EvilServer();
    await server.rekey();
    return server;
  }

  /** The server's key. */
  get key(): Uint8Array {
    return this.#identity.publicKey;
  }

  /** Replaces the server's own key (a server that changed, or another server at the same address). */
  async rekey(): Promise<void> {
    this.#identity = await importIdentity(generateIdentitySecrets());
  }

  /** The dial function sessions connect with. */
  get dial(): Dial {
    return (events) => {
      if (this.down) return Promise.reject(new LinkError("unreachable", "cannot connect: the test server is down"));
      const link = new EvilLink(this, events);
      this.links.push(link);
      return Promise.resolve(link);
    };
  }

  /**
   * Serves the double over real TCP on 127.0.0.1 (an ephemeral port), so the real client program can be pointed at
   * it: each connection is one {@link EvilLink}, frames passed through as they are.
   *
   * @returns the port, and a function that stops listening and closes every connection
   */
  listen(): { port: number; close: () => Promise<void> } {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const conns = new Set<Deno.Conn>();
    const serving = (async () => {
      for await (const conn of listener) {
        conns.add(conn);
        void this.#serve(conn).finally(() => conns.delete(conn));
      }
    })().catch(() => {});
    return {
      port: (listener.addr as Deno.NetAddr).port,
      close: async () => {
        listener.close();
        for (const conn of conns) {
          try {
            conn.close();
          } catch {
            // already closed
          }
        }
        await serving;
      },
    };
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const writer = conn.writable.getWriter();
    let writing = Promise.resolve();
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      writing.finally(() => {
        try {
          conn.close();
        } catch {
          // already closed
        }
      });
    };
    const link = await this.dial({
      body: (body) => {
        const frame = new Uint8Array(4 + body.length);
        new DataView(frame.buffer).setUint32(0, body.length);
        frame.set(body, 4);
        writing = writing.then(() => writer.write(frame)).catch(() => {});
      },
      lost: close,
    });
    const reader = new FrameReader({ maxFrame: 1 << 24 });
    try {
      for await (const chunk of conn.readable) {
        for (const body of reader.push(chunk)) {
          const frame = new Uint8Array(4 + body.length);
          new DataView(frame.buffer).setUint32(0, body.length);
          frame.set(body, 4);
          link.write(frame);
        }
      }
    } catch {
      // reset by the peer
    }
    (link as EvilLink).drop();
    close();
  }

  /**
   * Makes the next `n` sends fail to store (`storage_failed` to their senders, nothing stored), as a full disk would.
   *
   * @param n how many
   */
  failSends(n: number): void {
    this.#failing = n;
  }

  /**
   * The stored envelopes of a room, oldest first, as the server would keep them.
   *
   * @param room the room (any spelling)
   * @returns seq and envelope of each
   */
  stored(room = "general"): RelayedMessage[] {
    return [...(this.rooms.get(foldName(room))?.messages ?? [])];
  }

  /** The latest connection. */
  get link(): EvilLink {
    return this.links[this.links.length - 1];
  }

  /** Open connections. */
  get open(): EvilLink[] {
    return this.links.filter((l) => !l.closed);
  }

  /** Drops every connection at once. */
  dropAll(): void {
    for (const link of this.open) link.drop();
  }

  /**
   * The next room seq (one sequence for all rooms).
   *
   * @returns the seq
   */
  nextSeq(): number {
    return ++this.#seq;
  }

  /**
   * Stores a message as the server would and relays it to the room's other connections.
   *
   * @param envelope the envelope
   * @param options.except the sender's connection (not relayed to it)
   * @returns the stored item
   */
  store(envelope: Envelope, options: { except?: EvilLink } = {}): RelayedMessage {
    const room = this.rooms.get(foldName(envelope.room))!;
    const item = { seq: this.nextSeq(), sent_at: Date.now(), envelope };
    room.messages.push(item);
    for (const other of this.open) {
      if (other === options.except || !other.rooms.has(foldName(room.name))) continue;
      other.reply({ type: "message", ...item });
    }
    return item;
  }

  /** @internal a connection ended */
  detach(link: EvilLink): void {
    for (const [fold, name] of link.rooms) {
      if (this.open.some((l) => l !== link && l.nick === link.nick && l.rooms.has(fold))) continue;
      this.#presence(name, { event: "leave", nick: link.nick!, key: link.key! }, link);
    }
    link.rooms.clear();
  }

  #presence(room: string, p: { event: string; nick: string; key: string; old?: string }, except: EvilLink): void {
    for (const other of this.open) {
      if (other === except || !other.rooms.has(foldName(room))) continue;
      other.reply({ type: "presence", room, ...p });
    }
  }

  #members(room: string): { nick: string; key: string }[] {
    const seen = new Map<string, { nick: string; key: string }>();
    for (const l of this.open) {
      if (l.rooms.has(foldName(room)) && l.nick) seen.set(foldName(l.nick), { nick: l.nick, key: l.key! });
    }
    return [...seen.values()];
  }

  #error(link: EvilLink, code: string, message: string, extra: Record<string, unknown> = {}): void {
    link.reply({ type: "error", code, message, ...extra });
  }

  /** @internal handles one client message honestly */
  async handle(msg: ClientMessage, link: EvilLink): Promise<void> {
    switch (msg.type) {
      case "hello": {
        link.clientNonce = decodeBase64(msg.nonce);
        const nonce = crypto.getRandomValues(new Uint8Array(32));
        link.serverNonce = nonce;
        const signature = await signEd25519(
          this.#identity.signKey,
          serverInput({ clientNonce: link.clientNonce, serverNonce: nonce }),
        );
        return link.reply({
          type: "server",
          server: "aeschat",
          server_version: "evil",
          version: 2,
          key: this.#identity.publicKey.toBase64(),
          nonce: nonce.toBase64(),
          signature: signature.toBase64(),
        });
      }
      case "login":
        if (this.checkLogin && !await this.#loginVerifies(msg, link)) {
          this.#error(link, "bad_signature", "the login signature does not verify");
          return link.close();
        }
        return this.#login(msg, link);
      case "join":
        return this.#join(msg, link);
      case "prove":
        return await this.#prove(msg, link);
      case "part":
        link.rooms.delete(foldName(msg.room));
        this.#presence(msg.room, { event: "leave", nick: link.nick!, key: link.key! }, link);
        return link.reply({ type: "parted", room: msg.room });
      case "send":
        return this.#send(msg, link);
      case "who":
        return link.reply({ type: "who", room: msg.room, members: this.#members(msg.room) });
      case "rooms":
        return link.reply({
          type: "rooms",
          rooms: [...link.rooms.values()].map((name) => ({ name, count: this.#members(name).length })),
        });
      case "nick": {
        const fold = foldName(msg.new);
        const held = this.registry.get(fold);
        if (held && held.key !== link.key) return this.#error(link, "nick_registered", "registered to another key");
        const mine = this.registry.get(foldName(link.nick!))!;
        this.registry.set(fold, { ...mine, nick: held?.nick ?? msg.new });
        const old = link.nick!;
        link.nick = held?.nick ?? msg.new;
        for (const name of link.rooms.values()) {
          this.#presence(name, { event: "nick", nick: link.nick, key: link.key!, old }, link);
        }
        return link.reply({ type: "nick", old, new: link.nick });
      }
      case "history": {
        const room = this.rooms.get(foldName(msg.room))!;
        const older = room.messages.filter((m) => m.seq < msg.before_seq);
        const page = older.slice(-(msg.limit ?? 50));
        return link.reply({
          type: "history",
          room: room.name,
          before_seq: msg.before_seq,
          messages: page,
          more: older.length > page.length,
        });
      }
      case "since": {
        const room = this.rooms.get(foldName(msg.room))!;
        const after = room.messages.filter((m) => m.seq > msg.after_seq);
        const page = after.slice(0, msg.limit ?? 500);
        return link.reply({
          type: "since",
          room: room.name,
          after_seq: msg.after_seq,
          messages: page,
          more: after.length > page.length,
          pruned_through: room.pruned_through,
        });
      }
      case "lookup": {
        const r = this.registry.get(foldName(msg.nick));
        if (!r) return this.#error(link, "unknown_nick", `nobody is registered as ${msg.nick}`);
        return link.reply({ type: "identity", ...r, rotations: this.rotations.get(r.key) ?? [] });
      }
      case "direct":
        return this.#direct(msg, link);
      case "direct_since": {
        const inbox = this.inboxes.get(link.key!) ?? [];
        const after = inbox.filter((m) => m.seq > msg.after_seq);
        const page = after.slice(0, msg.limit ?? 500);
        for (const item of page) this.#handedOver(item, link);
        return link.reply({
          type: "direct_since",
          after_seq: msg.after_seq,
          messages: page,
          more: after.length > page.length,
        });
      }
      case "ping":
        return link.reply({ type: "pong", ...(msg.data === undefined ? {} : { data: msg.data }) });
      case "bye":
        link.reply({ type: "bye", reason: "quit" });
        return link.close();
      default:
        return;
    }
  }

  async #loginVerifies(msg: ClientMessageOf<"login">, link: EvilLink): Promise<boolean> {
    const identityPub = decodeBase64(msg.key);
    const input = loginInput({
      serverPub: this.#identity.publicKey,
      serverNonce: link.serverNonce!,
      clientNonce: link.clientNonce!,
      identityPub,
      nick: msg.nick,
    });
    return await verifyEd25519(identityPub, { input, signature: decodeBase64(msg.signature) }) &&
      await verifyEd25519(identityPub, {
        input: kxInput(identityPub, decodeBase64(msg.kx)),
        signature: decodeBase64(msg.kx_sig),
      });
  }

  #login(msg: ClientMessageOf<"login">, link: EvilLink): void {
    const fold = foldName(msg.nick);
    let held = this.registry.get(fold);
    if (msg.rotation && held?.key === msg.rotation.old) {
      this.rotations.set(msg.key, [...(this.rotations.get(msg.rotation.old) ?? []), {
        old: msg.rotation.old,
        new: msg.key,
        ts: msg.rotation.ts,
        signature: msg.rotation.signature,
      }]);
      held = undefined;
    }
    if (held && held.key !== msg.key) {
      this.#error(link, "nick_registered", "that nick is registered to another identity key");
      return link.close();
    }
    const nick = held?.nick ?? msg.nick;
    this.registry.set(fold, { nick, key: msg.key, kx: msg.kx, kx_sig: msg.kx_sig });
    link.nick = nick;
    link.key = msg.key;
    const inbox = this.inboxes.get(msg.key) ?? [];
    link.reply({
      type: "welcome",
      nick,
      registered: !held,
      limits: this.limits,
      direct_seq: inbox.length === 0 ? 0 : inbox[inbox.length - 1].seq,
    });
  }

  #join(msg: ClientMessageOf<"join">, link: EvilLink): void {
    const fold = foldName(msg.room);
    const nonce = crypto.getRandomValues(new Uint8Array(32));
    link.challenges.set(fold, nonce);
    const room = this.rooms.get(fold);
    if (!room) return link.reply({ type: "challenge", room: msg.room, nonce: nonce.toBase64() });
    const { name, salt, iterations, access_pub, epoch } = room;
    link.reply({ type: "challenge", room: name, nonce: nonce.toBase64(), salt, iterations, access_pub, epoch });
  }

  async #prove(msg: ClientMessageOf<"prove">, link: EvilLink): Promise<void> {
    const fold = foldName(msg.room);
    const nonce = link.challenges.get(fold);
    link.challenges.delete(fold);
    if (!nonce) return this.#error(link, "no_challenge", "no challenge for that room");
    let room = this.rooms.get(fold);
    const create = !room;
    const accessPub = room ? room.access_pub : msg.access_pub;
    if (typeof accessPub !== "string" || canonicalBase64Length(accessPub) !== 32) {
      return this.#error(link, "bad_create", "bad access_pub");
    }
    const ok = await verifyJoinProof(decodeBase64(accessPub), {
      proof: decodeBase64(msg.proof),
      nonce,
      room: room?.name ?? msg.room,
      nick: link.nick!,
      bind: { serverPub: this.#identity.publicKey, identityPub: decodeBase64(link.key!) },
    });
    if (!ok) return this.#error(link, "access_denied", "wrong passphrase");
    if (create) {
      room = {
        name: msg.room,
        salt: msg.salt!,
        iterations: msg.iterations!,
        access_pub: accessPub,
        epoch: 0,
        messages: [],
        pruned_through: 0,
      };
      this.rooms.set(fold, room);
    }
    link.rooms.set(fold, room!.name);
    const history = room!.messages.slice(-Number(this.limits.history ?? 50));
    link.reply({
      type: "joined",
      room: room!.name,
      epoch: room!.epoch,
      members: this.#members(room!.name),
      history,
      latest_seq: this.#seq,
    });
    this.#presence(room!.name, { event: "join", nick: link.nick!, key: link.key! }, link);
  }

  #send(msg: ClientMessageOf<"send">, link: EvilLink): void {
    const envelope = msg.envelope;
    const room = this.rooms.get(foldName(envelope.room));
    if (!room || !link.rooms.has(foldName(envelope.room)) || room.name !== envelope.room) {
      return this.#error(link, "not_in_room", "not in that room", { id: envelope.id });
    }
    if (envelope.from !== link.nick) return this.#error(link, "sender_mismatch", "not your nick", { id: envelope.id });
    if (room.messages.some((m) => m.envelope.id === envelope.id)) {
      return this.#error(link, "duplicate_id", "already stored", { id: envelope.id });
    }
    if (this.#failing > 0) {
      this.#failing--;
      this.failedSends++;
      return this.#error(link, "storage_failed", "injected storage failure", { id: envelope.id });
    }
    const item = this.store(envelope, { except: link });
    link.reply({ type: "ack", id: envelope.id, seq: item.seq });
  }

  #direct(msg: ClientMessageOf<"direct">, link: EvilLink): void {
    const envelope = msg.envelope as unknown as DirectEnvelope;
    const copy = msg.copy as unknown as DirectEnvelope;
    const recipient = this.registry.get(foldName(msg.to));
    if (!recipient) return this.#error(link, "unknown_nick", "nobody by that nick", { id: envelope.id });
    if (
      envelope.tokey !== recipient.key || envelope.key !== link.key || envelope.from !== link.nick ||
      copy.id !== envelope.id || copy.tokey !== envelope.tokey
    ) {
      return this.#error(link, "bad_direct", "the envelopes do not match the sender or the recipient", {
        id: envelope.id,
      });
    }
    const inbox = this.inboxes.get(recipient.key) ?? [];
    if (inbox.some((m) => m.envelope.id === envelope.id && m.envelope.key === envelope.key)) {
      return this.#error(link, "duplicate_id", "already stored", { id: envelope.id });
    }
    const sentAt = Date.now();
    const theirs: DirectItem = { seq: ++this.#inboxSeq, sent_at: sentAt, envelope, delivered: false };
    const ours: DirectItem = { seq: ++this.#inboxSeq, sent_at: sentAt, envelope: copy, delivered: false };
    this.inboxes.set(recipient.key, [...inbox, theirs]);
    this.inboxes.set(link.key!, [...(this.inboxes.get(link.key!) ?? []), ours]);
    link.reply({ type: "ack", id: envelope.id, seq: ours.seq });
    for (const other of this.open) {
      if (other.key === recipient.key && other.nick) {
        this.#handedOver(theirs, other);
        other.reply({ type: "direct", ...theirs });
      } else if (other !== link && other.key === link.key) {
        other.reply({ type: "direct", ...ours });
      }
    }
  }

  /** A recipient's row handed to one of its connections: delivered, and its sender told. */
  #handedOver(item: DirectItem, to: EvilLink): void {
    if (item.envelope.tokey !== to.key || item.delivered) return;
    item.delivered = true;
    const copy = this.inboxes.get(item.envelope.key)?.find((m) => m.envelope.id === item.envelope.id);
    if (copy) copy.delivered = true;
    for (const other of this.open) {
      if (other.key === item.envelope.key) other.reply({ type: "delivered", id: item.envelope.id });
    }
  }
}
