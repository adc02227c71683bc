/**
 * Makes tests/fixtures/v1_server.sql: a database written by the protocol v1 programs themselves (the last v1 commit,
 * taken from this repository's history with `git archive`, its server and clients run as processes), then dumped to
 * SQL text with node:sqlite (tests/support/sql_dump.ts), for the test of the v1 -> v2 migration, which builds a
 * database file from it. Text, not the binary file: it diffs, and no database file is kept in git. Rooms whose names
 * fold together are created on purpose (`Ops`, then `ops` and `0PS`), with messages in each. What went in is written
 * to tests/fixtures/v1_server.json (passphrases included: they are test data).
 *
 * Run from the repository root: deno run -A tools/v1_fixture.ts [COMMIT]
 *
 * @module
 */

import { dumpDatabase } from "../tests/support/sql_dump.ts";

/** The last commit whose server and client speak protocol v1. */
const V1_COMMIT = "d68b938";

/** What the fixture holds: for each room, in order of creation, who created it, its passphrase, what was said. */
const ROOMS = [
  { room: "Ops", passphrase: "ops v1 passphrase 1", lines: [["alice", "deploy at noon"], ["bob", "ok"]] },
  { room: "general", passphrase: "general v1 passphrase", lines: [["bob", "hello v1"], ["alice", "hi bob"]] },
  { room: "ops", passphrase: "another ops passphrase", lines: [["carol", "this room will be shadowed"]] },
  { room: "0PS", passphrase: "zero ops passphrase", lines: [["dave", "so will this one"]] },
];

async function run(
  cmd: string,
  args: string[],
  options: { cwd?: string; stdin?: string; env?: Record<string, string> } = {},
) {
  const child = new Deno.Command(cmd, {
    args,
    cwd: options.cwd,
    env: options.env,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed (${out.code}): ${text}`);
  return text;
}

async function main(commit: string): Promise<void> {
  const root = new URL("../", import.meta.url).pathname;
  const work = await Deno.makeTempDir({ prefix: "aeschat-v1-" });
  const db = `${work}/v1.db`;
  try {
    await run("sh", ["-c", `git -C "$0" archive ${commit} | tar -x -C "$1"`, root, work]);
    const server = new Deno.Command(Deno.execPath(), {
      args: ["run", "-q", "-P=server", "server.ts", "--port", "0", "--db", db],
      cwd: work,
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let line = "";
    while (!/listening on [^:]+:(\d+)/.test(line)) line += (await reader.read()).value ?? "";
    const port = /listening on [^:]+:(\d+)/.exec(line)![1];
    try {
      for (const r of ROOMS) {
        await Deno.writeTextFile(`${work}/pass`, r.passphrase + "\n");
        for (const [nick, text] of r.lines) {
          // One client per line: the first creates the room, later ones join it.
          await run(Deno.execPath(), [
            "run",
            "-q",
            "-P=client",
            "client.ts",
            "--port",
            port,
            "--nick",
            nick,
            "--room",
            r.room,
            "--iterations",
            "100000",
            "--passphrase-file",
            `${work}/pass`,
          ], { cwd: work, stdin: `${text}\n` });
        }
        // created_at has a millisecond resolution: keep the creations apart.
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } finally {
      server.kill("SIGTERM");
      await server.status;
    }
    await Deno.writeTextFile(`${root}tests/fixtures/v1_server.sql`, dumpDatabase(db));
    await Deno.writeTextFile(
      `${root}tests/fixtures/v1_server.json`,
      JSON.stringify(
        { note: `written by tools/v1_fixture.ts with the v1 programs of commit ${commit}`, rooms: ROOMS },
        null,
        2,
      ) +
        "\n",
    );
    console.log(`wrote tests/fixtures/v1_server.sql and v1_server.json (v1 programs of ${commit})`);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

if (import.meta.main) await main(Deno.args[0] ?? V1_COMMIT);
