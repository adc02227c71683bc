/**
 * A tampering server, played by a proxy between the real client (script mode) and the real server: it flips a bit
 * of relayed ciphertexts, relabels the sender or the room of relayed envelopes, or delivers a message twice. The
 * client must show one warning line naming the sender for each forged message and never its text, and must show a
 * message delivered twice only once. Untampered control messages prove the client was really listening.
 *
 * @module
 */

import assert from "node:assert/strict";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { openEnvelope, OpenError } from "../lib/crypto.ts";
import { type FrameTransform, parseBody, TcpProxy } from "./support/proxy.ts";
import { type Program, spawnTask, startServer } from "./support/programs.ts";
import { WireClient } from "./support/wire.ts";

type Relayed = { seq: number; sent_at: number; envelope: Record<string, unknown> };

const PASSPHRASE = "tamper test passphrase c0ffee";
/** alice (a raw client) makes #general with 100000 iterations: the client's floor must allow it. */
const FAST = ["--min-iterations", "100000"];
/** Applies `change` to every relayed envelope a frame carries (live messages and history items). */
function eachRelayed(change: (item: Relayed) => void): FrameTransform {
  return (body) => {
    const msg = parseBody(body);
    if (msg.type === "message") change(msg as unknown as Relayed);
    else if (msg.type === "joined") (msg.history as Relayed[]).forEach(change);
    else if (msg.type === "history" || msg.type === "since") (msg.messages as Relayed[]).forEach(change);
    else return [body];
    return [JSON.stringify(msg)];
  };
}

function flipCiphertextBit(envelope: Record<string, unknown>): void {
  const ct = Uint8Array.fromBase64(envelope.ct as string);
  const at = crypto.getRandomValues(new Uint32Array(1))[0] % (ct.length * 8);
  ct[at >> 3] ^= 1 << (at & 7);
  envelope.ct = ct.toBase64();
}

interface Scenario {
  /** The forgery, applied by the proxy to envelopes whose id is in `ids`. */
  forge?: (envelope: Record<string, unknown>) => void;
  /** Or a transform of whole frames. */
  transform?: FrameTransform;
  /** Texts alice sends before bob joins (so bob gets them as history), forged when `forged`. */
  before: { text: string; forged: boolean }[];
  /** Texts alice sends after bob joined. */
  live: { text: string; forged: boolean }[];
}

/**
 * Runs bob (the real client, script mode) behind the proxy while alice (a raw client) talks, and returns bob's
 * output once the last live message (an untampered control) was shown.
 */
async function runScenario(scenario: Scenario): Promise<{ program: Program; status: Deno.CommandStatus }> {
  const server = await startServer();
  const forgedIds = new Set<string>();
  const transform = scenario.transform ??
    eachRelayed((item) => {
      if (forgedIds.has(item.envelope.id as string)) scenario.forge!(item.envelope);
    });
  const proxy = TcpProxy.start(server.port, { transform });
  const alice = await WireClient.connect(server.port);
  let bob: Program | undefined;
  try {
    await alice.hello("alice");
    assert.equal((await alice.join("general", PASSPHRASE)).type, "joined");
    const say = async ({ text, forged }: { text: string; forged: boolean }) => {
      const envelope = await alice.seal(text);
      if (forged) forgedIds.add(envelope.id);
      await alice.send({ type: "send", envelope });
      const ack = await alice.awaitAck(envelope.id);
      assert.equal(ack.type, "ack");
    };
    for (const m of scenario.before) await say(m);
    bob = spawnTask("client", {
      args: ["--host", "127.0.0.1", "--port", String(proxy.port), "--nick", "bob", "--room", "general", ...FAST],
      env: { AESCHAT_PASSPHRASE: PASSPHRASE },
      stdin: true,
    });
    await alice.next("presence", { where: (p) => p.event === "join" && p.nick === "bob", timeoutMs: 30_000 });
    for (const m of scenario.live) await say(m);
    const last = scenario.live[scenario.live.length - 1];
    assert.ok(!last.forged, "the scenario ends with a control message");
    await bob.waitFor(() => bob!.stdout.includes(last.text), { what: "the control message", timeoutMs: 30_000 });
    await sleep(300); // anything still in flight would arrive now
    await bob.closeStdin();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const status = await Promise.race([
      bob.status,
      new Promise<never>((_, reject) =>
        timer = setTimeout(() => reject(new Error("the client did not exit at EOF")), 20_000)
      ),
    ]);
    clearTimeout(timer);
    return { program: bob, status };
  } finally {
    if (bob) await bob.stop("SIGKILL").catch(() => {});
    alice.close();
    await alice.ended;
    await proxy.close();
    await server.program.stop();
    await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
  }
}

