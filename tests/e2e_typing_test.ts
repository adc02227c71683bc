/**
 * Typing like people: the real interactive client in tmux against the real server, driven the way people drive it.
 * Pasted lines mixed with commands, a nick change in the middle of fast typing, lines typed while the server is
 * down for longer than --reconnect-for, a 17000-character paste, and a long message that wraps. Each test checks what
 * the user sees and what the server stored, in order.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dirname } from "node:path";
import { openEnvelope } from "../lib/crypto.ts";
import { type ServerProcess, startServer } from "./support/programs.ts";
import { type FrameTransform, parseBody, TcpProxy } from "./support/proxy.ts";
import { TmuxScreen } from "./support/tmux.ts";
import { WireClient } from "./support/wire.ts";

const PASSPHRASE = "typing test passphrase 5e1f";
const TIME = String.raw`\d\d:\d\d:\d\d`;
/** The raw members make #general with 100000 iterations: the client's floor must allow it. */
const FAST = ["--min-iterations", "100000"];

/**
 * Every stored message of a room, oldest first, opened: [sender, type, text]. Asked of the server over the wire
 * (`history`) by a member of the room: the server holds its database exclusively while it runs.
 */
async function stored(member: WireClient): Promise<[string, string, string][]> {
  await member.send({ type: "history", room: member.room, before_seq: Number.MAX_SAFE_INTEGER, limit: 500 });
  const page = await member.next("history", { timeoutMs: 30_000 });
  const out: [string, string, string][] = [];
  for (const item of page.messages) {
    const opened = await openEnvelope(member.keys!, { envelope: item.envelope, room: member.room });
    out.push([opened.from, opened.plaintext.type, opened.plaintext.body]);
  }
  return out;
}

/** The texts stored in #general, asked by a member that joins for the question and leaves. */
async function storedTexts(port: number): Promise<string[]> {
  const auditor = await WireClient.member(port, `auditor${crypto.randomUUID().slice(0, 8)}`, {
    passphrase: PASSPHRASE,
  });
  try {
    return (await stored(auditor)).map((r) => r[2]);
  } finally {
    auditor.close();
    await auditor.ended;
  }
}

/** The next `n` messages `client` receives, opened: [sender, type, text]. */
async function received(client: WireClient, n: number): Promise<[string, string, string][]> {
  const out: [string, string, string][] = [];
  for (let i = 0; i < n; i++) {
    const m = await client.next("message", { timeoutMs: 30_000 });
    const opened = await openEnvelope(client.keys!, { envelope: m.envelope, room: client.room });
    out.push([opened.from, opened.plaintext.type, opened.plaintext.body]);
  }
  return out;
}

