/**
 * What a malicious member or recipient can build by hand, without lib/'s checks: room envelopes around any plaintext
 * text (a member holds the room keys), and direct-message envelopes around any plaintext text (the sender, or the
 * recipient, who can compute the same Noise K key from its own static key). Written from PROTOCOL.md's layouts, so
 * it doubles as a second implementation of the sealing side.
 *
 * @module
 */

import { concat, lp, u64be } from "../../lib/bytes.ts";
import type { RoomKeys } from "../../lib/crypto.ts";
import type { DirectEnvelope, Recipient } from "../../lib/direct.ts";
import type { Envelope } from "../../lib/envelope.ts";
import { type Identity, importX25519Secret } from "../../lib/identity.ts";

const utf8 = new TextEncoder();

/**
 * Decrypts a room envelope's plaintext with the room keys (no MAC check): what any member can read.
 *
 * @param keys the room keys
 * @param envelope the envelope
 * @returns the parsed plaintext object
 */
export async function roomPlaintext(keys: RoomKeys, envelope: Envelope): Promise<Record<string, unknown>> {
  const pt = await crypto.subtle.decrypt(
    { name: "AES-CBC", iv: Uint8Array.fromBase64(envelope.iv) },
    keys.encKey,
    Uint8Array.fromBase64(envelope.ct),
  );
  return JSON.parse(new TextDecoder().decode(pt));
}

/**
 * Seals any plaintext text into a room envelope (AES-256-CBC, then HMAC-SHA256 with the label of `v`).
 *
 * @param keys the room keys
 * @param e the envelope fields and the plaintext's exact JSON text
 * @returns the envelope
 */
export async function sealRoomText(
  keys: RoomKeys,
  e: { room: string; from: string; id: string; ts: number; v?: 1 | 2; text: string },
): Promise<Envelope> {
  const v = e.v ?? 2;
  const iv = crypto.getRandomValues(new Uint8Array(16));
  const ct = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-CBC", iv }, keys.encKey, utf8.encode(e.text)));
  const input = concat([
    utf8.encode(`aeschat v${v} msg\0`),
    lp(e.room),
    lp(e.from),
    Uint8Array.fromBase64(e.id),
    u64be(e.ts),
    iv,
    ct,
  ]);
  const tag = new Uint8Array(await crypto.subtle.sign("HMAC", keys.macKey, input));
  return {
    v,
    room: e.room,
    from: e.from,
    id: e.id,
    ts: e.ts,
    iv: iv.toBase64(),
    ct: ct.toBase64(),
    tag: tag.toBase64(),
  };
}

async function x25519(privateKey: CryptoKey, publicKey: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  const pub = await crypto.subtle.importKey("raw", new Uint8Array(publicKey), "X25519", false, []);
  return new Uint8Array(await crypto.subtle.deriveBits({ name: "X25519", public: pub }, privateKey, 256));
}

/**
 * Seals any plaintext text as a direct message from `sender` to `to` (role 1), as PROTOCOL.md "Direct messages" says.
 *
 * @param sender the sending identity (its kx key is used for ss)
 * @param m the header and the plaintext's exact JSON text
 * @returns the envelope for the recipient
 */
export async function sealDirectText(
  sender: Identity,
  m: { serverPub: Uint8Array; from: string; to: Recipient; id: Uint8Array; ts: number; text: string },
): Promise<DirectEnvelope> {
  const e = await importX25519Secret(crypto.getRandomValues(new Uint8Array(32)));
  const es = await x25519(e.privateKey, m.to.kx);
  const ss = await x25519(sender.kxKey, m.to.kx);
  const label = utf8.encode("aeschat v2 dm\0");
  const info = concat([label, m.serverPub, sender.publicKey, m.to.key, new Uint8Array([1]), sender.kxPublic, m.to.kx]);
  const hkdf = await crypto.subtle.importKey("raw", concat([es, ss]), "HKDF", false, ["deriveKey"]);
  const key = await crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: e.publicKey, info },
    hkdf,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt"],
  );
  const aad = concat([
    label,
    lp(m.from),
    lp(m.to.nick),
    m.id,
    u64be(m.ts),
    sender.publicKey,
    m.to.key,
    sender.kxPublic,
    e.publicKey,
  ]);
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  const ct = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: aad }, key, utf8.encode(m.text)),
  );
  return {
    v: 2,
    from: m.from,
    to: m.to.nick,
    id: m.id.toBase64(),
    ts: m.ts,
    key: sender.publicKey.toBase64(),
    tokey: m.to.key.toBase64(),
    kx: sender.kxPublic.toBase64(),
    epk: e.publicKey.toBase64(),
    nonce: nonce.toBase64(),
    ct: ct.toBase64(),
  };
}
