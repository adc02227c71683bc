/**
 * Direct messages of protocol v2: one person to another, sealed with the Noise K pattern (`e, es, ss`: a fresh
 * ephemeral X25519 key and both static key-agreement keys), AES-256-GCM with from, to, id and ts bound, and the
 * sender's identity signature inside. The sender keeps a copy sealed the same way to its own key. Invitations to a
 * room travel as direct messages of type "invite". PROTOCOL.md states every byte.
 *
 * @module
 */

import { canonicalBase64Length, decodeBase64 } from "./base64.ts";
import { concat, lp, lp32, sameBytes, u64be } from "./bytes.ts";
import {
  checkIterations,
  MASTER_BYTES,
  OpenError,
  roomKeysFromMaster,
  SALT_BYTES,
  signEd25519,
  verifyEd25519,
} from "./crypto.ts";
import { ID_BYTES, MAX_BODY_BYTES, MAX_CT_BYTES } from "./envelope.ts";
import { type Identity, importX25519Secret, KEY_BYTES } from "./identity.ts";
import { isContentType } from "./message.ts";
import { findDuplicateMember } from "./json_members.ts";
import { checkNameBytes, MAX_NICK_BYTES, NameError, validateRoom } from "./names.ts";

/** Bytes of an AES-GCM nonce. */
export const GCM_NONCE_BYTES = 12;
/** Bytes of an AES-GCM tag (appended to the ciphertext). */
export const GCM_TAG_BYTES = 16;
/** Who a sealed copy is for: the peer (1) or the sender's own copy (2). */
export const ROLE = { peer: 1, copy: 2 } as const;

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });
const DM_LABEL = encoder.encode("aeschat v2 dm\0");
const DM_SIG_LABEL = encoder.encode("aeschat v2 dm-sig\0");
const FIELDS = ["v", "from", "to", "id", "ts", "key", "tokey", "kx", "epk", "nonce", "ct"];

/** A direct-message envelope exactly as it travels (binary fields are canonical base64). */
export interface DirectEnvelope {
  /** Format version, 2. */
  v: 2;
  /** Sender nick (canonical). */
  from: string;
  /** Recipient nick (canonical): the conversation's other person, in both the peer's and the sender's copy. */
  to: string;
  /** 16-byte message id, the same in both copies. */
  id: string;
  /** Sender's clock, ms since the epoch. */
  ts: number;
  /** Sender's 32-byte identity key. */
  key: string;
  /** Recipient's 32-byte identity key. */
  tokey: string;
  /** Sender's 32-byte X25519 key-agreement key. */
  kx: string;
  /** The fresh ephemeral X25519 public key, 32 bytes. */
  epk: string;
  /** 12-byte AES-GCM nonce. */
  nonce: string;
  /** AES-256-GCM ciphertext with its 16-byte tag appended. */
  ct: string;
}

/** An opened direct message. */
export interface DirectMessage {
  /** Sender nick. */
  from: string;
  /** Recipient nick. */
  to: string;
  /** Message id, base64. */
  id: string;
  /** Sender's clock. */
  ts: number;
  /** Sender's identity key (the signature has verified with it). */
  fromKey: Uint8Array<ArrayBuffer>;
  /** Recipient's identity key. */
  toKey: Uint8Array<ArrayBuffer>;
  /** Whether this was the sender's own copy (opened by the sender). */
  copy: boolean;
  /** "text", "action" or "invite". */
  type: string;
  /** The text (for "invite", the invitation's JSON). */
  body: string;
}

/** The room secrets an invitation hands over. */
export interface Invitation {
  /** The room's canonical name. */
  room: string;
  /** The server's 32-byte key. */
  serverPub: Uint8Array<ArrayBuffer>;
  /** The room's 32-byte master secret. */
  master: Uint8Array<ArrayBuffer>;
  /** The room's 16-byte salt. */
  salt: Uint8Array<ArrayBuffer>;
  /** The room's PBKDF2 count. */
  iterations: number;
  /** The room's 32-byte access key. */
  accessPub: Uint8Array<ArrayBuffer>;
  /** The room's key epoch. */
  epoch: number;
}

/** Raised for a direct message or invitation that is malformed; the message says what. */
export class DirectError extends Error {
  /** @param message what is wrong */
  constructor(message: string) {
    super(message);
    this.name = "DirectError";
  }
}

