import assert from "node:assert/strict";
import denoConfig from "../deno.json" with { type: "json" };
import { ROOT } from "./support/programs.ts";

Deno.test("deno task demo shows the decrypted conversation, the ciphertext rows, and removes what it made", async () => {
  const words = denoConfig.tasks.demo.split(/\s+/);
  assert.equal(words[0], "deno");
  const output = await new Deno.Command(Deno.execPath(), {
    args: words.slice(1).map((w) => (w.endsWith(".ts") ? ROOT + w : w)),
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  assert.match(stdout, /#1 {2}\d\d:\d\d:\d\d <alice> Morning Bob! The release is tagged: v0\.1\.0\./);
  assert.match(stdout, /#4 {2}\d\d:\d\d:\d\d <bob> Got it, thanks\./);
  const rows = stdout.split("\n").filter((l) => /^ {2}\d+ +demo +(alice|bob) /.test(l));
  assert.equal(rows.length, 4, stdout);
  for (const row of rows) assert.doesNotMatch(row, /release|staging|thanks/i, "rows show ciphertext only");
  assert.match(stdout, /no plaintext or passphrase in the database or its -wal file: checked/);
  const dir = /removed (\S+)/.exec(stdout)![1];
  await assert.rejects(Deno.stat(dir), Deno.errors.NotFound, "the temporary directory is gone");
});
