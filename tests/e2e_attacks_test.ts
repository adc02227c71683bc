/**
 * The attacks of issues 12 and 13 as the user sees them: the real client program (script mode with --json, and the
 * interactive client in tmux) against the v2 server double served over real TCP (tests/support/evil_server.ts),
 * with the other members and the attacks played in-process. Checked: the --json fields (fingerprint, trust, marks),
 * the warnings on stderr, the screen's marks, and exit code 7 with the way out (trust-server, forget-room) that
 * really works. Direct messages and invitations between honest people run against the real server in
 * e2e_direct_client_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { fingerprint, formatFingerprint, generateIdentitySecrets, importIdentity } from "../lib/identity.ts";
import { sealRoomMessage } from "../lib/message.ts";
import { newDevice } from "../lib/client/sequence.ts";
import { EvilServer } from "./support/evil_server.ts";
import { exited, jsonLines, type Program, spawnTask } from "./support/programs.ts";
import { passphraseHooks, poll, roomKeysOf, TestHomes } from "./support/session_clients.ts";
import { TmuxScreen } from "./support/tmux.ts";

const PASSPHRASE = "e2e attacks passphrase 9d2c";
const FAST = ["--iterations", "100000", "--min-iterations", "100000"];

/** The double on TCP, alice in #general in-process, and homes for everyone. */
async function setUp() {
  const server = await EvilServer.start();
  const tcp = server.listen();
  const homes = new TestHomes();
  const alice = await homes.connect(server.dial, "alice", { address: `127.0.0.1:${tcp.port}` });
  await alice.session.join("general", passphraseHooks(PASSPHRASE));
  const done = async (...programs: (Program | undefined)[]) => {
    for (const p of programs) await p?.stop("SIGKILL").catch(() => {});
    await alice.close();
    await tcp.close();
    await homes.cleanup();
  };
  return { server, port: tcp.port, homes, alice, done };
}

/** The real client in script mode. */
function client(port: number, home: string, args: string[], options: { stdin?: boolean } = {}): Program {
  return spawnTask("client", {
    args: ["--port", String(port), ...FAST, ...args],
    env: { AESCHAT_PASSPHRASE: PASSPHRASE, AESCHAT_HOME: home },
    stdin: options.stdin ?? true,
  });
}

/** A message sealed by a member who holds the room key, claiming to be from `from`, signed by its own key. */
async function forgeFrom(server: EvilServer, from: string, body: string) {
  const room = server.rooms.get("general")!;
  const keys = await roomKeysOf(PASSPHRASE, { salt: Uint8Array.fromBase64(room.salt), iterations: room.iterations });
  const mallory = await importIdentity(generateIdentitySecrets());
  const envelope = await sealRoomMessage(keys, {
    context: { serverPub: server.key, room: "general", accessPub: Uint8Array.fromBase64(room.access_pub), epoch: 0 },
    from,
    identity: mallory,
    content: { type: "text", body },
    sequence: { device: newDevice(), n: 1, acked: 0, void: [] },
  });
  return { envelope, key: mallory.publicKey };
}

Deno.test("--json: fingerprint and trust on every message; a forged sender is 'changed' with a warning; a replay is marked", async () => {
  const { server, port, homes, alice, done } = await setUp();
  let bob: Program | undefined;
  try {
    bob = client(port, await homes.dir(), ["--nick", "bob", "--json"]);
    await bob.waitFor(() => bob!.stderr.includes("joined #general"), { what: "bob joined", timeoutMs: 60_000 });
    assert.match(bob.stderr, new RegExp(`first contact with 127.0.0.1:${port}: its key`));
    alice.session.say("hello bob");
    await bob.waitFor(() => jsonLines(bob!.stdout).length === 1, { what: "the first line" });
    const forged = await forgeFrom(server, "alice", "send the prod DB dump to mallory@evil.example");
    server.store(forged.envelope);
    const first = server.rooms.get("general")!.messages[0];
    server.store(first.envelope);
    alice.session.say("the end");
    await bob.waitFor(() => jsonLines(bob!.stdout).length === 4, { what: "four lines" });
    const lines = jsonLines(bob.stdout);
    const aliceKey = await fingerprint(alice.home.identity.publicKey);
    assert.deepEqual(lines.map((l) => [l.from, l.text, l.fingerprint, l.trust, l.marks]), [
      ["alice", "hello bob", aliceKey, "pinned", []],
      ["alice", "send the prod DB dump to mallory@evil.example", await fingerprint(forged.key), "changed", []],
      ["alice", "hello bob", aliceKey, "pinned", ["replayed"]],
      ["alice", "the end", aliceKey, "pinned", []],
    ]);
    assert.match(bob.stderr, /warning: alice now shows key .* not the pinned .* marked \[key changed\]/);
    await bob.closeStdin();
    assert.equal((await exited(bob)).code, 0);
  } finally {
    await done(bob);
  }
});

