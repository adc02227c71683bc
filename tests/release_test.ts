/**
 * The release script (tools/release.ts): its targets, artifact names and permission flags against deno.json, the
 * stamped copy of the source, SHA256SUMS, and, for real, how it fails where Deno's runtime cannot be downloaded.
 * Producing an executable needs that download, so the success path runs only in the release workflow.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import denoConfig from "../deno.json" with { type: "json" };
import { UsageError } from "../lib/flags.ts";
import {
  artifactName,
  BUILD_INFO,
  checksums,
  compileArgs,
  copySource,
  describeCompileFailure,
  INCLUDE,
  isReplaceable,
  moveIntoPlace,
  PROGRAMS,
  selectTargets,
  smokeMatrix,
  TARGETS,
} from "../tools/release.ts";
import { ROOT, taskArgs } from "./support/programs.ts";

const tasks = denoConfig.tasks as Record<string, string>;
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** The permission flags among deno arguments. */
function permissionFlags(args: string[]): string[] {
  return args.filter((a) => /^(-P\b|--permission-set|-A$|--allow-|--deny-)/.test(a));
}

/** Runs the deno.json task line of `task` with extra arguments. */
function runTask(task: string, args: string[], options: { env?: Record<string, string>; clearEnv?: boolean } = {}) {
  return new Deno.Command(Deno.execPath(), {
    args: [...taskArgs(task), ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...options.env },
    clearEnv: options.clearEnv,
    stdout: "piped",
    stderr: "piped",
  }).output();
}

Deno.test("the release builds the five platforms, each smoke-tested on a hosted runner of its own OS and CPU", () => {
  assert.deepEqual(TARGETS.map((t) => [t.target, t.runner]), [
    ["x86_64-unknown-linux-gnu", "ubuntu-latest"],
    ["aarch64-unknown-linux-gnu", "ubuntu-24.04-arm"],
    ["aarch64-apple-darwin", "macos-latest"],
    ["x86_64-apple-darwin", "macos-15-intel"],
    ["x86_64-pc-windows-msvc", "windows-latest"],
  ]);
  assert.deepEqual(smokeMatrix(), { include: TARGETS.map(({ target, runner }) => ({ target, runner })) });
});

Deno.test("artifacts are named aeschat-<program>-<version>-<target>, with .exe on Windows only, all different", () => {
  const names = TARGETS.flatMap(({ target }) =>
    PROGRAMS.map((program) => artifactName(program, { version: denoConfig.version, target }))
  );
  assert.equal(new Set(names).size, 10);
  assert.equal(
    artifactName("server", { version: "0.1.0", target: "x86_64-unknown-linux-gnu" }),
    "aeschat-server-0.1.0-x86_64-unknown-linux-gnu",
  );
  assert.equal(
    artifactName("client", { version: "0.1.0", target: "x86_64-pc-windows-msvc" }),
    "aeschat-client-0.1.0-x86_64-pc-windows-msvc.exe",
  );
  for (const { target } of TARGETS) {
    const name = artifactName("client", { version: denoConfig.version, target });
    assert.equal(name.endsWith(".exe"), target.endsWith("-windows-msvc"), name);
    assert.ok(name.startsWith(`aeschat-client-${denoConfig.version}-${target}`), name);
  }
});

Deno.test("each program is compiled with the permission set and entry point of its deno task, from deno.json", () => {
  const permissions = denoConfig.permissions as Record<string, Record<string, unknown>>;
  for (const program of PROGRAMS) {
    const source = "/tmp/aeschat-source";
    const args = compileArgs(program, { target: TARGETS[0].target, source, output: "/tmp/out/x" });
    const task = taskArgs(program);
    // The same flags as `deno task server|client` (and so as the end-to-end tests): one named set in deno.json.
    assert.deepEqual(permissionFlags(args), permissionFlags(task));
    assert.deepEqual(permissionFlags(args), [`-P=${program}`]);
    assert.ok(Object.keys(permissions[program]).length > 0, `deno.json has a "${program}" permission set`);
    // ... read from the copy's deno.json, which is the repository's.
    assert.equal(args[args.indexOf("--config") + 1], join(source, "deno.json"));
    assert.equal(args.at(-1), join(source, task.at(-1)!.slice(ROOT.length)));
    assert.deepEqual(args.slice(args.indexOf("--target"), args.indexOf("--target") + 2), [
      "--target",
      TARGETS[0].target,
    ]);
    assert.deepEqual(args.slice(args.indexOf("--output"), args.indexOf("--output") + 2), ["--output", "/tmp/out/x"]);
    const included = (list: string[]) => list.flatMap((a, i) => (a === "--include" ? [list[i + 1]] : []));
    assert.deepEqual(included(args), INCLUDE.map((f) => join(source, f)));
    // Files to embed (a future GUI's assets) go in from the copy with --include, one flag each, before the entry.
    const withAssets = compileArgs(program, { target: "t", source, output: "o", include: ["web/", "lib/x.json"] });
    assert.deepEqual(included(withAssets), [join(source, "web/"), join(source, "lib/x.json")]);
    assert.equal(withAssets.at(-1), args.at(-1));
  }
});

