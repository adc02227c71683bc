/**
 * The interactive terminal (terminal.ts) in-process: the real Chat with its view and screen on a fake terminal,
 * over a scripted session (tests/support/scripted_session.ts), for what a user sees across commands that span
 * several conversations: a room made by /join while another is current, then left.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { ChatEvent, ConnectChat } from "../lib/client/chat_session.ts";
import { parseClientFlags } from "../lib/client/config.ts";
import { Home } from "../lib/client/home.ts";
import { runTerminal } from "../lib/client/terminal.ts";
import { FakeInput, fakeOutput } from "./support/fake_terminal.ts";
import { poll } from "./support/session_clients.ts";
import { ScriptedSession } from "./support/scripted_session.ts";

/** What was written to the terminal, without its escapes and carriage returns. */
function plain(writes: string[]): string {
  // deno-lint-ignore no-control-regex
  return writes.join("").replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/\r/g, "");
}

/** How many times `part` occurs in `text`. */
const count = (text: string, part: string) => text.split(part).length - 1;

async function start(options: { newRooms?: string[] } = {}) {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-home-" });
  const home = await Home.open(dir);
  const input = new FakeInput();
  const writes: string[] = [];
  const calls: Record<string, unknown>[] = [];
  let deliver: (event: ChatEvent) => void = () => {};
  const connect: ConnectChat = (opts) => {
    deliver = opts.onEvent;
    return Promise.resolve(
      new ScriptedSession(opts.nick, {
        onEvent: opts.onEvent,
        report: (c) => calls.push(c),
        newRooms: options.newRooms,
      }),
    );
  };
  const config = parseClientFlags(["--nick", "kim", "--port", "1"]);
  const finished = runTerminal(config, { connect, home, input, output: fakeOutput(writes), colour: false });
  const text = () => plain(writes);
  await poll(() => text().includes("joined #general"), "the first room");
  return {
    input,
    text,
    calls,
    deliver: (event: ChatEvent) => deliver(event),
    /** Types a line and waits until the terminal printed `until`. */
    line: async (line: string, until: (text: string) => boolean, what: string) => {
      input.type(line + "\r");
      await poll(() => until(text()), what);
    },
    stop: async () => {
      input.type("\x04");
      await finished;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("a room made by /join from another room, then left: back there, its notices and passphrase not shown again", async () => {
  const t = await start({ newRooms: ["vault"] });
  try {
    await t.line("/join ops", (s) => s.includes("joined #ops"), "#ops joined");
    await t.line("/join vault --generate", (s) => s.includes("created #vault"), "#vault created");
    const generated = /passphrase for #vault: (\S+)/.exec(t.text());
    assert.ok(generated, t.text());
    const mark = t.text().length;
    await t.line("/leave", (s) => s.slice(mark).includes("left #vault"), "left #vault");
    // Whatever else is printed comes at once with the switch; give a late second line its chance.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const after = t.text().slice(mark);
    assert.match(after, /-- now in #ops/, "back in the previous conversation");
    assert.equal(count(after, "left #vault"), 1, `said once:\n${after}`);
    assert.ok(!after.includes(generated[1]), `the generated passphrase is never shown again:\n${after}`);
    for (const notice of ["does not exist yet", "deriving room key", "it is not shown again"]) {
      assert.ok(!after.includes(notice), `"${notice}" belongs to the join of #vault, not to #ops:\n${after}`);
    }
    assert.ok(after.endsWith("#ops> "), "the prompt names #ops");
    assert.deepEqual(t.calls.filter((c) => c.call === "part"), [{ call: "part", room: "vault" }]);
  } finally {
    await t.stop();
  }
});
