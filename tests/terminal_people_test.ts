/**
 * Habits of people at the keyboard, in-process: the real Chat (terminal.ts) with its view and screen on a fake
 * terminal over a scripted session, for lines typed faster than the commands before them finish.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { ConnectChat } from "../lib/client/chat_session.ts";
import { parseClientFlags } from "../lib/client/config.ts";
import { Home } from "../lib/client/home.ts";
import { runTerminal } from "../lib/client/terminal.ts";
import { FakeInput, fakeOutput } from "./support/fake_terminal.ts";
import { poll } from "./support/session_clients.ts";
import { ScriptedSession } from "./support/scripted_session.ts";

/** The client as kim in #general, with every call the session saw. */
async function typist() {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-people-" });
  const input = new FakeInput();
  const writes: string[] = [];
  const calls: Record<string, unknown>[] = [];
  const connect: ConnectChat = (opts) =>
    Promise.resolve(new ScriptedSession(opts.nick, { onEvent: opts.onEvent, report: (c) => calls.push(c) }));
  const finished = runTerminal(parseClientFlags(["--nick", "kim", "--port", "1"]), {
    connect,
    home: await Home.open(dir),
    input,
    output: fakeOutput(writes),
    colour: false,
  });
  await poll(() => writes.join("").includes("joined #general"), "the first room");
  return {
    input,
    calls,
    /** Where each line said went. */
    said: () => calls.filter((c) => c.call === "say").map((c) => ({ target: c.target, text: c.text })),
    stop: async () => {
      input.type("\x04");
      await finished;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("lines typed right after /join, /query, /switch or /part go where that command leads, not where it was typed", async () => {
  const t = await typist();
  try {
    // One chunk: every line reaches the client before the first command has run, as when typing fast or pasting
    // into a terminal without bracketed paste.
    t.input.type("before\r/join #ops\rin ops\r/query bob\rto bob\r/switch general\rin general\r/part ops\r");
    t.input.type("/switch ops\rstill general\r");
    await poll(() => t.said().length === 5, "five lines said");
    assert.deepEqual(t.said(), [
      { target: { room: "general" }, text: "before" },
      { target: { room: "ops" }, text: "in ops" },
      { target: { peer: "bob" }, text: "to bob" },
      { target: { room: "general" }, text: "in general" },
      // /switch to a room just left fails: the line stays in the conversation that is current.
      { target: { room: "general" }, text: "still general" },
    ]);
  } finally {
    await t.stop();
  }
});

Deno.test("a line typed before a /join still goes to the conversation it was typed in", async () => {
  const t = await typist();
  try {
    t.input.type("/join ops\r");
    await poll(() => t.calls.some((c) => c.call === "join" && c.room === "ops"), "#ops joined");
    // Alt-1 back to #general, then a line: it is typed in #general, and stays there.
    t.input.type("\x1b1here\r");
    await poll(() => t.said().length === 1, "one line said");
    assert.deepEqual(t.said(), [{ target: { room: "general" }, text: "here" }]);
  } finally {
    await t.stop();
  }
});