Deno.test("deno task compile and compile:all are the release script, so there is one list of targets", () => {
  assert.equal(tasks.compile, "deno task release --target host");
  assert.equal(tasks["compile:all"], "deno task release --target all");
  assert.match(tasks.release, /^deno run .* tools\/release\.ts$/);
  assert.doesNotMatch(JSON.stringify(tasks), /deno compile/, "no task compiles by itself");
});

Deno.test("the release workflow calls the script and the smoke test, takes its matrix from the script, pins Deno", async () => {
  const workflow = await Deno.readTextFile(`${ROOT}.github/workflows/release.yml`);
  const ci = await Deno.readTextFile(`${ROOT}.ci/run`);
  const pinned = /^DENO_VERSION=(\S+)$/m.exec(ci)![1];
  assert.match(workflow, new RegExp(`DENO_VERSION: v${pinned.replaceAll(".", "\\.")}\\n`), "the Deno of .ci/run");
  assert.match(workflow, /deno task release --matrix/);
  assert.match(workflow, /matrix: \$\{\{ fromJSON\(needs\.build\.outputs\.matrix\) \}\}/);
  assert.match(workflow, /deno task release\b/);
  assert.match(workflow, /deno task smoke --dist dist --target/);
  assert.match(workflow, /deno task check/);
  assert.match(workflow, /deno task test/);
  for (const { target } of TARGETS) {
    assert.doesNotMatch(workflow, new RegExp(target), "the workflow names no target itself");
  }
  // A malformed workflow fails `deno task check`, which CI runs.
  assert.match(tasks.check, / && npx -y @action-validator\/cli@[\d.]+ \.github\/workflows\/release\.yml$/);
  assert.match(ci, /^deno task check \|\| checks_failed$/m);
});

Deno.test("selectTargets takes all, host and names, in release order, and refuses others", () => {
  assert.deepEqual(selectTargets("all", { host: "x" }), [...TARGETS]);
  assert.deepEqual(selectTargets("host", { host: "aarch64-apple-darwin" }).map((t) => t.target), [
    "aarch64-apple-darwin",
  ]);
  assert.deepEqual(
    selectTargets("x86_64-pc-windows-msvc, x86_64-unknown-linux-gnu", { host: "x" }).map((t) => t.target),
    ["x86_64-unknown-linux-gnu", "x86_64-pc-windows-msvc"],
  );
  assert.throws(() => selectTargets("host", { host: "riscv64gc-unknown-linux-gnu" }), UsageError);
  assert.throws(() => selectTargets("wasm32", { host: "x" }), /--target wasm32 is not one we build/);
});

// What deno compile 2.9.6 printed here (NO_COLOR=1, RUST_BACKTRACE=1): no DNS, and a proxy that refuses.
const DNS_FAILURE = `Compile server.ts to /tmp/out/aeschat-server
Download https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip
error: Writing deno compile executable to temporary file '/tmp/out/aeschat-server.tmp-f4a6e9a1a81158a0'

Caused by:
    0: Setting up base binary.
    1: error sending request for url (https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip): client error (Connect): dns error: failed to lookup address information: Name or service not known
    2: client error (Connect)
    3: dns error
    4: failed to lookup address information: Name or service not known

Stack backtrace:
   0: <unknown>
`;

