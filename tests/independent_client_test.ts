/**
 * A second, independent client written from PROTOCOL.md (and tests/fixtures/v2_example.json) alone, on node:crypto
 * and Deno.connect, with none of lib/: it must interoperate with the real server and the real client. If this test
 * fails while the rest of the suite passes, PROTOCOL.md no longer describes what the programs do.
 *
 * What it checks: framing, hello → server (signature verified) → login → welcome; creating a room (salt, iterations,
 * access_pub, join proof) and joining it with the passphrase from a second independent client; a signed v2 room message
 * sealed by one and opened, verified and sequenced by the other; the real client (script mode, --json) showing a line
 * of this client's as `new`, and a line of its own opening and verifying here; direct messages both ways (lookup, the
 * Noise K seal, the signed plaintext).
 *
 * @module
 */

import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
  type KeyObject,
  pbkdf2Sync,
  randomBytes,
  sign,
  timingSafeEqual,
  verify,
} from "node:crypto";
import { Buffer } from "node:buffer";
import { deepStrictEqual, ok as assert } from "node:assert";
import { exited, jsonLines, type Program, removeServer, spawnTask, startServer } from "./support/programs.ts";
import vectors from "./fixtures/v2_example.json" with { type: "json" };

const assertEquals = (actual: unknown, expected: unknown, message?: string): void =>
  deepStrictEqual(actual, expected, message);

// ---------------------------------------------------------------------------------------------------------------------
// Encoding (PROTOCOL.md: Notation, Canonical base64)

const te = new TextEncoder();
const utf8 = (s: string): Buffer => Buffer.from(te.encode(s));
const label = (l: string): Buffer => Buffer.concat([utf8(l), Buffer.of(0)]);
const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const u64 = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};
const lp = (s: string): Buffer => Buffer.concat([u16(utf8(s).length), utf8(s)]);
const lp32 = (s: string): Buffer => Buffer.concat([u32(utf8(s).length), utf8(s)]);
const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64");
const hex = (s: string): Buffer => Buffer.from(s, "hex");

/** Strict decoding: only the canonical spelling, of exactly `length` bytes. */
function unb64(s: unknown, length?: number): Buffer {
  if (typeof s !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) throw new Error("bad base64");
  const b = Buffer.from(s, "base64");
  if (b.toString("base64") !== s) throw new Error("non-canonical base64");
  if (length !== undefined && b.length !== length) throw new Error(`base64 of ${b.length} bytes, not ${length}`);
  return b;
}

// ---------------------------------------------------------------------------------------------------------------------
// Primitives (PROTOCOL.md: Notation and primitives)

const ED_PKCS8 = hex("302e020100300506032b657004220420");
const ED_SPKI = hex("302a300506032b6570032100");
const X_PKCS8 = hex("302e020100300506032b656e04220420");
const X_SPKI = hex("302a300506032b656e032100");

const edPrivate = (seed: Uint8Array): KeyObject =>
  createPrivateKey({ key: Buffer.concat([ED_PKCS8, seed]), format: "der", type: "pkcs8" });
const xPrivate = (priv: Uint8Array): KeyObject =>
  createPrivateKey({ key: Buffer.concat([X_PKCS8, priv]), format: "der", type: "pkcs8" });
const rawPublic = (k: KeyObject): Buffer => createPublicKey(k).export({ format: "der", type: "spki" }).subarray(12);
const edSign = (seed: Uint8Array, msg: Uint8Array): Buffer => sign(null, msg, edPrivate(seed));

/** libsodium's small-order Ed25519 keys (top bit of the last byte cleared), refused by every verification. */
const SMALL_ORDER = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

function edVerify(pub: Uint8Array, msg: Uint8Array, sig: Uint8Array): boolean {
  const cleared = Buffer.from(pub);
  cleared[31] &= 0x7f;
  if (SMALL_ORDER.includes(cleared.toString("hex")) || sig.length !== 64) return false;
  const key = createPublicKey({ key: Buffer.concat([ED_SPKI, pub]), format: "der", type: "spki" });
  return verify(null, msg, key, sig);
}

function x25519(priv: Uint8Array, pub: Uint8Array): Buffer {
  const out = diffieHellman({
    privateKey: xPrivate(priv),
    publicKey: createPublicKey({ key: Buffer.concat([X_SPKI, pub]), format: "der", type: "spki" }),
  });
  if (out.every((b) => b === 0)) throw new Error("all-zero X25519 output");
  return out;
}

const hkdf = (ikm: Uint8Array, salt: Uint8Array, info: Uint8Array): Buffer =>
  Buffer.from(hkdfSync("sha256", ikm, salt, info, 32));
const hmac = (key: Uint8Array, msg: Uint8Array): Buffer => createHmac("sha256", key).update(msg).digest();

