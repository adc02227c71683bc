/**
 * A raw protocol client for tests and the benchmark: real TCP, real frames, no session logic, so tests can send
 * exactly what they mean (including garbage) and see exactly what the server answers.
 *
 * @module
 */

import {
  deriveRoomKeys,
  makeSalt,
  MIN_ITERATIONS,
  NONCE_BYTES,
  type RoomKeys,
  SALT_BYTES,
  sealEnvelope,
  signJoinProof,
} from "../../lib/crypto.ts";
import { decodeBase64 } from "../../lib/base64.ts";
import { type Envelope, serializeEnvelope } from "../../lib/envelope.ts";
import { encodeFrame, encodeMessage, FrameReader } from "../../lib/frame.ts";
import {
  parseServerMessage,
  proveMessage,
  type ServerMessage,
  type ServerMessageOf as Msg,
} from "../../lib/protocol.ts";

/** A server message of one type (protocol.ts `ServerMessageOf`). */
export type { Msg };

const keyCache = new Map<string, Promise<RoomKeys>>();

/**
 * Derives (once per process) the keys of a room.
 *
 * @param passphrase the passphrase
 * @param options.salt the room salt
 * @param options.iterations the PBKDF2 count
 */
export function cachedKeys(passphrase: string, options: { salt: Uint8Array; iterations: number }): Promise<RoomKeys> {
  const key = `${passphrase}\0${options.salt.toHex()}\0${options.iterations}`;
  let keys = keyCache.get(key);
  if (!keys) {
    keys = deriveRoomKeys(passphrase, options);
    keyCache.set(key, keys);
  }
  return keys;
}

/** A connected raw client. */
export class WireClient {
  /** The socket. */
  readonly conn: Deno.Conn;
  /** Every message received and not yet taken, oldest first. */
  inbox: ServerMessage[] = [];
  /** Whether the server closed the connection. */
  closed = false;
  /** Resolves when the connection is closed. */
  readonly ended: Promise<void>;
  /** The nick after hello. */
  nick = "";
  /** Keys of the joined room. */
  keys: RoomKeys | undefined;
  /** The joined room. */
  room = "";
  #waiters = new Set<() => void>();

  /** @param conn a connected socket */
  constructor(conn: Deno.Conn) {
    this.conn = conn;
    this.ended = this.#readLoop();
  }

  /**
   * Connects to a server on 127.0.0.1.
   *
   * @param port the server port
   * @param options.tls connect with TLS, trusting this PEM certificate
   */
  static async connect(port: number, options: { caCert?: string } = {}): Promise<WireClient> {
    const conn = options.caCert
      ? await Deno.connectTls({ hostname: "localhost", port, caCerts: [options.caCert] })
      : await Deno.connect({ hostname: "127.0.0.1", port });
    return new WireClient(conn);
  }

