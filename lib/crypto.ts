/**
 * The v1 wire cryptography: room key derivation, envelope seal/open (AES-256-CBC then HMAC-SHA256), and the
 * Ed25519 join proof. WebCrypto only; PROTOCOL.md states the same thing byte by byte.
 *
 * @module
 */

import { findDuplicateMember } from "./json_members.ts";
import { decodeBase64, encodeBase64 } from "./base64.ts";
import { concat, lp, u64be } from "./bytes.ts";
import {
  type Envelope,
  EnvelopeError,
  ID_BYTES,
  IV_BYTES,
  MAX_BODY_BYTES,
  parseEnvelope,
  serializeEnvelope,
} from "./envelope.ts";

/** Default PBKDF2 iteration count for a new room (OWASP's figure for PBKDF2-HMAC-SHA256). */
export const DEFAULT_ITERATIONS = 600_000;
/** Smallest PBKDF2 iteration count accepted. */
export const MIN_ITERATIONS = 100_000;
/** Largest PBKDF2 iteration count accepted. */
export const MAX_ITERATIONS = 10_000_000;
/** Bytes in a room salt. */
export const SALT_BYTES = 16;
/** Bytes in a join nonce. */
export const NONCE_BYTES = 32;
/** Bytes in an Ed25519 public key. */
export const ACCESS_PUB_BYTES = 32;
/** Bytes in an Ed25519 signature. */
export const PROOF_BYTES = 64;

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });
/** The envelope MAC label of each envelope version. */
const MSG_LABELS: Record<1 | 2, Uint8Array> = {
  1: encoder.encode("aeschat v1 msg\0"),
  2: encoder.encode("aeschat v2 msg\0"),
};
const JOIN_LABEL = encoder.encode("aeschat v1 join\0");
const JOIN_LABEL_V2 = encoder.encode("aeschat v2 join\0");
// PKCS#8 DER prefix of an Ed25519 private key (RFC 8410); the 32-byte seed follows.
const PKCS8_ED25519_PREFIX = Uint8Array.fromHex("302e020100300506032b657004220420");

/** Raised for bad key-derivation inputs (passphrase, salt, iterations); the message says which. */
export class KeyDerivationError extends Error {
  /** @param message what is wrong */
  constructor(message: string) {
    super(message);
    this.name = "KeyDerivationError";
  }
}

/**
 * Raised when an envelope cannot be opened. Deliberately says nothing about why (shape, tag, padding or
 * plaintext), so it cannot serve as an oracle.
 */
export class OpenError extends Error {
  constructor() {
    super("Cannot open envelope: it is malformed or not authentic");
    this.name = "OpenError";
  }
}

/**
 * The secrets of one room, as derived on a client. The WebCrypto keys are not extractable; `master` is kept in
 * memory as bytes because an invitation hands it on and `--remember` stores it.
 */
export interface RoomKeys {
  /** The 32-byte room master secret (PBKDF2 output) that the other keys are derived from. */
  master: Uint8Array<ArrayBuffer>;
  /** AES-256-CBC key, non-extractable. */
  encKey: CryptoKey;
  /** HMAC-SHA256 key, non-extractable. */
  macKey: CryptoKey;
  /** Ed25519 private key for join proofs, non-extractable. */
  accessKey: CryptoKey;
  /** The Ed25519 public key (32 bytes) the server keeps as the room's verifier. */
  accessPub: Uint8Array<ArrayBuffer>;
}

/** The decrypted content of a message. */
export interface Plaintext {
  /** "text" for an ordinary message, "action" for /me. */
  type: string;
  /** What was said. */
  body: string;
  /** Any further fields the sender included. */
  [field: string]: unknown;
}

/** An opened envelope. */
export interface OpenedMessage {
  /** Room the envelope was sealed for. */
  room: string;
  /** Sender nick. */
  from: string;
  /** Message id, base64. */
  id: string;
  /** Sender timestamp, ms since the epoch. */
  ts: number;
  /** The decrypted plaintext. */
  plaintext: Plaintext;
}

/**
 * Normalizes and encodes a passphrase: NFC, UTF-8, non-empty, well-formed.
 *
 * @example
 * ```ts
 * passphraseBytes("e\u0301"); // the bytes of "é" (c3 a9)
 * ```
 * @param passphrase the room passphrase
 * @returns its UTF-8 bytes after NFC normalization
 * @throws {KeyDerivationError} when empty or not well-formed Unicode
 */
