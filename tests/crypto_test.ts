/**
 * Specification of lib/crypto.ts: the published known answers through the same WebCrypto calls, the PROTOCOL.md
 * worked example byte for byte and recomputed independently with node:crypto, round trips up to the body limit,
 * tampering, and the rules on key-derivation inputs.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  createCipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  hkdfSync,
  type KeyObject,
  pbkdf2Sync,
  sign as nodeSign,
} from "node:crypto";
import vectors from "./fixtures/known_answers.json" with { type: "json" };
import {
  ACCESS_PUB_BYTES,
  checkIterations,
  DEFAULT_ITERATIONS,
  deriveRoomKeys,
  importAccessSeed,
  joinInput,
  KeyDerivationError,
  makeSalt,
  MAX_ITERATIONS,
  MIN_ITERATIONS,
  NONCE_BYTES,
  type OpenedMessage,
  openEnvelope,
  OpenError,
  passphraseBytes,
  type Plaintext,
  PROOF_BYTES,
  type RoomKeys,
  SALT_BYTES,
  sealEnvelope,
  serializeEnvelope,
  signJoinProof,
  verifyJoinProof,
} from "../lib/crypto.ts";
import { EnvelopeError, MAX_BODY_BYTES } from "../lib/envelope.ts";

/** The worked example of PROTOCOL.md. */
const EXAMPLE = {
  passphrase: "correct horse battery staple",
  salt: "000102030405060708090a0b0c0d0e0f",
  iterations: 100_000,
  master: "49d49c25f597846209f0d92e7770ab64e1c75e94b4ce6c509265ee67175d2a1e",
  encKey: "91a514c5bf925fe5dd29076a6ae0b5c6de429522c663c4f614cb15f59aed55f8",
  macKey: "34d165f71d79e339ebe3fc9f75ab2880cfb86686f5b19f17d95ae6d2017390d2",
  accessSeed: "56f24c336b1316645bbbf39e90613ee065104dafa337d8fc0180a71875862cfa",
  accessPub: "fc0d1b8e0b3bba51902717996bb23b672154494e9fe1a4b5c9d3acd9158064c9",
  room: "general",
  from: "alice",
  id: "000102030405060708090a0b0c0d0e0f",
  ts: 1_700_000_000_000,
  iv: "101112131415161718191a1b1c1d1e1f",
  plaintext: { type: "text", body: "hello" },
  ct: "6711d7b21cb635e479dcac67700daa8c938bc7c2f5e2f77f128ae249b741f837",
  tag: "f7d3eae04575a8ee0e4125d52b2ead1cd1df6842f69233c4bfc8d7e446221d8d",
  serialized: '{"v":1,"room":"general","from":"alice","id":"AAECAwQFBgcICQoLDA0ODw==","ts":1700000000000,' +
    '"iv":"EBESExQVFhcYGRobHB0eHw==","ct":"ZxHXshy2NeR53KxncA2qjJOLx8L14vd/EoriSbdB+Dc=",' +
    '"tag":"99Pq4EV1qO4OQSXVKy6tHNHfaEL2kjPEv8jX5EYiHY0="}',
  nonce: "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
  joinInput: "61657363686174207631206a6f696e00" +
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f" +
    "000767656e6572616c" + "0005616c696365",
  proof: "e516a8a19ed085a9c8ff61dbbb34d7cebff1c3394ddb3962d0b51a337efdb653" +
    "a75141f84305e2469e858c3d9ce8cc3c1e88476101c8a790987aadb3c030780e",
} as const;

const OPEN_ERROR_MESSAGE = "Cannot open envelope: it is malformed or not authentic";
const PKCS8_ED25519_PREFIX = "302e020100300506032b657004220420";
const utf8 = new TextEncoder();

function hex(text: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.fromHex(text);
}

function bytesOf(text: string): Uint8Array<ArrayBuffer> {
  return utf8.encode(text) as Uint8Array<ArrayBuffer>;
}

let exampleKeysPromise: Promise<RoomKeys> | undefined;

/** The worked example's keys, derived once for the whole file (PBKDF2 is slow on purpose). */
function exampleKeys(): Promise<RoomKeys> {
  exampleKeysPromise ??= deriveRoomKeys(EXAMPLE.passphrase, {
    salt: hex(EXAMPLE.salt),
    iterations: EXAMPLE.iterations,
  });
  return exampleKeysPromise;
}

/** A fresh copy of the worked example's envelope, as parsed from the wire. */
function exampleEnvelope(): Record<string, unknown> {
  return JSON.parse(EXAMPLE.serialized);
}

function sealExample(keys: RoomKeys): ReturnType<typeof sealEnvelope> {
  return sealEnvelope(keys, {
    room: EXAMPLE.room,
    from: EXAMPLE.from,
    plaintext: { ...EXAMPLE.plaintext },
    id: hex(EXAMPLE.id),
    ts: EXAMPLE.ts,
    iv: hex(EXAMPLE.iv),
  });
}

