/**
 * `deno task release`: builds the prebuilt executables. For each target it compiles the server and the client with
 * their permission sets from deno.json (`-P=server`, `-P=client`, the same sets `deno task server|client` use), from a
 * copy of the source whose lib/build_info.json names the git commit, into `aeschat-<program>-<version>-<target>[.exe]`;
 * then it writes SHA256SUMS and moves the whole set into dist/, only once every build has succeeded. The release
 * workflow (.github/workflows/release.yml) runs it, and anyone can run it by hand. `deno task compile` is the same for
 * this machine's target only.
 *
 * @module
 */

import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import denoConfig from "../deno.json" with { type: "json" };
import { type BuildInfo } from "../lib/version.ts";
import { flagHelp, type FlagSpec, parseFlags, UsageError } from "../lib/flags.ts";

/** The repository root. */
export const ROOT: string = fileURLToPath(new URL("../", import.meta.url));

/** A platform we publish executables for, and the hosted CI runner of that platform that smoke-tests them. */
export interface Target {
  /** The `deno compile --target` name, also the artifact name's last part. */
  target: string;
  /** The GitHub-hosted runner label of the same OS and architecture. */
  runner: string;
  /** For people: OS and architecture. */
  platform: string;
}

/**
 * Every target, in release order. The release workflow reads its smoke-test matrix from this list (`--matrix`).
 * macos-13 was the last x86_64 macOS runner until GitHub retired it in December 2025; macos-15-intel replaced it.
 */
export const TARGETS: readonly Target[] = [
  { target: "x86_64-unknown-linux-gnu", runner: "ubuntu-latest", platform: "Linux x86_64" },
  { target: "aarch64-unknown-linux-gnu", runner: "ubuntu-24.04-arm", platform: "Linux arm64" },
  { target: "aarch64-apple-darwin", runner: "macos-latest", platform: "macOS arm64 (Apple silicon)" },
  { target: "x86_64-apple-darwin", runner: "macos-15-intel", platform: "macOS x86_64 (Intel)" },
  { target: "x86_64-pc-windows-msvc", runner: "windows-latest", platform: "Windows x86_64" },
];

/** The two programs: each is `<name>.ts` at the root, compiled with the permission set of the same name. */
export const PROGRAMS = ["server", "client"] as const;

/** A program's name. */
export type ProgramName = typeof PROGRAMS[number];

/**
 * Files and directories embedded in both executables with `--include`, relative to the repository root. A program
 * reads them at run time from `import.meta.dirname` (read-only there), so assets such as a future GUI's keep the
 * executables single files. Empty today: lib/build_info.json is imported, and imports are embedded anyway.
 */
export const INCLUDE: readonly string[] = [];

/** Where the commit is stamped, relative to the root (see lib/version.ts). */
export const BUILD_INFO = "lib/build_info.json";

/** The checksum file's name, in `sha256sum` format. */
export const CHECKSUMS = "SHA256SUMS";

/** A failed build: the message is one line for the user. */
export class ReleaseError extends Error {
  /** @param message what failed and what to do */
  constructor(message: string) {
    super(message);
    this.name = "ReleaseError";
  }
}

/**
 * The file name of one executable.
 *
 * @example
 * ```ts
 * artifactName("client", { version: "0.1.0", target: "x86_64-pc-windows-msvc" });
 * // "aeschat-client-0.1.0-x86_64-pc-windows-msvc.exe"
 * ```
 * @param program server or client
 * @param options.version the version from deno.json
 * @param options.target the compile target
 * @returns the name, with .exe for Windows
 */
export function artifactName(program: ProgramName, options: { version: string; target: string }): string {
  const exe = options.target.includes("windows") ? ".exe" : "";
  return `aeschat-${program}-${options.version}-${options.target}${exe}`;
}

/**
 * The arguments of `deno` that compile one program for one target from a source tree.
 *
 * @param program server or client
 * @param options.target the compile target
 * @param options.source the source tree (a stamped copy of the repository)
 * @param options.output the executable to write
 * @param options.include files to embed, relative to the source tree (default INCLUDE)
 * @returns the arguments after `deno`
 */
export function compileArgs(
  program: ProgramName,
  options: { target: string; source: string; output: string; include?: readonly string[] },
): string[] {
  return [
    "compile",
    `-P=${program}`,
    "--config",
    join(options.source, "deno.json"),
    "--target",
    options.target,
    ...(options.include ?? INCLUDE).flatMap((file) => ["--include", join(options.source, file)]),
    "--output",
    options.output,
    join(options.source, `${program}.ts`),
  ];
}

