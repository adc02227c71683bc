/**
 * Specification of lib/identity.ts and lib/keyfile.ts: fingerprints and safety numbers, rotation chains, and secrets
 * at rest under a passphrase.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  fingerprint,
  followRotations,
  formatFingerprint,
  generateIdentitySecrets,
  importIdentity,
  safetyNumber,
  signRotation,
  verifyRotation,
} from "../lib/identity.ts";
import { isLocked, KeyfileError, lockSecret, unlockSecret } from "../lib/keyfile.ts";
import { signEd25519, verifyEd25519 } from "../lib/crypto.ts";

const [a, b, c] = await Promise.all([1, 2, 3].map(() => importIdentity(generateIdentitySecrets())));

Deno.test("a fingerprint is 160 bits in hex, stable, and differs between keys", async () => {
  const fp = await fingerprint(a.publicKey);
  assert.match(fp, /^[0-9a-f]{40}$/);
  assert.equal(await fingerprint(a.publicKey), fp);
  assert.notEqual(await fingerprint(b.publicKey), fp);
  assert.equal(formatFingerprint(fp).split(" ").length, 10);
});

Deno.test("a safety number is the same for both people, 80 digits, and changes with either key", async () => {
  const ab = await safetyNumber(a.publicKey, b.publicKey);
  assert.equal(ab, await safetyNumber(b.publicKey, a.publicKey));
  assert.match(ab, /^(\d{5} ){15}\d{5}$/);
  assert.notEqual(await safetyNumber(a.publicKey, c.publicKey), ab);
});

Deno.test("a rotation chain is followed only through statements the old keys signed", async () => {
  const ab = await signRotation(a, { newKey: b.publicKey, ts: 1 });
  const bc = await signRotation(b, { newKey: c.publicKey, ts: 2 });
  assert.ok(await verifyRotation(ab));
  assert.deepEqual(await followRotations(a.publicKey, [ab, bc]), c.publicKey);
  assert.deepEqual(await followRotations(b.publicKey, [ab, bc]), c.publicKey);
  assert.equal(await followRotations(c.publicKey, [ab, bc]), undefined);
  // A server forging "a rotated to its own key" cannot sign as a.
  const forged = { ...ab, newKey: c.publicKey };
  assert.equal(await verifyRotation(forged), false);
  assert.equal(await followRotations(a.publicKey, [forged]), undefined);
});

Deno.test("a locked secret opens with its passphrase and purpose only", async () => {
  const secret = crypto.getRandomValues(new Uint8Array(64));
  const locked = await lockSecret(secret, {
    passphrase: "my identity passphrase",
    purpose: "identity",
    iterations: 100_000,
  });
  assert.ok(isLocked(JSON.parse(JSON.stringify(locked))));
  assert.deepEqual(await unlockSecret(locked, { passphrase: "my identity passphrase", purpose: "identity" }), secret);
  await assert.rejects(unlockSecret(locked, { passphrase: "wrong", purpose: "identity" }), KeyfileError);
  await assert.rejects(unlockSecret(locked, { passphrase: "my identity passphrase", purpose: "rooms" }), KeyfileError);
  await assert.rejects(
    unlockSecret({ ...locked, iterations: 5 }, { passphrase: "x", purpose: "identity" }),
    KeyfileError,
  );
  assert.equal(isLocked({ seed: "AAAA" }), false);
});

// ---- review: keys under which anyone can sign ---------------------------------------------------------------------

/** The encodings of the eight points of small order (libsodium's list), each also with the sign bit set. */
const SMALL_ORDER = [
  "00".repeat(32),
  "01" + "00".repeat(31),
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ec" + "ff".repeat(30) + "7f",
].flatMap((hex) => {
  const key = Uint8Array.fromHex(hex);
  const negative = key.slice();
  negative[31] |= 0x80;
  return [key, negative];
});

Deno.test("verifyEd25519 refuses small-order keys, under which anyone forges a signature of anything", async () => {
  // R a small-order point and S = 0 verifies for about one message in eight under such a key (for every message
  // under the neutral point 01 00 … 00): a login, rotation, kx signature or room message "signed" by nobody.
  const sign = (r: Uint8Array) => Uint8Array.from({ length: 64 }, (_, k) => (k < 32 ? r[k] : 0));
  for (const key of SMALL_ORDER) {
    for (let m = 0; m < 16; m++) {
      const input = new TextEncoder().encode(`transfer ${m} to mallory`);
      for (const r of SMALL_ORDER) {
        assert.equal(await verifyEd25519(key, { input, signature: sign(r) }), false, key.toHex());
      }
    }
  }
  // An ordinary key still verifies.
  const input = new TextEncoder().encode("hello");
  assert.ok(await verifyEd25519(a.publicKey, { input, signature: await signEd25519(a.signKey, input) }));
});
