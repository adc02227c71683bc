/**
 * End-to-end tests of the interactive client: the real client.ts runs in a real terminal (tmux, on a private socket
 * per test) against the real server, and the tests read the screen. The other members are raw protocol clients.
 *
 * Nothing here waits a fixed time before asserting: every check polls the screen until a deadline, and a check that
 * something did NOT happen first waits for a later, positive sign (a marker typed after the keys under test, or a
 * message sent after the one that must not show).
 *
 * @module
 */

import assert from "node:assert/strict";
import { dirname } from "node:path";
import { COMMANDS, helpLines } from "../lib/client/commands.ts";
import { nickColour } from "../lib/client/render.ts";
import { openEnvelope } from "../lib/crypto.ts";
import { type ServerProcess, startServer } from "./support/programs.ts";
import { TmuxScreen as Screen } from "./support/tmux.ts";
import { type FrameTransform, parseBody, TcpProxy } from "./support/proxy.ts";
import { WireClient } from "./support/wire.ts";

const PASSPHRASE = "terminal test passphrase 77";
/** Keeps key derivation fast for rooms the terminal client creates. */
const FAST = ["--iterations", "100000", "--min-iterations", "100000"];

/** A raw protocol client in `room`. */
const member = (port: number, nick: string, options: { room?: string; passphrase?: string } = {}) =>
  WireClient.member(port, nick, { passphrase: options.passphrase ?? PASSPHRASE, room: options.room });

/** The text of the next message `client` receives. */
async function nextText(client: WireClient): Promise<{ from: string; text: string }> {
  const m = await client.next("message");
  const opened = await openEnvelope(client.keys!, { envelope: m.envelope, room: client.room });
  return { from: m.envelope.from, text: opened.plaintext.body };
}

async function stopAll(server: ServerProcess | undefined, screen: Screen | undefined, clients: WireClient[]) {
  await screen?.close();
  for (const c of clients) c.close();
  await server?.program.stop().catch(() => {});
  if (server) await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
}

const count = (text: string, needle: string) => text.split(needle).length - 1;
const TIME = String.raw`\d\d:\d\d:\d\d`;
const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