async function poll<T>(get: () => Promise<T>, test: (value: T) => boolean, what: string, timeoutMs = 30_000) {
  const deadline = performance.now() + timeoutMs;
  while (true) {
    const value = await get();
    if (test(value)) return value;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The rows of the screen that show messages (`HH:MM:SS <nick> text` or `HH:MM:SS * nick text`), in order. */
function messageRows(text: string): string[] {
  return text.split("\n").filter((l) => new RegExp(`^${TIME} (<|\\* )`).test(l));
}

async function start(server: ServerProcess, nick: string, args: string[] = []): Promise<TmuxScreen> {
  const screen = await TmuxScreen.start(["--port", String(server.port), "--nick", nick, ...FAST, ...args], {
    env: { AESCHAT_PASSPHRASE: PASSPHRASE },
  });
  await screen.waitFor((t) => t.includes("#general> "), "the prompt", 30_000);
  return screen;
}

async function stop(server: ServerProcess | undefined, screen: TmuxScreen | undefined, clients: WireClient[]) {
  await screen?.close();
  for (const c of clients) c.close();
  await Promise.all(clients.map((c) => c.ended));
  await server?.program.stop().catch(() => {});
  if (server) await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
}

/** A server, a raw member, and alice's client in tmux once the member has seen her join. */
async function withChat(
  nick: string,
  test: (chat: { server: ServerProcess; screen: TmuxScreen; other: WireClient }) => Promise<void>,
): Promise<void> {
  const server = await startServer();
  let screen: TmuxScreen | undefined;
  const clients: WireClient[] = [];
  try {
    const other = await WireClient.member(server.port, nick, { passphrase: PASSPHRASE });
    clients.push(other);
    screen = await start(server, "alice");
    await other.next("presence", { where: (p) => p.nick === "alice" });
    await test({ server, screen, other });
  } finally {
    await stop(server, screen, clients);
  }
}

Deno.test("five pasted lines, commands among them, are stored and shown in the order they were pasted", async () => {
  await withChat("bob", async ({ screen, other: bob }) => {
    await screen.paste("order 1\n/me order 2\norder 3\n//order 4\norder 5\n");
    const expected: [string, string, string][] = [
      ["alice", "text", "order 1"],
      ["alice", "action", "order 2"],
      ["alice", "text", "order 3"],
      ["alice", "text", "/order 4"],
      ["alice", "text", "order 5"],
    ];
    assert.deepEqual(await received(bob, 5), expected, "bob receives them in order");
    assert.deepEqual(await stored(bob), expected, "the server stored them in order");
    const text = await screen.waitFor((t) => messageRows(t).length === 5, "the five lines on alice's screen");
    assert.deepEqual(messageRows(text).map((l) => l.slice(9)), [
      "<alice> order 1",
      "* alice order 2",
      "<alice> order 3",
      "<alice> /order 4",
      "<alice> order 5",
    ], text);
  });
});

Deno.test("a nick change typed fast between two lines loses and reorders nothing", async () => {
  await withChat("carol", async ({ screen, other: carol }) => {
    for (let round = 0; round < 3; round++) {
      const [from, to] = round % 2 === 0 ? ["alice", "bobby"] : ["bobby", "alice"];
      await screen.paste(`before nick change ${round}\n/nick ${to}\nafter nick change ${round}\n`);
      assert.deepEqual(await received(carol, 2), [
        [from, "text", `before nick change ${round}`],
        [to, "text", `after nick change ${round}`],
      ]);
    }
    const rows = await stored(carol);
    assert.deepEqual(
      rows.map((r) => r[2]),
      [0, 1, 2].flatMap((r) => [`before nick change ${r}`, `after nick change ${r}`]),
    );
    const text = await screen.waitFor((t) => t.includes("after nick change 2"), "the last line on screen");
    assert.doesNotMatch(text, /not stored|not sent|failed/, text);
  });
});

Deno.test("offline for longer than --reconnect-for: the client keeps trying, shows the state, sends in order when back", async () => {
  const first = await startServer();
  let second: ServerProcess | undefined;
  let screen: TmuxScreen | undefined;
  const clients: WireClient[] = [];
  try {
    screen = await start(first, "alice", ["--reconnect-for", "1"]);
    await screen.line("before the outage");
    await poll(() => storedTexts(first.port), (t) => t.length === 1, "the first line stored");
    await first.program.stop("SIGKILL");
    await screen.waitFor((t) => /offline, retrying in \d+ s/.test(t), "the offline state");
    await screen.line("typed offline 1");
    await screen.line("typed offline 2");
    let text = await screen.waitFor(
      (t) => /offline, retrying in \d+ s; 2 unsent/.test(t),
      "two unsent lines in the state",
    );
    // Pending, not sent: no time yet, just above the state and the prompt.
    assert.match(text, /--:--:-- <alice> typed offline 1\n--:--:-- <alice> typed offline 2\n!! offline, retrying in/);
    // Well past --reconnect-for: still running, still retrying.
    await screen.waitFor((t) => (t.match(/retrying in/g) ?? []).length >= 1 && !/EXIT=/.test(t), "still running");
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    assert.doesNotMatch(await screen.text(), /EXIT=/, "the client did not give up");
    // Quitting now asks first; no keeps it running.
    await screen.press("C-c");
    await screen.waitFor((t) => t.includes("2 unsent lines; quit anyway? y/N"), "the quit question");
    await screen.line("n");
    await screen.line("typed offline 3");
    second = await startServer({ db: first.db, args: ["--port", String(first.port)] });
    const texts = await poll(
      () => storedTexts(first.port).catch(() => []),
      (t) => t.length === 4,
      "the offline lines stored after the restart",
      60_000,
    );
    assert.deepEqual(texts, ["before the outage", "typed offline 1", "typed offline 2", "typed offline 3"]);
    text = await screen.waitFor(
      (t) => messageRows(t).some((l) => l.endsWith("<alice> typed offline 3")),
      "shown as sent",
    );
    assert.doesNotMatch(text, /--:--:--/, "nothing pending any more");
    await screen.line("/quit");
    assert.equal(await screen.exitCode(), 0, "nothing unsent: /quit does not ask");
  } finally {
    await stop(second, screen, clients);
    await first.program.stop().catch(() => {});
    await Deno.remove(dirname(first.db), { recursive: true }).catch(() => {});
  }
});

Deno.test("a 17000-character paste is refused as soon as it is over the limit, stays for editing, and then sends", async () => {
  await withChat("bob", async ({ screen, other: bob }) => {
    // 16384 bytes, a space, and a last word that takes it over the limit.
    await screen.paste(`${"y".repeat(16_384)} ${"z".repeat(615)}`);
    let text = await screen.waitFor(
      (t) => /!! the line is \d+ bytes; the limit is 16384/.test(t),
      "the over-the-limit warning",
      60_000,
    );
    // The input line's rows (indented under the prompt's width) put together again.
    const input = (t: string) => t.trimEnd().replace(/\n {10}/g, "");
    await screen.waitFor(
      (t) => input(t).endsWith(` ${"z".repeat(615)}`),
      "the pasted text in the input line",
      60_000,
    );
    await screen.press("Enter");
    text = await screen.waitFor(
      (t) => /!! not sent: the line is 17000 bytes; the limit is 16384/.test(t),
      "the refusal on Enter",
    );
    await screen.waitFor((t) => input(t).endsWith(` ${"z".repeat(615)}`), "the text back in the input line");
    // The text is still there to edit: delete the last word and the space, and send it.
    await screen.press("C-w", "BSpace");
    await screen.press("Enter");
    const m = await bob.next("message", { timeoutMs: 60_000 });
    const opened = await openEnvelope(bob.keys!, { envelope: m.envelope, room: "general" });
    assert.equal(opened.plaintext.body, "y".repeat(16_384));
    assert.ok(text.length > 0);
  });
});

Deno.test("a long message wraps with indented continuation rows, and a presence nick padded with spaces is left out", async () => {
  const server = await startServer();
  // A lying server pads a presence nick with spaces so that the rest would start a new row.
  const fake = `${" ".repeat(150)}23:59:59 <carol> ok from me, ship it`;
  const transform: FrameTransform = (body) => {
    const msg = parseBody(body);
    if (msg.type === "presence" && msg.nick === "dave") msg.nick = `dave${fake}`;
    else return [body];
    return [JSON.stringify(msg)];
  };
  const proxy = TcpProxy.start(server.port, { transform });
  let screen: TmuxScreen | undefined;
  const clients: WireClient[] = [];
  try {
    const bob = await WireClient.member(server.port, "bob", { passphrase: PASSPHRASE });
    clients.push(bob);
    screen = await TmuxScreen.start(["--port", String(proxy.port), "--nick", "alice", ...FAST], {
      env: { AESCHAT_PASSPHRASE: PASSPHRASE },
    });
    await screen.waitFor((t) => t.includes("#general> "), "the prompt", 30_000);
    await bob.next("presence", { where: (p) => p.nick === "alice" });
    // 120 columns: "HH:MM:SS <bob> " is 15 wide, so without indentation the fake line would start row two.
    await bob.say(`${"w".repeat(105)}23:59:59 <carol> ok from me, ship it`);
    const dave = await WireClient.member(server.port, "dave", { passphrase: PASSPHRASE });
    clients.push(dave);
    await bob.say("the end");
    // Rows as the terminal shows them (not joined): no row but real messages starts like a message.
    const rows = (await screen.waitFor((t) => t.includes("<bob> the end"), "the last message")).split("\n");
    const raw = (await screen.tmux("capture-pane", "-p", "-S", "-", "-t", "main")).split("\n");
    const starts = raw.filter((l) => /^\d\d:\d\d:\d\d </.test(l));
    assert.deepEqual(starts.map((l) => l.slice(9, 15)), ["<bob> ", "<bob> "], raw.join("\n"));
    // The padded nick is no nick a server may register: its presence is left out, with a warning, not drawn.
    assert.ok(
      !rows.some((l) => l.includes("dave")),
      `the padded nick was drawn:\n${rows.join("\n")}`,
    );
    assert.ok(rows.some((l) => /listed 1 member\(s\) of #general under a nick no server may register/.test(l)));
  } finally {
    await stop(server, screen, clients);
    await proxy.close();
  }
});

Deno.test("on a terminal --json is refused with a plain line and exit 2", async () => {
  const screen = await TmuxScreen.start(["--port", "1", "--nick", "alice", "--json"]);
  try {
    assert.equal(await screen.exitCode(), 2);
    assert.match(await screen.text(), /aeschat client: --json is for script mode, and stdin is a terminal/);
  } finally {
    await screen.close();
  }
});
