/**
 * `deno task smoke`: checks a server and a client end to end, as a user would run them, through their command line
 * only (tools/programs.ts): `--version` of both; a server on 127.0.0.1 with a fresh database; two clients in script
 * mode who join a passphrase room and exchange three lines, each checked as received by the other; the database files
 * searched for the lines and the passphrase (none may be there); then the server restarted on the same database and
 * one client back to read the three lines from history. The release workflow runs it against each target's
 * executables on a runner of that platform; the test suite runs it against the source entry points.
 *
 * ```sh
 * deno task smoke                                            # deno run server.ts / client.ts, deno.json's permissions
 * deno task smoke --dist dist --target x86_64-apple-darwin   # the executables of that target in dist/
 * ```
 *
 * @module
 */

import { join, resolve } from "node:path";
import denoConfig from "../deno.json" with { type: "json" };
import { flagHelp, type FlagSpec, parseFlags, UsageError } from "../lib/flags.ts";
import { generatePassphrase } from "../lib/client/passphrase.ts";
import {
  fromExecutables,
  fromSource,
  hasJoined,
  type Launch,
  type Program,
  received,
  startClient,
  startServer,
  versionOf,
} from "./programs.ts";
import { artifactName, CHECKSUMS, checksums, PROGRAMS } from "./release.ts";

const ROOM = "smoke";
/** The lowest PBKDF2 count the client accepts: the smoke test checks the programs, not the key stretching. */
const ITERATIONS = 100_000;

/** What to check: the source entry points, or a target's executables in a directory. */
export type Subject =
  | { kind: "source" }
  | { kind: "executables"; dist: string; target: string; commit?: string };

/** Raised when a check fails: the message says which and what was seen. */
export class SmokeError extends Error {
  /** @param message what failed */
  constructor(message: string) {
    super(message);
    this.name = "SmokeError";
  }
}

function check(ok: boolean, message: string): void {
  if (!ok) throw new SmokeError(message);
}

/**
 * The programs of a subject.
 *
 * @param subject what to check
 * @returns how to start them
 */
export function launchOf(subject: Subject): Launch {
  if (subject.kind === "source") return fromSource();
  const path = (program: "server" | "client") =>
    resolve(subject.dist, artifactName(program, { version: denoConfig.version, target: subject.target }));
  return fromExecutables({ server: path("server"), client: path("client") });
}

/** `--version` of both: the version of deno.json, and "(source)" or the commit the executables were built from. */
async function checkVersions(subject: Subject, launch: Launch, log: (line: string) => void): Promise<void> {
  for (const program of PROGRAMS) {
    const { code, stdout, stderr } = await versionOf(launch, program);
    check(code === 0, `${program} --version exited with ${code}: ${stderr.trim()}`);
    const line = stdout.replace(/\r?\n$/, "");
    const prefix = `aeschat ${program} ${denoConfig.version}`;
    if (subject.kind === "executables" && subject.commit === undefined) {
      const pattern = new RegExp(`^${prefix.replaceAll(".", "\\.")} \\(commit [0-9a-f]{40}(-dirty)?\\)$`);
      check(
        pattern.test(line),
        `${program} --version printed ${JSON.stringify(stdout)}, expected ${prefix} (commit SHA)`,
      );
    } else {
      const expected = `${prefix} (${subject.kind === "source" ? "source" : `commit ${subject.commit}`})`;
      check(line === expected, `${program} --version printed ${JSON.stringify(stdout)}, expected ${expected}`);
    }
    log(`--version: ${line}`);
  }
}

/** The executables are the ones SHA256SUMS lists. */
async function checkChecksums(subject: Subject & { kind: "executables" }, log: (line: string) => void) {
  const listed = await Deno.readTextFile(join(subject.dist, CHECKSUMS));
  for (const program of PROGRAMS) {
    const name = artifactName(program, { version: denoConfig.version, target: subject.target });
    const line = await checksums(subject.dist, [name]);
    check(listed.includes(line), `${CHECKSUMS} does not list ${line.trim()}`);
  }
  log(`${CHECKSUMS}: both executables match`);
}

