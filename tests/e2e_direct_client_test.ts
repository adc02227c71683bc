/**
 * Direct messages and invitations between real client programs through the real server process (issue 13 as a user
 * meets it): /msg to a recipient who is offline, handed over when it connects and shown "delivered" to the sender;
 * `--to` in script mode with the --json objects of direct messages; /invite then /accept without the passphrase, and
 * the room rejoined after a restart from the secret kept in the home; an invitation as a --json object and `accept
 * ROOM` from a script. The lies (a substituted key, a replay, a redirect) are played by the server double elsewhere
 * (e2e_attacks_test.ts, session_attacks_test.ts).
 *
 * @module
 */

import assert from "node:assert/strict";
import { fingerprint } from "../lib/identity.ts";
import { Home } from "../lib/client/home.ts";
import { dialServer } from "../lib/client/link.ts";
import {
  exited,
  jsonLines,
  type Program,
  removeServer,
  type ServerProcess,
  spawnTask,
  startServer,
} from "./support/programs.ts";
import { passphraseHooks, poll, TestHomes } from "./support/session_clients.ts";
import { TmuxScreen } from "./support/tmux.ts";

const PASSPHRASE = "e2e direct client passphrase 3b7e";
const FAST = ["--iterations", "100000", "--min-iterations", "100000"];

/** The real client in script mode, with a home of its own. */
function client(port: number, home: string, args: string[], options: { passphrase?: boolean } = {}): Program {
  return spawnTask("client", {
    args: ["--port", String(port), ...FAST, ...args],
    env: { AESCHAT_HOME: home, ...(options.passphrase === false ? {} : { AESCHAT_PASSPHRASE: PASSPHRASE }) },
    stdin: true,
  });
}

/** The real client in tmux. */
function terminal(port: number, home: string, args: string[], options: { passphrase?: boolean } = {}) {
  return TmuxScreen.start(["--port", String(port), ...FAST, ...args], {
    env: { AESCHAT_HOME: home, ...(options.passphrase === false ? {} : { AESCHAT_PASSPHRASE: PASSPHRASE }) },
  });
}

const count = (text: string, needle: string) => text.split(needle).length - 1;

/** A server, homes, and what to stop at the end. */
async function setUp() {
  const server = await startServer();
  const homes = new TestHomes();
  const programs: Program[] = [];
  const screens: TmuxScreen[] = [];
  const done = async () => {
    for (const s of screens) await s.close().catch(() => {});
    for (const p of programs) await p.stop("SIGKILL").catch(() => {});
    await removeServer(server);
    await homes.cleanup();
  };
  return { server, homes, programs, screens, done };
}

/** A nick registered to a home's identity: a script run that joins #general and leaves. */
async function register(server: ServerProcess, home: string, nick: string): Promise<void> {
  const run = client(server.port, home, ["--nick", nick]);
  await run.closeStdin();
  assert.equal((await exited(run)).code, 0, run.stderr);
}

Deno.test("/msg to an offline person: handed over when they connect (--to --json), and 'delivered' shown to the sender", async () => {
  const { server, homes, programs, screens, done } = await setUp();
  try {
    const bobHome = await homes.dir();
    await register(server, bobHome, "bob");
    const aliceHome = await homes.dir();
    const alice = await terminal(server.port, aliceHome, ["--nick", "alice"]);
    screens.push(alice);
    await alice.waitForLastLine("#general>", "alice in #general", 60_000);
    const texts = ["one while you were out", "two while you were out", "three while you were out"];
    for (const text of texts) await alice.line(`/msg bob ${text}`);
    await alice.waitFor((t) => t.includes("2:@bob"), "the conversation with bob opened beside #general");
    await alice.line("/switch @bob");
    await alice.waitForLastLine("@bob>", "the conversation with bob");
    await alice.waitFor((t) => texts.every((x) => new RegExp(`\\d\\d:\\d\\d:\\d\\d <alice> ${x}`).test(t)), "stored");
    assert.equal(count(await alice.text(), "delivered to bob"), 0, "nobody has them yet");

    // bob connects: the three are printed as --json direct objects, then what he types goes to alice.
    const bob = client(server.port, bobHome, ["--nick", "bob", "--to", "alice", "--json"]);
    programs.push(bob);
    await bob.waitFor(() => jsonLines(bob.stdout).length === 3, { what: "bob's three", timeoutMs: 60_000 });
    const got = jsonLines(bob.stdout);
    const aliceKey = await fingerprint((await Home.open(aliceHome)).identity.publicKey);
    for (const [i, m] of got.entries()) {
      assert.deepEqual(Object.keys(m), "to room from id ts type text fingerprint trust history marks".split(" "));
      assert.deepEqual([m.to, m.room, m.from, m.type, m.text, m.fingerprint], [
        "bob",
        null,
        "alice",
        "text",
        texts[i],
        aliceKey,
      ]);
      assert.ok(m.trust === "new" || m.trust === "pinned", String(m.trust));
      assert.deepEqual(m.marks, []);
    }
    await alice.waitFor((t) => count(t, "-- delivered to bob") === 3, "'delivered' once for each");
    await bob.write("back now\n");
    await alice.waitFor((t) => /\d\d:\d\d:\d\d <bob> back now/.test(t), "bob's answer in the conversation");
    await bob.closeStdin();
    assert.equal((await exited(bob)).code, 0, bob.stderr);

    // A second run of bob prints nothing again (the ids shown are kept), and alice's copies survive her restart.
    const again = client(server.port, bobHome, ["--nick", "bob", "--to", "alice", "--json"]);
    programs.push(again);
    await again.closeStdin();
    assert.equal((await exited(again)).code, 0, again.stderr);
    assert.deepEqual(jsonLines(again.stdout).filter((m) => !m.history), [], "nothing shown as new twice");
    await alice.close();
    const aliceAgain = await terminal(server.port, aliceHome, ["--nick", "alice"]);
    screens.push(aliceAgain);
    await aliceAgain.waitForLastLine("#general>", "alice back", 60_000);
    await aliceAgain.line("/switch @bob");
    await aliceAgain.waitForLastLine("@bob>", "the conversation with bob after a restart");
    const text = await aliceAgain.waitFor((t) => t.includes("back now"), "the conversation kept");
    for (const x of texts) assert.ok(text.includes(x), `her own copy of "${x}":\n${text}`);
  } finally {
    await done();
  }
});

