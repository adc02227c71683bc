/**
 * One TCP or TLS connection adapted to the hub: the read loop (frames, parsing, rate limit), the handshake and
 * idle timeouts, and a bounded outbound queue drained by its own writer, so a slow or dead client never delays
 * anyone else.
 *
 * @module
 */

import { encodeMessage, FrameError, FrameReader } from "../frame.ts";
import { type ErrorCode, parseClientMessage, ProtocolError } from "../protocol.ts";
import type { Backpressure, QueueGauge, Reader } from "./backpressure.ts";
import type { Hub, Member, Peer } from "./hub.ts";
import type { Logger } from "./log.ts";
import { TokenBucket } from "./rate_limit.ts";

/**
 * Bytes of a connection's read buffer at first and after a quiet spell: small, because every connection keeps one
 * pending read with its buffer all the time, and most connections are quiet most of the time.
 */
const READ_BUFFER_MIN = 512;
/** The read buffer doubles, up to this, each time a read fills it. */
const READ_BUFFER_MAX = 64 * 1024;
/** Reads in a row that fill at most a quarter of the buffer before it is halved. */
const READ_SHRINK_AFTER = 16;
/**
 * Most bytes copied into one write. A connection's queued frames go out in chunks of at most this size, so that a
 * slow reader with a long queue holds one chunk besides the (shared) frames, not a copy of its whole queue.
 */
const WRITE_CHUNK_BYTES = 64 * 1024;
/**
 * Bytes of write chunks kept for reuse by all connections (one full chunk each for 512 busy ones), so that fan-out
 * does not allocate, and leave to the garbage collector, a chunk per connection per turn.
 */
const SPARE_CHUNK_BYTES = 32 * 1024 * 1024;
/** Written frames at the head of a queue after which the array is compacted (see #take). */
const QUEUE_COMPACT_AFTER = 4096;
/** How long a closing connection may take to flush its last frames before it is cut. */
const CLOSE_GRACE_MS = 2000;
/** Messages whose handling makes work for others (fan-out, replies): reading them waits while readers catch up. */
const MAKES_WORK: Record<string, boolean> = {
  // The opening's answers are small, and a new client must not miss its --handshake-timeout waiting.
  hello: false,
  login: false,
  join: true,
  prove: true,
  part: true,
  send: true,
  who: true,
  rooms: true,
  nick: true,
  history: true,
  since: true,
  lookup: true,
  direct: true,
  direct_since: true,
  ping: false,
  pong: false,
  bye: false,
};

/** Limits that apply to one connection. */
export interface ConnectionOptions {
  /** Largest frame body accepted. */
  maxFrame: number;
  /** The server's outbound budget: this connection's queue is counted there, and its reads wait on it. */
  backpressure: Backpressure;
  /** Milliseconds allowed from accept to a successful login. */
  handshakeTimeoutMs: number;
  /** Milliseconds without a complete frame before the connection is closed. */
  idleTimeoutMs: number;
  /** Messages per second (0 = unlimited). */
  rate: number;
  /** Burst above the rate. */
  burst: number;
  /** Event log. */
  log: Logger;
}

/**
 * The byte stream under a connection: a `Deno.Conn` for plain TCP, or the node:tls adapter of tls.ts. `read` and
 * `write` behave as `Deno.Conn`'s do (a read may return fewer bytes, null at the end; a write may write fewer).
 */
export interface Socket {
  /** Reads into `into`; resolves with the byte count, or null at the end of the stream. */
  read(into: Uint8Array): Promise<number | null>;
  /** Writes some of `bytes`; resolves with how many were written. */
  write(bytes: Uint8Array): Promise<number>;
  /** Closes the socket and releases its file descriptor. */
  close(): void;
}

const EMPTY = new Uint8Array(0);

/** Write chunks of power-of-two sizes (1 KiB to WRITE_CHUNK_BYTES), kept for reuse up to SPARE_CHUNK_BYTES. */
class ChunkPool {
  #free: Uint8Array<ArrayBuffer>[][] = [];
  #bytes = 0;

  /** A buffer of at least `n` (<= WRITE_CHUNK_BYTES) bytes. */
  take(n: number): Uint8Array<ArrayBuffer> {
    const size = Math.max(1024, 2 ** Math.ceil(Math.log2(n)));
    const spare = this.#free[size]?.pop();
    if (spare === undefined) return new Uint8Array(size);
    this.#bytes -= size;
    return spare;
  }