/**
 * The smoke-test matrix of the release workflow: one job per target, on its runner.
 *
 * @returns `{ include: [{ target, runner }, …] }`, as `strategy.matrix` takes it
 */
export function smokeMatrix(): { include: { target: string; runner: string }[] } {
  return { include: TARGETS.map(({ target, runner }) => ({ target, runner })) };
}

/**
 * Resolves `--target` values: "all" (every target), "host" (this machine's), or target names.
 *
 * @param names the comma-separated values given
 * @param options.host this machine's target (Deno.build.target)
 * @returns the targets, in release order
 * @throws {UsageError} for an unknown name, or a host we do not publish for
 */
export function selectTargets(names: string, options: { host: string }): Target[] {
  const wanted = new Set<string>();
  for (const name of names.split(",").map((n) => n.trim())) {
    if (name === "all") TARGETS.forEach((t) => wanted.add(t.target));
    else if (name === "host") wanted.add(options.host);
    else wanted.add(name);
  }
  const known = TARGETS.map((t) => t.target);
  for (const name of wanted) {
    if (!known.includes(name)) {
      throw new UsageError(`--target ${name} is not one we build; the targets are all, host, ${known.join(", ")}`);
    }
  }
  return TARGETS.filter((t) => wanted.has(t.target));
}

/**
 * Turns the output of a failed `deno compile` into one line. A failed download of Deno's runtime (`denort`) is named
 * with its address and the reason; anything else gives the first error line.
 *
 * @param stderr what deno compile wrote to stderr (without colours)
 * @param options.artifact the executable being built
 * @param options.target its target
 * @param options.out the output directory, as the user named it
 * @returns the line, without "aeschat release: "
 */
export function describeCompileFailure(
  stderr: string,
  options: { artifact: string; target: string; out: string },
): string {
  const lines = stderr.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "");
  const url = /error sending request for url \((\S+?)\)/.exec(stderr)?.[1] ??
    lines.map((l) => /^Download (https?:\/\/\S+)$/.exec(l)?.[1]).filter((u) => u !== undefined).at(-1);
  // anyhow's chain: "Caused by:" then "N: cause" lines; a "Stack backtrace:" may follow (RUST_BACKTRACE).
  const chain = stderr.split(/^Caused by:$/m)[1]?.split(/^Stack backtrace:$/m)[0] ?? "";
  const causes = chain.split(/\r?\n/).map((l) => /^\s*\d+: (.*)$/.exec(l)?.[1]).filter((c) => c !== undefined);
  // A missing file (HTTP 404) only logs this line and exits 1; the address is on the "Download" line before it.
  const notFound = /Download could not be found/.test(stderr);
  if (url !== undefined && (notFound || causes.includes("Setting up base binary."))) {
    const reason = notFound ? "not found" : causes.at(-1) ?? "failed";
    return `cannot download Deno's runtime for ${options.target} from ${url} (${reason}); ${options.out} was not ` +
      `touched: build where ${new URL(url).host} is reachable (the release workflow does), or with DENORT_BIN set ` +
      `to a denort for ${options.target}`;
  }
  const first = (lines.find((l) => l.startsWith("error:")) ?? lines.at(-1) ?? "no output").replace(/^error: /, "");
  return `deno compile failed for ${options.artifact}: ${first}; ${options.out} was not touched`;
}

/**
 * The `sha256sum` lines for files, sorted by name (`sha256sum -c`, `shasum -a 256 -c` check them).
 *
 * @param dir where the files are
 * @param names the file names
 * @returns the text of SHA256SUMS
 */
export async function checksums(dir: string, names: readonly string[]): Promise<string> {
  const lines = [];
  for (const name of [...names].sort()) {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await Deno.readFile(join(dir, name))));
    lines.push(`${digest.toHex()}  ${name}\n`);
  }
  return lines.join("");
}

async function git(args: string[], cwd: string): Promise<string> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("git", { args, cwd, stdout: "piped", stderr: "piped" }).output();
  } catch (err) {
    throw new ReleaseError(`cannot run git ${args[0]}: ${(err as Error).message.split("\n")[0]}`);
  }
  if (!output.success) {
    const why = new TextDecoder().decode(output.stderr).trim().split("\n")[0];
    throw new ReleaseError(`git ${args[0]} failed in ${cwd}: ${why} (build from a git checkout)`);
  }
  return new TextDecoder().decode(output.stdout);
}

