/**
 * Readers and senders under load, against the real server process: a burst from every member at once must cut off
 * no reader that reads as fast as it can; a reader that never reads, or reads a byte a second, is cut off within a
 * bounded time while the others receive every message; one slow reader does not stall its room or another room; and
 * senders held back while readers catch up are not cut off as idle.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Envelope } from "../lib/envelope.ts";
import { encodeMessage, FrameReader } from "../lib/frame.ts";
import { parseServerMessage } from "../lib/protocol.ts";
import { concat } from "./support/bytes.ts";
import { converse, rssKiB } from "./support/conversation.ts";
import { startServer } from "./support/programs.ts";
import { closeAll, silentMember, WireClient } from "./support/wire.ts";

const PASSPHRASE = "backpressure test passphrase 0c4e";

const member = (port: number, nick: string, room = "general") =>
  WireClient.member(port, nick, { passphrase: PASSPHRASE, room });

async function removeServerDir(db: string): Promise<void> {
  await Deno.remove(dirname(db), { recursive: true }).catch(() => {});
}

/** Waits until `test` holds, polling; fails with `what` after `timeoutMs`. */
async function until(test: () => boolean, what: () => string, timeoutMs = 60_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!test()) {
    if (performance.now() > deadline) assert.fail(`timed out: ${what()}`);
    await sleep(20);
  }
}

/**
 * A member that reads its socket at a set pace (`bytes` every `everyMs`), counting the relayed messages it gets.
 * It keeps reading until the server closes the connection or {@link PacedReader.stop} is called.
 */
class PacedReader {
  readonly conn: Deno.Conn;
  /** Relayed message ids, in arrival order. */
  readonly ids: string[] = [];
  /** Bytes read. */
  bytes = 0;
  /** Whether the server closed the connection. */
  closed = false;
  readonly done: Promise<void>;
  #stopped = false;

  constructor(conn: Deno.Conn, options: { bytes: number; everyMs: number; pingEveryMs?: number }) {
    this.conn = conn;
    this.done = this.#run(options);
    if (options.pingEveryMs !== undefined) this.#ping(options.pingEveryMs);
  }

