/**
 * The interactive client's v2 terminal in a real terminal (tmux). Against the real server process (the other member
 * in-process over TCP): issue 14's several rooms as a user moves among them (/join adds and switches, /part, /switch,
 * Alt-1..9, Ctrl-N / Ctrl-P, unread counts and a highlighted mention in the status line, the marker line on switching,
 * a topic shown on join and in the status line, a direct conversation from /msg). Against the v2 server double over
 * real TCP, for what needs a server that forgets a registration (a key change): /whois, /verify with the ✓ mark and
 * /trust; and the identity passphrase asked at start. /msg, /invite and /accept between two real client programs are
 * in e2e_direct_client_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Home } from "../lib/client/home.ts";
import { dialServer } from "../lib/client/link.ts";
import { EvilServer } from "./support/evil_server.ts";
import { removeServer, startServer } from "./support/programs.ts";
import { passphraseHooks, poll, TestHomes } from "./support/session_clients.ts";
import { TmuxScreen } from "./support/tmux.ts";

const PASSPHRASE = "e2e terminal v2 passphrase 11";
const FAST = ["--iterations", "100000", "--min-iterations", "100000"];
const count = (text: string, needle: string) => text.split(needle).length - 1;

async function setUp() {
  const server = await EvilServer.start();
  const tcp = server.listen();
  const homes = new TestHomes();
  const address = `127.0.0.1:${tcp.port}`;
  const alice = await homes.connect(server.dial, "alice", { address });
  await alice.session.join("general", passphraseHooks(PASSPHRASE));
  let screen: TmuxScreen | undefined;
  const start = async (env: Record<string, string> = {}) => {
    screen = await TmuxScreen.start(["--port", String(tcp.port), "--nick", "bob", ...FAST], {
      env: { AESCHAT_PASSPHRASE: PASSPHRASE, AESCHAT_HOME: await homes.dir(), ...env },
    });
    return screen;
  };
  const done = async () => {
    await screen?.close();
    await alice.close();
    await tcp.close();
    await homes.cleanup();
  };
  return { server, homes, alice, start, done };
}

/** The status line (the row above the prompt) of a screen. */
function statusLine(text: string): string {
  const rows = text.split("\n").filter((l) => l.trim() !== "");
  return rows[rows.length - 2] ?? "";
}