export function passphraseBytes(passphrase: string): Uint8Array<ArrayBuffer> {
  if (typeof passphrase !== "string" || passphrase.length === 0) {
    throw new KeyDerivationError("passphrase must not be empty");
  }
  if (!passphrase.isWellFormed()) {
    throw new KeyDerivationError("passphrase is not well-formed Unicode (lone surrogate)");
  }
  return encoder.encode(passphrase.normalize("NFC")) as Uint8Array<ArrayBuffer>;
}

/**
 * Checks a PBKDF2 iteration count.
 *
 * @example
 * ```ts
 * checkIterations(600000); // ok
 * checkIterations(1000); // throws KeyDerivationError
 * ```
 * @param iterations candidate count
 * @throws {KeyDerivationError} when not an integer in MIN_ITERATIONS..MAX_ITERATIONS
 */
export function checkIterations(iterations: unknown): asserts iterations is number {
  if (
    typeof iterations !== "number" || !Number.isInteger(iterations) ||
    iterations < MIN_ITERATIONS || iterations > MAX_ITERATIONS
  ) {
    throw new KeyDerivationError(
      `iterations must be an integer from ${MIN_ITERATIONS} to ${MAX_ITERATIONS}, got ${iterations}`,
    );
  }
}

/**
 * Makes a fresh random 16-byte room salt.
 *
 * @example
 * ```ts
 * const salt = makeSalt(); // 16 random bytes
 * ```
 * @returns the salt
 */
export function makeSalt(): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(SALT_BYTES));
}

async function hkdfBits(master: CryptoKey, info: string): Promise<Uint8Array<ArrayBuffer>> {
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: encoder.encode(info) },
    master,
    256,
  );
  return new Uint8Array(bits);
}

/** Bytes of a room master secret. */
export const MASTER_BYTES = 32;

/**
 * Derives a room's master secret from its passphrase: PBKDF2-HMAC-SHA256 with the room's salt and count, 32 bytes.
 * Slow on purpose (about 0.1 s at 600000 iterations).
 *
 * @example
 * ```ts
 * const master = await deriveRoomMaster("correct horse battery staple", { salt, iterations: 600000 });
 * ```
 * @param passphrase the room passphrase (NFC-normalized here)
 * @param options.salt the room's 16-byte salt
 * @param options.iterations the room's PBKDF2 count
 * @returns the 32-byte master secret
 * @throws {KeyDerivationError} for an empty passphrase, a bad salt or an out-of-range count
 */
export async function deriveRoomMaster(
  passphrase: string,
  options: { salt: Uint8Array; iterations: number },
): Promise<Uint8Array<ArrayBuffer>> {
  const { salt, iterations } = options;
  const pass = passphraseBytes(passphrase);
  if (!(salt instanceof Uint8Array) || salt.length !== SALT_BYTES) {
    throw new KeyDerivationError(`salt must be ${SALT_BYTES} bytes`);
  }
  checkIterations(iterations);
  const passKey = await crypto.subtle.importKey("raw", pass, "PBKDF2", false, ["deriveBits"]);
  pass.fill(0);
  return new Uint8Array(
    await crypto.subtle.deriveBits(
      { name: "PBKDF2", hash: "SHA-256", salt: new Uint8Array(salt), iterations },
      passKey,
      256,
    ),
  );
}

/**
 * Derives a room's keys from its master secret with HKDF-SHA256 (empty salt) and the infos "aeschat v1 enc",
 * "aeschat v1 mac" and "aeschat v1 access". This is how an invited member, who receives the master and never the
 * passphrase, gets the same keys.
 *
 * @example
 * ```ts
 * const keys = await roomKeysFromMaster(master);
 * ```
 * @param master the 32-byte master secret (kept, as a copy, in the returned keys)
 * @returns the room keys
 * @throws {KeyDerivationError} when the master is not 32 bytes
 */
