/**
 * Parsing untrusted frame bodies into protocol messages: one valid example of every type in each direction, and the
 * typed error (code, fatal, id) for each way a message can be wrong.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  ERROR_CODES,
  HISTORY_PAGE,
  parseClientMessage,
  parseRelayedMessage,
  parseServerMessage,
  PROTOCOL_VERSION,
  ProtocolError,
} from "../lib/protocol.ts";
import { EnvelopeError, serializeEnvelope } from "../lib/envelope.ts";

const encoder = new TextEncoder();

function body(value: unknown): Uint8Array {
  return encoder.encode(typeof value === "string" ? value : JSON.stringify(value));
}

const EXAMPLE = JSON.parse(await Deno.readTextFile(new URL("./fixtures/v2_example.json", import.meta.url)));
/** The worked example's room envelope (version 2). */
const ENVELOPE = JSON.parse(EXAMPLE.envelope);
/** The worked example's direct message and its copy. */
const DM = JSON.parse(EXAMPLE.dm_envelope);
const DM_COPY = JSON.parse(EXAMPLE.dm_copy);

const B64_16 = new Uint8Array(16).fill(1).toBase64();
const B64_32 = new Uint8Array(32).fill(2).toBase64();
const B64_64 = new Uint8Array(64).fill(3).toBase64();

/** One valid message of every client type (and the optional fields of each). */
const CLIENT_EXAMPLES: object[] = [
  { type: "hello", version: 2, nonce: B64_32 },
  { type: "login", nick: "alice", key: B64_32, kx: B64_32, kx_sig: B64_64, signature: B64_64 },
  {
    type: "login",
    nick: "alice",
    key: B64_32,
    kx: B64_32,
    kx_sig: B64_64,
    signature: B64_64,
    rotation: { old: B64_32, ts: 1700000002000, signature: B64_64 },
  },
  { type: "join", room: "general" },
  { type: "prove", room: "general", proof: B64_64 },
  { type: "prove", room: "new", proof: B64_64, salt: B64_16, iterations: 100000, access_pub: B64_32 },
  { type: "part", room: "general" },
  { type: "send", envelope: ENVELOPE },
  { type: "who", room: "general" },
  { type: "rooms" },
  { type: "nick", new: "bob" },
  { type: "history", room: "general", before_seq: 100, limit: 50 },
  { type: "history", room: "general", before_seq: 100 },
  { type: "since", room: "general", after_seq: 0 },
  { type: "since", room: "general", after_seq: 7, limit: 20 },
  { type: "lookup", nick: "bob" },
  { type: "direct", to: "bob", envelope: DM, copy: DM_COPY },
  { type: "direct_since", after_seq: 0 },
  { type: "direct_since", after_seq: 3, limit: 10 },
  { type: "ping" },
  { type: "ping", data: "123" },
  { type: "pong" },
  { type: "pong", data: "123" },
  { type: "bye" },
  { type: "bye", reason: "done" },
];

const LIMITS = {
  max_frame: 65536,
  max_body: 16384,
  history: 50,
  history_page: 500,
  rate: 20,
  burst: 40,
  send_queue: 1048576,
  idle_timeout_ms: 120000,
  max_rooms: 20,
};
const RELAYED = { seq: 3, sent_at: 1700000000001, envelope: ENVELOPE };
const DIRECT_ITEM = { seq: 2, sent_at: 1700000000002, envelope: DM, delivered: false };
const MEMBER = { nick: "alice", key: B64_32 };