Deno.test("real server: /join adds and switches, unread and a mention in the status line, Alt-n, Ctrl-N/P, the marker, /topic, /part, /msg", async () => {
  const server = await startServer();
  const homes = new TestHomes();
  let screen: TmuxScreen | undefined;
  const alice = await homes.connect(dialServer({ host: "127.0.0.1", port: server.port }), "alice", {
    address: `127.0.0.1:${server.port}`,
  });
  try {
    for (const room of ["general", "ops", "dev"]) await alice.session.join(room, passphraseHooks(PASSPHRASE));
    alice.session.say("deploy on friday", { room: "ops", type: "topic" });
    await alice.session.drain();
    screen = await TmuxScreen.start(["--port", String(server.port), "--nick", "bob", ...FAST], {
      env: { AESCHAT_PASSPHRASE: PASSPHRASE, AESCHAT_HOME: await homes.dir() },
    });
    await screen.waitForLastLine("#general>", "bob in #general", 60_000);

    // /join adds the room and switches to it; the topic is shown on join and in the status line.
    await screen.line("/join #ops");
    await screen.waitFor((t) => t.includes("passphrase for #ops:"), "the passphrase of #ops");
    await screen.line(PASSPHRASE);
    await screen.waitForLastLine("#ops>", "in #ops");
    let text = await screen.waitFor((t) => t.includes("alice set the topic: deploy on friday"), "the topic on join");
    assert.equal(statusLine(text), "1:#general [2:#ops] · topic: deploy on friday");
    await screen.line("/join dev");
    await screen.waitFor((t) => t.includes("passphrase for #dev:"), "the passphrase of #dev");
    await screen.line(PASSPHRASE);
    await screen.waitForLastLine("#dev>", "in #dev");
    text = await screen.waitFor((t) => statusLine(t) === "1:#general 2:#ops [3:#dev]", "three rooms");

    // Other rooms' messages are counted, not shown; a mention is marked with '!'.
    alice.session.say("lunch at noon", { room: "general" });
    alice.session.say("bob, can you look at the deploy?", { room: "ops" });
    alice.session.say("and the logs", { room: "ops" });
    text = await screen.waitFor((t) => statusLine(t) === "1:#general(1) 2:#ops(2!) [3:#dev]", "unread counts");
    assert.ok(!text.includes("lunch at noon") && !text.includes("can you look"), "nothing of other rooms here");
    const coloured = await screen.text({ escapes: true });
    // deno-lint-ignore no-control-regex
    assert.match(coloured, /\x1b\[1m2:#ops\(2!\)/, "the mention highlighted (bold) in the status line");

    // Alt-1: #general, with the marker line and what arrived.
    await screen.press("M-1");
    await screen.waitForLastLine("#general>", "Alt-1");
    text = await screen.waitFor((t) => t.includes("lunch at noon"), "general's line after switching");
    let after = text.slice(text.lastIndexOf("-- now in #general"));
    assert.match(after, /-- new since you last looked: 1 message\n\d\d:\d\d:\d\d <alice> lunch at noon\n/);
    assert.equal(statusLine(text), "[1:#general] 2:#ops(2!) 3:#dev");
    // Ctrl-N: the next one (#ops), its two lines after the marker, the counts gone.
    await screen.press("C-n");
    await screen.waitForLastLine("#ops>", "Ctrl-N");
    text = await screen.waitFor((t) => t.includes("and the logs"), "ops's lines");
    after = text.slice(text.lastIndexOf("-- now in #ops"));
    assert.match(after, /-- topic: deploy on friday\n/);
    assert.match(
      after,
      /-- new since you last looked: 2 messages\n\d\d:\d\d:\d\d <alice> bob, can you look at the deploy\?\n\d\d:\d\d:\d\d <alice> and the logs\n/,
    );
    assert.equal(statusLine(text), "1:#general [2:#ops] 3:#dev · topic: deploy on friday");
    // Ctrl-P twice: #general, then around to #dev; /switch by name and by number.
    await screen.press("C-p");
    await screen.waitForLastLine("#general>", "Ctrl-P");
    await screen.press("C-p");
    await screen.waitForLastLine("#dev>", "Ctrl-P wraps around");
    await screen.line("/switch ops");
    await screen.waitForLastLine("#ops>", "/switch ops");
    await screen.line("/switch 3");
    await screen.waitForLastLine("#dev>", "/switch 3");

    // /topic in a room: alice gets it, the status line shows it.
    await screen.line("/topic ship it");
    await poll(() => alice.messages().some((m) => m.type === "topic" && m.text === "ship it"), "alice gets the topic");
    await screen.waitFor((t) => statusLine(t).endsWith("[3:#dev] · topic: ship it"), "the topic in the status line");

    // /part leaves #dev (the one before it becomes current) and only #dev.
    await screen.line("/part");
    await screen.waitForLastLine("#ops>", "back in #ops after /part");
    text = await screen.waitFor((t) => t.includes("-- left #dev"), "the part");
    assert.equal(count(text.slice(text.lastIndexOf("you set the topic: ship it")), "-- left #dev"), 1, "said once");
    await poll(
      () => alice.of("presence").some((p) => p.event === "leave" && p.nick === "bob" && p.room === "dev"),
      "left",
    );
    alice.session.say("after bob left", { room: "dev" });
    alice.session.say("still in ops", { room: "ops" });
    text = await screen.waitFor((t) => t.includes("still in ops"), "ops still joined");
    assert.ok(!text.includes("after bob left"), "nothing more of #dev");

    // /msg opens a direct conversation beside the rooms; alice's answer is counted there as a mention.
    await screen.line("/msg alice are you there?");
    await poll(() => alice.directs().some((d) => d.text === "are you there?"), "alice's direct message");
    await screen.waitFor((t) => statusLine(t).startsWith("1:#general [2:#ops] 3:@alice"), "the conversation opened");
    alice.session.msg("bob", "yes, here");
    await screen.waitFor((t) => statusLine(t).startsWith("1:#general [2:#ops] 3:@alice(1!)"), "her answer counted");
    await screen.press("M-3");
    await screen.waitForLastLine("@alice>", "Alt-3: the direct conversation");
    text = await screen.waitFor((t) => t.includes("yes, here"), "the conversation");
    assert.match(text, /\d\d:\d\d:\d\d <bob> are you there\?\n(?:.*\n)*\d\d:\d\d:\d\d <alice> yes, here\n/);
    await screen.line("typed here goes to alice");
    await poll(() => alice.directs().some((d) => d.text === "typed here goes to alice"), "a line typed in @alice");
  } finally {
    await screen?.close();
    await alice.close();
    await removeServer(server);
    await homes.cleanup();
  }
});

Deno.test("/whois, /verify (the ✓ mark) and /trust after a key change, asked and confirmed on the terminal", async () => {
  const { server, homes, alice, start, done } = await setUp();
  try {
    const screen = await start();
    await screen.waitFor((t) => t.includes("joined #general"), "bob in #general", 60_000);
    await screen.line("/whois alice");
    let text = await screen.waitFor((t) => t.includes("alice: key"), "/whois");
    assert.match(text, /alice: key ([0-9a-f]{4} ){9}[0-9a-f]{4}, pinned \(not verified: \/verify\)/);
    await screen.line("/verify alice");
    text = await screen.waitFor((t) => t.includes("does alice see exactly the same number? [y/N]"), "the question");
    assert.match(text, /safety number with alice:\n-- {3}(\d{5} ){3}\d{5}\n/);
    await screen.line("y");
    await screen.waitFor((t) => t.includes("alice ✓ is verified"), "verified");
    alice.session.say("from a verified alice");
    await screen.waitFor((t) => /<alice ✓> from a verified alice/.test(t), "the ✓ mark");
    // alice loses her key and comes back with a new one (the operator released her nick).
    await alice.close();
    server.registry.delete("alice");
    const newAlice = await homes.connect(server.dial, "alice", {
      home: await Home.open(await homes.dir()),
      address: "127.0.0.1:1",
    });
    try {
      await newAlice.session.join("general", passphraseHooks(PASSPHRASE));
      newAlice.session.say("it is really me, new key");
      text = await screen.waitFor((t) => t.includes("it is really me"), "the new key's line");
      assert.match(text, /\[key changed\] <alice> it is really me, new key/);
      await screen.line("/trust alice");
      await screen.waitFor((t) => t.includes("trust the offered key of alice? [y/N]"), "the question");
      await screen.line("y");
      await screen.waitFor((t) => t.includes("alice: now trusting"), "trusted");
      newAlice.session.say("after trust");
      text = await screen.waitFor((t) => t.includes("after trust"), "the next line");
      assert.match(text, /\d\d:\d\d:\d\d <alice> after trust/, "no mark, and no ✓: verification starts over");
    } finally {
      await newAlice.close();
    }
  } finally {
    await done();
  }
});

Deno.test("a protected identity: the terminal asks for its passphrase at start; a wrong one ends with exit 2", async () => {
  const { homes, start, done } = await setUp();
  try {
    const dir = await homes.dir();
    const home = await Home.open(dir);
    await home.setPassphrase("identity pass 123");
    let screen = await start({ AESCHAT_HOME: dir });
    await screen.waitFor((t) => t.includes("passphrase of your identity key:"), "the question", 60_000);
    await screen.line("identity pass 123");
    await screen.waitFor((t) => t.includes("joined #general"), "bob joined");
    assert.ok(!(await screen.text()).includes("identity pass 123"), "not echoed");
    await screen.close();
    screen = await start({ AESCHAT_HOME: dir });
    await screen.waitFor((t) => t.includes("passphrase of your identity key:"), "the question again", 60_000);
    await screen.line("wrong");
    await screen.waitFor((t) => t.includes("wrong passphrase for your identity key"), "the refusal");
    assert.equal(await screen.exitCode(), 2);
  } finally {
    await done();
  }
});
