/**
 * The message envelope: the only thing about a message that the server relays and stores. This module checks its
 * shape (never its cryptography), for the server's per-message check and before the client opens it.
 *
 * @module
 */

import { canonicalBase64Length } from "./base64.ts";
import { checkNameBytes, MAX_NICK_BYTES, MAX_ROOM_BYTES, NameError } from "./names.ts";

/** Envelope format version written by protocol v2 clients; version 1 envelopes remain in migrated history. */
export const ENVELOPE_VERSION = 2;
/** Envelope versions a receiver can open. */
export const ENVELOPE_VERSIONS: readonly number[] = [1, 2];
/** Bytes in a message id. */
export const ID_BYTES = 16;
/** Bytes in an AES-CBC IV. */
export const IV_BYTES = 16;
/** Bytes in an HMAC-SHA256 tag. */
export const TAG_BYTES = 32;
/** Largest plaintext body in UTF-8 bytes. */
export const MAX_BODY_BYTES = 16384;
/**
 * Largest ciphertext: a body of MAX_BODY_BYTES JSON-escaped can grow (each control character becomes `\u00XX`), so
 * the limit is on the whole sealed plaintext: 6 bytes per body byte, plus room for the JSON around it, padded.
 */
export const MAX_CT_BYTES = 6 * MAX_BODY_BYTES + 4096;

/** A message envelope exactly as it travels: strings are canonical base64 where noted. */
export interface Envelope {
  /** Format version: 2, or 1 for messages stored before protocol v2. */
  v: 1 | 2;
  /** Room name (NFC UTF-8, 1..64 bytes). */
  room: string;
  /** Sender nick (NFC UTF-8, 1..32 bytes). */
  from: string;
  /** 16 random bytes, base64. */
  id: string;
  /** Sender clock, ms since the epoch. */
  ts: number;
  /** 16 random bytes, base64. */
  iv: string;
  /** AES-256-CBC ciphertext, a non-zero multiple of 16 bytes, base64. */
  ct: string;
  /** HMAC-SHA256 tag, 32 bytes, base64. */
  tag: string;
}

/** Raised when a value is not a well-formed envelope; the message names the field. */
export class EnvelopeError extends Error {
  /** @param message what is wrong */
  constructor(message: string) {
    super(message);
    this.name = "EnvelopeError";
  }
}

const FIELDS = ["v", "room", "from", "id", "ts", "iv", "ct", "tag"];

function checkB64(value: unknown, field: string, check: (n: number) => boolean): void {
  if (typeof value !== "string") throw new EnvelopeError(`envelope.${field} must be a string`);
  const n = canonicalBase64Length(value);
  if (n < 0) throw new EnvelopeError(`envelope.${field} is not canonical base64`);
  if (!check(n)) throw new EnvelopeError(`envelope.${field} has the wrong length (${n} bytes)`);
}

/**
 * Checks that an untrusted value has exactly the envelope's eight fields with valid types, lengths and
 * encodings, and returns it typed. It decodes nothing.
 *
 * @example
 * ```ts
 * const env = parseEnvelope(JSON.parse(text));
 * ```
 * @param value parsed JSON of unknown shape
 * @returns the same object, typed
 * @throws {EnvelopeError} naming the first field that is wrong
 */
export function parseEnvelope(value: unknown): Envelope {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new EnvelopeError("envelope must be a JSON object");
  }
  const e = value as Record<string, unknown>;
  const keys = Object.keys(e);
  if (keys.length !== FIELDS.length || !FIELDS.every((f) => Object.hasOwn(e, f))) {
    throw new EnvelopeError(`envelope must have exactly the fields ${FIELDS.join(", ")}`);
  }
  if (!ENVELOPE_VERSIONS.includes(e.v as number)) throw new EnvelopeError("envelope.v must be 1 or 2");
  try {
    checkNameBytes(e.room, { what: "envelope.room", max: MAX_ROOM_BYTES });
    checkNameBytes(e.from, { what: "envelope.from", max: MAX_NICK_BYTES });
  } catch (err) {
    if (err instanceof NameError) throw new EnvelopeError(err.message);
    throw err;
  }
  if (typeof e.ts !== "number" || !Number.isSafeInteger(e.ts) || e.ts < 0) {
    throw new EnvelopeError("envelope.ts must be an integer in 0..2^53-1");
  }
  checkB64(e.id, "id", (n) => n === ID_BYTES);
  checkB64(e.iv, "iv", (n) => n === IV_BYTES);
  checkB64(e.tag, "tag", (n) => n === TAG_BYTES);
  checkB64(e.ct, "ct", (n) => n > 0 && n % 16 === 0 && n <= MAX_CT_BYTES);
  return e as unknown as Envelope;
}

/**
 * Serializes an envelope with its fields in the canonical order. The server stores and relays exactly this text.
 *
 * @example
 * ```ts
 * serializeEnvelope(env); // '{"v":1,"room":"general",...}'
 * ```
 * @param envelope a parsed envelope
 * @returns its JSON text
 */
export function serializeEnvelope(envelope: Envelope): string {
  const { v, room, from, id, ts, iv, ct, tag } = envelope;
  return JSON.stringify({ v, room, from, id, ts, iv, ct, tag });
}
