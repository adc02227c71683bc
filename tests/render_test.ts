import assert from "node:assert/strict";
import {
  clockTime,
  displayNick,
  displayWidth,
  fitRow,
  formatDay,
  formatJson,
  formatMessage,
  formatStatus,
  localDay,
  MESSAGE_INDENT,
  nickColour,
  sanitize,
  wrapRows,
} from "../lib/client/render.ts";
import type { ShownMessage } from "../lib/client/session.ts";

const message: ShownMessage = {
  room: "general",
  seq: 7,
  from: "alice",
  ts: new Date(2026, 10, 22, 9, 5, 3).getTime(),
  id: "AAAAAAAAAAAAAAAAAAAAAA==",
  type: "text",
  text: "hello",
  history: false,
};

Deno.test("sanitize neutralizes escape sequences, other controls and bidi overrides, and keeps one line", () => {
  assert.equal(sanitize("a\u001b[2Jb"), "a\uFFFD[2Jb");
  assert.equal(sanitize("one\ntwo\r\nthree"), "one \u21b5 two \u21b5 three");
  assert.equal(sanitize("tab\there"), "tab here");
  assert.equal(sanitize("\u0007\u007f\u009b\u202e\u2066"), "\uFFFD".repeat(5));
  assert.equal(sanitize("héllo 👋 日本"), "héllo 👋 日本");
});

Deno.test("clockTime is the local HH:MM:SS of a timestamp", () => {
  assert.equal(clockTime(message.ts), "09:05:03");
});

Deno.test("nickColour is stable per nick and spreads different nicks over the palette", () => {
  assert.equal(nickColour("alice"), nickColour("alice"));
  const colours = new Set(["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"].map(nickColour));
  assert.ok(colours.size >= 4, `only ${colours.size} colours for 8 nicks`);
});

Deno.test("formatMessage gives `HH:MM:SS <nick> text`, actions as `* nick`, and colours only when asked", () => {
  assert.equal(formatMessage(message, { colour: false }), "09:05:03 <alice> hello");
  assert.equal(
    formatMessage({ ...message, type: "action", text: "waves" }, { colour: false }),
    "09:05:03 * alice waves",
  );
  assert.equal(formatMessage({ ...message, history: true }, { colour: false }), "09:05:03 <alice> hello");
  const coloured = formatMessage(message, { colour: true });
  assert.ok(coloured.includes(`\x1b[38;5;${nickColour("alice")}malice\x1b[0m`), coloured);
  assert.ok(formatMessage({ ...message, history: true }, { colour: true }).startsWith("\x1b[2m"), "history dimmed");
  assert.equal(
    formatMessage({ ...message, text: "x\u001b]0;pwned\u0007" }, { colour: false }),
    "09:05:03 <alice> x\uFFFD]0;pwned\uFFFD",
  );
});

Deno.test("formatJson has exactly the documented fields in order, with the text unescaped", () => {
  const line = formatJson({ ...message, text: "a\nb" });
  assert.deepEqual(Object.keys(JSON.parse(line)), ["room", "seq", "from", "ts", "id", "type", "text", "history"]);
  assert.equal(JSON.parse(line).text, "a\nb");
  assert.ok(!line.includes("\n"));
});

Deno.test("formatStatus marks status and warnings so they cannot pass for messages", () => {
  assert.equal(formatStatus("bob joined", { colour: false }), "-- bob joined");
  assert.equal(formatStatus("bad\nthing", { colour: false, warning: true }), "!! bad \u21b5 thing");
});

/** Splits as Python's str.splitlines() does: what a script reading our output may split on. */
function splitlines(text: string): string[] {
  // deno-lint-ignore no-control-regex
  return text.split(/\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]/);
}

