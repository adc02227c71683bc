/**
 * A TCP proxy for tests, placed between a client and the server on 127.0.0.1. It records every byte in both
 * directions (for the confidentiality checks) and can rewrite the frames the server sends, one by one, to play a
 * tampering or replaying server (relabelled envelopes, flipped ciphertext bits, duplicated messages).
 *
 * @module
 */

import { encodeFrame, FrameReader, HEADER_BYTES } from "../../lib/frame.ts";
import { concat } from "./bytes.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * Rewrites one frame body sent by the server. Returns the bodies to forward instead: none drops the frame, two
 * duplicate it. Bodies may be strings (JSON text) or bytes.
 */
export type FrameTransform = (
  body: Uint8Array,
  context: { connection: number; index: number },
) => (Uint8Array | string)[];

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/** One proxied connection and everything that passed through it. */
export class ProxiedConnection {
  /** Its number, in order of arrival (0 first). */
  readonly index: number;
  /** Bytes from the client to the server, as they passed. */
  readonly toServer: Uint8Array[] = [];
  /** Bytes from the server, as the server sent them. */
  readonly fromServer: Uint8Array[] = [];
  /** Bytes delivered to the client (after any transform). */
  readonly toClient: Uint8Array[] = [];
  /** Resolves when both directions have ended. */
  done: Promise<void> = Promise.resolve();
  #client: Deno.Conn;
  #server: Deno.Conn | undefined;

  /**
   * @param client the accepted client socket
   * @param index its arrival number
   */
  constructor(client: Deno.Conn, index: number) {
    this.#client = client;
    this.index = index;
  }

  /**
   * Connects upstream and pumps both directions until either side ends.
   *
   * @param upstreamPort the server's port
   * @param transform optional rewriting of server frames
   */
  start(upstreamPort: number, transform: FrameTransform | undefined): void {
    this.done = (async () => {
      try {
        this.#server = await Deno.connect({ hostname: "127.0.0.1", port: upstreamPort });
      } catch {
        closeQuietly(this.#client);
        return;
      }
      await Promise.all([this.#pumpUp(), this.#pumpDown(transform)]);
    })();
  }

  async #pumpUp(): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await this.#client.read(buf);
        if (n === null) break;
        const chunk = buf.slice(0, n);
        this.toServer.push(chunk);
        await writeAll(this.#server!, chunk);
      }
    } catch {
      // either side reset
    } finally {
      this.close();
    }
  }

  async #pumpDown(transform: FrameTransform | undefined): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    const reader = new FrameReader({ maxFrame: 64 * 1024 * 1024 });
    let index = 0;
    try {
      while (true) {
        const n = await this.#server!.read(buf);
        if (n === null) break;
        const chunk = buf.slice(0, n);
        this.fromServer.push(chunk);
        let out: Uint8Array;
        if (!transform) {
          out = chunk;
        } else {
          const frames: Uint8Array[] = [];
          for (const body of reader.push(chunk)) {
            for (const replaced of transform(body.slice(), { connection: this.index, index: index++ })) {
              frames.push(typeof replaced === "string" ? encodeFrame(replaced) : frameOf(replaced));
            }
          }
          out = concat(frames);
        }
        if (out.length === 0) continue;
        this.toClient.push(out);
        await writeAll(this.#client, out);
      }
    } catch {
      // either side reset
    } finally {
      this.close();
    }
  }

  /** Everything the client sent. */
  sent(): Uint8Array {
    return concat(this.toServer);
  }

  /** Everything the client received. */
  received(): Uint8Array {
    return concat(this.toClient);
  }

  /** Closes both sockets. */
  close(): void {
    closeQuietly(this.#client);
    if (this.#server) closeQuietly(this.#server);
  }
}

function frameOf(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, HEADER_BYTES);
  return out;
}

/**
 * A recording (and optionally tampering) TCP proxy on 127.0.0.1 and an ephemeral port.
 *
 * @example
 * ```ts
 * const proxy = TcpProxy.start(server.port);
 * const client = await WireClient.connect(proxy.port);
 * // …
 * await proxy.close();
 * proxy.allBytes(); // every byte seen, both ways
 * ```
 */
export class TcpProxy {
  /** The port clients connect to. */
  readonly port: number;
  /** Every connection so far, in order of arrival. */
  readonly connections: ProxiedConnection[] = [];
  #listener: Deno.Listener;
  #accepting: Promise<void>;
  #waiters: (() => void)[] = [];

  private constructor(listener: Deno.Listener, upstreamPort: number, transform: FrameTransform | undefined) {
    this.#listener = listener;
    this.port = (listener.addr as Deno.NetAddr).port;
    this.#accepting = (async () => {
      while (true) {
        let conn: Deno.Conn;
        try {
          conn = await listener.accept();
        } catch {
          break;
        }
        const proxied = new ProxiedConnection(conn, this.connections.length);
        this.connections.push(proxied);
        proxied.start(upstreamPort, transform);
        for (const wake of this.#waiters.splice(0)) wake();
      }
    })();
  }

  /**
   * Starts a proxy to a server on 127.0.0.1.
   *
   * @param upstreamPort the server's port
   * @param options.transform rewrites each frame the server sends (default: bytes pass unchanged)
   * @returns the listening proxy
   */
  static start(upstreamPort: number, options: { transform?: FrameTransform } = {}): TcpProxy {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    return new TcpProxy(listener, upstreamPort, options.transform);
  }

  /**
   * Waits until at least `count` connections have arrived.
   *
   * @param count how many
   * @param options.timeoutMs give up after this long (default 10 s)
   */
  async waitForConnections(count: number, options: { timeoutMs?: number } = {}): Promise<void> {
    const deadline = performance.now() + (options.timeoutMs ?? 10_000);
    while (this.connections.length < count) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`only ${this.connections.length} of ${count} connections reached the proxy`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Every byte that passed, in both directions and in every form (as sent by the server and as delivered). */
  allBytes(): Uint8Array {
    return concat(this.connections.flatMap((c) => [...c.toServer, ...c.fromServer, ...c.toClient]));
  }

  /** Stops listening, closes every connection and waits for the pumps to end. */
  async close(): Promise<void> {
    try {
      this.#listener.close();
    } catch {
      // already closed
    }
    await this.#accepting;
    for (const c of this.connections) c.close();
    await Promise.all(this.connections.map((c) => c.done));
  }
}

/**
 * Parses a frame body as a JSON object (for transforms).
 *
 * @param body the frame body
 * @returns the object
 */
export function parseBody(body: Uint8Array): Record<string, unknown> {
  return JSON.parse(decoder.decode(body));
}

/**
 * Encodes an object as a frame body (for transforms).
 *
 * @param value the object
 * @returns the JSON bytes
 */
export function bodyOf(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}
