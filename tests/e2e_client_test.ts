/**
 * End-to-end tests of the client's script mode: the real client.ts and server.ts as processes over loopback TCP,
 * with real SQLite files. Covers the conversation, the output formats, waiting for acks at EOF, every documented
 * exit code, and reconnecting across a server restart without losing or repeating a message.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { dirname } from "node:path";
import {
  exited,
  jsonLines,
  type Program,
  ROOT,
  type ServerProcess,
  spawnTask,
  startServer,
} from "./support/programs.ts";
import { WireClient } from "./support/wire.ts";
import { hasOpenssl, selfSigned } from "./support/tls.ts";
import { EXIT_MEANINGS } from "../lib/client/config.ts";

const PASSPHRASE = "client test passphrase 4f9a";
const FAST = ["--iterations", "100000", "--min-iterations", "100000"];

/**
 * A client process. Each gets a temporary home of its own (a new identity key) unless `home` names one: a user who
 * runs the client twice is the same identity only with the same home.
 */
function client(
  port: number,
  nick: string,
  options: { args?: string[]; env?: Record<string, string>; home?: string } = {},
) {
  return spawnTask("client", {
    args: ["--port", String(port), "--nick", nick, ...FAST, ...(options.args ?? [])],
    env: { AESCHAT_PASSPHRASE: PASSPHRASE, ...(options.home ? { AESCHAT_HOME: options.home } : {}), ...options.env },
    stdin: true,
  });
}

/** The stored messages. The server holds its database exclusively, so it is stopped first. */
async function storedRows(server: ServerProcess): Promise<{ seq: number; sender: string; envelope: string }[]> {
  await server.program.stop();
  return rows(server.db);
}

/** The stored messages of a database no server holds. */
function rows(db: string): { seq: number; sender: string; envelope: string }[] {
  const sqlite = new DatabaseSync(db, { readOnly: true });
  try {
    return sqlite.prepare("SELECT seq, sender, envelope FROM messages ORDER BY seq").all() as {
      seq: number;
      sender: string;
      envelope: string;
    }[];
  } finally {
    sqlite.close();
  }
}

async function cleanup(server: { program: Program; db: string }, ...programs: (Program | undefined)[]) {
  for (const p of programs) await p?.stop("SIGKILL").catch(() => {});
  await server.program.stop().catch(() => {});
  await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
}

Deno.test("script clients converse: history first, then live, as text lines and as JSON lines", async () => {
  const server = await startServer();
  let alice: Program | undefined;
  let bob: Program | undefined;
  let carol: Program | undefined;
  const aliceHome = await Deno.makeTempDir({ prefix: "aeschat-home-" });
  try {
    alice = client(server.port, "alice", { home: aliceHome });
    await alice.write("before one\nbefore two\n");
    await alice.closeStdin();
    assert.equal((await exited(alice)).code, 0, alice.stderr);

    bob = client(server.port, "bob", { args: ["--json"] });
    await bob.waitFor(() => jsonLines(bob!.stdout).length === 2, { what: "bob's history" });
    carol = client(server.port, "carol");
    await carol.waitFor(() => carol!.stdout.split("\n").length >= 3, { what: "carol's history" });
    alice = client(server.port, "alice", { home: aliceHome });
    await alice.write("live one\nlive two\n");
    await bob.waitFor(() => jsonLines(bob!.stdout).length === 4, { what: "bob's live messages" });
    await carol.waitFor(() => carol!.stdout.includes("live two"), { what: "carol's live messages" });
    await Promise.all([alice.closeStdin(), bob.closeStdin(), carol.closeStdin()]);
    for (const p of [alice, bob, carol]) assert.equal((await exited(p)).code, 0, p.stderr);

    const got = jsonLines(bob.stdout);
    assert.deepEqual(got.map((m) => [m.text, m.history, m.from, m.type, m.room]), [
      ["before one", true, "alice", "text", "general"],
      ["before two", true, "alice", "text", "general"],
      ["live one", false, "alice", "text", "general"],
      ["live two", false, "alice", "text", "general"],
    ]);
    for (const m of got) {
      const fields = "room seq from ts id type text history fingerprint trust marks";
      assert.deepEqual(Object.keys(m), fields.split(" "), "the documented fields, in order");
      assert.equal(m.fingerprint, got[0].fingerprint, "one identity key across alice's two runs (one home)");
      assert.match(m.fingerprint as string, /^[0-9a-f]{40}$/);
      assert.ok(m.trust === "new" || m.trust === "pinned", String(m.trust));
      assert.deepEqual(m.marks, []);
      assert.equal(typeof m.ts, "number");
      assert.equal(Uint8Array.fromBase64(m.id as string).length, 16);
    }
    const seqs = got.map((m) => m.seq as number);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), "in seq order");
    const carolLines = carol.stdout.split("\n").filter((l) => l !== "");
    assert.equal(carolLines.length, 4, carol.stdout);
    for (const [i, text] of ["before one", "before two", "live one", "live two"].entries()) {
      assert.match(carolLines[i], new RegExp(`^\\d\\d:\\d\\d:\\d\\d <alice> ${text}$`));
    }
    assert.doesNotMatch(bob.stdout + carol.stdout, /joined|deriving/, "status never goes to stdout");
    assert.match(bob.stderr, /joined #general/);
  } finally {
    await cleanup(server, alice, bob, carol);
    await Deno.remove(aliceHome, { recursive: true });
  }
});

