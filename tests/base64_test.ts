/**
 * Specification of lib/base64.ts: exactly one accepted spelling (padded standard base64, zero trailing bits, no
 * whitespace) for every byte string.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Base64Error, canonicalBase64Length, decodeBase64, encodeBase64 } from "../lib/base64.ts";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const NOT_CANONICAL = new Base64Error("Cannot decode base64: not canonical padded standard base64");

/** RFC 4648 §10. */
const RFC4648: [string, string][] = [
  ["", ""],
  ["f", "Zg=="],
  ["fo", "Zm8="],
  ["foo", "Zm9v"],
  ["foob", "Zm9vYg=="],
  ["fooba", "Zm9vYmE="],
  ["foobar", "Zm9vYmFy"],
];

function assertRefused(text: string): void {
  assert.equal(canonicalBase64Length(text), -1, JSON.stringify(text));
  assert.throws(() => decodeBase64(text), NOT_CANONICAL, JSON.stringify(text));
}

Deno.test("encodeBase64 and decodeBase64 match RFC 4648 §10", () => {
  const utf8 = new TextEncoder();
  for (const [plain, encoded] of RFC4648) {
    assert.equal(encodeBase64(utf8.encode(plain)), encoded);
    assert.equal(new TextDecoder().decode(decodeBase64(encoded)), plain);
    assert.equal(canonicalBase64Length(encoded), plain.length);
  }
});

Deno.test("every 1- and 2-byte string round-trips, and its length is known without decoding", () => {
  for (let a = 0; a < 256; a++) {
    const one = encodeBase64(new Uint8Array([a]));
    assert.equal(canonicalBase64Length(one), 1);
    assert.deepEqual([...decodeBase64(one)], [a]);
    for (let b = 0; b < 256; b++) {
      const two = encodeBase64(new Uint8Array([a, b]));
      assert.equal(canonicalBase64Length(two), 2);
      const back = decodeBase64(two);
      assert.ok(back[0] === a && back[1] === b, two);
    }
  }
});

Deno.test("random strings of 0 to 100 bytes round-trip with the right length", () => {
  for (let n = 0; n <= 100; n++) {
    const bytes = crypto.getRandomValues(new Uint8Array(n));
    const text = encodeBase64(bytes);
    assert.equal(text.length, 4 * Math.ceil(n / 3));
    assert.equal(canonicalBase64Length(text), n);
    assert.equal(decodeBase64(text, { length: n }).toHex(), bytes.toHex());
  }
});

Deno.test("with '==', only A, Q, g and w are accepted before the padding (the 4 trailing bits must be zero)", () => {
  const accepted: string[] = [];
  for (const [value, symbol] of [...ALPHABET].entries()) {
    const text = `A${symbol}==`;
    if (value % 16 === 0) {
      assert.equal(canonicalBase64Length(text), 1, text);
      assert.deepEqual([...decodeBase64(text)], [value >> 4]);
      accepted.push(symbol);
    } else {
      assertRefused(text);
      // A lenient decoder would silently drop the bits and give the same byte as the canonical spelling.
      assert.deepEqual([...Uint8Array.fromBase64(text)], [value >> 4]);
    }
  }
  assert.deepEqual(accepted, ["A", "Q", "g", "w"]);
});

Deno.test("with '=', only the 16 symbols whose 2 trailing bits are zero are accepted before the padding", () => {
  const accepted: string[] = [];
  for (const [value, symbol] of [...ALPHABET].entries()) {
    const text = `AA${symbol}=`;
    if (value % 4 === 0) {
      assert.equal(canonicalBase64Length(text), 2, text);
      assert.deepEqual([...decodeBase64(text)], [0, value >> 2]);
      accepted.push(symbol);
    } else {
      assertRefused(text);
    }
  }
  assert.equal(accepted.join(""), "AEIMQUYcgkosw048");
});

Deno.test("decodeBase64 refuses missing, extra or misplaced padding", () => {
  for (
    const text of ["Zg", "Zg=", "Zm8", "Zm9vYg", "Zm9vYmE", "Zg===", "Zm9v====", "Z===", "====", "=", "Z=g=", "=Zg="]
  ) {
    assertRefused(text);
  }
});

Deno.test("decodeBase64 refuses whitespace anywhere", () => {
  for (const text of [" Zm9v", "Zm9v ", "Zm 9v", "Zm9\n", "Zm9v\n", "Zm9v\r\n", "\tZm9v", "Zg= =", "Zg\n==", "Zm8 "]) {
    assertRefused(text);
  }
});

Deno.test("decodeBase64 refuses the base64url alphabet and other characters", () => {
  for (const text of ["-_-_", "ab-c", "ab_c", "Zm9v.", "Zm9\u00e9", "Zm9\u0000", "Zm9v\u200b", "Zm9\uff56"]) {
    assertRefused(text);
  }
  assert.equal(canonicalBase64Length("+/+/"), 3);
});

Deno.test("decodeBase64 with a length checks the decoded length", () => {
  assert.deepEqual([...decodeBase64("AAECAw==", { length: 4 })], [0, 1, 2, 3]);
  assert.throws(
    () => decodeBase64("AAECAw==", { length: 16 }),
    new Base64Error("Cannot decode base64: expected 16 bytes, got 4"),
  );
  assert.throws(
    () => decodeBase64("", { length: 1 }),
    new Base64Error("Cannot decode base64: expected 1 bytes, got 0"),
  );
});

Deno.test("decodeBase64 refuses a non-string with Base64Error", () => {
  for (const value of [null, undefined, 42, ["AA=="], new Uint8Array(3)]) {
    assert.throws(() => decodeBase64(value as unknown as string), NOT_CANONICAL);
  }
});

Deno.test("Base64Error is an Error named Base64Error", () => {
  const err = new Base64Error("why");
  assert.ok(err instanceof Error);
  assert.equal(err.name, "Base64Error");
  assert.equal(err.message, "why");
});