/** Opens expecting the envelope's own room and from (when they are strings), so only the check under test fails. */
function openAsSent(keys: RoomKeys, envelope: Record<string, unknown>): Promise<OpenedMessage> {
  return openEnvelope(keys, {
    envelope,
    room: typeof envelope.room === "string" ? envelope.room : EXAMPLE.room,
    from: typeof envelope.from === "string" ? envelope.from : EXAMPLE.from,
  });
}

/** Asserts that opening fails with the one opaque OpenError and yields no plaintext. */
async function assertRefused(opening: Promise<OpenedMessage>, what: string): Promise<void> {
  let opened: OpenedMessage;
  try {
    opened = await opening;
  } catch (err) {
    assert.ok(err instanceof OpenError, `${what}: expected OpenError, got ${err}`);
    assert.equal(err.message, OPEN_ERROR_MESSAGE, what);
    return;
  }
  assert.fail(`${what}: opened, with plaintext ${JSON.stringify(opened.plaintext)}`);
}

function flipBit(base64: string, bit: number): string {
  const bytes = Uint8Array.fromBase64(base64);
  bytes[bit >> 3] ^= 0x80 >> (bit & 7);
  return bytes.toBase64();
}

// --- An independent implementation of the v1 formats with node:crypto, for cross-checking. ---

function nodeLp(text: string): Buffer {
  const bytes = Buffer.from(text, "utf8");
  const length = Buffer.alloc(2);
  length.writeUInt16BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

function nodeMacInput(fields: {
  room: string;
  from: string;
  id: Uint8Array;
  ts: number;
  iv: Uint8Array;
  ct: Uint8Array;
}): Buffer {
  const ts = Buffer.alloc(8);
  // A negative ts wraps modulo 2^64, as DataView.setBigUint64 does; parseEnvelope must refuse it regardless.
  ts.writeBigUInt64BE(BigInt.asUintN(64, BigInt(fields.ts)));
  return Buffer.concat([
    Buffer.from("aeschat v1 msg\0", "utf8"),
    nodeLp(fields.room),
    nodeLp(fields.from),
    fields.id,
    ts,
    fields.iv,
    fields.ct,
  ]);
}

function nodeJoinInput(nonce: Uint8Array, room: string, nick: string): Buffer {
  return Buffer.concat([Buffer.from("aeschat v1 join\0", "utf8"), nonce, nodeLp(room), nodeLp(nick)]);
}

function nodeEd25519Key(seed: Uint8Array): KeyObject {
  return createPrivateKey({
    key: Buffer.concat([Buffer.from(PKCS8_ED25519_PREFIX, "hex"), seed]),
    format: "der",
    type: "pkcs8",
  });
}

function nodeRoomSecrets(passphrase: string, salt: Uint8Array, iterations: number) {
  const master = pbkdf2Sync(Buffer.from(passphrase.normalize("NFC"), "utf8"), salt, iterations, 32, "sha256");
  const expand = (info: string) => new Uint8Array(hkdfSync("sha256", master, new Uint8Array(0), info, 32));
  const encKey = expand("aeschat v1 enc");
  const macKey = expand("aeschat v1 mac");
  const accessSeed = expand("aeschat v1 access");
  const spki = createPublicKey(nodeEd25519Key(accessSeed)).export({ format: "der", type: "spki" });
  const accessPub = new Uint8Array(spki.subarray(spki.length - 32));
  return { master: new Uint8Array(master), encKey, macKey, accessSeed, accessPub };
}

/**
 * Seals like a client would, but with node:crypto and the worked example's raw keys, and without any of lib's
 * input checks: this makes authentic envelopes that break a rule other than the MAC.
 */
function nodeSeal(fields: {
  room: string;
  from: string;
  ts: number;
  plaintext: Uint8Array;
  encKey?: Uint8Array;
  padding?: boolean;
}): Record<string, unknown> {
  const id = hex(EXAMPLE.id);
  const iv = hex(EXAMPLE.iv);
  const cipher = createCipheriv("aes-256-cbc", fields.encKey ?? hex(EXAMPLE.encKey), iv);
  cipher.setAutoPadding(fields.padding ?? true);
  const ct = Buffer.concat([cipher.update(fields.plaintext), cipher.final()]);
  const tag = createHmac("sha256", hex(EXAMPLE.macKey))
    .update(nodeMacInput({ room: fields.room, from: fields.from, id, ts: fields.ts, iv, ct }))
    .digest();
  return {
    v: 1,
    room: fields.room,
    from: fields.from,
    id: id.toBase64(),
    ts: fields.ts,
    iv: iv.toBase64(),
    ct: new Uint8Array(ct).toBase64(),
    tag: new Uint8Array(tag).toBase64(),
  };
}

function nodeSealText(plaintext: string, fields: { room?: string; from?: string; ts?: number } = {}) {
  return nodeSeal({
    room: fields.room ?? EXAMPLE.room,
    from: fields.from ?? EXAMPLE.from,
    ts: fields.ts ?? EXAMPLE.ts,
    plaintext: bytesOf(plaintext),
  });
}

// --- Known answers, through the WebCrypto calls lib/crypto.ts makes. ---

Deno.test("AES-256-CBC encrypt matches NIST SP 800-38A F.2.5 (first 64 bytes, then one PKCS#7 block)", async () => {
  const v = vectors.aes256_cbc_nist_sp800_38a_f25;
  const key = await crypto.subtle.importKey("raw", hex(v.key), { name: "AES-CBC", length: 256 }, false, [
    "encrypt",
    "decrypt",
  ]);
  const out = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-CBC", iv: hex(v.iv) }, key, hex(v.plaintext)));
  assert.equal(out.length, 80);
  assert.equal(out.subarray(0, 64).toHex(), v.ciphertext);
  const back = new Uint8Array(await crypto.subtle.decrypt({ name: "AES-CBC", iv: hex(v.iv) }, key, out));
  assert.equal(back.toHex(), v.plaintext);
});

Deno.test("HMAC-SHA256 sign and verify match RFC 4231", async () => {
  for (const v of vectors.hmac_sha256_rfc4231) {
    const raw = hex(v.key);
    const key = await crypto.subtle.importKey(
      "raw",
      raw,
      { name: "HMAC", hash: "SHA-256", length: raw.length * 8 },
      false,
      ["sign", "verify"],
    );
    const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, hex(v.data)));
    assert.equal(mac.toHex(), v.mac, `case ${v.case}`);
    assert.equal(await crypto.subtle.verify("HMAC", key, hex(v.mac), hex(v.data)), true);
    const wrong = hex(v.mac);
    wrong[31] ^= 1;
    assert.equal(await crypto.subtle.verify("HMAC", key, wrong, hex(v.data)), false);
  }
});

