/**
 * The screen with a fake terminal: input as a terminal delivers it (a paste in one read, keys one by one, escape
 * sequences, a character split across reads), what reaches readline, and what is written out.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Screen, type ScreenEvents, type TerminalOutput } from "../lib/client/screen.ts";
import { FakeInput, fakeOutput } from "./support/fake_terminal.ts";

function fakeScreen(maxLineBytes = 16384, output?: TerminalOutput) {
  const input = new FakeInput();
  const writes: string[] = [];
  const screen = new Screen({ input, output: output ?? fakeOutput(writes), maxLineBytes });
  const got: string[] = [];
  const events: ScreenEvents = {
    line: (line) => got.push(`line ${line}`),
    refused: (line, bytes) => got.push(`refused ${line.length} ${bytes}`),
    over: (bytes) => got.push(`over ${bytes}`),
    interrupt: () => got.push("interrupt"),
    end: ({ closed }) => got.push(`end ${closed}`),
    switchTo: (index) => got.push(`switch ${index}`),
    cycle: (step) => got.push(`cycle ${step}`),
    complete: (text, cursor) => {
      got.push(`complete ${text}|${cursor}`);
      return text === "al" ? { text: "alice: ", cursor: 7 } : undefined;
    },
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

/** The zone as drawn last: the text after the last clearing (ESC[K). */
function lastDrawn(writes: string[]): string {
  const last = writes[writes.length - 1];
  return last.slice(last.lastIndexOf("\x1b[K") + 3);
}

Deno.test("printing above the prompt is one write: up over the zone, clear, the rows, footer, status, prompt", () => {
  const { input, screen, writes } = fakeScreen();
  try {
    screen.setFooter(["-- offline, retrying in 8 s; 2 unsent"]);
    screen.setStatus((width) => `[1:#general] ${width}`);
    input.type("half typed");
    writes.length = 0;
    screen.print("09:00:00 <bob> hello");
    assert.equal(writes.length, 1);
    // The cursor was on the prompt's row, under the footer and the status line: two rows up.
    assert.equal(
      writes[0],
      "\x1b[2A\r\x1b[C\x1b[J\r\x1b[K09:00:00 <bob> hello\r\n-- offline, retrying in 8 s; 2 unsent\r\n[1:#general] 120\r\n" +
        "#general> half typed\r\x1b[20C",
    );
  } finally {
    screen.end();
  }
});

Deno.test("a bracketed paste of several lines is one line with its line breaks: nothing of it runs until Enter", () => {
  const { input, screen, got, writes } = fakeScreen();
  try {
    input.type("\x1b[200~first line\r/quit\rthird line\x1b[201~");
    assert.deepEqual(got, []);
    assert.ok(lastDrawn(writes).includes("#general> first line\r\n          /quit\r\n          third line"));
    input.type("\r");
    assert.deepEqual(got, ["line first line\n/quit\nthird line"]);
    // Without bracketed paste, every line break is Enter.
    input.type("one\rtwo\r");
    assert.deepEqual(got.slice(1), ["line one", "line two"]);
  } finally {
    screen.end();
  }
});

Deno.test("Ctrl-C clears a half-typed line; on an empty line it asks to quit; an empty line sends nothing", () => {
  const { input, screen, got } = fakeScreen();
  try {
    input.type("half typed");
    input.type("\x03");
    assert.deepEqual(got, []);
    input.type("\r");
    input.type("   \r");
    assert.deepEqual(got, []);
    input.type("\x03");
    assert.deepEqual(got, ["interrupt"]);
  } finally {
    screen.end();
  }
});

Deno.test("Backspace over a ZWJ emoji and a flag takes each whole", () => {
  const { input, screen, got } = fakeScreen();
  try {
    input.type("ok 👩‍💻🇫🇷");
    input.type("\x7f");
    input.type("\x7f");
    input.type("!\r");
    assert.deepEqual(got, ["line ok !"]);
  } finally {
    screen.end();
  }
});

