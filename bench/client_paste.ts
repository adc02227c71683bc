/**
 * bench:client: how fast the interactive client takes a long paste. A terminal hands a paste to the program in reads
 * of up to about 4 KiB; the client's screen (lib/client/screen.ts) decodes each read into keys (a run of plain text is
 * one key) and its line editor (line_editor.ts) segments only what an edit changes.
 *
 * - In-process (default): the real Screen on a fake terminal, the paste fed in 4095-byte reads (plain, and as a
 *   bracketed paste), timed until the line is entered, every redraw of the input included; the same 16 KiB fed one
 *   key per read (the worst case: a paste that arrives a character at a time); and, for comparison, node:readline fed
 *   one key per read (what the client did before issue 11, quadratic: each key re-measures the whole line).
 * - `--tmux`: the real client in tmux against the real server; a 16 KiB line is pasted with tmux's paste buffer and
 *   timed until another member receives it, with the client's CPU time from /proc.
 *
 * Prints characters per second. Usage: deno task bench:client [--tmux]
 *
 * @module
 */

import readline from "node:readline";
import { Screen } from "../lib/client/screen.ts";
import { sampleProcesses } from "./processes.ts";
import { openEnvelope } from "../lib/crypto.ts";
import { startServer } from "../tests/support/programs.ts";
import { FakeInput, fakeOutput } from "../tests/support/fake_terminal.ts";
import { TmuxScreen } from "../tests/support/tmux.ts";
import { WireClient } from "../tests/support/wire.ts";

const PASTE_CHARS = 16 * 1024;
/** A pseudo-terminal hands a waiting program at most this much per read. */
const READ_BYTES = 4095;

const output = fakeOutput();

/**
 * Milliseconds for the Screen to take `text` + Enter fed in reads of `readBytes` (as a bracketed paste when asked),
 * every redraw included.
 */
function screenPaste(text: string, options: { readBytes?: number; bracketed?: boolean } = {}): number {
  const input = new FakeInput();
  const screen = new Screen({ input, output, maxLineBytes: 1 << 30 });
  let entered = "";
  screen.listen({ line: (l) => entered = l, refused: () => {}, over: () => {}, interrupt: () => {}, end: () => {} });
  screen.prompt("#general> ");
  const encoder = new TextEncoder();
  const reads: Uint8Array[] = [];
  if (options.readBytes === undefined) {
    // One key per read: a grapheme at a time.
    for (const { segment } of new Intl.Segmenter(undefined, { granularity: "grapheme" }).segment(text)) {
      reads.push(encoder.encode(segment));
    }
    reads.push(encoder.encode("\r"));
  } else {
    const bytes = encoder.encode(options.bracketed ? `\x1b[200~${text}\x1b[201~\r` : text + "\r");
    for (let at = 0; at < bytes.length; at += options.readBytes) reads.push(bytes.subarray(at, at + options.readBytes));
  }
  const started = performance.now();
  for (const read of reads) input.emit("data", read);
  const ms = performance.now() - started;
  screen.end();
  if (entered !== text) throw new Error("the pasted line did not arrive whole");
  return ms;
}

/** The median of three runs after a warm-up. */
function median(run: () => number): number {
  run();
  return [run(), run(), run()].sort((a, b) => a - b)[1];
}

/** Milliseconds for plain node:readline to take `text` + Enter one key per read (the client before this change). */
function keyByKey(text: string): number {
  const input = new FakeInput();
  const rl = readline.createInterface({ input, output, terminal: true } as unknown as readline.ReadLineOptions);
  let entered = "";
  rl.on("line", (l) => entered = l);
  const started = performance.now();
  for (const ch of text + "\r") input.emit("data", new TextEncoder().encode(ch));
  const ms = performance.now() - started;
  rl.close();
  if (entered !== text) throw new Error("the typed line did not arrive whole");
  return ms;
}

