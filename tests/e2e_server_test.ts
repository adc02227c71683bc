/**
 * The real server process end to end, with raw protocol clients that use lib/crypto.ts: members exchange and
 * decrypt, a newcomer gets decryptable history, history and room verifiers survive a restart, mismatched envelopes
 * are refused and not stored, and TLS works with a self-signed certificate. Abuse, faults, startup failures and
 * confidentiality have their own e2e files.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { dirname } from "node:path";
import denoConfig from "../deno.json" with { type: "json" };
import { openEnvelope, sealEnvelope } from "../lib/crypto.ts";
import { type Envelope, serializeEnvelope } from "../lib/envelope.ts";
import { helloMessage } from "../lib/protocol.ts";
import { SERVER_FLAGS } from "../lib/server/config.ts";
import { type ServerProcess, spawnTask, startServer } from "./support/programs.ts";
import { hasOpenssl, selfSigned } from "./support/tls.ts";
import { closeAll, type Msg, WireClient } from "./support/wire.ts";

const PASSPHRASE = "e2e server passphrase 41d9";

const member = (port: number, nick: string, options: { caCert?: string } = {}) =>
  WireClient.member(port, nick, { passphrase: PASSPHRASE, ...options });

/** Sends a text and returns its envelope and seq, asserting it was acked. */
async function say(client: WireClient, body: string): Promise<{ envelope: Envelope; seq: number }> {
  const envelope = await client.seal(body);
  await client.send({ type: "send", envelope });
  const ack = await client.awaitAck(envelope.id, { timeoutMs: 20_000 });
  assert.equal(ack.type, "ack", `${client.nick}: ${JSON.stringify(ack)}`);
  return { envelope, seq: (ack as Msg<"ack">).seq };
}

/** Receives the next message from `from` and returns its decrypted body. */
async function hear(client: WireClient, from: string): Promise<{ body: string; msg: Msg<"message"> }> {
  const msg = await client.next("message", { where: (m) => m.envelope.from === from, timeoutMs: 20_000 });
  const opened = await openEnvelope(client.keys!, { envelope: msg.envelope, room: client.room, from });
  return { body: opened.plaintext.body, msg };
}

async function decryptHistory(client: WireClient, history: Msg<"joined">["history"]): Promise<string[]> {
  const bodies: string[] = [];
  for (const item of history) {
    const opened = await openEnvelope(client.keys!, {
      envelope: item.envelope,
      room: client.room,
      from: item.envelope.from,
    });
    bodies.push(`${item.envelope.from}: ${opened.plaintext.body}`);
  }
  return bodies;
}

function assertListeningLine(server: ServerProcess, options: { tls?: string } = {}): void {
  const [first, second] = server.program.stdout.split("\n");
  assert.equal(first, `aeschat server listening on 127.0.0.1:${server.port} (db ${server.db})`);
  if (options.tls) assert.equal(second, `aeschat server: TLS with certificate ${options.tls}`);
  assert.ok(server.port > 0);
}

async function stopCleanly(server: ServerProcess): Promise<void> {
  const status = await server.program.stop("SIGTERM");
  assert.equal(status.code, 0, `the server stops with exit 0 (stderr: ${server.program.stderr})`);
}

