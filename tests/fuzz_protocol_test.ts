/**
 * Fuzzes the protocol parsers and the hub with seeded hostile input. Each parser is compared with a second
 * implementation written here from the wire rules (field tables, envelope rules), so a body must not only end in a
 * typed error or a message, but in the right error code or exactly the right message. The hub is driven with fake
 * peers: envelopes whose room or from do not match are refused with room_mismatch / sender_mismatch and never
 * stored or relayed, and a member that never proved a room receives nothing of it whatever it sends.
 *
 * Replay a failure with AESCHAT_FUZZ_SEED=<seed>; scale the run with AESCHAT_FUZZ_SCALE.
 *
 * @module
 */

import assert from "node:assert/strict";
import { deriveRoomKeys, makeSalt, type RoomKeys, signJoinProof } from "../lib/crypto.ts";
import { EnvelopeError, MAX_CT_BYTES, parseEnvelope } from "../lib/envelope.ts";
import { FrameError } from "../lib/frame.ts";
import {
  ERROR_CODES,
  parseClientMessage,
  parseRelayedMessage,
  parseServerMessage,
  ProtocolError,
  type ServerLimits,
  type ServerMessage,
} from "../lib/protocol.ts";
import { Hub, type Member, type Peer } from "../lib/server/hub.ts";
import { Logger } from "../lib/server/log.ts";
import { Store } from "../lib/server/store.ts";
import { describeBytes, fuzzCount, fuzzSeed, hostileBody, randomJsonText, randomString, Rng } from "./support/fuzz.ts";

/** Client bodies parsed per run. */
const CLIENT_BODIES = 70_000;
/** Server bodies parsed per run. */
const SERVER_BODIES = 30_000;
/** Envelopes sent through the hub per run. */
const HUB_SENDS = 8_000;
/** Messages from intruders who never prove a room, per run. */
const INTRUDER_MESSAGES = 3_000;

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

// ---------------------------------------------------------------------------------------------------------------
// The second implementation: the wire rules, restated as tables.

type Want = "string" | "uint" | "object" | "array" | "boolean";
type Table = Record<string, Record<string, [Want, "required" | "optional"]>>;

const CLIENT_TABLE: Table = {
  hello: { version: ["uint", "required"], nick: ["string", "required"] },
  join: { room: ["string", "required"] },
  prove: {
    room: ["string", "required"],
    proof: ["string", "required"],
    salt: ["string", "optional"],
    iterations: ["uint", "optional"],
    access_pub: ["string", "optional"],
  },
  send: { envelope: ["object", "required"] },
  who: {},
  rooms: {},
  nick: { new: ["string", "required"] },
  history: { before_seq: ["uint", "required"], limit: ["uint", "optional"] },
  since: { after_seq: ["uint", "required"], limit: ["uint", "optional"] },
  ping: { data: ["string", "optional"] },
  pong: { data: ["string", "optional"] },
  bye: { reason: ["string", "optional"] },
};

const SERVER_TABLE: Table = {
  welcome: {
    server: ["string", "required"],
    version: ["uint", "required"],
    nick: ["string", "required"],
    limits: ["object", "required"],
  },
  challenge: {
    room: ["string", "required"],
    nonce: ["string", "required"],
    salt: ["string", "optional"],
    iterations: ["uint", "optional"],
  },
  joined: {
    room: ["string", "required"],
    members: ["array", "required"],
    history: ["array", "required"],
    latest_seq: ["uint", "required"],
  },
  ack: { id: ["string", "required"], seq: ["uint", "required"] },
  message: { seq: ["uint", "required"], sent_at: ["uint", "required"], envelope: ["object", "required"] },
  presence: {
    event: ["string", "required"],
    room: ["string", "required"],
    nick: ["string", "required"],
    old: ["string", "optional"],
  },
  who: { room: ["string", "required"], members: ["array", "required"] },
  rooms: { rooms: ["array", "required"] },
  nick: { old: ["string", "required"], new: ["string", "required"] },
  history: {
    room: ["string", "required"],
    before_seq: ["uint", "required"],
    messages: ["array", "required"],
    more: ["boolean", "required"],
  },
  since: {
    room: ["string", "required"],
    after_seq: ["uint", "required"],
    messages: ["array", "required"],
    more: ["boolean", "required"],
  },
  ping: { data: ["string", "optional"] },
  pong: { data: ["string", "optional"] },
  bye: { reason: ["string", "required"], message: ["string", "optional"] },
  error: {
    code: ["string", "required"],
    message: ["string", "required"],
    id: ["string", "optional"],
    retry_after_ms: ["uint", "optional"],
  },
};

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function fits(value: unknown, want: Want): boolean {
  switch (want) {
    case "string":
      return typeof value === "string";
    case "uint":
      return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= Number.MAX_SAFE_INTEGER;
    case "object":
      return isObject(value);
    case "array":
      return Array.isArray(value);
    case "boolean":
      return value === true || value === false;
  }
}

