/**
 * Faults against the real server process: connections that hang (a half-sent frame, a byte at a time, no hello)
 * are closed after --idle-timeout or --handshake-timeout with that error code, and the server is killed with
 * SIGKILL in the middle of a burst from several clients: every acknowledged message survives, decryptable and in
 * order, and every unacknowledged one is resent under its id and stored exactly once.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { setTimeout as sleep } from "node:timers/promises";
import { openEnvelope } from "../lib/crypto.ts";
import type { Envelope } from "../lib/envelope.ts";
import type { ServerMessageOf as Msg } from "../lib/protocol.ts";
import { type ServerProcess, startServer } from "./support/programs.ts";
import { closeAll, WireClient } from "./support/wire.ts";

const PASSPHRASE = "faults test passphrase 91be";

const member = (port: number, nick: string) => WireClient.member(port, nick, { passphrase: PASSPHRASE });

/** Waits for the connection to end; returns how long it took, or throws after `timeoutMs`. */
async function closedWithin(client: WireClient, timeoutMs: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ok = await Promise.race([
    client.ended.then(() => true),
    new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), timeoutMs)),
  ]);
  clearTimeout(timer);
  assert.ok(ok, `the server did not close the connection within ${timeoutMs} ms`);
}

function errorCodes(client: WireClient): string[] {
  return client.inbox.filter((m) => m.type === "error").map((m) => (m as Msg<"error">).code);
}