Deno.test("members exchange and decrypt, a newcomer gets the last --history messages, and all survives a restart", async () => {
  let server = await startServer({ args: ["--history", "3"] });
  const clients: WireClient[] = [];
  try {
    assertListeningLine(server);
    const alice = await member(server.port, "alice");
    const bob = await member(server.port, "bob");
    clients.push(alice, bob);
    assert.deepEqual(await alice.next("presence"), {
      type: "presence",
      event: "join",
      room: "general",
      nick: "bob",
      key: bob.identity!.publicKey.toBase64(),
    });

    const lines: string[] = [];
    const seqs: number[] = [];
    for (let i = 0; i < 5; i++) {
      const [from, to] = i % 2 === 0 ? [alice, bob] : [bob, alice];
      const body = `line ${i} from ${from.nick} ✓`;
      const { seq } = await say(from, body);
      const heard = await hear(to, from.nick);
      assert.equal(heard.body, body);
      assert.equal(heard.msg.seq, seq, "the relayed seq is the acked seq");
      lines.push(`${from.nick}: ${body}`);
      seqs.push(seq);
    }
    assert.deepEqual([...seqs].sort((a, b) => a - b), seqs, "seq increases");
    assert.equal(new Set(seqs).size, 5);
    assert.equal(alice.inbox.filter((m) => m.type === "message").length, 0, "no echo of one's own messages");

    const carol = await member(server.port, "carol");
    clients.push(carol);
    // join() took the joined reply; ask the server again for what carol was given, through since.
    await carol.send({ type: "since", room: "general", after_seq: 0 });
    const since = await carol.next("since");
    assert.deepEqual(since.messages.map((m) => m.seq), seqs);
    assert.deepEqual(await decryptHistory(carol, since.messages), lines);

    // The joined reply itself, for a fresh member: the last three, oldest first.
    const dave = await WireClient.connect(server.port);
    clients.push(dave);
    await dave.hello("dave");
    const joined = await dave.join("general", PASSPHRASE) as Msg<"joined">;
    assert.equal(joined.type, "joined");
    assert.deepEqual(joined.members.map((m) => m.nick).sort(), ["alice", "bob", "carol", "dave"]);
    assert.deepEqual(joined.history.map((m) => m.seq), seqs.slice(2));
    assert.equal(joined.latest_seq, seqs[4]);
    assert.deepEqual(await decryptHistory(dave, joined.history), lines.slice(2));
    const before = joined.history;

    // Restart on the same database.
    await closeAll(clients.splice(0));
    await stopCleanly(server);
    server = await startServer({ db: server.db, args: ["--history", "3"] });
    assertListeningLine(server);
    const erin = await WireClient.connect(server.port);
    clients.push(erin);
    await erin.hello("erin");
    const again = await erin.join("general", PASSPHRASE) as Msg<"joined">;
    assert.equal(again.type, "joined", JSON.stringify(again));
    assert.deepEqual(again.history, before, "the same history, byte for byte, after the restart");
    assert.deepEqual(await decryptHistory(erin, again.history), lines.slice(2));
    const after = await say(erin, "after the restart");
    assert.ok(after.seq > seqs[4], `seq keeps increasing across restarts (${after.seq} after ${seqs[4]})`);
    // The room's verifier survived too: a wrong passphrase is still denied.
    const mallory = await WireClient.connect(server.port);
    clients.push(mallory);
    await mallory.hello("mallory");
    const denied = await mallory.join("general", "not the passphrase");
    assert.deepEqual([denied.type, denied.type === "error" && denied.code], ["error", "access_denied"]);
  } finally {
    await closeAll(clients);
    await server.program.stop();
    await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
  }
});

Deno.test("an envelope for a room the sender is not in, or from another nick, is refused with its id and not stored", async () => {
  const server = await startServer();
  const clients: WireClient[] = [];
  let db: DatabaseSync | undefined;
  try {
    const alice = await member(server.port, "alice");
    const bob = await member(server.port, "bob");
    clients.push(alice, bob);
    const refused: [Envelope, string][] = [];
    const cases = [["dev", "alice", "not_in_room"], ["General", "alice", "not_in_room"], [
      "general",
      "bob",
      "sender_mismatch",
    ]];
    for (const [room, from, code] of cases) {
      const envelope = await sealEnvelope(alice.keys!, { room, from, plaintext: { type: "text", body: code }, v: 2 });
      await alice.send({ type: "send", envelope });
      const answer = await alice.awaitAck(envelope.id, { timeoutMs: 20_000 });
      assert.deepEqual([answer.type, answer.type === "error" && answer.code], ["error", code]);
      refused.push([envelope, code]);
    }
    const good = await say(alice, "the one that counts");
    assert.equal((await hear(bob, "alice")).body, "the one that counts");
    assert.equal(bob.inbox.filter((m) => m.type === "message").length, 0, "bob got nothing of the refused ones");
    assert.ok(!alice.closed, "a refused envelope does not close the connection");

    // The server holds its database exclusively: read it once the server is stopped.
    await server.program.stop();
    db = new DatabaseSync(server.db, { readOnly: true });
    const rows = db.prepare("SELECT seq, room, sender, msg_id, envelope FROM messages").all() as {
      seq: number;
      room: string;
      sender: string;
      msg_id: Uint8Array;
      envelope: string;
    }[];
    assert.equal(rows.length, 1, `rows: ${JSON.stringify(rows.map((r) => r.envelope))}`);
    assert.deepEqual(
      [Number(rows[0].seq), rows[0].room, rows[0].sender, new Uint8Array(rows[0].msg_id), rows[0].envelope],
      [good.seq, "general", "alice", Uint8Array.fromBase64(good.envelope.id), serializeEnvelope(good.envelope)],
    );
  } finally {
    db?.close();
    await closeAll(clients);
    await server.program.stop();
    await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
  }
});

