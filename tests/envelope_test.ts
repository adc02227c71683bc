/**
 * Specification of lib/envelope.ts: the envelope's exact field set, types, encodings and lengths, and its
 * canonical serialization. Nothing here needs a key.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  ENVELOPE_VERSION,
  EnvelopeError,
  ID_BYTES,
  IV_BYTES,
  MAX_BODY_BYTES,
  MAX_CT_BYTES,
  parseEnvelope,
  serializeEnvelope,
  TAG_BYTES,
} from "../lib/envelope.ts";

const SERIALIZED = '{"v":1,"room":"general","from":"alice","id":"AAECAwQFBgcICQoLDA0ODw==","ts":1700000000000,' +
  '"iv":"EBESExQVFhcYGRobHB0eHw==","ct":"ZxHXshy2NeR53KxncA2qjJOLx8L14vd/EoriSbdB+Dc=",' +
  '"tag":"99Pq4EV1qO4OQSXVKy6tHNHfaEL2kjPEv8jX5EYiHY0="}';

/** The PROTOCOL.md worked example, as parsed from the wire. */
function valid(): Record<string, unknown> {
  return JSON.parse(SERIALIZED);
}

function b64(bytes: number): string {
  return new Uint8Array(bytes).toBase64();
}

function assertRefused(envelope: unknown, message: string): void {
  assert.throws(() => parseEnvelope(envelope), new EnvelopeError(message), Deno.inspect(envelope).slice(0, 80));
}

Deno.test("the envelope constants are the ones PROTOCOL.md states", () => {
  assert.deepEqual(
    { ENVELOPE_VERSION, ID_BYTES, IV_BYTES, TAG_BYTES, MAX_BODY_BYTES, MAX_CT_BYTES },
    { ENVELOPE_VERSION: 2, ID_BYTES: 16, IV_BYTES: 16, TAG_BYTES: 32, MAX_BODY_BYTES: 16384, MAX_CT_BYTES: 102400 },
  );
  // The largest sealed plaintext, {"type":"action","body":"\u0001..."}, padded, fits the limit.
  const worst = `{"type":"action","body":"${"\\u0001".repeat(MAX_BODY_BYTES)}"}`.length;
  assert.ok(16 * (Math.floor(worst / 16) + 1) <= MAX_CT_BYTES);
  assert.equal(MAX_CT_BYTES % 16, 0);
});

Deno.test("parseEnvelope accepts the worked example and returns the same object", () => {
  const envelope = valid();
  assert.equal(parseEnvelope(envelope), envelope);
  assert.equal(serializeEnvelope(parseEnvelope(envelope)), SERIALIZED);
});

Deno.test("parseEnvelope refuses anything but a JSON object", () => {
  for (const value of [null, undefined, [], [valid()], "{}", 1, true]) {
    assertRefused(value, "envelope must be a JSON object");
  }
});

Deno.test("parseEnvelope requires exactly the eight fields", () => {
  const message = "envelope must have exactly the fields v, room, from, id, ts, iv, ct, tag";
  for (const field of ["v", "room", "from", "id", "ts", "iv", "ct", "tag"]) {
    const envelope = valid();
    delete envelope[field];
    assertRefused(envelope, message);
    assertRefused({ ...envelope, extra: 1 }, message); // eight keys, but one is not a field
  }
  assertRefused({ ...valid(), extra: 1 }, message);
  assertRefused({ ...valid(), extra: undefined }, message);
  assertRefused({}, message);
  assertRefused(Object.setPrototypeOf({}, valid()), message); // inherited fields do not count
});

Deno.test("parseEnvelope requires v to be the number 1", () => {
  for (const v of [0, 3, "1", true, null, 1.5]) assertRefused({ ...valid(), v }, "envelope.v must be 1 or 2");
});

Deno.test("parseEnvelope applies the name rules to room and from", () => {
  assertRefused({ ...valid(), room: 7 }, "envelope.room must be a string");
  assertRefused({ ...valid(), room: "" }, "envelope.room must not be empty");
  assertRefused({ ...valid(), room: "cafe\u0301" }, "envelope.room is not NFC-normalized");
  assertRefused({ ...valid(), room: "caf\ud800" }, "envelope.room is not well-formed Unicode");
  assertRefused({ ...valid(), room: "a".repeat(65) }, "envelope.room is 65 bytes; the limit is 64");
  assertRefused({ ...valid(), room: "é".repeat(33) }, "envelope.room is 66 bytes; the limit is 64");
  assertRefused({ ...valid(), from: null }, "envelope.from must be a string");
  assertRefused({ ...valid(), from: "" }, "envelope.from must not be empty");
  assertRefused({ ...valid(), from: "zoe\u0308" }, "envelope.from is not NFC-normalized");
  assertRefused({ ...valid(), from: "\udc00" }, "envelope.from is not well-formed Unicode");
  assertRefused({ ...valid(), from: "a".repeat(33) }, "envelope.from is 33 bytes; the limit is 32");
  assertRefused({ ...valid(), from: "😀".repeat(8) + "a" }, "envelope.from is 33 bytes; the limit is 32");
  for (const room of ["a".repeat(64), "é".repeat(32), "😀".repeat(16), "café"]) parseEnvelope({ ...valid(), room });
  for (const from of ["a".repeat(32), "é".repeat(16), "😀".repeat(8), "zoë"]) parseEnvelope({ ...valid(), from });
});

