import assert from "node:assert/strict";
import { type Key, KeyDecoder } from "../lib/client/keys.ts";

/** Keys as short strings: text "x", paste «x» (+ "|" at its end), named keys as C-a, M-1, enter. */
function show(keys: Key[]): string[] {
  return keys.map((k) => {
    if (k.kind === "text") return JSON.stringify(k.text);
    if (k.kind === "paste") return `«${k.text}»${k.end ? "|" : ""}`;
    return `${k.ctrl ? "C-" : ""}${k.meta ? "M-" : ""}${k.shift ? "S-" : ""}${k.name}`;
  });
}

Deno.test("plain text comes as one key per run, however long, with Enter, Tab and Backspace named", () => {
  const keys = new KeyDecoder();
  assert.deepEqual(show(keys.push("hello world\rnext\ta\x7f\x08")), [
    '"hello world"',
    "enter",
    '"next"',
    "tab",
    '"a"',
    "backspace",
    "backspace",
  ]);
  const long = "x".repeat(5000);
  assert.deepEqual(show(keys.push(long)), [JSON.stringify(long)]);
});

Deno.test("CR LF is one Enter, even split across two reads; a lone LF is Enter too", () => {
  const keys = new KeyDecoder();
  assert.deepEqual(show(keys.push("a\r\nb\n")), ['"a"', "enter", '"b"', "enter"]);
  assert.deepEqual(show(keys.push("c\r")), ['"c"', "enter"]);
  assert.deepEqual(show(keys.push("\nd")), ['"d"']);
});

Deno.test("control keys, Alt with a letter or digit, arrows with modifiers, and the tilde keys", () => {
  const keys = new KeyDecoder();
  assert.deepEqual(show(keys.push("\x01\x03\x04\x0e\x10\x15\x17\x19\x1f")), [
    "C-a",
    "C-c",
    "C-d",
    "C-n",
    "C-p",
    "C-u",
    "C-w",
    "C-y",
    "C-_",
  ]);
  assert.deepEqual(show(keys.push("\x1b1\x1b9\x1bb\x1bF\x1b\x7f")), ["M-1", "M-9", "M-b", "M-S-f", "M-backspace"]);
  assert.deepEqual(show(keys.push("\x1b[A\x1b[B\x1b[C\x1b[D\x1bOH\x1bOF\x1b[1;5D\x1b[1;3C\x1b[Z")), [
    "up",
    "down",
    "right",
    "left",
    "home",
    "end",
    "C-left",
    "M-right",
    "S-tab",
  ]);
  assert.deepEqual(show(keys.push("\x1b[3~\x1b[1~\x1b[4~\x1b[5~\x1b[6~")), [
    "delete",
    "home",
    "end",
    "pageup",
    "pagedown",
  ]);
});

Deno.test("an escape sequence cut between reads is put together; a lone ESC waits, then is Escape", () => {
  const keys = new KeyDecoder();
  assert.deepEqual(show(keys.push("a\x1b")), ['"a"']);
  assert.ok(keys.waiting);
  assert.deepEqual(show(keys.push("[")), []);
  assert.deepEqual(show(keys.push("1;5")), []);
  assert.deepEqual(show(keys.push("Cb")), ["C-right", '"b"']);
  assert.deepEqual(show(keys.push("\x1b")), []);
  assert.deepEqual(show(keys.flush()), ["escape"]);
  assert.ok(!keys.waiting);
});

Deno.test("unknown escape sequences (function keys, mouse, focus) are dropped, never typed", () => {
  const keys = new KeyDecoder();
  assert.deepEqual(show(keys.push("a\x1b[15~\x1b[M !!\x1b[I\x1b[?1;2cb\x1bOPc")), ['"a"', '" !!"', '"b"', '"c"']);
  // A CSI that never ends is garbage once it is too long, not a sequence still arriving.
  assert.deepEqual(show(keys.push(`\x1b[${"1".repeat(40)}`)), []);
  assert.ok(!keys.waiting);
});

Deno.test("a bracketed paste is pasted text: line breaks kept as \\n, nothing in it is a key", () => {
  const keys = new KeyDecoder();
  assert.deepEqual(show(keys.push("x\x1b[200~one\r/quit\r\nthree\x03\x1b[A\x1b[201~y")), [
    '"x"',
    "«one\n/quit\nthree[A»|",
    '"y"',
  ]);
});

Deno.test("a paste across reads comes in pieces, with an end marker cut between two reads", () => {
  const keys = new KeyDecoder();
  assert.deepEqual(show(keys.push("\x1b[200~first\r")), ["«first\n»"]);
  assert.ok(keys.pasting);
  assert.deepEqual(show(keys.push("\nsecond\x1b[20")), ["«second»"]);
  assert.deepEqual(show(keys.push("1~\r")), ["«»|", "enter"]);
  assert.ok(!keys.pasting);
});

Deno.test("a UTF-8 character cut between reads is whole; C1 controls are dropped", () => {
  const keys = new KeyDecoder();
  const bytes = new TextEncoder().encode("é👩‍💻");
  assert.deepEqual(show(keys.push(bytes.subarray(0, 1))), []);
  assert.deepEqual(show(keys.push(bytes.subarray(1, 5))), ['"é"']);
  assert.deepEqual(show(keys.push(bytes.subarray(5))), [JSON.stringify("👩‍💻")]);
  assert.deepEqual(show(keys.push("a\u009bb")), ['"a"', '"b"']);
});