Deno.test("PBKDF2-HMAC-SHA256 deriveBits matches RFC 7914 §11", async () => {
  for (const v of vectors.pbkdf2_hmac_sha256_rfc7914_s11) {
    const key = await crypto.subtle.importKey("raw", bytesOf(v.password), "PBKDF2", false, ["deriveBits"]);
    const bits = await crypto.subtle.deriveBits(
      { name: "PBKDF2", hash: "SHA-256", salt: bytesOf(v.salt), iterations: v.iterations },
      key,
      v.dklen * 8,
    );
    assert.equal(new Uint8Array(bits).toHex(), v.dk, `${v.password}/${v.salt}/${v.iterations}`);
  }
});

Deno.test("HKDF-SHA256 deriveBits matches RFC 5869 A.1-A.3, and an empty salt means 32 zero bytes", async () => {
  for (const v of vectors.hkdf_sha256_rfc5869) {
    const ikm = hex(v.ikm);
    const key = await crypto.subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
    const okm = await crypto.subtle.deriveBits(
      { name: "HKDF", hash: "SHA-256", salt: hex(v.salt), info: hex(v.info) },
      key,
      v.length * 8,
    );
    assert.equal(new Uint8Array(okm).toHex(), v.okm, v.case);
    // PRK = HMAC(salt, IKM), where an empty salt is HashLen zero bytes (RFC 5869 §2.2).
    const saltKey = v.salt === "" ? new Uint8Array(32) : hex(v.salt);
    const hmacKey = await crypto.subtle.importKey("raw", saltKey, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    assert.equal(new Uint8Array(await crypto.subtle.sign("HMAC", hmacKey, ikm)).toHex(), v.prk, v.case);
  }
  const a3 = vectors.hkdf_sha256_rfc5869.find((v) => v.case === "A.3")!;
  const key = await crypto.subtle.importKey("raw", hex(a3.ikm), "HKDF", false, ["deriveBits"]);
  const zeroSalt = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(32), info: new Uint8Array(0) },
    key,
    a3.length * 8,
  );
  assert.equal(new Uint8Array(zeroSalt).toHex(), a3.okm);
});

Deno.test("importAccessSeed gives the RFC 8032 §7.1 public key and signatures", async () => {
  for (const v of vectors.ed25519_rfc8032_s71) {
    const { accessKey, accessPub } = await importAccessSeed(hex(v.secret));
    assert.equal(accessPub.toHex(), v.public, `test ${v.test}`);
    assert.equal(accessKey.extractable, false);
    assert.equal(accessKey.algorithm.name, "Ed25519");
    const signature = new Uint8Array(await crypto.subtle.sign("Ed25519", accessKey, hex(v.message)));
    assert.equal(signature.toHex(), v.signature, `test ${v.test}`);
    const pub = await crypto.subtle.importKey("raw", hex(v.public), "Ed25519", false, ["verify"]);
    assert.equal(await crypto.subtle.verify("Ed25519", pub, hex(v.signature), hex(v.message)), true);
  }
});

Deno.test("the protocol constants are the ones PROTOCOL.md states", () => {
  assert.deepEqual(
    { DEFAULT_ITERATIONS, MIN_ITERATIONS, MAX_ITERATIONS, SALT_BYTES, NONCE_BYTES, ACCESS_PUB_BYTES, PROOF_BYTES },
    {
      DEFAULT_ITERATIONS: 600_000,
      MIN_ITERATIONS: 100_000,
      MAX_ITERATIONS: 10_000_000,
      SALT_BYTES: 16,
      NONCE_BYTES: 32,
      ACCESS_PUB_BYTES: 32,
      PROOF_BYTES: 64,
    },
  );
  assert.equal(MAX_BODY_BYTES, 16384);
});