Deno.test("a failed runtime download becomes one line naming the address and the reason", () => {
  const options = { artifact: "aeschat-server-0.1.0-x86_64-unknown-linux-gnu", target: TARGETS[0].target, out: "dist" };
  const line = describeCompileFailure(DNS_FAILURE, options);
  assert.equal(
    line,
    "cannot download Deno's runtime for x86_64-unknown-linux-gnu from " +
      "https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip (failed to lookup address " +
      "information: Name or service not known); dist was not touched: build where dl.deno.land is reachable (the " +
      "release workflow does), or with DENORT_BIN set to a denort for x86_64-unknown-linux-gnu",
  );
  assert.ok(!line.includes("\n"));
  // A runtime that is not on the server (HTTP 404) is only logged, after the Download line.
  const missing = "Download https://dl.deno.land/release/v9.9.9/denort-x86_64-unknown-linux-gnu.zip\n" +
    "Download could not be found, aborting\n";
  assert.match(
    describeCompileFailure(missing, options),
    /^cannot download .* from https:\/\/dl\.deno\.land\/release\/v9\.9\.9\/denort-x86_64-unknown-linux-gnu\.zip \(not found\); dist was not touched/,
  );
  // Anything else (a type error) names the first error and the artifact.
  const typeError = "Check server.ts\nTS2322 [ERROR]: Type 'string' is not assignable to type 'number'.\n" +
    "error: Type checking failed.\n";
  assert.equal(
    describeCompileFailure(typeError, options),
    "deno compile failed for aeschat-server-0.1.0-x86_64-unknown-linux-gnu: Type checking failed.; dist was not touched",
  );
});

