/**
 * Strangers against the real server process: connections that never finish a TLS handshake, connections that only
 * say hello, one address opening many connections, a connection creating room after room or filling a room's
 * storage. Each test tries hardest to break a limit while real members keep chatting.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { openEnvelope } from "../lib/crypto.ts";
import { startServer } from "./support/programs.ts";
import { hasOpenssl, selfSigned } from "./support/tls.ts";
import { closeAll, WireClient } from "./support/wire.ts";

const PASSPHRASE = "strangers test passphrase 5d21";

/** Open file descriptors of a process, from /proc (through ls: Deno reads another process's /proc only with -A). */
async function openFiles(pid: number): Promise<number> {
  const out = await new Deno.Command("sh", { args: ["-c", 'ls "/proc/$1/fd" | wc -l', "sh", String(pid)] }).output();
  return Number(new TextDecoder().decode(out.stdout).trim());
}

/** Joins as a member, retrying while the server refuses or drops the connection, until the deadline. */
async function memberEventually(
  port: number,
  nick: string,
  options: { caCert?: string; deadline: number },
): Promise<WireClient> {
  let last: unknown;
  while (performance.now() < options.deadline) {
    try {
      return await WireClient.member(port, nick, { passphrase: PASSPHRASE, caCert: options.caCert });
    } catch (err) {
      last = err;
      await sleep(100);
    }
  }
  throw new Error(`${nick} never got in: ${last}`);
}

/** One member says something and the other one hears it, decrypted. */
async function chat(from: WireClient, to: WireClient, text: string): Promise<void> {
  const ack = await from.say(text);
  assert.equal(ack.type, "ack", JSON.stringify(ack));
  const m = await to.next("message", { where: (m) => m.envelope.from === from.nick, timeoutMs: 20_000 });
  const opened = await openEnvelope(to.keys!, { envelope: m.envelope, room: to.room, from: from.nick });
  assert.equal(opened.plaintext.body, text);
}

Deno.test({
  name: "silent TCP connections to a TLS server are closed for real at --handshake-timeout and real members still chat",
  ignore: !hasOpenssl || Deno.build.os !== "linux",
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "aeschat-strangers-" });
    const { cert, key } = await selfSigned(dir);
    const caCert = await Deno.readTextFile(cert);
    const maxConnections = 50;
    const server = await startServer({
      db: `${dir}/aeschat.db`,
      args: ["--tls-cert", cert, "--tls-key", key, "--max-connections", String(maxConnections)].concat(
        ["--handshake-timeout", "2"],
      ),
      // Far fewer than the connections the attacker opens over the test (each slot is reopened every cycle).
      openFiles: 128,
    });
    const pid = server.program.child.pid;
    const open = new Set<Deno.Conn>();
    let attacking = true;
    let worst = 0;
    const clients: WireClient[] = [];
    // 200 silent connections, each opened again as soon as the server closes it, for four handshake timeouts.
    const attacker = async () => {
      let opened = 0;
      while (attacking) {
        let conn: Deno.Conn;
        try {
          conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
        } catch {
          await sleep(250);
          continue;
        }
        opened++;
        open.add(conn);
        const buf = new Uint8Array(16);
        try {
          while (await conn.read(buf) !== null) { /* the server never speaks first in TLS */ }
        } catch {
          // reset by the server
        }
        open.delete(conn);
        try {
          conn.close();
        } catch {
          // already closed
        }
        await sleep(250);
      }
      return opened;
    };
    try {
      const start = performance.now();
      const attackers = Array.from({ length: 200 }, attacker);
      const sampling = (async () => {
        while (attacking) {
          worst = Math.max(worst, await openFiles(pid));
          await sleep(100);
        }
      })();
      await sleep(500);
      const deadline = performance.now() + 40_000;
      const alice = await memberEventually(server.port, "alice", { caCert, deadline });
      clients.push(alice);
      const bob = await memberEventually(server.port, "bob", { caCert, deadline });
      clients.push(bob);
      await chat(alice, bob, "through the storm");
      await chat(bob, alice, "loud and clear");
      while (performance.now() - start < 8000) await sleep(100);
      // Still chatting after four rounds of half-open connections came and went.
      await chat(alice, bob, "still here");
      attacking = false;
      for (const conn of open) conn.close();
      const opened = (await Promise.all(attackers)).reduce((n, x) => n + x, 0);
      await sampling;
      const timedOut = (server.program.stderr.match(/ tls_failed /g) ?? []).length;
      console.log(
        `  ${opened} silent connections opened, ${timedOut} closed at the handshake timeout; at most ${worst} ` +
          `open files (limit ${maxConnections} + 32)`,
      );
      assert.ok(timedOut >= 50, `only ${timedOut} connections reached the handshake timeout: the test did not bite`);
      assert.ok(worst <= maxConnections + 32, `the server had ${worst} files open`);
      assert.doesNotMatch(server.program.stderr, /accept_failed/);
    } finally {
      attacking = false;
      for (const conn of open) conn.close();
      await closeAll(clients);
      await server.program.stop();
      await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
    }
  },
});

