/**
 * The wire messages of protocol v2, their builders, and the parsing of untrusted frame bodies into them. Every input
 * ends in a typed message or a {@link ProtocolError} carrying the stable error code the server sends back.
 *
 * @module
 */

import { canonicalBase64Length } from "./base64.ts";
import { type DirectEnvelope, DirectError, parseDirectEnvelope, serializeDirectEnvelope } from "./direct.ts";
import { type Envelope, EnvelopeError, MAX_BODY_BYTES, parseEnvelope, serializeEnvelope } from "./envelope.ts";
import { encodeFrame, encodeMessage } from "./frame.ts";
import { findDuplicateMember } from "./json_members.ts";

/** Protocol version spoken by this code. */
export const PROTOCOL_VERSION = 2;
/** Most messages one history, since or direct_since reply carries. */
export const HISTORY_PAGE = 500;

/** Longest `ping.data`, `pong.data` or `bye.reason` a server accepts, in characters. */
export const MAX_TOKEN_CHARS = 64;
/** Most rotation statements an `identity` reply carries. */
export const MAX_ROTATIONS = 8;

/** Every error code the server sends, with what it means and whether the connection is closed after it. */
export const ERROR_CODES = {
  bad_frame: "frame of length 0, or not valid UTF-8 (connection closed)",
  frame_too_large: "frame longer than the server's max_frame (connection closed)",
  bad_json: "frame body is not a JSON object (connection closed)",
  bad_message:
    "unknown type, missing or extra member, wrong member type, a repeated member, or a message out of order (connection closed)",
  version_unsupported: "hello.version is not 2 (connection closed)",
  not_ready: "a message before login succeeded (connection closed)",
  bad_signature: "the login signature or kx_sig does not verify (connection closed)",
  bad_rotation: "login.rotation does not verify (connection closed)",
  nick_invalid: "nick breaks the nick rules (closed after login; kept after nick)",
  nick_registered: "the nick is registered to another identity key (closed after login; kept after nick)",
  registration_closed: "registration is closed and the nick is not registered to this key (closed after login)",
  too_many_nicks: "this identity key holds the most nicks allowed (closed after login; kept after nick)",
  registration_limited: "too many new registrations from this address (closed after login; kept after nick)",
  room_invalid: "room name breaks the room rules",
  too_many_rooms: "this connection is in the most rooms allowed",
  not_in_room: "a room message for a room this connection is not in",
  no_challenge: "prove without a matching outstanding challenge",
  access_denied: "the join proof does not verify",
  bad_create: "salt, iterations or access_pub missing or invalid when creating a room",
  room_changed: "the room was created by someone else between challenge and prove: join again",
  room_limit: "the room cannot be created: the server holds --max-rooms rooms",
  create_limited: "the room cannot be created yet: too many rooms created from this connection or address lately",
  bad_envelope: "the envelope's shape is wrong (members, version, lengths, base64, names, ts)",
  sender_mismatch: "envelope.from is not the sender's canonical nick",
  duplicate_id: "this room or inbox already stores an envelope with this id (it is not stored twice)",
  room_full: "the room holds --room-quota bytes: the message was not stored",
  unknown_nick: "lookup or direct to a nick nobody has registered",
  bad_direct: "a direct message's envelopes are malformed or do not match the sender, recipient or each other",
  inbox_full:
    "the recipient has --direct-inbox direct messages waiting undelivered, or this sender a tenth of that: not stored",
  rate_limited: "more messages than --rate allows: reading is paused until the budget refills (not fatal)",
  server_full:
    "--max-connections reached, or --max-connections-per-address, or half of it held by connections not in a room (closed)",
  handshake_timeout: "no successful login within --handshake-timeout (connection closed)",
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
  /** Rooms one connection may be in at once. */
  max_rooms: number;
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

/** The server message of one type, such as `ServerMessageOf<"joined">`. */
export type ServerMessageOf<T extends ServerMessage["type"]> = Extract<ServerMessage, { type: T }>;

/** The client message of one type, such as `ClientMessageOf<"prove">`. */
export type ClientMessageOf<T extends ClientMessage["type"]> = Extract<ClientMessage, { type: T }>;

/** A member of a room as the server's registry shows it: a nick and the identity key it is registered to. */
export interface MemberInfo {
  /** Canonical nick. */
  nick: string;
  /** Identity key, base64 (32 bytes). */
  key: string;
}

/** A rotation statement as it travels (`login.rotation` has no `new`: it is the login's key). */
export interface RotationInfo {
  /** The replaced key, base64. */
  old: string;
  /** The new key, base64. */
  new: string;
  /** When it was made, ms since the epoch. */
  ts: number;
  /** The old key's signature, base64. */
  signature: string;
}

/** A stored direct message as the server hands it over. */
export interface DirectItem {
  /** Inbox sequence number. */
  seq: number;
  /** Server clock when stored. */
  sent_at: number;
  /** The direct envelope exactly as stored. */
  envelope: DirectEnvelope;
  /** For the sender's copy: whether the recipient has been handed the message. */
  delivered: boolean;
}

/** Messages a client sends. */
export type ClientMessage =
  | { type: "hello"; version: number; nonce: string }
  | {
    type: "login";
    nick: string;
    key: string;
    kx: string;
    kx_sig: string;
    signature: string;
    rotation?: { old: string; ts: number; signature: string };
  }
  | { type: "join"; room: string }
  | { type: "prove"; room: string; proof: string; salt?: string; iterations?: number; access_pub?: string }
  | { type: "part"; room: string }
  | { type: "send"; envelope: Envelope }
  | { type: "who"; room: string }
  | { type: "rooms" }
  | { type: "nick"; new: string }
  | { type: "history"; room: string; before_seq: number; limit?: number }
  | { type: "since"; room: string; after_seq: number; limit?: number }
  | { type: "lookup"; nick: string }
  | { type: "direct"; to: string; envelope: Record<string, unknown>; copy: Record<string, unknown> }
  | { type: "direct_since"; after_seq: number; limit?: number }
  | { type: "ping"; data?: string }
  | { type: "pong"; data?: string }
  | { type: "bye"; reason?: string };

/** Messages a server sends. */
export type ServerMessage =
  | {
    type: "server";
    server: string;
    server_version: string;
    version: number;
    key: string;
    nonce: string;
    signature: string;
  }
  | { type: "welcome"; nick: string; registered: boolean; limits: ServerLimits; direct_seq: number }
  | {
    type: "challenge";
    room: string;
    nonce: string;
    salt?: string;
    iterations?: number;
    access_pub?: string;
    epoch?: number;
  }
  | {
    type: "joined";
    room: string;
    epoch: number;
    members: MemberInfo[];
    history: RelayedMessage[];
    latest_seq: number;
  }
  | { type: "parted"; room: string }
  | { type: "ack"; id: string; seq: number }
  | { type: "message" } & RelayedMessage
  | { type: "presence"; event: "join" | "leave" | "nick"; room: string; nick: string; key: string; old?: string }
  | { type: "who"; room: string; members: MemberInfo[] }
  | { type: "rooms"; rooms: { name: string; count: number }[] }
  | { type: "nick"; old: string; new: string }
  | { type: "history"; room: string; before_seq: number; messages: RelayedMessage[]; more: boolean }
  | {
    type: "since";
    room: string;
    after_seq: number;
    messages: RelayedMessage[];
    more: boolean;
    pruned_through: number;
  }
  | { type: "identity"; nick: string; key: string; kx: string; kx_sig: string; rotations: RotationInfo[] }
  | { type: "direct" } & DirectItem
  | { type: "direct_since"; after_seq: number; messages: DirectItem[]; more: boolean }
  | { type: "delivered"; id: string }
  | { type: "ping"; data?: string }
  | { type: "pong"; data?: string }
  | { type: "bye"; reason: string; message?: string }
  | { type: "error"; code: string; message: string; id?: string; retry_after_ms?: number };

type Kind = "string" | "uint" | "object" | "array" | "boolean";
type Spec = Record<string, Kind | `${Kind}?`>;

const CLIENT_SPECS: Record<string, Spec> = {
  hello: { version: "uint", nonce: "string" },
  login: {
    nick: "string",
    key: "string",
    kx: "string",
    kx_sig: "string",
    signature: "string",
    rotation: "object?",
  },
  join: { room: "string" },
  prove: { room: "string", proof: "string", salt: "string?", iterations: "uint?", access_pub: "string?" },
  part: { room: "string" },
  send: { envelope: "object" },
  who: { room: "string" },
  rooms: {},
  nick: { new: "string" },
  history: { room: "string", before_seq: "uint", limit: "uint?" },
  since: { room: "string", after_seq: "uint", limit: "uint?" },
  lookup: { nick: "string" },
  direct: { to: "string", envelope: "object", copy: "object" },
  direct_since: { after_seq: "uint", limit: "uint?" },
  ping: { data: "string?" },
  pong: { data: "string?" },
  bye: { reason: "string?" },
};

const SERVER_SPECS: Record<string, Spec> = {
  server: {
    server: "string",
    server_version: "string",
    version: "uint",
    key: "string",
    nonce: "string",
    signature: "string",
  },
  welcome: { nick: "string", registered: "boolean", limits: "object", direct_seq: "uint" },
  challenge: {
    room: "string",
    nonce: "string",
    salt: "string?",
    iterations: "uint?",
    access_pub: "string?",
    epoch: "uint?",
  },
  joined: { room: "string", epoch: "uint", members: "array", history: "array", latest_seq: "uint" },
  parted: { room: "string" },
  ack: { id: "string", seq: "uint" },
  message: { seq: "uint", sent_at: "uint", envelope: "object" },
  presence: { event: "string", room: "string", nick: "string", key: "string", old: "string?" },
  who: { room: "string", members: "array" },
  rooms: { rooms: "array" },
  nick: { old: "string", new: "string" },
  history: { room: "string", before_seq: "uint", messages: "array", more: "boolean" },
  since: { room: "string", after_seq: "uint", messages: "array", more: "boolean", pruned_through: "uint" },
  identity: { nick: "string", key: "string", kx: "string", kx_sig: "string", rotations: "array" },
  direct: { seq: "uint", sent_at: "uint", envelope: "object", delivered: "boolean" },
  direct_since: { after_seq: "uint", messages: "array", more: "boolean" },
  delivered: { id: "string" },
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
        `${type}: field ${field} must be ${
          kind === "uint" ? "a non-negative integer" : `${/^[aeiou]/.test(kind) ? "an" : "a"} ${kind}`
        }`,
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
  // A client of another protocol version (v1's hello has a nick and no nonce) is told so, not that it is malformed.
  if (msg.type === "hello" && isKind(msg.version, "uint") && msg.version !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      "version_unsupported",
      `protocol version ${msg.version} is not supported: this server speaks version ${PROTOCOL_VERSION} only`,
    );
  }
  checkSpec(msg, CLIENT_SPECS, { allowExtra: false });
  for (const token of ["data", "reason"]) {
    const value = msg[token];
    if (typeof value === "string" && value.length > MAX_TOKEN_CHARS) {
      throw new ProtocolError(
        "bad_message",
        `${msg.type}: field ${token} is longer than ${MAX_TOKEN_CHARS} characters`,
      );
    }
  }
  if (msg.type === "send") {
    const id = envelopeId(msg.envelope);
    try {
      msg.envelope = parseEnvelope(msg.envelope);
    } catch (err) {
      if (!(err instanceof EnvelopeError)) throw err;
      throw new ProtocolError("bad_envelope", err.message, { fatal: false, id });
    }
    if ((msg.envelope as Envelope).v !== 2) {
      throw new ProtocolError("bad_envelope", "envelope.v must be 2", { fatal: false, id });
    }
  }
  if (msg.type === "direct") {
    const id = envelopeId(msg.envelope);
    try {
      msg.envelope = parseDirectEnvelope(msg.envelope);
      msg.copy = parseDirectEnvelope(msg.copy);
    } catch (err) {
      if (!(err instanceof DirectError)) throw err;
      throw new ProtocolError("bad_direct", err.message, { fatal: false, id });
    }
  }
  if (msg.type === "login" && msg.rotation !== undefined) checkRotationShape(msg.rotation);
  return msg as unknown as ClientMessage;
}