/** One valid message of every server type. */
const SERVER_EXAMPLES: object[] = [
  {
    type: "server",
    server: "aeschat",
    server_version: "0.1.0",
    version: 2,
    key: B64_32,
    nonce: B64_32,
    signature: B64_64,
  },
  { type: "welcome", nick: "alice", registered: true, limits: LIMITS, direct_seq: 0 },
  { type: "challenge", room: "general", nonce: B64_32 },
  {
    type: "challenge",
    room: "general",
    nonce: B64_32,
    salt: B64_16,
    iterations: 600000,
    access_pub: B64_32,
    epoch: 0,
  },
  { type: "joined", room: "general", epoch: 0, members: [MEMBER], history: [RELAYED], latest_seq: 3 },
  { type: "parted", room: "general" },
  { type: "ack", id: ENVELOPE.id, seq: 4 },
  { type: "message", ...RELAYED },
  { type: "presence", event: "join", room: "general", nick: "bob", key: B64_32 },
  { type: "presence", event: "nick", room: "general", nick: "bobby", key: B64_32, old: "bob" },
  { type: "who", room: "general", members: [MEMBER, { nick: "bob", key: B64_32 }] },
  { type: "rooms", rooms: [{ name: "general", count: 2 }] },
  { type: "nick", old: "bob", new: "bobby" },
  { type: "history", room: "general", before_seq: 10, messages: [RELAYED], more: false },
  { type: "since", room: "general", after_seq: 0, messages: [], more: true, pruned_through: 0 },
  {
    type: "identity",
    nick: "bob",
    key: B64_32,
    kx: B64_32,
    kx_sig: B64_64,
    rotations: [{ old: B64_32, new: B64_32, ts: 5, signature: B64_64 }],
  },
  { type: "direct", ...DIRECT_ITEM },
  { type: "direct_since", after_seq: 0, messages: [DIRECT_ITEM], more: false },
  { type: "delivered", id: DM.id },
  { type: "ping" },
  { type: "pong", data: "x" },
  { type: "bye", reason: "quit" },
  { type: "bye", reason: "shutting_down", message: "the server is shutting down" },
  { type: "error", code: "rate_limited", message: "slow down", retry_after_ms: 50 },
  { type: "error", code: "duplicate_id", message: "already stored", id: ENVELOPE.id },
];

function assertProtocolError(
  fn: () => unknown,
  expected: { code: string; fatal?: boolean; id?: string; message?: RegExp },
  label = "",
): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ProtocolError, `${label}: expected a ProtocolError, got ${err}`);
    assert.equal(err.code, expected.code, `${label}: code (${err.message})`);
    assert.equal(err.fatal, expected.fatal ?? true, `${label}: fatal`);
    assert.equal(err.id, expected.id, `${label}: id`);
    if (expected.message) assert.match(err.message, expected.message, label);
    return true;
  });
}

Deno.test("parseClientMessage accepts one valid example of every client message type, unchanged", () => {
  assert.equal(PROTOCOL_VERSION, 2);
  for (const example of CLIENT_EXAMPLES) {
    assert.deepEqual(parseClientMessage(body(example)), example, JSON.stringify(example));
  }
  const types = new Set(CLIENT_EXAMPLES.map((m) => (m as { type: string }).type));
  assert.equal(types.size, 17, "every client type has an example");
});

Deno.test("parseServerMessage accepts one valid example of every server message type", () => {
  for (const example of SERVER_EXAMPLES) {
    assert.deepEqual(parseServerMessage(body(example)), example, JSON.stringify(example));
  }
  const types = new Set(SERVER_EXAMPLES.map((m) => (m as { type: string }).type));
  assert.equal(types.size, 21, "every server type has an example");
});

Deno.test("parseClientMessage refuses an unknown or missing type as fatal bad_message", () => {
  const cases: [string, unknown][] = [
    ["unknown type", { type: "welcome", server: "x" }],
    ["no type", { room: "general" }],
    ["numeric type", { type: 1 }],
    ["null type", { type: null }],
    ["array type", { type: ["hello"] }],
    ["inherited name", { type: "toString" }],
    ["prototype name", { type: "__proto__" }],
    ["case differs", { type: "Hello", version: 2, nonce: B64_32 }],
  ];
  for (const [label, value] of cases) {
    assertProtocolError(() => parseClientMessage(body(value)), { code: "bad_message", message: /type/ }, label);
  }
});