Deno.test("a server that now shows another key: exit 7 naming both keys; trust-server with the fingerprint shown lets it in", async () => {
  const { server, port, homes, done } = await setUp();
  const home = await homes.dir();
  let run: Program | undefined;
  try {
    run = client(port, home, ["--nick", "bob"]);
    await run.waitFor(() => run!.stderr.includes("joined #general"), { what: "the first run", timeoutMs: 60_000 });
    await run.closeStdin();
    assert.equal((await exited(run)).code, 0);
    const old = formatFingerprint(await fingerprint(server.key));
    await server.rekey();
    const offered = await fingerprint(server.key);
    run = client(port, home, ["--nick", "bob"]);
    assert.equal((await exited(run)).code, 7, run.stderr);
    assert.ok(run.stderr.includes(`pinned: ${old}`), run.stderr);
    assert.ok(run.stderr.includes(`deno task client trust-server 127.0.0.1:${port} ${offered}`), run.stderr);
    // Without the fingerprint, and without a terminal to ask on: refused, with the command to run.
    run = client(port, home, ["trust-server", `127.0.0.1:${port}`], { stdin: false });
    assert.equal((await exited(run)).code, 2);
    assert.match(run.stderr, new RegExp(`offers ${formatFingerprint(offered)}`));
    run = client(port, home, ["trust-server", `127.0.0.1:${port}`, "0".repeat(40)], { stdin: false });
    assert.equal((await exited(run)).code, 2, "another fingerprint than the one offered");
    run = client(port, home, ["trust-server", `127.0.0.1:${port}`, formatFingerprint(offered)], { stdin: false });
    assert.equal((await exited(run)).code, 0, run.stderr);
    assert.match(run.stdout, /now trusting/);
    // The room's pin moved with the server's: the next run joins as before.
    run = client(port, home, ["--nick", "bob"]);
    await run.waitFor(() => run!.stderr.includes("joined #general"), { what: "the run after trust-server" });
    await run.closeStdin();
    assert.equal((await exited(run)).code, 0, run.stderr);
  } finally {
    await done(run);
  }
});

Deno.test("a pinned room whose parameters changed: exit 7 naming what changed; forget-room re-pins at the next join", async () => {
  const { server, port, homes, done } = await setUp();
  const home = await homes.dir();
  let run: Program | undefined;
  try {
    run = client(port, home, ["--nick", "bob", "--no-history"]);
    await run.waitFor(() => run!.stderr.includes("joined #general"), { what: "the first run", timeoutMs: 60_000 });
    await run.closeStdin();
    assert.equal((await exited(run)).code, 0);
    server.outgoing = (msg) => msg.type === "challenge" ? [{ ...msg, iterations: 200_000 }] : undefined;
    run = client(port, home, ["--nick", "bob"]);
    assert.equal((await exited(run)).code, 7);
    assert.match(
      run.stderr,
      /cannot join #general: refusing to join #general: its iteration count \(100000 → 200000\)/,
    );
    assert.match(run.stderr, /forget-room general/);
    server.outgoing = undefined;
    run = client(port, home, ["forget-room", "general"], { stdin: false });
    assert.equal((await exited(run)).code, 0, run.stderr);
    run = client(port, home, ["--nick", "bob"]);
    await run.waitFor(() => run!.stderr.includes("joined #general"), { what: "the join after forget-room" });
    await run.closeStdin();
    assert.equal((await exited(run)).code, 0);
  } finally {
    await done(run);
  }
});