/** Script-mode lines that show a message: `HH:MM:SS <nick> text`. */
function shownLines(stdout: string, nick: string): string[] {
  return stdout.split("\n").filter((l) => new RegExp(`^\\d\\d:\\d\\d:\\d\\d <${nick}> `).test(l));
}

const WARNING = /warn|authentic|verif|tamper|forged|cannot|could not|fail|invalid|reject/i;

function warningsNaming(stderr: string, nicks: string[]): string[] {
  return stderr.split("\n").filter((l) => WARNING.test(l) && nicks.some((n) => l.includes(n)));
}

/** Forgeries the warnings naming these nicks account for: one warning each, or one with a count for a burst. */
function forgeriesNamed(stderr: string, nicks: string[]): number {
  return warningsNaming(stderr, nicks).reduce((n, l) => n + Number(/(\d+) more messages/.exec(l)?.[1] ?? 1), 0);
}

function assertNeverShown(output: { stdout: string; stderr: string }, texts: string[]): void {
  for (const text of texts) {
    assert.ok(!output.stdout.includes(text), `a forged text was shown: ${text}`);
    assert.ok(!output.stderr.includes(text), `a forged text was printed on stderr: ${text}`);
  }
}

Deno.test({
  name: "the client warns, naming the sender, and never shows a message whose ciphertext was flipped in transit",
  fn: async () => {
    const tag = crypto.randomUUID().slice(0, 8);
    const forged = [`history secret ${tag}`, `live secret one ${tag}`, `live secret two ${tag}`];
    const { program, status } = await runScenario({
      forge: flipCiphertextBit,
      before: [{ text: forged[0], forged: true }, { text: `history control ${tag}`, forged: false }],
      live: [
        { text: forged[1], forged: true },
        { text: forged[2], forged: true },
        { text: `live control ${tag}`, forged: false },
      ],
    });
    assert.equal(status.code, 0, program.stderr);
    assertNeverShown(program, forged);
    const shown = shownLines(program.stdout, "alice");
    assert.ok(shown.some((l) => l.endsWith(`history control ${tag}`)), `history control missing:\n${program.stdout}`);
    assert.ok(shown.some((l) => l.endsWith(`live control ${tag}`)));
    assert.equal(shown.length, 2, `only the controls are shown:\n${program.stdout}`);
    assert.equal(forgeriesNamed(program.stderr, ["alice"]), 3, `every forgery accounted for:\n${program.stderr}`);
    assert.ok(warningsNaming(program.stderr, ["alice"]).length <= 2, "a burst is one warning and a count");
  },
});

Deno.test({
  name: "the client warns and never shows a message relabelled to another sender or another room",
  fn: async () => {
    const tag = crypto.randomUUID().slice(0, 8);
    const forged = [`relabelled sender ${tag}`, `relabelled room ${tag}`, `relabelled both ${tag}`];
    let n = 0;
    const { program, status } = await runScenario({
      forge: (envelope) => {
        const k = n++ % 3;
        if (k === 0 || k === 2) envelope.from = "mallory";
        if (k === 1 || k === 2) envelope.room = "elsewhere";
      },
      before: [],
      live: [
        { text: forged[0], forged: true },
        { text: forged[1], forged: true },
        { text: forged[2], forged: true },
        { text: `control ${tag}`, forged: false },
      ],
    });
    assert.equal(status.code, 0, program.stderr);
    assertNeverShown(program, forged);
    assert.deepEqual(shownLines(program.stdout, "mallory"), [], "nothing is shown as mallory's");
    assert.equal(shownLines(program.stdout, "alice").length, 1, `only the control is shown:\n${program.stdout}`);
    // The warning names the sender the message claims (the client cannot know the real one).
    assert.equal(
      forgeriesNamed(program.stderr, ["alice", "mallory"]),
      3,
      `every forgery accounted for:\n${program.stderr}`,
    );
  },
});