/**
 * Which of the secrets appear, as UTF-8 bytes, in which file of a directory.
 *
 * @param dir the directory (its files, not subdirectories)
 * @param secrets the texts to look for
 * @returns one "file: secret" entry per find
 */
export async function filesContaining(dir: string, secrets: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    if (!entry.isFile) continue;
    const bytes = await Deno.readFile(join(dir, entry.name));
    const text = new TextDecoder("latin1").decode(bytes);
    for (const secret of secrets) {
      const needle = new TextDecoder("latin1").decode(new TextEncoder().encode(secret));
      if (text.includes(needle)) found.push(`${entry.name}: ${secret}`);
    }
  }
  return found;
}

/** Waits until `listener` has printed `text` from `from`. */
async function heard(listener: Program, options: { from: string; text: string }): Promise<void> {
  await listener.until(
    () => received(listener).some((m) => m.from === options.from && m.text === options.text),
    `${listener.name} to receive "${options.text}" from ${options.from}`,
  );
}

/**
 * Runs every check. Every process it starts is stopped and every file it makes is removed, also on failure.
 *
 * @param subject what to check
 * @param options.log where progress lines go
 * @param options.signal abort to stop at once
 */
export async function smokeTest(
  subject: Subject,
  options: { log: (line: string) => void; signal?: AbortSignal },
): Promise<void> {
  const { log, signal } = options;
  const launch = launchOf(subject);
  for (const program of PROGRAMS) {
    const path = launch[program][0];
    const info = await Deno.stat(path).catch(() => undefined);
    check(info?.isFile === true, `no ${program} executable at ${path}`);
  }
  await checkVersions(subject, launch, log);
  if (subject.kind === "executables") await checkChecksums(subject, log);

  const dir = await Deno.makeTempDir({ prefix: "aeschat-smoke-" });
  const programs: Program[] = [];
  try {
    const data = join(dir, "server");
    const homes = { alice: join(dir, "alice"), bob: join(dir, "bob") };
    for (const d of [data, ...Object.values(homes)]) await Deno.mkdir(d, { mode: 0o700 });
    const db = join(data, "aeschat.db");
    const passphrase = generatePassphrase();
    // A fresh token makes the lines this run's own; one line is not ASCII.
    const token = crypto.getRandomValues(new Uint8Array(6)).toHex();
    const lines: ["alice" | "bob", string][] = [
      ["alice", `smoke ${token} 1/3: hello bob, this is alice`],
      ["bob", `smoke ${token} 2/3: grüße zurück, alice 👋`],
      ["alice", `smoke ${token} 3/3: see you later`],
    ];

    let server = await startServer(launch, { db, signal });
    programs.push(server.program);
    log(`server listening on 127.0.0.1:${server.port}`);
    const client = (nick: "alice" | "bob") => {
      const program = startClient(launch, {
        port: server.port,
        nick,
        room: ROOM,
        passphrase,
        home: homes[nick],
        iterations: ITERATIONS,
        signal,
      });
      programs.push(program);
      return program;
    };
    const clients = { alice: client("alice") } as Record<"alice" | "bob", Program>;
    await clients.alice.until(() => hasJoined(clients.alice, ROOM), `alice to create #${ROOM}`);
    clients.bob = client("bob");
    await clients.bob.until(() => hasJoined(clients.bob, ROOM), `bob to join #${ROOM}`);
    log(`alice created #${ROOM} with a passphrase, bob joined with it`);

    for (const [speaker, text] of lines) {
      const listener = speaker === "alice" ? "bob" : "alice";
      await clients[speaker].say(text);
      await heard(clients[listener], { from: speaker, text });
      log(`${listener} received ${speaker}'s line: ${text}`);
    }
    for (const nick of ["alice", "bob"] as const) {
      // At the end of its input a script-mode client exits 0 once the server has stored all it sent.
      const status = await clients[nick].finish();
      check(status.code === 0, `${nick}'s client exited with ${status.code}:\n${clients[nick].stderr}`);
    }
    const stopped = await server.program.stop();
    // Windows has no SIGTERM to send: the server is killed there, so only elsewhere must it stop cleanly.
    if (Deno.build.os !== "windows") {
      check(stopped.code === 0, `the server exited with ${stopped.code} on SIGTERM:\n${server.program.stderr}`);
    }

    const secrets = [...lines.map(([, text]) => text), passphrase];
    const leaks = await filesContaining(data, secrets);
    check(leaks.length === 0, `plaintext in the server's files: ${leaks.join("; ")}`);
    const said = server.program.stdout + server.program.stderr;
    check(!secrets.some((s) => said.includes(s)), "plaintext or the passphrase in the server's output");
    const files = [...Deno.readDirSync(data)].map((e) => e.name).sort();
    log(`no line and no passphrase in the server's files (${files.join(", ")}) or output`);

    // The stored ciphertext is the conversation: a restarted server replays it, and bob's client decrypts it.
    server = await startServer(launch, { db, signal });
    programs.push(server.program);
    const back = client("bob");
    await back.until(
      () => received(back).filter((m) => m.history).length >= lines.length,
      "bob to receive the history",
    );
    const history = received(back).filter((m) => m.history).map((m) => [m.from, m.text]);
    check(
      JSON.stringify(history) === JSON.stringify(lines),
      `history after a restart was ${JSON.stringify(history)}, expected ${JSON.stringify(lines)}`,
    );
    const status = await back.finish();
    check(status.code === 0, `bob's client exited with ${status.code}:\n${back.stderr}`);
    await server.program.stop();
    log("after a server restart, bob's client read the three lines from the stored history");
  } finally {
    for (const program of programs) program.kill();
    await Promise.all(programs.map((p) => p.done.catch(() => {})));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

const FLAGS: FlagSpec<"dist" | "target" | "commit" | "help">[] = [
  { name: "dist", key: "dist", kind: "string", arg: "DIR", help: "check the executables in DIR (default: source)" },
  {
    name: "target",
    key: "target",
    kind: "string",
    arg: "TARGET",
    help: "with --dist: whose executables (default: host)",
  },
  { name: "commit", key: "commit", kind: "string", arg: "SHA", help: "with --dist: the commit --version must name" },
  { name: "help", key: "help", kind: "boolean", help: "show this help and exit" },
];

/**
 * Reads the command line.
 *
 * @param args the arguments
 * @returns what to check, or "help"
 * @throws {UsageError} for a bad flag
 */
export function parseSmokeFlags(args: string[]): Subject | "help" {
  const flags = parseFlags(FLAGS, args) as { dist?: string; target?: string; commit?: string; help?: boolean };
  if (flags.help) return "help";
  if (flags.dist === undefined) {
    if (flags.target !== undefined || flags.commit !== undefined) {
      throw new UsageError("--target and --commit need --dist");
    }
    return { kind: "source" };
  }
  return { kind: "executables", dist: flags.dist, target: flags.target ?? Deno.build.target, commit: flags.commit };
}

if (import.meta.main) {
  const interrupted = new AbortController();
  try {
    Deno.addSignalListener("SIGINT", () => interrupted.abort());
  } catch {
    // no SIGINT listener on this platform
  }
  let code = 0;
  try {
    const subject = parseSmokeFlags(Deno.args);
    if (subject === "help") {
      console.log(
        ["deno task smoke [options]: checks the server and client end to end.", "", ...flagHelp(FLAGS)].join("\n"),
      );
    } else {
      const what = subject.kind === "source" ? "the source entry points" : `the ${subject.target} executables`;
      console.log(`smoke test of ${what}`);
      await smokeTest(subject, { log: (line) => console.log(`  ${line}`), signal: interrupted.signal });
      console.log(`smoke test passed: ${what}`);
    }
  } catch (err) {
    console.error(
      err instanceof UsageError
        ? `aeschat smoke: ${err.message} (see --help)`
        : `smoke test failed: ${err instanceof Error ? err.message : String(err)}`,
    );
    code = err instanceof UsageError ? 2 : 1;
  }
  Deno.exit(code);
}
