/**
 * Specification of lib/names.ts: which nicks and room names are accepted, and the message for each refusal.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  checkNameBytes,
  checkSingleScript,
  foldName,
  MAX_NICK_BYTES,
  MAX_ROOM_BYTES,
  NameError,
  nickKey,
  utf8Length,
  validateNick,
  validateRoom,
} from "../lib/names.ts";

const CONTROL_NICK = new NameError("nick contains a control or invisible character");
const CONTROL_ROOM = new NameError("room name contains a control or invisible character");
const SPACE_NICK = new NameError("nick must not contain whitespace");
const SPACE_ROOM = new NameError("room name must not contain whitespace");

Deno.test("the name limits are 32 bytes for a nick and 64 for a room", () => {
  assert.equal(MAX_NICK_BYTES, 32);
  assert.equal(MAX_ROOM_BYTES, 64);
});

Deno.test("utf8Length counts UTF-8 bytes like TextEncoder for well-formed strings", () => {
  const cases: [string, number][] = [["", 0], ["a", 1], ["é", 2], ["€", 3], ["😀", 4], ["aé€😀", 10], ["\u0000", 1]];
  for (const [text, bytes] of cases) assert.equal(utf8Length(text), bytes, text);
  const utf8 = new TextEncoder();
  for (let cp = 0; cp <= 0x10ffff; cp += 0x101) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    const text = `x${String.fromCodePoint(cp)}y`;
    assert.equal(utf8Length(text), utf8.encode(text).length, cp.toString(16));
  }
});

Deno.test("validateNick accepts printable NFC names and returns them unchanged", () => {
  for (const nick of ["alice", "Bob_2", "zoë", "Ærøskøbing", "東京", "😀", "a-b.c[d]", "ﬁ", "a".repeat(32)]) {
    assert.equal(validateNick(nick), nick);
  }
});

Deno.test("validateNick measures the 32-byte limit in UTF-8 bytes", () => {
  assert.equal(validateNick("é".repeat(16)), "é".repeat(16));
  assert.equal(validateNick("😀".repeat(8)), "😀".repeat(8));
  assert.equal(validateNick("€".repeat(10) + "é"), "€".repeat(10) + "é");
  assert.throws(() => validateNick("a".repeat(33)), new NameError("nick is 33 bytes; the limit is 32"));
  assert.throws(() => validateNick("é".repeat(17)), new NameError("nick is 34 bytes; the limit is 32"));
  assert.throws(() => validateNick("😀".repeat(8) + "a"), new NameError("nick is 33 bytes; the limit is 32"));
  assert.throws(() => validateNick("€".repeat(11)), new NameError("nick is 33 bytes; the limit is 32"));
});

Deno.test("validateNick refuses an empty name or a non-string", () => {
  assert.throws(() => validateNick(""), new NameError("nick must not be empty"));
  for (const value of [undefined, null, 5, ["alice"], { nick: "alice" }]) {
    assert.throws(() => validateNick(value), new NameError("nick must be a string"));
  }
});

Deno.test("validateNick refuses a name that is not NFC, rather than normalizing it", () => {
  for (const nick of ["e\u0301", "zoe\u0308", "A\u030a", "\u212b"]) {
    assert.throws(() => validateNick(nick), new NameError("nick is not NFC-normalized"), nick);
  }
  assert.equal(validateNick("\u00e9"), "é");
  assert.equal(validateNick("\u00c5"), "Å");
});

Deno.test("validateNick refuses a lone surrogate", () => {
  for (const nick of ["\ud800", "a\udc00", "\ude00\ud83d", "ab\ud83d"]) {
    assert.throws(() => validateNick(nick), new NameError("nick is not well-formed Unicode"), JSON.stringify(nick));
  }
});

Deno.test("validateNick refuses whitespace", () => {
  for (const nick of [" alice", "alice ", "al ice", "al\u00a0ice", "al\u2003ice", "al\u3000ice", "\u1680"]) {
    assert.throws(() => validateNick(nick), SPACE_NICK, JSON.stringify(nick));
  }
});

Deno.test("validateNick refuses control, format, private-use, unassigned and separator characters", () => {
  const characters = [
    "\u0000",
    "\t",
    "\n",
    "\r",
    "\u001b",
    "\u007f",
    "\u0085",
    "\u009f",
    "\u00ad", // soft hyphen
    "\u200b", // zero-width space
    "\u200d", // zero-width joiner
    "\u202e", // right-to-left override
    "\u2028", // line separator
    "\u2029", // paragraph separator
    "\u2066", // left-to-right isolate
    "\ufeff", // byte order mark
    "\ue000", // private use
    "\u{f0000}", // supplementary private use
    "\u0378", // unassigned
    "\u{e0001}", // language tag
  ];
  for (const c of characters) {
    assert.throws(() => validateNick(`al${c}ice`), CONTROL_NICK, JSON.stringify(c));
  }
});

Deno.test("validateRoom accepts printable NFC names up to 64 UTF-8 bytes", () => {
  for (const room of ["general", "#dev", "café", "東京", "a".repeat(64), "é".repeat(32), "😀".repeat(16)]) {
    assert.equal(validateRoom(room), room);
  }
  assert.throws(() => validateRoom("a".repeat(65)), new NameError("room name is 65 bytes; the limit is 64"));
  assert.throws(() => validateRoom("é".repeat(33)), new NameError("room name is 66 bytes; the limit is 64"));
  assert.throws(() => validateRoom("😀".repeat(16) + "a"), new NameError("room name is 65 bytes; the limit is 64"));
});

Deno.test("validateRoom refuses empty, non-string, non-NFC and ill-formed names", () => {
  assert.throws(() => validateRoom(""), new NameError("room name must not be empty"));
  assert.throws(() => validateRoom(42), new NameError("room name must be a string"));
  assert.throws(() => validateRoom("cafe\u0301"), new NameError("room name is not NFC-normalized"));
  assert.throws(() => validateRoom("caf\ud800"), new NameError("room name is not well-formed Unicode"));
});

Deno.test("validateRoom refuses whitespace and control or invisible characters", () => {
  for (const room of ["my room", "room ", "\u00a0room", "ro\u3000om"]) {
    assert.throws(() => validateRoom(room), SPACE_ROOM, JSON.stringify(room));
  }
  for (const room of ["room\n", "ro\u0000om", "ro\u200bom", "\u202eroom", "ro\u2028om", "ro\ue000om"]) {
    assert.throws(() => validateRoom(room), CONTROL_ROOM, JSON.stringify(room));
  }
});

Deno.test("checkNameBytes applies only the envelope's rules, with the caller's wording", () => {
  checkNameBytes("has space", { what: "envelope.room", max: 64 });
  checkNameBytes("tab\there", { what: "envelope.room", max: 64 });
  assert.throws(
    () => checkNameBytes("abcd", { what: "thing", max: 3 }),
    new NameError("thing is 4 bytes; the limit is 3"),
  );
  assert.throws(
    () => checkNameBytes("e\u0301", { what: "thing", max: 3 }),
    new NameError("thing is not NFC-normalized"),
  );
});

Deno.test("nickKey compares nicks case-insensitively", () => {
  assert.equal(nickKey("Alice"), nickKey("ALICE"));
  assert.equal(nickKey("Zoë"), nickKey("ZOË"));
  assert.notEqual(nickKey("alice"), nickKey("alicf"));
  assert.equal(nickKey("Alice"), "alice");
});

Deno.test("NameError is an Error named NameError", () => {
  const err = new NameError("why");
  assert.ok(err instanceof Error);
  assert.equal(err.name, "NameError");
  assert.equal(err.message, "why");
});

Deno.test("foldName makes case and lookalike letters one name", () => {
  const alice = foldName("alice");
  for (const same of ["Alice", "ALICE", "\u0430lice", "\u0410LICE", "a1ice", "\u03b1lice", "ａｌｉｃｅ"]) {
    assert.equal(foldName(same), alice, same);
  }
  assert.notEqual(foldName("alice2"), alice);
  assert.equal(foldName("Ops"), foldName("ops"));
  assert.equal(nickKey("Bob"), foldName("bob"));
});

Deno.test("validateNick refuses a nick mixing Latin, Cyrillic or Greek letters, and allows other mixes", () => {
  assert.throws(() => validateNick("\u0430lice"), new NameError("nick mixes Latin and Cyrillic letters"));
  assert.throws(() => validateNick("\u03b1lice"), new NameError("nick mixes Latin and Greek letters"));
  for (const nick of ["\u0430\u043b\u0438\u0441\u0430", "\u03b1\u03bb\u03b9\u03ba\u03b7", "東京_alice", "bob-2"]) {
    assert.equal(validateNick(nick), nick);
  }
  checkSingleScript("alice");
});

// ---- review: lookalikes of a registered nick that must not be registrable beside it -------------------------------

Deno.test("validateNick refuses invisible (default-ignorable) characters that are not of category C", () => {
  // Each renders as nothing, so "alice" + one of them looks exactly like "alice" but folds to another key.
  const invisible = [
    "\u034f", // combining grapheme joiner (Mn)
    "\u115f", // Hangul choseong filler (Lo)
    "\u1160", // Hangul jungseong filler (Lo)
    "\u3164", // Hangul filler (Lo)
    "\uffa0", // halfwidth Hangul filler (Lo)
    "\ufe0f", // variation selector 16 (Mn)
    "\u{e0100}", // variation selector 17 (Mn)
    "\u180b", // Mongolian free variation selector (Mn)
    "\u17b4", // Khmer vowel inherent aq (Mn)
    "\u2800", // Braille pattern blank (So): blank, though not White_Space
  ];
  for (const c of invisible) {
    assert.throws(() => validateNick(`alice${c}`), CONTROL_NICK, JSON.stringify(c));
    assert.throws(() => validateRoom(`ops${c}`), CONTROL_ROOM, JSON.stringify(c));
  }
});

Deno.test("validateNick refuses a name that starts with a combining mark (it would draw on what comes before it)", () => {
  assert.throws(() => validateNick("\u0301"), new NameError("nick must not start with a combining mark"));
  assert.throws(() => validateNick("\u0301alice"), new NameError("nick must not start with a combining mark"));
  assert.equal(validateNick("zoe\u0308".normalize("NFC")), "zoë");
});

Deno.test("validateNick refuses Latin mixed with any script other than Han, Hiragana, Katakana, Hangul, Bopomofo", () => {
  // Each looks like bob or Bob on screen: Cherokee Ᏼ, Lisu ꓐ, Canadian syllabics ᗷ, Armenian օ.
  for (const nick of ["\u13f4ob", "\ua4d0ob", "\u15f7ob", "b\u0585b"]) {
    assert.throws(() => validateNick(nick), NameError, JSON.stringify(nick));
  }
  // Two non-Latin scripts imitating Latin together (Cherokee Ᏼ, Armenian օ).
  assert.throws(() => validateNick("\u13f4\u0585\u13f4"), NameError);
  // UTS #39 "highly restrictive" combinations stay allowed, as do single scripts and Common characters.
  for (
    const nick of ["東京_alice", "たなか_tanaka", "カタカナ漢字ひらがな", "김민준_kim", "ㄅㄆ中文_zh", "ᏣᎳᎩ", "bob-2😀"]
  ) {
    assert.equal(validateNick(nick), nick);
  }
});

Deno.test("foldName treats Greek final sigma as sigma, so case-insensitive names stay one name", () => {
  // toLowerCase() turns a final capital Σ into ς, but σ in lower-case input stays σ.
  assert.equal(foldName("ΑΣ"), foldName("ασ"));
  assert.equal(foldName("ΟΔΟΣ"), foldName("οδοσ"));
  assert.equal(foldName("ΟΔΟΣ"), foldName("οδος"));
});

Deno.test({
  name: "DESIGN: Latin lookalikes within Latin (capital I for l, rn for m, vv for w, cl for d) fold together",
  ignore: true, // Proposal in the review: fold i and l together, and rn, vv, cl to m, w, d (UTS #39 skeletons do).
  fn: () => {
    for (
      const [lookalike, name] of [["aIice", "alice"], ["rnallory", "mallory"], ["vvalter", "walter"], [
        "cliane",
        "diane",
      ]]
    ) {
      assert.equal(foldName(lookalike), foldName(name), lookalike);
    }
  },
});

Deno.test("unassigned means by Unicode 16.0, as PROTOCOL.md says: 16.0's characters are accepted, 17.0's refused", () => {
  // Added in 16.0: Garay letter A, Cyrillic capital letter tje. Added in 17.0: Saudi riyal sign.
  assert.equal(validateNick("\u{10d40}"), "\u{10d40}");
  assert.equal(validateRoom("\u1c89"), "\u1c89");
  assert.throws(() => validateNick("\u20c1"), CONTROL_NICK, "a runtime with a newer Unicode: update PROTOCOL.md");
  // A receiver opening an envelope applies only the byte and NFC rules, so it still accepts such a name.
  checkNameBytes("\u20c1", { what: "envelope.from", max: MAX_NICK_BYTES });
});