// ---------------------------------------------------------------------------------------------------------------------
// Identities, rooms, envelopes (PROTOCOL.md: Keys, Room secrets, The join proof, The envelope, The signed plaintext)

interface Identity {
  seed: Buffer;
  pub: Buffer;
  kxPriv: Buffer;
  kxPub: Buffer;
  kxSig: Buffer;
}

function identity(seed: Buffer = randomBytes(32), kxPriv: Buffer = randomBytes(32)): Identity {
  const pub = rawPublic(edPrivate(seed));
  const kxPub = rawPublic(xPrivate(kxPriv));
  const kxSig = edSign(seed, Buffer.concat([label("aeschat v2 kx"), pub, kxPub]));
  return { seed, pub, kxPriv, kxPub, kxSig };
}

const fingerprint = (pub: Uint8Array): string =>
  createHash("sha256").update(Buffer.concat([label("aeschat v2 fingerprint"), pub])).digest().subarray(0, 20)
    .toString("hex");

interface RoomKeys {
  master: Buffer;
  enc: Buffer;
  mac: Buffer;
  accessSeed: Buffer;
  accessPub: Buffer;
}

function roomKeys(passphrase: string, salt: Uint8Array, iterations: number): RoomKeys {
  assert(iterations >= 100000 && iterations <= 10000000);
  const master = pbkdf2Sync(utf8(passphrase.normalize("NFC")), salt, iterations, 32, "sha256");
  const empty = Buffer.alloc(0);
  const accessSeed = hkdf(master, empty, utf8("aeschat v1 access"));
  return {
    master,
    enc: hkdf(master, empty, utf8("aeschat v1 enc")),
    mac: hkdf(master, empty, utf8("aeschat v1 mac")),
    accessSeed,
    accessPub: rawPublic(edPrivate(accessSeed)),
  };
}

/** What both sides know of one room instance: its keys and the values every signature binds. */
interface Room {
  name: string;
  keys: RoomKeys;
  serverPub: Buffer;
  epoch: number;
}

const joinInput = (serverPub: Buffer, nonce: Buffer, room: string, nick: string, pub: Buffer): Buffer =>
  Buffer.concat([label("aeschat v2 join"), serverPub, nonce, lp(room), lp(nick), pub]);

interface Content {
  type: string;
  body: string;
  device: Buffer;
  n: number;
  acked: number;
  void: [number, number][];
}

type Envelope = { v: number; room: string; from: string; id: string; ts: number; iv: string; ct: string; tag: string };

function roomSigInput(room: Room, from: string, id: Buffer, ts: number, c: Content, pub: Buffer): Buffer {
  return Buffer.concat([
    label("aeschat v2 room-msg"),
    room.serverPub,
    lp(room.name),
    room.keys.accessPub,
    u32(room.epoch),
    lp(from),
    id,
    u64(ts),
    lp(c.type),
    lp32(c.body),
    pub,
    c.device,
    u64(c.n),
    u64(c.acked),
    u16(c.void.length),
    ...c.void.flatMap(([first, last]) => [u64(first), u64(last)]),
  ]);
}

const macInput = (v: number, room: string, from: string, id: Buffer, ts: number, iv: Buffer, ct: Buffer): Buffer =>
  Buffer.concat([label(`aeschat v${v} msg`), lp(room), lp(from), id, u64(ts), iv, ct]);

function seal(
  room: Room,
  me: Identity,
  from: string,
  c: Content,
  fixed: { id?: Buffer; ts?: number; iv?: Buffer } = {},
): Envelope {
  const id = fixed.id ?? randomBytes(16);
  const ts = fixed.ts ?? Date.now();
  const iv = fixed.iv ?? randomBytes(16);
  const sig = edSign(me.seed, roomSigInput(room, from, id, ts, c, me.pub));
  const pt = JSON.stringify({
    type: c.type,
    body: c.body,
    key: b64(me.pub),
    device: b64(c.device),
    n: c.n,
    acked: c.acked,
    void: c.void,
    sig: b64(sig),
  });
  const cipher = createCipheriv("aes-256-cbc", room.keys.enc, iv);
  const ct = Buffer.concat([cipher.update(utf8(pt)), cipher.final()]);
  const tag = hmac(room.keys.mac, macInput(2, room.name, from, id, ts, iv, ct));
  return { v: 2, room: room.name, from, id: b64(id), ts, iv: b64(iv), ct: b64(ct), tag: b64(tag) };
}

interface Opened extends Content {
  from: string;
  id: string;
  ts: number;
  key: Buffer;
}

const isInteger = (x: unknown): x is number => typeof x === "number" && Number.isInteger(x) && x >= 0 && x < 2 ** 53;