  async #readLoop(): Promise<void> {
    const reader = new FrameReader({ maxFrame: 64 * 1024 * 1024 });
    const buf = new Uint8Array(65536);
    try {
      while (true) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        for (const body of reader.push(buf.subarray(0, n))) {
          this.inbox.push(parseServerMessage(body));
        }
        if (reader.error) throw reader.error;
        this.#wakeAll();
      }
    } catch {
      // reset or closed locally
    } finally {
      this.closed = true;
      this.#wakeAll();
    }
  }

  /**
   * Sends a message object as one frame.
   *
   * @param message the message
   */
  async send(message: object): Promise<void> {
    await this.writeRaw(encodeMessage(message));
  }

  /**
   * Writes raw bytes (for hostile-input tests).
   *
   * @param bytes anything
   */
  async writeRaw(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.length) at += await this.conn.write(bytes.subarray(at));
  }

  #wakeAll(): void {
    for (const wake of [...this.#waiters]) wake();
  }

  /**
   * Takes the first received message of a type (or matching a test), waiting for it.
   *
   * @param type the message type
   * @param options.timeoutMs how long to wait (default 10 s)
   * @param options.where an extra condition
   */
  next<T extends ServerMessage["type"]>(
    type: T,
    options: { timeoutMs?: number; where?: (m: Msg<T>) => boolean } = {},
  ): Promise<Msg<T>> {
    const where = options.where;
    return this.#take(
      (m) => m.type === type && (!where || where(m as Msg<T>)),
      { what: type, timeoutMs: options.timeoutMs },
    ) as Promise<Msg<T>>;
  }

  /** Takes the first inbox message that passes `test`, waiting for it (any number of takers may wait at once). */
  async #take(
    test: (m: ServerMessage) => boolean,
    options: { what: string; timeoutMs?: number },
  ): Promise<ServerMessage> {
    const deadline = performance.now() + (options.timeoutMs ?? 10_000);
    while (true) {
      const i = this.inbox.findIndex(test);
      if (i >= 0) return this.inbox.splice(i, 1)[0];
      const left = deadline - performance.now();
      if (left <= 0 || this.closed) {
        throw new Error(
          `${this.nick}: no ${options.what} (${this.closed ? "connection closed" : "timeout"}); inbox: ${
            JSON.stringify(this.inbox).slice(0, 500)
          }`,
        );
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.#waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.#waiters.add(wake);
      });
    }
  }

  /**
   * Says hello and waits for the welcome.
   *
   * @param nick the nick
   */
  async hello(nick: string): Promise<Msg<"welcome">> {
    await this.send({ type: "hello", version: 1, nick });
    const welcome = await this.next("welcome");
    this.nick = nick;
    return welcome;
  }

  /**
   * Connects, says hello and joins a room (creating it when new): a member ready to send.
   *
   * @param port the server port
   * @param nick the nick
   * @param options.passphrase the room passphrase
   * @param options.room the room (default "general")
   * @param options.caCert connect with TLS, trusting this PEM certificate
   * @throws {Error} when hello or the join is refused
   */
  static async member(
    port: number,
    nick: string,
    options: { passphrase: string; room?: string; caCert?: string },
  ): Promise<WireClient> {
    const client = await WireClient.connect(port, { caCert: options.caCert });
    await client.hello(nick);
    const reply = await client.join(options.room ?? "general", options.passphrase);
    if (reply.type !== "joined") {
      client.close();
      throw new Error(`${nick} could not join: ${JSON.stringify(reply)}`);
    }
    return client;
  }

  /**
   * Joins (or creates) a room with a passphrase and waits for the answer.
   *
   * @param room the room
   * @param passphrase its passphrase
   * @param options.iterations the PBKDF2 count when creating (default 100000)
   * @returns the joined message, or the error the server sent
   */
  async join(
    room: string,
    passphrase: string,
    options: { iterations?: number } = {},
  ): Promise<Msg<"joined"> | Msg<"error">> {
    await this.send({ type: "join", room });
    // A join may be refused at once (room_invalid, create_limited, room_limit): no challenge then.
    const challenge = await this.nextOf(["challenge", "error"]) as Msg<"challenge"> | Msg<"error">;
    if (challenge.type === "error") return challenge;
    const nonce = decodeBase64(challenge.nonce, { length: NONCE_BYTES });
    let keys: RoomKeys;
    let create: Parameters<typeof proveMessage>[2];
    if (challenge.salt !== undefined) {
      const salt = decodeBase64(challenge.salt, { length: SALT_BYTES });
      keys = await cachedKeys(passphrase, { salt, iterations: challenge.iterations! });
    } else {
      const salt = makeSalt();
      const iterations = options.iterations ?? MIN_ITERATIONS;
      keys = await cachedKeys(passphrase, { salt, iterations });
      create = { salt, iterations, accessPub: keys.accessPub };
    }
    await this.send(proveMessage(room, await signJoinProof(keys, { nonce, room, nick: this.nick }), create));
    while (true) {
      const reply = await this.nextOf(["joined", "error"]);
      if (reply.type === "joined") {
        this.keys = keys;
        this.room = room;
      }
      return reply as Msg<"joined"> | Msg<"error">;
    }
  }

  /**
   * Takes the first message of any of the given types.
   *
   * @param types the message types
   * @param options.timeoutMs how long to wait
   */
  nextOf(types: ServerMessage["type"][], options: { timeoutMs?: number } = {}): Promise<ServerMessage> {
    return this.#take((m) => types.includes(m.type), { what: types.join("/"), timeoutMs: options.timeoutMs });
  }

  /**
   * Seals a text for the joined room.
   *
   * @param body the text
   * @param options.type "text" (default) or "action"
   * @param options.ts the sender's clock to claim (default now)
   */
  seal(body: string, options: { type?: string; id?: Uint8Array; ts?: number } = {}): Promise<Envelope> {
    return sealEnvelope(this.keys!, {
      room: this.room,
      from: this.nick,
      plaintext: { type: options.type ?? "text", body },
      id: options.id,
      ts: options.ts,
    });
  }

  /**
   * Seals and sends a text, then waits for its ack (or an error about it).
   *
   * @param body the text
   * @returns the ack or error
   */
  async say(body: string): Promise<Msg<"ack"> | Msg<"error">> {
    const envelope = await this.seal(body);
    await this.send({ type: "send", envelope });
    return await this.awaitAck(envelope.id);
  }

  /**
   * Waits for the ack of an id, or an error naming it.
   *
   * @param id the message id
   * @param options.timeoutMs how long to wait (default 10 s)
   */
  awaitAck(id: string, options: { timeoutMs?: number } = {}): Promise<Msg<"ack"> | Msg<"error">> {
    return this.#take(
      (m) => (m.type === "ack" || m.type === "error") && m.id === id,
      { what: `ack for ${id}`, timeoutMs: options.timeoutMs },
    ) as Promise<Msg<"ack"> | Msg<"error">>;
  }

  /** Closes the socket. */
  close(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

/** The JSON text of an envelope, as the server stores it. */
export { encodeFrame, serializeEnvelope };

/**
 * Closes clients and waits until each connection has ended.
 *
 * @param clients the clients; undefined entries (never connected) are skipped
 */
export async function closeAll(clients: (WireClient | undefined)[]): Promise<void> {
  for (const c of clients) c?.close();
  await Promise.all(clients.map((c) => c?.ended));
}

/**
 * Joins a room over a raw socket, then never reads again: a client whose queue only grows on the server.
 *
 * @param port the server port
 * @param nick the nick
 * @param options.passphrase the room passphrase (the room must exist)
 * @param options.room the room (default "general")
 * @returns the socket, still open
 */
export async function silentMember(
  port: number,
  nick: string,
  options: { passphrase: string; room?: string },
): Promise<Deno.Conn> {
  const room = options.room ?? "general";
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reader = new FrameReader({ maxFrame: 1 << 24 });
  const buf = new Uint8Array(1 << 16);
  const pending: ServerMessage[] = [];
  const until = async (type: string): Promise<ServerMessage> => {
    while (true) {
      const found = pending.find((m) => m.type === type);
      if (found) return found;
      const n = await conn.read(buf);
      if (n === null) throw new Error(`${nick}: closed before ${type}`);
      for (const body of reader.push(buf.subarray(0, n))) pending.push(parseServerMessage(body));
    }
  };
  const write = async (msg: object) => {
    const bytes = encodeMessage(msg);
    let at = 0;
    while (at < bytes.length) at += await conn.write(bytes.subarray(at));
  };
  await write({ type: "hello", version: 1, nick });
  await until("welcome");
  await write({ type: "join", room });
  const challenge = await until("challenge") as Msg<"challenge">;
  const keys = await cachedKeys(options.passphrase, {
    salt: decodeBase64(challenge.salt!, { length: SALT_BYTES }),
    iterations: challenge.iterations!,
  });
  const proof = await signJoinProof(keys, {
    nonce: decodeBase64(challenge.nonce, { length: NONCE_BYTES }),
    room,
    nick,
  });
  await write(proveMessage(room, proof));
  await until("joined");
  return conn;
}