Deno.test("parseClientMessage refuses a missing required field, naming it", () => {
  const cases: [unknown, string][] = [
    [{ type: "hello", nonce: B64_32 }, "version"],
    [{ type: "hello", version: 2 }, "nonce"],
    [{ type: "login", nick: "a", key: B64_32, kx: B64_32, kx_sig: B64_64 }, "signature"],
    [{ type: "login", key: B64_32, kx: B64_32, kx_sig: B64_64, signature: B64_64 }, "nick"],
    [{ type: "join" }, "room"],
    [{ type: "prove", room: "general" }, "proof"],
    [{ type: "part" }, "room"],
    [{ type: "send" }, "envelope"],
    [{ type: "who" }, "room"],
    [{ type: "nick" }, "new"],
    [{ type: "history", room: "general", limit: 5 }, "before_seq"],
    [{ type: "history", before_seq: 5 }, "room"],
    [{ type: "since", room: "general" }, "after_seq"],
    [{ type: "since", after_seq: 0 }, "room"],
    [{ type: "lookup" }, "nick"],
    [{ type: "direct", to: "bob", envelope: DM }, "copy"],
    [{ type: "direct_since" }, "after_seq"],
  ];
  for (const [value, field] of cases) {
    assertProtocolError(
      () => parseClientMessage(body(value)),
      { code: "bad_message", message: new RegExp(`missing field ${field}$`) },
      JSON.stringify(value),
    );
  }
});

Deno.test("parseClientMessage refuses fields of the wrong type, including non-integers and out-of-range numbers", () => {
  const cases: unknown[] = [
    { type: "hello", version: "2", nonce: B64_32 },
    { type: "hello", version: 1.5, nonce: B64_32 },
    { type: "hello", version: -1, nonce: B64_32 },
    { type: "hello", version: 2, nonce: 7 },
    { type: "hello", version: 2, nonce: null },
    { type: "login", nick: 7, key: B64_32, kx: B64_32, kx_sig: B64_64, signature: B64_64 },
    { type: "login", nick: "a", key: B64_32, kx: B64_32, kx_sig: B64_64, signature: B64_64, rotation: "x" },
    { type: "join", room: ["general"] },
    { type: "prove", room: "general", proof: 5 },
    { type: "prove", room: "general", proof: B64_64, iterations: "100000" },
    { type: "prove", room: "general", proof: B64_64, salt: null },
    { type: "send", envelope: "{}" },
    { type: "send", envelope: [ENVELOPE] },
    { type: "send", envelope: null },
    { type: "nick", new: true },
    { type: "history", room: "general", before_seq: 2 ** 53, limit: 10 },
    { type: "history", room: "general", before_seq: "10", limit: 10 },
    { type: "history", room: "general", before_seq: 10, limit: -1 },
    { type: "since", room: "general", after_seq: 0, limit: 2.5 },
    { type: "since", room: "general", after_seq: 1e300 },
    { type: "since", room: 1, after_seq: 0 },
    { type: "part", room: null },
    { type: "lookup", nick: ["bob"] },
    { type: "direct", to: "bob", envelope: DM, copy: "x" },
    { type: "direct_since", after_seq: -1 },
    { type: "ping", data: 5 },
    { type: "pong", data: {} },
    { type: "bye", reason: 0 },
  ];
  for (const value of cases) {
    assertProtocolError(
      () => parseClientMessage(body(value)),
      { code: "bad_message", message: /must be a/ },
      JSON.stringify(value),
    );
  }
  // The largest integer in range is accepted.
  assert.deepEqual(parseClientMessage(body({ type: "since", room: "g", after_seq: 2 ** 53 - 1 })), {
    type: "since",
    room: "g",
    after_seq: 2 ** 53 - 1,
  });
});

