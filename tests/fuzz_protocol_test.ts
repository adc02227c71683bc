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
import { Hub } from "../lib/server/hub.ts";
import { Logger } from "../lib/server/log.ts";
import { Store } from "../lib/server/store.ts";
import { describeBytes, fuzzCount, fuzzSeed, hostileBody, randomJsonText, randomString, Rng } from "./support/fuzz.ts";
import { deliver, type HubClient, joinHub, openHubClient } from "./support/hub_peer.ts";

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
  hello: { version: ["uint", "required"], nonce: ["string", "required"] },
  login: {
    nick: ["string", "required"],
    key: ["string", "required"],
    kx: ["string", "required"],
    kx_sig: ["string", "required"],
    signature: ["string", "required"],
    rotation: ["object", "optional"],
  },
  join: { room: ["string", "required"] },
  prove: {
    room: ["string", "required"],
    proof: ["string", "required"],
    salt: ["string", "optional"],
    iterations: ["uint", "optional"],
    access_pub: ["string", "optional"],
  },
  part: { room: ["string", "required"] },
  send: { envelope: ["object", "required"] },
  who: { room: ["string", "required"] },
  rooms: {},
  nick: { new: ["string", "required"] },
  history: { room: ["string", "required"], before_seq: ["uint", "required"], limit: ["uint", "optional"] },
  since: { room: ["string", "required"], after_seq: ["uint", "required"], limit: ["uint", "optional"] },
  lookup: { nick: ["string", "required"] },
  direct: { to: ["string", "required"], envelope: ["object", "required"], copy: ["object", "required"] },
  direct_since: { after_seq: ["uint", "required"], limit: ["uint", "optional"] },
  ping: { data: ["string", "optional"] },
  pong: { data: ["string", "optional"] },
  bye: { reason: ["string", "optional"] },
};

