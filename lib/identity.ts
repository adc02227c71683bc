/**
 * User and server identities (protocol v2): a user's Ed25519 identity key and X25519 key-agreement key, a server's
 * Ed25519 key, the fingerprints and safety numbers people compare, and the labelled inputs those keys sign when a
 * connection is opened (`server`, `login`), when a key-agreement key is published (`kx`) and when an identity
 * key is rotated (`rotate`). WebCrypto only; PROTOCOL.md states every byte.
 *
 * @module
 */

import { concat, lp, sameBytes, u64be } from "./bytes.ts";
import { importEd25519Seed, importPrivateKey, signEd25519, verifyEd25519 } from "./crypto.ts";

/** Bytes of an Ed25519 seed or public key, and of an X25519 private or public key. */
export const KEY_BYTES = 32;
/** Bytes of a connection nonce (client and server). */
export const CONNECTION_NONCE_BYTES = 32;
/** Bytes of a fingerprint (160 bits). */
export const FINGERPRINT_BYTES = 20;
/** Decimal digits each party contributes to a safety number (8 groups of 5: 132.9 bits). */
export const SAFETY_DIGITS = 40;

const encoder = new TextEncoder();
const SERVER_LABEL = encoder.encode("aeschat v2 server\0");
const LOGIN_LABEL = encoder.encode("aeschat v2 login\0");
const KX_LABEL = encoder.encode("aeschat v2 kx\0");
const ROTATE_LABEL = encoder.encode("aeschat v2 rotate\0");
const FINGERPRINT_LABEL = encoder.encode("aeschat v2 fingerprint\0");
const SAFETY_LABEL = encoder.encode("aeschat v2 safety\0");

/** The secret bytes of an identity, as kept in the identity file. */
export interface IdentitySecrets {
  /** The Ed25519 identity seed (RFC 8032 private key), 32 bytes. */
  signSeed: Uint8Array<ArrayBuffer>;
  /** The X25519 private key (RFC 7748 scalar, clamped by X25519 itself), 32 bytes. */
  kxSecret: Uint8Array<ArrayBuffer>;
}

/** An identity ready to use: non-extractable private keys and the public halves. */
export interface Identity {
  /** The 32-byte Ed25519 identity public key. */
  publicKey: Uint8Array<ArrayBuffer>;
  /** The Ed25519 signing key (not extractable). */
  signKey: CryptoKey;
  /** The 32-byte X25519 public key. */
  kxPublic: Uint8Array<ArrayBuffer>;
  /** The X25519 private key (not extractable), for deriveBits. */
  kxKey: CryptoKey;
  /** The identity key's signature of the key-agreement key ({@link kxInput}). */
  kxSignature: Uint8Array<ArrayBuffer>;
}

/**
 * Makes the secrets of a new identity: 32 random bytes for each key.
 *
 * @example
 * ```ts
 * const identity = await importIdentity(generateIdentitySecrets());
 * ```
 * @returns fresh secrets
 */
export function generateIdentitySecrets(): IdentitySecrets {
  return {
    signSeed: crypto.getRandomValues(new Uint8Array(KEY_BYTES)),
    kxSecret: crypto.getRandomValues(new Uint8Array(KEY_BYTES)),
  };
}

/**
 * Imports a 32-byte X25519 private key as a non-extractable key and computes its public key.
 *
 * @example
 * ```ts
 * const { privateKey, publicKey } = await importX25519Secret(secret);
 * ```
 * @param secret the 32-byte private key
 * @returns the deriveBits key and the 32-byte public key
 * @throws {KeyDerivationError} when the secret is not 32 bytes
 */
export function importX25519Secret(
  secret: Uint8Array,
): Promise<{ privateKey: CryptoKey; publicKey: Uint8Array<ArrayBuffer> }> {
  return importPrivateKey(secret, { algorithm: "X25519" });
}

/**
 * Turns identity secrets into usable keys, and signs the key-agreement key with the identity key.
 *
 * @example
 * ```ts
 * const identity = await importIdentity(secrets);
 * identity.publicKey.length; // 32
 * ```
 * @param secrets the two 32-byte secrets
 * @returns the identity
 * @throws {KeyDerivationError} when a secret has the wrong length
 */