Deno.test({
  name: "the client shows a message delivered twice (live, and again after history) only once",
  fn: async () => {
    const tag = crypto.randomUUID().slice(0, 8);
    const texts = [`said before ${tag}`, `said once ${tag}`, `control ${tag}`];
    let replay: string | undefined;
    const { program, status } = await runScenario({
      // Every message frame twice; and the last history item again as a live message right after joined.
      transform: (body) => {
        const msg = parseBody(body);
        if (msg.type === "message") return [body, body];
        if (msg.type === "joined") {
          const history = msg.history as Relayed[];
          if (history.length > 0) {
            replay = JSON.stringify({ type: "message", ...history[history.length - 1] });
            return [body, replay];
          }
        }
        return [body];
      },
      before: [{ text: texts[0], forged: false }],
      live: [{ text: texts[1], forged: false }, { text: texts[2], forged: false }],
    });
    assert.equal(status.code, 0, program.stderr);
    assert.ok(replay, "the proxy replayed a history item");
    const shown = shownLines(program.stdout, "alice");
    for (const text of texts) {
      assert.equal(shown.filter((l) => l.endsWith(text)).length, 1, `${text} shown once:\n${program.stdout}`);
    }
    assert.equal(shown.length, 3);
    assert.equal(
      warningsNaming(program.stderr, ["alice"]).length,
      0,
      `a duplicate is not a forgery:\n${program.stderr}`,
    );
  },
});

Deno.test("the tampering proxy really forges: a raw client behind it cannot open what it altered", async () => {
  // Runs without the real client: it checks the test double itself, and that openEnvelope (what the client uses)
  // refuses every kind of forgery the double makes.
  const server = await startServer();
  const forged = new Map<string, (e: Record<string, unknown>) => void>();
  let replayed = 0;
  const proxy = TcpProxy.start(server.port, {
    transform: (body, context) => {
      const msg = parseBody(body);
      if (msg.type !== "message") return [body];
      const item = msg as unknown as Relayed;
      const forge = forged.get(item.envelope.id as string);
      if (!forge) {
        replayed++;
        return [body, body];
      }
      forge(item.envelope);
      assert.equal(context.connection, 0);
      return [JSON.stringify(msg)];
    },
  });
  const alice = await WireClient.connect(server.port);
  const bob = await WireClient.connect(proxy.port);
  try {
    await alice.hello("alice");
    await bob.hello("bob");
    assert.equal((await alice.join("general", PASSPHRASE)).type, "joined");
    assert.equal((await bob.join("general", PASSPHRASE)).type, "joined");
    const forgeries: [string, (e: Record<string, unknown>) => void][] = [
      ["flipped ciphertext bit", flipCiphertextBit],
      ["relabelled sender", (e) => e.from = "mallory"],
      ["relabelled room", (e) => e.room = "elsewhere"],
    ];
    for (const [label, forge] of forgeries) {
      const envelope = await alice.seal(label);
      forged.set(envelope.id, forge);
      await alice.send({ type: "send", envelope });
      const m = await bob.next("message", { where: (m) => m.envelope.id === envelope.id });
      assert.notDeepEqual(m.envelope, envelope, `${label}: the proxy changed the envelope`);
      await assert.rejects(
        openEnvelope(bob.keys!, { envelope: m.envelope, room: "general", from: m.envelope.from }),
        OpenError,
        label,
      );
    }
    const control = await alice.seal("control");
    await alice.send({ type: "send", envelope: control });
    const first = await bob.next("message", { where: (m) => m.envelope.id === control.id });
    const second = await bob.next("message", { where: (m) => m.envelope.id === control.id });
    assert.deepEqual(first, second, "the duplicate is byte for byte the same message");
    const opened = await openEnvelope(bob.keys!, { envelope: first.envelope, room: "general", from: "alice" });
    assert.equal(opened.plaintext.body, "control");
    assert.equal(replayed, 1);
  } finally {
    alice.close();
    bob.close();
    await Promise.all([alice.ended, bob.ended]);
    await proxy.close();
    await server.program.stop();
    await Deno.remove(dirname(server.db), { recursive: true }).catch(() => {});
  }
});