function b64(value: unknown, field: string, bytes: number | ((n: number) => boolean)): void {
  if (typeof value !== "string") throw new DirectError(`direct.${field} must be a string`);
  const n = canonicalBase64Length(value);
  const ok = typeof bytes === "number" ? n === bytes : n >= 0 && bytes(n);
  if (!ok) throw new DirectError(`direct.${field} must be canonical base64 of the right length`);
}

/**
 * Checks the shape of an untrusted direct-message envelope (fields, names, lengths, canonical base64).
 *
 * @example
 * ```ts
 * const envelope = parseDirectEnvelope(JSON.parse(text));
 * ```
 * @param value parsed JSON
 * @returns the envelope, typed
 * @throws {DirectError} naming the first wrong field
 */
export function parseDirectEnvelope(value: unknown): DirectEnvelope {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new DirectError("direct envelope must be a JSON object");
  }
  const e = value as Record<string, unknown>;
  const keys = Object.keys(e);
  if (keys.length !== FIELDS.length || !FIELDS.every((f) => Object.hasOwn(e, f))) {
    throw new DirectError(`direct envelope must have exactly the fields ${FIELDS.join(", ")}`);
  }
  if (e.v !== 2) throw new DirectError("direct.v must be 2");
  try {
    checkNameBytes(e.from, { what: "direct.from", max: MAX_NICK_BYTES });
    checkNameBytes(e.to, { what: "direct.to", max: MAX_NICK_BYTES });
  } catch (err) {
    if (err instanceof NameError) throw new DirectError(err.message);
    throw err;
  }
  if (typeof e.ts !== "number" || !Number.isSafeInteger(e.ts) || e.ts < 0) {
    throw new DirectError("direct.ts must be an integer in 0..2^53-1");
  }
  b64(e.id, "id", ID_BYTES);
  for (const field of ["key", "tokey", "kx", "epk"]) b64(e[field], field, KEY_BYTES);
  b64(e.nonce, "nonce", GCM_NONCE_BYTES);
  b64(e.ct, "ct", (n) => n > GCM_TAG_BYTES && n <= MAX_CT_BYTES);
  return e as unknown as DirectEnvelope;
}

/**
 * Serializes a direct envelope with its fields in the canonical order (as the server stores and relays it).
 *
 * @example
 * ```ts
 * serializeDirectEnvelope(envelope); // '{"v":2,"from":"alice",…}'
 * ```
 * @param e the envelope
 * @returns its JSON text
 */
export function serializeDirectEnvelope(e: DirectEnvelope): string {
  const { v, from, to, id, ts, key, tokey, kx, epk, nonce, ct } = e;
  return JSON.stringify({ v, from, to, id, ts, key, tokey, kx, epk, nonce, ct });
}

/** The fields every direct-message input binds. */
interface Header {
  serverPub: Uint8Array;
  from: string;
  to: string;
  id: Uint8Array;
  ts: number;
  fromKey: Uint8Array;
  toKey: Uint8Array;
}

/**
 * The bytes the sender's identity key signs: "aeschat v2 dm-sig" 0x00 || server_pub || lp(from) || lp(to) || id ||
 * u64be(ts) || from_key || to_key || lp(type) || lp32(body).
 *
 * @example
 * ```ts
 * const input = directSignatureInput(header, { type: "text", body: "hi" });
 * ```
 * @param header the bound envelope fields and keys
 * @param content the type and body
 * @returns the signed bytes
 */
export function directSignatureInput(header: Header, content: { type: string; body: string }): Uint8Array<ArrayBuffer> {
  return concat([
    DM_SIG_LABEL,
    header.serverPub,
    lp(header.from),
    lp(header.to),
    header.id,
    u64be(header.ts),
    header.fromKey,
    header.toKey,
    lp(content.type),
    lp32(content.body),
  ]);
}

/**
 * The AES-GCM additional data: "aeschat v2 dm" 0x00 || lp(from) || lp(to) || id || u64be(ts) || from_key || to_key ||
 * sender_kx || epk.
 */
function additionalData(header: Header, keys: { senderKx: Uint8Array; epk: Uint8Array }): Uint8Array<ArrayBuffer> {
  return concat([
    DM_LABEL,
    lp(header.from),
    lp(header.to),
    header.id,
    u64be(header.ts),
    header.fromKey,
    header.toKey,
    keys.senderKx,
    keys.epk,
  ]);
}