export async function roomKeysFromMaster(master: Uint8Array): Promise<RoomKeys> {
  if (!(master instanceof Uint8Array) || master.length !== MASTER_BYTES) {
    throw new KeyDerivationError(`a room master secret is ${MASTER_BYTES} bytes`);
  }
  const kept = new Uint8Array(master);
  const hkdf = await crypto.subtle.importKey("raw", kept, "HKDF", false, ["deriveBits"]);
  const enc = await hkdfBits(hkdf, "aeschat v1 enc");
  const mac = await hkdfBits(hkdf, "aeschat v1 mac");
  const seed = await hkdfBits(hkdf, "aeschat v1 access");
  try {
    const encKey = await crypto.subtle.importKey("raw", enc, { name: "AES-CBC", length: 256 }, false, [
      "encrypt",
      "decrypt",
    ]);
    const macKey = await crypto.subtle.importKey(
      "raw",
      mac,
      { name: "HMAC", hash: "SHA-256", length: 256 },
      false,
      ["sign", "verify"],
    );
    const { accessKey, accessPub } = await importAccessSeed(seed);
    return { master: kept, encKey, macKey, accessKey, accessPub };
  } finally {
    enc.fill(0);
    mac.fill(0);
    seed.fill(0);
  }
}

/**
 * Derives a room's keys from its passphrase, salt and iteration count: {@link deriveRoomMaster}, then
 * {@link roomKeysFromMaster}. Callers cache the result in memory.
 *
 * @example
 * ```ts
 * const keys = await deriveRoomKeys("correct horse battery staple", {
 *   salt: Uint8Array.fromHex("000102030405060708090a0b0c0d0e0f"),
 *   iterations: 100000,
 * });
 * keys.accessPub.toHex(); // "fc0d1b8e…"
 * ```
 * @param passphrase the room passphrase (NFC-normalized here)
 * @param options.salt the room's 16-byte salt
 * @param options.iterations the room's PBKDF2 count
 * @returns the room keys
 * @throws {KeyDerivationError} for an empty passphrase, a bad salt or an out-of-range count
 */
export async function deriveRoomKeys(
  passphrase: string,
  options: { salt: Uint8Array; iterations: number },
): Promise<RoomKeys> {
  const master = await deriveRoomMaster(passphrase, options);
  try {
    return await roomKeysFromMaster(master);
  } finally {
    master.fill(0);
  }
}

// PKCS#8 DER prefix of an X25519 private key (RFC 8410); the 32-byte private key follows.
const PKCS8_X25519_PREFIX = Uint8Array.fromHex("302e020100300506032b656e04220420");

/**
 * Imports a 32-byte Ed25519 seed (RFC 8032 private key) or X25519 private key (RFC 7748) as a non-extractable
 * private key, and computes its public key (imported once extractable, only to read the JWK's `x`).
 *
 * @example
 * ```ts
 * const { privateKey, publicKey } = await importPrivateKey(seed, { algorithm: "Ed25519" }); // publicKey: 32 bytes
 * ```
 * @param secret the 32-byte private key
 * @param options.algorithm "Ed25519" (signing) or "X25519" (key agreement)
 * @returns the private key and the raw 32-byte public key
 * @throws {KeyDerivationError} when the secret is not 32 bytes
 */
export async function importPrivateKey(
  secret: Uint8Array,
  options: { algorithm: "Ed25519" | "X25519" },
): Promise<{ privateKey: CryptoKey; publicKey: Uint8Array<ArrayBuffer> }> {
  const { algorithm } = options;
  if (secret.length !== 32) throw new KeyDerivationError(`an ${algorithm} private key is 32 bytes`);
  const usages: KeyUsage[] = algorithm === "Ed25519" ? ["sign"] : ["deriveBits"];
  const pkcs8 = concat([algorithm === "Ed25519" ? PKCS8_ED25519_PREFIX : PKCS8_X25519_PREFIX, secret]);
  try {
    const exportable = await crypto.subtle.importKey("pkcs8", pkcs8, algorithm, true, usages);
    const jwk = await crypto.subtle.exportKey("jwk", exportable);
    const publicKey = Uint8Array.fromBase64(jwk.x!, { alphabet: "base64url" }) as Uint8Array<ArrayBuffer>;
    const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, algorithm, false, usages);
    return { privateKey, publicKey };
  } finally {
    pkcs8.fill(0);
  }
}

