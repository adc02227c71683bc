/**
 * The long soak, run by hand with `deno task soak` (not part of `deno task test`): chat clients talk in several
 * rooms for minutes while abusers hammer the same server (garbage, clients that stop reading, flooders, silent
 * connections) and the server is killed with SIGKILL and restarted now and then. Clients behave like real ones:
 * they reconnect, catch up with `since` and resend what was never acknowledged. At the end nothing acknowledged is
 * missing, nothing is stored twice, every client has seen every message of its room, and server memory stayed
 * bounded.
 *
 * Parameters (environment): AESCHAT_SOAK_SECONDS (default 120), AESCHAT_SOAK_CLIENTS (default 6),
 * AESCHAT_SOAK_KILL_EVERY seconds between SIGKILLs (default 30, 0 = never), AESCHAT_FUZZ_SEED (abuse inputs),
 * AESCHAT_SOAK_RSS_MIB the RSS bound (default 256).
 *
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { setTimeout as sleep } from "node:timers/promises";
import { openEnvelope } from "../../lib/crypto.ts";
import type { Envelope } from "../../lib/envelope.ts";
import { fuzzSeed, hostileBody, Rng } from "../support/fuzz.ts";
import { type ServerProcess, startServer } from "../support/programs.ts";
import { silentMember, WireClient } from "../support/wire.ts";

function envNumber(name: string, fallback: number): number {
  const text = Deno.env.get(name);
  const n = text === undefined || text === "" ? fallback : Number(text);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got ${text}`);
  return n;
}

const SECONDS = envNumber("AESCHAT_SOAK_SECONDS", 120);
const CLIENTS = envNumber("AESCHAT_SOAK_CLIENTS", 6);
const KILL_EVERY = envNumber("AESCHAT_SOAK_KILL_EVERY", 30);
const RSS_BOUND_MIB = envNumber("AESCHAT_SOAK_RSS_MIB", 256);
const ROOMS = ["general", "ops", "random"];
const SERVER_ARGS = [
  "--send-queue",
  "262144",
  "--handshake-timeout",
  "2",
  "--idle-timeout",
  "6",
  "--rate",
  "50",
  "--burst",
  "50",
  "--history",
  "20",
];

function passphraseOf(room: string): string {
  return `soak passphrase for ${room}`;
}

/** Where the server currently listens; replaced after each restart. */
interface ServerHandle {
  current: ServerProcess | undefined;
  restarts: number;
}

/** A chat client that behaves like the real one: reconnects, catches up, resends. */
class SoakClient {
  readonly nick: string;
  readonly room: string;
  readonly rng: Rng;
  conn: WireClient | undefined;
  /** Every envelope this client sent, by id. */
  readonly sent = new Map<string, { envelope: Envelope; text: string }>();
  /** Ids acknowledged (seq, or -1 when a resend was refused as already stored). */
  readonly acked = new Map<string, number>();
  /** Every message of the room seen after the first join (own acks included), by seq. */
  readonly seen = new Map<number, string>();
  /** latest_seq at the first join: everything after it must be seen. */
  firstSeq = -1;
  lastSeq = 0;
  reconnects = 0;
  errors: string[] = [];

  constructor(nick: string, options: { room: string; rng: Rng }) {
    this.nick = nick;
    this.room = options.room;
    this.rng = options.rng;
  }

  async connect(port: number): Promise<void> {
    const conn = await WireClient.connect(port);
    this.conn = conn;
    await conn.hello(this.nick);
    const joined = await conn.join(this.room, passphraseOf(this.room));
    if (joined.type !== "joined") throw new Error(`${this.nick}: join failed: ${JSON.stringify(joined)}`);
    if (this.firstSeq < 0) {
      this.firstSeq = joined.latest_seq;
      this.lastSeq = joined.latest_seq;
    }
    for (const m of joined.history) this.#see(m.seq, m.envelope.id);
    // Catch up on everything missed while away.
    for (let page = 0; page < 1000; page++) {
      await conn.send({ type: "since", after_seq: this.lastSeq, limit: 500 });
      const reply = await conn.next("since", { timeoutMs: 20_000 });
      for (const m of reply.messages) this.#see(m.seq, m.envelope.id);
      if (!reply.more) break;
    }
    // Resend what was never acknowledged, under the same ids.
    for (const [id, { envelope }] of this.sent) {
      if (!this.acked.has(id)) await conn.send({ type: "send", envelope });
    }
  }

