/**
 * Startup faults of the real server process: each prints one clear line on stderr (no stack trace), nothing on
 * stdout, and exits with its documented code: 2 bad flag, 3 cannot listen, 4 cannot open the database, 5 database
 * corrupt, foreign or newer (left byte for byte unchanged), 6 bad TLS files.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { type Program, type ServerProcess, spawnTask, startServer } from "./support/programs.ts";
import { hasOpenssl, selfSigned } from "./support/tls.ts";
import { closeAll, WireClient } from "./support/wire.ts";

const PASSPHRASE = "startup test passphrase 3e8b";

interface Fault {
  /** What is wrong. */
  label: string;
  /** Server flags (--port 0 is added unless the case sets --port). */
  args: string[];
  /** The documented exit code. */
  code: number;
  /** A pattern the line must match, so it names the problem. */
  line: RegExp;
  /** A file that must be left exactly as it was. */
  untouched?: string;
  /** Done just before the server is started. */
  setup?: () => Promise<void>;
}

async function runFault(fault: Fault): Promise<void> {
  const args = fault.args.includes("--port") ? fault.args : ["--port", "0", ...fault.args];
  await fault.setup?.();
  const before = fault.untouched ? await Deno.readFile(fault.untouched) : undefined;
  const program: Program = spawnTask("server", { args });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const status = await Promise.race([
    program.status,
    new Promise<undefined>((resolve) => timer = setTimeout(() => resolve(undefined), 20_000)),
  ]);
  clearTimeout(timer);
  if (!status) {
    await program.stop("SIGKILL");
    assert.fail(`${fault.label}: the server did not exit; stdout: ${program.stdout}`);
  }
  const lines = program.stderr.split("\n").filter((l) => l.trim() !== "");
  assert.equal(status.code, fault.code, `${fault.label}: exit code (stderr: ${program.stderr})`);
  assert.equal(lines.length, 1, `${fault.label}: one line on stderr, got:\n${program.stderr}`);
  assert.ok(!program.stderr.includes("    at "), `${fault.label}: a stack trace:\n${program.stderr}`);
  assert.match(lines[0], /^aeschat server: /, fault.label);
  assert.match(lines[0], fault.line, `${fault.label}: the line names the problem`);
  assert.equal(program.stdout, "", `${fault.label}: nothing on stdout (no listening line)`);
  if (fault.untouched) {
    const after = await Deno.readFile(fault.untouched);
    assert.ok(
      before!.length === after.length && before!.every((b, i) => b === after[i]),
      `${fault.label}: ${fault.untouched} was modified`,
    );
    for (const suffix of ["-wal", "-shm", "-journal"]) {
      const extra = await Deno.stat(fault.untouched + suffix).then(() => true, () => false);
      assert.ok(!extra, `${fault.label}: ${fault.untouched}${suffix} was created`);
    }
  }
}

/** Runs fault cases two at a time (the machine has two cores, shared). */
async function runFaults(faults: Fault[]): Promise<void> {
  for (let i = 0; i < faults.length; i += 2) await Promise.all(faults.slice(i, i + 2).map(runFault));
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-startup-" });
  try {
    await fn(dir);
  } finally {
    await Deno.chmod(dir, 0o755).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a bad flag exits 2 with one line", () =>
  withTempDir((dir) =>
    runFaults([
      { label: "unknown flag", args: ["--db", `${dir}/a.db`, "--bogus"], code: 2, line: /--bogus/ },
      { label: "port not a number", args: ["--port", "abc", "--db", `${dir}/a.db`], code: 2, line: /--port/ },
      { label: "port out of range", args: ["--port", "70000", "--db", `${dir}/a.db`], code: 2, line: /--port/ },
      { label: "rate negative", args: ["--db", `${dir}/a.db`, "--rate", "-1"], code: 2, line: /--rate/ },
      { label: "cert without key", args: ["--db", `${dir}/a.db`, "--tls-cert", "x.pem"], code: 2, line: /--tls-key/ },
      { label: "positional argument", args: ["--db", `${dir}/a.db`, "serve"], code: 2, line: /serve/ },
    ])
  ));

Deno.test("a port already in use exits 3 with one line and leaves no database behind", async () => {
  const blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    await withTempDir(async (dir) => {
      await runFault({
        label: "port in use",
        args: ["--port", String(blocker.addr.port), "--db", `${dir}/a.db`],
        code: 3,
        line: new RegExp(`${blocker.addr.port}.*in use`),
      });
      assert.deepEqual([...Deno.readDirSync(dir)], [], "the database is opened only once the server listens");
    });
  } finally {
    blocker.close();
  }
});