Deno.test("hanging connections are closed after --handshake-timeout or --idle-timeout with that error", async () => {
  const server = await startServer({ args: ["--handshake-timeout", "0.5", "--idle-timeout", "2"] });
  const clients: WireClient[] = [];
  const open = async () => {
    const c = await WireClient.connect(server.port);
    clients.push(c);
    return c;
  };
  try {
    const start = performance.now();
    // 1. Connects and says nothing.
    const silent = await open();
    // 2. Sends half a frame before hello.
    const halfBeforeHello = await open();
    await halfBeforeHello.writeRaw(Uint8Array.from([0, 0, 0, 40, 0x7b, 0x22]));
    // 3. Says hello, then leaves half a frame hanging.
    const halfAfterHello = await open();
    await halfAfterHello.hello("half");
    await halfAfterHello.writeRaw(Uint8Array.from([0, 0, 0, 100, ...new TextEncoder().encode('{"type":"p')]));
    // 4. Says hello, then trickles a frame one byte every 200 ms and never finishes it (slowloris).
    const trickle = await open();
    await trickle.hello("trickle");
    // 5. Says hello, then pings every 250 ms: alive, so it must stay.
    const pinger = await open();
    await pinger.hello("pinger");
    const trickling = (async () => {
      const bytes = [0, 0, 1, 0, ...new TextEncoder().encode('{"type":"ping","data":"')];
      for (const b of bytes) {
        if (trickle.closed) break;
        await trickle.writeRaw(Uint8Array.of(b)).catch(() => {});
        await sleep(200);
      }
    })();
    const pinging = (async () => {
      for (let i = 0; i < 12; i++) {
        await pinger.send({ type: "ping", data: String(i) });
        await sleep(250);
      }
    })();

    await closedWithin(silent, 10_000);
    await closedWithin(halfBeforeHello, 10_000);
    const handshakeMs = performance.now() - start;
    await closedWithin(halfAfterHello, 10_000);
    await closedWithin(trickle, 10_000);
    await trickling;
    const idleMs = performance.now() - start;
    await pinging;
    assert.deepEqual(errorCodes(silent), ["handshake_timeout"]);
    assert.deepEqual(errorCodes(halfBeforeHello), ["handshake_timeout"]);
    assert.deepEqual(errorCodes(halfAfterHello), ["idle_timeout"]);
    assert.deepEqual(errorCodes(trickle), ["idle_timeout"], "bytes that never complete a frame do not count");
    for (const [c, code] of [[silent, "handshake_timeout"], [halfAfterHello, "idle_timeout"]] as const) {
      const bye = c.inbox.find((m) => m.type === "bye") as Msg<"bye"> | undefined;
      assert.equal(bye?.reason, code, "the error is followed by bye with the same reason");
    }
    // The timeouts did not fire early (the limits are 0.5 s and 2 s; there is no upper bound on a busy machine).
    assert.ok(handshakeMs >= 450, `handshake timeout after ${Math.round(handshakeMs)} ms`);
    assert.ok(idleMs >= 1950, `idle timeout after ${Math.round(idleMs)} ms`);
    assert.ok(!pinger.closed, "a client that keeps sending complete frames is not idle");
    assert.equal(pinger.inbox.filter((m) => m.type === "pong").length, 12);
    assert.match(server.program.stderr, /refused .*code=handshake_timeout/);
    assert.match(server.program.stderr, /refused .*nick=trickle code=idle_timeout/);
  } finally {
    await closeAll(clients);
    await server.program.stop();
    await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Durability.

/** A client that remembers what it sent and what was acknowledged, as a real client must. */
class BurstClient {
  readonly nick: string;
  client: WireClient | undefined;
  /** Every envelope sent, in order, with its text. */
  readonly sent: { envelope: Envelope; text: string }[] = [];
  /** Acknowledged ids and their seq. */
  readonly acked = new Map<string, number>();
  /** Resends refused as already stored. */
  duplicates = 0;
  #counter = 0;

  constructor(nick: string) {
    this.nick = nick;
  }

  async connect(port: number): Promise<void> {
    this.client = await member(port, this.nick);
  }

  /** Moves every ack in the inbox into `acked`. */
  collect(): void {
    const c = this.client!;
    c.inbox = c.inbox.filter((m) => {
      if (m.type !== "ack") return true;
      this.acked.set(m.id, m.seq);
      return false;
    });
  }

  /**
   * Takes duplicate_id answers to resends: those envelopes were stored before a crash whose ack never arrived.
   * They count as acknowledged (seq unknown, marked -1).
   */
  takeDuplicates(): void {
    const c = this.client!;
    c.inbox = c.inbox.filter((m) => {
      if (m.type !== "error" || m.code !== "duplicate_id") return true;
      this.acked.set(m.id!, -1);
      this.duplicates++;
      return false;
    });
  }

  get unacked(): { envelope: Envelope; text: string }[] {
    return this.sent.filter((s) => !this.acked.has(s.envelope.id));
  }

  /** Sends until `stop()` says so or the connection dies, with at most `window` messages unacknowledged. */
  async burst(options: { window: number; stop: () => boolean }): Promise<void> {
    const c = this.client!;
    while (!options.stop() && !c.closed) {
      this.collect();
      if (this.sent.length - this.acked.size >= options.window) {
        await sleep(1);
        continue;
      }
      const text = `${this.nick} #${this.#counter++} ${crypto.randomUUID()}`;
      const envelope = await c.seal(text);
      // Recorded before it is written: a client cannot know whether a write reached the server.
      this.sent.push({ envelope, text });
      try {
        await c.send({ type: "send", envelope });
      } catch {
        break;
      }
    }
    this.collect();
  }
}

function storedRows(db: string): { seq: number; room: string; sender: string; id: string; envelope: string }[] {
  const conn = new DatabaseSync(db, { readOnly: true });
  try {
    const rows = conn.prepare("SELECT seq, room, sender, msg_id, envelope FROM messages ORDER BY seq").all() as {
      seq: number;
      room: string;
      sender: string;
      msg_id: Uint8Array;
      envelope: string;
    }[];
    return rows.map((r) => ({
      seq: Number(r.seq),
      room: r.room,
      sender: r.sender,
      id: new Uint8Array(r.msg_id).toBase64(),
      envelope: r.envelope,
    }));
  } finally {
    conn.close();
  }
}

Deno.test("after SIGKILL mid-burst every acked message survives in order, and resent ones are stored once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "aeschat-kill-" });
  const db = `${dir}/aeschat.db`;
  const senders = ["alice", "bob", "carol"].map((nick) => new BurstClient(nick));
  let server: ServerProcess | undefined;
  const figures = { kills: 0, checked: new Set<string>(), resent: 0 };
  try {
    for (let cycle = 0; cycle < 2; cycle++) {
      server = await startServer({ db, args: ["--rate", "0"] });
      for (const s of senders) await s.connect(server.port);
      // Resend what was never acknowledged, under the same ids: stored once, or refused as already stored.
      for (const s of senders) {
        for (const { envelope } of s.unacked) {
          await s.client!.send({ type: "send", envelope });
          figures.resent++;
        }
      }
      // Then a burst from all three, killed in the middle.
      const target = 150 * (cycle + 1);
      const ackedTotal = () => senders.reduce((n, s) => n + s.acked.size, 0);
      let killed = false;
      const bursts = senders.map((s) => s.burst({ window: 16, stop: () => killed }));
      const deadline = performance.now() + 60_000;
      while (ackedTotal() < target) {
        for (const s of senders) s.collect();
        assert.ok(performance.now() < deadline, "the burst stalled before the kill");
        await sleep(2);
      }
      server.program.child.kill("SIGKILL");
      figures.kills++;
      const status = await server.program.status;
      killed = true;
      assert.equal(status.signal, "SIGKILL");
      await Promise.all(bursts);
      for (const s of senders) {
        s.collect();
        s.takeDuplicates();
        const others = s.client!.inbox.filter((m) => m.type === "error");
        assert.deepEqual(others, [], `${s.nick} got errors during the burst`);
        s.client!.close();
        await s.client!.ended;
      }
      assert.ok(senders.every((s) => s.unacked.length > 0 || s.acked.size > 0));

      // The database after the crash, read by a fresh process's view: every acked message is there.
      const rows = storedRows(db);
      const byId = new Map(rows.map((r) => [r.id, r]));
      assert.equal(byId.size, rows.length, "no id is stored twice");
      for (let i = 1; i < rows.length; i++) assert.ok(rows[i].seq > rows[i - 1].seq);
      for (const s of senders) {
        const keys = s.client!.keys!;
        let lastSeq = 0;
        for (const { envelope, text } of s.sent) {
          const seq = s.acked.get(envelope.id);
          if (seq === undefined) continue;
          const row = byId.get(envelope.id);
          assert.ok(row, `${s.nick}: acked message seq ${seq} is missing after the crash`);
          if (seq !== -1) {
            assert.equal(row.seq, seq, "stored under the seq that was acked");
            assert.ok(seq > lastSeq, `${s.nick}: acked messages are stored in the order they were sent`);
            lastSeq = seq;
          }
          const opened = await openEnvelope(keys, { envelope: JSON.parse(row.envelope), room: "general" });
          assert.equal(opened.plaintext.body, text);
          assert.equal(opened.from, s.nick);
          figures.checked.add(envelope.id);
        }
      }
      server = undefined;
    }

    // A last restart: resend everything still unacknowledged, then nothing is missing and nothing doubled.
    server = await startServer({ db, args: ["--rate", "0"] });
    for (const s of senders) {
      await s.connect(server.port);
      for (const { envelope } of s.unacked) {
        await s.client!.send({ type: "send", envelope });
        figures.resent++;
      }
    }
    for (const s of senders) {
      const deadline = performance.now() + 20_000;
      while (s.unacked.length > 0) {
        s.collect();
        s.takeDuplicates();
        assert.ok(performance.now() < deadline, `${s.nick}: ${s.unacked.length} resends never answered`);
        await sleep(5);
      }
    }
    // A client catching up with since sees them all, in seq order, decryptable.
    const reader = senders[0].client!;
    let after = 0;
    const seen: number[] = [];
    for (let page = 0; page < 100; page++) {
      await reader.send({ type: "since", room: "general", after_seq: after, limit: 500 });
      const reply = await reader.next("since");
      for (const m of reply.messages) {
        seen.push(m.seq);
        await openEnvelope(reader.keys!, { envelope: m.envelope, room: "general" });
      }
      if (!reply.more) break;
      after = reply.messages[reply.messages.length - 1].seq;
    }
    // The database, once the server has let go of it: every message sent is stored exactly once.
    await server.program.stop();
    const rows = storedRows(db);
    const sentIds = senders.flatMap((s) => s.sent.map((x) => x.envelope.id)).sort();
    assert.deepEqual(rows.map((r) => r.id).sort(), sentIds, "every message sent is stored exactly once");
    assert.deepEqual(seen, rows.map((r) => r.seq));
    console.log(
      `  ${figures.kills} SIGKILLs, ${figures.checked.size} acked messages checked after the crashes, ${figures.resent} ` +
        `resent (${
          senders.reduce((n, s) => n + s.duplicates, 0)
        } already stored, refused as duplicates), ${rows.length} stored, 0 lost`,
    );
  } finally {
    await closeAll(senders.map((s) => s.client));
    if (server) await server.program.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