  /** Pings as a real client does, so that a short --idle-timeout does not end it. */
  async #ping(everyMs: number): Promise<void> {
    const ping = encodeMessage({ type: "ping" });
    while (!this.#stopped && !this.closed) {
      await sleep(everyMs);
      try {
        await this.conn.write(ping);
      } catch {
        return;
      }
    }
  }

  async #run(options: { bytes: number; everyMs: number }): Promise<void> {
    const reader = new FrameReader({ maxFrame: 1 << 24 });
    const buf = new Uint8Array(options.bytes);
    try {
      while (!this.#stopped) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        this.bytes += n;
        for (const body of reader.push(buf.subarray(0, n))) {
          const msg = parseServerMessage(body);
          if (msg.type === "message") this.ids.push(msg.envelope.id);
        }
        await sleep(options.everyMs);
      }
    } catch {
      // reset by the server
    }
    this.closed = !this.#stopped;
  }

  stop(): void {
    this.#stopped = true;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

Deno.test("a burst from every member at once, within the default --rate and --burst, cuts off no reader", async () => {
  // The server's default flags: a 1 MiB --send-queue, --rate 20, --burst 40.
  const server = await startServer();
  const members: WireClient[] = [];
  const count = 30;
  const each = 38; // join and prove took two tokens of the 40
  try {
    for (let i = 0; i < count; i++) members.push(await member(server.port, `m${i}`));
    await sleep(200);
    const padding = "x".repeat(2000);
    const sent: Envelope[][] = await Promise.all(
      members.map((m) => Promise.all(Array.from({ length: each }, (_, k) => m.seal(`${m.nick} ${k} ${padding}`)))),
    );
    // Each reader is sent about 3 MB, more than --send-queue: the old server cut off most of them here.
    for (const m of members) m.inbox = [];
    await Promise.all(
      members.map((m, i) => m.writeRaw(concat(sent[i].map((envelope) => encodeMessage({ type: "send", envelope }))))),
    );
    const got = members.map(() => new Map<string, number>());
    const acks = members.map(() => 0);
    const take = () => {
      for (const [i, m] of members.entries()) {
        for (const msg of m.inbox) {
          if (msg.type === "message") got[i].set(msg.envelope.from, (got[i].get(msg.envelope.from) ?? 0) + 1);
          else if (msg.type === "ack") acks[i]++;
          else if (msg.type === "error" && msg.code !== "rate_limited") {
            assert.fail(`${m.nick}: ${JSON.stringify(msg)}`);
          }
        }
        m.inbox = [];
      }
    };
    await until(
      () => {
        take();
        return members.every((m, i) =>
          m.closed || (acks[i] === each && [...got[i].values()].reduce((a, b) => a + b, 0) === (count - 1) * each)
        );
      },
      () => `acks ${acks.join(",")}`,
    );
    assert.deepEqual(members.filter((m) => m.closed).map((m) => m.nick), [], "no reader was cut off");
    assert.doesNotMatch(server.program.stderr, /limit=send_queue/);
    for (const [i, m] of members.entries()) {
      for (const other of members) {
        if (other !== m) assert.equal(got[i].get(other.nick), each, `${m.nick} got every message of ${other.nick}`);
      }
    }
  } finally {
    await closeAll(members);
    await server.program.stop();
    await removeServerDir(server.db);
  }
});

Deno.test({
  name:
    "a reader that never reads, and one that reads a byte a second, are cut off in bounded time; the others get everything",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const graceS = 2;
    const server = await startServer({
      args: ["--send-queue", "65536", "--send-grace", String(graceS), "--rate", "0", "--history", "0"],
    });
    const clients: WireClient[] = [];
    let eve: Deno.Conn | undefined;
    let trickle: PacedReader | undefined;
    try {
      const alice = await member(server.port, "alice");
      const bob = await member(server.port, "bob");
      const dave = await member(server.port, "dave");
      clients.push(alice, bob, dave);
      eve = await silentMember(server.port, "eve", { passphrase: PASSPHRASE });
      trickle = new PacedReader(await silentMember(server.port, "trickle", { passphrase: PASSPHRASE }), {
        bytes: 1,
        everyMs: 1000,
      });
      const pid = server.program.child.pid;
      const rssBefore = await rssKiB(pid);
      const start = performance.now();
      // Big messages until the server has cut off both (the kernel buffers take a few MB first), then some more.
      const body = "x".repeat(12_000);
      const acked: { seq: number; id: string }[] = [];
      const cutAt = new Map<string, number>();
      const daveGot: string[] = [];
      let extra = -1;
      for (let round = 0; round < 3000 && extra !== 0; round++) {
        const batch = await Promise.all([alice, bob].flatMap((c) => [c.seal(`${round} ${body}`), c.seal(`${round}.`)]));
        const senders: WireClient[] = [alice, alice, bob, bob];
        await Promise.all(batch.map((envelope, i) => senders[i].send({ type: "send", envelope })));
        for (let i = 0; i < batch.length; i++) {
          const ack = await senders[i].awaitAck(batch[i].id, { timeoutMs: 20_000 });
          assert.ok(ack.type === "ack", JSON.stringify(ack));
          acked.push({ seq: ack.seq, id: batch[i].id });
        }
        for (const nick of ["eve", "trickle"]) {
          if (!cutAt.has(nick) && new RegExp(`nick=${nick} limit=send_queue`).test(server.program.stderr)) {
            cutAt.set(nick, performance.now() - start);
          }
        }
        if (extra < 0 && cutAt.size === 2) extra = 20;
        else if (extra > 0) extra--;
        // Take what dave received so far, so the test's own memory stays small.
        dave.inbox = dave.inbox.filter((m) => m.type !== "message" || (daveGot.push(m.envelope.id), false));
      }
      assert.equal(extra, 0, `not cut off: ${["eve", "trickle"].filter((n) => !cutAt.has(n))}`);
      assert.match(server.program.stderr, /WARN\s+limit remote=\S+ nick=eve limit=send_queue bytes=\d+ behind_ms=\d+/);
      assert.match(server.program.stderr, /INFO\s+slow_reader remote=\S+ nick=eve/);
      // The others received every message, in order.
      while (daveGot.length < acked.length) {
        const m = await dave.next("message", { timeoutMs: 20_000 });
        daveGot.push(m.envelope.id);
      }
      acked.sort((x, y) => x.seq - y.seq);
      assert.deepEqual(daveGot, acked.map((a) => a.id), "dave received every acked message, in seq order");
      // Both sockets were closed by the server: eve's drains to EOF, the trickle reader's read ends.
      const buf = new Uint8Array(1 << 16);
      let drained = 0;
      const deadline = performance.now() + 15_000;
      while (performance.now() < deadline) {
        const n = await eve.read(buf).catch(() => null);
        if (n === null) break;
        drained += n;
      }
      assert.ok(performance.now() < deadline, "eve's connection was never closed");
      assert.ok(drained < acked.length * 12_000 * 1.4, `eve got ${drained} bytes: the server kept feeding her`);
      trickle.stop();
      const rssAfter = await rssKiB(pid);
      console.log(
        `  cut off after ${[...cutAt].map(([n, ms]) => `${n} ${(ms / 1000).toFixed(1)} s`).join(", ")} ` +
          `(--send-grace ${graceS}); server RSS ${Math.round(rssBefore / 1024)} -> ${
            Math.round(rssAfter / 1024)
          } MiB ` +
          `after relaying ${(acked.length * 12_000 / 2 / 1e6).toFixed(1)} MB to each reader`,
      );
      assert.ok(
        (rssAfter - rssBefore) / 1024 < 96,
        `server RSS grew by ${((rssAfter - rssBefore) / 1024).toFixed(1)} MiB`,
      );
    } finally {
      try {
        eve?.close();
      } catch {
        // closed by the server
      }
      trickle?.stop();
      await closeAll(clients);
      await server.program.stop();
      await removeServerDir(server.db);
    }
  },
});