Deno.test("at EOF the client exits 0 only once every line is stored, and blank lines are skipped", async () => {
  const server = await startServer({ args: ["--rate", "0"] });
  let alice: Program | undefined;
  try {
    alice = client(server.port, "alice");
    const lines = Array.from({ length: 200 }, (_, i) => `line ${i}`);
    await alice.write(lines.join("\n\n") + "\n   \n");
    await alice.closeStdin();
    assert.equal((await exited(alice)).code, 0, alice.stderr);
    // Every acked message is already committed.
    const stored = await storedRows(server);
    assert.equal(stored.length, 200);
    assert.ok(stored.every((r) => r.sender === "alice"));
    assert.equal(alice.stdout, "", "a sender shows nothing on stdout");
  } finally {
    await cleanup(server, alice);
  }
});

Deno.test("a line over 16384 bytes is refused with one line on stderr and exit 2; the others are sent", async () => {
  const server = await startServer();
  let alice: Program | undefined;
  try {
    alice = client(server.port, "alice");
    await alice.write(`first\n${"x".repeat(16385)}\nlast\n`);
    await alice.closeStdin();
    assert.equal((await exited(alice)).code, 2);
    assert.match(alice.stderr, /line 2 not sent: message is 16385 bytes; the limit is 16384/);
    assert.equal((await storedRows(server)).length, 2);
  } finally {
    await cleanup(server, alice);
  }
});

Deno.test("the passphrase comes from the first line of --passphrase-file, which wins over AESCHAT_PASSPHRASE", async () => {
  const server = await startServer();
  const file = `${dirname(server.db)}/pass.txt`;
  await Deno.writeTextFile(file, `${PASSPHRASE}\nignored second line\n`);
  let alice: Program | undefined;
  let bob: Program | undefined;
  try {
    alice = client(server.port, "alice");
    await alice.write("hello\n");
    await alice.closeStdin();
    assert.equal((await exited(alice)).code, 0, alice.stderr);
    // The explicit flag wins over the environment (which holds a wrong passphrase here).
    bob = client(server.port, "bob", {
      args: ["--passphrase-file", file],
      env: { AESCHAT_PASSPHRASE: "not the room's passphrase" },
    });
    await bob.waitFor(() => bob!.stdout.includes("<alice> hello"), { what: "history via the file's passphrase" });
    await bob.closeStdin();
    assert.equal((await exited(bob)).code, 0);
  } finally {
    await cleanup(server, alice, bob);
  }
});