export async function importIdentity(secrets: IdentitySecrets): Promise<Identity> {
  const sign = await importEd25519Seed(secrets.signSeed);
  const kx = await importX25519Secret(secrets.kxSecret);
  const kxSignature = await signEd25519(sign.privateKey, kxInput(sign.publicKey, kx.publicKey));
  return {
    publicKey: sign.publicKey,
    signKey: sign.privateKey,
    kxPublic: kx.publicKey,
    kxKey: kx.privateKey,
    kxSignature,
  };
}

/**
 * The fingerprint of an identity (or server) key: the first 20 bytes of SHA-256("aeschat v2 fingerprint" 0x00 ||
 * public key), as 40 lower-case hex digits.
 *
 * @example
 * ```ts
 * await fingerprint(identity.publicKey); // "3f1c…" (40 hex digits)
 * ```
 * @param publicKey a 32-byte public key
 * @returns the fingerprint in hex
 */
export async function fingerprint(publicKey: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", concat([FINGERPRINT_LABEL, publicKey])));
  return digest.subarray(0, FINGERPRINT_BYTES).toHex();
}

/**
 * A fingerprint as people read it aloud: groups of four hex digits.
 *
 * @example
 * ```ts
 * formatFingerprint("0123456789abcdef0123456789abcdef01234567"); // "0123 4567 89ab … 4567"
 * ```
 * @param hex a fingerprint from {@link fingerprint}
 * @returns the grouped form
 */
export function formatFingerprint(hex: string): string {
  return hex.match(/.{1,4}/g)?.join(" ") ?? hex;
}

async function safetyHalf(publicKey: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-512", concat([SAFETY_LABEL, publicKey])));
  let digits = "";
  for (let i = 0; i < SAFETY_DIGITS / 5; i++) {
    let chunk = 0n;
    for (let j = 0; j < 5; j++) chunk = (chunk << 8n) | BigInt(digest[i * 5 + j]);
    digits += String(chunk % 100000n).padStart(5, "0");
  }
  return digits;
}

/**
 * The safety number two people compare to verify each other's identity keys: 40 digits from each key (8 chunks of
 * 5 bytes of SHA-512("aeschat v2 safety" 0x00 || key), each taken mod 100000), the two halves in ascending order,
 * shown as 16 groups of 5 digits. Both people get the same number.
 *
 * @example
 * ```ts
 * await safetyNumber(alice.publicKey, bob.publicKey) === await safetyNumber(bob.publicKey, alice.publicKey); // true
 * ```
 * @param a one identity key
 * @param b the other identity key
 * @returns 80 digits in groups of 5
 */
export async function safetyNumber(a: Uint8Array, b: Uint8Array): Promise<string> {
  const halves = [await safetyHalf(a), await safetyHalf(b)].sort();
  return halves.join("").match(/.{5}/g)!.join(" ");
}

/**
 * What a server signs to prove it holds its key: "aeschat v2 server" 0x00 || client_nonce || server_nonce.
 *
 * @example
 * ```ts
 * const input = serverInput({ clientNonce, serverNonce });
 * ```
 * @param nonces.clientNonce the 32-byte nonce of the client's hello
 * @param nonces.serverNonce the server's 32-byte nonce
 * @returns the signed bytes
 */
export function serverInput(nonces: { clientNonce: Uint8Array; serverNonce: Uint8Array }): Uint8Array<ArrayBuffer> {
  return concat([SERVER_LABEL, nonces.clientNonce, nonces.serverNonce]);
}

/** The values a login signature binds. */
export interface LoginClaim {
  /** The server's 32-byte key. */
  serverPub: Uint8Array;
  /** The server's nonce from its `server` message. */
  serverNonce: Uint8Array;
  /** The nonce of this client's hello. */
  clientNonce: Uint8Array;
  /** The user's 32-byte identity key. */
  identityPub: Uint8Array;
  /** The nick asked for, exactly as sent in `login`. */
  nick: string;
}

