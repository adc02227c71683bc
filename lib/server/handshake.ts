/**
 * The opening of a protocol v2 connection, on the server's side: the `server` message that proves the server holds
 * its key (a signature over the client's fresh nonce and its own), and the checks of a `login` (its keys' shapes,
 * the nick rules, the login signature bound to this server and both nonces, and the key-agreement key's signature).
 * What the login then claims (the nick) is the registry's business.
 *
 * @module
 */

import { decodeBase64 } from "../base64.ts";
import { PROOF_BYTES, signEd25519, verifyEd25519 } from "../crypto.ts";
import { CONNECTION_NONCE_BYTES, KEY_BYTES, kxInput, loginInput, type Rotation, serverInput } from "../identity.ts";
import { NameError, validateNick } from "../names.ts";
import { type ClientMessageOf, PROTOCOL_VERSION, ProtocolError, type ServerMessageOf } from "../protocol.ts";

/** Server software name sent in `server`. */
export const SERVER_NAME = "aeschat";

/** The server's own key, imported once. */
export interface ServerKey {
  /** The Ed25519 signing key (not extractable). */
  privateKey: CryptoKey;
  /** The 32-byte public key. */
  publicKey: Uint8Array;
}

/** The nonces of one connection's opening. */
export interface Nonces {
  /** From the client's hello. */
  clientNonce: Uint8Array;
  /** From the server's `server` message. */
  serverNonce: Uint8Array;
}

/** A login whose signatures verify: the keys it presents, and its nick (valid by the rules, not yet claimed). */
export interface VerifiedLogin {
  /** The nick as sent. */
  nick: string;
  /** The 32-byte identity key. */
  key: Uint8Array<ArrayBuffer>;
  /** The 32-byte key-agreement key. */
  kx: Uint8Array<ArrayBuffer>;
  /** Its signature by the identity key. */
  kxSig: Uint8Array<ArrayBuffer>;
  /** The rotation statement, decoded (its signature is checked by the registry). */
  rotation?: Rotation;
}

/**
 * Answers a `hello`: checks its version and nonce, and signs both nonces with the server key.
 *
 * @example
 * ```ts
 * const { reply, nonces } = await answerHello(hello, { key, version: "0.1.0" });
 * peer.send(encodeMessage(reply));
 * ```
 * @param hello the client's hello
 * @param server.key the server key
 * @param server.version the software version, for `server_version`
 * @returns the `server` message and the nonces the login must sign
 * @throws {ProtocolError} `version_unsupported` or `bad_message` (both fatal)
 */
export async function answerHello(
  hello: ClientMessageOf<"hello">,
  server: { key: ServerKey; version: string },
): Promise<{ reply: ServerMessageOf<"server">; nonces: Nonces }> {
  if (hello.version !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      "version_unsupported",
      `protocol version ${hello.version} is not supported: this server speaks version ${PROTOCOL_VERSION} only`,
    );
  }
  const clientNonce = field(hello.nonce, "hello.nonce", CONNECTION_NONCE_BYTES);
  const serverNonce = crypto.getRandomValues(new Uint8Array(CONNECTION_NONCE_BYTES));
  const signature = await signEd25519(server.key.privateKey, serverInput({ clientNonce, serverNonce }));
  return {
    reply: {
      type: "server",
      server: SERVER_NAME,
      server_version: server.version,
      version: PROTOCOL_VERSION,
      key: server.key.publicKey.toBase64(),
      nonce: serverNonce.toBase64(),
      signature: signature.toBase64(),
    },
    nonces: { clientNonce, serverNonce },
  };
}

/**
 * Checks a `login`: the shapes of its keys and signatures, the nick rules, the login signature (bound to this
 * server's key, both nonces, the identity key and the nick exactly as sent) and the key-agreement key's signature.
 *
 * @example
 * ```ts
 * const login = await verifyLogin(msg, { serverPub, nonces });
 * ```
 * @param msg the login
 * @param context.serverPub this server's public key
 * @param context.nonces this connection's nonces
 * @returns the verified keys and the nick
 * @throws {ProtocolError} `bad_message` (a malformed field), `nick_invalid` or `bad_signature` (all fatal)
 */
export async function verifyLogin(
  msg: ClientMessageOf<"login">,
  context: { serverPub: Uint8Array; nonces: Nonces },
): Promise<VerifiedLogin> {
  const key = field(msg.key, "login.key", KEY_BYTES);
  const kx = field(msg.kx, "login.kx", KEY_BYTES);
  const kxSig = field(msg.kx_sig, "login.kx_sig", PROOF_BYTES);
  const signature = field(msg.signature, "login.signature", PROOF_BYTES);
  let rotation: Rotation | undefined;
  if (msg.rotation !== undefined) {
    rotation = {
      oldKey: field(msg.rotation.old, "login.rotation.old", KEY_BYTES),
      newKey: key,
      ts: msg.rotation.ts,
      signature: field(msg.rotation.signature, "login.rotation.signature", PROOF_BYTES),
    };
  }
  try {
    validateNick(msg.nick);
  } catch (err) {
    if (err instanceof NameError) throw new ProtocolError("nick_invalid", err.message);
    throw err;
  }
  const input = loginInput({
    serverPub: context.serverPub,
    serverNonce: context.nonces.serverNonce,
    clientNonce: context.nonces.clientNonce,
    identityPub: key,
    nick: msg.nick,
  });
  if (!await verifyEd25519(key, { input, signature })) {
    throw new ProtocolError(
      "bad_signature",
      "the login signature does not verify for this server, this connection and this nick",
    );
  }
  if (!await verifyEd25519(key, { input: kxInput(key, kx), signature: kxSig })) {
    throw new ProtocolError("bad_signature", "kx_sig does not verify: the key-agreement key is not signed by the key");
  }
  return { nick: msg.nick, key, kx, kxSig, rotation };
}

function field(value: string, name: string, bytes: number): Uint8Array<ArrayBuffer> {
  try {
    return decodeBase64(value, { length: bytes });
  } catch {
    throw new ProtocolError("bad_message", `${name} must be canonical base64 of ${bytes} bytes`);
  }
}