Deno.test("a second server on a database in use exits 4 naming the file; after a SIGKILL of the first, a new one starts", () =>
  withTempDir(async (dir) => {
    const db = `${dir}/shared.db`;
    const first = await startServer({ db });
    let second: ServerProcess | undefined;
    const clients: WireClient[] = [];
    try {
      const alice = await WireClient.member(first.port, "alice", { passphrase: PASSPHRASE });
      clients.push(alice);
      const acked = [];
      for (let i = 0; i < 5; i++) acked.push(await alice.say(`before ${i}`));
      // The second server is refused while the first holds the database, however it names the file.
      await runFault({
        label: "database in use",
        args: ["--db", db],
        code: 4,
        line: /shared\.db: another server holds it/,
      });
      await runFault({
        label: "database in use, by another path",
        args: ["--db", `${dir}/./link.db`],
        code: 4,
        line: /link\.db: another server holds it/,
        setup: () => Deno.symlink(db, `${dir}/link.db`),
      });
      // The first is not disturbed.
      const after = await alice.say("after the refusals");
      assert.equal(after.type, "ack");
      first.program.child.kill("SIGKILL");
      await first.program.status;
      alice.close();
      // SQLite's lock went with the process: a new server starts on the same file and has every acked message.
      second = await startServer({ db });
      const bob = await WireClient.connect(second.port);
      clients.push(bob);
      await bob.hello("bob");
      const joined = await bob.join("general", PASSPHRASE);
      assert.equal(joined.type, "joined");
      const seqs = joined.type === "joined" ? joined.history.map((m) => m.seq) : [];
      assert.deepEqual(seqs, [...acked, after].map((a) => a.type === "ack" ? a.seq : -1));
    } finally {
      await closeAll(clients);
      await first.program.stop();
      await second?.program.stop();
    }
  }));

Deno.test({
  name:
    "the database and its -wal file are created 0600; a database readable by others is kept as it is, with a warning",
  ignore: Deno.build.os === "windows",
  fn: () =>
    withTempDir(async (dir) => {
      const db = `${dir}/private.db`;
      const server = await startServer({ db });
      const alice = await WireClient.member(server.port, "alice", { passphrase: PASSPHRASE });
      await alice.say("written to the -wal file");
      assert.equal(Deno.statSync(db).mode! & 0o777, 0o600);
      assert.equal(Deno.statSync(`${db}-wal`).mode! & 0o777, 0o600);
      alice.close();
      await alice.ended;
      await server.program.stop();
      assert.doesNotMatch(server.program.stderr, /database_mode/);
      await Deno.chmod(db, 0o644);
      const again = await startServer({ db });
      await again.program.stop();
      assert.equal(Deno.statSync(db).mode! & 0o777, 0o644, "an existing file's mode is left alone");
      assert.match(again.program.stderr, /WARN\s+database_mode .*private\.db is readable by others \(mode 0644\)/);
    }),
});