Deno.test("--to: direct messages sent and printed as JSON; a recipient whose key changed is refused with exit 7", async () => {
  const { server, port, homes, alice, done } = await setUp();
  const home = await homes.dir();
  let run: Program | undefined;
  try {
    run = client(port, home, ["--nick", "bob", "--to", "alice", "--json"]);
    await run.waitFor(() => run!.stderr.includes("sending to alice"), { what: "bob ready", timeoutMs: 60_000 });
    await run.write("psst\n");
    await poll(() => alice.directs().length === 1, "alice's direct message");
    assert.equal(alice.directs()[0].text, "psst");
    alice.session.msg("bob", "hi back");
    await run.waitFor(() => jsonLines(run!.stdout).length === 1, { what: "the answer" });
    const line = jsonLines(run.stdout)[0];
    assert.deepEqual(Object.keys(line), [
      "to",
      "room",
      "from",
      "id",
      "ts",
      "type",
      "text",
      "fingerprint",
      "trust",
      "history",
      "marks",
    ]);
    assert.deepEqual([line.to, line.room, line.from, line.text, line.trust], [
      "bob",
      null,
      "alice",
      "hi back",
      "pinned",
    ]);
    await run.closeStdin();
    assert.equal((await exited(run)).code, 0);
    // The server now gives mallory's keys for alice.
    const mallory = await importIdentity(generateIdentitySecrets());
    server.registry.set("alice", {
      nick: "alice",
      key: mallory.publicKey.toBase64(),
      kx: mallory.kxPublic.toBase64(),
      kx_sig: mallory.kxSignature.toBase64(),
    });
    run = client(port, home, ["--nick", "bob", "--to", "alice"]);
    await run.write("for alice only\n");
    await run.closeStdin();
    assert.equal((await exited(run)).code, 7, run.stderr);
    assert.match(run.stderr, /alice's key changed \(now [0-9a-f]{40}\): nothing was sent/);
    assert.equal(alice.directs().length, 1, "nothing more reached anyone");
  } finally {
    await done(run);
  }
});

Deno.test("on the terminal: a forged sender shows [key changed] with a warning, /whois shows the listed key, and a server key change ends with exit 7", async () => {
  const { server, port, homes, alice, done } = await setUp();
  let screen: TmuxScreen | undefined;
  try {
    screen = await TmuxScreen.start(["--port", String(port), "--nick", "bob", ...FAST], {
      env: { AESCHAT_PASSPHRASE: PASSPHRASE, AESCHAT_HOME: await homes.dir() },
    });
    await screen.waitFor((t) => t.includes("joined #general"), "bob joined", 60_000);
    assert.match(await screen.text(), /-- first contact with 127\.0\.0\.1:\d+: its key [0-9a-f ]+ is now pinned/);
    alice.session.say("the real alice");
    await screen.waitFor((t) => /\d\d:\d\d:\d\d <alice> the real alice/.test(t), "alice's line");
    const forged = await forgeFrom(server, "alice", "wire the money");
    server.store(forged.envelope);
    let text = await screen.waitFor((t) => t.includes("wire the money"), "the forged line");
    assert.match(text, /\d\d:\d\d:\d\d \[key changed\] <alice> wire the money/);
    assert.match(text, /!! warning: alice now shows key/);
    await screen.line("/whois alice");
    text = await screen.waitFor((t) => t.includes("alice: key"), "/whois");
    assert.match(text, /alice: key [0-9a-f ]+, pinned/, "the server's registry still shows alice's real key");
    await server.rekey();
    server.dropAll();
    text = await screen.waitFor((t) => t.includes("stopped reconnecting"), "the refusal", 60_000);
    assert.match(
      text,
      /now shows key [\s\S]* \(pinned: [\s\S]*\); if you trust the change: deno task client trust-server/,
    );
    assert.equal(await screen.exitCode(), 7);
  } finally {
    await screen?.close();
    await done();
  }
});
