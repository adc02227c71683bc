/**
 * The client's home and identity as a user drives them: the real client program's subcommands (`identity`, `export`,
 * `import`, `rotate`, `passphrase`), a home or key file others could read or write refused as ssh does, a locked
 * identity in script mode (refused without AESCHAT_IDENTITY_PASSPHRASE, used with it), and in script mode several
 * rooms at once, --no-history and a rotated key accepted by a peer — against the v2 server double over real TCP.
 *
 * @module
 */

import assert from "node:assert/strict";
import { fingerprint, formatFingerprint } from "../lib/identity.ts";
import { EvilServer } from "./support/evil_server.ts";
import { exited, jsonLines, type Program, spawnTask } from "./support/programs.ts";
import { passphraseHooks, poll, TestHomes } from "./support/session_clients.ts";

const PASSPHRASE = "e2e home passphrase 42aa";
const FAST = ["--iterations", "100000", "--min-iterations", "100000"];

/** Runs the client to its end with stdin from `input` (or none). */
async function run(
  args: string[],
  options: { home: string; input?: string; env?: Record<string, string> },
): Promise<{ code: number; stdout: string; stderr: string }> {
  const program = spawnTask("client", {
    args,
    env: { AESCHAT_HOME: options.home, ...options.env },
    stdin: options.input !== undefined,
  });
  if (options.input !== undefined) {
    await program.write(options.input);
    await program.closeStdin();
  }
  const { code } = await exited(program);
  return { code, stdout: program.stdout, stderr: program.stderr };
}

Deno.test("identity: made on first run (0700/0600), the same fingerprint after, export to a new file, import once", async () => {
  const homes = new TestHomes();
  try {
    const home = `${await homes.dir()}/nested/aeschat`;
    const first = await run(["identity"], { home });
    assert.equal(first.code, 0, first.stderr);
    assert.match(
      first.stdout,
      /^made a new identity\nfingerprint: ([0-9a-f]{4} ){9}[0-9a-f]{4}\nhome: +\S+\npassphrase: +none\n$/,
    );
    assert.equal(Deno.statSync(home).mode! & 0o777, 0o700);
    assert.equal(Deno.statSync(`${home}/identity.json`).mode! & 0o777, 0o600);
    const again = await run(["identity"], { home });
    const print = /fingerprint: (.*)/.exec(first.stdout)![1];
    assert.ok(again.stdout.includes(`fingerprint: ${print}`) && !again.stdout.includes("made"), again.stdout);
    const file = `${await homes.dir()}/alice.identity`;
    const exported = await run(["identity", "export", file], { home });
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /NOT protected by a passphrase/);
    assert.equal(Deno.statSync(file).mode! & 0o777, 0o600);
    assert.equal((await run(["identity", "export", file], { home })).code, 2, "an existing file is not overwritten");
    const second = await homes.dir();
    const imported = await run(["identity", "import", file], { home: second });
    assert.equal(imported.code, 0, imported.stderr);
    assert.ok(imported.stdout.includes(print), "the same identity");
    const twice = await run(["identity", "import", file], { home: second });
    assert.equal(twice.code, 2);
    assert.match(twice.stderr, /already has an identity/);
    const junk = `${await homes.dir()}/junk`;
    Deno.writeTextFileSync(junk, "{}");
    assert.match((await run(["identity", "import", junk], { home: await homes.dir() })).stderr, /not an exported/);
  } finally {
    await homes.cleanup();
  }
});

Deno.test("a home others can write, or a key file others can read, is refused with the chmod that fixes it", async () => {
  const homes = new TestHomes();
  try {
    const home = await homes.dir();
    assert.equal((await run(["identity"], { home })).code, 0);
    Deno.chmodSync(`${home}/identity.json`, 0o644);
    let result = await run(["identity", "rotate"], { home });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /identity\.json is readable by others \(mode 644\): run chmod 600/);
    Deno.chmodSync(`${home}/identity.json`, 0o600);
    Deno.chmodSync(home, 0o777);
    result = await run(["identity", "rotate"], { home });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /is writable by others \(mode 777\): run chmod 700/);
  } finally {
    await homes.cleanup();
  }
});

Deno.test("identity passphrase: set from stdin; a script is then refused without AESCHAT_IDENTITY_PASSPHRASE, works with it", async () => {
  const server = await EvilServer.start();
  const tcp = server.listen();
  const homes = new TestHomes();
  try {
    const home = await homes.dir();
    const set = await run(["identity", "passphrase"], { home, input: "my identity passphrase\n" });
    assert.equal(set.code, 0, set.stderr);
    assert.match((await run(["identity"], { home })).stdout, /passphrase: +yes/);
    assert.ok(!Deno.readTextFileSync(`${home}/identity.json`).includes("my identity passphrase"));
    const chat = ["--port", String(tcp.port), "--nick", "carol", "--to", "nobody-yet", ...FAST];
    const refused = await run(chat, { home, input: "" });
    assert.equal(refused.code, 2);
    assert.match(
      refused.stderr,
      /protected by a passphrase, and none was given \(without a terminal to ask on: set AESCHAT_IDENTITY_PASSPHRASE\)/,
    );
    const wrong = await run(chat, { home, input: "", env: { AESCHAT_IDENTITY_PASSPHRASE: "not it" } });
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /wrong passphrase for your identity key/);
    const right = await run(chat, { home, input: "", env: { AESCHAT_IDENTITY_PASSPHRASE: "my identity passphrase" } });
    // The identity opened; the recipient is unknown to the server, which is a usage error of its own.
    assert.equal(right.code, 2);
    assert.match(right.stderr, /cannot send to nobody-yet: nobody is registered/);
    const removed = await run(["identity", "passphrase"], {
      home,
      input: "\n",
      env: { AESCHAT_IDENTITY_PASSPHRASE: "my identity passphrase" },
    });
    assert.equal(removed.code, 0, removed.stderr);
    assert.match((await run(["identity"], { home })).stdout, /passphrase: +none/);
  } finally {
    await tcp.close();
    await homes.cleanup();
  }
});