Deno.test("/invite then /accept: bob joins without the passphrase, reads the history, and rejoins after a restart", async () => {
  const { server, homes, screens, done } = await setUp();
  try {
    const aliceHome = await homes.dir();
    const bobHome = await homes.dir();
    const alice = await terminal(server.port, aliceHome, ["--nick", "alice"]);
    screens.push(alice);
    await alice.waitForLastLine("#general>", "alice in #general", 60_000);
    let bob = await terminal(server.port, bobHome, ["--nick", "bob"]);
    screens.push(bob);
    await bob.waitForLastLine("#general>", "bob in #general", 60_000);
    await alice.line("/join ops --generate");
    await alice.waitForLastLine("#ops>", "alice made #ops");
    await alice.line("ops history before bob");
    await alice.waitFor((t) => /\d\d:\d\d:\d\d <alice> ops history before bob/.test(t), "stored");
    await alice.line("/invite bob");
    await alice.waitFor((t) => t.includes("-- you invited bob to #ops"), "the invitation sent");
    await bob.waitFor((t) => t.includes("alice invites you to #ops: /accept ops joins it"), "the invitation");
    await bob.line("/accept");
    await bob.waitForLastLine("#ops>", "bob in #ops");
    let text = await bob.waitFor((t) => t.includes("ops history before bob"), "the room's history");
    assert.doesNotMatch(text, /passphrase for #ops/, "no passphrase asked");
    await bob.line("bob is in");
    text = await alice.waitFor((t) => t.includes("bob is in"), "bob's line at alice's");
    assert.match(text, /\d\d:\d\d:\d\d <bob> bob is in/, "verified against bob's pinned key: no mark");

    // After a restart, with no passphrase anywhere: the kept secret opens #ops.
    await bob.line("/quit");
    assert.equal(await bob.exitCode(), 0);
    bob = await terminal(server.port, bobHome, ["--nick", "bob", "--room", "ops"], { passphrase: false });
    screens.push(bob);
    await bob.waitForLastLine("#ops>", "bob back in #ops", 60_000);
    text = await bob.text();
    assert.doesNotMatch(text, /passphrase for #ops/, "no passphrase asked after the restart");
    assert.ok(text.includes("ops history before bob"), text);
    await bob.line("back again");
    await alice.waitFor((t) => /\d\d:\d\d:\d\d <bob> back again/.test(t), "bob's line after his restart");
  } finally {
    await done();
  }
});

Deno.test("script mode: an invitation is a --json object, accept ROOM keeps its secret, --room then joins without a passphrase", async () => {
  const { server, homes, programs, done } = await setUp();
  const alice = await homes.connect(dialServer({ host: "127.0.0.1", port: server.port }), "alice", {
    address: `127.0.0.1:${server.port}`,
  });
  try {
    await alice.session.join("general", passphraseHooks(PASSPHRASE));
    const home = await homes.dir();
    await register(server, home, "bob");
    await alice.session.join("ops", passphraseHooks("the ops passphrase, not bob's"));
    alice.session.say("ops history", { room: "ops" });
    alice.session.invite("bob", { room: "ops" });
    await alice.session.drain();
    let run = client(server.port, home, ["--nick", "bob", "--to", "alice", "--json"]);
    programs.push(run);
    await run.waitFor(() => jsonLines(run.stdout).length === 1, { what: "the invitation", timeoutMs: 60_000 });
    assert.deepEqual(jsonLines(run.stdout)[0], {
      type: "invite",
      room: "ops",
      from: "alice",
      to: "bob",
      fingerprint: await fingerprint(alice.home.identity.publicKey),
      // bob's first run saw alice in #general: her key was pinned then.
      trust: "pinned",
    });
    await run.closeStdin();
    assert.equal((await exited(run)).code, 0);
    run = client(server.port, home, ["accept", "nowhere", "--nick", "bob"]);
    programs.push(run);
    await run.closeStdin();
    assert.equal((await exited(run)).code, 4, "no invitation to that room");
    run = client(server.port, home, ["accept", "ops", "--nick", "bob"]);
    programs.push(run);
    await run.closeStdin();
    assert.equal((await exited(run)).code, 0, run.stderr);
    assert.match(run.stderr, /accepted the invitation to #ops/);
    run = client(server.port, home, ["--nick", "bob", "--room", "ops", "--json"], { passphrase: false });
    programs.push(run);
    await run.waitFor(() => jsonLines(run.stdout).some((l) => l.text === "ops history"), { what: "ops history" });
    await run.write("bob is in\n");
    await poll(() => alice.messages().some((m) => m.text === "bob is in"), "bob's line in #ops");
    assert.equal(alice.messages().find((m) => m.text === "bob is in")!.trust, "pinned");
    await run.closeStdin();
    assert.equal((await exited(run)).code, 0);
  } finally {
    await alice.close();
    await done();
  }
});