/**
 * The HKDF info: "aeschat v2 dm" 0x00 || server_pub || from_key || to_key || role || sender_kx || sealed_for_kx.
 */
function keyInfo(header: Header, keys: { role: number; senderKx: Uint8Array; sealedForKx: Uint8Array }) {
  return concat([
    DM_LABEL,
    header.serverPub,
    header.fromKey,
    header.toKey,
    new Uint8Array([keys.role]),
    keys.senderKx,
    keys.sealedForKx,
  ]);
}

async function dh(privateKey: CryptoKey, publicKey: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  const pub = await crypto.subtle.importKey("raw", new Uint8Array(publicKey), "X25519", false, []);
  const shared = new Uint8Array(await crypto.subtle.deriveBits({ name: "X25519", public: pub }, privateKey, 256));
  // WebCrypto refuses low-order public keys already; an all-zero result would mean a degenerate key all the same.
  if (shared.every((b) => b === 0)) throw new OpenError();
  return shared;
}

/**
 * key = HKDF-SHA256(IKM = es || ss, salt = epk, info, L = 32), imported as an AES-256-GCM key.
 */
async function messageKey(es: Uint8Array, ss: Uint8Array, options: { epk: Uint8Array; info: Uint8Array }) {
  const ikm = concat([es, ss]);
  try {
    const hkdf = await crypto.subtle.importKey("raw", ikm, "HKDF", false, ["deriveKey"]);
    return await crypto.subtle.deriveKey(
      { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(options.epk), info: new Uint8Array(options.info) },
      hkdf,
      { name: "AES-GCM", length: 256 },
      false,
      ["encrypt", "decrypt"],
    );
  } finally {
    ikm.fill(0);
    es.fill(0);
    ss.fill(0);
  }
}

/** A peer's public keys, as the sender knows them (pinned identity key, signature-checked key-agreement key). */
export interface Recipient {
  /** Nick (canonical). */
  nick: string;
  /** 32-byte identity key. */
  key: Uint8Array;
  /** 32-byte X25519 key-agreement key. */
  kx: Uint8Array;
}

/** For test vectors: fixed ephemeral secrets, ids and nonces instead of random ones. */
export interface DirectFixed {
  /** Ephemeral X25519 private key for the peer's copy. */
  ephemeral?: Uint8Array;
  /** Ephemeral X25519 private key for the sender's copy. */
  copyEphemeral?: Uint8Array;
  /** AES-GCM nonce of the peer's copy. */
  nonce?: Uint8Array;
  /** AES-GCM nonce of the sender's copy. */
  copyNonce?: Uint8Array;
}

async function sealOne(
  header: Header,
  options: {
    role: number;
    sender: Identity;
    sealedForKx: Uint8Array;
    plaintext: Uint8Array;
    ephemeral?: Uint8Array;
    nonce?: Uint8Array;
  },
): Promise<DirectEnvelope> {
  const e = await importX25519Secret(options.ephemeral ?? crypto.getRandomValues(new Uint8Array(KEY_BYTES)));
  let es: Uint8Array, ss: Uint8Array;
  try {
    es = await dh(e.privateKey, options.sealedForKx);
    ss = await dh(options.sender.kxKey, options.sealedForKx);
  } catch {
    throw new DirectError("the recipient's key-agreement key is not a usable X25519 key (low order)");
  }
  const info = keyInfo(header, {
    role: options.role,
    senderKx: options.sender.kxPublic,
    sealedForKx: options.sealedForKx,
  });
  const key = await messageKey(es, ss, { epk: e.publicKey, info });
  const nonce = new Uint8Array(options.nonce ?? crypto.getRandomValues(new Uint8Array(GCM_NONCE_BYTES)));
  const aad = additionalData(header, { senderKx: options.sender.kxPublic, epk: e.publicKey });
  const ct = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-GCM", iv: nonce, additionalData: aad },
      key,
      new Uint8Array(options.plaintext),
    ),
  );
  return {
    v: 2,
    from: header.from,
    to: header.to,
    id: header.id.toBase64(),
    ts: header.ts,
    key: header.fromKey.toBase64(),
    tokey: header.toKey.toBase64(),
    kx: options.sender.kxPublic.toBase64(),
    epk: e.publicKey.toBase64(),
    nonce: nonce.toBase64(),
    ct: ct.toBase64(),
  };
}