/** Canonical base64 by round trip: the only spelling that decodes and re-encodes to itself. */
function canonicalLength(text: unknown): number {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return -1;
  try {
    const bytes = Uint8Array.fromBase64(text);
    return bytes.toBase64() === text ? bytes.length : -1;
  } catch {
    return -1;
  }
}

function goodName(value: unknown, maxBytes: number): boolean {
  if (typeof value !== "string" || value.length === 0 || !value.isWellFormed()) return false;
  return encoder.encode(value).length <= maxBytes && value.normalize("NFC") === value;
}

/** The envelope rules: exactly eight fields, v 1, NFC names, integer ts, canonical base64 of the right lengths. */
function envelopeIsValid(value: unknown): boolean {
  if (!isObject(value)) return false;
  const keys = Object.keys(value).sort();
  if (keys.join(",") !== "ct,from,id,iv,room,tag,ts,v") return false;
  const ct = canonicalLength(value.ct);
  return value.v === 1 && goodName(value.room, 64) && goodName(value.from, 32) &&
    typeof value.ts === "number" && Number.isInteger(value.ts) && value.ts >= 0 &&
    value.ts <= Number.MAX_SAFE_INTEGER && canonicalLength(value.id) === 16 && canonicalLength(value.iv) === 16 &&
    canonicalLength(value.tag) === 32 && ct > 0 && ct % 16 === 0 && ct <= MAX_CT_BYTES;
}

/**
 * The duplicate-member rule, restated: the text is cut into string and punctuation tokens by a regular expression,
 * and the names of each object are collected after unescaping (JSON.parse keeps the last of two equal names).
 */
function hasDuplicateMember(text: string): boolean {
  const tokens = text.match(/"[^"\\]*(?:\\.[^"\\]*)*"|[{}[\],]/g) ?? [];
  const open: (Set<string> | undefined)[] = [];
  let previous = "";
  for (const token of tokens) {
    if (token === "{") open.push(new Set());
    else if (token === "[") open.push(undefined);
    else if (token === "}" || token === "]") open.pop();
    else if (token.startsWith('"') && (previous === "{" || previous === ",") && open.at(-1) !== undefined) {
      const names = open.at(-1)!;
      const name = JSON.parse(token) as string;
      if (names.has(name)) return true;
      names.add(name);
    }
    previous = token;
  }
  return false;
}

type Outcome = { ok: true; value: Record<string, unknown> } | { ok: false; code: string; fatal: boolean; id?: string };

/** What a body must turn into, by the wire rules. */
function expectedOutcome(body: Uint8Array, options: { side: "client" | "server" }): Outcome {
  let text: string;
  try {
    text = strictDecoder.decode(body);
  } catch {
    return { ok: false, code: "bad_frame", fatal: true };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, code: "bad_json", fatal: true };
  }
  if (!isObject(value)) return { ok: false, code: "bad_json", fatal: true };
  if (options.side === "client" && hasDuplicateMember(text)) return { ok: false, code: "bad_message", fatal: true };
  const table = options.side === "client" ? CLIENT_TABLE : SERVER_TABLE;
  const type = value.type;
  if (typeof type !== "string" || !Object.hasOwn(table, type)) return { ok: false, code: "bad_message", fatal: true };
  const fields = table[type];
  for (const key of Object.keys(value)) {
    if (key !== "type" && !Object.hasOwn(fields, key) && options.side === "client") {
      return { ok: false, code: "bad_message", fatal: true };
    }
  }
  for (const [key, [want, presence]] of Object.entries(fields)) {
    if (!Object.hasOwn(value, key)) {
      if (presence === "required") return { ok: false, code: "bad_message", fatal: true };
      continue;
    }
    if (!fits(value[key], want)) return { ok: false, code: "bad_message", fatal: true };
  }
  if (options.side === "client" && type === "send" && !envelopeIsValid(value.envelope)) {
    const id = (value.envelope as Record<string, unknown>).id;
    return {
      ok: false,
      code: "bad_envelope",
      fatal: false,
      id: typeof id === "string" && id.length <= 64 ? id : undefined,
    };
  }
  return { ok: true, value };
}