/** The `id` of an untrusted envelope, when it is a plausible one to echo back in an error. */
function envelopeId(envelope: unknown): string | undefined {
  const id = (envelope as Record<string, unknown>).id;
  return typeof id === "string" && canonicalBase64Length(id) === 16 ? id : undefined;
}

function checkRotationShape(value: unknown): void {
  const r = value as Record<string, unknown>;
  const keys = Object.keys(r);
  const ok = keys.length === 3 && typeof r.old === "string" && typeof r.signature === "string" &&
    isKind(r.ts, "uint") && keys.every((k) => k === "old" || k === "ts" || k === "signature");
  if (!ok) throw new ProtocolError("bad_message", "login.rotation must be exactly {old, ts, signature}");
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

/**
 * The `prove` message answering a challenge: the proof alone to join an existing room, or with the room's salt,
 * iterations and public key to create it.
 *
 * @example
 * ```ts
 * proveMessage("general", proof); // { type: "prove", room: "general", proof: "…" }
 * proveMessage("new", proof, { salt, iterations: 600000, accessPub }); // creates #new
 * ```
 * @param room the room
 * @param proof the 64-byte join proof
 * @param create the new room's parameters, when creating it
 * @returns the message
 */
export function proveMessage(
  room: string,
  proof: Uint8Array,
  create?: { salt: Uint8Array; iterations: number; accessPub: Uint8Array },
): ClientMessageOf<"prove"> {
  if (!create) return { type: "prove", room, proof: proof.toBase64() };
  return {
    type: "prove",
    room,
    proof: proof.toBase64(),
    salt: create.salt.toBase64(),
    iterations: create.iterations,
    access_pub: create.accessPub.toBase64(),
  };
}

/**
 * The `hello` message that opens a session, with the client's fresh nonce.
 *
 * @example
 * ```ts
 * encodeMessage(helloMessage(crypto.getRandomValues(new Uint8Array(32))));
 * ```
 * @param nonce 32 random bytes
 * @returns the message
 */
export function helloMessage(nonce: Uint8Array): ClientMessageOf<"hello"> {
  return { type: "hello", version: PROTOCOL_VERSION, nonce: nonce.toBase64() };
}

/**
 * The `login` message: the nick, the identity and key-agreement keys, and their signatures.
 *
 * @example
 * ```ts
 * loginMessage({ nick: "alice", key, kx, kxSig, signature });
 * ```
 * @param login the nick, keys and signatures (raw bytes)
 * @param rotation a statement that `key` replaces an older key, when the identity was rotated
 * @returns the message
 */
export function loginMessage(
  login: { nick: string; key: Uint8Array; kx: Uint8Array; kxSig: Uint8Array; signature: Uint8Array },
  rotation?: { oldKey: Uint8Array; ts: number; signature: Uint8Array },
): ClientMessageOf<"login"> {
  const message: ClientMessageOf<"login"> = {
    type: "login",
    nick: login.nick,
    key: login.key.toBase64(),
    kx: login.kx.toBase64(),
    kx_sig: login.kxSig.toBase64(),
    signature: login.signature.toBase64(),
  };
  if (rotation) {
    message.rotation = { old: rotation.oldKey.toBase64(), ts: rotation.ts, signature: rotation.signature.toBase64() };
  }
  return message;
}

/**
 * The frame of a `direct`: the recipient's envelope and the sender's copy, in canonical member order.
 *
 * @example
 * ```ts
 * link.write(directFrame("bob", { envelope, copy }));
 * ```
 * @param to the recipient's canonical nick
 * @param sealed the two envelopes from sealDirect
 * @returns the frame bytes
 */
export function directFrame(
  to: string,
  sealed: { envelope: DirectEnvelope; copy: DirectEnvelope },
): Uint8Array<ArrayBuffer> {
  return encodeFrame(
    `{"type":"direct","to":${JSON.stringify(to)},"envelope":${serializeDirectEnvelope(sealed.envelope)},"copy":${
      serializeDirectEnvelope(sealed.copy)
    }}`,
  );
}

/**
 * The frame of a `send`, with the envelope in its canonical field order (as the server stores it).
 *
 * @example
 * ```ts
 * link.write(sendFrame(envelope));
 * ```
 * @param envelope the sealed envelope
 * @returns the frame bytes
 */
export function sendFrame(envelope: Envelope): Uint8Array<ArrayBuffer> {
  return encodeFrame(`{"type":"send","envelope":${serializeEnvelope(envelope)}}`);
}

/**
 * The `pong` frame answering a `ping`, with the ping's data when it had some.
 *
 * @example
 * ```ts
 * link.write(pongFrame(ping.data));
 * ```
 * @param data the ping's data
 * @returns the frame bytes
 */
export function pongFrame(data?: string): Uint8Array<ArrayBuffer> {
  return encodeMessage(data === undefined ? { type: "pong" } : { type: "pong", data });
}

/** Smallest and largest `idle_timeout_ms` a client accepts (the server's --idle-timeout range). */
export const IDLE_TIMEOUT_MS_RANGE = [50, 86_400_000] as const;
/** Smallest and largest `max_frame` a client accepts (the server's --max-frame range). */
export const MAX_FRAME_RANGE = [1024, 16 * 1024 * 1024] as const;

/**
 * Checks the limits of a welcome: every field a number of the right kind, and the ones a client acts on (frame and
 * body sizes, history page, idle timeout) within their ranges. A server that announces anything else is refused:
 * a NaN idle timeout, for one, would make the client ping in a busy loop and never notice a dead server.
 *
 * @example
 * ```ts
 * const limits = parseLimits(welcome.limits);
 * setInterval(ping, limits.idle_timeout_ms / 3);
 * ```
 * @param value the untrusted `welcome.limits`
 * @returns the limits
 * @throws {ProtocolError} ("bad_message") naming the first field that is wrong
 */
export function parseLimits(value: unknown): ServerLimits {
  if (!isKind(value, "object")) throw new ProtocolError("bad_message", "welcome.limits must be an object");
  const limits = value as Record<string, unknown>;
  const ranges: Record<keyof ServerLimits, readonly [number, number]> = {
    max_frame: MAX_FRAME_RANGE,
    max_body: [1, Number.MAX_SAFE_INTEGER],
    history: [0, Number.MAX_SAFE_INTEGER],
    history_page: [1, HISTORY_PAGE],
    rate: [0, Number.MAX_SAFE_INTEGER],
    burst: [0, Number.MAX_SAFE_INTEGER],
    send_queue: [0, Number.MAX_SAFE_INTEGER],
    idle_timeout_ms: IDLE_TIMEOUT_MS_RANGE,
    max_rooms: [1, Number.MAX_SAFE_INTEGER],
  };
  const out = {} as ServerLimits;
  for (const [field, [min, max]] of Object.entries(ranges) as [keyof ServerLimits, [number, number]][]) {
    const n = limits[field];
    // rate may be fractional (--rate 0.5); everything else is a count of bytes, messages or milliseconds.
    const ok = typeof n === "number" && Number.isFinite(n) && (field === "rate" || Number.isInteger(n)) &&
      n >= min && n <= max;
    if (!ok) {
      throw new ProtocolError(
        "bad_message",
        `welcome.limits.${field} must be ${field === "rate" ? "a number" : "an integer"} from ${min} to ${max}`,
      );
    }
    out[field] = n as number;
  }
  out.max_body = Math.min(out.max_body, MAX_BODY_BYTES);
  return out;
}

/**
 * Checks a member list from the server (`joined.members`, `who.members`): an array of `{nick, key}` with a string
 * nick and a 32-byte base64 key.
 *
 * @example
 * ```ts
 * const members = parseMembers(reply.members, "who.members");
 * ```
 * @param value the untrusted list
 * @param field the field's name, for the error
 * @returns the members
 * @throws {ProtocolError} ("bad_message") when an item is not a member
 */
export function parseMembers(value: unknown, field: string): MemberInfo[] {
  if (!Array.isArray(value)) throw new ProtocolError("bad_message", `${field} must be an array`);
  return value.map((item) => {
    const m = item as Record<string, unknown>;
    if (!isKind(item, "object") || typeof m.nick !== "string" || !isKey(m.key)) {
      throw new ProtocolError("bad_message", `${field} items must be {nick, key} with a 32-byte key`);
    }
    return { nick: m.nick, key: m.key as string };
  });
}

/**
 * Checks the room list of a `rooms` reply: an array of `{name, count}`.
 *
 * @example
 * ```ts
 * for (const room of parseRoomList(reply.rooms)) show(room.name, room.count);
 * ```
 * @param value the untrusted `rooms.rooms`
 * @returns the rooms
 * @throws {ProtocolError} ("bad_message") when an item is not a room name with a count
 */
export function parseRoomList(value: unknown): { name: string; count: number }[] {
  if (!Array.isArray(value)) throw new ProtocolError("bad_message", "rooms.rooms must be an array");
  return value.map((item) => {
    const room = item as Record<string, unknown>;
    if (!isKind(item, "object") || typeof room.name !== "string" || !isKind(room.count, "uint")) {
      throw new ProtocolError("bad_message", "rooms.rooms items must be {name, count}");
    }
    return { name: room.name, count: room.count as number };
  });
}

/**
 * Checks one direct-message item (`direct`, or an item of `direct_since.messages`).
 *
 * @example
 * ```ts
 * const item = parseDirectItem(reply.messages[0]);
 * ```
 * @param value an untrusted item
 * @returns the item with a shape-checked envelope
 * @throws {ProtocolError} ("bad_message") or a DirectError for a malformed envelope
 */
export function parseDirectItem(value: unknown): DirectItem {
  if (!isKind(value, "object")) throw new ProtocolError("bad_message", "direct item must be an object");
  const item = value as Record<string, unknown>;
  if (!isKind(item.seq, "uint") || !isKind(item.sent_at, "uint") || !isKind(item.delivered, "boolean")) {
    throw new ProtocolError("bad_message", "direct item needs integer seq and sent_at and a boolean delivered");
  }
  return {
    seq: item.seq as number,
    sent_at: item.sent_at as number,
    envelope: parseDirectEnvelope(item.envelope),
    delivered: item.delivered as boolean,
  };
}

/**
 * Checks the rotation statements of an `identity` reply: at most {@link MAX_ROTATIONS} of `{old, new, ts,
 * signature}` with 32-byte keys and a 64-byte signature (verifying them is the caller's business).
 *
 * @example
 * ```ts
 * const chain = parseRotations(reply.rotations);
 * ```
 * @param value the untrusted list
 * @returns the statements
 * @throws {ProtocolError} ("bad_message") when malformed or too long
 */
export function parseRotations(value: unknown): RotationInfo[] {
  if (!Array.isArray(value) || value.length > MAX_ROTATIONS) {
    throw new ProtocolError("bad_message", `identity.rotations must be an array of at most ${MAX_ROTATIONS}`);
  }
  return value.map((item) => {
    const r = item as Record<string, unknown>;
    const ok = isKind(item, "object") && isKey(r.old) && isKey(r.new) && isKind(r.ts, "uint") &&
      typeof r.signature === "string" && canonicalBase64Length(r.signature) === 64;
    if (!ok) throw new ProtocolError("bad_message", "identity.rotations items must be {old, new, ts, signature}");
    return { old: r.old as string, new: r.new as string, ts: r.ts as number, signature: r.signature as string };
  });
}

function isKey(value: unknown): boolean {
  return typeof value === "string" && canonicalBase64Length(value) === 32;
}