// --- The worked example. ---

Deno.test("deriveRoomKeys gives the worked example's access_pub and non-extractable 256-bit keys", async () => {
  const keys = await exampleKeys();
  assert.equal(keys.accessPub.toHex(), EXAMPLE.accessPub);
  assert.deepEqual(keys.encKey.algorithm, { name: "AES-CBC", length: 256 });
  assert.deepEqual(keys.macKey.algorithm, { name: "HMAC", hash: { name: "SHA-256" }, length: 256 });
  assert.equal(keys.accessKey.algorithm.name, "Ed25519");
  assert.deepEqual(
    [keys.encKey.extractable, keys.macKey.extractable, keys.accessKey.extractable],
    [false, false, false],
  );
  assert.deepEqual(keys.encKey.usages.toSorted(), ["decrypt", "encrypt"]);
  assert.deepEqual(keys.macKey.usages.toSorted(), ["sign", "verify"]);
  assert.deepEqual(keys.accessKey.usages, ["sign"]);
});

Deno.test("sealEnvelope reproduces the worked example byte for byte", async () => {
  const envelope = await sealExample(await exampleKeys());
  assert.equal(Uint8Array.fromBase64(envelope.ct).toHex(), EXAMPLE.ct);
  assert.equal(Uint8Array.fromBase64(envelope.tag).toHex(), EXAMPLE.tag);
  assert.equal(serializeEnvelope(envelope), EXAMPLE.serialized);
});

Deno.test("openEnvelope opens the worked example", async () => {
  const opened = await openEnvelope(await exampleKeys(), {
    envelope: exampleEnvelope(),
    room: "general",
    from: "alice",
  });
  assert.deepEqual(opened, {
    room: "general",
    from: "alice",
    id: "AAECAwQFBgcICQoLDA0ODw==",
    ts: 1_700_000_000_000,
    plaintext: { type: "text", body: "hello" },
  });
  const withoutFrom = await openEnvelope(await exampleKeys(), { envelope: exampleEnvelope(), room: "general" });
  assert.equal(withoutFrom.plaintext.body, "hello");
});

Deno.test("node:crypto recomputes the worked example independently", async () => {
  const secrets = nodeRoomSecrets(EXAMPLE.passphrase, hex(EXAMPLE.salt), EXAMPLE.iterations);
  assert.equal(secrets.master.toHex(), EXAMPLE.master);
  assert.equal(secrets.encKey.toHex(), EXAMPLE.encKey);
  assert.equal(secrets.macKey.toHex(), EXAMPLE.macKey);
  assert.equal(secrets.accessSeed.toHex(), EXAMPLE.accessSeed);
  assert.equal(secrets.accessPub.toHex(), EXAMPLE.accessPub);

  const iv = hex(EXAMPLE.iv);
  const cipher = createCipheriv("aes-256-cbc", secrets.encKey, iv);
  const plaintext = bytesOf('{"type":"text","body":"hello"}');
  const ct = new Uint8Array(Buffer.concat([cipher.update(plaintext), cipher.final()]));
  assert.equal(ct.toHex(), EXAMPLE.ct);
  const macInput = nodeMacInput({ room: "general", from: "alice", id: hex(EXAMPLE.id), ts: EXAMPLE.ts, iv, ct });
  assert.equal(
    new Uint8Array(macInput).toHex(),
    "61657363686174207631206d736700" + "000767656e6572616c" + "0005616c696365" + EXAMPLE.id +
      "0000018bcfe56800" + EXAMPLE.iv + EXAMPLE.ct,
  );
  const tag = new Uint8Array(createHmac("sha256", secrets.macKey).update(macInput).digest());
  assert.equal(tag.toHex(), EXAMPLE.tag);

  const envelope = await sealExample(await exampleKeys());
  assert.equal(envelope.ct, ct.toBase64());
  assert.equal(envelope.tag, tag.toBase64());
});

Deno.test("signJoinProof equals node:crypto's Ed25519 signature of join_input", async () => {
  const keys = await exampleKeys();
  const signer = nodeEd25519Key(hex(EXAMPLE.accessSeed));
  const nonce = hex(EXAMPLE.nonce);
  const input = nodeJoinInput(nonce, "general", "alice");
  assert.equal(new Uint8Array(input).toHex(), EXAMPLE.joinInput);
  assert.equal(joinInput(nonce, { room: "general", nick: "alice" }).toHex(), EXAMPLE.joinInput);
  const proof = await signJoinProof(keys, { nonce, room: "general", nick: "alice" });
  assert.equal(proof.length, PROOF_BYTES);
  assert.equal(proof.toHex(), EXAMPLE.proof);
  assert.equal(new Uint8Array(nodeSign(null, input, signer)).toHex(), EXAMPLE.proof);

  // Multi-byte names are length-prefixed by their UTF-8 bytes, not their UTF-16 length.
  const randomNonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
  const who = { room: "café", nick: "zoë😀" };
  assert.equal(
    joinInput(randomNonce, who).toHex(),
    "61657363686174207631206a6f696e00" + randomNonce.toHex() + "0005636166c3a9" + "00087a6fc3abf09f9880",
  );
  const mine = await signJoinProof(keys, { nonce: randomNonce, ...who });
  const theirs = new Uint8Array(nodeSign(null, nodeJoinInput(randomNonce, who.room, who.nick), signer));
  assert.equal(mine.toHex(), theirs.toHex());
});

