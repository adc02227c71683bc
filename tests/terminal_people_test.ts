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
import type { InvitationShown } from "../lib/client/session.ts";
import { FakeInput, fakeOutput } from "./support/fake_terminal.ts";
import { poll } from "./support/session_clients.ts";
import { ScriptedSession } from "./support/scripted_session.ts";

/**
 * The client as kim, starting in #general, with every call the session saw.
 *
 * @param options.lockedRooms rooms whose join asks for the passphrase
 * @param options.invitations the invitations the session holds
 */
async function typist(options: { lockedRooms?: string[]; invitations?: InvitationShown[] } = {}) {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-people-" });
  const input = new FakeInput();
  const writes: string[] = [];
  const calls: Record<string, unknown>[] = [];
  const connect: ConnectChat = (opts) =>
    Promise.resolve(
      new ScriptedSession(opts.nick, { ...options, onEvent: opts.onEvent, report: (c) => calls.push(c) }),
    );
  const finished = runTerminal(parseClientFlags(["--nick", "kim", "--port", "1"]), {
    connect,
    home: await Home.open(dir),
    input,
    output: fakeOutput(writes),
    colour: false,
  });
  return {
    input,
    calls,
    text: () => writes.join(""),
    /** Where each line said went. */
    said: () => calls.filter((c) => c.call === "say").map((c) => ({ target: c.target, text: c.text })),
    stop: async () => {
      input.type("\x04");
      await finished;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** {@link typist}, once in #general. */
async function typistInGeneral() {
  const t = await typist();
  await poll(() => t.text().includes("joined #general"), "the first room");
  return t;
}

Deno.test("lines typed right after /join, /query, /switch or /part go where that command leads, not where it was typed", async () => {
  const t = await typistInGeneral();
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
  const t = await typistInGeneral();
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

/** The client as kim, starting in #general, which asks for a passphrase; with invitations received. */
const invited = (invitations: InvitationShown[]) => typist({ lockedRooms: ["general"], invitations });

const invitation = (from: string, trust: InvitationShown["trust"]): InvitationShown => ({
  room: "general",
  from,
  to: "kim",
  fingerprint: "ab".repeat(20),
  trust,
  id: crypto.randomUUID(),
  ts: Date.now(),
  history: false,
});

Deno.test("typing /accept at the passphrase question of a room one is invited to accepts the invitation", async () => {
  const t = await invited([invitation("alice", "verified")]);
  try {
    await poll(() => t.text().includes("passphrase for #general (empty: accept alice ✓'s invitation): "), "asked");
    t.input.type("/accept general\r");
    await poll(() => t.text().includes("-- accepted alice's invitation to #general"), "accepted");
    assert.deepEqual(t.calls.filter((c) => c.call === "accept"), [{ call: "accept", room: "general" }]);
    assert.ok(!t.calls.some((c) => c.call === "passphrase"), "no passphrase tried");
  } finally {
    await t.stop();
  }
});

Deno.test("an invitation signed by a changed key is not offered at the passphrase question: a warning says what to check", async () => {
  const t = await invited([invitation("mallory", "changed")]);
  try {
    await poll(() => t.text().includes("passphrase for #general: "), "the plain passphrase question");
    assert.match(t.text(), /\[key changed\] mallory invites you to #general, signed by a key that differs/);
    assert.doesNotMatch(t.text(), /empty: accept/);
    // An empty answer declines: nothing is accepted silently.
    t.input.type("\r");
    await poll(() => t.text().includes("not joined #general"), "declined");
    assert.ok(!t.calls.some((c) => c.call === "accept"), "nothing accepted");
  } finally {
    await t.stop();
  }
});
