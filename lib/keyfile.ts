/**
 * Secrets at rest under a passphrase: the identity keys and remembered room secrets in a client's home, when the user
 * protects them. PBKDF2-HMAC-SHA256 (the room KDF's family), then HKDF-SHA256 with its own label, then AES-256-GCM
 * with the file's purpose bound as additional data.
 *
 * @module
 */

import { decodeBase64 } from "./base64.ts";
import { concat, lp } from "./bytes.ts";
import { checkIterations, DEFAULT_ITERATIONS, deriveRoomMaster, makeSalt } from "./crypto.ts";
import { GCM_NONCE_BYTES } from "./direct.ts";

const encoder = new TextEncoder();
const KEYFILE_LABEL = encoder.encode("aeschat v2 keyfile\0");

/** A secret sealed under a passphrase, as stored in JSON. */
export interface LockedSecret {
  /** Always "pbkdf2-sha256+hkdf+aes-256-gcm". */
  kdf: string;
  /** 16-byte PBKDF2 salt, base64. */
  salt: string;
  /** PBKDF2 count. */
  iterations: number;
  /** 12-byte AES-GCM nonce, base64. */
  nonce: string;
  /** Ciphertext and tag, base64. */
  ct: string;
}

/** Raised when a locked secret cannot be opened: a wrong passphrase or a damaged file (indistinguishable). */
export class KeyfileError extends Error {
  /** @param message one line for the user */
  constructor(message: string) {
    super(message);
    this.name = "KeyfileError";
  }
}

const KDF_NAME = "pbkdf2-sha256+hkdf+aes-256-gcm";

async function fileKey(passphrase: string, options: { salt: Uint8Array; iterations: number }): Promise<CryptoKey> {
  const master = await deriveRoomMaster(passphrase, options);
  try {
    const hkdf = await crypto.subtle.importKey("raw", master, "HKDF", false, ["deriveKey"]);
    return await crypto.subtle.deriveKey(
      { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: encoder.encode("aeschat v2 keyfile") },
      hkdf,
      { name: "AES-GCM", length: 256 },
      false,
      ["encrypt", "decrypt"],
    );
  } finally {
    master.fill(0);
  }
}

/**
 * Seals secret bytes under a passphrase.
 *
 * @example
 * ```ts
 * const locked = await lockSecret(bytes, { passphrase: "a long passphrase", purpose: "identity" });
 * ```
 * @param secret the bytes to protect
 * @param options.passphrase the user's passphrase
 * @param options.purpose what the secret is ("identity", "rooms"), bound so one file cannot stand in for another
 * @param options.iterations PBKDF2 count (default 600000)
 * @returns the sealed form, for JSON
 */
export async function lockSecret(
  secret: Uint8Array,
  options: { passphrase: string; purpose: string; iterations?: number },
): Promise<LockedSecret> {
  const iterations = options.iterations ?? DEFAULT_ITERATIONS;
  checkIterations(iterations);
  const salt = makeSalt();
  const nonce = crypto.getRandomValues(new Uint8Array(GCM_NONCE_BYTES));
  const key = await fileKey(options.passphrase, { salt, iterations });
  const aad = concat([KEYFILE_LABEL, lp(options.purpose)]);
  const ct = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: aad }, key, new Uint8Array(secret)),
  );
  return { kdf: KDF_NAME, salt: salt.toBase64(), iterations, nonce: nonce.toBase64(), ct: ct.toBase64() };
}

/**
 * Opens a secret sealed by {@link lockSecret}.
 *
 * @example
 * ```ts
 * const bytes = await unlockSecret(locked, { passphrase, purpose: "identity" });
 * ```
 * @param locked the sealed form (untrusted shape)
 * @param options.passphrase the user's passphrase
 * @param options.purpose the purpose it was sealed for
 * @returns the secret bytes
 * @throws {KeyfileError} for a wrong passphrase or a damaged or malformed file
 */
export async function unlockSecret(
  locked: unknown,
  options: { passphrase: string; purpose: string },
): Promise<Uint8Array<ArrayBuffer>> {
  const l = locked as LockedSecret;
  let salt: Uint8Array, nonce: Uint8Array, ct: Uint8Array;
  try {
    if (typeof l !== "object" || l === null || l.kdf !== KDF_NAME) throw new Error();
    checkIterations(l.iterations);
    salt = decodeBase64(l.salt, { length: 16 });
    nonce = decodeBase64(l.nonce, { length: GCM_NONCE_BYTES });
    ct = decodeBase64(l.ct);
  } catch {
    throw new KeyfileError("the protected key file is malformed");
  }
  const key = await fileKey(options.passphrase, { salt, iterations: l.iterations });
  try {
    const aad = concat([KEYFILE_LABEL, lp(options.purpose)]);
    return new Uint8Array(
      await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: new Uint8Array(nonce), additionalData: aad },
        key,
        new Uint8Array(ct),
      ),
    );
  } catch {
    throw new KeyfileError("wrong passphrase, or the key file is damaged");
  }
}

/**
 * Whether a stored value is a locked secret (rather than plain bytes in base64).
 *
 * @example
 * ```ts
 * isLocked(JSON.parse(text).secrets); // true when protected by a passphrase
 * ```
 * @param value a parsed JSON value
 * @returns whether it has the locked form
 */
export function isLocked(value: unknown): value is LockedSecret {
  return typeof value === "object" && value !== null && (value as LockedSecret).kdf === KDF_NAME;
}