const SERVER_TABLE: Table = {
  server: {
    server: ["string", "required"],
    server_version: ["string", "required"],
    version: ["uint", "required"],
    key: ["string", "required"],
    nonce: ["string", "required"],
    signature: ["string", "required"],
  },
  welcome: {
    nick: ["string", "required"],
    registered: ["boolean", "required"],
    limits: ["object", "required"],
    direct_seq: ["uint", "required"],
  },
  challenge: {
    room: ["string", "required"],
    nonce: ["string", "required"],
    salt: ["string", "optional"],
    iterations: ["uint", "optional"],
    access_pub: ["string", "optional"],
    epoch: ["uint", "optional"],
  },
  joined: {
    room: ["string", "required"],
    epoch: ["uint", "required"],
    members: ["array", "required"],
    history: ["array", "required"],
    latest_seq: ["uint", "required"],
  },
  parted: { room: ["string", "required"] },
  ack: { id: ["string", "required"], seq: ["uint", "required"] },
  message: { seq: ["uint", "required"], sent_at: ["uint", "required"], envelope: ["object", "required"] },
  presence: {
    event: ["string", "required"],
    room: ["string", "required"],
    nick: ["string", "required"],
    key: ["string", "required"],
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
    pruned_through: ["uint", "required"],
  },
  identity: {
    nick: ["string", "required"],
    key: ["string", "required"],
    kx: ["string", "required"],
    kx_sig: ["string", "required"],
    rotations: ["array", "required"],
  },
  direct: {
    seq: ["uint", "required"],
    sent_at: ["uint", "required"],
    envelope: ["object", "required"],
    delivered: ["boolean", "required"],
  },
  direct_since: { after_seq: ["uint", "required"], messages: ["array", "required"], more: ["boolean", "required"] },
  delivered: { id: ["string", "required"] },
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

function isTs(value: unknown): boolean {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= Number.MAX_SAFE_INTEGER;
}

/**
 * The envelope rules: exactly eight fields, v among `versions` (a client sends 2; history may hold 1), NFC names,
 * integer ts, canonical base64 of the right lengths.
 */
function envelopeIsValid(value: unknown, versions: number[]): boolean {
  if (!isObject(value)) return false;
  const keys = Object.keys(value).sort();
  if (keys.join(",") !== "ct,from,id,iv,room,tag,ts,v") return false;
  const ct = canonicalLength(value.ct);
  return versions.includes(value.v as number) && goodName(value.room, 64) && goodName(value.from, 32) &&
    typeof value.ts === "number" && Number.isInteger(value.ts) && value.ts >= 0 &&
    value.ts <= Number.MAX_SAFE_INTEGER && canonicalLength(value.id) === 16 && canonicalLength(value.iv) === 16 &&
    canonicalLength(value.tag) === 32 && ct > 0 && ct % 16 === 0 && ct <= MAX_CT_BYTES;
}

/** The direct envelope rules: exactly eleven fields, v 2, NFC names, integer ts, canonical base64 lengths. */
function directIsValid(value: unknown): boolean {
  if (!isObject(value)) return false;
  const keys = Object.keys(value).sort();
  if (keys.join(",") !== "ct,epk,from,id,key,kx,nonce,to,tokey,ts,v") return false;
  const ct = canonicalLength(value.ct);
  return value.v === 2 && goodName(value.from, 32) && goodName(value.to, 32) && isTs(value.ts) &&
    canonicalLength(value.id) === 16 && ["key", "tokey", "kx", "epk"].every((k) => canonicalLength(value[k]) === 32) &&
    canonicalLength(value.nonce) === 12 && ct > 16 && ct <= MAX_CT_BYTES;
}

/** The id a refusal echoes: only an envelope's id that is canonical base64 of 16 bytes. */
function echoedId(envelope: unknown): string | undefined {
  const id = isObject(envelope) ? envelope.id : undefined;
  return canonicalLength(id) === 16 ? id as string : undefined;
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
  if (options.side === "client" && type === "hello" && fits(value.version, "uint") && value.version !== 2) {
    return { ok: false, code: "version_unsupported", fatal: true };
  }
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
  // ping/pong data and bye reason: at most 64 UTF-16 code units.
  for (const token of ["data", "reason"]) {
    const v = value[token];
    if (options.side === "client" && typeof v === "string" && v.length > 64) {
      return { ok: false, code: "bad_message", fatal: true };
    }
  }
  if (options.side === "client" && type === "send" && !envelopeIsValid(value.envelope, [2])) {
    return { ok: false, code: "bad_envelope", fatal: false, id: echoedId(value.envelope) };
  }
  if (options.side === "client" && type === "direct" && !(directIsValid(value.envelope) && directIsValid(value.copy))) {
    return { ok: false, code: "bad_direct", fatal: false, id: echoedId(value.envelope) };
  }
  if (options.side === "client" && type === "login" && value.rotation !== undefined) {
    const r = value.rotation as Record<string, unknown>;
    const shape = Object.keys(r).sort().join(",") === "old,signature,ts" && typeof r.old === "string" &&
      typeof r.signature === "string" && fits(r.ts, "uint");
    if (!shape) return { ok: false, code: "bad_message", fatal: true };
  }
  return { ok: true, value };
}

/** What one relayed item (a history entry or a message) must turn into. */
function expectedRelayed(item: unknown): "ok" | "ProtocolError" | "EnvelopeError" {
  if (!isObject(item) || !fits(item.seq, "uint") || !fits(item.sent_at, "uint")) return "ProtocolError";
  return envelopeIsValid(item.envelope, [1, 2]) ? "ok" : "EnvelopeError";
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
  for (const code of ["valid", "bad_frame", "bad_json", "bad_message", "bad_envelope", "bad_direct"]) {
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
  max_rooms: 20,
};

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

/** Logs in and joins; the peer's inbox is emptied. */
async function member(hub: Hub, options: { nick: string; room: string; passphrase: string }): Promise<HubClient> {
  const { client, reply } = await openHubClient(hub, options.nick);
  assert.equal(reply.type, "welcome", JSON.stringify(reply));
  const joined = await joinHub(hub, client, options.room, options.passphrase);
  assert.equal(joined.type, "joined", `${options.nick} did not join ${options.room}: ${JSON.stringify(joined)}`);
  client.peer.drain();
  return client;
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
  `hub refuses envelopes for rooms it is not in or from another nick (${HUB_SENDS} seeded sends), stores each id once`,
  withHub(async (hub) => {
    const seed = fuzzSeed();
    const rng = new Rng(seed, 14);
    const alice = await member(hub, { nick: "alice", room: "general", passphrase: "correct horse" });
    const bob = await member(hub, { nick: "bob", room: "general", passphrase: "correct horse" });
    const carol = await member(hub, { nick: "carol", room: "ops", passphrase: "another passphrase" });
    alice.peer.drain();
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
          v: 2,
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
        if (room !== "general") outcome = "not_in_room";
        else if (from !== "alice") outcome = "sender_mismatch";
        else if (stored.has(id)) outcome = "duplicate_id";
        else {
          outcome = "ack";
          stored.add(id);
          storedOrder.push(id);
        }
        if (outcome === "not_in_room" || outcome === "sender_mismatch") refused.push(id);
        expected.set(id, [...(expected.get(id) ?? []), outcome]);
        const result = hub.handle(alice.member, msg);
        assert.equal(result, undefined, "send must be handled synchronously");
      }
      await tick();
      const got = new Map<string, string[]>();
      for (const f of alice.peer.drain()) {
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
    const relayed = bob.peer.drain().filter((f) => f.type === "message").map((f) =>
      (f as Extract<ServerMessage, { type: "message" }>).envelope.id
    );
    assert.deepEqual(relayed, storedOrder, `AESCHAT_FUZZ_SEED=${seed}: what bob received`);
    assert.deepEqual(carol.peer.drain(), [], `AESCHAT_FUZZ_SEED=${seed}: carol received something of another room`);
    let all: string[] = [];
    let after = 0;
    for (let page = 0; page < 1000; page++) {
      await hub.handle(alice.member, { type: "since", room: "general", after_seq: after, limit: 500 });
      const reply = alice.peer.drain().find((f) => f.type === "since") as Extract<ServerMessage, { type: "since" }>;
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
    const alice = await member(hub, { nick: "alice", room: "general", passphrase: "correct horse" });
    const bob = await member(hub, { nick: "bob", room: "general", passphrase: "correct horse" });
    // Frames an outsider may ever see.
    const allowed = new Set(["challenge", "rooms", "nick", "pong", "error", "bye", "identity", "direct_since"]);
    const count = fuzzCount(INTRUDER_MESSAGES);
    let intruder: HubClient | undefined;
    let n = 0;
    let intruders = 0;
    let chatted = 0;
    for (let i = 0; i < count; i++) {
      if (!intruder || intruder.peer.closed !== undefined) {
        const opened = await openHubClient(hub, `mallory${n++}`);
        assert.equal(opened.reply.type, "welcome");
        intruder = opened.client;
        intruder.peer.drain();
        intruders++;
      }
      const room = rng.pick(["general", "ops", "General", "GENERAL", "gеneral", /* Cyrillic е */ randomString(rng)]);
      const r = rng.int(18);
      const msgs: unknown[] = [
        { type: "hello", version: rng.pick([1, 2, 2, 0]), nonce: rng.bytes(32).toBase64() },
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
        { type: "who", room },
        { type: "rooms" },
        {
          type: "history",
          room,
          before_seq: rng.pick([0, 1, 2 ** 53 - 1]),
          limit: rng.pick([0, 1, 500, 2 ** 53 - 1]),
        },
        { type: "since", room, after_seq: rng.pick([0, 2 ** 53 - 1]) },
        { type: "since", room, after_seq: 0, limit: rng.pick([0, 500, 2 ** 40]) },
        { type: "part", room },
        { type: "nick", new: rng.pick(["bob", "alice", "ALICE", "аlice", "x y", intruder.nick + "_", "\u200b"]) },
        { type: "lookup", nick: rng.pick(["alice", "bob", "nobody"]) },
        { type: "direct_since", after_seq: 0 },
        { type: "ping", data: randomString(rng) },
        { type: "pong" },
        {
          type: "send",
          envelope: {
            v: 2,
            room: rng.pick(["general", room]),
            from: rng.pick([intruder.nick, "alice"]),
            id: rng.bytes(16).toBase64(),
            ts: 1,
            iv: rng.bytes(16).toBase64(),
            ct: rng.bytes(16).toBase64(),
            tag: rng.bytes(32).toBase64(),
          },
        },
        {
          type: "login",
          nick: "alice",
          key: rng.bytes(32).toBase64(),
          kx: rng.bytes(32).toBase64(),
          kx_sig: rng.bytes(64).toBase64(),
          signature: rng.bytes(64).toBase64(),
        },
        { type: "bye" },
      ];
      try {
        await deliver(hub, intruder.member, msgs[r] as object);
      } catch (err) {
        if (err instanceof ProtocolError) continue;
        assert.fail(
          `AESCHAT_FUZZ_SEED=${seed}, input ${i}: hub.handle threw ${String(err)} for ${JSON.stringify(msgs[r])}`,
        );
      }
      // Meanwhile the room talks.
      if (rng.chance(0.3)) {
        hub.handle(alice.member, {
          type: "send",
          envelope: {
            v: 2,
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
      for (const f of intruder.peer.drain()) {
        assert.ok(
          allowed.has(f.type),
          `AESCHAT_FUZZ_SEED=${seed}, input ${i}: an intruder received ${JSON.stringify(f)}`,
        );
        if (f.type === "error") assert.ok(Object.hasOwn(ERROR_CODES, f.code), `unknown code ${f.code}`);
        if (f.type === "rooms") assert.deepEqual(f.rooms, [], "rooms lists only the rooms this connection is in");
        if (f.type === "nick") {
          assert.notEqual(f.new.normalize("NFKC").toLowerCase(), "alice", "an intruder took alice's nick");
        }
      }
    }
    await tick();
    const received = bob.peer.drain().filter((f) => f.type === "message").length;
    assert.equal(received, chatted, `AESCHAT_FUZZ_SEED=${seed}: bob must receive every message alice sent meanwhile`);
    assert.ok(intruders > 1, "intruders were disconnected and replaced at least once");
  }),
);