Deno.test("exit codes: 2 usage, 3 cannot connect, 4 wrong passphrase, 5 nick registered to another key, 6 server gone", async () => {
  const server = await startServer();
  let holder: Program | undefined;
  try {
    const oneLine = (p: Program) => {
      const lines = p.stderr.split("\n").filter((l) => l.startsWith("aeschat client:"));
      assert.equal(lines.length, 1, p.stderr);
      assert.doesNotMatch(p.stderr, /^\s+at /m, "no stack trace");
      return lines[0];
    };
    const run = async (args: string[], env: Record<string, string> = {}) => {
      const p = spawnTask("client", {
        args: [...args, ...FAST],
        env: { AESCHAT_PASSPHRASE: PASSPHRASE, ...env },
        stdin: true,
      });
      await p.closeStdin();
      const status = await exited(p);
      return { status, line: oneLine(p) };
    };
    const port = String(server.port);
    let r = await run(["--port", port]);
    assert.equal(r.status.code, 2);
    assert.match(r.line, /--nick is required/);
    r = await run(["--port", port, "--nick", "x"], { AESCHAT_PASSPHRASE: "" });
    assert.equal(r.status.code, 2);
    assert.match(r.line, /no passphrase/);
    r = await run(["--port", port, "--nick", "x", "--passphrase", "secret"]);
    assert.equal(r.status.code, 2);
    r = await run(["--nick", "x y", "--port", port]);
    assert.equal(r.status.code, 5, "a nick that breaks the rules is exit 5, as --help says");
    assert.match(r.line, /--nick: .*whitespace/);
    r = await run(["--port", port, "--nick", "x", "--reconnect-for", "-1"]);
    assert.equal(r.status.code, 2);
    assert.match(r.line, /--reconnect-for must be from 0 to 86400, got -1/);
    r = await run(["--port", port, "--nick", "x", "--passphrase-file", "/nonexistent/pass"]);
    assert.equal(r.status.code, 2, "an explicit --passphrase-file that cannot be read is an error, env or not");
    assert.match(r.line, /cannot read --passphrase-file \/nonexistent\/pass: no such file/);
    r = await run(["--port", "1", "--nick", "x"]);
    assert.equal(r.status.code, 3);
    assert.match(r.line, /cannot connect/);

    holder = client(server.port, "holder", { args: ["--reconnect-for", "1"] });
    await holder.waitFor(() => holder!.stderr.includes("joined #general"), { what: "holder joined" });
    r = await run(["--port", port, "--nick", "HOLDER"]);
    assert.equal(r.status.code, 5, "another identity key asks for the nick in another spelling");
    assert.match(r.line, /registered to another identity key/);
    r = await run(["--port", port, "--nick", "eve"], { AESCHAT_PASSPHRASE: "not the passphrase" });
    assert.equal(r.status.code, 4);
    assert.match(r.line, /wrong passphrase for #general/);

    await server.program.stop();
    const status = await exited(holder, 20_000);
    assert.equal(status.code, 6);
    assert.match(holder.stderr, /connection lost/);
    assert.match(holder.stderr, /the connection was lost and did not come back within 1 s/);
  } finally {
    await cleanup(server, holder);
  }
});

Deno.test("a client with --reconnect-for 2 gives up with exit 6 when the server stays down", async () => {
  const server = await startServer();
  let alice: Program | undefined;
  let observer: WireClient | undefined;
  try {
    // The server relays a message only after storing it, so a member seeing it knows it is stored.
    observer = await WireClient.member(server.port, "observer", { passphrase: PASSPHRASE });
    alice = client(server.port, "alice", { args: ["--reconnect-for", "2"] });
    await alice.waitFor(() => alice!.stderr.includes("joined #general"), { what: "joined" });
    await alice.write("stored before the outage\n");
    await observer.next("message", { timeoutMs: 20_000 });
    await server.program.stop("SIGKILL");
    await alice.write("never stored\nnor this\n");
    const status = await exited(alice);
    assert.equal(status.code, 6, alice.stderr);
    assert.match(alice.stderr, /did not come back within 2 s/);
    // Every line that was not stored is named.
    assert.match(alice.stderr, /2 lines were not stored:\n {2}line 2: never stored\n {2}line 3: nor this\n/);
    assert.equal(rows(server.db).length, 1);
  } finally {
    observer?.close();
    await cleanup(server, alice);
  }
});

Deno.test("across a server restart mid-conversation no message is lost or shown twice", async () => {
  const first = await startServer();
  const db = first.db;
  const port = first.port;
  let second: Awaited<ReturnType<typeof startServer>> | undefined;
  let alice: Program | undefined;
  let bob: Program | undefined;
  try {
    bob = client(port, "bob", { args: ["--json"] });
    await bob.waitFor(() => bob!.stderr.includes("joined #general"), { what: "bob joined" });
    alice = client(port, "alice");
    await alice.waitFor(() => alice!.stderr.includes("joined #general"), { what: "alice joined" });
    const texts = Array.from({ length: 60 }, (_, i) => `message ${i}`);
    for (const text of texts.slice(0, 20)) await alice.write(text + "\n");
    await bob.waitFor(() => jsonLines(bob!.stdout).length >= 5, { what: "bob receiving" });
    // Crash the server in the middle of the burst; some of these lines are in flight, some unacked.
    for (const text of texts.slice(20, 30)) await alice.write(text + "\n");
    await first.program.stop("SIGKILL");
    // Lines typed while the server is down wait in the client and are sent after the reconnect.
    for (const text of texts.slice(30, 45)) await alice.write(text + "\n");
    second = await startServer({ db, args: ["--port", String(port)] });
    await alice.waitFor(() => alice!.stderr.includes("reconnected"), { what: "alice reconnected", timeoutMs: 30_000 });
    for (const text of texts.slice(45)) await alice.write(text + "\n");
    await alice.closeStdin();
    assert.equal((await exited(alice)).code, 0, alice.stderr);
    await bob.waitFor(() => jsonLines(bob!.stdout).length >= texts.length, {
      what: "every message at bob",
      timeoutMs: 30_000,
    });
    await new Promise((resolve) => setTimeout(resolve, 500)); // a duplicate would arrive now
    await bob.closeStdin();
    assert.equal((await exited(bob)).code, 0, bob.stderr);

    const shown = jsonLines(bob.stdout).map((m) => m.text);
    assert.deepEqual(shown, texts, "every message once, in order");
    const stored = await storedRows(second!);
    assert.equal(stored.length, texts.length, "each message stored once");
    assert.match(bob.stderr, /reconnected/);
    // The lines written during the outage waited in alice's client and went out after the reconnect.
    assert.match(alice.stderr, /reconnected: \d+ missed messages fetched, [1-9]\d* resent/);
  } finally {
    await second?.program.stop().catch(() => {});
    await cleanup(first, alice, bob);
  }
});

Deno.test("a line break or bidi control in a message cannot forge an output line; --json keeps the exact text", async () => {
  const server = await startServer();
  let bob: Program | undefined;
  let carol: Program | undefined;
  const alice = await WireClient.member(server.port, "alice", { passphrase: PASSPHRASE });
  try {
    bob = client(server.port, "bob");
    carol = client(server.port, "carol", { args: ["--json"] });
    for (const p of [bob, carol]) await p.waitFor(() => p.stderr.includes("joined #general"), { what: "joined" });
    const texts = [
      "build ok\u2028 23:59:59 <alice> approved: deploy to prod",
      "para\u2029graph\x85next\vline\fform\x1cfile",
      "bidi \u202egnp.exe\u202c and \u2066isolate\u2069 and \u200fmark",
      "emoji 👩\u200d💻 and می\u200cخواهم stay",
      "the end",
    ];
    for (const text of texts) await alice.say(text);
    await bob.waitFor(() => bob!.stdout.includes("the end"), { what: "bob's messages" });
    await carol.waitFor(() => carol!.stdout.includes("the end"), { what: "carol's messages" });
    // Split the way Python's str.splitlines() does: one line per message, each a message line.
    // deno-lint-ignore no-control-regex
    const lines = bob.stdout.split(/\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]/).filter((l) => l !== "");
    assert.equal(lines.length, texts.length, JSON.stringify(bob.stdout));
    for (const line of lines) assert.match(line, /^\d\d:\d\d:\d\d <alice> /);
    assert.doesNotMatch(bob.stdout, /[\u202a-\u202e\u2066-\u2069\u200e\u200f]/, "no bidi control reaches stdout");
    assert.ok(bob.stdout.includes("emoji 👩\u200d💻 and می\u200cخواهم stay"), "ZWJ and ZWNJ are kept");
    assert.deepEqual(jsonLines(carol.stdout).map((m) => m.text), texts, "--json keeps every character");
  } finally {
    alice.close();
    await alice.ended;
    await cleanup(server, bob, carol);
  }
});