Deno.test("a database path that cannot be written exits 4 with one line", () =>
  withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/plain-file`, "x");
    await Deno.mkdir(`${dir}/a-directory.db`);
    const faults: Fault[] = [
      { label: "missing directory", args: ["--db", `${dir}/missing/sub/a.db`], code: 4, line: /missing\/sub\/a\.db/ },
      { label: "parent is a file", args: ["--db", `${dir}/plain-file/a.db`], code: 4, line: /plain-file/ },
      { label: "path is a directory", args: ["--db", `${dir}/a-directory.db`], code: 4, line: /a-directory\.db/ },
    ];
    // Permission bits do not stop root, so the read-only directory case needs an ordinary user.
    if (Deno.build.os !== "windows" && Deno.uid() !== 0) {
      await Deno.mkdir(`${dir}/read-only`);
      await Deno.chmod(`${dir}/read-only`, 0o555);
      faults.push({
        label: "read-only directory",
        args: ["--db", `${dir}/read-only/a.db`],
        code: 4,
        line: /read-only/,
      });
    }
    await runFaults(faults);
  }));

Deno.test("a corrupt, foreign or newer database exits 5 with one line and is left byte for byte unchanged", () =>
  withTempDir(async (dir) => {
    const random = crypto.getRandomValues(new Uint8Array(8192));
    await Deno.writeFile(`${dir}/random.db`, random);
    await Deno.writeTextFile(`${dir}/text.db`, "this is not a database\n".repeat(100));
    // A real SQLite file whose header is damaged after its first page.
    const damaged = new DatabaseSync(`${dir}/damaged.db`);
    damaged.exec("CREATE TABLE t (x); INSERT INTO t VALUES (randomblob(20000));");
    damaged.close();
    const bytes = await Deno.readFile(`${dir}/damaged.db`);
    bytes.set(crypto.getRandomValues(new Uint8Array(100)), 0);
    await Deno.writeFile(`${dir}/damaged.db`, bytes);
    // SQLite databases that are not aeschat's: another program's, and a newer aeschat's.
    const foreign = new DatabaseSync(`${dir}/foreign.db`);
    foreign.exec("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5);");
    foreign.close();
    const newer = new DatabaseSync(`${dir}/newer.db`);
    newer.exec("CREATE TABLE messages (seq INTEGER PRIMARY KEY); PRAGMA user_version = 99;");
    newer.close();
    await runFaults([
      {
        label: "random bytes",
        args: ["--db", `${dir}/random.db`],
        code: 5,
        line: /random\.db/,
        untouched: `${dir}/random.db`,
      },
      {
        label: "a text file",
        args: ["--db", `${dir}/text.db`],
        code: 5,
        line: /text\.db/,
        untouched: `${dir}/text.db`,
      },
      {
        label: "damaged header",
        args: ["--db", `${dir}/damaged.db`],
        code: 5,
        line: /damaged\.db/,
        untouched: `${dir}/damaged.db`,
      },
      {
        label: "another program's SQLite database",
        args: ["--db", `${dir}/foreign.db`],
        code: 5,
        line: /foreign\.db/,
        untouched: `${dir}/foreign.db`,
      },
      {
        label: "a newer schema version",
        args: ["--db", `${dir}/newer.db`],
        code: 5,
        line: /newer\.db.*99/,
        untouched: `${dir}/newer.db`,
      },
    ]);
  }));

Deno.test({
  name: "TLS files that do not match, are missing or are not PEM exit 6 with one line",
  ignore: !hasOpenssl,
  fn: () =>
    withTempDir(async (dir) => {
      const one = await selfSigned(dir, "one");
      const two = await selfSigned(dir, "two");
      await Deno.writeTextFile(`${dir}/garbage.pem`, "-----BEGIN CERTIFICATE-----\nnot base64\n");
      const db = ["--db", `${dir}/a.db`];
      await runFaults([
        {
          label: "key of another certificate",
          args: [...db, "--tls-cert", one.cert, "--tls-key", two.key],
          code: 6,
          line: /does not match/,
        },
        {
          label: "missing certificate",
          args: [...db, "--tls-cert", `${dir}/missing.pem`, "--tls-key", one.key],
          code: 6,
          line: /missing\.pem/,
        },
        {
          label: "not a certificate",
          args: [...db, "--tls-cert", `${dir}/garbage.pem`, "--tls-key", one.key],
          code: 6,
          line: /TLS/,
        },
        {
          label: "certificate given as the key",
          args: [...db, "--tls-cert", one.cert, "--tls-key", one.cert],
          code: 6,
          line: /TLS/,
        },
      ]);
      // The matching pair starts (so the failures above are about the mismatch, not about TLS as such).
      const good = spawnTask("server", { args: ["--port", "0", ...db, "--tls-cert", one.cert, "--tls-key", one.key] });
      try {
        await good.waitFor(() => /listening on .*\naeschat server: TLS with certificate /.test(good.stdout), {
          what: "the TLS listening line",
        });
      } finally {
        const status = await good.stop("SIGTERM");
        assert.equal(status.code, 0, "a clean stop exits 0");
      }
    }),
});

Deno.test("SIGTERM sent as soon as the listening line appears stops the server cleanly with exit 0", async () => {
  // Scripts and service managers signal a server the moment it says it is listening.
  for (let i = 0; i < 5; i++) {
    const dir = await Deno.makeTempDir({ prefix: "aeschat-startup-" });
    try {
      const program = spawnTask("server", { args: ["--port", "0", "--db", `${dir}/a.db`] });
      await program.waitFor(() => program.stdout.includes("listening on"), { what: "the listening line" });
      const status = await program.stop("SIGTERM");
      assert.deepEqual(
        [status.code, status.signal],
        [0, null],
        `attempt ${i}: killed by the signal instead of shutting down (stderr: ${program.stderr})`,
      );
      assert.match(program.stderr, /shutdown/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});
