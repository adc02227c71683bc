import assert from "node:assert/strict";
import { clockTime, formatJson, formatMessage, formatStatus, nickColour, sanitize } from "../lib/client/render.ts";
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
