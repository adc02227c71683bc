/**
 * The habits IRC and ssh-chat users bring, tried on the real interactive client in tmux against the real server
 * (protocol v2; several rooms at once are in e2e_rooms_test.ts and e2e_terminal_v2_test.ts): a bracketed paste of
 * several lines with a command among them, a long one that asks first, Tab completion, Backspace over a ZWJ emoji and
 * a flag, a mention ringing the bell (and --no-bell), dates across a day boundary, a resize from 40 to 100 columns and
 * back, a refused line sent again with /retry, and the small commands (/names, /help COMMAND, /join of this room,
 * /topic, /query, /clear, /quit REASON).
 *
 * As in e2e_terminal_test.ts, nothing waits a fixed time before asserting: every check polls the screen or the wire.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dirname } from "node:path";
import { localDay } from "../lib/client/render.ts";
import { openEnvelope } from "../lib/crypto.ts";
import { type ServerProcess, startServer } from "./support/programs.ts";
import { type FrameTransform, parseBody, TcpProxy } from "./support/proxy.ts";
import { TmuxScreen } from "./support/tmux.ts";
import { WireClient } from "./support/wire.ts";

const PASSPHRASE = "habits test passphrase 9c2d";
const TIME = String.raw`\d\d:\d\d:\d\d`;
const count = (text: string, needle: string) => text.split(needle).length - 1;
/** The raw members make #general with 100000 iterations: the client's floor must allow it. */
const FAST = ["--min-iterations", "100000"];

