/**
 * The smoke test the release workflow runs on every platform (tools/smoke.ts), run here for real: against the source
 * entry points, and with `--dist` against stand-ins for executables (scripts that run a stamped copy of the source
 * with the same permission flags), since real executables cannot be built on this machine.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import denoConfig from "../deno.json" with { type: "json" };
import { artifactName, CHECKSUMS, checksums, copySource, PROGRAMS } from "../tools/release.ts";
import { filesContaining } from "../tools/smoke.ts";
import { ROOT, taskArgs, userHomeEnv } from "./support/programs.ts";

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** Runs `deno task smoke` (its deno.json line) with arguments, its temporary files in `tmp`. */
function smoke(args: string[], options: { tmp: string }): Promise<Deno.CommandOutput> {
  return new Deno.Command(Deno.execPath(), {
    args: [...taskArgs("smoke"), ...args],
    cwd: ROOT,
    // The user's home is `tmp` too: the clients must use their own temporary homes (AESCHAT_HOME), and the test
    // checks that `tmp` is left empty.
    env: { NO_COLOR: "1", TMPDIR: options.tmp, ...userHomeEnv(options.tmp) },
    stdout: "piped",
    stderr: "piped",
  }).output();
}

Deno.test("deno task smoke: a real server and two real clients converse; nothing readable is stored", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "aeschat-smoke-test-" });
  try {
    const output = await smoke([], { tmp });
    const stdout = decode(output.stdout);
    assert.equal(output.code, 0, `${stdout}\n${decode(output.stderr)}`);
    const lines = stdout.split("\n");
    assert.equal(lines[0], "smoke test of the source entry points");
    assert.ok(lines.includes(`  --version: aeschat server ${denoConfig.version} (source)`), stdout);
    assert.ok(lines.includes(`  --version: aeschat client ${denoConfig.version} (source)`), stdout);
    const heard = lines.filter((l) => / received (alice|bob)'s line: smoke [0-9a-f]{12} [123]\/3: /.test(l));
    assert.deepEqual(heard.map((l) => l.trim().split(" ").slice(0, 3).join(" ")), [
      "bob received alice's",
      "alice received bob's",
      "bob received alice's",
    ]);
    assert.ok(lines.includes("  no line and no passphrase in the server's files (aeschat.db) or output"), stdout);
    assert.ok(lines.some((l) => /read the three lines from the stored history$/.test(l)), stdout);
    assert.equal(lines.at(-2), "smoke test passed: the source entry points");
    assert.deepEqual([...Deno.readDirSync(tmp)], [], "its temporary directory is removed");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test({
  name: "deno task smoke --dist: the target's executables, their SHA256SUMS lines and the commit --version names",
  ignore: Deno.build.os === "windows",
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "aeschat-smoke-test-" });
    try {
      // Stand-ins named like the release's executables: scripts running a copy of the source stamped with a commit,
      // with the tasks' permission flags. They exercise the smoke test's --dist path; they are not executables.
      const commit = "89abcdef0123456789abcdef0123456789abcdef";
      const source = join(tmp, "source");
      await Deno.mkdir(source);
      await copySource(ROOT, { dir: source, build: { commit } });
      const dist = join(tmp, "dist");
      await Deno.mkdir(dist);
      const target = "x86_64-unknown-linux-gnu";
      const names = PROGRAMS.map((program) => artifactName(program, { version: denoConfig.version, target }));
      for (const [i, program] of PROGRAMS.entries()) {
        const args = taskArgs(program).map((a) => (a.startsWith(ROOT) ? join(source, a.slice(ROOT.length)) : a));
        const flags = [...args.slice(0, -1), "--config", join(source, "deno.json"), args.at(-1)!];
        const script = `#!/bin/sh\nexec '${Deno.execPath()}' ${flags.map((a) => `'${a}'`).join(" ")} "$@"\n`;
        await Deno.writeTextFile(join(dist, names[i]), script, { mode: 0o755 });
      }
      await Deno.writeTextFile(join(dist, CHECKSUMS), await checksums(dist, names));
      const run = (...args: string[]) => smoke(["--dist", dist, "--target", target, ...args], { tmp: join(tmp, "t") });
      await Deno.mkdir(join(tmp, "t"));

      const wrongCommit = await run("--commit", "0".repeat(40));
      assert.equal(wrongCommit.code, 1);
      assert.match(
        decode(wrongCommit.stderr),
        /^smoke test failed: server --version printed "aeschat server [^"]+ \(commit 89abcdef[0-9a-f]{32}\)\\n", expected aeschat server \S+ \(commit 0{40}\)\n$/,
      );

      const passed = await run("--commit", commit);
      assert.equal(passed.code, 0, `${decode(passed.stdout)}\n${decode(passed.stderr)}`);
      assert.match(decode(passed.stdout), new RegExp(`--version: aeschat client \\S+ \\(commit ${commit}\\)\n`));
      assert.match(decode(passed.stdout), /SHA256SUMS: both executables match\n/);
      assert.match(decode(passed.stdout), new RegExp(`smoke test passed: the ${target} executables\n$`));

      await Deno.writeTextFile(join(dist, names[1]), "\n", { append: true });
      const altered = await run();
      assert.equal(altered.code, 1);
      assert.match(
        decode(altered.stderr),
        new RegExp(`^smoke test failed: SHA256SUMS does not list [0-9a-f]{64}  ${names[1]}\n$`),
      );

      const missing = await smoke(["--dist", dist, "--target", "aarch64-apple-darwin"], { tmp: join(tmp, "t") });
      assert.equal(missing.code, 1);
      assert.match(decode(missing.stderr), /^smoke test failed: no server executable at \S+aarch64-apple-darwin\n$/);
      assert.deepEqual([...Deno.readDirSync(join(tmp, "t"))], [], "its temporary directories are removed");
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test("filesContaining finds a line in any file of a directory as UTF-8, and nothing that is not there", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-smoke-test-" });
  try {
    await Deno.writeFile(join(dir, "a.db"), new Uint8Array([0, 1, ...new TextEncoder().encode("grüße 👋"), 2]));
    await Deno.writeTextFile(join(dir, "a.db-wal"), "nothing here");
    assert.deepEqual(await filesContaining(dir, ["grüße 👋", "absent"]), ["a.db: grüße 👋"]);
    assert.deepEqual(await filesContaining(dir, ["grüsse"]), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
