/**
 * The screen with a fake terminal: input as a terminal delivers it (a paste in one read, keys one by one, escape
 * sequences, a character split across reads), what reaches readline, and what is written out.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Screen, type ScreenEvents } from "../lib/client/screen.ts";
import { FakeInput, fakeOutput } from "./support/fake_terminal.ts";

function fakeScreen(maxLineBytes = 16384) {
  const input = new FakeInput();
  const writes: string[] = [];
  const screen = new Screen({ input, output: fakeOutput(writes), maxLineBytes });
  const got: string[] = [];
  const events: ScreenEvents = {
    line: (line) => got.push(`line ${line}`),
    refused: (line, bytes) => got.push(`refused ${line.length} ${bytes}`),
    over: (bytes) => got.push(`over ${bytes}`),
    interrupt: () => got.push("interrupt"),
    end: ({ closed }) => got.push(`end ${closed}`),
  };
  screen.listen(events);
  screen.prompt("#general> ");
  return { input, screen, writes, got };
}

Deno.test("a paste of several lines in one read gives every line, in order", () => {
  const { input, screen, got } = fakeScreen();
  try {
    input.type("order 1\r/me order 2\rorder 3\r//order 4\rorder 5\r");
    assert.deepEqual(got, ["line order 1", "line /me order 2", "line order 3", "line //order 4", "line order 5"]);
  } finally {
    screen.end();
  }
});

Deno.test("keys one at a time, a character split across reads, and escape sequences still work", () => {
  const { input, screen, got } = fakeScreen();
  try {
    for (const key of "hi") input.type(key);
    input.type("\r");
    const snow = new TextEncoder().encode("☃x\r");
    input.type(snow.subarray(0, 1));
    input.type(snow.subarray(1));
    // Up recalls the last line; the escape sequence split across two reads still works.
    input.type("\x1b[");
    input.type("A");
    input.type("\r");
    assert.deepEqual(got, ["line hi", "line ☃x", "line ☃x"]);
  } finally {
    screen.end();
  }
});

Deno.test("Ctrl-D on an empty line asks to end; on a line with text it does not", () => {
  const { input, screen, got } = fakeScreen();
  try {
    input.type("abc");
    input.type("\x04");
    assert.deepEqual(got, []);
    input.type("\x15"); // Ctrl-U
    input.type("\x04");
    assert.deepEqual(got, ["end false"]);
  } finally {
    screen.end();
  }
});

Deno.test("a line going over the limit is reported once, refused on Enter, and stays in the input line", () => {
  const { input, screen, got } = fakeScreen(100);
  try {
    input.type(`${"x".repeat(90)} `);
    input.type("y".repeat(20));
    input.type("z");
    assert.deepEqual(got, ["over 111"]);
    input.type("\r");
    assert.deepEqual(got, ["over 111", "refused 112 112"]);
    // Still there: shorten it by a word and send it.
    input.type("\x17"); // Ctrl-W
    input.type("\r");
    assert.deepEqual(got.slice(2), [`line ${"x".repeat(90)} `]);
  } finally {
    screen.end();
  }
});

Deno.test("printing above the prompt is one write: clear from the footer, the rows, the footer, then the prompt", () => {
  const { input, screen, writes } = fakeScreen();
  try {
    screen.setFooter(["-- offline, retrying in 8 s; 2 unsent"]);
    input.type("half typed");
    writes.length = 0;
    screen.print("09:00:00 <bob> hello");
    assert.ok(writes[0].startsWith("\x1b[1A\r\x1b[J09:00:00 <bob> hello\n-- offline, retrying in 8 s; 2 unsent\n"));
    assert.ok(writes.slice(1).join("").includes("#general> half typed"), JSON.stringify(writes));
  } finally {
    screen.end();
  }
});