  #see(seq: number, id: string): void {
    if (seq > this.firstSeq) this.seen.set(seq, id);
    this.lastSeq = Math.max(this.lastSeq, seq);
  }

  /** Takes everything the server sent so far. */
  drain(): void {
    const conn = this.conn;
    if (!conn) return;
    const inbox = conn.inbox;
    conn.inbox = [];
    for (const m of inbox) {
      if (m.type === "ack") {
        this.acked.set(m.id, m.seq);
        this.#see(m.seq, m.id);
      } else if (m.type === "message") {
        this.#see(m.seq, m.envelope.id);
      } else if (m.type === "error") {
        if (m.code === "duplicate_id" && m.id) this.acked.set(m.id, -1);
        else if (m.code !== "rate_limited") this.errors.push(m.code);
      }
    }
  }

  /** Talks until `until`, reconnecting whenever the connection is lost. */
  async run(server: ServerHandle, until: number): Promise<void> {
    let counter = 0;
    let lastPing = performance.now();
    while (performance.now() < until) {
      if (!this.conn || this.conn.closed) {
        this.drain();
        const port = server.current?.port;
        if (port === undefined) {
          await sleep(100);
          continue;
        }
        try {
          this.conn?.close();
          await this.connect(port);
          this.reconnects++;
        } catch {
          this.conn?.close();
          this.conn = undefined;
          await sleep(100 + this.rng.int(400));
        }
        continue;
      }
      this.drain();
      const unacked = this.sent.size - this.acked.size;
      if (unacked < 20) {
        const text = `${this.nick} ${counter++} ${"·".repeat(this.rng.int(this.rng.chance(0.05) ? 8000 : 200))}`;
        const envelope = await this.conn.seal(text);
        this.sent.set(envelope.id, { envelope, text });
        await this.conn.send({ type: "send", envelope }).catch(() => {});
      }
      if (performance.now() - lastPing > 2000) {
        lastPing = performance.now();
        await this.conn.send({ type: "ping" }).catch(() => {});
      }
      await sleep(20 + this.rng.int(200));
    }
  }

  /** After the run: reconnects once more, resends until every envelope is answered, and catches up. */
  async settle(port: number): Promise<void> {
    this.drain();
    this.conn?.close();
    await this.conn?.ended;
    await this.connect(port);
    const deadline = performance.now() + 60_000;
    while (this.acked.size < this.sent.size) {
      this.drain();
      assert.ok(performance.now() < deadline, `${this.nick}: ${this.sent.size - this.acked.size} never acknowledged`);
      await sleep(20);
    }
    await this.conn!.send({ type: "since", after_seq: this.lastSeq, limit: 500 });
    await sleep(200);
    this.drain();
  }
}

/** Abuses the server until `until`; returns counts per kind. */
async function abuse(server: ServerHandle, options: { until: number; rng: Rng }): Promise<Map<string, number>> {
  const { rng } = options;
  const counts = new Map<string, number>();
  const open: Deno.Conn[] = [];
  let n = 0;
  while (performance.now() < options.until) {
    const port = server.current?.port;
    if (port === undefined) {
      await sleep(100);
      continue;
    }
    const kind = rng.pick(["garbage", "garbage", "garbage", "silent_reader", "flooder", "idle"]);
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
    try {
      if (kind === "garbage") {
        const c = await WireClient.connect(port);
        if (rng.chance(0.5)) await c.hello(`garbage${n++}`);
        for (let i = 0; i < 20 && !c.closed; i++) {
          const { body } = hostileBody(rng, { side: "client" });
          const frame = new Uint8Array(4 + body.length);
          new DataView(frame.buffer).setUint32(0, body.length);
          frame.set(body, 4);
          await c.writeRaw(rng.chance(0.1) ? rng.bytes(rng.int(64)) : frame).catch(() => {});
        }
        c.close();
        await c.ended;
      } else if (kind === "silent_reader") {
        open.push(await silentMember(port, `silent${n++}`, { passphrase: passphraseOf("general") }));
      } else if (kind === "flooder") {
        const c = await WireClient.connect(port);
        await c.hello(`flooder${n++}`);
        const joined = await c.join("flood", "flood passphrase");
        if (joined.type === "joined") {
          const envelopes = await Promise.all(Array.from({ length: 200 }, (_, i) => c.seal(`flood ${i}`)));
          for (const envelope of envelopes) await c.send({ type: "send", envelope }).catch(() => {});
        }
        await sleep(1000);
        c.close();
        await c.ended;
      } else {
        open.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      }
    } catch {
      // the server was killed under us, or cut the abuser off: both are expected
    }
    while (open.length > 20) {
      try {
        open.shift()!.close();
      } catch {
        // closed by the server
      }
    }
    await sleep(100 + rng.int(400));
  }
  for (const c of open) {
    try {
      c.close();
    } catch {
      // closed by the server
    }
  }
  return counts;
}