/**
 * What a user signs to log in: "aeschat v2 login" 0x00 || server_pub || server_nonce || client_nonce ||
 * identity_pub || lp(nick).
 *
 * @example
 * ```ts
 * const input = loginInput({ serverPub, serverNonce, clientNonce, identityPub, nick: "alice" });
 * ```
 * @param claim the bound values
 * @returns the signed bytes
 */
export function loginInput(claim: LoginClaim): Uint8Array<ArrayBuffer> {
  return concat([
    LOGIN_LABEL,
    claim.serverPub,
    claim.serverNonce,
    claim.clientNonce,
    claim.identityPub,
    lp(claim.nick),
  ]);
}

/**
 * What an identity key signs to publish its key-agreement key: "aeschat v2 kx" 0x00 || identity_pub || kx_pub.
 *
 * @example
 * ```ts
 * const input = kxInput(identity.publicKey, identity.kxPublic);
 * ```
 * @param identityPub the 32-byte identity key
 * @param kxPub the 32-byte X25519 public key
 * @returns the signed bytes
 */
export function kxInput(identityPub: Uint8Array, kxPub: Uint8Array): Uint8Array<ArrayBuffer> {
  return concat([KX_LABEL, identityPub, kxPub]);
}

/** A statement, signed by an old identity key, that a new key replaces it. */
export interface Rotation {
  /** The 32-byte key being replaced. */
  oldKey: Uint8Array<ArrayBuffer>;
  /** The 32-byte key that replaces it. */
  newKey: Uint8Array<ArrayBuffer>;
  /** When the statement was made, ms since the epoch. */
  ts: number;
  /** The old key's signature of {@link rotationInput}. */
  signature: Uint8Array<ArrayBuffer>;
}

/**
 * What an old identity key signs to hand over to a new one: "aeschat v2 rotate" 0x00 || old_pub || new_pub ||
 * u64be(ts).
 *
 * @example
 * ```ts
 * const input = rotationInput({ oldKey, newKey, ts: Date.now() });
 * ```
 * @param statement the two keys and the time
 * @returns the signed bytes
 */
export function rotationInput(
  statement: { oldKey: Uint8Array; newKey: Uint8Array; ts: number },
): Uint8Array<ArrayBuffer> {
  return concat([ROTATE_LABEL, statement.oldKey, statement.newKey, u64be(statement.ts)]);
}

/**
 * Makes a rotation statement: the old identity signs that the new one replaces it.
 *
 * @example
 * ```ts
 * const rotation = await signRotation(oldIdentity, { newKey: next.publicKey, ts: Date.now() });
 * ```
 * @param old the identity being replaced
 * @param next.newKey the new identity key
 * @param next.ts the time of the statement
 * @returns the statement
 */
export async function signRotation(
  old: Identity,
  next: { newKey: Uint8Array<ArrayBuffer>; ts: number },
): Promise<Rotation> {
  const statement = { oldKey: old.publicKey, newKey: next.newKey, ts: next.ts };
  return { ...statement, signature: await signEd25519(old.signKey, rotationInput(statement)) };
}

/**
 * Checks a rotation statement's signature by the old key.
 *
 * @example
 * ```ts
 * await verifyRotation(rotation); // true when the old key signed it
 * ```
 * @param rotation the statement
 * @returns whether it verifies
 */
export function verifyRotation(rotation: Rotation): Promise<boolean> {
  return verifyEd25519(rotation.oldKey, { input: rotationInput(rotation), signature: rotation.signature });
}

/**
 * Follows a chain of rotation statements from a pinned key: returns the key the chain ends at when every link
 * verifies and each starts where the previous ended, beginning at `from`.
 *
 * @example
 * ```ts
 * await followRotations(pinnedKey, rotations); // the current key, or undefined when the chain does not verify
 * ```
 * @param from the key pinned earlier
 * @param chain statements, oldest first
 * @returns the last key of a valid chain from `from`, or undefined
 */
export async function followRotations(from: Uint8Array, chain: Rotation[]): Promise<Uint8Array | undefined> {
  let current: Uint8Array = from;
  let moved = false;
  for (const link of chain) {
    if (!sameBytes(link.oldKey, current)) continue;
    if (!await verifyRotation(link)) return undefined;
    current = link.newKey;
    moved = true;
  }
  return moved ? current : undefined;
}
