/**
 * Frames on a byte stream: encodeFrame's layout, and FrameReader across every way a stream can be cut into reads,
 * with the zero-length and size-limit rules.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DEFAULT_MAX_FRAME, encodeFrame, encodeMessage, FrameError, FrameReader, HEADER_BYTES } from "../lib/frame.ts";
import { parseClientMessage, ProtocolError } from "../lib/protocol.ts";
import { concat } from "./support/bytes.ts";

const decoder = new TextDecoder();

function header(length: number): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES);
  new DataView(out.buffer).setUint32(0, length);
  return out;
}

/** Pushes the chunks in order and returns every body, decoded as soon as it is returned. */
function readAll(reader: FrameReader, chunks: Uint8Array[]): string[] {
  const bodies: string[] = [];
  for (const chunk of chunks) for (const body of reader.push(chunk)) bodies.push(decoder.decode(body));
  return bodies;
}

function assertFrameError(fn: () => unknown, code: FrameError["code"], message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof FrameError, `expected a FrameError, got ${err}`);
    assert.equal(err.code, code);
    assert.match(err.message, message);
    return true;
  });
}

const TEXTS = ['{"type":"ping"}', '{"type":"nick","new":"zoë"}', '{"type":"pong","data":"🙂 ok"}'];
const STREAM = concat(TEXTS.map(encodeFrame));

Deno.test("encodeFrame writes a 4-byte big-endian byte length before the UTF-8 body", () => {
  assert.deepEqual([...encodeFrame('{"type":"ping"}')], [0, 0, 0, 15, ...new TextEncoder().encode('{"type":"ping"}')]);
  // Lengths count bytes, not UTF-16 units: "é" is 2 bytes, "🙂" is 4 (2 UTF-16 units).
  assert.deepEqual([...encodeFrame("é🙂").subarray(0, 4)], [0, 0, 0, 6]);
  const big = "x".repeat(0x10203);
  assert.deepEqual([...encodeFrame(big).subarray(0, 4)], [0, 1, 2, 3]);
  assert.equal(encodeFrame(big).length, 4 + 0x10203);
  assert.deepEqual(encodeMessage({ type: "ping" }), encodeFrame('{"type":"ping"}'));
});

Deno.test("encodeFrame turns a lone surrogate into U+FFFD, so the body is always valid UTF-8", () => {
  const frame = encodeFrame("a\uD800b");
  assert.deepEqual([...frame], [0, 0, 0, 5, 0x61, 0xef, 0xbf, 0xbd, 0x62]);
});

Deno.test("FrameReader returns each frame of a stream fed byte by byte exactly when its last byte arrives", () => {
  const reader = new FrameReader();
  const got: string[] = [];
  let ends = 0;
  for (let i = 0; i < STREAM.length; i++) {
    const bodies = reader.push(STREAM.subarray(i, i + 1));
    for (const body of bodies) got.push(decoder.decode(body));
    const end = concat(TEXTS.slice(0, got.length).map(encodeFrame)).length;
    if (bodies.length > 0) {
      assert.equal(i + 1, end, `frame ${got.length} returned at byte ${i + 1}`);
      ends++;
    }
    assert.equal(reader.pending, i + 1 - end, `pending after byte ${i + 1}`);
  }
  assert.equal(ends, 3);
  assert.deepEqual(got, TEXTS);
  assert.equal(reader.pending, 0);
});

Deno.test("FrameReader returns several frames merged in one chunk, in order, and keeps a partial tail", () => {
  const reader = new FrameReader();
  const tail = encodeFrame('{"type":"bye"}');
  assert.deepEqual(readAll(reader, [concat([STREAM, tail.subarray(0, 6)])]), TEXTS);
  assert.equal(reader.pending, 6);
  assert.deepEqual(readAll(reader, [tail.subarray(6)]), ['{"type":"bye"}']);
  assert.equal(reader.pending, 0);
});

Deno.test("FrameReader yields the same frames for every way of cutting a stream into three reads", () => {
  let cuts = 0;
  for (let i = 0; i <= STREAM.length; i++) {
    for (let j = i; j <= STREAM.length; j++) {
      const reader = new FrameReader();
      const chunks = [STREAM.subarray(0, i), STREAM.subarray(i, j), STREAM.subarray(j)];
      assert.deepEqual(readAll(reader, chunks), TEXTS, `cut at ${i} and ${j}`);
      assert.equal(reader.pending, 0);
      cuts++;
    }
  }
  assert.equal(cuts, (STREAM.length + 1) * (STREAM.length + 2) / 2);
});

Deno.test("FrameReader copies a partial frame, so the caller may reuse its read buffer", () => {
  // The connection reads into one buffer again and again; a remainder must not alias it.
  const reader = new FrameReader();
  const buf = new Uint8Array(64);
  const frames = concat([encodeFrame('{"type":"who"}'), encodeFrame('{"type":"rooms"}')]);
  const split = 4 + 14 + 7;
  buf.set(frames.subarray(0, split));
  assert.deepEqual(readAll(reader, [buf.subarray(0, split)]), ['{"type":"who"}']);
  buf.fill(0x7a);
  buf.set(frames.subarray(split));
  assert.deepEqual(readAll(reader, [buf.subarray(0, frames.length - split)]), ['{"type":"rooms"}']);
});