Deno.test("parseClientMessage refuses any extra field, even one named like a prototype property", () => {
  const cases: string[] = [
    `{"type":"hello","version":2,"nonce":"${B64_32}","nick":"alice"}`,
    '{"type":"who","room":"general","all":true}',
    '{"type":"rooms","room":"general"}',
    '{"type":"rooms","__proto__":{"x":1}}',
    '{"type":"ping","constructor":1}',
    '{"type":"send","envelope":{},"id":"x"}',
  ];
  for (const text of cases) {
    assertProtocolError(
      () => parseClientMessage(body(text)),
      { code: "bad_message", message: /unexpected field/ },
      text,
    );
  }
});

Deno.test("parseClientMessage refuses a member repeated in one object, however it is spelled, as fatal bad_message", () => {
  const envelope = JSON.stringify(ENVELOPE);
  const cases: string[] = [
    '{"type":"ping","data":"a","data":"b"}',
    '{"type":"ping","data":"a","data":"a"}',
    '{"type":"ping","type":"ping"}',
    '{"type":"who","type":"rooms"}',
    '{"type":"ping","d\\u0061ta":"a","data":"b"}',
    '{"type":"ping","\\u0074ype":"pong"}',
    `{"type":"send","envelope":${envelope.slice(0, -1)},"tag":"${ENVELOPE.tag}"}}`,
    `{"type":"send","envelope":{"tag":"${"A".repeat(43)}=",${envelope.slice(1)}}`,
    `{"type":"send","envelope":${envelope},"envelope":${envelope}}`,
  ];
  for (const text of cases) {
    assert.deepEqual(JSON.parse(text).type !== undefined, true, `JSON.parse accepts ${text}`);
    assertProtocolError(
      () => parseClientMessage(body(text)),
      { code: "bad_message", message: /appears twice in one object/ },
      text,
    );
  }
  // Not repeated: the same name in two objects, member-like text inside strings, escaped quotes and backslashes.
  const fine: string[] = [
    '{"type":"ping","data":"\\",\\"data\\":\\""}',
    '{"type":"ping","data":"\\\\"}',
    '{"data":"type","type":"pong"}',
    `{"type":"send","envelope":${envelope}}`,
  ];
  for (const text of fine) assert.deepEqual(parseClientMessage(body(text)), JSON.parse(text), text);
});

Deno.test("parseServerMessage ignores extra fields but refuses missing or mistyped ones", () => {
  const welcome = parseServerMessage(body({ ...SERVER_EXAMPLES[1], motd: "hi", features: [] }));
  assert.equal(welcome.type, "welcome");
  assertProtocolError(() => parseServerMessage(body({ type: "ack", id: ENVELOPE.id })), {
    code: "bad_message",
    message: /missing field seq/,
  });
  assertProtocolError(() => parseServerMessage(body({ type: "history", room: "g", before_seq: 1, messages: [] })), {
    code: "bad_message",
    message: /missing field more/,
  });
  assertProtocolError(() => parseServerMessage(body({ type: "rooms", rooms: {} })), {
    code: "bad_message",
    message: /rooms must be an array/,
  });
  assertProtocolError(() => parseServerMessage(body({ type: "error", code: "x", message: "y", id: 5 })), {
    code: "bad_message",
  });
  // A client message type is not a server message.
  assertProtocolError(() => parseServerMessage(body({ type: "hello", version: 2, nonce: B64_32 })), {
    code: "bad_message",
    message: /Unknown message type "hello"/,
  });
});