/**
 * Imports a 32-byte Ed25519 seed as a non-extractable signing key and computes its public key.
 *
 * @example
 * ```ts
 * const { privateKey, publicKey } = await importEd25519Seed(seed);
 * ```
 * @param seed the 32-byte private seed
 * @returns the signing key and the raw public key
 * @throws {KeyDerivationError} when the seed is not 32 bytes
 */
export function importEd25519Seed(
  seed: Uint8Array,
): Promise<{ privateKey: CryptoKey; publicKey: Uint8Array<ArrayBuffer> }> {
  return importPrivateKey(seed, { algorithm: "Ed25519" });
}

/**
 * Imports a room's 32-byte access seed (see {@link importEd25519Seed}).
 *
 * @example
 * ```ts
 * const { accessPub } = await importAccessSeed(seed); // 32-byte public key
 * ```
 * @param seed the 32-byte private seed
 * @returns the signing key and the raw public key
 */
export async function importAccessSeed(
  seed: Uint8Array,
): Promise<{ accessKey: CryptoKey; accessPub: Uint8Array<ArrayBuffer> }> {
  const { privateKey, publicKey } = await importEd25519Seed(seed);
  return { accessKey: privateKey, accessPub: publicKey };
}

/**
 * Signs bytes with an Ed25519 private key.
 *
 * @example
 * ```ts
 * const signature = await signEd25519(privateKey, input); // 64 bytes
 * ```
 * @param privateKey an Ed25519 signing key
 * @param input the bytes to sign
 * @returns the 64-byte signature
 */
export async function signEd25519(privateKey: CryptoKey, input: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.sign("Ed25519", privateKey, new Uint8Array(input)));
}

function macInput(e: {
  v: 1 | 2;
  room: string;
  from: string;
  id: Uint8Array;
  ts: number;
  iv: Uint8Array;
  ct: Uint8Array;
}): Uint8Array<ArrayBuffer> {
  return concat([MSG_LABELS[e.v], lp(e.room), lp(e.from), e.id, u64be(e.ts), e.iv, e.ct]);
}

/**
 * Encrypts and authenticates a plaintext into an envelope: AES-256-CBC with a fresh random IV and PKCS#7 padding,
 * then HMAC-SHA256 over "aeschat v1 msg" 0x00 || lp(room) || lp(from) || id || u64be(ts) || iv || ct.
 *
 * @example
 * ```ts
 * const env = await sealEnvelope(keys, {
 *   room: "general",
 *   from: "alice",
 *   plaintext: { type: "text", body: "hello" },
 * });
 * ```
 * @param keys the room keys
 * @param message.room the room name (NFC)
 * @param message.from the sender nick (NFC)
 * @param message.plaintext the content; `body` at most 16384 UTF-8 bytes
 * @param message.id optional 16-byte id (default: random); resending reuses it
 * @param message.ts optional timestamp in ms (default: now)
 * @param message.iv optional 16-byte IV, for test vectors only (default: random)
 * @param message.v envelope version: 2 (MAC label "aeschat v2 msg") or 1 (default; "aeschat v1 msg")
 * @returns the envelope, ready to send
 * @throws {EnvelopeError} for a body over the limit or bad names
 */
export async function sealEnvelope(
  keys: RoomKeys,
  message: {
    room: string;
    from: string;
    plaintext: Plaintext;
    id?: Uint8Array;
    ts?: number;
    iv?: Uint8Array;
    v?: 1 | 2;
  },
): Promise<Envelope> {
  const { room, from, plaintext } = message;
  const v = message.v ?? 1;
  if (typeof plaintext.body !== "string" || !plaintext.body.isWellFormed()) {
    throw new EnvelopeError("body must be a well-formed string");
  }
  if (encoder.encode(plaintext.body).length > MAX_BODY_BYTES) {
    throw new EnvelopeError(`body exceeds ${MAX_BODY_BYTES} bytes`);
  }
  const id = message.id ?? crypto.getRandomValues(new Uint8Array(ID_BYTES));
  const iv = new Uint8Array(message.iv ?? crypto.getRandomValues(new Uint8Array(IV_BYTES)));
  const ts = message.ts ?? Date.now();
  if (!Number.isSafeInteger(ts) || ts < 0) throw new EnvelopeError("envelope.ts must be an integer in 0..2^53-1");
  const pt = encoder.encode(JSON.stringify(plaintext));
  const ct = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-CBC", iv }, keys.encKey, pt));
  const tag = new Uint8Array(
    await crypto.subtle.sign("HMAC", keys.macKey, macInput({ v, room, from, id, ts, iv, ct })),
  );
  // parseEnvelope re-checks names, lengths and ts, so a sealed envelope is always one the server accepts.
  return parseEnvelope({
    v,
    room,
    from,
    id: encodeBase64(id),
    ts,
    iv: encodeBase64(iv),
    ct: encodeBase64(ct),
    tag: encodeBase64(tag),
  });
}