/**
 * The commit the working tree is at, with "-dirty" when it has local changes (tracked or untracked, not ignored):
 * the executables then say they are not exactly that commit.
 *
 * @param root the repository
 * @returns the build info to stamp
 */
export async function currentBuild(root: string): Promise<BuildInfo> {
  const sha = (await git(["rev-parse", "HEAD"], root)).trim();
  const dirty = (await git(["status", "--porcelain"], root)).trim() !== "";
  return { commit: dirty ? `${sha}-dirty` : sha };
}

/**
 * Copies the working tree as git sees it (tracked and untracked files, not ignored ones) to `dir`, and stamps the
 * copy's build info. The repository itself is never written to.
 *
 * @param root the repository
 * @param options.dir an empty directory to copy into
 * @param options.build what to stamp into lib/build_info.json
 */
export async function copySource(root: string, options: { dir: string; build: BuildInfo }): Promise<void> {
  const listed = await git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], root);
  for (const path of listed.split("\0").filter((p) => p !== "")) {
    const info = await Deno.lstat(join(root, path)).catch(() => undefined);
    if (!info?.isFile) continue; // deleted but still tracked, or a submodule
    await Deno.mkdir(dirname(join(options.dir, path)), { recursive: true });
    await Deno.copyFile(join(root, path), join(options.dir, path));
  }
  const stamped = join(options.dir, BUILD_INFO);
  if (!(await Deno.stat(stamped).catch(() => undefined))?.isFile) {
    throw new ReleaseError(`${BUILD_INFO} is missing: lib/version.ts reads the commit from it`);
  }
  await Deno.writeTextFile(stamped, JSON.stringify(options.build) + "\n");
}

/**
 * Whether a directory may be replaced by a build: it does not exist, or it holds nothing but a build's files (so a
 * mistaken `--out .` or `--out lib` is refused instead of replaced).
 *
 * @param out the output directory
 * @returns true if it is absent or holds only `aeschat-server-*`, `aeschat-client-*` and SHA256SUMS files
 */
export async function isReplaceable(out: string): Promise<boolean> {
  const info = await Deno.lstat(out).catch(() => undefined);
  if (info === undefined) return true;
  if (!info.isDirectory) return false;
  for await (const entry of Deno.readDir(out)) {
    if (!entry.isFile || !(entry.name === CHECKSUMS || /^aeschat-(server|client)-/.test(entry.name))) return false;
  }
  return true;
}

/**
 * Replaces `out` with the complete directory `staging` (a sibling): the old one is moved aside first and removed
 * last, so `out` is never a mix of two builds.
 *
 * @param staging the finished build
 * @param out where it belongs
 */
export async function moveIntoPlace(staging: string, out: string): Promise<void> {
  const previous = `${staging}-previous`;
  const had = await Deno.lstat(out).then(() => true, () => false);
  if (had) await Deno.rename(out, previous);
  try {
    await Deno.rename(staging, out);
  } catch (err) {
    if (had) await Deno.rename(previous, out);
    throw err;
  }
  if (had) await Deno.remove(previous, { recursive: true });
}

const FLAGS: FlagSpec<"target" | "out" | "tag" | "matrix" | "help">[] = [
  {
    name: "target",
    key: "target",
    kind: "string",
    default: "all",
    arg: "LIST",
    help: "comma-separated: all, host (this machine), or target names",
  },
  { name: "out", key: "out", kind: "string", default: "dist", arg: "DIR", help: "where the executables go" },
  {
    name: "tag",
    key: "tag",
    kind: "string",
    arg: "vX.Y.Z",
    help: "refuse to build unless it is v + deno.json's version",
  },
  { name: "matrix", key: "matrix", kind: "boolean", help: "print the smoke-test matrix (JSON) and exit" },
  { name: "help", key: "help", kind: "boolean", help: "show this help and exit" },
];

function help(): string {
  return [
    "deno task release [options]: builds aeschat's executables for every target (deno task compile: this machine).",
    "",
    "Options:",
    ...flagHelp(FLAGS),
    "",
    `Targets: ${TARGETS.map((t) => t.target).join(", ")}.`,
    "Writes aeschat-server-VERSION-TARGET[.exe], aeschat-client-VERSION-TARGET[.exe] and SHA256SUMS into --out,",
    "replacing it only when every build succeeded. Exit codes: 0 built, 1 a build failed or was interrupted, 2 bad flag.",
  ].join("\n");
}