Deno.test("both parsers refuse a body that is not a JSON object with bad_json and invalid UTF-8 with bad_frame", () => {
  const notJson = ["", "{", "hello", '{"type":"who"} x', "{'type':'who'}"];
  const notObject = ["[]", '["who"]', "null", "1", '"who"', "true"];
  for (const parse of [parseClientMessage, parseServerMessage]) {
    for (const text of notJson) {
      assertProtocolError(() => parse(body(text)), { code: "bad_json", message: /not valid JSON/ }, text);
    }
    for (const text of notObject) {
      assertProtocolError(() => parse(body(text)), { code: "bad_json", message: /not a JSON object/ }, text);
    }
    assertProtocolError(() => parse(new Uint8Array([0x7b, 0x80, 0x7d])), { code: "bad_frame", message: /UTF-8/ });
  }
  // A leading byte-order mark is skipped by the UTF-8 decoder (RFC 8259 lets a parser ignore it).
  assert.deepEqual(parseClientMessage(new Uint8Array([0xef, 0xbb, 0xbf, ...body({ type: "rooms" })])), {
    type: "rooms",
  });
});

Deno.test("parseClientMessage refuses a badly shaped envelope as bad_envelope, not fatal, carrying its id", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ ...ENVELOPE, v: 3 }, /v must be 1 or 2/],
    [{ ...ENVELOPE, v: 1 }, /v must be 2/],
    [{ ...ENVELOPE, extra: 1 }, /exactly the fields/],
    [{ ...ENVELOPE, ts: 1.5 }, /ts must be an integer/],
    [{ ...ENVELOPE, ts: -1 }, /ts must be an integer/],
    [{ ...ENVELOPE, iv: "EBESExQVFhcYGRobHB0eHx==" }, /iv is not canonical base64/],
    [{ ...ENVELOPE, iv: "EBESExQVFhcYGRobHB0eHw" }, /iv is not canonical base64/],
    [{ ...ENVELOPE, tag: B64_16 }, /tag has the wrong length/],
    [{ ...ENVELOPE, ct: new Uint8Array(15).toBase64() }, /ct has the wrong length/],
    [{ ...ENVELOPE, ct: "" }, /ct has the wrong length/],
    [{ ...ENVELOPE, from: "" }, /from/],
    [{ ...ENVELOPE, room: "r".repeat(65) }, /room/],
  ];
  for (const [envelope, message] of cases) {
    assertProtocolError(
      () => parseClientMessage(body({ type: "send", envelope })),
      { code: "bad_envelope", fatal: false, id: ENVELOPE.id, message },
      JSON.stringify(envelope).slice(0, 80),
    );
  }
  // The id itself is wrong: left out (only an id that is canonical base64 of 16 bytes is echoed).
  for (const id of [7, "short", "x".repeat(65), null]) {
    assertProtocolError(() => parseClientMessage(body({ type: "send", envelope: { ...ENVELOPE, id } })), {
      code: "bad_envelope",
      fatal: false,
    }, `id ${JSON.stringify(id)}`);
  }
});

Deno.test("parseClientMessage leaves a history limit above the page size to the hub, which clamps it", () => {
  // PROTOCOL.md: limit is clamped to 1..500, not refused (hub_test checks the clamping).
  assert.equal(HISTORY_PAGE, 500);
  assert.deepEqual(parseClientMessage(body({ type: "history", room: "g", before_seq: 9, limit: 501 })), {
    type: "history",
    room: "g",
    before_seq: 9,
    limit: 501,
  });
  assert.deepEqual(parseClientMessage(body({ type: "history", room: "g", before_seq: 9, limit: 0 })), {
    type: "history",
    room: "g",
    before_seq: 9,
    limit: 0,
  });
});

Deno.test("parseRelayedMessage checks seq, sent_at and the envelope of one history item", () => {
  assert.deepEqual(parseRelayedMessage(RELAYED), RELAYED);
  for (const bad of [null, [], "x", { ...RELAYED, seq: -1 }, { ...RELAYED, sent_at: "1" }, { envelope: ENVELOPE }]) {
    assertProtocolError(() => parseRelayedMessage(bad), { code: "bad_message" }, JSON.stringify(bad));
  }
  assert.throws(() => parseRelayedMessage({ ...RELAYED, envelope: { ...ENVELOPE, v: 0 } }), EnvelopeError);
});

