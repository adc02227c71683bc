/**
 * Opening a connection (PROTOCOL.md "Opening a connection"): `hello` with a fresh nonce, the server's signature over
 * both nonces checked and its key compared with the one pinned for the address, then `login` with the user's
 * identity (and the statement that rotated it, if any), and the `welcome` checked. Every way it can fail is a
 * {@link SessionError} whose kind picks the exit code: a changed server key is "changed" (exit 7).
 *
 * @module
 */

import { canonicalBase64Length, decodeBase64 } from "../base64.ts";
import { sameBytes } from "../bytes.ts";
import { signEd25519, verifyEd25519 } from "../crypto.ts";
import {
  CONNECTION_NONCE_BYTES,
  fingerprint,
  formatFingerprint,
  type Identity,
  KEY_BYTES,
  loginInput,
  type Rotation,
  serverInput,
} from "../identity.ts";
import { foldName } from "../names.ts";
import {
  type ClientMessage,
  helloMessage,
  loginMessage,
  parseLimits,
  PROTOCOL_VERSION,
  type ServerLimits,
  type ServerMessage,
  type ServerMessageOf,
} from "../protocol.ts";
import { SessionError } from "./errors.ts";

/** Server error codes after `login` that retrying cannot fix: the nick belongs to another key, or may not be used. */
const NICK_REFUSALS = new Set([
  "nick_invalid",
  "nick_registered",
  "registration_closed",
  "too_many_nicks",
  "registration_limited",
]);

/** What a handshake needs: the connection, and the pins it compares the server with. */
export interface HandshakeIo {
  /** Writes one message. */
  write(message: ClientMessage): void;
  /** Waits for the next message that passes `test` (rejects when the connection ends or nothing comes in time). */
  expect(test: (message: ServerMessage) => boolean): Promise<ServerMessage>;
  /** Compares the server's key with the pin for the address (home.meetServer). */
  meetServer(key: Uint8Array): "pinned" | "same" | "changed";
  /** The key pinned for the address, when one is (for the refusal's message). */
  pinnedKey(): Uint8Array | undefined;
}

/** Who the client logs in as. */
export interface LoginAs {
  /** "host:port", as pinned and as shown to the user. */
  address: string;
  /** The nick asked for. */
  nick: string;
  /** The user's identity. */
  identity: Identity;
  /** Statements this identity made when it replaced older keys, oldest first: the last one is presented. */
  rotations: readonly Rotation[];
}

/** What a successful handshake established. */
export interface Greeting {
  /** The server's key (it proved it holds it). */
  serverPub: Uint8Array<ArrayBuffer>;
  /** Its fingerprint. */
  serverFingerprint: string;
  /** Whether this was the first contact with this address (the key was pinned now). */
  firstContact: boolean;
  /** The canonical nick (`welcome.nick`). */
  nick: string;
  /** The checked limits. */
  limits: ServerLimits;
  /** The newest seq of this identity's inbox. */
  directSeq: number;
}

/**
 * Says hello, checks the server, logs in and checks the welcome.
 *
 * @example
 * ```ts
 * const greeting = await handshake(io, { address: "127.0.0.1:5000", nick: "alice", identity, rotations: [] });
 * ```
 * @param io the connection and the address's pin
 * @param as who to log in as
 * @returns what was established
 * @throws {SessionError} "connect" (not a usable server), "changed" (its key differs from the pin), "nick" (refused)
 */
