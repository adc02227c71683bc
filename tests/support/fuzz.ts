/**
 * Seeded generators of hostile input for the fuzz tests: a small PRNG (mulberry32), so every failure names a seed
 * that reproduces it, and generators of frames, JSON texts, messages and envelopes that are broken on purpose.
 *
 * Set AESCHAT_FUZZ_SEED to replay a failing run; by default each run picks a fresh seed and prints it on failure.
 *
 * @module
 */

const encoder = new TextEncoder();

/**
 * A deterministic pseudo-random generator (mulberry32: 32-bit state, good enough to spread test inputs).
 *
 * @example
 * ```ts
 * const rng = new Rng(42);
 * rng.int(10); // the same number every time for seed 42
 * ```
 */
export class Rng {
  #state: number;

  /**
   * @param seed any 32-bit integer (the run's seed)
   * @param stream which of the seed's independent streams (one per test, so tests do not share inputs)
   */
  constructor(seed: number, stream = 0) {
    this.#state = (seed ^ Math.imul(stream, 0x9e3779b9)) >>> 0;
  }

  /** The next 32-bit unsigned integer. */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A float in [0, 1). */
  float(): number {
    return this.next() / 4294967296;
  }

  /**
   * An integer in [0, max).
   *
   * @param max exclusive upper bound (at most 2^32)
   */
  int(max: number): number {
    return Math.floor(this.float() * max);
  }

  /**
   * An integer in [min, max], both included.
   *
   * @param min lower bound
   * @param max upper bound
   */
  range(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }

  /**
   * True with probability p.
   *
   * @param p probability in [0, 1]
   */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /**
   * One element of a non-empty list.
   *
   * @param items the choices
   */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /**
   * Random bytes.
   *
   * @param n how many
   */
  bytes(n: number): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = this.next();
      out[i] = v;
      if (i + 1 < n) out[i + 1] = v >>> 8;
      if (i + 2 < n) out[i + 2] = v >>> 16;
      if (i + 3 < n) out[i + 3] = v >>> 24;
    }
    return out;
  }
}

function envVar(name: string): string | undefined {
  // Without --allow-env the defaults apply, rather than a permission error.
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") return undefined;
  return Deno.env.get(name);
}

/**
 * The seed for this run: AESCHAT_FUZZ_SEED when set (to replay a failure), otherwise a fresh random one. Failure
 * messages print it as `AESCHAT_FUZZ_SEED=<seed>`.
 *
 * @example
 * ```ts
 * const seed = fuzzSeed();
 * const rng = new Rng(seed, 1);
 * ```
 * @returns a 32-bit seed
 */
export function fuzzSeed(): number {
  runSeed ??= chooseSeed();
  return runSeed;
}

let runSeed: number | undefined;

function chooseSeed(): number {
  const text = envVar("AESCHAT_FUZZ_SEED");
  const base = text !== undefined && text !== "" ? Number(text) : crypto.getRandomValues(new Uint32Array(1))[0];
  if (!Number.isInteger(base)) throw new Error(`AESCHAT_FUZZ_SEED must be an integer, got ${text}`);
  return base >>> 0;
}

/**
 * How many inputs a fuzz test generates: AESCHAT_FUZZ_SCALE multiplies every count (default 1).
 *
 * @param base the count for a normal run
 * @returns the count to use
 */
export function fuzzCount(base: number): number {
  const scale = Number(envVar("AESCHAT_FUZZ_SCALE") ?? "1");
  return Math.max(1, Math.round(base * (Number.isFinite(scale) && scale > 0 ? scale : 1)));
}

/**
 * A short printable rendering of an input for failure messages.
 *
 * @param bytes the input
 * @param max most bytes shown
 * @returns its length, its hex and its text (lossy)
 */