Deno.test("Alt-1..9, Ctrl-N and Ctrl-P switch conversations; Tab completes; keys go to a question while it is open", async () => {
  const { input, screen, got } = fakeScreen();
  try {
    input.type("\x1b2\x0e\x10");
    input.type("al\t\r");
    assert.deepEqual(got, ["switch 2", "cycle 1", "cycle -1", "complete al|2", "line alice: "]);
    const answer = screen.ask("quit anyway? y/N ");
    input.type("\x1b3\x0ey\r");
    assert.equal(await answer, "y");
    assert.equal(got.length, 5, "no switching while a question is open");
  } finally {
    screen.end();
  }
});

Deno.test("a secret answer is never written, and a half-typed line waits and comes back", async () => {
  const { input, screen, writes } = fakeScreen();
  try {
    input.type("half");
    const answer = screen.ask("passphrase for #ops: ", { secret: true });
    input.type("hunter2 is my passphrase");
    input.type("\x1b[200~pasted\rtoo\x1b[201~");
    input.type("\r");
    assert.equal(await answer, "hunter2 is my passphrasepastedtoo");
    assert.ok(!writes.join("").includes("hunter2"), "no echo of the secret");
    assert.ok(!writes.join("").includes("*"), "not even its length");
    assert.ok(lastDrawn(writes).startsWith("#general> half"));
    // The question stays printed, without its answer.
    assert.ok(writes.some((w) => w.includes("\x1b[Kpassphrase for #ops: \r\n")));
  } finally {
    screen.end();
  }
});

Deno.test("a resize redraws the zone: wider, the same rows are cleared; narrower, the rows the terminal re-wrapped", () => {
  const output = { ...fakeOutput(), columns: 100, rows: 40 } as TerminalOutput & { columns: number };
  const writes: string[] = [];
  let resize = () => {};
  Object.assign(output, {
    write: (text: string) => writes.push(text),
    on: (_event: string, listener: () => void) => resize = listener,
  });
  const { input, screen } = fakeScreen(16384, output);
  try {
    screen.setStatus(() => "s".repeat(60));
    input.type("x".repeat(70));
    // Zone: the status row (60 columns), the prompt row (10 + 70 = 80 columns), cursor at its end.
    writes.length = 0;
    output.columns = 40;
    resize();
    // At 40 columns the status row became 2 rows and the cursor's row 2 rows above the cursor: 2 + 2.
    assert.ok(writes[0].startsWith("\x1b[4A\r\x1b[C\x1b[J\r\x1b[K"), JSON.stringify(writes[0].slice(0, 12)));
    // Drawn again at 40: the status row cut to 39 columns, the line in rows of 39.
    writes.length = 0;
    output.columns = 100;
    resize();
    // Wider, a row stays a row: the status row and the two rows of the line above the cursor's.
    assert.ok(writes[0].startsWith("\x1b[3A\r\x1b[C\x1b[J\r\x1b[K"), JSON.stringify(writes[0].slice(0, 12)));
  } finally {
    screen.end();
  }
});

Deno.test("the bell, and the modes: raw input and bracketed paste on while the screen runs, off after", () => {
  const input = new FakeInput();
  const writes: string[] = [];
  const screen = new Screen({ input, output: fakeOutput(writes), maxLineBytes: 100 });
  assert.ok(input.isRaw);
  assert.ok(writes[0].includes("\x1b[?2004h"));
  screen.bell();
  assert.equal(writes[writes.length - 1], "\x07");
  screen.end();
  assert.ok(!input.isRaw);
  assert.ok(writes[writes.length - 1].endsWith("\x1b[?2004l"));
});

Deno.test("a coloured footer row is measured without its escapes, and one too wide is cut without them", () => {
  const { screen, writes } = fakeScreen();
  try {
    const dim = (text: string) => `\x1b[2m${text}\x1b[0m`;
    screen.setFooter([dim("x".repeat(110)), dim("y".repeat(130))]);
    const zone = lastDrawn(writes);
    assert.ok(zone.includes(dim("x".repeat(110)) + "\r\n"), "fits: kept with its colour");
    assert.ok(zone.includes("y".repeat(100)) && !zone.includes("\x1b[2my"), "too wide: cut, colour dropped");
    assert.ok(!zone.includes("y".repeat(120)));
  } finally {
    screen.end();
  }
});