Deno.test("parseEnvelope requires ts to be an integer from 0 to 2^53-1", () => {
  const message = "envelope.ts must be an integer in 0..2^53-1";
  for (const ts of [-1, 0.5, 1700000000000.5, 2 ** 53, NaN, Infinity, -Infinity, "1700000000000", null, 1n]) {
    assertRefused({ ...valid(), ts }, message);
  }
  for (const ts of [0, 1, 1_700_000_000_000, Number.MAX_SAFE_INTEGER]) {
    assert.equal(parseEnvelope({ ...valid(), ts }).ts, ts);
  }
});

Deno.test("parseEnvelope requires id and iv of 16 bytes and tag of 32 bytes", () => {
  for (const [field, bytes] of [["id", ID_BYTES], ["iv", IV_BYTES], ["tag", TAG_BYTES]] as const) {
    for (const wrong of [0, 1, bytes - 1, bytes + 1, 2 * bytes]) {
      assertRefused({ ...valid(), [field]: b64(wrong) }, `envelope.${field} has the wrong length (${wrong} bytes)`);
    }
    assertRefused({ ...valid(), [field]: 16 }, `envelope.${field} must be a string`);
    assertRefused({ ...valid(), [field]: [...new Uint8Array(bytes)] }, `envelope.${field} must be a string`);
    parseEnvelope({ ...valid(), [field]: b64(bytes) });
  }
});

Deno.test("parseEnvelope requires ct to be a non-zero multiple of 16 bytes up to MAX_CT_BYTES", () => {
  for (const bytes of [0, 1, 15, 17, 31, 33, 47, MAX_CT_BYTES + 16, MAX_CT_BYTES - 1]) {
    assertRefused({ ...valid(), ct: b64(bytes) }, `envelope.ct has the wrong length (${bytes} bytes)`);
  }
  for (const bytes of [16, 32, 48, 4096, MAX_CT_BYTES]) parseEnvelope({ ...valid(), ct: b64(bytes) });
  assertRefused({ ...valid(), ct: false }, "envelope.ct must be a string");
});

Deno.test("parseEnvelope refuses non-canonical base64 in id, iv, ct and tag", () => {
  for (const field of ["id", "iv", "ct", "tag"]) {
    const canonical = valid()[field] as string;
    const body = canonical.replace(/=+$/, "");
    for (
      const spelling of [body, ` ${canonical}`, `${canonical}\n`, body + " ".repeat(canonical.length - body.length)]
    ) {
      assertRefused({ ...valid(), [field]: spelling }, `envelope.${field} is not canonical base64`);
    }
  }
  assertRefused({ ...valid(), iv: "EBESExQVFhcYGRobHB0eHx==" }, "envelope.iv is not canonical base64");
  assertRefused(
    { ...valid(), tag: "99Pq4EV1qO4OQSXVKy6tHNHfaEL2kjPEv8jX5EYiHY1=" },
    "envelope.tag is not canonical base64",
  );
  assertRefused(
    { ...valid(), ct: "ZxHXshy2NeR53KxncA2qjJOLx8L14vd_EoriSbdB-Dc=" },
    "envelope.ct is not canonical base64",
  );
});

Deno.test("parseEnvelope names the first wrong field, in the order v, room, from, ts, id, iv, tag, ct", () => {
  const allWrong = { v: 3, room: "", from: "", id: "", ts: -1, iv: "", ct: "", tag: "" };
  const order: [string, string][] = [
    ["v", "envelope.v must be 1 or 2"],
    ["room", "envelope.room must not be empty"],
    ["from", "envelope.from must not be empty"],
    ["ts", "envelope.ts must be an integer in 0..2^53-1"],
    ["id", "envelope.id has the wrong length (0 bytes)"],
    ["iv", "envelope.iv has the wrong length (0 bytes)"],
    ["tag", "envelope.tag has the wrong length (0 bytes)"],
    ["ct", "envelope.ct has the wrong length (0 bytes)"],
  ];
  const envelope: Record<string, unknown> = { ...allWrong };
  for (const [field, message] of order) {
    assertRefused(envelope, message);
    envelope[field] = valid()[field];
  }
  parseEnvelope(envelope);
});

Deno.test("serializeEnvelope writes the fields in canonical order whatever the input order", () => {
  const shuffled = Object.fromEntries(Object.entries(valid()).reverse());
  assert.notEqual(JSON.stringify(shuffled), SERIALIZED);
  assert.equal(serializeEnvelope(parseEnvelope(shuffled)), SERIALIZED);
  const unicode = { ...valid(), room: "café", from: "zoë😀" };
  assert.equal(
    serializeEnvelope(parseEnvelope(unicode)),
    SERIALIZED.replace('"general"', '"café"').replace('"alice"', '"zoë😀"'),
  );
});

Deno.test("EnvelopeError is an Error named EnvelopeError", () => {
  const err = new EnvelopeError("why");
  assert.ok(err instanceof Error);
  assert.equal(err.name, "EnvelopeError");
  assert.equal(err.message, "why");
});