export async function handshake(io: HandshakeIo, as: LoginAs): Promise<Greeting> {
  const clientNonce = crypto.getRandomValues(new Uint8Array(CONNECTION_NONCE_BYTES));
  io.write(helloMessage(clientNonce));
  const server = await reply(io, "server");
  const { serverPub, serverNonce } = await checkServer(server, clientNonce);
  const meeting = io.meetServer(serverPub);
  const serverFingerprint = await fingerprint(serverPub);
  if (meeting === "changed") {
    const pinned = io.pinnedKey();
    const old = pinned ? formatFingerprint(await fingerprint(pinned)) : "another key";
    throw new SessionError(
      "changed",
      `the server at ${as.address} now shows key ${formatFingerprint(serverFingerprint)} (pinned: ${old}); ` +
        `if you trust the change: deno task client trust-server ${as.address} ${serverFingerprint}`,
      { code: "server_key_changed" },
    );
  }
  const signature = await signEd25519(
    as.identity.signKey,
    loginInput({ serverPub, serverNonce, clientNonce, identityPub: as.identity.publicKey, nick: as.nick }),
  );
  const rotation = as.rotations.findLast((r) => sameBytes(r.newKey, as.identity.publicKey));
  io.write(loginMessage(
    {
      nick: as.nick,
      key: as.identity.publicKey,
      kx: as.identity.kxPublic,
      kxSig: as.identity.kxSignature,
      signature,
    },
    rotation ? { oldKey: rotation.oldKey, ts: rotation.ts, signature: rotation.signature } : undefined,
  ));
  const welcome = await reply(io, "welcome");
  if (typeof welcome.nick !== "string" || foldName(welcome.nick) !== foldName(as.nick)) {
    throw refusal(`welcome.nick is not the nick asked for`);
  }
  let limits: ServerLimits;
  try {
    limits = parseLimits(welcome.limits);
  } catch (err) {
    throw refusal((err as Error).message);
  }
  return {
    serverPub,
    serverFingerprint,
    firstContact: meeting === "pinned",
    nick: welcome.nick,
    limits,
    directSeq: welcome.direct_seq,
  };
}

function refusal(why: string): SessionError {
  return new SessionError("connect", `refusing the server: ${why}`, { code: "bad_welcome" });
}

/** The next `server`/`welcome`, or the error the server sent instead (a nick refusal is its own kind). */
async function reply<T extends "server" | "welcome">(io: HandshakeIo, type: T): Promise<ServerMessageOf<T>> {
  let message: ServerMessage;
  try {
    message = await io.expect((m) => m.type === type || m.type === "error");
  } catch (err) {
    throw new SessionError("connect", (err as Error).message);
  }
  if (message.type === "error") {
    const code = message.code;
    if (NICK_REFUSALS.has(code)) {
      const why = code === "nick_registered"
        ? "that nick is registered to another identity key (someone else's, or yours from another home)"
        : message.message;
      throw new SessionError("nick", `server refused the nick: ${why}`, { code });
    }
    throw new SessionError("connect", `server refused: ${message.message}`, { code });
  }
  return message as ServerMessageOf<T>;
}

async function checkServer(
  server: ServerMessageOf<"server">,
  clientNonce: Uint8Array,
): Promise<{ serverPub: Uint8Array<ArrayBuffer>; serverNonce: Uint8Array<ArrayBuffer> }> {
  if (server.version !== PROTOCOL_VERSION) {
    throw refusal(`it speaks protocol version ${server.version}, not ${PROTOCOL_VERSION}`);
  }
  if (canonicalBase64Length(server.key) !== KEY_BYTES) throw refusal("server.key is not a 32-byte key");
  if (canonicalBase64Length(server.nonce) !== CONNECTION_NONCE_BYTES) throw refusal("server.nonce is not 32 bytes");
  if (canonicalBase64Length(server.signature) !== 64) throw refusal("server.signature is not 64 bytes");
  const serverPub = decodeBase64(server.key);
  const serverNonce = decodeBase64(server.nonce);
  const signature = decodeBase64(server.signature);
  if (!await verifyEd25519(serverPub, { input: serverInput({ clientNonce, serverNonce }), signature })) {
    throw refusal("it cannot prove it holds its key (the server signature does not verify)");
  }
  return { serverPub, serverNonce };
}

/**
 * Whether a host name or address is the loopback interface (where plain TCP does not cross a network).
 *
 * @example
 * ```ts
 * isLoopback("127.0.0.1"); // true
 * isLoopback("chat.example.com"); // false
 * ```
 * @param host the host as given with --host
 * @returns true for localhost, 127.0.0.0/8 and ::1
 */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "").replace(/\.$/, "");
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}
