/**
 * The wire messages of protocol v1, and the parsing of untrusted frame bodies into them. Every input ends in a
 * typed message or a {@link ProtocolError} carrying the stable error code the server sends back.
 *
 * @module
 */

import { type Envelope, EnvelopeError, parseEnvelope } from "./envelope.ts";
import { findDuplicateMember } from "./json_members.ts";

/** Protocol version spoken by this code. */
export const PROTOCOL_VERSION = 1;
/** Most messages one history or since reply carries. */
export const HISTORY_PAGE = 500;

/** Every error code the server sends, with whether the connection is closed after it. */
export const ERROR_CODES = {
  bad_frame: "frame of length 0, or not valid UTF-8 (connection closed)",
  frame_too_large: "frame longer than the server's max_frame (connection closed)",
  bad_json: "frame body is not a JSON object (connection closed)",
  bad_message:
    "unknown type, missing or extra field, a field of the wrong type, or a member repeated in one object (connection closed)",
  version_unsupported: "hello.version is not 1 (connection closed)",
  nick_invalid: "nick breaks the nick rules (closed after hello; kept after nick)",
  nick_in_use: "another connection uses this nick, case-insensitively (closed after hello; kept after nick)",
  not_ready: "message sent before hello, or a room message before joining a room (closed before hello)",
  room_invalid: "room name breaks the room rules",
  no_challenge: "prove without a matching outstanding challenge",
  access_denied: "the join proof does not verify",
  bad_create: "salt, iterations or access_pub missing or invalid when creating a room",
  room_changed: "the room was created by someone else between challenge and prove: join again",
  room_limit: "the room cannot be created: the server holds --max-rooms rooms",
  create_limited: "the room cannot be created yet: too many rooms created from this connection or address lately",
  bad_envelope: "the envelope's shape is wrong (field set, lengths, base64, ts)",
  room_mismatch: "envelope.room is not the sender's current room",
  sender_mismatch: "envelope.from is not the sender's nick",
  duplicate_id: "an envelope with this id is already stored in this room (it is not stored twice)",
  room_full: "the room holds --room-quota bytes: the message was not stored",
  rate_limited: "more messages than --rate allows: reading is paused until the budget refills (not fatal)",
  server_full:
    "--max-connections reached, or --max-connections-per-address, or half of it held by connections not in a room (closed)",
  handshake_timeout: "no hello within --handshake-timeout (connection closed)",
  idle_timeout: "no complete frame within --idle-timeout (connection closed)",
  send_queue_full:
    "the client did not read: more than --send-queue bytes waited for longer than --send-grace, or memory ran out (closed)",
  storage_failed: "the database refused the write: the message was not stored or acknowledged",
  shutting_down: "the server is stopping",
} as const;

/** A stable error code. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** Raised when a frame body is not a valid message; carries the code to send back and whether to disconnect. */
export class ProtocolError extends Error {
  /** The stable error code. */
  readonly code: ErrorCode;
  /** Whether the connection is closed after reporting it. */
  readonly fatal: boolean;
  /** The message id concerned, when the error is about one envelope. */
  readonly id?: string;
  /**
   * @param code the stable error code
   * @param message a one-line explanation
   * @param options.fatal close the connection after reporting (default true)
   * @param options.id the envelope id concerned
   */
  constructor(code: ErrorCode, message: string, options: { fatal?: boolean; id?: string } = {}) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
    this.fatal = options.fatal ?? true;
    if (options.id !== undefined) this.id = options.id;
  }
}

/** Limits a server announces in its welcome. */
export interface ServerLimits {
  /** Largest frame body in bytes. */
  max_frame: number;
  /** Largest plaintext body in bytes. */
  max_body: number;
  /** Messages replayed on join. */
  history: number;
  /** Most messages in one history or since reply. */
  history_page: number;
  /** Messages per second per connection (0 = unlimited). */
  rate: number;
  /** Messages allowed in a burst above the rate. */
  burst: number;
  /** Bytes waiting for one reader above which it is behind (cut off if it stays behind for the grace period). */
  send_queue: number;
  /** Milliseconds without a complete frame before the connection is closed. */
  idle_timeout_ms: number;
}

/** A stored message as the server relays it. */
export interface RelayedMessage {
  /** Server-wide sequence number. */
  seq: number;
  /** Server clock when stored, ms since the epoch. */
  sent_at: number;
  /** The envelope exactly as stored. */
  envelope: Envelope;
}