Deno.test("script mode in two rooms: stdin goes to the first, both rooms are printed; --no-history skips what came before", async () => {
  const server = await EvilServer.start();
  const tcp = server.listen();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice", { address: `127.0.0.1:${tcp.port}` });
  let bob: Program | undefined;
  try {
    await alice.session.join("ops", passphraseHooks(PASSPHRASE));
    await alice.session.join("dev", passphraseHooks(PASSPHRASE));
    alice.session.say("old ops line", { room: "ops" });
    alice.session.say("old dev line", { room: "dev" });
    await alice.session.drain();
    const home = await homes.dir();
    const args = ["--port", String(tcp.port), "--nick", "bob", "--room", "#Ops", "--room", "dev", "--json", ...FAST];
    bob = spawnTask("client", { args, env: { AESCHAT_HOME: home, AESCHAT_PASSPHRASE: PASSPHRASE }, stdin: true });
    await bob.waitFor(() => bob!.stderr.includes("joined #dev"), { what: "both rooms", timeoutMs: 60_000 });
    alice.session.say("new dev line", { room: "dev" });
    await bob.write("to the first room\n");
    await poll(() => alice.messages().length === 1, "bob's line");
    assert.deepEqual(alice.messages().map((m) => [m.room, m.from, m.text]), [["ops", "bob", "to the first room"]]);
    await bob.waitFor(() => jsonLines(bob!.stdout).length === 3, { what: "three lines" });
    await bob.closeStdin();
    assert.equal((await exited(bob)).code, 0);
    assert.deepEqual(jsonLines(bob.stdout).map((l) => [l.room, l.text, l.history]), [
      ["ops", "old ops line", true],
      ["dev", "old dev line", true],
      ["dev", "new dev line", false],
    ]);
    // Again with --no-history: only what arrives after joining.
    bob = spawnTask("client", {
      args: [...args, "--no-history"],
      env: { AESCHAT_HOME: home, AESCHAT_PASSPHRASE: PASSPHRASE },
      stdin: true,
    });
    await bob.waitFor(() => bob!.stderr.includes("joined #dev"), { what: "both rooms again", timeoutMs: 60_000 });
    alice.session.say("the only one", { room: "ops" });
    await bob.waitFor(() => jsonLines(bob!.stdout).length === 1, { what: "the new line" });
    await bob.closeStdin();
    assert.equal((await exited(bob)).code, 0);
    assert.deepEqual(jsonLines(bob.stdout).map((l) => l.text), ["the only one"]);
  } finally {
    await bob?.stop("SIGKILL").catch(() => {});
    await alice.close();
    await tcp.close();
    await homes.cleanup();
  }
});

Deno.test("identity rotate: the next run presents the statement, and a peer who pinned the old key accepts the new one", async () => {
  const server = await EvilServer.start();
  const tcp = server.listen();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice", { address: `127.0.0.1:${tcp.port}` });
  try {
    await alice.session.join("general", passphraseHooks(PASSPHRASE));
    const home = await homes.dir();
    const chat = ["--port", String(tcp.port), "--nick", "bob", "--room", "general", ...FAST];
    const env = { AESCHAT_PASSPHRASE: PASSPHRASE };
    assert.equal((await run(chat, { home, input: "with the old key\n", env })).code, 0);
    await poll(() => alice.messages().length === 1, "the first line");
    const rotated = await run(["identity", "rotate"], { home });
    assert.equal(rotated.code, 0, rotated.stderr);
    const next = /new key: (.*)/.exec(rotated.stdout)![1];
    assert.equal((await run(chat, { home, input: "with the new key\n", env })).code, 0);
    await poll(() => alice.messages().length === 2, "the second line");
    assert.deepEqual(alice.messages().map((m) => m.trust), ["pinned", "pinned"]);
    assert.equal(formatFingerprint(alice.messages()[1].fingerprint!), next);
    assert.deepEqual(alice.of("keyChanged"), []);
    assert.equal(alice.of("rotated").length, 1);
    assert.equal(
      alice.of("rotated")[0].fingerprint,
      await fingerprint(Uint8Array.fromBase64(server.registry.get("bob")!.key)),
    );
  } finally {
    await alice.close();
    await tcp.close();
    await homes.cleanup();
  }
});