Deno.test("FrameReader grows its buffer for a frame much larger than one read", () => {
  const body = JSON.stringify({ type: "ping", data: "d".repeat(60_000) });
  const frame = encodeFrame(body);
  const reader = new FrameReader();
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < frame.length; at += 1000) chunks.push(frame.subarray(at, at + 1000));
  assert.deepEqual(readAll(reader, [...chunks, encodeFrame('{"type":"pong"}')]), [body, '{"type":"pong"}']);
});

Deno.test("FrameReader refuses length 0 as bad_frame", () => {
  assertFrameError(() => new FrameReader().push(header(0)), "bad_frame", /length 0/);
  // Also after a partial read, and after a good frame in the same chunk.
  const reader = new FrameReader();
  assert.deepEqual(reader.push(new Uint8Array([0, 0])), []);
  assertFrameError(() => reader.push(new Uint8Array([0, 0])), "bad_frame", /length 0/);
});

Deno.test("FrameReader returns the good frames before a bad header in the same chunk, then refuses", () => {
  for (const [bad, code] of [[header(0), "bad_frame"], [header(65537), "frame_too_large"]] as const) {
    const reader = new FrameReader();
    const frames = reader.push(concat([encodeFrame('{"type":"who"}'), encodeFrame('{"type":"ping"}'), bad]));
    assert.deepEqual(frames.map((f) => new TextDecoder().decode(f)), ['{"type":"who"}', '{"type":"ping"}']);
    assert.ok(reader.error instanceof FrameError);
    assert.equal(reader.error.code, code);
    // The stream stays unusable: every later push throws the same error.
    assertFrameError(() => reader.push(encodeFrame('{"type":"ping"}')), code, /Cannot read frame/);
  }
  // Also when the good frame was completed from buffered bytes.
  const reader = new FrameReader();
  const good = encodeFrame('{"type":"who"}');
  assert.deepEqual(reader.push(good.subarray(0, 5)), []);
  assert.equal(reader.push(concat([good.subarray(5), header(0)])).length, 1);
  assert.equal(reader.error?.code, "bad_frame");
  // A good reader has no error.
  assert.equal(new FrameReader().error, undefined);
});

Deno.test("FrameReader refuses a length above the limit from the header alone, and accepts exactly the limit", () => {
  assert.equal(DEFAULT_MAX_FRAME, 65536);
  // Default limit: the header of a 65537-byte frame is enough to refuse it.
  assertFrameError(
    () => new FrameReader().push(header(65537)),
    "frame_too_large",
    /length 65537 exceeds the 65536-byte limit/,
  );
  const exact = JSON.stringify({ type: "ping", data: "x".repeat(65536 - 25) });
  assert.equal(exact.length, 65536);
  assert.deepEqual(readAll(new FrameReader(), [encodeFrame(exact)]), [exact]);
  // A custom limit.
  const reader = new FrameReader({ maxFrame: 1024 });
  const fits = JSON.stringify({ type: "ping", data: "y".repeat(1024 - 25) });
  assert.equal(fits.length, 1024);
  assert.deepEqual(readAll(reader, [encodeFrame(fits)]), [fits]);
  assertFrameError(() => reader.push(header(1025)), "frame_too_large", /length 1025 exceeds the 1024-byte limit/);
  // The length is unsigned: 0xffffffff is a huge length, not -1.
  assertFrameError(
    () => new FrameReader().push(new Uint8Array([0xff, 0xff, 0xff, 0xff])),
    "frame_too_large",
    /length 4294967295 /,
  );
});

Deno.test("FrameReader passes a body through as bytes; invalid UTF-8 is refused by the parser as bad_frame", () => {
  const body = new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]);
  const frames = new FrameReader().push(concat([header(4), body]));
  assert.equal(frames.length, 1);
  assert.deepEqual([...frames[0]], [...body]);
  assert.throws(() => parseClientMessage(frames[0]), (err: unknown) => {
    assert.ok(err instanceof ProtocolError);
    assert.equal(err.code, "bad_frame");
    assert.equal(err.fatal, true);
    assert.match(err.message, /UTF-8/);
    return true;
  });
  // An overlong encoding of "/" and a lone surrogate encoded as UTF-8 are invalid too, not replaced.
  for (const bad of [[0xc0, 0xaf], [0xed, 0xa0, 0x80]]) {
    const text = new Uint8Array([...new TextEncoder().encode('{"type":"ping","data":"'), ...bad, 0x22, 0x7d]);
    assert.throws(
      () => parseClientMessage(text),
      (err: unknown) => err instanceof ProtocolError && err.code === "bad_frame",
    );
  }
});