Deno.test("SHA256SUMS lists every file's SHA-256 in sha256sum's format, sorted by name", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-release-test-" });
  try {
    await Deno.writeTextFile(join(dir, "b"), "abc");
    await Deno.writeTextFile(join(dir, "a"), "");
    assert.equal(
      await checksums(dir, ["b", "a"]),
      // FIPS 180-2's "abc" vector, and the empty input.
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  a\n" +
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  b\n",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("moveIntoPlace replaces the old output as a whole and leaves nothing beside it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-release-test-" });
  try {
    const out = join(dir, "dist");
    await Deno.mkdir(out);
    await Deno.writeTextFile(join(out, "old"), "old build");
    const staging = await Deno.makeTempDir({ dir, prefix: ".dist-partial-" });
    await Deno.writeTextFile(join(staging, "new"), "new build");
    await moveIntoPlace(staging, out);
    assert.deepEqual([...Deno.readDirSync(out)].map((e) => e.name), ["new"]);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["dist"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("only a missing directory or a previous build's may be replaced by a build", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-release-test-" });
  try {
    const out = join(dir, "dist");
    assert.equal(await isReplaceable(out), true, "absent");
    await Deno.mkdir(out);
    assert.equal(await isReplaceable(out), true, "empty");
    await Deno.writeTextFile(join(out, "SHA256SUMS"), "");
    await Deno.writeTextFile(join(out, artifactName("client", { version: "0.1.0", target: TARGETS[4].target })), "");
    assert.equal(await isReplaceable(out), true, "a previous build");
    await Deno.writeTextFile(join(out, "notes.txt"), "mine");
    assert.equal(await isReplaceable(out), false, "a file of someone's");
    assert.equal(await isReplaceable(ROOT), false, "the repository");
    assert.equal(await isReplaceable(join(ROOT, "deno.json")), false, "a file");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the copy the executables are built from names the commit in --version; the repository is untouched", async () => {
  const git = async (...args: string[]) =>
    decode((await new Deno.Command("git", { args, cwd: ROOT, stdout: "piped" }).output()).stdout);
  const before = await git("status", "--porcelain");
  const dir = await Deno.makeTempDir({ prefix: "aeschat-release-test-" });
  try {
    const commit = "0123456789abcdef0123456789abcdef01234567";
    await copySource(ROOT, { dir, build: { commit } });
    assert.deepEqual(JSON.parse(await Deno.readTextFile(join(dir, BUILD_INFO))), { commit });
    for (const program of PROGRAMS) {
      // The copy's entry point with the task's permission flags: what deno compile embeds.
      const args = taskArgs(program).map((a) => (a.startsWith(ROOT) ? join(dir, a.slice(ROOT.length)) : a));
      const output = await new Deno.Command(Deno.execPath(), { args: [...args, "--version"], cwd: dir }).output();
      assert.equal(decode(output.stdout), `aeschat ${program} ${denoConfig.version} (commit ${commit})\n`);
    }
    assert.deepEqual(JSON.parse(await Deno.readTextFile(join(ROOT, BUILD_INFO))), { commit: null });
    assert.equal(await git("status", "--porcelain"), before, "git status is as it was");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad flags, and a tag that is not deno.json's version, stop at once with one line and exit 2", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-release-test-" });
  try {
    const out = join(dir, "dist");
    const [tag, target, matrix, root] = await Promise.all([
      runTask("release", ["--tag", "v0.0.0-other", "--out", out]),
      runTask("release", ["--target", "wasm32", "--out", out]),
      runTask("release", ["--matrix"]),
      runTask("release", ["--out", "."]),
    ]);
    assert.equal(root.code, 2);
    assert.equal(
      decode(root.stderr),
      "aeschat release: --out . holds other files than a build's; name a new or empty directory (see --help)\n",
    );
    assert.equal(tag.code, 2);
    assert.equal(
      decode(tag.stderr),
      `aeschat release: --tag v0.0.0-other does not match deno.json's version ${denoConfig.version}: tag ` +
        `v${denoConfig.version} instead (see --help)\n`,
    );
    assert.equal(target.code, 2);
    assert.match(decode(target.stderr), /^aeschat release: --target wasm32 is not one we build; [^\n]*\n$/);
    assert.equal(matrix.code, 0);
    assert.deepEqual(JSON.parse(decode(matrix.stdout)), smokeMatrix());
    assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing was made");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * The environment of a release run that cannot get Deno's runtime: the proxy stands between it and the download
 * server on any machine, even where dl.deno.land is reachable; an empty DENO_DIR holds no cached runtime; TMPDIR shows
 * whether the script's copy of the source is removed.
 */
function isolatedEnv(dir: string, proxy: string): Record<string, string> {
  return {
    PATH: Deno.env.get("PATH") ?? "",
    HOME: Deno.env.get("HOME") ?? dir,
    DENO_DIR: join(dir, "deno"),
    TMPDIR: join(dir, "tmp"),
    HTTPS_PROXY: proxy,
    https_proxy: proxy,
  };
}

/** What a release run must leave in its directory: the DENO_DIR, and an empty TMPDIR. */
function assertNothingLeft(dir: string): void {
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["deno", "tmp"], "no dist, no partial one");
  assert.deepEqual([...Deno.readDirSync(join(dir, "tmp"))], [], "the copy of the source is removed");
}

Deno.test("where Deno's runtime cannot be downloaded, the release stops with one line naming it and makes no dist", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-release-test-" });
  // A closed port as the proxy: the download fails at once.
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const proxy = `http://127.0.0.1:${(closed.addr as Deno.NetAddr).port}`;
  closed.close();
  await Deno.mkdir(join(dir, "tmp"));
  try {
    const target = TARGETS[0].target;
    const output = await runTask("release", ["--target", target, "--out", join(dir, "dist")], {
      clearEnv: true,
      env: isolatedEnv(dir, proxy),
    });
    const stderr = decode(output.stderr);
    assert.equal(output.code, 1, stderr);
    const lines = stderr.split("\n");
    assert.equal(lines.length, 2, `one line:\n${stderr}`);
    assert.equal(lines[1], "");
    assert.match(
      lines[0],
      new RegExp(
        `^aeschat release: cannot download Deno's runtime for ${target} from https://\\S+/denort-${target}\\.zip ` +
          `\\(.+\\); ${dir}/dist was not touched: `,
      ),
    );
    assert.match(
      decode(output.stdout),
      new RegExp(`^building ${artifactName("server", { ...denoConfig, target })}$`, "m"),
    );
    assertNothingLeft(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Whether `promise` settles within `ms` milliseconds. */
async function within(ms: number, promise: Promise<unknown>): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([promise.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("a build interrupted during the download (SIGINT) stops deno compile and leaves nothing behind", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-release-test-" });
  await Deno.mkdir(join(dir, "tmp"));
  // A proxy that accepts and never answers: the download hangs until the build is interrupted.
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of silent) held.push(conn);
  })().catch(() => {});
  const child = new Deno.Command(Deno.execPath(), {
    args: [...taskArgs("release"), "--target", TARGETS[0].target, "--out", join(dir, "dist")],
    cwd: ROOT,
    clearEnv: true,
    env: { ...isolatedEnv(dir, `http://127.0.0.1:${(silent.addr as Deno.NetAddr).port}`), NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    const deadline = Date.now() + 60_000;
    while (held.length === 0) {
      assert.ok(Date.now() < deadline, "deno compile asked the proxy for the runtime within 60 s");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    child.kill("SIGINT");
    const stderr = new Response(child.stderr).text();
    assert.ok(await within(60_000, child.status), "the release exited within 60 s of SIGINT");
    assert.equal((await child.status).code, 1, await stderr);
    assert.equal(await stderr, `aeschat release: interrupted; ${dir}/dist was not touched\n`);
    // deno compile is gone too: its connection to the proxy (after its CONNECT request) is closed.
    const closed = (async () => {
      const buffer = new Uint8Array(4096);
      while ((await held[0].read(buffer).catch(() => null)) !== null) { /* the request */ }
    })();
    assert.ok(await within(30_000, closed), "deno compile closed its connection within 30 s");
    assertNothingLeft(dir);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await child.status;
    silent.close();
    await accepting;
    for (const conn of held) conn.close();
    await Deno.remove(dir, { recursive: true });
  }
});
