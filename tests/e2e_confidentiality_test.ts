/**
 * Confidentiality against the real server process, with a recording proxy between every client and the server:
 * no test plaintext and no passphrase appears, raw or as base64 or hex, in any byte on the wire, in the database
 * file or its -wal file, or in the server's log; and a member denied access receives nothing of the room: no
 * member names, no history, no message, no presence, not even the room's name or member count in `rooms`.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Envelope } from "../lib/envelope.ts";
import { TcpProxy } from "./support/proxy.ts";
import { startServer } from "./support/programs.ts";
import { type Msg, WireClient } from "./support/wire.ts";

const encoder = new TextEncoder();
/**
 * Every form in which a secret could leak: its UTF-8 bytes, its JSON-escaped text, its base64 at each of the three
 * alignments it could start at inside a longer base64 string, and its hex in both cases.
 */
function leakForms(secret: string): { form: string; bytes: Uint8Array }[] {
  const raw = encoder.encode(secret);
  const forms = [
    { form: "utf-8", bytes: raw },
    {
      form: "json",
      bytes: encoder.encode(
        JSON.stringify(secret).slice(1, -1).replace(
          /[^\x20-\x7e]/g,
          (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
        ),
      ),
    },
    { form: "hex", bytes: encoder.encode(raw.toHex()) },
    { form: "HEX", bytes: encoder.encode(raw.toHex().toUpperCase()) },
  ];
  for (let shift = 0; shift < 3; shift++) {
    // Base64 of the secret preceded by `shift` unknown bytes: drop the symbols those bytes affect, and the last
    // group, which depends on what follows.
    const b64 = Uint8Array.from([...new Uint8Array(shift), ...raw]).toBase64();
    const start = shift === 0 ? 0 : 4;
    const stable = b64.slice(start, Math.floor((shift + raw.length) / 3) * 4);
    if (stable.length >= 8) forms.push({ form: `base64+${shift}`, bytes: encoder.encode(stable) });
  }
  return forms;
}

function findLeaks(haystacks: Record<string, Uint8Array>, secrets: string[]): string[] {
  const found: string[] = [];
  for (const [where, bytes] of Object.entries(haystacks)) {
    const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (const secret of secrets) {
      for (const { form, bytes: needle } of leakForms(secret)) {
        if (buffer.indexOf(needle) >= 0) found.push(`${JSON.stringify(secret)} as ${form} in ${where}`);
      }
    }
  }
  return found;
}

function contains(bytes: Uint8Array, text: string): boolean {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(encoder.encode(text)) >= 0;
}

async function readIfExists(path: string): Promise<Uint8Array> {
  return await Deno.readFile(path).catch(() => new Uint8Array(0));
}

Deno.test("no plaintext or passphrase appears on the wire, in the database, its -wal file or the server log", async () => {
  const server = await startServer({ args: ["--log-level", "debug"] });
  const proxy = TcpProxy.start(server.port);
  const passphrase = `tangerine submarine ${crypto.randomUUID()}`;
  const wrongPassphrase = `not the passphrase ${crypto.randomUUID()}`;
  const tag = crypto.randomUUID().slice(0, 8);
  const plaintexts = [
    `the launch code is ${tag}-alpha`,
    `meet at the old mill at noon ${tag}`,
    `unicode: café Zoë 日本語 ${tag} 🎉`,
    `${tag} ` + "a long message ".repeat(300),
    `${tag}`.repeat(3),
  ];
  const clients: WireClient[] = [];
  try {
    const alice = await WireClient.connect(proxy.port);
    const bob = await WireClient.connect(proxy.port);
    clients.push(alice, bob);
    await alice.hello("alice");
    await bob.hello("bob");
    assert.equal((await alice.join("vault", passphrase)).type, "joined");
    assert.equal((await bob.join("vault", passphrase)).type, "joined");
    const envelopes: Envelope[] = [];
    for (const [i, text] of plaintexts.entries()) {
      const from = i % 2 === 0 ? alice : bob;
      const to = i % 2 === 0 ? bob : alice;
      const envelope = await from.seal(text, { type: i === 4 ? "action" : "text" });
      envelopes.push(envelope);
      await from.send({ type: "send", envelope });
      await from.next("ack", { where: (m) => m.id === envelope.id });
      await to.next("message", { where: (m) => m.envelope.id === envelope.id });
    }
    // A later member gets the history; someone with the wrong passphrase gets nothing.
    const dave = await WireClient.connect(proxy.port);
    clients.push(dave);
    await dave.hello("dave");
    const joined = await dave.join("vault", passphrase);
    assert.ok(joined.type === "joined" && joined.history.length === plaintexts.length, "history replayed");
    const carol = await WireClient.connect(proxy.port);
    clients.push(carol);
    await carol.hello("carol");
    assert.equal((await carol.join("vault", wrongPassphrase)).type, "error");

    // While the server runs, the -wal file holds the recent writes.
    const walWhileRunning = await readIfExists(`${server.db}-wal`);
    const dbWhileRunning = await readIfExists(server.db);
    for (const c of clients) c.close();
    await Promise.all(clients.map((c) => c.ended));
    await proxy.close();
    const stop = await server.program.stop("SIGTERM");
    assert.equal(stop.code, 0);
    const haystacks = {
      "wire (proxy)": proxy.allBytes(),
      "database while running": dbWhileRunning,
      "-wal while running": walWhileRunning,
      "database after shutdown": await readIfExists(server.db),
      "-wal after shutdown": await readIfExists(`${server.db}-wal`),
      "server stderr": encoder.encode(server.program.stderr),
      "server stdout": encoder.encode(server.program.stdout),
    };
    // Controls: the search finds what must be there, so an empty result means something.
    assert.ok(contains(haystacks["wire (proxy)"], envelopes[0].ct), "the wire carries the ciphertext");
    assert.ok(
      contains(haystacks["database while running"], envelopes[0].ct) ||
        contains(haystacks["-wal while running"], envelopes[0].ct),
      "the database holds the ciphertext",
    );
    assert.ok(contains(haystacks["database after shutdown"], envelopes[4].ct), "checkpointed into the database");
    assert.ok(server.program.stderr.includes("vault"), "the log names the room");
    assert.ok(findLeaks({ control: encoder.encode(`xx${plaintexts[0]}yy`) }, [plaintexts[0]]).length > 0);
    for (let shift = 0; shift < 3; shift++) {
      const wrapped = Uint8Array.from([...new Uint8Array(shift).fill(7), ...encoder.encode(passphrase), 1, 2]);
      const control = findLeaks({ control: encoder.encode(wrapped.toBase64()) }, [passphrase]);
      assert.ok(control.some((c) => c.includes(`base64+${shift}`)), `the base64 search works at offset ${shift}`);
    }
    const leaks = findLeaks(haystacks, [...plaintexts, passphrase, wrongPassphrase]);
    assert.deepEqual(leaks, [], "secrets found");
  } finally {
    for (const c of clients) c.close();
    await Promise.all(clients.map((c) => c.ended));
    await proxy.close();
    await server.program.stop();
    await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
  }
});

Deno.test("a member denied access receives nothing of the room, not even its name in the room list", async () => {
  const server = await startServer();
  const proxy = TcpProxy.start(server.port);
  const passphrase = `correct horse ${crypto.randomUUID()}`;
  const clients: WireClient[] = [];
  try {
    const alice = await WireClient.connect(proxy.port);
    const bob = await WireClient.connect(proxy.port);
    clients.push(alice, bob);
    await alice.hello("alice");
    await bob.hello("bob");
    assert.equal((await alice.join("vault", passphrase)).type, "joined");
    assert.equal((await bob.join("vault", passphrase)).type, "joined");
    const before = await alice.seal("said before mallory came");
    await alice.send({ type: "send", envelope: before });
    await alice.next("ack", { where: (m) => m.id === before.id });

    const mallory = await WireClient.connect(proxy.port);
    clients.push(mallory);
    await proxy.waitForConnections(3);
    const wire = proxy.connections[2];
    await mallory.hello("mallory");
    const denied = await mallory.join("vault", "a guess");
    assert.ok(denied.type === "error" && denied.code === "access_denied", JSON.stringify(denied));
    const afterDenial = mallory.inbox.length;
    const envelopes: Envelope[] = [before];
    // Mallory tries everything while the room talks and a new member arrives.
    const probes: object[] = [
      { type: "who", room: "vault" },
      { type: "history", room: "vault", before_seq: 2 ** 53 - 1, limit: 500 },
      { type: "since", room: "vault", after_seq: 0, limit: 500 },
      { type: "part", room: "VAULT" },
      { type: "rooms" },
      { type: "prove", room: "vault", proof: new Uint8Array(64).toBase64() },
      {
        type: "send",
        envelope: { ...before, from: "mallory" },
      },
      { type: "nick", new: "mallory2" },
    ];
    for (const probe of probes) {
      await mallory.send(probe);
      const envelope = await (probes.indexOf(probe) % 2 === 0 ? alice : bob).seal(`while probing ${probe}`);
      const from = probes.indexOf(probe) % 2 === 0 ? alice : bob;
      await from.send({ type: "send", envelope });
      await from.next("ack", { where: (m) => m.id === envelope.id });
      envelopes.push(envelope);
    }
    const carol = await WireClient.connect(proxy.port);
    clients.push(carol);
    await carol.hello("carol");
    assert.equal((await carol.join("vault", passphrase)).type, "joined");
    // Four more wrong guesses: the fifth denial closes the connection.
    for (let i = 0; i < 4; i++) {
      await mallory.send({ type: "join", room: "vault" });
      const challenge = await mallory.next("challenge");
      await mallory.send({
        type: "prove",
        room: "vault",
        proof: crypto.getRandomValues(new Uint8Array(64)).toBase64(),
      });
      assert.ok(challenge.salt && challenge.iterations, "the challenge carries the public key-derivation parameters");
    }
    await mallory.ended;
    const got = mallory.inbox.slice(afterDenial);
    const types = new Set(got.map((m) => m.type));
    for (const t of types) {
      assert.ok(["error", "rooms", "nick", "challenge", "bye"].includes(t), `mallory received a ${t} frame`);
    }
    const codes = got.filter((m) => m.type === "error").map((m) => (m as Msg<"error">).code);
    assert.deepEqual(
      [...new Set(codes)].sort(),
      ["access_denied", "no_challenge", "not_in_room"],
      `mallory's errors: ${codes.join(", ")}`,
    );
    assert.equal(codes.filter((c) => c === "access_denied").length, 4);
    const rooms = got.find((m) => m.type === "rooms") as Msg<"rooms">;
    assert.deepEqual(rooms.rooms, [], "rooms lists only the rooms this connection proved");
    assert.equal((got.find((m) => m.type === "bye") as Msg<"bye">).reason, "access_denied");
    // Byte level: nothing mallory received names a member or carries any part of an envelope.
    await sleep(100);
    const received = wire.received();
    for (const nick of ["alice", "bob", "carol"]) {
      assert.ok(!contains(received, `"${nick}"`), `mallory's bytes name ${nick}`);
    }
    for (const e of envelopes) {
      for (const field of [e.ct, e.iv, e.tag]) {
        assert.ok(!contains(received, field), "mallory's bytes hold an envelope");
      }
    }
    // Control: the members' own connections did carry those bytes.
    assert.ok(contains(proxy.connections[1].received(), envelopes[1].ct));
  } finally {
    for (const c of clients) c.close();
    await Promise.all(clients.map((c) => c.ended));
    await proxy.close();
    await server.program.stop();
    await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
  }
});
