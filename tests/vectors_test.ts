/**
 * The protocol v2 worked example (PROTOCOL.md, tests/fixtures/v2_example.json): lib/ reproduces every value, and a
 * second implementation written here with node:crypto alone (Ed25519, X25519, HKDF, HMAC, AES-CBC, AES-GCM) from the
 * byte layouts PROTOCOL.md gives computes and opens the same messages. Also the published X25519 (RFC 7748 §6.1)
 * and AES-256-GCM (McGrew-Viega test cases 13 and 14) answers through WebCrypto.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
  type KeyObject,
  pbkdf2Sync,
  sign as nodeSign,
  verify as nodeVerify,
} from "node:crypto";
import example from "./fixtures/v2_example.json" with { type: "json" };
import { computeExample, INPUTS } from "../tools/vectors.ts";
import { importIdentity } from "../lib/identity.ts";
import { openDirect } from "../lib/direct.ts";
import { deriveRoomKeys } from "../lib/crypto.ts";
import { openRoomMessage } from "../lib/message.ts";
import { lockSecret } from "../lib/keyfile.ts";

const hex = (b: Uint8Array) => b.toHex();
const utf8 = (s: string) => new TextEncoder().encode(s);

function cat(...parts: (Uint8Array | string)[]): Uint8Array {
  const bytes = parts.map((p) => (typeof p === "string" ? utf8(p) : p));
  const out = new Uint8Array(bytes.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of bytes) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
const label = (name: string) => cat(name, new Uint8Array([0]));
function be(n: number, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let v = BigInt(n);
  for (let i = bytes - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}
const lp = (s: string) => cat(be(utf8(s).length, 2), s);
const lp32 = (s: string) => cat(be(utf8(s).length, 4), s);

function edPrivate(seed: Uint8Array): KeyObject {
  const der = cat(Uint8Array.fromHex("302e020100300506032b657004220420"), seed);
  return createPrivateKey({ key: der as unknown as Buffer, format: "der", type: "pkcs8" });
}
function edPublic(pub: Uint8Array): KeyObject {
  const der = cat(Uint8Array.fromHex("302a300506032b6570032100"), pub);
  return createPublicKey({ key: der as unknown as Buffer, format: "der", type: "spki" });
}
function xPrivate(secret: Uint8Array): KeyObject {
  const der = cat(Uint8Array.fromHex("302e020100300506032b656e04220420"), secret);
  return createPrivateKey({ key: der as unknown as Buffer, format: "der", type: "pkcs8" });
}
function xPublic(pub: Uint8Array): KeyObject {
  const der = cat(Uint8Array.fromHex("302a300506032b656e032100"), pub);
  return createPublicKey({ key: der as unknown as Buffer, format: "der", type: "spki" });
}
function rawPublic(key: KeyObject): Uint8Array {
  return new Uint8Array(createPublicKey(key).export({ format: "der", type: "spki" })).subarray(12);
}
const edSign = (seed: Uint8Array, input: Uint8Array) => new Uint8Array(nodeSign(null, input, edPrivate(seed)));

Deno.test("lib/ reproduces the v2 worked example in tests/fixtures/v2_example.json", async () => {
  const { note: _note, ...expected } = example;
  assert.deepEqual(await computeExample(), expected);
});

Deno.test("node:crypto recomputes the v2 keys and signatures from PROTOCOL.md's layouts", () => {
  const i = INPUTS;
  const serverPub = rawPublic(edPrivate(i.serverSeed));
  const alicePub = rawPublic(edPrivate(i.aliceSeed));
  const aliceKxPub = rawPublic(xPrivate(i.aliceKx));
  assert.equal(hex(serverPub), example.server_pub);
  assert.equal(hex(alicePub), example.alice_pub);
  assert.equal(hex(aliceKxPub), example.alice_kx_pub);
  const serverInput = cat(label("aeschat v2 server"), i.clientNonce, i.serverNonce);
  assert.equal(hex(edSign(i.serverSeed, serverInput)), example.server_signature);
  const loginInput = cat(label("aeschat v2 login"), serverPub, i.serverNonce, i.clientNonce, alicePub, lp("alice"));
  assert.equal(hex(loginInput), example.login_input);
  assert.equal(hex(edSign(i.aliceSeed, loginInput)), example.login_signature);
  const kxInput = cat(label("aeschat v2 kx"), alicePub, aliceKxPub);
  assert.equal(hex(edSign(i.aliceSeed, kxInput)), example.alice_kx_signature);
  const nextPub = rawPublic(edPrivate(i.aliceNextSeed));
  const rotation = cat(label("aeschat v2 rotate"), alicePub, nextPub, be(i.rotationTs, 8));
  assert.equal(hex(edSign(i.aliceSeed, rotation)), example.rotation_signature);
  const fp = (pub: Uint8Array) => hex(sha("sha256", cat(label("aeschat v2 fingerprint"), pub)).subarray(0, 20));
  assert.equal(fp(alicePub), example.alice_fingerprint);
  // Safety number: 8 chunks of 5 bytes of SHA-512 per key, each mod 100000, halves sorted.
  const half = (pub: Uint8Array) => {
    const d = sha("sha512", cat(label("aeschat v2 safety"), pub));
    let s = "";
    for (let k = 0; k < 8; k++) {
      let v = 0n;
      for (let j = 0; j < 5; j++) v = (v << 8n) | BigInt(d[k * 5 + j]);
      s += String(v % 100000n).padStart(5, "0");
    }
    return s;
  };
  const bobPub = rawPublic(edPrivate(i.bobSeed));
  const digits = [half(alicePub), half(bobPub)].sort().join("");
  assert.equal(digits, example.safety_number.replaceAll(" ", ""));
});

function sha(algorithm: "sha256" | "sha512", data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash(algorithm).update(data).digest());
}

Deno.test("node:crypto opens the v2 room message and checks its signature", () => {
  const i = INPUTS;
  const envelope = JSON.parse(example.envelope);
  const master = new Uint8Array(pbkdf2Sync(utf8(i.passphrase), i.salt, i.iterations, 32, "sha256"));
  const hk = (info: string) => new Uint8Array(hkdfSync("sha256", master, new Uint8Array(0), utf8(info), 32));
  const encKey = hk("aeschat v1 enc");
  const macKey = hk("aeschat v1 mac");
  const id = Uint8Array.fromBase64(envelope.id);
  const iv = Uint8Array.fromBase64(envelope.iv);
  const ct = Uint8Array.fromBase64(envelope.ct);
  const macInput = cat(label("aeschat v2 msg"), lp("general"), lp("alice"), id, be(envelope.ts, 8), iv, ct);
  const tag = new Uint8Array(createHmac("sha256", macKey).update(macInput).digest());
  assert.equal(tag.toBase64(), envelope.tag);
  const decipher = createDecipheriv("aes-256-cbc", encKey, iv);
  const pt = JSON.parse(new TextDecoder().decode(cat(decipher.update(ct), decipher.final())));
  assert.deepEqual(Object.keys(pt), ["type", "body", "key", "device", "n", "acked", "void", "sig"]);
  assert.equal(pt.body, "hello");
  const serverPub = Uint8Array.fromHex(example.server_pub);
  const accessPub = Uint8Array.fromHex(example.access_pub);
  const input = cat(
    label("aeschat v2 room-msg"),
    serverPub,
    lp("general"),
    accessPub,
    be(0, 4),
    lp("alice"),
    id,
    be(envelope.ts, 8),
    lp(pt.type),
    lp32(pt.body),
    Uint8Array.fromBase64(pt.key),
    Uint8Array.fromBase64(pt.device),
    be(pt.n, 8),
    be(pt.acked, 8),
    be(pt.void.length, 2),
  );
  assert.equal(hex(input), example.message_input);
  assert.ok(nodeVerify(null, input, edPublic(Uint8Array.fromBase64(pt.key)), Uint8Array.fromBase64(pt.sig)));
});

Deno.test("node:crypto opens the v2 direct message as bob, and alice's copy as alice", () => {
  const i = INPUTS;
  const serverPub = Uint8Array.fromHex(example.server_pub);
  const open = (text: string, options: { mine: Uint8Array; role: number }) => {
    const e = JSON.parse(text);
    const epk = Uint8Array.fromBase64(e.epk);
    const senderKx = Uint8Array.fromBase64(e.kx);
    const fromKey = Uint8Array.fromBase64(e.key);
    const toKey = Uint8Array.fromBase64(e.tokey);
    const id = Uint8Array.fromBase64(e.id);
    const me = xPrivate(options.mine);
    const es = new Uint8Array(diffieHellman({ privateKey: me, publicKey: xPublic(epk) }));
    const ss = new Uint8Array(diffieHellman({ privateKey: me, publicKey: xPublic(senderKx) }));
    const info = cat(
      label("aeschat v2 dm"),
      serverPub,
      fromKey,
      toKey,
      new Uint8Array([options.role]),
      senderKx,
      rawPublic(me),
    );
    const key = new Uint8Array(hkdfSync("sha256", cat(es, ss), epk, info, 32));
    const aad = cat(label("aeschat v2 dm"), lp(e.from), lp(e.to), id, be(e.ts, 8), fromKey, toKey, senderKx, epk);
    const sealed = Uint8Array.fromBase64(e.ct);
    const decipher = createDecipheriv("aes-256-gcm", key, Uint8Array.fromBase64(e.nonce));
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.subarray(sealed.length - 16));
    const pt = JSON.parse(
      new TextDecoder().decode(cat(decipher.update(sealed.subarray(0, sealed.length - 16)), decipher.final())),
    );
    const sigInput = cat(
      label("aeschat v2 dm-sig"),
      serverPub,
      lp(e.from),
      lp(e.to),
      id,
      be(e.ts, 8),
      fromKey,
      toKey,
      lp(pt.type),
      lp32(pt.body),
    );
    assert.ok(nodeVerify(null, sigInput, edPublic(fromKey), Uint8Array.fromBase64(pt.sig)));
    return pt.body;
  };
  assert.equal(open(example.dm_envelope, { mine: i.bobKx, role: 1 }), "hi bob");
  assert.equal(open(example.dm_copy, { mine: i.aliceKx, role: 2 }), "hi bob");
});

Deno.test("lib/ opens the worked example's messages, and refuses them under the wrong identity or room", async () => {
  const i = INPUTS;
  const serverPub = Uint8Array.fromHex(example.server_pub);
  const alice = await importIdentity({ signSeed: i.aliceSeed, kxSecret: i.aliceKx });
  const bob = await importIdentity({ signSeed: i.bobSeed, kxSecret: i.bobKx });
  const asBob = await openDirect(bob, { envelope: JSON.parse(example.dm_envelope), serverPub });
  assert.equal(asBob.body, "hi bob");
  assert.equal(asBob.copy, false);
  const asAlice = await openDirect(alice, { envelope: JSON.parse(example.dm_copy), serverPub });
  assert.equal(asAlice.copy, true);
  await assert.rejects(openDirect(alice, { envelope: JSON.parse(example.dm_envelope), serverPub }));
  await assert.rejects(openDirect(bob, { envelope: JSON.parse(example.dm_copy), serverPub }));
  const keys = await deriveRoomKeys(i.passphrase, { salt: i.salt, iterations: i.iterations });
  const context = { serverPub, room: "general", accessPub: keys.accessPub, epoch: 0 };
  const message = await openRoomMessage(keys, { envelope: JSON.parse(example.envelope), context });
  assert.equal(message.body, "hello");
  assert.equal(message.signer?.sequence.n, 1);
  for (const wrong of [{ ...context, epoch: 1 }, { ...context, serverPub: new Uint8Array(32) }]) {
    await assert.rejects(openRoomMessage(keys, { envelope: JSON.parse(example.envelope), context: wrong }));
  }
});

Deno.test("node:crypto derives the access key and the join proof from PROTOCOL.md's text", () => {
  const i = INPUTS;
  const master = new Uint8Array(pbkdf2Sync(utf8(i.passphrase), i.salt, i.iterations, 32, "sha256"));
  const seed = new Uint8Array(hkdfSync("sha256", master, new Uint8Array(0), utf8("aeschat v1 access"), 32));
  assert.equal(hex(rawPublic(edPrivate(seed))), example.access_pub);
  const serverPub = rawPublic(edPrivate(i.serverSeed));
  const alicePub = rawPublic(edPrivate(i.aliceSeed));
  const input = cat(label("aeschat v2 join"), serverPub, i.joinNonce, lp("general"), lp("alice"), alicePub);
  assert.equal(hex(input), example.join_input);
  assert.equal(hex(edSign(seed, input)), example.join_proof);
});

Deno.test("node:crypto seals the worked example's room and direct messages from PROTOCOL.md's text alone", () => {
  // The sealing side, byte for byte: what an implementation must write, not only what it must accept.
  const i = INPUTS;
  const envelope = JSON.parse(example.envelope);
  const master = new Uint8Array(pbkdf2Sync(utf8(i.passphrase), i.salt, i.iterations, 32, "sha256"));
  const hk = (info: string) => new Uint8Array(hkdfSync("sha256", master, new Uint8Array(0), utf8(info), 32));
  const alicePub = rawPublic(edPrivate(i.aliceSeed));
  const sig = edSign(i.aliceSeed, Uint8Array.fromHex(example.message_input));
  const plaintext = `{"type":"text","body":"hello","key":"${alicePub.toBase64()}","device":"${i.device.toBase64()}",` +
    `"n":1,"acked":0,"void":[],"sig":"${sig.toBase64()}"}`;
  const cipher = createCipheriv("aes-256-cbc", hk("aeschat v1 enc"), i.iv);
  const ct = cat(cipher.update(utf8(plaintext)), cipher.final());
  assert.equal(ct.toBase64(), envelope.ct);
  const macInput = cat(label("aeschat v2 msg"), lp("general"), lp("alice"), i.messageId, be(i.ts, 8), i.iv, ct);
  assert.equal(
    new Uint8Array(createHmac("sha256", hk("aeschat v1 mac")).update(macInput).digest()).toBase64(),
    envelope.tag,
  );

  const serverPub = rawPublic(edPrivate(i.serverSeed));
  const bobPub = rawPublic(edPrivate(i.bobSeed));
  const [aliceKx, bobKx] = [rawPublic(xPrivate(i.aliceKx)), rawPublic(xPrivate(i.bobKx))];
  // from, to, id, ts and both identity keys: in the signed input and in the additional data alike.
  const header = cat(lp("alice"), lp("bob"), i.dmId, be(i.dmTs, 8), alicePub, bobPub);
  const dmSig = edSign(i.aliceSeed, cat(label("aeschat v2 dm-sig"), serverPub, header, lp("text"), lp32("hi bob")));
  const dmPlaintext = utf8(`{"type":"text","body":"hi bob","sig":"${dmSig.toBase64()}"}`);
  const seal = (options: { ephemeral: Uint8Array; nonce: Uint8Array; role: number; to: Uint8Array }) => {
    const e = xPrivate(options.ephemeral);
    const epk = rawPublic(e);
    const es = new Uint8Array(diffieHellman({ privateKey: e, publicKey: xPublic(options.to) }));
    const ss = new Uint8Array(diffieHellman({ privateKey: xPrivate(i.aliceKx), publicKey: xPublic(options.to) }));
    const info = cat(
      label("aeschat v2 dm"),
      serverPub,
      alicePub,
      bobPub,
      new Uint8Array([options.role]),
      aliceKx,
      options.to,
    );
    const key = new Uint8Array(hkdfSync("sha256", cat(es, ss), epk, info, 32));
    const aad = cat(label("aeschat v2 dm"), header, aliceKx, epk);
    const gcm = createCipheriv("aes-256-gcm", key, options.nonce);
    gcm.setAAD(aad);
    const sealed = cat(gcm.update(dmPlaintext), gcm.final(), gcm.getAuthTag());
    return { epk: epk.toBase64(), ct: sealed.toBase64() };
  };
  const forBob = JSON.parse(example.dm_envelope);
  const copy = JSON.parse(example.dm_copy);
  assert.deepEqual(seal({ ephemeral: i.ephemeral, nonce: i.dmNonce, role: 1, to: bobKx }), {
    epk: forBob.epk,
    ct: forBob.ct,
  });
  assert.deepEqual(seal({ ephemeral: i.copyEphemeral, nonce: i.copyNonce, role: 2, to: aliceKx }), {
    epk: copy.epk,
    ct: copy.ct,
  });
});

Deno.test("node:crypto opens a key file sealed by lib/keyfile.ts, from PROTOCOL.md's text", async () => {
  const secret = Uint8Array.from({ length: 64 }, (_, k) => k);
  const locked = await lockSecret(secret, {
    passphrase: "cafe\u0301 au lait",
    purpose: "identity",
    iterations: 100_000,
  });
  // NFC: the passphrase is "café" with a precomposed é whichever way it was typed.
  const master = pbkdf2Sync(
    utf8("caf\u00e9 au lait"),
    Uint8Array.fromBase64(locked.salt),
    locked.iterations,
    32,
    "sha256",
  );
  const fileKey = new Uint8Array(hkdfSync("sha256", master, new Uint8Array(0), utf8("aeschat v2 keyfile"), 32));
  const sealed = Uint8Array.fromBase64(locked.ct);
  const gcm = createDecipheriv("aes-256-gcm", fileKey, Uint8Array.fromBase64(locked.nonce));
  gcm.setAAD(cat(label("aeschat v2 keyfile"), lp("identity")));
  gcm.setAuthTag(sealed.subarray(sealed.length - 16));
  assert.deepEqual(cat(gcm.update(sealed.subarray(0, sealed.length - 16)), gcm.final()), secret);
  assert.equal(locked.kdf, "pbkdf2-sha256+hkdf+aes-256-gcm");
});

Deno.test("X25519 through WebCrypto gives RFC 7748 §6.1's shared secret", async () => {
  const alice = await crypto.subtle.importKey(
    "pkcs8",
    cat(Uint8Array.fromHex("302e020100300506032b656e04220420"), INPUTS.aliceKx) as Uint8Array<ArrayBuffer>,
    "X25519",
    false,
    ["deriveBits"],
  );
  const bobPub = await crypto.subtle.importKey("raw", Uint8Array.fromHex(example.bob_kx_pub), "X25519", false, []);
  const shared = new Uint8Array(await crypto.subtle.deriveBits({ name: "X25519", public: bobPub }, alice, 256));
  assert.equal(hex(shared), "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
});

Deno.test("AES-256-GCM through WebCrypto gives the McGrew-Viega test cases 13 and 14", async () => {
  const key = await crypto.subtle.importKey("raw", new Uint8Array(32), "AES-GCM", false, ["encrypt"]);
  const iv = new Uint8Array(12);
  const empty = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, new Uint8Array(0)));
  assert.equal(hex(empty), "530f8afbc74536b9a963b4f1c4cb738b");
  const block = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, new Uint8Array(16)));
  assert.equal(hex(block), "cea7403d4d606b6e074ec5d3baf39d18" + "d0d1c8a799996bf0265b98b5d48ab919");
});