export function describeBytes(bytes: Uint8Array, max = 300): string {
  const head = bytes.subarray(0, max);
  const more = bytes.length > max ? `… (${bytes.length} bytes)` : "";
  return `${bytes.length} bytes: hex ${head.toHex()}${more}\n  text ${
    JSON.stringify(new TextDecoder().decode(head))
  }${more}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Strings, numbers and JSON values chosen to hit edge cases.

const TRICKY_STRINGS = [
  "",
  " ",
  "a",
  "alice",
  "Alice",
  "ALICE",
  "general",
  "bob",
  "\u0000",
  "\n",
  "a b",
  "\t",
  "\u200b",
  "\ud800",
  "\udfff",
  "\ud83d\ude00",
  "e\u0301",
  "\u00e9",
  "\u212b",
  "x".repeat(33),
  "x".repeat(65),
  "\u00e9".repeat(17),
  "__proto__",
  "constructor",
  "toString",
  "hasOwnProperty",
  "type",
  "null",
  "1",
  "AAAAAAAAAAAAAAAAAAAAAA==",
  "AAAAAAAAAAAAAAAAAAAAAA",
  "\u202e",
  "\ufeff",
  "\uffff",
  "%s%n",
  "'; DROP TABLE messages; --",
];

const TRICKY_NUMBERS = [
  "0",
  "-0",
  "1",
  "-1",
  "0.5",
  "-0.5",
  "1.0",
  "1e3",
  "1E3",
  "1e-7",
  "1e308",
  "1e309",
  "-1e309",
  "9007199254740991",
  "9007199254740992",
  "9007199254740993",
  "18446744073709551616",
  "4294967296",
  "4294967295",
  "2147483648",
  "123456789012345678901234567890",
  "0.000000000000000000001",
  "100000",
  "600000",
  "10000001",
];

const MESSAGE_TYPES = [
  "hello",
  "login",
  "join",
  "prove",
  "part",
  "send",
  "who",
  "rooms",
  "nick",
  "history",
  "since",
  "lookup",
  "direct",
  "direct_since",
  "ping",
  "pong",
  "bye",
];

const SERVER_TYPES = [
  "server",
  "welcome",
  "challenge",
  "joined",
  "parted",
  "ack",
  "message",
  "presence",
  "who",
  "rooms",
  "nick",
  "history",
  "since",
  "identity",
  "direct",
  "direct_since",
  "delivered",
  "ping",
  "pong",
  "bye",
  "error",
];

/** A random string, often one of the tricky ones. */
export function randomString(rng: Rng): string {
  if (rng.chance(0.6)) return rng.pick(TRICKY_STRINGS);
  const n = rng.int(rng.chance(0.9) ? 12 : 200);
  let s = "";
  for (let i = 0; i < n; i++) {
    const r = rng.float();
    if (r < 0.6) s += String.fromCharCode(rng.range(0x20, 0x7e));
    else if (r < 0.75) s += String.fromCharCode(rng.int(0x20));
    else if (r < 0.9) s += String.fromCharCode(rng.range(0x80, 0xffff));
    else s += String.fromCodePoint(rng.range(0x10000, 0x10ffff));
  }
  return s;
}

/** JSON text of a number, often an edge case (huge, negative, fractional, exponent, beyond 2^53). */
export function randomNumberText(rng: Rng): string {
  if (rng.chance(0.7)) return rng.pick(TRICKY_NUMBERS);
  const n = rng.float() * 10 ** rng.int(20) * (rng.chance(0.3) ? -1 : 1);
  return rng.chance(0.5) ? String(Math.floor(n)) : String(n);
}

/**
 * The JSON text of a random value of any type, nested up to `depth`, sometimes very deep (10000 levels).
 *
 * @param rng the generator
 * @param depth how deep containers may nest
 * @param options.deep allow very deep nesting (default true); values that are parsed and later passed to
 *   JSON.stringify must not be deep, since JSON.stringify can overflow the stack on them
 */
export function randomJsonText(rng: Rng, depth = 3, options: { deep?: boolean } = {}): string {
  const deep = options.deep ?? true;
  const r = rng.int(depth > 0 ? 9 : 6);
  switch (r) {
    case 0:
      return "null";
    case 1:
      return rng.chance(0.5) ? "true" : "false";
    case 2:
    case 3:
      return randomNumberText(rng);
    case 4:
    case 5:
      return JSON.stringify(randomString(rng));
    case 6:
      return deep ? deepNesting(rng) : "[[[]]]";
    case 7: {
      const n = rng.int(4);
      return `[${Array.from({ length: n }, () => randomJsonText(rng, depth - 1, options)).join(",")}]`;
    }
    default: {
      const n = rng.int(4);
      return `{${
        Array.from(
          { length: n },
          () => `${JSON.stringify(randomString(rng))}:${randomJsonText(rng, depth - 1, options)}`,
        ).join(",")
      }}`;
    }
  }
}

/** Very deep nesting (up to 10000 levels) of arrays or objects. */
export function deepNesting(rng: Rng): string {
  const depth = rng.chance(0.2) ? 10000 : rng.range(1, 200);
  if (rng.chance(0.5)) return "[".repeat(depth) + "]".repeat(depth);
  return '{"a":'.repeat(depth) + "0" + "}".repeat(depth);
}

// ---------------------------------------------------------------------------------------------------------------
// Envelopes.

function b64(rng: Rng, n: number): string {
  return rng.bytes(n).toBase64();
}

/** A well-formed envelope object (random bytes in its fields; the shape is right, the crypto is not). */
export function validEnvelope(rng: Rng, options: { room?: string; from?: string } = {}): Record<string, unknown> {
  return {
    v: 2,
    room: options.room ?? "general",
    from: options.from ?? "alice",
    id: b64(rng, 16),
    ts: rng.chance(0.5) ? Date.now() : rng.int(2 ** 32),
    iv: b64(rng, 16),
    ct: b64(rng, 16 * rng.range(1, 8)),
    tag: b64(rng, 32),
  };
}

/** A well-formed direct envelope object (random bytes in its fields). */
export function validDirectEnvelope(rng: Rng): Record<string, unknown> {
  return {
    v: 2,
    from: "alice",
    to: "bob",
    id: b64(rng, 16),
    ts: rng.int(2 ** 40),
    key: b64(rng, 32),
    tokey: b64(rng, 32),
    kx: b64(rng, 32),
    epk: b64(rng, 32),
    nonce: b64(rng, 12),
    ct: b64(rng, 17 + rng.int(100)),
  };
}

/**
 * A base64 string that is not the canonical spelling of any byte string, or does not decode at all.
 *
 * @param rng the generator
 * @param n the byte length of the canonical string it is derived from
 */
export function nonCanonicalBase64(rng: Rng, n: number): string {
  const good = b64(rng, n);
  switch (rng.int(9)) {
    case 0:
      return good.replace(/=+$/, ""); // missing padding
    case 1: {
      // Non-zero trailing bits: the last symbol before the padding must have its unused low bits clear.
      if (!good.endsWith("=")) return good + "=";
      const body = good.replace(/=+$/, "");
      const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
      const v = alphabet.indexOf(body[body.length - 1]);
      return body.slice(0, -1) + alphabet[v | 1] + good.slice(body.length);
    }
    case 2:
      return good.slice(0, 4) + " " + good.slice(4); // whitespace
    case 3:
      return good.slice(0, 2) + "\n" + good.slice(2);
    case 4:
      return good.replaceAll("+", "-").replaceAll("/", "_").replace(/^./, "-"); // URL alphabet
    case 5:
      return good + "===="; // extra padding
    case 6:
      return good.slice(0, 3) + "=" + good.slice(4); // padding in the middle
    case 7:
      return good.slice(0, -1); // truncated
    default:
      return good.replace(/^./, "*"); // not base64 at all
  }
}

/**
 * An envelope broken in one way (or, rarely, not broken at all): wrong-length fields, ct not a multiple of 16,
 * non-canonical base64, bad names, bad ts or version, missing or extra fields.
 *
 * @param rng the generator
 * @returns the envelope object (possibly not an object at all)
 */
export function hostileEnvelope(rng: Rng): unknown {
  if (rng.chance(0.03)) return JSON.parse(randomJsonText(rng, 2, { deep: false }));
  const e = validEnvelope(rng);
  const field = rng.pick(["v", "room", "from", "id", "ts", "iv", "ct", "tag", "extra", "missing", "ok"]);
  switch (field) {
    case "v":
      e.v = rng.pick([0, 1, 3, "2", 1.5, -1, null, true, 2 ** 53]);
      break;
    case "room":
    case "from":
      e[field] = rng.chance(0.8) ? randomString(rng) : JSON.parse(randomJsonText(rng, 1, { deep: false }));
      break;
    case "ts":
      e.ts = rng.pick([-1, 0.5, 2 ** 53, 1e308, "1", null, [], {}, -0, 2 ** 53 - 1]);
      break;
    case "id":
    case "iv":
    case "tag":
    case "ct": {
      const want = field === "tag" ? 32 : 16;
      const r = rng.int(4);
      if (r === 0) e[field] = b64(rng, field === "ct" ? rng.pick([0, 1, 15, 17, 31, 33, 100]) : rng.int(70));
      else if (r === 1) e[field] = nonCanonicalBase64(rng, field === "ct" ? 16 * rng.range(1, 4) : want);
      else if (r === 2) e[field] = JSON.parse(randomJsonText(rng, 1, { deep: false }));
      else e[field] = field === "ct" ? b64(rng, 16 * rng.range(1, 8)) : b64(rng, want);
      break;
    }
    case "extra":
      // defineProperty, so that "__proto__" becomes an own field as it does in JSON.parse.
      Object.defineProperty(e, rng.pick(["extra", "__proto__", "seq", "body", "V"]), {
        value: JSON.parse(randomJsonText(rng, 1, { deep: false })),
        enumerable: true,
        writable: true,
        configurable: true,
      });
      break;
    case "missing":
      delete e[rng.pick(["v", "room", "from", "id", "ts", "iv", "ct", "tag"])];
      break;
  }
  return e;
}

/**
 * A direct envelope broken in one way (or, rarely, not at all): a field of the wrong kind or length, non-canonical
 * base64, a version other than 2, bad names, a missing or extra field.
 *
 * @param rng the generator
 * @returns the envelope object (possibly not an object at all)
 */
export function hostileDirectEnvelope(rng: Rng): unknown {
  if (rng.chance(0.03)) return JSON.parse(randomJsonText(rng, 2, { deep: false }));
  const e = validDirectEnvelope(rng);
  const field = rng.pick(["v", "from", "to", "ts", "id", "key", "nonce", "ct", "extra", "missing", "ok"]);
  switch (field) {
    case "v":
      e.v = rng.pick([1, 3, "2", null]);
      break;
    case "from":
    case "to":
      e[field] = rng.chance(0.8) ? randomString(rng) : JSON.parse(randomJsonText(rng, 1, { deep: false }));
      break;
    case "ts":
      e.ts = rng.pick([-1, 0.5, 2 ** 53, "1", null, 2 ** 53 - 1]);
      break;
    case "id":
    case "key":
    case "nonce":
    case "ct":
      e[field] = rng.chance(0.5) ? nonCanonicalBase64(rng, field === "nonce" ? 12 : 16) : b64(rng, rng.int(40));
      break;
    case "extra":
      e[rng.pick(["extra", "seq", "room"])] = 1;
      break;
    case "missing":
      delete e[rng.pick(Object.keys(e))];
      break;
  }
  return e;
}

// ---------------------------------------------------------------------------------------------------------------
// Whole message bodies.

function validClientMessage(rng: Rng): Record<string, unknown> {
  const type = rng.pick(MESSAGE_TYPES);
  switch (type) {
    case "hello":
      return { type, version: 2, nonce: b64(rng, 32) };
    case "login": {
      const m: Record<string, unknown> = {
        type,
        nick: rng.pick(["alice", "bob", "Zoë", "x"]),
        key: b64(rng, 32),
        kx: b64(rng, 32),
        kx_sig: b64(rng, 64),
        signature: b64(rng, 64),
      };
      if (rng.chance(0.3)) m.rotation = { old: b64(rng, 32), ts: rng.int(2 ** 40), signature: b64(rng, 64) };
      return m;
    }
    case "join":
    case "part":
    case "who":
      return { type, room: rng.pick(["general", "ops", "café"]) };
    case "lookup":
      return { type, nick: rng.pick(["alice", "bob"]) };
    case "direct": {
      const envelope = validDirectEnvelope(rng);
      return { type, to: "bob", envelope, copy: { ...envelope, epk: b64(rng, 32), ct: b64(rng, 40) } };
    }
    case "direct_since":
      return rng.chance(0.5) ? { type, after_seq: rng.int(1000) } : { type, after_seq: 0, limit: 10 };
    case "prove": {
      const m: Record<string, unknown> = { type, room: "general", proof: b64(rng, 64) };
      if (rng.chance(0.5)) Object.assign(m, { salt: b64(rng, 16), iterations: 100000, access_pub: b64(rng, 32) });
      return m;
    }
    case "send":
      return { type, envelope: validEnvelope(rng) };
    case "nick":
      return { type, new: "carol" };
    case "history":
      return rng.chance(0.5)
        ? { type, room: "general", before_seq: rng.int(1000) }
        : { type, room: "general", before_seq: rng.int(1000), limit: rng.int(501) };
    case "since":
      return rng.chance(0.5)
        ? { type, room: "general", after_seq: rng.int(1000) }
        : { type, room: "general", after_seq: 0, limit: 10 };
    case "ping":
    case "pong":
      return rng.chance(0.5) ? { type } : { type, data: randomString(rng) };
    case "bye":
      return rng.chance(0.5) ? { type } : { type, reason: "quit" };
    default:
      return { type };
  }
}

function validServerMessage(rng: Rng): Record<string, unknown> {
  const type = rng.pick(SERVER_TYPES);
  const relayed = () => ({ seq: rng.int(1000), sent_at: Date.now(), envelope: validEnvelope(rng) });
  const member = () => ({ nick: "alice", key: b64(rng, 32) });
  const item = () => ({ seq: rng.int(1000), sent_at: Date.now(), envelope: validDirectEnvelope(rng), delivered: true });
  switch (type) {
    case "server":
      return {
        type,
        server: "aeschat",
        server_version: "0.1.0",
        version: 2,
        key: b64(rng, 32),
        nonce: b64(rng, 32),
        signature: b64(rng, 64),
      };
    case "welcome":
      return { type, nick: "alice", registered: rng.chance(0.5), limits: {}, direct_seq: rng.int(9) };
    case "challenge":
      return { type, room: "general", nonce: b64(rng, 32) };
    case "joined":
      return { type, room: "general", epoch: 0, members: [member()], history: [relayed()], latest_seq: 3 };
    case "parted":
      return { type, room: "general" };
    case "ack":
      return { type, id: b64(rng, 16), seq: 1 };
    case "message":
      return { type, ...relayed() };
    case "presence":
      return { type, event: "join", room: "general", nick: "bob", key: b64(rng, 32) };
    case "who":
      return { type, room: "general", members: [member()] };
    case "rooms":
      return { type, rooms: [{ name: "general", count: 1 }] };
    case "identity":
      return { type, nick: "bob", key: b64(rng, 32), kx: b64(rng, 32), kx_sig: b64(rng, 64), rotations: [] };
    case "direct":
      return { type, ...item() };
    case "direct_since":
      return { type, after_seq: 0, messages: [item()], more: false };
    case "delivered":
      return { type, id: b64(rng, 16) };
    case "nick":
      return { type, old: "a", new: "b" };
    case "history":
      return { type, room: "general", before_seq: 5, messages: [relayed()], more: false };
    case "since":
      return { type, room: "general", after_seq: 5, messages: [relayed()], more: false, pruned_through: 0 };
    case "bye":
      return { type, reason: "quit" };
    case "error":
      return { type, code: "bad_frame", message: "x", retry_after_ms: 5 };
    default:
      return { type };
  }
}

const encoderFor = (text: string): Uint8Array => encoder.encode(text);

/**
 * Mutates one field of a message: removes it, adds an unknown one, or replaces a value with one of another type
 * (huge, negative, fractional, deep, a string where a number belongs, …).
 */
function mutateMessage(rng: Rng, msg: Record<string, unknown>): string {
  const keys = Object.keys(msg);
  const r = rng.int(5);
  if (r === 0 && keys.length > 1) {
    delete msg[rng.pick(keys.filter((k) => k !== "type"))];
    return JSON.stringify(msg);
  }
  if (r === 1) {
    // An extra field (a literal __proto__ key is an own property in JSON.parse).
    const text = JSON.stringify(msg);
    return `${text.slice(0, -1)},${JSON.stringify(rng.pick(["extra", "__proto__", "Type", "id", "seq"]))}:${
      randomJsonText(rng, 2)
    }}`;
  }
  if (r === 2) {
    const text = JSON.stringify({ ...msg, type: rng.chance(0.5) ? randomString(rng) : "__proto__" });
    return rng.chance(0.3) ? text.replace(/"type":"(?:[^"\\]|\\.)*"/, `"type":${randomJsonText(rng, 1)}`) : text;
  }
  // Replace one value (not the type) with raw JSON text of any kind.
  const key = rng.pick(keys.length > 1 ? keys.filter((k) => k !== "type") : keys);
  const parts = keys.map((k) => `${JSON.stringify(k)}:${k === key ? randomJsonText(rng, 2) : JSON.stringify(msg[k])}`);
  return `{${parts.join(",")}}`;
}

function memberText(key: string, value: string, options: { escape: boolean; rng: Rng }): string {
  if (!options.escape || key.length === 0) return `${JSON.stringify(key)}:${value}`;
  // The same name with one character written as a \u escape: JSON.parse treats it as the same name.
  const at = options.rng.int(key.length);
  const escaped = `\\u${key.charCodeAt(at).toString(16).padStart(4, "0")}`;
  const quoted = JSON.stringify(key.slice(0, at)).slice(0, -1) + escaped + JSON.stringify(key.slice(at + 1)).slice(1);
  return `${quoted}:${value}`;
}

/**
 * A valid message written with one member repeated in one of its objects (the message itself, or its envelope): the
 * name spelled as is or with one character \u-escaped, the repeated value the same or another, at any position.
 */
function withDuplicateMember(rng: Rng, msg: Record<string, unknown>): string {
  const write = (obj: Record<string, unknown>, inner?: { key: string; text: string }): string => {
    const parts = Object.keys(obj).map((k) =>
      `${JSON.stringify(k)}:${inner?.key === k ? inner.text : JSON.stringify(obj[k])}`
    );
    return `{${parts.join(",")}}`;
  };
  const repeat = (obj: Record<string, unknown>): string => {
    const keys = Object.keys(obj);
    const key = rng.pick(keys);
    const value = rng.chance(0.5) ? JSON.stringify(obj[key]) : randomJsonText(rng, 1, { deep: false });
    const parts = keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(obj[k])}`);
    parts.splice(rng.int(parts.length + 1), 0, memberText(key, value, { escape: rng.chance(0.4), rng }));
    return `{${parts.join(",")}}`;
  };
  const nested = Object.keys(msg).find((k) => {
    const v = msg[k];
    return typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length > 0;
  });
  if (nested !== undefined && rng.chance(0.5)) {
    return write(msg, { key: nested, text: repeat(msg[nested] as Record<string, unknown>) });
  }
  return repeat(msg);
}