async function rssKiB(pid: number): Promise<number> {
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/status`], stdout: "piped", stderr: "null" })
    .output();
  const match = /VmRSS:\s+(\d+) kB/.exec(new TextDecoder().decode(out.stdout));
  return match ? Number(match[1]) : 0;
}

Deno.test({
  name: `soak: ${CLIENTS} clients for ${SECONDS} s with abusers and a SIGKILL every ${KILL_EVERY || "never"} s`,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const seed = fuzzSeed();
    const dir = await Deno.makeTempDir({ prefix: "aeschat-soak-" });
    const db = `${dir}/aeschat.db`;
    const server: ServerHandle = { current: undefined, restarts: 0 };
    const clients = Array.from(
      { length: CLIENTS },
      (_, i) => new SoakClient(`soaker${i}`, { room: ROOMS[i % ROOMS.length], rng: new Rng(seed, 100 + i) }),
    );
    let rssMax = 0;
    let rssFirst = 0;
    try {
      server.current = await startServer({ db, args: SERVER_ARGS });
      const start = performance.now();
      const until = start + SECONDS * 1000;
      const chatting = clients.map((c) => c.run(server, until));
      const abusing = abuse(server, { until, rng: new Rng(seed, 98) });
      const killing = (async () => {
        let nextKill = start + KILL_EVERY * 1000;
        while (performance.now() < until) {
          const s = server.current;
          if (s) {
            const rss = await rssKiB(s.program.child.pid);
            if (rssFirst === 0 && performance.now() - start > 5000) rssFirst = rss;
            rssMax = Math.max(rssMax, rss);
          }
          if (KILL_EVERY > 0 && performance.now() >= nextKill && performance.now() < until - 5000) {
            nextKill += KILL_EVERY * 1000;
            server.current = undefined;
            s!.program.child.kill("SIGKILL");
            await s!.program.status;
            server.current = await startServer({ db, args: SERVER_ARGS });
            server.restarts++;
          }
          await sleep(1000);
        }
      })();
      const [, abuses] = await Promise.all([Promise.all(chatting), abusing, killing]);
      for (const c of clients) await c.settle(server.current!.port);

      // Verification against the database, which the server holds exclusively while it runs.
      await server.current!.program.stop();
      const conn = new DatabaseSync(db, { readOnly: true });
      const rows = conn.prepare("SELECT seq, room, msg_id, envelope FROM messages ORDER BY seq").all() as {
        seq: number;
        room: string;
        msg_id: Uint8Array;
        envelope: string;
      }[];
      conn.close();
      const stored = new Map<string, { seq: number; room: string; envelope: string }>();
      for (const r of rows) {
        const id = `${r.room}/${new Uint8Array(r.msg_id).toBase64()}`;
        assert.ok(!stored.has(id), `stored twice: ${id}`);
        stored.set(id, { seq: Number(r.seq), room: r.room, envelope: r.envelope });
      }
      let sent = 0;
      let checked = 0;
      for (const c of clients) {
        const keys = c.conn!.keys!;
        for (const [id, { text }] of c.sent) {
          sent++;
          const row = stored.get(`${c.room}/${id}`);
          assert.ok(row, `${c.nick}: message lost: ${text.slice(0, 40)}`);
          const ackSeq = c.acked.get(id);
          if (ackSeq !== undefined && ackSeq >= 0) assert.equal(row.seq, ackSeq);
          const opened = await openEnvelope(keys, { envelope: JSON.parse(row.envelope), room: c.room });
          assert.equal(opened.plaintext.body, text);
          checked++;
        }
        // Everything stored in its room after its first join, it has seen (live, from history, or via since).
        for (const r of rows) {
          if (r.room !== c.room || Number(r.seq) <= c.firstSeq) continue;
          assert.equal(c.seen.get(Number(r.seq)), new Uint8Array(r.msg_id).toBase64(), `${c.nick} missed ${r.seq}`);
        }
        assert.deepEqual(c.errors, [], `${c.nick} got errors`);
      }
      const rssMiB = rssMax / 1024;
      console.log(
        [
          `  seed ${seed}; ${Math.round((performance.now() - start) / 1000)} s; ${server.restarts} SIGKILL restarts`,
          `  ${sent} messages sent by ${CLIENTS} clients, ${checked} checked (stored once, decryptable), 0 lost`,
          `  reconnects: ${clients.reduce((n, c) => n + c.reconnects, 0) - CLIENTS}; abusers: ${
            JSON.stringify(Object.fromEntries(abuses))
          }`,
          `  server RSS: ${Math.round(rssFirst / 1024)} MiB after 5 s, at most ${Math.round(rssMiB)} MiB`,
        ].join("\n"),
      );
      assert.ok(rssMiB < RSS_BOUND_MIB, `server RSS reached ${rssMiB.toFixed(0)} MiB`);
    } finally {
      for (const c of clients) c.conn?.close();
      await server.current?.program.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