Deno.test("a new room: the nick is asked, a weak passphrase needs confirmation, and declining creates nothing", async () => {
  const server = await startServer();
  let screen: Screen | undefined;
  const clients: WireClient[] = [];
  // One home for both runs: the nick alice is registered to the identity key in it at the first login.
  const home = await Deno.makeTempDir({ prefix: "aeschat-home-" });
  try {
    screen = await Screen.start(["--port", String(server.port), ...FAST], { env: { AESCHAT_HOME: home } });
    await screen.waitFor((t) => t.includes("nick:"), "the nick prompt");
    await screen.line("alice");
    await screen.waitFor((t) => t.includes("#general does not exist yet: creating it"), "the creation notice");
    await screen.waitFor((t) => t.includes("choose a passphrase for #general"), "the passphrase prompt");
    await screen.line("tooshort");
    let text = await screen.waitFor((t) => t.includes("create the room with it anyway? [y/N]"), "the confirmation");
    assert.match(text, /!! this passphrase is shorter than 12 characters/);
    await screen.line("n");
    assert.equal(await screen.exitCode(), 0, "declining to create the first room is the user's choice");
    text = await screen.text();
    assert.match(text, /-- not joined #general/);
    assert.ok(!text.includes("tooshort"), `the passphrase was never echoed:\n${text}`);
    await screen.close();

    // Nothing was created: the next client is told again that the room does not exist, and answers y this time.
    screen = await Screen.start(["--port", String(server.port), "--nick", "alice", ...FAST], {
      env: { AESCHAT_HOME: home },
    });
    await screen.waitFor((t) => t.includes("#general does not exist yet: creating it"), "the creation notice again");
    await screen.waitFor((t) => t.includes("choose a passphrase for #general"), "the passphrase prompt");
    await screen.line("tooshort");
    await screen.waitFor((t) => t.includes("create the room with it anyway? [y/N]"), "the confirmation");
    await screen.line("y");
    await screen.waitFor((t) => t.includes("repeat the passphrase"), "the repeat prompt");
    await screen.line("tooshort");
    text = await screen.waitFor((t) => t.includes("#general> "), "the chat prompt");
    assert.match(text, /-- deriving room key \(100000 iterations\): done in/);
    assert.match(text, /-- created #general: alice is here/);
    assert.ok(!text.includes("tooshort"), `the passphrase was never echoed:\n${text}`);
    // The room really has that passphrase: a raw member gets in with it.
    const bob = await member(server.port, "bob", { passphrase: "tooshort" });
    clients.push(bob);
    await screen.waitFor((t) => t.includes("-- bob joined #general"), "bob's presence");
  } finally {
    await stopAll(server, screen, clients);
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("a typed passphrase never shows and cannot be brought back by history, yank or undo", async () => {
  const server = await startServer();
  let screen: Screen | undefined;
  const clients: WireClient[] = [];
  try {
    screen = await Screen.start(["--port", String(server.port), ...FAST]);
    await screen.waitFor((t) => t.includes("nick:"), "the nick prompt");
    await screen.line("alice");
    await screen.waitFor((t) => t.includes("choose a passphrase for #general"), "the passphrase prompt");
    // A slip corrected with Ctrl-U (which keeps the killed text for Ctrl-Y), then the real passphrase.
    await screen.type(PASSPHRASE.slice(0, 15));
    await screen.press("C-u");
    await screen.line(PASSPHRASE);
    await screen.waitFor((t) => t.includes("repeat the passphrase"), "the repeat prompt");
    await screen.line(PASSPHRASE);
    let text = await screen.waitFor((t) => t.includes("#general> "), "the chat prompt");
    assert.match(text, /-- created #general: alice is here/);
    // The hidden prompts stay on screen as asked, even after Ctrl-U redrew the (invisible) line.
    assert.match(
      text,
      /\nchoose a passphrase for #general \(empty: generate a strong one\): *\nrepeat the passphrase: *\n/,
    );
    const bob = await member(server.port, "bob");
    clients.push(bob);
    await screen.line("hello from the terminal");
    assert.deepEqual(await nextText(bob), { from: "alice", text: "hello from the terminal" });
    text = await screen.waitFor((t) => new RegExp(`${TIME} <alice> hello from the terminal`).test(t), "the sent line");
    assert.equal(count(text, "hello from the terminal"), 1, "the typed line is replaced by the formatted message");

    // Right after joining, Ctrl-Y (yank the last killed text) and Ctrl-_ (undo) bring back nothing.
    await screen.press("C-y", "C-_", "C-_");
    await screen.type("?");
    await screen.waitForLastLine("#general> ?", "the marker after yank and undo");
    await screen.press("BSpace");
    // Up recalls the message; the next Up finds nothing older (no nick, no passphrase) and leaves it there.
    await screen.press("Up");
    await screen.waitForLastLine("#general> hello from the terminal", "the recalled message");
    await screen.press("Up");
    await screen.type("!");
    await screen.waitForLastLine("#general> hello from the terminal!", "the marker after a second Up");
    text = await screen.text();
    assert.ok(!text.includes(PASSPHRASE.slice(0, 15)), `no part of the passphrase is on screen:\n${text}`);
    await screen.press("C-u");
    await screen.waitForLastLine("#general>", "the empty prompt");
    await screen.press("C-d");
    assert.equal(await screen.exitCode(), 0, "Ctrl-D on an empty line quits");
    assert.match(await screen.text(), /^EXIT=0$/m, "the shell gets a fresh line");
  } finally {
    await stopAll(server, screen, clients);
  }
});

Deno.test("an empty passphrase answer creates the room with a strong generated passphrase shown once", async () => {
  const server = await startServer();
  let screen: Screen | undefined;
  const clients: WireClient[] = [];
  try {
    screen = await Screen.start(["--port", String(server.port), "--nick", "alice", "--room", "den", ...FAST]);
    await screen.waitFor((t) => t.includes("choose a passphrase for #den (empty: generate a strong one)"), "prompt");
    await screen.press("Enter");
    const text = await screen.waitFor((t) => t.includes("#den> "), "the chat prompt");
    const shown = /-- passphrase for #den: (\S+)/.exec(text);
    assert.ok(shown, `the generated passphrase is shown:\n${text}`);
    assert.ok(shown[1].length >= 24, shown[1]);
    assert.equal(count(text, shown[1]), 1, "shown exactly once");
    assert.match(text, /it is not shown again/);
    assert.match(text, /-- created #den: alice is here/);
    assert.doesNotMatch(text, /shorter than 12 characters|repeat the passphrase/);
    const bob = await member(server.port, "bob", { room: "den", passphrase: shown[1] });
    clients.push(bob);
    await screen.waitFor((t) => t.includes("-- bob joined #den"), "bob's presence");
  } finally {
    await stopAll(server, screen, clients);
  }
});

Deno.test("an incoming message prints above the prompt while a half-typed line stays intact", async () => {
  const server = await startServer();
  let screen: Screen | undefined;
  const clients: WireClient[] = [];
  try {
    const bob = await member(server.port, "bob");
    clients.push(bob);
    screen = await Screen.start(["--port", String(server.port), "--nick", "carol", ...FAST], {
      env: { AESCHAT_PASSPHRASE: PASSPHRASE },
    });
    await screen.waitFor((t) => t.includes("#general> "), "the prompt");
    await bob.next("presence", { where: (p) => p.nick === "carol" });

    await screen.type("half typed wo");
    await screen.waitForLastLine("#general> half typed wo", "the half-typed line");
    await bob.say("hello carol");
    await screen.waitFor((t) => t.includes("<bob> hello carol"), "bob's live message");
    await screen.waitForLastLine("#general> half typed wo", "the half-typed line after the message");
    let text = await screen.text();
    const lines = text.split("\n").filter((l) => l.trim() !== "");
    // The message, then the status line, then the prompt.
    assert.match(lines[lines.length - 3], new RegExp(`^${TIME} <bob> hello carol$`), text);
    assert.equal(lines[lines.length - 2], "[1:#general]", text);
    assert.equal(count(text, "half typed wo"), 1, `no stale copy of the typed line:\n${text}`);
    await screen.line("rds");
    assert.deepEqual(await nextText(bob), { from: "carol", text: "half typed words" });
    await screen.waitFor((t) => new RegExp(`${TIME} <carol> half typed words`).test(t), "carol's own line");

    // A half-typed line longer than the terminal is wide (it wraps over two rows) survives the same way. At 120
    // columns a row takes at most 119: the prompt and 109 characters, then a row indented under the text.
    const long = "a long line " + "x".repeat(130) + " end";
    const rows = `#general> ${long.slice(0, 109)}\n${" ".repeat(10)}${long.slice(109)}`;
    await screen.type(long);
    await screen.waitFor((t) => t.trimEnd().endsWith(rows), "the wrapped half-typed line");
    await bob.say("second interruption");
    await screen.waitFor((t) => t.includes("<bob> second interruption"), "the second message");
    await screen.waitFor((t) => t.trimEnd().endsWith(rows), "the wrapped line after the message");
    text = await screen.text();
    assert.equal(count(text, long.slice(0, 40)), 1, `no stale copy of the wrapped line:\n${text}`);
    assert.equal(count(text, long.slice(-30)), 1, `no stale copy of its second row:\n${text}`);
    await screen.press("Enter");
    assert.deepEqual(await nextText(bob), { from: "carol", text: long });
  } finally {
    await stopAll(server, screen, clients);
  }
});

Deno.test("history on join is marked; /me, /who, /rooms, /nick, /history, /help and unknown commands", async () => {
  const server = await startServer({ args: ["--history", "3"] });
  let screen: Screen | undefined;
  const clients: WireClient[] = [];
  try {
    const bob = await member(server.port, "bob");
    clients.push(bob);
    for (let i = 1; i <= 5; i++) await bob.say(`old message ${i}`);
    screen = await Screen.start(["--port", String(server.port), "--nick", "carol", ...FAST], {
      env: { AESCHAT_PASSPHRASE: PASSPHRASE },
    });
    let text = await screen.waitFor((t) => t.includes("#general> "), "the prompt");
    assert.match(
      text,
      new RegExp(`-- history\n${[3, 4, 5].map((i) => `${TIME} <bob> old message ${i}\n`).join("")}-- end of history`),
    );
    assert.doesNotMatch(text, /old message [12]\b/);
    await bob.next("presence", { where: (p) => p.nick === "carol" });

    await screen.line("/me waves");
    await screen.waitFor((t) => new RegExp(`${TIME} \\* carol waves`).test(t), "the action");
    const action = await bob.next("message");
    assert.equal(
      (await openEnvelope(bob.keys!, { envelope: action.envelope, room: "general" })).plaintext.type,
      "action",
    );
    await screen.line("/who");
    await screen.waitFor((t) => /-- in #general: (bob, carol|carol, bob) \(2\)/.test(t), "/who");
    await screen.line("/rooms");
    await screen.waitFor((t) => t.includes("-- rooms: #general (2)"), "/rooms");
    await screen.line("/nick carol2");
    await screen.waitFor((t) => t.includes("-- you are now known as carol2"), "the nick change");
    const presence = await bob.next("presence", { where: (p) => p.event === "nick" });
    assert.deepEqual([presence.old, presence.nick], ["carol", "carol2"]);
    await bob.say("hi carol2");
    await screen.waitFor((t) => t.includes("<bob> hi carol2"), "a message after the nick change");

    await screen.line("/history 1");
    text = await screen.waitFor((t) => new RegExp(`${TIME} <bob> old message 2\n`).test(t), "one older message");
    assert.doesNotMatch(text, /old message 1\b/);
    assert.match(text, /-- 1 older messages \(\/history for more\)/);
    await screen.line("/history 5");
    text = await screen.waitFor((t) => new RegExp(`${TIME} <bob> old message 1\n`).test(t), "the oldest message");
    await screen.line("/history");
    await screen.waitFor((t) => t.includes("-- no older messages"), "the end of the history");
    await screen.line("/history 0");
    await screen.waitFor((t) => t.includes("!! usage: /history [N], N from 1 to 500"), "a bad /history count");

    await screen.line("/frobnicate now");
    await screen.waitFor((t) => t.includes("!! unknown command /frobnicate: type /help for the list"), "unknown");
    await screen.line("/help");
    text = await screen.waitFor((t) => t.includes("Start a message with //"), "/help");
    // Long help lines wrap into rows indented under the text: put them together again.
    const unwrapped = text.replace(/\n {3,}/g, " ");
    for (const line of helpLines()) {
      assert.match(unwrapped, new RegExp(`^-- ${escapeRegExp(line)}$`, "m"), `/help shows ${line}`);
    }
    assert.equal(helpLines().filter((l) => l.startsWith("/")).length, COMMANDS.length);
    await screen.line("/help names");
    await screen.waitFor(
      (t) => t.includes("-- /who: list the members of this room (✓ verified, [key changed]) (also /names)"),
      "/help names",
    );
    // Nothing a command printed was sent to the room: bob's next message is the last one carol typed as text.
    await screen.line("//etc is a path");
    assert.deepEqual(await nextText(bob), { from: "carol2", text: "/etc is a path" });
    await screen.line("/quit");
    assert.equal(await screen.exitCode(), 0);
    await bob.next("presence", { where: (p) => p.event === "leave" && p.nick === "carol2" });
  } finally {
    await stopAll(server, screen, clients);
  }
});

Deno.test("/join asks for the other room's passphrase and adds it; a question keeps its line; /leave goes back to the room before, once", async () => {
  const server = await startServer();
  let screen: Screen | undefined;
  const clients: WireClient[] = [];
  try {
    const bob = await member(server.port, "bob");
    const dave = await member(server.port, "dave", { room: "ops" });
    clients.push(bob, dave);
    screen = await Screen.start(["--port", String(server.port), "--nick", "erin", ...FAST], {
      env: { AESCHAT_PASSPHRASE: PASSPHRASE },
    });
    await screen.waitFor((t) => t.includes("#general> "), "the prompt");
    // Ctrl-C at a passphrase prompt cancels the join only, and what was typed there cannot be yanked or undone back.
    await screen.line("/join ops");
    await screen.waitFor((t) => t.includes("passphrase for #ops:"), "the passphrase prompt for ops");
    await screen.type("half a secret");
    await screen.press("C-w", "C-c");
    await screen.waitFor((t) => t.includes("-- not joined #ops"), "the cancelled join");
    await screen.waitForLastLine("#general>", "the prompt after the cancel");
    await screen.press("C-y", "C-_");
    await screen.type("?");
    await screen.waitForLastLine("#general> ?", "nothing yanked or undone back");
    await screen.press("BSpace");
    await screen.line("/join ops");
    await screen.waitFor((t) => count(t, "passphrase for #ops:") === 2, "the passphrase prompt for ops again");
    // A message arriving during the hidden prompt is held until it is answered, then shown.
    await bob.say("during the secret prompt");
    await screen.line(PASSPHRASE);
    let text = await screen.waitFor((t) => t.includes("#ops> "), "the ops prompt");
    assert.match(text, /-- joined #ops: (dave, erin|erin, dave) are here/);
    assert.match(text, new RegExp(`${TIME} <bob> during the secret prompt`));
    assert.ok(!text.includes(PASSPHRASE), "the passphrase was never echoed");
    assert.ok(!text.includes("half a"), "the cancelled input was never echoed");
    await dave.next("presence", { where: (p) => p.nick === "erin" && p.room === "ops" });
    await dave.say("welcome to ops");
    await screen.waitFor((t) => t.includes("<dave> welcome to ops"), "a message in ops");
    await screen.line("an ops message");
    assert.deepEqual(await nextText(dave), { from: "erin", text: "an ops message" });

    // A new room with a weak passphrase: the y/N question stays on its own line while a message arrives.
    await screen.line("/join vault");
    await screen.waitFor((t) => t.includes("choose a passphrase for #vault"), "the new room's prompt");
    await screen.line("short");
    await screen.waitFor((t) => t.includes("create the room with it anyway? [y/N]"), "the confirmation");
    await dave.say("during the question");
    await screen.waitFor((t) => t.includes("<dave> during the question"), "the message during the question");
    await screen.waitForLastLine("create the room with it anyway? [y/N]", "the question line");
    await screen.line("n");
    await screen.waitFor((t) => t.includes("-- not joined #vault"), "the refusal");
    await screen.waitForLastLine("#ops>", "still in ops");
    await screen.line("/rooms");
    // No #vault: it was not created. Joining #ops did not leave #general (several rooms on one connection).
    await screen.waitFor((t) => /^-- rooms: #general \(2\), #ops \(2\)$/m.test(t), "/rooms without #vault");

    await screen.line("/join vault --generate");
    text = await screen.waitFor((t) => t.includes("#vault> "), "the new room");
    const generated = /passphrase for #vault: ([0-9a-z]{4}(?:-[0-9a-z]{4}){5})/.exec(text);
    assert.ok(generated, `a generated passphrase is shown:\n${text}`);
    assert.match(text, /-- created #vault: erin is here/);
    const frank = await member(server.port, "frank", { room: "vault", passphrase: generated[1] });
    clients.push(frank);

    // Several rooms: /leave in #vault goes back to the conversation before it (#ops), saying so once; what the join
    // of #vault printed in #ops (its creation, the generated passphrase, the key derivation) is not shown again.
    await screen.line("/leave");
    await screen.waitForLastLine("#ops>", "back in #ops");
    text = await screen.waitFor((t) => t.includes("-- left #vault"), "the leave notice");
    const after = text.slice(text.lastIndexOf("-- created #vault"));
    assert.match(after, /-- now in #ops\n/);
    assert.equal(count(after, "-- left #vault"), 1, `said once:\n${after}`);
    assert.ok(!after.includes(generated[1]), `the generated passphrase is not shown again:\n${after}`);
    for (const notice of ["does not exist yet", "deriving room key", "it is not shown again"]) {
      assert.ok(!after.includes(notice), `"${notice}" is not shown again in #ops:\n${after}`);
    }
    assert.equal(count(text, generated[1]), 1, "the passphrase shows once on the whole screen");
    // Typing goes to #ops again.
    await screen.line("back in ops");
    assert.deepEqual(await nextText(dave), { from: "erin", text: "back in ops" });
    // /leave in #ops goes back to #general, which joining the other rooms never left.
    await screen.line("/leave");
    await screen.waitForLastLine("#general>", "back in #general");
    await screen.line("/rooms");
    await screen.waitFor((t) => /^-- rooms: #general \(2\)$/m.test(t), "/rooms: only #general");
    await bob.say("still here");
    await screen.waitFor((t) => t.includes("<bob> still here"), "#general's messages");
  } finally {
    await stopAll(server, screen, clients);
  }
});

Deno.test("a forged message shows one warning naming the sender and never its text; SIGTERM quits with 0", async () => {
  const server = await startServer();
  const forged = new Set<string>();
  const transform: FrameTransform = (body) => {
    const msg = parseBody(body);
    if (msg.type !== "message") return [body];
    const envelope = msg.envelope as Record<string, string>;
    if (!forged.has(envelope.id)) return [body];
    const ct = Uint8Array.fromBase64(envelope.ct);
    ct[0] ^= 1;
    envelope.ct = ct.toBase64();
    return [JSON.stringify(msg)];
  };
  const proxy = TcpProxy.start(server.port, { transform });
  let screen: Screen | undefined;
  const clients: WireClient[] = [];
  try {
    const mallory = await member(server.port, "mallory");
    clients.push(mallory);
    screen = await Screen.start(["--port", String(proxy.port), "--nick", "gina", ...FAST], {
      env: { AESCHAT_PASSPHRASE: PASSPHRASE },
    });
    await screen.waitFor((t) => t.includes("#general> "), "the prompt");
    const envelope = await mallory.seal("forged secret text");
    forged.add(envelope.id);
    await mallory.send({ type: "send", envelope });
    await mallory.say("genuine text");
    const text = await screen.waitFor((t) => t.includes("<mallory> genuine text"), "the genuine message");
    assert.ok(!text.includes("forged secret text"));
    const warnings = text.split("\n").filter((l) => /warning/.test(l));
    assert.equal(warnings.length, 1, text);
    assert.match(warnings[0], /^!! warning: a message claiming to be from mallory .*failed authentication/);

    // SIGTERM (kill PID) leaves like /quit: exit 0, and the room sees gina leave.
    Deno.kill(await screen.clientPid(), "SIGTERM");
    assert.equal(await screen.exitCode(), 0);
    await mallory.next("presence", { where: (p) => p.event === "leave" && p.nick === "gina" });
  } finally {
    await stopAll(server, screen, clients);
    await proxy.close();
  }
});

Deno.test("a server shutdown shows a status line, the client reconnects to the restarted server; Ctrl-C exits 0", async () => {
  const first = await startServer();
  let second: ServerProcess | undefined;
  let screen: Screen | undefined;
  const clients: WireClient[] = [];
  try {
    screen = await Screen.start(["--port", String(first.port), "--nick", "hank", ...FAST], {
      env: { AESCHAT_PASSPHRASE: PASSPHRASE },
    });
    await screen.waitFor((t) => t.includes("#general> "), "the prompt");
    await first.program.stop("SIGTERM");
    await screen.waitFor((t) => /-- connection lost \(.*\); reconnecting/.test(t), "the lost-connection status");
    second = await startServer({ db: first.db, args: ["--port", String(first.port)] });
    await screen.waitFor((t) => t.includes("-- reconnected:"), "the reconnect", 30_000);
    await screen.waitForLastLine("#general>", "the prompt after the reconnect");
    const ivy = await member(second.port, "ivy");
    clients.push(ivy);
    await ivy.say("after the restart");
    await screen.waitFor((t) => t.includes("<ivy> after the restart"), "a message after the restart");
    await screen.line("reply after the restart");
    assert.deepEqual(await nextText(ivy), { from: "hank", text: "reply after the restart" });
    // Ctrl-C clears a half-typed line; a second Ctrl-C, on the empty line, quits.
    await screen.type("half typed, then Ctrl-C");
    await screen.waitForLastLine("#general> half typed, then Ctrl-C", "the half-typed line");
    await screen.press("C-c");
    await screen.waitForLastLine("#general>", "the line cleared");
    assert.doesNotMatch(await screen.text(), /EXIT=/, "one Ctrl-C on a half-typed line does not quit");
    await screen.press("C-c");
    assert.equal(await screen.exitCode(), 0);
    const text = await screen.text();
    assert.match(text, /^EXIT=0$/m, `the shell gets a fresh line:\n${text}`);
    assert.ok(!text.includes("half typed, then"), "nothing half typed is left behind");
  } finally {
    await stopAll(second, screen, clients);
    await first.program.stop().catch(() => {});
    await Deno.remove(dirname(first.db), { recursive: true }).catch(() => {});
  }
});

Deno.test("without NO_COLOR each nick has its own stable colour, and history stays dim after the nick", async () => {
  const server = await startServer();
  let screen: Screen | undefined;
  const clients: WireClient[] = [];
  try {
    const jack = await member(server.port, "jack");
    const kate = await member(server.port, "kate");
    clients.push(jack, kate);
    await kate.say("from the history");
    screen = await Screen.start(["--port", String(server.port), "--nick", "liam", ...FAST], {
      env: { AESCHAT_PASSPHRASE: PASSPHRASE },
      colour: true,
    });
    await screen.waitFor((t) => t.includes("#general> "), "the prompt");
    for (const [who, text] of [[jack, "one"], [kate, "two"], [jack, "three"]] as const) await who.say(text);
    await screen.waitFor((t) => t.includes("<jack> three"), "the messages");
    const raw = await screen.text({ escapes: true });
    const colourOf = (nick: string) =>
      [...raw.matchAll(new RegExp(`\\x1b\\[38;5;(\\d+)m${nick}\\x1b\\[(?:0|39)m`, "g"))].map((m) => Number(m[1]));
    assert.deepEqual(colourOf("jack"), [nickColour("jack"), nickColour("jack")], raw);
    assert.deepEqual(colourOf("kate"), [nickColour("kate"), nickColour("kate")], raw);
    // A history line is dim from end to end: the nick's colour ends without ending the dimming (tmux would then
    // report a reset, \x1b[0m or \x1b[22m, before the text).
    const historyLine = raw.split("\n").find((l) => l.includes("from the history"));
    const expected = `<\x1b[38;5;${nickColour("kate")}mkate\x1b[39m> from the history`;
    assert.ok(historyLine?.endsWith(expected), JSON.stringify(historyLine));
    assert.notEqual(nickColour("jack"), nickColour("kate"), "these two nicks were picked to differ");
  } finally {
    await stopAll(server, screen, clients);
  }
});