Deno.test("sanitize leaves no line break of any kind: a forged line after U+2028 stays on the same line", () => {
  const attack = "build ok\u2028 23:59:59 <alice> approved: deploy to prod";
  const line = formatMessage({ ...message, from: "mallory", text: attack }, { colour: false });
  assert.equal(splitlines(line).length, 1, line);
  assert.equal(line, "09:05:03 <mallory> build ok \u21b5  23:59:59 <alice> approved: deploy to prod");
  for (const br of ["\u2029", "\x85", "\v", "\f", "\x1c", "\x1d", "\x1e", "\r", "\n", "\r\n"]) {
    assert.equal(splitlines(sanitize(`a${br}b`)).length, 1, JSON.stringify(br));
  }
});

Deno.test("sanitize neutralizes every bidi control and keeps ZWJ, ZWNJ, variation selectors and tag sequences", () => {
  const bidi = [
    "\u200e",
    "\u200f",
    "\u061c",
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
  ];
  for (const c of bidi) assert.equal(sanitize(`a${c}b`), "a\uFFFDb", `U+${c.codePointAt(0)!.toString(16)}`);
  for (const c of ["\u0000", "\u0007", "\u001b", "\u007f", "\u0080", "\u009b"]) {
    assert.equal(sanitize(`a${c}b`), "a\uFFFDb");
  }
  const kept = [
    "👩\u200d💻", // ZWJ emoji
    "می\u200cخواهم", // ZWNJ in Persian
    "क्\u200dष", // ZWJ in Devanagari
    "❤\ufe0f", // variation selector 16
    "🏴\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}", // Scotland: tag sequence
    "e\u0301", // combining mark
  ];
  for (const text of kept) assert.equal(sanitize(text), text);
});

Deno.test("displayNick collapses runs of white space, trims, and cuts a very long nick", () => {
  assert.equal(displayNick(`dave${" ".repeat(150)}23:59:59 <carol> ok`), "dave 23:59:59 <carol> ok");
  assert.equal(displayNick("\u3000 x\u00a0\u00a0y \t"), "x y");
  assert.equal([...displayNick("n".repeat(200))].length, 48);
  assert.ok(displayNick("n".repeat(200)).endsWith("…"));
  assert.equal(displayNick("bo\u202eb"), "bo\uFFFDb");
});

Deno.test("a wrapped message has indented continuation rows that never start like a message", () => {
  const text = `${"w".repeat(105)}23:59:59 <carol> ok from me, ship it`;
  const rows = formatMessage({ ...message, from: "bob", text }, { colour: false, width: 120 }).split("\n");
  assert.equal(rows.length, 2);
  assert.match(rows[0], /^09:05:03 <bob> w+$/);
  assert.ok(rows[1].startsWith(" ".repeat(MESSAGE_INDENT)), rows[1]);
  assert.ok(rows[1].endsWith("23:59:59 <carol> ok from me, ship it"), rows[1]);
  // Words wrap whole when they fit on a row.
  assert.deepEqual(wrapRows("09:00:00 <bob> ", "one two three four", { width: 24, indent: 9 }), [
    "09:00:00 <bob> one two",
    "         three four",
  ]);
});

Deno.test("wrapRows: whatever the text, no row is wider than the terminal allows, and every continuation is indented", () => {
  const alphabet = ["a", "b", " ", "  ", "é", "日", "本", "👩\u200d💻", "e\u0301", "ü", "x".repeat(30), "ق", "ш"];
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let round = 0; round < 300; round++) {
    const width = 20 + Math.floor(random() * 100);
    let text = "";
    for (let i = 0; i < 80; i++) text += alphabet[Math.floor(random() * alphabet.length)];
    const rows = wrapRows("12:00:00 <someone> ", sanitize(text), { width, indent: MESSAGE_INDENT });
    for (const [i, row] of rows.entries()) {
      assert.ok(displayWidth(row) <= width - 1, `row ${i} of ${JSON.stringify(text)} at width ${width}: ${row}`);
      if (i > 0) assert.ok(row.startsWith(" ".repeat(MESSAGE_INDENT)), row);
      if (i > 0) assert.doesNotMatch(row, /^\d\d:\d\d:\d\d /);
    }
    // Nothing is lost but spaces at the breaks.
    assert.equal(rows.join("").replace(/ /g, ""), `12:00:00<someone>${sanitize(text)}`.replace(/ /g, ""));
  }
});