  /** Takes back a buffer from {@link ChunkPool.take} that nothing refers to any more. */
  give(buffer: Uint8Array<ArrayBuffer>): void {
    if (this.#bytes + buffer.length > SPARE_CHUNK_BYTES) return;
    (this.#free[buffer.length] ??= []).push(buffer);
    this.#bytes += buffer.length;
  }
}

const chunks = new ChunkPool();

/**
 * A client connection. Call {@link Connection.run} once; it resolves when the connection is gone.
 *
 * @example
 * ```ts
 * const connection = new Connection(conn, { hub, remote: "127.0.0.1:50000", options });
 * await connection.run();
 * ```
 */
export class Connection implements Peer, Reader {
  #conn: Socket;
  #hub: Hub;
  #member: Member;
  #options: ConnectionOptions;
  #remote: string;
  #queue: Uint8Array[] = [];
  /** Index of the first frame of #queue not yet taken by the writer. */
  #head = 0;
  /** This connection's queue, as the backpressure counts it. */
  #gauge: QueueGauge;
  /** Set while reading waits for the backpressure (or the rate limit): the client is not idle then. */
  #held = false;
  #writing = false;
  #closing = false;
  #closed = false;
  #lastFrameAt = performance.now();
  #throttleNoticeAt = -Infinity;
  /** The message budget; none when --rate is 0 (unlimited). */
  #bucket: TokenBucket | undefined;
  #handshakeTimer: ReturnType<typeof setTimeout> | undefined;
  #graceTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set while run() waits for the socket to close. */
  #onClosed: (() => void) | undefined;
  /** Resolves once the socket is closed: a read held back by the backpressure stops waiting then. */
  #gone: Promise<void>;
  #markGone!: () => void;
  /** Connections with frames queued in the current task, whose writers start once it is over. */
  static #starting: Connection[] = [];

  /** performance.now() when the socket was accepted: the login deadline counts from there. */
  #acceptedAt: number;

  /**
   * @param conn the accepted socket
   * @param context.hub the chat core
   * @param context.remote the remote address, for logs
   * @param context.options this connection's limits
   * @param context.acceptedAt performance.now() at accept (default now; a TLS handshake happens in between)
   */
  constructor(
    conn: Socket,
    context: { hub: Hub; remote: string; options: ConnectionOptions; acceptedAt?: number },
  ) {
    this.#conn = conn;
    this.#acceptedAt = context.acceptedAt ?? performance.now();
    this.#hub = context.hub;
    this.#remote = context.remote;
    this.#options = context.options;
    if (this.#options.rate > 0) {
      this.#bucket = new TokenBucket({ rate: this.#options.rate, burst: this.#options.burst });
    }
    this.#gone = new Promise((resolve) => this.#markGone = resolve);
    this.#gauge = this.#options.backpressure.track(this);
    this.#member = this.#hub.attach(this, this.#remote);
  }

  /** The member's nick, once known (for logs). */
  get nick(): string | undefined {
    return this.#member.nick;
  }

  /**
   * Reads and handles frames until the connection ends; resolves once the socket is closed and the member gone.
   */
  async run(): Promise<void> {
    const { log } = this.#options;
    log.info("connect", { remote: this.#remote });
    this.#handshakeTimer = setTimeout(() => {
      if (this.#member.nick !== undefined) return;
      this.#refuse("handshake_timeout", `no successful login within ${this.#options.handshakeTimeoutMs} ms`);
    }, Math.max(0, this.#acceptedAt + this.#options.handshakeTimeoutMs - performance.now()));
    const reader = new FrameReader({ maxFrame: this.#options.maxFrame });
    let buf = new Uint8Array(READ_BUFFER_MIN);
    let smallReads = 0;
    try {
      reading: while (!this.#closing) {
        let n: number | null;
        try {
          n = await this.#conn.read(buf);
        } catch {
          break;
        }
        if (n === null) break;
        const chunk = buf.subarray(0, n);
        // The frames are views of `chunk`, handled before the next read; a new buffer does not disturb them.
        if (n === buf.length) {
          smallReads = 0;
          if (buf.length < READ_BUFFER_MAX) buf = new Uint8Array(buf.length * 2);
        } else if (n > buf.length / 4 || buf.length === READ_BUFFER_MIN) {
          smallReads = 0;
        } else if (++smallReads >= READ_SHRINK_AFTER) {
          smallReads = 0;
          buf = new Uint8Array(buf.length / 2);
        }
        let frames: Uint8Array[];
        try {
          frames = reader.push(chunk);
        } catch (err) {
          if (!(err instanceof FrameError)) throw err;
          this.#refuse(err.code, err.message);
          break;
        }
        if (frames.length > 0) this.#lastFrameAt = performance.now();
        for (const body of frames) {
          if (this.#closing) break reading;
          let msg;
          try {
            msg = parseClientMessage(body);
          } catch (err) {
            if (!(err instanceof ProtocolError)) throw err;
            if (err.fatal) {
              this.#refuse(err.code, err.message);
              break reading;
            }
            this.send(encodeMessage({ type: "error", code: err.code, message: err.message, id: err.id }));
            continue;
          }
          // Only a connection over its budget pays for an await; unlimited (--rate 0) never does.
          if (this.#bucket !== undefined && this.#member.nick !== undefined) {
            const wait = this.#bucket.take();
            if (wait > 0) await this.#hold(this.#throttle(wait));
          }
          // While readers catch up, stop reading from whoever makes work for others (a ping makes none).
          if (MAKES_WORK[msg.type] && this.#options.backpressure.holding) {
            await this.#hold(this.#options.backpressure.released());
          }
          if (this.#closing) break reading;
          const pending = this.#hub.handle(this.#member, msg);
          if (pending) await pending;
          if (this.#member.nick !== undefined && this.#handshakeTimer !== undefined) {
            clearTimeout(this.#handshakeTimer);
            this.#handshakeTimer = undefined;
          }
        }
        // A bad header after good frames in the same read: those were handled above, now refuse.
        if (reader.error) {
          this.#refuse(reader.error.code, reader.error.message);
          break;
        }
      }
    } finally {
      clearTimeout(this.#handshakeTimer);
      this.#hub.detach(this.#member);
      if (!this.#closing) {
        this.#closing = true;
        this.#finish();
      }
      log.info("disconnect", { remote: this.#remote, nick: this.#member.nick });
    }
    if (!this.#closed) await new Promise<void>((resolve) => this.#onClosed = resolve);
  }

  /**
   * Queues a frame. It is never refused for its size: a reader that does not keep up is cut off by the backpressure
   * (see backpressure.ts), not at the moment a burst is queued.
   *
   * @param frame a complete frame
   */
  send(frame: Uint8Array): void {
    if (this.#closed) return;
    this.#queue.push(frame);
    this.#gauge.add(frame.length);
    if (!this.#writing) {
      this.#writing = true;
      // Start writing once the current task is over, so every frame queued in it (a whole fan-out batch) goes out
      // in one write.
      if (Connection.#starting.push(this) === 1) queueMicrotask(Connection.#startWriters);
    }
  }

  /**
   * Sends bye after what is queued, then closes.
   *
   * @param reason the bye reason (an error code, "quit" or "shutting_down")
   * @param message a human-readable line
   */
  close(reason: string, message?: string): void {
    if (this.#closing) return;
    this.#closing = true;
    this.send(encodeMessage(message === undefined ? { type: "bye", reason } : { type: "bye", reason, message }));
    this.#finish();
  }

  /**
   * Cuts the connection off because it does not read what is sent to it (called by the backpressure). Its queue is
   * long, so a bye could never reach it: it is closed without one.
   *
   * @param why "grace" or "memory" (see {@link Reader.cut})
   * @param behindMs how long it has been behind
   */
  cut(why: "grace" | "memory", behindMs: number): void {
    if (this.#closed) return;
    this.#options.log.warn("limit", {
      remote: this.#remote,
      nick: this.#member.nick,
      limit: "send_queue",
      bytes: this.#gauge.queued,
      behind_ms: Math.round(behindMs),
      why,
    });
    this.#hub.detach(this.#member);
    this.#abort();
  }

  /** Logs that this reader was found slow: it no longer holds the senders back. */
  slowed(): void {
    this.#options.log.info("slow_reader", { remote: this.#remote, nick: this.#member.nick, bytes: this.#gauge.queued });
  }

  /**
   * Closes the connection when it has sent no complete frame for --idle-timeout. A connection whose reading is held
   * back (by the backpressure or its rate limit) is not idle: its frames wait in the socket.
   *
   * @param now the current performance.now()
   * @returns whether it was closed
   */
  checkIdle(now: number): boolean {
    if (this.#closing || this.#member.nick === undefined || this.#held) return false;
    if (now - this.#lastFrameAt <= this.#options.idleTimeoutMs) return false;
    this.#refuse("idle_timeout", `no complete frame within ${this.#options.idleTimeoutMs} ms`);
    return true;
  }

  async #throttle(first: number): Promise<void> {
    let wait = first;
    const now = performance.now();
    if (now - this.#throttleNoticeAt > 1000) {
      this.#throttleNoticeAt = now;
      this.#options.log.warn("limit", { remote: this.#remote, nick: this.#member.nick, limit: "rate" });
      this.send(encodeMessage({
        type: "error",
        code: "rate_limited",
        message: `more than ${this.#options.rate} messages per second: slowing down`,
        retry_after_ms: wait,
      }));
    }
    while (wait > 0 && !this.#closing) {
      await new Promise((resolve) => setTimeout(resolve, wait));
      wait = this.#bucket!.take();
    }
  }

  /** Waits for `until` with the connection marked as held, then counts it as active again. */
  async #hold(until: Promise<void>): Promise<void> {
    this.#held = true;
    try {
      await Promise.race([until, this.#gone]);
    } finally {
      this.#held = false;
      this.#lastFrameAt = performance.now();
    }
  }

  #refuse(code: ErrorCode, message: string): void {
    this.#options.log.warn("refused", { remote: this.#remote, nick: this.#member.nick, code });
    this.send(encodeMessage({ type: "error", code, message }));
    this.close(code, message);
  }

  static #startWriters(): void {
    const starting = Connection.#starting;
    Connection.#starting = [];
    for (const c of starting) c.#drain();
  }

  async #drain(): Promise<void> {
    try {
      while (this.#head < this.#queue.length && !this.#closed) {
        const { chunk, copy } = this.#take();
        let at = 0;
        while (at < chunk.length) {
          const n = await this.#conn.write(chunk.subarray(at));
          at += n;
          // Counted as it goes, so that a slow reader's rate is measured byte by byte, not chunk by chunk.
          this.#gauge.remove(n);
        }
        // The write is complete, so nothing refers to the copy any more.
        if (copy) chunks.give(copy);
      }
    } catch {
      this.#abort();
    } finally {
      this.#writing = false;
    }
    if (this.#closing) this.#finish();
  }

  /**
   * Takes the next frames off the queue: one frame as it is (frames are shared by every recipient, so it is never
   * reused), or several copied into a chunk buffer (`copy`, this connection's own until the write completes).
   */
  #take(): { chunk: Uint8Array; copy?: Uint8Array<ArrayBuffer> } {
    const queue = this.#queue;
    let i = this.#head;
    const first = queue[i];
    let taken: { chunk: Uint8Array; copy?: Uint8Array<ArrayBuffer> };
    if (i + 1 === queue.length || first.length + queue[i + 1].length > WRITE_CHUNK_BYTES) {
      taken = { chunk: first };
      queue[i++] = EMPTY;
    } else {
      let bytes = 0;
      let end = i;
      while (end < queue.length && bytes + queue[end].length <= WRITE_CHUNK_BYTES) bytes += queue[end++].length;
      const copy = chunks.take(bytes);
      let n = 0;
      for (; i < end; i++) {
        copy.set(queue[i], n);
        n += queue[i].length;
        queue[i] = EMPTY;
      }
      taken = { chunk: copy.subarray(0, n), copy };
    }
    if (i === queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (i >= QUEUE_COMPACT_AFTER && i * 2 >= queue.length) {
      // A reader that is never quite done (a long flood) would otherwise grow this array by a slot per frame for ever.
      this.#queue = queue.slice(i);
      this.#head = 0;
    } else {
      this.#head = i;
    }
    return taken;
  }

  #finish(): void {
    if (this.#writing && !this.#closed) {
      // The writer calls back here when the queue is empty; do not wait forever for a peer that stopped reading.
      this.#graceTimer ??= setTimeout(() => this.#abort(), CLOSE_GRACE_MS);
      return;
    }
    this.#abort();
  }

  #abort(): void {
    this.#closing = true;
    clearTimeout(this.#graceTimer);
    if (this.#closed) return;
    this.#closed = true;
    this.#queue = [];
    this.#head = 0;
    this.#gauge.close();
    try {
      this.#conn.close();
    } catch {
      // already closed by the peer
    }
    this.#markGone();
    this.#onClosed?.();
  }
}