/**
 * Messages that hold no repeated member but look as if they might to a careless scanner: member-like text inside
 * string values, escaped quotes and backslashes before the closing quote, one name in two sibling objects, and names
 * that differ only after unescaping.
 */
function memberLookalikes(rng: Rng, side: "client" | "server"): string {
  const tricky = rng.pick([
    '","data":"x',
    '\\",\\"data\\":\\"',
    "\\",
    "\\\\",
    '{"data":1,"data":2}',
    "\\u0064ata",
  ]);
  if (side === "server") {
    return rng.pick([
      `{"type":"rooms","rooms":[{"name":"a","count":1},{"name":"b","count":2}]}`,
      `{"type":"error","code":"x","message":"${tricky}"}`,
    ]);
  }
  return rng.pick([
    `{"type":"ping","data":"${tricky}"}`,
    `{"data":"${tricky}","type":"pong"}`,
    `{"type":"bye","reason":"${tricky}\\"}`,
    `{"type":"ping","data":"\\u0074ype"}`,
    `{"type":"nick","new":"type"}`,
  ]);
}

/** Invalid UTF-8 inserted into otherwise valid JSON text. */
function withInvalidUtf8(rng: Rng, text: string): Uint8Array {
  const bad = rng.pick([
    [0xff],
    [0xc0, 0x80], // overlong NUL
    [0xe0, 0x80, 0x80], // overlong
    [0xed, 0xa0, 0x80], // a UTF-16 surrogate
    [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
    [0xc3], // truncated sequence
    [0x80], // lone continuation
    [0xfe],
  ]);
  const bytes = encoder.encode(text);
  const at = rng.int(bytes.length + 1);
  const out = new Uint8Array(bytes.length + bad.length);
  out.set(bytes.subarray(0, at), 0);
  out.set(bad, at);
  out.set(bytes.subarray(at), at + bad.length);
  return out;
}

/**
 * One hostile frame body for a parser: random bytes, invalid UTF-8, invalid JSON, JSON that is not an object,
 * unknown or missing types, mutated fields, deep nesting, broken envelopes, and some valid messages.
 *
 * @param rng the generator
 * @param options.side "client" for bodies a server parses, "server" for bodies a client parses
 * @returns the body bytes and a label of how it was made
 */
export function hostileBody(rng: Rng, options: { side: "client" | "server" }): { body: Uint8Array; kind: string } {
  const valid = () => options.side === "client" ? validClientMessage(rng) : validServerMessage(rng);
  const r = rng.int(100);
  if (r < 8) return { kind: "random bytes", body: rng.bytes(rng.int(64)) };
  if (r < 14) return { kind: "invalid utf-8", body: withInvalidUtf8(rng, JSON.stringify(valid())) };
  if (r < 22) {
    const text = JSON.stringify(valid());
    const broken = rng.pick([
      () => text.slice(0, rng.int(text.length)),
      () => text + rng.pick(["}", ",", " x", "\u0000", "{}"]),
      () => text.replace(/"/, "'"),
      () => text.replace(/:/, ""),
      () => text.slice(0, -1) + ",}",
      () => "",
      () => " ",
      () => "{",
      () => "NaN",
      () => "undefined",
      () => "{type:'ping'}",
      () => '{"type":"ping",}',
    ])();
    return { kind: "invalid json", body: encoderFor(broken) };
  }
  if (r < 28) {
    const text = rng.pick([
      () => "[]",
      () => "null",
      () => "true",
      () => "0",
      () => '"ping"',
      () => `[${JSON.stringify(valid())}]`,
      () => deepNesting(rng),
      () => randomNumberText(rng),
    ])();
    return { kind: "json not an object", body: encoderFor(text) };
  }
  if (r < 34) {
    const text = rng.pick([
      () => "{}",
      () => `{"type":${randomJsonText(rng, 1)}}`,
      () => `{"type":${JSON.stringify(randomString(rng))}}`,
      () => '{"Type":"ping"}',
      () => '{"type":"PING"}',
      () => '{"type":"__proto__"}',
      () => '{"type":"toString"}',
      () => `{"type":"ping","data":${deepNesting(rng)}}`,
      () => `{"type":"ping","deep":${deepNesting(rng)}}`,
    ])();
    return { kind: "unknown or missing type", body: encoderFor(text) };
  }
  if (r < 64) return { kind: "mutated field", body: encoderFor(mutateMessage(rng, valid())) };
  if (r < 70) {
    return rng.chance(0.8)
      ? { kind: "duplicate member", body: encoderFor(withDuplicateMember(rng, valid())) }
      : { kind: "member lookalikes", body: encoderFor(memberLookalikes(rng, options.side)) };
  }
  if (r < 90) {
    if (options.side === "client" && rng.chance(0.25)) {
      const [envelope, copy] = rng.chance(0.5)
        ? [hostileDirectEnvelope(rng), validDirectEnvelope(rng)]
        : [validDirectEnvelope(rng), hostileDirectEnvelope(rng)];
      return {
        kind: "hostile direct",
        body: encoderFor(JSON.stringify({ type: "direct", to: "bob", envelope, copy })),
      };
    }
    const envelope = hostileEnvelope(rng);
    const msg = options.side === "client"
      ? { type: "send", envelope }
      : { type: "message", seq: rng.int(100), sent_at: Date.now(), envelope };
    return { kind: "hostile envelope", body: encoderFor(JSON.stringify(msg)) };
  }
  return { kind: "valid", body: encoderFor(JSON.stringify(valid())) };
}