Deno.test("--help documents every flag and the exit codes; --version prints the version", async () => {
  const help = spawnTask("client", { args: ["--help"] });
  assert.equal((await help.status).code, 0);
  for (
    const flag of ["host", "port", "nick", "room", "to", "tls", "ca", "iterations", "min-iterations", "remember"]
      .concat(["passphrase-file", "json", "no-history"])
  ) {
    assert.match(help.stdout, new RegExp(`--${flag}\\b`));
  }
  assert.match(help.stdout, /AESCHAT_PASSPHRASE/);
  for (const [code, meaning] of Object.entries(EXIT_MEANINGS)) {
    assert.ok(help.stdout.includes(`  ${code}  ${meaning}\n`), `--help says exit ${code}: ${meaning}`);
  }
  const short = spawnTask("client", { args: ["-h"] });
  assert.equal((await short.status).code, 0);
  assert.equal(short.stdout, help.stdout, "-h is --help");
  // README lists the same exit codes in the same words.
  const readme = (await Deno.readTextFile(`${ROOT}README.md`)).replace(/\s+/g, " ");
  for (const [code, meaning] of Object.entries(EXIT_MEANINGS)) {
    assert.ok(readme.includes(`${code} ${meaning}`), `README says exit ${code}: ${meaning}`);
  }
  const version = spawnTask("client", { args: ["--version"] });
  assert.equal((await version.status).code, 0);
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  // From source there is no commit to name (tests/release_test.ts checks a stamped build).
  assert.equal(version.stdout, `aeschat client ${config.version} (source)\n`);
});

