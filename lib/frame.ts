/**
 * Length-prefixed frames over a byte stream: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.
 * The reader copes with frames split across reads and several frames merged in one read.
 *
 * @module
 */

/** Default largest frame body in bytes. */
export const DEFAULT_MAX_FRAME = 65536;
/** Bytes in a frame header. */
export const HEADER_BYTES = 4;

/** Raised for a frame that breaks the framing rules; `code` is the protocol error code. */
export class FrameError extends Error {
  /** The protocol error code: "bad_frame" or "frame_too_large". */
  readonly code: "bad_frame" | "frame_too_large";
  /**
   * @param code the protocol error code
   * @param message a one-line explanation
   */
  constructor(code: "bad_frame" | "frame_too_large", message: string) {
    super(message);
    this.name = "FrameError";
    this.code = code;
  }
}

const encoder = new TextEncoder();
/** Texts up to this many UTF-16 code units are encoded into a reused buffer and copied out at their exact size. */
const SCRATCH_UNITS = 64 * 1024;
let scratch: Uint8Array<ArrayBuffer> | undefined;

/**
 * Encodes text as one frame: header and body in a single buffer, so it is written with one call.
 *
 * @example
 * ```ts
 * encodeFrame('{"type":"ping"}'); // Uint8Array [0, 0, 0, 15, 123, ...]
 * ```
 * @param text the JSON text of one message
 * @returns the frame bytes
 */
export function encodeFrame(text: string): Uint8Array<ArrayBuffer> {
  // UTF-8 needs at most 3 bytes per UTF-16 code unit.
  if (text.length > SCRATCH_UNITS) {
    const out = new Uint8Array(HEADER_BYTES + text.length * 3);
    const { written } = encoder.encodeInto(text, out.subarray(HEADER_BYTES));
    new DataView(out.buffer).setUint32(0, written);
    return out.subarray(0, HEADER_BYTES + written) as Uint8Array<ArrayBuffer>;
  }
  // A server keeps frames queued for slow readers: an exact-size copy holds a third of a worst-case buffer.
  scratch ??= new Uint8Array(HEADER_BYTES + SCRATCH_UNITS * 3);
  const { written } = encoder.encodeInto(text, scratch.subarray(HEADER_BYTES));
  const out = scratch.slice(0, HEADER_BYTES + written);
  new DataView(out.buffer).setUint32(0, written);
  return out;
}

/**
 * Encodes a message object as one frame.
 *
 * @example
 * ```ts
 * encodeMessage({ type: "ping" });
 * ```
 * @param message any JSON-serializable object
 * @returns the frame bytes
 */
export function encodeMessage(message: object): Uint8Array<ArrayBuffer> {
  return encodeFrame(JSON.stringify(message));
}

/**
 * Splits a byte stream into frame bodies. Feed it every chunk read from the socket, in order.
 *
 * @example
 * ```ts
 * const reader = new FrameReader({ maxFrame: 65536 });
 * for (const body of reader.push(chunk)) handle(body);
 * ```
 */
export class FrameReader {
  #maxFrame: number;
  #buffer: Uint8Array = new Uint8Array(0);
  #start = 0;
  #end = 0;
  #error: FrameError | undefined;

  /** @param options.maxFrame largest accepted body in bytes */
  constructor(options: { maxFrame?: number } = {}) {
    this.#maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
  }

  /** Bytes received that are not yet part of a complete frame (a frame left half-sent). */
  get pending(): number {
    return this.#end - this.#start;
  }

  /**
   * The header that made the stream unusable (a zero length or one above the limit), once it has been read. When
   * the same chunk completed good frames before it, {@link FrameReader.push} returns those and sets this instead of
   * throwing: handle them, then check it.
   */
  get error(): FrameError | undefined {
    return this.#error;
  }

  /**
   * Adds a chunk and returns the bodies of every frame it completes. The bodies are views that stay valid
   * only until the next call; decode them before pushing again.
   *
   * @param chunk bytes just read
   * @returns complete frame bodies, oldest first, up to a bad header (see {@link FrameReader.error})
   * @throws {FrameError} for a zero length or a length above the limit when no good frame comes before it in this
   *   chunk, and on every push after {@link FrameReader.error} is set; the stream is unusable afterwards
   */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.#error) throw this.#error;
    const frames: Uint8Array[] = [];
    let data: Uint8Array;
    let at: number;
    let end: number;
    if (this.#start === this.#end) {
      // Nothing buffered: parse straight from the chunk, no copy.
      data = chunk;
      at = 0;
      end = chunk.length;
    } else {
      this.#append(chunk);
      data = this.#buffer;
      at = this.#start;
      end = this.#end;
    }
    while (end - at >= HEADER_BYTES) {
      const length = ((data[at] << 24) >>> 0) + (data[at + 1] << 16) + (data[at + 2] << 8) + data[at + 3];
      if (length === 0 || length > this.#maxFrame) {
        this.#error = length === 0
          ? new FrameError("bad_frame", "Cannot read frame: length 0 is not allowed")
          : new FrameError(
            "frame_too_large",
            `Cannot read frame: length ${length} exceeds the ${this.#maxFrame}-byte limit`,
          );
        if (frames.length === 0) throw this.#error;
        return frames;
      }
      if (end - at - HEADER_BYTES < length) break;
      frames.push(data.subarray(at + HEADER_BYTES, at + HEADER_BYTES + length));
      at += HEADER_BYTES + length;
    }
    if (data === chunk) {
      if (at < end) this.#keep(chunk.subarray(at, end));
    } else {
      this.#start = at;
      if (at === end) this.#start = this.#end = 0;
    }
    return frames;
  }

  #keep(rest: Uint8Array): void {
    // Views into `chunk` were returned, and the caller reuses its read buffer: copy the remainder.
    if (this.#buffer.length < rest.length) this.#buffer = new Uint8Array(Math.max(rest.length, 4096));
    this.#buffer.set(rest, 0);
    this.#start = 0;
    this.#end = rest.length;
  }

  #append(chunk: Uint8Array): void {
    const used = this.#end - this.#start;
    if (this.#buffer.length - this.#end < chunk.length) {
      const size = Math.max(used + chunk.length, this.#buffer.length * 2);
      const next = size > this.#buffer.length ? new Uint8Array(size) : this.#buffer;
      next.set(this.#buffer.subarray(this.#start, this.#end), 0);
      this.#buffer = next;
      this.#start = 0;
      this.#end = used;
    }
    this.#buffer.set(chunk, this.#end);
    this.#end += chunk.length;
  }
}
