/**
 * The view in-process: session events into conversations and onto a fake terminal (what is printed, the status line,
 * the footer, the bell), for what the tmux tests cannot set up: a room whose canonical spelling differs from the
 * one typed, history with a topic, mentions in history, failed lines kept for /retry, pending lines per conversation.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { ChatEvent } from "../lib/client/chat_session.ts";
import type { ShownMessage } from "../lib/client/session.ts";
import { ConversationView } from "../lib/client/conversation_view.ts";
import type { OutboxItem } from "../lib/client/outbox.ts";
import { Screen } from "../lib/client/screen.ts";
import { FakeInput, fakeOutput } from "./support/fake_terminal.ts";

function setup() {
  const writes: string[] = [];
  const screen = new Screen({ input: new FakeInput(), output: fakeOutput(writes), maxLineBytes: 16384 });
  const view = new ConversationView(screen, { colour: false, bell: true, highlight: false });
  view.nick = "alice";
  view.joined("general", { members: ["alice", "bob"] });
  view.startPrompt();
  const out = () => writes.join("");
  return { screen, view, writes, out };
}

let seq = 0;
function message(room: string, text: string, options: Partial<ShownMessage> = {}): ChatEvent {
  return {
    kind: "message",
    message: {
      room,
      seq: ++seq,
      sent_at: Date.now(),
      from: "bob",
      ts: Date.now(),
      id: String(seq),
      type: "text",
      text,
      history: false,
      fingerprint: "0db574c5ff390ba1982dd2d2a404cd1c51a1a791",
      trust: "pinned",
      marks: [],
      ...options,
    },
  };
}

function item(room: string, body: string, state: OutboxItem["state"], reason?: string): OutboxItem {
  return { id: body, room, text: { type: "text", body }, ts: Date.now(), state, ...(reason ? { reason } : {}) };
}

Deno.test("a room joined under another spelling than typed is current from its first line, history in place", () => {
  const { screen, view, out } = setup();
  try {
    view.expect("ops");
    view.onEvent(message("Ops", "from the history", { history: true }));
    assert.equal(view.currentKey, "#Ops");
    view.onEvent(message("Ops", "deploy at 3", { history: true, type: "topic", from: "dave" }));
    view.joined("Ops", { members: ["alice", "dave"] });
    view.expect(undefined);
    assert.equal(view.conversations.get("#Ops")!.topic, "deploy at 3");
    const text = out();
    assert.ok(text.indexOf("\x1b[K-- history\r\n") < text.indexOf("<bob> from the history\r\n"), text);
    assert.ok(!text.includes("new since you last looked"), "printed as it came, not on a switch");
    assert.match(out(), /\d -- dave set the topic: deploy at 3/);
    assert.ok(out().includes("[2:#Ops] · topic: deploy at 3"), "the topic in the status line");
    assert.ok(out().endsWith("#Ops> \r\x1b[6C"), "the prompt names it");
  } finally {
    screen.end();
  }
});

Deno.test("a mention rings the bell once when live, never for history or one's own line; elsewhere it is counted", () => {
  const { screen, view, writes } = setup();
  try {
    const bells = () => writes.filter((w) => w === "\x07").length;
    view.onEvent(message("general", "alice: old news", { history: true }));
    view.onEvent(message("general", "alice, you there?", { from: "alice" }));
    assert.equal(bells(), 0);
    view.onEvent(message("general", "hey ALICE"));
    assert.equal(bells(), 1);
    view.onEvent(message("ops", "ping alice"));
    assert.equal(bells(), 2);
    assert.deepEqual(view.conversations.summary()[1], {
      key: "#ops",
      index: 2,
      unread: 1,
      mentions: 1,
      current: false,
    });
  } finally {
    screen.end();
  }
});

Deno.test("own lines: pending in the footer of their conversation only, then shown; a failed one is kept for /retry", () => {
  const { screen, view, out, writes } = setup();
  try {
    view.conversations.open("room", "ops");
    view.onEvent({ kind: "outbox", item: item("general", "here", "queued") });
    view.onEvent({ kind: "outbox", item: item("ops", "there", "queued") });
    let zone = writes[writes.length - 1];
    assert.match(zone, /--:--:-- <alice> here\r\n-- 1 unsent in other conversations\r\n/);
    assert.ok(!zone.includes("there"));
    view.onEvent({ kind: "outbox", item: item("general", "here", "acked") });
    // deno-lint-ignore no-control-regex
    assert.ok(writes.some((w) => /\x1b\[K\d\d:\d\d:\d\d <alice> here\r\n/.test(w)), "shown as stored");
    zone = writes[writes.length - 1];
    assert.ok(zone.endsWith("\x1b[K-- 1 unsent in other conversations\r\n[1:#general] 2:#ops\r\n#general> \r\x1b[10C"));
    view.onEvent({ kind: "outbox", item: item("general", "lost", "queued") });
    view.onEvent({ kind: "outbox", item: item("general", "lost", "failed", "refused") });
    assert.match(out(), /<alice> lost {2}✗ not stored: refused/);
    assert.deepEqual(view.takeFailed().map((i) => i.text.body), ["lost"]);
    assert.deepEqual(view.takeFailed(), [], "taken once");
  } finally {
    screen.end();
  }
});

Deno.test("an invitation sent is said in the room it is to, opens no direct conversation, and never shows its secret", () => {
  const { screen, view, out } = setup();
  try {
    const body = JSON.stringify({ room: "general", master: "c2VjcmV0IG1hc3Rlcg==" });
    const invite = (state: OutboxItem["state"]): OutboxItem => ({
      id: "i1",
      room: "",
      to: "bob",
      text: { type: "invite", body },
      ts: Date.now(),
      state,
    });
    view.onEvent({ kind: "outbox", item: invite("queued") });
    view.onEvent({ kind: "outbox", item: invite("acked") });
    assert.match(out(), /-- you invited bob to #general\r\n/);
    assert.equal(view.conversations.get("@bob"), undefined, "no conversation with bob for it");
    assert.ok(!out().includes("c2VjcmV0"), "the secret never shown");
  } finally {
    screen.end();
  }
});

Deno.test("presence keeps the members for completion, and completion leaves this client's nick out", () => {
  const { screen, view } = setup();
  try {
    view.onEvent({ kind: "presence", event: "join", room: "general", nick: "carol" });
    view.onEvent({ kind: "presence", event: "nick", room: "general", nick: "bobby", old: "bob" });
    view.onEvent({ kind: "presence", event: "leave", room: "general", nick: "carol" });
    const sources = view.completion(["join"], () => undefined);
    assert.deepEqual(sources.nicks, ["bobby"]);
    assert.deepEqual(sources.conversations, ["#general"]);
  } finally {
    screen.end();
  }
});