Deno.test("verifyJoinProof accepts a proof only for the same access_pub, nonce, room and nick", async () => {
  const keys = await exampleKeys();
  const accessPub = hex(EXAMPLE.accessPub);
  const nonce = hex(EXAMPLE.nonce);
  const proof = hex(EXAMPLE.proof);
  const claim = { proof, nonce, room: "general", nick: "alice" };
  assert.equal(await verifyJoinProof(accessPub, claim), true);
  assert.equal(await verifyJoinProof(keys.accessPub, claim), true);

  const otherNonce = hex(EXAMPLE.nonce);
  otherNonce[0] ^= 1;
  const flipped = hex(EXAMPLE.proof);
  flipped[40] ^= 0x10;
  const otherPub = hex(vectors.ed25519_rfc8032_s71[0].public);
  const refusals: [string, Uint8Array, typeof claim][] = [
    ["another nick", accessPub, { ...claim, nick: "bob" }],
    ["the nick in another case", accessPub, { ...claim, nick: "Alice" }],
    ["another room", accessPub, { ...claim, room: "random" }],
    ["a room/nick boundary moved", accessPub, { ...claim, room: "generala", nick: "lice" }],
    ["another nonce", accessPub, { ...claim, nonce: otherNonce }],
    ["a flipped proof bit", accessPub, { ...claim, proof: flipped }],
    ["a 63-byte proof", accessPub, { ...claim, proof: proof.subarray(0, 63) }],
    ["another room's access_pub", otherPub, claim],
    ["a 31-byte access_pub", accessPub.subarray(0, 31), claim],
    ["an all-zero access_pub", new Uint8Array(32), claim],
  ];
  for (const [what, pub, c] of refusals) {
    assert.equal(await verifyJoinProof(pub, c), false, what);
  }
});

// --- Round trips and the body limit. ---

/** A small deterministic PRNG (mulberry32), so a failing size is reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random well-formed string of exactly `bytes` UTF-8 bytes, using characters of the given UTF-8 widths. */
function randomBody(bytes: number, widths: number[], random: () => number): string {
  const pick = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  let out = "";
  let left = bytes;
  while (left > 0) {
    const fits = widths.filter((w) => w <= left);
    const width = fits.length > 0 ? fits[Math.floor(random() * fits.length)] : 1;
    let cp: number;
    if (width === 1) cp = pick(0x00, 0x7f); // including control characters, quotes and backslashes
    else if (width === 2) cp = pick(0x80, 0x7ff);
    else if (width === 3) {
      do cp = pick(0x800, 0xffff); while (cp >= 0xd800 && cp <= 0xdfff);
    } else cp = pick(0x1f300, 0x1faff); // emoji blocks
    out += String.fromCodePoint(cp);
    left -= width;
  }
  return out;
}

Deno.test("sealEnvelope then openEnvelope round-trips random bodies from 0 to 16384 bytes", async () => {
  const keys = await exampleKeys();
  const random = prng(0x5eed);
  const sizes = [0, 1, 2, 3, 4, 5, 15, 16, 17, 31, 32, 33, 100, 255, 256, 1000, 4095, 4096, 8191, 12345, 16383, 16384];
  const kinds: [string, number[]][] = [["ascii", [1]], ["mixed UTF-8", [1, 2, 3, 4]], ["emoji", [4]]];
  for (const size of sizes) {
    for (const [kind, widths] of kinds) {
      const body = randomBody(size, widths, random);
      assert.equal(utf8.encode(body).length, size);
      const plaintext: Plaintext = { type: size % 2 === 0 ? "text" : "action", body };
      const envelope = await sealEnvelope(keys, { room: "général", from: "zoë", plaintext });
      const ptBytes = utf8.encode(JSON.stringify(plaintext)).length;
      assert.equal(Uint8Array.fromBase64(envelope.ct).length, 16 * (Math.floor(ptBytes / 16) + 1), `${kind} ${size}`);
      const opened = await openEnvelope(keys, {
        envelope: JSON.parse(serializeEnvelope(envelope)),
        room: "général",
        from: "zoë",
      });
      assert.deepEqual(opened.plaintext, plaintext, `${kind} ${size}`);
    }
  }
});

Deno.test("a 16384-byte body of control characters, the largest ciphertext, round-trips", async () => {
  const keys = await exampleKeys();
  const plaintext = { type: "text", body: "\u0001".repeat(MAX_BODY_BYTES) };
  const envelope = await sealEnvelope(keys, { room: "general", from: "alice", plaintext });
  assert.equal(Uint8Array.fromBase64(envelope.ct).length, 98_336);
  const opened = await openEnvelope(keys, { envelope, room: "general", from: "alice" });
  assert.equal(opened.plaintext.body, plaintext.body);
});

