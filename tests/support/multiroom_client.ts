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

import type { ChatEvent, ChatSession, ChatTarget, ConnectChat } from "../../lib/client/chat_session.ts";
import { parseClientFlags } from "../../lib/client/config.ts";
import type { OutboxItem } from "../../lib/client/outbox.ts";
import { SendError } from "../../lib/client/session.ts";
import { runTerminal } from "../../lib/client/terminal.ts";

const encoder = new TextEncoder();

/** A session that does what the terminal asks at once and tells the test. */
class ScriptedSession implements ChatSession {
  readonly online = true;
  readonly unsent = 0;
  readonly maxBody = 16384;
  readonly multiRoom = true;
  readonly rooms: string[] = [];
  nick: string;
  #onEvent: (event: ChatEvent) => void;
  #report: (call: Record<string, unknown>) => void;
  #seq = 0;

  constructor(nick: string, onEvent: (event: ChatEvent) => void, report: (call: Record<string, unknown>) => void) {
    this.nick = nick;
    this.#onEvent = onEvent;
    this.#report = report;
  }

  joinedRoom(name: string): string | undefined {
    return this.rooms.find((r) => r.toLowerCase() === name.toLowerCase());
  }

  pending(): OutboxItem[] {
    return [];
  }

  join(room: string) {
    this.#report({ call: "join", room });
    this.rooms.push(room);
    return Promise.resolve({ room, members: [this.nick, "dave", "erin"], created: false, history: 0 });
  }

  part(room: string): Promise<void> {
    this.#report({ call: "part", room });
    this.rooms.splice(this.rooms.indexOf(room), 1);
    return Promise.resolve();
  }

  say(target: ChatTarget, text: string, options: { type: "text" | "action" | "topic" }): OutboxItem {
    if ("room" in target && !this.rooms.includes(target.room)) throw new SendError(`not in #${target.room}`);
    this.#report({ call: "say", target, text, type: options.type });
    const id = crypto.randomUUID();
    const room = "room" in target ? target.room : "";
    const peer = "peer" in target ? { peer: target.peer } : {};
    const item = { id, room, ...peer, text: { type: options.type, body: text }, ts: Date.now() };
    this.#onEvent({ kind: "outbox", item: { ...item, state: "queued" } as OutboxItem });
    setTimeout(() => {
      this.#onEvent({ kind: "outbox", item: { ...item, state: "acked", seq: ++this.#seq } as OutboxItem });
    }, 10);
    return { ...item, state: "queued" } as OutboxItem;
  }

  who(room: string): Promise<string[]> {
    return Promise.resolve([this.nick, "dave", "erin", `(${room})`]);
  }

  listRooms(): Promise<{ name: string; members: number }[]> {
    return Promise.resolve(this.rooms.map((name) => ({ name, members: 3 })));
  }

  changeNick(nick: string): Promise<void> {
    const old = this.nick;
    this.nick = nick;
    this.#onEvent({ kind: "nick", old, new: nick });
    return Promise.resolve();
  }

  older(): Promise<{ shown: number; more: boolean }> {
    return Promise.resolve({ shown: 0, more: false });
  }

  drain(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.#report({ call: "close" });
    return Promise.resolve();
  }
}

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
    const session = new ScriptedSession(options.nick, options.onEvent, report);
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
  const code = await runTerminal(config, { connect });
  await writing;
  Deno.exit(code);
}