/** Opens a v2 room envelope as PROTOCOL.md's "Opening" and "The signed plaintext" say; throws on any failure. */
function open(room: Room, env: Record<string, unknown>): Opened {
  const members = Object.keys(env).sort().join(",");
  assertEquals(members, "ct,from,id,iv,room,tag,ts,v", "the eight envelope members");
  assertEquals(env.v, 2);
  assert(typeof env.from === "string" && isInteger(env.ts));
  assertEquals(env.room, room.name, "the envelope names the room it was delivered for");
  const id = unb64(env.id, 16), iv = unb64(env.iv, 16), ct = unb64(env.ct), tag = unb64(env.tag, 32);
  assert(ct.length % 16 === 0 && ct.length >= 16 && ct.length <= 102400);
  const expected = hmac(room.keys.mac, macInput(2, room.name, env.from, id, env.ts, iv, ct));
  assert(timingSafeEqual(expected, tag), "the tag verifies");
  const decipher = createDecipheriv("aes-256-cbc", room.keys.enc, iv);
  const pt = Buffer.concat([decipher.update(ct), decipher.final()]);
  const p = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(pt));
  assert(typeof p.type === "string" && /^[a-z][a-z0-9_]{0,31}$/.test(p.type));
  assert(typeof p.body === "string" && isInteger(p.n) && p.n >= 1 && isInteger(p.acked) && p.acked < p.n);
  assert(Array.isArray(p.void) && p.void.length <= 16);
  const key = unb64(p.key, 32);
  const c: Content = { type: p.type, body: p.body, device: unb64(p.device, 16), n: p.n, acked: p.acked, void: p.void };
  assert(edVerify(key, roomSigInput(room, env.from, id, env.ts, c, key), unb64(p.sig, 64)), "the signature verifies");
  return { ...c, from: env.from, id: env.id as string, ts: env.ts, key };
}

/** PROTOCOL.md "Sequence", receiver side, for messages arriving forward: what each arrival is. */
class SequenceCheck {
  #highest = new Map<string, number>();
  #missing = new Map<string, Set<number>>();

  arrive(m: Opened): "first" | "next" | "after a gap" | "late" | "replay" {
    const who = `${b64(m.key)}/${b64(m.device)}`;
    const missing = this.#missing.get(who) ?? new Set<number>();
    this.#missing.set(who, missing);
    for (const [first, last] of m.void) for (let i = first; i <= last; i++) missing.delete(i);
    const highest = this.#highest.get(who);
    if (highest === undefined) {
      this.#highest.set(who, m.n);
      return "first";
    }
    if (m.n > highest) {
      for (let i = highest + 1; i < m.n; i++) missing.add(i);
      this.#highest.set(who, m.n);
      return m.n === highest + 1 ? "next" : "after a gap";
    }
    if (missing.delete(m.n)) return "late";
    return "replay";
  }

