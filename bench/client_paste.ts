/**
 * bench:client: how fast the interactive client takes a long paste. A terminal hands a paste to the program in reads
 * of up to about 4 KiB; the client's screen (lib/client/screen.ts) gives plain text read in one go to readline whole.
 *
 * - In-process (default): the real Screen on a fake terminal, the paste fed in 4095-byte reads, timed until the
 *   line is entered; and, for comparison, node:readline fed the same text one key per read (what the client did
 *   before, quadratic: each key re-measures the whole line).
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

/** Milliseconds for the Screen to take `text` + Enter fed in terminal-sized reads. */
function screenPaste(text: string): number {
  const input = new FakeInput();
  const screen = new Screen({ input, output, maxLineBytes: 1 << 30 });
  let entered = "";
  screen.listen({ line: (l) => entered = l, refused: () => {}, over: () => {}, interrupt: () => {}, end: () => {} });
  screen.prompt("#general> ");
  const bytes = new TextEncoder().encode(text + "\r");
  const started = performance.now();
  for (let at = 0; at < bytes.length; at += READ_BYTES) input.emit("data", bytes.subarray(at, at + READ_BYTES));
  const ms = performance.now() - started;
  screen.end();
  if (entered !== text) throw new Error("the pasted line did not arrive whole");
  return ms;
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

function inProcess(): void {
  console.log(`in-process, the real Screen on a fake terminal, reads of ${READ_BYTES} bytes:`);
  const samples = { ascii: "x", mixed: "aé日👩‍💻 " };
  for (const [name, unit] of Object.entries(samples)) {
    for (const chars of [1024, 4096, PASTE_CHARS]) {
      const text = unit.repeat(Math.ceil(chars / unit.length)).slice(0, chars).replace(/[\uD800-\uDBFF]$/, "x");
      screenPaste(text); // warm up
      const runs = [0, 1, 2].map(() => screenPaste(text)).sort((a, b) => a - b);
      const ms = runs[1];
      console.log(
        `  ${name.padEnd(6)} ${String(text.length).padStart(6)} chars: ${ms.toFixed(1).padStart(7)} ms  ${
          rate(text.length, ms)
        }`,
      );
    }
  }
  console.log("node:readline one key per read (the client before; quadratic, so only up to 4096 characters):");
  for (const chars of [1024, 2048, 4096]) {
    const ms = keyByKey("x".repeat(chars));
    console.log(`  ascii  ${String(chars).padStart(6)} chars: ${ms.toFixed(1).padStart(7)} ms  ${rate(chars, ms)}`);
  }
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
    const text = "p".repeat(PASTE_CHARS);
    const cpuBefore = (await sampleProcesses([pid]))[0].cpu;
    const started = performance.now();
    await screen.paste(text + "\n");
    const m = await bob.next("message", { timeoutMs: 600_000 });
    const ms = performance.now() - started;
    const cpu = (await sampleProcesses([pid]))[0].cpu - cpuBefore;
    const opened = await openEnvelope(bob.keys!, { envelope: m.envelope, room: "general" });
    if (opened.plaintext.body !== text) throw new Error("the pasted line did not arrive whole");
    console.log("through tmux, the real client and server, paste to delivery:");
    console.log(
      `  ascii  ${String(PASTE_CHARS).padStart(6)} chars: ${ms.toFixed(1).padStart(7)} ms  ${rate(PASTE_CHARS, ms)}`,
    );
    console.log(`  client CPU for the paste: ${(cpu * 1000).toFixed(0)} ms (${rate(PASTE_CHARS, cpu * 1000)} of CPU)`);
  } finally {
    await screen.close();
    bob.close();
    await bob.ended;
    await server.program.stop();
    await Deno.remove(server.db.replace(/\/[^/]+$/, ""), { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  inProcess();
  if (Deno.args.includes("--tmux")) await throughTmux();
}