/**
 * Signs and seals a direct message twice: for the recipient (role 1) and a copy for the sender (role 2), with the
 * same id and signature.
 *
 * @example
 * ```ts
 * const { envelope, copy } = await sealDirect(alice, {
 *   serverPub, from: "alice", to: { nick: "bob", key: bobKey, kx: bobKx }, content: { type: "text", body: "hi" },
 * });
 * ```
 * @param sender the sender's identity
 * @param message.serverPub the server's key
 * @param message.from the sender's nick (canonical)
 * @param message.to the recipient's nick and keys
 * @param message.content type and body
 * @param message.id 16-byte id (default random)
 * @param message.ts time (default now)
 * @param message.fixed fixed randomness, for test vectors only
 * @returns the recipient's envelope and the sender's copy
 * @throws {DirectError} for a body over the limit, a malformed content, or a recipient key of low order
 */
export async function sealDirect(
  sender: Identity,
  message: {
    serverPub: Uint8Array;
    from: string;
    to: Recipient;
    content: { type: string; body: string };
    id?: Uint8Array;
    ts?: number;
    fixed?: DirectFixed;
  },
): Promise<{ envelope: DirectEnvelope; copy: DirectEnvelope }> {
  const { content, to } = message;
  if (!isContentType(content.type)) throw new DirectError(`message type ${content.type} is not allowed`);
  if (typeof content.body !== "string" || !content.body.isWellFormed()) {
    throw new DirectError("body must be a well-formed string");
  }
  if (encoder.encode(content.body).length > MAX_BODY_BYTES) {
    throw new DirectError(`body exceeds ${MAX_BODY_BYTES} bytes`);
  }
  if (sameBytes(to.key, sender.publicKey)) throw new DirectError("a direct message needs another person");
  const header: Header = {
    serverPub: message.serverPub,
    from: message.from,
    to: to.nick,
    id: message.id ?? crypto.getRandomValues(new Uint8Array(ID_BYTES)),
    ts: message.ts ?? Date.now(),
    fromKey: sender.publicKey,
    toKey: to.key,
  };
  const sig = await signEd25519(sender.signKey, directSignatureInput(header, content));
  const plaintext = encoder.encode(JSON.stringify({ type: content.type, body: content.body, sig: sig.toBase64() }));
  const fixed = message.fixed ?? {};
  const envelope = await sealOne(header, {
    role: ROLE.peer,
    sender,
    sealedForKx: to.kx,
    plaintext,
    ephemeral: fixed.ephemeral,
    nonce: fixed.nonce,
  });
  const copy = await sealOne(header, {
    role: ROLE.copy,
    sender,
    sealedForKx: sender.kxPublic,
    plaintext,
    ephemeral: fixed.copyEphemeral,
    nonce: fixed.copyNonce,
  });
  return { envelope, copy };
}

/**
 * Opens a direct message sealed for this identity (as recipient, or the sender's own copy): derives the key,
 * decrypts and authenticates (AES-GCM), then verifies the sender's signature inside. The caller checks `fromKey`
 * against the key pinned for `from`.
 *
 * @example
 * ```ts
 * const message = await openDirect(bob, { envelope, serverPub });
 * ```
 * @param self the receiving identity
 * @param options.envelope the envelope (unknown shape)
 * @param options.serverPub the server's key
 * @returns the message
 * @throws {OpenError} for any failure, with no detail
 */
