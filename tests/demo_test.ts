/**
 * `deno task demo`, run with the exact deno arguments of the task: it must succeed, show the conversation and the
 * ciphertext rows, and leave nothing behind.
 *
 * @module
 */

import assert from "node:assert/strict";
import denoConfig from "../deno.json" with { type: "json" };
import { ROOT, userHomeEnv } from "./support/programs.ts";

Deno.test("deno task demo shows the decrypted conversation, the ciphertext rows, and removes what it made", async () => {
  const words = denoConfig.tasks.demo.split(/\s+/);
  assert.equal(words[0], "deno");
  // The user's own home is never touched: the clients get temporary homes (AESCHAT_HOME) inside the demo's directory.
  const user = await Deno.makeTempDir({ prefix: "aeschat-demo-user-" });
  const output = await new Deno.Command(Deno.execPath(), {
    args: words.slice(1).map((w) => (w.endsWith(".ts") ? ROOT + w : w)),
    cwd: ROOT,
    env: userHomeEnv(user),
    stdout: "piped",
    stderr: "piped",
  }).output().finally(async () => {
    const made = [...Deno.readDirSync(user)];
    await Deno.remove(user, { recursive: true });
    assert.deepEqual(made, [], "nothing written to the user's home");
  });
  const stdout = new TextDecoder().decode(output.stdout);
  assert.equal(output.code, 0, `${stdout}\n${new TextDecoder().decode(output.stderr)}`);

  const conversation = stdout.split("\n").filter((l) => /^ {2}#\d+ {2}\d\d:\d\d:\d\d </.test(l))
    .map((l) => l.replace(/\d\d:\d\d:\d\d/, "HH:MM:SS"));
  assert.deepEqual(conversation, [
    "  #1  HH:MM:SS <alice> Morning Bob! The release is tagged: v0.1.0.",
    // Bob's lines quote what his client decrypted from alice's.
    "  #2  HH:MM:SS <bob> Great, v0.1.0 it is. Staging after lunch.",
    "  #3  HH:MM:SS <alice> The staging database password is in the vault, entry 'staging-db'.",
    "  #4  HH:MM:SS <bob> Got it: staging-db. I will post when it is live.",
  ]);

  const rows = stdout.split("\n").filter((l) => /^ {2}\d+ +demo +(alice|bob) /.test(l));
  assert.deepEqual(rows.map((r) => r.trim().split(/\s+/).slice(0, 3)), [
    ["1", "demo", "alice"],
    ["2", "demo", "bob"],
    ["3", "demo", "alice"],
    ["4", "demo", "bob"],
  ]);
  for (const row of rows) {
    const [, , , msgId, ct] = row.trim().split(/\s+/);
    assert.match(msgId, /^[0-9a-f]{13}…$/, row);
    assert.match(ct, /^[A-Za-z0-9+/]{59}…$/, "a ciphertext prefix, not text");
    assert.doesNotMatch(row, /release|staging|thanks|live/i, "rows show ciphertext only");
  }
  assert.match(stdout, /^no plaintext in the database: checked/m);

  const dir = /^removed (\S+)$/m.exec(stdout)![1];
  assert.match(dir, /aeschat-demo-/);
  await assert.rejects(Deno.stat(dir), Deno.errors.NotFound, "the temporary directory is gone");
  const port = Number(/listening on 127\.0\.0\.1:(\d+) /.exec(stdout)![1]);
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }), "the server is gone");
});