Deno.test({
  name: "TLS end to end: members exchange over TLS with a self-signed certificate; plain TCP and untrusted peers fail",
  ignore: !hasOpenssl,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "aeschat-tls-" });
    const { cert, key } = await selfSigned(dir);
    const pem = await Deno.readTextFile(cert);
    let server: ServerProcess | undefined;
    const clients: WireClient[] = [];
    try {
      server = await startServer({ db: `${dir}/tls.db`, args: ["--tls-cert", cert, "--tls-key", key] });
      await server.program.waitFor(() => server!.program.stdout.includes("TLS with"), { what: "the TLS line" });
      assertListeningLine(server, { tls: cert });
      const alice = await member(server.port, "alice", { caCert: pem });
      const bob = await member(server.port, "bob", { caCert: pem });
      clients.push(alice, bob);
      await say(alice, "over TLS");
      assert.equal((await hear(bob, "alice")).body, "over TLS");
      await say(bob, "and back");
      assert.equal((await hear(alice, "bob")).body, "and back");

      // Connecting by IP address also verifies (the certificate names 127.0.0.1).
      const byIp = await Deno.connectTls({ hostname: "127.0.0.1", port: server.port, caCerts: [pem] });
      await byIp.handshake();
      byIp.close();
      // A client that does not trust the certificate cannot complete the handshake.
      await assert.rejects(async () => {
        const conn = await Deno.connectTls({ hostname: "localhost", port: server!.port });
        try {
          await conn.handshake();
        } finally {
          conn.close();
        }
      });
      // A plain TCP client speaking the protocol gets no welcome and is disconnected.
      const plain = await WireClient.connect(server.port);
      clients.push(plain);
      await plain.send(helloMessage(new Uint8Array(32)));
      await plain.ended;
      assert.deepEqual(plain.inbox, []);
      // The TLS members are unaffected.
      await say(alice, "still here");
      assert.equal((await hear(bob, "alice")).body, "still here");
    } finally {
      await closeAll(clients);
      if (server) await stopCleanly(server);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("--version and --help print to stdout and exit 0 without starting a server", async () => {
  const version = spawnTask("server", { args: ["--version"] });
  const help = spawnTask("server", { args: ["--help", "--port", "1"] });
  const [v, h] = await Promise.all([version.status, help.status]);
  assert.deepEqual([v.code, version.stdout, version.stderr], [
    0,
    `aeschat server ${denoConfig.version} (source)\n`,
    "",
  ]);
  assert.equal(h.code, 0);
  assert.equal(help.stderr, "");
  assert.ok(!help.stdout.includes("listening"));
  assert.match(help.stdout, new RegExp(`^aeschat server ${denoConfig.version.replaceAll(".", "\\.")}: `));
  for (const f of SERVER_FLAGS) {
    const line = help.stdout.split("\n").find((l) => l.startsWith(`  --${f.name} `));
    assert.ok(line, `--help lists --${f.name}`);
    if (f.kind !== "boolean" && f.default !== undefined) assert.ok(line.endsWith(`(default ${f.default})`), line);
  }
});
