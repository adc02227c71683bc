/**
 * Fuzzes the frame reader against a second, obviously correct implementation: seeded byte streams made of valid
 * frames, zero and oversized lengths, truncated frames, partial headers and plain random bytes, cut into random
 * chunks and fed through one reused read buffer exactly as the server's read loop does. Every stream must yield the
 * same frames, the same FrameError at the same point, and the same pending byte count as the reference; anything
 * else (another exception included) fails with the seed and the input.
 *
 * Replay a failure with AESCHAT_FUZZ_SEED=<seed>; scale the run with AESCHAT_FUZZ_SCALE.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeFrame, FrameError, FrameReader, HEADER_BYTES } from "../lib/frame.ts";
import { describeBytes, fuzzCount, fuzzSeed, Rng } from "./support/fuzz.ts";
import { concat } from "./support/bytes.ts";

/** Streams per run (each is one generated input: a byte stream and a way of cutting it). */
const STREAMS = 90_000;
/** Texts round-tripped through encodeFrame and the reader per run. */
const TEXTS = 10_000;

interface Reference {
  /** Complete frame bodies, in order. */
  bodies: Uint8Array[];
  /** End offset of each body in the stream. */
  ends: number[];
  /** The error the stream must raise, and the offset at which its header is complete. */
  error?: { code: "bad_frame" | "frame_too_large"; at: number };
}

/** The reference reader: walks the whole stream at once. */
function referenceFrames(stream: Uint8Array, maxFrame: number): Reference {
  const view = new DataView(stream.buffer, stream.byteOffset, stream.byteLength);
  const ref: Reference = { bodies: [], ends: [] };
  let at = 0;
  while (stream.length - at >= HEADER_BYTES) {
    const length = view.getUint32(at);
    if (length === 0) return { ...ref, error: { code: "bad_frame", at: at + HEADER_BYTES } };
    if (length > maxFrame) return { ...ref, error: { code: "frame_too_large", at: at + HEADER_BYTES } };
    if (stream.length - at - HEADER_BYTES < length) break;
    ref.bodies.push(stream.subarray(at + HEADER_BYTES, at + HEADER_BYTES + length));
    at += HEADER_BYTES + length;
    ref.ends.push(at);
  }
  return ref;
}

function header(length: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, length >>> 0);
  return out;
}

/** A stream of segments: valid frames (some exactly at the limit), bad lengths, truncated tails, random bytes. */
function generateStream(rng: Rng, maxFrame: number): { stream: Uint8Array; kind: string } {
  if (rng.chance(0.15)) return { kind: "random bytes", stream: rng.bytes(rng.int(300)) };
  const parts: Uint8Array[] = [];
  const kinds: string[] = [];
  const segments = rng.range(1, 8);
  for (let s = 0; s < segments; s++) {
    const r = rng.int(100);
    if (r < 70) {
      const n = rng.chance(0.1) ? maxFrame : rng.range(1, Math.min(maxFrame, rng.chance(0.8) ? 40 : maxFrame));
      parts.push(header(n), rng.bytes(n));
      kinds.push(`frame(${n})`);
    } else if (r < 75) {
      parts.push(header(0), rng.bytes(rng.int(8)));
      kinds.push("length 0");
    } else if (r < 82) {
      const n = rng.pick([maxFrame + 1, maxFrame * 2, 0x7fffffff, 0xffffffff, 0x80000000, 0x47455420]);
      parts.push(header(n), rng.bytes(rng.int(8)));
      kinds.push(`oversized(${n})`);
    } else if (r < 90) {
      const n = rng.range(2, maxFrame);
      parts.push(header(n), rng.bytes(rng.int(n)));
      kinds.push(`truncated(${n})`);
      break;
    } else if (r < 95) {
      parts.push(rng.bytes(rng.range(1, 3)));
      kinds.push("partial header");
      break;
    } else {
      parts.push(rng.bytes(rng.range(1, 12)));
      kinds.push("random bytes");
    }
  }
  return { stream: concat(parts), kind: kinds.join(" ") };
}