export async function openDirect(
  self: Identity,
  options: { envelope: unknown; serverPub: Uint8Array },
): Promise<DirectMessage> {
  let result: DirectMessage | undefined;
  try {
    const e = parseDirectEnvelope(options.envelope);
    const fromKey = decodeBase64(e.key);
    const toKey = decodeBase64(e.tokey);
    const senderKx = decodeBase64(e.kx);
    const epk = decodeBase64(e.epk);
    const copy = sameBytes(fromKey, self.publicKey);
    if (!copy && !sameBytes(toKey, self.publicKey)) throw new OpenError();
    if (copy && !sameBytes(senderKx, self.kxPublic)) throw new OpenError();
    const header: Header = {
      serverPub: options.serverPub,
      from: e.from,
      to: e.to,
      id: decodeBase64(e.id),
      ts: e.ts,
      fromKey,
      toKey,
    };
    const es = await dh(self.kxKey, epk);
    const ss = await dh(self.kxKey, senderKx);
    const role = copy ? ROLE.copy : ROLE.peer;
    const key = await messageKey(es, ss, {
      epk,
      info: keyInfo(header, { role, senderKx, sealedForKx: self.kxPublic }),
    });
    const pt = new Uint8Array(
      await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: decodeBase64(e.nonce), additionalData: additionalData(header, { senderKx, epk }) },
        key,
        decodeBase64(e.ct),
      ),
    );
    const text = strictDecoder.decode(pt);
    const plaintext = JSON.parse(text);
    if (
      // A member named twice: JSON.parse keeps the last, another implementation may show the first.
      findDuplicateMember(text, { parsed: plaintext }) !== undefined ||
      typeof plaintext !== "object" || plaintext === null || !isContentType(plaintext.type) ||
      typeof plaintext.body !== "string" || typeof plaintext.sig !== "string" ||
      // JSON can spell a lone surrogate (\ud800); the signed bytes (TextEncoder) would read it as U+FFFD.
      !plaintext.body.isWellFormed() || encoder.encode(plaintext.body).length > MAX_BODY_BYTES
    ) {
      throw new OpenError();
    }
    const content = { type: plaintext.type, body: plaintext.body };
    const signature = decodeBase64(plaintext.sig, { length: 64 });
    if (!await verifyEd25519(fromKey, { input: directSignatureInput(header, content), signature })) {
      throw new OpenError();
    }
    result = { from: e.from, to: e.to, id: e.id, ts: e.ts, fromKey, toKey, copy, ...content };
  } catch {
    result = undefined;
  }
  if (!result) throw new OpenError();
  return result;
}

/**
 * The body of an "invite" direct message: the room's secrets as compact JSON
 * `{"room","server","master","salt","iterations","access_pub","epoch"}`.
 *
 * @example
 * ```ts
 * const body = encodeInvitation(invitation);
 * ```
 * @param invitation the room's secrets
 * @returns the JSON text
 */
export function encodeInvitation(invitation: Invitation): string {
  return JSON.stringify({
    room: invitation.room,
    server: invitation.serverPub.toBase64(),
    master: invitation.master.toBase64(),
    salt: invitation.salt.toBase64(),
    iterations: invitation.iterations,
    access_pub: invitation.accessPub.toBase64(),
    epoch: invitation.epoch,
  });
}

/**
 * Parses and checks an invitation body: every field well-formed, and the access key the master derives equal to the
 * one stated (so an inviter cannot hand over a master that does not open the room it names).
 *
 * @example
 * ```ts
 * const invitation = await parseInvitation(message.body);
 * ```
 * @param body the invite message's body
 * @returns the invitation
 * @throws {DirectError} when malformed or inconsistent
 */
export async function parseInvitation(body: string): Promise<Invitation> {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(body);
  } catch {
    throw new DirectError("invitation is not JSON");
  }
  if (findDuplicateMember(body, { parsed: value }) !== undefined) {
    throw new DirectError("invitation names a member twice");
  }
  try {
    if (typeof value !== "object" || value === null) throw new Error("not an object");
    const room = validateRoom(value.room);
    checkIterations(value.iterations);
    const epoch = value.epoch;
    if (typeof epoch !== "number" || !Number.isSafeInteger(epoch) || epoch < 0 || epoch > 0xffffffff) {
      throw new Error("bad epoch");
    }
    const invitation: Invitation = {
      room,
      serverPub: decodeBase64(value.server as string, { length: KEY_BYTES }),
      master: decodeBase64(value.master as string, { length: MASTER_BYTES }),
      salt: decodeBase64(value.salt as string, { length: SALT_BYTES }),
      iterations: value.iterations,
      accessPub: decodeBase64(value.access_pub as string, { length: KEY_BYTES }),
      epoch,
    };
    const keys = await roomKeysFromMaster(invitation.master);
    if (!sameBytes(keys.accessPub, invitation.accessPub)) throw new Error("master does not match access_pub");
    return invitation;
  } catch (err) {
    if (err instanceof DirectError) throw err;
    throw new DirectError(`invitation is malformed: ${(err as Error).message}`);
  }
}