/** What one relayed item (a history entry or a message) must turn into. */
function expectedRelayed(item: unknown): "ok" | "ProtocolError" | "EnvelopeError" {
  if (!isObject(item) || !fits(item.seq, "uint") || !fits(item.sent_at, "uint")) return "ProtocolError";
  return envelopeIsValid(item.envelope) ? "ok" : "EnvelopeError";
}

// ---------------------------------------------------------------------------------------------------------------

function failInput(seed: number, i: number, kind: string, body: Uint8Array, problem: string): never {
  assert.fail(`AESCHAT_FUZZ_SEED=${seed}, input ${i} (${kind}): ${problem}\n  ${describeBytes(body)}`);
}

Deno.test(`parseClientMessage agrees with the wire rules on ${CLIENT_BODIES} seeded hostile bodies`, () => {
  const seed = fuzzSeed();
  const rng = new Rng(seed, 11);
  const count = fuzzCount(CLIENT_BODIES);
  const seen = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const { body, kind } = hostileBody(rng, { side: "client" });
    const want = expectedOutcome(body, { side: "client" });
    let got: Outcome;
    try {
      const msg = parseClientMessage(body);
      got = { ok: true, value: msg as unknown as Record<string, unknown> };
    } catch (err) {
      if (!(err instanceof ProtocolError)) failInput(seed, i, kind, body, `untyped exception ${String(err)}`);
      if (!Object.hasOwn(ERROR_CODES, err.code)) failInput(seed, i, kind, body, `unknown code ${err.code}`);
      got = { ok: false, code: err.code, fatal: err.fatal, id: err.id };
    }
    if (want.ok !== got.ok) {
      failInput(seed, i, kind, body, `expected ${JSON.stringify(want).slice(0, 200)}, got ${JSON.stringify(got)}`);
    }
    if (want.ok && got.ok) {
      try {
        assert.deepEqual(got.value, want.value);
      } catch {
        failInput(seed, i, kind, body, "the parsed message differs from the body");
      }
    } else if (!want.ok && !got.ok) {
      if (want.code !== got.code || want.fatal !== got.fatal || want.id !== got.id) {
        failInput(seed, i, kind, body, `expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
      }
    }
    const label = got.ok ? "valid" : got.code;
    seen.set(label, (seen.get(label) ?? 0) + 1);
  }
  // Every outcome must be reached often, or the generator has gone blind somewhere.
  for (const code of ["valid", "bad_frame", "bad_json", "bad_message", "bad_envelope"]) {
    assert.ok(
      (seen.get(code) ?? 0) > count / 100,
      `AESCHAT_FUZZ_SEED=${seed}: only ${seen.get(code) ?? 0} bodies ended in ${code}`,
    );
  }
});

Deno.test(`parseServerMessage and parseRelayedMessage agree with the wire rules on ${SERVER_BODIES} bodies`, () => {
  const seed = fuzzSeed();
  const rng = new Rng(seed, 12);
  const count = fuzzCount(SERVER_BODIES);
  let relayedChecked = 0;
  for (let i = 0; i < count; i++) {
    const { body, kind } = hostileBody(rng, { side: "server" });
    const want = expectedOutcome(body, { side: "server" });
    let msg: ServerMessage | undefined;
    try {
      msg = parseServerMessage(body);
    } catch (err) {
      if (!(err instanceof ProtocolError)) failInput(seed, i, kind, body, `untyped exception ${String(err)}`);
      if (want.ok || want.code !== err.code) {
        failInput(seed, i, kind, body, `expected ${JSON.stringify(want).slice(0, 200)}, got ${err.code}`);
      }
      continue;
    }
    if (!want.ok) failInput(seed, i, kind, body, `expected ${want.code}, got a ${msg.type} message`);
    // A client checks the nested values it uses: every relayed item ends typed too.
    const items: unknown[] = msg.type === "message"
      ? [msg]
      : msg.type === "joined"
      ? msg.history
      : msg.type === "history" || msg.type === "since"
      ? msg.messages
      : [];
    for (const item of items) {
      const expected = expectedRelayed(item);
      let got: string;
      try {
        const relayed = parseRelayedMessage(item);
        got = "ok";
        assert.equal(relayed.envelope, (item as Record<string, unknown>).envelope);
      } catch (err) {
        if (!(err instanceof ProtocolError) && !(err instanceof EnvelopeError)) {
          failInput(seed, i, kind, body, `untyped exception from parseRelayedMessage: ${String(err)}`);
        }
        got = err.name;
      }
      if (got !== expected) failInput(seed, i, kind, body, `relayed item: expected ${expected}, got ${got}`);
      relayedChecked++;
    }
  }
  assert.ok(relayedChecked > count / 10, `AESCHAT_FUZZ_SEED=${seed}: only ${relayedChecked} relayed items checked`);
});

Deno.test("parsers refuse a deeply nested type with a typed error, not a stack overflow", () => {
  // Found by this fuzzer: JSON.stringify of a 10000-deep value with a key beyond Latin-1 overflows the stack.
  for (const key of ["a", "\u00e9", "\u2ee3", "\ud83d\ude00", "\ud800"]) {
    for (const inner of ["[".repeat(10000) + "]".repeat(10000), '{"a":'.repeat(10000) + "0" + "}".repeat(10000)]) {
      const body = encoder.encode(`{"type":{${JSON.stringify(key)}:${inner}}}`);
      assert.ok(body.length <= 65536, "the body fits in one default frame");
      for (const parse of [parseClientMessage, parseServerMessage]) {
        assert.throws(
          () => parse(body),
          (err: unknown) => err instanceof ProtocolError && err.code === "bad_message",
          `${parse.name} with key ${JSON.stringify(key)}`,
        );
      }
    }
  }
});

Deno.test("parseEnvelope and parseRelayedMessage end in typed errors for every JSON value", () => {
  const seed = fuzzSeed();
  const rng = new Rng(seed, 13);
  const count = fuzzCount(5_000);
  for (let i = 0; i < count; i++) {
    const text = randomJsonText(rng, 3);
    const value = JSON.parse(text);
    for (const fn of [parseEnvelope, parseRelayedMessage]) {
      try {
        fn(value);
        assert.fail(`AESCHAT_FUZZ_SEED=${seed}, input ${i}: ${fn.name} accepted ${text.slice(0, 200)}`);
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
        assert.ok(
          err instanceof EnvelopeError || err instanceof ProtocolError,
          `AESCHAT_FUZZ_SEED=${seed}, input ${i}: ${fn.name} threw ${String(err)} for ${text.slice(0, 200)}`,
        );
      }
    }
  }
  // FrameError is the reader's own type; it must never leak out of a parser.
  assert.ok(!(new ProtocolError("bad_frame", "x") instanceof FrameError));
});

// ---------------------------------------------------------------------------------------------------------------
// The hub, with fake peers.

const LIMITS: ServerLimits = {
  max_frame: 65536,
  max_body: 16384,
  history: 50,
  history_page: 500,
  rate: 0,
  burst: 1,
  send_queue: 1 << 20,
  idle_timeout_ms: 60_000,
};

/** A peer that parses and keeps every frame the hub sends it. */
class FakePeer implements Peer {
  frames: ServerMessage[] = [];
  closed: string | undefined;
  onClose: (() => void) | undefined;

  send(frame: Uint8Array): void {
    const length = new DataView(frame.buffer, frame.byteOffset).getUint32(0);
    assert.equal(length, frame.length - 4, "the hub sent a frame whose header does not match its body");
    this.frames.push(parseServerMessage(frame.subarray(4)));
  }

  close(reason: string): void {
    if (this.closed !== undefined) return;
    this.closed = reason;
    this.onClose?.();
  }

  take(): ServerMessage[] {
    const out = this.frames;
    this.frames = [];
    return out;
  }
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

async function joinHub(
  hub: Hub,
  options: { nick: string; room: string; passphrase: string },
): Promise<{ member: Member; peer: FakePeer; keys: RoomKeys }> {
  const peer = new FakePeer();
  const member = hub.attach(peer, `fake:${options.nick}`);
  peer.onClose = () => hub.detach(member);
  await hub.handle(member, { type: "hello", version: 1, nick: options.nick });
  await hub.handle(member, { type: "join", room: options.room });
  const challenge = peer.frames.find((f) => f.type === "challenge") as Extract<ServerMessage, { type: "challenge" }>;
  assert.ok(challenge, `no challenge for ${options.nick}: ${JSON.stringify(peer.frames)}`);
  const nonce = Uint8Array.fromBase64(challenge.nonce);
  const salt = challenge.salt ? Uint8Array.fromBase64(challenge.salt) : makeSalt();
  const iterations = challenge.iterations ?? 100_000;
  const keys = await deriveRoomKeys(options.passphrase, { salt, iterations });
  const proof = (await signJoinProof(keys, { nonce, room: options.room, nick: options.nick })).toBase64();
  await hub.handle(
    member,
    challenge.salt ? { type: "prove", room: options.room, proof } : {
      type: "prove",
      room: options.room,
      proof,
      salt: salt.toBase64(),
      iterations,
      access_pub: keys.accessPub.toBase64(),
    },
  );
  const joined = peer.frames.find((f) => f.type === "joined");
  assert.ok(joined, `${options.nick} did not join ${options.room}: ${JSON.stringify(peer.frames)}`);
  peer.take();
  return { member, peer, keys };
}

function withHub(fn: (hub: Hub, store: Store) => Promise<void>): () => Promise<void> {
  return async () => {
    const store = Store.open(":memory:");
    const hub = new Hub(store, { limits: LIMITS, version: "test", log: new Logger() });
    try {
      await fn(hub, store);
    } finally {
      await tick();
      store.close();
    }
  };
}

Deno.test(
  `hub refuses envelopes whose room or from do not match (${HUB_SENDS} seeded sends) and stores each id once`,
  withHub(async (hub) => {
    const seed = fuzzSeed();
    const rng = new Rng(seed, 14);
    const alice = await joinHub(hub, { nick: "alice", room: "general", passphrase: "correct horse" });
    const bob = await joinHub(hub, { nick: "bob", room: "general", passphrase: "correct horse" });
    const carol = await joinHub(hub, { nick: "carol", room: "ops", passphrase: "another passphrase" });
    alice.peer.take();
    const stored = new Set<string>();
    const storedOrder: string[] = [];
    const refused: string[] = [];
    const count = fuzzCount(HUB_SENDS);
    let sent = 0;
    while (sent < count) {
      // One batch per event-loop turn, as a busy connection delivers them.
      const expected = new Map<string, string[]>();
      const batch = rng.range(1, 60);
      for (let k = 0; k < batch && sent < count; k++, sent++) {
        const room = rng.chance(0.6) ? "general" : rng.pick(["ops", "General", "general2", "GENERAL", "café"]);
        const from = rng.chance(0.6) ? "alice" : rng.pick(["bob", "Alice", "carol", "ALICE", "alice2", "mallory"]);
        const r = rng.float();
        const id = r < 0.8 || stored.size === 0
          ? rng.bytes(16).toBase64()
          : r < 0.9
          ? rng.pick([...stored].slice(-50))
          : refused.length > 0
          ? rng.pick(refused.slice(-50))
          : rng.bytes(16).toBase64();
        const envelope = {
          v: 1,
          room,
          from,
          id,
          ts: Date.now(),
          iv: rng.bytes(16).toBase64(),
          ct: rng.bytes(32).toBase64(),
          tag: rng.bytes(32).toBase64(),
        };
        const body = encoder.encode(JSON.stringify({ type: "send", envelope }));
        const msg = parseClientMessage(body);
        let outcome: string;
        if (room !== "general") outcome = "room_mismatch";
        else if (from !== "alice") outcome = "sender_mismatch";
        else if (stored.has(id)) outcome = "duplicate_id";
        else {
          outcome = "ack";
          stored.add(id);
          storedOrder.push(id);
        }
        if (outcome === "room_mismatch" || outcome === "sender_mismatch") refused.push(id);
        expected.set(id, [...(expected.get(id) ?? []), outcome]);
        const result = hub.handle(alice.member, msg);
        assert.equal(result, undefined, "send must be handled synchronously");
      }
      await tick();
      const got = new Map<string, string[]>();
      for (const f of alice.peer.take()) {
        if (f.type === "ack") got.set(f.id, [...(got.get(f.id) ?? []), "ack"]);
        else if (f.type === "error") got.set(f.id ?? "?", [...(got.get(f.id ?? "?") ?? []), f.code]);
        else assert.fail(`AESCHAT_FUZZ_SEED=${seed}: alice got an unexpected ${f.type}`);
      }
      for (const [id, outcomes] of expected) {
        assert.deepEqual(
          (got.get(id) ?? []).sort(),
          outcomes.sort(),
          `AESCHAT_FUZZ_SEED=${seed}: answers for id ${id} after ${sent} sends`,
        );
      }
      assert.equal(got.size, expected.size, `AESCHAT_FUZZ_SEED=${seed}: answers for ids never sent`);
    }
    // Bob receives exactly the accepted envelopes, in order; carol, in another room, nothing.
    const relayed = bob.peer.take().filter((f) => f.type === "message").map((f) =>
      (f as Extract<ServerMessage, { type: "message" }>).envelope.id
    );
    assert.deepEqual(relayed, storedOrder, `AESCHAT_FUZZ_SEED=${seed}: what bob received`);
    assert.deepEqual(carol.peer.take(), [], `AESCHAT_FUZZ_SEED=${seed}: carol received something of another room`);
    await hub.handle(alice.member, { type: "since", after_seq: 0, limit: 500 });
    let all: string[] = [];
    let after = 0;
    for (let page = 0; page < 1000; page++) {
      await hub.handle(alice.member, { type: "since", after_seq: after, limit: 500 });
      const reply = alice.peer.take().find((f) => f.type === "since") as Extract<ServerMessage, { type: "since" }>;
      all = all.concat(reply.messages.map((m) => m.envelope.id));
      if (!reply.more) break;
      after = reply.messages[reply.messages.length - 1].seq;
    }
    assert.deepEqual(all, storedOrder, `AESCHAT_FUZZ_SEED=${seed}: the stored log`);
  }),
);

Deno.test(
  `hub gives a member that never proved a room nothing of it (${INTRUDER_MESSAGES} seeded intruder messages)`,
  withHub(async (hub) => {
    const seed = fuzzSeed();
    const rng = new Rng(seed, 15);
    const alice = await joinHub(hub, { nick: "alice", room: "general", passphrase: "correct horse" });
    const bob = await joinHub(hub, { nick: "bob", room: "general", passphrase: "correct horse" });
    // Frames an outsider may ever see.
    const allowed = new Set(["welcome", "challenge", "rooms", "nick", "pong", "error", "bye"]);
    const count = fuzzCount(INTRUDER_MESSAGES);
    let intruder: { member: Member; peer: FakePeer; nick: string } | undefined;
    let n = 0;
    let intruders = 0;
    let chatted = 0;
    for (let i = 0; i < count; i++) {
      if (!intruder || intruder.peer.closed !== undefined) {
        const peer = new FakePeer();
        const member = hub.attach(peer, `fake:intruder${n}`);
        peer.onClose = () => hub.detach(member);
        intruder = { member, peer, nick: `mallory${n++}` };
        intruders++;
      }
      const room = rng.pick(["general", "ops", "General", randomString(rng)]);
      const r = rng.int(14);
      const msgs: unknown[] = [
        { type: "hello", version: rng.pick([1, 1, 1, 2, 0]), nick: rng.chance(0.8) ? intruder.nick : "alice" },
        { type: "join", room },
        {
          type: "prove",
          room: rng.chance(0.7) ? "general" : room,
          proof: rng.chance(0.8) ? rng.bytes(64).toBase64() : randomString(rng),
        },
        {
          type: "prove",
          room,
          proof: rng.bytes(64).toBase64(),
          salt: rng.bytes(16).toBase64(),
          iterations: rng.pick([100_000, 1, 2 ** 53 - 1]),
          access_pub: rng.bytes(32).toBase64(),
        },
        { type: "who" },
        { type: "rooms" },
        { type: "history", before_seq: rng.pick([0, 1, 2 ** 53 - 1]), limit: rng.pick([0, 1, 500, 2 ** 53 - 1]) },
        { type: "since", after_seq: rng.pick([0, 2 ** 53 - 1]) },
        { type: "since", after_seq: 0, limit: rng.pick([0, 500, 2 ** 40]) },
        { type: "nick", new: rng.pick(["bob", "alice", "x y", intruder.nick + "_", "\u200b"]) },
        { type: "ping", data: randomString(rng) },
        { type: "pong" },
        {
          type: "send",
          envelope: {
            v: 1,
            room: "general",
            from: intruder.nick,
            id: rng.bytes(16).toBase64(),
            ts: 1,
            iv: rng.bytes(16).toBase64(),
            ct: rng.bytes(16).toBase64(),
            tag: rng.bytes(32).toBase64(),
          },
        },
        { type: "bye" },
      ];
      let msg;
      try {
        msg = parseClientMessage(encoder.encode(JSON.stringify(msgs[r])));
      } catch (err) {
        assert.ok(err instanceof ProtocolError, `AESCHAT_FUZZ_SEED=${seed}: ${String(err)}`);
        continue;
      }
      try {
        await hub.handle(intruder.member, msg);
      } catch (err) {
        assert.fail(
          `AESCHAT_FUZZ_SEED=${seed}, input ${i}: hub.handle threw ${String(err)} for ${JSON.stringify(msgs[r])}`,
        );
      }
      // Meanwhile the room talks.
      if (rng.chance(0.3)) {
        hub.handle(alice.member, {
          type: "send",
          envelope: {
            v: 1,
            room: "general",
            from: "alice",
            id: rng.bytes(16).toBase64(),
            ts: 1,
            iv: rng.bytes(16).toBase64(),
            ct: rng.bytes(16).toBase64(),
            tag: rng.bytes(32).toBase64(),
          },
        });
        chatted++;
      }
      if (rng.chance(0.1)) await tick();
      for (const f of intruder.peer.take()) {
        assert.ok(
          allowed.has(f.type),
          `AESCHAT_FUZZ_SEED=${seed}, input ${i}: an intruder received ${JSON.stringify(f)}`,
        );
        if (f.type === "error") assert.ok(Object.hasOwn(ERROR_CODES, f.code), `unknown code ${f.code}`);
        if (f.type === "rooms") {
          // The room list is public by design, but carries names and counts only.
          for (const room of f.rooms) assert.deepEqual(Object.keys(room).sort(), ["members", "name"]);
        }
      }
    }
    await tick();
    const received = bob.peer.take().filter((f) => f.type === "message").length;
    assert.equal(received, chatted, `AESCHAT_FUZZ_SEED=${seed}: bob must receive every message alice sent meanwhile`);
    assert.ok(intruders > 1, "intruders were disconnected and replaced at least once");
    alice.peer.take();
  }),
);