/** Cuts a stream into chunk sizes: one piece, single bytes, or random sizes. */
function generateCuts(rng: Rng, length: number): number[] {
  const cuts: number[] = [];
  const mode = rng.int(4);
  let left = length;
  while (left > 0) {
    const n = mode === 0 ? left : mode === 1 ? 1 : mode === 2 ? rng.range(1, 7) : rng.range(1, 200);
    cuts.push(Math.min(n, left));
    left -= n;
  }
  return cuts;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Feeds one stream as the server does (one reused read buffer, scribbled over between reads) and compares with the
 * reference. Returns a description of the first disagreement, or undefined.
 */
function checkStream(stream: Uint8Array, options: { maxFrame: number; cuts: number[] }): string | undefined {
  const { maxFrame, cuts } = options;
  const ref = referenceFrames(stream, maxFrame);
  const reader = new FrameReader({ maxFrame });
  const readBuffer = new Uint8Array(Math.max(1, ...cuts));
  const got: Uint8Array[] = [];
  let fed = 0;
  for (const n of cuts) {
    readBuffer.fill(0xaa);
    readBuffer.set(stream.subarray(fed, fed + n), 0);
    const before = fed;
    fed += n;
    let bodies: Uint8Array[];
    try {
      bodies = reader.push(readBuffer.subarray(0, n));
    } catch (err) {
      if (!(err instanceof FrameError)) return `unexpected exception ${String(err)}`;
      if (!ref.error) return `FrameError ${err.code} but the reference expects none`;
      if (err.code !== ref.error.code) return `FrameError ${err.code}, expected ${ref.error.code}`;
      if (!(before < ref.error.at && ref.error.at <= fed)) {
        return `FrameError after ${fed} bytes, expected once byte ${ref.error.at} arrived`;
      }
      // Every frame before the bad header was delivered: a throw means none was left in this chunk.
      if (got.length !== ref.bodies.length) {
        return `${got.length} frames before the error, expected ${ref.bodies.length}`;
      }
      for (let i = 0; i < got.length; i++) if (!sameBytes(got[i], ref.bodies[i])) return `frame ${i} differs`;
      return undefined;
    }
    // The views stay valid only until the next push: copy them now, as the server decodes them now.
    for (const b of bodies) got.push(b.slice());
    if (reader.error) {
      // Good frames came before the bad header in this chunk: all of them were returned, and the error is set.
      if (!ref.error) return `error ${reader.error.code} but the reference expects none`;
      if (reader.error.code !== ref.error.code) return `error ${reader.error.code}, expected ${ref.error.code}`;
      if (!(before < ref.error.at && ref.error.at <= fed)) {
        return `error set after ${fed} bytes, expected at ${ref.error.at}`;
      }
      if (bodies.length === 0) return "error set without frames: push must throw instead";
      if (got.length !== ref.bodies.length) {
        return `${got.length} frames before the error, expected ${ref.bodies.length}`;
      }
      for (let i = 0; i < got.length; i++) if (!sameBytes(got[i], ref.bodies[i])) return `frame ${i} differs`;
      try {
        reader.push(new Uint8Array(1));
        return "push after the error did not throw";
      } catch (err) {
        if (!(err instanceof FrameError) || err.code !== ref.error.code) return `push after the error: ${err}`;
      }
      return undefined;
    }
    if (ref.error && ref.error.at <= fed) return `no FrameError once byte ${ref.error.at} arrived`;
    const complete = ref.ends.filter((end) => end <= fed);
    if (got.length !== complete.length) return `${got.length} frames after ${fed} bytes, expected ${complete.length}`;
    const consumed = complete.length > 0 ? complete[complete.length - 1] : 0;
    if (reader.pending !== fed - consumed) {
      return `pending ${reader.pending} after ${fed} bytes, expected ${fed - consumed}`;
    }
  }
  if (ref.error) return `no FrameError, expected ${ref.error.code}`;
  for (let i = 0; i < got.length; i++) if (!sameBytes(got[i], ref.bodies[i])) return `frame ${i} differs`;
  return undefined;
}

Deno.test(`FrameReader agrees with a reference reader on ${STREAMS} seeded streams cut at random`, () => {
  const seed = fuzzSeed();
  const rng = new Rng(seed, 1);
  const count = fuzzCount(STREAMS);
  const kinds = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const maxFrame = rng.pick([16, 64, 100, 1024]);
    const { stream, kind } = generateStream(rng, maxFrame);
    const cuts = generateCuts(rng, stream.length);
    const problem = checkStream(stream, { maxFrame, cuts });
    if (problem) {
      assert.fail(
        `AESCHAT_FUZZ_SEED=${seed}, input ${i} (${kind}), maxFrame ${maxFrame}, cuts ${
          JSON.stringify(cuts)
        }: ${problem}\n  ${describeBytes(stream)}`,
      );
    }
    const label = kind.split(" ")[0].replace(/\(.*/, "");
    kinds.set(label, (kinds.get(label) ?? 0) + 1);
  }
  // The generator must really produce every kind of stream, or the run proves less than it claims.
  for (const k of ["frame", "length", "oversized", "truncated", "partial", "random"]) {
    assert.ok(
      (kinds.get(k) ?? 0) > count / 100,
      `AESCHAT_FUZZ_SEED=${seed}: too few streams starting with ${k}: ${kinds.get(k)}`,
    );
  }
});

Deno.test(`encodeFrame round-trips ${TEXTS} seeded texts through FrameReader, merged and split`, () => {
  const seed = fuzzSeed();
  const rng = new Rng(seed, 2);
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const count = fuzzCount(TEXTS);
  for (let i = 0; i < count; i += 10) {
    const texts: string[] = [];
    for (let k = 0; k < 10; k++) {
      let s = "";
      const n = rng.range(1, 60);
      for (let j = 0; j < n; j++) {
        const r = rng.float();
        s += r < 0.7
          ? String.fromCharCode(rng.range(0x20, 0x7e))
          : r < 0.9
          ? String.fromCharCode(rng.range(0x80, 0xd7ff))
          : String.fromCodePoint(rng.range(0x10000, 0x10ffff));
      }
      texts.push(s);
    }
    const stream = concat(texts.map((t) => encodeFrame(t)));
    const reader = new FrameReader({ maxFrame: 1024 });
    const got: string[] = [];
    let at = 0;
    for (const n of generateCuts(rng, stream.length)) {
      for (const body of reader.push(stream.slice(at, at + n))) got.push(decoder.decode(body));
      at += n;
    }
    assert.deepEqual(got, texts, `AESCHAT_FUZZ_SEED=${seed}, texts ${i}..${i + 9}`);
    assert.equal(reader.pending, 0, `AESCHAT_FUZZ_SEED=${seed}`);
  }
});

Deno.test("FrameReader refuses length 0 and oversized lengths as typed errors, and waits on truncated frames", () => {
  const cases: { bytes: number[]; code?: string; pending?: number }[] = [
    { bytes: [0, 0, 0, 0], code: "bad_frame" },
    { bytes: [0, 1, 0, 1], code: "frame_too_large" },
    { bytes: [0xff, 0xff, 0xff, 0xff], code: "frame_too_large" },
    // "GET " from an HTTP scanner, and a TLS ClientHello record header, read as lengths.
    { bytes: [0x47, 0x45, 0x54, 0x20], code: "frame_too_large" },
    { bytes: [0x16, 0x03, 0x01, 0x02, 0x00], code: "frame_too_large" },
    { bytes: [0, 0, 0, 5, 1, 2], pending: 6 },
    { bytes: [0, 0], pending: 2 },
    { bytes: [0, 1, 0, 0, ...new Array(10).fill(7)], pending: 14 },
  ];
  for (const c of cases) {
    const reader = new FrameReader({ maxFrame: 65536 });
    if (c.code) {
      assert.throws(
        () => reader.push(new Uint8Array(c.bytes)),
        (err: unknown) => err instanceof FrameError && err.code === c.code,
        `bytes ${c.bytes}`,
      );
    } else {
      assert.deepEqual(reader.push(new Uint8Array(c.bytes)), [], `bytes ${c.bytes}`);
      assert.equal(reader.pending, c.pending, `bytes ${c.bytes}`);
    }
  }
});
