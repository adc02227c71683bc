/**
 * The server log: one line per event in text or JSON, whatever its fields hold.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Logger } from "../lib/server/log.ts";

/** One text line per event, whatever a field holds: a value from the network never forges a line or moves a cursor. */
Deno.test("text log: a value with a newline, an escape or another control character is quoted and escaped", () => {
  const lines: string[] = [];
  const log = new Logger({ sink: (line) => lines.push(line) });
  const hostile = [
    "a\nINFO  forged event=1",
    "a\rb",
    "\x1b[2J\x1b]0;title\x07",
    "tab\there",
    "del\x7f",
    "c1\u0085next",
    "line\u2028sep",
    "bidi\u202eevil",
  ];
  for (const value of hostile) log.warn("limit", { room: value, plain: "ok" });
  assert.equal(lines.length, hostile.length);
  for (const [i, line] of lines.entries()) {
    assert.doesNotMatch(line, /[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/u, JSON.stringify(line));
    assert.match(line, / plain=ok$/);
    const quoted = line.match(/ room=("(?:[^"\\]|\\.)*")/)![1];
    assert.equal(JSON.parse(quoted), hostile[i]);
  }
});

Deno.test("text log: plain values stay unquoted", () => {
  const lines: string[] = [];
  new Logger({ sink: (line) => lines.push(line) }).info("connect", { remote: "127.0.0.1:5000", nick: "älice" });
  assert.match(lines[0], / connect remote=127\.0\.0\.1:5000 nick=älice$/);
});

Deno.test("json log: one valid JSON object per line, with no raw control, format or separator character", () => {
  const lines: string[] = [];
  const log = new Logger({ format: "json", sink: (line) => lines.push(line) });
  const value = "a\nb\x1b[2J\x7f\u0085\u2028\u202e";
  log.warn("limit", { room: value });
  assert.equal(lines.length, 1);
  assert.doesNotMatch(lines[0], /[\p{Cc}\u2028\u2029\u202a-\u202e]/u);
  assert.equal(JSON.parse(lines[0]).room, value);
});
