/**
 * The benchmark's protocol client: real TCP, real frames, the real protocol v2 opening (hello, the server's signed
 * answer checked, a login signed by the client's identity key) and join proof. During setup every frame is parsed;
 * during a run, `message` and `ack` frames go to cheap byte-level handlers instead, so that the load generator spends
 * far less per delivery than the server does.
 *
 * @module
 */

import { decodeBase64 } from "../lib/base64.ts";
import { NONCE_BYTES, type RoomKeys, signJoinProof } from "../lib/crypto.ts";
import { encodeMessage, FrameReader } from "../lib/frame.ts";
import type { Identity } from "../lib/identity.ts";
import { openConnection, testIdentity } from "../tests/support/wire.ts";
import {
  type ClientMessageOf,
  parseServerMessage,
  proveMessage,
  type ServerMessage,
  type ServerMessageOf as Msg,
} from "../lib/protocol.ts";

/** A server message of one type (protocol.ts `ServerMessageOf`). */
export type { Msg };

/** The shared clock of every benchmark process: epoch milliseconds with sub-microsecond resolution. */
export function clock(): number {
  return performance.timeOrigin + performance.now();
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Handlers for the run phase. */
export interface FastPath {
  /** A `message` frame arrived (the body is valid only during the call); `at` is when its read returned. */
  message(body: Uint8Array, at: number): void;
  /** An `ack` frame arrived. */
  ack(body: Uint8Array, at: number): void;
  /** Every frame of one read has been handled. */
  afterRead(at: number): void;
}

/** One benchmark connection. */
export class BenchClient {
  /** The socket. */
  readonly conn: Deno.Conn;
  /** Parsed messages not yet taken (setup phase, and any non-message frame during a run). */
  inbox: ServerMessage[] = [];
  /** Error frames received. */
  errors: Msg<"error">[] = [];
  /** Whether the connection ended. */
  closed = false;
  /** Why it ended, when the server said (bye reason). */
  byeReason: string | undefined;
  /** The run-phase handlers; unset during setup. */
  fast: FastPath | undefined;
  /** Resolves when the read loop ends. */
  readonly ended: Promise<void>;
  #out: Uint8Array[] = [];
  #outBytes = 0;
  #writing = false;
  #wake: (() => void) | undefined;
  #readBytes: number;
  #lastReadAt = 0;
  /** The longest time between two reads during the run phase (ms): how long the load generator left it unread. */
  maxReadGapMs = 0;
  /** The server's key, from its `server` message. */
  serverPub: Uint8Array = new Uint8Array(0);
  /** The identity this client logged in with. */
  identity: Identity | undefined;

  /**
   * @param conn a connected socket
   * @param options.readBytes bytes per read (default 64 KiB)
   */
  constructor(conn: Deno.Conn, options: { readBytes?: number } = {}) {
    this.conn = conn;
    this.#readBytes = options.readBytes ?? 64 * 1024;
    this.ended = this.#readLoop();
  }

  /**
   * Connects to 127.0.0.1.
   *
   * @param port the server port
   * @param options.readBytes bytes per read
   * @returns the client
   */
  static async connect(port: number, options: { readBytes?: number } = {}): Promise<BenchClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    return new BenchClient(conn, options);
  }

  async #readLoop(): Promise<void> {
    const reader = new FrameReader({ maxFrame: 64 * 1024 * 1024 });
    const buf = new Uint8Array(this.#readBytes);
    try {
      while (true) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        const at = clock();
        if (this.fast !== undefined && this.#lastReadAt > 0) {
          this.maxReadGapMs = Math.max(this.maxReadGapMs, at - this.#lastReadAt);
        }
        this.#lastReadAt = at;
        const fast = this.fast;
        let parsed = false;
        for (const body of reader.push(buf.subarray(0, n))) {
          // Every server frame starts with {"type":" (9 bytes); "m" is only message, "a" only ack.
          if (fast !== undefined && body[9] === 0x6d) fast.message(body, at);
          else if (fast !== undefined && body[9] === 0x61) fast.ack(body, at);
          else {
            const msg = parseServerMessage(body);
            if (msg.type === "error") this.errors.push(msg);
            if (msg.type === "bye") this.byeReason = msg.reason;
            this.inbox.push(msg);
            parsed = true;
          }
        }
        if (reader.error) throw reader.error;
        if (fast !== undefined) fast.afterRead(at);
        if (parsed) this.#wake?.();
      }
    } catch {
      // reset, or closed locally
    } finally {
      this.closed = true;
      this.#wake?.();
    }
  }

  /** Whether a write is in flight (the socket has not taken everything queued yet). */
  get writing(): boolean {
    return this.#writing;
  }

  /**
   * Queues bytes for writing; everything queued while a write is in flight goes out in the next single write.
   *
   * @param bytes complete frames
   */
  write(bytes: Uint8Array): void {
    if (this.closed) return;
    this.#out.push(bytes);
    this.#outBytes += bytes.length;
    if (!this.#writing) this.#drain();
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#out.length > 0) {
        const chunk = this.#out.length === 1 ? this.#out[0] : concat(this.#out, this.#outBytes);
        this.#out = [];
        this.#outBytes = 0;
        let at = 0;
        while (at < chunk.length) at += await this.conn.write(chunk.subarray(at));
      }
    } catch {
      this.closed = true;
    } finally {
      this.#writing = false;
    }
  }

  /**
   * Sends one message object as a frame.
   *
   * @param message the message
   */
  send(message: object): void {
    this.write(encodeMessage(message));
  }

  /**
   * Takes the first received message of one of the types, waiting for it.
   *
   * @param types the message types
   * @param options.timeoutMs how long to wait (default 30 s)
   * @returns the message
   */
  async next(types: ServerMessage["type"][], options: { timeoutMs?: number } = {}): Promise<ServerMessage> {
    const deadline = performance.now() + (options.timeoutMs ?? 30_000);
    while (true) {
      const i = this.inbox.findIndex((m) => types.includes(m.type));
      if (i >= 0) return this.inbox.splice(i, 1)[0];
      const left = deadline - performance.now();
      if (left <= 0 || this.closed) {
        throw new Error(
          `no ${types.join("/")} (${this.closed ? `connection closed, bye ${this.byeReason}` : "timeout"}): ${
            JSON.stringify(this.inbox.slice(-3)).slice(0, 300)
          }`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /**
   * Opens the session (hello, server, login) with the nick's test identity and waits for the welcome.
   *
   * @param nick the nick
   * @returns the welcome
   */
  async hello(nick: string): Promise<Msg<"welcome">> {
    const identity = await testIdentity(nick);
    const { serverPub, reply } = await openConnection({
      write: (message) => Promise.resolve(this.send(message)),
      until: (types) => this.next(types),
    }, { nick, identity });
    if (reply.type !== "welcome") throw new Error(`login ${nick} refused: ${JSON.stringify(reply)}`);
    this.serverPub = serverPub;
    this.identity = identity;
    return reply;
  }

  /**
   * Asks to join a room and waits for the challenge.
   *
   * @param room the room
   * @returns the challenge
   */
  async challenge(room: string): Promise<Msg<"challenge">> {
    this.send({ type: "join", room });
    const reply = await this.next(["challenge", "error"]);
    if (reply.type !== "challenge") throw new Error(`join ${room} refused: ${JSON.stringify(reply)}`);
    return reply;
  }

  /**
   * The prove message answering a challenge (creating the room when the challenge has no salt).
   *
   * @param challenge the server's challenge
   * @param who.keys the room keys
   * @param who.nick this client's nick
   * @param who.create salt and iterations to send when creating
   * @returns the message to send
   */
  async proof(
    challenge: Msg<"challenge">,
    who: { keys: RoomKeys; nick: string; create?: { salt: Uint8Array; iterations: number } },
  ): Promise<ClientMessageOf<"prove">> {
    const nonce = decodeBase64(challenge.nonce, { length: NONCE_BYTES });
    const bind = { serverPub: this.serverPub, identityPub: this.identity!.publicKey };
    const proof = await signJoinProof(who.keys, { nonce, room: challenge.room, nick: who.nick, bind });
    if (challenge.salt !== undefined) return proveMessage(challenge.room, proof);
    if (!who.create) throw new Error(`room ${challenge.room} does not exist`);
    return proveMessage(challenge.room, proof, { ...who.create, accessPub: who.keys.accessPub });
  }

  /**
   * Joins a room (creating it when new) and waits for joined.
   *
   * @param room the room
   * @param who.keys the room keys
   * @param who.nick this client's nick
   * @param who.create salt and iterations, when the room may have to be created
   * @returns the joined message
   */
  async join(
    room: string,
    who: { keys: RoomKeys; nick: string; create?: { salt: Uint8Array; iterations: number } },
  ): Promise<Msg<"joined">> {
    const challenge = await this.challenge(room);
    this.send(await this.proof(challenge, who));
    const reply = await this.next(["joined", "error"]);
    if (reply.type !== "joined") throw new Error(`prove ${room} refused: ${JSON.stringify(reply)}`);
    return reply;
  }

  /**
   * Leaves a room (a v2 connection stays in every room it joins, up to --max-rooms-per-connection).
   *
   * @param room the room
   */
  async part(room: string): Promise<void> {
    this.send({ type: "part", room });
    const reply = await this.next(["parted", "error"]);
    if (reply.type !== "parted") throw new Error(`part ${room} refused: ${JSON.stringify(reply)}`);
  }

  /** Closes the socket. */
  close(): void {
    this.closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}
