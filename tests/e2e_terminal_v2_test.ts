/**
 * The interactive client's v2 commands in a real terminal (tmux), against the v2 server double over real TCP with the
 * other members in-process: the identity passphrase asked at start, several rooms on one connection (typed lines go to
 * the current room, another room's lines wait for a switch), /whois, /verify with the ✓ mark, and /trust after a key
 * change. /msg, /invite and /accept run against the real server in e2e_direct_client_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Home } from "../lib/client/home.ts";
import { EvilServer } from "./support/evil_server.ts";
import { passphraseHooks, poll, TestHomes } from "./support/session_clients.ts";
import { TmuxScreen } from "./support/tmux.ts";

const PASSPHRASE = "e2e terminal v2 passphrase 11";
const FAST = ["--iterations", "100000", "--min-iterations", "100000"];

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

Deno.test("several rooms on one connection: lines go to the current room, another room's wait for /switch; /part", async () => {
  const { alice, start, done } = await setUp();
  try {
    await alice.session.join("ops", passphraseHooks(PASSPHRASE));
    const screen = await start();
    await screen.waitFor((t) => t.includes("joined #general"), "bob in #general", 60_000);
    await screen.line("/join #ops");
    // The preset passphrase was for the first room: another room's is asked.
    await screen.waitFor((t) => t.includes("passphrase for #ops:"), "the question");
    await screen.line(PASSPHRASE);
    await screen.waitForLastLine("#ops>", "the prompt of #ops");
    await screen.line("hello ops");
    await poll(() => alice.messages().length === 1, "bob's line");
    assert.deepEqual(alice.messages().map((m) => [m.room, m.text]), [["ops", "hello ops"]]);
    alice.session.say("in general", { room: "general" });
    alice.session.say("in ops", { room: "ops" });
    let text = await screen.waitFor((t) => t.includes("in ops") && t.includes("1:#general(1)"), "the ops line");
    assert.ok(!text.includes("in general"), "another room's line does not show in this one");
    await screen.line("/join general");
    text = await screen.waitFor((t) => t.includes("in general"), "the general line after switching");
    await screen.waitForLastLine("#general>", "the prompt of #general");
    await screen.line("/part ops");
    await screen.line("/rooms");
    await screen.waitFor((t) => /rooms: #general \(\d\)/.test(t), "the room list");
  } finally {
    await done();
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