Deno.test("sealEnvelope refuses a body over 16384 UTF-8 bytes or not well-formed", async () => {
  const keys = await exampleKeys();
  const seal = (body: string) =>
    sealEnvelope(keys, { room: "general", from: "alice", plaintext: { type: "text", body } });
  assert.equal((await seal("😀".repeat(4096))).v, 1); // exactly 16384 bytes
  for (const body of ["a".repeat(16385), "a".repeat(16383) + "é", "😀".repeat(4096) + "a"]) {
    await assert.rejects(seal(body), new EnvelopeError("body exceeds 16384 bytes"));
  }
  await assert.rejects(seal("a\ud83d"), new EnvelopeError("body must be a well-formed string"));
});

// --- Tampering: everything a relay could change is refused with the same OpenError. ---

Deno.test("openEnvelope rejects every single-bit flip of iv, ct and tag", async () => {
  const keys = await exampleKeys();
  await openAsSent(keys, exampleEnvelope()); // the untouched envelope opens
  for (const field of ["iv", "ct", "tag"]) {
    const original = exampleEnvelope()[field] as string;
    const bits = Uint8Array.fromBase64(original).length * 8;
    for (let bit = 0; bit < bits; bit++) {
      const envelope = { ...exampleEnvelope(), [field]: flipBit(original, bit) };
      await assertRefused(openAsSent(keys, envelope), `${field} bit ${bit}`);
    }
  }
});

Deno.test("openEnvelope rejects any change of room, from, id or ts", async () => {
  const keys = await exampleKeys();
  const changes: Record<string, unknown>[] = [
    { room: "General" },
    { room: "generak" },
    { room: "random" },
    { from: "Alice" },
    { from: "bob" },
    { room: "genera", from: "lalice" },
    { room: "generala", from: "lice" },
    { ts: EXAMPLE.ts + 1 },
    { ts: EXAMPLE.ts - 1 },
    { ts: 0 },
    { ts: Number.MAX_SAFE_INTEGER },
  ];
  // Every bit of the 53-bit timestamp.
  for (let k = 0; k < 53; k++) {
    const bit = 2 ** k;
    changes.push({ ts: Math.floor(EXAMPLE.ts / bit) % 2 === 0 ? EXAMPLE.ts + bit : EXAMPLE.ts - bit });
  }
  for (let bit = 0; bit < 128; bit++) changes.push({ id: flipBit(exampleEnvelope().id as string, bit) });
  for (const change of changes) {
    await assertRefused(openAsSent(keys, { ...exampleEnvelope(), ...change }), JSON.stringify(change));
  }
});

Deno.test("openEnvelope rejects truncated, extended or misaligned ciphertexts", async () => {
  const keys = await exampleKeys();
  const ct = hex(EXAMPLE.ct);
  const cts = [
    ct.subarray(0, 16), // last block dropped
    ct.subarray(16), // first block dropped
    new Uint8Array(0),
    ct.subarray(0, 31),
    new Uint8Array([...ct, 0]),
    new Uint8Array([...ct, ...ct.subarray(16)]),
  ];
  for (const bytes of cts) {
    await assertRefused(openAsSent(keys, { ...exampleEnvelope(), ct: bytes.toBase64() }), `ct of ${bytes.length}`);
  }
});

Deno.test("openEnvelope rejects a wrong-length iv, tag or id, including a truncated tag", async () => {
  const keys = await exampleKeys();
  const cases: [string, Uint8Array][] = [
    ["iv", hex(EXAMPLE.iv).subarray(0, 15)],
    ["iv", new Uint8Array([...hex(EXAMPLE.iv), 0])],
    ["tag", hex(EXAMPLE.tag).subarray(0, 31)],
    ["tag", hex(EXAMPLE.tag).subarray(0, 16)],
    ["tag", new Uint8Array(0)],
    ["tag", new Uint8Array([...hex(EXAMPLE.tag), 0])],
    ["id", hex(EXAMPLE.id).subarray(0, 15)],
    ["id", new Uint8Array([...hex(EXAMPLE.id), 0])],
  ];
  for (const [field, bytes] of cases) {
    const envelope = { ...exampleEnvelope(), [field]: bytes.toBase64() };
    await assertRefused(openAsSent(keys, envelope), `${field} of ${bytes.length} bytes`);
  }
});