/** Messages a client sends. */
export type ClientMessage =
  | { type: "hello"; version: number; nick: string }
  | { type: "join"; room: string }
  | { type: "prove"; room: string; proof: string; salt?: string; iterations?: number; access_pub?: string }
  | { type: "send"; envelope: Envelope }
  | { type: "who" }
  | { type: "rooms" }
  | { type: "nick"; new: string }
  | { type: "history"; before_seq: number; limit?: number }
  | { type: "since"; after_seq: number; limit?: number }
  | { type: "ping"; data?: string }
  | { type: "pong"; data?: string }
  | { type: "bye"; reason?: string };

/** Messages a server sends. */
export type ServerMessage =
  | { type: "welcome"; server: string; version: number; nick: string; limits: ServerLimits }
  | { type: "challenge"; room: string; nonce: string; salt?: string; iterations?: number }
  | { type: "joined"; room: string; members: string[]; history: RelayedMessage[]; latest_seq: number }
  | { type: "ack"; id: string; seq: number }
  | { type: "message" } & RelayedMessage
  | { type: "presence"; event: "join" | "leave" | "nick"; room: string; nick: string; old?: string }
  | { type: "who"; room: string; members: string[] }
  | { type: "rooms"; rooms: { name: string; members: number }[] }
  | { type: "nick"; old: string; new: string }
  | { type: "history"; room: string; before_seq: number; messages: RelayedMessage[]; more: boolean }
  | { type: "since"; room: string; after_seq: number; messages: RelayedMessage[]; more: boolean }
  | { type: "ping"; data?: string }
  | { type: "pong"; data?: string }
  | { type: "bye"; reason: string; message?: string }
  | { type: "error"; code: string; message: string; id?: string; retry_after_ms?: number };

type Kind = "string" | "uint" | "object" | "array" | "boolean";
type Spec = Record<string, Kind | `${Kind}?`>;

const CLIENT_SPECS: Record<string, Spec> = {
  hello: { version: "uint", nick: "string" },
  join: { room: "string" },
  prove: { room: "string", proof: "string", salt: "string?", iterations: "uint?", access_pub: "string?" },
  send: { envelope: "object" },
  who: {},
  rooms: {},
  nick: { new: "string" },
  history: { before_seq: "uint", limit: "uint?" },
  since: { after_seq: "uint", limit: "uint?" },
  ping: { data: "string?" },
  pong: { data: "string?" },
  bye: { reason: "string?" },
};

const SERVER_SPECS: Record<string, Spec> = {
  welcome: { server: "string", version: "uint", nick: "string", limits: "object" },
  challenge: { room: "string", nonce: "string", salt: "string?", iterations: "uint?" },
  joined: { room: "string", members: "array", history: "array", latest_seq: "uint" },
  ack: { id: "string", seq: "uint" },
  message: { seq: "uint", sent_at: "uint", envelope: "object" },
  presence: { event: "string", room: "string", nick: "string", old: "string?" },
  who: { room: "string", members: "array" },
  rooms: { rooms: "array" },
  nick: { old: "string", new: "string" },
  history: { room: "string", before_seq: "uint", messages: "array", more: "boolean" },
  since: { room: "string", after_seq: "uint", messages: "array", more: "boolean" },
  ping: { data: "string?" },
  pong: { data: "string?" },
  bye: { reason: "string", message: "string?" },
  error: { code: "string", message: "string", id: "string?", retry_after_ms: "uint?" },
};

const decoder = new TextDecoder("utf-8", { fatal: true });

function isKind(value: unknown, kind: Kind): boolean {
  switch (kind) {
    case "string":
      return typeof value === "string";
    case "uint":
      return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
    case "boolean":
      return typeof value === "boolean";
    case "array":
      return Array.isArray(value);
    case "object":
      return typeof value === "object" && value !== null && !Array.isArray(value);
  }
}

