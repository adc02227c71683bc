/**
 * One TCP or TLS connection adapted to the hub: the read loop (frames, parsing, rate limit), the handshake and
 * idle timeouts, and a bounded outbound queue drained by its own writer, so a slow or dead client never delays
 * anyone else.
 *
 * @module
 */

import { encodeMessage, FrameError, FrameReader } from "../frame.ts";
import { type ErrorCode, parseClientMessage, ProtocolError } from "../protocol.ts";
import type { Hub, Member, Peer } from "./hub.ts";
import type { Logger } from "./log.ts";
import { TokenBucket } from "./rate_limit.ts";

/** Bytes read from the socket at a time. */
const READ_BUFFER_BYTES = 64 * 1024;
/** How long a closing connection may take to flush its last frames before it is cut. */
const CLOSE_GRACE_MS = 2000;

/** Limits that apply to one connection. */
export interface ConnectionOptions {
  /** Largest frame body accepted. */
  maxFrame: number;
  /** Bytes queued for this client before it is disconnected. */
  sendQueue: number;
  /** Milliseconds allowed before hello. */
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

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * A client connection. Call {@link Connection.run} once; it resolves when the connection is gone.
 *
 * @example
 * ```ts
 * const connection = new Connection(conn, { hub, remote: "127.0.0.1:50000", options });
 * await connection.run();
 * ```
 */
export class Connection implements Peer {
  #conn: Deno.Conn;
  #hub: Hub;
  #member: Member;
  #options: ConnectionOptions;
  #remote: string;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #writing = false;
  #closing = false;
  #closed = false;
  #lastFrameAt = performance.now();
  #throttleNoticeAt = -Infinity;
  #bucket: TokenBucket;
  #handshakeTimer: ReturnType<typeof setTimeout> | undefined;
  #graceTimer: ReturnType<typeof setTimeout> | undefined;
  #done = Promise.withResolvers<void>();

  /**
   * @param conn the accepted socket
   * @param context.hub the chat core
   * @param context.remote the remote address, for logs
   * @param context.options this connection's limits
   */
  constructor(conn: Deno.Conn, context: { hub: Hub; remote: string; options: ConnectionOptions }) {
    this.#conn = conn;
    this.#hub = context.hub;
    this.#remote = context.remote;
    this.#options = context.options;
    this.#bucket = new TokenBucket({ rate: this.#options.rate, burst: this.#options.burst });
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
      this.#refuse("handshake_timeout", `no hello within ${this.#options.handshakeTimeoutMs} ms`);
    }, this.#options.handshakeTimeoutMs);
    const reader = new FrameReader({ maxFrame: this.#options.maxFrame });
    const buf = new Uint8Array(READ_BUFFER_BYTES);
    try {
      reading: while (!this.#closing) {
        let n: number | null;
        try {
          n = await this.#conn.read(buf);
        } catch {
          break;
        }
        if (n === null) break;
        let frames: Uint8Array[];
        try {
          frames = reader.push(buf.subarray(0, n));
        } catch (err) {
          if (!(err instanceof FrameError)) throw err;
          this.#refuse(err.code, err.message);
          break;
        }
        for (const body of frames) {
          if (this.#closing) break reading;
          this.#lastFrameAt = performance.now();
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
          if (this.#member.nick !== undefined) {
            const wait = this.#bucket.take();
            if (wait > 0) await this.#throttle(wait);
          }
          const pending = this.#hub.handle(this.#member, msg);
          if (pending) await pending;
          if (this.#member.nick !== undefined) clearTimeout(this.#handshakeTimer);
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
    await this.#done.promise;
  }

  /**
   * Queues a frame. When the queue would exceed --send-queue, the client is cut off instead.
   *
   * @param frame a complete frame
   */
  send(frame: Uint8Array): void {
    if (this.#closed) return;
    if (this.#queued + frame.length > this.#options.sendQueue) {
      this.#options.log.warn("limit", {
        remote: this.#remote,
        nick: this.#member.nick,
        limit: "send_queue",
        bytes: this.#queued + frame.length,
      });
      // Its queue is full, so a bye could never reach it: cut it off now.
      this.#hub.detach(this.#member);
      this.#abort();
      return;
    }
    this.#queue.push(frame);
    this.#queued += frame.length;
    if (!this.#writing) {
      this.#writing = true;
      // Start writing once the current task is over, so every frame queued in it (a whole fan-out batch) goes out
      // in one write.
      queueMicrotask(() => this.#drain());
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
   * Closes the connection when it has sent no complete frame for --idle-timeout.
   *
   * @param now the current performance.now()
   * @returns whether it was closed
   */
  checkIdle(now: number): boolean {
    if (this.#closing || this.#member.nick === undefined) return false;
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
      wait = this.#bucket.take();
    }
  }

  #refuse(code: ErrorCode, message: string): void {
    this.#options.log.warn("refused", { remote: this.#remote, nick: this.#member.nick, code });
    this.send(encodeMessage({ type: "error", code, message }));
    this.close(code, message);
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const chunk = this.#queue.length === 1 ? this.#queue[0] : concat(this.#queue, this.#queued);
        this.#queue = [];
        let at = 0;
        while (at < chunk.length) at += await this.#conn.write(chunk.subarray(at));
        this.#queued -= chunk.length;
      }
    } catch {
      this.#abort();
    } finally {
      this.#writing = false;
    }
    if (this.#closing) this.#finish();
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
    this.#queued = 0;
    try {
      this.#conn.close();
    } catch {
      // already closed by the peer
    }
    this.#done.resolve();
  }
}
