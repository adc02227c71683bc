/**
 * People at the real interactive client in tmux, against the real server: the answers a hurried person gives.
 *
 * @module
 */

import assert from "node:assert/strict";
import { removeServer, startServer } from "./support/programs.ts";
import { TmuxScreen } from "./support/tmux.ts";
import { WireClient } from "./support/wire.ts";

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