Deno.test("one slow reader stalls neither its room nor another room", async () => {
  // A long grace, so that the slow reader stays in the room for the whole test.
  const server = await startServer({ args: ["--send-queue", "65536", "--send-grace", "60", "--rate", "0"] });
  const clients: WireClient[] = [];
  let eve: Deno.Conn | undefined;
  let flooding = true;
  try {
    const alice = await member(server.port, "alice");
    const bob = await member(server.port, "bob");
    const flooder = await member(server.port, "flooder");
    const carol = await member(server.port, "carol", "other");
    const dan = await member(server.port, "dan", "other");
    clients.push(alice, bob, flooder, carol, dan);
    eve = await silentMember(server.port, "eve", { passphrase: PASSPHRASE });
    // Big messages in eve's room until she is found slow, and on through both conversations.
    const body = "y".repeat(12_000);
    const flood = (async () => {
      let sent = 0;
      while (flooding) {
        const envelope = await flooder.seal(`${sent++} ${body}`);
        await flooder.send({ type: "send", envelope });
        const ack = await flooder.awaitAck(envelope.id, { timeoutMs: 20_000 });
        assert.equal(ack.type, "ack");
        for (const c of [alice, bob]) {
          c.inbox = c.inbox.filter((m) => m.type !== "message" || m.envelope.from !== "flooder");
        }
      }
      return sent;
    })();
    flood.catch(() => {});
    // Meanwhile both rooms talk, before, while and after eve holds the senders back and is found slow: every line
    // arrives within ARRIVAL_BOUND_MS, in order.
    const slow = () => /slow_reader remote=\S+ nick=eve/.test(server.program.stderr);
    const worst = { here: 0, there: 0 };
    const deadline = performance.now() + 60_000;
    for (let after = 0; after < 2;) {
      assert.ok(performance.now() < deadline, "eve was never found slow");
      if (slow()) after++;
      const [here, there] = await Promise.all([
        converse(alice, bob, { count: 5, intervalMs: 50 }),
        converse(carol, dan, { count: 5, intervalMs: 50 }),
      ]);
      worst.here = Math.max(worst.here, here.worstMs);
      worst.there = Math.max(worst.there, there.worstMs);
    }
    flooding = false;
    const sent = await flood;
    console.log(
      `  worst arrival ${Math.round(worst.here)} ms in eve's room, ${Math.round(worst.there)} ms in the other; ` +
        `${sent} flood messages of 12 KB`,
    );
    assert.doesNotMatch(server.program.stderr, /limit=send_queue/, "nobody was cut off (the grace is 60 s)");
  } finally {
    flooding = false;
    try {
      eve?.close();
    } catch {
      // closed by the server
    }
    await closeAll(clients);
    await server.program.stop();
    await removeServerDir(server.db);
  }
});

