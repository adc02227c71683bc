/**
 * Room messages of protocol v2: the signed plaintext inside an envelope. The sender's identity key signs the room
 * instance (server key, canonical room name, access key, epoch), the envelope's from, id and ts, the content, and the
 * sender's sequence values; the whole plaintext, signature included, is then sealed with the room keys, so the
 * server never holds a signature. Version 1 envelopes (from a migrated database) open as unsigned.
 *
 * @module
 */

import { decodeBase64 } from "./base64.ts";
import { concat, lp, lp32, u16be, u32be, u64be } from "./bytes.ts";
import { openEnvelope, type RoomKeys, sealEnvelope, signEd25519, verifyEd25519 } from "./crypto.ts";
import { type Envelope, ID_BYTES, MAX_BODY_BYTES } from "./envelope.ts";
import type { Identity } from "./identity.ts";

/** Bytes of a device id. */
export const DEVICE_BYTES = 16;
/** Most ranges in a message's `void` list. */
export const MAX_VOID_RANGES = 16;
/** Largest sequence number (JSON integers are exact up to 2^53 - 1). */
export const MAX_SEQUENCE = Number.MAX_SAFE_INTEGER;
/** Plaintext types a v2 sender uses; receivers show others as unsupported. */
export const MESSAGE_TYPES = ["text", "action", "topic"] as const;

const encoder = new TextEncoder();
const SIG_LABEL = encoder.encode("aeschat v2 room-msg\0");
const TYPE_PATTERN = /^[a-z][a-z0-9_]{0,31}$/;

/** The room instance a message belongs to: what its signature binds besides the message itself. */
export interface RoomContext {
  /** The server's 32-byte key. */
  serverPub: Uint8Array;
  /** The room's canonical name (the server's stored spelling). */
  room: string;
  /** The room's 32-byte access key (its join-proof verifier). */
  accessPub: Uint8Array;
  /** The room's key epoch: 0 until rooms can be re-keyed. */
  epoch: number;
}

/** The sender's sequence values for one room, signed with every message (see PROTOCOL.md "Sequence"). */
export interface Sequence {
  /** The sending device's 16-byte id. */
  device: Uint8Array<ArrayBuffer>;
  /** This message's number, from 1, one more than the device's previous message in this room. */
  n: number;
  /** Every number up to this one was acknowledged or finally refused when this message was sealed. */
  acked: number;
  /** Numbers up to `acked` that were finally refused (never stored), as inclusive ranges, ascending. */
  void: [number, number][];
}

/** What a message says. */
export interface Content {
  /** "text", "action" (/me) or "topic". */
  type: string;
  /** The text, at most 16384 bytes of UTF-8. */
  body: string;
}

/** An opened room message. */
export interface RoomMessage extends Content {
  /** Envelope version: 2 signed, 1 unsigned (stored before protocol v2). */
  v: 1 | 2;
  /** Room name as sealed. */
  room: string;
  /** Sender nick as sealed. */
  from: string;
  /** Message id, base64. */
  id: string;
  /** Sender's clock, ms since the epoch. */
  ts: number;
  /** For v2: the signer's identity key and sequence values (the signature has verified). */
  signer?: { key: Uint8Array<ArrayBuffer>; sequence: Sequence };
}

/** Raised when a v2 message's MAC is fine but its signed part is malformed or its signature fails. */
export class SignatureError extends Error {
  /** The nick the envelope claims. */
  readonly from: string;
  /** @param from the claimed sender */
  constructor(from: string) {
    super(`Cannot verify message: the signature of ${from} is missing, malformed or wrong`);
    this.name = "SignatureError";
    this.from = from;
  }
}

/**
 * The bytes a room message signature covers: "aeschat v2 room-msg" 0x00 || server_pub || lp(room) || access_pub ||
 * u32be(epoch) || lp(from) || id || u64be(ts) || lp(type) || lp32(body) || identity_pub || device || u64be(n) ||
 * u64be(acked) || u16be(k) || k × (u64be(first) || u64be(last)).
 *
 * @example
 * ```ts
 * const input = roomMessageInput(context, { from: "alice", id, ts, content, identityPub, sequence });
 * ```
 * @param context the room instance
 * @param message the envelope fields, content, signer and sequence
 * @returns the signed bytes
 */
export function roomMessageInput(
  context: RoomContext,
  message: {
    from: string;
    id: Uint8Array;
    ts: number;
    content: Content;
    identityPub: Uint8Array;
    sequence: Sequence;
  },
): Uint8Array<ArrayBuffer> {
  const { sequence } = message;
  return concat([
    SIG_LABEL,
    context.serverPub,
    lp(context.room),
    context.accessPub,
    u32be(context.epoch),
    lp(message.from),
    message.id,
    u64be(message.ts),
    lp(message.content.type),
    lp32(message.content.body),
    message.identityPub,
    sequence.device,
    u64be(sequence.n),
    u64be(sequence.acked),
    u16be(sequence.void.length),
    ...sequence.void.flatMap(([first, last]) => [u64be(first), u64be(last)]),
  ]);
}

/**
 * Whether a string is a valid content type: 1 to 32 characters of `[a-z][a-z0-9_]*` (for room and direct messages).
 *
 * @example
 * ```ts
 * isContentType("text"); // true
 * isContentType("text\u001b[2J"); // false
 * ```
 * @param type the candidate
 * @returns whether it is allowed
 */
export function isContentType(type: unknown): type is string {
  return typeof type === "string" && TYPE_PATTERN.test(type);
}