  /** Missing numbers at or below the largest `acked` received: withheld. */
  withheld(m: Opened): number[] {
    const who = `${b64(m.key)}/${b64(m.device)}`;
    return [...(this.#missing.get(who) ?? [])].filter((n) => n <= m.acked);
  }
}

// Direct messages (PROTOCOL.md: Direct messages)

type DirectEnvelope = {
  v: number;
  from: string;
  to: string;
  id: string;
  ts: number;
  key: string;
  tokey: string;
  kx: string;
  epk: string;
  nonce: string;
  ct: string;
};

const dmSigInput =
  (serverPub: Buffer, from: string, to: string, id: Buffer, ts: number, fromKey: Buffer) =>
  (toKey: Buffer, type: string, body: string): Buffer =>
    Buffer.concat([
      label("aeschat v2 dm-sig"),
      serverPub,
      lp(from),
      lp(to),
      id,
      u64(ts),
      fromKey,
      toKey,
      lp(type),
      lp32(body),
    ]);

interface DirectSeal {
  serverPub: Buffer;
  me: Identity;
  from: string;
  to: string;
  toKey: Buffer;
  toKx: Buffer;
  type: string;
  body: string;
}

/** Both envelopes of a direct message: for the recipient (role 1) and the sender's own copy (role 2). */
function sealDirect(
  d: DirectSeal,
  fixed: { id?: Buffer; ts?: number; eph?: [Buffer, Buffer]; nonces?: [Buffer, Buffer] } = {},
): [DirectEnvelope, DirectEnvelope] {
  const id = fixed.id ?? randomBytes(16);
  const ts = fixed.ts ?? Date.now();
  const sig = edSign(d.me.seed, dmSigInput(d.serverPub, d.from, d.to, id, ts, d.me.pub)(d.toKey, d.type, d.body));
  const pt = utf8(JSON.stringify({ type: d.type, body: d.body, sig: b64(sig) }));
  const one = (role: 1 | 2): DirectEnvelope => {
    const R = role === 1 ? d.toKx : d.me.kxPub;
    const e = fixed.eph?.[role - 1] ?? randomBytes(32);
    const epk = rawPublic(xPrivate(e));
    const nonce = fixed.nonces?.[role - 1] ?? randomBytes(12);
    const info = Buffer.concat([
      label("aeschat v2 dm"),
      d.serverPub,
      d.me.pub,
      d.toKey,
      Buffer.of(role),
      d.me.kxPub,
      R,
    ]);
    const key = hkdf(Buffer.concat([x25519(e, R), x25519(d.me.kxPriv, R)]), epk, info);
    const aad = Buffer.concat([
      label("aeschat v2 dm"),
      lp(d.from),
      lp(d.to),
      id,
      u64(ts),
      d.me.pub,
      d.toKey,
      d.me.kxPub,
      epk,
    ]);
    const cipher = createCipheriv("aes-256-gcm", key, nonce);
    cipher.setAAD(aad);
    const ct = Buffer.concat([cipher.update(pt), cipher.final(), cipher.getAuthTag()]);
    return {
      v: 2,
      from: d.from,
      to: d.to,
      id: b64(id),
      ts,
      key: b64(d.me.pub),
      tokey: b64(d.toKey),
      kx: b64(d.me.kxPub),
      epk: b64(epk),
      nonce: b64(nonce),
      ct: b64(ct),
    };
  };
  return [one(1), one(2)];
}

/** Opens a direct envelope as its recipient (role 1) or its sender (role 2); throws on any failure. */
function openDirect(serverPub: Buffer, me: Identity, env: Record<string, unknown>) {
  assertEquals(Object.keys(env).sort().join(","), "ct,epk,from,id,key,kx,nonce,to,tokey,ts,v");
  assert(env.v === 2 && typeof env.from === "string" && typeof env.to === "string" && isInteger(env.ts));
  const id = unb64(env.id, 16), fromKey = unb64(env.key, 32), toKey = unb64(env.tokey, 32);
  const kx = unb64(env.kx, 32), epk = unb64(env.epk, 32), nonce = unb64(env.nonce, 12), ct = unb64(env.ct);
  assert(ct.length >= 17 && ct.length <= 102400);
  const role = fromKey.equals(me.pub) ? 2 : toKey.equals(me.pub) ? 1 : 0;
  assert(role !== 0, "the envelope is for me");
  const R = me.kxPub;
  const info = Buffer.concat([label("aeschat v2 dm"), serverPub, fromKey, toKey, Buffer.of(role), kx, R]);
  const key = hkdf(Buffer.concat([x25519(me.kxPriv, epk), x25519(me.kxPriv, kx)]), epk, info);
  const aad = Buffer.concat([
    label("aeschat v2 dm"),
    lp(env.from),
    lp(env.to),
    id,
    u64(env.ts),
    fromKey,
    toKey,
    kx,
    epk,
  ]);
  const decipher = createDecipheriv("aes-256-gcm", key, nonce);
  decipher.setAAD(aad);
  decipher.setAuthTag(ct.subarray(ct.length - 16));
  const pt = Buffer.concat([decipher.update(ct.subarray(0, ct.length - 16)), decipher.final()]);
  const p = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(pt));
  assert(typeof p.type === "string" && /^[a-z][a-z0-9_]{0,31}$/.test(p.type) && typeof p.body === "string");
  const input = dmSigInput(serverPub, env.from, env.to, id, env.ts, fromKey)(toKey, p.type, p.body);
  assert(edVerify(fromKey, input, unb64(p.sig, 64)), "the direct message's signature verifies");
  return { from: env.from, to: env.to, type: p.type as string, body: p.body as string, key: fromKey, role };
}

// ---------------------------------------------------------------------------------------------------------------------
// Frames and a session (PROTOCOL.md: Transport and frames, Session, Client and Server messages)

type Frame = Record<string, unknown> & { type: string };

class Connection {
  #conn: Deno.TcpConn;
  #frames: Frame[] = [];
  #waiters = new Set<() => void>();
  #closed = false;
  readonly done: Promise<void>;

  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.done = this.#read();
  }