Deno.test("a small --max-queued holds a sender back until steady readers catch up, and nothing is lost", async () => {
  // A small outbound budget, readers that read steadily but slowly, and a short --idle-timeout.
  const server = await startServer({ args: ["--rate", "0", "--idle-timeout", "1", "--max-queued", "262144"] });
  const clients: WireClient[] = [];
  const readers: PacedReader[] = [];
  try {
    const sender = await member(server.port, "sender");
    clients.push(sender);
    for (const nick of ["r1", "r2"]) {
      readers.push(
        new PacedReader(await silentMember(server.port, nick, { passphrase: PASSPHRASE }), {
          bytes: 16384,
          everyMs: 10,
          pingEveryMs: 300,
        }),
      );
    }
    const count = 2000;
    const envelopes = await Promise.all(
      Array.from({ length: count }, (_, i) => sender.seal(`${i} ${"z".repeat(1500)}`)),
    );
    const started = performance.now();
    // All at once, without waiting for acks: the server stops reading until the readers catch up.
    await sender.writeRaw(concat(envelopes.map((envelope) => encodeMessage({ type: "send", envelope }))));
    // Then it pings as a real client does (the pings queue behind the sends until the server reads them).
    let pinging = true;
    const pinger = (async () => {
      while (pinging && !sender.closed) {
        await sender.send({ type: "ping" }).catch(() => {});
        await sleep(300);
      }
    })();
    await until(
      () => readers.every((r) => r.ids.length === count || r.closed) || sender.closed,
      () => `readers got ${readers.map((r) => r.ids.length)} of ${count}`,
    );
    const tookMs = performance.now() - started;
    pinging = false;
    await pinger;
    assert.ok(!sender.closed, `the sender was cut off: ${server.program.stderr.slice(-3000)}`);
    for (const r of readers) assert.ok(!r.closed, `a reader was cut off: ${server.program.stderr.slice(-3000)}`);
    for (const e of envelopes) {
      const ack = await sender.awaitAck(e.id, { timeoutMs: 20_000 });
      assert.equal(ack.type, "ack", JSON.stringify(ack));
    }
    for (const r of readers) assert.deepEqual(r.ids, envelopes.map((e) => e.id), "every message, in order");
    assert.match(server.program.stderr, /INFO\s+backpressure queued=\d+/, "the sender was held back");
    assert.doesNotMatch(server.program.stderr, /idle_timeout/);
    console.log(
      `  ${count} messages of 1.5 KB to 2 paced readers in ${(tookMs / 1000).toFixed(1)} s (--idle-timeout 1)`,
    );
    assert.ok(tookMs > 2000, `the readers took only ${Math.round(tookMs)} ms: the test did not hold the sender long`);
  } finally {
    for (const r of readers) r.stop();
    await closeAll(clients);
    await server.program.stop();
    await removeServerDir(server.db);
  }
});

Deno.test("a sender held back for longer than --idle-timeout is not cut off as idle", async () => {
  // The rate limit holds the sender back the way the backpressure does (its reads wait); here for seconds.
  const server = await startServer({ args: ["--rate", "0.5", "--burst", "2", "--idle-timeout", "1"] });
  const clients: WireClient[] = [];
  try {
    const sender = await member(server.port, "sender");
    const reader = await member(server.port, "reader");
    clients.push(sender, reader);
    const envelopes = await Promise.all(Array.from({ length: 3 }, (_, i) => sender.seal(`held ${i}`)));
    const started = performance.now();
    await sender.writeRaw(concat(envelopes.map((envelope) => encodeMessage({ type: "send", envelope }))));
    // Both ping as real clients do; the sender's pings wait behind its messages.
    let pinging = true;
    const pingers = [sender, reader].map(async (c) => {
      while (pinging && !c.closed) {
        await c.send({ type: "ping" }).catch(() => {});
        await sleep(200);
      }
    });
    for (const e of envelopes) {
      const ack = await sender.awaitAck(e.id, { timeoutMs: 20_000 });
      assert.equal(ack.type, "ack", `${JSON.stringify(ack)}: ${server.program.stderr.slice(-1000)}`);
    }
    const heldMs = performance.now() - started;
    pinging = false;
    await Promise.all(pingers);
    for (const e of envelopes) await reader.next("message", { where: (m) => m.envelope.id === e.id });
    assert.ok(heldMs > 3000, `the sender was held back for only ${Math.round(heldMs)} ms`);
    assert.ok(!sender.closed && !reader.closed, "nobody was cut off");
    assert.doesNotMatch(server.program.stderr, /idle_timeout/);
  } finally {
    await closeAll(clients);
    await server.program.stop();
    await removeServerDir(server.db);
  }
});