Deno.test("ProtocolError is fatal unless told otherwise and keeps its code and id", () => {
  const fatal = new ProtocolError("bad_message", "m");
  assert.deepEqual([fatal.name, fatal.code, fatal.fatal, fatal.id], ["ProtocolError", "bad_message", true, undefined]);
  const kept = new ProtocolError("duplicate_id", "again", { fatal: false, id: ENVELOPE.id });
  assert.deepEqual([kept.fatal, kept.id], [false, ENVELOPE.id]);
});

Deno.test("ERROR_CODES lists exactly the error codes documented in PROTOCOL.md", async () => {
  const doc = await Deno.readTextFile(new URL("../PROTOCOL.md", import.meta.url));
  const section = doc.slice(doc.indexOf("## Errors"), doc.indexOf("## Limits"));
  const documented = [...section.matchAll(/^\| `([a-z_]+)` +\|/gm)].map((m) => m[1]);
  assert.ok(documented.length >= 20, `found ${documented.length} codes in PROTOCOL.md`);
  assert.deepEqual(Object.keys(ERROR_CODES).sort(), documented.sort());
});

Deno.test("an integer is a JSON number's value, whatever its spelling, as PROTOCOL.md says", () => {
  for (const spelling of ["1000", "1e3", "1000.0", "10000e-1"]) {
    assert.deepEqual(parseClientMessage(body(`{"type":"since","room":"g","after_seq":${spelling}}`)), {
      type: "since",
      room: "g",
      after_seq: 1000,
    }, spelling);
  }
  assert.ok(
    Object.is(
      (parseClientMessage(body('{"type":"since","room":"g","after_seq":-0}')) as { after_seq: number }).after_seq,
      -0,
    ),
  );
  for (const spelling of ["1.5", "-1", "1e400", "9007199254740993"]) {
    assertProtocolError(
      () => parseClientMessage(body(`{"type":"since","room":"g","after_seq":${spelling}}`)),
      { code: "bad_message", message: /must be a non-negative integer/ },
      spelling,
    );
  }
  // An envelope's ts spelled 1.7e12 is stored and relayed as the plain integer.
  const text = JSON.stringify({ type: "send", envelope: ENVELOPE }).replace('"ts":1700000000000', '"ts":1.7e12');
  assert.notEqual(text, JSON.stringify({ type: "send", envelope: ENVELOPE }));
  const msg = parseClientMessage(body(text));
  assert.equal(msg.type === "send" && serializeEnvelope(msg.envelope), JSON.stringify(ENVELOPE));
});

Deno.test("parseClientMessage tells a client of another protocol version so, before anything else about its hello", () => {
  for (const hello of [{ type: "hello", version: 1, nick: "alice" }, { type: "hello", version: 3, nonce: B64_32 }]) {
    assertProtocolError(
      () => parseClientMessage(body(hello)),
      { code: "version_unsupported", message: /version 2 only/ },
      JSON.stringify(hello),
    );
  }
});

Deno.test("parseClientMessage refuses a malformed direct as bad_direct (not fatal) and a malformed rotation as fatal", () => {
  for (const [envelope, copy] of [[{ ...DM, v: 1 }, DM_COPY], [DM, { ...DM_COPY, extra: 1 }], [DM, {}]]) {
    assertProtocolError(
      () => parseClientMessage(body({ type: "direct", to: "bob", envelope, copy })),
      { code: "bad_direct", fatal: false, id: envelope.id },
    );
  }
  const login = { type: "login", nick: "a", key: B64_32, kx: B64_32, kx_sig: B64_64, signature: B64_64 };
  for (const rotation of [{ old: B64_32, ts: 1 }, { old: B64_32, ts: -1, signature: B64_64 }, { ...{ a: 1 } }]) {
    assertProtocolError(
      () => parseClientMessage(body({ ...login, rotation })),
      { code: "bad_message", message: /rotation/ },
      JSON.stringify(rotation),
    );
  }
});