function checkSequence(sequence: Sequence): boolean {
  const { n, acked } = sequence;
  if (sequence.device.length !== DEVICE_BYTES) return false;
  if (!Number.isSafeInteger(n) || n < 1 || !Number.isSafeInteger(acked) || acked < 0 || acked >= n) return false;
  if (sequence.void.length > MAX_VOID_RANGES) return false;
  let floor = 0;
  for (const range of sequence.void) {
    if (!Array.isArray(range) || range.length !== 2) return false;
    const [first, last] = range;
    if (!Number.isSafeInteger(first) || !Number.isSafeInteger(last)) return false;
    if (first <= floor || last < first || last > acked) return false;
    floor = last;
  }
  return true;
}

function checkContent(content: Content): void {
  if (!TYPE_PATTERN.test(content.type)) throw new RangeError(`message type ${content.type} is not allowed`);
  if (typeof content.body !== "string" || !content.body.isWellFormed()) {
    throw new RangeError("body must be a well-formed string");
  }
  if (encoder.encode(content.body).length > MAX_BODY_BYTES) {
    throw new RangeError(`body exceeds ${MAX_BODY_BYTES} bytes`);
  }
}

/**
 * Signs and seals a v2 room message: the plaintext `{"type","body","key","device","n","acked","void","sig"}` in a
 * version 2 envelope.
 *
 * @example
 * ```ts
 * const envelope = await sealRoomMessage(keys, {
 *   context, from: "alice", identity, content: { type: "text", body: "hi" }, sequence,
 * });
 * ```
 * @param keys the room keys
 * @param message.context the room instance
 * @param message.from the sender's nick (canonical)
 * @param message.identity the sender's identity
 * @param message.content type and body
 * @param message.sequence the sender's sequence values
 * @param message.id the 16-byte id (default random; a resend reuses it)
 * @param message.ts the time (default now)
 * @param message.iv the IV, for test vectors only
 * @returns the envelope
 * @throws {RangeError} for a bad type, body or sequence
 */
export async function sealRoomMessage(
  keys: RoomKeys,
  message: {
    context: RoomContext;
    from: string;
    identity: Identity;
    content: Content;
    sequence: Sequence;
    id?: Uint8Array;
    ts?: number;
    iv?: Uint8Array;
  },
): Promise<Envelope> {
  const { context, from, identity, content, sequence } = message;
  checkContent(content);
  if (!checkSequence(sequence)) throw new RangeError("sequence values are not valid");
  const id = message.id ?? crypto.getRandomValues(new Uint8Array(ID_BYTES));
  const ts = message.ts ?? Date.now();
  const input = roomMessageInput(context, { from, id, ts, content, identityPub: identity.publicKey, sequence });
  const sig = await signEd25519(identity.signKey, input);
  const plaintext = {
    type: content.type,
    body: content.body,
    key: identity.publicKey.toBase64(),
    device: sequence.device.toBase64(),
    n: sequence.n,
    acked: sequence.acked,
    void: sequence.void,
    sig: sig.toBase64(),
  };
  return await sealEnvelope(keys, { room: context.room, from, plaintext, id, ts, iv: message.iv, v: 2 });
}

function signedFields(
  plaintext: Record<string, unknown>,
): { key: Uint8Array<ArrayBuffer>; sequence: Sequence; sig: Uint8Array } {
  const { key, device, n, acked, sig } = plaintext;
  const voids = plaintext.void;
  if (typeof key !== "string" || typeof device !== "string" || typeof sig !== "string" || !Array.isArray(voids)) {
    throw new TypeError("signed fields missing");
  }
  const sequence: Sequence = {
    device: decodeBase64(device, { length: DEVICE_BYTES }),
    n: n as number,
    acked: acked as number,
    void: voids as [number, number][],
  };
  if (!checkSequence(sequence)) throw new TypeError("bad sequence");
  return { key: decodeBase64(key, { length: 32 }), sequence, sig: decodeBase64(sig, { length: 64 }) };
}

/**
 * Opens a room message: verifies the envelope's MAC and decrypts it (any failure: OpenError), then for a version 2
 * envelope checks the signed fields and the signature (any failure: SignatureError). The caller still checks that
 * the signer's key is the one pinned for `from`.
 *
 * @example
 * ```ts
 * const message = await openRoomMessage(keys, { envelope, context });
 * if (message.signer) pinOrCompare(message.from, message.signer.key);
 * ```
 * @param keys the room keys
 * @param options.envelope the envelope as received (unknown shape)
 * @param options.context the room instance the receiver joined
 * @returns the message; `signer` is absent for a version 1 envelope
 * @throws {OpenError} when the envelope does not open (shape, room, MAC, padding, plaintext)
 * @throws {SignatureError} when a version 2 message's signature is missing, malformed or wrong
 */
export async function openRoomMessage(
  keys: RoomKeys,
  options: { envelope: unknown; context: RoomContext },
): Promise<RoomMessage> {
  const opened = await openEnvelope(keys, { envelope: options.envelope, room: options.context.room });
  const { plaintext } = opened;
  const v = (options.envelope as Envelope).v;
  const base = { v, room: opened.room, from: opened.from, id: opened.id, ts: opened.ts };
  if (v === 1) return { ...base, type: plaintext.type, body: plaintext.body };
  let fields;
  try {
    fields = signedFields(plaintext);
    if (!TYPE_PATTERN.test(plaintext.type)) throw new TypeError("bad type");
  } catch {
    throw new SignatureError(opened.from);
  }
  const content = { type: plaintext.type, body: plaintext.body };
  const input = roomMessageInput(options.context, {
    from: opened.from,
    id: decodeBase64(opened.id),
    ts: opened.ts,
    content,
    identityPub: fields.key,
    sequence: fields.sequence,
  });
  if (!await verifyEd25519(fields.key, { input, signature: fields.sig })) throw new SignatureError(opened.from);
  return { ...base, ...content, signer: { key: fields.key, sequence: fields.sequence } };
}
