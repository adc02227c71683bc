/**
 * The real interactive terminal (lib/client/terminal.ts) on a scripted session with several rooms per connection,
 * topics and direct conversations: what a protocol v2 session will feed it, before that session exists. Run in tmux
 * by tests/e2e_rooms_test.ts with the client's flags and permissions.
 *
 * The test controls it over TCP: the program dials 127.0.0.1:$AESCHAT_CONTROL_PORT, and then
 * - reads JSON lines from the test, each a session event to deliver (`{"kind":"message","message":{…}}`, presence,
 *   direct, parted…), as the session would;
 * - writes a JSON line for every call the terminal makes that a server would see: `{"call":"join","room":"ops"}`,
 *   `{"call":"say","target":{"room":"ops"},"text":"hi","type":"text"}`, `{"call":"part","room":"ops"}`,
 *   `{"call":"close"}`.
 * Joins succeed at once with the members `[nick, "dave", "erin"]`; what is said is acknowledged at once.
 *
 * @module
 */

import type { ChatEvent, ConnectChat } from "../../lib/client/chat_session.ts";
import { parseClientFlags } from "../../lib/client/config.ts";
import { homePath } from "../../lib/client/home.ts";
import { runTerminal } from "../../lib/client/terminal.ts";
import { ScriptedSession } from "./scripted_session.ts";

const encoder = new TextEncoder();

if (import.meta.main) {
  const config = parseClientFlags(Deno.args);
  const control = await Deno.connect({ hostname: "127.0.0.1", port: Number(Deno.env.get("AESCHAT_CONTROL_PORT")) });
  const writer = control.writable.getWriter();
  let writing = Promise.resolve();
  const report = (call: Record<string, unknown>) => {
    writing = writing.then(() => writer.write(encoder.encode(JSON.stringify(call) + "\n")));
  };
  let deliver: (event: ChatEvent) => void = () => {};
  const connect: ConnectChat = (options) => {
    const session = new ScriptedSession(options.nick, { onEvent: options.onEvent, report });
    deliver = options.onEvent;
    return Promise.resolve(session);
  };
  (async () => {
    let buffered = "";
    const decoder = new TextDecoder();
    for await (const chunk of control.readable) {
      buffered += decoder.decode(chunk, { stream: true });
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line.trim() !== "") deliver(JSON.parse(line));
      }
    }
  })();
  const code = await runTerminal(config, { connect, homeDir: homePath((name) => Deno.env.get(name)) });
  await writing;
  Deno.exit(code);
}