/**
 * Verifies and decrypts an envelope. The tag is checked (in constant time) before anything is decrypted; then
 * the room must be the one the receiver joined and the sender the one the server relayed.
 *
 * @example
 * ```ts
 * const msg = await openEnvelope(keys, { envelope, room: "general", from: "alice" });
 * msg.plaintext.body; // "hello"
 * ```
 * @param keys the room keys
 * @param expect.envelope the envelope as received (unknown shape)
 * @param expect.room the room the receiver is in
 * @param expect.from optional: the sender the server relayed it for
 * @returns the opened message
 * @throws {OpenError} for any failure, with no detail
 */
export async function openEnvelope(
  keys: RoomKeys,
  expect: { envelope: unknown; room: string; from?: string },
): Promise<OpenedMessage> {
  let ok = false;
  let result: OpenedMessage | undefined;
  try {
    const e = parseEnvelope(expect.envelope);
    if (e.room !== expect.room) throw new OpenError();
    if (expect.from !== undefined && e.from !== expect.from) throw new OpenError();
    const id = decodeBase64(e.id);
    const iv = decodeBase64(e.iv);
    const ct = decodeBase64(e.ct);
    const tag = decodeBase64(e.tag);
    const input = macInput({ v: e.v, room: e.room, from: e.from, id, ts: e.ts, iv, ct });
    if (!await crypto.subtle.verify("HMAC", keys.macKey, tag, input)) throw new OpenError();
    const pt = new Uint8Array(await crypto.subtle.decrypt({ name: "AES-CBC", iv }, keys.encKey, ct));
    const text = strictDecoder.decode(pt);
    const plaintext = JSON.parse(text);
    if (
      // A member named twice: JSON.parse keeps the last, another implementation may show the first.
      findDuplicateMember(text, { parsed: plaintext }) !== undefined ||
      typeof plaintext !== "object" || plaintext === null || Array.isArray(plaintext) ||
      typeof plaintext.type !== "string" || typeof plaintext.body !== "string" ||
      // JSON can spell a lone surrogate (\ud800); the signed bytes (TextEncoder) would read it as U+FFFD.
      !plaintext.body.isWellFormed() || encoder.encode(plaintext.body).length > MAX_BODY_BYTES
    ) {
      throw new OpenError();
    }
    result = { room: e.room, from: e.from, id: e.id, ts: e.ts, plaintext };
    ok = true;
  } catch {
    ok = false;
  }
  if (!ok || !result) throw new OpenError();
  return result;
}

/** What a protocol v2 join proof binds besides the nonce, room and nick. */
export interface JoinBinding {
  /** The server's 32-byte Ed25519 key (from its `server` message). */
  serverPub: Uint8Array;
  /** The joining user's 32-byte identity key. */
  identityPub: Uint8Array;
}

/**
 * Builds the bytes a join proof signs. Protocol v2 (with `who.bind`): "aeschat v2 join" 0x00 || server_pub ||
 * nonce || lp(room) || lp(nick) || identity_pub. Protocol v1: "aeschat v1 join" 0x00 || nonce || lp(room) ||
 * lp(nick).
 *
 * @example
 * ```ts
 * const input = joinInput(nonce, { room: "general", nick: "alice", bind: { serverPub, identityPub } });
 * ```
 * @param nonce the server's 32-byte challenge
 * @param who.room the room being joined (its canonical spelling)
 * @param who.nick the joining nick (its canonical spelling)
 * @param who.bind the server key and identity key (protocol v2)
 * @returns the signed bytes
 */
