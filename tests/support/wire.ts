/**
 * A raw protocol client for tests and the benchmark: real TCP, real frames, no session logic, so tests can send
 * exactly what they mean (including garbage) and see exactly what the server answers.
 *
 * @module
 */

import { decodeBase64 } from "../../lib/base64.ts";
import {
  deriveRoomKeys,
  makeSalt,
  MIN_ITERATIONS,
  NONCE_BYTES,
  type RoomKeys,
  SALT_BYTES,
  signEd25519,
  signJoinProof,
  verifyEd25519,
} from "../../lib/crypto.ts";
import { type Envelope, serializeEnvelope } from "../../lib/envelope.ts";
import { encodeFrame, encodeMessage, FrameReader } from "../../lib/frame.ts";
import {
  CONNECTION_NONCE_BYTES,
  type Identity,
  importIdentity,
  KEY_BYTES,
  loginInput,
  type Rotation,
  serverInput,
} from "../../lib/identity.ts";
import { DEVICE_BYTES, type RoomContext, sealRoomMessage } from "../../lib/message.ts";
import { sealDirect } from "../../lib/direct.ts";
import {
  directFrame,
  helloMessage,
  loginMessage,
  parseServerMessage,
  proveMessage,
  type ServerMessage,
  type ServerMessageOf as Msg,
} from "../../lib/protocol.ts";

/** A server message of one type (protocol.ts `ServerMessageOf`). */
export type { Msg };

const identityCache = new Map<string, Promise<Identity>>();

/**
 * The test identity of a label (by default a client's nick): the same label gives the same keys in every process
 * and run, so a nick keeps its registered key across reconnects and restarts, and another label is another person.
 *
 * @param label any text
 * @returns the identity
 */
export function testIdentity(label: string): Promise<Identity> {
  let identity = identityCache.get(label);
  if (!identity) {
    const seed = async (purpose: string) =>
      new Uint8Array(
        await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`aeschat test identity ${purpose}\0${label}`)),
      );
    identity = (async () => importIdentity({ signSeed: await seed("sign"), kxSecret: await seed("kx") }))();
    identityCache.set(label, identity);
  }
  return identity;
}

/** The two directions of a raw connection the opening needs: write a message, wait for one of some types. */
export interface OpeningIo {
  write(message: object): Promise<void>;
  until(types: ServerMessage["type"][]): Promise<ServerMessage>;
}

/** What the opening learned: the server's key, and the welcome or the error that refused the login. */
export interface Opened {
  serverPub: Uint8Array;
  reply: Msg<"welcome"> | Msg<"error">;
}

/**
 * hello, server (whose signature is checked), login: the protocol v2 opening, over any raw connection.
 *
 * @param io the connection
 * @param login.nick the nick to log in with
 * @param login.identity the identity
 * @param login.rotation a rotation statement to present
 * @param login.sign the login signature to send instead of the right one (attack tests)
 * @param login.clientNonce the hello's nonce (default: fresh; a replay test repeats an old one)
 */
export async function openConnection(
  io: OpeningIo,
  login: {
    nick: string;
    identity: Identity;
    rotation?: Rotation;
    sign?: (input: Uint8Array, server: Msg<"server">) => Promise<Uint8Array>;
    clientNonce?: Uint8Array;
  },
): Promise<Opened> {
  const clientNonce = login.clientNonce ?? crypto.getRandomValues(new Uint8Array(CONNECTION_NONCE_BYTES));
  await io.write(helloMessage(clientNonce));
  const server = await io.until(["server", "error"]);
  if (server.type === "error") return { serverPub: new Uint8Array(0), reply: server };
  if (server.type !== "server") throw new Error(`expected server, got ${server.type}`);
  const serverPub = decodeBase64(server.key, { length: KEY_BYTES });
  const serverNonce = decodeBase64(server.nonce, { length: CONNECTION_NONCE_BYTES });
  const signed = await verifyEd25519(serverPub, {
    input: serverInput({ clientNonce, serverNonce }),
    signature: decodeBase64(server.signature),
  });
  if (!signed) throw new Error("the server's signature does not verify");
  const { identity, nick } = login;
  const input = loginInput({ serverPub, serverNonce, clientNonce, identityPub: identity.publicKey, nick });
  const signature = login.sign ? await login.sign(input, server) : await signEd25519(identity.signKey, input);
  await io.write(loginMessage({
    nick,
    key: identity.publicKey,
    kx: identity.kxPublic,
    kxSig: identity.kxSignature,
    signature,
  }, login.rotation && { oldKey: login.rotation.oldKey, ts: login.rotation.ts, signature: login.rotation.signature }));
  const reply = await io.until(["welcome", "error"]) as Msg<"welcome"> | Msg<"error">;
  return { serverPub, reply };
}