/** Connects and logs in; resolves with the client, or with the error the server sent before closing. */
async function helloOnly(port: number, nick: string): Promise<WireClient | string> {
  const c = await WireClient.connect(port);
  const reply = await c.login(nick).catch(() => undefined);
  if (reply?.type === "welcome") return c;
  c.close();
  await c.ended;
  return reply?.type === "error" ? `${reply.code}: ${reply.message}` : "closed";
}

Deno.test("connections that have not joined a room hold at most half of --max-connections; members still get in and chat", async () => {
  const server = await startServer({ args: ["--max-connections", "10"] });
  const clients: WireClient[] = [];
  try {
    const alice = await WireClient.member(server.port, "alice", { passphrase: PASSPHRASE });
    const bob = await WireClient.member(server.port, "bob", { passphrase: PASSPHRASE });
    clients.push(alice, bob);
    // Strangers that only say hello: five get in (half of 10), the others are refused.
    const strangers: (WireClient | string)[] = [];
    for (let i = 0; i < 8; i++) strangers.push(await helloOnly(server.port, `stranger${i}`));
    const admitted = strangers.filter((s): s is WireClient => typeof s !== "string");
    clients.push(...admitted);
    assert.equal(admitted.length, 5, JSON.stringify(strangers.filter((s) => typeof s === "string")));
    for (const refused of strangers.filter((s) => typeof s === "string")) {
      assert.match(refused as string, /^server_full: too many connections that have not joined a room yet/);
    }
    await chat(alice, bob, "the strangers are at the door");
    // A stranger who proves a room stops counting as one; a freed place lets a member in.
    admitted[0].close();
    await admitted[0].ended;
    const carol = await memberEventually(server.port, "carol", { deadline: performance.now() + 20_000 });
    clients.push(carol);
    await chat(carol, alice, "made it");
    assert.match(server.program.stderr, /limit remote=\S+ limit=unproven_connections/);
  } finally {
    await closeAll(clients);
    await server.program.stop();
    await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
  }
});

Deno.test("--max-connections-per-address limits one address unless it is exempt (loopback is, by default)", async () => {
  const strict = await startServer({ args: ["--max-connections-per-address", "3", "--exempt-addresses", "none"] });
  const loose = await startServer({ args: ["--max-connections-per-address", "3"] });
  const clients: WireClient[] = [];
  try {
    const results: (WireClient | string)[] = [];
    for (let i = 0; i < 5; i++) results.push(await helloOnly(strict.port, `s${i}`));
    clients.push(...results.filter((r): r is WireClient => typeof r !== "string"));
    assert.equal(clients.length, 3);
    for (const r of results.slice(3)) assert.match(r as string, /^server_full: too many connections from your address/);
    assert.match(strict.program.stderr, /limit remote=127\.0\.0\.1:\d+ limit=max_connections_per_address/);
    // Loopback is exempt unless told otherwise: 20 from 127.0.0.1 all get in.
    for (let i = 0; i < 20; i++) {
      const c = await helloOnly(loose.port, `l${i}`);
      assert.ok(typeof c !== "string", `connection ${i} refused: ${c}`);
      clients.push(c);
    }
  } finally {
    await closeAll(clients);
    await strict.program.stop();
    await loose.program.stop();
    for (const s of [strict, loose]) await Deno.remove(dirname(s.db), { recursive: true }).catch(() => {});
  }
});