function decodeBody(body: Uint8Array, options: { uniqueMembers: boolean }): Record<string, unknown> {
  let text: string;
  try {
    text = decoder.decode(body);
  } catch {
    throw new ProtocolError("bad_frame", "Cannot read frame: body is not valid UTF-8");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ProtocolError("bad_json", "Cannot parse frame: body is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError("bad_json", "Cannot parse frame: body is not a JSON object");
  }
  if (options.uniqueMembers) {
    const repeated = findDuplicateMember(text, { parsed: value });
    if (repeated !== undefined) {
      throw new ProtocolError(
        "bad_message",
        `Cannot parse frame: member ${JSON.stringify(repeated.slice(0, 40))} appears twice in one object`,
      );
    }
  }
  return value as Record<string, unknown>;
}

function checkSpec(
  msg: Record<string, unknown>,
  specs: Record<string, Spec>,
  options: { allowExtra: boolean },
): void {
  const type = msg.type;
  if (typeof type !== "string" || !Object.hasOwn(specs, type)) {
    // Never JSON.stringify an untrusted value here: a deeply nested one overflows the stack (RangeError).
    const shown = typeof type === "string"
      ? JSON.stringify(type.slice(0, 40))
      : `of kind ${type === null ? "null" : Array.isArray(type) ? "array" : typeof type}`;
    throw new ProtocolError("bad_message", `Unknown message type ${shown}`);
  }
  const spec = specs[type];
  if (!options.allowExtra) {
    for (const key in msg) {
      if (key !== "type" && !Object.hasOwn(spec, key)) {
        throw new ProtocolError("bad_message", `${type}: unexpected field ${JSON.stringify(key).slice(0, 40)}`);
      }
    }
  }
  for (const field in spec) {
    const want = spec[field];
    const optional = want.endsWith("?");
    const kind = (optional ? want.slice(0, -1) : want) as Kind;
    const value = msg[field];
    if (value === undefined && optional) continue;
    if (value === undefined) throw new ProtocolError("bad_message", `${type}: missing field ${field}`);
    if (!isKind(value, kind)) {
      throw new ProtocolError(
        "bad_message",
        `${type}: field ${field} must be ${kind === "uint" ? "a non-negative integer" : `a ${kind}`}`,
      );
    }
  }
}

/**
 * Parses one frame body sent by a client. The envelope of a `send` is shape-checked here too.
 *
 * @example
 * ```ts
 * const msg = parseClientMessage(body);
 * if (msg.type === "send") relay(msg.envelope);
 * ```
 * @param body the frame body (UTF-8 JSON)
 * @returns the typed message
 * @throws {ProtocolError} with the code to report; `fatal` says whether to disconnect
 */
export function parseClientMessage(body: Uint8Array): ClientMessage {
  const msg = decodeBody(body, { uniqueMembers: true });
  checkSpec(msg, CLIENT_SPECS, { allowExtra: false });
  if (msg.type === "send") {
    try {
      msg.envelope = parseEnvelope(msg.envelope);
    } catch (err) {
      if (!(err instanceof EnvelopeError)) throw err;
      const id = (msg.envelope as Record<string, unknown>).id;
      throw new ProtocolError("bad_envelope", err.message, {
        fatal: false,
        id: typeof id === "string" && id.length <= 64 ? id : undefined,
      });
    }
  }
  return msg as unknown as ClientMessage;
}

/**
 * Parses one frame body sent by a server. Unknown fields are ignored so that newer servers stay compatible;
 * nested values (history items, envelopes) are checked by the code that uses them.
 *
 * @example
 * ```ts
 * const msg = parseServerMessage(body);
 * ```
 * @param body the frame body (UTF-8 JSON)
 * @returns the typed message
 * @throws {ProtocolError} when it is not a valid server message
 */
export function parseServerMessage(body: Uint8Array): ServerMessage {
  const msg = decodeBody(body, { uniqueMembers: false });
  checkSpec(msg, SERVER_SPECS, { allowExtra: true });
  return msg as unknown as ServerMessage;
}

/**
 * Checks one relayed message item (from `joined.history`, `history` or `since`) and returns it typed.
 *
 * @example
 * ```ts
 * const item = parseRelayedMessage(reply.messages[0]);
 * ```
 * @param value an untrusted item
 * @returns the item with a shape-checked envelope
 * @throws {ProtocolError} ("bad_message") or an EnvelopeError for a malformed envelope
 */
export function parseRelayedMessage(value: unknown): RelayedMessage {
  if (!isKind(value, "object")) throw new ProtocolError("bad_message", "relayed message must be an object");
  const item = value as Record<string, unknown>;
  if (!isKind(item.seq, "uint") || !isKind(item.sent_at, "uint")) {
    throw new ProtocolError("bad_message", "relayed message needs integer seq and sent_at");
  }
  return { seq: item.seq as number, sent_at: item.sent_at as number, envelope: parseEnvelope(item.envelope) };
}