  async #read(): Promise<void> {
    let buf = new Uint8Array(0);
    const chunk = new Uint8Array(65536);
    try {
      while (true) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        const joined = new Uint8Array(buf.length + n);
        joined.set(buf);
        joined.set(chunk.subarray(0, n), buf.length);
        buf = joined;
        while (buf.length >= 4) {
          const length = new DataView(buf.buffer, buf.byteOffset).getUint32(0);
          if (buf.length < 4 + length) break;
          const frame = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(buf.subarray(4, 4 + length)));
          buf = buf.subarray(4 + length);
          if (frame.type === "ping") void this.send({ type: "pong", ...("data" in frame ? { data: frame.data } : {}) });
          else this.#frames.push(frame);
        }
        for (const w of this.#waiters) w();
      }
    } catch {
      // a reset connection ends like a closed one: whoever waits for a frame is told it is closed
    } finally {
      this.#closed = true;
      for (const w of this.#waiters) w();
    }
  }

  async send(message: Frame): Promise<void> {
    const body = utf8(JSON.stringify(message));
    const frame = Buffer.concat([u32(body.length), body]);
    for (let written = 0; written < frame.length;) written += await this.#conn.write(frame.subarray(written));
  }

  /** The first frame not yet taken that passes `test` (an error frame fails the wait), within a generous deadline. */
  next(test: (f: Frame) => boolean, what: string, timeoutMs = 30_000): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const i = this.#frames.findIndex((f) => test(f) || f.type === "error" || f.type === "bye");
        if (i >= 0) {
          const [f] = this.#frames.splice(i, 1);
          finish();
          if (test(f)) resolve(f);
          else reject(new Error(`waiting for ${what}, got ${JSON.stringify(f)}`));
        } else if (this.#closed) {
          finish();
          reject(new Error(`connection closed waiting for ${what}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out waiting for ${what}; frames: ${JSON.stringify(this.#frames).slice(0, 2000)}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
      check();
    });
  }

  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#conn.close();
      } catch {
        // already closed
      }
    }
    await this.done.catch(() => {});
  }
}

/** One logged-in independent client. */
class Client {
  readonly me = identity();
  readonly device = randomBytes(16);
  readonly rooms = new Map<string, Room & { n: number; settled: number }>();
  readonly sequence = new SequenceCheck();
  conn!: Connection;
  serverPub!: Buffer;
  nick!: string;

  async connect(port: number, nick: string): Promise<void> {
    this.conn = new Connection(await Deno.connect({ hostname: "127.0.0.1", port }));
    const clientNonce = randomBytes(32);
    await this.conn.send({ type: "hello", version: 2, nonce: b64(clientNonce) });
    const server = await this.conn.next((f) => f.type === "server", "server");
    assertEquals(server.server, "aeschat");
    assertEquals(server.version, 2);
    this.serverPub = unb64(server.key, 32);
    const serverNonce = unb64(server.nonce, 32);
    const serverInput = Buffer.concat([label("aeschat v2 server"), clientNonce, serverNonce]);
    assert(edVerify(this.serverPub, serverInput, unb64(server.signature, 64)), "the server's signature verifies");
    const loginInput = Buffer.concat([
      label("aeschat v2 login"),
      this.serverPub,
      serverNonce,
      clientNonce,
      this.me.pub,
      lp(nick),
    ]);
    await this.conn.send({
      type: "login",
      nick,
      key: b64(this.me.pub),
      kx: b64(this.me.kxPub),
      kx_sig: b64(this.me.kxSig),
      signature: b64(edSign(this.me.seed, loginInput)),
    });
    const welcome = await this.conn.next((f) => f.type === "welcome", "welcome");
    assertEquals((welcome.nick as string).toLowerCase(), nick.toLowerCase());
    assertEquals(welcome.registered, true);
    this.nick = welcome.nick as string;
  }

  /** Joins (creating when the challenge carries no salt); returns `joined`. */
  async join(name: string, passphrase: string): Promise<Frame> {
    await this.conn.send({ type: "join", room: name });
    const challenge = await this.conn.next((f) => f.type === "challenge", "challenge");
    const canonical = challenge.room as string;
    assertEquals(canonical.toLowerCase(), name.toLowerCase());
    const nonce = unb64(challenge.nonce, 32);
    let keys: RoomKeys, epoch: number;
    const create: Record<string, unknown> = {};
    if (challenge.salt === undefined) {
      const salt = randomBytes(16);
      keys = roomKeys(passphrase, salt, 100000);
      epoch = 0;
      Object.assign(create, { salt: b64(salt), iterations: 100000, access_pub: b64(keys.accessPub) });
    } else {
      assert(isInteger(challenge.iterations) && isInteger(challenge.epoch));
      keys = roomKeys(passphrase, unb64(challenge.salt, 16), challenge.iterations);
      assert(keys.accessPub.equals(unb64(challenge.access_pub, 32)), "the passphrase gives the room's access key");
      epoch = challenge.epoch;
    }
    const proof = sign(
      null,
      joinInput(this.serverPub, nonce, canonical, this.nick, this.me.pub),
      edPrivate(keys.accessSeed),
    );
    await this.conn.send({ type: "prove", room: canonical, proof: b64(proof), ...create });
    const joined = await this.conn.next((f) => f.type === "joined", "joined");
    assertEquals(joined.room, canonical);
    assertEquals(joined.epoch, epoch);
    this.rooms.set(canonical, { name: canonical, keys, serverPub: this.serverPub, epoch, n: 0, settled: 0 });
    return joined;
  }

  /** Seals, sends and waits for the ack of one text; returns the envelope. */
  async say(roomName: string, body: string): Promise<Envelope> {
    const room = this.rooms.get(roomName)!;
    const n = ++room.n;
    const env = seal(room, this.me, this.nick, {
      type: "text",
      body,
      device: this.device,
      n,
      acked: room.settled,
      void: [],
    });
    await this.conn.send({ type: "send", envelope: env });
    const ack = await this.conn.next((f) => f.type === "ack" && f.id === env.id, `ack of ${body}`);
    assert(isInteger(ack.seq));
    room.settled = n;
    return env;
  }

  /** Opens a relayed room message and runs it through the sequence rules. */
  receive(roomName: string, relayed: Frame | Record<string, unknown>): Opened & { arrival: string } {
    const m = open(this.rooms.get(roomName)!, relayed.envelope as Record<string, unknown>);
    const arrival = this.sequence.arrive(m);
    assertEquals(this.sequence.withheld(m), [], "nothing withheld");
    return { ...m, arrival };
  }
}

// ---------------------------------------------------------------------------------------------------------------------

Deno.test("the independent client reproduces PROTOCOL.md's worked example", () => {
  const server = hex("404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f");
  const serverPub = rawPublic(edPrivate(server));
  assertEquals(serverPub.toString("hex"), vectors.server_pub);
  assertEquals(fingerprint(serverPub), vectors.server_fingerprint);
  const alice = identity(
    hex("606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"),
    hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"),
  );
  const bob = identity(
    hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"),
    hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"),
  );
  assertEquals(alice.pub.toString("hex"), vectors.alice_pub);
  assertEquals(alice.kxSig.toString("hex"), vectors.alice_kx_signature);
  assertEquals(fingerprint(alice.pub), vectors.alice_fingerprint);
  const clientNonce = hex("a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf");
  const serverNonce = hex("c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf");
  const serverInput = Buffer.concat([label("aeschat v2 server"), clientNonce, serverNonce]);
  assertEquals(edSign(server, serverInput).toString("hex"), vectors.server_signature);
  const loginInput = Buffer.concat([
    label("aeschat v2 login"),
    serverPub,
    serverNonce,
    clientNonce,
    alice.pub,
    lp("alice"),
  ]);
  assertEquals(edSign(alice.seed, loginInput).toString("hex"), vectors.login_signature);

  const keys = roomKeys("correct horse battery staple", hex("000102030405060708090a0b0c0d0e0f"), 100000);
  assertEquals(keys.accessPub.toString("hex"), vectors.access_pub);
  // (the intermediate values PROTOCOL.md's worked example lists)
  assertEquals([keys.master, keys.enc, keys.mac, keys.accessSeed].map((k) => k.toString("hex")), [
    "49d49c25f597846209f0d92e7770ab64e1c75e94b4ce6c509265ee67175d2a1e",
    "91a514c5bf925fe5dd29076a6ae0b5c6de429522c663c4f614cb15f59aed55f8",
    "34d165f71d79e339ebe3fc9f75ab2880cfb86686f5b19f17d95ae6d2017390d2",
    "56f24c336b1316645bbbf39e90613ee065104dafa337d8fc0180a71875862cfa",
  ]);
  const nonce = hex("202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f");
  const proof = sign(null, joinInput(serverPub, nonce, "general", "alice", alice.pub), edPrivate(keys.accessSeed));
  assertEquals(proof.toString("hex"), vectors.join_proof);

  const room: Room = { name: "general", keys, serverPub, epoch: 0 };
  const content: Content = {
    type: "text",
    body: "hello",
    device: hex("e0e1e2e3e4e5e6e7e8e9eaebecedeeef"),
    n: 1,
    acked: 0,
    void: [],
  };
  const fixed = {
    id: hex("000102030405060708090a0b0c0d0e0f"),
    ts: 1700000000000,
    iv: hex("101112131415161718191a1b1c1d1e1f"),
  };
  assertEquals(JSON.stringify(seal(room, alice, "alice", content, fixed)), vectors.envelope);
  assertEquals(open(room, JSON.parse(vectors.envelope)).body, "hello");

  const e = Buffer.alloc(32, 0x11), epk = rawPublic(xPrivate(e));
  const es = x25519(e, bob.kxPub), ss = x25519(alice.kxPriv, bob.kxPub);
  const dmInfo = Buffer.concat([
    label("aeschat v2 dm"),
    serverPub,
    alice.pub,
    bob.pub,
    Buffer.of(1),
    alice.kxPub,
    bob.kxPub,
  ]);
  assertEquals([epk, es, ss, hkdf(Buffer.concat([es, ss]), epk, dmInfo)].map((k) => k.toString("hex")), [
    "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13",
    "5035c91b66814f8a39664a505e0a50b6375ee0ef9b3fe7220bde56dc2dc77746",
    "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742",
    "503520ef3c126302ec16e9d288b9c931fe00b24e36ce7e537150cc25fd3ff6cf",
  ]);
  const [forBob, copy] = sealDirect(
    { serverPub, me: alice, from: "alice", to: "bob", toKey: bob.pub, toKx: bob.kxPub, type: "text", body: "hi bob" },
    {
      id: hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"),
      ts: 1700000001000,
      eph: [Buffer.alloc(32, 0x11), Buffer.alloc(32, 0x22)],
      nonces: [hex("303132333435363738393a3b"), hex("404142434445464748494a4b")],
    },
  );
  assertEquals(JSON.stringify(forBob), vectors.dm_envelope);
  assertEquals(JSON.stringify(copy), vectors.dm_copy);
  assertEquals(openDirect(serverPub, bob, JSON.parse(vectors.dm_envelope)).body, "hi bob");
  assertEquals(openDirect(serverPub, alice, JSON.parse(vectors.dm_copy)).role, 2);
});

/** A relayed room message from this nick. */
const from = (nick: string) => (f: Frame): boolean =>
  f.type === "message" && (f.envelope as Record<string, unknown>).from === nick;

/** The JSON lines our client printed that pass `test`, once there is one. */
async function shown(
  program: Program,
  test: (line: Record<string, unknown>) => boolean,
  what: string,
): Promise<Record<string, unknown>> {
  await program.waitFor(() => jsonLines(program.stdout).some(test), { timeoutMs: 30_000, what });
  return jsonLines(program.stdout).find(test)!;
}

Deno.test("an independent client written from PROTOCOL.md interoperates with the real server and client", async () => {
  const server = await startServer();
  const homes: string[] = [];
  const programs: Program[] = [];
  const alice = new Client(), bob = new Client();
  const others: Client[] = [];
  const room = "indie", passphrase = "tr0ub4dor & 3";
  try {
    // Two independent clients: one creates the room, the other joins it with the passphrase.
    await alice.connect(server.port, "alice");
    await bob.connect(server.port, "bob");
    assert(alice.serverPub.equals(bob.serverPub));
    const created = await alice.join(room, passphrase);
    assertEquals(created.history, []);
    const first = await alice.say(room, "first, from alice");

    const joined = await bob.join(room, passphrase);
    const history = joined.history as Frame[];
    assertEquals(history.length, 1);
    const h = bob.receive(room, history[0]);
    assertEquals([h.from, h.body, h.type, h.n, h.acked, h.arrival], [
      "alice",
      "first, from alice",
      "text",
      1,
      0,
      "first",
    ]);
    assert(h.key.equals(alice.me.pub));
    assertEquals(h.id, first.id);
    const members = joined.members as { nick: string; key: string }[];
    assertEquals(members.find((m) => m.nick === "alice")?.key, b64(alice.me.pub));

    await alice.say(room, "second, live");
    const live = bob.receive(room, await bob.conn.next(from("alice"), "alice's live message"));
    assertEquals([live.body, live.n, live.acked, live.arrival], ["second, live", 2, 1, "next"]);

    // dave says something and leaves before our client comes: his line is the first sight of him there.
    const dave = new Client();
    others.push(dave);
    await dave.connect(server.port, "dave");
    await dave.join(room, passphrase);
    const daves = await dave.say(room, "dave was here");
    await dave.conn.send({ type: "part", room });
    await dave.conn.next((f) => f.type === "parted" && f.room === room, "parted");
    for (const c of [alice, bob]) {
      const m = c.receive(room, await c.conn.next(from("dave"), "dave's line"));
      assertEquals([m.body, m.arrival], ["dave was here", "first"]);
    }

    // Our client joins the same room: it shows dave's line (from history) as new, with its text, and a live line of
    // bob's, whom it saw first in the member list, as pinned.
    const home = await Deno.makeTempDir({ prefix: "aeschat-indie-" });
    homes.push(home);
    const ours = spawnTask("client", {
      args: ["--port", String(server.port), "--nick", "carol", "--room", room, "--json", "--min-iterations", "100000"],
      env: { AESCHAT_HOME: home, AESCHAT_PASSPHRASE: passphrase },
      stdin: true,
    });
    programs.push(ours);
    const presence = await alice.conn.next(
      (f) => f.type === "presence" && f.event === "join" && f.nick === "carol",
      "carol's presence",
    );
    const carolKey = unb64(presence.key, 32);
    const fromHistory = await shown(ours, (l) => l.text === "second, live", "alice's history in our client");
    assertEquals([fromHistory.from, fromHistory.room, fromHistory.history], ["alice", room, true]);
    assertEquals(fromHistory.fingerprint, fingerprint(alice.me.pub));

    const davesLine = await shown(ours, (l) => l.id === daves.id, "dave's line in our client");
    assertEquals([davesLine.from, davesLine.text, davesLine.type, davesLine.history], [
      "dave",
      "dave was here",
      "text",
      true,
    ]);
    assertEquals([davesLine.trust, davesLine.fingerprint, davesLine.marks], ["new", fingerprint(dave.me.pub), []]);
    const bobs = await bob.say(room, "hello carol, from an independent client");
    const line = await shown(ours, (l) => l.id === bobs.id, "bob's line in our client");
    assertEquals(line.text, "hello carol, from an independent client");
    assertEquals([line.from, line.type, line.trust, line.history], ["bob", "text", "pinned", false]);
    assertEquals(line.fingerprint, fingerprint(bob.me.pub));
    assertEquals(line.marks, []);
    // (alice sees bob's line too, in sequence)
    const atAlice = alice.receive(room, await alice.conn.next(from("bob"), "bob's line at alice"));
    assertEquals([atAlice.from, atAlice.n, atAlice.arrival], ["bob", 1, "first"]);

    // A line of our client's opens and verifies in both independent clients.
    await ours.write("hello from the reference client\n");
    for (const c of [alice, bob]) {
      const m = c.receive(room, await c.conn.next(from("carol"), "carol's line"));
      assertEquals([m.from, m.type, m.body, m.n, m.acked, m.void, m.arrival], [
        "carol",
        "text",
        "hello from the reference client",
        1,
        0,
        [],
        "first",
      ]);
      assert(m.key.equals(carolKey), "signed by the key the server lists for carol");
    }

    // A direct message from alice to carol: lookup, kx_sig checked, Noise K seal; our client shows it.
    await alice.conn.send({ type: "lookup", nick: "carol" });
    const id = await alice.conn.next((f) => f.type === "identity", "carol's identity");
    assertEquals(id.nick, "carol");
    assert(unb64(id.key, 32).equals(carolKey));
    const carolKx = unb64(id.kx, 32);
    assert(edVerify(carolKey, Buffer.concat([label("aeschat v2 kx"), carolKey, carolKx]), unb64(id.kx_sig, 64)));
    const [envelope, copy] = sealDirect({
      serverPub: alice.serverPub,
      me: alice.me,
      from: alice.nick,
      to: "carol",
      toKey: carolKey,
      toKx: carolKx,
      type: "text",
      body: "a direct word for carol",
    });
    await alice.conn.send({ type: "direct", to: "carol", envelope, copy });
    const dmAck = await alice.conn.next((f) => f.type === "ack" && f.id === envelope.id, "the direct's ack");
    assert(isInteger(dmAck.seq));
    const dm = await shown(ours, (l) => l.id === envelope.id, "alice's direct message in our client");
    assertEquals([dm.from, dm.to, dm.room, dm.type, dm.text], [
      "alice",
      "carol",
      null,
      "text",
      "a direct word for carol",
    ]);
    assertEquals([dm.fingerprint, dm.trust, dm.history], [fingerprint(alice.me.pub), "pinned", false]);
    await alice.conn.next((f) => f.type === "delivered" && f.id === envelope.id, "delivered");

    await ours.closeStdin();
    assertEquals((await exited(ours)).code, 0, ours.stderr);

    // And one back: our client, in --to mode with the same home, sends; alice opens it (role 1) and verifies it.
    const back = spawnTask("client", {
      args: ["--port", String(server.port), "--nick", "carol", "--to", "alice", "--json"],
      env: { AESCHAT_HOME: home },
      stdin: true,
    });
    programs.push(back);
    await back.write("and a direct word back\n");
    await back.closeStdin();
    const relayed = await alice.conn.next((f) => f.type === "direct", "carol's direct message");
    const opened = openDirect(alice.serverPub, alice.me, relayed.envelope as Record<string, unknown>);
    assertEquals([opened.from, opened.to, opened.type, opened.body, opened.role], [
      "carol",
      "alice",
      "text",
      "and a direct word back",
      1,
    ]);
    assert(opened.key.equals(carolKey));
    assertEquals((await exited(back)).code, 0, back.stderr);

    // alice's own copy of her direct message opens as role 2 (from her inbox).
    await alice.conn.send({ type: "direct_since", after_seq: 0 });
    const inbox = await alice.conn.next((f) => f.type === "direct_since", "alice's inbox");
    const mine = (inbox.messages as Frame[]).map((m) => openDirect(alice.serverPub, alice.me, m.envelope as Frame));
    assertEquals(mine.map((m) => [m.role, m.body]), [[2, "a direct word for carol"], [1, "and a direct word back"]]);
  } finally {
    for (const p of programs) await p.stop();
    await alice.conn?.close();
    await bob.conn?.close();
    for (const c of others) await c.conn?.close();
    await removeServer(server);
    for (const home of homes) await Deno.remove(home, { recursive: true }).catch(() => {});
  }
});