Deno.test("one connection creating room after room is stopped at --room-create-burst, and the server at --max-rooms", async () => {
  const server = await startServer({ args: ["--max-rooms", "8"] });
  const clients: WireClient[] = [];
  try {
    const mallory = await WireClient.connect(server.port);
    clients.push(mallory);
    await mallory.hello("mallory");
    const answers: string[] = [];
    for (let i = 0; i < 7; i++) {
      const reply = await mallory.join(`junk${i}`, PASSPHRASE);
      answers.push(reply.type === "joined" ? "joined" : reply.code);
    }
    // The default burst is 5 rooms per connection; the refusal comes at join, before any key is derived.
    assert.deepEqual(answers, ["joined", "joined", "joined", "joined", "joined", "create_limited", "create_limited"]);
    assert.ok(!mallory.closed, "a refused creation does not close the connection");
    // Another connection (loopback is exempt from the per-address budget) reaches --max-rooms.
    const other = await WireClient.connect(server.port);
    clients.push(other);
    await other.hello("other");
    for (const room of ["r1", "r2", "r3"]) assert.equal((await other.join(room, PASSPHRASE)).type, "joined");
    await other.send({ type: "join", room: "r4" });
    const full = await other.next("error");
    assert.equal(full.code, "room_limit");
    assert.match(full.message, /--max-rooms/);
    // Existing rooms can still be joined.
    assert.equal((await other.join("junk0", PASSPHRASE)).type, "joined");
    assert.match(server.program.stderr, /limit remote=\S+ nick=mallory limit=room_create_rate room=junk5/);
  } finally {
    await closeAll(clients);
    await server.program.stop();
    await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
  }
});

Deno.test("a member filling a room with junk is stopped at --room-quota; --retention N keeps the last N of each room", async () => {
  const server = await startServer({
    args: ["--room-quota", "250000", "--rate", "0", "--retention", "5", "--max-frame", "131072"],
  });
  const clients: WireClient[] = [];
  try {
    const mallory = await WireClient.member(server.port, "mallory", { passphrase: PASSPHRASE, room: "junk" });
    const alice = await WireClient.member(server.port, "alice", { passphrase: PASSPHRASE });
    const bob = await WireClient.member(server.port, "bob", { passphrase: PASSPHRASE });
    clients.push(mallory, alice, bob);
    // Envelopes of about 100 KB (control characters take 6 bytes each once sealed): the cap stops the third.
    const answers: string[] = [];
    for (let i = 0; i < 5; i++) {
      const reply = await mallory.say(`${i} ${"\u0001".repeat(13_000)}`);
      answers.push(reply.type === "ack" ? "ack" : reply.code);
    }
    assert.deepEqual(answers, ["ack", "ack", "room_full", "room_full", "room_full"]);
    assert.ok(!mallory.closed, "room_full does not close the connection");
    // Other rooms are not affected, and keep their last 5 messages.
    for (let i = 0; i < 12; i++) await chat(alice, bob, `line ${i}`);
    const carol = await WireClient.connect(server.port);
    clients.push(carol);
    await carol.hello("carol");
    const joined = await carol.join("general", PASSPHRASE);
    assert.equal(joined.type, "joined");
    assert.equal(joined.type === "joined" && joined.history.length, 5);
  } finally {
    await closeAll(clients);
    await server.program.stop();
    await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
  }
});