/** A room a client is in: its keys, what its messages sign, and the client's sequence number there. */
export interface JoinedRoom {
  /** The room keys. */
  keys: RoomKeys;
  /** The room instance messages are signed for. */
  context: RoomContext;
  /** The number of the last message sealed for it. */
  n: number;
}

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
  /** The canonical nick after the login. */
  nick = "";
  /** The identity it logged in with. */
  identity: Identity | undefined;
  /** The server's key, from its `server` message. */
  serverPub: Uint8Array = new Uint8Array(0);
  /** Keys of the room joined last. */
  keys: RoomKeys | undefined;
  /** The room joined last (canonical): where {@link WireClient.seal} seals by default. */
  room = "";
  /** Every room joined, by canonical name. */
  readonly rooms = new Map<string, JoinedRoom>();
  /** This client's device id, in every message it signs. */
  readonly device: Uint8Array<ArrayBuffer> = crypto.getRandomValues(new Uint8Array(DEVICE_BYTES));
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
   * Opens the session (hello, server, login) and waits for the welcome.
   *
   * @param nick the nick
   * @param options.identity the identity (default: {@link testIdentity} of the nick)
   * @param options.rotation a rotation statement to present
   * @throws {Error} when the login is refused (the error names the code)
   */
  async hello(nick: string, options: { identity?: Identity; rotation?: Rotation } = {}): Promise<Msg<"welcome">> {
    const reply = await this.login(nick, options);
    if (reply.type !== "welcome") throw new Error(`${nick}: login refused: ${reply.code}: ${reply.message}`);
    return reply;
  }

  /**
   * Opens the session (hello, server, login) and returns the welcome, or the error that refused the login.
   *
   * @param nick the nick
   * @param options.identity the identity (default: {@link testIdentity} of the nick)
   * @param options.rotation a rotation statement to present
   * @param options.sign makes the login signature instead (to send a wrong one)
   * @param options.clientNonce the hello's nonce (default: fresh)
   */
  async login(
    nick: string,
    options: {
      identity?: Identity;
      rotation?: Rotation;
      sign?: (input: Uint8Array, server: Msg<"server">) => Promise<Uint8Array>;
      clientNonce?: Uint8Array;
    } = {},
  ): Promise<Msg<"welcome"> | Msg<"error">> {
    const identity = options.identity ?? await testIdentity(nick);
    const opened = await openConnection({
      write: (message) => this.send(message),
      until: (types) => this.nextOf(types),
    }, { nick, identity, ...options });
    this.serverPub = opened.serverPub;
    if (opened.reply.type === "welcome") {
      this.nick = opened.reply.nick;
      this.identity = identity;
    }
    return opened.reply;
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
   * Joins (or creates) a room with a passphrase and waits for the answer. The proof is made for the room the
   * challenge names (the canonical spelling) and sent whatever the passphrase: a raw client, it checks nothing.
   *
   * @param room the room, any spelling
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
    // A join may be refused at once (room_invalid, create_limited, room_limit, too_many_rooms): no challenge then.
    const challenge = await this.nextOf(["challenge", "error"]) as Msg<"challenge"> | Msg<"error">;
    if (challenge.type === "error") return challenge;
    const { prove, keys } = await proveFor(challenge, {
      passphrase,
      nick: this.nick,
      serverPub: this.serverPub,
      identity: this.identity!,
      iterations: options.iterations,
    });
    await this.send(prove);
    const reply = await this.nextOf(["joined", "error"]) as Msg<"joined"> | Msg<"error">;
    if (reply.type === "joined") {
      this.keys = keys;
      this.room = reply.room;
      const accessPub = prove.access_pub === undefined ? decodeBase64(challenge.access_pub!) : keys.accessPub;
      this.rooms.set(reply.room, {
        keys,
        context: { serverPub: this.serverPub, room: reply.room, accessPub, epoch: reply.epoch },
        n: 0,
      });
    }
    return reply;
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
   * Signs and seals a text (a v2 room message) for the room joined last, or another joined room.
   *
   * @param body the text
   * @param options.type "text" (default) or "action"
   * @param options.id the message id (default random)
   * @param options.ts the sender's clock to claim (default now)
   * @param options.room a joined room (canonical name) other than the last
   */
  seal(body: string, options: { type?: string; id?: Uint8Array; ts?: number; room?: string } = {}): Promise<Envelope> {
    const joined = this.rooms.get(options.room ?? this.room);
    if (joined === undefined) throw new Error(`${this.nick} is not in room ${options.room ?? this.room}`);
    joined.n++;
    return sealRoomMessage(joined.keys, {
      context: joined.context,
      from: this.nick,
      identity: this.identity!,
      content: { type: options.type ?? "text", body },
      sequence: { device: this.device, n: joined.n, acked: 0, void: [] },
      id: options.id,
      ts: options.ts,
    });
  }

  /**
   * Asks the server for a nick's identity.
   *
   * @param nick the nick
   * @returns the identity, or the error
   */
  async lookup(nick: string): Promise<Msg<"identity"> | Msg<"error">> {
    await this.send({ type: "lookup", nick });
    return await this.nextOf(["identity", "error"]) as Msg<"identity"> | Msg<"error">;
  }

  /**
   * Seals a direct message for a nick (looked up on the server) and its copy for this client.
   *
   * @param to the recipient's nick
   * @param body the text
   * @param options.id the message id (default random)
   * @returns the two envelopes, not sent
   * @throws {Error} when the lookup is refused
   */
  async sealDirectTo(to: string, body: string, options: { id?: Uint8Array } = {}) {
    const identity = await this.lookup(to);
    if (identity.type !== "identity") throw new Error(`lookup ${to}: ${identity.code}`);
    return await sealDirect(this.identity!, {
      serverPub: this.serverPub,
      from: this.nick,
      to: { nick: identity.nick, key: decodeBase64(identity.key), kx: decodeBase64(identity.kx) },
      content: { type: "text", body },
      id: options.id,
    });
  }

  /**
   * Seals and sends a direct message to a nick, then waits for its ack (or an error about it).
   *
   * @param to the recipient's nick
   * @param body the text
   * @returns the envelopes sent, and the ack or error
   */
  async direct(to: string, body: string) {
    const sealed = await this.sealDirectTo(to, body);
    await this.writeRaw(directFrame(sealed.envelope.to, sealed));
    return { ...sealed, reply: await this.awaitAck(sealed.envelope.id) };
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

/**
 * The `prove` answering a challenge with a passphrase: the v2 join proof bound to the server key and the identity,
 * for the room the challenge names; with the new room's parameters when the challenge carried none.
 *
 * @param challenge the server's challenge
 * @param who.passphrase the passphrase
 * @param who.nick the connection's canonical nick
 * @param who.serverPub the server's key
 * @param who.identity the connection's identity
 * @param who.iterations the PBKDF2 count when creating (default 100000)
 * @returns the message, and the room keys
 */
export async function proveFor(
  challenge: Msg<"challenge">,
  who: { passphrase: string; nick: string; serverPub: Uint8Array; identity: Identity; iterations?: number },
): Promise<{ prove: ReturnType<typeof proveMessage>; keys: RoomKeys }> {
  const nonce = decodeBase64(challenge.nonce, { length: NONCE_BYTES });
  let keys: RoomKeys;
  let create: Parameters<typeof proveMessage>[2];
  if (challenge.salt !== undefined) {
    const salt = decodeBase64(challenge.salt, { length: SALT_BYTES });
    keys = await cachedKeys(who.passphrase, { salt, iterations: challenge.iterations! });
  } else {
    const salt = makeSalt();
    const iterations = who.iterations ?? MIN_ITERATIONS;
    keys = await cachedKeys(who.passphrase, { salt, iterations });
    create = { salt, iterations, accessPub: keys.accessPub };
  }
  const bind = { serverPub: who.serverPub, identityPub: who.identity.publicKey };
  const proof = await signJoinProof(keys, { nonce, room: challenge.room, nick: who.nick, bind });
  return { prove: proveMessage(challenge.room, proof, create), keys };
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
  const until = async (test: (m: ServerMessage) => boolean): Promise<ServerMessage> => {
    while (true) {
      const i = pending.findIndex(test);
      if (i >= 0) return pending.splice(i, 1)[0];
      const n = await conn.read(buf);
      if (n === null) throw new Error(`${nick}: closed during the opening or join`);
      for (const body of reader.push(buf.subarray(0, n))) pending.push(parseServerMessage(body));
    }
  };
  const write = async (msg: object) => {
    const bytes = encodeMessage(msg);
    let at = 0;
    while (at < bytes.length) at += await conn.write(bytes.subarray(at));
  };
  const identity = await testIdentity(nick);
  const { serverPub, reply } = await openConnection({
    write,
    until: (types) => until((m) => types.includes(m.type)),
  }, { nick, identity });
  if (reply.type !== "welcome") throw new Error(`${nick}: login refused: ${reply.code}`);
  await write({ type: "join", room });
  const challenge = await until((m) => m.type === "challenge") as Msg<"challenge">;
  const { prove } = await proveFor(challenge, { passphrase: options.passphrase, nick, serverPub, identity });
  await write(prove);
  await until((m) => m.type === "joined");
  return conn;
}