/** Aborted by SIGINT or SIGTERM: the running compile is killed and the cleanup runs. */
const interrupted = new AbortController();

async function compile(
  program: ProgramName,
  options: { target: string; source: string; output: string; out: string },
): Promise<void> {
  const stopped = () => new ReleaseError(`interrupted; ${options.out} was not touched`);
  if (interrupted.signal.aborted) throw stopped();
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(Deno.execPath(), {
      args: compileArgs(program, options),
      cwd: options.source,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
      signal: interrupted.signal,
    }).output();
  } catch (err) {
    throw interrupted.signal.aborted ? stopped() : err;
  }
  if (interrupted.signal.aborted) throw stopped();
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr);
    const line = describeCompileFailure(stderr, { ...options, artifact: basename(options.output) });
    // Deno's own diagnostics (a type error, say) are worth seeing; a download failure says it all in one line.
    if (line.startsWith("deno compile failed")) console.error(stderr.trimEnd());
    throw new ReleaseError(line);
  }
}

/**
 * Builds every selected target into a staging directory beside `out`, then moves it into place.
 *
 * @param targets what to build
 * @param options.out the output directory
 * @param options.label the output directory as the user named it
 * @param options.build the build info to stamp
 * @returns the file names written, SHA256SUMS last
 */
async function build(targets: Target[], options: { out: string; label: string; build: BuildInfo }): Promise<string[]> {
  const source = await Deno.makeTempDir({ prefix: "aeschat-release-source-" });
  let staging: string | undefined;
  try {
    await copySource(ROOT, { dir: source, build: options.build });
    await Deno.mkdir(dirname(options.out), { recursive: true });
    staging = await Deno.makeTempDir({ dir: dirname(options.out), prefix: `.${basename(options.out)}-partial-` });
    const names: string[] = [];
    for (const { target } of targets) {
      for (const program of PROGRAMS) {
        const name = artifactName(program, { version: denoConfig.version, target });
        console.log(`building ${name}`);
        await compile(program, { target, source, output: join(staging, name), out: options.label });
        names.push(name);
      }
    }
    await Deno.writeTextFile(join(staging, CHECKSUMS), await checksums(staging, names));
    await moveIntoPlace(staging, options.out);
    staging = undefined;
    return [...names, CHECKSUMS];
  } finally {
    await Deno.remove(source, { recursive: true }).catch(() => {});
    if (staging !== undefined) await Deno.remove(staging, { recursive: true }).catch(() => {});
  }
}

async function main(args: string[]): Promise<number> {
  const flags = parseFlags(FLAGS, args) as {
    target: string;
    out: string;
    tag?: string;
    matrix?: boolean;
    help?: boolean;
  };
  if (flags.help) {
    console.log(help());
    return 0;
  }
  if (flags.matrix) {
    console.log(JSON.stringify(smokeMatrix()));
    return 0;
  }
  const version = denoConfig.version;
  if (flags.tag !== undefined && flags.tag !== `v${version}`) {
    throw new UsageError(`--tag ${flags.tag} does not match deno.json's version ${version}: tag v${version} instead`);
  }
  const targets = selectTargets(flags.target, { host: Deno.build.target });
  if (Deno.env.get("DENORT_BIN") && targets.length > 1) {
    throw new UsageError("DENORT_BIN is one target's runtime: build that target alone (--target NAME)");
  }
  const out = resolve(ROOT, flags.out);
  if (!(await isReplaceable(out))) {
    throw new UsageError(`--out ${flags.out} holds other files than a build's; name a new or empty directory`);
  }
  const stamp = await currentBuild(ROOT);
  const count = targets.length === 1 ? "1 target" : `${targets.length} targets`;
  console.log(`aeschat ${version}, commit ${stamp.commit}, deno ${Deno.version.deno}: ${count}`);
  const written = await build(targets, { out, label: flags.out, build: stamp });
  for (const name of written) console.log(`  ${join(flags.out, name)}`);
  return 0;
}

if (import.meta.main) {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(signal, () => interrupted.abort());
    } catch {
      // not available on this platform
    }
  }
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`aeschat release: ${err.message} (see --help)`);
      code = 2;
    } else {
      console.error(
        `aeschat release: ${err instanceof ReleaseError ? "" : "internal error: "}${(err as Error).message}`,
      );
      code = 1;
    }
  }
  Deno.exit(code);
}
