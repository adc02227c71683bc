/**
 * People at the real interactive client in tmux, against the real server: the answers a hurried person gives.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dialServer } from "../lib/client/link.ts";
import { exited, removeServer, spawnTask, startServer } from "./support/programs.ts";
import { passphraseHooks, poll, TestHomes } from "./support/session_clients.ts";
import { TmuxScreen } from "./support/tmux.ts";
import { WireClient } from "./support/wire.ts";

const FAST = ["--iterations", "100000", "--min-iterations", "100000"];

Deno.test("Enter on an empty passphrase for a room that exists leaves it unjoined: nothing derived, not 'access denied'", async () => {
  const server = await startServer();
  let screen: TmuxScreen | undefined;
  const bob = await WireClient.member(server.port, "bob", { passphrase: "people test passphrase 0c41" });
  try {
    screen = await TmuxScreen.start(["--port", String(server.port), "--nick", "kim", "--min-iterations", "100000"]);
    await screen.waitFor((t) => t.includes("passphrase for #general:"), "the passphrase question");
    await screen.press("Enter");
    const text = await screen.waitFor((t) => t.includes("EXIT="), "the client ends");
    assert.match(text, /-- not joined #general/, text);
    assert.ok(!text.includes("deriving room key"), `nothing is derived from an empty passphrase:\n${text}`);
    assert.ok(!text.includes("must not be empty"), text);
    // Declining the first room is the user's choice, as when declining to create it: exit 0, not 4.
    assert.equal(await screen.exitCode(), 0);
  } finally {
    await screen?.close();
    bob.close();
    await bob.ended;
    await removeServer(server);
  }
});

Deno.test("an invitation to the room being joined at start: an empty answer to the passphrase question accepts it", async () => {
  const server = await startServer();
  const homes = new TestHomes();
  let screen: TmuxScreen | undefined;
  const alice = await homes.connect(dialServer({ host: "127.0.0.1", port: server.port }), "alice", {
    address: `127.0.0.1:${server.port}`,
  });
  try {
    await alice.session.join("general", passphraseHooks("people test passphrase 0c41"));
    const carolHome = await homes.dir();
    // carol's nick and keys are registered by a first run that joins no room.
    const first = spawnTask("client", {
      args: ["--port", String(server.port), "--nick", "carol", "--to", "alice"],
      env: { AESCHAT_HOME: carolHome },
      stdin: true,
    });
    await first.closeStdin();
    assert.equal((await exited(first)).code, 0, first.stderr);
    alice.session.invite("carol", { room: "general" });
    await alice.session.drain();
    screen = await TmuxScreen.start(["--port", String(server.port), "--nick", "carol", ...FAST], {
      env: { AESCHAT_HOME: carolHome },
    });
    await screen.waitFor(
      (t) => t.includes("passphrase for #general (empty: accept alice's invitation):"),
      "the passphrase question offering the invitation",
      60_000,
    );
    await screen.press("Enter");
    await screen.waitForLastLine("#general>", "carol in #general", 60_000);
    const text = await screen.text();
    assert.match(text, /-- accepted alice's invitation to #general/, text);
    assert.match(text, /-- joined #general: /, text);
    assert.ok(!text.includes("deriving room key"), `nothing derived:\n${text}`);
    alice.session.say("welcome carol", { room: "general" });
    await screen.waitFor((t) => /<alice> welcome carol/.test(t), "alice's line at carol's");
    // carol joined once: no join, leave, join as with the `accept` subcommand.
    await poll(() => alice.of("presence").some((p) => p.nick === "carol"), "carol's presence at alice's");
    const presence = alice.of("presence").filter((p) => p.nick === "carol").map((p) => p.event);
    assert.deepEqual(presence, ["join"]);
    await screen.line("/quit");
    assert.equal(await screen.exitCode(), 0);
  } finally {
    await screen?.close();
    await alice.close();
    await removeServer(server);
    await homes.cleanup();
  }
});

Deno.test("a room created by someone else while one chose its passphrase: said so, its passphrase asked, nothing derived for nothing", async () => {
  const server = await startServer();
  let screen: TmuxScreen | undefined;
  let bob: WireClient | undefined;
  try {
    screen = await TmuxScreen.start(["--port", String(server.port), "--nick", "kim", ...FAST]);
    await screen.waitFor((t) => t.includes("choose a passphrase for #general"), "the creation question", 60_000);
    // bob creates #general while kim types.
    bob = await WireClient.member(server.port, "bob", { passphrase: "bob's passphrase for general 5e21" });
    await screen.line("kim's passphrase for general 77a0");
    await screen.waitFor((t) => t.includes("repeat the passphrase:"), "the repeat question");
    await screen.line("kim's passphrase for general 77a0");
    let text = await screen.waitFor(
      (t) => /passphrase for #general: *$/m.test(t),
      "the passphrase of the room bob made",
    );
    assert.match(text, /-- #general was created meanwhile by someone else: enter its passphrase/, text);
    assert.ok(!text.includes("deriving room key"), `no key derived for a room that cannot be made:\n${text}`);
    await screen.line("bob's passphrase for general 5e21");
    await screen.waitForLastLine("#general>", "kim in #general", 60_000);
    text = await screen.text();
    assert.equal(text.split("deriving room key").length - 1, 1, text);
    assert.match(text, /-- joined #general: /, text);
  } finally {
    await screen?.close();
    bob?.close();
    await bob?.ended;
    await removeServer(server);
  }
});