Deno.test("openEnvelope rejects non-canonical base64 spellings of the very same bytes", async () => {
  const keys = await exampleKeys();
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (const field of ["id", "iv", "ct", "tag"]) {
    const canonical = exampleEnvelope()[field] as string;
    const bytes = Uint8Array.fromBase64(canonical).toHex();
    const body = canonical.replace(/=+$/, "");
    const last = alphabet.indexOf(body[body.length - 1]);
    const spellings = [
      body, // missing padding
      body.slice(0, -1) + alphabet[last + 1] + canonical.slice(body.length), // non-zero trailing bits
      ` ${canonical}`,
      `${canonical}\n`,
      `${canonical.slice(0, 8)} ${canonical.slice(8)}`,
      `${body}${" ".repeat(canonical.length - body.length)}`, // padding replaced by spaces: length still 4k
    ];
    for (const spelling of spellings) {
      // A lenient decoder reads each spelling as the same bytes, so only canonicity can refuse it.
      assert.equal(Uint8Array.fromBase64(spelling).toHex(), bytes, JSON.stringify(spelling));
      await assertRefused(openAsSent(keys, { ...exampleEnvelope(), [field]: spelling }), `${field} ${spelling}`);
    }
  }
  const urlCt = (exampleEnvelope().ct as string).replaceAll("/", "_").replaceAll("+", "-");
  assert.equal(Uint8Array.fromBase64(urlCt, { alphabet: "base64url" }).toHex(), EXAMPLE.ct);
  await assertRefused(openAsSent(keys, { ...exampleEnvelope(), ct: urlCt }), "base64url ct");
});

Deno.test("openEnvelope rejects the worked example under a wrong passphrase or salt", async () => {
  const keys = await exampleKeys();
  const wrongPassphrase = await deriveRoomKeys("correct horse battery stapler", {
    salt: hex(EXAMPLE.salt),
    iterations: EXAMPLE.iterations,
  });
  const wrongSalt = await deriveRoomKeys(EXAMPLE.passphrase, {
    salt: hex("0f0e0d0c0b0a09080706050403020100"),
    iterations: EXAMPLE.iterations,
  });
  for (const [what, wrong] of [["passphrase", wrongPassphrase], ["salt", wrongSalt]] as const) {
    assert.notEqual(wrong.accessPub.toHex(), keys.accessPub.toHex(), what);
    await assertRefused(openAsSent(wrong, exampleEnvelope()), `wrong ${what}`);
  }
});

Deno.test("openEnvelope rejects a missing or extra field, a bad v or a bad ts", async () => {
  const keys = await exampleKeys();
  const broken: Record<string, unknown>[] = [];
  for (const field of ["v", "room", "from", "id", "ts", "iv", "ct", "tag"]) {
    const envelope = exampleEnvelope();
    delete envelope[field];
    broken.push(envelope);
  }
  broken.push({ ...exampleEnvelope(), extra: 1 });
  broken.push({ ...exampleEnvelope(), v: 2 });
  broken.push({ ...exampleEnvelope(), v: "1" });
  broken.push({ ...exampleEnvelope(), ts: EXAMPLE.ts + 0.5 });
  broken.push({ ...exampleEnvelope(), ts: String(EXAMPLE.ts) });
  broken.push({ ...exampleEnvelope(), ts: 2 ** 53 });
  for (const envelope of broken) await assertRefused(openAsSent(keys, envelope), JSON.stringify(envelope));
  for (const envelope of [null, [], "envelope", 1]) {
    await assertRefused(openEnvelope(keys, { envelope, room: "general" }), JSON.stringify(envelope));
  }
});

Deno.test("openEnvelope rejects a negative ts or non-NFC room/from even when the tag is authentic", async () => {
  const keys = await exampleKeys();
  // Control: the independent sealer makes envelopes that open, so the refusals below are the rules at work.
  const control = await openAsSent(keys, nodeSealText('{"type":"text","body":"café"}', { room: "café", from: "zoë" }));
  assert.equal(control.plaintext.body, "café");
  const pt = '{"type":"text","body":"x"}';
  await assertRefused(openAsSent(keys, nodeSealText(pt, { ts: -1 })), "ts -1");
  await assertRefused(openAsSent(keys, nodeSealText(pt, { room: "cafe\u0301" })), "NFD room");
  await assertRefused(openAsSent(keys, nodeSealText(pt, { from: "zoe\u0308" })), "NFD from");
  await assertRefused(openAsSent(keys, nodeSealText(pt, { room: "a".repeat(65) })), "65-byte room");
  await assertRefused(openAsSent(keys, nodeSealText(pt, { from: "é".repeat(17) })), "34-byte from");
});

Deno.test("openEnvelope rejects an envelope for another room or sender than expected", async () => {
  const keys = await exampleKeys();
  const expectations = [
    { room: "random", from: "alice" },
    { room: "General", from: "alice" },
    { room: "general", from: "bob" },
    { room: "general", from: "Alice" },
  ];
  for (const expect of expectations) {
    await assertRefused(openEnvelope(keys, { envelope: exampleEnvelope(), ...expect }), JSON.stringify(expect));
  }
});

Deno.test("openEnvelope rejects authentic envelopes whose plaintext is not a {type, body} object", async () => {
  const keys = await exampleKeys();
  const action = await openAsSent(keys, nodeSealText('{"type":"action","body":"waves","lang":"en"}'));
  assert.deepEqual(action.plaintext, { type: "action", body: "waves", lang: "en" });
  const plaintexts = [
    "hello",
    "",
    "null",
    "[]",
    '"text"',
    '{"type":"text"}',
    '{"body":"hello"}',
    '{"type":"text","body":5}',
    '{"type":1,"body":"hello"}',
    `{"type":"text","body":"${"a".repeat(16385)}"}`,
  ];
  for (const pt of plaintexts) await assertRefused(openAsSent(keys, nodeSealText(pt)), pt.slice(0, 40));
  const invalidUtf8 = nodeSeal({
    room: "general",
    from: "alice",
    ts: EXAMPLE.ts,
    plaintext: new Uint8Array([...bytesOf('{"type":"text","body":"'), 0xff, ...bytesOf('"}')]),
  });
  await assertRefused(openAsSent(keys, invalidUtf8), "invalid UTF-8");
});