export function joinInput(
  nonce: Uint8Array,
  who: { room: string; nick: string; bind?: JoinBinding },
): Uint8Array<ArrayBuffer> {
  if (who.bind === undefined) return concat([JOIN_LABEL, nonce, lp(who.room), lp(who.nick)]);
  return concat([JOIN_LABEL_V2, who.bind.serverPub, nonce, lp(who.room), lp(who.nick), who.bind.identityPub]);
}

/**
 * Signs a join proof: the Ed25519 signature of joinInput with the room's access key.
 *
 * @example
 * ```ts
 * const proof = await signJoinProof(keys, { nonce, room: "general", nick: "alice", bind }); // 64 bytes
 * ```
 * @param keys the room keys
 * @param challenge.nonce the server's nonce
 * @param challenge.room the room
 * @param challenge.nick this client's nick
 * @param challenge.bind the server and identity keys (protocol v2)
 * @returns the 64-byte proof
 */
export async function signJoinProof(
  keys: RoomKeys,
  challenge: { nonce: Uint8Array; room: string; nick: string; bind?: JoinBinding },
): Promise<Uint8Array<ArrayBuffer>> {
  return await signEd25519(keys.accessKey, joinInput(challenge.nonce, challenge));
}

/**
 * Verifies a join proof against a room's stored public key. This is all the server does with room crypto.
 *
 * @example
 * ```ts
 * await verifyJoinProof(accessPub, { proof, nonce, room: "general", nick: "alice", bind }); // true
 * ```
 * @param accessPub the room's 32-byte Ed25519 public key
 * @param claim.proof the 64-byte signature
 * @param claim.nonce the nonce this server sent
 * @param claim.room the room
 * @param claim.nick the nick of the connection
 * @param claim.bind the server and identity keys (protocol v2)
 * @returns whether the proof is valid (false for any malformed input)
 */
export async function verifyJoinProof(
  accessPub: Uint8Array,
  claim: { proof: Uint8Array; nonce: Uint8Array; room: string; nick: string; bind?: JoinBinding },
): Promise<boolean> {
  if (accessPub.length !== ACCESS_PUB_BYTES || claim.proof.length !== PROOF_BYTES) return false;
  return await verifyEd25519(accessPub, { input: joinInput(claim.nonce, claim), signature: claim.proof });
}

/**
 * The y coordinates of the Ed25519 points of small order (1, 2, 4 and 8), and non-canonical spellings of some (y ≥ p),
 * as libsodium lists them. Under such a public key a signature is forgeable without any secret (R a small-order
 * point, S = 0), and WebCrypto does not refuse them.
 */
const SMALL_ORDER_Y = [
  "00".repeat(32),
  "01" + "00".repeat(31),
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ec" + "ff".repeat(30) + "7f",
  "ed" + "ff".repeat(30) + "7f",
  "ee" + "ff".repeat(30) + "7f",
];

function hasSmallOrder(publicKey: Uint8Array): boolean {
  const y = publicKey.slice();
  y[31] &= 0x7f; // the sign of x does not change the order
  const hex = y.toHex();
  return SMALL_ORDER_Y.includes(hex);
}

/**
 * Verifies an Ed25519 signature (RFC 8032, pure Ed25519). Any malformed key or signature is simply invalid, and so
 * is every signature under a public key of small order (which anyone could forge).
 *
 * @example
 * ```ts
 * await verifyEd25519(publicKey, { input, signature }); // true or false
 * ```
 * @param publicKey the 32-byte public key
 * @param signed.input the signed bytes
 * @param signed.signature the 64-byte signature
 * @returns whether it verifies
 */
export async function verifyEd25519(
  publicKey: Uint8Array,
  signed: { input: Uint8Array; signature: Uint8Array },
): Promise<boolean> {
  if (publicKey.length !== ACCESS_PUB_BYTES || signed.signature.length !== PROOF_BYTES) return false;
  if (hasSmallOrder(publicKey)) return false;
  try {
    const key = await crypto.subtle.importKey("raw", new Uint8Array(publicKey), "Ed25519", false, ["verify"]);
    return await crypto.subtle.verify("Ed25519", key, new Uint8Array(signed.signature), new Uint8Array(signed.input));
  } catch {
    return false;
  }
}

/** Re-exported for callers that serialize what they sealed. */
export { serializeEnvelope };