Deno.test({
  name: "TLS: --ca trusts a self-signed server; every mismatch is one line that says what to do, with exit 3",
  ignore: !hasOpenssl,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "aeschat-tls-" });
    const { cert, key } = await selfSigned(dir);
    const other = await selfSigned(dir, "other", { dns: "chat.example" });
    const server = await startServer({ args: ["--tls-cert", cert, "--tls-key", key] });
    const plain = await startServer();
    const programs: Program[] = [];
    const refusal = async (port: number, args: string[]) => {
      const p = client(port, "bob", { args });
      programs.push(p);
      await p.closeStdin();
      assert.equal((await exited(p)).code, 3, p.stderr);
      const lines = p.stderr.split("\n").filter((l) => l !== "");
      assert.equal(lines.length, 1, p.stderr);
      return lines[0];
    };
    try {
      const alice = client(server.port, "alice", { args: ["--ca", cert] });
      programs.push(alice);
      await alice.write("over tls\n");
      await alice.closeStdin();
      assert.equal((await exited(alice)).code, 0, alice.stderr);
      const at = (port: number) => `aeschat client: cannot connect to 127.0.0.1:${port}`;
      assert.equal(
        await refusal(server.port, ["--tls"]),
        `${at(server.port)}: certificate not trusted: pass --ca FILE`,
      );
      assert.equal(await refusal(server.port, []), `${at(server.port)}: the server speaks TLS: add --tls`);
      assert.equal(await refusal(plain.port, ["--tls"]), `${at(plain.port)}: the server does not speak TLS`);
      // The other server presents a certificate made for chat.example.
      const named = await startServer({ args: ["--tls-cert", other.cert, "--tls-key", other.key] });
      try {
        assert.equal(
          await refusal(named.port, ["--ca", other.cert]),
          `${at(named.port)}: certificate is for chat.example, not 127.0.0.1`,
        );
      } finally {
        await named.program.stop();
        await Deno.remove(dirname(named.db), { recursive: true }).catch(() => {});
      }
      assert.equal((await storedRows(server)).length, 1);
    } finally {
      await cleanup(plain);
      await cleanup(server, ...programs);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