function rate(chars: number, ms: number): string {
  return `${Math.round(chars / (ms / 1000)).toLocaleString("en")} chars/s`;
}

function row(name: string, chars: number, ms: number): string {
  return `  ${name.padEnd(6)} ${String(chars).padStart(6)} chars: ${ms.toFixed(1).padStart(7)} ms  ${rate(chars, ms)}`;
}

function inProcess(): void {
  const samples = { ascii: "x", mixed: "aé日👩‍💻 " };
  const texts = (unit: string, chars: number) =>
    unit.repeat(Math.ceil(chars / unit.length)).slice(0, chars).replace(/[\uD800-\uDBFF]$/, "x");
  for (const bracketed of [false, true]) {
    console.log(
      `in-process, the real Screen on a fake terminal, reads of ${READ_BYTES} bytes${
        bracketed ? ", a bracketed paste" : ""
      }:`,
    );
    for (const [name, unit] of Object.entries(samples)) {
      for (const chars of [1024, 4096, PASTE_CHARS]) {
        const text = texts(unit, chars);
        console.log(row(name, text.length, median(() => screenPaste(text, { readBytes: READ_BYTES, bracketed }))));
      }
    }
  }
  console.log("in-process, one key (grapheme) per read, every redraw included:");
  for (const [name, unit] of Object.entries(samples)) {
    for (const chars of [1024, 4096, PASTE_CHARS]) {
      const text = texts(unit, chars);
      console.log(row(name, text.length, median(() => screenPaste(text))));
    }
  }
  console.log("node:readline one key per read (the client before issue 11; quadratic, so only up to 4096 characters):");
  for (const chars of [1024, 2048, 4096]) console.log(row("ascii", chars, keyByKey("x".repeat(chars))));
}

async function throughTmux(): Promise<void> {
  const passphrase = "bench client passphrase 0a1b";
  const server = await startServer();
  const bob = await WireClient.member(server.port, "bob", { passphrase });
  const screen = await TmuxScreen.start(["--port", String(server.port), "--nick", "alice"], {
    env: { AESCHAT_PASSPHRASE: passphrase },
  });
  try {
    await screen.waitFor((t) => t.includes("#general> "), "the prompt", 60_000);
    const pid = await screen.clientPid();
    console.log("through tmux, the real client and server, paste to delivery:");
    for (const bracketed of [false, true]) {
      const text = (bracketed ? "q" : "p").repeat(PASTE_CHARS);
      const cpuBefore = (await sampleProcesses([pid]))[0].cpu;
      const started = performance.now();
      // A bracketed paste waits in the input line until Enter, as it does for a user.
      await screen.paste(bracketed ? text : text + "\n", { bracketed });
      if (bracketed) await screen.press("Enter");
      const m = await bob.next("message", { timeoutMs: 600_000 });
      const ms = performance.now() - started;
      const cpu = (await sampleProcesses([pid]))[0].cpu - cpuBefore;
      const opened = await openEnvelope(bob.keys!, { envelope: m.envelope, room: "general" });
      if (opened.plaintext.body !== text) throw new Error("the pasted line did not arrive whole");
      console.log(row(bracketed ? "brackt" : "ascii", PASTE_CHARS, ms));
      console.log(
        `  client CPU for the paste: ${(cpu * 1000).toFixed(0)} ms (${rate(PASTE_CHARS, cpu * 1000)} of CPU)`,
      );
    }
  } finally {
    await screen.close();
    bob.close();
    await bob.ended;
    await server.program.stop();
    await Deno.remove(server.db.replace(/\/[^/]+$/, ""), { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const unknown = Deno.args.filter((a) => a !== "--tmux");
  if (unknown.length > 0) {
    console.error(`aeschat bench:client: unknown argument ${unknown[0]} (only --tmux)`);
    Deno.exit(2);
  }
  inProcess();
  if (Deno.args.includes("--tmux")) await throughTmux();
}
