/**
 * Canonical standard base64 (RFC 4648 §4): padded, no whitespace, zero trailing bits.
 *
 * The wire format accepts exactly one spelling of every byte string, so a relayed envelope cannot be altered by
 * re-encoding its fields, and the server can check a field's length without decoding it.
 *
 * @module
 */

/** Raised when a string is not the canonical base64 spelling of some bytes. */
export class Base64Error extends Error {
  /** @param message what is wrong with the string */
  constructor(message: string) {
    super(message);
    this.name = "Base64Error";
  }
}

const BODY = /^[A-Za-z0-9+/]*$/;
// With one "=" the last symbol carries 2 unused bits, with "==" it carries 4; both must be zero.
const ONE_PAD_LAST = "AEIMQUYcgkosw048";
const TWO_PAD_LAST = "AQgw";

/**
 * Returns how many bytes a canonical base64 string decodes to, or -1 when it is not canonical. It decodes
 * nothing, so it is cheap enough for the server's per-message shape check.
 *
 * @example
 * ```ts
 * canonicalBase64Length("AAECAw=="); // 4
 * canonicalBase64Length("AAECAx=="); // -1: non-zero trailing bits
 * ```
 * @param text the candidate string
 * @returns the decoded length in bytes, or -1
 */
export function canonicalBase64Length(text: string): number {
  const n = text.length;
  if (n % 4 !== 0) return -1;
  if (n === 0) return 0;
  let pad = 0;
  if (text.charCodeAt(n - 1) === 61) pad = text.charCodeAt(n - 2) === 61 ? 2 : 1;
  const body = pad === 0 ? text : text.slice(0, n - pad);
  if (!BODY.test(body)) return -1;
  if (pad === 1 && !ONE_PAD_LAST.includes(body[body.length - 1])) return -1;
  if (pad === 2 && !TWO_PAD_LAST.includes(body[body.length - 1])) return -1;
  return (n / 4) * 3 - pad;
}

/**
 * Decodes canonical base64, refusing every other spelling (missing padding, whitespace, non-zero trailing bits).
 *
 * @example
 * ```ts
 * decodeBase64("AAECAw=="); // Uint8Array [0, 1, 2, 3]
 * ```
 * @param text canonical base64
 * @param options.length when given, the exact number of bytes required
 * @returns the bytes
 * @throws {Base64Error} when the text is not canonical or has the wrong length
 */
export function decodeBase64(
  text: string,
  options: { length?: number } = {},
): Uint8Array<ArrayBuffer> {
  if (typeof text !== "string" || canonicalBase64Length(text) < 0) {
    throw new Base64Error("Cannot decode base64: not canonical padded standard base64");
  }
  const bytes = Uint8Array.fromBase64(text, { lastChunkHandling: "strict" });
  if (bytes.toBase64() !== text) {
    throw new Base64Error("Cannot decode base64: not canonical padded standard base64");
  }
  if (options.length !== undefined && bytes.length !== options.length) {
    throw new Base64Error(
      `Cannot decode base64: expected ${options.length} bytes, got ${bytes.length}`,
    );
  }
  return bytes as Uint8Array<ArrayBuffer>;
}

/**
 * Encodes bytes as canonical base64.
 *
 * @example
 * ```ts
 * encodeBase64(new Uint8Array([0, 1, 2, 3])); // "AAECAw=="
 * ```
 * @param bytes the bytes
 * @returns padded standard base64
 */
export function encodeBase64(bytes: Uint8Array): string {
  return bytes.toBase64();
}