async function poll(get: () => Promise<string>, test: (value: string) => boolean, what: string): Promise<string> {
  const deadline = performance.now() + 20_000;
  while (true) {
    const value = await get();
    if (test(value)) return value;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${value}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The next message `client` receives, opened: [type, text]. */
async function nextText(client: WireClient): Promise<[string, string]> {
  const m = await client.next("message", { timeoutMs: 30_000 });
  const opened = await openEnvelope(client.keys!, { envelope: m.envelope, room: client.room });
  return [opened.plaintext.type, opened.plaintext.body];
}

async function start(
  port: number,
  nick: string,
  options: { args?: string[]; colour?: boolean; columns?: number } = {},
) {
  const screen = await TmuxScreen.start(["--port", String(port), "--nick", nick, ...FAST, ...(options.args ?? [])], {
    env: { AESCHAT_PASSPHRASE: PASSPHRASE },
    colour: options.colour,
    columns: options.columns,
  });
  await screen.waitFor((t) => /#general> *$/.test(t.trimEnd()), "the prompt", 30_000);
  return screen;
}

/** A server, bob as a raw member, and alice's client in tmux once bob has seen her join. */
async function withChat(
  test: (chat: { server: ServerProcess; screen: TmuxScreen; bob: WireClient; port: number }) => Promise<void>,
  options: { columns?: number; colour?: boolean; transform?: FrameTransform } = {},
): Promise<void> {
  const server = await startServer();
  const proxy = options.transform ? TcpProxy.start(server.port, { transform: options.transform }) : undefined;
  let screen: TmuxScreen | undefined;
  const clients: WireClient[] = [];
  try {
    const bob = await WireClient.member(server.port, "bob", { passphrase: PASSPHRASE });
    clients.push(bob);
    screen = await start(proxy?.port ?? server.port, "alice", options);
    await bob.next("presence", { where: (p) => p.nick === "alice" });
    await test({ server, screen, bob, port: server.port });
  } finally {
    await screen?.close();
    for (const c of clients) c.close();
    await Promise.all(clients.map((c) => c.ended));
    await proxy?.close();
    await server.program.stop().catch(() => {});
    await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
  }
}

Deno.test("a bracketed paste of 3 lines, one starting with /, is one message shown with indented rows; beyond 5 lines it asks; an empty line sends nothing", async () => {
  await withChat(async ({ screen, bob }) => {
    await screen.paste("first line\n/quit\nthird line\n", { bracketed: true });
    await screen.waitFor(
      (t) => t.includes("#general> first line\n          /quit\n          third line"),
      "the paste in the input line, nothing run",
    );
    await screen.press("Enter");
    assert.deepEqual(await nextText(bob), ["text", "first line\n/quit\nthird line"], "one message, the 3 lines");
    const text = await screen.waitFor(
      (t) => new RegExp(`${TIME} <alice> first line\\n {9}/quit\\n {9}third line\\n`).test(t),
      "the message with indented rows",
    );
    assert.doesNotMatch(text, /EXIT=/, "the pasted /quit did not run");

    // An empty line sends nothing (bob's next message is the one after it).
    await screen.press("Enter");
    await screen.line("   ");
    const seven = ["one", "two", "three", "/nick mallory", "five", "six", "seven"];
    await screen.paste(seven.join("\n"), { bracketed: true });
    await screen.press("Enter");
    await screen.waitFor((t) => t.includes("send these 7 lines as one message? [y/N]"), "the question");
    await screen.line("n");
    await screen.waitFor((t) => t.includes("-- not sent: the lines are back in the input line"), "not sent");
    await screen.waitFor((t) => t.trimEnd().endsWith(`          six\n          seven`), "the lines back for editing");
    await screen.press("Enter");
    await screen.waitFor((t) => count(t, "send these 7 lines as one message? [y/N]") === 2, "asked again");
    await screen.line("y");
    assert.deepEqual(await nextText(bob), ["text", seven.join("\n")]);
    await screen.waitFor((t) => t.includes("         /nick mallory\n"), "shown, the /nick line a row of it");
    assert.doesNotMatch(await screen.text(), /known as mallory/, "and never run");
  });
});

Deno.test("Tab completes a member's nick and a command; Backspace takes a ZWJ emoji and a flag whole", async () => {
  await withChat(async ({ screen, bob }) => {
    await screen.type("bo");
    await screen.press("Tab");
    await screen.waitForLastLine("#general> bob:", "the nick completed, with ': ' at the start of a line");
    await screen.type("see 👩‍💻🇫🇷");
    await screen.waitForLastLine("#general> bob: see 👩‍💻🇫🇷", "the emoji typed");
    await screen.press("BSpace");
    await screen.waitForLastLine("#general> bob: see 👩‍💻", "the flag gone with one Backspace");
    await screen.press("BSpace");
    await screen.waitForLastLine("#general> bob: see", "the ZWJ emoji gone with one Backspace");
    await screen.type("this!");
    await screen.press("Enter");
    assert.deepEqual(await nextText(bob), ["text", "bob: see this!"]);
    await screen.type("/na");
    await screen.press("Tab");
    await screen.waitForLastLine("#general> /names", "a command completed");
    await screen.press("Enter");
    await screen.waitFor((t) => /-- in #general: (alice, bob|bob, alice) \(2\)/.test(t), "/names as /who");
  });
});

Deno.test("a message naming you is highlighted and rings the bell; --no-bell keeps quiet; presence lines carry a time", async () => {
  const server = await startServer();
  const screens: TmuxScreen[] = [];
  const clients: WireClient[] = [];
  try {
    const bob = await WireClient.member(server.port, "bob", { passphrase: PASSPHRASE });
    clients.push(bob);
    const alice = await start(server.port, "alice", { colour: true });
    screens.push(alice);
    const carol = await start(server.port, "carol", { args: ["--no-bell"] });
    screens.push(carol);
    await alice.waitFor((t) => new RegExp(`${TIME} -- carol joined #general`).test(t), "a presence line with a time");
    await bob.say("nothing for anyone");
    for (const screen of screens) await screen.waitFor((t) => t.includes("<bob> nothing for anyone"), "plain");
    assert.equal(await alice.bellRang(), false, "no bell for a message that names nobody");
    await bob.say("hey ALICE and carol: lunch?");
    for (const screen of screens) await screen.waitFor((t) => t.includes("and carol: lunch?"), "the mention");
    // A later message on carol's screen: whatever the mention wrote to her terminal has been handled.
    await bob.say("after the mention");
    await carol.waitFor((t) => t.includes("<bob> after the mention"), "the message after the mention");
    const deadline = performance.now() + 10_000;
    while (!(await alice.bellRang()) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await alice.bellRang(), true, "the bell rang for alice");
    assert.equal(await carol.bellRang(), false, "--no-bell: carol's did not");
    const row = (await alice.text({ escapes: true })).split("\n").find((l) => l.includes("lunch?"))!;
    // tmux reports the row's attributes as it shows them: bold, then yellow.
    assert.ok(row.startsWith("\x1b[1m\x1b[33m"), `the mention is bold yellow: ${JSON.stringify(row)}`);
    const other = (await alice.text({ escapes: true })).split("\n").find((l) => l.includes("nothing for anyone"))!;
    assert.ok(!other.includes("\x1b[1m"), `the other message is not: ${JSON.stringify(other)}`);
  } finally {
    for (const screen of screens) await screen.close();
    for (const c of clients) c.close();
    await server.program.stop().catch(() => {});
    await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
  }
});

Deno.test("dates: a message from another day carries its date, and a day line separates it from today's", async () => {
  const server = await startServer();
  let screen: TmuxScreen | undefined;
  const clients: WireClient[] = [];
  try {
    const bob = await WireClient.member(server.port, "bob", { passphrase: PASSPHRASE });
    clients.push(bob);
    const yesterday = Date.now() - 24 * 3600 * 1000;
    // A message with yesterday's time (the sender's clock is in the envelope), in the history alice gets.
    await bob.send({ type: "send", envelope: await bob.seal("said yesterday", { ts: yesterday }) });
    await bob.next("ack");
    screen = await start(server.port, "alice");
    await bob.next("presence", { where: (p) => p.nick === "alice" });
    await bob.say("said today");
    const text = await screen.waitFor((t) => t.includes("<bob> said today"), "today's message");
    const today = localDay(Date.now());
    assert.match(
      text,
      new RegExp(
        // v2: sent today with yesterday's time, it is also marked delayed (typed offline, sent later).
        `\\n${localDay(yesterday)} ${TIME} \\[delayed\\] <bob> said yesterday\\n(?:.*\\n)*-- \\w+day, ${today}\\n` +
          `${TIME} <bob> said today\\n`,
      ),
      text,
    );
    assert.equal(count(text, today), 1, "today's date only on the day line: today's messages show the time alone");
  } finally {
    await screen?.close();
    for (const c of clients) c.close();
    await server.program.stop().catch(() => {});
    await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
  }
});

Deno.test("a resize from 40 to 100 columns redraws the status line and the input once, and erases nothing above", async () => {
  await withChat(async ({ screen, bob }) => {
    const long = "a long message that wraps at forty columns into rows indented under it, three or four of them";
    await bob.say(long);
    await bob.say("short one");
    await screen.waitFor((t) => t.includes("<bob> short one"), "the messages");
    const half = "a half-typed line that is wider than forty columns";
    await screen.type(half);
    await screen.waitFor((t) => t.trimEnd().endsWith("forty columns"), "the half line, in rows of the input");
    const before = await screen.text();
    const rowsOf = (t: string) => t.split("\n").filter((l) => /^\d\d:\d\d:\d\d <bob>|^ {9}\S/.test(l));
    const messageRows = rowsOf(before);
    assert.ok(messageRows.length >= 4, `the long message wrapped at 40:\n${before}`);

    await screen.resize(100);
    const text = await screen.waitFor((t) => t.trimEnd().endsWith(`#general> ${half}`), "the input in one row at 100");
    assert.equal(count(text, "[1:#general]"), 1, `one status line:\n${text}`);
    assert.equal(count(text, "a half-typed line"), 1, `one input line:\n${text}`);
    assert.deepEqual(rowsOf(text), messageRows, `nothing above erased or added:\n${text}`);
    const lines = text.split("\n").filter((l) => l.trim() !== "");
    assert.equal(lines[lines.length - 2], "[1:#general]");

    // And back to 40: the input is laid out again in rows of 39 columns, indented under the prompt (the terminal's own
    // re-wrap of the 100-column row would not indent), and the visible screen has one status line.
    await screen.resize(40);
    const rows = `#general> ${half.slice(0, 29)}\n${" ".repeat(10)}${half.slice(29)}`;
    await poll(() => screen.visible(), (v) => v.trimEnd().endsWith(rows), "the input laid out again at 40");
    const visible = await screen.visible();
    assert.equal(count(visible, "[1:#general]"), 1, `one status line on screen:\n${visible}`);
    assert.equal(count(visible, "a half-typed"), 1, `one input line on screen:\n${visible}`);
    assert.ok(visible.includes("<bob> short one"), `the message above is still there:\n${visible}`);
    await screen.press("Enter");
    assert.deepEqual(await nextText(bob), ["text", half]);
  }, { columns: 40 });
});

Deno.test("your own line: a refused one is marked, and /retry sends it again; nothing to retry says so", async () => {
  let refused = false;
  // The server's first ack of alice's messages comes back as a refusal.
  const transform: FrameTransform = (body) => {
    const msg = parseBody(body);
    if (msg.type !== "ack" || refused) return [body];
    refused = true;
    return [JSON.stringify({ type: "error", code: "bad_envelope", message: "refused by the test", id: msg.id })];
  };
  await withChat(async ({ screen, bob }) => {
    await screen.line("will be refused once");
    await nextText(bob);
    await screen.waitFor(
      (t) =>
        new RegExp(`${TIME} <alice> will be refused once  ✗ not stored: the server refused it: refused by`).test(t),
      "the line marked as not stored",
    );
    await screen.line("/retry");
    await screen.waitFor((t) => t.includes("-- sending 1 line again"), "the retry");
    assert.deepEqual(await nextText(bob), ["text", "will be refused once"]);
    await screen.waitFor((t) => new RegExp(`${TIME} <alice> will be refused once\\n`).test(t), "stored this time");
    await screen.line("/retry");
    await screen.waitFor((t) => t.includes("-- nothing to send again here"), "nothing left");
  }, { transform });
});

Deno.test("/help COMMAND, /join of this room without its history, /topic, /query, /clear, and /quit with a reason", async () => {
  await withChat(async ({ screen, bob }) => {
    await bob.say("history line");
    await screen.waitFor((t) => t.includes("<bob> history line"), "a message");
    await screen.line("/help join");
    await screen.waitFor(
      (t) =>
        t.includes("-- /join ROOM [--generate] [--remember]: join ROOM, asking for its passphrase") &&
        t.includes("-- In a room already: /join switches to it"),
      "/help join",
    );
    await screen.line("/join #general");
    await screen.waitFor((t) => t.includes("-- you are in #general"), "/join of this room");
    await screen.line("/join general --generate");
    await screen.waitFor((t) => t.includes("-- #general already exists: --generate was ignored"), "the flag ignored");
    let text = await screen.text();
    assert.equal(count(text, "<bob> history line"), 1, `nothing replayed:\n${text}`);
    await screen.line("/topic new topic");
    assert.deepEqual(await nextText(bob), ["topic", "new topic"], "the topic is a message of its own type");
    await screen.waitFor(
      (t) => t.includes("-- you set the topic: new topic") && t.includes("· topic: new topic"),
      "/topic",
    );
    await screen.line("/query bob");
    await screen.waitForLastLine("@bob>", "/query opens the direct conversation with bob");
    await screen.line("/switch general");
    await screen.waitForLastLine("#general>", "back in #general");
    await screen.line("/clear");
    text = await screen.waitFor((t) => !t.includes("history line"), "the screen cleared");
    assert.doesNotMatch(text, /connected as alice/, `the scrollback cleared too:\n${text}`);
    assert.match(
      text,
      /^\[1:#general\] 2:@bob · topic: new topic\n#general> *$/m,
      "only the status line and the prompt",
    );
    await screen.line("/quit gone for lunch");
    assert.deepEqual(await nextText(bob), ["action", "has quit: gone for lunch"]);
    await bob.next("presence", { where: (p) => p.event === "leave" && p.nick === "alice" });
    assert.equal(await screen.exitCode(), 0);
  });
});