Deno.test("openEnvelope gives the same error for bad padding under an authentic tag as for a bad tag", async () => {
  const keys = await exampleKeys();
  // One block whose decryption ends in 0x00, which is never valid PKCS#7 padding.
  const badPadding = nodeSeal({
    room: "general",
    from: "alice",
    ts: EXAMPLE.ts,
    plaintext: new Uint8Array(16),
    padding: false,
  });
  await assertRefused(openAsSent(keys, badPadding), "bad padding, good tag");
  // An authentic envelope encrypted under another key decrypts to garbage: also refused the same way.
  const otherKey = nodeSeal({
    room: "general",
    from: "alice",
    ts: EXAMPLE.ts,
    plaintext: bytesOf('{"type":"text","body":"hello"}'),
    encKey: new Uint8Array(32),
  });
  await assertRefused(openAsSent(keys, otherKey), "wrong enc key, good tag");
});

// --- Key-derivation inputs. ---

Deno.test("precomposed and decomposed é derive the same room keys", async () => {
  assert.equal(passphraseBytes("caf\u00e9").toHex(), "636166c3a9");
  assert.equal(passphraseBytes("cafe\u0301").toHex(), "636166c3a9");
  const options = { salt: hex(EXAMPLE.salt), iterations: EXAMPLE.iterations };
  const composed = await deriveRoomKeys("caf\u00e9", options);
  const decomposed = await deriveRoomKeys("cafe\u0301", options);
  assert.equal(composed.accessPub.toHex(), decomposed.accessPub.toHex());
  assert.equal(
    composed.accessPub.toHex(),
    nodeRoomSecrets("caf\u00e9", hex(EXAMPLE.salt), EXAMPLE.iterations).accessPub.toHex(),
  );
  assert.notEqual(composed.accessPub.toHex(), (await exampleKeys()).accessPub.toHex());
  const envelope = await sealEnvelope(composed, {
    room: "general",
    from: "alice",
    plaintext: { type: "text", body: "même clé" },
  });
  const opened = await openEnvelope(decomposed, { envelope, room: "general", from: "alice" });
  assert.equal(opened.plaintext.body, "même clé");
});

Deno.test("deriveRoomKeys refuses out-of-range iteration counts with KeyDerivationError", async () => {
  const salt = hex(EXAMPLE.salt);
  for (const iterations of [99_999, 10_000_001, 0, -600_000, 100_000.5, NaN, Infinity]) {
    await assert.rejects(
      deriveRoomKeys("pass", { salt, iterations }),
      new KeyDerivationError(`iterations must be an integer from 100000 to 10000000, got ${iterations}`),
    );
  }
  await assert.rejects(
    deriveRoomKeys("pass", { salt, iterations: "600000" as unknown as number }),
    KeyDerivationError,
  );
  checkIterations(MIN_ITERATIONS);
  checkIterations(MAX_ITERATIONS);
  checkIterations(DEFAULT_ITERATIONS);
  assert.throws(() => checkIterations(MAX_ITERATIONS + 1), KeyDerivationError);
});

Deno.test("deriveRoomKeys refuses a salt that is not 16 bytes with KeyDerivationError", async () => {
  for (const length of [0, 15, 17, 32]) {
    await assert.rejects(
      deriveRoomKeys("pass", { salt: new Uint8Array(length), iterations: MIN_ITERATIONS }),
      new KeyDerivationError("salt must be 16 bytes"),
    );
  }
  await assert.rejects(
    deriveRoomKeys("pass", { salt: new Array(16).fill(0) as unknown as Uint8Array, iterations: MIN_ITERATIONS }),
    new KeyDerivationError("salt must be 16 bytes"),
  );
});

Deno.test("deriveRoomKeys refuses an empty passphrase or a lone surrogate with KeyDerivationError", async () => {
  const options = { salt: hex(EXAMPLE.salt), iterations: MIN_ITERATIONS };
  await assert.rejects(deriveRoomKeys("", options), new KeyDerivationError("passphrase must not be empty"));
  for (const passphrase of ["\ud800", "abc\udfff", "\ude00\ud83d"]) {
    await assert.rejects(
      deriveRoomKeys(passphrase, options),
      new KeyDerivationError("passphrase is not well-formed Unicode (lone surrogate)"),
    );
  }
  const err = await deriveRoomKeys("", options).catch((e) => e);
  assert.equal(err.name, "KeyDerivationError");
});

Deno.test("makeSalt returns 16 fresh random bytes", () => {
  const a = makeSalt();
  const b = makeSalt();
  assert.equal(a.length, SALT_BYTES);
  assert.notEqual(a.toHex(), b.toHex());
});