Deno.test("this client's own line: --:--:-- while pending, the reason when it failed", () => {
  assert.equal(formatMessage(message, { colour: false, pending: true }), "--:--:-- <alice> hello");
  assert.equal(
    formatMessage(message, { colour: false, failed: "the server could not store it" }),
    "09:05:03 <alice> hello  \u2717 not stored: the server could not store it",
  );
  assert.ok(formatMessage(message, { colour: true, pending: true }).startsWith("\x1b[2m"), "pending is dim");
  assert.ok(formatMessage(message, { colour: true, failed: "x" }).startsWith("\x1b[31m"), "failed is red");
});

Deno.test("fitRow cuts to one row with an ellipsis", () => {
  assert.equal(fitRow("short", 80), "short");
  assert.equal(fitRow("a very long status line", 10), "a very …");
  assert.ok(displayWidth(fitRow("日".repeat(100), 30)) <= 29);
});

Deno.test("a multi-line message: each line starts a row indented like a wrapped one; without a width it stays one line", () => {
  const multi = { ...message, text: "first\n23:59:59 <carol> ok from me\r\nthird\u2028not a row" };
  assert.deepEqual(formatMessage(multi, { colour: false, width: 80 }).split("\n"), [
    "09:05:03 <alice> first",
    `${" ".repeat(MESSAGE_INDENT)}23:59:59 <carol> ok from me`,
    `${" ".repeat(MESSAGE_INDENT)}third \u21b5 not a row`,
  ]);
  assert.equal(
    formatMessage(multi, { colour: false }),
    "09:05:03 <alice> first \u21b5 23:59:59 <carol> ok from me \u21b5 third \u21b5 not a row",
  );
  // The reason a line failed goes after its last line.
  assert.match(formatMessage({ ...message, text: "a\nb" }, { colour: false, width: 80, failed: "x" }), /\n {9}b {2}✗/);
});

Deno.test("a message from another day than now carries its date; today's does not", () => {
  const day = 24 * 3600 * 1000;
  assert.equal(formatMessage(message, { colour: false, now: message.ts + 60_000 }), "09:05:03 <alice> hello");
  assert.equal(formatMessage(message, { colour: false, now: message.ts + day }), "2026-11-22 09:05:03 <alice> hello");
  assert.equal(
    formatMessage(message, { colour: false, now: message.ts + day, pending: true }),
    "--:--:-- <alice> hello",
  );
  assert.equal(localDay(new Date(2026, 2, 2, 23, 59).getTime()), "2026-03-02");
  assert.equal(formatDay(new Date(2026, 2, 2, 9).getTime(), { colour: false }), "-- Monday, 2026-03-02");
  // The nick keeps its colour after a date.
  const coloured = formatMessage(message, { colour: true, now: message.ts + day });
  assert.ok(coloured.startsWith(`2026-11-22 09:05:03 <\x1b[38;5;${nickColour("alice")}malice\x1b[0m>`), coloured);
});

Deno.test("a mention is bold (yellow with colour), even without colour; a presence line carries its time", () => {
  assert.equal(formatMessage(message, { colour: false, mention: true }), "\x1b[1m09:05:03 <alice> hello\x1b[0m");
  assert.ok(formatMessage(message, { colour: true, mention: true }).startsWith("\x1b[1;33m09:05:03"));
  assert.equal(
    formatStatus("bob joined #general", { colour: false, ts: message.ts }),
    "09:05:03 -- bob joined #general",
  );
  assert.deepEqual(
    formatStatus("bob joined a room whose name is long", { colour: false, ts: message.ts, width: 30 }).split("\n"),
    ["09:05:03 -- bob joined a room", "            whose name is", "            long"],
  );
});
